//! Built-in tools: the registry (`GET /api/tools/` names, agent tool resolution), each tool's
//! LLM definition and argument validation ([`spec`]), and per-conversation execution
//! ([`ToolRuntime`]): `terminal` ([`terminal`]), `file_editor` ([`file_editor`]), `task_tracker`
//! ([`task_tracker`]), `finish`, `think`. Actions and observations are JSON values in the wire
//! shapes of EVENTS.md §4.3/§4.4.
//!
//! Execution never blocks the caller's thread: the terminal is async PTY I/O, file work runs on
//! tokio's blocking pool. Failures inside a tool become error observations (DEVIATIONS #16), so
//! [`ToolRuntime::execute`] always returns an observation.

pub mod file_editor;
pub mod spec;
pub mod task_tracker;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use self::file_editor::FileEditor;
use self::task_tracker::TaskTracker;
use self::terminal::Terminal;

/// Tool names registered in the server, in the order `GET /api/tools/` lists them (API.md §7).
/// `finish` and `think` are built into every agent and not listed.
pub const REGISTERED_TOOLS: &[&str] = &[
    "file_editor",
    "task_tracker",
    "terminal",
    "browser_tool_set",
    "glob",
    "grep",
    "planning_file_editor",
];

/// The tools this server can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolKind {
    Terminal,
    FileEditor,
    TaskTracker,
    Finish,
    Think,
}

impl ToolKind {
    pub fn name(self) -> &'static str {
        match self {
            ToolKind::Terminal => "terminal",
            ToolKind::FileEditor => "file_editor",
            ToolKind::TaskTracker => "task_tracker",
            ToolKind::Finish => "finish",
            ToolKind::Think => "think",
        }
    }

    pub fn from_name(name: &str) -> Option<ToolKind> {
        match name {
            "terminal" => Some(ToolKind::Terminal),
            "file_editor" => Some(ToolKind::FileEditor),
            "task_tracker" => Some(ToolKind::TaskTracker),
            "finish" => Some(ToolKind::Finish),
            "think" => Some(ToolKind::Think),
            _ => None,
        }
    }

    /// The action `kind` this tool takes.
    pub fn action_kind(self) -> &'static str {
        match self {
            ToolKind::Terminal => "TerminalAction",
            ToolKind::FileEditor => "FileEditorAction",
            ToolKind::TaskTracker => "TaskTrackerAction",
            ToolKind::Finish => "FinishAction",
            ToolKind::Think => "ThinkAction",
        }
    }

    /// Read-only tools get no `security_risk` parameter and never need confirmation alone.
    pub fn is_read_only(self) -> bool {
        match self {
            ToolKind::Finish | ToolKind::Think => true,
            ToolKind::Terminal | ToolKind::FileEditor | ToolKind::TaskTracker => false,
        }
    }

    /// The tool that takes an action of kind `action_kind`.
    pub fn for_action(action_kind: &str) -> Option<ToolKind> {
        [
            ToolKind::Terminal,
            ToolKind::FileEditor,
            ToolKind::TaskTracker,
            ToolKind::Finish,
            ToolKind::Think,
        ]
        .into_iter()
        .find(|k| k.action_kind() == action_kind)
    }
}

/// The ordered tools of one agent: its `tools` specs, then `finish` and `think`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSet {
    kinds: Vec<ToolKind>,
    /// `agent.tools[].params` of the terminal (e.g. `no_change_timeout_seconds`).
    pub terminal_params: serde_json::Map<String, Value>,
}

impl ToolSet {
    /// Resolves `agent.tools` (`[{"name", "params"}]`) and `filter_tools_regex` (agent-behaviour
    /// §2.1 step 2). Unknown or unavailable names and duplicates are errors.
    pub fn from_agent(tools: &Value, filter_tools_regex: Option<&str>) -> Result<ToolSet, String> {
        let mut kinds = Vec::new();
        let mut terminal_params = serde_json::Map::new();
        for spec in tools.as_array().map(Vec::as_slice).unwrap_or_default() {
            let name = spec.get("name").and_then(Value::as_str).unwrap_or_default();
            let kind = match ToolKind::from_name(name) {
                Some(k) if !k.is_read_only() => k,
                _ if REGISTERED_TOOLS.contains(&name) => {
                    return Err(format!("Tool '{name}' is not available in this server"));
                }
                _ => {
                    return Err(format!(
                        "ToolDefinition '{name}' is not registered. Available tools: {}",
                        REGISTERED_TOOLS.join(", ")
                    ));
                }
            };
            if kinds.contains(&kind) {
                return Err(format!("Duplicate tool name: {name}"));
            }
            if kind == ToolKind::Terminal
                && let Some(Value::Object(p)) = spec.get("params")
            {
                terminal_params = p.clone();
            }
            kinds.push(kind);
        }
        if let Some(re) = filter_tools_regex.filter(|r| !r.is_empty()) {
            let re = regex::Regex::new(&format!("^(?:{re})"))
                .map_err(|e| format!("invalid filter_tools_regex: {e}"))?;
            kinds.retain(|k| re.is_match(k.name()));
        }
        kinds.push(ToolKind::Finish);
        kinds.push(ToolKind::Think);
        Ok(ToolSet {
            kinds,
            terminal_params,
        })
    }

    pub fn kinds(&self) -> &[ToolKind] {
        &self.kinds
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| k.name()).collect()
    }

    /// The tool called `name`, if the agent has it.
    pub fn get(&self, name: &str) -> Option<ToolKind> {
        self.kinds.iter().copied().find(|k| k.name() == name)
    }

    /// The `tools` array for the LLM and the SystemPromptEvent.
    pub fn definitions(&self, working_dir: &str, vision: bool) -> Vec<Value> {
        self.kinds
            .iter()
            .map(|k| spec::definition(*k, working_dir, vision))
            .collect()
    }
}

/// A secret as the conversation's secret registry holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    Static(String),
    Lookup {
        url: String,
        headers: Vec<(String, String)>,
    },
}

impl SecretSource {
    /// Reads `{"kind":"StaticSecret","value"}` / `{"kind":"LookupSecret","url","headers"}` (a plain
    /// string is a static value). `None` for a source without a usable value.
    pub fn from_json(v: &Value) -> Option<SecretSource> {
        match v {
            Value::String(s) => Some(SecretSource::Static(s.clone())),
            Value::Object(o) if o.get("kind").and_then(Value::as_str) == Some("LookupSecret") => {
                Some(SecretSource::Lookup {
                    url: o.get("url")?.as_str()?.to_string(),
                    headers: o
                        .get("headers")
                        .and_then(Value::as_object)
                        .map(|h| {
                            h.iter()
                                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            }
            Value::Object(o) => o
                .get("value")
                .and_then(Value::as_str)
                .map(|s| SecretSource::Static(s.to_string())),
            _ => None,
        }
    }
}

/// The conversation's secrets, shared with the terminal (updated by the owner when secrets
/// change): `(NAME, source)` pairs.
pub type Secrets = Arc<RwLock<Vec<(String, SecretSource)>>>;

/// Where a conversation's tools work.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The workspace `working_dir`: the terminal starts there, relative-path hints point there.
    pub working_dir: PathBuf,
    /// `persistence_dir` of the conversation (TASKS.json, observations/); `None` = nothing saved.
    pub conversation_dir: Option<PathBuf>,
}

/// Per-conversation tool state and execution.
pub struct ToolRuntime {
    pub terminal: Terminal,
    editor: Arc<FileEditor>,
    tasks: Arc<TaskTracker>,
    secrets: Secrets,
}

impl ToolRuntime {
    /// Creates the runtime (loads TASKS.json; the terminal starts on first use).
    pub fn new(cfg: &RuntimeConfig, tools: &ToolSet) -> ToolRuntime {
        let no_change = tools
            .terminal_params
            .get("no_change_timeout_seconds")
            .and_then(Value::as_f64)
            .filter(|s| *s > 0.0);
        let secrets: Secrets = Arc::new(RwLock::new(Vec::new()));
        ToolRuntime {
            terminal: Terminal::new(
                &cfg.working_dir,
                cfg.conversation_dir.as_deref(),
                no_change,
                secrets.clone(),
            ),
            editor: Arc::new(FileEditor::new(&cfg.working_dir)),
            tasks: Arc::new(TaskTracker::load(cfg.conversation_dir.as_deref())),
            secrets,
        }
    }

    /// Replaces the secrets the terminal may export (`secret_registry.secret_sources`).
    pub fn set_secrets(&self, secret_sources: &Value) {
        let list: Vec<(String, SecretSource)> = secret_sources
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| SecretSource::from_json(v).map(|s| (k.clone(), s)))
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(mut s) = self.secrets.write() {
            *s = list;
        }
    }

    /// Executes an action (the `action` object of an ActionEvent) and returns the observation.
    pub async fn execute(&self, action: &Value) -> Value {
        let kind = action
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match ToolKind::for_action(kind) {
            Some(ToolKind::Terminal) => self.terminal.execute(action).await,
            Some(ToolKind::FileEditor) => {
                let (editor, a) = (self.editor.clone(), action.clone());
                tokio::task::spawn_blocking(move || editor.run(&a))
                    .await
                    .unwrap_or_else(|e| {
                        error_observation(action, &format!("file_editor failed: {e}"))
                    })
            }
            Some(ToolKind::TaskTracker) => {
                let (tasks, a) = (self.tasks.clone(), action.clone());
                tokio::task::spawn_blocking(move || tasks.run(&a))
                    .await
                    .unwrap_or_else(|e| {
                        error_observation(action, &format!("task_tracker failed: {e}"))
                    })
            }
            Some(ToolKind::Finish) => {
                let message = action
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                json!({"kind": "FinishObservation", "content": [text_part(message)], "is_error": false})
            }
            Some(ToolKind::Think) => {
                json!({"kind": "ThinkObservation", "content": [text_part("Your thought has been logged.")], "is_error": false})
            }
            None => {
                json!({"kind": "AgentErrorObservation", "content": [text_part(&format!("No executor for action kind '{kind}'"))], "is_error": true})
            }
        }
    }

    /// Stops the terminal (kills the shell and its jobs).
    pub async fn close(&self) {
        self.terminal.close().await;
    }
}

/// An error observation of the tool that takes `action` (its own observation kind and fields),
/// for results the tool itself could not produce: an executor failure (DEVIATIONS #16) or a
/// call interrupted by a server restart.
pub fn error_observation(action: &Value, text: &str) -> Value {
    let kind = action
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let command = action.get("command").cloned().unwrap_or(Value::Null);
    match ToolKind::for_action(kind) {
        Some(ToolKind::Terminal) => {
            json!({"kind": "TerminalObservation", "content": [text_part(text)], "is_error": true,
                "command": command.as_str().unwrap_or_default(), "exit_code": null, "timeout": false,
                "metadata": {"exit_code": -1, "pid": -1, "username": null, "hostname": null, "working_dir": null,
                    "py_interpreter_path": null, "prefix": "", "suffix": ""},
                "full_output_save_dir": null})
        }
        Some(ToolKind::FileEditor) => {
            json!({"kind": "FileEditorObservation", "content": [text_part(text)], "is_error": true,
                "command": if command.is_null() { json!("view") } else { command },
                "path": null, "prev_exist": true, "old_content": null, "new_content": null})
        }
        Some(ToolKind::TaskTracker) => {
            json!({"kind": "TaskTrackerObservation", "content": [text_part(text)], "is_error": true,
                "command": if command.is_null() { json!("view") } else { command }, "task_list": []})
        }
        Some(ToolKind::Finish) => {
            json!({"kind": "FinishObservation", "content": [text_part(text)], "is_error": true})
        }
        Some(ToolKind::Think) => {
            json!({"kind": "ThinkObservation", "content": [text_part(text)], "is_error": true})
        }
        None => {
            json!({"kind": "AgentErrorObservation", "content": [text_part(text)], "is_error": true})
        }
    }
}

/// A text content part as events carry it.
pub fn text_part(text: &str) -> Value {
    json!({"cache_prompt": false, "type": "text", "text": text})
}

/// An image content part as events carry it.
pub fn image_part(url: &str) -> Value {
    json!({"cache_prompt": false, "type": "image", "image_urls": [url]})
}

/// If `content` is longer than `limit` characters, the head and tail to keep around `notice` so
/// that head + notice + tail is exactly `limit` characters (head gets the smaller half).
pub fn truncate_middle(content: &str, limit: usize, notice: &str) -> Option<(String, String)> {
    let total = content.chars().count();
    if total <= limit {
        return None;
    }
    let room = limit.saturating_sub(notice.chars().count());
    let head_n = room / 2;
    let tail_n = room - head_n;
    let head: String = content.chars().take(head_n).collect();
    let tail: String = content.chars().skip(total - tail_n).collect();
    Some((head, tail))
}

/// `<dir>/observations` of a conversation.
pub fn observations_dir(conversation_dir: &Path) -> PathBuf {
    conversation_dir.join("observations")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_agent_tools_in_order() {
        let set = ToolSet::from_agent(
            &json!([{"name": "terminal"}, {"name": "file_editor"}, {"name": "task_tracker"}]),
            None,
        )
        .unwrap();
        assert_eq!(
            set.names(),
            ["terminal", "file_editor", "task_tracker", "finish", "think"]
        );
        let set = ToolSet::from_agent(&json!([{"name": "file_editor"}, {"name": "terminal", "params": {"no_change_timeout_seconds": 3}}]), None).unwrap();
        assert_eq!(set.names(), ["file_editor", "terminal", "finish", "think"]);
        assert_eq!(set.terminal_params["no_change_timeout_seconds"], json!(3));
        let set = ToolSet::from_agent(
            &json!([{"name": "terminal"}, {"name": "file_editor"}]),
            Some("term.*"),
        )
        .unwrap();
        assert_eq!(set.names(), ["terminal", "finish", "think"]);
        assert!(
            ToolSet::from_agent(&json!([{"name": "terminal"}, {"name": "terminal"}]), None)
                .is_err()
        );
        assert!(ToolSet::from_agent(&json!([{"name": "nope"}]), None).is_err());
        assert!(ToolSet::from_agent(&json!([{"name": "glob"}]), None).is_err());
        let defs = ToolSet::from_agent(&json!([]), None)
            .unwrap()
            .definitions("/w", false);
        assert_eq!(defs.len(), 2);
    }

    #[test]
    fn truncation_keeps_exact_length() {
        assert_eq!(truncate_middle("short", 10, "<n>"), None);
        let (h, t) = truncate_middle(&"a".repeat(100), 20, "<cut>").unwrap();
        assert_eq!((h.len(), t.len()), (7, 8));
    }

    #[test]
    fn secret_sources_parse() {
        assert_eq!(
            SecretSource::from_json(&json!({"kind": "StaticSecret", "value": "v"})),
            Some(SecretSource::Static("v".into()))
        );
        assert_eq!(
            SecretSource::from_json(
                &json!({"kind": "LookupSecret", "url": "http://x", "headers": {"A": "b"}})
            ),
            Some(SecretSource::Lookup {
                url: "http://x".into(),
                headers: vec![("A".into(), "b".into())]
            })
        );
        assert_eq!(
            SecretSource::from_json(&json!({"kind": "StaticSecret", "value": null})),
            None
        );
    }

    #[tokio::test]
    async fn finish_and_think_observations() {
        let dir = tempfile::tempdir().unwrap();
        let set = ToolSet::from_agent(&json!([]), None).unwrap();
        let rt = ToolRuntime::new(
            &RuntimeConfig {
                working_dir: dir.path().into(),
                conversation_dir: None,
            },
            &set,
        );
        assert_eq!(
            rt.execute(&json!({"kind": "FinishAction", "message": "All done."}))
                .await,
            json!({"kind": "FinishObservation", "content": [{"cache_prompt": false, "type": "text", "text": "All done."}], "is_error": false})
        );
        assert_eq!(
            rt.execute(&json!({"kind": "ThinkAction", "thought": "t"}))
                .await["content"][0]["text"],
            "Your thought has been logged."
        );
    }
}
