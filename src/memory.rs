//! Giving freed memory back to the system after a burst of work ends.
//!
//! glibc's allocator keeps the pages of freed blocks: after 100 conversations with 1,000 sockets
//! are deleted, resident memory stays at about 3.5 times its idle level although nothing holds
//! it (tests/suite/load.rs). [`trim_soon`] asks for one `malloc_trim(0)` a moment after the last
//! of a series of calls (a trailing debounce, so a hundred deletions cost one trim), on a short
//! thread of its own: the trim walks the heaps and must not run on an actor or worker thread.
//! Elsewhere than glibc it does nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Quiet time after the last call before the trim runs.
const QUIET: Duration = Duration::from_millis(500);

static LAST_CALL_MS: AtomicU64 = AtomicU64::new(0);
static SCHEDULED: AtomicBool = AtomicBool::new(false);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long to wait before trimming, given the time of the last call (`None`: trim now).
fn wait_left(last_call_ms: u64, now_ms: u64) -> Option<Duration> {
    let due = last_call_ms.saturating_add(QUIET.as_millis() as u64);
    (now_ms < due).then(|| Duration::from_millis(due - now_ms))
}

/// Schedules one trim after the calls stop for [`QUIET`]; cheap to call often.
pub fn trim_soon() {
    LAST_CALL_MS.store(now_ms(), Ordering::Relaxed);
    if SCHEDULED.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("malloc-trim".into())
        .spawn(|| {
            while let Some(wait) = wait_left(LAST_CALL_MS.load(Ordering::Relaxed), now_ms()) {
                std::thread::sleep(wait);
            }
            SCHEDULED.store(false, Ordering::Release);
            trim();
        });
    if spawned.is_err() {
        SCHEDULED.store(false, Ordering::Release);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only returns free pages of the allocator's own heaps to the kernel;
    // it takes the arena locks itself and touches no memory the program holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trim_waits_for_quiet_after_the_last_call() {
        let q = QUIET.as_millis() as u64;
        assert_eq!(wait_left(1_000, 1_000), Some(QUIET));
        assert_eq!(
            wait_left(1_000, 1_000 + q - 1),
            Some(Duration::from_millis(1))
        );
        assert_eq!(wait_left(1_000, 1_000 + q), None);
        assert_eq!(
            wait_left(1_000, 900),
            Some(QUIET + Duration::from_millis(100))
        );
        assert_eq!(
            wait_left(u64::MAX, 0),
            Some(Duration::from_millis(u64::MAX))
        );
    }

    #[test]
    fn calls_in_a_burst_schedule_one_trim() {
        for _ in 0..100 {
            trim_soon();
        }
        assert!(SCHEDULED.load(Ordering::Acquire));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while SCHEDULED.load(Ordering::Acquire) {
            assert!(std::time::Instant::now() < deadline, "the trim never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
