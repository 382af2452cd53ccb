//! Git changes and diffs for `/api/git` (API.md §6), computed with libgit2 the way the reference
//! computes them with the git command line: the working tree (with the index) against the first
//! valid ref among `origin/<current branch>`, `origin/<default branch>` and the empty tree;
//! untracked files count as added; nested repositories one level down are included. Blocking:
//! call from `web::block`.

use std::path::{Path, PathBuf};

use git2::{
    Delta, DiffOptions, Direction, ObjectType, Repository, RepositoryOpenFlags, Status,
    StatusOptions, Tree,
};
use schemars::JsonSchema;
use serde::Serialize;

/// Files larger than this are refused by `diff`.
pub const MAX_DIFF_FILE_SIZE: u64 = 1024 * 1024;

/// The id git gives the empty tree; the last-resort ref.
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// How a file differs from the ref. `Moved` exists in the schema but is never produced: renames
/// are reported as a deletion and an addition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GitChangeStatus {
    Added,
    Deleted,
    Updated,
    Moved,
}

/// One entry of `GET /api/git/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct GitChange {
    pub status: GitChangeStatus,
    pub path: String,
}

/// The body of `GET /api/git/diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct GitDiff {
    pub modified: Option<String>,
    pub original: Option<String>,
}

/// The ref the working tree is compared with: its id as `git rev-parse` prints it, and its tree
/// (`None` for the empty tree).
struct BaseRef<'r> {
    name: String,
    tree: Option<Tree<'r>>,
}

fn open_repo(start: &Path) -> Option<Repository> {
    Repository::open_ext(
        start,
        RepositoryOpenFlags::empty(),
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .ok()
}

/// The working directory of `repo`, canonicalised, when it has one.
fn workdir(repo: &Repository) -> Option<PathBuf> {
    repo.workdir()
        .map(|w| w.canonicalize().unwrap_or_else(|_| w.to_path_buf()))
}

/// `git rev-parse --verify <spec>`: the object's id and tree.
fn verify<'r>(repo: &'r Repository, spec: &str) -> Option<BaseRef<'r>> {
    let obj = repo.revparse_single(spec).ok()?;
    let tree = obj.peel_to_tree().ok()?;
    Some(BaseRef {
        name: obj.id().to_string(),
        tree: Some(tree),
    })
}

/// `git rev-parse --abbrev-ref HEAD`: the branch name, `HEAD` when detached, nothing when unborn.
fn current_branch(repo: &Repository) -> Option<String> {
    let head = repo.head().ok()?;
    if head.is_branch() {
        head.shorthand().map(str::to_string)
    } else {
        Some("HEAD".to_string())
    }
}

/// The default branch of `origin`: the local `refs/remotes/origin/HEAD`, else the remote's HEAD
/// when the remote is on this machine (a path or `file://` URL).
fn default_branch(repo: &Repository) -> Option<String> {
    if let Ok(r) = repo.find_reference("refs/remotes/origin/HEAD")
        && let Some(target) = r.symbolic_target()
    {
        return target
            .strip_prefix("refs/remotes/origin/")
            .map(str::to_string);
    }
    let mut remote = repo.find_remote("origin").ok()?;
    let url = remote.url()?.to_string();
    if !(url.starts_with('/') || url.starts_with("file://") || url.starts_with('.')) {
        return None;
    }
    remote.connect(Direction::Fetch).ok()?;
    let branch = remote.default_branch().ok()?;
    let name = branch.as_str()?.strip_prefix("refs/heads/")?.to_string();
    let _ = remote.disconnect();
    Some(name)
}

fn base_ref(repo: &Repository) -> BaseRef<'_> {
    if let Some(found) = current_branch(repo).and_then(|b| verify(repo, &format!("origin/{b}"))) {
        return found;
    }
    // The reference also lists the merge base with origin/<default>, but only after
    // origin/<default> itself, so it can never be chosen.
    if let Some(found) = default_branch(repo).and_then(|b| verify(repo, &format!("origin/{b}"))) {
        return found;
    }
    BaseRef {
        name: EMPTY_TREE.to_string(),
        tree: None,
    }
}

fn path_string(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The changes of the repository containing `dir`, as `git diff --name-status <ref>` plus
/// `git ls-files --others --exclude-standard` run in `dir` print them: tracked paths relative to
/// the repository root, untracked paths relative to `dir` and limited to it.
fn changes_in_repo(dir: &Path) -> Result<Vec<GitChange>, String> {
    let repo = open_repo(dir).ok_or_else(|| format!("Not a git repository: {}", dir.display()))?;
    let base = base_ref(&repo);
    let failed = || {
        format!(
            "Git command failed: git --no-pager diff --name-status {}",
            base.name
        )
    };
    let root = workdir(&repo).ok_or_else(failed)?;
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let sub = canonical
        .strip_prefix(&root)
        .map_err(|_| failed())?
        .to_path_buf();
    if canonical.starts_with(
        repo.path()
            .canonicalize()
            .unwrap_or_else(|_| repo.path().to_path_buf()),
    ) {
        return Err(failed());
    }

    let mut opts = DiffOptions::new();
    opts.include_typechange(true);
    let diff = repo
        .diff_tree_to_workdir_with_index(base.tree.as_ref(), Some(&mut opts))
        .map_err(|_| failed())?;
    let mut changes = Vec::new();
    for delta in diff.deltas() {
        let (status, file) = match delta.status() {
            Delta::Added | Delta::Copied => (GitChangeStatus::Added, delta.new_file()),
            Delta::Deleted => (GitChangeStatus::Deleted, delta.old_file()),
            Delta::Modified | Delta::Typechange | Delta::Unreadable => {
                (GitChangeStatus::Updated, delta.new_file())
            }
            // Unmerged: git reports it as added when the base does not have the path.
            Delta::Conflicted if delta.old_file().id().is_zero() => {
                (GitChangeStatus::Added, delta.new_file())
            }
            Delta::Conflicted => (GitChangeStatus::Updated, delta.new_file()),
            Delta::Renamed => {
                if let Some(old) = delta.old_file().path() {
                    changes.push(GitChange {
                        status: GitChangeStatus::Deleted,
                        path: path_string(old),
                    });
                }
                (GitChangeStatus::Added, delta.new_file())
            }
            Delta::Unmodified | Delta::Ignored | Delta::Untracked => continue,
        };
        if let Some(p) = file.path() {
            changes.push(GitChange {
                status,
                path: path_string(p),
            });
        }
    }

    let mut sopts = StatusOptions::new();
    sopts
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut sopts)).map_err(|_| failed())?;
    let mut untracked: Vec<String> = Vec::new();
    for entry in statuses.iter() {
        if !entry.status().contains(Status::WT_NEW) {
            continue;
        }
        // a name that is not UTF-8 is listed with replacement characters, not dropped
        let p = String::from_utf8_lossy(entry.path_bytes());
        let p = p.as_ref();
        let rel = if sub.as_os_str().is_empty() {
            Some(p.to_string())
        } else {
            let prefix = format!("{}/", sub.to_string_lossy());
            p.strip_prefix(&prefix).map(str::to_string)
        };
        if let Some(rel) = rel.filter(|r| !r.is_empty()) {
            untracked.push(rel);
        }
    }
    untracked.sort();
    changes.extend(untracked.into_iter().map(|path| GitChange {
        status: GitChangeStatus::Added,
        path,
    }));
    Ok(changes)
}

/// `GET /api/git/changes/{path}` for an already resolved absolute `dir`.
pub fn changes(dir: &Path) -> Result<Vec<GitChange>, String> {
    let meta = std::fs::metadata(dir)
        .map_err(|_| format!("Directory does not exist: {}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("Path is not a directory: {}", dir.display()));
    }
    if open_repo(dir).is_none() {
        return Err(format!("Not a git repository: {}", dir.display()));
    }
    // Nested repositories: `<dir>/*/.git`, hidden directories excluded as a shell glob does.
    let mut nested: Vec<String> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.')
                && std::fs::symlink_metadata(entry.path().join(".git")).is_ok()
            {
                nested.push(name);
            }
        }
    }
    nested.sort();
    let inside = |path: &str, repo: &str| path == repo || path.starts_with(&format!("{repo}/"));
    let mut all: Vec<GitChange> = changes_in_repo(dir)?
        .into_iter()
        .filter(|c| !nested.iter().any(|n| inside(&c.path, n)))
        .collect();
    for name in &nested {
        for mut c in changes_in_repo(&dir.join(name))? {
            c.path = format!("{name}/{}", c.path);
            all.push(c);
        }
    }
    all.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(all)
}

/// `GET /api/git/diff/{path}` for an already resolved absolute `file`.
pub fn diff(file: &Path) -> Result<GitDiff, String> {
    let meta =
        std::fs::metadata(file).map_err(|_| format!("File does not exist: {}", file.display()))?;
    if meta.len() > MAX_DIFF_FILE_SIZE {
        return Err(format!(
            "File too large for git diff: {} bytes (max: {MAX_DIFF_FILE_SIZE} bytes)",
            meta.len()
        ));
    }
    let not_in_repo = || format!("File is not in a git repository: {}", file.display());
    // The repository is looked up from the path itself when it is a directory (so the root of a
    // repository diffs as `.`, which no tree holds), else from its parent.
    let start = if meta.is_dir() {
        Some(file)
    } else {
        file.parent()
    };
    let repo = start.and_then(open_repo).ok_or_else(not_in_repo)?;
    let root = workdir(&repo).ok_or_else(not_in_repo)?;
    let rel = file
        .strip_prefix(&root)
        .map_err(|_| not_in_repo())?
        .to_path_buf();
    let base = base_ref(&repo);
    let original = match &base.tree {
        Some(tree) => show_in_tree(&repo, tree, &base.name, &rel)?,
        None => String::new(),
    };
    let modified = std::fs::read(file)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(|text| python_lines_joined(&translate_newlines(&text)))
        .unwrap_or_default();
    Ok(GitDiff {
        modified: Some(modified),
        original: Some(original),
    })
}

/// `git show <rev>:<rel>` read as text and stripped, `""` when the path is not in the tree.
fn show_in_tree(
    repo: &Repository,
    tree: &Tree<'_>,
    rev: &str,
    rel: &Path,
) -> Result<String, String> {
    let Ok(entry) = tree.get_path(rel) else {
        return Ok(String::new());
    };
    let Ok(obj) = entry.to_object(repo) else {
        return Ok(String::new());
    };
    let bytes: Vec<u8> = match obj.kind() {
        Some(ObjectType::Blob) => match obj.as_blob() {
            Some(b) => b.content().to_vec(),
            None => return Ok(String::new()),
        },
        Some(ObjectType::Tree) => {
            let Some(t) = obj.as_tree() else {
                return Ok(String::new());
            };
            let mut listing = format!("tree {rev}:{}\n\n", rel.to_string_lossy());
            for e in t.iter() {
                listing.push_str(&String::from_utf8_lossy(e.name_bytes()));
                if e.kind() == Some(ObjectType::Tree) {
                    listing.push('/');
                }
                listing.push('\n');
            }
            listing.into_bytes()
        }
        _ => return Ok(String::new()),
    };
    let text =
        String::from_utf8(bytes).map_err(|e| python_utf8_error(e.as_bytes(), e.utf8_error()))?;
    Ok(python_strip(&translate_newlines(&text)).to_string())
}

/// The text of Python's `UnicodeDecodeError` for `bytes.decode("utf-8")`.
pub fn python_utf8_error(bytes: &[u8], err: std::str::Utf8Error) -> String {
    let pos = err.valid_up_to();
    let first = bytes.get(pos).copied().unwrap_or(0);
    let (end, reason) = match err.error_len() {
        None => (bytes.len().saturating_sub(1), "unexpected end of data"),
        Some(n) => {
            let reason = if (0xC2..=0xF4).contains(&first) {
                "invalid continuation byte"
            } else {
                "invalid start byte"
            };
            (pos + n - 1, reason)
        }
    };
    if end <= pos {
        format!("'utf-8' codec can't decode byte 0x{first:02x} in position {pos}: {reason}")
    } else {
        format!("'utf-8' codec can't decode bytes in position {pos}-{end}: {reason}")
    }
}

/// Universal newlines: `\r\n` and `\r` become `\n`.
pub fn translate_newlines(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

/// Python's `str.strip()`: Unicode whitespace plus the separators U+001C..U+001F.
pub fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// `"\n".join(s.splitlines())`: every line boundary Python knows becomes `\n`, and one final
/// boundary is dropped.
pub fn python_lines_joined(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\n' | '\u{0b}' | '\u{0c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => out.push('\n'),
            other => out.push(other),
        }
    }
    if s.ends_with([
        '\r', '\n', '\u{0b}', '\u{0c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}',
        '\u{2029}',
    ]) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn change(status: GitChangeStatus, path: &str) -> GitChange {
        GitChange {
            status,
            path: path.to_string(),
        }
    }
    use GitChangeStatus::{Added, Deleted, Updated};

    /// A repository pushed to a bare origin, then changed: the conformance scenario's layout.
    fn scenario_repo(root: &Path) -> PathBuf {
        let origin = root.join("origin.git");
        let repo = root.join("repo");
        std::fs::create_dir_all(&origin).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        git(&origin, &["init", "-q", "--bare", "-b", "main"]);
        git(&repo, &["init", "-q", "-b", "main"]);
        write(&repo.join("modified.txt"), b"one\ntwo\n");
        write(&repo.join("deleted.txt"), b"bye\n");
        write(&repo.join("keep.txt"), b"same\n");
        write(&repo.join("src/lib.py"), b"x = 1\n");
        write(&repo.join("bin.dat"), b"\x89PNG\x00\x01");
        write(&repo.join("old.txt"), b"rename me\n");
        git(&repo, &["add", "."]);
        git(&repo, &["commit", "-q", "-m", "init"]);
        git(
            &repo,
            &["remote", "add", "origin", origin.to_str().unwrap()],
        );
        git(&repo, &["push", "-q", "origin", "main"]);
        git(&repo, &["fetch", "-q", "origin"]);
        write(&repo.join("modified.txt"), b"one\nTWO\nthree\n");
        std::fs::remove_file(repo.join("deleted.txt")).unwrap();
        write(&repo.join("untracked.txt"), b"new file\n");
        write(&repo.join("src/lib.py"), b"x = 2\n");
        write(&repo.join("staged.txt"), b"staged\n");
        write(&repo.join("bin.dat"), b"\x89PNG\x00\x02");
        write(&repo.join(".gitignore"), b"*.log\n");
        write(&repo.join("ignored.log"), b"x\n");
        git(&repo, &["add", "staged.txt", ".gitignore"]);
        git(&repo, &["mv", "old.txt", "renamed.txt"]);
        repo
    }

    #[test]
    fn changes_against_origin() {
        let d = tempfile::tempdir().unwrap();
        let repo = scenario_repo(d.path());
        assert_eq!(
            changes(&repo).unwrap(),
            vec![
                change(Added, ".gitignore"),
                change(Updated, "bin.dat"),
                change(Deleted, "deleted.txt"),
                change(Updated, "modified.txt"),
                change(Deleted, "old.txt"),
                change(Added, "renamed.txt"),
                change(Updated, "src/lib.py"),
                change(Added, "staged.txt"),
                change(Added, "untracked.txt"),
            ]
        );
        assert_eq!(
            diff(&repo.join("modified.txt")).unwrap(),
            GitDiff {
                modified: Some("one\nTWO\nthree".into()),
                original: Some("one\ntwo".into())
            }
        );
        assert_eq!(
            diff(&repo.join("untracked.txt")).unwrap(),
            GitDiff {
                modified: Some("new file".into()),
                original: Some(String::new())
            }
        );
        assert_eq!(
            diff(&repo.join("bin.dat")).unwrap_err(),
            "'utf-8' codec can't decode byte 0x89 in position 0: invalid start byte"
        );
    }

    #[test]
    fn repository_without_remote_or_commits() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("r");
        std::fs::create_dir(&repo).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        write(&repo.join("staged.txt"), b"a\n");
        git(&repo, &["add", "staged.txt"]);
        write(&repo.join("untracked.txt"), b"u\n");
        assert_eq!(
            changes(&repo).unwrap(),
            vec![change(Added, "staged.txt"), change(Added, "untracked.txt")]
        );
        git(&repo, &["commit", "-q", "-m", "c"]);
        std::fs::remove_file(repo.join("staged.txt")).unwrap();
        // Without a remote the base is the empty tree: a deleted tracked file disappears.
        assert_eq!(
            changes(&repo).unwrap(),
            vec![change(Added, "untracked.txt")]
        );
        assert_eq!(
            diff(&repo.join("untracked.txt")).unwrap(),
            GitDiff {
                modified: Some("u".into()),
                original: Some(String::new())
            }
        );
    }

    #[test]
    fn errors_name_the_path() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let missing = root.join("missing");
        assert_eq!(
            changes(&missing).unwrap_err(),
            format!("Directory does not exist: {}", missing.display())
        );
        write(&root.join("f.txt"), b"x");
        assert_eq!(
            changes(&root.join("f.txt")).unwrap_err(),
            format!("Path is not a directory: {}/f.txt", root.display())
        );
        assert_eq!(
            changes(&root).unwrap_err(),
            format!("Not a git repository: {}", root.display())
        );
        assert_eq!(
            diff(&missing).unwrap_err(),
            format!("File does not exist: {}", missing.display())
        );
        assert_eq!(
            diff(&root.join("f.txt")).unwrap_err(),
            format!("File is not in a git repository: {}/f.txt", root.display())
        );
        write(&root.join("big.txt"), &vec![b'a'; 1_100_000]);
        assert_eq!(
            diff(&root.join("big.txt")).unwrap_err(),
            "File too large for git diff: 1100000 bytes (max: 1048576 bytes)"
        );
    }

    #[test]
    fn nested_repositories_and_subdirectories() {
        let d = tempfile::tempdir().unwrap();
        let outer = d.path().canonicalize().unwrap().join("outer");
        std::fs::create_dir(&outer).unwrap();
        git(&outer, &["init", "-q", "-b", "main"]);
        write(&outer.join("o.txt"), b"o\n");
        write(&outer.join("subway.txt"), b"s\n");
        write(&outer.join("deep/d.txt"), b"d\n");
        let sub = outer.join("sub");
        std::fs::create_dir(&sub).unwrap();
        git(&sub, &["init", "-q", "-b", "main"]);
        write(&sub.join("s.txt"), b"s\n");
        assert_eq!(
            changes(&outer).unwrap(),
            vec![
                change(Added, "deep/d.txt"),
                change(Added, "o.txt"),
                change(Added, "sub/s.txt"),
                change(Added, "subway.txt"),
            ]
        );
        // From a subdirectory: untracked files are listed relative to it.
        assert_eq!(
            changes(&outer.join("deep")).unwrap(),
            vec![change(Added, "d.txt")]
        );
        assert_eq!(
            diff(&sub.join("s.txt")).unwrap(),
            GitDiff {
                modified: Some("s".into()),
                original: Some(String::new())
            }
        );
    }

    #[test]
    fn python_text_rules() {
        assert_eq!(python_lines_joined("  lead\n\n"), "  lead\n");
        assert_eq!(python_lines_joined("a\r\nb\r\n"), "a\nb");
        assert_eq!(
            python_lines_joined("x\u{1c}y\u{85}z\u{2028}u\u{0b}t \u{1f}"),
            "x\ny\nz\nu\nt \u{1f}"
        );
        assert_eq!(python_lines_joined(""), "");
        assert_eq!(python_lines_joined("\n"), "");
        assert_eq!(python_strip("\t x\u{1c}y\n\u{0c} \u{1f}"), "x\u{1c}y");
        let err = |bytes: &[u8]| python_utf8_error(bytes, std::str::from_utf8(bytes).unwrap_err());
        assert_eq!(
            err(b" \x89x"),
            "'utf-8' codec can't decode byte 0x89 in position 1: invalid start byte"
        );
        assert_eq!(
            err(b"ok\xe4\xbd"),
            "'utf-8' codec can't decode bytes in position 2-3: unexpected end of data"
        );
        assert_eq!(
            err(b"\xe4A"),
            "'utf-8' codec can't decode byte 0xe4 in position 0: invalid continuation byte"
        );
    }
}
