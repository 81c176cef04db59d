//! Resync rate control, on the SyncTarget (which issues the requests): DRBD's plan-ahead
//! controller, clocked by the answers.
//!
//! The controller keeps a credit of bytes it may put in flight:
//!
//! ```text
//!   every answer   credit += bytes answered        (what the path carried comes back as credit)
//!   every tick     correction = fill_target − in_flight − corrections already planned
//!   (100 ms)       spread it evenly over the next c-plan-ahead / tick steps (a FIFO of steps),
//!                  credit += this step's share
//!   a request      needs credit > 0; credit −= its length
//! ```
//!
//! So the resync asks for what the path delivered plus a gentle correction that converges to
//! `fill_target` bytes in flight over `c-plan-ahead` (2 s by default) instead of one burst —
//! neither flooding a slow link nor idling a fast one. DRBD applies "what came back" once per tick,
//! which caps a fast link at a tick's worth of answers; here answers return credit as they arrive,
//! so on a fast path the rate is set by round trips, not by the tick. With `c-plan-ahead 0` the
//! controller is off: only the limits below apply (DRBD's fixed rate).
//!
//! Hard limits hold regardless: at most `fill_target` bytes in flight, at most `max_rate` bytes
//! per second, and while application writes are arriving at most `max(min_rate, max_rate / 4)` per
//! second — the application keeps most of the bandwidth and the resync never falls below
//! `min_rate`, so it always finishes. A request may exceed what a tick allows (requests are up to
//! 1 MiB); the debt is paid from the next ticks, so the long-run rate holds.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::ResyncConfig;

/// The controller's step.
pub const TICK: Duration = Duration::from_millis(100);
const TICKS_PER_SEC: u64 = 10;
/// "No limit" for the token counts (far from overflow when added to).
const UNLIMITED: i64 = i64::MAX / 4;

/// The controller's state.
#[derive(Debug)]
pub struct RateControl {
    cfg: ResyncConfig,
    /// Planned corrections, one per coming tick (empty: controller off).
    plan: VecDeque<i64>,
    tick_start: Instant,
    /// Bytes the controller lets into flight (negative: a large request overdrew it).
    credit: i64,
    /// Bytes the rate limits still allow in this tick (negative: debt).
    rate_tokens: i64,
    /// In flight right after the last grant: less is in flight now by what was answered since.
    expected_in_flight: u64,
}

impl RateControl {
    /// A controller with `cfg`'s limits, starting its first tick now.
    pub fn new(cfg: ResyncConfig) -> RateControl {
        Self::starting_at(cfg, Instant::now())
    }

    fn starting_at(cfg: ResyncConfig, now: Instant) -> RateControl {
        let steps = (cfg.plan_ahead.as_millis() / TICK.as_millis()) as usize;
        RateControl {
            cfg,
            plan: std::iter::repeat_n(0, steps).collect(),
            // The first call opens a tick.
            tick_start: now.checked_sub(TICK).unwrap_or(now),
            credit: if steps == 0 { UNLIMITED } else { 0 },
            rate_tokens: 0,
            expected_in_flight: 0,
        }
    }

    /// The most a tick may request now, `None` for no limit.
    fn cap_per_tick(&self, app_active: bool) -> Option<u64> {
        let per_sec = match (self.cfg.max_rate, app_active) {
            (0, false) => return None,
            (0, true) => (256 << 20u64).max(self.cfg.min_rate),
            (max, false) => max,
            (max, true) => (max / 4).max(self.cfg.min_rate).min(max.max(self.cfg.min_rate)),
        };
        Some((per_sec / TICKS_PER_SEC).max(4096))
    }

    /// Opens a new tick: the rate allowance, and the controller's correction.
    fn open_tick(&mut self, now: Instant, in_flight: u64, app_active: bool) {
        self.rate_tokens = match self.cap_per_tick(app_active) {
            None => UNLIMITED,
            Some(c) => self.rate_tokens.min(0).saturating_add(c as i64),
        };
        if !self.plan.is_empty() {
            let steps = self.plan.len() as i64;
            let planned: i64 = self.plan.iter().sum();
            let correction = self.cfg.fill_target as i64 - in_flight as i64 - planned;
            let share = correction / steps;
            for p in &mut self.plan {
                *p += share;
            }
            let now_step = self.plan.pop_front().unwrap_or(0);
            self.plan.push_back(0);
            // Never more credit than the pipe holds: a stalled link does not bank a burst.
            let fill = self.cfg.fill_target as i64;
            self.credit = self.credit.saturating_add(now_step).clamp(-fill, fill);
        }
        self.tick_start = now;
    }

    /// `None`: request `len` bytes now (and count them). `Some(d)`: wait at most `d` first (an
    /// answer arriving meanwhile may allow it sooner).
    pub fn delay(&mut self, len: u64, in_flight: u64, app_active: bool) -> Option<Duration> {
        self.delay_at(Instant::now(), len, in_flight, app_active)
    }

    fn delay_at(&mut self, now: Instant, len: u64, in_flight: u64, app_active: bool) -> Option<Duration> {
        let answered = self.expected_in_flight.saturating_sub(in_flight);
        self.expected_in_flight = in_flight;
        if !self.plan.is_empty() {
            self.credit = self.credit.saturating_add(answered as i64);
        }
        if in_flight > 0 && in_flight + len > self.cfg.fill_target {
            return Some(Duration::from_millis(20));
        }
        if now.duration_since(self.tick_start) >= TICK {
            self.open_tick(now, in_flight, app_active);
        }
        if self.credit <= 0 || self.rate_tokens <= 0 {
            return Some(TICK.saturating_sub(now.duration_since(self.tick_start)));
        }
        self.credit -= len as i64;
        self.rate_tokens -= len as i64;
        self.expected_in_flight = in_flight + len;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_rate: u64, plan_ahead: Duration) -> ResyncConfig {
        ResyncConfig {
            max_rate,
            min_rate: 1 << 20,
            fill_target: 4 << 20,
            plan_ahead,
            ..ResyncConfig::default()
        }
    }

    /// Bytes granted in one tick of `len`-byte requests; each granted request is in flight.
    fn granted_in_tick(r: &mut RateControl, at: Instant, len: u64, in_flight: &mut u64, app: bool) -> u64 {
        let mut n = 0;
        while r.delay_at(at, len, *in_flight, app).is_none() {
            n += len;
            *in_flight += len;
        }
        n
    }

    #[test]
    fn the_fill_target_bounds_what_is_in_flight() {
        let mut r = RateControl::new(cfg(0, Duration::ZERO));
        assert!(r.delay(1 << 20, 0, false).is_none());
        assert!(r.delay(1 << 20, 3 << 20, false).is_none());
        assert!(r.delay(1 << 20, (3 << 20) + 1, false).is_some());
    }

    #[test]
    fn without_plan_ahead_the_rate_is_max_rate_and_lower_while_the_application_writes() {
        let t0 = Instant::now();
        // A fill target that is never the limit here.
        let c = ResyncConfig {
            fill_target: 1 << 30,
            ..cfg(100 << 20, Duration::ZERO)
        };
        let mut r = RateControl::starting_at(c, t0);
        let granted = granted_in_tick(&mut r, t0, 64 << 10, &mut 0, false);
        assert!(
            (10 << 20..=(10 << 20) + (64 << 10)).contains(&granted),
            "one tick of 100 MiB/s: {granted}"
        );
        let mut r = RateControl::starting_at(c, t0);
        let granted = granted_in_tick(&mut r, t0, 64 << 10, &mut 0, true);
        assert!(
            granted <= (25 << 20) / 10 + (64 << 10),
            "a quarter while the application writes: {granted}"
        );
        assert!(granted >= (1 << 20) / 10, "never below min-rate");
    }

    #[test]
    fn a_large_request_is_paid_for_by_the_next_ticks() {
        let t0 = Instant::now();
        // 1 MiB/s: 100 KiB per tick; a 1 MiB request leaves ten ticks of debt.
        let mut r = RateControl::starting_at(cfg(1 << 20, Duration::ZERO), t0);
        assert!(r.delay_at(t0, 1 << 20, 0, false).is_none());
        let mut waited = 0;
        let mut t = t0;
        while r.delay_at(t, 1 << 20, 0, false).is_some() {
            t += TICK;
            waited += 1;
        }
        assert!((9..=11).contains(&waited), "waited {waited} ticks");
    }

    #[test]
    fn plan_ahead_converges_to_the_fill_target_without_a_burst() {
        // A link that answers everything within a tick, 4 MiB fill target, 2 s plan-ahead.
        let t0 = Instant::now();
        let mut r = RateControl::starting_at(cfg(0, Duration::from_secs(2)), t0);
        let mut in_flight = 0u64;
        let mut per_tick = Vec::new();
        for i in 0..60u32 {
            let at = t0 + TICK * i;
            // Half of what was in flight is answered each tick.
            in_flight /= 2;
            let g = granted_in_tick(&mut r, at, 64 << 10, &mut in_flight, false);
            per_tick.push(g);
        }
        // The first tick asks for a twentieth of the gap, not all of it.
        assert!(
            per_tick[0] <= (4 << 20) / 20 + (64 << 10),
            "first tick {}",
            per_tick[0]
        );
        // After the plan-ahead period the pipe holds about the fill target.
        assert!(
            (3 << 20..=(4 << 20) + (64 << 10)).contains(&in_flight),
            "in flight {in_flight} after 6 s; per tick {per_tick:?}"
        );
    }

    #[test]
    fn plan_ahead_follows_what_the_link_delivers() {
        // A link that answers 200 KiB per tick whatever is asked: requests settle near that.
        let t0 = Instant::now();
        let mut r = RateControl::starting_at(cfg(0, Duration::from_secs(2)), t0);
        let mut in_flight = 0u64;
        let mut granted = Vec::new();
        for i in 0..100u32 {
            in_flight = in_flight.saturating_sub(200 << 10);
            let g = granted_in_tick(&mut r, t0 + TICK * i, 4 << 10, &mut in_flight, false);
            granted.push(g);
        }
        let late: u64 = granted[80..].iter().sum::<u64>() / 20;
        assert!(
            (150 << 10..=260 << 10).contains(&late),
            "late ticks request {late} per tick; all: {granted:?}"
        );
        assert!(in_flight <= 4 << 20);
    }
}
