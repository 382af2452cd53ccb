//! Bash event models and their wire rules, written once: `BashCommand` / `BashOutput` JSON (key
//! order as the reference emits it, 32-hex ids, UTC timestamps with `Z`), file names on disk, and
//! the validation of an `ExecuteBashRequest` body (EVENTS.md §5, PERSISTENCE.md §7).

use chrono::{DateTime, NaiveDateTime, SubsecRound, Timelike, Utc};
use schemars::JsonSchema;
use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::ApiError;
use crate::http::validate::Checker;
use crate::loc;

/// Default `timeout` (seconds) of an `ExecuteBashRequest`.
pub const DEFAULT_TIMEOUT: i64 = 300;

/// The two kinds of bash event (the `kind` field and the middle of a file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Command,
    Output,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Command => "BashCommand",
            EventKind::Output => "BashOutput",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        match s {
            "BashCommand" => Some(EventKind::Command),
            "BashOutput" => Some(EventKind::Output),
            _ => None,
        }
    }
}

/// The body of `start_bash_command` / `execute_bash_command` and of a bash-socket frame.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
pub struct ExecuteBashRequest {
    pub command: String,
    pub cwd: Option<String>,
    /// Seconds the command may run before its process group is killed.
    #[schemars(default = "default_timeout")]
    pub timeout: i64,
}

fn default_timeout() -> i64 {
    DEFAULT_TIMEOUT
}

impl ExecuteBashRequest {
    /// Validates a decoded JSON body as the reference's pydantic model does (422 items at
    /// `["body", field]`); unknown fields are ignored.
    pub fn from_json(body: &Value) -> Result<ExecuteBashRequest, ApiError> {
        let mut c = Checker::new();
        let Some(obj) = c.model(body, loc!["body"]) else {
            c.finish()?;
            return Err(ApiError::internal("model"));
        };
        let command = c.required(obj, &[Value::from("body")], "command").cloned();
        let command = command.and_then(|v| c.string(&v, loc!["body", "command"]));
        let cwd = match obj.get("cwd") {
            None | Some(Value::Null) => None,
            Some(v) => c.string(v, loc!["body", "cwd"]),
        };
        let timeout = match obj.get("timeout") {
            None => Some(DEFAULT_TIMEOUT),
            Some(v) => c.int(v, loc!["body", "timeout"]),
        };
        c.finish()?;
        match (command, timeout) {
            (Some(command), Some(timeout)) => Ok(ExecuteBashRequest {
                command,
                cwd,
                timeout,
            }),
            _ => Err(ApiError::internal("validation")),
        }
    }
}

/// A command as recorded in the bash event log.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(transform = crate::openapi::KindTag("BashCommand"))]
pub struct BashCommand {
    pub command: String,
    pub cwd: Option<String>,
    pub timeout: i64,
    /// 32 hex digits.
    #[schemars(with = "String")]
    pub id: Uuid,
    pub timestamp: DateTime<Utc>,
}

impl BashCommand {
    /// A new command event for `req`, stamped now.
    pub fn new(req: ExecuteBashRequest) -> BashCommand {
        BashCommand {
            command: req.command,
            cwd: req.cwd,
            timeout: req.timeout,
            id: Uuid::new_v4(),
            timestamp: now(),
        }
    }
}

/// One piece of a command's output; the last one carries `exit_code`.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(transform = crate::openapi::KindTag("BashOutput"))]
pub struct BashOutput {
    /// 32 hex digits.
    #[schemars(with = "String")]
    pub id: Uuid,
    pub timestamp: DateTime<Utc>,
    /// The `id` of the BashCommand, 32 hex digits.
    #[schemars(with = "String")]
    pub command_id: Uuid,
    /// 0, 1, 2, … across both streams of one command.
    pub order: i64,
    /// `None` while more output follows; -1 for a timeout or a spawn error.
    pub exit_code: Option<i64>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

impl BashOutput {
    /// A new output event of `command_id`, stamped now.
    pub fn new(
        command_id: Uuid,
        order: i64,
        exit_code: Option<i64>,
        stdout: Option<String>,
        stderr: Option<String>,
    ) -> BashOutput {
        BashOutput {
            id: Uuid::new_v4(),
            timestamp: now(),
            command_id,
            order,
            exit_code,
            stdout,
            stderr,
        }
    }
}

/// Either event, as stored and served.
#[derive(Debug, Clone, PartialEq)]
pub enum BashEvent {
    Command(BashCommand),
    Output(BashOutput),
}

impl BashEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            BashEvent::Command(_) => EventKind::Command,
            BashEvent::Output(_) => EventKind::Output,
        }
    }

    pub fn id(&self) -> Uuid {
        match self {
            BashEvent::Command(c) => c.id,
            BashEvent::Output(o) => o.id,
        }
    }

    pub fn timestamp(&self) -> DateTime<Utc> {
        match self {
            BashEvent::Command(c) => c.timestamp,
            BashEvent::Output(o) => o.timestamp,
        }
    }

    /// The command an output belongs to (`None` for a command).
    pub fn command_id(&self) -> Option<Uuid> {
        match self {
            BashEvent::Command(_) => None,
            BashEvent::Output(o) => Some(o.command_id),
        }
    }

    /// The output's `order`; commands sort before their outputs within one timestamp.
    pub fn order(&self) -> i64 {
        match self {
            BashEvent::Command(_) => -1,
            BashEvent::Output(o) => o.order,
        }
    }

    /// `YYYYMMDDHHMMSS_BashCommand_<id>` or `YYYYMMDDHHMMSS_BashOutput_<command id>_<id>`.
    pub fn file_name(&self) -> String {
        let second = self.timestamp().format("%Y%m%d%H%M%S");
        match self {
            BashEvent::Command(c) => format!("{second}_BashCommand_{}", c.id.simple()),
            BashEvent::Output(o) => format!(
                "{second}_BashOutput_{}_{}",
                o.command_id.simple(),
                o.id.simple()
            ),
        }
    }
}

impl Serialize for BashCommand {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("BashCommand", 6)?;
        st.serialize_field("command", &self.command)?;
        st.serialize_field("cwd", &self.cwd)?;
        st.serialize_field("timeout", &self.timeout)?;
        st.serialize_field("kind", "BashCommand")?;
        st.serialize_field("id", &self.id.simple().to_string())?;
        st.serialize_field("timestamp", &format_timestamp(self.timestamp))?;
        st.end()
    }
}

impl Serialize for BashOutput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("BashOutput", 8)?;
        st.serialize_field("kind", "BashOutput")?;
        st.serialize_field("id", &self.id.simple().to_string())?;
        st.serialize_field("timestamp", &format_timestamp(self.timestamp))?;
        st.serialize_field("command_id", &self.command_id.simple().to_string())?;
        st.serialize_field("order", &self.order)?;
        st.serialize_field("exit_code", &self.exit_code)?;
        st.serialize_field("stdout", &self.stdout)?;
        st.serialize_field("stderr", &self.stderr)?;
        st.end()
    }
}

impl Serialize for BashEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BashEvent::Command(c) => c.serialize(s),
            BashEvent::Output(o) => o.serialize(s),
        }
    }
}

/// Now, in UTC, at the microsecond resolution the wire format carries.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// `2026-11-28T13:08:20.616802Z`; the fraction is omitted when it is zero (Python's isoformat).
pub fn format_timestamp(t: DateTime<Utc>) -> String {
    if t.nanosecond() / 1000 == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

/// The metadata encoded in a bash event file name.
#[derive(Debug, Clone, PartialEq)]
pub struct FileName {
    /// The event's UTC time truncated to the second.
    pub second: NaiveDateTime,
    pub kind: EventKind,
    /// The event id exactly as written (the lookup key).
    pub id: String,
    pub command_id: Option<Uuid>,
}

/// Parses `YYYYMMDDHHMMSS_<Kind>_<hex>[_<hex>]`; anything else is not a bash event file.
pub fn parse_file_name(name: &str) -> Option<FileName> {
    let mut parts = name.split('_');
    let second = NaiveDateTime::parse_from_str(parts.next()?, "%Y%m%d%H%M%S").ok()?;
    let kind = EventKind::parse(parts.next()?)?;
    let (id, command_id) = match kind {
        EventKind::Command => (parts.next()?, None),
        EventKind::Output => {
            let command = Uuid::try_parse(parts.next()?).ok()?;
            (parts.next()?, Some(command))
        }
    };
    if parts.next().is_some() || Uuid::try_parse(id).is_err() {
        return None;
    }
    Some(FileName {
        second,
        kind,
        id: id.to_string(),
        command_id,
    })
}

/// The spawn-failure text of the reference (Python's `OSError` string):
/// `Error executing command: [Errno 2] No such file or directory: '/nonexistent/dir'`.
pub fn spawn_error_text(errno: Option<i32>, detail: &str, path: Option<&str>) -> String {
    let core = match errno {
        Some(n) => format!("[Errno {n}] {}", nix::errno::Errno::from_raw(n).desc()),
        None => detail.to_string(),
    };
    match path {
        Some(p) => format!(
            "Error executing command: {core}: {}",
            crate::llm::pyjson::repr_str(p)
        ),
        None => format!("Error executing command: {core}"),
    }
}

/// Parses a query datetime as pydantic does (`2026-11-28T13:08:20.5+01:00`, a space or `T`,
/// optional seconds, fraction and offset; a bare date; or a Unix timestamp in seconds, or in
/// milliseconds when larger than 2e10). The result is the wall-clock time as written: the offset
/// is ignored (the reference compares the rendering without time-zone conversion); a Unix
/// timestamp is read in UTC. The error is the message of a `datetime_from_date_parsing` item.
pub fn parse_query_datetime(raw: &str) -> Result<NaiveDateTime, String> {
    use chrono::NaiveDate;
    let s = raw.trim();
    if let Ok(n) = s.parse::<f64>() {
        if !n.is_finite() {
            return Err("Input should be a finite number".into());
        }
        let secs = if n.abs() > 2e10 { n / 1000.0 } else { n };
        let whole = secs.floor();
        let micros = ((secs - whole) * 1e6).round() as i64;
        return DateTime::from_timestamp(whole as i64, 0)
            .map(|t| (t + chrono::Duration::microseconds(micros)).naive_utc())
            .ok_or_else(|| {
                "Input should be a valid datetime or date, timestamp out of range".into()
            });
    }
    static FORMAT: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt _](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?)?$",
        )
        .ok()
    });
    let caps = FORMAT
        .as_ref()
        .and_then(|re| re.captures(s))
        .ok_or_else(|| {
            if s.len() < 10 {
                "Input should be a valid datetime or date, input is too short".to_string()
            } else {
                "Input should be a valid datetime or date, invalid character".to_string()
            }
        })?;
    let num = |i: usize| {
        caps.get(i)
            .map(|m| m.as_str().parse::<u32>().unwrap_or(u32::MAX))
            .unwrap_or(0)
    };
    let year = caps
        .get(1)
        .and_then(|m| m.as_str().parse::<i32>().ok())
        .unwrap_or(0);
    let date = NaiveDate::from_ymd_opt(year, num(2), num(3)).ok_or_else(|| {
        "Input should be a valid datetime or date, day value is outside expected range".to_string()
    })?;
    let nanos = caps
        .get(7)
        .map(|m| format!("{:0<9}", m.as_str()).parse::<u32>().unwrap_or(0))
        .unwrap_or(0);
    date.and_hms_nano_opt(num(4), num(5), num(6), nanos)
        .ok_or_else(|| {
            "Input should be a valid datetime, time value is outside expected range".to_string()
        })
}

/// The `{"cleared_count": n}` body of `DELETE /api/bash/bash_events`.
pub fn cleared_body(n: usize) -> Value {
    json!({ "cleared_count": n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(micros: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 13, 8, 20).unwrap()
            + chrono::Duration::microseconds(micros as i64)
    }

    #[test]
    fn wire_shapes_keep_key_order() {
        let id = Uuid::parse_str("bbf194f4acef41c897d0b496988e735e").unwrap();
        let cmd = BashCommand {
            command: "ls".into(),
            cwd: None,
            timeout: 30,
            id,
            timestamp: at(616802),
        };
        assert_eq!(
            serde_json::to_string(&cmd).unwrap(),
            r#"{"command":"ls","cwd":null,"timeout":30,"kind":"BashCommand","id":"bbf194f4acef41c897d0b496988e735e","timestamp":"2026-11-28T13:08:20.616802Z"}"#
        );
        let out = BashOutput {
            id,
            timestamp: at(0),
            command_id: id,
            order: 0,
            exit_code: Some(3),
            stdout: Some("out\n".into()),
            stderr: None,
        };
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"kind":"BashOutput","id":"bbf194f4acef41c897d0b496988e735e","timestamp":"2026-11-28T13:08:20Z","command_id":"bbf194f4acef41c897d0b496988e735e","order":0,"exit_code":3,"stdout":"out\n","stderr":null}"#
        );
        let name = BashEvent::Output(out).file_name();
        assert_eq!(
            name,
            "20261128130820_BashOutput_bbf194f4acef41c897d0b496988e735e_bbf194f4acef41c897d0b496988e735e"
        );
        assert_eq!(
            parse_file_name(&name),
            Some(FileName {
                second: at(0).naive_utc(),
                kind: EventKind::Output,
                id: id.simple().to_string(),
                command_id: Some(id)
            })
        );
        assert_eq!(parse_file_name("20261128130820_BashCommand_zz"), None);
        assert_eq!(parse_file_name("notes.txt"), None);
    }

    #[test]
    fn request_validation() {
        let ok =
            ExecuteBashRequest::from_json(&json!({"command": "ls", "timeout": "12", "extra": 1}))
                .unwrap();
        assert_eq!(
            ok,
            ExecuteBashRequest {
                command: "ls".into(),
                cwd: None,
                timeout: 12
            }
        );
        let kinds = |v: Value| match ExecuteBashRequest::from_json(&v) {
            Err(ApiError::Validation(items)) => items
                .iter()
                .map(|i| (i.kind.clone(), i.loc.clone()))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            kinds(json!({})),
            vec![("missing".to_string(), loc!["body", "command"])]
        );
        assert_eq!(
            kinds(json!({"command": 123})),
            vec![("string_type".to_string(), loc!["body", "command"])]
        );
        assert_eq!(
            kinds(json!({"command": "x", "timeout": "soon"})),
            vec![("int_parsing".to_string(), loc!["body", "timeout"])]
        );
    }

    #[test]
    fn query_datetimes() {
        let t = |s: &str| parse_query_datetime(s).map(|d| d.format("%Y%m%d%H%M%S").to_string());
        assert_eq!(t("2026-11-28T14:08:23+01:00"), Ok("20261128140823".into()));
        assert_eq!(t("2026-11-28 14:08:23.999Z"), Ok("20261128140823".into()));
        assert_eq!(t("2026-11-28"), Ok("20261128000000".into()));
        assert_eq!(t("2026-11-28T14:08"), Ok("20261128140800".into()));
        assert_eq!(t("0"), Ok("19700101000000".into()));
        assert_eq!(t("1700000000000"), Ok("20231114221320".into()));
        assert!(t("x").is_err());
        assert!(t("2026-13-01").is_err());
        assert!(t("2026-11-28T25:00").is_err());
    }

    #[test]
    fn spawn_error_matches_python() {
        assert_eq!(
            spawn_error_text(Some(2), "", Some("/nonexistent/dir")),
            "Error executing command: [Errno 2] No such file or directory: '/nonexistent/dir'"
        );
        assert_eq!(crate::llm::pyjson::repr_str("it's"), "\"it's\"");
    }
}
