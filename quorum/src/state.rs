//! Roles, disk states, connection states and replication states, with DRBD's names.
//!
//! These are the words users see in `replbd resource list`, logs and events, and the words they already
//! know from DRBD, so `Display` is exactly DRBD's name (`UpToDate`, `DUnknown`, `WFBitMapS`) and
//! parsing accepts the same names in any case.
//!
//! Where DRBD compares states by their order (`disk >= Consistent`, `cstate >= Connected`), the enums
//! derive `Ord` in DRBD's declaration order, so the same comparisons read the same way here. The
//! helpers below name the comparisons the rest of replbd needs, so call sites say what they mean.

use crate::names::named_enum;

named_enum! {
    /// The role of a node for a resource.
    ///
    /// Only a Primary accepts application I/O; a resource normally has at most one (two only with
    /// `allow-two-primaries`, for live migration).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Role ("role") {
        /// Accepts application reads and writes and replicates the writes.
        Primary => "Primary",
        /// Receives replicated writes; the device is not open for writing.
        Secondary => "Secondary",
        /// A peer whose role is not known (not connected).
        Unknown => "Unknown",
    }
}

impl Role {
    /// Whether this is [`Role::Primary`].
    pub const fn is_primary(self) -> bool {
        matches!(self, Role::Primary)
    }
}

named_enum! {
    /// The state of a node's backing disk and of the data on it.
    ///
    /// Ordered like DRBD: `Diskless < Attaching < Detaching < Failed < Negotiating < Inconsistent <
    /// Outdated < DUnknown < Consistent < UpToDate`. Among the states that describe data
    /// (`Inconsistent`, `Outdated`, `Consistent`, `UpToDate`) a greater state is better data.
    /// `DUnknown` is how a node sees the disk of a peer it is not connected to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum DiskState ("disk state") {
        /// No backing disk; all I/O goes to peers.
        Diskless => "Diskless",
        /// The backing disk is being attached and its metadata read.
        Attaching => "Attaching",
        /// The backing disk is being detached.
        Detaching => "Detaching",
        /// The backing disk failed (I/O error) and is being detached.
        Failed => "Failed",
        /// The disk is attached and waits for the handshake with a peer to learn how good it is.
        Negotiating => "Negotiating",
        /// The data is a mix of generations (e.g. a resync target mid-way); unusable on its own.
        Inconsistent => "Inconsistent",
        /// Consistent but known to be older than a peer's data.
        Outdated => "Outdated",
        /// The disk state of a peer that is not connected.
        DUnknown => "DUnknown",
        /// Consistent, but whether it is the newest is not known (no connection to decide).
        Consistent => "Consistent",
        /// Consistent and the newest data; the only state that serves application I/O.
        UpToDate => "UpToDate",
    }
}

impl DiskState {
    /// Whether a disk in this state may serve application reads and writes: only `UpToDate`.
    pub const fn can_serve_io(self) -> bool {
        matches!(self, DiskState::UpToDate)
    }

    /// Whether this state describes data on an attached disk: `Inconsistent`, `Outdated`, `Consistent`
    /// or `UpToDate`. Only these states take part in comparing two disks by quality.
    pub const fn describes_data(self) -> bool {
        matches!(
            self,
            DiskState::Inconsistent | DiskState::Outdated | DiskState::Consistent | DiskState::UpToDate
        )
    }

    /// Whether the data is consistent (a single generation): `Outdated`, `Consistent` or `UpToDate`.
    pub const fn is_consistent(self) -> bool {
        matches!(
            self,
            DiskState::Outdated | DiskState::Consistent | DiskState::UpToDate
        )
    }

    /// Whether the state is `Outdated` or worse (DRBD's `disk <= D_OUTDATED`), i.e. a node in this
    /// state cannot hold newer data than the cluster: it may be ignored when fencing and by quorum.
    pub fn is_outdated_or_worse(self) -> bool {
        self <= DiskState::Outdated
    }
}

named_enum! {
    /// The state of the connection to one peer.
    ///
    /// Ordered like DRBD; everything below `Connecting` is a connection that is down or going down.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum ConnectionState ("connection state") {
        /// Not trying to connect (configured down, or dropped after split brain / unrelated data).
        StandAlone => "StandAlone",
        /// Going to StandAlone.
        Disconnecting => "Disconnecting",
        /// Transitional state before Connecting.
        Unconnected => "Unconnected",
        /// The peer stopped answering pings.
        Timeout => "Timeout",
        /// The connection was closed by the peer or the network.
        BrokenPipe => "BrokenPipe",
        /// A network error broke the connection.
        NetworkFailure => "NetworkFailure",
        /// The peer sent something that violates the protocol.
        ProtocolError => "ProtocolError",
        /// The connection is being torn down.
        TearDown => "TearDown",
        /// Trying to establish the connection.
        Connecting => "Connecting",
        /// Connected; see the replication state for what flows.
        Connected => "Connected",
    }
}

impl ConnectionState {
    /// Whether the connection is established (`Connected`).
    pub const fn is_connected(self) -> bool {
        matches!(self, ConnectionState::Connected)
    }

    /// Whether the connection is down because of an error (it will retry, unlike `StandAlone`).
    pub const fn is_failure(self) -> bool {
        matches!(
            self,
            ConnectionState::Timeout
                | ConnectionState::BrokenPipe
                | ConnectionState::NetworkFailure
                | ConnectionState::ProtocolError
        )
    }
}

named_enum! {
    /// What flows between this node and one connected peer, per volume.
    ///
    /// Ordered like DRBD: `Off` (not connected), `Established` (in sync, replicating), then the
    /// resync, verify and congestion states.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum ReplicationState ("replication state") {
        /// No replication (the connection is not up).
        Off => "Off",
        /// Connected and in sync; writes are replicated.
        Established => "Established",
        /// About to become SyncSource (full sync requested by the user).
        StartingSyncS => "StartingSyncS",
        /// About to become SyncTarget (full sync requested by the user).
        StartingSyncT => "StartingSyncT",
        /// Will be sync source; exchanging bitmaps.
        WFBitMapS => "WFBitMapS",
        /// Will be sync target; exchanging bitmaps.
        WFBitMapT => "WFBitMapT",
        /// Sync target waiting for the source's sync UUID.
        WFSyncUUID => "WFSyncUUID",
        /// Sending out-of-sync blocks to the peer.
        SyncSource => "SyncSource",
        /// Receiving out-of-sync blocks from the peer.
        SyncTarget => "SyncTarget",
        /// Online verify, this node started it.
        VerifyS => "VerifyS",
        /// Online verify, the peer started it.
        VerifyT => "VerifyT",
        /// Resync source, paused (resync-after dependency or user).
        PausedSyncS => "PausedSyncS",
        /// Resync target, paused (resync-after dependency or user).
        PausedSyncT => "PausedSyncT",
        /// Congested primary: only out-of-sync marks are sent (`on-congestion pull-ahead`).
        Ahead => "Ahead",
        /// The peer of an Ahead primary; held at most Outdated until it resyncs.
        Behind => "Behind",
    }
}

impl ReplicationState {
    /// Whether this node is, or is about to be, the source of a resync to the peer.
    pub const fn is_sync_source_side(self) -> bool {
        matches!(
            self,
            ReplicationState::StartingSyncS
                | ReplicationState::WFBitMapS
                | ReplicationState::SyncSource
                | ReplicationState::PausedSyncS
        )
    }

    /// Whether this node is, or is about to be, the target of a resync from the peer (its data is
    /// not complete until the resync finishes).
    pub const fn is_sync_target_side(self) -> bool {
        matches!(
            self,
            ReplicationState::StartingSyncT
                | ReplicationState::WFBitMapT
                | ReplicationState::WFSyncUUID
                | ReplicationState::SyncTarget
                | ReplicationState::PausedSyncT
        )
    }

    /// Whether replication to the peer is running (anything but `Off`): application writes reach it
    /// or are marked out-of-sync for it.
    pub const fn is_replicating(self) -> bool {
        !matches!(self, ReplicationState::Off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_drbd_name_and_parses_back_case_insensitively() {
        for r in Role::ALL {
            assert_eq!(r.to_string().parse::<Role>().unwrap(), *r);
            assert_eq!(r.to_string().to_lowercase().parse::<Role>().unwrap(), *r);
        }
        for d in DiskState::ALL {
            assert_eq!(d.to_string().to_uppercase().parse::<DiskState>().unwrap(), *d);
        }
        for c in ConnectionState::ALL {
            assert_eq!(
                c.to_string().to_lowercase().parse::<ConnectionState>().unwrap(),
                *c
            );
        }
        for l in ReplicationState::ALL {
            assert_eq!(
                l.to_string().to_lowercase().parse::<ReplicationState>().unwrap(),
                *l
            );
        }
    }

    #[test]
    fn names_are_exactly_drbds() {
        let disks: Vec<String> = DiskState::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            disks,
            [
                "Diskless",
                "Attaching",
                "Detaching",
                "Failed",
                "Negotiating",
                "Inconsistent",
                "Outdated",
                "DUnknown",
                "Consistent",
                "UpToDate"
            ]
        );
        let conns: Vec<String> = ConnectionState::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            conns,
            [
                "StandAlone",
                "Disconnecting",
                "Unconnected",
                "Timeout",
                "BrokenPipe",
                "NetworkFailure",
                "ProtocolError",
                "TearDown",
                "Connecting",
                "Connected"
            ]
        );
        let repl: Vec<String> = ReplicationState::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(
            repl,
            [
                "Off",
                "Established",
                "StartingSyncS",
                "StartingSyncT",
                "WFBitMapS",
                "WFBitMapT",
                "WFSyncUUID",
                "SyncSource",
                "SyncTarget",
                "VerifyS",
                "VerifyT",
                "PausedSyncS",
                "PausedSyncT",
                "Ahead",
                "Behind"
            ]
        );
        let roles: Vec<String> = Role::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(roles, ["Primary", "Secondary", "Unknown"]);
    }

    #[test]
    fn unknown_names_are_rejected_with_the_accepted_list() {
        let err = "uptodatee".parse::<DiskState>().unwrap_err();
        assert_eq!(err.what, "disk state");
        assert!(err.to_string().contains("UpToDate"), "{err}");
        assert!("".parse::<Role>().is_err());
    }

    #[test]
    fn disk_state_goodness_follows_drbd_order() {
        use DiskState::*;
        assert!(Inconsistent < Outdated && Outdated < Consistent && Consistent < UpToDate);
        assert!(UpToDate.can_serve_io());
        assert!(!Consistent.can_serve_io());
        assert!(Outdated.is_outdated_or_worse() && Inconsistent.is_outdated_or_worse());
        assert!(!DUnknown.is_outdated_or_worse() && !Consistent.is_outdated_or_worse());
        assert!(!DUnknown.describes_data() && Inconsistent.describes_data());
        assert!(Outdated.is_consistent() && !Inconsistent.is_consistent());
    }

    #[test]
    fn replication_state_groups() {
        use ReplicationState::*;
        assert!(SyncSource.is_sync_source_side() && PausedSyncS.is_sync_source_side());
        assert!(WFSyncUUID.is_sync_target_side() && !SyncSource.is_sync_target_side());
        assert!(!Off.is_replicating() && Ahead.is_replicating());
        assert!(ConnectionState::Connected.is_connected());
        assert!(ConnectionState::BrokenPipe.is_failure() && !ConnectionState::StandAlone.is_failure());
    }

    #[test]
    fn serde_reads_the_drbd_name_in_any_case() {
        use serde::Deserialize;
        use serde::de::IntoDeserializer;
        use serde::de::value::Error;

        let d: Result<DiskState, Error> = DiskState::deserialize("dunknown".into_deserializer());
        assert_eq!(d.unwrap(), DiskState::DUnknown);
        let bad: Result<DiskState, Error> = DiskState::deserialize("fresh".into_deserializer());
        assert!(bad.unwrap_err().to_string().contains("unknown disk state"));
    }
}
