//! A small pool of arbiters (threads with their own event loop) for conversation actors, so
//! agent steps, disk appends and fan-out never run on HTTP worker threads, and a panic in one
//! conversation cannot take down the HTTP server.

use std::sync::atomic::{AtomicUsize, Ordering};

use actix::{Arbiter, ArbiterHandle};

/// Round-robin pool of arbiters.
pub struct ArbiterPool {
    arbiters: Vec<Arbiter>,
    next: AtomicUsize,
}

impl ArbiterPool {
    /// `size` arbiters (at least one).
    pub fn new(size: usize) -> ArbiterPool {
        ArbiterPool {
            arbiters: (0..size.max(1)).map(|_| Arbiter::new()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// One arbiter per core, between 2 and 8.
    pub fn default_size() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8)
    }

    /// The next arbiter, round robin.
    pub fn pick(&self) -> ArbiterHandle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.arbiters.len();
        self.arbiters[i].handle()
    }

    /// Stops every arbiter (after their actors were shut down) and waits for the threads.
    pub fn stop(self) {
        for a in &self.arbiters {
            a.stop();
        }
        for a in self.arbiters {
            let _ = a.join();
        }
    }
}
