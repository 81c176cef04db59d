//! The demo's processes: a controller and three node daemons on loopback, each node on its own
//! 127.x.y.z address (the whole 127/8 block is loopback on Linux), so every node uses the default
//! agent port and the same replication port as on real hosts, and two demos never collide.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use replbd_proto::controller as pb;

use super::Binaries;
use crate::cli::{Failure, client};

/// A child process of the demo.
pub struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(bin: &Path, args: &[String], log: &Path) -> Result<Proc, Failure> {
        let file =
            std::fs::File::create(log).map_err(|e| Failure::new(format!("create {}: {e}", log.display())))?;
        let err = file.try_clone().map_err(|e| Failure::new(e.to_string()))?;
        let child = Command::new(bin)
            .args(args)
            .env(
                "REPLBD_LOG",
                std::env::var("REPLBD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|e| Failure::new(format!("cannot start {}: {e}", bin.display())))?;
        Ok(Proc { child })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: i32) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    async fn stop(mut self, grace: Duration) {
        self.signal(libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct NodeProc {
    address: String,
    args: Vec<String>,
    proc: Option<Proc>,
}

/// The demo cluster.
pub struct Cluster {
    /// The working directory.
    pub dir: PathBuf,
    /// The controller's API address.
    pub controller_addr: String,
    /// The node that served the volume last and its NBD address there (shown with --keep).
    pub device_hint: (String, String),
    node_bin: PathBuf,
    controller: Option<Proc>,
    nodes: BTreeMap<String, NodeProc>,
    detached: bool,
}

fn free_port() -> Result<u16, Failure> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Failure::new(format!("no free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Failure::new(e.to_string()))
}

impl Cluster {
    /// Starts the controller and three nodes in `dir`.
    pub async fn start(bins: &Binaries, dir: &Path) -> Result<Cluster, Failure> {
        let port = free_port()?;
        let controller_addr = format!("127.0.0.1:{port}");
        let args: Vec<String> = [
            "--listen",
            &controller_addr,
            "--db",
            &dir.join("controller.db").display().to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let controller = Proc::spawn(&bins.controller, &args, &dir.join("controller.log"))?;
        let mut rng = StdRng::from_os_rng();
        let (a, b) = (10 + rng.next_u32() % 240, 1 + rng.next_u32() % 250);
        let mut nodes = BTreeMap::new();
        for i in 1..=3 {
            let name = format!("n{i}");
            let address = format!("127.{a}.{b}.{i}");
            let nd = dir.join(&name);
            std::fs::create_dir_all(&nd).map_err(|e| Failure::new(e.to_string()))?;
            let args: Vec<String> = vec![
                "--admin-socket".into(),
                nd.join("admin.sock").display().to_string(),
                "daemon".into(),
                "--config".into(),
                nd.join("replbd.toml").display().to_string(),
                "--agent".into(),
                format!("{address}:3366"),
                "--node-name".into(),
                name.clone(),
                "--state-dir".into(),
                nd.join("run").display().to_string(),
            ];
            nodes.insert(
                name,
                NodeProc {
                    address,
                    args,
                    proc: None,
                },
            );
        }
        let mut c = Cluster {
            dir: dir.to_owned(),
            controller_addr,
            device_hint: (String::new(), String::new()),
            node_bin: bins.node.clone(),
            controller: Some(controller),
            nodes,
            detached: false,
        };
        for n in ["n1", "n2", "n3"] {
            c.start_node(n)?;
        }
        c.wait_controller(Duration::from_secs(20)).await?;
        Ok(c)
    }

    /// Node names and addresses.
    pub fn node_addrs(&self) -> Vec<(String, String)> {
        self.nodes
            .iter()
            .map(|(n, p)| (n.clone(), p.address.clone()))
            .collect()
    }

    /// Every process id.
    pub fn pids(&self) -> Vec<u32> {
        self.controller
            .iter()
            .chain(self.nodes.values().filter_map(|n| n.proc.as_ref()))
            .map(Proc::pid)
            .collect()
    }

    /// Starts (or restarts) node `name`.
    pub fn start_node(&mut self, name: &str) -> Result<(), Failure> {
        let dir = self.dir.clone();
        let bin = self.node_bin.clone();
        let n = self
            .nodes
            .get_mut(name)
            .ok_or_else(|| Failure::new(format!("no demo node {name}")))?;
        n.proc = Some(Proc::spawn(&bin, &n.args, &dir.join(format!("{name}.log")))?);
        Ok(())
    }

    /// Stops node `name` with SIGTERM.
    pub async fn stop_node(&mut self, name: &str) -> Result<(), Failure> {
        let p = self.nodes.get_mut(name).and_then(|n| n.proc.take());
        if let Some(p) = p {
            p.stop(Duration::from_secs(30)).await;
        }
        Ok(())
    }

    /// Stops everything.
    pub async fn stop_all(&mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            let _ = self.stop_node(&n).await;
        }
        if let Some(c) = self.controller.take() {
            c.stop(Duration::from_secs(10)).await;
        }
    }

    /// Leaves the processes running.
    pub fn detach(&mut self) {
        self.detached = true;
    }

    async fn client(
        &self,
    ) -> Result<
        replbd_proto::controller::controller_client::ControllerClient<tonic::transport::Channel>,
        Failure,
    > {
        client::connect(&self.controller_addr, &client::Tls::default())
            .await
            .map_err(|e| Failure::new(e.to_string()))
    }

    async fn wait_controller(&self, timeout: Duration) -> Result<(), Failure> {
        let start = Instant::now();
        loop {
            match self.client().await {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > timeout => {
                    return Err(Failure::new(format!(
                        "the controller did not start within {}s: {} (see {})",
                        timeout.as_secs(),
                        e.message,
                        self.dir.join("controller.log").display()
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits until every node is Online.
    pub async fn wait_nodes_online(&self, timeout: Duration) -> Result<(), Failure> {
        let start = Instant::now();
        let mut c = self.client().await?;
        loop {
            let l = c.node_list(pb::Empty {}).await?.into_inner();
            if !l.nodes.is_empty() && l.nodes.iter().all(|n| n.state == "Online") {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let states: Vec<String> = l
                    .nodes
                    .iter()
                    .map(|n| format!("{}: {}", n.name, n.state))
                    .collect();
                return Err(Failure::new(format!(
                    "nodes not online after {}s: {} (logs in {})",
                    timeout.as_secs(),
                    states.join(", "),
                    self.dir.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `resource` on `node` shows `state`.
    pub async fn wait_state(
        &self,
        resource: &str,
        node: &str,
        state: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let start = Instant::now();
        let mut c = self.client().await?;
        loop {
            let l = c
                .resource_list(pb::ResourceListRequest {
                    resources: vec![resource.into()],
                    nodes: vec![node.into()],
                })
                .await?
                .into_inner();
            let now = l.resources.first().map(|r| r.state.clone()).unwrap_or_default();
            if now == state {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(Failure::new(format!(
                    "{resource} on {node} is {now}, not {state}, after {}s",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the Conns of `resource` on `node` name `peer` (it noticed the peer is gone).
    pub async fn wait_conns(
        &self,
        resource: &str,
        node: &str,
        peer: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let start = Instant::now();
        let mut c = self.client().await?;
        loop {
            let l = c
                .resource_list(pb::ResourceListRequest {
                    resources: vec![resource.into()],
                    nodes: vec![node.into()],
                })
                .await?
                .into_inner();
            let conns = l.resources.first().map(|r| r.conns.clone()).unwrap_or_default();
            if conns.contains(&format!("({peer})")) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(Failure::new(format!(
                    "{resource} on {node} still shows Conns {conns:?} after {}s",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The device (NBD URL) of `resource` on `node` once it is served there.
    pub async fn device_of(&self, resource: &str, node: &str) -> Result<String, Failure> {
        let start = Instant::now();
        let mut c = self.client().await?;
        loop {
            let l = c
                .volume_list(pb::ResourceListRequest {
                    resources: vec![resource.into()],
                    nodes: vec![node.into()],
                })
                .await?
                .into_inner();
            if let Some(v) = l.volumes.iter().find(|v| !v.device.is_empty()) {
                return Ok(v.device.clone());
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(Failure::new(format!("{resource} is not served on {node}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        for p in self
            .nodes
            .values_mut()
            .filter_map(|n| n.proc.as_mut())
            .chain(self.controller.as_mut())
        {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}
