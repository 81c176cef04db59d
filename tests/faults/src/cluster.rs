//! Three real `replbd-node daemon` processes on loopback: one temporary directory per run, one
//! TOML file per node, file-backed disks with internal metadata, the front end (NBD on a unix
//! socket, or `/dev/ublkbN` with `N` the node id: [`FrontEnd`]), and the admin socket each daemon
//! serves.
//!
//! With the ublk front end, killing a node is a host dying: its `/dev/ublkbN` goes too, which fails
//! the I/O waiting on it (a device whose server died would otherwise hold that I/O until the same
//! node serves it again, as the driver's recovery does for a restarted daemon on a live host).
//!
//! Each node listens on its own port; its peers are reached through the [`crate::proxy`]
//! listeners, so every replication byte crosses the fault proxy. The processes are killed when the
//! [`Cluster`] is dropped, on every exit path, and the temporary directory is removed with it.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use replbd_bitmap::{CreateOptions, FileDevice, NodeId, Params, Placement};
use replbd_node::admin::protocol::{Reply, Request, to_line};
use replbd_node::admin::report::ResourceReport;

use crate::front::FrontEnd;

/// The node names, by index (= node id).
pub const NAMES: [&str; NODES] = ["alpha", "beta", "gamma"];
/// How many nodes a cluster has.
pub const NODES: usize = 3;
/// The resource.
pub const RESOURCE: &str = "r0";
/// Each backing file: data plus internal metadata.
const FILE_SIZE: u64 = 24 << 20;
/// Every node's data is declared UpToDate at this generation before the first `up`.
const UUID: &str = "FA0175FA0175FA00";
/// How long an admin request may take before the daemon is considered stuck.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One node.
pub struct Node {
    /// Its configuration file.
    pub config: PathBuf,
    /// Its admin socket.
    pub socket: PathBuf,
    /// Its export (NBD socket or block device, served while Primary).
    pub export: PathBuf,
    /// Its backing file.
    pub disk: PathBuf,
    /// Its daemon's log (appended to across restarts).
    pub log: PathBuf,
    child: Option<Child>,
}

/// The cluster.
pub struct Cluster {
    bin: PathBuf,
    front: FrontEnd,
    /// The nodes, by index.
    pub nodes: Vec<Node>,
    dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

/// The configuration of node `this`: its own real address, its peers' proxy addresses.
fn config_text(dir: &Path, this: usize, addresses: &[SocketAddr], front: FrontEnd) -> String {
    let mut t = format!("this-node = \"{}\"\n\n[resource.{RESOURCE}]\n", name(this));
    for (i, name) in NAMES.iter().enumerate() {
        t += &format!(
            "\n[[resource.{RESOURCE}.node]]\nname = \"{name}\"\nid = {i}\naddress = \"{}\"\ndisk = \"{}\"\n",
            addresses[i],
            dir.join(name).join("r0.img").display()
        );
    }
    t += &format!("\n[[resource.{RESOURCE}.volume]]\nmeta-disk = \"internal\"\n");
    // Short timers so that faults are noticed in about a second, as in the daemon tests.
    t += &format!(
        "\n[resource.{RESOURCE}.net]\nprotocol = \"C\"\nshared-secret = \"faults\"\ntimeout = \"2s\"\n\
         ping-int = \"1s\"\nping-timeout = \"1s\"\nconnect-timeout = \"3s\"\nconnect-int-min = \"50ms\"\n\
         connect-int = \"500ms\"\nread-timeout = \"2s\"\n"
    );
    t += &format!("\n[resource.{RESOURCE}.options]\nquorum = \"majority\"\non-no-quorum = \"io-error\"\n");
    t += &format!(
        "\n[resource.{RESOURCE}.front-end]\n{}",
        front.config(&dir.join(name(this)), this)
    );
    t
}

/// Creates internal metadata for node `id` on a new zeroed file.
fn create_disk(path: &Path, id: u8) -> Result<()> {
    let dev = FileDevice::create(path, FILE_SIZE).with_context(|| format!("creating {}", path.display()))?;
    let node_id = NodeId::new(id).context("node id")?;
    replbd_bitmap::create(
        &dev,
        &CreateOptions {
            placement: Placement::Internal,
            params: Params {
                data_size: 4096,
                max_peers: NAMES.len() - 1,
                bm_block_size: 4096,
                al_extents: 67,
            },
            node_id,
        },
    )
    .with_context(|| format!("creating metadata on {}", path.display()))?;
    Ok(())
}

/// Sends one admin request to the daemon at `socket` and returns its reply (an error reply is an
/// `Err` with the daemon's message).
pub fn admin(socket: &Path, request: &Request) -> Result<Reply> {
    let stream =
        UnixStream::connect(socket).with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(ADMIN_TIMEOUT))?;
    stream.set_write_timeout(Some(ADMIN_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    writer.write_all(to_line(request)?.as_bytes())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.is_empty() {
        bail!("the daemon closed the admin connection without replying");
    }
    match serde_json::from_str(&line)? {
        Reply::Error { error } => bail!("{error}"),
        reply => Ok(reply),
    }
}

impl Cluster {
    /// Creates the directory, disks and configurations; `addresses(this, of)` is the address node
    /// `this` uses for node `of` (its own listening address when `this == of`).
    pub fn create(
        bin: &Path,
        front: FrontEnd,
        addresses: impl Fn(usize, usize) -> SocketAddr,
    ) -> Result<Cluster> {
        let tmp = tempfile::Builder::new().prefix("replbd-faults.").tempdir()?;
        let mut nodes = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(&dir)?;
            let config = dir.join("replbd.toml");
            let addrs: Vec<SocketAddr> = (0..NAMES.len()).map(|j| addresses(i, j)).collect();
            std::fs::write(&config, config_text(tmp.path(), i, &addrs, front))?;
            let disk = dir.join("r0.img");
            create_disk(&disk, u8::try_from(i)?)?;
            nodes.push(Node {
                config,
                socket: dir.join("admin.sock"),
                export: front.export(&dir, i),
                disk,
                log: dir.join("daemon.log"),
                child: None,
            });
        }
        Ok(Cluster {
            bin: bin.to_owned(),
            front,
            nodes,
            dir: tmp.path().to_owned(),
            tmp: Some(tmp),
        })
    }

    /// The front end the nodes serve.
    pub fn front(&self) -> FrontEnd {
        self.front
    }

    /// The run's temporary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts node `i`'s daemon and waits until its admin socket answers.
    pub fn start(&mut self, i: usize) -> Result<()> {
        let n = &mut self.nodes[i];
        let _ = std::fs::remove_file(&n.socket);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)?;
        let child = Command::new(&self.bin)
            .args(["daemon", "--config"])
            .arg(&n.config)
            .arg("--admin-socket")
            .arg(&n.socket)
            .env("REPLBD_LOG", "info")
            .env("REPLBD_FAULT_INJECTION", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        n.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(code) = self.exited(i) {
                bail!(
                    "{} exited at start ({code}); log: {}",
                    name(i),
                    self.nodes[i].log.display()
                );
            }
            if admin(&self.nodes[i].socket, &Request::Status { resource: None }).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not answer on its admin socket within 20s", name(i));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether node `i`'s daemon is running (started by us and not exited).
    pub fn running(&mut self, i: usize) -> bool {
        self.nodes[i].child.is_some() && self.exited(i).is_none()
    }

    /// If node `i`'s daemon has exited on its own: its exit status, and it is forgotten.
    pub fn exited(&mut self, i: usize) -> Option<String> {
        let child = self.nodes[i].child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.nodes[i].child = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }

    /// `kill -9` of node `i`'s daemon.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill()?;
            c.wait()?;
        }
        if self.front == FrontEnd::Ublk {
            delete_ublk_device(i)?;
        }
        Ok(())
    }

    /// SIGTERM (a clean stop: every resource taken down) and waits; SIGKILL after 30 s.
    pub fn stop(&mut self, i: usize) -> Result<()> {
        let Some(mut c) = self.nodes[i].child.take() else {
            return Ok(());
        };
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while c.try_wait()?.is_none() {
            if Instant::now() > deadline {
                c.kill()?;
                c.wait()?;
                bail!("{} did not stop within 30s of SIGTERM; killed", name(i));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Runs an admin request on node `i`.
    pub fn admin(&self, i: usize, request: &Request) -> Result<Reply> {
        admin(&self.nodes[i].socket, request)
            .with_context(|| format!("{} on {}", request_name(request), name(i)))
    }

    /// `status` of the resource on node `i`.
    pub fn status(&self, i: usize) -> Result<ResourceReport> {
        let reply = self.admin(
            i,
            &Request::Status {
                resource: Some(RESOURCE.into()),
            },
        )?;
        match reply {
            Reply::Status { mut resources } if resources.len() == 1 => Ok(resources.remove(0)),
            other => bail!("unexpected status reply from {}: {other:?}", name(i)),
        }
    }

    /// Declares every node's (zeroed) data UpToDate at the same generation, then brings the
    /// resource up everywhere.
    pub fn initialise(&self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.admin(
                i,
                &Request::NewCurrentUuid {
                    resource: RESOURCE.into(),
                    clear_bitmap: true,
                    uuid: Some(UUID.into()),
                },
            )?;
        }
        for i in 0..self.nodes.len() {
            self.up(i)?;
        }
        Ok(())
    }

    /// `up` on node `i`.
    pub fn up(&self, i: usize) -> Result<()> {
        self.admin(
            i,
            &Request::Up {
                resource: RESOURCE.into(),
            },
        )
        .map(drop)
    }

    /// The first `len` bytes of node `i`'s backing file: its data area.
    pub fn data_area(&self, i: usize, len: u64) -> Result<Vec<u8>> {
        let mut bytes = std::fs::read(&self.nodes[i].disk)?;
        bytes.truncate(usize::try_from(len)?);
        Ok(bytes)
    }

    /// The last `lines` lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops every daemon (`kill -9`) and keeps the temporary directory (logs, disks) instead of
    /// removing it; returns its path.
    pub fn keep_dir(&mut self) -> PathBuf {
        for i in 0..self.nodes.len() {
            let _ = self.kill(i);
        }
        match self.tmp.take() {
            Some(t) => t.keep(),
            None => self.dir.clone(),
        }
    }
}

/// A request's command name, for messages.
fn request_name(request: &Request) -> String {
    to_line(request)
        .ok()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .and_then(|v| v.get("command").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "request".into())
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

/// The name of node `i`.
pub fn name(i: usize) -> &'static str {
    NAMES.get(i).copied().unwrap_or("?")
}

/// How long deleting a dead node's ublk device may take: the delete fails the I/O waiting on it
/// and completes once the workload has closed the device.
const DEVICE_DELETE_TIMEOUT: Duration = Duration::from_secs(60);

/// Deletes `/dev/ublkb{id}` if it exists (the device of a node whose daemon was killed).
fn delete_ublk_device(id: usize) -> Result<()> {
    let id = u32::try_from(id)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(replbd_ublk::delete_device(id));
    });
    match rx.recv_timeout(DEVICE_DELETE_TIMEOUT) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(replbd_ublk::UblkTargetError::NoSuchDevice { .. })) => Ok(()),
        Ok(Err(e)) => bail!("deleting /dev/ublkb{id} of the killed node: {e}"),
        Err(_) => bail!(
            "deleting /dev/ublkb{id} of the killed node took longer than {}s (something still holds it open)",
            DEVICE_DELETE_TIMEOUT.as_secs()
        ),
    }
}
