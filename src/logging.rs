//! Logger set-up: `env_logger` with the level from `RUST_LOG`, else `LOG_LEVEL`, else `DEBUG`
//! (debug) or info; `LOG_JSON=true` prints one JSON object per line.
//!
//! Lines reach stderr through a writer thread. The request path (one access-log line per
//! request) only appends to a buffer; the thread writes the buffer out every
//! [`WRITE_INTERVAL`], or sooner once it holds [`WAKE_BYTES`]. Writing each line from the HTTP
//! worker itself tied the worker to the log file's speed (page-cache write-back, a slow pipe):
//! the p99 of `/server_info` under load went from about 1 ms to 4 ms with the access log on.
//! Warnings and errors are written at once (with every line before them), and [`flush`]
//! empties the buffer at exit, so a normal stop loses nothing; a crash loses at most the last
//! [`WRITE_INTERVAL`] of info and debug lines.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

/// How long a buffered line may wait.
const WRITE_INTERVAL: Duration = Duration::from_millis(50);
/// A buffer this large wakes the writer thread at once.
const WAKE_BYTES: usize = 64 * 1024;
/// A buffer this large is written out by the logging thread itself (the writer is behind).
const MAX_BYTES: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct Buffered {
    lines: Mutex<Vec<u8>>,
    wake: Condvar,
    /// Held while writing to stderr, so chunks go out in order.
    out: Mutex<()>,
}

impl Buffered {
    /// Writes out everything buffered so far, in order with the writer thread.
    fn write_out(&self) {
        let Ok(_out) = self.out.lock() else { return };
        let chunk = match self.lines.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(_) => return,
        };
        if !chunk.is_empty() {
            let _ = std::io::stderr().lock().write_all(&chunk);
        }
    }
}

/// The `Write` end env_logger formats into.
struct BufferedStderr(Arc<Buffered>);

impl Write for BufferedStderr {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let len = match self.0.lines.lock() {
            Ok(mut l) => {
                l.extend_from_slice(b);
                l.len()
            }
            Err(_) => return std::io::stderr().write(b),
        };
        if len >= MAX_BYTES {
            self.0.write_out();
        } else if len >= WAKE_BYTES {
            self.0.wake.notify_one();
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // env_logger flushes after every line; the writer thread writes in batches instead
        Ok(())
    }
}

static BUFFER: OnceLock<Arc<Buffered>> = OnceLock::new();

fn start_writer() -> Arc<Buffered> {
    BUFFER
        .get_or_init(|| {
            let b = Arc::new(Buffered::default());
            let w = b.clone();
            let spawned = std::thread::Builder::new()
                .name("log-writer".into())
                .stack_size(64 * 1024)
                .spawn(move || {
                    loop {
                        if let Ok(l) = w.lines.lock() {
                            let _ = w
                                .wake
                                .wait_timeout_while(l, WRITE_INTERVAL, |l| l.len() < WAKE_BYTES);
                        }
                        w.write_out();
                    }
                });
            if let Err(e) = spawned {
                eprintln!("agent-server: no log writer thread ({e}); log lines wait for warnings");
            }
            b
        })
        .clone()
}

/// Writes out every buffered log line (call before the process exits).
pub fn flush() {
    if let Some(b) = BUFFER.get() {
        b.write_out();
    }
}

/// env_logger's logger, with warnings and errors written out at once.
struct Logger(env_logger::Logger);

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        self.0.log(record);
        if record.level() <= log::Level::Warn && self.0.matches(record) {
            flush();
        }
    }

    fn flush(&self) {
        flush();
    }
}

static JSON: AtomicBool = AtomicBool::new(false);

/// The current UTC time to the second (`2026-11-29T22:30:00Z`, env_logger's default stamp),
/// formatted once per second per thread: one access-log line per request would otherwise
/// format a date for every request.
struct SecondStamp;

impl std::fmt::Display for SecondStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        thread_local! {
            static LAST: std::cell::RefCell<(i64, String)> =
                const { std::cell::RefCell::new((i64::MIN, String::new())) };
        }
        let now = chrono::Utc::now();
        let secs = now.timestamp();
        LAST.with(|last| {
            let mut last = last.borrow_mut();
            if last.0 != secs {
                *last = (secs, now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
            f.write_str(&last.1)
        })
    }
}

/// True when log lines are JSON objects (`LOG_JSON=true`).
pub fn json_enabled() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Installs the global logger once; later calls are no-ops (tests start many servers).
pub fn init(debug: bool) {
    let json = std::env::var("LOG_JSON")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    JSON.store(json, Ordering::Relaxed);
    let default_level = std::env::var("LOG_LEVEL")
        .ok()
        .map(|l| l.to_ascii_lowercase())
        .unwrap_or_else(|| if debug { "debug".into() } else { "info".into() });
    let mut b =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level));
    if json {
        b.format(|buf, record| {
            let line = serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "level": record.level().as_str(),
                "target": record.target(),
                "message": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    } else {
        b.format(|buf, record| {
            writeln!(
                buf,
                "[{} {:<5} {}] {}",
                SecondStamp,
                record.level(),
                record.target(),
                record.args()
            )
        });
    }
    b.target(env_logger::Target::Pipe(Box::new(BufferedStderr(
        start_writer(),
    ))));
    let logger = b.build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Logger(logger))).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_is_utc_to_the_second_and_follows_the_clock() {
        let a = SecondStamp.to_string();
        let re = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$").expect("regex");
        assert!(re.is_match(&a), "{a}");
        let parsed = chrono::DateTime::parse_from_rfc3339(&a).expect("rfc3339");
        let age = chrono::Utc::now().signed_duration_since(parsed);
        assert!(
            age >= chrono::Duration::zero() && age < chrono::Duration::seconds(2),
            "{age}"
        );
    }

    #[test]
    fn buffered_lines_come_out_whole_and_in_order() {
        let b = Arc::new(Buffered::default());
        let mut w = BufferedStderr(b.clone());
        w.write_all(b"one\n").expect("write");
        w.write_all(b"two\n").expect("write");
        assert_eq!(&*b.lines.lock().expect("lock"), b"one\ntwo\n");
        b.write_out();
        assert!(b.lines.lock().expect("lock").is_empty());
    }
}
