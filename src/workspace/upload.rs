//! Writing an uploaded file: parents are created, the bytes stream into a temporary file next to
//! the destination, and a rename replaces the destination at once (readers never see half a
//! file). A symlinked destination is written through, as `open(path, "wb")` would; an existing
//! file keeps its permission bits. Error texts are the reference's (`[Errno N] ...: '<path>'`).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use crate::workspace::pypath::{mkdir_parents, os_error_text};

/// Longest chain of symlinks followed to find the file an upload replaces.
const MAX_SYMLINKS: usize = 40;

/// The file an upload to `path` really replaces: `path` with its symlink chain followed, even to a
/// target that does not exist yet. `None` when the chain does not end within [`MAX_SYMLINKS`]
/// links (a loop), where `open()` fails with `ELOOP`.
pub fn write_target(path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..=MAX_SYMLINKS {
        let is_link = std::fs::symlink_metadata(&p)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if !is_link {
            return Some(p);
        }
        match std::fs::read_link(&p) {
            Ok(t) if t.is_absolute() => p = t,
            Ok(t) => p = p.parent().map(|d| d.join(&t)).unwrap_or(t),
            Err(_) => return Some(p),
        }
    }
    None
}

/// The process umask, read from `/proc/self/status` (no racy set-and-restore).
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// An upload in progress: a temporary file beside its destination. Dropping it without
/// [`UploadSink::commit`] deletes the temporary file.
pub struct UploadSink {
    file: tokio::fs::File,
    temp: TempPath,
    /// The path as requested, for error texts.
    requested: PathBuf,
    /// The file that will be replaced (symlinks followed).
    target: PathBuf,
    written: u64,
}

impl UploadSink {
    /// Creates the parent directories of `requested` and the temporary file. Blocking.
    pub fn create(requested: &Path) -> Result<UploadSink, String> {
        if requested.as_os_str().as_encoded_bytes().contains(&0) {
            return Err("embedded null byte".to_string());
        }
        if let Some(parent) = requested.parent().filter(|p| !p.as_os_str().is_empty()) {
            mkdir_parents(parent).map_err(|(e, at)| os_error_text(&e, Some(&at)))?;
        }
        let target = write_target(requested).ok_or_else(|| {
            os_error_text(&io::Error::from_raw_os_error(libc::ELOOP), Some(requested))
        })?;
        if std::fs::metadata(&target)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            return Err(os_error_text(
                &io::Error::from_raw_os_error(libc::EISDIR),
                Some(requested),
            ));
        }
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("/"));
        let named = tempfile::Builder::new()
            .prefix(".upload-")
            .tempfile_in(dir)
            .map_err(|e| os_error_text(&e, Some(requested)))?;
        let (file, temp) = named.into_parts();
        Ok(UploadSink {
            file: tokio::fs::File::from_std(file),
            temp,
            requested: requested.to_path_buf(),
            target,
            written: 0,
        })
    }

    /// Appends `chunk`.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.file
            .write_all(chunk)
            .await
            .map_err(|e| os_error_text(&e, None))?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes, gives the file the destination's permissions (or the default `0666 & !umask`) and
    /// renames it over the destination.
    pub async fn commit(mut self) -> Result<(), String> {
        self.file
            .flush()
            .await
            .map_err(|e| os_error_text(&e, None))?;
        let file = self.file.into_std().await;
        let (temp, target, requested) = (self.temp, self.target, self.requested);
        let done = tokio::task::spawn_blocking(move || {
            let mode = std::fs::metadata(&target)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o666 & !umask());
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| os_error_text(&e, None))?;
            drop(file);
            temp.persist(&target)
                .map_err(|e| os_error_text(&e.error, Some(&requested)))
        })
        .await;
        match done {
            Ok(result) => result,
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_through_links_and_keeps_modes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let mut sink = UploadSink::create(&root.join("a/b/new.txt")).unwrap();
        sink.write(b"hello ").await.unwrap();
        sink.write(b"world").await.unwrap();
        assert_eq!(sink.written(), 11);
        sink.commit().await.unwrap();
        assert_eq!(
            std::fs::read(root.join("a/b/new.txt")).unwrap(),
            b"hello world"
        );
        assert_eq!(
            std::fs::metadata(root.join("a/b/new.txt"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o666 & !umask()
        );
        let leftovers: Vec<_> = std::fs::read_dir(root.join("a/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");

        std::fs::set_permissions(
            root.join("a/b/new.txt"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink(root.join("a/b/new.txt"), root.join("link")).unwrap();
        let mut sink = UploadSink::create(&root.join("link")).unwrap();
        sink.write(b"replaced").await.unwrap();
        sink.commit().await.unwrap();
        assert!(
            std::fs::symlink_metadata(root.join("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read(root.join("a/b/new.txt")).unwrap(),
            b"replaced"
        );
        assert_eq!(
            std::fs::metadata(root.join("a/b/new.txt"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
    }

    #[tokio::test]
    async fn refusals_read_like_python() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("dir")).unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();
        let err = UploadSink::create(&root.join("dir")).err().unwrap();
        assert_eq!(
            err,
            format!(
                "[Errno 21] Is a directory: '{}'",
                root.join("dir").display()
            )
        );
        let err = UploadSink::create(&root.join("file/x.txt")).err().unwrap();
        assert_eq!(
            err,
            format!("[Errno 17] File exists: '{}'", root.join("file").display())
        );
        // An abandoned upload leaves nothing behind.
        let mut sink = UploadSink::create(&root.join("dir/partial.txt")).unwrap();
        sink.write(b"half").await.unwrap();
        drop(sink);
        assert_eq!(std::fs::read_dir(root.join("dir")).unwrap().count(), 0);
    }
}
