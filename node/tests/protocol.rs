//! Protocol tests with a raw NBD client written here from the protocol document, independently of
//! the server's own encoders: hostile and broken clients (wrong magic, truncated messages, oversized
//! and out-of-range requests, unknown commands and options, hang-ups mid-request) get an error or
//! lose their own connection, the volume is never touched by an invalid request, and the server keeps
//! serving the next client. Also: pipelined requests complete out of order, `NBD_CMD_DISC` and
//! shutdown wait for in-flight requests, and volume errors become NBD error values.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Running, TestVolume, logs, socket_path, start, wait_until};
use replbd_node::nbd::{ListenAddr, NbdConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

const SIZE: u64 = 4 << 20;
const T: Duration = Duration::from_secs(10);

const NBDMAGIC: &[u8; 8] = b"NBDMAGIC";
const IHAVEOPT: &[u8; 8] = b"IHAVEOPT";
const REPLY_MAGIC: u64 = 0x3e889045565a9;
const REQUEST_MAGIC: u32 = 0x25609513;
const SIMPLE_REPLY_MAGIC: u32 = 0x67446698;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;
const FLAG_FUA: u16 = 1;

const EPERM: u32 = 1;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;
const EOVERFLOW: u32 = 75;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// A minimal NBD client.
struct Client {
    s: Box<dyn Stream>,
}

#[derive(Debug, PartialEq)]
struct OptReply {
    option: u32,
    reply: u32,
    data: Vec<u8>,
}

impl Client {
    /// Connects and reads the greeting; does not send client flags.
    async fn connect(addr: &ListenAddr) -> Client {
        let s: Box<dyn Stream> = match addr {
            ListenAddr::Unix(p) => Box::new(UnixStream::connect(p).await.unwrap()),
            ListenAddr::Tcp(a) => Box::new(TcpStream::connect(a).await.unwrap()),
        };
        let mut c = Client { s };
        let mut greeting = [0u8; 18];
        c.s.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting[..8], NBDMAGIC);
        assert_eq!(&greeting[8..16], IHAVEOPT);
        assert_eq!(
            u16::from_be_bytes([greeting[16], greeting[17]]),
            0b11,
            "FIXED_NEWSTYLE|NO_ZEROES"
        );
        c
    }

    /// Connects and negotiates with `NBD_OPT_GO` for `r0`; returns size and transmission flags.
    async fn go(addr: &ListenAddr) -> (Client, u64, u16) {
        Client::connect(addr).await.negotiate().await
    }

    /// Sends client flags and `NBD_OPT_GO` for `r0` after the greeting.
    async fn negotiate(self) -> (Client, u64, u16) {
        let mut c = self;
        c.s.write_u32(1).await.unwrap(); // NBD_FLAG_C_FIXED_NEWSTYLE
        c.option(OPT_GO, &go_data(b"r0", &[3])).await;
        let mut size_flags = None;
        loop {
            let r = c.opt_reply().await;
            assert_eq!(r.option, OPT_GO);
            match r.reply {
                REP_INFO if r.data[..2] == [0, 0] => {
                    let size = u64::from_be_bytes(r.data[2..10].try_into().unwrap());
                    let flags = u16::from_be_bytes(r.data[10..12].try_into().unwrap());
                    size_flags = Some((size, flags));
                }
                REP_INFO => {}
                REP_ACK => break,
                other => panic!("GO refused: {other:#x} {:?}", String::from_utf8_lossy(&r.data)),
            }
        }
        let (size, flags) = size_flags.expect("NBD_INFO_EXPORT missing");
        (c, size, flags)
    }

    async fn option(&mut self, option: u32, data: &[u8]) {
        let mut m = IHAVEOPT.to_vec();
        m.extend_from_slice(&option.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        self.s.write_all(&m).await.unwrap();
    }

    async fn opt_reply(&mut self) -> OptReply {
        let magic = self.s.read_u64().await.unwrap();
        assert_eq!(magic, REPLY_MAGIC);
        let option = self.s.read_u32().await.unwrap();
        let reply = self.s.read_u32().await.unwrap();
        let len = self.s.read_u32().await.unwrap();
        let mut data = vec![0; len as usize];
        self.s.read_exact(&mut data).await.unwrap();
        OptReply { option, reply, data }
    }

    async fn request(
        &mut self,
        command: u16,
        flags: u16,
        cookie: u64,
        offset: u64,
        len: u32,
        payload: &[u8],
    ) {
        let mut m = REQUEST_MAGIC.to_be_bytes().to_vec();
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&command.to_be_bytes());
        m.extend_from_slice(&cookie.to_be_bytes());
        m.extend_from_slice(&offset.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(payload);
        self.s.write_all(&m).await.unwrap();
    }

    /// Reads one simple reply header: (error, cookie).
    async fn reply(&mut self) -> (u32, u64) {
        let magic = tokio::time::timeout(T, self.s.read_u32())
            .await
            .expect("reply timed out")
            .unwrap();
        assert_eq!(magic, SIMPLE_REPLY_MAGIC);
        let error = self.s.read_u32().await.unwrap();
        let cookie = self.s.read_u64().await.unwrap();
        (error, cookie)
    }

    async fn data(&mut self, len: usize) -> Vec<u8> {
        let mut d = vec![0; len];
        self.s.read_exact(&mut d).await.unwrap();
        d
    }

    async fn write(&mut self, cookie: u64, offset: u64, data: &[u8]) -> u32 {
        self.request(CMD_WRITE, 0, cookie, offset, data.len() as u32, data)
            .await;
        let (error, c) = self.reply().await;
        assert_eq!(c, cookie);
        error
    }

    async fn read(&mut self, cookie: u64, offset: u64, len: u32) -> Result<Vec<u8>, u32> {
        self.request(CMD_READ, 0, cookie, offset, len, &[]).await;
        let (error, c) = self.reply().await;
        assert_eq!(c, cookie);
        if error != 0 {
            return Err(error);
        }
        Ok(self.data(len as usize).await)
    }

    /// Expects the server to close the connection (EOF, or a reset).
    async fn expect_closed(&mut self) {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(T, self.s.read(&mut b))
            .await
            .expect("server kept the connection open");
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "expected the connection closed, read {r:?}"
        );
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

async fn server(volume: &Arc<TestVolume>) -> (tempfile::TempDir, Running) {
    let (dir, path) = socket_path();
    let running = start(Arc::clone(volume), ListenAddr::Unix(path), NbdConfig::default()).await;
    (dir, running)
}

/// A fresh client can still write and read back after whatever the previous client did.
async fn assert_serves(addr: &ListenAddr) {
    let (mut c, size, _) = Client::go(addr).await;
    assert_eq!(size, SIZE);
    assert_eq!(c.write(900, 8192, &[0x5a; 4096]).await, 0);
    assert_eq!(c.read(901, 8192, 4096).await.unwrap(), vec![0x5a; 4096]);
    c.request(CMD_DISC, 0, 902, 0, 0, &[]).await;
    c.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_advertises_size_flags_and_block_sizes() {
    let vol = TestVolume::new(SIZE);
    let (_dir, srv) = server(&vol).await;
    let mut c = Client::connect(&srv.addr).await;
    c.s.write_u32(1).await.unwrap();
    c.option(OPT_GO, &go_data(b"", &[3])).await; // the default export
    let export = c.opt_reply().await;
    assert_eq!(export.reply, REP_INFO);
    assert_eq!(&export.data[..2], &[0, 0]);
    assert_eq!(u64::from_be_bytes(export.data[2..10].try_into().unwrap()), SIZE);
    let flags = u16::from_be_bytes(export.data[10..12].try_into().unwrap());
    // HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES, CAN_MULTI_CONN; not READ_ONLY.
    assert_eq!(flags, 1 | 4 | 8 | 32 | 64 | 256);
    let block = c.opt_reply().await;
    assert_eq!(block.reply, REP_INFO);
    assert_eq!(&block.data[..2], &[0, 3]);
    let sizes: Vec<u32> = block.data[2..]
        .chunks(4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(sizes, vec![512, 4096, 32 << 20]);
    assert_eq!(c.opt_reply().await.reply, REP_ACK);
    assert_eq!(c.read(1, 0, 512).await.unwrap(), vec![0; 512]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_are_answered_or_refused_cleanly() {
    let vol = TestVolume::new(SIZE);
    let (_dir, srv) = server(&vol).await;
    let mut c = Client::connect(&srv.addr).await;
    c.s.write_u32(1).await.unwrap();

    c.option(OPT_STRUCTURED_REPLY, &[]).await;
    assert_eq!(c.opt_reply().await.reply, REP_ERR_UNSUP);
    c.option(0x4242, b"whatever").await;
    let r = c.opt_reply().await;
    assert_eq!((r.option, r.reply), (0x4242, REP_ERR_UNSUP));

    c.option(OPT_LIST, &[]).await;
    let r = c.opt_reply().await;
    assert_eq!((r.reply, r.data.as_slice()), (REP_SERVER, &b"\0\0\0\x02r0"[..]));
    assert_eq!(c.opt_reply().await.reply, REP_ACK);

    c.option(OPT_INFO, &go_data(b"nosuch", &[])).await;
    let r = c.opt_reply().await;
    assert_eq!(r.reply, REP_ERR_UNKNOWN);
    assert!(String::from_utf8_lossy(&r.data).contains("nosuch"));

    // Name length pointing past the end of the option.
    c.option(OPT_GO, &[0, 0, 0, 200, b'r']).await;
    assert_eq!(c.opt_reply().await.reply, REP_ERR_INVALID);

    // Negotiation still works on the same connection.
    c.option(OPT_GO, &go_data(b"r0", &[])).await;
    loop {
        match c.opt_reply().await.reply {
            REP_INFO => {}
            REP_ACK => break,
            other => panic!("GO refused: {other:#x}"),
        }
    }
    assert_eq!(c.read(1, 0, 4096).await.unwrap(), vec![0; 4096]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_name_enters_transmission_with_and_without_zero_padding() {
    let vol = TestVolume::new(SIZE);
    let (_dir, srv) = server(&vol).await;
    for (client_flags, reply_len) in [(1u32, 134usize), (3, 10)] {
        let mut c = Client::connect(&srv.addr).await;
        c.s.write_u32(client_flags).await.unwrap();
        c.option(OPT_EXPORT_NAME, b"r0").await;
        let reply = c.data(reply_len).await;
        assert_eq!(u64::from_be_bytes(reply[..8].try_into().unwrap()), SIZE);
        assert!(reply[10..].iter().all(|&b| b == 0));
        assert_eq!(c.write(1, 0, &[7; 512]).await, 0);
        assert_eq!(c.read(2, 0, 512).await.unwrap(), vec![7; 512]);
    }
    // An unknown name cannot be refused with EXPORT_NAME: the server must close.
    let mut c = Client::connect(&srv.addr).await;
    c.s.write_u32(1).await.unwrap();
    c.option(OPT_EXPORT_NAME, b"nosuch").await;
    c.expect_closed().await;
    assert_serves(&srv.addr).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_handshakes_close_only_their_own_connection() {
    let vol = TestVolume::new(SIZE);
    let config = NbdConfig {
        handshake_timeout: Duration::from_millis(300),
        ..NbdConfig::default()
    };
    // TCP so the log lines name a distinguishable peer.
    let srv = start(Arc::clone(&vol), ListenAddr::localhost(0), config).await;

    // A client that stays connected meanwhile must not be disturbed.
    let (mut bystander, _, _) = Client::go(&srv.addr).await;

    // Wrong option magic.
    let mut c = Client::connect(&srv.addr).await;
    c.s.write_u32(1).await.unwrap();
    c.s.write_all(b"IHAVEOPX\0\0\0\x07\0\0\0\0").await.unwrap();
    c.expect_closed().await;

    // Unknown client flags.
    let mut c = Client::connect(&srv.addr).await;
    c.s.write_u32(0x80).await.unwrap();
    c.expect_closed().await;

    // Truncated: half of the client flags, then hang up.
    let mut c = Client::connect(&srv.addr).await;
    c.s.write_all(&[0, 0]).await.unwrap();
    drop(c);

    // Truncated option: header announces 100 bytes, 3 arrive, then hang up.
    let mut c = Client::connect(&srv.addr).await;
    c.s.write_u32(1).await.unwrap();
    c.s.write_all(b"IHAVEOPT\0\0\0\x07\0\0\0\x64abc").await.unwrap();
    drop(c);

    // Absurd option length: closed before any allocation.
    let mut c = Client::connect(&srv.addr).await;
    c.s.write_u32(1).await.unwrap();
    c.s.write_all(b"IHAVEOPT\0\0\0\x07\xff\xff\xff\xff")
        .await
        .unwrap();
    c.expect_closed().await;

    // Says nothing: dropped after the handshake timeout.
    let mut silent = Client::connect(&srv.addr).await;
    silent.expect_closed().await;

    for reason in [
        "option header has magic",
        "unknown client flags 0x80",
        "truncated client flags",
        "truncated option data",
        "announces 4294967295 bytes of data",
        "handshake not finished within 300ms",
    ] {
        wait_until(&format!("log line for {reason:?}"), T, || {
            logs().lines().any(|l| {
                l.contains("closing NBD connection") && l.contains(reason) && l.contains("peer=127.0.0.1:")
            })
        })
        .await;
    }

    assert_eq!(vol.mem.counters().writes, 0);
    assert_eq!(bystander.read(1, 0, 512).await.unwrap(), vec![0; 512]);
    assert_serves(&srv.addr).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_get_errors_and_never_touch_the_volume() {
    let vol = TestVolume::new(SIZE);
    let (_dir, srv) = server(&vol).await;
    let (mut c, _, _) = Client::go(&srv.addr).await;
    let before = vol.mem.counters();

    // Out of range: reads get EINVAL, writes ENOSPC (their payload is skipped, the stream stays in step).
    assert_eq!(c.read(1, SIZE, 512).await, Err(EINVAL));
    assert_eq!(c.read(2, SIZE - 512, 1024).await, Err(EINVAL));
    assert_eq!(c.read(3, u64::MAX - 511, 1024).await, Err(EINVAL));
    assert_eq!(c.write(4, SIZE - 512, &[1; 1024]).await, ENOSPC);
    c.request(CMD_TRIM, 0, 5, SIZE, 4096, &[]).await;
    assert_eq!(c.reply().await, (ENOSPC, 5));
    c.request(CMD_WRITE_ZEROES, 0, 6, SIZE - 4096, 8192, &[]).await;
    assert_eq!(c.reply().await, (ENOSPC, 6));
    // Unaligned and zero-length.
    assert_eq!(c.read(7, 100, 512).await, Err(EINVAL));
    assert_eq!(c.write(8, 0, &[1; 100]).await, EINVAL);
    assert_eq!(c.read(9, 0, 0).await, Err(EINVAL));
    // Oversized read: EOVERFLOW, connection stays.
    assert_eq!(c.read(10, 0, (32 << 20) + 512).await, Err(EOVERFLOW));
    // Unknown commands (BLOCK_STATUS was never negotiated) and flags.
    for (cookie, command) in [(11, 7u16), (12, 5), (13, 99)] {
        c.request(command, 0, cookie, 0, 512, &[]).await;
        assert_eq!(c.reply().await, (EINVAL, cookie));
    }
    c.request(CMD_READ, 1 << 1, 14, 0, 512, &[]).await; // NO_HOLE on a read
    assert_eq!(c.reply().await, (EINVAL, 14));
    c.request(CMD_WRITE, 1 << 7, 15, 0, 512, &[9; 512]).await;
    assert_eq!(c.reply().await, (EINVAL, 15));

    let after = vol.mem.counters();
    assert_eq!(after, before, "an invalid request reached the volume");
    assert!(vol.mem.snapshot().iter().all(|&b| b == 0));

    // The same connection still works.
    assert_eq!(c.write(20, 0, &[3; 4096]).await, 0);
    assert_eq!(c.read(21, 0, 4096).await.unwrap(), vec![3; 4096]);
    wait_until("rejection log line", T, || {
        logs().lines().any(|l| {
            l.contains("rejected invalid NBD request")
                && l.contains("reason=READ range")
                && l.contains("errno=EINVAL")
        })
    })
    .await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_write_is_refused_and_closes_that_connection() {
    let vol = TestVolume::new(SIZE);
    let (_dir, srv) = server(&vol).await;
    let (mut other, _, _) = Client::go(&srv.addr).await;
    let (mut c, _, _) = Client::go(&srv.addr).await;
    // 64 MiB announced; the payload is never sent and never read.
    c.request(CMD_WRITE, 0, 77, 0, 64 << 20, &[]).await;
    assert_eq!(c.reply().await, (EOVERFLOW, 77));
    c.expect_closed().await;
    assert_eq!(vol.mem.counters().writes, 0);
    wait_until("log line", T, || {
        logs()
            .lines()
            .any(|l| l.contains("closing NBD connection") && l.contains("67108864 bytes is larger"))
    })
    .await;
    assert_eq!(other.write(1, 0, &[1; 512]).await, 0);
    assert_serves(&srv.addr).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_magic_and_hangups_mid_request_close_only_that_connection() {
    let vol = TestVolume::new(SIZE);
    let (_dir, srv) = server(&vol).await;

    let (mut c, _, _) = Client::go(&srv.addr).await;
    c.s.write_all(&[0xde; 28]).await.unwrap();
    c.expect_closed().await;

    // Half a header, then hang up.
    let (mut c, _, _) = Client::go(&srv.addr).await;
    c.s.write_all(&REQUEST_MAGIC.to_be_bytes()).await.unwrap();
    c.s.write_all(&[0; 6]).await.unwrap();
    drop(c);

    // A write header and 1 KiB of its 64 KiB payload, then hang up: nothing may be written.
    let (mut c, _, _) = Client::go(&srv.addr).await;
    c.request(CMD_WRITE, 0, 5, 0, 64 << 10, &[0xee; 1024]).await;
    drop(c);

    for reason in [
        "request header has magic",
        "truncated request header",
        "truncated write payload",
    ] {
        wait_until(&format!("log line for {reason:?}"), T, || {
            logs()
                .lines()
                .any(|l| l.contains("closing NBD connection") && l.contains(reason))
        })
        .await;
    }
    assert_eq!(vol.mem.counters().writes, 0);
    assert!(vol.mem.snapshot().iter().all(|&b| b == 0));
    assert_serves(&srv.addr).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_complete_out_of_order() {
    let vol = TestVolume::new(SIZE);
    vol.gate_reads_at(0);
    // Over TCP this time.
    let srv = start(Arc::clone(&vol), ListenAddr::localhost(0), NbdConfig::default()).await;
    let (mut c, _, _) = Client::go(&srv.addr).await;

    // Request 1 is held by the volume; 100 more are sent behind it without waiting for replies.
    c.request(CMD_READ, 0, 1, 0, 4096, &[]).await;
    let n = 100u64;
    for i in 0..n {
        let offset = 4096 * (i + 1);
        let pattern = vec![i as u8 + 1; 4096];
        c.request(
            CMD_WRITE,
            if i % 3 == 0 { FLAG_FUA } else { 0 },
            1000 + i,
            offset,
            4096,
            &pattern,
        )
        .await;
    }
    c.request(CMD_FLUSH, 0, 2, 0, 0, &[]).await;
    let mut seen = Vec::new();
    for _ in 0..=n {
        let (error, cookie) = c.reply().await;
        assert_eq!(error, 0, "cookie {cookie}");
        seen.push(cookie);
    }
    assert!(
        !seen.contains(&1),
        "the held read was answered before it was released"
    );
    seen.sort_unstable();
    let mut expected: Vec<u64> = (1000..1000 + n).collect();
    expected.push(2);
    expected.sort_unstable();
    assert_eq!(seen, expected);
    assert_eq!(vol.waiting_at_gate(), 1);

    // Reads pipelined behind the held one, each answered with its own data.
    for i in 0..n {
        c.request(CMD_READ, 0, 5000 + i, 4096 * (i + 1), 4096, &[]).await;
    }
    for _ in 0..n {
        let (error, cookie) = c.reply().await;
        assert_eq!(error, 0);
        let i = cookie - 5000;
        assert_eq!(
            c.data(4096).await,
            vec![i as u8 + 1; 4096],
            "data of cookie {cookie}"
        );
    }
    vol.open_gate(1);
    assert_eq!(c.reply().await, (0, 1));
    assert_eq!(c.data(4096).await, vec![0; 4096]);
    let counters = vol.mem.counters();
    assert_eq!(
        (counters.writes, counters.fua_writes, counters.flushes),
        (n, 34, 1)
    );
    assert!(
        vol.max_in_flight() >= 2,
        "requests were not executed concurrently"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_waits_for_in_flight_requests() {
    let vol = TestVolume::new(SIZE);
    vol.gate_reads_at(8192);
    let (_dir, srv) = server(&vol).await;
    let (mut c, _, _) = Client::go(&srv.addr).await;
    c.request(CMD_READ, 0, 1, 8192, 512, &[]).await;
    c.request(CMD_DISC, 0, 2, 0, 0, &[]).await;
    wait_until("the read to reach the volume", T, || vol.waiting_at_gate() == 1).await;
    vol.open_gate(1);
    assert_eq!(c.reply().await, (0, 1));
    assert_eq!(c.data(512).await, vec![0; 512]);
    c.expect_closed().await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_in_flight_requests_then_closes() {
    let vol = TestVolume::new(SIZE);
    vol.gate_reads_at(0);
    let (_dir, srv) = server(&vol).await;
    let ListenAddr::Unix(path) = srv.addr.clone() else {
        unreachable!()
    };
    let (mut c, _, _) = Client::go(&srv.addr).await;
    assert_eq!(c.write(1, 4096, &[1; 512]).await, 0);
    c.request(CMD_READ, 0, 2, 0, 512, &[]).await;
    wait_until("the read to reach the volume", T, || vol.waiting_at_gate() == 1).await;

    srv.stop.shutdown();
    wait_until("the socket file to be removed", T, || !path.exists()).await;
    assert!(
        !srv.task.is_finished(),
        "server returned with a request in flight"
    );
    vol.open_gate(1);
    assert_eq!(c.reply().await, (0, 2));
    assert_eq!(c.data(512).await, vec![0; 512]);
    c.expect_closed().await;
    tokio::time::timeout(T, srv.task).await.unwrap().unwrap().unwrap();
    assert!(UnixStream::connect(&path).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_errors_become_nbd_errors_and_clients_share_the_volume() {
    let vol = TestVolume::new(SIZE);
    let (_dir, srv) = server(&vol).await;
    let (mut a, _, _) = Client::go(&srv.addr).await;
    let (mut b, _, _) = Client::go(&srv.addr).await;
    // Multi-conn: a write answered on one connection is seen by another.
    assert_eq!(a.write(1, 0, &[0x11; 4096]).await, 0);
    assert_eq!(b.read(1, 0, 4096).await.unwrap(), vec![0x11; 4096]);
    // Not Primary (EROFS in the volume) reaches the client as EPERM.
    vol.fail_writes(true);
    assert_eq!(b.write(2, 0, &[0x22; 4096]).await, EPERM);
    vol.fail_writes(false);
    assert_eq!(a.read(3, 0, 4096).await.unwrap(), vec![0x11; 4096]);
    // Trim and write-zeroes with FUA; a trim with FUA also flushes.
    b.request(CMD_TRIM, FLAG_FUA, 4, 0, 4096, &[]).await;
    assert_eq!(b.reply().await, (0, 4));
    b.request(CMD_WRITE_ZEROES, FLAG_FUA | 2, 5, 8192, 8192, &[])
        .await;
    assert_eq!(b.reply().await, (0, 5));
    let counters = vol.mem.counters();
    assert_eq!(
        (counters.discards, counters.write_zeroes, counters.flushes),
        (1, 1, 1)
    );
    assert_eq!(a.read(6, 0, 4096).await.unwrap(), vec![0; 4096]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let vol = TestVolume::new(SIZE);
    let config = NbdConfig {
        max_connections: 1,
        ..NbdConfig::default()
    };
    let (_dir, path) = socket_path();
    let srv = start(Arc::clone(&vol), ListenAddr::Unix(path.clone()), config).await;
    let (mut first, _, _) = Client::go(&srv.addr).await;
    let mut second = UnixStream::connect(&path).await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(T, second.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "the refused client got a greeting");
    assert!(logs().contains("reason=\"too many connections\""));
    assert_eq!(first.read(1, 0, 512).await.unwrap(), vec![0; 512]);
    first.request(CMD_DISC, 0, 2, 0, 0, &[]).await;
    first.expect_closed().await;
    // Once the first client's connection has ended, a new client is served.
    let start = std::time::Instant::now();
    let mut third = loop {
        let mut s = UnixStream::connect(&path).await.unwrap();
        let mut greeting = [0u8; 18];
        if s.read_exact(&mut greeting).await.is_ok() {
            break Client { s: Box::new(s) }.negotiate().await.0;
        }
        assert!(start.elapsed() < T, "the connection slot was never freed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(third.write(3, 0, &[4; 512]).await, 0);
    assert_eq!(third.read(4, 0, 512).await.unwrap(), vec![4; 512]);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_cuts_connections_that_do_not_finish() {
    let vol = TestVolume::new(SIZE);
    vol.gate_reads_at(0);
    let config = NbdConfig {
        drain_timeout: Duration::from_millis(200),
        ..NbdConfig::default()
    };
    let (_dir, path) = socket_path();
    let srv = start(Arc::clone(&vol), ListenAddr::Unix(path), config).await;
    let (mut c, _, _) = Client::go(&srv.addr).await;
    c.request(CMD_READ, 0, 1, 0, 512, &[]).await;
    wait_until("the read to reach the volume", T, || vol.waiting_at_gate() == 1).await;
    // The read never finishes; shutdown must still return, cutting the connection.
    srv.stop().await;
    c.expect_closed().await;
    assert!(logs().contains("NBD connections did not drain in time"));
    vol.open_gate(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_files_are_replaced_but_live_ones_and_other_files_are_not() {
    use replbd_node::nbd::{Export, NbdError, NbdServer};
    let vol = TestVolume::new(SIZE);
    let (_dir, path) = socket_path();
    // A socket file nobody listens on any more.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let srv = start(
        Arc::clone(&vol),
        ListenAddr::Unix(path.clone()),
        NbdConfig::default(),
    )
    .await;
    // A second server on the same live socket is refused.
    let export = Export::new("r0", Arc::clone(&vol)).unwrap();
    let second = NbdServer::bind(&ListenAddr::Unix(path.clone()), export, NbdConfig::default()).await;
    assert!(matches!(second, Err(NbdError::SocketInUse { .. })));
    assert_serves(&srv.addr).await;
    srv.stop().await;
    // A regular file is never removed.
    std::fs::write(&path, b"precious").unwrap();
    let export = Export::new("r0", Arc::clone(&vol)).unwrap();
    let third = NbdServer::bind(&ListenAddr::Unix(path.clone()), export, NbdConfig::default()).await;
    assert!(matches!(third, Err(NbdError::PathNotSocket { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}
