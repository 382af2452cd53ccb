//! Property tests of the path rules against hostile input: URL tails, `PurePath` normalisation,
//! `Path.resolve()` over a tree of directories, symlinks (relative, absolute, chained, looping)
//! and missing parts, upload targets, download headers and byte ranges. No input panics; the
//! results keep the reference's rules (absolute stays absolute, `..` is never dropped lexically,
//! an existing path resolves to what the kernel resolves it to).

use std::path::{Component, Path, PathBuf};
use std::sync::LazyLock;

use proptest::prelude::*;

use super::download::{content_disposition, parse_range};
use super::pypath::{pure_path, resolve, url_tail};
use super::upload::write_target;

/// A scratch tree shared by the cases: `a/b/`, `a/file`, `rel -> a/b`, `abs -> <root>/a`,
/// `up -> ..`, `chain -> rel`, `loop -> loop`, `dangling -> missing/x`, `a/b/back -> ../..`.
static TREE: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical root");
    std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
    std::fs::write(root.join("a/file"), b"x").expect("write");
    let link = |target: &Path, name: &str| {
        std::os::unix::fs::symlink(target, root.join(name)).expect("symlink")
    };
    link(Path::new("a/b"), "rel");
    link(&root.join("a"), "abs");
    link(Path::new(".."), "up");
    link(Path::new("rel"), "chain");
    link(Path::new("loop"), "loop");
    link(Path::new("missing/x"), "dangling");
    link(Path::new("../.."), "a/b/back");
    (dir, root)
});

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "a", "b", "file", "rel", "abs", "up", "chain", "loop", "dangling", "back", "missing",
            "..", ".", "", "%2e%2e", "%2F", "%FF", "\u{FFFD}",
        ])
        .prop_map(str::to_string),
        "[^/\u{0}]{0,6}",
    ]
}

fn relative_path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..8).prop_map(|s| s.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn url_tails_never_panic(raw in ".*", prefix in "/[a-z/]{0,12}") {
        if let Some(t) = url_tail(&raw, &prefix) {
            let decoded = percent_encoding::percent_decode_str(&raw).decode_utf8_lossy();
            prop_assert_eq!(format!("{prefix}{t}"), decoded.into_owned());
        }
    }

    #[test]
    fn pure_paths_keep_absoluteness_and_dot_dot(s in "(/?)([^\u{0}]{0,40})") {
        let p = pure_path(&s);
        prop_assert_eq!(p.is_absolute(), s.starts_with('/'));
        prop_assert_eq!(pure_path(&p.to_string_lossy()), p.clone(), "idempotent");
        let dots_in = Path::new(&s)
            .components()
            .filter(|c| *c == Component::ParentDir)
            .count();
        let dots_out = p.components().filter(|c| *c == Component::ParentDir).count();
        prop_assert_eq!(dots_in, dots_out, "`..` is kept, never folded away");
        prop_assert!(p.components().all(|c| c != Component::CurDir) || p == Path::new("."));
    }

    #[test]
    fn resolve_agrees_with_the_kernel_on_existing_paths(rel in relative_path(), absolute in any::<bool>()) {
        let (_, root) = &*TREE;
        let input = if absolute { format!("{}/{rel}", root.display()) } else { rel.clone() };
        let resolved = resolve(root, &input);
        prop_assert!(resolved.is_absolute(), "{input:?} -> {resolved:?}");
        let joined = root.join(&input);
        if let Ok(real) = std::fs::canonicalize(&joined) {
            prop_assert_eq!(&resolved, &real, "{:?}", input);
        }
        if std::fs::symlink_metadata(&resolved).is_ok() && !resolved.to_string_lossy().contains("loop") {
            prop_assert_eq!(std::fs::canonicalize(&resolved).ok(), Some(resolved.clone()));
        }
    }

    #[test]
    fn upload_targets_end_in_a_non_link_or_report_a_loop(rel in relative_path()) {
        let (_, root) = &*TREE;
        let requested = root.join(&rel);
        match write_target(&requested) {
            Some(t) => {
                let is_link = std::fs::symlink_metadata(&t).map(|m| m.file_type().is_symlink()).unwrap_or(false);
                prop_assert!(!is_link, "{requested:?} -> {t:?} is still a link");
            }
            None => prop_assert!(rel.split('/').any(|s| s == "loop") || rel.contains("loop"), "{rel:?}"),
        }
    }

    #[test]
    fn download_headers_are_always_valid(name in ".{0,40}") {
        let v = content_disposition(&name);
        prop_assert!(actix_web::http::header::HeaderValue::from_str(&v).is_ok(), "{v:?}");
    }

    #[test]
    fn byte_ranges_stay_inside_the_file(header in "[a-zA-Z =,0-9-]{0,40}", size in 0u64..10_000) {
        if let Ok(ranges) = parse_range(&header, size) {
            for (start, end) in ranges {
                prop_assert!(start < end && end <= size, "{header:?} -> {start}..{end} of {size}");
            }
        }
    }
}
