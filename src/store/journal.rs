//! The write-ahead journal of one conversation directory: what makes a write durable with one
//! sync, whatever the number of files it touches.
//!
//! Writing an event the plain way (temp file, fsync, rename, fsync of the directory) costs two
//! journal commits of the file system per event, 0.2–7 ms each on the disks this server runs on.
//! Instead, a batch of files (the events staged in one actor turn, `meta.json`,
//! `base_state.json`) is appended as records to the active segment `<conversation>/.journal-*`
//! and the segment is `fdatasync`ed once; only then are the files written in the reference's
//! layout (temp file + rename, not synced): the state files before the batch is acknowledged,
//! the event files after it, in order, by the directory's [`Backlog`] writer (they are written
//! once under unique names, so nobody can see an older version of one). An acknowledged batch is
//! therefore on disk in the segment even if the files themselves are not yet.
//!
//! - **Replay** ([`replay`], at load): the newest record of each file is compared with the file,
//!   which is rewritten from the record when it is missing, damaged (not a JSON object's bytes:
//!   empty, zeros), or different and not newer than the journal's last append (an OS crash lost
//!   the write-back, or the rename, of an acknowledged write). A file that differs and is newer
//!   was edited while the server was stopped: it is kept. A torn record at the end of a segment
//!   (a crash during the append, never acknowledged) ends the segment. The journal only carries
//!   JSON object files (events, `meta.json`, `base_state.json`).
//! - **Checkpoint**: when the active segment passes [`SEGMENT_BYTES`], later writes go to a new
//!   segment. Once the conversation is quiet (or [`MAX_CLOSED`] segments wait), a background
//!   thread has the backlog write its files, then fsyncs the files the older segments cover and the
//!   directories, then deletes those segments (oldest first, one checkpoint at a time), so
//!   replays stay short and the journal bounded.
//! - **Rule**: once a directory has a journal, every write of its files goes through it (a
//!   write around it could be undone by the replay of an older record).
//!
//! Segment names carry a sequence number (replay order) and a random tag, so a checkpoint that
//! outlives its conversation (deleted, then created again with the same id) cannot delete a
//! segment of the new one. The reference ignores these hidden files.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::backlog::Backlog;
use super::files;

/// Name prefix of journal segments (`.journal-<seq:08>-<tag>`).
pub const SEGMENT_PREFIX: &str = ".journal-";
/// Size past which the active segment is closed (and checkpointed once the conversation is
/// quiet).
pub const SEGMENT_BYTES: u64 = 1 << 20;
/// Closed segments past which a checkpoint starts even while the conversation is busy (bounds
/// the journal on disk).
pub const MAX_CLOSED: usize = 32;

const MAGIC: &[u8; 4] = b"OHJ1";
/// magic, path length (u32), data length (u32), checksum (u64)
const HEADER: usize = 4 + 4 + 4 + 8;

/// FNV-1a over `path` then `data`: enough to tell a torn or partly written record.
fn checksum(path: &[u8], data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.iter().chain(data) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn encode(out: &mut Vec<u8>, path: &str, data: &[u8]) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(path.len() as u32).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(path.as_bytes(), data).to_le_bytes());
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(data);
}

/// The records of one segment, in order, each with the offset just past it; stops at the first
/// torn or invalid record.
fn decode(bytes: &[u8]) -> Vec<(String, &[u8], usize)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() >= at + HEADER {
        let h = &bytes[at..at + HEADER];
        if &h[0..4] != MAGIC {
            break;
        }
        let plen = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let dlen = u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize;
        let sum = u64::from_le_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
        let start = at + HEADER;
        let Some(end) = start.checked_add(plen).and_then(|e| e.checked_add(dlen)) else {
            break;
        };
        if end > bytes.len() {
            break;
        }
        let path = &bytes[start..start + plen];
        let data = &bytes[start + plen..end];
        if checksum(path, data) != sum {
            break;
        }
        let Ok(path) = std::str::from_utf8(path) else {
            break;
        };
        if !safe_relative(path) {
            break;
        }
        out.push((path.to_string(), data, end));
        at = end;
    }
    out
}

/// Journal paths are relative, inside the conversation directory.
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(SEGMENT_PREFIX)?;
    let (seq, _tag) = rest.split_once('-')?;
    if seq.len() != 8 {
        return None;
    }
    seq.parse().ok()
}

/// The segments of `dir`, oldest first.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segs = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(segs),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(seq) = parse_segment_name(&name.to_string_lossy()) {
            segs.push((seq, entry.path()));
        }
    }
    segs.sort();
    Ok(segs)
}

/// True when `dir` has at least one journal segment (a conversation whose `meta.json` may
/// exist only in its journal after a crash).
pub fn has_segments(dir: &Path) -> bool {
    list_segments(dir).is_ok_and(|s| !s.is_empty())
}

/// Not the bytes of a JSON object (an empty or zero-filled file left by a crash).
fn damaged(bytes: &[u8]) -> bool {
    let text = bytes.trim_ascii();
    !(text.starts_with(b"{") && text.ends_with(b"}"))
}

/// Writes `data` to `dir/rel` with a temp file and a rename, not synced; creates the parent
/// directory when missing.
fn put_file(dir: &Path, rel: &str, data: &[u8]) -> io::Result<()> {
    let path = dir.join(rel);
    match files::write_unsynced_path(&path, data) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(path.parent().unwrap_or(dir))?;
            files::write_unsynced_path(&path, data)
        }
        other => other,
    }
}

/// A directory's journal, read at load: the newest acknowledged content of every file it
/// covers, to check the files against as the loaders read them ([`Replayed::settle`]).
#[derive(Debug, Default)]
pub struct Replayed {
    /// The segments, oldest first (kept: a later checkpoint removes them).
    segments: Vec<PathBuf>,
    /// Bytes of valid records in the last segment (writing resumes there).
    last_valid_len: u64,
    /// The files they cover.
    paths: Vec<String>,
    next_seq: u64,
    /// The newest record of each file not settled yet.
    pending: HashMap<String, Vec<u8>>,
    /// The journal's last append: a file changed after it was edited by someone else.
    last_append: Option<std::time::SystemTime>,
    /// Files that were missing or different and were rewritten.
    pub repaired: usize,
}

/// Reads the journal of `dir` (nothing is checked or written yet; see [`Replayed::settle`]).
pub fn replay(dir: &Path) -> io::Result<Replayed> {
    let segs = list_segments(dir)?;
    let mut out = Replayed::default();
    for (seq, path) in &segs {
        let mut bytes = Vec::new();
        let mut f = File::open(path)?;
        if let Ok(m) = f.metadata().and_then(|m| m.modified()) {
            out.last_append = Some(out.last_append.map_or(m, |l| l.max(m)));
        }
        f.read_to_end(&mut bytes)?;
        let mut valid = 0usize;
        for (rel, data, end) in decode(&bytes) {
            valid = end;
            if out.pending.insert(rel.clone(), data.to_vec()).is_none() {
                out.paths.push(rel);
            }
        }
        out.last_valid_len = valid as u64;
        out.next_seq = seq + 1;
        out.segments.push(path.clone());
    }
    Ok(out)
}

impl Replayed {
    /// True when the journal has a record of `rel` not settled yet.
    pub fn has(&self, rel: &str) -> bool {
        self.pending.contains_key(rel)
    }

    /// Relative paths under `prefix` (e.g. `"events/"`) that the journal has and nobody settled
    /// yet: files a crash may have lost entirely, which a directory listing does not show.
    pub fn unsettled_under(&self, prefix: &str) -> Vec<String> {
        self.pending
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The content `dir/rel` must have, given `have`, what the caller read from it (`None`:
    /// missing). When the journal acknowledged other content and the file is missing, damaged
    /// (not a JSON object's bytes: empty, zeros), or older than the journal's last append (a
    /// lost write-back or rename), the file is rewritten from the journal and that content is
    /// returned. A file that differs and is newer was edited while the server was stopped: it
    /// is kept. Without a record, `have` is returned as is.
    pub fn settle(
        &mut self,
        dir: &Path,
        rel: &str,
        have: Option<Vec<u8>>,
    ) -> io::Result<Option<Vec<u8>>> {
        let Some(want) = self.pending.remove(rel) else {
            return Ok(have);
        };
        let path = dir.join(rel);
        let keep = match &have {
            Some(h) if *h == want => true,
            Some(h) if damaged(h) => false,
            // a write cut short (files are written after their acknowledgement)
            Some(h) if h.len() < want.len() && want.starts_with(h) => false,
            Some(_) => {
                let edited = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| self.last_append.is_none_or(|l| m > l));
                if edited {
                    log::info!(
                        "{}: edited after the journal's last write; kept",
                        path.display()
                    );
                }
                edited
            }
            None => false,
        };
        if keep {
            return Ok(have);
        }
        put_file(dir, rel, &want)?;
        self.repaired += 1;
        Ok(Some(want))
    }

    /// Settles every record nobody asked about by reading its file.
    pub fn settle_rest(&mut self, dir: &Path) -> io::Result<()> {
        let rest: Vec<String> = self.pending.keys().cloned().collect();
        for rel in rest {
            let have = match fs::read(dir.join(&rel)) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            self.settle(dir, &rel, have)?;
        }
        Ok(())
    }
}

/// The journal writer of one conversation directory. Not shared between threads: the owner
/// (the conversation actor) hands it to one blocking task at a time.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// Sequence number of the active segment.
    seq: u64,
    /// The active segment, once created.
    active: Option<(PathBuf, File)>,
    active_len: u64,
    /// Segments no longer written to, waiting for a checkpoint (oldest first).
    closed: Vec<PathBuf>,
    /// Files covered by the closed segments / by the active one.
    covered_closed: Vec<String>,
    covered: Vec<String>,
    /// A checkpoint is running (at most one per directory).
    checkpointing: Arc<AtomicBool>,
    /// The event files acknowledged and not written yet.
    backlog: Arc<Backlog>,
    /// Directories known to exist (the backlog's writer never creates one).
    made_dirs: Vec<PathBuf>,
}

/// Files the backlog writes after the acknowledgement: event files, written once and never
/// changed. The rest (`meta.json`, `base_state.json`) is rewritten in place and written before.
fn deferred(rel: &str) -> bool {
    rel.strip_prefix(super::dir::EVENTS)
        .is_some_and(|r| r.starts_with('/'))
}

impl Journal {
    /// The journal of a directory without segments (a new conversation).
    pub fn new(dir: PathBuf) -> Journal {
        Journal::resume(dir, Replayed::default())
    }

    /// The journal of a directory after [`replay`] (and the settling of its files): writing
    /// continues in the last segment, cut after its last valid record (a torn append is
    /// dropped); the older segments wait for a checkpoint.
    pub fn resume(dir: PathBuf, mut replayed: Replayed) -> Journal {
        let mut journal = Journal {
            backlog: Backlog::new(dir.clone()),
            made_dirs: Vec::new(),
            dir,
            seq: replayed.next_seq,
            active: None,
            active_len: 0,
            closed: Vec::new(),
            // which segment covers which file is not kept: every replayed file counts for both
            covered_closed: replayed.paths.clone(),
            covered: std::mem::take(&mut replayed.paths),
            checkpointing: Arc::new(AtomicBool::new(false)),
        };
        let last = replayed.segments.pop();
        journal.closed = replayed.segments;
        if let Some(path) = last {
            let reopened = OpenOptions::new().write(true).open(&path).and_then(|f| {
                f.set_len(replayed.last_valid_len)?;
                Ok(f)
            });
            match reopened {
                Ok(file) if replayed.last_valid_len < SEGMENT_BYTES => {
                    journal.seq -= 1;
                    journal.active = Some((path, file));
                    journal.active_len = replayed.last_valid_len;
                }
                // full, or not writable: it waits for a checkpoint, a new segment follows
                _ => journal.closed.push(path),
            }
        }
        journal
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory's queue of event files acknowledged and not written yet.
    pub fn backlog(&self) -> Arc<Backlog> {
        self.backlog.clone()
    }

    /// Writes `files` (paths relative to the directory) durably: records appended to the active
    /// segment and synced once, then the state files; the event files are queued on the
    /// backlog. Blocking (also while the backlog is full).
    pub fn write(&mut self, batch: Vec<(String, Vec<u8>)>) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut buf =
            Vec::with_capacity(batch.iter().map(|(p, d)| HEADER + p.len() + d.len()).sum());
        for (rel, data) in &batch {
            if !safe_relative(rel) {
                return Err(io::Error::other(format!("bad journal path {rel:?}")));
            }
            encode(&mut buf, rel, data);
        }
        let created = self.active.is_none();
        if created {
            fs::create_dir_all(&self.dir)?;
            let name = format!(
                "{SEGMENT_PREFIX}{:08}-{}",
                self.seq,
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let path = self.dir.join(name);
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            self.active = Some((path, file));
            self.active_len = 0;
        }
        let Some((_, file)) = self.active.as_mut() else {
            return Err(io::Error::other("no journal segment"));
        };
        // at the end of the valid records (a failed append must not leave a gap)
        use std::io::{Seek, SeekFrom};
        let appended = file
            .seek(SeekFrom::Start(self.active_len))
            .and_then(|_| file.write_all(&buf))
            .and_then(|()| file.sync_data());
        if let Err(e) = appended {
            // not acknowledged: cut what may have reached the file
            let _ = file.set_len(self.active_len);
            return Err(e);
        }
        if created {
            // the new segment's name must survive a crash too
            files::sync_dir(&self.dir)?;
        }
        self.active_len += buf.len() as u64;
        drop(buf);
        let mut later = Vec::new();
        for (rel, data) in batch {
            self.covered.push(rel.clone());
            if !deferred(&rel) {
                put_file(&self.dir, &rel, &data)?;
                continue;
            }
            if let Some(parent) = self.dir.join(&rel).parent()
                && !self.made_dirs.iter().any(|d| d == parent)
            {
                fs::create_dir_all(parent)?;
                self.made_dirs.push(parent.to_path_buf());
            }
            later.push((rel, data));
        }
        if !later.is_empty() {
            self.backlog.push(later);
        }
        if self.active_len >= SEGMENT_BYTES {
            self.rotate();
        }
        Ok(())
    }

    /// Closes the active segment. Its checkpoint waits until the conversation is quiet
    /// ([`Journal::start_checkpoint`]), since it needs the backlog's files written, unless
    /// [`MAX_CLOSED`] segments wait already.
    fn rotate(&mut self) {
        if let Some((path, _)) = self.active.take() {
            self.closed.push(path);
            self.seq += 1;
            let paths = std::mem::take(&mut self.covered);
            self.covered_closed.extend(paths);
        }
        if self.closed.len() >= MAX_CLOSED {
            self.start_checkpoint();
        }
    }

    /// Starts a checkpoint of every closed segment in the background, unless one runs: the
    /// backlog's files are written first (now), then synced, then the segments deleted.
    pub fn start_checkpoint(&mut self) {
        if self.closed.is_empty() || self.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        let segments = std::mem::take(&mut self.closed);
        let paths = std::mem::take(&mut self.covered_closed);
        let dir = self.dir.clone();
        let flag = self.checkpointing.clone();
        let backlog = self.backlog.clone();
        let written = backlog.pushed();
        let job = move || {
            // the files the segments cover must be written before they are synced
            backlog.wait_written(written);
            if let Err(e) = checkpoint(&dir, &segments, paths) {
                log::warn!("journal checkpoint of {} failed: {e}", dir.display());
            }
            flag.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(job);
            }
            Err(_) => job(),
        }
    }

    /// Syncs everything the journal covers and removes every segment (blocking; for tests and
    /// for callers that must leave a directory without a journal).
    pub fn checkpoint_now(&mut self) -> io::Result<()> {
        let mut segments = std::mem::take(&mut self.closed);
        if let Some((path, _)) = self.active.take() {
            segments.push(path);
            self.seq += 1;
        }
        let mut paths = std::mem::take(&mut self.covered_closed);
        paths.append(&mut self.covered);
        self.backlog.wait_idle();
        checkpoint(&self.dir, &segments, paths)
    }
}

/// Makes the files `paths` and the directories durable, then deletes `segments` (oldest first).
/// Files that no longer exist (the conversation was deleted) end it quietly.
fn checkpoint(dir: &Path, segments: &[PathBuf], mut paths: Vec<String>) -> io::Result<()> {
    paths.sort();
    paths.dedup();
    let mut dirs: Vec<PathBuf> = vec![dir.to_path_buf()];
    for rel in &paths {
        let path = dir.join(rel);
        match File::open(&path) {
            Ok(f) => f.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !dir.exists() {
                    return Ok(());
                }
                // replaced since (a later record covers it) or never written: nothing to sync
            }
            Err(e) => return Err(e),
        }
        if let Some(parent) = path.parent()
            && !dirs.iter().any(|d| d == parent)
        {
            dirs.push(parent.to_path_buf());
        }
    }
    // sub-directories first, the conversation directory last
    for d in dirs.iter().rev() {
        match files::sync_dir(d) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        }
    }
    for seg in segments {
        match fs::remove_file(seg) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match files::sync_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: &[u8] = b"{\"m\": 1}";
    const M2: &[u8] = b"{\"m\": 2}";
    const M3: &[u8] = b"{\"m\": 3}";
    const E0: &[u8] = b"{\"e\": 0}";

    fn set_mtime(path: &Path, t: std::time::SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        list_segments(dir)
            .unwrap()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// What a load does: replay, then settle every file (here all by reading them).
    fn recover(dir: &Path) -> Replayed {
        let mut r = replay(dir).unwrap();
        r.settle_rest(dir).unwrap();
        r
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_ends_the_segment() {
        let mut buf = Vec::new();
        encode(&mut buf, "events/a.json", b"{\"a\": 1}");
        encode(&mut buf, "meta.json", b"");
        let full = buf.len();
        encode(&mut buf, "events/b.json", b"{\"b\": 2}");
        let recs = decode(&buf);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].0, "events/a.json");
        assert_eq!(recs[0].1, b"{\"a\": 1}");
        assert_eq!(recs[1].1, b"");
        assert_eq!(recs[1].2, full);
        // every truncation of the last record drops it, and only it
        for cut in full..buf.len() {
            assert_eq!(decode(&buf[..cut]).len(), 2, "cut at {cut}");
        }
        // a flipped byte in the last record's data drops it
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decode(&bad).len(), 2);
        // paths that leave the directory are refused
        let mut evil = Vec::new();
        encode(&mut evil, "../x", b"1");
        assert!(decode(&evil).is_empty());
    }

    #[test]
    fn a_write_is_journaled_then_replay_restores_lost_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("conv");
        let mut j = Journal::new(dir.clone());
        j.write(vec![
            ("meta.json".into(), M1.to_vec()),
            ("events/event-00000-a.json".into(), E0.to_vec()),
        ])
        .unwrap();
        j.write(vec![("meta.json".into(), M2.to_vec())]).unwrap();
        assert_eq!(fs::read(dir.join("meta.json")).unwrap(), M2);
        // the event file is written behind, the state files at once
        assert!(!dir.join("events/event-00000-a.json").exists());
        j.backlog().wait_idle();
        assert_eq!(fs::read(dir.join("events/event-00000-a.json")).unwrap(), E0);
        assert_eq!(segments(&dir).len(), 1);
        // an OS crash before write-back: a file is gone, another empty, the journal is not
        fs::remove_file(dir.join("events/event-00000-a.json")).unwrap();
        fs::write(dir.join("meta.json"), b"").unwrap();
        let mut r = replay(&dir).unwrap();
        assert_eq!(
            r.unsettled_under("events/"),
            vec!["events/event-00000-a.json"]
        );
        assert!(r.has("meta.json"));
        // a loader settles what it reads: the empty meta.json comes back from the journal
        let got = r.settle(&dir, "meta.json", Some(Vec::new())).unwrap();
        assert_eq!(got.as_deref(), Some(M2));
        assert!(!r.has("meta.json"));
        r.settle_rest(&dir).unwrap();
        assert_eq!(r.repaired, 2);
        assert_eq!(fs::read(dir.join("meta.json")).unwrap(), M2);
        assert_eq!(fs::read(dir.join("events/event-00000-a.json")).unwrap(), E0);
        // a second replay has nothing to do
        assert_eq!(recover(&dir).repaired, 0);
        // writing continues in the same segment
        let mut j = Journal::resume(dir.clone(), recover(&dir));
        j.write(vec![("meta.json".into(), M3.to_vec())]).unwrap();
        assert_eq!(segments(&dir).len(), 1);
        // a lost rename: the previous version is back, older than the last append
        fs::write(dir.join("meta.json"), M2).unwrap();
        set_mtime(&dir.join("meta.json"), std::time::SystemTime::UNIX_EPOCH);
        recover(&dir);
        assert_eq!(
            fs::read(dir.join("meta.json")).unwrap(),
            M3,
            "newest record wins"
        );
        // an event file cut short after the last append (a write behind, killed) is repaired
        fs::write(dir.join("events/event-00000-a.json"), &E0[..4]).unwrap();
        set_mtime(
            &dir.join("events/event-00000-a.json"),
            std::time::SystemTime::now() + std::time::Duration::from_secs(5),
        );
        assert_eq!(recover(&dir).repaired, 1);
        assert_eq!(fs::read(dir.join("events/event-00000-a.json")).unwrap(), E0);
        // an edit made while the server was stopped (newer than the journal) is kept
        fs::write(dir.join("meta.json"), b"{\"edited\": 1}").unwrap();
        let future = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        set_mtime(&dir.join("meta.json"), future);
        assert_eq!(recover(&dir).repaired, 0);
        assert_eq!(fs::read(dir.join("meta.json")).unwrap(), b"{\"edited\": 1}");
        // a checkpoint syncs and removes every segment
        j.checkpoint_now().unwrap();
        assert!(segments(&dir).is_empty());
        assert!(!has_segments(&dir));
    }

    #[test]
    fn a_torn_append_is_not_replayed_and_writing_resumes_before_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut j = Journal::new(dir.clone());
        j.write(vec![("events/e1.json".into(), b"{}".to_vec())])
            .unwrap();
        j.backlog().wait_idle();
        // a crash in the middle of the next append (never acknowledged)
        let seg = segments(&dir).pop().unwrap();
        let mut rec = Vec::new();
        encode(&mut rec, "events/e2.json", b"{}");
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&rec[..rec.len() - 2]).unwrap();
        fs::remove_file(dir.join("events/e1.json")).unwrap();
        let r = recover(&dir);
        assert_eq!(r.repaired, 1);
        assert_eq!(fs::read(dir.join("events/e1.json")).unwrap(), b"{}");
        assert!(!dir.join("events/e2.json").exists());
        // the next append goes where the torn one started: both records readable
        let mut j = Journal::resume(dir.clone(), r);
        j.write(vec![("events/e3.json".into(), b"{\"x\": 3}".to_vec())])
            .unwrap();
        let bytes = fs::read(&seg).unwrap();
        let recs: Vec<String> = decode(&bytes).into_iter().map(|r| r.0).collect();
        assert_eq!(recs, ["events/e1.json", "events/e3.json"]);
    }

    #[test]
    fn a_full_segment_is_checkpointed_once_quiet() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut j = Journal::new(dir.clone());
        let big = vec![b'x'; 64 * 1024];
        let mut n = 0;
        while j.seq == 0 {
            j.write(vec![(format!("events/e{n}.json"), big.clone())])
                .unwrap();
            n += 1;
        }
        // the full segment waits for the conversation to be quiet
        assert_eq!(segments(&dir).len(), 1);
        // then (outside a runtime the checkpoint runs inline) its files are written and synced
        // and it goes; the new segment is not created yet
        j.start_checkpoint();
        assert!(segments(&dir).is_empty());
        j.write(vec![("events/last.json".into(), b"1".to_vec())])
            .unwrap();
        assert_eq!(segments(&dir).len(), 1);
        for k in 0..n {
            assert!(dir.join(format!("events/e{k}.json")).exists());
        }
    }
}
