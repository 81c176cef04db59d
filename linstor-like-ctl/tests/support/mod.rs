//! Real processes for the cluster tests: a `replbd-controller`, `replbd-node` daemons each on its
//! own random 127.x.y.z address, and the `replbd` CLI run as a binary, its `-m` JSON parsed.
//! Every wait is a condition polled with a timeout.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn replbd() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_replbd"))
}

pub fn controller_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_replbd-controller"))
}

/// `replbd-node`, built beside the CLI by a workspace build.
pub fn node_bin() -> PathBuf {
    let p = replbd().with_file_name("replbd-node");
    assert!(
        p.is_file(),
        "{} is missing: build it first (`cargo build -p replbd-node`; `cargo test --workspace` does it)",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A random loopback /24 prefix, `127.A.B`.
pub fn loopback_prefix() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id().wrapping_mul(2_654_435_761);
    format!("127.{}.{}", 10 + n % 240, 1 + (n / 240) % 250)
}

pub struct Proc {
    pub child: Child,
    pub args: Vec<String>,
    pub bin: PathBuf,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(bin: &Path, args: Vec<String>, log: &Path) -> Proc {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(bin)
            .args(&args)
            .env("REPLBD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        Proc {
            child,
            args,
            bin: bin.to_owned(),
            log: log.to_owned(),
        }
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// SIGTERM and wait (SIGKILL after 30 s).
    pub fn stop(&mut self) {
        self.signal("-TERM");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        *self = Proc::spawn(&self.bin.clone(), self.args.clone(), &self.log.clone());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub controller_addr: String,
    pub controller: Option<Proc>,
    pub nodes: Vec<(String, String, Proc)>,
    pub prefix: String,
}

impl Cluster {
    /// A controller with a SQLite database and `n` nodes (not yet registered).
    pub fn start(n: usize, controller_extra: &[&str], node_extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let controller_addr = format!("127.0.0.1:{port}");
        let mut args = vec![
            "--listen".to_owned(),
            controller_addr.clone(),
            "--db".to_owned(),
            dir.path().join("controller.db").display().to_string(),
        ];
        args.extend(controller_extra.iter().map(|s| (*s).to_owned()));
        let controller = Proc::spawn(&controller_bin(), args, &dir.path().join("controller.log"));
        let prefix = loopback_prefix();
        let nodes = (1..=n)
            .map(|i| {
                let name = format!("n{i}");
                let addr = format!("{prefix}.{i}");
                let nd = dir.path().join(&name);
                std::fs::create_dir_all(&nd).unwrap();
                let mut args: Vec<String> = vec![
                    "--admin-socket".into(),
                    nd.join("admin.sock").display().to_string(),
                    "daemon".into(),
                    "--config".into(),
                    nd.join("none.toml").display().to_string(),
                    "--agent".into(),
                    format!("{addr}:3366"),
                    "--node-name".into(),
                    name.clone(),
                    "--state-dir".into(),
                    nd.join("run").display().to_string(),
                ];
                args.extend(node_extra.iter().map(|s| (*s).to_owned()));
                let p = Proc::spawn(&node_bin(), args, &dir.path().join(format!("{name}.log")));
                (name, addr, p)
            })
            .collect();
        let c = Cluster {
            dir,
            controller_addr,
            controller: Some(controller),
            nodes,
            prefix,
        };
        c.wait(Duration::from_secs(20), "the controller answers", || {
            c.cli(&["controller", "version"]).status.success()
        });
        c
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn node(&mut self, name: &str) -> &mut Proc {
        &mut self.nodes.iter_mut().find(|n| n.0 == name).unwrap().2
    }

    /// Runs `replbd ARGS` against the controller.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(&[], args)
    }

    pub fn cli_with(&self, global: &[&str], args: &[&str]) -> Output {
        Command::new(replbd())
            .arg("--controllers")
            .arg(&self.controller_addr)
            .args(global)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "replbd {} failed: {}{}\n(logs in {})",
            args.join(" "),
            out,
            String::from_utf8_lossy(&o.stderr),
            self.path().display()
        );
        out
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            !o.status.success(),
            "replbd {} succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// `replbd -m ARGS` parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["-m"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    pub fn wait(&self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting until {what} (logs in {})",
                self.path().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Registers every node, waits until they are online, and gives each a file pool `pool1`.
    pub fn register_nodes(&self, driver: &str) {
        for (name, addr, _) in &self.nodes {
            self.ok(&["node", "create", name, addr]);
        }
        self.wait(Duration::from_secs(30), "every node is Online", || {
            self.json(&["node", "list"])
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["state"] == "Online")
        });
        for (name, _, _) in &self.nodes {
            let pool = self.path().join(format!("pool-{name}")).display().to_string();
            self.ok(&["storage-pool", "create", driver, name, "pool1", &pool]);
        }
    }

    /// The replica of `res` on `node` from `resource list -m`.
    pub fn replica(&self, res: &str, node: &str) -> Value {
        self.json(&["resource", "list", "-r", res])
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["node"] == node)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// The NBD URL of `res` on `node` once it serves it.
    pub fn device(&self, res: &str, node: &str) -> String {
        let mut dev = String::new();
        self.wait(Duration::from_secs(20), "the volume is served", || {
            dev = self.replica(res, node)["volumes"][0]["device"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            !dev.is_empty()
        });
        dev
    }
}

/// `qemu-io -f raw -c COMMAND DEVICE`, which must succeed and verify.
pub fn qemu_io(device: &str, command: &str) {
    let o = Command::new("qemu-io")
        .args(["-f", "raw", "-c", command, device])
        .output()
        .expect("qemu-io (qemu-utils; scripts/install-deps.sh installs it)");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && !out.contains("Pattern verification failed") && !out.contains("failed"),
        "qemu-io {command}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Sends `GET path` to `addr` and returns the response.
pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
