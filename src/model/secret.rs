//! Secret values (LLM keys, static secrets, secret-looking lookup headers) and how they are
//! written in each context (EVENTS.md §7): masked in API responses and `base_state.json`,
//! encrypted (or masked without a key) in `meta.json`, plain only where the agent uses them.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::store::cipher::Fernet;

/// What the API shows instead of a secret.
pub const MASK: &str = "**********";

/// How secrets are serialized right now (thread-local; see [`with_secret_mode`]).
#[derive(Clone, Default)]
pub enum SecretMode {
    /// `"**********"`: API responses, WebSocket, webhooks, `base_state.json`.
    #[default]
    Mask,
    /// `meta.json` with a key: Fernet tokens.
    Encrypt(Arc<Fernet>),
    /// The plain value (only for tests and outgoing LLM requests built from JSON).
    Plain,
}

/// How secrets are read right now (thread-local; see [`with_secret_read`]).
#[derive(Clone, Default)]
pub enum SecretRead {
    /// Client input: `""`, whitespace and the mask itself mean "no secret".
    #[default]
    Input,
    /// `meta.json`: decrypt tokens with the key; without a key (or on failure) the secret is lost.
    Decrypt(Option<Arc<Fernet>>),
}

thread_local! {
    static MODE: RefCell<SecretMode> = const { RefCell::new(SecretMode::Mask) };
    static READ: RefCell<SecretRead> = const { RefCell::new(SecretRead::Input) };
}

/// Runs `f` with secrets serialized in `mode`.
pub fn with_secret_mode<R>(mode: SecretMode, f: impl FnOnce() -> R) -> R {
    let prev = MODE.with(|m| m.replace(mode));
    let r = f();
    MODE.with(|m| *m.borrow_mut() = prev);
    r
}

/// Runs `f` with secrets deserialized by `read`.
pub fn with_secret_read<R>(read: SecretRead, f: impl FnOnce() -> R) -> R {
    let prev = READ.with(|m| m.replace(read));
    let r = f();
    READ.with(|m| *m.borrow_mut() = prev);
    r
}

/// A secret string. `Debug` never shows it; `Serialize` follows the current [`SecretMode`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The plain value, for the code that actually uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(**********)")
    }
}

/// Serializes a secret string in the current mode.
fn write_secret<S: Serializer>(plain: &str, s: S) -> Result<S::Ok, S::Error> {
    MODE.with(|m| match &*m.borrow() {
        SecretMode::Mask => s.serialize_str(MASK),
        SecretMode::Plain => s.serialize_str(plain),
        SecretMode::Encrypt(f) => s.serialize_str(&f.encrypt(plain.as_bytes())),
    })
}

/// Reads a secret string in the current read mode; `None` when it means "no secret".
fn read_secret(raw: String) -> Option<String> {
    READ.with(|m| match &*m.borrow() {
        SecretRead::Input => {
            if raw.trim().is_empty() || raw == MASK {
                None
            } else {
                Some(raw)
            }
        }
        SecretRead::Decrypt(cipher) => {
            if raw == MASK {
                return None;
            }
            match cipher {
                Some(c) => match c.decrypt(&raw) {
                    Some(plain) => String::from_utf8(plain).ok(),
                    None => {
                        log::warn!("a stored secret could not be decrypted with the configured key; it is dropped");
                        None
                    }
                },
                None => {
                    log::warn!("a stored secret cannot be restored without OH_SECRET_KEY; it is dropped");
                    None
                }
            }
        }
    })
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        write_secret(&self.0, s)
    }
}

/// `Option<Secret>` fields use this: `deserialize_with = "secret::opt"`.
pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.and_then(read_secret).map(Secret))
}

/// Whether a lookup-secret header name is secret (contains AUTHORIZATION, KEY or SECRET).
pub fn is_secret_header(name: &str) -> bool {
    let up = name.to_ascii_uppercase();
    up.contains("AUTHORIZATION") || up.contains("KEY") || up.contains("SECRET")
}

/// Lookup-secret headers: secret-named ones are masked/encrypted like any secret (DEVIATIONS #14).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Headers(pub Vec<(String, String)>);

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct One<'a>(&'a str);
        impl Serialize for One<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                write_secret(self.0, s)
            }
        }
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            if is_secret_header(k) {
                m.serialize_entry(k, &One(v))?;
            } else {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m: Map<String, Value> = Map::deserialize(d)?;
        let mut out = Vec::with_capacity(m.len());
        for (k, v) in m {
            let s = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            if is_secret_header(&k) {
                // an unreadable secret header is kept empty rather than failing the whole load
                out.push((k, read_secret(s).unwrap_or_default()));
            } else {
                out.push((k, s));
            }
        }
        Ok(Headers(out))
    }
}
