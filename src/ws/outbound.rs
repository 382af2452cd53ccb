//! Bounded outbound queue of a WebSocket session, and the response stream that drains it.
//!
//! Frames are queued as shared `Arc<str>` (the event JSON the conversation serialized once), so
//! a session that is behind costs pointers, not copies. The [`Transport`] stream wraps the
//! `actix-web-actors` context stream: control frames (ping, pong, close) written to the context
//! go out first; queued event frames are encoded into at most [`CHUNK_BYTES`] per poll, and the
//! HTTP dispatcher only polls again once its write buffer has drained. So the bytes copied per
//! session stay around one chunk plus the dispatcher's buffer, however far behind the client is.
//! How far behind it may fall is the queue's byte budget ([`OutboundQueue::push_live`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_http::ws::{OpCode, Parser};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;

/// Upper bound of event bytes encoded per poll of the transport stream.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Live frames would put the queue over its byte budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    /// Live bytes queued when the batch arrived.
    pub queued: usize,
}

/// Text frames waiting for the transport, in order. The subscription snapshot (`full_state`
/// and, with `resend_all`, the whole log) is exempt from the budget: it is bounded by the log.
#[derive(Debug)]
pub struct OutboundQueue {
    frames: VecDeque<Arc<str>>,
    /// Bytes of the live (non-snapshot) frames still queued.
    live_bytes: usize,
    /// How many of the leading frames belong to the snapshot.
    snapshot_frames: usize,
    budget: usize,
}

impl OutboundQueue {
    pub fn new(budget: usize) -> Self {
        OutboundQueue {
            frames: VecDeque::new(),
            live_bytes: 0,
            snapshot_frames: 0,
            budget,
        }
    }

    /// Queues the subscription snapshot (not counted against the budget).
    pub fn push_snapshot(&mut self, frames: &[Arc<str>]) {
        self.snapshot_frames += frames.len();
        self.frames.extend(frames.iter().cloned());
    }

    /// Queues live frames, unless they would put more than the budget of live bytes in the
    /// queue. One batch larger than the budget is still accepted when nothing live is queued,
    /// so a single big event never disconnects a client that keeps up.
    pub fn push_live(&mut self, frames: &[Arc<str>]) -> Result<(), Overflow> {
        let n: usize = frames.iter().map(|f| f.len()).sum();
        if self.live_bytes > 0 && self.live_bytes + n > self.budget {
            return Err(Overflow {
                queued: self.live_bytes,
            });
        }
        self.live_bytes += n;
        self.frames.extend(frames.iter().cloned());
        Ok(())
    }

    /// Removes and returns every queued frame (to hand them over before a normal close).
    pub fn take_all(&mut self) -> Vec<Arc<str>> {
        self.live_bytes = 0;
        self.snapshot_frames = 0;
        self.frames.drain(..).collect()
    }

    /// Drops every queued frame.
    pub fn clear(&mut self) {
        self.take_all();
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Live bytes queued (what the budget limits).
    pub fn live_bytes(&self) -> usize {
        self.live_bytes
    }

    /// Bytes [`Self::encode_into`] with `max` would write (to size the buffer once).
    pub fn encoded_len(&self, max: usize) -> usize {
        let mut n = 0;
        for f in &self.frames {
            if n >= max {
                break;
            }
            // opcode byte, then a 1, 3 or 9 byte length
            n += f.len()
                + 2
                + if f.len() < 126 {
                    0
                } else if f.len() <= 0xffff {
                    2
                } else {
                    8
                };
        }
        n
    }

    /// Encodes queued frames as server text frames into `dst` until it holds `max` bytes or
    /// the queue is empty (at least one frame when the queue is not empty).
    pub fn encode_into(&mut self, dst: &mut BytesMut, max: usize) {
        while dst.len() < max {
            let Some(frame) = self.frames.pop_front() else {
                break;
            };
            if self.snapshot_frames > 0 {
                self.snapshot_frames -= 1;
            } else {
                self.live_bytes = self.live_bytes.saturating_sub(frame.len());
            }
            Parser::write_message(dst, frame.as_bytes(), OpCode::Text, true, false);
        }
    }
}

/// The queue shared by a session actor and its [`Transport`] (same thread: no locking).
pub type SharedQueue = Rc<RefCell<OutboundQueue>>;

/// The response body of a session: the context's stream first, then queued event frames.
pub struct Transport<S> {
    inner: Pin<Box<S>>,
    queue: SharedQueue,
    done: bool,
}

impl<S> Transport<S> {
    pub fn new(inner: S, queue: SharedQueue) -> Self {
        Transport {
            inner: Box::pin(inner),
            queue,
            done: false,
        }
    }
}

impl<S, E> Stream for Transport<S>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        // The context stream drives the actor (mailbox, timers, incoming frames) and yields
        // what it wrote directly: control frames and close.
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => return Poll::Ready(Some(item)),
            Poll::Ready(None) => {
                this.done = true;
                this.queue.borrow_mut().clear();
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        // Being polled means the dispatcher wants more: hand it the next chunk of events.
        let mut queue = this.queue.borrow_mut();
        let mut buf = BytesMut::with_capacity(queue.encoded_len(CHUNK_BYTES));
        queue.encode_into(&mut buf, CHUNK_BYTES);
        drop(queue);
        if buf.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Some(Ok(buf.freeze())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(sizes: &[usize]) -> Vec<Arc<str>> {
        sizes.iter().map(|n| Arc::from("x".repeat(*n))).collect()
    }

    #[test]
    fn budget_counts_live_bytes_only() {
        let mut q = OutboundQueue::new(100);
        q.push_snapshot(&frames(&[1000, 1000]));
        assert_eq!(q.push_live(&frames(&[60])), Ok(()));
        assert_eq!(q.push_live(&frames(&[40])), Ok(()));
        assert_eq!(q.push_live(&frames(&[1])), Err(Overflow { queued: 100 }));
        assert_eq!(q.live_bytes(), 100);
    }

    #[test]
    fn a_big_event_passes_when_nothing_live_is_queued() {
        let mut q = OutboundQueue::new(100);
        assert_eq!(q.push_live(&frames(&[500])), Ok(()));
        assert_eq!(q.push_live(&frames(&[1])), Err(Overflow { queued: 500 }));
    }

    #[test]
    fn encoding_drains_in_order_and_frees_the_budget() {
        let mut q = OutboundQueue::new(100);
        q.push_snapshot(&[Arc::from("snap")]);
        q.push_live(&[Arc::from("a"), Arc::from("bc")])
            .expect("fits");
        let mut buf = BytesMut::new();
        q.encode_into(&mut buf, 1);
        // one frame per call when max is tiny: 0x81, length, payload
        assert_eq!(&buf[..], b"\x81\x04snap");
        assert_eq!(q.live_bytes(), 3);
        let mut buf = BytesMut::new();
        q.encode_into(&mut buf, CHUNK_BYTES);
        assert_eq!(&buf[..], b"\x81\x01a\x81\x02bc");
        assert_eq!(q.live_bytes(), 0);
        assert!(q.is_empty());
    }

    #[test]
    fn encoding_stops_near_the_chunk_size() {
        let mut q = OutboundQueue::new(usize::MAX);
        q.push_live(&frames(&[400; 10])).expect("fits");
        let mut buf = BytesMut::new();
        q.encode_into(&mut buf, 1000);
        // three frames reach 1000 bytes (with headers), the rest waits
        assert_eq!(buf.len(), 3 * (400 + 4));
        assert_eq!(q.encoded_len(1000), 3 * (400 + 4));
        assert_eq!(q.encoded_len(usize::MAX), 7 * (400 + 4));
        assert_eq!(q.live_bytes(), 7 * 400);
    }

    #[test]
    fn take_all_empties_the_queue() {
        let mut q = OutboundQueue::new(10);
        q.push_snapshot(&frames(&[3]));
        q.push_live(&frames(&[5])).expect("fits");
        assert_eq!(q.take_all().len(), 2);
        assert!(q.is_empty());
        assert_eq!(q.live_bytes(), 0);
        q.push_live(&frames(&[10])).expect("budget is free again");
    }
}
