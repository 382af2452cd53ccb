//! Tool definitions sent to the LLM (names and parameter schemas exactly as the reference's,
//! agent-behaviour §3.2; descriptions in this server's own words) and argument validation into
//! action JSON (§3.6 step 4) with pydantic-style error reports.

use serde_json::{Map, Value, json};

use crate::llm::pyjson;

use super::ToolKind;

/// Description of the `security_risk` parameter added to every tool that can change things.
const SECURITY_RISK_DESCRIPTION: &str = "How risky this action is. LOW: read-only or harmless; MEDIUM: changes files or runs code \
inside the project; HIGH: system-wide changes, deleting data, or sending data out of the environment. UNKNOWN if unsure.";

const TERMINAL_DESCRIPTION: &str = "Run a bash command in a persistent shell session.

* One session for the whole conversation: the working directory, environment variables and background jobs carry over \
between calls.
* One command per call. To run several, chain them with `&&` or `;` on one line. Multi-line input is only accepted \
when it forms a single command (for example a heredoc).
* Do not use `set -e`: a failing command would terminate the session.
* Long-running programs (servers, watchers) belong in the background: `python3 app.py > server.log 2>&1 &`.
* A command that prints nothing new for a while (about 10 seconds) returns early with exit code -1 while it keeps \
running. You can then send an empty `command` with `is_input` set to `true` to collect more output, send text to the \
running program with `is_input` set to `true`, or interrupt it with `C-c` (also `C-d`, `C-z`).
* Set `timeout` for commands you know will take long; the call then waits up to that many seconds instead.
* Very long output is shortened: the beginning and the end are kept. Redirect big outputs to a file and inspect it \
with `head`, `tail` or `grep`.
* Prefer absolute paths, so commands do not depend on a `cd` done earlier.
* Use `reset` only when the session is stuck and nothing else helps: it starts a fresh shell and loses all session state.";

const TERMINAL_COMMAND: &str = "The bash command to run. Can be empty together with `is_input` to fetch more output of the \
running command. With `is_input` it may also be `C-c`, `C-d` or `C-z` to send that control key, or text for the running program.";
const TERMINAL_IS_INPUT: &str = "If true, `command` goes to the program that is still running instead of starting a new \
command. Default: false.";
const TERMINAL_TIMEOUT: &str = "Optional hard limit in seconds. Without it the call returns once the command has printed \
nothing new for a while; with it the call waits until the command finishes or this many seconds have passed, whichever \
comes first. The command keeps running after a timeout and can be interacted with.";
const TERMINAL_RESET: &str = "If true, kill the current shell and start a new one before running `command` (if any). \
Environment variables, the working directory and running jobs are lost. Cannot be combined with `is_input`.";

const FILE_EDITOR_DESCRIPTION: &str = "View, create and edit plain-text files.

Commands:
* `view`: for a file, prints its content with line numbers (like `cat -n`), optionally only `view_range`; for a \
directory, lists files and directories up to two levels deep, hidden entries excluded.
* `create`: writes `file_text` to a new file. Refuses to overwrite an existing file.
* `str_replace`: replaces `old_str` with `new_str`. `old_str` must match the file exactly, whitespace and indentation \
included, and must occur exactly once: include enough surrounding lines to make it unique.
* `insert`: inserts `new_str` after line `insert_line` (0 inserts at the top).
* `undo_edit`: restores the file as it was before the last edit made with this tool.

Notes:
* Paths must be absolute.
* Long outputs are shortened in the middle; search with `grep -n` first and view a `view_range` instead.
* Several independent edits can be sent as several tool calls in the same message.";

const FILE_EDITOR_IMAGE_NOTE: &str =
    "\n* Viewing an image file (png, jpg, jpeg, gif, webp, bmp) shows the image itself.";

const FILE_EDITOR_COMMAND: &str =
    "The operation: `view`, `create`, `str_replace`, `insert` or `undo_edit`.";
const FILE_EDITOR_PATH: &str =
    "Absolute path of the file or directory, e.g. `/workspace/src/main.py`.";
const FILE_EDITOR_FILE_TEXT: &str = "Content of the new file (required for `create`).";
const FILE_EDITOR_OLD_STR: &str = "Exact text to replace (required for `str_replace`).";
const FILE_EDITOR_NEW_STR: &str = "Replacement text for `str_replace` (may be empty to delete `old_str`), or the text to \
add for `insert` (required there).";
const FILE_EDITOR_INSERT_LINE: &str =
    "Line number after which `new_str` is inserted (required for `insert`; 0 = top of file).";
const FILE_EDITOR_VIEW_RANGE: &str = "Optional `[start, end]` line range for `view` on a file, 1-based and inclusive; \
`[start, -1]` shows everything from `start` to the end.";

const TASK_TRACKER_DESCRIPTION: &str = "Keep a structured plan of the work as a task list, and look at it.

Use it for work with several steps or several requirements, when the user gives a list of things to do, or when new \
sub-tasks show up while working. Skip it for a single simple step, for pure questions, or for trivial edits.

Commands:
* `plan`: replace the whole list with `task_list` (always send the complete list).
* `view`: show the current list.

Each task has a `title`, optional `notes` and a `status`:
* `todo`: not started;
* `in_progress`: being worked on now; keep only one task in this state at a time;
* `done`: completely finished, verified, nothing left to do. Never mark a task done when tests fail, work is partial \
or something blocks it: keep it `in_progress` and add a task for the blocker.

Update the list as soon as a task starts or finishes instead of batching updates, and add tasks you discover on the way.";

const TASK_TRACKER_COMMAND: &str =
    "`view` shows the task list; `plan` replaces it with `task_list`.";
const TASK_LIST: &str = "The complete task list, required for `plan`.";
const TASK_TITLE: &str = "Short title of the task.";
const TASK_NOTES: &str = "Optional details about the task.";
const TASK_STATUS: &str = "Status of the task: `todo`, `in_progress` or `done`.";

const FINISH_DESCRIPTION: &str = "Signal that you are done: the task is complete, or you cannot make further progress \
without the user. The message should say what was done and what came out of it, and mention anything left open, \
suggested next steps, or questions for the user.";
const FINISH_MESSAGE: &str = "The final message for the user.";

const THINK_DESCRIPTION: &str =
    "Write down a thought. This changes nothing and fetches nothing: it only records the \
reasoning in the conversation.

Useful to:
* weigh several possible causes or fixes of a bug before choosing one;
* digest test results or command output before acting on them;
* plan a refactoring or a change that touches many places;
* sketch a design and compare alternatives;
* keep track of hypotheses while debugging.";
const THINK_SCHEMA_DESCRIPTION: &str = "Records a thought without side effects.";
const THINK_THOUGHT: &str = "The thought to record.";

fn security_risk() -> Value {
    json!({"type": "string", "description": SECURITY_RISK_DESCRIPTION, "enum": ["UNKNOWN", "LOW", "MEDIUM", "HIGH"]})
}

fn function(name: &str, description: String, parameters: Value) -> Value {
    json!({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}})
}

/// The Chat Completions tool definition of `kind`. `working_dir` appears in the file editor's
/// description; `vision` adds its image note.
pub fn definition(kind: ToolKind, working_dir: &str, vision: bool) -> Value {
    match kind {
        ToolKind::Terminal => function(
            "terminal",
            TERMINAL_DESCRIPTION.to_string(),
            json!({"type": "object", "properties": {
                "command": {"type": "string", "description": TERMINAL_COMMAND},
                "is_input": {"type": "boolean", "description": TERMINAL_IS_INPUT},
                "timeout": {"type": "number", "description": TERMINAL_TIMEOUT},
                "reset": {"type": "boolean", "description": TERMINAL_RESET},
                "security_risk": security_risk()},
                "required": ["command", "security_risk"]}),
        ),
        ToolKind::FileEditor => {
            let mut description = FILE_EDITOR_DESCRIPTION.to_string();
            if vision {
                description.push_str(FILE_EDITOR_IMAGE_NOTE);
            }
            description.push_str(&format!(
                "\n\nYour current working directory is: {working_dir}\nWhen exploring the project, start from this directory."
            ));
            function(
                "file_editor",
                description,
                json!({"type": "object", "properties": {
                    "command": {"type": "string", "description": FILE_EDITOR_COMMAND, "enum": ["view", "create", "str_replace", "insert", "undo_edit"]},
                    "path": {"type": "string", "description": FILE_EDITOR_PATH},
                    "file_text": {"type": "string", "description": FILE_EDITOR_FILE_TEXT},
                    "old_str": {"type": "string", "description": FILE_EDITOR_OLD_STR},
                    "new_str": {"type": "string", "description": FILE_EDITOR_NEW_STR},
                    "insert_line": {"type": "integer", "description": FILE_EDITOR_INSERT_LINE},
                    "view_range": {"type": "array", "items": {"type": "integer"}, "description": FILE_EDITOR_VIEW_RANGE},
                    "security_risk": security_risk()},
                    "required": ["command", "path", "security_risk"]}),
            )
        }
        ToolKind::TaskTracker => function(
            "task_tracker",
            TASK_TRACKER_DESCRIPTION.to_string(),
            json!({"type": "object", "properties": {
                "command": {"type": "string", "description": TASK_TRACKER_COMMAND, "enum": ["view", "plan"]},
                "task_list": {"type": "array", "description": TASK_LIST, "items": {"type": "object", "properties": {
                    "title": {"type": "string", "description": TASK_TITLE},
                    "notes": {"type": "string", "description": TASK_NOTES},
                    "status": {"type": "string", "description": TASK_STATUS, "enum": ["todo", "in_progress", "done"]}},
                    "required": ["title"]}},
                "security_risk": security_risk()},
                "required": ["security_risk"]}),
        ),
        ToolKind::Finish => function(
            "finish",
            FINISH_DESCRIPTION.to_string(),
            json!({"type": "object", "properties": {"message": {"type": "string", "description": FINISH_MESSAGE}}, "required": ["message"]}),
        ),
        ToolKind::Think => function(
            "think",
            THINK_DESCRIPTION.to_string(),
            json!({"type": "object", "description": THINK_SCHEMA_DESCRIPTION,
                "properties": {"thought": {"type": "string", "description": THINK_THOUGHT}}, "required": ["thought"]}),
        ),
    }
}

/// One pydantic-style validation problem.
struct Problem {
    loc: String,
    msg: String,
    kind: &'static str,
    input: Value,
}

/// Collects problems while reading arguments.
struct Reader<'a> {
    args: &'a Map<String, Value>,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn problem(&mut self, loc: &str, kind: &'static str, msg: String, input: &Value) {
        self.problems.push(Problem {
            loc: loc.to_string(),
            msg,
            kind,
            input: input.clone(),
        });
    }

    fn string(&mut self, name: &str, required: bool) -> Value {
        match self.args.get(name) {
            None if required => {
                let input = Value::Object(self.args.clone());
                self.problem(name, "missing", "Field required".into(), &input);
                Value::Null
            }
            None => Value::Null,
            Some(Value::Null) if !required => Value::Null,
            Some(Value::String(s)) => json!(s),
            Some(other) => {
                let other = other.clone();
                self.problem(
                    name,
                    "string_type",
                    "Input should be a valid string".into(),
                    &other,
                );
                Value::Null
            }
        }
    }

    fn boolean(&mut self, name: &str, default: bool) -> Value {
        match self.args.get(name) {
            None => json!(default),
            Some(Value::Bool(b)) => json!(b),
            Some(v @ Value::Number(n)) => match n.as_f64() {
                Some(0.0) => json!(false),
                Some(1.0) => json!(true),
                _ => {
                    let v = v.clone();
                    self.problem(
                        name,
                        "bool_parsing",
                        "Input should be a valid boolean, unable to interpret input".into(),
                        &v,
                    );
                    Value::Null
                }
            },
            Some(v @ Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" | "t" | "y" => json!(true),
                "false" | "0" | "no" | "off" | "f" | "n" => json!(false),
                _ => {
                    let v = v.clone();
                    self.problem(
                        name,
                        "bool_parsing",
                        "Input should be a valid boolean, unable to interpret input".into(),
                        &v,
                    );
                    Value::Null
                }
            },
            Some(other) => {
                let other = other.clone();
                self.problem(
                    name,
                    "bool_type",
                    "Input should be a valid boolean".into(),
                    &other,
                );
                Value::Null
            }
        }
    }

    /// An optional number ≥ 0 (float field): ints become floats.
    fn non_negative_float(&mut self, name: &str) -> Value {
        let raw = match self.args.get(name) {
            None | Some(Value::Null) => return Value::Null,
            Some(v) => v.clone(),
        };
        let x = match &raw {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match x {
            Some(x) if x >= 0.0 => json!(x),
            Some(_) => {
                self.problem(
                    name,
                    "greater_than_equal",
                    "Input should be greater than or equal to 0".into(),
                    &raw,
                );
                Value::Null
            }
            None => {
                self.problem(
                    name,
                    "float_parsing",
                    "Input should be a valid number, unable to parse string as a number".into(),
                    &raw,
                );
                Value::Null
            }
        }
    }

    /// An integer (lax: integral floats and numeric strings accepted).
    fn int_value(&mut self, loc: &str, raw: &Value) -> Option<i64> {
        let parsed = match raw {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            let (kind, msg) = match raw {
                Value::Number(_) => (
                    "int_from_float",
                    "Input should be a valid integer, got a number with a fractional part",
                ),
                Value::String(_) => (
                    "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer",
                ),
                _ => ("int_type", "Input should be a valid integer"),
            };
            self.problem(loc, kind, msg.into(), raw);
        }
        parsed
    }

    fn literal(&mut self, name: &str, allowed: &[&str], default: Option<&str>) -> Value {
        let expected = match allowed.len() {
            0 => String::new(),
            1 => format!("'{}'", allowed[0]),
            n => format!(
                "{} or '{}'",
                allowed[..n - 1]
                    .iter()
                    .map(|a| format!("'{a}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                allowed[n - 1]
            ),
        };
        match (self.args.get(name), default) {
            (None, Some(d)) => json!(d),
            (None, None) => {
                let input = Value::Object(self.args.clone());
                self.problem(name, "missing", "Field required".into(), &input);
                Value::Null
            }
            (Some(Value::String(s)), _) if allowed.contains(&s.as_str()) => json!(s),
            (Some(other), _) => {
                let other = other.clone();
                self.problem(
                    name,
                    "literal_error",
                    format!("Input should be {expected}"),
                    &other,
                );
                Value::Null
            }
        }
    }

    fn reject_extra(&mut self, allowed: &[&str]) {
        let extras: Vec<(String, Value)> = self
            .args
            .iter()
            .filter(|(k, _)| !allowed.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in extras {
            self.problem(
                &k,
                "extra_forbidden",
                "Extra inputs are not permitted".into(),
                &v,
            );
        }
    }

    fn finish(self, model: &str, action: Value) -> Result<Value, String> {
        if self.problems.is_empty() {
            return Ok(action);
        }
        let n = self.problems.len();
        let mut out = format!(
            "{n} validation error{} for {model}",
            if n == 1 { "" } else { "s" }
        );
        for p in &self.problems {
            out.push_str(&format!(
                "\n{}\n  {} [type={}, input_value={}, input_type={}]\n    For further information visit https://errors.pydantic.dev/2.12/v/{}",
                p.loc,
                p.msg,
                p.kind,
                pyjson::repr(&p.input),
                pyjson::type_name(&p.input),
                p.kind
            ));
        }
        Err(out)
    }
}

/// Replaces a JSON-encoded list/object string by its value (agent-behaviour §3.6 step 2).
fn decode_nested(args: &mut Map<String, Value>, name: &str) {
    if let Some(Value::String(s)) = args.get(name)
        && let Ok(v @ (Value::Array(_) | Value::Object(_))) = serde_json::from_str::<Value>(s)
    {
        args.insert(name.to_string(), v);
    }
}

/// Validates the tool-call arguments (with `security_risk` already removed) into the action JSON
/// (`kind` first, defaults filled), or a pydantic-style report.
pub fn parse_action(kind: ToolKind, args: &Map<String, Value>) -> Result<Value, String> {
    let mut args = args.clone();
    match kind {
        ToolKind::Terminal => {
            let mut r = Reader {
                args: &args,
                problems: Vec::new(),
            };
            let command = r.string("command", true);
            let is_input = r.boolean("is_input", false);
            let timeout = r.non_negative_float("timeout");
            let reset = r.boolean("reset", false);
            r.reject_extra(&["command", "is_input", "timeout", "reset"]);
            let action = json!({"kind": "TerminalAction", "command": command, "is_input": is_input, "timeout": timeout, "reset": reset});
            r.finish("TerminalAction", action)
        }
        ToolKind::FileEditor => {
            decode_nested(&mut args, "view_range");
            let mut r = Reader {
                args: &args,
                problems: Vec::new(),
            };
            let command = r.literal(
                "command",
                &["view", "create", "str_replace", "insert", "undo_edit"],
                None,
            );
            let path = r.string("path", true);
            let file_text = r.string("file_text", false);
            let old_str = r.string("old_str", false);
            let new_str = r.string("new_str", false);
            let insert_line = match args.get("insert_line") {
                None | Some(Value::Null) => Value::Null,
                Some(raw) => match r.int_value("insert_line", raw) {
                    Some(i) if i >= 0 => json!(i),
                    Some(_) => {
                        r.problem(
                            "insert_line",
                            "greater_than_equal",
                            "Input should be greater than or equal to 0".into(),
                            raw,
                        );
                        Value::Null
                    }
                    None => Value::Null,
                },
            };
            let view_range = match args.get("view_range") {
                None | Some(Value::Null) => Value::Null,
                Some(Value::Array(items)) => {
                    let mut out = Vec::new();
                    for (i, it) in items.iter().enumerate() {
                        if let Some(v) = r.int_value(&format!("view_range.{i}"), it) {
                            out.push(json!(v));
                        }
                    }
                    Value::Array(out)
                }
                Some(other) => {
                    r.problem(
                        "view_range",
                        "list_type",
                        "Input should be a valid list".into(),
                        other,
                    );
                    Value::Null
                }
            };
            r.reject_extra(&[
                "command",
                "path",
                "file_text",
                "old_str",
                "new_str",
                "insert_line",
                "view_range",
            ]);
            let action = json!({"kind": "FileEditorAction", "command": command, "path": path, "file_text": file_text,
                "old_str": old_str, "new_str": new_str, "insert_line": insert_line, "view_range": view_range});
            r.finish("FileEditorAction", action)
        }
        ToolKind::TaskTracker => {
            decode_nested(&mut args, "task_list");
            let mut r = Reader {
                args: &args,
                problems: Vec::new(),
            };
            let command = r.literal("command", &["view", "plan"], Some("view"));
            let mut tasks = Vec::new();
            match args.get("task_list") {
                None => {}
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let Value::Object(obj) = item else {
                            r.problem(
                                &format!("task_list.{i}"),
                                "model_type",
                                "Input should be a valid dictionary or instance of TaskItem".into(),
                                item,
                            );
                            continue;
                        };
                        let mut sub = Reader {
                            args: obj,
                            problems: Vec::new(),
                        };
                        let title = sub.string("title", true);
                        let notes = match obj.get("notes") {
                            None => json!(""),
                            Some(_) => sub.string("notes", true),
                        };
                        let status =
                            sub.literal("status", &["todo", "in_progress", "done"], Some("todo"));
                        for mut p in sub.problems {
                            p.loc = format!("task_list.{i}.{}", p.loc);
                            r.problems.push(p);
                        }
                        tasks.push(json!({"title": title, "notes": notes, "status": status}));
                    }
                }
                Some(other) => r.problem(
                    "task_list",
                    "list_type",
                    "Input should be a valid list".into(),
                    other,
                ),
            }
            r.reject_extra(&["command", "task_list"]);
            let action =
                json!({"kind": "TaskTrackerAction", "command": command, "task_list": tasks});
            r.finish("TaskTrackerAction", action)
        }
        ToolKind::Finish => {
            let mut r = Reader {
                args: &args,
                problems: Vec::new(),
            };
            let message = r.string("message", true);
            r.reject_extra(&["message"]);
            r.finish(
                "FinishAction",
                json!({"kind": "FinishAction", "message": message}),
            )
        }
        ToolKind::Think => {
            let mut r = Reader {
                args: &args,
                problems: Vec::new(),
            };
            let thought = r.string("thought", true);
            r.reject_extra(&["thought"]);
            r.finish(
                "ThinkAction",
                json!({"kind": "ThinkAction", "thought": thought}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    /// Descriptions replaced, so the structure can be compared with the conformance golden.
    fn without_texts(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            if k == "description" && v.is_string() {
                                json!("<text>")
                            } else {
                                without_texts(v)
                            },
                        )
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(without_texts).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn schemas_match_the_reference_structure() {
        let risk = json!({"type": "string", "description": "<text>", "enum": ["UNKNOWN", "LOW", "MEDIUM", "HIGH"]});
        assert_eq!(
            without_texts(&definition(ToolKind::Terminal, "/w", false)),
            json!({"type": "function", "function": {"name": "terminal", "description": "<text>", "parameters": {"type": "object",
                "properties": {"command": {"type": "string", "description": "<text>"}, "is_input": {"type": "boolean", "description": "<text>"},
                "timeout": {"type": "number", "description": "<text>"}, "reset": {"type": "boolean", "description": "<text>"},
                "security_risk": risk}, "required": ["command", "security_risk"]}}})
        );
        let fe = definition(ToolKind::FileEditor, "/w/s", false);
        assert!(
            fe["function"]["description"]
                .as_str()
                .unwrap()
                .contains("Your current working directory is: /w/s")
        );
        assert!(
            !fe["function"]["description"]
                .as_str()
                .unwrap()
                .contains("image file")
        );
        assert!(
            definition(ToolKind::FileEditor, "/w", true)["function"]["description"]
                .as_str()
                .unwrap()
                .contains("image file")
        );
        assert_eq!(
            fe["function"]["parameters"]["required"],
            json!(["command", "path", "security_risk"])
        );
        assert_eq!(
            fe["function"]["parameters"]["properties"]["view_range"]["items"],
            json!({"type": "integer"})
        );
        let tt = definition(ToolKind::TaskTracker, "/w", false);
        assert_eq!(
            tt["function"]["parameters"]["required"],
            json!(["security_risk"])
        );
        assert_eq!(
            tt["function"]["parameters"]["properties"]["task_list"]["items"]["required"],
            json!(["title"])
        );
        let think = definition(ToolKind::Think, "/w", false);
        let keys: Vec<&String> = think["function"]["parameters"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["type", "description", "properties", "required"]);
        assert!(
            definition(ToolKind::Finish, "/w", false)["function"]["parameters"]["properties"]
                .get("security_risk")
                .is_none()
        );
    }

    #[test]
    fn terminal_defaults_and_errors() {
        assert_eq!(
            parse_action(ToolKind::Terminal, &args(json!({"command": "ls"}))).unwrap(),
            json!({"kind": "TerminalAction", "command": "ls", "is_input": false, "timeout": null, "reset": false})
        );
        assert_eq!(
            parse_action(
                ToolKind::Terminal,
                &args(json!({"command": "x", "timeout": 2}))
            )
            .unwrap()["timeout"],
            json!(2.0)
        );
        assert_eq!(
            parse_action(ToolKind::Terminal, &args(json!({}))).unwrap_err(),
            "1 validation error for TerminalAction\ncommand\n  Field required [type=missing, input_value={}, input_type=dict]\n    For further information visit https://errors.pydantic.dev/2.12/v/missing"
        );
        assert_eq!(
            parse_action(
                ToolKind::Terminal,
                &args(json!({"command": "echo extra", "bogus": 1}))
            )
            .unwrap_err(),
            "1 validation error for TerminalAction\nbogus\n  Extra inputs are not permitted [type=extra_forbidden, input_value=1, input_type=int]\n    For further information visit https://errors.pydantic.dev/2.12/v/extra_forbidden"
        );
        assert_eq!(
            parse_action(
                ToolKind::Terminal,
                &args(json!({"command": "echo x", "timeout": -1}))
            )
            .unwrap_err(),
            "1 validation error for TerminalAction\ntimeout\n  Input should be greater than or equal to 0 [type=greater_than_equal, input_value=-1, input_type=int]\n    For further information visit https://errors.pydantic.dev/2.12/v/greater_than_equal"
        );
    }

    #[test]
    fn file_editor_and_task_tracker() {
        assert_eq!(
            parse_action(
                ToolKind::FileEditor,
                &args(json!({"command": "view", "path": "/a", "view_range": "[1, 2]"}))
            )
            .unwrap(),
            json!({"kind": "FileEditorAction", "command": "view", "path": "/a", "file_text": null, "old_str": null,
                "new_str": null, "insert_line": null, "view_range": [1, 2]})
        );
        assert_eq!(
            parse_action(
                ToolKind::FileEditor,
                &args(json!({"command": "delete", "path": "/a"}))
            )
            .unwrap_err(),
            "1 validation error for FileEditorAction\ncommand\n  Input should be 'view', 'create', 'str_replace', 'insert' or 'undo_edit' [type=literal_error, input_value='delete', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.12/v/literal_error"
        );
        assert!(
            parse_action(
                ToolKind::FileEditor,
                &args(json!({"command": "insert", "path": "/a", "insert_line": -1}))
            )
            .is_err()
        );
        assert_eq!(
            parse_action(ToolKind::TaskTracker, &args(json!({"command": "plan", "task_list": "[{\"title\": \"As string\", \"status\": \"todo\"}]"})))
                .unwrap(),
            json!({"kind": "TaskTrackerAction", "command": "plan", "task_list": [{"title": "As string", "notes": "", "status": "todo"}]})
        );
        assert_eq!(
            parse_action(
                ToolKind::TaskTracker,
                &args(
                    json!({"command": "plan", "task_list": [{"title": "Bad", "status": "blocked"}]})
                )
            )
            .unwrap_err(),
            "1 validation error for TaskTrackerAction\ntask_list.0.status\n  Input should be 'todo', 'in_progress' or 'done' [type=literal_error, input_value='blocked', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.12/v/literal_error"
        );
        assert_eq!(
            parse_action(ToolKind::TaskTracker, &args(json!({}))).unwrap(),
            json!({"kind": "TaskTrackerAction", "command": "view", "task_list": []})
        );
        assert_eq!(
            parse_action(ToolKind::Finish, &args(json!({"message": "m"}))).unwrap(),
            json!({"kind": "FinishAction", "message": "m"})
        );
        assert!(parse_action(ToolKind::Think, &args(json!({"thought": 1}))).is_err());
    }
}
