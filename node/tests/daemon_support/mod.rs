//! Real `replbd-node daemon` processes on loopback for the daemon tests: one temporary directory
//! per cluster, one TOML file per node naming itself, file-backed disks with internal metadata, and
//! helpers that run admin commands with the real binary and wait for conditions with timeouts.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use replbd_bitmap::{CreateOptions, FileDevice, NodeFlags, NodeId, Params, Placement};
use replbd_node::admin::report::ResourceReport;

pub const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];
/// Size of each backing file (data plus internal metadata).
pub const FILE_SIZE: u64 = 32 << 20;
/// The UUID every node is declared UpToDate at.
pub const UUID: &str = "5EED5EED5EED5EEC";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_replbd-node")
}

/// Free loopback ports (bound, then released for the daemons to bind).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

/// Creates internal metadata for node `id` on a new file of [`FILE_SIZE`] bytes.
pub fn create_disk(path: &Path, id: u8, max_peers: usize) {
    let dev = FileDevice::create(path, FILE_SIZE).unwrap();
    replbd_bitmap::create(
        &dev,
        &CreateOptions {
            placement: Placement::Internal,
            params: Params {
                data_size: 4096,
                max_peers,
                bm_block_size: 4096,
                al_extents: 67,
            },
            node_id: NodeId::new(id).unwrap(),
        },
    )
    .unwrap();
}

/// Whether the metadata on `path` is marked clean, read with the library; where the `replbd-meta`
/// binary has been built beside `replbd-node` (a workspace build), its `dump --json` must say the
/// same in `"clean"`.
pub fn metadata_clean(path: &Path) -> bool {
    let dev = FileDevice::open_read_only(path).unwrap();
    let ins = replbd_bitmap::inspect(&dev).unwrap();
    let clean = ins.superblock.flags.contains(NodeFlags::AL_CLEAN);
    let meta_tool = Path::new(bin()).with_file_name("replbd-meta");
    if meta_tool.exists() {
        let out = Command::new(&meta_tool)
            .args(["dump", "--json"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let dump: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            dump["clean"],
            serde_json::Value::Bool(clean),
            "replbd-meta dump --json disagrees"
        );
    }
    clean
}

pub struct Node {
    pub name: &'static str,
    pub id: u8,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub nbd: PathBuf,
    pub disk: PathBuf,
    pub metrics: SocketAddr,
    pub log: PathBuf,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub tmp: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

/// The TOML of a three-node resource `r0`, seen from `this`; `extra` is appended to the net
/// section.
pub fn config_text(dir: &Path, this: &str, ports: &[u16], front_end: &str) -> String {
    let mut t = format!("this-node = \"{this}\"\n\n[resource.r0]\n");
    for (i, name) in NAMES.iter().enumerate() {
        t += &format!(
            "\n[[resource.r0.node]]\nname = \"{name}\"\nid = {i}\naddress = \"127.0.0.1:{}\"\ndisk = \"{}\"\n",
            ports[i],
            dir.join(name).join("r0.img").display()
        );
    }
    t += "\n[[resource.r0.volume]]\nmeta-disk = \"internal\"\n";
    t += "\n[resource.r0.net]\nshared-secret = \"test-secret\"\ntimeout = \"2s\"\nping-int = \"1s\"\nping-timeout = \"1s\"\nconnect-timeout = \"5s\"\nconnect-int-min = \"50ms\"\nconnect-int = \"500ms\"\nread-timeout = \"2s\"\n";
    t += &format!("\n[resource.r0.front-end]\n{front_end}\n");
    t
}

impl Cluster {
    /// Three nodes with metadata created (Inconsistent), configured, not started.
    pub fn new() -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let ports = free_ports(6);
        let mut nodes = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let nbd = dir.join("r0.nbd");
            let config = dir.join("replbd.toml");
            let front_end = format!("kind = \"nbd\"\nsocket = \"{}\"", nbd.display());
            std::fs::write(&config, config_text(tmp.path(), name, &ports[..3], &front_end)).unwrap();
            let disk = dir.join("r0.img");
            create_disk(&disk, i as u8, 2);
            nodes.push(Node {
                name,
                id: i as u8,
                socket: dir.join("admin.sock"),
                log: dir.join("daemon.log"),
                metrics: format!("127.0.0.1:{}", ports[3 + i]).parse().unwrap(),
                dir,
                config,
                nbd,
                disk,
                child: None,
            });
        }
        Cluster { tmp, nodes }
    }

    /// Starts node `i`'s daemon and waits until it answers.
    pub fn start(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .unwrap();
        let child = Command::new(bin())
            .args(["daemon", "--config"])
            .arg(&n.config)
            .arg("--admin-socket")
            .arg(&n.socket)
            .args(["--metrics", &n.metrics.to_string()])
            .env("REPLBD_LOG", "info,replbd_node=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        n.child = Some(child);
        let socket = n.socket.clone();
        wait_until(
            &format!("{} to answer", NAMES[i]),
            Duration::from_secs(20),
            || {
                self.child_exited(i);
                Command::new(bin())
                    .arg("--admin-socket")
                    .arg(&socket)
                    .arg("status")
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        );
    }

    /// Three nodes started, UpToDate, connected, with alpha Primary.
    pub fn with_primary_alpha() -> Cluster {
        let mut c = Cluster::new();
        c.start_all();
        c.up_connected();
        c.ok(0, &["primary", "r0"]);
        c
    }

    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    fn child_exited(&mut self, i: usize) {
        if let Some(c) = self.nodes[i].child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            panic!("{} exited with {status}:\n{}", NAMES[i], self.log(i));
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Runs `replbd-node --admin-socket <node i's> ARGS`.
    pub fn cli(&self, i: usize, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("--admin-socket")
            .arg(&self.nodes[i].socket)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs an admin command that must succeed; returns its standard output.
    pub fn ok(&self, i: usize, args: &[&str]) -> String {
        let out = self.cli(i, args);
        assert!(
            out.status.success(),
            "{} {args:?} failed ({}): {}{}",
            NAMES[i],
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs an admin command that must fail; returns its exit code and standard error.
    pub fn fails(&self, i: usize, args: &[&str]) -> (i32, String) {
        let out = self.cli(i, args);
        assert!(!out.status.success(), "{} {args:?} succeeded", NAMES[i]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stderr).unwrap(),
        )
    }

    /// `status --json` of node `i`'s resource r0.
    pub fn status(&self, i: usize) -> ResourceReport {
        let text = self.ok(i, &["status", "r0", "--json"]);
        let mut reports: Vec<ResourceReport> = serde_json::from_str(&text).unwrap();
        assert_eq!(reports.len(), 1);
        reports.remove(0)
    }

    /// Waits until node `i`'s status satisfies `pred`.
    pub fn wait_status(
        &self,
        i: usize,
        what: &str,
        pred: impl Fn(&ResourceReport) -> bool,
    ) -> ResourceReport {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.status(i);
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {}: {what}; last status: {s:#?}",
                NAMES[i]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Declares every node's data UpToDate at [`UUID`], brings r0 up everywhere and waits until
    /// every node is connected to every other.
    pub fn up_connected(&self) {
        for i in 0..self.nodes.len() {
            self.ok(i, &["new-current-uuid", "r0", "--clear-bitmap", "--uuid", UUID]);
        }
        for i in 0..self.nodes.len() {
            self.ok(i, &["up", "r0"]);
        }
        for i in 0..self.nodes.len() {
            self.wait_status(i, "every peer Connected and Established", all_established);
        }
    }

    /// Sends `signal` (TERM or KILL) to node `i` and waits for it to exit; returns its exit code.
    pub fn signal(&mut self, i: usize, signal: &str) -> Option<i32> {
        let mut child = self.nodes[i].child.take().unwrap();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit after SIG{signal}",
                NAMES[i]
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

pub fn all_established(s: &ResourceReport) -> bool {
    s.up && s.peers.len() == 2
        && s.peers.iter().all(|p| {
            p.connection == replbd_quorum::ConnectionState::Connected
                && p.replication == replbd_quorum::ReplicationState::Established
        })
}

/// Waits until `cond` holds, failing after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `program` can be run.
pub fn installed(program: &str) -> bool {
    Command::new(program).arg("--version").output().is_ok()
}

/// Runs qemu-io commands against the NBD export at `socket`; every command must succeed.
pub fn qemu_io(socket: &Path, commands: &[&str]) -> String {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.args(["-c", c]);
    }
    cmd.arg(format!("nbd+unix:///r0?socket={}", socket.display()));
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.contains("failed"),
        "qemu-io {commands:?}:\n{text}"
    );
    text
}

/// `GET path` on the metrics endpoint: the status line and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// `replbd-node events` of one node, read line by line on a thread so a test waits with a timeout.
pub struct EventStream {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line received so far.
    pub seen: Vec<String>,
}

impl EventStream {
    /// Subscribes to the events of the daemon at `socket`.
    pub fn spawn(socket: &Path) -> EventStream {
        let mut child = Command::new(bin())
            .arg("--admin-socket")
            .arg(socket)
            .arg("events")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        EventStream {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Collects what arrives within `window` into `seen`.
    pub fn drain(&mut self, window: Duration) {
        let deadline = Instant::now() + window;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
    }

    /// The first line (from now on) for which `pred` holds; fails after `timeout`.
    pub fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no event {what} within {timeout:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `key:` in an event line (`bytes:4194304` → `4194304`).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
}

/// The first `len` bytes of node `path`'s disk: its data area (internal metadata lies after it).
pub fn data_area(path: &Path, len: u64) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.truncate(usize::try_from(len).unwrap());
    bytes
}
