//! Event files a conversation's journal has made durable and acknowledged, waiting to be written
//! in the reference's layout (`events/event-*.json`): written behind, in order, by one
//! background writer once the conversation goes quiet.
//!
//! Why: creating a file costs the file system far more than the journal append that makes it
//! durable. On this project's machine ext4's inode allocator alone took 40 % of a core while
//! events were posted as fast as possible, and each creation adds to the next `fdatasync`'s
//! journal commit. Event files are written once under unique names and never change, so
//! writing them later changes nothing a reader of the directory can observe except the delay;
//! a crash before they are written is repaired from the journal at the next load
//! ([`super::journal::replay`]).
//!
//! When files are written:
//! - when the conversation's actor sees it quiet ([`Backlog::kick`]);
//! - at once when the queues of all conversations together pass [`SOFT_LIMIT_BYTES`];
//! - before anything that reads or syncs the files ([`Backlog::wait_written`]): a checkpoint,
//!   a clean shutdown, a trajectory download.
//!
//! Rules that keep the directory right and memory bounded:
//! - one writer at a time, batches in the order they were acknowledged;
//! - [`Backlog::discard`] before the directory is deleted, so no late write recreates it;
//! - past [`HARD_LIMIT_BYTES`] queued over all conversations, [`Backlog::push`] waits until its
//!   own queue is written: a flood slows down to the disk's pace instead of growing memory.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Bytes queued over all conversations past which a push starts its writer at once.
pub const SOFT_LIMIT_BYTES: usize = 32 << 20;
/// Bytes queued over all conversations past which a push waits for its own queue.
pub const HARD_LIMIT_BYTES: usize = 64 << 20;

/// Bytes queued in every backlog of the process.
static QUEUED: AtomicUsize = AtomicUsize::new(0);

/// One acknowledged batch of files, paths relative to the directory.
type Batch = Vec<(String, Vec<u8>)>;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Batch>,
    bytes: usize,
    /// A writer task is running (it exits when the queue is empty).
    running: bool,
    /// Batches pushed so far / written (or dropped) so far.
    pushed: u64,
    done: u64,
    /// The directory is being deleted: nothing more is written.
    discarding: bool,
}

/// The files of one conversation directory not written yet. Shared by the journal (which
/// pushes), the writer task and the conversation actor (which waits before reads and deletes).
#[derive(Debug)]
pub struct Backlog {
    dir: PathBuf,
    state: Mutex<State>,
    changed: Condvar,
}

impl Backlog {
    pub fn new(dir: PathBuf) -> Arc<Backlog> {
        Arc::new(Backlog {
            dir,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // a writer that panicked leaves consistent counters: keep going
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `files` after every batch pushed before. Returns the batch's number for
    /// [`Backlog::wait_written`]. Starts the writer past [`SOFT_LIMIT_BYTES`] (all
    /// conversations); past [`HARD_LIMIT_BYTES`] blocks until this queue is written.
    pub fn push(self: &Arc<Self>, files: Batch) -> u64 {
        let size: usize = files.iter().map(|(p, d)| p.len() + d.len()).sum();
        let mut st = self.lock();
        st.pushed += 1;
        let n = st.pushed;
        if st.discarding {
            st.done += 1;
            return n;
        }
        st.bytes += size;
        st.queue.push_back(files);
        let total = QUEUED.fetch_add(size, Ordering::Relaxed) + size;
        if total > SOFT_LIMIT_BYTES {
            st = self.start_writer(st);
        }
        if total > HARD_LIMIT_BYTES {
            while !st.queue.is_empty() && !st.discarding {
                st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        }
        n
    }

    /// Starts writing what is queued (the conversation went quiet). Does not block.
    pub fn kick(self: &Arc<Self>) {
        let st = self.lock();
        drop(self.start_writer(st));
    }

    /// Starts the writer unless it runs or nothing is queued; returns the lock (re-taken when
    /// the writer ran on this thread).
    fn start_writer<'a>(
        self: &'a Arc<Self>,
        mut st: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        if st.running || st.queue.is_empty() {
            return st;
        }
        st.running = true;
        drop(st);
        let me = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(move || me.drain());
            }
            // no runtime (unit tests, tools): write now
            Err(_) => me.drain(),
        }
        self.lock()
    }

    /// The writer: writes queued batches in order until the queue is empty.
    fn drain(&self) {
        loop {
            let batch = {
                let mut st = self.lock();
                match st.queue.pop_front() {
                    Some(b) => b,
                    None => {
                        st.running = false;
                        self.changed.notify_all();
                        return;
                    }
                }
            };
            for (rel, data) in &batch {
                if self.lock().discarding {
                    break;
                }
                if let Err(e) = put_file(&self.dir, rel, data) {
                    // the journal still has it: the next load restores the file
                    log::warn!("{}: cannot write {rel}: {e}", self.dir.display());
                }
            }
            let mut st = self.lock();
            let size = batch
                .iter()
                .map(|(p, d)| p.len() + d.len())
                .sum::<usize>()
                .min(st.bytes);
            st.bytes -= size;
            QUEUED.fetch_sub(size, Ordering::Relaxed);
            st.done += 1;
            self.changed.notify_all();
        }
    }

    /// Batches pushed so far (what [`Backlog::wait_written`] of "everything" waits for).
    pub fn pushed(&self) -> u64 {
        self.lock().pushed
    }

    /// Writes now, and blocks until the batches numbered up to `n` are written (or dropped by
    /// a discard).
    pub fn wait_written(self: &Arc<Self>, n: u64) {
        self.wait_for(n, None);
    }

    /// Writes now, and blocks until every batch pushed so far is written.
    pub fn wait_idle(self: &Arc<Self>) {
        let n = self.pushed();
        self.wait_for(n, None);
    }

    /// [`Backlog::wait_idle`], giving up at `deadline`; true when everything is written. What is
    /// left is still in the journal (the next load writes it).
    pub fn wait_idle_until(self: &Arc<Self>, deadline: std::time::Instant) -> bool {
        let n = self.pushed();
        self.wait_for(n, Some(deadline))
    }

    /// Starts the writer if batch `n` is not written yet and waits for it, until `deadline` if
    /// any; true when it is written.
    fn wait_for(self: &Arc<Self>, n: u64, deadline: Option<std::time::Instant>) -> bool {
        let mut st = self.lock();
        if st.done < n {
            st = self.start_writer(st);
        }
        while st.done < n {
            st = match deadline {
                None => self.changed.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.changed
                        .wait_timeout(st, left)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0)
                }
            };
        }
        true
    }

    /// Drops what is queued and waits for the file being written: the directory is about to be
    /// deleted. Later pushes are dropped too.
    pub fn discard(&self) {
        let mut st = self.lock();
        st.discarding = true;
        let dropped = st.queue.len() as u64;
        st.queue.clear();
        QUEUED.fetch_sub(st.bytes, Ordering::Relaxed);
        st.bytes = 0;
        st.done += dropped;
        self.changed.notify_all();
        while st.running {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Creates `dir/rel` with `data`, not synced. A new file is written in place: without a temp
/// file and a rename, one directory operation instead of two (the journal repairs a file a
/// crash cut short: it is not a JSON object). An existing one is replaced atomically. The parent
/// directory must exist: a missing one means the conversation was deleted, and is not recreated.
fn put_file(dir: &Path, rel: &str, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let path = dir.join(rel);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut f) => f.write_all(data),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            super::files::write_unsynced_path(&path, data)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(names: &[&str]) -> Batch {
        names
            .iter()
            .map(|n| {
                (
                    format!("events/{n}"),
                    format!("{{\"n\": \"{n}\"}}").into_bytes(),
                )
            })
            .collect()
    }

    #[test]
    fn batches_are_written_in_order_and_waited_for() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("events")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let b = Backlog::new(tmp.path().to_path_buf());
        rt.block_on(async {
            b.push(batch(&["a.json", "b.json"]));
            let n = b.push(batch(&["c.json"]));
            let b2 = b.clone();
            tokio::task::spawn_blocking(move || b2.wait_written(n))
                .await
                .unwrap();
        });
        for n in ["a.json", "b.json", "c.json"] {
            let text = std::fs::read_to_string(tmp.path().join("events").join(n)).unwrap();
            assert_eq!(text, format!("{{\"n\": \"{n}\"}}"));
        }
        assert_eq!(b.lock().bytes, 0);
        assert!(!b.lock().running);
    }

    #[test]
    fn waiting_for_the_backlog_can_give_up_at_a_deadline() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("events")).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let b = Backlog::new(tmp.path().to_path_buf());
        let _guard = rt.enter();
        // thousands of file creations: far more than a millisecond of work
        for i in 0..40 {
            let names: Vec<String> = (0..100).map(|k| format!("f{i}-{k}.json")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            b.push(batch(&refs));
        }
        let soon = std::time::Instant::now() + std::time::Duration::from_millis(1);
        assert!(!b.wait_idle_until(soon), "4,000 files in a millisecond");
        let later = std::time::Instant::now() + std::time::Duration::from_secs(60);
        assert!(b.wait_idle_until(later));
        assert_eq!(
            std::fs::read_dir(tmp.path().join("events"))
                .unwrap()
                .count(),
            4000
        );
    }

    #[test]
    fn a_discarded_backlog_writes_nothing_and_never_recreates_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("conv");
        std::fs::create_dir_all(dir.join("events")).unwrap();
        let b = Backlog::new(dir.clone());
        b.discard();
        std::fs::remove_dir_all(&dir).unwrap();
        let n = b.push(batch(&["late.json"]));
        b.wait_written(n);
        assert!(!dir.exists());
    }

    #[test]
    fn files_wait_for_a_kick_or_a_reader() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("events")).unwrap();
        let b = Backlog::new(tmp.path().to_path_buf());
        b.push(batch(&["later.json"]));
        assert!(
            !tmp.path().join("events/later.json").exists(),
            "written behind"
        );
        // no runtime here: the kick writes on this thread
        b.kick();
        assert!(tmp.path().join("events/later.json").is_file());
        let n = b.push(batch(&["read.json"]));
        assert!(!tmp.path().join("events/read.json").exists());
        b.wait_written(n);
        assert!(tmp.path().join("events/read.json").is_file());
    }
}
