//! Message kinds.

use std::fmt;

use super::{MAX_CONTROL_PAYLOAD, MAX_DATA_PAYLOAD};

macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident = $code:expr, $limit:expr;)*) => {
        /// The kind of a frame.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Kind {
            $($(#[$doc])* $name = $code,)*
        }

        impl Kind {
            /// The kind with wire code `code`.
            pub fn from_code(code: u16) -> Option<Kind> {
                match code {
                    $($code => Some(Kind::$name),)*
                    _ => None,
                }
            }

            /// Largest payload a frame of this kind may carry.
            pub fn payload_limit(self) -> u32 {
                match self {
                    $(Kind::$name => $limit,)*
                }
            }
        }

        impl fmt::Display for Kind {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $(Kind::$name => stringify!($name),)*
                })
            }
        }
    };
}

kinds! {
    /// Version negotiation, identities and an authentication challenge. `seq`/`sector`/`aux` unused.
    Hello = 1, MAX_CONTROL_PAYLOAD;
    /// The answer to the peer's challenge.
    AuthResponse = 2, MAX_CONTROL_PAYLOAD;
    /// A fatal error the sender explains before closing (version mismatch, authentication…).
    Error = 3, MAX_CONTROL_PAYLOAD;
    /// Role, disk state, size, protocol and generation identifiers.
    StateReport = 4, MAX_CONTROL_PAYLOAD;
    /// Keepalive request; `seq` is echoed.
    Ping = 5, 0;
    /// Keepalive answer.
    Pong = 6, 0;
    /// The sender is leaving on purpose (down or disconnect), not failing.
    Leaving = 7, 0;
    /// An application write: `seq` request id, `sector` start, `aux` epoch, payload the data.
    Data = 16, MAX_DATA_PAYLOAD;
    /// Protocol B: the write `seq` was received.
    RecvAck = 17, 0;
    /// Protocol C: the write `seq` is written on the peer's disk.
    WriteAck = 18, 0;
    /// The peer's local write `seq` failed; `aux` is the errno.
    NegAck = 19, 0;
    /// Closes epoch `aux`: apply every earlier write, flush, then acknowledge.
    Barrier = 20, 0;
    /// Every write of epochs up to `aux` is applied and durable on the peer.
    BarrierAck = 21, 0;
    /// Protocol B: barrier `aux` was received.
    BarrierRecvAck = 22, 0;
    /// Discard: `seq`, `sector`, `aux` epoch; payload an u64 byte length.
    Discard = 23, 8;
    /// Write zeroes: `seq`, `sector`, `aux` epoch; payload an u64 byte length.
    WriteZeroes = 24, 8;
    /// Every write of epoch `aux` is durable on the peers in the node-id bit set `seq` (see
    /// `engine::peer_ack`).
    PeerAck = 25, 0;
    /// The sender holds data for `aux` bytes at `sector` that the receiver lacks.
    OutOfSync = 26, 0;
    /// The sender's link to the receiver is congested (`on-congestion pull-ahead`): it is Ahead,
    /// the receiver Behind — it gets only `OutOfSync` marks until the sender starts a resync.
    Ahead = 27, 0;
    /// A diskless node's read: `seq`, `sector`, `aux` byte length.
    ReadRequest = 32, 0;
    /// The data of read `seq`.
    ReadReply = 33, MAX_DATA_PAYLOAD;
    /// Read `seq` failed; `aux` is the errno.
    ReadError = 34, 0;
    /// Part of the sender's bitmap for the receiver (see `engine::resync::exchange`).
    BitmapChunk = 40, MAX_CONTROL_PAYLOAD;
    /// The sender's bitmap is complete.
    BitmapDone = 41, 0;
    /// SyncTarget asks for `aux` bytes at `sector`; payload: the ordering prefix (primary node id
    /// u8, its newest write seq the target received u64; see `engine::resync::order`).
    ResyncRequest = 42, 9;
    /// SyncSource's data for request `seq`.
    ResyncData = 43, MAX_DATA_PAYLOAD;
    /// SyncTarget wrote `aux` bytes at `sector`: the source may clear those bits.
    ResyncAck = 44, 0;
    /// Checksum resync: the ordering prefix, then SyncTarget's block size (u32) and per-block
    /// digests of `aux` bytes at `sector`.
    ChecksumRequest = 45, (16 << 10) + 9;
    /// The digests matched: `aux` bytes at `sector` are in sync.
    InSync = 46, 0;
    /// Online verify: per-block digests of `aux` bytes at `sector`.
    VerifyRequest = 47, MAX_CONTROL_PAYLOAD;
    /// Online verify: a bitmap of the blocks whose digests differ.
    VerifyReply = 48, MAX_CONTROL_PAYLOAD;
    /// SyncTarget has no more out-of-sync blocks.
    ResyncDone = 49, 0;
    /// SyncSource ends the resync; `aux` is its current UUID, which the target adopts.
    ResyncFinished = 50, 0;
    /// Start a resync now: payload `[target, full]` (target 0: the sender, 1: the receiver).
    StartSync = 51, 2;
    /// SyncSource cannot serve the resync now (another node is writing); the target retries later.
    ResyncPaused = 52, 0;
    /// Online verify is complete.
    VerifyDone = 53, 0;
    /// The sender lost Primary `aux` holding its writes through `seq`; `sector` 1 asks for the
    /// receiver's own position back (see `engine::lost_primary`).
    LostPrimary = 54, 0;
}
