//! The bash service: background shell commands for clients (`/api/bash`, `/sockets/bash-events`).
//!
//! - [`model`]: `BashCommand` / `BashOutput` and their wire and file-name rules.
//! - [`chunker`]: the output chunking rules (pure).
//! - [`store`]: the event index and search (pure) and the event-file helpers.
//! - [`supervisor`]: the `BashSupervisor` actor (log owner, command starter, fan-out hub).
//! - [`command`]: the `BashCommandActor`, one per command, owning its process and PTY.
//!
//! Routes and sockets use [`BashHandle`], never the actors' messages.

pub mod chunker;
pub mod command;
pub mod model;
#[cfg(test)]
mod proptests;
pub mod store;
pub mod supervisor;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use actix::prelude::*;
use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{Stream, StreamExt};
use tokio::sync::oneshot;

use crate::error::ApiError;
use model::{BashCommand, BashOutput, ExecuteBashRequest};
use store::{BashQuery, Entry};
use supervisor::{
    BashFeed, BashSupervisor, ClearEvents, GetEvents, SearchEvents, Shutdown, StartCommand,
    Subscribe, Subscription, Unsubscribe,
};

/// Events read per blocking task when a search page is streamed (about 4 MiB of large outputs).
const STREAM_BATCH: usize = 4;

/// A JSON response body: built whole, or streamed piece by piece.
pub enum JsonPayload {
    Whole(Bytes),
    Streamed(Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>>>>),
}

/// The typed handle of the bash service, shared by routes and sockets.
#[derive(Clone)]
pub struct BashHandle {
    addr: Addr<BashSupervisor>,
    /// `bash_events_dir`, for reading event bodies that are not kept in memory.
    dir: Arc<PathBuf>,
}

impl BashHandle {
    /// Restores the event log from `dir` and starts the supervisor on the current arbiter.
    pub async fn start(dir: PathBuf, max_running: usize) -> std::io::Result<BashHandle> {
        let load_dir = dir.clone();
        let restored = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&load_dir)?;
            store::load_dir(&load_dir)
        })
        .await
        .map_err(std::io::Error::other)??;
        log::info!(
            "bash events: {} restored from {}",
            restored.len(),
            dir.display()
        );
        let addr = BashSupervisor::new(dir.clone(), restored, max_running).start();
        Ok(BashHandle {
            addr,
            dir: Arc::new(dir),
        })
    }

    /// Starts a command in the background; returns its `BashCommand` at once.
    pub async fn start_command(
        &self,
        request: ExecuteBashRequest,
    ) -> Result<BashCommand, ApiError> {
        self.addr
            .send(StartCommand {
                request,
                waiter: None,
            })
            .await?
    }

    /// Runs a command to its end; returns the final `BashOutput` (with `exit_code`) whose
    /// `stdout`/`stderr` hold the whole output, up to [`command::COLLECT_LIMIT`] characters each.
    pub async fn execute(&self, request: ExecuteBashRequest) -> Result<BashOutput, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.addr
            .send(StartCommand {
                request,
                waiter: Some(tx),
            })
            .await??;
        rx.await
            .map_err(|_| ApiError::internal("the command ended without a final output"))
    }

    /// A page of `bash_events/search` as its JSON body. When every event is in memory the body is
    /// built at once; otherwise it is streamed, reading one event file at a time, so a page of
    /// large outputs never sits in memory whole.
    pub async fn search(&self, query: BashQuery) -> Result<JsonPayload, ApiError> {
        let page = self.addr.send(SearchEvents(query)).await?;
        let head = Bytes::from_static(b"{\"items\":[");
        let tail = Bytes::from(format!(
            "],\"next_page_id\":{}}}",
            serde_json::to_string(&page.next_page_id).unwrap_or_else(|_| "null".into())
        ));
        if page.items.iter().all(|e| e.body.is_some()) {
            let bodies: Vec<&ByteString> =
                page.items.iter().filter_map(|e| e.body.as_ref()).collect();
            let mut out = BytesMut::with_capacity(
                bodies.iter().map(|b| b.len() + 1).sum::<usize>() + tail.len() + 16,
            );
            out.put_slice(&head);
            for (i, b) in bodies.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                out.put_slice(b.as_bytes());
            }
            out.put_slice(&tail);
            return Ok(JsonPayload::Whole(out.freeze()));
        }
        let dir = self.dir.clone();
        let items: std::collections::VecDeque<Arc<Entry>> = page.items.into();
        // State: the entries left, whether one was written, and the tail (taken at the end).
        // Each step reads up to STREAM_BATCH events in one blocking task and yields them as one
        // piece.
        let stream = futures_util::stream::unfold(
            (items, false, Some(tail)),
            move |(mut items, wrote, tail)| {
                let dir = dir.clone();
                async move {
                    if items.is_empty() {
                        return tail.map(|t| (Ok(t), (items, wrote, None)));
                    }
                    let batch: Vec<Arc<Entry>> =
                        items.drain(..items.len().min(STREAM_BATCH)).collect();
                    let read = tokio::task::spawn_blocking(move || {
                        let mut wrote = wrote;
                        let mut piece = BytesMut::new();
                        for entry in batch {
                            let body = entry
                                .body
                                .clone()
                                .or_else(|| store::read_compact(&dir, &entry.key.name));
                            // An event whose file vanished (cleared meanwhile) is left out.
                            let Some(body) = body else { continue };
                            if wrote {
                                piece.put_u8(b',');
                            }
                            piece.put_slice(body.as_bytes());
                            wrote = true;
                        }
                        (piece.freeze(), wrote)
                    });
                    match read.await {
                        Ok((piece, wrote)) => Some((Ok(piece), (items, wrote, tail))),
                        Err(e) => Some((Err(std::io::Error::other(e)), (items, wrote, None))),
                    }
                }
            },
        );
        let stream = futures_util::stream::once(std::future::ready(Ok(head))).chain(stream);
        Ok(JsonPayload::Streamed(Box::pin(stream)))
    }

    /// One event's JSON, or `None` when no event has this (exact, 32-hex) id.
    pub async fn get(&self, id: String) -> Result<Option<ByteString>, ApiError> {
        let entries = self.addr.send(GetEvents(vec![id])).await?;
        Ok(self
            .bodies(entries.into_iter().flatten().collect())
            .await?
            .pop()
            .flatten())
    }

    /// The JSON array of the given events, `null` for unknown ids.
    pub async fn batch_get(&self, ids: Vec<String>) -> Result<Bytes, ApiError> {
        let entries = self.addr.send(GetEvents(ids)).await?;
        let mut found = Vec::new();
        let mut slots = Vec::with_capacity(entries.len());
        for e in entries {
            slots.push(e.is_some());
            found.extend(e);
        }
        let mut bodies = self.bodies(found).await?.into_iter();
        let mut out = BytesMut::new();
        out.put_u8(b'[');
        for (i, present) in slots.into_iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            let body = if present {
                bodies.next().flatten()
            } else {
                None
            };
            match body {
                Some(b) => out.put_slice(b.as_bytes()),
                None => out.put_slice(b"null"),
            }
        }
        out.put_u8(b']');
        Ok(out.freeze())
    }

    /// Deletes every bash event; returns how many files were removed.
    pub async fn clear(&self) -> Result<usize, ApiError> {
        self.addr.send(ClearEvents).await?
    }

    /// Registers a socket subscriber (see [`Subscribe`]).
    pub async fn subscribe(
        &self,
        subscriber: Recipient<BashFeed>,
        resend_all: bool,
    ) -> Result<Subscription, ApiError> {
        Ok(self
            .addr
            .send(Subscribe {
                subscriber,
                resend_all,
            })
            .await?)
    }

    pub fn unsubscribe(&self, id: u64) {
        self.addr.do_send(Unsubscribe(id));
    }

    /// The compact JSON of each entry, reading from disk those not kept in memory; `None` for an
    /// event whose file vanished (cleared meanwhile).
    pub async fn bodies(
        &self,
        entries: Vec<Arc<Entry>>,
    ) -> Result<Vec<Option<ByteString>>, ApiError> {
        if entries.iter().all(|e| e.body.is_some()) {
            return Ok(entries.into_iter().map(|e| e.body.clone()).collect());
        }
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            entries
                .iter()
                .map(|e| {
                    e.body
                        .clone()
                        .or_else(|| store::read_compact(&dir, &e.key.name))
                })
                .collect()
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Kills every command, waits (bounded) for them to be reaped, stops the supervisor.
    pub async fn shutdown(&self) {
        let _ = self.addr.send(Shutdown).await;
    }
}
