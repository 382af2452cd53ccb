//! Server configuration: built-in defaults < optional file (`--config`) < environment.
//!
//! The environment follows the reference's `OH_*` rules (CONFIG.md §6): `OH_FOO` for field `foo`,
//! indexed list items `OH_FOO_0`, `OH_FOO_1`, …, JSON values for lists and dicts, `_IS_NONE` for
//! nulls, the bare `OH` variable holding a whole JSON object, and the legacy `SESSION_API_KEY`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// One outgoing webhook target (CONFIG.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookSpec {
    pub base_url: String,
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// Events buffered per conversation before a batch is posted.
    #[serde(default = "default_event_buffer_size")]
    pub event_buffer_size: u64,
    /// Seconds after the first queued event before a partial batch is posted.
    #[serde(default = "default_flush_delay")]
    pub flush_delay: f64,
    #[serde(default = "default_num_retries")]
    pub num_retries: u64,
    /// Seconds between retries.
    #[serde(default = "default_retry_delay")]
    pub retry_delay: u64,
}

fn default_event_buffer_size() -> u64 {
    5
}
fn default_flush_delay() -> f64 {
    30.0
}
fn default_num_retries() -> u64 {
    3
}
fn default_retry_delay() -> u64 {
    5
}

/// The typed configuration, loaded once in `main` and shared as `web::Data<Config>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Accepted `X-Session-API-Key` values; empty means no authentication.
    pub session_api_keys: Vec<String>,
    /// Allowed CORS origins; empty means localhost origins only.
    pub allow_cors_origins: Vec<String>,
    /// Where each conversation keeps `<hex id>/meta.json`, `base_state.json` and `events/`.
    pub conversations_path: PathBuf,
    /// Where bash command events are stored, one file per event.
    pub bash_events_dir: PathBuf,
    /// Optional directory served under `/static`.
    pub static_files_path: Option<PathBuf>,
    pub webhooks: Vec<WebhookSpec>,
    pub enable_vscode: bool,
    pub vscode_port: u16,
    pub enable_vnc: bool,
    /// Key material for encrypting secrets at rest; `None` means secrets are redacted on disk.
    pub secret_key: Option<String>,
    /// Largest accepted request body in bytes for JSON routes (uploads stream and are not bound by it).
    pub max_body_bytes: usize,
    /// Cap on background bash commands running at the same time.
    pub max_concurrent_bash_commands: usize,
    /// Cap on conversations loaded at once; starting one more is refused (429) until one is
    /// deleted. Conversations restored at start-up are all loaded, even past the cap.
    pub max_conversations: usize,
    /// Cap on live subscribers (event sockets) of one conversation; one more is refused.
    pub max_subscribers_per_conversation: usize,
    /// Largest user message accepted, in bytes of its content's JSON (413 past it). Bounds what
    /// one client event costs in every subscriber's queue and in the event log.
    pub max_event_bytes: usize,
    /// HTTP worker threads (each an event loop). Conversations, commands and disk work run on
    /// their own threads, so one worker is enough for a sandbox's clients; more add throughput
    /// for cheap requests but cost latency when the cores are shared (docs/performance.md).
    pub http_workers: usize,
    /// Set from the `DEBUG` variable: adds a traceback to 500 bodies and lowers the log level.
    pub debug: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            session_api_keys: Vec::new(),
            allow_cors_origins: Vec::new(),
            conversations_path: PathBuf::from("workspace/conversations"),
            bash_events_dir: PathBuf::from("workspace/bash_events"),
            static_files_path: None,
            webhooks: Vec::new(),
            enable_vscode: true,
            vscode_port: 8001,
            enable_vnc: false,
            secret_key: None,
            max_body_bytes: 64 * 1024 * 1024,
            max_concurrent_bash_commands: 256,
            max_conversations: 10_000,
            max_subscribers_per_conversation: 4096,
            max_event_bytes: 16 * 1024 * 1024,
            http_workers: 1,
            debug: false,
        }
    }
}

/// A configuration problem found at start-up; its text names the variable or key at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads defaults, then the optional file, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// Same as [`Config::load`] with an explicit environment (used by tests).
    pub fn load_from(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let defaults =
            serde_json::to_string(&Config::default()).map_err(|e| ConfigError(e.to_string()))?;
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(&defaults, config::FileFormat::Json));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "--config: file not found: {}",
                    path.display()
                )));
            }
            builder = builder.add_source(config::File::from(path));
        }
        let from_env = Value::Object(env_overrides(env)?).to_string();
        builder = builder.add_source(config::File::from_str(&from_env, config::FileFormat::Json));
        let merged = builder.build().map_err(|e| ConfigError(e.to_string()))?;
        let cfg: Config = merged
            .try_deserialize()
            .map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.vscode_port == 0 {
            return Err(ConfigError(
                "OH_VSCODE_PORT: must be between 1 and 65535".into(),
            ));
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            if w.event_buffer_size < 1 {
                return Err(ConfigError(format!(
                    "OH_WEBHOOKS_{i}_EVENT_BUFFER_SIZE: must be >= 1"
                )));
            }
            if w.flush_delay.is_nan() || w.flush_delay <= 0.0 {
                return Err(ConfigError(format!(
                    "OH_WEBHOOKS_{i}_FLUSH_DELAY: must be > 0"
                )));
            }
        }
        for (var, value) in [
            (
                "OH_MAX_CONCURRENT_BASH_COMMANDS",
                self.max_concurrent_bash_commands,
            ),
            ("OH_MAX_CONVERSATIONS", self.max_conversations),
            (
                "OH_MAX_SUBSCRIBERS_PER_CONVERSATION",
                self.max_subscribers_per_conversation,
            ),
            ("OH_MAX_EVENT_BYTES", self.max_event_bytes),
            ("OH_HTTP_WORKERS", self.http_workers),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("{var}: must be >= 1")));
            }
        }
        Ok(())
    }
}

/// The kind of value a field holds, which decides how its variables are parsed.
#[derive(Clone, Copy)]
enum FieldKind {
    Str,
    OptStr,
    Bool,
    Int,
    StrList,
    Webhooks,
}

/// Every field read from the environment, with its kind.
const FIELDS: &[(&str, FieldKind)] = &[
    ("session_api_keys", FieldKind::StrList),
    ("allow_cors_origins", FieldKind::StrList),
    ("conversations_path", FieldKind::Str),
    ("bash_events_dir", FieldKind::Str),
    ("static_files_path", FieldKind::OptStr),
    ("webhooks", FieldKind::Webhooks),
    ("enable_vscode", FieldKind::Bool),
    ("vscode_port", FieldKind::Int),
    ("enable_vnc", FieldKind::Bool),
    ("secret_key", FieldKind::OptStr),
    ("max_body_bytes", FieldKind::Int),
    ("max_concurrent_bash_commands", FieldKind::Int),
    ("max_conversations", FieldKind::Int),
    ("max_subscribers_per_conversation", FieldKind::Int),
    ("max_event_bytes", FieldKind::Int),
    ("http_workers", FieldKind::Int),
];

/// Variable names of every setting, for `.env.example` checks and documentation.
pub const ENV_VARIABLES: &[&str] = &[
    "OH",
    "OH_SESSION_API_KEYS",
    "OH_ALLOW_CORS_ORIGINS",
    "OH_CONVERSATIONS_PATH",
    "OH_BASH_EVENTS_DIR",
    "OH_STATIC_FILES_PATH",
    "OH_WEBHOOKS",
    "OH_ENABLE_VSCODE",
    "OH_VSCODE_PORT",
    "OH_ENABLE_VNC",
    "OH_SECRET_KEY",
    "OH_MAX_BODY_BYTES",
    "OH_MAX_CONCURRENT_BASH_COMMANDS",
    "OH_MAX_CONVERSATIONS",
    "OH_MAX_SUBSCRIBERS_PER_CONVERSATION",
    "OH_MAX_EVENT_BYTES",
    "OH_HTTP_WORKERS",
    "SESSION_API_KEY",
    "DEBUG",
    "LOG_LEVEL",
    "LOG_JSON",
    "RUST_LOG",
];

fn parse_bool(raw: &str) -> bool {
    let v = raw.trim().to_ascii_lowercase();
    v == "1" || v == "true"
}

fn parse_int(var: &str, raw: &str) -> Result<Value, ConfigError> {
    raw.trim()
        .replace('_', "")
        .parse::<i64>()
        .map(Value::from)
        .map_err(|_| ConfigError(format!("{var}: invalid integer {raw:?}")))
}

fn parse_float(var: &str, raw: &str) -> Result<Value, ConfigError> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
        .ok_or_else(|| ConfigError(format!("{var}: invalid number {raw:?}")))
}

fn is_none(env: &HashMap<String, String>, var: &str) -> bool {
    env.get(&format!("{var}_IS_NONE"))
        .is_some_and(|v| parse_bool(v))
}

/// Reads a list: `VAR` as a JSON array (or a count), then indexed `VAR_i` until the first gap.
fn parse_list(
    env: &HashMap<String, String>,
    var: &str,
    base: Option<&Value>,
    item: impl Fn(&str, Option<&Value>) -> Result<Option<Value>, ConfigError>,
) -> Result<Option<Value>, ConfigError> {
    let mut items: Vec<Value> = match base {
        Some(Value::Array(a)) => a.clone(),
        _ => Vec::new(),
    };
    let mut touched = false;
    let mut count: Option<usize> = None;
    if let Some(raw) = env.get(var) {
        touched = true;
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::Array(a)) => items = a,
            Ok(Value::Number(n)) if n.as_u64().is_some() => count = n.as_u64().map(|n| n as usize),
            _ => {
                return Err(ConfigError(format!(
                    "{var}: expected a JSON array, got {raw:?}"
                )));
            }
        }
    }
    let mut i = 0usize;
    loop {
        let item_var = format!("{var}_{i}");
        let existing = items.get(i).cloned();
        match item(&item_var, existing.as_ref())? {
            Some(v) => {
                touched = true;
                if i < items.len() {
                    items[i] = v;
                } else {
                    items.push(v);
                }
            }
            None => {
                if count.is_none_or(|c| i >= c) {
                    break;
                }
            }
        }
        i += 1;
    }
    Ok(touched.then_some(Value::Array(items)))
}

fn webhook_item(
    env: &HashMap<String, String>,
    var: &str,
    base: Option<&Value>,
) -> Result<Option<Value>, ConfigError> {
    let mut obj = match base {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let mut touched = false;
    if let Some(raw) = env.get(var) {
        touched = true;
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(m)) => obj.extend(m),
            _ => {
                return Err(ConfigError(format!(
                    "{var}: expected a JSON object, got {raw:?}"
                )));
            }
        }
    }
    for field in [
        "base_url",
        "headers",
        "event_buffer_size",
        "flush_delay",
        "num_retries",
        "retry_delay",
    ] {
        let fvar = format!("{var}_{}", field.to_ascii_uppercase());
        let Some(raw) = env.get(&fvar) else { continue };
        touched = true;
        let v = match field {
            "base_url" => Value::String(raw.clone()),
            "headers" => match serde_json::from_str::<Value>(raw) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return Err(ConfigError(format!(
                        "{fvar}: expected a JSON object, got {raw:?}"
                    )));
                }
            },
            "flush_delay" => parse_float(&fvar, raw)?,
            _ => parse_int(&fvar, raw)?,
        };
        obj.insert(field.to_string(), v);
    }
    if !touched {
        return Ok(None);
    }
    if !obj.contains_key("base_url") {
        return Err(ConfigError(format!(
            "{var}_BASE_URL: a webhook needs a base_url"
        )));
    }
    Ok(Some(Value::Object(obj)))
}

/// Turns the environment into a JSON object of overrides, following the reference's parser.
fn env_overrides(env: &HashMap<String, String>) -> Result<Map<String, Value>, ConfigError> {
    let base = match env.get("OH") {
        Some(raw) => match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(m)) => m,
            _ => {
                return Err(ConfigError(format!(
                    "OH: expected a JSON object, got {raw:?}"
                )));
            }
        },
        None => Map::new(),
    };
    let mut out = base.clone();
    for (field, kind) in FIELDS {
        let var = format!("OH_{}", field.to_ascii_uppercase());
        let value = match kind {
            FieldKind::Str => env.get(&var).map(|v| Value::String(v.clone())),
            FieldKind::OptStr => {
                if is_none(env, &var) {
                    Some(Value::Null)
                } else {
                    env.get(&var).map(|v| Value::String(v.clone()))
                }
            }
            FieldKind::Bool => env.get(&var).map(|v| Value::Bool(parse_bool(v))),
            FieldKind::Int => env.get(&var).map(|v| parse_int(&var, v)).transpose()?,
            FieldKind::StrList => parse_list(env, &var, base.get(*field), |item_var, _| {
                Ok(env.get(item_var).map(|v| Value::String(v.clone())))
            })?,
            FieldKind::Webhooks => {
                parse_list(env, &var, base.get(*field), |item_var, existing| {
                    webhook_item(env, item_var, existing)
                })?
            }
        };
        if let Some(v) = value {
            out.insert(field.to_string(), v);
        }
    }
    // Legacy single key: it is the key list only when no OH_SESSION_API_KEYS* is set, and it is
    // the default secret key either way.
    if let Some(legacy) = env.get("SESSION_API_KEY").filter(|v| !v.is_empty()) {
        let has_keys_var = env
            .keys()
            .any(|k| k == "OH_SESSION_API_KEYS" || k.starts_with("OH_SESSION_API_KEYS_"))
            || base.contains_key("session_api_keys");
        if !has_keys_var {
            out.insert("session_api_keys".into(), json!([legacy]));
        }
        if !out.contains_key("secret_key") {
            out.insert("secret_key".into(), Value::String(legacy.clone()));
        }
    }
    if let Some(raw) = env.get("DEBUG") {
        let v = raw.trim().to_ascii_lowercase();
        out.insert(
            "debug".into(),
            Value::Bool(v == "1" || v == "true" || v == "yes"),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_environment() {
        assert_eq!(
            Config::load_from(None, &env(&[])).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn indexed_keys_stop_at_first_gap() {
        let c = Config::load_from(
            None,
            &env(&[
                ("OH_SESSION_API_KEYS_0", "a"),
                ("OH_SESSION_API_KEYS_1", "b"),
                ("OH_SESSION_API_KEYS_3", "d"),
            ]),
        )
        .unwrap();
        assert_eq!(c.session_api_keys, vec!["a", "b"]);
    }

    #[test]
    fn json_list_and_plain_string_error() {
        let c = Config::load_from(None, &env(&[("OH_SESSION_API_KEYS", r#"["x","y"]"#)])).unwrap();
        assert_eq!(c.session_api_keys, vec!["x", "y"]);
        let e =
            Config::load_from(None, &env(&[("OH_SESSION_API_KEYS", "plainstring")])).unwrap_err();
        assert!(e.to_string().contains("OH_SESSION_API_KEYS"), "{e}");
    }

    #[test]
    fn legacy_key_is_key_and_secret() {
        let c = Config::load_from(None, &env(&[("SESSION_API_KEY", "k")])).unwrap();
        assert_eq!(c.session_api_keys, vec!["k"]);
        assert_eq!(c.secret_key.as_deref(), Some("k"));
        let c = Config::load_from(
            None,
            &env(&[("SESSION_API_KEY", "k"), ("OH_SESSION_API_KEYS_0", "n")]),
        )
        .unwrap();
        assert_eq!(c.session_api_keys, vec!["n"]);
        assert_eq!(c.secret_key.as_deref(), Some("k"));
    }

    #[test]
    fn webhook_fields_and_defaults() {
        let c = Config::load_from(
            None,
            &env(&[
                ("OH_WEBHOOKS_0_BASE_URL", "http://h"),
                ("OH_WEBHOOKS_0_HEADERS", r#"{"A":"b"}"#),
                ("OH_WEBHOOKS_0_FLUSH_DELAY", "0.5"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.webhooks,
            vec![WebhookSpec {
                base_url: "http://h".into(),
                headers: HashMap::from([("A".to_string(), "b".to_string())]),
                event_buffer_size: 5,
                flush_delay: 0.5,
                num_retries: 3,
                retry_delay: 5
            }]
        );
        assert!(Config::load_from(None, &env(&[("OH_WEBHOOKS_0_FLUSH_DELAY", "1")])).is_err());
    }

    #[test]
    fn bools_ints_nones_and_oh_json() {
        let c = Config::load_from(
            None,
            &env(&[
                ("OH", r#"{"enable_vscode": false, "vscode_port": 9000}"#),
                ("OH_ENABLE_VNC", "TRUE"),
                ("OH_VSCODE_PORT", "9001"),
                ("OH_STATIC_FILES_PATH", "/x"),
                ("OH_STATIC_FILES_PATH_IS_NONE", "1"),
            ]),
        )
        .unwrap();
        assert!(!c.enable_vscode);
        assert!(c.enable_vnc);
        assert_eq!(c.vscode_port, 9001);
        assert_eq!(c.static_files_path, None);
        let c = Config::load_from(None, &env(&[("OH_ENABLE_VSCODE", "yes")])).unwrap();
        assert!(!c.enable_vscode, "only 1/true are true");
        let e = Config::load_from(None, &env(&[("OH_VSCODE_PORT", "0")])).unwrap_err();
        assert!(e.to_string().contains("OH_VSCODE_PORT"));
        let e = Config::load_from(None, &env(&[("OH_VSCODE_PORT", "abc")])).unwrap_err();
        assert!(e.to_string().contains("OH_VSCODE_PORT"));
    }

    #[test]
    fn resource_caps_are_read_and_must_be_positive() {
        let c = Config::load_from(
            None,
            &env(&[
                ("OH_MAX_CONVERSATIONS", "3"),
                ("OH_MAX_SUBSCRIBERS_PER_CONVERSATION", "4"),
                ("OH_MAX_EVENT_BYTES", "1_000"),
                ("OH_HTTP_WORKERS", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (
                c.max_conversations,
                c.max_subscribers_per_conversation,
                c.max_event_bytes,
                c.http_workers
            ),
            (3, 4, 1000, 3)
        );
        assert_eq!(Config::default().http_workers, 1);
        for var in [
            "OH_MAX_CONVERSATIONS",
            "OH_MAX_SUBSCRIBERS_PER_CONVERSATION",
            "OH_MAX_EVENT_BYTES",
            "OH_HTTP_WORKERS",
        ] {
            let e = Config::load_from(None, &env(&[(var, "0")])).unwrap_err();
            assert!(e.to_string().contains(var), "{e}");
            let e = Config::load_from(None, &env(&[(var, "-1")])).unwrap_err();
            assert!(
                e.to_string().contains("invalid") || e.to_string().contains(var),
                "{e}"
            );
        }
    }
}
