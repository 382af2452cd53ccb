//! The trajectory archive of a conversation (`GET /api/file/download-trajectory/{id}`,
//! PERSISTENCE.md §10): a zip of `<conversations_path>/<hex id>/` whose entry names are the
//! directory path without its leading `/`, as `zip -r <zip> <dir>` writes them. Blocking: call
//! from `web::block`.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chrono::{Datelike, Local, TimeZone, Timelike};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// Why no archive could be built.
#[derive(Debug, thiserror::Error)]
pub enum TrajectoryError {
    /// The conversation directory does not exist.
    #[error("missing conversation directory")]
    Missing,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Zip(#[from] zip::result::ZipError),
}

/// The zip entry name of `path`: its text without leading slashes.
pub fn entry_name(path: &Path) -> String {
    path.to_string_lossy().trim_start_matches('/').to_string()
}

fn zip_time(meta: &std::fs::Metadata) -> DateTime {
    let local = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| Local.timestamp_opt(d.as_secs() as i64, 0).single());
    local
        .and_then(|t| {
            DateTime::from_date_and_time(
                u16::try_from(t.year()).ok()?,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default()
}

fn add_tree(zip: &mut ZipWriter<File>, path: &Path) -> Result<(), TrajectoryError> {
    let meta = std::fs::metadata(path)?;
    let options = SimpleFileOptions::default()
        .last_modified_time(zip_time(&meta))
        .unix_permissions(meta.permissions().mode() & 0o7777);
    if meta.is_dir() {
        zip.add_directory(entry_name(path), options)?;
        let mut children: Vec<_> = std::fs::read_dir(path)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        children.sort();
        for child in children {
            add_tree(zip, &child)?;
        }
    } else if meta.is_file() {
        let options = options
            .compression_method(CompressionMethod::Deflated)
            .large_file(meta.len() > u32::MAX as u64);
        zip.start_file(entry_name(path), options)?;
        let mut src = File::open(path)?;
        io::copy(&mut src, zip)?;
    }
    Ok(())
}

/// Zips `dir` into an anonymous temporary file (deleted when the returned handle is dropped),
/// rewound to its start.
pub fn build(dir: &Path) -> Result<File, TrajectoryError> {
    if std::fs::metadata(dir).is_err() {
        return Err(TrajectoryError::Missing);
    }
    let mut zip = ZipWriter::new(tempfile::tempfile()?);
    add_tree(&mut zip, dir)?;
    let mut file = zip.finish()?;
    file.flush()?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn archive_holds_the_directory_under_its_absolute_name() {
        let d = tempfile::tempdir().unwrap();
        let conv = d
            .path()
            .join("conversations")
            .join("0123456789abcdef0123456789abcdef");
        std::fs::create_dir_all(conv.join("events")).unwrap();
        std::fs::write(conv.join("base_state.json"), b"{}").unwrap();
        std::fs::write(conv.join("events/event-00000-x.json"), b"{\"a\":1}").unwrap();
        let file = build(&conv).unwrap();
        let mut archive = zip::ZipArchive::new(file).unwrap();
        let prefix = entry_name(&conv);
        let mut names: Vec<String> = archive.file_names().map(str::to_string).collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                format!("{prefix}/"),
                format!("{prefix}/base_state.json"),
                format!("{prefix}/events/"),
                format!("{prefix}/events/event-00000-x.json"),
            ]
        );
        let mut text = String::new();
        archive
            .by_name(&format!("{prefix}/events/event-00000-x.json"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"a\":1}");
        assert!(matches!(
            build(&d.path().join("nope")),
            Err(TrajectoryError::Missing)
        ));
    }
}
