//! Process-wide facts shared by routes: when the server started and when it was last active
//! (for `/server_info`'s `uptime` and `idle_time`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Tracks the start time and the last conversation event, for `uptime` / `idle_time`.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    /// When a conversation event was last published, in milliseconds after `started` (requests
    /// do not count, as in the reference). An atomic: every `/server_info` reads it.
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        let now = Instant::now();
        Activity {
            started: now,
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    /// Marks a conversation event as published now.
    pub fn touch_event(&self) {
        self.last_ms.fetch_max(self.elapsed_ms(), Ordering::Relaxed);
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whole seconds since start.
    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs() as f64
    }

    /// Whole seconds since the last event (or start).
    pub fn idle_time(&self) -> f64 {
        let idle_ms = self
            .elapsed_ms()
            .saturating_sub(self.last_ms.load(Ordering::Relaxed));
        (idle_ms / 1000) as f64
    }
}
