//! The local disk of a resource on `up`: creating metadata when the configuration asks for it,
//! attaching, and checking that the metadata belongs to this node; and the one offline metadata
//! operation the daemon offers, `new-current-uuid --clear-bitmap`.
//!
//! These are blocking file operations; callers run them on the blocking pool.
//!
//! Metadata is created only with `create-metadata = true` and only where no replbd metadata is
//! found: an existing superblock — even a damaged one — is never overwritten, because it may be the
//! only record of which blocks a peer is missing.

use std::path::{Path, PathBuf};

use replbd_bitmap::units::human_size;
use replbd_bitmap::{CreateOptions, FileDevice, Geometry, MetaError, NodeId, Params, Placement};
use replbd_replication::LocalDisk;
use replbd_replication::engine::AttachError;
use thiserror::Error;
use tracing::{info, warn};

use crate::config::{MetaDisk, ResourceSpec};

/// Why the disk could not be attached or its metadata changed.
#[derive(Debug, Error)]
pub enum DiskError {
    /// The engine could not attach the disk.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// The metadata was created for another node.
    #[error(
        "the metadata on {} belongs to node id {found}, but this node ({name}) is node id {expected}: recreate it with `replbd-meta create --node-id {expected}`",
        path.display()
    )]
    NodeIdMismatch {
        /// The metadata path.
        path: PathBuf,
        /// The id in the metadata.
        found: u8,
        /// This node's id.
        expected: u8,
        /// This node's name.
        name: String,
    },
    /// The metadata records another resource.
    #[error(
        "the metadata on {} belongs to resource {found:?}, not {expected:?}: the configuration points {expected:?} at another resource's disk (check `disk` and `meta-disk`); if this disk really is meant for {expected:?} now, recreate its metadata with `replbd-meta create` (its data will be resynced from a peer)",
        path.display()
    )]
    OtherResource {
        /// The metadata path.
        path: PathBuf,
        /// The resource the metadata records.
        found: String,
        /// The resource being brought up.
        expected: String,
    },
    /// The disk holds less data than configured.
    #[error(
        "the disk {} holds {} of data, less than the configured size {}",
        path.display(), human_size(*actual), human_size(*configured)
    )]
    TooSmall {
        /// The disk.
        path: PathBuf,
        /// Data bytes the metadata describes.
        actual: u64,
        /// The configured size.
        configured: u64,
    },
    /// Metadata could not be created.
    #[error("creating metadata on {} failed: {reason}", path.display())]
    Create {
        /// The metadata path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A metadata operation failed.
    #[error("the metadata of {} failed: {source}", path.display())]
    Metadata {
        /// The metadata path.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<MetaError>,
    },
    /// The node is diskless: there is no metadata to change.
    #[error("this node is diskless in this resource: it has no metadata")]
    Diskless,
}

/// The data and metadata paths of this node's volume (`None` for a diskless node).
fn paths(spec: &ResourceSpec) -> Option<(PathBuf, PathBuf)> {
    let disk = spec.volume.disk.clone()?;
    let meta = spec.volume.meta_path()?;
    Some((disk, meta))
}

/// Attaches this node's disk of `spec` (creating metadata first if configured and missing);
/// `None` for a diskless node.
pub fn attach(spec: &ResourceSpec) -> Result<Option<LocalDisk>, DiskError> {
    let Some((disk_path, meta_path)) = paths(spec) else {
        return Ok(None);
    };
    if spec.volume.create_metadata {
        create_if_missing(spec, &disk_path, &meta_path)?;
    }
    let disk = LocalDisk::attach(&disk_path, &meta_path)?;
    if let Err(e) = check(spec, &disk, &disk_path, &meta_path) {
        // Leave the metadata clean, as it was before the attach.
        let _ = disk.meta.close();
        return Err(e);
    }
    let report = &disk.open_report;
    if !report.was_clean {
        warn!(
            resource = %spec.name, volume = spec.volume.number,
            extents = report.applied_extents.len(), whole_device = report.whole_device_marked,
            "metadata was not closed cleanly (crash or SIGKILL): activity-log extents marked out of sync for every peer"
        );
    }
    for (region, defect) in &report.repaired {
        warn!(resource = %spec.name, volume = spec.volume.number, %region, %defect, "repaired damaged metadata block");
    }
    info!(
        resource = %spec.name, volume = spec.volume.number, disk = %disk_path.display(),
        meta = %meta_path.display(), size = disk.size(), "disk attached"
    );
    Ok(Some(disk))
}

fn check(spec: &ResourceSpec, disk: &LocalDisk, disk_path: &Path, meta_path: &Path) -> Result<(), DiskError> {
    let found = disk.meta.superblock().node_id.get();
    if found != spec.this.id {
        return Err(DiskError::NodeIdMismatch {
            path: meta_path.to_owned(),
            found,
            expected: spec.this.id,
            name: spec.this.name.clone(),
        });
    }
    let recorded = disk.meta.superblock().resource;
    if recorded.is_empty() {
        disk.meta
            .set_resource(&spec.name)
            .map_err(|e| DiskError::Metadata {
                path: meta_path.to_owned(),
                source: Box::new(e),
            })?;
        info!(resource = %spec.name, meta = %meta_path.display(), "metadata now records the resource it belongs to");
    } else if recorded != spec.name {
        return Err(DiskError::OtherResource {
            path: meta_path.to_owned(),
            found: recorded,
            expected: spec.name.clone(),
        });
    }
    if let Some(configured) = spec.volume.size
        && disk.size() < configured
    {
        return Err(DiskError::TooSmall {
            path: disk_path.to_owned(),
            actual: disk.size(),
            configured,
        });
    }
    Ok(())
}

/// Whether `path` holds replbd metadata (valid or damaged): anything but "no metadata found".
fn has_metadata(path: &Path) -> bool {
    let Ok(dev) = FileDevice::open_read_only(path) else {
        return false;
    };
    !matches!(replbd_bitmap::inspect(&dev), Err(MetaError::NoMetadata { .. }))
}

fn create_if_missing(spec: &ResourceSpec, disk_path: &Path, meta_path: &Path) -> Result<(), DiskError> {
    if has_metadata(meta_path) {
        return Ok(());
    }
    let create_error = |reason: String| DiskError::Create {
        path: meta_path.to_owned(),
        reason,
    };
    let node_id = NodeId::new(spec.this.id)
        .ok_or_else(|| create_error(format!("node id {} is invalid", spec.this.id)))?;
    let v = &spec.volume;
    let params = Params {
        data_size: v.size.unwrap_or(4096),
        max_peers: v.max_peers,
        bm_block_size: replbd_bitmap::layout::DEFAULT_BM_BLOCK_SIZE,
        al_extents: v.al_extents,
    };
    let (dev, placement) = match &v.meta {
        MetaDisk::Internal => {
            if !disk_path.exists() {
                let size = v.size.ok_or_else(|| {
                    create_error("the disk does not exist and the volume has no size".into())
                })?;
                let len = size + Geometry::meta_size_for(&params);
                FileDevice::create(disk_path, len).map_err(|e| create_error(e.to_string()))?;
            }
            (
                FileDevice::open(disk_path).map_err(|e| create_error(e.to_string()))?,
                Placement::Internal,
            )
        }
        MetaDisk::External(path) => {
            let len = Geometry::meta_size_for(&params);
            (
                FileDevice::create(path, len).map_err(|e| create_error(e.to_string()))?,
                Placement::External,
            )
        }
    };
    replbd_bitmap::create(
        &dev,
        &CreateOptions {
            placement,
            params,
            node_id,
        },
    )
    .map_err(|e| create_error(e.to_string()))?;
    info!(resource = %spec.name, volume = v.number, meta = %meta_path.display(), node_id = spec.this.id, "created metadata (create-metadata = true)");
    Ok(())
}

/// Declares this node's data UpToDate at generation `uuid` with every bitmap clear (DRBD's
/// `new-current-uuid --clear-bitmap`), on the metadata of a resource that is down. Every node must
/// be given the same UUID.
pub fn new_current_uuid_clear_bitmap(spec: &ResourceSpec, uuid: u64) -> Result<(), DiskError> {
    if spec.this.diskless {
        return Err(DiskError::Diskless);
    }
    let disk = attach(spec)?.ok_or(DiskError::Diskless)?;
    let meta_path = spec.volume.meta_path().unwrap_or_default();
    let metadata = |source| DiskError::Metadata {
        path: meta_path.clone(),
        source: Box::new(source),
    };
    let declared = disk.declare_up_to_date(uuid).map_err(metadata);
    // Close cleanly whatever happened, so the next `up` finds clean metadata.
    let closed = disk.meta.close().map_err(metadata);
    declared?;
    closed?;
    info!(resource = %spec.name, volume = spec.volume.number, uuid = format_args!("{uuid:016X}"), "new current UUID, bitmaps cleared: data declared UpToDate");
    Ok(())
}
