//! The one place where the daemon calls engine operations that do not exist yet.
//!
//! The admin command for UUID rotation on a resource that is down separately exists, with its
//! arguments parsed and checked, and ends here. Wiring it up means replacing the body with the
//! engine call; nothing else in the daemon changes.

use thiserror::Error;

/// An operation the engine does not offer yet.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{operation} is not supported yet: {why}")]
pub struct NotSupportedYet {
    /// The operation, as the command names it.
    pub operation: &'static str,
    /// What is missing.
    pub why: &'static str,
}

/// `new-current-uuid RES` without `--clear-bitmap`: start a new data generation.
pub fn new_current_uuid_rotate() -> Result<(), NotSupportedYet> {
    Err(NotSupportedYet {
        operation: "new-current-uuid without --clear-bitmap",
        why: "only --clear-bitmap (skip the initial sync on identical disks) is implemented",
    })
}
