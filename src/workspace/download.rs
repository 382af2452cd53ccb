//! The headers and byte ranges of a file download, as the reference's file response builds them:
//! `content-disposition` (plain or RFC 5987 form), `etag` (MD5 of `"<mtime>-<size>"`),
//! `last-modified`, and `Range` / `If-Range` handling with its exact error answers.

use md5::{Digest, Md5};

/// Bytes a download reads from disk at a time.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// `urllib.parse.quote(s)` with its default safe set (`/` plus unreserved characters), on the
/// UTF-8 bytes of `s`.
pub fn python_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `attachment; filename="<name>"`, or `attachment; filename*=utf-8''<quoted>` when quoting
/// changes the name (non-ASCII, spaces, quotes, `%` ...).
pub fn content_disposition(filename: &str) -> String {
    let quoted = python_quote(filename);
    if quoted == filename {
        format!("attachment; filename=\"{filename}\"")
    } else {
        format!("attachment; filename*=utf-8''{quoted}")
    }
}

/// Python's `repr(float)` for a modification time given as seconds and nanoseconds
/// (`st_mtime = sec + nsec * 1e-9`).
pub fn python_mtime_repr(sec: i64, nsec: i64) -> String {
    let f = sec as f64 + nsec as f64 * 1e-9;
    let s = format!("{f}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

/// The quoted entity tag: MD5 hex of `"<repr(st_mtime)>-<st_size>"`.
pub fn etag(mtime_sec: i64, mtime_nsec: i64, size: u64) -> String {
    let base = format!("{}-{}", python_mtime_repr(mtime_sec, mtime_nsec), size);
    let digest = Md5::digest(base.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// An RFC 7231 date (`Sat, 28 Nov 2026 13:25:29 GMT`) for whole seconds since the epoch.
pub fn http_date(sec: i64) -> String {
    chrono::DateTime::from_timestamp(sec, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Why a `Range` header cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeError {
    /// 400, `text/plain` body with this text.
    Malformed(&'static str),
    /// 416 with `content-range: */<size>`.
    NotSatisfiable,
}

/// The byte ranges (start inclusive, end exclusive) a `Range` header asks for, merged the way
/// the reference merges several ranges.
pub fn parse_range(header: &str, size: u64) -> Result<Vec<(u64, u64)>, RangeError> {
    let Some((units, spec)) = header.split_once('=') else {
        return Err(RangeError::Malformed("Malformed range header."));
    };
    if units.trim().to_lowercase() != "bytes" {
        return Err(RangeError::Malformed("Only support bytes range"));
    }
    let size_i = i128::from(size);
    let num = |s: &str| -> i128 { s.parse::<i128>().unwrap_or(i128::MAX) };
    let mut ranges: Vec<(i128, i128)> = Vec::new();
    let bytes = spec.as_bytes();
    let mut i = 0;
    // Every non-overlapping match of `(\d*)-(\d*)`, scanning left to right.
    while i < bytes.len() {
        let start = i;
        let mut j = i;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'-' {
            let a = &spec[start..j];
            let mut k = j + 1;
            while k < bytes.len() && bytes[k].is_ascii_digit() {
                k += 1;
            }
            let b = &spec[j + 1..k];
            i = k;
            if a.is_empty() && b.is_empty() {
                continue;
            }
            let first = if a.is_empty() {
                size_i - num(b)
            } else {
                num(a)
            };
            let last = if !a.is_empty() && !b.is_empty() && num(b) < size_i {
                num(b) + 1
            } else {
                size_i
            };
            ranges.push((first, last));
        } else {
            i = if j > start { j } else { start + 1 };
        }
    }
    if ranges.is_empty() {
        return Err(RangeError::Malformed(
            "Range header: range must be requested",
        ));
    }
    if ranges.iter().any(|(s, _)| !(0 <= *s && *s < size_i)) {
        return Err(RangeError::NotSatisfiable);
    }
    if ranges.iter().any(|(s, e)| s > e) {
        return Err(RangeError::Malformed(
            "Range header: start must be less than end",
        ));
    }
    let to_u64 = |v: i128| u64::try_from(v).unwrap_or(0);
    if ranges.len() == 1 {
        return Ok(ranges
            .into_iter()
            .map(|(s, e)| (to_u64(s), to_u64(e)))
            .collect());
    }
    let mut merged: Vec<(i128, i128)> = Vec::new();
    for (s, e) in ranges {
        let mut placed = false;
        for p in 0..merged.len() {
            let (ps, pe) = merged[p];
            if s > pe {
                continue;
            } else if e < ps {
                merged.insert(p, (s, e));
            } else {
                merged[p] = (s.min(ps), e.max(pe));
            }
            placed = true;
            break;
        }
        if !placed {
            merged.push((s, e));
        }
    }
    Ok(merged
        .into_iter()
        .map(|(s, e)| (to_u64(s), to_u64(e)))
        .collect())
}

/// The part header written before each range of a `multipart/byteranges` body.
pub fn multipart_part_header(
    boundary: &str,
    content_type: &str,
    start: u64,
    end: u64,
    size: u64,
) -> String {
    format!(
        "--{boundary}\nContent-Type: {content_type}\nContent-Range: bytes {start}-{}/{size}\n\n",
        end - 1
    )
}

/// The closing line of a `multipart/byteranges` body.
pub fn multipart_trailer(boundary: &str) -> String {
    format!("\n--{boundary}--\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions() {
        assert_eq!(
            content_disposition("data.bin"),
            "attachment; filename=\"data.bin\""
        );
        assert_eq!(
            content_disposition("with space é.txt"),
            "attachment; filename*=utf-8''with%20space%20%C3%A9.txt"
        );
        assert_eq!(
            content_disposition("q\"uote.txt"),
            "attachment; filename*=utf-8''q%22uote.txt"
        );
        assert_eq!(
            content_disposition("per%cent.txt"),
            "attachment; filename*=utf-8''per%25cent.txt"
        );
        assert_eq!(
            content_disposition("a~b-c_d.e"),
            "attachment; filename=\"a~b-c_d.e\""
        );
    }

    #[test]
    fn etags_match_the_reference_formula() {
        // Values computed with CPython: repr(1764336329 + 123456789 * 1e-9) and hashlib.md5.
        assert_eq!(
            python_mtime_repr(1764336329, 123456789),
            "1764336329.1234567"
        );
        assert_eq!(python_mtime_repr(1764336329, 0), "1764336329.0");
        assert_eq!(
            etag(1764336329, 0, 6),
            "\"e4c909dc7fcc6c609e83840d14f5ecb6\""
        );
        assert_eq!(http_date(1795872329), "Sat, 28 Nov 2026 13:25:29 GMT");
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(vec![(0, 10)]));
        assert_eq!(parse_range("bytes=90-", 100), Ok(vec![(90, 100)]));
        assert_eq!(parse_range("bytes=-10", 100), Ok(vec![(90, 100)]));
        assert_eq!(parse_range("bytes=0-999", 100), Ok(vec![(0, 100)]));
        assert_eq!(parse_range("Bytes = 5-5", 100), Ok(vec![(5, 6)]));
        assert_eq!(
            parse_range("bytes=0-4,10-14", 100),
            Ok(vec![(0, 5), (10, 15)])
        );
        assert_eq!(parse_range("bytes=0-4,3-14", 100), Ok(vec![(0, 15)]));
        assert_eq!(
            parse_range("bytes=10-14,0-4", 100),
            Ok(vec![(0, 5), (10, 15)])
        );
        assert_eq!(
            parse_range("bytes=100-", 100),
            Err(RangeError::NotSatisfiable)
        );
        assert_eq!(
            parse_range("bytes=-200", 100),
            Err(RangeError::NotSatisfiable)
        );
        assert_eq!(parse_range("bytes=0-0", 0), Err(RangeError::NotSatisfiable));
        assert_eq!(
            parse_range("bytes=9-3", 100),
            Err(RangeError::Malformed(
                "Range header: start must be less than end"
            ))
        );
        assert_eq!(
            parse_range("items=0-1", 100),
            Err(RangeError::Malformed("Only support bytes range"))
        );
        assert_eq!(
            parse_range("bytes", 100),
            Err(RangeError::Malformed("Malformed range header."))
        );
        assert_eq!(
            parse_range("bytes=abc", 100),
            Err(RangeError::Malformed(
                "Range header: range must be requested"
            ))
        );
        assert_eq!(
            parse_range("bytes=-", 100),
            Err(RangeError::Malformed(
                "Range header: range must be requested"
            ))
        );
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 100),
            Err(RangeError::NotSatisfiable)
        );
    }

    #[test]
    fn multipart_layout() {
        assert_eq!(
            multipart_part_header("b", "application/octet-stream", 0, 5, 100),
            "--b\nContent-Type: application/octet-stream\nContent-Range: bytes 0-4/100\n\n"
        );
        assert_eq!(multipart_trailer("b"), "\n--b--\n");
    }
}
