//! Path and error-text rules of the reference (a Python server), reproduced so that the file and
//! git routes answer the same paths and print the same messages: URL tail decoding, `PurePath`
//! normalisation, `Path.resolve()`, `mkdir(parents=True, exist_ok=True)` and `OSError` texts.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// The `{path:path}` tail of a request: the whole URL path is percent-decoded first (so `%2F` is a
/// slash and invalid UTF-8 becomes U+FFFD, as uvicorn does), then `prefix` is removed.
/// `None` when the decoded path does not start with `prefix`.
pub fn url_tail(raw_path: &str, prefix: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(raw_path).decode_utf8_lossy();
    decoded.strip_prefix(prefix).map(str::to_string)
}

/// `PurePosixPath(s)`: repeated slashes collapse, `.` segments and a trailing slash disappear,
/// `..` is kept. An empty string is `.`.
pub fn pure_path(s: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(s).components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::CurDir => {}
            Component::ParentDir => out.push(".."),
            Component::Normal(n) => out.push(n),
            Component::Prefix(_) => {}
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `Path(cwd, p).resolve()` (non-strict `os.path.realpath`): symlinks are resolved component by
/// component, a missing component is kept as written and a later `..` removes it lexically, a
/// symlink loop leaves the rest of the path unresolved.
pub fn resolve(cwd: &Path, p: &str) -> PathBuf {
    let joined = if p.starts_with('/') {
        PathBuf::from(p)
    } else {
        cwd.join(p)
    };
    let mut seen = HashMap::new();
    let (out, _) = join_realpath(PathBuf::new(), joined.as_os_str().as_bytes(), &mut seen, 0);
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

/// Upper bound on nested symlink resolution, as a guard against pathological chains.
const MAX_LINK_DEPTH: usize = 64;

fn join_realpath(
    mut path: PathBuf,
    rest: &[u8],
    seen: &mut HashMap<PathBuf, Option<PathBuf>>,
    depth: usize,
) -> (PathBuf, bool) {
    let mut rest = rest;
    if rest.first() == Some(&b'/') {
        rest = &rest[1..];
        path = PathBuf::from("/");
    }
    while !rest.is_empty() {
        let (name, tail) = match rest.iter().position(|b| *b == b'/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = tail;
        if name.is_empty() || name == b"." {
            continue;
        }
        if name == b".." {
            if path.as_os_str().is_empty() {
                path = PathBuf::from("..");
            } else if path.file_name().is_none() && path.as_os_str() != "/" {
                path.push("..");
            } else if path.as_os_str() != "/" {
                path.pop();
            }
            continue;
        }
        let newpath = path.join(std::ffi::OsStr::from_bytes(name));
        let is_link = std::fs::symlink_metadata(&newpath)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if !is_link {
            path = newpath;
            continue;
        }
        match seen.get(&newpath) {
            Some(Some(resolved)) => {
                path = resolved.clone();
                continue;
            }
            Some(None) => return (join_bytes(&newpath, rest), false),
            None => {}
        }
        let target = match std::fs::read_link(&newpath) {
            Ok(t) => t,
            Err(_) => {
                path = newpath;
                continue;
            }
        };
        if depth >= MAX_LINK_DEPTH {
            return (join_bytes(&newpath, rest), false);
        }
        seen.insert(newpath.clone(), None);
        let (resolved, ok) = join_realpath(path, target.as_os_str().as_bytes(), seen, depth + 1);
        if !ok {
            return (join_bytes(&resolved, rest), false);
        }
        seen.insert(newpath, Some(resolved.clone()));
        path = resolved;
    }
    (path, true)
}

fn join_bytes(base: &Path, rest: &[u8]) -> PathBuf {
    if rest.is_empty() {
        base.to_path_buf()
    } else {
        base.join(OsString::from_vec(rest.to_vec()))
    }
}

/// Python's `repr()` of a path string, as it appears in `OSError` messages: `'...'`, or `"..."`
/// when the text holds a single quote and no double quote.
pub fn py_repr(p: &Path) -> String {
    crate::llm::pyjson::repr_str(&p.to_string_lossy())
}

/// The text of a Python `OSError`: `[Errno 21] Is a directory: '/x'` (or without the path for
/// errors raised by a read or write). Errors without an errno keep their own text.
pub fn os_error_text(e: &io::Error, path: Option<&Path>) -> String {
    let Some(code) = e.raw_os_error() else {
        return e.to_string();
    };
    let full = io::Error::from_raw_os_error(code).to_string();
    let strerror = full
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&full);
    match path {
        Some(p) => format!("[Errno {code}] {strerror}: {}", py_repr(p)),
        None => format!("[Errno {code}] {strerror}"),
    }
}

/// `path.mkdir(parents=True, exist_ok=True)`: on failure, the error and the directory it concerns.
pub fn mkdir_parents(dir: &Path) -> Result<(), (io::Error, PathBuf)> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match dir.parent() {
                Some(parent) if parent != dir && !parent.as_os_str().is_empty() => {
                    mkdir_parents(parent)?
                }
                _ => return Err((e, dir.to_path_buf())),
            }
            match std::fs::create_dir(dir) {
                Ok(()) => Ok(()),
                Err(_) if dir.is_dir() => Ok(()),
                Err(e) => Err((e, dir.to_path_buf())),
            }
        }
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) => Err((e, dir.to_path_buf())),
    }
}

/// True when `Path.exists()` would be false without raising: the path is missing, a component is
/// not a directory, a symlink loops, or the path holds a NUL byte.
pub fn is_absent_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::InvalidInput
    ) || matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EBADF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_are_fully_decoded() {
        assert_eq!(
            url_tail("/api/file/download//tmp/a%20b", "/api/file/download/").as_deref(),
            Some("/tmp/a b")
        );
        assert_eq!(
            url_tail("/api/file/download/%2Ftmp/x", "/api/file/download/").as_deref(),
            Some("/tmp/x")
        );
        assert_eq!(
            url_tail("/api/file/download/%C3%A9%FF", "/api/file/download/").as_deref(),
            Some("é\u{FFFD}")
        );
        assert_eq!(url_tail("/api/file/download", "/api/file/download/"), None);
    }

    #[test]
    fn pure_paths_normalise_like_pathlib() {
        assert_eq!(pure_path("/tmp//a/./b/"), PathBuf::from("/tmp/a/b"));
        assert_eq!(pure_path("/tmp/a/../b"), PathBuf::from("/tmp/a/../b"));
        assert_eq!(pure_path(""), PathBuf::from("."));
        assert_eq!(pure_path("/"), PathBuf::from("/"));
        assert!(!pure_path("relative/x").is_absolute());
    }

    #[test]
    fn resolve_follows_links_and_keeps_missing_parts() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let r = |p: &str| resolve(&root, p);
        assert_eq!(r("link/x.txt"), root.join("real/x.txt"));
        assert_eq!(r("missing/../real"), root.join("real"));
        assert_eq!(
            r(&format!("{}/link/../real/./", root.display())),
            root.join("real")
        );
        assert_eq!(r("/"), PathBuf::from("/"));
        assert_eq!(r("/.."), PathBuf::from("/"));
        assert_eq!(r("loop/x"), root.join("loop/x"));
        assert_eq!(r(""), root);
    }

    #[test]
    fn os_errors_read_like_python() {
        let e = io::Error::from_raw_os_error(libc::EISDIR);
        assert_eq!(
            os_error_text(&e, Some(Path::new("/tmp/d"))),
            "[Errno 21] Is a directory: '/tmp/d'"
        );
        assert_eq!(os_error_text(&e, None), "[Errno 21] Is a directory");
        assert_eq!(py_repr(Path::new("/a'b")), "\"/a'b\"");
        assert_eq!(py_repr(Path::new("/a'b\"")), "'/a\\'b\"'");
    }

    #[test]
    fn mkdir_parents_reports_the_failing_directory() {
        let d = tempfile::tempdir().unwrap();
        mkdir_parents(&d.path().join("a/b/c")).unwrap();
        assert!(d.path().join("a/b/c").is_dir());
        mkdir_parents(&d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("file"), b"x").unwrap();
        let (e, at) = mkdir_parents(&d.path().join("file")).unwrap_err();
        assert_eq!(
            (e.raw_os_error(), at),
            (Some(libc::EEXIST), d.path().join("file"))
        );
        let (e, at) = mkdir_parents(&d.path().join("file/sub/deeper")).unwrap_err();
        assert_eq!(
            (e.raw_os_error(), at),
            (Some(libc::ENOTDIR), d.path().join("file/sub/deeper"))
        );
    }
}
