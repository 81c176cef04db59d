//! Three real `replbd-node daemon` processes on loopback, each on its own address (127.0.0.11–13)
//! so that a network partition can be made with nftables rules between addresses; file-backed
//! disks with internal metadata; admin commands through the real `replbd-node` binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use replbd_bitmap::{CreateOptions, FileDevice, NodeId, Params, Placement};
use replbd_node::admin::report::ResourceReport;
use replbd_quorum::{ConnectionState, DiskState, ReplicationState};

/// Node names, by node id.
pub const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];
/// Bytes of each backing file (data, then internal metadata).
const FILE_SIZE: u64 = 24 << 20;
/// The generation every node starts UpToDate at.
const UUID: &str = "FA017FA017FA0170";
/// The nftables table partitions are made in.
const NFT_TABLE: &str = "replbd_faults";

/// One node.
pub struct Node {
    pub config: PathBuf,
    pub socket: PathBuf,
    pub nbd: PathBuf,
    pub disk: PathBuf,
    pub log: PathBuf,
    pub ip: String,
    child: Option<Child>,
}

/// The cluster, its files in `dir` (removed on drop unless kept).
pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    bin: PathBuf,
    /// Partitions are possible (nftables works here).
    pub can_partition: bool,
    pub keep: bool,
}

/// The `replbd-node` binary: beside this one (a workspace build), or `REPLBD_NODE_BIN`.
fn node_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("REPLBD_NODE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("replbd-node");
    if p.exists() {
        Ok(p)
    } else {
        bail!(
            "{} not found: build it first (cargo build -p replbd-node) or set REPLBD_NODE_BIN",
            p.display()
        )
    }
}

fn config_text(dir: &Path, this: &str, port: u16) -> String {
    let mut t = format!("this-node = \"{this}\"\n\n[resource.r0]\n");
    for (i, name) in NAMES.iter().enumerate() {
        t += &format!(
            "\n[[resource.r0.node]]\nname = \"{name}\"\nid = {i}\naddress = \"127.0.0.{}:{port}\"\ndisk = \"{}\"\n",
            11 + i,
            dir.join(name).join("r0.img").display()
        );
    }
    t += "\n[[resource.r0.volume]]\nmeta-disk = \"internal\"\n";
    t += "\n[resource.r0.net]\nprotocol = \"C\"\nshared-secret = \"faults\"\ntimeout = \"2s\"\nping-int = \"1s\"\nping-timeout = \"1s\"\nconnect-timeout = \"3s\"\nconnect-int-min = \"50ms\"\nconnect-int = \"500ms\"\nread-timeout = \"2s\"\n";
    t += "\n[resource.r0.options]\nquorum = \"majority\"\non-no-quorum = \"io-error\"\n";
    t += &format!(
        "\n[resource.r0.front-end]\nkind = \"nbd\"\nsocket = \"{}\"\n",
        dir.join(this).join("r0.nbd").display()
    );
    t
}

fn create_disk(path: &Path, id: u8) -> Result<()> {
    let dev = FileDevice::create(path, FILE_SIZE)?;
    replbd_bitmap::create(
        &dev,
        &CreateOptions {
            placement: Placement::Internal,
            params: Params {
                data_size: 4096,
                max_peers: 2,
                bm_block_size: 4096,
                al_extents: 67,
            },
            node_id: NodeId::new(id).ok_or_else(|| anyhow!("node id {id} is out of range"))?,
        },
    )?;
    Ok(())
}

fn nft(script: &str) -> bool {
    Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            if let Some(mut i) = c.stdin.take() {
                i.write_all(script.as_bytes())?;
            }
            c.wait()
        })
        .is_ok_and(|s| s.success())
}

impl Cluster {
    /// Creates the files of a three-node cluster in a new directory; nothing runs yet.
    pub fn create(port: u16) -> Result<Cluster> {
        let bin = node_binary()?;
        let dir = std::env::temp_dir().join(format!("replbd-faults-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut nodes = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            let d = dir.join(name);
            std::fs::create_dir_all(&d)?;
            let config = d.join("replbd.toml");
            std::fs::write(&config, config_text(&dir, name, port))?;
            let disk = d.join("r0.img");
            create_disk(&disk, i as u8)?;
            nodes.push(Node {
                socket: d.join("admin.sock"),
                nbd: d.join("r0.nbd"),
                log: d.join("daemon.log"),
                ip: format!("127.0.0.{}", 11 + i),
                config,
                disk,
                child: None,
            });
        }
        let can_partition = nft(&format!(
            "add table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n"
        ));
        Ok(Cluster {
            dir,
            nodes,
            bin,
            can_partition,
            keep: false,
        })
    }

    /// Spawns node `i`'s daemon and waits until it answers.
    fn spawn(&mut self, i: usize) -> Result<()> {
        let n = &self.nodes[i];
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.nodes[i].child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.admin(i, &["status"]).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer within 20 s; log: {}",
                    NAMES[i],
                    self.nodes[i].log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts node `i`'s daemon again (after a kill) and brings r0 up.
    pub fn start(&mut self, i: usize) -> Result<()> {
        self.spawn(i)?;
        self.admin(i, &["up", "r0"])?;
        Ok(())
    }

    /// Declares every node UpToDate at one generation, starts them all and waits until connected.
    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..NAMES.len() {
            self.spawn(i)?;
            self.admin(i, &["new-current-uuid", "r0", "--clear-bitmap", "--uuid", UUID])?;
        }
        for i in 0..NAMES.len() {
            self.admin(i, &["up", "r0"])?;
        }
        for i in 0..NAMES.len() {
            self.wait(i, "connected to both peers", Duration::from_secs(30), |s| {
                s.peers
                    .iter()
                    .all(|p| p.replication == ReplicationState::Established)
            })?;
        }
        Ok(())
    }

    /// Runs `replbd-node --admin-socket <node i> ARGS`; its output, or the error it printed.
    pub fn admin(&self, i: usize, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .arg("--admin-socket")
            .arg(&self.nodes[i].socket)
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("{}: {}", NAMES[i], String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Node `i`'s status of r0.
    pub fn status(&self, i: usize) -> Result<ResourceReport> {
        let text = self.admin(i, &["status", "r0", "--json"])?;
        let mut r: Vec<ResourceReport> = serde_json::from_str(&text)?;
        r.pop().ok_or_else(|| anyhow!("{}: no status for r0", NAMES[i]))
    }

    /// Waits until node `i`'s status satisfies `pred`.
    pub fn wait(
        &self,
        i: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&ResourceReport) -> bool,
    ) -> Result<ResourceReport> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(s) = self.status(i)
                && pred(&s)
            {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} never got {what}; last status: {:?}",
                    NAMES[i],
                    self.status(i).ok()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether node `i`'s daemon runs.
    pub fn running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// The process id of node `i`'s daemon.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// `kill -9` of node `i` (or, if it was killed already, collects its exit).
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Installs (or removes, with `on == false`) the rules that cut `a` off from `others`.
    pub fn partition(&self, a: usize, others: &[usize], on: bool) -> Result<()> {
        if !on {
            nft(&format!("delete table inet {NFT_TABLE}\n"));
            return Ok(());
        }
        let mut s = format!(
            "add table inet {NFT_TABLE}\nadd chain inet {NFT_TABLE} out {{ type filter hook output priority 0 ; }}\n"
        );
        for &b in others {
            let (x, y) = (&self.nodes[a].ip, &self.nodes[b].ip);
            s += &format!("add rule inet {NFT_TABLE} out ip saddr {x} ip daddr {y} drop\n");
            s += &format!("add rule inet {NFT_TABLE} out ip saddr {y} ip daddr {x} drop\n");
        }
        if !nft(&s) {
            bail!("nft refused the partition rules");
        }
        Ok(())
    }
}

/// Whether `s` is UpToDate and connected, Established, to every peer with an UpToDate disk.
pub fn healthy(s: &ResourceReport) -> bool {
    s.disk == Some(DiskState::UpToDate)
        && s.peers.iter().all(|p| {
            p.connection == ConnectionState::Connected
                && p.replication == ReplicationState::Established
                && p.peer_disk == DiskState::UpToDate
                && p.out_of_sync_bytes == 0
        })
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.kill(i);
        }
        if self.can_partition {
            nft(&format!("delete table inet {NFT_TABLE}\n"));
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
