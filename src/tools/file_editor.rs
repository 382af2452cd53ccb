//! The `file_editor` tool (agent-behaviour §4.2): view with line numbers, directory listing,
//! create, str_replace, insert and undo_edit, with the reference's checks and result texts.
//! Synchronous file I/O: call [`FileEditor::run`] from a blocking thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use serde_json::{Value, json};

use super::{image_part, text_part, truncate_middle};

/// Largest file the tool reads or edits.
const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Longest text shown for a file or directory before the middle is cut out.
const MAX_RESPONSE_CHARS: usize = 16_000;
/// Undo entries kept per file.
const MAX_HISTORY: usize = 10;
/// Lines of context shown before an edit in snippets.
const SNIPPET_BEFORE: usize = 3;
/// Lines of context shown after an edit in snippets.
const SNIPPET_AFTER: usize = 4;
/// Extensions shown as images.
const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "gif", "webp", "bmp"];

const FILE_CLIP_NOTICE: &str = "<response clipped><NOTE>Due to the max output limit, only part of this file has been shown \
to you. You should retry this tool after you have searched inside the file with `grep -n` in order to find the line numbers \
of what you are looking for.</NOTE>";
const DIR_CLIP_NOTICE: &str = "<response clipped><NOTE>Due to the max output limit, only part of this directory has been \
shown to you. Use `ls -la` on sub-directories to explore large directories step by step.</NOTE>";
const EDIT_REVIEW: &str =
    "Review the changes and make sure they are as expected. Edit the file again if necessary.";
const INSERT_REVIEW: &str = "Review the changes and make sure they are as expected (correct indentation, no duplicate lines, etc). Edit the file again if necessary.";

/// How a file's bytes map to text, kept so edits write the file back the same way.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Utf8,
    Latin1,
}

/// Per-conversation editor state: undo history and detected encodings.
#[derive(Debug)]
pub struct FileEditor {
    /// Where relative paths would have pointed (for the "Maybe you meant" hint).
    working_dir: PathBuf,
    history: Mutex<HashMap<PathBuf, Vec<String>>>,
    encodings: Mutex<HashMap<PathBuf, Encoding>>,
}

/// A tool-level failure: becomes an error observation.
struct EditError(String);

/// What a successful command produced.
struct Outcome {
    content: Vec<Value>,
    path: Option<String>,
    prev_exist: bool,
    old_content: Option<String>,
    new_content: Option<String>,
}

impl Outcome {
    fn text(text: String, path: &str) -> Outcome {
        Outcome {
            content: vec![text_part(&text)],
            path: Some(path.to_string()),
            prev_exist: true,
            old_content: None,
            new_content: None,
        }
    }
}

/// `{n:>6}\t{line}` for each line, starting at `first`.
fn numbered(lines: &[&str], first: usize) -> String {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{:>6}\t{l}", first + i))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Lines counted the way the tool reports ranges: a final newline does not start a new line.
fn line_count(content: &str) -> usize {
    if content.is_empty() {
        return 0;
    }
    let n = content.matches('\n').count();
    if content.ends_with('\n') { n } else { n + 1 }
}

/// Numbers `content` (whose first line is line `first`), cutting out the middle if it is longer
/// than the limit. Unlike the reference, lines after the cut keep their real numbers
/// (DEVIATIONS #18).
fn numbered_clipped(content: &str, first: usize) -> String {
    let (head, tail) = match truncate_middle(content, MAX_RESPONSE_CHARS, FILE_CLIP_NOTICE) {
        None => return numbered(&content.split('\n').collect::<Vec<_>>(), first),
        Some(parts) => parts,
    };
    let total_lines = content.split('\n').count();
    let head_lines: Vec<&str> = head.split('\n').collect();
    let tail_lines: Vec<&str> = tail.split('\n').collect();
    // The cut line: end of the head's last line + notice + start of the tail's first line.
    let mut out = numbered(&head_lines[..head_lines.len() - 1], first);
    if head_lines.len() > 1 {
        out.push('\n');
    }
    let cut_no = first + head_lines.len() - 1;
    out.push_str(&format!(
        "{cut_no:>6}\t{}{FILE_CLIP_NOTICE}{}",
        head_lines[head_lines.len() - 1],
        tail_lines[0]
    ));
    let rest = &tail_lines[1..];
    if !rest.is_empty() {
        let rest_first = first + total_lines - rest.len();
        out.push('\n');
        out.push_str(&numbered(rest, rest_first));
    }
    out
}

fn python_list(items: &[Value]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(crate::llm::pyjson::repr)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl FileEditor {
    pub fn new(working_dir: &Path) -> FileEditor {
        FileEditor {
            working_dir: working_dir.to_path_buf(),
            history: Mutex::new(HashMap::new()),
            encodings: Mutex::new(HashMap::new()),
        }
    }

    /// Runs a `FileEditorAction` (JSON) and returns the `FileEditorObservation` JSON.
    pub fn run(&self, action: &Value) -> Value {
        let command = action
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or("view")
            .to_string();
        let result = self.dispatch(&command, action);
        let (content, is_error, path, prev_exist, old_content, new_content) = match result {
            Ok(o) => (
                o.content,
                false,
                o.path,
                o.prev_exist,
                o.old_content,
                o.new_content,
            ),
            Err(EditError(msg)) => (vec![text_part(&msg)], true, None, true, None, None),
        };
        json!({"kind": "FileEditorObservation", "content": content, "is_error": is_error, "command": command,
            "path": path, "prev_exist": prev_exist, "old_content": old_content, "new_content": new_content})
    }

    fn dispatch(&self, command: &str, action: &Value) -> Result<Outcome, EditError> {
        let raw = action
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let p = Path::new(raw);
        if !p.is_absolute() {
            let suggestion = self.working_dir.join(raw);
            let hint = if suggestion.exists() {
                format!(" Maybe you meant {}?", suggestion.display())
            } else {
                String::new()
            };
            return Err(EditError(format!(
                "Invalid `path` parameter: {raw}. The path should be an absolute path, starting with `/`.{hint}"
            )));
        }
        let exists = p.exists();
        if command == "create" && exists {
            return Err(EditError(format!(
                "Invalid `path` parameter: {raw}. File already exists at: {raw}. Cannot overwrite files using command `create`."
            )));
        }
        if command != "create" && !exists {
            return Err(EditError(format!(
                "Invalid `path` parameter: {raw}. The path {raw} does not exist. Please provide a valid path."
            )));
        }
        if command != "view" && p.is_dir() {
            return Err(EditError(format!(
                "Invalid `path` parameter: {raw}. The path {raw} is a directory and only the `view` command can be used on directories."
            )));
        }
        let opt_str = |k: &str| action.get(k).and_then(Value::as_str).map(str::to_string);
        match command {
            "view" => self.view(raw, p, action.get("view_range").filter(|v| !v.is_null())),
            "create" => {
                let text = opt_str("file_text").ok_or_else(|| {
                    EditError("Parameter `file_text` is required for command: create.".into())
                })?;
                self.write(p, raw, &text, Encoding::Utf8)?;
                self.push_history(p, text.clone());
                Ok(Outcome {
                    content: vec![text_part(&format!("File created successfully at: {raw}"))],
                    path: Some(raw.to_string()),
                    prev_exist: false,
                    old_content: None,
                    new_content: Some(text),
                })
            }
            "str_replace" => {
                let old = opt_str("old_str").ok_or_else(|| {
                    EditError("Parameter `old_str` is required for command: str_replace.".into())
                })?;
                let new = opt_str("new_str").ok_or_else(|| {
                    EditError("Parameter `new_str` is required for command: str_replace.".into())
                })?;
                self.str_replace(raw, p, &old, &new)
            }
            "insert" => {
                let line = action
                    .get("insert_line")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| {
                        EditError("Parameter `insert_line` is required for command: insert.".into())
                    })?;
                let new = opt_str("new_str").ok_or_else(|| {
                    EditError("Parameter `new_str` is required for command: insert.".into())
                })?;
                self.insert(raw, p, line, &new)
            }
            "undo_edit" => self.undo(raw, p),
            other => Err(EditError(format!(
                "Unrecognized command {other}. The allowed commands for the file_editor tool are: view, create, str_replace, insert, undo_edit"
            ))),
        }
    }

    fn is_image(p: &Path) -> bool {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
    }

    /// Size and binary checks, then the text of an existing regular file.
    fn read(&self, p: &Path, raw: &str) -> Result<String, EditError> {
        let meta = std::fs::metadata(p)
            .map_err(|e| EditError(format!("Ran into {e} while trying to read {raw}")))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(EditError(format!(
                "File validation failed for {raw}: File is too large ({:.1}MB). Maximum allowed size is 10MB.",
                meta.len() as f64 / (1024.0 * 1024.0)
            )));
        }
        let bytes = std::fs::read(p)
            .map_err(|e| EditError(format!("Ran into {e} while trying to read {raw}")))?;
        if is_binary(&bytes) {
            return Err(EditError(format!(
                "File validation failed for {raw}: File appears to be binary and this file type cannot be read or edited by this tool."
            )));
        }
        let (text, enc) = match String::from_utf8(bytes) {
            Ok(s) => (s, Encoding::Utf8),
            Err(e) => (
                e.into_bytes().iter().map(|&b| b as char).collect(),
                Encoding::Latin1,
            ),
        };
        if let Ok(mut m) = self.encodings.lock() {
            m.insert(p.to_path_buf(), enc);
        }
        Ok(text)
    }

    fn encoding_of(&self, p: &Path) -> Encoding {
        self.encodings
            .lock()
            .ok()
            .and_then(|m| m.get(p).copied())
            .unwrap_or(Encoding::Utf8)
    }

    fn write(&self, p: &Path, raw: &str, text: &str, enc: Encoding) -> Result<(), EditError> {
        let bytes: Vec<u8> = match enc {
            Encoding::Latin1 if text.chars().all(|c| (c as u32) < 256) => {
                text.chars().map(|c| c as u8).collect()
            }
            Encoding::Latin1 | Encoding::Utf8 => text.as_bytes().to_vec(),
        };
        std::fs::write(p, bytes).map_err(|e| {
            let errno = e
                .raw_os_error()
                .map(|n| format!("[Errno {n}] "))
                .unwrap_or_default();
            let reason = match e.kind() {
                std::io::ErrorKind::NotFound => "No such file or directory".to_string(),
                std::io::ErrorKind::PermissionDenied => "Permission denied".to_string(),
                _ => e.to_string(),
            };
            EditError(format!(
                "Ran into {errno}{reason}: '{raw}' while trying to write to {raw}"
            ))
        })
    }

    fn push_history(&self, p: &Path, text: String) {
        if let Ok(mut h) = self.history.lock() {
            let entries = h.entry(p.to_path_buf()).or_default();
            entries.push(text);
            if entries.len() > MAX_HISTORY {
                entries.remove(0);
            }
        }
    }

    fn view(&self, raw: &str, p: &Path, range: Option<&Value>) -> Result<Outcome, EditError> {
        if p.is_dir() {
            if let Some(r) = range {
                return Err(EditError(format!(
                    "Invalid `view_range` parameter: {}. The `view_range` parameter is not allowed when `path` points to a directory.",
                    crate::llm::pyjson::repr(r)
                )));
            }
            return Ok(Outcome::text(list_directory(raw, p), raw));
        }
        if Self::is_image(p) {
            let bytes = std::fs::read(p)
                .map_err(|e| EditError(format!("Ran into {e} while trying to read {raw}")))?;
            let ext = p
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("png")
                .to_ascii_lowercase();
            let mime = match ext.as_str() {
                "jpg" | "jpeg" => "image/jpeg",
                "gif" => "image/gif",
                "webp" => "image/webp",
                "bmp" => "image/bmp",
                _ => "image/png",
            };
            let url = format!(
                "data:{mime};base64,{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            );
            return Ok(Outcome {
                content: vec![
                    text_part(&format!(
                        "Image file {raw} read successfully. Displaying image content."
                    )),
                    image_part(&url),
                ],
                path: Some(raw.to_string()),
                prev_exist: true,
                old_content: None,
                new_content: None,
            });
        }
        let content = self.read(p, raw)?;
        let header = format!("Here's the result of running `cat -n` on {raw}:\n");
        let Some(range) = range else {
            return Ok(Outcome::text(
                format!("{header}{}\n", numbered_clipped(&content, 1)),
                raw,
            ));
        };
        let items = range
            .as_array()
            .filter(|a| a.len() == 2 && a.iter().all(|v| v.as_i64().is_some()));
        let shown = crate::llm::pyjson::repr(range);
        let Some(items) = items else {
            return Err(EditError(format!(
                "Invalid `view_range` parameter: {shown}. It should be a list of two integers."
            )));
        };
        let (a, b) = (
            items[0].as_i64().unwrap_or(0),
            items[1].as_i64().unwrap_or(0),
        );
        let n = line_count(&content) as i64;
        let shown = python_list(items);
        if a < 1 || a > n {
            return Err(EditError(format!(
                "Invalid `view_range` parameter: {shown}. Its first element `{a}` should be within the range of lines of the file: [1, {n}]."
            )));
        }
        let mut note = String::new();
        let end = if b == -1 {
            n
        } else if b < a {
            return Err(EditError(format!(
                "Invalid `view_range` parameter: {shown}. Its second element `{b}` should be greater than or equal to the first element `{a}`."
            )));
        } else if b > n {
            note = format!(
                "NOTE: We only show up to {n} since there're only {n} lines in this file.\n"
            );
            n
        } else {
            b
        };
        let lines: Vec<&str> = content.split('\n').collect();
        let slice = lines[(a - 1) as usize..end as usize].join("\n");
        Ok(Outcome::text(
            format!("{note}{header}{}\n", numbered_clipped(&slice, a as usize)),
            raw,
        ))
    }

    fn str_replace(&self, raw: &str, p: &Path, old: &str, new: &str) -> Result<Outcome, EditError> {
        if old == new {
            return Err(EditError(format!(
                "Invalid `new_str` parameter: {new}. No replacement was performed. `new_str` and `old_str` must be different."
            )));
        }
        let content = self.read(p, raw)?;
        let find = |needle: &str| -> Vec<usize> {
            if needle.is_empty() {
                Vec::new()
            } else {
                content.match_indices(needle).map(|(i, _)| i).collect()
            }
        };
        let mut matches = find(old);
        let (mut old_used, mut new_used) = (old.to_string(), new.to_string());
        if matches.is_empty() {
            let (so, sn) = (old.trim(), new.trim());
            matches = find(so);
            old_used = so.to_string();
            new_used = sn.to_string();
        }
        if matches.is_empty() {
            return Err(EditError(format!(
                "No replacement was performed, old_str `{old}` did not appear verbatim in {raw}."
            )));
        }
        if matches.len() > 1 {
            let mut lines: Vec<usize> = matches
                .iter()
                .map(|&i| content[..i].matches('\n').count() + 1)
                .collect();
            lines.dedup();
            let list = lines
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(EditError(format!(
                "No replacement was performed. Multiple occurrences of old_str `{old}` in lines [{list}]. Please ensure it is unique."
            )));
        }
        let at = matches[0];
        let new_content = format!(
            "{}{}{}",
            &content[..at],
            new_used,
            &content[at + old_used.len()..]
        );
        self.write(p, raw, &new_content, self.encoding_of(p))?;
        self.push_history(p, content.clone());
        let line = content[..at].matches('\n').count() + 1;
        let snippet = snippet(&new_content, line, new_used.matches('\n').count());
        Ok(Outcome {
            content: vec![text_part(&format!(
                "The file {raw} has been edited. Here's the result of running `cat -n` on a snippet of {raw}:\n{snippet}\n{EDIT_REVIEW}"
            ))],
            path: Some(raw.to_string()),
            prev_exist: true,
            old_content: Some(content),
            new_content: Some(new_content),
        })
    }

    fn insert(&self, raw: &str, p: &Path, line: i64, new: &str) -> Result<Outcome, EditError> {
        let content = self.read(p, raw)?;
        let n = line_count(&content) as i64;
        if line < 0 || line > n {
            return Err(EditError(format!(
                "Invalid `insert_line` parameter: {line}. It should be within the range of allowed values: [0, {n}]"
            )));
        }
        let lines: Vec<&str> = content.split('\n').collect();
        let new_lines: Vec<&str> = new.split('\n').collect();
        let at = (line as usize).min(lines.len());
        let mut out: Vec<&str> = lines[..at].to_vec();
        out.extend(new_lines.iter().copied());
        out.extend(lines[at..].iter().copied());
        let new_content = out.join("\n");
        self.write(p, raw, &new_content, self.encoding_of(p))?;
        self.push_history(p, content.clone());
        let first = (line as usize).saturating_sub(SNIPPET_BEFORE).max(1);
        let last = (line as usize + SNIPPET_AFTER + new_lines.len()).min(out.len());
        let text = numbered(&out[first - 1..last], first);
        Ok(Outcome {
            content: vec![text_part(&format!(
                "The file {raw} has been edited. Here's the result of running `cat -n` on a snippet of the edited file:\n{text}\n{INSERT_REVIEW}"
            ))],
            path: Some(raw.to_string()),
            prev_exist: true,
            old_content: Some(content),
            new_content: Some(new_content),
        })
    }

    fn undo(&self, raw: &str, p: &Path) -> Result<Outcome, EditError> {
        let previous = self
            .history
            .lock()
            .ok()
            .and_then(|mut h| h.get_mut(p).and_then(Vec::pop));
        let Some(previous) = previous else {
            return Err(EditError(format!("No edit history found for {raw}.")));
        };
        let current = self.read(p, raw).ok();
        self.write(p, raw, &previous, self.encoding_of(p))?;
        Ok(Outcome {
            content: vec![text_part(&format!(
                "Last edit to {raw} undone successfully. Here's the result of running `cat -n` on {raw}:\n{}\n",
                numbered_clipped(&previous, 1)
            ))],
            path: Some(raw.to_string()),
            prev_exist: true,
            old_content: current,
            new_content: Some(previous),
        })
    }
}

/// Lines `max(1, line−3) ..= line+4+extra` of `content`, numbered.
fn snippet(content: &str, line: usize, extra_newlines: usize) -> String {
    let lines: Vec<&str> = content.split('\n').collect();
    let first = line.saturating_sub(SNIPPET_BEFORE).max(1);
    let last = (line + SNIPPET_AFTER + extra_newlines).min(lines.len());
    numbered(&lines[first - 1..last], first)
}

/// Heuristic binary check on the first 8 KiB: NUL bytes, or mostly non-text bytes.
fn is_binary(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(8192)];
    if head.is_empty() {
        return false;
    }
    if head.contains(&0) {
        return true;
    }
    if std::str::from_utf8(head).is_ok()
        || head.len() == 8192 && std::str::from_utf8(&head[..8188]).is_ok()
    {
        return false;
    }
    let odd = head
        .iter()
        .filter(|&&b| b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c | 0x08 | 0x1b))
        .count();
    odd * 10 > head.len()
}

/// The two-level listing of a directory (hidden entries excluded and counted).
fn list_directory(raw: &str, p: &Path) -> String {
    let base = if raw.len() > 1 {
        raw.trim_end_matches('/')
    } else {
        raw
    };
    let mut entries: Vec<(String, bool)> = Vec::new();
    let mut hidden = 0usize;
    let children = |dir: &Path| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| (e.file_name().to_string_lossy().to_string(), e.path()))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (name, path) in children(p) {
        if name.starts_with('.') {
            hidden += 1;
            continue;
        }
        let is_dir = path.is_dir();
        let shown = if base == "/" {
            format!("/{name}")
        } else {
            format!("{base}/{name}")
        };
        entries.push((shown.clone(), is_dir));
        if is_dir {
            for (sub, subpath) in children(&path) {
                if !sub.starts_with('.') {
                    entries.push((format!("{shown}/{sub}"), subpath.is_dir()));
                }
            }
        }
    }
    entries.sort();
    let root = if base == "/" {
        "/".to_string()
    } else {
        format!("{base}/")
    };
    let mut listing = vec![root];
    listing.extend(
        entries
            .into_iter()
            .map(|(s, d)| if d { format!("{s}/") } else { s }),
    );
    let body = listing.join("\n");
    let body = match truncate_middle(&body, MAX_RESPONSE_CHARS, DIR_CLIP_NOTICE) {
        Some((h, t)) => format!("{h}{DIR_CLIP_NOTICE}{t}"),
        None => body,
    };
    let mut out = format!(
        "Here's the files and directories up to 2 levels deep in {raw}, excluding hidden items:\n{body}"
    );
    if hidden > 0 {
        out.push_str(&format!("\n\n{hidden} hidden files/directories in this directory are excluded. You can use 'ls -la {raw}' to see them."));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ed: &FileEditor, v: Value) -> (bool, String, Value) {
        let mut action = json!({"kind": "FileEditorAction", "command": "view", "path": null, "file_text": null, "old_str": null,
            "new_str": null, "insert_line": null, "view_range": null});
        for (k, val) in v.as_object().unwrap() {
            action[k] = val.clone();
        }
        let obs = ed.run(&action);
        let text = obs["content"][0]["text"].as_str().unwrap().to_string();
        (obs["is_error"].as_bool().unwrap(), text, obs)
    }

    #[test]
    fn the_reference_session_texts() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().to_str().unwrap().to_string();
        let ed = FileEditor::new(dir.path());
        let f = format!("{ws}/f.txt");
        let (err, text, obs) = run(
            &ed,
            json!({"command": "create", "path": f, "file_text": "line1\nline2\nline3\n"}),
        );
        assert!(!err);
        assert_eq!(text, format!("File created successfully at: {f}"));
        assert_eq!(obs["prev_exist"], json!(false));
        assert_eq!(obs["new_content"], json!("line1\nline2\nline3\n"));
        assert_eq!(obs["old_content"], Value::Null);
        let (_, text, obs) = run(&ed, json!({"command": "view", "path": f}));
        assert_eq!(
            text,
            format!(
                "Here's the result of running `cat -n` on {f}:\n     1\tline1\n     2\tline2\n     3\tline3\n     4\t\n"
            )
        );
        assert_eq!(obs["path"], json!(f));
        let (_, text, _) = run(
            &ed,
            json!({"command": "view", "path": f, "view_range": [2, 3]}),
        );
        assert_eq!(
            text,
            format!(
                "Here's the result of running `cat -n` on {f}:\n     2\tline2\n     3\tline3\n"
            )
        );
        let (_, text, obs) = run(
            &ed,
            json!({"command": "str_replace", "path": f, "old_str": "line2", "new_str": "LINE2"}),
        );
        assert_eq!(
            text,
            format!(
                "The file {f} has been edited. Here's the result of running `cat -n` on a snippet of {f}:\n     1\tline1\n     2\tLINE2\n     3\tline3\n     4\t\n{EDIT_REVIEW}"
            )
        );
        assert_eq!(obs["old_content"], json!("line1\nline2\nline3\n"));
        assert_eq!(obs["new_content"], json!("line1\nLINE2\nline3\n"));
        let (err, text, _) = run(
            &ed,
            json!({"command": "str_replace", "path": f, "old_str": "line", "new_str": "X"}),
        );
        assert!(err);
        assert_eq!(
            text,
            "No replacement was performed. Multiple occurrences of old_str `line` in lines [1, 3]. Please ensure it is unique."
        );
        let (_, text, _) = run(
            &ed,
            json!({"command": "str_replace", "path": f, "old_str": "nomatch", "new_str": "X"}),
        );
        assert_eq!(
            text,
            format!(
                "No replacement was performed, old_str `nomatch` did not appear verbatim in {f}."
            )
        );
        let (_, text, _) = run(
            &ed,
            json!({"command": "insert", "path": f, "insert_line": 1, "new_str": "inserted"}),
        );
        assert_eq!(
            text,
            format!(
                "The file {f} has been edited. Here's the result of running `cat -n` on a snippet of the edited file:\n     1\tline1\n     2\tinserted\n     3\tLINE2\n     4\tline3\n     5\t\n{INSERT_REVIEW}"
            )
        );
        let (_, text, _) = run(&ed, json!({"command": "undo_edit", "path": f}));
        assert_eq!(
            text,
            format!(
                "Last edit to {f} undone successfully. Here's the result of running `cat -n` on {f}:\n     1\tline1\n     2\tLINE2\n     3\tline3\n     4\t\n"
            )
        );
        let (_, text, _) = run(&ed, json!({"command": "view", "path": ws}));
        assert_eq!(
            text,
            format!(
                "Here's the files and directories up to 2 levels deep in {ws}, excluding hidden items:\n{ws}/\n{ws}/f.txt"
            )
        );
        let (err, text, obs) = run(
            &ed,
            json!({"command": "create", "path": f, "file_text": "again"}),
        );
        assert!(err);
        assert_eq!(
            text,
            format!(
                "Invalid `path` parameter: {f}. File already exists at: {f}. Cannot overwrite files using command `create`."
            )
        );
        assert_eq!(obs["path"], Value::Null);
        assert_eq!(obs["prev_exist"], json!(true));
        let (_, text, _) = run(&ed, json!({"command": "view", "path": "f.txt"}));
        assert_eq!(
            text,
            format!(
                "Invalid `path` parameter: f.txt. The path should be an absolute path, starting with `/`. Maybe you meant {f}?"
            )
        );
        let (_, text, _) = run(
            &ed,
            json!({"command": "view", "path": f, "view_range": [0, 2]}),
        );
        assert_eq!(
            text,
            "Invalid `view_range` parameter: [0, 2]. Its first element `0` should be within the range of lines of the file: [1, 3]."
        );
        let missing = format!("{ws}/missing.txt");
        let (_, text, _) = run(&ed, json!({"command": "view", "path": missing}));
        assert_eq!(
            text,
            format!(
                "Invalid `path` parameter: {missing}. The path {missing} does not exist. Please provide a valid path."
            )
        );
        let nodir = format!("{ws}/nosuchdir/new.txt");
        let (_, text, _) = run(
            &ed,
            json!({"command": "create", "path": nodir, "file_text": "x\n"}),
        );
        assert_eq!(
            text,
            format!(
                "Ran into [Errno 2] No such file or directory: '{nodir}' while trying to write to {nodir}"
            )
        );
        let (_, text, _) = run(
            &ed,
            json!({"command": "str_replace", "path": f, "old_str": "line1", "new_str": "line1"}),
        );
        assert_eq!(
            text,
            "Invalid `new_str` parameter: line1. No replacement was performed. `new_str` and `old_str` must be different."
        );
        let (_, text, _) = run(
            &ed,
            json!({"command": "view", "path": f, "view_range": [1, 100]}),
        );
        assert_eq!(
            text,
            format!(
                "NOTE: We only show up to 3 since there're only 3 lines in this file.\nHere's the result of running `cat -n` on {f}:\n     1\tline1\n     2\tLINE2\n     3\tline3\n"
            )
        );
        std::fs::write(format!("{ws}/bin.dat"), vec![0u8; 1024]).unwrap();
        std::fs::create_dir_all(format!("{ws}/sub/deep/deeper")).unwrap();
        for t in [
            ".hidden",
            "sub/a.txt",
            "sub/deep/b.txt",
            "sub/deep/deeper/c.txt",
        ] {
            std::fs::write(format!("{ws}/{t}"), "").unwrap();
        }
        let (_, text, _) = run(
            &ed,
            json!({"command": "view", "path": format!("{ws}/bin.dat")}),
        );
        assert_eq!(
            text,
            format!(
                "File validation failed for {ws}/bin.dat: File appears to be binary and this file type cannot be read or edited by this tool."
            )
        );
        let (_, text, _) = run(
            &ed,
            json!({"command": "insert", "path": f, "insert_line": 99, "new_str": "zz"}),
        );
        assert_eq!(
            text,
            "Invalid `insert_line` parameter: 99. It should be within the range of allowed values: [0, 3]"
        );
        let (_, text, _) = run(
            &ed,
            json!({"command": "undo_edit", "path": format!("{ws}/sub/a.txt")}),
        );
        assert_eq!(text, format!("No edit history found for {ws}/sub/a.txt."));
        let (_, text, _) = run(&ed, json!({"command": "view", "path": ws}));
        assert_eq!(
            text,
            format!(
                "Here's the files and directories up to 2 levels deep in {ws}, excluding hidden items:\n{ws}/\n{ws}/bin.dat\n{ws}/f.txt\n{ws}/sub/\n{ws}/sub/a.txt\n{ws}/sub/deep/\n\n1 hidden files/directories in this directory are excluded. You can use 'ls -la {ws}' to see them."
            )
        );
        let (_, text, _) = run(
            &ed,
            json!({"command": "view", "path": ws, "view_range": [1, 2]}),
        );
        assert_eq!(
            text,
            "Invalid `view_range` parameter: [1, 2]. The `view_range` parameter is not allowed when `path` points to a directory."
        );
        let (_, text, _) = run(
            &ed,
            json!({"command": "str_replace", "path": f, "old_str": "  line3  ", "new_str": "  L3  "}),
        );
        assert_eq!(
            text,
            format!(
                "The file {f} has been edited. Here's the result of running `cat -n` on a snippet of {f}:\n     1\tline1\n     2\tLINE2\n     3\tL3\n     4\t\n{EDIT_REVIEW}"
            )
        );
        let (_, text, _) = run(
            &ed,
            json!({"command": "str_replace", "path": f, "old_str": "L3"}),
        );
        assert_eq!(
            text,
            "Parameter `new_str` is required for command: str_replace."
        );
        let (_, text, _) = run(
            &ed,
            json!({"command": "str_replace", "path": ws, "old_str": "a", "new_str": "b"}),
        );
        assert_eq!(
            text,
            format!(
                "Invalid `path` parameter: {ws}. The path {ws} is a directory and only the `view` command can be used on directories."
            )
        );
    }

    #[test]
    fn long_files_are_clipped_with_real_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let ed = FileEditor::new(dir.path());
        let big = dir.path().join("big.txt");
        let content: String = (0..600)
            .map(|i| format!("row {i} {}\n", "x".repeat(40)))
            .collect();
        std::fs::write(&big, &content).unwrap();
        let (_, text, _) = run(
            &ed,
            json!({"command": "view", "path": big.to_str().unwrap()}),
        );
        assert!(text.contains(&format!(
            "   163\trow 162 {}{FILE_CLIP_NOTICE}",
            "x".repeat(39)
        )));
        // the first complete line after the cut carries its real number (row N is line N+1)
        let after = text.split(FILE_CLIP_NOTICE).nth(1).unwrap();
        let second_line = after.split('\n').nth(1).unwrap();
        let (no, rest) = second_line.split_once('\t').unwrap();
        let row: usize = rest.split(' ').nth(1).unwrap().parse().unwrap();
        assert_eq!(no.trim().parse::<usize>().unwrap(), row + 1);
        assert!(
            text.ends_with("   600\trow 599 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n   601\t\n")
        );
    }

    #[test]
    fn images_and_latin1() {
        let dir = tempfile::tempdir().unwrap();
        let ed = FileEditor::new(dir.path());
        let img = dir.path().join("i.png");
        std::fs::write(&img, [0x89, b'P', b'N', b'G', 0, 1]).unwrap();
        let (_, text, obs) = run(
            &ed,
            json!({"command": "view", "path": img.to_str().unwrap()}),
        );
        assert_eq!(
            text,
            format!(
                "Image file {} read successfully. Displaying image content.",
                img.display()
            )
        );
        assert_eq!(obs["content"][1]["type"], "image");
        assert!(
            obs["content"][1]["image_urls"][0]
                .as_str()
                .unwrap()
                .starts_with("data:image/png;base64,")
        );
        let l1 = dir.path().join("l1.txt");
        std::fs::write(&l1, b"caf\xe9\n").unwrap();
        let (err, _, _) = run(
            &ed,
            json!({"command": "str_replace", "path": l1.to_str().unwrap(), "old_str": "caf", "new_str": "CAF"}),
        );
        assert!(!err);
        assert_eq!(std::fs::read(&l1).unwrap(), b"CAF\xe9\n");
    }
}
