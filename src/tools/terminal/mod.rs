//! The `terminal` tool (agent-behaviour §4.1): one persistent bash per conversation
//! ([`session::BashSession`]), completion detection through the prompt block, the no-output
//! (soft) and hard timeouts, input to a running program, reset, secrets export and masking
//! (§7.2–7.3), and the observation texts the LLM sees ([`llm_text`]), clipped at 30,000 characters
//! with the full text saved under `<conversation_dir>/observations/`.

pub mod session;
pub mod split;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use self::session::{BashSession, PromptInfo};
use super::{SecretSource, Secrets, observations_dir, text_part, truncate_middle};
use crate::llm::pyjson::python_float;

/// Seconds without new output after which a command returns (soft timeout).
pub const DEFAULT_NO_CHANGE_TIMEOUT_SECS: f64 = 30.0;
/// How often a running command is checked, at most (new output wakes the check earlier).
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Longest terminal text sent to the LLM.
pub const MAX_LLM_TEXT_CHARS: usize = 30_000;
/// Lines of one command's output kept (like the reference's terminal history).
const HISTORY_LINES: usize = 10_000;
/// Timeout of a LookupSecret fetch.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Placeholder for secret values in outputs.
const SECRET_MASK: &str = "<secret-hidden>";

const RESET_TEXT: &str = "Terminal session has been reset. All previous environment variables and session state have been cleared.";
const CONTINUE_PREFIX: &str = "[Below is the output of the previous command.]\n";
const TIMEOUT_HINT: &str = "You may wait longer to see additional output by sending empty command '', send other commands to interact with the current process, send keys (\"C-c\", \"C-z\", \"C-d\") to interrupt/kill the previous command before sending your new command, or use the timeout parameter in terminal for future commands.";

/// A command that was still running when its last observation was returned.
#[derive(Debug)]
struct Running {
    /// Absolute output offset up to which output was already shown.
    observed: usize,
}

struct State {
    session: Option<BashSession>,
    running: Option<Running>,
    /// Secret values exported so far (masked in every later output).
    exported: Vec<String>,
}

/// How waiting for a command ended.
enum Wait {
    Completed(String, PromptInfo),
    /// Output so far and the offset it reaches.
    SoftTimeout(String, usize),
    HardTimeout(String, usize),
}

#[derive(Clone, Copy)]
enum WaitKind {
    Soft,
    Hard,
}

/// The terminal of one conversation.
pub struct Terminal {
    working_dir: PathBuf,
    save_dir: Option<PathBuf>,
    no_change_timeout: f64,
    secrets: Secrets,
    /// Pid of the current shell (session id), readable without the state lock so `close` can
    /// interrupt a running command.
    shell_pid: std::sync::atomic::AtomicI32,
    state: tokio::sync::Mutex<State>,
}

/// The metadata of an observation without a finished command.
fn blank_metadata() -> Value {
    json!({"exit_code": -1, "pid": -1, "username": null, "hostname": null, "working_dir": null,
        "py_interpreter_path": null, "prefix": "", "suffix": ""})
}

fn metadata_from(info: &PromptInfo, prefix: &str, suffix: &str) -> Value {
    json!({"exit_code": info.exit_code, "pid": info.pid, "username": info.username, "hostname": info.hostname,
        "working_dir": info.working_dir, "py_interpreter_path": info.py_interpreter_path, "prefix": prefix, "suffix": suffix})
}

/// Keeps the last [`HISTORY_LINES`] lines; returns the text and the truncation notice prefix.
fn limit_history(text: String) -> (String, String) {
    let n = text.matches('\n').count() + 1;
    if n <= HISTORY_LINES {
        return (text, String::new());
    }
    let skip = n - HISTORY_LINES;
    let kept = text.split('\n').skip(skip).collect::<Vec<_>>().join("\n");
    (
        kept,
        format!(
            "[Previous command outputs are truncated. Showing the last {HISTORY_LINES} lines of the output below.]\n"
        ),
    )
}

/// The control key for `C-<letter>` inputs.
fn control_key(command: &str) -> Option<(u8, char)> {
    let mut chars = command.chars();
    match (chars.next(), chars.next(), chars.next(), chars.next()) {
        (Some('C'), Some('-'), Some(l), None) if l.is_ascii_alphabetic() => Some((
            (l.to_ascii_lowercase() as u8) & 0x1f,
            l.to_ascii_uppercase(),
        )),
        _ => None,
    }
}

/// `'…'` shell quoting.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Seconds as the reference prints its no-change timeout (an int when whole).
fn seconds(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{}", s as i64)
    } else {
        python_float(s)
    }
}

/// The observation text as the LLM sees it, before clipping: prefix + output + suffix, then the
/// working directory, interpreter and exit-code lines.
pub fn full_llm_text(observation: &Value) -> String {
    let md = observation
        .get("metadata")
        .cloned()
        .unwrap_or_else(blank_metadata);
    let s = |k: &str| {
        md.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let output: String = observation
        .get("content")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("")
        })
        .unwrap_or_default();
    let mut text = format!("{}{}{}", s("prefix"), output, s("suffix"));
    if let Some(wd) = md.get("working_dir").and_then(Value::as_str) {
        text.push_str(&format!("\n[Current working directory: {wd}]"));
    }
    if let Some(py) = md.get("py_interpreter_path").and_then(Value::as_str) {
        text.push_str(&format!("\n[Python interpreter: {py}]"));
    }
    let code = md.get("exit_code").and_then(Value::as_i64).unwrap_or(-1);
    if code != -1 {
        text.push_str(&format!("\n[Command finished with exit code {code}]"));
    }
    text
}

/// Clips a text over [`MAX_LLM_TEXT_CHARS`]; returns the clipped text and, when clipped and a
/// save directory is known, the file the full text belongs in.
pub fn clip_llm_text(full: &str, save_dir: Option<&str>) -> (String, Option<PathBuf>) {
    if full.chars().count() <= MAX_LLM_TEXT_CHARS {
        return (full.to_string(), None);
    }
    let file = save_dir.map(|d| {
        let digest = Sha256::digest(full.as_bytes());
        let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        Path::new(d).join(format!("bash_output_{hex}.txt"))
    });
    let notice_for = |line: usize| {
        match &file {
        Some(f) => format!(
            "<response clipped><NOTE>Due to the max output limit, only part of the full response has been shown to you. The complete output has been saved to {} - you can use other tools to view the full content (truncated part starts around line {line}).</NOTE>",
            f.display()
        ),
        None => "<response clipped><NOTE>Due to the max output limit, only part of the full response has been shown to you.</NOTE>".to_string(),
    }
    };
    let mut line = 0;
    let mut parts = (String::new(), String::new());
    for _ in 0..3 {
        let notice = notice_for(line);
        parts = truncate_middle(full, MAX_LLM_TEXT_CHARS, &notice).unwrap_or_default();
        let next = parts.0.matches('\n').count() + 1;
        if next == line {
            break;
        }
        line = next;
    }
    let notice = notice_for(line);
    let (head, tail) = truncate_middle(full, MAX_LLM_TEXT_CHARS, &notice).unwrap_or(parts);
    (format!("{head}{notice}{tail}"), file)
}

/// The terminal observation's LLM text (clipped).
pub fn llm_text(observation: &Value) -> String {
    let dir = observation
        .get("full_output_save_dir")
        .and_then(Value::as_str);
    clip_llm_text(&full_llm_text(observation), dir).0
}

impl Terminal {
    pub fn new(
        working_dir: &Path,
        conversation_dir: Option<&Path>,
        no_change_timeout: Option<f64>,
        secrets: Secrets,
    ) -> Terminal {
        Terminal {
            working_dir: working_dir.to_path_buf(),
            save_dir: conversation_dir.map(observations_dir),
            no_change_timeout: no_change_timeout.unwrap_or(DEFAULT_NO_CHANGE_TIMEOUT_SECS),
            secrets,
            shell_pid: std::sync::atomic::AtomicI32::new(0),
            state: tokio::sync::Mutex::new(State {
                session: None,
                running: None,
                exported: Vec::new(),
            }),
        }
    }

    /// Kills the shell and its jobs (also interrupts a command that is running right now).
    pub async fn close(&self) {
        session::kill_session(self.shell_pid.swap(0, std::sync::atomic::Ordering::SeqCst));
        let mut st = self.state.lock().await;
        if let Some(mut s) = st.session.take() {
            s.kill();
        }
        st.running = None;
    }

    /// Starts the shell now (instead of on the first command).
    pub async fn start(&self) -> std::io::Result<()> {
        let mut st = self.state.lock().await;
        if st.session.is_none() {
            let session = BashSession::start(&self.working_dir).await?;
            self.shell_pid
                .store(session.pid(), std::sync::atomic::Ordering::SeqCst);
            st.session = Some(session);
        }
        Ok(())
    }

    /// The observation JSON (`TerminalObservation`).
    fn observation(
        &self,
        command: &str,
        output: String,
        is_error: bool,
        metadata: Value,
        top_exit_code: Value,
    ) -> Value {
        let save_dir = if output.is_empty() {
            None
        } else {
            self.save_dir.as_ref().map(|d| d.display().to_string())
        };
        json!({"kind": "TerminalObservation", "content": [text_part(&output)], "is_error": is_error, "command": command,
            "exit_code": top_exit_code, "timeout": false, "metadata": metadata, "full_output_save_dir": save_dir})
    }

    fn error(&self, command: &str, text: &str) -> Value {
        self.observation(
            command,
            text.to_string(),
            true,
            blank_metadata(),
            Value::Null,
        )
    }

    /// Runs a `TerminalAction`.
    pub async fn execute(&self, action: &Value) -> Value {
        let command = action
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let is_input = action
            .get("is_input")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let reset = action
            .get("reset")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let timeout = action.get("timeout").and_then(Value::as_f64);
        let obs = self.run(&command, is_input, reset, timeout).await;
        self.save_full_output(&obs).await;
        obs
    }

    /// Writes the full text of a clipped observation once.
    async fn save_full_output(&self, obs: &Value) {
        let full = full_llm_text(obs);
        let dir = obs.get("full_output_save_dir").and_then(Value::as_str);
        if let (_, Some(file)) = clip_llm_text(&full, dir)
            && !file.exists()
        {
            if let Some(parent) = file.parent() {
                let _ = tokio::fs::create_dir_all(parent).await;
            }
            if let Err(e) = tokio::fs::write(&file, full).await {
                log::warn!("could not save terminal output to {}: {e}", file.display());
            }
        }
    }

    async fn run(
        &self,
        raw_command: &str,
        is_input: bool,
        reset: bool,
        timeout: Option<f64>,
    ) -> Value {
        let mut st = self.state.lock().await;
        if reset && is_input {
            return self.error(raw_command, "Cannot use reset=True with is_input=True");
        }
        let dead = match st.session.as_mut() {
            Some(s) => s.is_dead(),
            None => true,
        };
        if reset || dead {
            if let Some(mut old) = st.session.take() {
                old.kill();
            }
            st.running = None;
            match BashSession::start(&self.working_dir).await {
                Ok(s) => {
                    self.shell_pid
                        .store(s.pid(), std::sync::atomic::Ordering::SeqCst);
                    st.session = Some(s);
                }
                Err(e) => {
                    return self.error(
                        raw_command,
                        &format!("Failed to start the terminal session: {e}"),
                    );
                }
            }
        }
        if reset {
            let cmd = raw_command.trim();
            if cmd.is_empty() {
                return self.observation(
                    "[RESET]",
                    RESET_TEXT.to_string(),
                    false,
                    blank_metadata(),
                    json!(0),
                );
            }
            let mut obs = Box::pin(self.run_in(&mut st, cmd, raw_command, false, timeout)).await;
            let out = obs["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            obs["content"] = json!([text_part(&format!("{RESET_TEXT}\n\n{out}"))]);
            obs["command"] = json!(format!("[RESET] {cmd}"));
            obs["full_output_save_dir"] =
                json!(self.save_dir.as_ref().map(|d| d.display().to_string()));
            return obs;
        }
        let cmd = raw_command.trim().to_string();
        Box::pin(self.run_in(&mut st, &cmd, raw_command, is_input, timeout)).await
    }

    /// Exports the secrets whose names occur in `cmd` (case-insensitive), invisibly.
    async fn export_secrets(&self, st: &mut State, cmd: &str) {
        let wanted: Vec<(String, SecretSource)> = {
            let Ok(all) = self.secrets.read() else { return };
            let lower = cmd.to_lowercase();
            all.iter()
                .filter(|(name, _)| lower.contains(&name.to_lowercase()))
                .cloned()
                .collect()
        };
        if wanted.is_empty() {
            return;
        }
        let mut assignments = Vec::new();
        for (name, source) in wanted {
            let value = match source {
                SecretSource::Static(v) => Some(v),
                SecretSource::Lookup { url, headers } => {
                    let client = reqwest::Client::builder()
                        .timeout(LOOKUP_TIMEOUT)
                        .build()
                        .unwrap_or_default();
                    let mut req = client.get(&url);
                    for (k, v) in &headers {
                        req = req.header(k.as_str(), v.as_str());
                    }
                    match req.send().await {
                        Ok(r) => r.text().await.ok(),
                        Err(e) => {
                            log::warn!("secret {name}: lookup failed: {e}");
                            None
                        }
                    }
                }
            };
            let Some(value) = value else { continue };
            let valid_name =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                log::warn!("secret {name}: not a valid variable name, not exported");
                continue;
            }
            assignments.push(format!("{name}={}", shell_quote(&value)));
            if !value.is_empty() && !st.exported.contains(&value) {
                st.exported.push(value);
            }
        }
        if assignments.is_empty() {
            return;
        }
        let Some(session) = st.session.as_mut() else {
            return;
        };
        let start = session.end_offset();
        if session
            .write(format!("export {}\n", assignments.join(" ")).as_bytes())
            .await
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some((_, end, info)) = session.prompt_after(start) {
                session.prompt_end = end;
                session.last_prompt = Some(info);
                return;
            }
            session.wait_output(POLL_INTERVAL).await;
        }
    }

    fn mask(&self, st: &State, text: String) -> String {
        st.exported
            .iter()
            .fold(text, |t, v| t.replace(v.as_str(), SECRET_MASK))
    }

    /// Runs `cmd` (already stripped) in the live session.
    async fn run_in(
        &self,
        st: &mut State,
        cmd: &str,
        raw_command: &str,
        is_input: bool,
        timeout: Option<f64>,
    ) -> Value {
        if !is_input && !cmd.is_empty() {
            self.export_secrets(st, cmd).await;
        }
        if st.running.is_none() {
            if cmd.is_empty() {
                return self.error(
                    raw_command,
                    "No previous running command to retrieve logs from.",
                );
            }
            if is_input {
                return self.error(raw_command, "No previous running command to interact with.");
            }
        }
        if !is_input && !cmd.is_empty() {
            let commands = split::split_commands(cmd);
            if commands.len() > 1 {
                let listed = commands
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("({}) {c}", i + 1))
                    .collect::<Vec<_>>()
                    .join("\n");
                return self.error(
                    raw_command,
                    &format!(
                        "Cannot execute multiple commands at once.\nPlease run each command separately OR chain them into a single command via && or ;\nProvided commands:\n{listed}"
                    ),
                );
            }
        }
        let Some(session) = st.session.as_mut() else {
            return self.error(raw_command, "The terminal session is not running.");
        };
        let mut control = None;
        let continuing = st.running.is_some();
        if let Some(running) = st.running.as_mut() {
            if !is_input && !cmd.is_empty() {
                let (new_output, reached) = session.text_between(running.observed, None);
                running.observed = reached;
                let suffix = format!(
                    "\n[Your command \"{cmd}\" is NOT executed. The previous command is still running - You CANNOT send new commands until the previous command is completed. By setting `is_input` to `true`, you can interact with the current process: {TIMEOUT_HINT}]"
                );
                let mut md = blank_metadata();
                md["prefix"] = json!(CONTINUE_PREFIX);
                md["suffix"] = json!(suffix);
                let text = self.mask(st, new_output.trim_end().to_string());
                return self.observation(raw_command, text, true, md, Value::Null);
            }
            if !cmd.is_empty() {
                let sent = match control_key(cmd) {
                    Some((byte, letter)) => {
                        control = Some(letter);
                        let r = session.write(&[byte]).await;
                        session.inject(&format!("^{letter}"));
                        r
                    }
                    None => session.write(format!("{cmd}\n").as_bytes()).await,
                };
                if let Err(e) = sent {
                    return self.error(
                        raw_command,
                        &format!("Failed to send input to the terminal: {e}"),
                    );
                }
            }
        } else {
            let start = session.end_offset();
            if let Err(e) = session.write(format!("{cmd}\n").as_bytes()).await {
                return self.error(
                    raw_command,
                    &format!("Failed to send the command to the terminal: {e}"),
                );
            }
            st.running = Some(Running { observed: start });
        }
        let Some(session) = st.session.as_mut() else {
            return self.error(raw_command, "The terminal session is not running.");
        };
        let observed = st.running.as_ref().map(|r| r.observed).unwrap_or(0);
        let waited = self.wait(session, observed, timeout).await;
        let waited_kind = match &waited {
            Wait::SoftTimeout(..) => WaitKind::Soft,
            Wait::HardTimeout(..) | Wait::Completed(..) => WaitKind::Hard,
        };
        match waited {
            Wait::Completed(output, info) => {
                st.running = None;
                let (output, prefix) = limit_history(output);
                let suffix = match control {
                    Some(l) => format!(
                        "\n[The command completed with exit code {}. CTRL+{l} was sent.]",
                        info.exit_code
                    ),
                    None => format!(
                        "\n[The command completed with exit code {}.]",
                        info.exit_code
                    ),
                };
                let md = metadata_from(&info, &prefix, &suffix);
                let text = self.mask(st, output);
                self.observation(raw_command, text, false, md, Value::Null)
            }
            Wait::SoftTimeout(output, reached) | Wait::HardTimeout(output, reached) => {
                let suffix = if matches!(waited_kind, WaitKind::Soft) {
                    format!(
                        "\n[The command has no new output after {} seconds. {TIMEOUT_HINT}]",
                        seconds(self.no_change_timeout)
                    )
                } else {
                    format!(
                        "\n[The command timed out after {} seconds. {TIMEOUT_HINT}]",
                        python_float(timeout.unwrap_or(0.0))
                    )
                };
                if let Some(r) = st.running.as_mut() {
                    r.observed = reached;
                }
                let mut md = blank_metadata();
                md["prefix"] = json!(if continuing { CONTINUE_PREFIX } else { "" });
                md["suffix"] = json!(suffix);
                let (output, _) = limit_history(output);
                let text = self.mask(st, output);
                self.observation(raw_command, text, false, md, Value::Null)
            }
        }
    }

    /// Waits for the prompt after `observed`, or a timeout. Marks what was shown.
    async fn wait(&self, session: &mut BashSession, observed: usize, timeout: Option<f64>) -> Wait {
        let started = Instant::now();
        let no_change = Duration::from_secs_f64(self.no_change_timeout);
        loop {
            if let Some((block_start, end, info)) = session.prompt_after(observed) {
                let (text, _) = session.text_between(observed, Some(block_start));
                session.prompt_end = end;
                session.last_prompt = Some(info.clone());
                return Wait::Completed(text.trim_end().to_string(), info);
            }
            if session.is_dead() {
                let (text, _) = session.text_between(observed, None);
                let info = PromptInfo {
                    exit_code: -1,
                    pid: -1,
                    username: None,
                    hostname: None,
                    working_dir: None,
                    py_interpreter_path: None,
                };
                return Wait::Completed(
                    format!("{}\n[The terminal session exited.]", text.trim_end()),
                    info,
                );
            }
            let quiet_since = session
                .last_change()
                .map(|c| c.max(started))
                .unwrap_or(started);
            match timeout {
                Some(t) if started.elapsed().as_secs_f64() >= t => {
                    let (text, reached) = session.text_between(observed, None);
                    return Wait::HardTimeout(text.trim_end().to_string(), reached);
                }
                None if quiet_since.elapsed() >= no_change => {
                    let (text, reached) = session.text_between(observed, None);
                    return Wait::SoftTimeout(text.trim_end().to_string(), reached);
                }
                _ => {}
            }
            session.wait_output(POLL_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, RwLock};

    fn terminal(dir: &Path, no_change: f64) -> Terminal {
        Terminal::new(
            dir,
            Some(&dir.join("conv")),
            Some(no_change),
            Arc::new(RwLock::new(Vec::new())),
        )
    }

    async fn run(t: &Terminal, v: Value) -> Value {
        let mut a = json!({"kind": "TerminalAction", "command": "", "is_input": false, "timeout": null, "reset": false});
        for (k, val) in v.as_object().unwrap() {
            a[k] = val.clone();
        }
        t.execute(&a).await
    }

    fn llm(obs: &Value) -> String {
        llm_text(obs)
    }

    #[tokio::test]
    async fn runs_commands_and_keeps_state() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().canonicalize().unwrap();
        let t = terminal(&ws, 5.0);
        let obs = run(&t, json!({"command": "echo hello-from-agent"})).await;
        assert_eq!(obs["content"][0]["text"], "hello-from-agent");
        assert_eq!(obs["exit_code"], Value::Null);
        assert_eq!(obs["timeout"], json!(false));
        assert_eq!(obs["command"], "echo hello-from-agent");
        assert_eq!(obs["metadata"]["exit_code"], json!(0));
        assert_eq!(obs["metadata"]["pid"], json!(-1));
        assert_eq!(
            obs["metadata"]["suffix"],
            "\n[The command completed with exit code 0.]"
        );
        assert_eq!(
            obs["metadata"]["working_dir"],
            json!(ws.display().to_string())
        );
        assert_eq!(
            obs["full_output_save_dir"],
            json!(ws.join("conv/observations").display().to_string())
        );
        let text = llm(&obs);
        assert!(text.starts_with(&format!("hello-from-agent\n[The command completed with exit code 0.]\n[Current working directory: {}]", ws.display())));
        assert!(text.ends_with("\n[Command finished with exit code 0]"));

        let obs = run(&t, json!({"command": "export FOO=bar"})).await;
        assert_eq!(obs["content"][0]["text"], "");
        assert_eq!(obs["full_output_save_dir"], Value::Null);
        let obs = run(
            &t,
            json!({"command": "echo $FOO; echo multi; printf 'no-newline'"}),
        )
        .await;
        assert_eq!(obs["content"][0]["text"], "bar\nmulti\nno-newline");
        let obs = run(&t, json!({"command": "cd /tmp && pwd"})).await;
        assert_eq!(obs["metadata"]["working_dir"], "/tmp");
        let obs = run(&t, json!({"command": "ls /nonexistent-dir"})).await;
        assert_eq!(obs["metadata"]["exit_code"], json!(2));
        assert!(
            obs["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("No such file or directory")
        );
        let obs = run(&t, json!({"command": "cat <<'EOF'\nheredoc line\nEOF"})).await;
        assert_eq!(obs["content"][0]["text"], "heredoc line");
        let obs = run(&t, json!({"command": "echo a && echo b; false"})).await;
        assert_eq!(obs["content"][0]["text"], "a\nb");
        assert_eq!(obs["metadata"]["exit_code"], json!(1));
        let obs = run(&t, json!({"command": "sleep 0.1 &"})).await;
        assert!(obs["metadata"]["pid"].as_i64().unwrap() > 0);
        let obs = run(&t, json!({"command": "echo 'tab\tand unicode é'"})).await;
        assert_eq!(obs["content"][0]["text"], "tab\tand unicode é");
        let obs = run(&t, json!({"command": "echo 'a\\;b' \\; done"})).await;
        assert_eq!(obs["content"][0]["text"], "a\\;b ; done");
    }

    #[tokio::test]
    async fn errors_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let t = terminal(dir.path(), 5.0);
        let obs = run(&t, json!({"command": ""})).await;
        assert_eq!(obs["is_error"], json!(true));
        assert_eq!(
            llm(&obs),
            "No previous running command to retrieve logs from."
        );
        let obs = run(&t, json!({"command": "hello", "is_input": true})).await;
        assert_eq!(llm(&obs), "No previous running command to interact with.");
        let obs = run(&t, json!({"command": "echo a\necho b"})).await;
        assert_eq!(
            llm(&obs),
            "Cannot execute multiple commands at once.\nPlease run each command separately OR chain them into a single command via && or ;\nProvided commands:\n(1) echo a\n(2) echo b"
        );
        let obs = run(&t, json!({"command": "x", "reset": true, "is_input": true})).await;
        assert_eq!(obs["is_error"], json!(true));
        run(&t, json!({"command": "export KEEP=1; cd /tmp"})).await;
        let obs = run(&t, json!({"command": "", "reset": true})).await;
        assert_eq!(obs["command"], "[RESET]");
        assert_eq!(obs["exit_code"], json!(0));
        assert_eq!(llm(&obs), RESET_TEXT);
        let obs = run(
            &t,
            json!({"command": "echo \"[$KEEP]\"; pwd", "reset": true}),
        )
        .await;
        assert_eq!(obs["command"], "[RESET] echo \"[$KEEP]\"; pwd");
        let canon = dir.path().canonicalize().unwrap();
        assert_eq!(
            obs["content"][0]["text"],
            json!(format!("{RESET_TEXT}\n\n[]\n{}", canon.display()))
        );
    }

    #[tokio::test]
    async fn timeouts_input_and_interrupts() {
        let dir = tempfile::tempdir().unwrap();
        let t = terminal(dir.path(), 1.0);
        let obs = run(&t, json!({"command": "sleep 2.5; echo done-sleeping"})).await;
        assert_eq!(
            llm(&obs),
            format!("\n[The command has no new output after 1 seconds. {TIMEOUT_HINT}]")
        );
        let obs = run(&t, json!({"command": "echo new-cmd"})).await;
        assert_eq!(obs["is_error"], json!(true));
        assert!(llm(&obs).starts_with("[Below is the output of the previous command.]\n\n[Your command \"echo new-cmd\" is NOT executed."));
        let mut obs = run(&t, json!({"command": "", "is_input": true})).await;
        if obs["metadata"]["exit_code"] == json!(-1) {
            assert!(llm(&obs).starts_with("[Below is the output of the previous command.]\n\n[The command has no new output after 1 seconds."));
            obs = run(&t, json!({"command": "", "is_input": true})).await;
        }
        assert_eq!(obs["content"][0]["text"], "done-sleeping");
        assert_eq!(obs["metadata"]["prefix"], "");

        let obs = run(&t, json!({"command": "sleep 30", "timeout": 1})).await;
        assert_eq!(
            obs["metadata"]["suffix"],
            json!(format!(
                "\n[The command timed out after 1.0 seconds. {TIMEOUT_HINT}]"
            ))
        );
        let obs = run(&t, json!({"command": "C-c", "is_input": true})).await;
        assert_eq!(obs["content"][0]["text"], "^C");
        assert_eq!(
            obs["metadata"]["suffix"],
            "\n[The command completed with exit code 130. CTRL+C was sent.]"
        );

        let obs = run(
            &t,
            json!({"command": "read -p 'name? ' NAME; echo got $NAME", "timeout": 1}),
        )
        .await;
        assert_eq!(obs["content"][0]["text"], "name?");
        let obs = run(&t, json!({"command": "alice", "is_input": true})).await;
        assert_eq!(obs["content"][0]["text"], "got alice");
        assert_eq!(obs["metadata"]["exit_code"], json!(0));
    }

    #[tokio::test]
    async fn long_output_is_clipped_and_saved() {
        let dir = tempfile::tempdir().unwrap();
        let t = terminal(dir.path(), 10.0);
        let obs = run(&t, json!({"command": "seq 1 20000"})).await;
        let full = obs["content"][0]["text"].as_str().unwrap();
        assert!(
            full.starts_with("10001\n") && full.ends_with("\n20000"),
            "history keeps the last 10000 lines"
        );
        assert!(
            obs["metadata"]["prefix"]
                .as_str()
                .unwrap()
                .starts_with("[Previous command outputs are truncated.")
        );
        let text = llm(&obs);
        assert_eq!(text.chars().count(), MAX_LLM_TEXT_CHARS);
        assert!(text.contains("<response clipped><NOTE>Due to the max output limit"));
        let saved: Vec<_> = std::fs::read_dir(dir.path().join("conv/observations"))
            .unwrap()
            .collect();
        assert_eq!(saved.len(), 1);
        let content = std::fs::read_to_string(saved[0].as_ref().unwrap().path()).unwrap();
        assert_eq!(content, full_llm_text(&obs));
    }

    #[tokio::test]
    async fn secrets_are_exported_on_demand_and_masked() {
        let dir = tempfile::tempdir().unwrap();
        let secrets: Secrets = Arc::new(RwLock::new(vec![(
            "MY_TOKEN".into(),
            SecretSource::Static("s3cr3t-value-123".into()),
        )]));
        let t = Terminal::new(dir.path(), None, Some(5.0), secrets);
        let obs = run(&t, json!({"command": "echo token=$MY_TOKEN"})).await;
        assert_eq!(obs["content"][0]["text"], "token=<secret-hidden>");
        let obs = run(
            &t,
            json!({"command": "echo literal s3cr3t-value-123 and my_token"}),
        )
        .await;
        assert_eq!(
            obs["content"][0]["text"],
            "literal <secret-hidden> and my_token"
        );
    }

    #[tokio::test]
    async fn close_kills_the_shell_and_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let t = Arc::new(terminal(dir.path(), 30.0));
        let obs = run(&t, json!({"command": "sleep 300 & echo $!"})).await;
        let job: i32 = obs["content"][0]["text"]
            .as_str()
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let t2 = t.clone();
        let running = tokio::spawn(async move { run(&t2, json!({"command": "sleep 200"})).await });
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.shell_pid.load(std::sync::atomic::Ordering::SeqCst) == 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        t.close().await;
        let obs = running.await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "close interrupted the running command"
        );
        assert!(
            obs["content"][0]["text"]
                .as_str()
                .unwrap()
                .contains("terminal session exited")
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::path::Path::new(&format!("/proc/{job}")).exists() && Instant::now() < deadline {
            let zombie = std::fs::read_to_string(format!("/proc/{job}/stat"))
                .is_ok_and(|s| s.contains(") Z"));
            if zombie {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let alive =
            std::fs::read_to_string(format!("/proc/{job}/stat")).is_ok_and(|s| !s.contains(") Z"));
        assert!(!alive, "background job {job} was killed");
    }
}
