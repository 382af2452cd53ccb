//! The output chunking rules of the reference, as a pure core: bytes of stdout and stderr are
//! decoded as UTF-8 (invalid bytes become U+FFFD, a character split across reads is kept whole),
//! buffered per stream, and whenever a stream holds more than [`CHUNK_CHARS`] characters a chunk of
//! exactly that many characters is cut. What is left at the end goes into the final event.
//! Memory per command is bounded by about two chunks whatever the command prints.

/// Characters per intermediate `BashOutput` (the reference's 1 MiB limit, counted in characters).
pub const CHUNK_CHARS: usize = 1024 * 1024;

/// Which stream a piece of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// An intermediate piece of output: exactly one stream is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub order: i64,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

/// One stream's decoder and buffer.
#[derive(Debug, Default)]
struct StreamBuf {
    text: String,
    /// Characters in `text` (kept so the limit check is O(1)).
    chars: usize,
    /// The undecoded tail of the last read: at most 3 bytes of an incomplete character.
    pending: Vec<u8>,
}

impl StreamBuf {
    fn push_str(&mut self, s: &str) {
        self.chars += s.chars().count();
        self.text.push_str(s);
    }

    /// Decodes `bytes` after the pending tail, keeping an incomplete trailing character pending.
    fn decode(&mut self, bytes: &[u8]) {
        let joined;
        let mut input: &[u8] = if self.pending.is_empty() {
            bytes
        } else {
            let mut j = std::mem::take(&mut self.pending);
            j.extend_from_slice(bytes);
            joined = j;
            &joined
        };
        loop {
            match std::str::from_utf8(input) {
                Ok(s) => {
                    self.push_str(s);
                    return;
                }
                Err(e) => {
                    let (valid, rest) = input.split_at(e.valid_up_to());
                    // SAFETY-free: `valid` was just checked by from_utf8.
                    self.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            self.push_str("\u{FFFD}");
                            input = &rest[n..];
                        }
                        None => {
                            self.pending = rest.to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Cuts the first [`CHUNK_CHARS`] characters while the buffer holds more than that.
    fn cut(&mut self) -> Option<String> {
        if self.chars <= CHUNK_CHARS {
            return None;
        }
        let at = self
            .text
            .char_indices()
            .nth(CHUNK_CHARS)
            .map(|(i, _)| i)
            .unwrap_or(self.text.len());
        let rest = self.text.split_off(at);
        self.chars -= CHUNK_CHARS;
        Some(std::mem::replace(&mut self.text, rest))
    }

    fn finish(&mut self) -> Option<String> {
        if !self.pending.is_empty() {
            self.pending.clear();
            self.push_str("\u{FFFD}");
        }
        self.chars = 0;
        let text = std::mem::take(&mut self.text);
        if text.is_empty() { None } else { Some(text) }
    }
}

/// Turns the byte streams of one command into ordered chunks and a final remainder.
#[derive(Debug, Default)]
pub struct Chunker {
    stdout: StreamBuf,
    stderr: StreamBuf,
    next_order: i64,
}

impl Chunker {
    pub fn new() -> Chunker {
        Chunker::default()
    }

    /// Adds bytes read from `stream`; returns the chunks now complete, in order.
    pub fn push(&mut self, stream: Stream, bytes: &[u8]) -> Vec<Chunk> {
        let buf = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        buf.decode(bytes);
        let mut chunks = Vec::new();
        while let Some(text) = buf.cut() {
            let order = self.next_order;
            self.next_order += 1;
            let (stdout, stderr) = match stream {
                Stream::Stdout => (Some(text), None),
                Stream::Stderr => (None, Some(text)),
            };
            chunks.push(Chunk {
                order,
                stdout,
                stderr,
            });
        }
        chunks
    }

    /// The final event's `order` and the remaining text of each stream (`None` when empty).
    pub fn finish(&mut self) -> Chunk {
        let order = self.next_order;
        self.next_order += 1;
        Chunk {
            order,
            stdout: self.stdout.finish(),
            stderr: self.stderr.finish(),
        }
    }
}

/// The whole output of a command, for `execute_bash_command` (DEVIATIONS #10), bounded: past
/// `limit` characters per stream the rest is dropped.
#[derive(Debug)]
pub struct Collector {
    limit: usize,
    stdout: (String, usize),
    stderr: (String, usize),
}

impl Collector {
    pub fn new(limit: usize) -> Collector {
        Collector {
            limit,
            stdout: (String::new(), 0),
            stderr: (String::new(), 0),
        }
    }

    /// Appends a chunk's (or the final event's) text.
    pub fn add(&mut self, chunk: &Chunk) {
        for (part, (text, chars)) in [
            (&chunk.stdout, &mut self.stdout),
            (&chunk.stderr, &mut self.stderr),
        ] {
            let Some(part) = part else { continue };
            let room = self.limit.saturating_sub(*chars);
            let n = part.chars().count();
            if n <= room {
                text.push_str(part);
                *chars += n;
            } else {
                let end = part
                    .char_indices()
                    .nth(room)
                    .map(|(i, _)| i)
                    .unwrap_or(part.len());
                text.push_str(&part[..end]);
                *chars += room;
            }
        }
    }

    /// The collected `(stdout, stderr)`, `None` for a stream that printed nothing.
    pub fn finish(self) -> (Option<String>, Option<String>) {
        let f = |s: String| if s.is_empty() { None } else { Some(s) };
        (f(self.stdout.0), f(self.stderr.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_output_goes_to_the_final_event() {
        let mut c = Chunker::new();
        assert!(c.push(Stream::Stdout, b"out\n").is_empty());
        assert!(c.push(Stream::Stderr, b"err\n").is_empty());
        assert_eq!(
            c.finish(),
            Chunk {
                order: 0,
                stdout: Some("out\n".into()),
                stderr: Some("err\n".into())
            }
        );
        let mut c = Chunker::new();
        assert_eq!(
            c.finish(),
            Chunk {
                order: 0,
                stdout: None,
                stderr: None
            }
        );
    }

    #[test]
    fn chunks_of_exactly_one_mib_once_exceeded() {
        let mut c = Chunker::new();
        assert!(c.push(Stream::Stdout, &vec![b'a'; CHUNK_CHARS]).is_empty());
        let chunks = c.push(Stream::Stdout, b"bc");
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].order, 0);
        assert_eq!(
            chunks[0].stdout.as_ref().map(String::len),
            Some(CHUNK_CHARS)
        );
        assert_eq!(chunks[0].stderr, None);
        let big_err = c.push(Stream::Stderr, &vec![b'e'; 2 * CHUNK_CHARS + 1]);
        assert_eq!(
            big_err.iter().map(|c| c.order).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            c.finish(),
            Chunk {
                order: 3,
                stdout: Some("bc".into()),
                stderr: Some("e".into())
            }
        );
    }

    #[test]
    fn split_characters_survive_and_invalid_bytes_are_replaced() {
        let mut c = Chunker::new();
        let text = "café ✓ 日本".as_bytes();
        for b in text {
            c.push(Stream::Stdout, &[*b]);
        }
        c.push(Stream::Stdout, &[0xff, b'x', 0xe6]);
        assert_eq!(
            c.finish().stdout.as_deref(),
            Some("café ✓ 日本\u{FFFD}x\u{FFFD}")
        );
    }

    #[test]
    fn collector_is_bounded() {
        let mut col = Collector::new(3);
        col.add(&Chunk {
            order: 0,
            stdout: Some("ab".into()),
            stderr: None,
        });
        col.add(&Chunk {
            order: 1,
            stdout: Some("✓de".into()),
            stderr: Some("x".into()),
        });
        assert_eq!(col.finish(), (Some("ab✓".into()), Some("x".into())));
    }

    proptest! {
        #[test]
        fn chunks_reassemble_to_the_lossy_decoding(data in proptest::collection::vec(any::<u8>(), 0..4000), cuts in proptest::collection::vec(1usize..64, 1..50)) {
            let mut c = Chunker::new();
            let mut out = String::new();
            let mut rest: &[u8] = &data;
            for n in cuts.iter().cycle() {
                if rest.is_empty() { break; }
                let (a, b) = rest.split_at((*n).min(rest.len()));
                for ch in c.push(Stream::Stdout, a) { out.push_str(ch.stdout.as_deref().unwrap_or("")); }
                rest = b;
            }
            out.push_str(c.finish().stdout.as_deref().unwrap_or(""));
            prop_assert_eq!(out, String::from_utf8_lossy(&data).into_owned());
        }
    }
}
