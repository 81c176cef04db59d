//! Option negotiation decisions: a pure function from one client option (code and data) to the
//! replies the server sends and what happens next.
//!
//! The handshake loop ([`super::handshake`]) only moves bytes; every decision about an option lives
//! here, free of I/O, so the whole negotiation can be unit-tested and fuzzed. The server offers one
//! export, under its name and as the default export (the empty name). It speaks the `INFO` extension
//! (`NBD_OPT_INFO`, `NBD_OPT_GO`) and always sends block size constraints, which the protocol permits
//! even unasked. Structured replies, TLS, metadata contexts and extended headers are refused with
//! `NBD_REP_ERR_UNSUP`; clients fall back to simple replies.

use crate::nbd::proto::{
    NBD_INFO_NAME, NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST,
    NBD_OPT_STARTTLS, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID, NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP,
    NBD_REP_INFO, NBD_REP_SERVER, OptionReply, info_block_size, info_export, info_name,
};

/// Longest export name the protocol allows.
pub const MAX_NAME_LEN: usize = 4096;

/// What the negotiation needs to know about the export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportInfo {
    /// The export's name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Transmission flags (`NBD_FLAG_*`).
    pub transmission_flags: u16,
    /// Minimum block size.
    pub min_block: u32,
    /// Preferred block size.
    pub preferred_block: u32,
    /// Maximum payload of a read or write.
    pub max_payload: u32,
}

impl ExportInfo {
    fn matches(&self, requested: &[u8]) -> bool {
        requested.is_empty() || requested == self.name.as_bytes()
    }
}

/// What the handshake does after one option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionOutcome {
    /// Send these replies; negotiation continues.
    Continue(Vec<OptionReply>),
    /// Send these replies (the last is `NBD_REP_ACK` to `NBD_OPT_GO`), then transmission begins.
    Go(Vec<OptionReply>),
    /// `NBD_OPT_EXPORT_NAME` for this export: send size and flags (no option reply), then
    /// transmission begins.
    ExportName,
    /// `NBD_OPT_ABORT`: send these replies, then close.
    Abort(Vec<OptionReply>),
    /// `NBD_OPT_EXPORT_NAME` for an export that does not exist: the option has no error reply, so
    /// the protocol requires closing. Carries the requested name (lossily decoded).
    UnknownExportName(String),
}

/// The parsed data of `NBD_OPT_INFO` / `NBD_OPT_GO`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoRequest<'a> {
    /// The export name asked for (empty: the default export).
    pub name: &'a [u8],
    /// Information types asked for (`NBD_INFO_*`).
    pub info_types: Vec<u16>,
}

/// Parses the data of `NBD_OPT_INFO` / `NBD_OPT_GO`: a 32-bit name length, the name, a 16-bit count
/// and that many 16-bit information types, with nothing left over.
pub fn parse_info_request(data: &[u8]) -> Result<InfoRequest<'_>, &'static str> {
    let (len_bytes, rest) = data
        .split_first_chunk::<4>()
        .ok_or("shorter than the 4-byte name length")?;
    let name_len = u32::from_be_bytes(*len_bytes) as usize;
    if name_len > MAX_NAME_LEN {
        return Err("export name longer than 4096 bytes");
    }
    if rest.len() < name_len {
        return Err("export name runs past the end of the option");
    }
    let (name, rest) = rest.split_at(name_len);
    let (count_bytes, rest) = rest
        .split_first_chunk::<2>()
        .ok_or("missing the information request count")?;
    let count = usize::from(u16::from_be_bytes(*count_bytes));
    if rest.len() != count * 2 {
        return Err("information request count does not match the option length");
    }
    let info_types = rest
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Ok(InfoRequest { name, info_types })
}

/// Decides the answer to one option.
pub fn answer_option(option: u32, data: &[u8], export: &ExportInfo) -> OptionOutcome {
    match option {
        NBD_OPT_EXPORT_NAME => {
            if export.matches(data) {
                OptionOutcome::ExportName
            } else {
                OptionOutcome::UnknownExportName(String::from_utf8_lossy(data).into_owned())
            }
        }
        NBD_OPT_ABORT => OptionOutcome::Abort(vec![OptionReply::ack(option)]),
        NBD_OPT_LIST => {
            if !data.is_empty() {
                return OptionOutcome::Continue(vec![OptionReply::error(
                    option,
                    NBD_REP_ERR_INVALID,
                    "NBD_OPT_LIST takes no data",
                )]);
            }
            let mut server = Vec::with_capacity(4 + export.name.len());
            server.extend_from_slice(&(export.name.len() as u32).to_be_bytes());
            server.extend_from_slice(export.name.as_bytes());
            OptionOutcome::Continue(vec![
                OptionReply {
                    option,
                    reply: NBD_REP_SERVER,
                    data: server,
                },
                OptionReply::ack(option),
            ])
        }
        NBD_OPT_INFO | NBD_OPT_GO => {
            let replies = answer_info(option, data, export);
            let accepted = replies.last().is_some_and(|r| !r.is_error());
            if option == NBD_OPT_GO && accepted {
                OptionOutcome::Go(replies)
            } else {
                OptionOutcome::Continue(replies)
            }
        }
        NBD_OPT_STRUCTURED_REPLY => OptionOutcome::Continue(vec![OptionReply::error(
            option,
            NBD_REP_ERR_UNSUP,
            "structured replies are not supported: this server sends simple replies",
        )]),
        NBD_OPT_STARTTLS => OptionOutcome::Continue(vec![OptionReply::error(
            option,
            NBD_REP_ERR_UNSUP,
            "TLS is not supported: use a unix socket or a loopback/trusted network",
        )]),
        _ => OptionOutcome::Continue(vec![OptionReply::error(
            option,
            NBD_REP_ERR_UNSUP,
            "option not supported by this server",
        )]),
    }
}

fn answer_info(option: u32, data: &[u8], export: &ExportInfo) -> Vec<OptionReply> {
    let request = match parse_info_request(data) {
        Ok(r) => r,
        Err(why) => return vec![OptionReply::error(option, NBD_REP_ERR_INVALID, why)],
    };
    if !export.matches(request.name) {
        let message = format!(
            "no export named {:?}; this server exports {:?}",
            String::from_utf8_lossy(request.name),
            export.name
        );
        return vec![OptionReply::error(option, NBD_REP_ERR_UNKNOWN, &message)];
    }
    let info = |data| OptionReply {
        option,
        reply: NBD_REP_INFO,
        data,
    };
    let mut replies = vec![
        info(info_export(export.size, export.transmission_flags)),
        info(info_block_size(
            export.min_block,
            export.preferred_block,
            export.max_payload,
        )),
    ];
    if request.info_types.contains(&NBD_INFO_NAME) {
        replies.push(info(info_name(&export.name)));
    }
    replies.push(OptionReply::ack(option));
    replies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::proto::{NBD_INFO_BLOCK_SIZE, NBD_REP_ACK};

    fn export() -> ExportInfo {
        ExportInfo {
            name: "r0".into(),
            size: 1 << 20,
            transmission_flags: 1,
            min_block: 512,
            preferred_block: 4096,
            max_payload: 32 << 20,
        }
    }

    fn go_data(name: &[u8], infos: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name);
        d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    #[test]
    fn go_describes_the_export_and_enters_transmission() {
        let data = go_data(b"r0", &[NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME]);
        let OptionOutcome::Go(replies) = answer_option(NBD_OPT_GO, &data, &export()) else {
            panic!("GO refused");
        };
        let kinds: Vec<u16> = replies
            .iter()
            .filter(|r| r.reply == NBD_REP_INFO)
            .map(|r| u16::from_be_bytes([r.data[0], r.data[1]]))
            .collect();
        assert_eq!(kinds, vec![0, 3, 1]);
        assert_eq!(replies[0].data.len(), 12);
        assert_eq!(replies.last().map(|r| r.reply), Some(NBD_REP_ACK));
        // The default export is ours too; INFO does not end negotiation.
        let data = go_data(b"", &[]);
        assert!(matches!(
            answer_option(NBD_OPT_INFO, &data, &export()),
            OptionOutcome::Continue(r) if r.len() == 3
        ));
    }

    #[test]
    fn bad_or_unknown_options_are_refused_cleanly() {
        let unknown = answer_option(NBD_OPT_GO, &go_data(b"nope", &[]), &export());
        assert!(matches!(unknown, OptionOutcome::Continue(r) if r[0].reply == NBD_REP_ERR_UNKNOWN));
        let mut truncated = go_data(b"r0", &[1, 3]);
        truncated.pop();
        let bad = answer_option(NBD_OPT_GO, &truncated, &export());
        assert!(matches!(bad, OptionOutcome::Continue(r) if r[0].reply == NBD_REP_ERR_INVALID));
        let huge = answer_option(NBD_OPT_GO, &u32::MAX.to_be_bytes(), &export());
        assert!(matches!(huge, OptionOutcome::Continue(r) if r[0].reply == NBD_REP_ERR_INVALID));
        for option in [NBD_OPT_STRUCTURED_REPLY, NBD_OPT_STARTTLS, 10, 11, 0xdead] {
            assert!(matches!(
                answer_option(option, &[], &export()),
                OptionOutcome::Continue(r) if r[0].reply == NBD_REP_ERR_UNSUP && r[0].option == option
            ));
        }
        assert_eq!(
            answer_option(NBD_OPT_EXPORT_NAME, b"x", &export()),
            OptionOutcome::UnknownExportName("x".into())
        );
        assert_eq!(
            answer_option(NBD_OPT_EXPORT_NAME, b"r0", &export()),
            OptionOutcome::ExportName
        );
    }

    #[test]
    fn list_names_the_export() {
        let OptionOutcome::Continue(r) = answer_option(NBD_OPT_LIST, &[], &export()) else {
            panic!("LIST refused");
        };
        assert_eq!(r[0].reply, NBD_REP_SERVER);
        assert_eq!(r[0].data, b"\0\0\0\x02r0");
        assert_eq!(r[1].reply, NBD_REP_ACK);
        assert!(matches!(
            answer_option(NBD_OPT_LIST, b"x", &export()),
            OptionOutcome::Continue(r) if r[0].reply == NBD_REP_ERR_INVALID
        ));
    }
}
