//! The one place where the daemon calls engine operations that do not exist yet.
//!
//! The replication engine is gaining split-brain recovery (`connect --discard-my-data`) and UUID
//! rotation on a resource that is down separately. The admin commands for them already exist, with their
//! arguments parsed and checked (the resource is up, the peer exists), and end here. Wiring one up
//! means replacing its body with the engine call; nothing else in the daemon changes.

use replbd_replication::Resource;
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

/// `connect RES [PEER] --discard-my-data`: connect, resolving a split brain by discarding this
/// node's changes.
pub async fn connect_discarding_my_data(
    _resource: &Resource,
    _peer: Option<u8>,
) -> Result<(), NotSupportedYet> {
    Err(NotSupportedYet {
        operation: "connect --discard-my-data",
        why: "the replication engine has no split-brain recovery yet; plain `connect` works",
    })
}

/// `new-current-uuid RES` without `--clear-bitmap`: start a new data generation.
pub fn new_current_uuid_rotate() -> Result<(), NotSupportedYet> {
    Err(NotSupportedYet {
        operation: "new-current-uuid without --clear-bitmap",
        why: "only --clear-bitmap (skip the initial sync on identical disks) is implemented",
    })
}
