//! Request decoding with FastAPI/pydantic-shaped 422 errors: the JSON body extractor, the query
//! extractor, and small checkers that collect every validation problem of a request in one list.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::config::Config;
use crate::error::{ApiError, ValidationItem};

/// Builds a `loc` list: `loc!["body", "content", 0]`.
#[macro_export]
macro_rules! loc {
    ($($part:expr),* $(,)?) => { vec![$(serde_json::Value::from($part)),*] };
}

/// The request body as JSON, decoded the way FastAPI does it: an absent body is `missing`, a body
/// that is not JSON is `json_invalid` (with the character offset), a non-JSON content type is
/// passed on as a string (the model check then reports `model_attributes_type`).
#[derive(Debug, Clone)]
pub struct JsonBody(pub Value);

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<Config>>()
            .map(|c| c.max_body_bytes)
            .unwrap_or(64 << 20);
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let ct = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                ct == "application/json"
                    || (ct.starts_with("application/") && ct.ends_with("+json"))
            });
        let mut payload = payload.take();
        Box::pin(async move {
            let mut buf = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::client(actix_web::http::StatusCode::BAD_REQUEST, e.to_string())
                })?;
                if buf.len() + chunk.len() > limit {
                    return Err(ApiError::client(
                        actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                        "Request body too large",
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            decode_body(&buf, is_json).map(JsonBody)
        })
    }
}

/// The decoding rules of [`JsonBody`], separated for unit tests.
pub fn decode_body(bytes: &[u8], content_type_json: Option<bool>) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::validation(ValidationItem::new(
            "missing",
            loc!["body"],
            "Field required",
            Value::Null,
        )));
    }
    if content_type_json == Some(false) {
        return Ok(Value::String(String::from_utf8_lossy(bytes).into_owned()));
    }
    serde_json::from_slice::<Value>(bytes).map_err(|e| {
        let text = String::from_utf8_lossy(bytes);
        let offset = if e.classify() == serde_json::error::Category::Eof {
            text.chars().count()
        } else {
            char_offset(&text, e.line(), e.column())
        };
        ApiError::validation(
            ValidationItem::new(
                "json_invalid",
                loc!["body", offset],
                "JSON decode error",
                json!({}),
            )
            .with_ctx(json!({ "error": python_json_error(&e) })),
        )
    })
}

fn char_offset(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split('\n').enumerate() {
        if i + 1 == line {
            return offset + column.saturating_sub(1).min(l.chars().count());
        }
        offset += l.chars().count() + 1;
    }
    offset
}

fn python_json_error(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "Expecting value",
        _ => {
            let msg = e.to_string();
            if msg.contains("key must be a string") {
                "Expecting property name enclosed in double quotes"
            } else if msg.contains("expected `,` or `}`") {
                "Expecting ',' delimiter"
            } else {
                "Expecting value"
            }
        }
    }
}

/// The raw query pairs, percent-decoded, in order (repeated names kept).
#[derive(Debug, Clone, Default)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    pub fn parse(query: &str) -> Self {
        QueryPairs(url_pairs(query).into_iter().collect())
    }
    /// The last value given for `name` (Starlette keeps the last one).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

impl FromRequest for QueryPairs {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(QueryPairs::parse(req.query_string())))
    }
}

/// Collects validation problems; `finish` turns them into one 422.
#[derive(Debug, Default)]
pub struct Checker {
    pub errors: Vec<ValidationItem>,
}

impl Checker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, item: ValidationItem) {
        self.errors.push(item);
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.errors))
        }
    }

    /// The body must be an object (a model); anything else is `model_attributes_type`.
    pub fn model<'a>(&mut self, v: &'a Value, loc: Vec<Value>) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                // FastAPI validates the decoded body in Python mode, where a model accepts any
                // object with attributes: every non-dict is `model_attributes_type`.
                self.push(ValidationItem::new(
                    "model_attributes_type",
                    loc,
                    "Input should be a valid dictionary or object to extract fields from",
                    other.clone(),
                ));
                None
            }
        }
    }

    /// A required field: `missing` (with the whole object as input) when absent.
    pub fn required<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        loc: &[Value],
        name: &str,
    ) -> Option<&'a Value> {
        match obj.get(name) {
            Some(v) => Some(v),
            None => {
                let mut l = loc.to_vec();
                l.push(Value::from(name));
                self.push(ValidationItem::new(
                    "missing",
                    l,
                    "Field required",
                    Value::Object(obj.clone()),
                ));
                None
            }
        }
    }

    /// pydantic's lax bool: booleans, 0/1, and the usual yes/no strings.
    pub fn bool(&mut self, v: &Value, loc: Vec<Value>) -> Option<bool> {
        let parsed = match v {
            Value::Bool(b) => Some(*b),
            Value::Number(n) if n.as_i64() == Some(0) => Some(false),
            Value::Number(n) if n.as_i64() == Some(1) => Some(true),
            Value::String(s) => parse_bool_str(s),
            _ => None,
        };
        if parsed.is_none() {
            let kind = if v.is_string() || v.is_number() {
                "bool_parsing"
            } else {
                "bool_type"
            };
            self.push(ValidationItem::new(
                kind,
                loc,
                "Input should be a valid boolean, unable to interpret input",
                v.clone(),
            ));
        }
        parsed
    }

    /// pydantic's lax int: integers, integral floats, numeric strings.
    pub fn int(&mut self, v: &Value, loc: Vec<Value>) -> Option<i64> {
        match v {
            Value::Number(n) => {
                match n.as_i64() {
                    Some(i) => Some(i),
                    None => match n.as_f64() {
                        Some(f) if f.fract() == 0.0 => Some(f as i64),
                        _ => {
                            self.push(ValidationItem::new("int_from_float", loc, "Input should be a valid integer, got a number with a fractional part", v.clone()));
                            None
                        }
                    },
                }
            }
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Some(i),
                Err(_) => {
                    self.push(ValidationItem::new(
                        "int_parsing",
                        loc,
                        "Input should be a valid integer, unable to parse string as an integer",
                        v.clone(),
                    ));
                    None
                }
            },
            _ => {
                self.push(ValidationItem::new(
                    "int_type",
                    loc,
                    "Input should be a valid integer",
                    v.clone(),
                ));
                None
            }
        }
    }

    pub fn float(&mut self, v: &Value, loc: Vec<Value>) -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(f) => Some(f),
                Err(_) => {
                    self.push(ValidationItem::new(
                        "float_parsing",
                        loc,
                        "Input should be a valid number, unable to parse string as a number",
                        v.clone(),
                    ));
                    None
                }
            },
            _ => {
                self.push(ValidationItem::new(
                    "float_type",
                    loc,
                    "Input should be a valid number",
                    v.clone(),
                ));
                None
            }
        }
    }

    pub fn string(&mut self, v: &Value, loc: Vec<Value>) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.push(ValidationItem::new(
                    "string_type",
                    loc,
                    "Input should be a valid string",
                    v.clone(),
                ));
                None
            }
        }
    }

    pub fn list<'a>(&mut self, v: &'a Value, loc: Vec<Value>) -> Option<&'a Vec<Value>> {
        match v {
            Value::Array(a) => Some(a),
            _ => {
                self.push(ValidationItem::new(
                    "list_type",
                    loc,
                    "Input should be a valid list",
                    v.clone(),
                ));
                None
            }
        }
    }

    pub fn dict<'a>(&mut self, v: &'a Value, loc: Vec<Value>) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            _ => {
                self.push(ValidationItem::new(
                    "dict_type",
                    loc,
                    "Input should be a valid dictionary",
                    v.clone(),
                ));
                None
            }
        }
    }

    /// A string that must be one of `allowed` (`literal_error`).
    pub fn literal(&mut self, v: &Value, loc: Vec<Value>, allowed: &[&str]) -> Option<String> {
        match v.as_str() {
            Some(s) if allowed.contains(&s) => Some(s.to_string()),
            _ => {
                let expected = allowed
                    .iter()
                    .map(|a| format!("'{a}'"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                self.push(
                    ValidationItem::new(
                        "literal_error",
                        loc,
                        format!("Input should be {expected}"),
                        v.clone(),
                    )
                    .with_ctx(json!({ "expected": expected })),
                );
                None
            }
        }
    }

    /// An enum-typed query or body value (`enum`).
    pub fn enumeration(&mut self, raw: &str, loc: Vec<Value>, allowed: &[&str]) -> Option<String> {
        if allowed.contains(&raw) {
            return Some(raw.to_string());
        }
        let expected = allowed
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ");
        self.push(
            ValidationItem::new(
                "enum",
                loc,
                format!("Input should be {expected}"),
                Value::from(raw),
            )
            .with_ctx(json!({ "expected": expected })),
        );
        None
    }

    pub fn uuid(&mut self, raw: &Value, loc: Vec<Value>) -> Option<Uuid> {
        match raw.as_str().map(parse_uuid) {
            Some(Ok(u)) => Some(u),
            Some(Err(msg)) => {
                self.push(
                    ValidationItem::new(
                        "uuid_parsing",
                        loc,
                        format!("Input should be a valid UUID, {msg}"),
                        raw.clone(),
                    )
                    .with_ctx(json!({ "error": msg })),
                );
                None
            }
            None => {
                self.push(ValidationItem::new(
                    "uuid_type",
                    loc,
                    "UUID input should be a string, bytes or UUID object",
                    raw.clone(),
                ));
                None
            }
        }
    }

    /// A `limit` query parameter: integer > 0, at most 100 (DEVIATIONS #12: 422 past 100).
    pub fn limit(&mut self, q: &QueryPairs, default: i64) -> i64 {
        let Some(raw) = q.get("limit") else {
            return default;
        };
        let loc = loc!["query", "limit"];
        match self.int(&Value::from(raw), loc.clone()) {
            Some(n) if n <= 0 => {
                self.push(
                    ValidationItem::new(
                        "greater_than",
                        loc,
                        "Input should be greater than 0",
                        Value::from(raw),
                    )
                    .with_ctx(json!({"gt": 0})),
                );
                default
            }
            Some(n) if n > 100 => {
                self.push(
                    ValidationItem::new(
                        "less_than_equal",
                        loc,
                        "Input should be less than or equal to 100",
                        Value::from(raw),
                    )
                    .with_ctx(json!({"le": 100})),
                );
                default
            }
            Some(n) => n,
            None => default,
        }
    }
}

fn parse_bool_str(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
        "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// Parses the UUID forms pydantic accepts (dashed, 32-hex, `urn:uuid:`, braces); the error text
/// follows pydantic's wording closely enough to be recognisable.
pub fn parse_uuid(raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw).map_err(|_| {
        match raw.chars().enumerate().find(|(_, c)| !(c.is_ascii_hexdigit() || *c == '-')) {
            Some((i, c)) => format!(
                "invalid character: expected an optional prefix of `urn:uuid:` followed by [0-9a-fA-F-], found `{c}` at {}",
                i + 1
            ),
            None => format!("invalid length: expected length 32 for simple format, found {}", raw.len()),
        }
    })
}

/// A UUID path segment, or the 422 `uuid_parsing` error for `loc ["path", name]`.
pub fn path_uuid(raw: &str, name: &str) -> Result<Uuid, ApiError> {
    let mut c = Checker::new();
    let u = c.uuid(&Value::from(raw), loc!["path", name]);
    c.finish()?;
    u.ok_or_else(|| ApiError::internal("uuid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_invalid_offset() {
        let e = decode_body(br#"{"agent": "#, Some(true)).unwrap_err();
        match e {
            ApiError::Validation(items) => {
                assert_eq!(items[0].kind, "json_invalid");
                assert_eq!(items[0].loc, loc!["body", 10]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_body_is_missing_and_text_is_string() {
        assert!(matches!(
            decode_body(b"", None),
            Err(ApiError::Validation(_))
        ));
        assert_eq!(
            decode_body(b"title=x", Some(false)).unwrap(),
            json!("title=x")
        );
        let mut c = Checker::new();
        assert!(c.model(&json!("title=x"), loc!["body"]).is_none());
        assert_eq!(c.errors[0].kind, "model_attributes_type");
    }

    #[test]
    fn lax_bool_and_int() {
        let mut c = Checker::new();
        assert_eq!(c.bool(&json!("yes"), loc!["body", "x"]), Some(true));
        assert_eq!(c.bool(&json!("maybe"), loc!["body", "x"]), None);
        assert_eq!(c.int(&json!("12"), loc!["q"]), Some(12));
        assert_eq!(c.errors.len(), 1);
        assert_eq!(c.errors[0].kind, "bool_parsing");
    }

    #[test]
    fn uuid_forms() {
        let u = Uuid::new_v4();
        assert_eq!(parse_uuid(&u.simple().to_string()).unwrap(), u);
        assert_eq!(
            parse_uuid(&u.hyphenated().to_string().to_uppercase()).unwrap(),
            u
        );
        assert!(parse_uuid("not-a-uuid").is_err());
    }

    #[test]
    fn query_pairs_decode_and_repeat() {
        let q = QueryPairs::parse("ids=a&ids=b%20c&x=1+2");
        assert_eq!(q.get_all("ids"), vec!["a", "b c"]);
        assert_eq!(q.get("x"), Some("1 2"));
    }
}
