//! The activity log (AL): the set of 4 MiB extents that may have writes in flight.
//!
//! Bitmap bits are set in memory only; what makes that safe is the log. A write may touch an extent
//! only once a durable transaction lists the extent as active, and an extent leaves the log only
//! after its bitmap bits are durable. So after a crash, every block that may differ between this
//! node and a peer is either marked in the on-disk bitmap or inside an extent the log lists — and
//! recovery (`apply-al`) marks those extents out of sync for every peer.

pub mod lru;
pub mod replay;
pub mod transaction;
