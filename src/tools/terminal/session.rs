//! One interactive bash on a PTY. Readline is off (`--noediting`) and the terminal does not echo,
//! so the captured bytes are exactly what commands print; after every command bash prints a
//! machine-readable prompt block ([`PS1_START`] … [`PS1_END`]) with the exit code, `$!`, user,
//! host, working directory and Python interpreter. A reader task appends everything to a shared
//! buffer; the session waits for the first prompt before it is used (no start-up race, DEVIATIONS
//! #17). The shell owns its process group; dropping the session hangs it up and kills the group.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Opening line of the prompt block.
pub const PS1_START: &str = "###PS1JSON###";
/// Closing line of the prompt block.
pub const PS1_END: &str = "###PS1END###";
/// How long a new shell may take to print its first prompt.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Raw bytes kept at most (older output is dropped).
const MAX_BUFFER_BYTES: usize = 32 * 1024 * 1024;
/// PTY size: wide enough that nothing wraps.
const PTY_ROWS: u16 = 1000;
const PTY_COLS: u16 = 1000;

/// The prompt: one field per line (robust against quotes in paths).
/// `#` is written as the prompt escape `\043`, so the echo of the set-up line itself never looks
/// like a prompt block. Nothing in it forks: the exit code and the Python interpreter are
/// gathered by [`PROMPT_FN`] (run as `PROMPT_COMMAND` before the prompt is shown), the working
/// directory is `$PWD`.
const PS1: &str = r#"\n\043\043\043PS1JSON\043\043\043\n${__oh_ec}\n$!\n\u\n\h\n${PWD}\n${__oh_py}\n\043\043\043PS1END\043\043\043\n"#;

/// Keeps `$?` of the command that just ended and looks `python` up in `PATH` (`hash` searches
/// `PATH` again each time and records the result in `BASH_CMDS`, without a subshell).
const PROMPT_FN: &str = "__oh_prompt() { __oh_ec=$?; __oh_py=; if hash python 2>/dev/null; then __oh_py=${BASH_CMDS[python]}; fi; }";

/// What a prompt block reports.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptInfo {
    pub exit_code: i64,
    pub pid: i64,
    pub username: Option<String>,
    pub hostname: Option<String>,
    pub working_dir: Option<String>,
    pub py_interpreter_path: Option<String>,
}

/// Output shared between the reader task and the session.
#[derive(Debug, Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// Absolute offset of `bytes[0]` (bytes before it were dropped).
    base: usize,
    /// Last time bytes arrived.
    changed: Option<Instant>,
    eof: bool,
}

/// A running shell.
pub struct BashSession {
    pid: i32,
    child: tokio::process::Child,
    writer: pty_process::OwnedWritePty,
    buffer: Arc<Mutex<Buffer>>,
    notify: Arc<Notify>,
    reader: tokio::task::JoinHandle<()>,
    /// Absolute offset just after the last prompt block seen.
    pub prompt_end: usize,
    /// The last prompt's information.
    pub last_prompt: Option<PromptInfo>,
}

/// Removes ANSI escape sequences and applies carriage returns the way a screen would (the text
/// after the last `\r` of a line wins), normalising `\r\n` to `\n`.
pub fn clean(raw: &str) -> String {
    let mut no_ansi = String::with_capacity(raw.len());
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\u{1b}' {
            no_ansi.push(c);
            continue;
        }
        match it.peek() {
            Some('[') => {
                it.next();
                while let Some(&n) = it.peek() {
                    it.next();
                    if ('@'..='~').contains(&n) {
                        break;
                    }
                }
            }
            Some(']') => {
                it.next();
                while let Some(n) = it.next() {
                    if n == '\u{07}' {
                        break;
                    }
                    if n == '\u{1b}' && it.peek() == Some(&'\\') {
                        it.next();
                        break;
                    }
                }
            }
            Some(_) => {
                it.next();
            }
            None => {}
        }
    }
    let normalized = no_ansi.replace("\r\n", "\n");
    normalized
        .split('\n')
        .map(|line| {
            let line = line.trim_end_matches('\r');
            match line.rfind('\r') {
                Some(p) => &line[p + 1..],
                None => line,
            }
        })
        .map(|l| l.replace(['\u{07}', '\u{08}'], ""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Finds the first complete prompt block in `bytes`: (offset of the newline printed before the
/// block, offset just after the block, info).
pub fn find_prompt(bytes: &[u8]) -> Option<(usize, usize, PromptInfo)> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let start = find(bytes, PS1_START.as_bytes())?;
    let rel_end = find(&bytes[start..], PS1_END.as_bytes())?;
    let mut end = start + rel_end + PS1_END.len();
    if bytes[end..].starts_with(b"\r\n") {
        end += 2;
    } else if bytes[end..].starts_with(b"\n") {
        end += 1;
    }
    let body =
        String::from_utf8_lossy(&bytes[start + PS1_START.len()..start + rel_end]).to_string();
    let fields: Vec<&str> = body
        .trim_matches(['\r', '\n'])
        .split('\n')
        .map(|f| f.trim_end_matches('\r'))
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty())
    };
    let info = PromptInfo {
        exit_code: field(0).and_then(|s| s.trim().parse().ok()).unwrap_or(-1),
        pid: field(1).and_then(|s| s.trim().parse().ok()).unwrap_or(-1),
        username: field(2),
        hostname: field(3),
        working_dir: field(4),
        py_interpreter_path: field(5),
    };
    // The block starts on its own line: the newline the prompt printed before it belongs to it.
    let block_start = if bytes[..start].ends_with(b"\r\n") {
        start - 2
    } else if bytes[..start].ends_with(b"\n") {
        start - 1
    } else {
        start
    };
    Some((block_start, end, info))
}

impl BashSession {
    /// Starts bash in `cwd` and waits for its first prompt.
    pub async fn start(cwd: &Path) -> std::io::Result<BashSession> {
        let (pty, pts) = pty_process::open().map_err(std::io::Error::other)?;
        pty.resize(pty_process::Size::new(PTY_ROWS, PTY_COLS))
            .map_err(std::io::Error::other)?;
        let dir = if cwd.is_dir() {
            cwd.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let mut cmd = pty_process::Command::new("bash")
            .args(["--noediting", "--norc", "--noprofile", "-i"])
            .current_dir(&dir)
            .env("PS1", "")
            .env("PS2", "")
            .env_remove("PROMPT_COMMAND");
        if std::env::var_os("TERM").is_none() {
            cmd = cmd.env("TERM", "xterm");
        }
        let child = cmd.spawn(pts).map_err(std::io::Error::other)?;
        let pid = child.id().map(|p| p as i32).unwrap_or(-1);
        let (mut read, writer) = pty.into_split();
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let notify = Arc::new(Notify::new());
        let (buf2, notify2) = (buffer.clone(), notify.clone());
        let reader = tokio::spawn(async move {
            let mut chunk = vec![0u8; 65536];
            loop {
                let n = match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                if let Ok(mut b) = buf2.lock() {
                    if n == 0 {
                        b.eof = true;
                    } else {
                        b.bytes.extend_from_slice(&chunk[..n]);
                        b.changed = Some(Instant::now());
                        if b.bytes.len() > MAX_BUFFER_BYTES {
                            let drop_n = b.bytes.len() - MAX_BUFFER_BYTES / 2;
                            b.bytes.drain(..drop_n);
                            b.base += drop_n;
                        }
                    }
                }
                notify2.notify_waiters();
                if n == 0 {
                    return;
                }
            }
        });
        let mut session = BashSession {
            pid,
            child,
            writer,
            buffer,
            notify,
            reader,
            prompt_end: 0,
            last_prompt: None,
        };
        let setup = format!(
            "stty -echo -onlcr 2>/dev/null; set +H; {PROMPT_FN}; PROMPT_COMMAND=__oh_prompt; export PS2=''; PS1='{PS1}'\n"
        );
        session.write(setup.as_bytes()).await?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some((_, end, info)) = session.prompt_after(0) {
                session.prompt_end = end;
                session.last_prompt = Some(info);
                return Ok(session);
            }
            let eof = session.buffer.lock().map(|b| b.eof).unwrap_or(true);
            if eof || Instant::now() > deadline {
                return Err(std::io::Error::other("bash did not start"));
            }
            session.wait_output(Duration::from_millis(100)).await;
        }
    }

    /// The shell's process id (its process group id too).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the shell has exited.
    pub fn is_dead(&mut self) -> bool {
        let eof = self.buffer.lock().map(|b| b.eof).unwrap_or(true);
        eof || matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Writes raw bytes to the terminal.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// Appends text to the captured output as if the terminal had echoed it (`^C`).
    pub fn inject(&self, text: &str) {
        if let Ok(mut b) = self.buffer.lock() {
            b.bytes.extend_from_slice(text.as_bytes());
            b.changed = Some(Instant::now());
        }
    }

    /// Absolute offset of the end of the captured output.
    pub fn end_offset(&self) -> usize {
        self.buffer
            .lock()
            .map(|b| b.base + b.bytes.len())
            .unwrap_or(0)
    }

    /// Last time output arrived.
    pub fn last_change(&self) -> Option<Instant> {
        self.buffer.lock().ok().and_then(|b| b.changed)
    }

    /// The first complete prompt block at or after absolute offset `from`, with absolute offsets.
    pub fn prompt_after(&self, from: usize) -> Option<(usize, usize, PromptInfo)> {
        let b = self.buffer.lock().ok()?;
        let rel = from.max(b.base) - b.base;
        let (s, e, info) = find_prompt(b.bytes.get(rel..)?)?;
        Some((b.base + rel + s, b.base + rel + e, info))
    }

    /// Cleaned text of the output between absolute offsets `from` and `to` (`None` = the end,
    /// holding back an incomplete UTF-8 sequence), and the absolute offset actually reached.
    pub fn text_between(&self, from: usize, to: Option<usize>) -> (String, usize) {
        let Ok(b) = self.buffer.lock() else {
            return (String::new(), from);
        };
        let start = from.max(b.base) - b.base;
        let mut stop = to
            .map(|t| t.max(b.base) - b.base)
            .unwrap_or(b.bytes.len())
            .min(b.bytes.len());
        if to.is_none() {
            // Hold back a trailing partial UTF-8 sequence.
            for back in 1..=3.min(stop.saturating_sub(start)) {
                let byte = b.bytes[stop - back];
                if byte & 0xC0 == 0xC0 {
                    let need = if byte >= 0xF0 {
                        4
                    } else if byte >= 0xE0 {
                        3
                    } else {
                        2
                    };
                    if back < need {
                        stop -= back;
                    }
                    break;
                }
                if byte & 0x80 == 0 {
                    break;
                }
            }
        }
        let stop = stop.max(start);
        (
            clean(&String::from_utf8_lossy(&b.bytes[start..stop])),
            b.base + stop,
        )
    }

    /// Waits until new output arrives or `max` elapses.
    pub async fn wait_output(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.notify.notified()).await;
    }

    /// Hangs up the shell and kills its process group.
    pub fn kill(&mut self) {
        kill_session(self.pid);
        let _ = self.child.start_kill();
        self.reader.abort();
    }
}

/// Kills every process of the terminal session led by `sid` (the shell and all its jobs, whatever
/// their process group): a hang-up first, then SIGKILL. Processes that left the session (daemons)
/// are not touched.
pub fn kill_session(sid: i32) {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    if sid <= 1 {
        return;
    }
    let _ = kill(Pid::from_raw(sid), Signal::SIGHUP);
    let members: Vec<i32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|stat| {
                            // fields after the command name (which may contain spaces): state ppid pgrp session
                            let rest = &stat[stat.rfind(')')? + 2..];
                            rest.split(' ').nth(3)?.parse::<i32>().ok()
                        })
                        .is_some_and(|s| s == sid)
                })
                .collect()
        })
        .unwrap_or_default();
    for pid in members {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = killpg(Pid::from_raw(sid), Signal::SIGKILL);
}

impl Drop for BashSession {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_terminal_noise() {
        assert_eq!(clean("a\r\nb\r\n"), "a\nb\n");
        assert_eq!(clean("\u{1b}[01;34mdir\u{1b}[0m x"), "dir x");
        assert_eq!(clean("10%\r50%\r100%\ndone"), "100%\ndone");
        assert_eq!(clean("\u{1b}]0;title\u{07}ok"), "ok");
    }

    #[test]
    fn parses_prompt_blocks() {
        let text = "out\n\n###PS1JSON###\n0\n\nroot\nvm\n/tmp\n/usr/bin/python\n###PS1END###\nrest";
        let (start, end, info) = find_prompt(text.as_bytes()).unwrap();
        assert_eq!(&text[..start], "out\n");
        assert_eq!(&text[end..], "rest");
        assert_eq!(
            info,
            PromptInfo {
                exit_code: 0,
                pid: -1,
                username: Some("root".into()),
                hostname: Some("vm".into()),
                working_dir: Some("/tmp".into()),
                py_interpreter_path: Some("/usr/bin/python".into())
            }
        );
        assert!(find_prompt(b"out\n###PS1JSON###\n0\n").is_none());
    }
}
