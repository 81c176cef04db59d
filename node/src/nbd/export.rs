//! The export: one [`BlockVolume`] offered to NBD clients under a name, and the transmission flags
//! advertised for it.

use std::sync::Arc;

use replbd_replication::BlockVolume;

use crate::nbd::config::{MIN_BLOCK, NbdConfig, PREFERRED_BLOCK};
use crate::nbd::error::NbdError;
use crate::nbd::option::{ExportInfo, MAX_NAME_LEN};
use crate::nbd::proto::{
    NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_HAS_FLAGS, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM,
    NBD_FLAG_SEND_WRITE_ZEROES,
};

/// Transmission flags advertised for every export.
///
/// `NBD_FLAG_CAN_MULTI_CONN` is correct because every connection calls the same volume and the
/// [`BlockVolume`] contract is volume-wide: `flush` makes every write acknowledged before it
/// durable, whichever connection sent it, and reads see every acknowledged write. So a flush or FUA
/// write on one connection covers, and is visible to, all the others, as the flag promises.
pub const TRANSMISSION_FLAGS: u16 = NBD_FLAG_HAS_FLAGS
    | NBD_FLAG_SEND_FLUSH
    | NBD_FLAG_SEND_FUA
    | NBD_FLAG_SEND_TRIM
    | NBD_FLAG_SEND_WRITE_ZEROES
    | NBD_FLAG_CAN_MULTI_CONN;

/// A volume offered to NBD clients under a name.
pub struct Export<V> {
    name: String,
    volume: Arc<V>,
}

impl<V: BlockVolume> Export<V> {
    /// An export of `volume` named `name`: non-empty, at most 4096 bytes, no NUL (clients also reach
    /// it as the default export, the empty name).
    pub fn new(name: impl Into<String>, volume: Arc<V>) -> Result<Export<V>, NbdError> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_NAME_LEN {
            Some("it is longer than 4096 bytes")
        } else if name.contains('\0') {
            Some("it contains a NUL character")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(NbdError::InvalidExportName { name, reason });
        }
        Ok(Export { name, volume })
    }

    /// The export's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The volume served.
    pub fn volume(&self) -> &Arc<V> {
        &self.volume
    }

    /// What a client is told about the export now (the size is read from the volume).
    pub fn info(&self, config: &NbdConfig) -> ExportInfo {
        ExportInfo {
            name: self.name.clone(),
            size: self.volume.size(),
            transmission_flags: TRANSMISSION_FLAGS,
            min_block: MIN_BLOCK,
            preferred_block: PREFERRED_BLOCK,
            max_payload: config.max_payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replbd_replication::MemVolume;

    #[test]
    fn names_are_checked() {
        let v = Arc::new(MemVolume::new(1 << 20));
        assert!(Export::new("r0", v.clone()).is_ok());
        for bad in [String::new(), "a\0b".into(), "x".repeat(4097)] {
            assert!(matches!(
                Export::new(bad, v.clone()),
                Err(NbdError::InvalidExportName { .. })
            ));
        }
        let info = Export::new("r0", v).map(|e| e.info(&NbdConfig::default()));
        assert_eq!(info.map(|i| i.size).ok(), Some(1 << 20));
    }
}
