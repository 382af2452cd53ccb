//! Returning freed heap memory to the operating system once the server goes idle.
//!
//! glibc keeps freed memory in its arenas for reuse. At start-up each HTTP worker builds the
//! application, and actix compiles a regex per dynamic route, whose compiler allocates and frees
//! about 1 MB per worker; later bursts (a 10 MiB command output, a long event page sent to many
//! sockets) leave more behind. None of it is a leak, but it stays resident: an idle server
//! would sit at about one and a half times its working set. [`start_idle_trimmer`] checks twice
//! a second how much CPU the process used; on the first quiet tick after some activity it calls
//! `malloc_trim(0)`, which hands the free pages of every arena back. No cost on the request
//! path: idleness is read from the process's CPU time, not counted per request.
//!
//! [`tune_allocator`] is the other half: since freed memory goes back when idle, the allocator
//! need not shrink and regrow its heaps during bursts. With glibc's defaults a thread's arena
//! gives its top back whenever 128 KiB are free there and takes it again on the next
//! allocation (an `mprotect` and fresh page faults each time): fanning one event out to 1,000
//! sockets did that about 4,500 times in a 10-step run.

use std::time::Duration;

/// How often the process's CPU time is read.
const TICK: Duration = Duration::from_millis(500);
/// Less CPU than this during one tick: the server is idle.
const IDLE_CPU: Duration = Duration::from_millis(5);
/// At least this much CPU since the last trim: there is something worth trimming.
const ACTIVE_CPU: Duration = Duration::from_millis(5);

/// CPU time (user + system) of the whole process.
fn process_cpu() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    // SAFETY: initialised by the successful call above.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Gives free heap pages back to the OS (glibc only; elsewhere nothing to do).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Heap settings for a long-running server (glibc only): no shrinking on every free (the idle
/// trimmer does it), grow in 1 MiB steps, large buffers from `mmap` only past 4 MiB, and at most
/// four arenas (the server has a handful of busy threads). Call first thing in `main`.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tunables; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TOP_PAD, 1 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// The decision of one tick: trim when this tick was quiet and enough CPU went by since the
/// last trim.
fn should_trim(used_this_tick: Duration, used_since_trim: Duration) -> bool {
    used_this_tick < IDLE_CPU && used_since_trim >= ACTIVE_CPU
}

/// Set by [`request_trim`]; the trimmer's next tick trims whatever the CPU use.
static REQUESTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks for a trim at the trimmer's next tick (within [`TICK`]), for when a lot was just freed
/// (conversations deleted) but the server may not look idle (other work goes on).
pub fn request_trim() {
    REQUESTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Starts the idle trimmer on the current actix/tokio runtime (call once, from `main`).
pub fn start_idle_trimmer() {
    actix_rt::spawn(async {
        let mut last = process_cpu();
        let mut at_trim = Duration::ZERO;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = process_cpu();
            let requested = REQUESTED.swap(false, std::sync::atomic::Ordering::Relaxed);
            if requested || should_trim(now.saturating_sub(last), now.saturating_sub(at_trim)) {
                let _ = tokio::task::spawn_blocking(trim).await;
                at_trim = process_cpu();
            }
            last = process_cpu();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_after_activity() {
        let ms = Duration::from_millis;
        assert!(should_trim(ms(1), ms(40)), "quiet after work");
        assert!(!should_trim(ms(30), ms(40)), "still busy");
        assert!(
            !should_trim(ms(1), ms(2)),
            "nothing happened since the last trim"
        );
        assert!(process_cpu() > Duration::ZERO);
        trim();
    }
}
