//! The fault injector: carries out one [`Step`] of the schedule on the running cluster — resolves
//! the role it names to a node, breaks it, lets the HA agent react, holds, repairs.

use std::time::Duration;

use anyhow::Result;

use replbd_node::admin::protocol::Request;

use crate::cluster::{NODES, RESOURCE, name};
use crate::harness::Harness;
use crate::proxy::{LinkState, Mode};
use crate::schedule::{DiskFault, Fault, Step};

/// How long the agent keeps trying to promote a survivor.
const FAILOVER_WITHIN: Duration = Duration::from_secs(20);

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// The admin request that makes a disk fail as `fault` says (`on`), or repairs it.
fn disk_fault(fault: DiskFault, on: bool) -> Request {
    let range = if fault.whole {
        (0, u64::MAX)
    } else {
        (fault.mib << 20, (fault.mib + 1) << 20)
    };
    let failing = |reads: bool| {
        // A dead disk's writes fail through `all_writes_fail`, not a range.
        if on && fault.reads == reads && (reads || !fault.whole) {
            vec![range]
        } else {
            Vec::new()
        }
    };
    Request::InjectDiskFault {
        resource: RESOURCE.into(),
        read_errors: failing(true),
        write_errors: failing(false),
        all_writes_fail: on && fault.whole && !fault.reads,
    }
}

impl Harness {
    /// Fails the disk of Secondary `s` as `fault` says for `hold_ms`,
    /// then repairs it and reattaches it the way an operator does: `down`, `up`. Skipped (false)
    /// when the daemon was built without its `fault-injection` feature.
    fn disk_failure(&mut self, s: usize, fault: DiskFault, hold_ms: u64) -> Result<bool> {
        if !self.fail_disk(s, "Secondary", fault, hold_ms)? {
            return Ok(false);
        }
        sleep_ms(hold_ms);
        self.cluster.admin(s, &disk_fault(fault, false))?;
        self.cluster.admin(
            s,
            &Request::Down {
                resource: RESOURCE.into(),
            },
        )?;
        self.cluster.up(s)?;
        self.note(format!("{}: disk repaired, down and up", name(s)));
        Ok(true)
    }

    /// Drops `percent` % of the packets on the link between `a` and `b` for `hold_ms`. Skipped
    /// (false) where nftables cannot be used.
    fn lossy_link(&mut self, a: usize, b: usize, percent: u32, hold_ms: u64) -> Result<bool> {
        let (Some(ab), Some(ba)) = (self.proxy.address(a, b), self.proxy.address(b, a)) else {
            anyhow::bail!("no proxy for the link {}-{}", name(a), name(b));
        };
        let link = (a.min(b), a.max(b));
        if let Err(e) = self.loss.set(link, [ab.port(), ba.port()], percent) {
            if self.loss.unavailable().is_some() {
                self.note(format!("skipped a lossy link: {e}"));
                return Ok(false);
            }
            anyhow::bail!(e);
        }
        self.note(format!(
            "fault: link {}-{} loses {percent}% of its packets, {hold_ms}ms",
            name(a),
            name(b)
        ));
        sleep_ms(hold_ms);
        self.loss.clear(link).map_err(anyhow::Error::msg)?;
        self.note(format!("link {}-{} repaired", name(a), name(b)));
        Ok(true)
    }

    /// Makes node `n`'s disk fail (`disk_failure`'s kinds); false when the daemon cannot inject
    /// faults (noted as skipped).
    fn fail_disk(&mut self, n: usize, role: &str, fault: DiskFault, hold_ms: u64) -> Result<bool> {
        if let Err(e) = self.cluster.admin(n, &disk_fault(fault, true)) {
            let e = format!("{e:#}");
            if e.contains("fault-injection") || e.contains("fault injection") {
                self.note(format!("skipped a disk failure: {e}"));
                return Ok(false);
            }
            anyhow::bail!(e);
        }
        self.note(format!(
            "fault: disk of {} ({role}) fails {fault}, {hold_ms}ms",
            name(n)
        ));
        Ok(true)
    }

    /// The Primary's disk fails: it detaches and goes on serving through its peers for the hold;
    /// then the disk is replaced the way an operator does on a Primary — a clean stop (the agent
    /// fails over), a start and `up`: the node comes back Outdated and resyncs.
    fn primary_disk_failure(&mut self, p: usize, fault: DiskFault, hold_ms: u64) -> Result<bool> {
        if !self.fail_disk(p, "Primary", fault, hold_ms)? {
            return Ok(false);
        }
        sleep_ms(hold_ms);
        self.set_primary(None);
        self.note(format!("{}: clean stop to replace the disk", name(p)));
        self.cluster.stop(p)?;
        self.failover(Some(p), FAILOVER_WITHIN)?;
        self.restart(p)?;
        Ok(true)
    }

    /// The running Secondaries, in node order.
    fn secondaries(&mut self) -> Vec<usize> {
        (0..NODES)
            .filter(|&i| Some(i) != self.primary && self.cluster.running(i))
            .collect()
    }

    /// The `nth` running Secondary (wrapping), if any.
    fn secondary(&mut self, nth: usize) -> Option<usize> {
        let s = self.secondaries();
        (!s.is_empty()).then(|| s[nth % s.len()])
    }

    /// Carries out `step`; returns whether it was injected (a fault naming a role nobody has is
    /// skipped).
    pub fn inject(&mut self, step: &Step) -> Result<bool> {
        self.reap();
        let hold = step.hold_ms;
        let injected = match step.fault {
            Fault::KillPrimary => match self.primary {
                Some(p) => {
                    self.set_primary(None);
                    self.cluster.kill(p)?;
                    self.note(format!("fault: kill -9 {} (Primary), {hold}ms", name(p)));
                    self.failover(Some(p), FAILOVER_WITHIN)?;
                    sleep_ms(hold);
                    self.restart(p)?;
                    true
                }
                None => false,
            },
            Fault::KillSecondary { nth } => match self.secondary(nth) {
                Some(s) => {
                    self.cluster.kill(s)?;
                    self.note(format!("fault: kill -9 {} (Secondary), {hold}ms", name(s)));
                    sleep_ms(hold);
                    self.restart(s)?;
                    true
                }
                None => false,
            },
            Fault::RestartPrimary => match self.primary {
                Some(p) => {
                    self.set_primary(None);
                    self.note(format!("fault: clean stop of {} (Primary), {hold}ms", name(p)));
                    self.cluster.stop(p)?;
                    self.failover(Some(p), FAILOVER_WITHIN)?;
                    sleep_ms(hold);
                    self.restart(p)?;
                    true
                }
                None => false,
            },
            Fault::PrimaryDiskFailure { failing: fault } => match self.primary {
                Some(p) => self.primary_disk_failure(p, fault, hold)?,
                None => false,
            },
            Fault::DiskFailure { nth, failing: fault } => match self.secondary(nth) {
                Some(s) => self.disk_failure(s, fault, hold)?,
                None => false,
            },
            Fault::RestartSecondary { nth } => match self.secondary(nth) {
                Some(s) => {
                    self.note(format!("fault: clean stop of {} (Secondary), {hold}ms", name(s)));
                    self.cluster.stop(s)?;
                    sleep_ms(hold);
                    self.restart(s)?;
                    true
                }
                None => false,
            },
            Fault::IsolatePrimary { mode } => match self.primary {
                Some(p) => {
                    self.isolate(p, mode);
                    self.note(format!(
                        "fault: isolate {} (Primary) by {mode:?}, {hold}ms",
                        name(p)
                    ));
                    // The agent on the majority side promotes once it sees the Primary gone; the
                    // agent on the cut-off node demotes it (it has no quorum: nothing it does counts).
                    self.set_primary(None);
                    self.failover(Some(p), FAILOVER_WITHIN)?;
                    self.demote(p);
                    sleep_ms(hold);
                    self.repair_links(p);
                    true
                }
                None => false,
            },
            Fault::IsolateSecondary { nth, mode } => match self.secondary(nth) {
                Some(s) => {
                    self.isolate(s, mode);
                    self.note(format!(
                        "fault: isolate {} (Secondary) by {mode:?}, {hold}ms",
                        name(s)
                    ));
                    sleep_ms(hold);
                    self.repair_links(s);
                    true
                }
                None => false,
            },
            Fault::CutLink { nth, mode } => match (self.primary, self.secondary(nth)) {
                (Some(p), Some(s)) => {
                    self.proxy.set(
                        p,
                        s,
                        LinkState {
                            mode,
                            ..LinkState::HEALTHY
                        },
                    );
                    self.note(format!(
                        "fault: link {}-{} (Primary-Secondary) {mode:?}, {hold}ms",
                        name(p),
                        name(s)
                    ));
                    sleep_ms(hold);
                    self.proxy.set(p, s, LinkState::HEALTHY);
                    self.note(format!("link {}-{} repaired", name(p), name(s)));
                    true
                }
                _ => false,
            },
            Fault::KillPrimaryDuringResync { nth, after_ms } => match (self.primary, self.secondary(nth)) {
                (Some(p), Some(s)) => {
                    self.cluster.kill(s)?;
                    self.note(format!("fault: kill -9 {} (Secondary), {hold}ms", name(s)));
                    sleep_ms(hold);
                    self.restart(s)?;
                    sleep_ms(after_ms);
                    let state = self.cluster.status(s).map(|st| crate::agent::summary(&st));
                    self.set_primary(None);
                    self.cluster.kill(p)?;
                    self.note(format!(
                        "fault: kill -9 {} (Primary) {after_ms}ms after {} restarted ({})",
                        name(p),
                        name(s),
                        state.unwrap_or_else(|e| format!("{e:#}"))
                    ));
                    self.failover(Some(p), FAILOVER_WITHIN)?;
                    sleep_ms(hold);
                    self.restart(p)?;
                    true
                }
                _ => false,
            },
            Fault::Flap {
                a,
                b,
                mode,
                times,
                outage_ms,
            } => {
                self.note(format!(
                    "fault: link {}-{} flaps {times} times ({mode:?} {outage_ms}ms, up {outage_ms}ms)",
                    name(a),
                    name(b)
                ));
                for _ in 0..times {
                    self.proxy.set(
                        a,
                        b,
                        LinkState {
                            mode,
                            ..LinkState::HEALTHY
                        },
                    );
                    sleep_ms(outage_ms);
                    self.proxy.set(a, b, LinkState::HEALTHY);
                    sleep_ms(outage_ms);
                }
                true
            }
            Fault::LossyLink { a, b, percent } => self.lossy_link(a, b, percent, hold)?,
            Fault::SlowLink {
                a,
                b,
                delay_ms,
                rate_kib_per_s,
            } => {
                let slow = LinkState {
                    mode: Mode::Up,
                    delay_ms,
                    rate_bytes_per_s: Some(rate_kib_per_s * 1024),
                };
                self.proxy.set(a, b, slow);
                self.note(format!(
                    "fault: link {}-{} slow ({delay_ms}ms, {rate_kib_per_s}KiB/s), {hold}ms",
                    name(a),
                    name(b)
                ));
                sleep_ms(hold);
                self.proxy.set(a, b, LinkState::HEALTHY);
                self.note(format!("link {}-{} repaired", name(a), name(b)));
                true
            }
        };
        if !injected {
            self.note(format!("skipped {}: no node in that role", step.fault.kind()));
        }
        sleep_ms(step.gap_ms);
        Ok(injected)
    }

    /// Breaks both links of node `n`.
    fn isolate(&mut self, n: usize, mode: Mode) {
        for other in (0..NODES).filter(|&o| o != n) {
            self.proxy.set(
                n,
                other,
                LinkState {
                    mode,
                    ..LinkState::HEALTHY
                },
            );
        }
    }

    /// Repairs both links of node `n`.
    fn repair_links(&mut self, n: usize) {
        for other in (0..NODES).filter(|&o| o != n) {
            self.proxy.set(n, other, LinkState::HEALTHY);
        }
        self.note(format!("links of {} repaired", name(n)));
    }
}
