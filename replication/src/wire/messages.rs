//! Control messages: the payloads of handshake and state frames, encoded with bincode (standard
//! configuration, at most [`MAX_CONTROL_PAYLOAD`](super::MAX_CONTROL_PAYLOAD) bytes).

use bincode::{Decode, Encode};
use bytes::Bytes;

use super::{FrameHeader, Kind, MAX_CONTROL_PAYLOAD, OutFrame, WireError};

/// Sent first by both ends of a new connection.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Hello {
    /// Oldest protocol version the sender speaks.
    pub min_version: u16,
    /// Newest protocol version the sender speaks.
    pub max_version: u16,
    /// The resource this connection is for.
    pub resource: String,
    /// The sender's node id.
    pub node: u8,
    /// The node id the sender believes it is talking to.
    pub peer: u8,
    /// Random challenge for the receiver to answer.
    pub nonce: [u8; 32],
}

/// The answer to the peer's challenge: HMAC-SHA256 over the handshake (see [`crate::auth`]).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AuthResponse {
    /// The MAC.
    pub mac: [u8; 32],
}

/// Why the sender is about to close the connection.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ErrorMessage {
    /// Machine-readable reason.
    pub code: ErrorCode,
    /// For the log on the other side.
    pub message: String,
}

/// Reasons for [`ErrorMessage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ErrorCode {
    /// No common protocol version.
    VersionMismatch,
    /// The connection is for a resource the receiver does not have.
    UnknownResource,
    /// The node ids do not match the configuration.
    WrongNode,
    /// The peer failed authentication.
    AuthFailed,
    /// Configurations disagree (protocol, size, integrity…).
    Incompatible,
    /// Anything else.
    Other,
}

/// The state a node reports at connect time (and on changes).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StateReport {
    /// Role: 0 Secondary, 1 Primary.
    pub role: u8,
    /// Disk state, as `replbd_quorum::DiskState`'s index.
    pub disk: u8,
    /// Data size in bytes (0 for a diskless node).
    pub size: u64,
    /// Replication protocol the sender configured for this connection: 0 A, 1 B, 2 C.
    pub protocol: u8,
    /// Whether the sender wants payload checksums.
    pub integrity: bool,
    /// Current UUID.
    pub current_uuid: u64,
    /// Bitmap UUIDs by peer node id: `(node, uuid)`.
    pub bitmap_uuids: Vec<(u8, u64)>,
    /// History UUIDs, newest first.
    pub history: Vec<u64>,
    /// Generation flags (consistent, was-up-to-date, crashed-primary, lost-quorum).
    pub flags: u32,
    /// Sectors written.
    pub dagtag: u64,
    /// The sender stayed up since it was last connected to the receiver (a reconnect, not a restart).
    pub reconnect: bool,
    /// Peers the sender's bitmap has out-of-sync blocks for, by node id (blocks marked by an online
    /// verify or a failed peer write while the generations stayed equal).
    pub dirty_for: Vec<u8>,
    /// A Primary's diskful peers that its writes reach (node-id bit set).
    pub replicating: u64,
    /// The sender has quorum.
    pub quorate: bool,
    /// The sender was connected with `--discard-my-data` (handshake only).
    pub discard_my_data: bool,
    /// Bytes the sender's bitmap marks out of sync for the receiver (handshake only): its changes
    /// since they parted, for the `discard-least-changes` split-brain policies.
    pub changes: u64,
    /// The generation the sender last completed a resync to (0: none since it started), and from
    /// which node.
    pub synced_uuid: u64,
    /// See `synced_uuid`.
    pub synced_from: u8,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_CONTROL_PAYLOAD as usize }>()
}

/// Encodes `msg` as a frame of `kind`.
pub fn encode<T: Encode>(kind: Kind, msg: &T) -> OutFrame {
    // Encoding into a Vec cannot fail for these plain types.
    let payload = bincode::encode_to_vec(msg, config()).unwrap_or_default();
    OutFrame {
        header: FrameHeader::new(kind),
        payload: Bytes::from(payload),
    }
}

/// Decodes the payload of a `kind` frame as `T`, requiring every byte to be used.
pub fn decode<T: Decode<()>>(kind: Kind, payload: &[u8]) -> Result<T, WireError> {
    let (msg, used) = bincode::decode_from_slice(payload, config()).map_err(|e| WireError::Malformed {
        kind,
        reason: e.to_string(),
    })?;
    if used != payload.len() {
        return Err(WireError::Malformed {
            kind,
            reason: format!("{} trailing bytes", payload.len() - used),
        });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_malformed() {
        let h = Hello {
            min_version: 1,
            max_version: 1,
            resource: "r0".into(),
            node: 1,
            peer: 2,
            nonce: [7; 32],
        };
        let f = encode(Kind::Hello, &h);
        assert_eq!(decode::<Hello>(Kind::Hello, &f.payload).unwrap(), h);
        assert!(decode::<Hello>(Kind::Hello, &f.payload[..10]).is_err());
        let mut long = f.payload.to_vec();
        long.push(0);
        assert!(decode::<Hello>(Kind::Hello, &long).is_err());
        // A string length claiming gigabytes must not allocate them.
        let evil = [1u8, 1, 0xfc, 0xff, 0xff, 0xff, 0x7f];
        assert!(decode::<Hello>(Kind::Hello, &evil).is_err());
    }
}
