//! The error values an NBD reply may carry, and how volume errors map onto them.
//!
//! NBD does not pass host errnos through: the protocol defines a short list of portable values and
//! clients may treat anything else as `EIO`. A volume reports Linux errnos
//! ([`VolumeError::errno`]); this module folds them onto the protocol's list the way the protocol
//! document asks (read-only becomes `EPERM`, quota and file-size limits become `ENOSPC`).

use std::fmt;

use replbd_replication::VolumeError;

/// An error value of an NBD reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NbdErrno {
    /// `EPERM` (1): not permitted, e.g. a write to a volume that is read-only here.
    Perm,
    /// `EIO` (5): input/output error.
    Io,
    /// `ENOMEM` (12): out of memory.
    NoMem,
    /// `EINVAL` (22): invalid request (bad range, alignment, flags or command).
    Inval,
    /// `ENOSPC` (28): no space, or a write beyond the end of the export.
    NoSpc,
    /// `EOVERFLOW` (75): the request is larger than the server accepts.
    Overflow,
    /// `ENOTSUP` (95): operation not supported.
    NotSup,
    /// `ESHUTDOWN` (108): the server is shutting down; the client must disconnect.
    Shutdown,
}

impl NbdErrno {
    /// The value sent on the wire.
    pub fn code(self) -> u32 {
        match self {
            NbdErrno::Perm => 1,
            NbdErrno::Io => 5,
            NbdErrno::NoMem => 12,
            NbdErrno::Inval => 22,
            NbdErrno::NoSpc => 28,
            NbdErrno::Overflow => 75,
            NbdErrno::NotSup => 95,
            NbdErrno::Shutdown => 108,
        }
    }

    /// Maps a Linux errno (positive) onto the protocol's values; anything unlisted becomes `EIO`.
    pub fn from_errno(errno: i32) -> NbdErrno {
        match errno {
            1 | 13 | 30 => NbdErrno::Perm,    // EPERM, EACCES, EROFS
            12 => NbdErrno::NoMem,            // ENOMEM
            22 => NbdErrno::Inval,            // EINVAL
            27 | 28 | 122 => NbdErrno::NoSpc, // EFBIG, ENOSPC, EDQUOT
            75 => NbdErrno::Overflow,         // EOVERFLOW
            95 => NbdErrno::NotSup,           // EOPNOTSUPP / ENOTSUP
            108 => NbdErrno::Shutdown,        // ESHUTDOWN
            _ => NbdErrno::Io,                // EIO and everything else
        }
    }

    /// The reply value for a failed volume request.
    pub fn from_volume_error(error: &VolumeError) -> NbdErrno {
        match error {
            // The volume is going away: tell the client to disconnect rather than retry.
            VolumeError::ShuttingDown => NbdErrno::Shutdown,
            other => NbdErrno::from_errno(other.errno()),
        }
    }
}

impl fmt::Display for NbdErrno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            NbdErrno::Perm => "EPERM",
            NbdErrno::Io => "EIO",
            NbdErrno::NoMem => "ENOMEM",
            NbdErrno::Inval => "EINVAL",
            NbdErrno::NoSpc => "ENOSPC",
            NbdErrno::Overflow => "EOVERFLOW",
            NbdErrno::NotSup => "ENOTSUP",
            NbdErrno::Shutdown => "ESHUTDOWN",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_errors_map_to_protocol_values() {
        let not_primary = VolumeError::NotPrimary {
            resource: "r0".into(),
        };
        assert_eq!(NbdErrno::from_volume_error(&not_primary), NbdErrno::Perm);
        let range = VolumeError::InvalidRange {
            offset: 1,
            len: 2,
            size: 3,
        };
        assert_eq!(NbdErrno::from_volume_error(&range), NbdErrno::Inval);
        let quorum = VolumeError::NoQuorum {
            resource: "r0".into(),
        };
        assert_eq!(NbdErrno::from_volume_error(&quorum), NbdErrno::Io);
        assert_eq!(
            NbdErrno::from_volume_error(&VolumeError::ShuttingDown),
            NbdErrno::Shutdown
        );
        let enospc = VolumeError::Io(std::io::Error::from_raw_os_error(28));
        assert_eq!(NbdErrno::from_volume_error(&enospc), NbdErrno::NoSpc);
        let edquot = VolumeError::Io(std::io::Error::from_raw_os_error(122));
        assert_eq!(NbdErrno::from_volume_error(&edquot), NbdErrno::NoSpc);
        let enomem = VolumeError::Io(std::io::Error::from_raw_os_error(12));
        assert_eq!(NbdErrno::from_volume_error(&enomem).code(), 12);
        let eoverflow = VolumeError::Io(std::io::Error::from_raw_os_error(75));
        assert_eq!(NbdErrno::from_volume_error(&eoverflow).code(), 75);
        let other = VolumeError::Io(std::io::Error::other("no errno"));
        assert_eq!(NbdErrno::from_volume_error(&other).code(), 5);
        assert_eq!(NbdErrno::from_errno(71).code(), 5);
    }
}
