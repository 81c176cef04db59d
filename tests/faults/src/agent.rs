//! The HA agent: what Pacemaker or a Kubernetes operator does around replbd, and nothing more.
//!
//! - **Failover**: when the Primary is gone (killed, stopped, or cut off and without quorum), promote
//!   a node that is UpToDate, has quorum and sees no other Primary — never with `--force`. The
//!   quorum rules, not the agent, must keep a cut-off Primary from acknowledging writes meanwhile.
//! - **Demotion** of an old Primary that is still Primary somewhere it has no quorum (the agent of
//!   a minority node stops its resources).
//! - **Healing** after the faults: every link repaired, every node started and `up`, a stale
//!   Primary demoted, a split brain resolved the way the operator guide says (`connect
//!   --discard-my-data` on the victim, the node that is not serving), until every node is
//!   UpToDate and connected to every other with nothing out of sync.

use std::time::{Duration, Instant};

use anyhow::Result;
use replbd_node::admin::protocol::Request;
use replbd_node::admin::report::ResourceReport;
use replbd_quorum::{ConnectionState, DiskState, ReplicationState, Role};

use crate::cluster::{NODES, RESOURCE, name};
use crate::harness::Harness;

/// Whether `s` may be promoted by an agent: UpToDate, quorate, Secondary, no Primary in sight.
fn promotable(s: &ResourceReport) -> bool {
    s.up && s.disk == Some(DiskState::UpToDate)
        && s.quorum == Some(true)
        && s.role == Some(Role::Secondary)
        && !s
            .peers
            .iter()
            .any(|p| p.connection == ConnectionState::Connected && p.role == Role::Primary)
}

/// Whether node `s` is healed: UpToDate, connected and established with every peer, in sync.
fn healed(s: &ResourceReport) -> bool {
    s.up && s.disk == Some(DiskState::UpToDate)
        && s.peers.len() == NODES - 1
        && s.peers.iter().all(|p| {
            p.connection == ConnectionState::Connected
                && p.replication == ReplicationState::Established
                && p.peer_disk == DiskState::UpToDate
                && p.out_of_sync_bytes == 0
        })
}

impl Harness {
    /// Promotes some node other than `exclude` as soon as one is promotable; gives up after
    /// `within`. Returns the new Primary.
    pub fn failover(&mut self, exclude: Option<usize>, within: Duration) -> Result<Option<usize>> {
        let deadline = Instant::now() + within;
        let mut last_refusal = String::new();
        while Instant::now() < deadline {
            for i in 0..NODES {
                if Some(i) == exclude || !self.cluster.running(i) {
                    continue;
                }
                let Ok(s) = self.cluster.status(i) else { continue };
                if !promotable(&s) {
                    continue;
                }
                let request = Request::Primary {
                    resource: RESOURCE.into(),
                    force: false,
                };
                match self.cluster.admin(i, &request) {
                    Ok(_) => {
                        self.set_primary(Some(i));
                        self.failovers += 1;
                        self.note(format!("agent: promoted {}", name(i)));
                        return Ok(Some(i));
                    }
                    Err(e) => last_refusal = format!("{e:#}"),
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.note(format!(
            "agent: no node could be promoted within {within:?} {last_refusal}"
        ));
        Ok(None)
    }

    /// Demotes node `i` if it is up and Primary (best effort: a failure is noted).
    pub fn demote(&mut self, i: usize) {
        if !self.cluster.running(i) {
            return;
        }
        let is_primary = self
            .cluster
            .status(i)
            .is_ok_and(|s| s.role == Some(Role::Primary));
        if !is_primary {
            return;
        }
        let request = Request::Secondary {
            resource: RESOURCE.into(),
        };
        match self.cluster.admin(i, &request) {
            Ok(_) => self.note(format!("agent: demoted {}", name(i))),
            Err(e) => self.note(format!("agent: demoting {} failed: {e:#}", name(i))),
        }
    }

    /// Starts node `i` and brings the resource up.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.cluster.start(i)?;
        self.cluster.up(i)?;
        self.note(format!("{} started and up", name(i)));
        Ok(())
    }

    /// Repairs everything and waits until the cluster is whole again (every node UpToDate and
    /// connected, one Primary). `false` when that did not happen within `within`.
    pub fn heal(&mut self, within: Duration) -> Result<bool> {
        self.proxy.heal_all();
        for a in 0..NODES {
            for b in a + 1..NODES {
                if let Err(e) = self.loss.clear((a, b)) {
                    anyhow::bail!("cannot stop the packet loss on link {}-{}: {e}", name(a), name(b));
                }
            }
        }
        self.note("heal: every link repaired".to_owned());
        let deadline = Instant::now() + within;
        let mut last_resolution: Option<Instant> = None;
        let mut statuses: Vec<Option<ResourceReport>> = Vec::new();
        while Instant::now() < deadline {
            self.reap();
            for i in 0..NODES {
                if !self.cluster.running(i) {
                    self.restart(i)?;
                }
            }
            statuses = (0..NODES).map(|i| self.cluster.status(i).ok()).collect();
            for (i, s) in statuses.iter().enumerate() {
                if let Some(s) = s
                    && !s.up
                {
                    let _ = self.cluster.up(i);
                }
            }
            // A Primary the agent did not choose (an old Primary that could not be demoted while
            // it was cut off) is demoted.
            let primaries: Vec<usize> = statuses
                .iter()
                .enumerate()
                .filter(|(_, s)| s.as_ref().is_some_and(|s| s.role == Some(Role::Primary)))
                .map(|(i, _)| i)
                .collect();
            for &i in &primaries {
                if Some(i) != self.primary {
                    self.demote(i);
                }
            }
            if self.primary.is_none_or(|p| !primaries.contains(&p)) {
                self.set_primary(None);
                self.failover(None, Duration::from_secs(2))?;
            }
            if last_resolution.is_none_or(|t| t.elapsed() > Duration::from_secs(10))
                && self.resolve_split_brain(&statuses)
            {
                last_resolution = Some(Instant::now());
            }
            let whole = statuses.iter().all(|s| s.as_ref().is_some_and(healed))
                && self.primary.is_some_and(|p| primaries == [p]);
            if whole {
                self.note("heal: every node UpToDate and connected".to_owned());
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let states: Vec<String> = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                Some(s) => summary(s),
                None => format!("{}: no status", name(i)),
            })
            .collect();
        self.note(format!("heal: not whole after {within:?}: {}", states.join("; ")));
        Ok(false)
    }

    /// Resolves the split brains `statuses` show (a peer StandAlone): the victim is the node of
    /// the pair that is not the Primary (or the higher-numbered one). Returns whether it did.
    fn resolve_split_brain(&mut self, statuses: &[Option<ResourceReport>]) -> bool {
        let standalone = |a: usize, b: usize| {
            statuses[a]
                .as_ref()
                .and_then(|s| s.peer(name(b)))
                .is_some_and(|p| p.connection == ConnectionState::StandAlone)
        };
        let mut acted = false;
        for i in 0..NODES {
            for j in i + 1..NODES {
                if !standalone(i, j) && !standalone(j, i) {
                    continue;
                }
                let victim = if self.primary == Some(i) { j } else { i.max(j) };
                let victim = if self.primary == Some(j) { i } else { victim };
                let survivor = if victim == i { j } else { i };
                self.split_brains += 1;
                self.note(format!(
                    "agent: {} and {} StandAlone (split brain or refused connection): discarding {}'s changes",
                    name(i), name(j), name(victim)
                ));
                let peer = |n: usize| Some(name(n).to_owned());
                let _ = self.cluster.admin(
                    victim,
                    &Request::Disconnect {
                        resource: RESOURCE.into(),
                        peer: peer(survivor),
                    },
                );
                let discard = Request::Connect {
                    resource: RESOURCE.into(),
                    peer: peer(survivor),
                    discard_my_data: true,
                };
                if let Err(e) = self.cluster.admin(victim, &discard) {
                    self.note(format!(
                        "agent: connect --discard-my-data on {} failed: {e:#}",
                        name(victim)
                    ));
                }
                let connect = Request::Connect {
                    resource: RESOURCE.into(),
                    peer: peer(victim),
                    discard_my_data: false,
                };
                if let Err(e) = self.cluster.admin(survivor, &connect) {
                    self.note(format!("agent: connect on {} failed: {e:#}", name(survivor)));
                }
                acted = true;
            }
        }
        acted
    }
}

/// One line of a node's state, for the trace.
pub fn summary(s: &ResourceReport) -> String {
    let fmt = |x: Option<String>| x.unwrap_or_else(|| "-".into());
    let peers: Vec<String> = s
        .peers
        .iter()
        .map(|p| {
            format!(
                "{}:{}/{}/{}/oos={}",
                p.name, p.connection, p.replication, p.peer_disk, p.out_of_sync_bytes
            )
        })
        .collect();
    format!(
        "{} {} {} quorum={} [{}]",
        s.node,
        fmt(s.role.map(|r| r.to_string())),
        fmt(s.disk.map(|d| d.to_string())),
        fmt(s.quorum.map(|q| q.to_string())),
        peers.join(" ")
    )
}
