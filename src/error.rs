//! The one error type at the HTTP edge. Every failure a route can produce is an [`ApiError`], and
//! its status and JSON body are decided here, in the reference's shapes (API.md §0.3).

use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

/// Set once at start-up from `DEBUG`: 500 bodies then carry a `traceback` field.
static DEBUG_BODIES: AtomicBool = AtomicBool::new(false);

/// Turns on the `traceback` field of 500 bodies (the reference's `DEBUG` switch).
pub fn set_debug_bodies(on: bool) {
    DEBUG_BODIES.store(on, Ordering::Relaxed);
}

/// One item of a FastAPI 422 body: `{type, loc, msg, input, ctx?}`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[schemars(rename = "ValidationError")]
pub struct ValidationItem {
    #[serde(rename = "type")]
    pub kind: String,
    #[schemars(schema_with = "crate::openapi::schemas::error_location")]
    pub loc: Vec<Value>,
    pub msg: String,
    pub input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

impl ValidationItem {
    pub fn new(kind: &str, loc: Vec<Value>, msg: impl Into<String>, input: Value) -> Self {
        ValidationItem {
            kind: kind.to_string(),
            loc,
            msg: msg.into(),
            input,
            ctx: None,
        }
    }

    pub fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(ctx);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 4xx with `{"detail": <text>}`.
    #[error("{status}: {detail}")]
    Client { status: StatusCode, detail: String },
    /// 422 with FastAPI's list of validation items.
    #[error("validation failed: {0:?}")]
    Validation(Vec<ValidationItem>),
    /// 405 with an `allow` header.
    #[error("method not allowed")]
    MethodNotAllowed { allow: Vec<&'static str> },
    /// 307 to the same path with the trailing slash toggled.
    #[error("redirect to {location}")]
    Redirect { location: String },
    /// 5xx: `{"detail":"Internal Server Error","exception": <exception>}`.
    #[error("{status}: {exception}")]
    Server {
        status: StatusCode,
        exception: String,
    },
}

impl ApiError {
    pub fn not_found() -> Self {
        Self::client(StatusCode::NOT_FOUND, "Not Found")
    }
    pub fn bad_request() -> Self {
        Self::client(StatusCode::BAD_REQUEST, "Bad Request")
    }
    pub fn unauthorized() -> Self {
        Self::client(StatusCode::UNAUTHORIZED, "Unauthorized")
    }
    pub fn client(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError::Client {
            status,
            detail: detail.into(),
        }
    }
    /// An unhandled error: 500 whose `exception` is the given text.
    pub fn internal(exception: impl Into<String>) -> Self {
        ApiError::Server {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            exception: exception.into(),
        }
    }
    /// An HTTPException with a 5xx status: `exception` reads `"<code>: <detail>"`.
    pub fn http_5xx(status: StatusCode, detail: &str) -> Self {
        ApiError::Server {
            status,
            exception: format!("{}: {}", status.as_u16(), detail),
        }
    }
    pub fn validation(item: ValidationItem) -> Self {
        ApiError::Validation(vec![item])
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::internal(format!("actor unavailable: {e}"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Client { status, .. } | ApiError::Server { status, .. } => *status,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Redirect { .. } => StatusCode::TEMPORARY_REDIRECT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut resp = HttpResponse::build(status);
        match self {
            ApiError::Client { detail, .. } => resp.json(json!({ "detail": detail })),
            ApiError::Validation(items) => resp.json(json!({ "detail": items })),
            ApiError::MethodNotAllowed { allow } => {
                resp.insert_header((header::ALLOW, allow.join(", ")));
                resp.json(json!({ "detail": "Method Not Allowed" }))
            }
            ApiError::Redirect { location } => {
                if let Ok(v) = HeaderValue::from_str(location) {
                    resp.insert_header((header::LOCATION, v));
                }
                resp.finish()
            }
            ApiError::Server { exception, .. } => {
                let mut body = json!({ "detail": "Internal Server Error", "exception": exception });
                if DEBUG_BODIES.load(Ordering::Relaxed) {
                    body["traceback"] = Value::String(format!("Error: {exception}"));
                }
                resp.json(body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn body_of(e: ApiError) -> (u16, Value) {
        let r = e.error_response();
        let status = r.status().as_u16();
        let bytes = to_bytes(r.into_body()).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[actix_rt::test]
    async fn shapes() {
        assert_eq!(
            body_of(ApiError::not_found()).await,
            (404, json!({"detail":"Not Found"}))
        );
        assert_eq!(
            body_of(ApiError::http_5xx(StatusCode::SERVICE_UNAVAILABLE, "x")).await,
            (
                503,
                json!({"detail":"Internal Server Error","exception":"503: x"})
            )
        );
        let item = ValidationItem::new(
            "missing",
            vec![json!("body")],
            "Field required",
            Value::Null,
        );
        assert_eq!(
            body_of(ApiError::validation(item)).await,
            (
                422,
                json!({"detail":[{"type":"missing","loc":["body"],"msg":"Field required","input":null}]})
            )
        );
    }
}
