//! Process-wide facts shared by routes: when the server started and when it was last active
//! (for `/server_info`'s `uptime` and `idle_time`).

use std::sync::Mutex;
use std::time::Instant;

/// Tracks the start time and the last conversation event, for `uptime` / `idle_time`.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    /// Last time a conversation event was published (requests do not count, as in the reference).
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        let now = Instant::now();
        Activity {
            started: now,
            last: Mutex::new(now),
        }
    }
}

impl Activity {
    /// Marks a conversation event as published now.
    pub fn touch_event(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = Instant::now();
        }
    }

    /// Whole seconds since start.
    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs() as f64
    }

    /// Whole seconds since the last event (or start).
    pub fn idle_time(&self) -> f64 {
        self.last
            .lock()
            .map(|l| l.elapsed().as_secs() as f64)
            .unwrap_or(0.0)
    }
}
