//! NBD wire format: magic numbers, option/reply/command codes and flags, and the fixed-size
//! structures the handshake and transmission phases exchange.
//!
//! Names follow the protocol document (`NBD_OPT_GO`, `NBD_CMD_WRITE`, …) so each constant can be
//! looked up there. Everything on the wire is big endian. Only what this server speaks is listed:
//! fixed-newstyle negotiation, the `INFO` extension (`NBD_OPT_INFO`/`NBD_OPT_GO`) and simple replies.
//! Encoding and decoding here are pure functions on byte slices, so they can be fuzzed and tested
//! without sockets.

use thiserror::Error;

/// First 8 bytes the server sends: ASCII `NBDMAGIC`.
pub const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943;
/// Newstyle magic (ASCII `IHAVEOPT`): sent by the server after [`NBD_MAGIC`], and by the client
/// before every option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of every option reply the server sends during fixed-newstyle negotiation.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Magic of every transmission request.
pub const NBD_REQUEST_MAGIC: u32 = 0x2560_9513;
/// Magic of a simple reply.
pub const NBD_SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

/// Handshake flag: the server speaks fixed newstyle.
pub const NBD_FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag: the server can omit the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
pub const NBD_FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag: the client speaks fixed newstyle.
pub const NBD_FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag: the client does not want the 124 zero bytes after `NBD_OPT_EXPORT_NAME`.
pub const NBD_FLAG_C_NO_ZEROES: u32 = 1 << 1;
/// Every client flag this server knows; any other bit makes it close the connection (the protocol
/// requires that).
pub const KNOWN_CLIENT_FLAGS: u32 = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

/// Option: choose an export and enter transmission (no way to report an error).
pub const NBD_OPT_EXPORT_NAME: u32 = 1;
/// Option: end the negotiation.
pub const NBD_OPT_ABORT: u32 = 2;
/// Option: list the exports.
pub const NBD_OPT_LIST: u32 = 3;
/// Option: upgrade to TLS (not supported).
pub const NBD_OPT_STARTTLS: u32 = 5;
/// Option: describe an export without entering transmission.
pub const NBD_OPT_INFO: u32 = 6;
/// Option: describe an export and enter transmission.
pub const NBD_OPT_GO: u32 = 7;
/// Option: ask for structured replies (refused: this server sends simple replies only).
pub const NBD_OPT_STRUCTURED_REPLY: u32 = 8;

/// Option reply: the option succeeded (or a list is complete).
pub const NBD_REP_ACK: u32 = 1;
/// Option reply: one export of `NBD_OPT_LIST`.
pub const NBD_REP_SERVER: u32 = 2;
/// Option reply: one piece of export information for `NBD_OPT_INFO`/`NBD_OPT_GO`.
pub const NBD_REP_INFO: u32 = 3;
/// Bit set on every error reply type.
pub const NBD_REP_FLAG_ERROR: u32 = 1 << 31;
/// Error reply: the option is unknown to or unsupported by this server.
pub const NBD_REP_ERR_UNSUP: u32 = NBD_REP_FLAG_ERROR | 1;
/// Error reply: the option is known but malformed.
pub const NBD_REP_ERR_INVALID: u32 = NBD_REP_FLAG_ERROR | 3;
/// Error reply: the requested export does not exist.
pub const NBD_REP_ERR_UNKNOWN: u32 = NBD_REP_FLAG_ERROR | 6;

/// Information type: size and transmission flags (always sent).
pub const NBD_INFO_EXPORT: u16 = 0;
/// Information type: the export's canonical name.
pub const NBD_INFO_NAME: u16 = 1;
/// Information type: block size constraints.
pub const NBD_INFO_BLOCK_SIZE: u16 = 3;

/// Transmission flag: must always be set.
pub const NBD_FLAG_HAS_FLAGS: u16 = 1 << 0;
/// Transmission flag: `NBD_CMD_FLUSH` is supported.
pub const NBD_FLAG_SEND_FLUSH: u16 = 1 << 2;
/// Transmission flag: `NBD_CMD_FLAG_FUA` is supported.
pub const NBD_FLAG_SEND_FUA: u16 = 1 << 3;
/// Transmission flag: `NBD_CMD_TRIM` is supported.
pub const NBD_FLAG_SEND_TRIM: u16 = 1 << 5;
/// Transmission flag: `NBD_CMD_WRITE_ZEROES` is supported.
pub const NBD_FLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// Transmission flag: flushes and FUA are visible across every connection to the export, so a client
/// may spread its requests over several connections.
pub const NBD_FLAG_CAN_MULTI_CONN: u16 = 1 << 8;

/// Command: read.
pub const NBD_CMD_READ: u16 = 0;
/// Command: write (the payload follows the header).
pub const NBD_CMD_WRITE: u16 = 1;
/// Command: disconnect after every in-flight request is answered (no reply).
pub const NBD_CMD_DISC: u16 = 2;
/// Command: flush.
pub const NBD_CMD_FLUSH: u16 = 3;
/// Command: trim (discard).
pub const NBD_CMD_TRIM: u16 = 4;
/// Command: write zeroes.
pub const NBD_CMD_WRITE_ZEROES: u16 = 6;

/// Command flag: force unit access.
pub const NBD_CMD_FLAG_FUA: u16 = 1 << 0;
/// Command flag on `NBD_CMD_WRITE_ZEROES`: do not leave a hole (always true here: zeroes are written).
pub const NBD_CMD_FLAG_NO_HOLE: u16 = 1 << 1;

/// Bytes of the server's first message (`NBDMAGIC`, `IHAVEOPT`, handshake flags).
pub const GREETING_LEN: usize = 18;
/// Bytes of an option header sent by the client (magic, option, length).
pub const OPTION_HEADER_LEN: usize = 16;
/// Bytes of a transmission request header.
pub const REQUEST_HEADER_LEN: usize = 28;
/// Bytes of a simple reply header.
pub const SIMPLE_REPLY_LEN: usize = 16;
/// Zero bytes after the `NBD_OPT_EXPORT_NAME` reply unless the client negotiated
/// `NBD_FLAG_C_NO_ZEROES`.
pub const EXPORT_NAME_PADDING: usize = 124;

/// A fixed-size structure could not be decoded.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the structure needs.
    #[error("{what} needs {need} bytes, got {got}")]
    Truncated {
        /// The structure.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes there were.
        got: usize,
    },
    /// The magic number is wrong: the peer does not speak NBD, or the stream is out of step.
    #[error("{what} has magic {found:#x}, expected {expected:#x}")]
    BadMagic {
        /// The structure.
        what: &'static str,
        /// The magic it must have.
        expected: u64,
        /// The magic it had.
        found: u64,
    },
}

fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn be_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array(buf, at))
}

fn be_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(array(buf, at))
}

fn be_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(array(buf, at))
}

fn need(what: &'static str, buf: &[u8], need: usize) -> Result<(), WireError> {
    if buf.len() < need {
        return Err(WireError::Truncated {
            what,
            need,
            got: buf.len(),
        });
    }
    Ok(())
}

/// The server's first message: `NBDMAGIC`, `IHAVEOPT` and the handshake flags.
pub fn encode_greeting(handshake_flags: u16) -> [u8; GREETING_LEN] {
    let mut out = [0u8; GREETING_LEN];
    out[..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    out[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    out[16..].copy_from_slice(&handshake_flags.to_be_bytes());
    out
}

/// The header of one option the client sends during negotiation; `length` bytes of data follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionHeader {
    /// Option code (`NBD_OPT_*`).
    pub option: u32,
    /// Length of the option data that follows.
    pub length: u32,
}

impl OptionHeader {
    /// Decodes the first [`OPTION_HEADER_LEN`] bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<OptionHeader, WireError> {
        need("option header", buf, OPTION_HEADER_LEN)?;
        let magic = be_u64(buf, 0);
        if magic != IHAVEOPT {
            return Err(WireError::BadMagic {
                what: "option header",
                expected: IHAVEOPT,
                found: magic,
            });
        }
        Ok(OptionHeader {
            option: be_u32(buf, 8),
            length: be_u32(buf, 12),
        })
    }

    /// Encodes the header as a client sends it.
    pub fn encode(&self) -> [u8; OPTION_HEADER_LEN] {
        let mut out = [0u8; OPTION_HEADER_LEN];
        out[..8].copy_from_slice(&IHAVEOPT.to_be_bytes());
        out[8..12].copy_from_slice(&self.option.to_be_bytes());
        out[12..].copy_from_slice(&self.length.to_be_bytes());
        out
    }
}

/// One reply the server sends to an option (fixed newstyle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionReply {
    /// The option answered.
    pub option: u32,
    /// Reply type (`NBD_REP_*`).
    pub reply: u32,
    /// Reply data; for errors, a message for the user.
    pub data: Vec<u8>,
}

impl OptionReply {
    /// A reply without data.
    pub fn ack(option: u32) -> OptionReply {
        OptionReply {
            option,
            reply: NBD_REP_ACK,
            data: Vec::new(),
        }
    }

    /// An error reply carrying a message for the user.
    pub fn error(option: u32, reply: u32, message: &str) -> OptionReply {
        OptionReply {
            option,
            reply,
            data: message.as_bytes().to_vec(),
        }
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        self.reply & NBD_REP_FLAG_ERROR != 0
    }

    /// Appends the encoded reply (header and data) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
        out.extend_from_slice(&self.option.to_be_bytes());
        out.extend_from_slice(&self.reply.to_be_bytes());
        // Reply data is built by this server and bounded far below 4 GiB.
        out.extend_from_slice(&(self.data.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.data);
    }
}

/// Data of an `NBD_REP_INFO` reply of type `NBD_INFO_EXPORT`: size and transmission flags.
pub fn info_export(size: u64, transmission_flags: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&NBD_INFO_EXPORT.to_be_bytes());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&transmission_flags.to_be_bytes());
    out
}

/// Data of an `NBD_REP_INFO` reply of type `NBD_INFO_BLOCK_SIZE`.
pub fn info_block_size(minimum: u32, preferred: u32, maximum: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.extend_from_slice(&NBD_INFO_BLOCK_SIZE.to_be_bytes());
    out.extend_from_slice(&minimum.to_be_bytes());
    out.extend_from_slice(&preferred.to_be_bytes());
    out.extend_from_slice(&maximum.to_be_bytes());
    out
}

/// Data of an `NBD_REP_INFO` reply of type `NBD_INFO_NAME`.
pub fn info_name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + name.len());
    out.extend_from_slice(&NBD_INFO_NAME.to_be_bytes());
    out.extend_from_slice(name.as_bytes());
    out
}

/// The server's answer to `NBD_OPT_EXPORT_NAME`: size, transmission flags and, unless the client
/// negotiated `NBD_FLAG_C_NO_ZEROES`, 124 zero bytes.
pub fn encode_export_name_reply(size: u64, transmission_flags: u16, no_zeroes: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + EXPORT_NAME_PADDING);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&transmission_flags.to_be_bytes());
    if !no_zeroes {
        out.resize(out.len() + EXPORT_NAME_PADDING, 0);
    }
    out
}

/// The header of one transmission request, as sent by the client. For `NBD_CMD_WRITE`, `length`
/// bytes of payload follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// Command flags (`NBD_CMD_FLAG_*`).
    pub flags: u16,
    /// Command type (`NBD_CMD_*`).
    pub command: u16,
    /// Opaque value the reply echoes (the protocol's "handle" or "cookie").
    pub cookie: u64,
    /// Byte offset.
    pub offset: u64,
    /// Length in bytes.
    pub length: u32,
}

impl RequestHeader {
    /// Decodes the first [`REQUEST_HEADER_LEN`] bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<RequestHeader, WireError> {
        need("request header", buf, REQUEST_HEADER_LEN)?;
        let magic = be_u32(buf, 0);
        if magic != NBD_REQUEST_MAGIC {
            return Err(WireError::BadMagic {
                what: "request header",
                expected: u64::from(NBD_REQUEST_MAGIC),
                found: u64::from(magic),
            });
        }
        Ok(RequestHeader {
            flags: be_u16(buf, 4),
            command: be_u16(buf, 6),
            cookie: be_u64(buf, 8),
            offset: be_u64(buf, 16),
            length: be_u32(buf, 24),
        })
    }

    /// Encodes the header as a client sends it.
    pub fn encode(&self) -> [u8; REQUEST_HEADER_LEN] {
        let mut out = [0u8; REQUEST_HEADER_LEN];
        out[..4].copy_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&self.flags.to_be_bytes());
        out[6..8].copy_from_slice(&self.command.to_be_bytes());
        out[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        out[16..24].copy_from_slice(&self.offset.to_be_bytes());
        out[24..].copy_from_slice(&self.length.to_be_bytes());
        out
    }
}

/// The header of a simple reply: `error` is 0 on success; a successful read's data follows it.
pub fn encode_simple_reply(error: u32, cookie: u64) -> [u8; SIMPLE_REPLY_LEN] {
    let mut out = [0u8; SIMPLE_REPLY_LEN];
    out[..4].copy_from_slice(&NBD_SIMPLE_REPLY_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&error.to_be_bytes());
    out[8..].copy_from_slice(&cookie.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_header_round_trips_and_checks_magic() {
        let h = RequestHeader {
            flags: NBD_CMD_FLAG_FUA,
            command: NBD_CMD_WRITE,
            cookie: 0x0102_0304_0506_0708,
            offset: 4096,
            length: 512,
        };
        let bytes = h.encode();
        assert_eq!(&bytes[..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(RequestHeader::decode(&bytes), Ok(h));
        let mut bad = bytes;
        bad[0] = 0;
        assert!(matches!(
            RequestHeader::decode(&bad),
            Err(WireError::BadMagic { .. })
        ));
        assert!(matches!(
            RequestHeader::decode(&bytes[..27]),
            Err(WireError::Truncated { got: 27, .. })
        ));
    }

    #[test]
    fn greeting_and_replies_have_the_documented_layout() {
        let g = encode_greeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
        assert_eq!(&g[..8], b"NBDMAGIC");
        assert_eq!(&g[8..16], b"IHAVEOPT");
        assert_eq!(&g[16..], &[0, 3]);
        let mut out = Vec::new();
        OptionReply::ack(NBD_OPT_GO).encode_into(&mut out);
        assert_eq!(out.len(), 20);
        assert_eq!(&out[..8], &OPTION_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&out[12..16], &1u32.to_be_bytes());
        assert_eq!(encode_export_name_reply(1 << 20, 1, false).len(), 134);
        assert_eq!(encode_export_name_reply(1 << 20, 1, true).len(), 10);
        let r = encode_simple_reply(22, 7);
        assert_eq!(&r[..4], &[0x67, 0x44, 0x66, 0x98]);
        assert_eq!(&r[4..8], &22u32.to_be_bytes());
    }

    #[test]
    fn option_header_round_trips() {
        let h = OptionHeader {
            option: NBD_OPT_GO,
            length: 9,
        };
        assert_eq!(OptionHeader::decode(&h.encode()), Ok(h));
        assert!(OptionHeader::decode(&[0u8; 16]).is_err());
    }
}
