//! Logger set-up: `env_logger` with the level from `RUST_LOG`, else `LOG_LEVEL`, else `DEBUG`
//! (debug) or info; `LOG_JSON=true` prints one JSON object per line.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// True when log lines are JSON objects (`LOG_JSON=true`).
pub fn json_enabled() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Installs the global logger once; later calls are no-ops (tests start many servers).
pub fn init(debug: bool) {
    let json = std::env::var("LOG_JSON")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    JSON.store(json, Ordering::Relaxed);
    let default_level = std::env::var("LOG_LEVEL")
        .ok()
        .map(|l| l.to_ascii_lowercase())
        .unwrap_or_else(|| if debug { "debug".into() } else { "info".into() });
    let mut b =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level));
    if json {
        b.format(|buf, record| {
            let line = serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "level": record.level().as_str(),
                "target": record.target(),
                "message": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    }
    let _ = b.try_init();
}
