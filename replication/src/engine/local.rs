//! The local disk of a resource: backing store plus metadata.

use std::path::Path;
use std::sync::Arc;

use replbd_bitmap::{Metadata, NodeFlags, OpenOptions, OpenReport};

use crate::store::Store;

/// A resource's attached disk.
pub struct LocalDisk {
    /// The data.
    pub store: Store,
    /// The metadata.
    pub meta: Arc<Metadata>,
    /// What opening the metadata found (recovery after a crash, repairs).
    pub open_report: OpenReport,
}

impl std::fmt::Debug for LocalDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalDisk")
            .field("store", &self.store.describe())
            .field("meta", &self.meta.device())
            .finish()
    }
}

/// Why a disk could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The data could not be opened.
    #[error("cannot open the data at {path}: {source}")]
    Store {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata file or device could not be opened.
    #[error("cannot open the metadata at {path}: {source}")]
    MetaFile {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The metadata could not be opened.
    #[error("cannot open the metadata of {path}: {source}")]
    Meta {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: Box<replbd_bitmap::MetaError>,
    },
    /// The data is smaller than the metadata describes.
    #[error(
        "the data at {path} has {actual} bytes but the metadata describes {expected}: wrong device, or it was shrunk"
    )]
    TooSmall {
        /// The path.
        path: String,
        /// Bytes available.
        actual: u64,
        /// Bytes described.
        expected: u64,
    },
}

impl LocalDisk {
    /// Attaches a data file or device whose metadata is at `meta_path` (the same path for internal
    /// metadata).
    pub fn attach(data_path: &Path, meta_path: &Path) -> Result<LocalDisk, AttachError> {
        let dev = replbd_bitmap::FileDevice::open(meta_path).map_err(|e| AttachError::MetaFile {
            path: meta_path.display().to_string(),
            source: e,
        })?;
        let (meta, open_report) =
            Metadata::open(Box::new(dev), OpenOptions::default()).map_err(|e| AttachError::Meta {
                path: meta_path.display().to_string(),
                source: Box::new(e),
            })?;
        let store = Store::open(data_path).map_err(|e| AttachError::Store {
            path: data_path.display().to_string(),
            source: e,
        })?;
        Self::check(store, meta, open_report, &data_path.display().to_string())
    }

    /// Attaches an already-open store and metadata (tests, simulation).
    pub fn from_parts(
        store: Store,
        meta: Arc<Metadata>,
        open_report: OpenReport,
    ) -> Result<LocalDisk, AttachError> {
        let desc = store.describe();
        Self::check(store, meta, open_report, &desc)
    }

    fn check(
        store: Store,
        meta: Arc<Metadata>,
        open_report: OpenReport,
        path: &str,
    ) -> Result<LocalDisk, AttachError> {
        let expected = meta.geometry().data_size();
        if store.size() < expected {
            return Err(AttachError::TooSmall {
                path: path.to_string(),
                actual: store.size(),
                expected,
            });
        }
        Ok(LocalDisk {
            store,
            meta,
            open_report,
        })
    }

    /// Bytes of data.
    pub fn size(&self) -> u64 {
        self.meta.geometry().data_size()
    }

    /// Declares the data up to date at generation `uuid` with every bitmap clear — DRBD's
    /// `new-current-uuid --clear-bitmap` on devices known to be identical (e.g. all zeroes), which
    /// skips the initial full sync. Every node must be given the same `uuid`.
    pub fn declare_up_to_date(&self, uuid: u64) -> Result<(), replbd_bitmap::MetaError> {
        for s in 0..self.meta.geometry().max_peers() {
            self.meta
                .clear_in_sync(replbd_bitmap::PeerSlot(s as u8), 0, self.size())?;
        }
        self.meta.flush()?;
        self.meta.update(|gi, flags| {
            gi.current = uuid & !1;
            for s in 0..gi.peers.len() {
                gi.clear_bitmap_uuid(replbd_bitmap::PeerSlot(s as u8));
            }
            flags.set(NodeFlags::CONSISTENT, true);
            flags.set(NodeFlags::WAS_UP_TO_DATE, true);
        })
    }

    /// Shared handle to the metadata.
    pub fn metadata(&self) -> &Arc<Metadata> {
        &self.meta
    }
}
