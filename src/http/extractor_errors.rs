//! Error handlers for actix's stock extractors (`web::Json`, `web::Query`, `web::Path`), so that a
//! route using them still answers malformed input with the reference's JSON bodies instead of
//! actix's plain text.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::web;
use serde_json::Value;

use crate::error::{ApiError, ValidationItem};
use crate::loc;

pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| {
            let api = match &err {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => {
                    ApiError::client(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
                }
                JsonPayloadError::ContentType => ApiError::validation(ValidationItem::new(
                    "model_attributes_type",
                    loc!["body"],
                    "Input should be a valid dictionary or object to extract fields from",
                    Value::Null,
                )),
                other => ApiError::validation(ValidationItem::new(
                    "json_invalid",
                    loc!["body"],
                    other.to_string(),
                    Value::Null,
                )),
            };
            api.into()
        })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::validation(ValidationItem::new(
            "value_error",
            loc!["query"],
            err.to_string(),
            Value::Null,
        ))
        .into()
    })
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req| {
        ApiError::validation(ValidationItem::new(
            "value_error",
            loc!["path"],
            err.to_string(),
            Value::Null,
        ))
        .into()
    })
}
