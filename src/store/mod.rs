//! Persistence, free of actix: the append-only event log with its in-memory index and search
//! ([`event_log`]), the conversation directory (`meta.json`, `base_state.json`; [`dir`]), durable
//! file writes ([`files`]), the write-ahead journal that makes a batch durable with one sync
//! ([`journal`]), the queue of event files written after their acknowledgement ([`backlog`])
//! and the Fernet cipher for secrets at rest ([`cipher`]). Layout and
//! formats are the reference's (PERSISTENCE.md), so directories are interchangeable.

pub mod backlog;
pub mod cipher;
pub mod dir;
pub mod event_log;
pub mod files;
pub mod journal;
