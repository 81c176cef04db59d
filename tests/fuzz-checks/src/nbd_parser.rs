//! Fuzzes the NBD server's parsers with arbitrary bytes: request headers and request validation,
//! option headers, `NBD_OPT_GO`/`NBD_OPT_INFO` data and the option decisions, and (chosen by the
//! first byte) a whole client session fed to `serve_connection` over an in-memory pipe, either from
//! the first byte or after a valid handshake, so the transmission loop is reached too.
//! Nothing may panic; an accepted request must lie inside the export, be aligned and within the
//! payload limit; every option reply must answer the option asked.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use replbd_node::nbd::option::{ExportInfo, OptionOutcome, answer_option, parse_info_request};
use replbd_node::nbd::proto::{NBD_REP_ACK, OptionHeader, RequestHeader};
use replbd_node::nbd::request::{AfterReject, Limits, Request, parse_request};
use replbd_node::nbd::{Export, NbdConfig, ShutdownHandle, serve_connection};
use replbd_replication::MemVolume;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIZE: u64 = 1 << 20;
const MAX_PAYLOAD: u32 = 64 << 10;

fn check_request(data: &[u8], export_size: u64) {
    let Ok(header) = RequestHeader::decode(data) else {
        return;
    };
    assert_eq!(&header.encode()[..], &data[..28]);
    let limits = Limits {
        export_size,
        max_payload: MAX_PAYLOAD,
    };
    match parse_request(&header, &limits) {
        Ok(Request::Read { offset, len })
        | Ok(Request::Write { offset, len, .. })
        | Ok(Request::Trim { offset, len, .. })
        | Ok(Request::WriteZeroes { offset, len, .. }) => {
            assert!(len > 0 && offset % 512 == 0 && len % 512 == 0);
            assert!(
                offset
                    .checked_add(u64::from(len))
                    .is_some_and(|end| end <= export_size)
            );
            if matches!(header.command, 0 | 1) {
                assert!(len <= MAX_PAYLOAD);
            }
        }
        Ok(Request::Flush | Request::Disconnect) => {}
        Err(rejection) => {
            assert_eq!(rejection.cookie, header.cookie);
            match rejection.then {
                AfterReject::Discard(n) => assert!(header.command == 1 && n <= MAX_PAYLOAD),
                AfterReject::Close => assert!(header.command == 1 && header.length > MAX_PAYLOAD),
                AfterReject::Continue => assert!(header.command != 1),
            }
            let _ = rejection.error.errno().code();
        }
    }
}

fn check_option(data: &[u8]) {
    let export = ExportInfo {
        name: "r0".into(),
        size: SIZE,
        transmission_flags: 0x16d,
        min_block: 512,
        preferred_block: 4096,
        max_payload: MAX_PAYLOAD,
    };
    if let Ok(header) = OptionHeader::decode(data) {
        assert_eq!(&header.encode()[..], &data[..16]);
    }
    let _ = parse_info_request(data);
    let option = data
        .get(..4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % 16);
    let rest = data.get(4..).unwrap_or_default();
    let replies = match answer_option(option, rest, &export) {
        OptionOutcome::Go(r) => {
            assert_eq!(r.last().map(|r| r.reply), Some(NBD_REP_ACK));
            r
        }
        OptionOutcome::Continue(r) | OptionOutcome::Abort(r) => r,
        OptionOutcome::ExportName | OptionOutcome::UnknownExportName(_) => Vec::new(),
    };
    let mut out = Vec::new();
    for r in &replies {
        assert_eq!(r.option, option);
        r.encode_into(&mut out);
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Feeds `input` as everything a client sends, reads everything the server answers.
fn run_session(input: &[u8]) {
    let volume = Arc::new(MemVolume::new(SIZE));
    let Ok(export) = Export::new("r0", volume) else {
        return;
    };
    let config = NbdConfig {
        max_payload: MAX_PAYLOAD,
        max_in_flight_bytes: 4 * MAX_PAYLOAD,
        handshake_timeout: Duration::from_secs(5),
        ..NbdConfig::default()
    };
    let stop = ShutdownHandle::new();
    runtime().block_on(async {
        let (mut client, server) = tokio::io::duplex(64 << 10);
        let serving = serve_connection(server, &export, &config, stop.signal());
        let talking = async {
            let _ = client.write_all(input).await;
            let _ = client.shutdown().await;
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        };
        let (_result, ()) = tokio::join!(serving, talking);
    });
}

/// A valid handshake (fixed newstyle, `NBD_OPT_GO` for `r0`), so inputs can start in transmission;
/// also a seed for the smoke runner.
pub fn handshake_prefix() -> Vec<u8> {
    let mut out = 1u32.to_be_bytes().to_vec();
    let mut go = 2u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"r0");
    go.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(
        &OptionHeader {
            option: 7,
            length: go.len() as u32,
        }
        .encode(),
    );
    out.extend_from_slice(&go);
    out
}

/// Runs every check of this target on `data`; panics on a failed check.
pub fn check(data: &[u8]) {
    let selector = data.first().copied().unwrap_or(0);
    let rest = data.get(1..).unwrap_or_default();
    check_request(data, SIZE >> (selector % 4));
    check_option(data);
    match selector & 3 {
        // The whole session from the client's first byte.
        1 => run_session(rest),
        // Straight into transmission: the input is a stream of requests.
        3 => {
            let mut input = handshake_prefix();
            input.extend_from_slice(rest);
            run_session(&input);
        }
        _ => {}
    }
}
