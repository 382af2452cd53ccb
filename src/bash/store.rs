//! The bash event log: an in-memory index over the event files of `bash_events_dir` (pure core:
//! search, get, clear, no actix types) and the blocking file helpers that write, restore, read and
//! delete those files (PERSISTENCE.md §7). Callers run the helpers off actor threads.
//!
//! Order is by timestamp, then `order`, then file name (DEVIATIONS #11); the reference's page ids
//! (file names) and second-resolution timestamp filters are kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::sync::Arc;

use bytestring::ByteString;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::model::{BashEvent, EventKind, FileName, parse_file_name};

/// Compact JSON bodies up to this size stay in memory; larger ones are read back from disk.
pub const CACHED_BODY_MAX: usize = 16 * 1024;

/// Files larger than this are not parsed whole at start-up: their metadata is read from the head.
const RESTORE_HEAD_BYTES: usize = 4096;

/// Where an entry sits in the log: timestamp, then `order` (-1 for commands), then file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey {
    pub micros: i64,
    pub order: i64,
    pub name: Arc<str>,
}

/// One event of the log: its place, what the filters need, and maybe its compact JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: SortKey,
    pub kind: EventKind,
    /// The id exactly as it ends the file name (lookups are exact, as in the reference).
    pub id: String,
    pub command_id: Option<Uuid>,
    /// The file-name time (UTC, truncated to the second), used by the timestamp filters.
    pub second: NaiveDateTime,
    /// The compact JSON when at most [`CACHED_BODY_MAX`] bytes; otherwise read from the file.
    pub body: Option<ByteString>,
}

impl Entry {
    /// The entry of a new event whose compact JSON is `compact`.
    pub fn of_event(event: &BashEvent, compact: &ByteString) -> Entry {
        let name: Arc<str> = Arc::from(event.file_name());
        Entry {
            key: SortKey {
                micros: event.timestamp().timestamp_micros(),
                order: event.order(),
                name,
            },
            kind: event.kind(),
            id: event.id().simple().to_string(),
            command_id: event.command_id(),
            second: event.timestamp().naive_utc().with_nanosecond_zero(),
            body: (compact.len() <= CACHED_BODY_MAX).then(|| compact.clone()),
        }
    }
}

/// Drops the sub-second part (chrono has no direct truncation on NaiveDateTime).
trait NanoZero {
    fn with_nanosecond_zero(self) -> Self;
}

impl NanoZero for NaiveDateTime {
    fn with_nanosecond_zero(self) -> Self {
        chrono::Timelike::with_nanosecond(&self, 0).unwrap_or(self)
    }
}

/// `sort_order` of a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Timestamp,
    TimestampDesc,
}

/// A validated `bash_events/search` query.
#[derive(Debug, Clone, PartialEq)]
pub struct BashQuery {
    pub kind: Option<EventKind>,
    /// Only the outputs of this command.
    pub command_id: Option<Uuid>,
    /// Compared at second resolution with the file-name time, without time-zone conversion.
    pub timestamp_gte: Option<NaiveDateTime>,
    pub timestamp_lt: Option<NaiveDateTime>,
    pub sort_order: SortOrder,
    /// A file name returned as `next_page_id`; unknown names start from the beginning.
    pub page_id: Option<String>,
    pub limit: usize,
}

impl Default for BashQuery {
    fn default() -> Self {
        BashQuery {
            kind: None,
            command_id: None,
            timestamp_gte: None,
            timestamp_lt: None,
            sort_order: SortOrder::Timestamp,
            page_id: None,
            limit: 100,
        }
    }
}

/// A page of entries; `next_page_id` is the file name of the first entry of the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Arc<Entry>>,
    pub next_page_id: Option<String>,
}

/// The in-memory index of the log.
#[derive(Debug, Default)]
pub struct BashIndex {
    entries: BTreeMap<SortKey, Arc<Entry>>,
    by_id: HashMap<String, SortKey>,
    by_command: HashMap<Uuid, BTreeSet<SortKey>>,
}

impl BashIndex {
    pub fn new() -> BashIndex {
        BashIndex::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry (replacing one with the same id).
    pub fn insert(&mut self, entry: Entry) {
        if let Some(old) = self.by_id.remove(&entry.id) {
            self.entries.remove(&old);
            for set in self.by_command.values_mut() {
                set.remove(&old);
            }
        }
        self.by_id.insert(entry.id.clone(), entry.key.clone());
        if let Some(c) = entry.command_id {
            self.by_command
                .entry(c)
                .or_default()
                .insert(entry.key.clone());
        }
        self.entries.insert(entry.key.clone(), Arc::new(entry));
    }

    /// The event whose file name ends with `_<id>`.
    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        self.by_id
            .get(id)
            .and_then(|k| self.entries.get(k))
            .cloned()
    }

    /// Every entry in log order (for `resend_all`).
    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.entries.values().cloned().collect()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_id.clear();
        self.by_command.clear();
    }

    /// One page of the entries matching `q`.
    pub fn search(&self, q: &BashQuery) -> Page {
        let matches = |e: &Entry| {
            q.kind.is_none_or(|k| k == e.kind)
                && q.command_id.is_none_or(|c| e.command_id == Some(c))
                && q.timestamp_gte
                    .is_none_or(|t| e.second >= t.with_nanosecond_zero())
                && q.timestamp_lt
                    .is_none_or(|t| e.second < t.with_nanosecond_zero())
        };
        // The page starts at `page_id` when it names an entry this query would return.
        let start: Option<&SortKey> = q
            .page_id
            .as_deref()
            .and_then(|p| {
                p.rsplit('_')
                    .next()
                    .and_then(|id| self.by_id.get(id))
                    .filter(|k| &*k.name == p)
            })
            .filter(|k| self.entries.get(*k).is_some_and(|e| matches(e)));
        let keys: Box<dyn Iterator<Item = &SortKey>> = match (q.command_id, q.sort_order) {
            (Some(c), order) => {
                let Some(set) = self.by_command.get(&c) else {
                    return Page {
                        items: Vec::new(),
                        next_page_id: None,
                    };
                };
                match (order, start) {
                    (SortOrder::Timestamp, Some(s)) => Box::new(set.range(s..)),
                    (SortOrder::Timestamp, None) => Box::new(set.iter()),
                    (SortOrder::TimestampDesc, Some(s)) => Box::new(set.range(..=s).rev()),
                    (SortOrder::TimestampDesc, None) => Box::new(set.iter().rev()),
                }
            }
            (None, order) => match (order, start) {
                (SortOrder::Timestamp, Some(s)) => {
                    Box::new(self.entries.range(s..).map(|(k, _)| k))
                }
                (SortOrder::Timestamp, None) => Box::new(self.entries.keys()),
                (SortOrder::TimestampDesc, Some(s)) => {
                    Box::new(self.entries.range(..=s).rev().map(|(k, _)| k))
                }
                (SortOrder::TimestampDesc, None) => Box::new(self.entries.keys().rev()),
            },
        };
        let mut items = Vec::with_capacity(q.limit.min(100));
        let mut next_page_id = None;
        for e in keys
            .filter_map(|k| self.entries.get(k))
            .filter(|e| matches(e))
        {
            if items.len() == q.limit {
                next_page_id = Some(e.key.name.to_string());
                break;
            }
            items.push(e.clone());
        }
        Page {
            items,
            next_page_id,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Blocking file helpers (call from `spawn_blocking` / `web::block`).

/// Writes one event file (pretty JSON, indent 2, no trailing newline), creating the directory
/// when it went missing.
pub fn write_event(dir: &Path, name: &str, pretty: &[u8]) -> std::io::Result<()> {
    let path = dir.join(name);
    match std::fs::write(&path, pretty) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(&path, pretty)
        }
        other => other,
    }
}

/// Removes one event file; a file already gone is not an error.
pub fn remove_event(dir: &Path, name: &str) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(name)) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Reads an event file back as compact JSON (`None` when it is gone or unreadable).
pub fn read_compact(dir: &Path, name: &str) -> Option<ByteString> {
    minify(&std::fs::read(dir.join(name)).ok()?)
}

/// Pretty JSON to compact JSON by dropping the whitespace outside strings: the same text as
/// serializing compactly (key order and escapes are untouched), without parsing. Large outputs are
/// read back on every poll, so strings are copied whole, their end found with `str::find` (memchr).
fn minify(pretty: &[u8]) -> Option<ByteString> {
    let text = std::str::from_utf8(pretty).ok()?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c != '"' {
            if !matches!(c, ' ' | '\n' | '\r' | '\t') {
                out.push(c);
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        // A string: its closing quote is the first one preceded by an even number of backslashes.
        let mut end = 1;
        loop {
            end += rest[end..].find('"')?;
            let backslashes = rest[..end]
                .bytes()
                .rev()
                .take_while(|b| *b == b'\\')
                .count();
            if backslashes % 2 == 0 {
                break;
            }
            end += 1;
        }
        out.push_str(&rest[..=end]);
        rest = &rest[end + 1..];
    }
    (out.starts_with('{') && out.ends_with('}')).then(|| ByteString::from(out))
}

/// Deletes every file of the directory; returns how many were removed.
pub fn clear_dir(dir: &Path) -> std::io::Result<usize> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let mut n = 0;
    for item in rd {
        let item = item?;
        if item.file_type()?.is_file() && std::fs::remove_file(item.path()).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// Rebuilds the index entries from the event files of `dir` (files that are not events, or do not
/// parse, are skipped with a warning).
pub fn load_dir(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for item in rd {
        let item = item?;
        let Some(name) = item.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some(parsed) = parse_file_name(&name) else {
            continue;
        };
        match restore_entry(&item.path(), &name, parsed) {
            Some(e) => out.push(e),
            None => log::warn!("bash events: skipping unreadable event file {name}"),
        }
    }
    Ok(out)
}

/// Reads the metadata of one event file: small files whole (and cached), large ones from their
/// head, where `timestamp` and `order` precede the output text.
fn restore_entry(path: &Path, name: &str, parsed: FileName) -> Option<Entry> {
    let mut file = std::fs::File::open(path).ok()?;
    let size = file.metadata().ok()?.len() as usize;
    let (timestamp, order, body) = if size <= 2 * CACHED_BODY_MAX {
        let mut bytes = Vec::with_capacity(size);
        file.read_to_end(&mut bytes).ok()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        let compact = value.to_string();
        let ts = value
            .get("timestamp")
            .and_then(Value::as_str)
            .map(str::to_string);
        let order = value.get("order").and_then(Value::as_i64);
        let body = (compact.len() <= CACHED_BODY_MAX).then(|| ByteString::from(compact));
        (ts, order, body)
    } else {
        let mut head = vec![0u8; RESTORE_HEAD_BYTES];
        let n = file.read(&mut head).ok()?;
        let head = String::from_utf8_lossy(&head[..n]);
        (
            head_field(&head, "timestamp"),
            head_field(&head, "order").and_then(|o| o.parse().ok()),
            None,
        )
    };
    let micros = timestamp
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
        .unwrap_or_else(|| parsed.second.and_utc().timestamp_micros());
    let order = match parsed.kind {
        EventKind::Command => -1,
        EventKind::Output => order.unwrap_or(0),
    };
    Some(Entry {
        key: SortKey {
            micros,
            order,
            name: Arc::from(name),
        },
        kind: parsed.kind,
        id: parsed.id,
        command_id: parsed.command_id,
        second: parsed.second,
        body,
    })
}

/// The raw value of `"field": value` in the head of a pretty-printed event (strings unquoted).
fn head_field(head: &str, field: &str) -> Option<String> {
    let pat = format!("\"{field}\": ");
    let start = head.find(&pat)? + pat.len();
    let rest = &head[start..];
    if let Some(s) = rest.strip_prefix('"') {
        Some(s[..s.find('"')?].to_string())
    } else {
        let end = rest.find([',', '\n', '}'])?;
        Some(rest[..end].trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bash::model::{BashCommand, BashOutput};
    use chrono::TimeZone;

    fn t(sec: u32, micros: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 13, 8, sec).unwrap()
            + chrono::Duration::microseconds(micros)
    }

    fn command(sec: u32, micros: i64) -> BashEvent {
        BashEvent::Command(BashCommand {
            command: "x".into(),
            cwd: None,
            timeout: 300,
            id: Uuid::new_v4(),
            timestamp: t(sec, micros),
        })
    }

    fn output(cmd: &BashEvent, order: i64, sec: u32, micros: i64, exit: Option<i64>) -> BashEvent {
        BashEvent::Output(BashOutput {
            id: Uuid::new_v4(),
            timestamp: t(sec, micros),
            command_id: cmd.id(),
            order,
            exit_code: exit,
            stdout: Some(format!("{order}")),
            stderr: None,
        })
    }

    fn entry(e: &BashEvent) -> Entry {
        Entry::of_event(e, &ByteString::from(serde_json::to_string(e).unwrap()))
    }

    fn ids(p: &Page) -> Vec<String> {
        p.items.iter().map(|e| e.id.clone()).collect()
    }

    fn hex(e: &BashEvent) -> String {
        e.id().simple().to_string()
    }

    #[test]
    fn order_is_timestamp_then_order_and_pages_chain() {
        let c = command(20, 100);
        let outs: Vec<_> = (0..4)
            .map(|i| output(&c, i, 20, 200 + i * 10, (i == 3).then_some(0)))
            .collect();
        let mut idx = BashIndex::new();
        // Inserted out of order: the index orders them.
        for e in outs.iter().rev().chain(std::iter::once(&c)) {
            idx.insert(entry(e));
        }
        let all = idx.search(&BashQuery::default());
        let expect: Vec<String> = std::iter::once(&c).chain(outs.iter()).map(hex).collect();
        assert_eq!(ids(&all), expect);

        let mut q = BashQuery {
            limit: 2,
            ..BashQuery::default()
        };
        let p1 = idx.search(&q);
        assert_eq!(ids(&p1), expect[..2].to_vec());
        assert_eq!(
            p1.next_page_id.as_deref(),
            Some(outs[1].file_name().as_str())
        );
        q.page_id = p1.next_page_id.clone();
        let p2 = idx.search(&q);
        assert_eq!(ids(&p2), expect[2..4].to_vec());
        q.page_id = p2.next_page_id.clone();
        let p3 = idx.search(&q);
        assert_eq!((ids(&p3), p3.next_page_id), (expect[4..].to_vec(), None));

        let desc = idx.search(&BashQuery {
            sort_order: SortOrder::TimestampDesc,
            ..BashQuery::default()
        });
        assert_eq!(ids(&desc), expect.iter().rev().cloned().collect::<Vec<_>>());

        q.page_id = Some("unknown".into());
        assert_eq!(ids(&idx.search(&q)), expect[..2].to_vec());
    }

    #[test]
    fn filters() {
        let c1 = command(20, 0);
        let c2 = command(22, 0);
        let o1 = output(&c1, 0, 21, 0, Some(0));
        let o2 = output(&c2, 0, 23, 0, Some(1));
        let mut idx = BashIndex::new();
        for e in [&c1, &c2, &o1, &o2] {
            idx.insert(entry(e));
        }
        let by_cmd = idx.search(&BashQuery {
            command_id: Some(c1.id()),
            ..BashQuery::default()
        });
        assert_eq!(ids(&by_cmd), vec![hex(&o1)]);
        let cmds = idx.search(&BashQuery {
            kind: Some(EventKind::Command),
            ..BashQuery::default()
        });
        assert_eq!(ids(&cmds), vec![hex(&c1), hex(&c2)]);
        let window = idx.search(&BashQuery {
            timestamp_gte: Some(t(21, 500).naive_utc()),
            timestamp_lt: Some(t(23, 0).naive_utc()),
            ..BashQuery::default()
        });
        assert_eq!(ids(&window), vec![hex(&o1), hex(&c2)]);
        assert_eq!(idx.get(&hex(&o2)).map(|e| e.id.clone()), Some(hex(&o2)));
        assert_eq!(idx.get(&c1.id().hyphenated().to_string()), None);
        idx.clear();
        assert!(idx.is_empty());
    }

    #[test]
    fn files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let c = command(20, 5);
        let small = output(&c, 0, 20, 6, None);
        let mut big = output(&c, 1, 20, 7, Some(0));
        if let BashEvent::Output(o) = &mut big {
            o.stdout = Some("y".repeat(3 * CACHED_BODY_MAX));
        }
        for e in [&c, &small, &big] {
            write_event(
                dir.path(),
                &e.file_name(),
                &serde_json::to_vec_pretty(e).unwrap(),
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("README"), "not an event").unwrap();
        let mut idx = BashIndex::new();
        for e in load_dir(dir.path()).unwrap() {
            idx.insert(e);
        }
        assert_eq!(idx.len(), 3);
        let restored = idx.get(&hex(&big)).unwrap();
        assert_eq!(restored.body, None);
        assert_eq!(
            *restored,
            Entry {
                body: None,
                ..entry(&big)
            }
        );
        assert_eq!(*idx.get(&hex(&small)).unwrap(), entry(&small));
        assert_eq!(
            read_compact(dir.path(), &big.file_name()).map(|b| b.to_string()),
            Some(serde_json::to_string(&big).unwrap())
        );
        let tricky = BashEvent::Output(BashOutput {
            stdout: Some("a \"b\" \\ {c}\n\t é".into()),
            ..match output(&c, 2, 20, 8, None) {
                BashEvent::Output(o) => o,
                BashEvent::Command(_) => unreachable!(),
            }
        });
        assert_eq!(
            minify(&serde_json::to_vec_pretty(&tricky).unwrap()).map(|b| b.to_string()),
            Some(serde_json::to_string(&tricky).unwrap())
        );
        assert_eq!(minify(b"{\"a\": \"open"), None);
        assert_eq!(
            minify(b"{\n  \"a\": \"x\\\\\",\n  \"b\": \"\\\" y\"\n}").as_deref(),
            Some(r#"{"a":"x\\","b":"\" y"}"#)
        );
        assert_eq!(clear_dir(dir.path()).unwrap(), 4);
        assert_eq!(clear_dir(dir.path()).unwrap(), 0);
    }
}
