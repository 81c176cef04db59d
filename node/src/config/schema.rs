//! The file as written: serde types that mirror the TOML tables one to one.
//!
//! Every table rejects keys it does not know (`deny_unknown_fields`), so a misspelt option is an
//! error with its line instead of a silently ignored setting. Values that the validator checks are
//! wrapped in [`Spanned`], which keeps their byte range in the file, so every error can name the
//! line it is about. Nothing here checks meaning: that is `config::validate`'s job, which turns these
//! types into the checked model of [`super::model`].
//!
//! The section names follow DRBD's configuration (`net`, `disk`, `options`, `handlers`, `on`-like
//! node entries), so DRBD users find each option where they expect it.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::values::Text;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFile {
    /// The name of the node this host is; defaults to the host name.
    pub this_node: Option<Spanned<String>>,
    /// Resources by name (`[resource.r0]`).
    #[serde(default)]
    pub resource: BTreeMap<String, Spanned<RawResource>>,
}

/// `[resource.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawResource {
    /// `[[resource.NAME.node]]`: every node of the resource.
    #[serde(default)]
    pub node: Vec<Spanned<RawNode>>,
    /// `[[resource.NAME.volume]]`: the volumes (exactly one for now).
    #[serde(default)]
    pub volume: Vec<Spanned<RawVolume>>,
    /// `[[resource.NAME.connection]]`: per-connection overrides of `net` options.
    #[serde(default)]
    pub connection: Vec<Spanned<RawConnection>>,
    /// `[resource.NAME.net]`.
    pub net: Option<Spanned<RawNet>>,
    /// `[resource.NAME.disk]`.
    pub disk: Option<Spanned<RawDisk>>,
    /// `[resource.NAME.options]`.
    pub options: Option<Spanned<RawOptions>>,
    /// `[resource.NAME.handlers]`.
    pub handlers: Option<Spanned<RawHandlers>>,
    /// `[resource.NAME.front-end]`.
    pub front_end: Option<Spanned<RawFrontEnd>>,
}

/// `[[resource.NAME.node]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNode {
    /// Node name (matched against `this-node` or the host name).
    pub name: Spanned<String>,
    /// Node id, 0–63, unique within the resource.
    pub id: Spanned<i64>,
    /// Replication address, `HOST:PORT`.
    pub address: Spanned<String>,
    /// An intentionally diskless node (client or tiebreaker).
    pub diskless: Option<Spanned<bool>>,
    /// This node's backing disk, overriding the volume's.
    pub disk: Option<Spanned<String>>,
    /// This node's metadata location, overriding the volume's.
    pub meta_disk: Option<Spanned<String>>,
}

/// `[[resource.NAME.volume]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawVolume {
    /// Volume number (0).
    pub number: Option<Spanned<i64>>,
    /// Data size: what `create-metadata` creates, and the least an attached disk must hold.
    pub size: Option<Spanned<Text>>,
    /// Backing disk (file or block device), the same path on every node unless a node overrides it.
    pub disk: Option<Spanned<String>>,
    /// `internal` or the path of external metadata.
    pub meta_disk: Option<Spanned<String>>,
    /// Create metadata on `up` when the disk has none (never overwrites).
    pub create_metadata: Option<Spanned<bool>>,
    /// Peer bitmap slots created with the metadata.
    pub max_peers: Option<Spanned<i64>>,
    /// Activity-log extents created with the metadata.
    pub al_extents: Option<Spanned<i64>>,
}

/// The `net` options that may differ per connection, as found in `net` or in a `connection`
/// (serde's `flatten` would lose the spans and the unknown-key check, so both tables list the keys
/// and lend them out through this view).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawConnectionOptions<'a> {
    /// `A`, `B` or `C`.
    pub protocol: Option<&'a Spanned<String>>,
    /// Allow two Primaries (needs protocol C).
    pub allow_two_primaries: Option<&'a Spanned<bool>>,
    /// `dont-care`, `resource-only`, `resource-and-stonith`.
    pub fencing: Option<&'a Spanned<String>>,
    /// `block`, `pull-ahead`, `disconnect`.
    pub on_congestion: Option<&'a Spanned<String>>,
}

macro_rules! connection_options {
    ($ty:ty) => {
        impl $ty {
            /// The connection options set in this table.
            pub fn connection_options(&self) -> RawConnectionOptions<'_> {
                RawConnectionOptions {
                    protocol: self.protocol.as_ref(),
                    allow_two_primaries: self.allow_two_primaries.as_ref(),
                    fencing: self.fencing.as_ref(),
                    on_congestion: self.on_congestion.as_ref(),
                }
            }
        }
    };
}
connection_options!(RawNet);
connection_options!(RawConnection);

/// `[[resource.NAME.connection]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConnection {
    /// The two node names this connection joins.
    pub hosts: Spanned<Vec<String>>,
    /// `A`, `B` or `C`.
    pub protocol: Option<Spanned<String>>,
    /// Allow two Primaries (needs protocol C).
    pub allow_two_primaries: Option<Spanned<bool>>,
    /// `dont-care`, `resource-only`, `resource-and-stonith`.
    pub fencing: Option<Spanned<String>>,
    /// `block`, `pull-ahead`, `disconnect`.
    pub on_congestion: Option<Spanned<String>>,
}

/// `[resource.NAME.net]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNet {
    /// Default protocol of every connection: `A`, `B` or `C`.
    pub protocol: Option<Spanned<String>>,
    /// Allow two Primaries (needs protocol C).
    pub allow_two_primaries: Option<Spanned<bool>>,
    /// `dont-care`, `resource-only`, `resource-and-stonith`.
    pub fencing: Option<Spanned<String>>,
    /// `block`, `pull-ahead`, `disconnect`.
    pub on_congestion: Option<Spanned<String>>,
    /// The shared secret.
    pub shared_secret: Option<Spanned<String>>,
    /// A file holding the shared secret.
    pub shared_secret_file: Option<Spanned<String>>,
    /// This node's TLS certificate chain (PEM) for replication connections.
    pub tls_certificate: Option<Spanned<String>>,
    /// Its private key (PEM).
    pub tls_key: Option<Spanned<String>>,
    /// The CA certificates peers' certificates must be signed by (PEM).
    pub tls_ca: Option<Spanned<String>>,
    /// `crc32c` (or `none`).
    pub data_integrity_alg: Option<Spanned<String>>,
    /// Checksum resync digest: `crc32c` or `sha256` (unset: plain resync).
    pub csums_alg: Option<Spanned<String>>,
    /// Online verify digest: `crc32c` (default) or `sha256`.
    pub verify_alg: Option<Spanned<String>>,
    /// after-sb-0pri policy.
    pub after_sb_0pri: Option<Spanned<String>>,
    /// after-sb-1pri policy.
    pub after_sb_1pri: Option<Spanned<String>>,
    /// after-sb-2pri policy.
    pub after_sb_2pri: Option<Spanned<String>>,
    /// rr-conflict policy.
    pub rr_conflict: Option<Spanned<String>>,
    /// always-asbp.
    pub always_asbp: Option<bool>,
    /// Ack timeout.
    pub timeout: Option<Spanned<String>>,
    /// Connection attempt timeout.
    pub connect_timeout: Option<Spanned<String>>,
    /// Keepalive interval.
    pub ping_int: Option<Spanned<String>>,
    /// Keepalive answer timeout.
    pub ping_timeout: Option<Spanned<String>>,
    /// Longest delay between connection attempts.
    pub connect_int: Option<Spanned<String>>,
    /// First delay between connection attempts.
    pub connect_int_min: Option<Spanned<String>>,
    /// Remote read timeout before another peer is tried.
    pub read_timeout: Option<Spanned<String>>,
    /// Writes per epoch.
    pub max_epoch_size: Option<Spanned<i64>>,
    /// Bytes of unacknowledged writes per peer.
    pub max_buffers: Option<Spanned<Text>>,
    /// Bytes in flight that make a protocol-A link congested (`on-congestion`); 0 never.
    pub congestion_fill: Option<Spanned<Text>>,
}

/// `[resource.NAME.disk]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDisk {
    /// Read balancing policy.
    pub read_balancing: Option<Spanned<String>>,
    /// Resync rate ceiling.
    pub c_max_rate: Option<Spanned<Text>>,
    /// Resync rate floor.
    pub c_min_rate: Option<Spanned<Text>>,
    /// Resync data in flight.
    pub c_fill_target: Option<Spanned<Text>>,
    /// Resync controller look-ahead.
    pub c_plan_ahead: Option<Spanned<String>>,
}

/// `[resource.NAME.options]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawOptions {
    /// `off`, `majority`, `all` or a number.
    pub quorum: Option<Spanned<Text>>,
    /// `off`, `majority`, `all` or a number.
    pub quorum_minimum_redundancy: Option<Spanned<Text>>,
    /// `io-error` or `suspend-io`.
    pub on_no_quorum: Option<Spanned<String>>,
}

/// `[resource.NAME.handlers]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHandlers {
    /// fence-peer command.
    pub fence_peer: Option<Spanned<String>>,
    /// unfence-peer command.
    pub unfence_peer: Option<Spanned<String>>,
    /// pri-lost-after-sb command.
    pub pri_lost_after_sb: Option<Spanned<String>>,
    /// quorum-lost command.
    pub quorum_lost: Option<Spanned<String>>,
    /// pri-lost command (`rr-conflict call-pri-lost`).
    pub pri_lost: Option<Spanned<String>>,
}

/// `[resource.NAME.front-end]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFrontEnd {
    /// `ublk`, `nbd` or `none`.
    pub kind: Spanned<String>,
    /// NBD unix socket path.
    pub socket: Option<Spanned<String>>,
    /// NBD TCP port on 127.0.0.1.
    pub port: Option<Spanned<i64>>,
    /// ublk: the `N` of `/dev/ublkbN`.
    pub device: Option<Spanned<i64>>,
    /// ublk: hardware queues (one serving thread each).
    pub queues: Option<Spanned<i64>>,
    /// ublk: requests in flight per queue.
    pub queue_depth: Option<Spanned<i64>>,
    /// ublk: logical block size, 512 or 4096.
    pub logical_block_size: Option<Spanned<i64>>,
}
