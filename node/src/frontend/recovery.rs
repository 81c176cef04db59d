//! When a ublk device left behind by a daemon that died is re-attached.
//!
//! The daemon died (SIGKILL, crash, or a deliberate detach for an upgrade) while the node was
//! Primary. `/dev/ublkbN` stayed, and the application's I/O waits in the kernel. The new daemon
//! brings the resource up (`up`, or `daemon --up-all`) and finds the device ([`super::ublk`]). The
//! waiting requests are writes and reads of a Primary, so the device may only be served once this
//! node is Primary again, and the node may only become Primary again if that is safe:
//!
//! ```text
//!   up ─▶ engine starts, peers reconnect, the handshake decides the resync of the
//!         crashed Primary's activity-log extents (the survivors are its source)
//!      ─▶ wait until: a majority of the resource's nodes (this one included) is reachable,
//!                     the local disk is UpToDate again (the resync is done),
//!                     no handshake or resync into this node runs on any link
//!      ─▶ promote ─▶ re-attach (user recovery) ─▶ the waiting requests are served
//!
//!   a connected peer is Primary (someone failed over meanwhile)
//!      ─▶ the waiting I/O can never be served here: the device is deleted, its requests fail
//! ```
//!
//! Why wait for a majority instead of promoting at once: while the daemon was away, an operator
//! (or a cluster manager) may have promoted another node. Promoting before the peers are heard
//! from would make two Primaries and a split brain; any two majorities share a node, so a majority
//! of nodes that are all Secondary proves nobody else took over with a majority. A node that is
//! alone keeps waiting — `replbd-node primary RES` re-attaches it by hand, as DRBD's operators
//! promote a lone node. Why wait for UpToDate: a Primary's data must be the newest, and the
//! engine refuses to promote before the activity-log resync has finished.
//!
//! [`verdict`] is a pure function of the engine's status, re-evaluated on every state change by
//! the resource's task until it says [`Verdict::Resume`] or [`Verdict::Abandon`].

use replbd_quorum::{ConnectionState, DiskState, ReplicationState, Role};
use replbd_replication::Status;

use crate::config::ResourceSpec;

/// What to do with a device whose I/O waits for this node to be Primary again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet; the reason (for `status`).
    Wait(String),
    /// Promote and re-attach now.
    Resume,
    /// Another node is Primary: delete the device, failing its waiting I/O; the reason.
    Abandon(String),
}

/// Whether a connected peer's replication state is past the handshake, with nothing left to
/// receive from it: this node is in sync with it or its sync source. A resync *into* this node that
/// is still running on any link (even one made redundant by another source, which ends with the
/// target adopting that peer's generation) must finish before the node starts a new generation as
/// Primary.
fn settled(state: ReplicationState) -> bool {
    matches!(
        state,
        ReplicationState::Established
            | ReplicationState::SyncSource
            | ReplicationState::PausedSyncS
            | ReplicationState::Ahead
    )
}

/// The verdict for resource `spec` in state `status`.
pub fn verdict(spec: &ResourceSpec, status: &Status) -> Verdict {
    let connected: Vec<_> = status
        .peers
        .iter()
        .filter(|p| p.connection == ConnectionState::Connected)
        .collect();
    if let Some(p) = connected.iter().find(|p| p.role == Role::Primary) {
        return Verdict::Abandon(format!(
            "{} is Primary now, so the I/O that waited on this node's device since the daemon stopped \
             cannot be served here",
            spec.node_name(p.node)
        ));
    }
    if status.role == Role::Primary {
        return Verdict::Resume;
    }
    let nodes = spec.peers.len() + 1;
    let reachable = connected.len() + 1;
    if reachable < nodes / 2 + 1 {
        return Verdict::Wait(format!(
            "I/O waits until this node is Primary again: {reachable} of {nodes} nodes reachable, a majority is \
             needed to promote safely (or run `replbd-node primary {}`)",
            spec.name
        ));
    }
    if status.disk != DiskState::UpToDate {
        return Verdict::Wait(format!(
            "I/O waits until this node is Primary again: the local disk is {}, waiting for the resync",
            status.disk
        ));
    }
    if let Some(p) = connected.iter().find(|p| !settled(p.replication)) {
        return Verdict::Wait(format!(
            "I/O waits until this node is Primary again: handshake or resync with {} in progress ({})",
            spec.node_name(p.node),
            p.replication
        ));
    }
    Verdict::Resume
}

#[cfg(test)]
mod tests {
    use replbd_replication::engine::PeerStatus;

    use super::*;
    use crate::config::{FrontEndSpec, UblkSpec};

    fn spec(peers: usize) -> ResourceSpec {
        let names = ["alpha", "beta", "gamma", "delta"];
        let mut toml = "this-node = \"alpha\"\n[resource.r0]\n".to_owned();
        for (i, name) in names.iter().enumerate().take(peers + 1) {
            toml += &format!(
                "[[resource.r0.node]]\nname = \"{name}\"\nid = {i}\naddress = \"127.0.0.1:{}\"\n",
                7000 + i
            );
        }
        toml += "[[resource.r0.volume]]\ndisk = \"/tmp/x\"\n[resource.r0.net]\nshared-secret = \"s\"\n\
                 [resource.r0.front-end]\nkind = \"ublk\"\ndevice = 0\n";
        let c = crate::config::parse(&toml, std::path::Path::new("t.toml"), None).unwrap();
        assert_eq!(c.resources[0].front_end, FrontEndSpec::Ublk(UblkSpec::new(0)));
        c.resources[0].clone()
    }

    fn peer(node: u8, connection: ConnectionState, replication: ReplicationState, role: Role) -> PeerStatus {
        PeerStatus {
            node,
            connection,
            replication,
            disk: DiskState::UpToDate,
            role,
            out_of_sync: 0,
            sync: None,
        }
    }

    fn status(disk: DiskState, peers: Vec<PeerStatus>) -> Status {
        Status {
            name: "r0".into(),
            node: 0,
            role: Role::Secondary,
            disk,
            quorum: true,
            peers,
        }
    }

    use ConnectionState::{Connected, Connecting};
    use ReplicationState::{Established, Off, SyncTarget, WFBitMapT};

    #[test]
    fn resumes_with_a_majority_settled_and_up_to_date() {
        let s = spec(2);
        let established = peer(1, Connected, Established, Role::Secondary);
        let away = peer(2, Connecting, Off, Role::Unknown);
        assert_eq!(
            verdict(
                &s,
                &status(DiskState::UpToDate, vec![established.clone(), away.clone()])
            ),
            Verdict::Resume
        );
        // Alone of three: wait, and say how to go on by hand.
        let alone = verdict(&s, &status(DiskState::UpToDate, vec![away.clone(), away.clone()]));
        assert!(
            matches!(&alone, Verdict::Wait(w) if w.contains("1 of 3 nodes reachable") && w.contains("replbd-node primary r0")),
            "{alone:?}"
        );
        // A single-node resource is its own majority.
        assert_eq!(
            verdict(&spec(0), &status(DiskState::UpToDate, vec![])),
            Verdict::Resume
        );
        // Two nodes: the peer must be heard.
        assert!(matches!(
            verdict(
                &spec(1),
                &status(DiskState::UpToDate, vec![peer(1, Connecting, Off, Role::Unknown)])
            ),
            Verdict::Wait(_)
        ));
    }

    #[test]
    fn waits_for_the_handshake_and_the_resync() {
        let s = spec(2);
        let handshake = verdict(
            &s,
            &status(
                DiskState::UpToDate,
                vec![
                    peer(1, Connected, WFBitMapT, Role::Secondary),
                    peer(2, Connected, Established, Role::Secondary),
                ],
            ),
        );
        assert!(
            matches!(&handshake, Verdict::Wait(w) if w.contains("handshake or resync with beta in progress (WFBitMapT)")),
            "{handshake:?}"
        );
        // UpToDate through beta, but gamma's resync into this node has not ended yet.
        let redundant = verdict(
            &s,
            &status(
                DiskState::UpToDate,
                vec![
                    peer(1, Connected, Established, Role::Secondary),
                    peer(2, Connected, SyncTarget, Role::Secondary),
                ],
            ),
        );
        assert!(
            matches!(&redundant, Verdict::Wait(w) if w.contains("resync with gamma in progress (SyncTarget)")),
            "{redundant:?}"
        );
        let resync = verdict(
            &s,
            &status(
                DiskState::Inconsistent,
                vec![
                    peer(1, Connected, SyncTarget, Role::Secondary),
                    peer(2, Connected, SyncTarget, Role::Secondary),
                ],
            ),
        );
        assert!(
            matches!(&resync, Verdict::Wait(w) if w.contains("the local disk is Inconsistent")),
            "{resync:?}"
        );
    }

    #[test]
    fn abandons_when_another_node_took_over() {
        let s = spec(2);
        let v = verdict(
            &s,
            &status(
                DiskState::Outdated,
                vec![
                    peer(1, Connected, Established, Role::Secondary),
                    peer(2, Connected, Established, Role::Primary),
                ],
            ),
        );
        assert!(
            matches!(&v, Verdict::Abandon(w) if w.starts_with("gamma is Primary now")),
            "{v:?}"
        );
    }
}
