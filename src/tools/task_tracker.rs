//! The `task_tracker` tool (agent-behaviour §4.3): a task list replaced by `plan`, shown by
//! `view`, persisted to `<conversation_dir>/TASKS.json` after every plan and loaded at start.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Value, json};

use super::text_part;

/// File name of the persisted list inside the conversation directory.
pub const TASKS_FILE: &str = "TASKS.json";

/// The task list of one conversation.
#[derive(Debug)]
pub struct TaskTracker {
    /// `None` when the conversation has no directory (nothing persisted).
    file: Option<PathBuf>,
    tasks: Mutex<Vec<Value>>,
}

impl TaskTracker {
    /// Loads `TASKS.json` from `conversation_dir` if present.
    pub fn load(conversation_dir: Option<&Path>) -> TaskTracker {
        let file = conversation_dir.map(|d| d.join(TASKS_FILE));
        let tasks = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|s| serde_json::from_str::<Vec<Value>>(&s).ok())
            .unwrap_or_default();
        TaskTracker {
            file,
            tasks: Mutex::new(tasks),
        }
    }

    /// Runs a `TaskTrackerAction` and returns the `TaskTrackerObservation` JSON. Blocking (file
    /// write on `plan`).
    pub fn run(&self, action: &Value) -> Value {
        let command = action
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("view")
            .to_string();
        let Ok(mut tasks) = self.tasks.lock() else {
            return json!({"kind": "TaskTrackerObservation", "content": [text_part("Task list is unavailable.")], "is_error": true,
                "command": command, "task_list": []});
        };
        let (text, is_error) = if command == "plan" {
            *tasks = action
                .get("task_list")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            match self.save(&tasks) {
                Ok(()) => (
                    format!("Task list has been updated with {} item(s).", tasks.len()),
                    false,
                ),
                Err(e) => (format!("Failed to save the task list: {e}"), true),
            }
        } else if tasks.is_empty() {
            (
                "No task list found. Use the \"plan\" command to create one.".to_string(),
                false,
            )
        } else {
            (render(&tasks), false)
        };
        json!({"kind": "TaskTrackerObservation", "content": [text_part(&text)], "is_error": is_error,
            "command": command, "task_list": *tasks})
    }

    fn save(&self, tasks: &[Value]) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(tasks).map_err(std::io::Error::other)?;
        let tmp = file.with_extension("json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, file)
    }
}

/// `# Task List` rendering with status icons.
fn render(tasks: &[Value]) -> String {
    let mut out = String::from("# Task List\n\n");
    for (i, t) in tasks.iter().enumerate() {
        let icon = match t.get("status").and_then(Value::as_str) {
            Some("done") => "✅",
            Some("in_progress") => "🔄",
            _ => "⏳",
        };
        out.push_str(&format!(
            "{}. {icon} {}\n",
            i + 1,
            t.get("title").and_then(Value::as_str).unwrap_or_default()
        ));
        if let Some(notes) = t
            .get("notes")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            out.push_str(&format!("   {notes}\n"));
        }
        out.push('\n');
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_view_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let t = TaskTracker::load(Some(dir.path()));
        let obs = t.run(&json!({"kind": "TaskTrackerAction", "command": "view", "task_list": []}));
        assert_eq!(
            obs["content"][0]["text"],
            "No task list found. Use the \"plan\" command to create one."
        );
        let list = json!([{"title": "First", "notes": "n1", "status": "done"}, {"title": "Second", "notes": "", "status": "in_progress"},
            {"title": "Third", "notes": "", "status": "todo"}]);
        let obs =
            t.run(&json!({"kind": "TaskTrackerAction", "command": "plan", "task_list": list}));
        assert_eq!(
            obs,
            json!({"kind": "TaskTrackerObservation", "content": [{"cache_prompt": false, "type": "text", "text": "Task list has been updated with 3 item(s)."}],
                "is_error": false, "command": "plan", "task_list": list})
        );
        let obs = t.run(&json!({"kind": "TaskTrackerAction", "command": "view", "task_list": []}));
        assert_eq!(
            obs["content"][0]["text"],
            "# Task List\n\n1. ✅ First\n   n1\n\n2. 🔄 Second\n\n3. ⏳ Third"
        );
        assert_eq!(obs["task_list"], list);
        let reloaded = TaskTracker::load(Some(dir.path()));
        assert_eq!(reloaded.run(&json!({"command": "view"}))["task_list"], list);
        let saved: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(TASKS_FILE)).unwrap())
                .unwrap();
        assert_eq!(saved, list);
    }
}
