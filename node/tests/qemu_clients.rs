//! Real NBD clients against a server in the test process serving an in-memory volume: `qemu-io`
//! (every command and flag the server supports, with data verification), `qemu-img info`,
//! `qemu-img convert` onto and off the export, `qemu-img bench` (pipelined writes), and the kernel's
//! `nbd-client` where the host has `/dev/nbd0`. Each test checks the volume's content and counters,
//! not just the clients' exit codes. A test whose client is missing prints `SKIPPED: …` and checks
//! nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use common::{TestVolume, socket_path, start};
use replbd_node::nbd::{ListenAddr, NbdConfig};
use replbd_replication::MemVolume;
use tokio::process::Command;

const SIZE: u64 = 16 << 20;

/// Whether `program` can be run at all.
async fn installed(program: &str) -> bool {
    Command::new(program).arg("--version").output().await.is_ok()
}

/// Runs a client, failing the test on a non-zero exit or after a minute.
async fn run(program: &str, args: &[&str]) -> String {
    let out: Output =
        tokio::time::timeout(Duration::from_secs(60), Command::new(program).args(args).output())
            .await
            .unwrap_or_else(|_| panic!("{program} {args:?} timed out"))
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// Runs `qemu-io` commands against `url`; every command must succeed and every pattern verify.
async fn qemu_io(url: &str, commands: &[&str]) -> String {
    let mut args = vec!["-f", "raw"];
    for c in commands {
        args.extend(["-c", c]);
    }
    args.push(url);
    let text = run("qemu-io", &args).await;
    assert!(
        !text.contains("failed") && !text.contains("error"),
        "qemu-io reported a failure:\n{text}"
    );
    text
}

fn unix_url(path: &Path) -> String {
    format!("nbd+unix:///r0?socket={}", path.display())
}

fn tcp_url(addr: &ListenAddr) -> String {
    let ListenAddr::Tcp(a) = addr else {
        panic!("not TCP")
    };
    format!("nbd://{a}/r0")
}

/// Deterministic pseudo-random bytes (xorshift), so a failure is reproducible.
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_commands_reach_the_volume() {
    if !installed("qemu-io").await {
        println!("SKIPPED: qemu-io not installed (apt-get install qemu-utils)");
        return;
    }
    let vol = Arc::new(MemVolume::new(SIZE));
    let (_dir, path) = socket_path();
    let srv = start(
        Arc::clone(&vol),
        ListenAddr::Unix(path.clone()),
        NbdConfig::default(),
    )
    .await;
    let url = unix_url(&path);

    // Plain writes, verified reads, and areas to zero and discard later.
    qemu_io(
        &url,
        &[
            "write -P 0xab 0 64k",
            "write -P 0x11 1M 1M",
            "write -P 0x22 4M 256k",
            "read -P 0xab 0 64k",
            "read -P 0x11 1M 1M",
        ],
    )
    .await;
    let before = vol.counters();
    assert!(before.writes >= 3);

    // FUA write, flush, write-zeroes (qemu sends NO_HOLE unless -u), discard; then verify.
    qemu_io(
        &url,
        &[
            "write -f -P 0xcd 64k 4k",
            "flush",
            "write -z 1M 512k",
            "write -z -u 1536k 64k",
            "discard 4M 128k",
            "read -P 0xcd 64k 4k",
            "read -P 0 1M 512k",
            "read -P 0x11 1600k 64k",
            "read -P 0 4M 128k",
            "read -P 0x22 4224k 128k",
        ],
    )
    .await;
    let after = vol.counters();
    assert!(
        after.fua_writes > before.fua_writes,
        "FUA did not reach the volume: {after:?}"
    );
    assert!(
        after.flushes > before.flushes,
        "flush did not reach the volume: {after:?}"
    );
    assert!(
        after.write_zeroes >= before.write_zeroes + 2,
        "write -z did not become WRITE_ZEROES: {after:?}"
    );
    assert!(
        after.discards > before.discards,
        "discard did not become TRIM: {after:?}"
    );

    let data = vol.snapshot();
    let k = 1024;
    assert!(data[..64 * k].iter().all(|&b| b == 0xab));
    assert!(data[64 * k..68 * k].iter().all(|&b| b == 0xcd));
    assert!(data[1024 * k..1600 * k].iter().all(|&b| b == 0));
    assert!(data[1600 * k..2048 * k].iter().all(|&b| b == 0x11));
    assert!(data[4096 * k..4224 * k].iter().all(|&b| b == 0));
    assert!(data[4224 * k..4352 * k].iter().all(|&b| b == 0x22));

    // A read that qemu-io must report as a mismatch, so the checks above are not vacuous.
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "read -P 0x99 0 4k", &url])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Pattern verification failed"),
        "qemu-io did not verify: {text}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_img_info_convert_and_bench_over_tcp() {
    if !installed("qemu-img").await {
        println!("SKIPPED: qemu-img not installed (apt-get install qemu-utils)");
        return;
    }
    let vol = TestVolume::new(SIZE);
    let srv = start(Arc::clone(&vol), ListenAddr::localhost(0), NbdConfig::default()).await;
    let url = tcp_url(&srv.addr);

    let info = run("qemu-img", &["info", "--output=json", &url]).await;
    let compact: String = info.split_whitespace().collect();
    assert!(
        compact.contains(&format!("\"virtual-size\":{SIZE}")),
        "qemu-img info: {info}"
    );

    // An 8 MiB random image onto the export, then the whole export back into a file.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.img");
    let back = dir.path().join("back.img");
    let image = random_bytes(8 << 20, 0x9e37_79b9_7f4a_7c15);
    std::fs::write(&src, &image).unwrap();
    run(
        "qemu-img",
        &[
            "convert",
            "-n",
            "-f",
            "raw",
            "-O",
            "raw",
            src.to_str().unwrap(),
            &url,
        ],
    )
    .await;
    let data = vol.mem.snapshot();
    assert!(
        data[..8 << 20] == image[..],
        "the export does not hold the converted image"
    );
    run(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "raw", &url, back.to_str().unwrap()],
    )
    .await;
    let copied = std::fs::read(&back).unwrap();
    assert_eq!(copied.len() as u64, SIZE);
    assert!(
        copied[..8 << 20] == image[..],
        "the copy back differs from the image"
    );
    assert!(copied[8 << 20..].iter().all(|&b| b == 0));

    // Pipelined writes: 4000 x 4 KiB at queue depth 32, pattern 0x5a, over the whole export.
    let writes = vol.mem.counters().writes;
    let out = run(
        "qemu-img",
        &[
            "bench",
            "-w",
            "-c",
            "4000",
            "-d",
            "32",
            "-s",
            "4096",
            "--pattern=90",
            "-f",
            "raw",
            &url,
        ],
    )
    .await;
    assert!(out.contains("Run completed"), "qemu-img bench: {out}");
    assert!(vol.mem.counters().writes >= writes + 4000);
    assert!(vol.mem.snapshot()[..4000 * 4096].iter().all(|&b| b == 0x5a));
    println!(
        "qemu-img bench: {} requests at most in flight in the volume",
        vol.max_in_flight()
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_nbd_client_reads_and_writes() {
    if !Path::new("/dev/nbd0").exists() {
        println!("SKIPPED: /dev/nbd0 absent: nbd-client needs the kernel nbd module (modprobe nbd)");
        return;
    }
    if !installed("nbd-client").await || !installed("dd").await {
        println!("SKIPPED: nbd-client not installed (apt-get install nbd-client)");
        return;
    }
    let vol = Arc::new(MemVolume::new(SIZE));
    let (_dir, path) = socket_path();
    let srv = start(
        Arc::clone(&vol),
        ListenAddr::Unix(path.clone()),
        NbdConfig::default(),
    )
    .await;
    let socket = path.to_str().unwrap();
    run(
        "nbd-client",
        &["-unix", socket, "/dev/nbd0", "-N", "r0", "-b", "4096"],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("pattern");
    let image = random_bytes(1 << 20, 7);
    std::fs::write(&src, &image).unwrap();
    let if_arg = format!("if={}", src.display());
    run(
        "dd",
        &[&if_arg, "of=/dev/nbd0", "bs=64k", "oflag=direct", "conv=fsync"],
    )
    .await;
    run("nbd-client", &["-d", "/dev/nbd0"]).await;
    assert!(vol.snapshot()[..1 << 20] == image[..]);
    assert!(vol.counters().flushes >= 1);
    srv.stop().await;
}
