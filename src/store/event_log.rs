//! The append-only event log of one conversation: one file per event
//! (`events/event-NNNNN-<id>.json`, disk form) and an in-memory index (by id, by timestamp,
//! with the filter fields) holding each event's API JSON, so lookups, counts and searches never
//! touch the disk. Appends are two-phase: [`EventLog::prepare`] (numbering, timestamp order,
//! serialization, no I/O), [`write_batch`] (blocking, durable), then [`EventLog::commit`].

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::events::{Event, KIND_PATHS};
use crate::model::{Source, wire};

use super::files;

/// Index of the kind in [`KIND_PATHS`]; `UNKNOWN_KIND` for kinds this server does not know.
type KindCode = u8;
const UNKNOWN_KIND: KindCode = u8::MAX;

fn kind_code(kind: &str) -> KindCode {
    KIND_PATHS
        .iter()
        .position(|(k, _)| *k == kind)
        .map(|i| i as KindCode)
        .unwrap_or(UNKNOWN_KIND)
}

/// One indexed event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: Box<str>,
    pub timestamp: Box<str>,
    kind: KindCode,
    source: Option<Source>,
    /// Lower-cased searchable text (MessageEvents only).
    body: Option<Box<str>>,
    /// The API form, serialized once and shared with every reader and subscriber.
    pub json: Arc<str>,
    /// The `NNNNN` of the file name.
    pub file_index: u32,
}

/// An event ready to be written and committed.
#[derive(Debug)]
pub struct Prepared {
    pub file_name: String,
    pub bytes: Vec<u8>,
    pub entry: StoredEvent,
}

/// The filters of `events/search` and `events/count` (API.md §3.1).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// `Some(None)`: a kind filter that matches nothing (unknown name).
    pub kind: Option<Option<&'static str>>,
    /// `Some(None)`: a source filter that matches nothing.
    pub source: Option<Option<Source>>,
    /// Lower-cased body substring.
    pub body: Option<String>,
    /// Rendered bounds, compared as strings with the event timestamps (like the reference).
    pub timestamp_gte: Option<String>,
    pub timestamp_lt: Option<String>,
}

impl EventFilter {
    fn matches(&self, e: &StoredEvent) -> bool {
        if let Some(k) = &self.kind {
            match k {
                Some(k) => {
                    if e.kind == UNKNOWN_KIND || KIND_PATHS[e.kind as usize].0 != *k {
                        return false;
                    }
                }
                None => return false,
            }
        }
        if let Some(s) = &self.source
            && (s.is_none() || e.source != *s)
        {
            return false;
        }
        if let Some(b) = &self.body {
            match &e.body {
                Some(text) if text.contains(b.as_str()) => {}
                _ => return false,
            }
        }
        if let Some(g) = &self.timestamp_gte
            && *e.timestamp < **g
        {
            return false;
        }
        if let Some(l) = &self.timestamp_lt
            && *e.timestamp >= **l
        {
            return false;
        }
        true
    }
}

/// The in-memory index of one conversation's events.
#[derive(Debug, Default)]
pub struct EventLog {
    /// `<conversation dir>/events`.
    dir: PathBuf,
    /// Append order.
    entries: Vec<StoredEvent>,
    by_id: HashMap<Box<str>, u32>,
    /// Entry numbers in timestamp order (ties keep append order).
    sorted: Vec<u32>,
    /// Entry number -> position in `sorted`.
    rank: Vec<u32>,
    /// File index of the next event.
    next_index: u32,
    /// Highest timestamp prepared so far (new events never go below it: DEVIATIONS #7).
    last_timestamp: String,
}

/// Result of loading a log from disk.
#[derive(Debug)]
pub struct Loaded {
    pub log: EventLog,
    /// Problems met (unreadable files, gaps); the log still loaded.
    pub warnings: Vec<String>,
}

/// Parses `event-<index>-<id>.json` (at least 5 index digits).
fn parse_file_name(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix("event-")?.strip_suffix(".json")?;
    let (idx, id) = rest.split_once('-')?;
    if idx.len() < 5 || !idx.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // the reference only reloads UUID-like ids; this server reloads any id it wrote
    if id.is_empty() {
        return None;
    }
    Some((idx.parse().ok()?, id))
}

/// Turns an event into an index entry (serializing its API form).
fn entry_for(event: &Event, file_index: u32) -> StoredEvent {
    StoredEvent {
        id: event.id().into(),
        timestamp: event.timestamp().into(),
        kind: kind_code(event.kind()),
        source: event.source(),
        body: event
            .search_text()
            .map(|t| t.to_lowercase().into_boxed_str()),
        json: Arc::from(event.to_api_json()),
        file_index,
    }
}

impl EventLog {
    /// An empty log stored in `events_dir` (created on the first write).
    pub fn new(events_dir: PathBuf) -> EventLog {
        EventLog {
            dir: events_dir,
            ..EventLog::default()
        }
    }

    /// Reads every `event-NNNNN-<id>.json` of `events_dir` in index order. Unreadable files
    /// and duplicate ids are skipped with a warning; gaps in the numbering are tolerated.
    pub fn load(events_dir: PathBuf) -> io::Result<Loaded> {
        let mut log = EventLog::new(events_dir);
        let mut warnings = Vec::new();
        let rd = match fs::read_dir(&log.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded { log, warnings }),
            Err(e) => return Err(e),
        };
        let mut names: Vec<(u32, String)> = Vec::new();
        let mut temps = false;
        for entry in rd {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(files::TEMP_PREFIX) {
                temps = true;
                continue;
            }
            if let Some((idx, _)) = parse_file_name(&name) {
                names.push((idx, name));
            }
        }
        if temps {
            files::remove_temp_files(&log.dir);
        }
        names.sort();
        let mut expected = 0u32;
        for (idx, name) in names {
            if idx != expected {
                warnings.push(format!("event index gap before {name}"));
            }
            expected = idx + 1;
            let path = log.dir.join(&name);
            let parsed = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Event>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(event) => {
                    if log.by_id.contains_key(event.id()) {
                        warnings.push(format!("duplicate event id in {name}; keeping the first"));
                        continue;
                    }
                    let entry = entry_for(&event, idx);
                    log.push_entry(entry);
                }
                Err(e) => warnings.push(format!("skipping unreadable event file {name}: {e}")),
            }
            log.next_index = log.next_index.max(idx + 1);
        }
        log.rebuild_order();
        log.last_timestamp = log
            .sorted
            .last()
            .map(|&i| log.entries[i as usize].timestamp.to_string())
            .unwrap_or_default();
        Ok(Loaded { log, warnings })
    }

    fn push_entry(&mut self, entry: StoredEvent) {
        let n = self.entries.len() as u32;
        self.by_id.insert(entry.id.clone(), n);
        self.entries.push(entry);
    }

    fn rebuild_order(&mut self) {
        let mut sorted: Vec<u32> = (0..self.entries.len() as u32).collect();
        sorted.sort_by(|&a, &b| {
            self.entries[a as usize]
                .timestamp
                .cmp(&self.entries[b as usize].timestamp)
        });
        self.rank = vec![0; sorted.len()];
        for (pos, &e) in sorted.iter().enumerate() {
            self.rank[e as usize] = pos as u32;
        }
        self.sorted = sorted;
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Numbers `event`, keeps timestamps non-decreasing, and serializes both forms.
    /// Must be followed by [`write_batch`] and [`EventLog::commit`] in the same order.
    pub fn prepare(&mut self, event: &mut Event) -> io::Result<Prepared> {
        if event.id().is_empty() {
            return Err(io::Error::other("event without id"));
        }
        if *event.timestamp() < *self.last_timestamp {
            event.set_timestamp(self.last_timestamp.clone());
        }
        self.last_timestamp = event.timestamp().to_string();
        let index = self.next_index;
        self.next_index += 1;
        let bytes = event.to_disk_json()?;
        Ok(Prepared {
            file_name: format!("event-{index:05}-{}.json", event.id()),
            bytes,
            entry: entry_for(event, index),
        })
    }

    /// Indexes a prepared (and written) event.
    pub fn commit(&mut self, entry: StoredEvent) {
        if self.by_id.contains_key(&entry.id) {
            log::error!("duplicate event id {} not indexed", entry.id);
            return;
        }
        let n = self.entries.len() as u32;
        let in_order = self
            .sorted
            .last()
            .is_none_or(|&l| self.entries[l as usize].timestamp <= entry.timestamp);
        self.push_entry(entry);
        if in_order {
            self.sorted.push(n);
            self.rank.push(self.sorted.len() as u32 - 1);
        } else {
            self.rebuild_order();
        }
    }

    /// The API JSON of one event.
    pub fn get(&self, id: &str) -> Option<Arc<str>> {
        self.by_id
            .get(id)
            .map(|&i| self.entries[i as usize].json.clone())
    }

    /// Every event in search order (timestamp), for the WebSocket backlog.
    pub fn all_sorted(&self) -> Vec<Arc<str>> {
        self.sorted
            .iter()
            .map(|&i| self.entries[i as usize].json.clone())
            .collect()
    }

    /// Every event in append order (for the agent's history).
    pub fn all_appended(&self) -> impl Iterator<Item = &StoredEvent> {
        self.entries.iter()
    }

    pub fn count(&self, filter: &EventFilter) -> usize {
        self.entries.iter().filter(|e| filter.matches(e)).count()
    }

    /// One page: events matching `filter` in timestamp order (reversed when `desc`), starting at
    /// `page_id` (inclusive; unknown or filtered-out ids start from the beginning), at most
    /// `limit`; the second value is the id of the first event of the next page.
    pub fn search(
        &self,
        filter: &EventFilter,
        desc: bool,
        page_id: Option<&str>,
        limit: usize,
    ) -> (Vec<Arc<str>>, Option<String>) {
        let start = page_id
            .and_then(|p| self.by_id.get(p))
            .filter(|&&i| filter.matches(&self.entries[i as usize]))
            .map(|&i| self.rank[i as usize] as usize);
        let n = self.sorted.len();
        let positions: Box<dyn Iterator<Item = usize>> = match (desc, start) {
            (false, s) => Box::new(s.unwrap_or(0)..n),
            (true, Some(s)) => Box::new((0..=s).rev()),
            (true, None) => Box::new((0..n).rev()),
        };
        let mut items = Vec::with_capacity(limit.min(n));
        let mut next = None;
        for pos in positions {
            let e = &self.entries[self.sorted[pos] as usize];
            if !filter.matches(e) {
                continue;
            }
            if items.len() >= limit {
                next = Some(e.id.to_string());
                break;
            }
            items.push(e.json.clone());
        }
        (items, next)
    }
}

/// Writes prepared events durably: each file atomically, then one sync of the directory.
pub fn write_batch(events_dir: &Path, batch: &[(String, Vec<u8>)]) -> io::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(events_dir)?;
    for (name, bytes) in batch {
        files::write_atomic(events_dir, name, bytes)?;
    }
    files::sync_dir(events_dir)
}

/// Writes prepared events so every reader sees them (each file complete, by rename) without
/// waiting for the disk; the returned files are made durable later with
/// [`super::files::sync_later`] (the conversation does it behind its appends).
pub fn write_batch_visible(
    events_dir: &Path,
    batch: &[(String, Vec<u8>)],
) -> io::Result<Vec<fs::File>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    fs::create_dir_all(events_dir)?;
    batch
        .iter()
        .map(|(name, bytes)| files::write_visible(events_dir, name, bytes))
        .collect()
}

/// Like [`write_batch`] without fsync (test fixtures only).
#[cfg(test)]
fn write_batch_unsynced(events_dir: &Path, batch: &[(String, Vec<u8>)]) -> io::Result<()> {
    fs::create_dir_all(events_dir)?;
    for (name, bytes) in batch {
        fs::write(events_dir.join(name), bytes)?;
    }
    Ok(())
}

/// A fresh event id/timestamp pair, for code building events by hand.
pub fn stamp() -> (String, String) {
    (wire::new_event_id(), wire::event_timestamp_now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::message::Message;
    use serde_json::Value;

    fn message(text: &str, ts: &str) -> Event {
        let mut e = Event::user_message(Message::user_text(text));
        e.set_timestamp(ts.to_string());
        e
    }

    fn append(log: &mut EventLog, mut e: Event) {
        let p = log.prepare(&mut e).unwrap();
        write_batch(log.dir(), &[(p.file_name.clone(), p.bytes.clone())]).unwrap();
        log.commit(p.entry);
    }

    fn ids(items: &[Arc<str>]) -> Vec<String> {
        items
            .iter()
            .map(|j| {
                serde_json::from_str::<Value>(j).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn crash_between_write_and_rename_leaves_a_loadable_log() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("events");
        let mut log = EventLog::new(dir.clone());
        append(&mut log, message("one", "2026-01-01T00:00:01"));
        append(&mut log, message("two", "2026-01-01T00:00:02"));
        // an interrupted write: the temp file exists, the rename never happened
        let mut e = message("three", "2026-01-01T00:00:03");
        let p = log.prepare(&mut e).unwrap();
        fs::write(
            dir.join(format!("{}{}-x", files::TEMP_PREFIX, p.file_name)),
            &p.bytes[..10],
        )
        .unwrap();
        // and a torn final file from a foreign writer
        fs::write(
            dir.join("event-00003-0000000a-0000-0000-0000-000000000000.json"),
            b"{\"kind\": \"Mess",
        )
        .unwrap();
        let loaded = EventLog::load(dir.clone()).unwrap();
        assert_eq!(loaded.log.len(), 2);
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(fs::read_dir(&dir).unwrap().all(|e| {
            !e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(files::TEMP_PREFIX)
        }));
        // appending continues after the highest index seen
        let mut log = loaded.log;
        append(&mut log, message("four", "2026-01-01T00:00:04"));
        assert!(
            dir.join(format!("event-00004-{}.json", ids(&log.all_sorted())[2]))
                .exists()
        );
    }

    #[test]
    fn search_count_and_pages_on_10000_events() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = EventLog::new(tmp.path().join("events"));
        let mut batch = Vec::new();
        let mut entries = Vec::new();
        for i in 0..10_000u32 {
            let mut e = if i % 10 == 0 {
                Event::state_update("execution_status", Value::from("running"))
            } else {
                message(&format!("Message number {i}"), "")
            };
            e.set_timestamp(format!(
                "2026-01-01T00:{:02}:{:02}.{:06}",
                i / 6000,
                (i / 100) % 60,
                i % 100
            ));
            let p = log.prepare(&mut e).unwrap();
            batch.push((p.file_name, p.bytes));
            entries.push(p.entry);
        }
        write_batch_unsynced(log.dir(), &batch).unwrap();
        for e in entries {
            log.commit(e);
        }
        let all = EventFilter::default();
        assert_eq!(log.count(&all), 10_000);
        let states = EventFilter {
            kind: Some(crate::model::events::kind_from_filter(
                "openhands.sdk.event.conversation_state.ConversationStateUpdateEvent",
            )),
            ..EventFilter::default()
        };
        assert_eq!(log.count(&states), 1000);
        let users = EventFilter {
            source: Some(Some(Source::User)),
            body: Some("number 99".into()),
            ..EventFilter::default()
        };
        assert_eq!(log.count(&users), 1 + 10 + 100 - 11); // 99, 99x (9x10 minus multiples of 10), 99xx
        // walk every page of 100 ascending and descending
        for desc in [false, true] {
            let mut seen = Vec::new();
            let mut page = None;
            loop {
                let (items, next) = log.search(&all, desc, page.as_deref(), 100);
                assert!(items.len() <= 100);
                seen.extend(ids(&items));
                match next {
                    Some(n) => page = Some(n),
                    None => break,
                }
            }
            assert_eq!(seen.len(), 10_000);
            let mut expected = ids(&log.all_sorted());
            if desc {
                expected.reverse();
            }
            assert_eq!(seen, expected);
        }
        // timestamp filters partition the log
        let pivot = "2026-01-01T00:50:00".to_string();
        let gte = EventFilter {
            timestamp_gte: Some(pivot.clone()),
            ..EventFilter::default()
        };
        let lt = EventFilter {
            timestamp_lt: Some(pivot),
            ..EventFilter::default()
        };
        assert_eq!(log.count(&gte) + log.count(&lt), 10_000);
        // an unknown page id starts from the beginning
        let (items, _) = log.search(&all, false, Some("nope"), 1);
        assert_eq!(ids(&items), ids(&log.all_sorted()[..1]));
        // reload from disk gives the same index
        let loaded = EventLog::load(tmp.path().join("events")).unwrap();
        assert!(loaded.warnings.is_empty());
        assert_eq!(ids(&loaded.log.all_sorted()), ids(&log.all_sorted()));
    }

    #[test]
    fn timestamps_never_go_backwards() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = EventLog::new(tmp.path().join("events"));
        append(&mut log, message("a", "2026-01-01T00:00:05"));
        append(&mut log, message("b", "2026-01-01T00:00:01"));
        let ts: Vec<String> = log
            .all_sorted()
            .iter()
            .map(|j| {
                serde_json::from_str::<Value>(j).unwrap()["timestamp"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(ts, vec!["2026-01-01T00:00:05", "2026-01-01T00:00:05"]);
    }
}
