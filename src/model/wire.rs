//! Wire rules written once: id and timestamp formats, the two JSON renderings of every model
//! (API form with `null`s, disk form without them), and the Python `json.dumps` formatter used
//! for files the reference must be able to read back.

use std::cell::Cell;
use std::io;

use chrono::{DateTime, Local, NaiveDateTime, Timelike, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

thread_local! {
    /// True while serializing the "disk" form: `Option` fields that are `None` are left out
    /// (pydantic's `exclude_none`). Free-form JSON values (`Value`) keep their inner `null`s.
    static OMIT_NONE: Cell<bool> = const { Cell::new(false) };
}

/// `skip_serializing_if` for `Option` model fields: skipped only in the disk form.
pub fn skip_none<T>(v: &Option<T>) -> bool {
    v.is_none() && OMIT_NONE.with(|m| m.get())
}

/// Whether the disk (null-free) form is being produced right now.
pub fn omitting_none() -> bool {
    OMIT_NONE.with(|m| m.get())
}

struct OmitGuard(bool);
impl Drop for OmitGuard {
    fn drop(&mut self) {
        OMIT_NONE.with(|m| m.set(self.0));
    }
}

/// Runs `f` with the disk form switched on (restores the previous mode afterwards).
pub fn with_omit_none<R>(f: impl FnOnce() -> R) -> R {
    let _g = OmitGuard(OMIT_NONE.with(|m| m.replace(true)));
    f()
}

/// Compact API JSON (`{"a":1}`), `null`s included, UTF-8 unescaped.
pub fn to_api_string<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| {
        log::error!("serialization failed: {e}");
        "null".to_string()
    })
}

/// The disk form the reference writes for events and `base_state.json`: `null` model fields
/// omitted, `", "`/`": "` separators, non-ASCII escaped as `\uXXXX`.
pub fn to_python_json<T: Serialize + ?Sized>(v: &T) -> io::Result<Vec<u8>> {
    with_omit_none(|| {
        let mut out = Vec::with_capacity(512);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
        v.serialize(&mut ser).map_err(io::Error::other)?;
        Ok(out)
    })
}

/// A value in the null-free form, as a `Value` (for `full_state`).
pub fn to_value_omit_none<T: Serialize + ?Sized>(v: &T) -> Value {
    with_omit_none(|| serde_json::to_value(v).unwrap_or(Value::Null))
}

/// Removes `null` members from objects, recursively (for free-form models kept as `Value`,
/// such as actions and observations, whose disk form drops `null` fields).
pub fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// `json.dumps` defaults: `", "` and `": "` separators and `ensure_ascii`.
pub struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        let mut buf = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut buf) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// A new event id: a random UUID4 with dashes.
pub fn new_event_id() -> String {
    Uuid::new_v4().hyphenated().to_string()
}

/// Renders a naive date-time as Python's `isoformat()`: 6 fraction digits, none when zero.
pub fn python_isoformat(t: &NaiveDateTime) -> String {
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

/// An event timestamp: naive local time, `datetime.now().isoformat()`.
pub fn event_timestamp_now() -> String {
    python_isoformat(&Local::now().naive_local())
}

/// A `created_at`/`updated_at` value: UTC with a `Z` suffix (fraction omitted when zero).
pub fn utc_timestamp(t: &DateTime<Utc>) -> String {
    format!("{}Z", python_isoformat(&t.naive_utc()))
}

/// Now as a `created_at`/`updated_at` value.
pub fn utc_now() -> String {
    utc_timestamp(&Utc::now())
}

/// Conversation ids: dashed in `ConversationInfo.id`, 32-hex in directory names and page ids.
pub fn dashed(id: &Uuid) -> String {
    id.hyphenated().to_string()
}

pub fn hex(id: &Uuid) -> String {
    id.simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use serde_json::json;

    #[test]
    fn isoformat_omits_zero_fraction() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        assert_eq!(
            python_isoformat(&d.and_hms_micro_opt(13, 6, 46, 41000).unwrap()),
            "2026-11-28T13:06:46.041000"
        );
        assert_eq!(
            python_isoformat(&d.and_hms_opt(13, 6, 46).unwrap()),
            "2026-11-28T13:06:46"
        );
    }

    #[test]
    fn python_formatter_matches_json_dumps() {
        let v = json!({"a": [1, 2], "b": "é→😀", "c": null, "d": {"x": "q\"\n"}});
        let out = String::from_utf8(to_python_json(&v).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"a": [1, 2], "b": "\u00e9\u2192\ud83d\ude00", "c": null, "d": {"x": "q\"\n"}}"#
        );
    }
}
