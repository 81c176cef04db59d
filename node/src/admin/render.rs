//! The human-readable `status` output, in `drbdadm status`'s layout with node names:
//!
//! ```text
//! r0 role:Primary
//!   disk:UpToDate
//!   front-end:nbd unix:/run/replbd/r0.nbd serving
//!   beta role:Secondary
//!     replication:Established peer-disk:UpToDate
//!   gamma connection:Connecting
//! ```
//!
//! A peer that is not connected shows only its connection state; one with data to resync shows
//! `out-of-sync:` and, while a resync runs, `done:` in percent like DRBD.

use std::fmt::Write;

use replbd_bitmap::units::human_size;
use replbd_quorum::ConnectionState;

use super::report::{FrontEndReport, ResourceReport};

/// Renders the reports, one block per resource.
pub fn status_text(reports: &[ResourceReport]) -> String {
    let mut out = String::new();
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        resource(&mut out, r);
    }
    out
}

fn front_end(f: &FrontEndReport) -> String {
    let mut s = format!("front-end:{}", f.kind);
    if let Some(a) = &f.address {
        let _ = write!(s, " {a}");
    }
    if f.kind != "none" {
        let _ = write!(s, " {}", f.state);
    }
    if let Some(r) = &f.reason {
        let _ = write!(s, " ({r})");
    }
    s
}

fn resource(out: &mut String, r: &ResourceReport) {
    let (Some(role), Some(disk)) = (r.role, r.disk) else {
        let _ = writeln!(out, "{} down (node {})", r.name, r.node);
        return;
    };
    let _ = writeln!(out, "{} role:{role}", r.name);
    let _ = write!(out, "  disk:{disk}");
    if r.quorum == Some(false) {
        out.push_str(" quorum:no");
    }
    out.push('\n');
    let _ = writeln!(out, "  {}", front_end(&r.front_end));
    for p in &r.peers {
        if p.connection != ConnectionState::Connected {
            let _ = writeln!(out, "  {} connection:{}", p.name, p.connection);
            if p.out_of_sync_bytes > 0 {
                let _ = writeln!(out, "    out-of-sync:{}", human_size(p.out_of_sync_bytes));
            }
            continue;
        }
        let _ = writeln!(out, "  {} role:{}", p.name, p.role);
        let _ = write!(out, "    replication:{} peer-disk:{}", p.replication, p.peer_disk);
        if let Some(done) = p.done_percent {
            let _ = write!(out, " done:{done:.2}");
        }
        if p.out_of_sync_bytes > 0 {
            let _ = write!(out, " out-of-sync:{}", human_size(p.out_of_sync_bytes));
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use replbd_quorum::{DiskState, ReplicationState, Role};

    use super::super::report::PeerReport;
    use super::*;

    fn peer(name: &str, id: u8, connection: ConnectionState) -> PeerReport {
        PeerReport {
            name: name.into(),
            node_id: id,
            connection,
            replication: ReplicationState::Established,
            peer_disk: DiskState::UpToDate,
            role: Role::Secondary,
            out_of_sync_bytes: 0,
            done_percent: None,
        }
    }

    #[test]
    fn status_reads_like_drbdadm_with_names() {
        let mut syncing = peer("delta", 3, ConnectionState::Connected);
        syncing.replication = ReplicationState::SyncSource;
        syncing.peer_disk = DiskState::Inconsistent;
        syncing.out_of_sync_bytes = 57 << 20;
        syncing.done_percent = Some(43.0);
        let mut gone = peer("gamma", 2, ConnectionState::Connecting);
        gone.out_of_sync_bytes = 4096;
        let up = ResourceReport {
            name: "r0".into(),
            node: "alpha".into(),
            node_id: 0,
            up: true,
            role: Some(Role::Primary),
            disk: Some(DiskState::UpToDate),
            quorum: Some(true),
            volume: 0,
            size_bytes: 100 << 20,
            front_end: FrontEndReport {
                kind: "nbd".into(),
                address: Some("unix:/run/replbd/r0.nbd".into()),
                state: "serving".into(),
                reason: None,
            },
            peers: vec![peer("beta", 1, ConnectionState::Connected), gone, syncing],
        };
        let down = ResourceReport {
            name: "r1".into(),
            up: false,
            role: None,
            disk: None,
            peers: Vec::new(),
            ..up.clone()
        };
        assert_eq!(
            status_text(&[up, down]),
            "r0 role:Primary\n  disk:UpToDate\n  front-end:nbd unix:/run/replbd/r0.nbd serving\n  beta role:Secondary\n    replication:Established peer-disk:UpToDate\n  gamma connection:Connecting\n    out-of-sync:4KiB\n  delta role:Secondary\n    replication:SyncSource peer-disk:Inconsistent done:43.00 out-of-sync:57MiB\n\nr1 down (node alpha)\n"
        );
    }
}
