//! Resync rate control, on the SyncTarget (which issues the requests).
//!
//! Three limits, checked before each request:
//! - **fill target**: at most `fill_target` bytes requested and not yet answered, so the resync keeps
//!   the pipe full without flooding it;
//! - **max rate**: at most `max_rate` bytes per second, measured over 100 ms windows;
//! - **application first**: while application writes are arriving, the budget drops to
//!   `max(min_rate, max_rate / 4)` — the application keeps most of the bandwidth, and the resync never
//!   falls below `min_rate`, so it always finishes.

use std::time::{Duration, Instant};

use super::ResyncConfig;

const WINDOW: Duration = Duration::from_millis(100);

/// The controller's state.
#[derive(Debug)]
pub struct RateControl {
    cfg: ResyncConfig,
    window_start: Instant,
    in_window: u64,
}

impl RateControl {
    /// A controller with `cfg`'s limits.
    pub fn new(cfg: ResyncConfig) -> RateControl {
        RateControl {
            cfg,
            window_start: Instant::now(),
            in_window: 0,
        }
    }

    /// Bytes allowed per window now.
    fn budget(&self, app_active: bool) -> Option<u64> {
        let per_sec = match (self.cfg.max_rate, app_active) {
            (0, false) => return None,
            (0, true) => (256 << 20u64).max(self.cfg.min_rate),
            (max, false) => max,
            (max, true) => (max / 4).max(self.cfg.min_rate).min(max.max(self.cfg.min_rate)),
        };
        Some((per_sec / 10).max(4096))
    }

    /// `None`: request `len` bytes now (and count them). `Some(d)`: wait `d` first.
    pub fn delay(
        &mut self,
        len: u64,
        in_flight: u64,
        app_active: bool,
        _rate_so_far: u64,
    ) -> Option<Duration> {
        if in_flight > 0 && in_flight + len > self.cfg.fill_target {
            return Some(Duration::from_millis(20));
        }
        let now = Instant::now();
        if now.duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.in_window = 0;
        }
        if let Some(budget) = self.budget(app_active)
            && self.in_window > 0
            && self.in_window + len > budget
        {
            return Some(WINDOW.saturating_sub(now.duration_since(self.window_start)));
        }
        self.in_window += len;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_rate: u64) -> ResyncConfig {
        ResyncConfig {
            max_rate,
            min_rate: 1 << 20,
            fill_target: 4 << 20,
            ..ResyncConfig::default()
        }
    }

    #[test]
    fn the_fill_target_bounds_what_is_in_flight() {
        let mut r = RateControl::new(cfg(0));
        assert!(r.delay(1 << 20, 0, false, 0).is_none());
        assert!(r.delay(1 << 20, 3 << 20, false, 0).is_none());
        assert!(r.delay(1 << 20, (3 << 20) + 1, false, 0).is_some());
    }

    #[test]
    fn the_rate_is_capped_and_lower_while_the_application_writes() {
        let mut r = RateControl::new(cfg(100 << 20));
        let mut granted = 0;
        while r.delay(64 << 10, 0, false, 0).is_none() {
            granted += 64 << 10;
        }
        assert!(
            (10 << 20..=(10 << 20) + (64 << 10)).contains(&granted),
            "one window of 100 MiB/s: {granted}"
        );
        let mut r = RateControl::new(cfg(100 << 20));
        let mut granted = 0;
        while r.delay(64 << 10, 0, true, 0).is_none() {
            granted += 64 << 10;
        }
        assert!(
            granted <= (25 << 20) / 10 + (64 << 10),
            "a quarter while the application writes: {granted}"
        );
        assert!(granted >= (1 << 20) / 10, "never below min-rate");
    }
}
