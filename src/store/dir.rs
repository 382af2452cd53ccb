//! One conversation directory (`<conversations_path>/<hex id>/`): `meta.json`
//! (StoredConversation, compact, secrets encrypted or masked), `base_state.json`
//! (ConversationState, disk form, secrets masked) and `events/`. Loading merges the two files
//! so every piece of state survives a restart (DEVIATIONS #5, #6), and also reads directories
//! written by the reference.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::model::conversation::{
    ConversationState, ConversationStats, SecretRegistry, StoredConversation,
};
use crate::model::secret::{SecretMode, SecretRead, with_secret_mode, with_secret_read};
use crate::model::wire;

use super::cipher::Fernet;
use super::event_log::{EventLog, Loaded};
use super::files;
use super::journal::{self, Journal, Replayed};

pub const META: &str = "meta.json";
pub const BASE_STATE: &str = "base_state.json";
pub const EVENTS: &str = "events";

/// Everything needed to run a conversation, as read from (or created in) its directory.
#[derive(Debug)]
pub struct ConversationRecord {
    pub state: ConversationState,
    /// `meta.json` fields that are not part of the state (title, dates, start request).
    pub meta: StoredConversation,
    pub log: EventLog,
    /// Every later write of the directory goes through it.
    pub journal: Journal,
}

/// The directory of conversation `id` under `root`.
pub fn conversation_dir(root: &Path, id: &Uuid) -> PathBuf {
    root.join(wire::hex(id))
}

/// `persistence_dir` as the API shows it: the configured root exactly as given, plus the hex id.
pub fn persistence_dir_string(root: &Path, id: &Uuid) -> String {
    let r = root.to_string_lossy();
    if r.ends_with('/') {
        format!("{r}{}", wire::hex(id))
    } else {
        format!("{r}/{}", wire::hex(id))
    }
}

/// Serializes `meta.json`: compact, nulls kept, secrets encrypted (or masked without a key).
pub fn meta_bytes(meta: &StoredConversation, cipher: Option<&Arc<Fernet>>) -> io::Result<Vec<u8>> {
    let mode = match cipher {
        Some(c) => SecretMode::Encrypt(c.clone()),
        None => SecretMode::Mask,
    };
    with_secret_mode(mode, || serde_json::to_vec(meta)).map_err(io::Error::other)
}

/// Serializes `base_state.json`: disk form, secrets masked.
pub fn base_state_bytes(state: &ConversationState) -> io::Result<Vec<u8>> {
    with_secret_mode(SecretMode::Mask, || wire::to_python_json(state))
}

/// Writes `meta.json` and/or `base_state.json` durably.
pub fn write_state_files(
    dir: &Path,
    meta: Option<&[u8]>,
    base_state: Option<&[u8]>,
) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    if let Some(b) = base_state {
        files::write_atomic(dir, BASE_STATE, b)?;
    }
    if let Some(m) = meta {
        files::write_atomic(dir, META, m)?;
    }
    files::sync_dir(dir)
}

/// Why a directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no meta.json")]
    NoMeta,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("invalid {file}: {error}")]
    Parse { file: &'static str, error: String },
}

/// Reads and parses `dir/file`, checked against the journal first (see [`Replayed::settle`]).
fn read_json<T: serde::de::DeserializeOwned>(
    dir: &Path,
    file: &'static str,
    read: SecretRead,
    journal: &mut Replayed,
) -> Result<Option<T>, LoadError> {
    let have = match fs::read(dir.join(file)) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let Some(bytes) = journal.settle(dir, file, have)? else {
        return Ok(None);
    };
    with_secret_read(read, || serde_json::from_slice::<T>(&bytes))
        .map(Some)
        .map_err(|e| LoadError::Parse {
            file,
            error: e.to_string(),
        })
}

/// Settles the rest of the journal and returns the writer to continue with.
fn finish_journal(dir: &Path, mut replayed: Replayed) -> io::Result<Journal> {
    replayed.settle_rest(dir)?;
    if replayed.repaired > 0 {
        log::warn!(
            "{}: {} file(s) restored from the journal",
            dir.display(),
            replayed.repaired
        );
    }
    Ok(Journal::resume(dir.to_path_buf(), replayed))
}

/// Loads a conversation directory that has a `meta.json` (start-up restore).
/// `root` is the configured conversations path (for `persistence_dir`).
pub fn load(
    root: &Path,
    dir: &Path,
    cipher: Option<&Arc<Fernet>>,
) -> Result<(ConversationRecord, Vec<String>), LoadError> {
    let mut replayed = journal::replay(dir)?;
    let read = SecretRead::Decrypt(cipher.cloned());
    let meta: StoredConversation =
        read_json(dir, META, read.clone(), &mut replayed)?.ok_or(LoadError::NoMeta)?;
    let base: Option<ConversationState> = read_json(dir, BASE_STATE, read, &mut replayed)?;
    files::remove_temp_files(dir);
    let Loaded { log, warnings } = EventLog::load_settled(dir.join(EVENTS), &mut replayed)?;
    let journal = finish_journal(dir, replayed)?;
    let id = meta.id;
    let mut agent = meta.agent.clone();
    agent.normalize();
    let state = match base {
        Some(b) => {
            let mut registry = b.secret_registry;
            for (name, s) in &meta.secrets {
                registry.secret_sources.insert(name.clone(), s.clone());
            }
            registry.secret_sources.retain(|name, s| {
                let ok = s.is_usable();
                if !ok {
                    log::warn!(
                        "conversation {id}: secret {name} has no stored value and is dropped"
                    );
                }
                ok
            });
            ConversationState {
                id,
                agent,
                workspace: b.workspace,
                persistence_dir: persistence_dir_string(root, &id),
                max_iterations: b.max_iterations,
                stuck_detection: b.stuck_detection,
                execution_status: b.execution_status,
                confirmation_policy: b.confirmation_policy,
                security_analyzer: b.security_analyzer,
                activated_knowledge_skills: b.activated_knowledge_skills,
                stats: if b.stats.usage_to_metrics.is_empty() {
                    ConversationStats::for_agent(&meta.agent)
                } else {
                    b.stats
                },
                secret_registry: registry,
            }
        }
        None => {
            let mut registry = SecretRegistry::default();
            for (name, s) in &meta.secrets {
                if s.is_usable() {
                    registry.secret_sources.insert(name.clone(), s.clone());
                }
            }
            ConversationState {
                id,
                stats: ConversationStats::for_agent(&agent),
                agent,
                workspace: meta.workspace.clone(),
                persistence_dir: persistence_dir_string(root, &id),
                max_iterations: meta.max_iterations,
                stuck_detection: meta.stuck_detection,
                execution_status: Default::default(),
                confirmation_policy: meta.confirmation_policy.clone(),
                security_analyzer: None,
                activated_knowledge_skills: Vec::new(),
                secret_registry: registry,
            }
        }
    };
    Ok((
        ConversationRecord {
            state,
            meta,
            log,
            journal,
        },
        warnings,
    ))
}

/// What a start request finds in a directory that exists but is not loaded.
pub struct Resumed {
    /// `base_state.json` and the event log, when there is a state to resume (API.md §2.1).
    pub found: Option<(ConversationState, EventLog)>,
    /// The directory's journal (replayed), for the writes that follow.
    pub journal: Journal,
}

/// Reads an existing `base_state.json` and event log for a start request over a directory
/// that exists but is not loaded (API.md §2.1: the old state and events are resumed).
pub fn load_for_resume(dir: &Path) -> Result<Resumed, LoadError> {
    let mut replayed = journal::replay(dir)?;
    let base: Option<ConversationState> =
        read_json(dir, BASE_STATE, SecretRead::Decrypt(None), &mut replayed)?;
    let found = match base {
        Some(base) => {
            files::remove_temp_files(dir);
            let Loaded { log, warnings } = EventLog::load_settled(dir.join(EVENTS), &mut replayed)?;
            for w in warnings {
                log::warn!("{}: {w}", dir.display());
            }
            Some((base, log))
        }
        None => None,
    };
    let journal = finish_journal(dir, replayed)?;
    Ok(Resumed { found, journal })
}

/// Every sub-directory of `root` that has a `meta.json` (or a journal, which may hold it after a
/// crash), in directory order.
pub fn list_conversation_dirs(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false)
            && (path.join(META).is_file() || journal::has_segments(&path))
        {
            out.push(path);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "/work/shared/reference/examples/persistence/conversation_dir";

    /// A directory written by the reference (with OH_SECRET_KEY) loads with its state.
    #[test]
    fn loads_the_reference_example_directory() {
        let src = Path::new(FIXTURE);
        if !src.exists() {
            eprintln!("skipping: {FIXTURE} not present");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d7f069d4a362414f98370c5693d7a3e9");
        fs::create_dir_all(dir.join(EVENTS)).unwrap();
        fs::copy(src.join("base_state.json"), dir.join(BASE_STATE)).unwrap();
        fs::copy(src.join("meta.json__with_OH_SECRET_KEY"), dir.join(META)).unwrap();
        for e in fs::read_dir(src.join(EVENTS)).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), dir.join(EVENTS).join(e.file_name())).unwrap();
        }
        // the key the capture was made with is not published: its tokens do not decrypt, so
        // the secrets are dropped (with a warning) and everything else loads
        let cipher = Arc::new(Fernet::from_secret_key("my-secret-key-for-tests"));
        let (rec, warnings) = load(tmp.path(), &dir, Some(&cipher)).unwrap();
        assert_eq!(
            rec.state.id.simple().to_string(),
            "d7f069d4a362414f98370c5693d7a3e9"
        );
        assert!(rec.state.agent.llm.api_key.is_none());
        assert_eq!(rec.meta.title.as_deref(), Some("Demo conversation"));
        assert_eq!(
            rec.state.execution_status,
            crate::model::ExecutionStatus::Finished
        );
        assert!(rec.state.security_analyzer.is_some());
        // event 00000 (the system prompt) and 00004 are left out of the fixture
        assert_eq!(rec.log.len(), 11);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        // masked static secrets of base_state.json have no value: dropped; lookup secrets stay
        assert!(
            rec.state
                .secret_registry
                .secret_sources
                .get("MY_TOKEN")
                .is_none()
        );
        assert!(
            rec.state
                .secret_registry
                .secret_sources
                .get("LOOKUP")
                .is_some()
        );
        // the event JSON comes back in the API shape (nulls restored)
        let action = rec.log.get("efce3379-6aac-455c-8386-3b9af056b99d").unwrap();
        let v: serde_json::Value = serde_json::from_str(&action).unwrap();
        assert_eq!(v["action"]["timeout"], serde_json::Value::Null);
        assert!(v.as_object().unwrap().contains_key("reasoning_content"));
        // without a key it loads as well
        let (rec, _) = load(tmp.path(), &dir, None).unwrap();
        assert_eq!(rec.log.len(), 11);
    }
}
