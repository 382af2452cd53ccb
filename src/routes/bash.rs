//! `/api/bash/...` (API.md §4) and the `/sockets/bash-events` upgrade route: request decoding
//! with the reference's 422 errors, then one [`BashHandle`] call.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::bash::model::{EventKind, ExecuteBashRequest, cleared_body, parse_query_datetime};
use crate::bash::store::{BashQuery, SortOrder};
use crate::bash::{BashHandle, JsonPayload};
use crate::error::{ApiError, ValidationItem};
use crate::http::validate::{Checker, JsonBody, QueryPairs};
use crate::loc;

/// The reference asserts fewer than 100 ids per batch get (DEVIATIONS #12: 422 instead of 500).
const MAX_BATCH_IDS: usize = 99;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/bash/bash_events/search", web::get().to(search))
        .route("/api/bash/bash_events/", web::get().to(batch_get))
        .route("/api/bash/bash_events/{event_id}", web::get().to(get_event))
        .route("/api/bash/bash_events", web::delete().to(clear))
        .route(
            "/api/bash/start_bash_command",
            web::post().to(start_bash_command),
        )
        .route(
            "/api/bash/execute_bash_command",
            web::post().to(execute_bash_command),
        )
        .route(
            "/sockets/bash-events",
            web::get().to(crate::ws::bash_events::connect),
        );
}

fn json_body(body: bytes::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(body)
}

async fn start_bash_command(
    bash: web::Data<BashHandle>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let request = ExecuteBashRequest::from_json(&body.0)?;
    Ok(HttpResponse::Ok().json(bash.start_command(request).await?))
}

async fn execute_bash_command(
    bash: web::Data<BashHandle>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let request = ExecuteBashRequest::from_json(&body.0)?;
    Ok(HttpResponse::Ok().json(bash.execute(request).await?))
}

async fn search(bash: web::Data<BashHandle>, query: QueryPairs) -> Result<HttpResponse, ApiError> {
    let q = search_query(&query)?;
    Ok(match bash.search(q).await? {
        JsonPayload::Whole(body) => json_body(body),
        JsonPayload::Streamed(stream) => HttpResponse::Ok()
            .insert_header(ContentType::json())
            .streaming(stream),
    })
}

async fn get_event(
    bash: web::Data<BashHandle>,
    event_id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match bash.get(event_id.into_inner()).await? {
        Some(body) => Ok(json_body(body.into_bytes())),
        None => Err(ApiError::not_found()),
    }
}

async fn batch_get(bash: web::Data<BashHandle>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let mut c = Checker::new();
    let ids: Vec<String> = match c.list(&body.0, loc!["body"]) {
        Some(items) => {
            if items.len() > MAX_BATCH_IDS {
                c.push(
                    ValidationItem::new(
                        "too_long",
                        loc!["body"],
                        format!("List should have at most {MAX_BATCH_IDS} items after validation, not {}", items.len()),
                        body.0.clone(),
                    )
                    .with_ctx(json!({"field_type": "List", "max_length": MAX_BATCH_IDS, "actual_length": items.len()})),
                );
            }
            items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| c.string(v, loc!["body", i]))
                .collect()
        }
        None => Vec::new(),
    };
    c.finish()?;
    Ok(json_body(bash.batch_get(ids).await?))
}

async fn clear(bash: web::Data<BashHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(cleared_body(bash.clear().await?)))
}

/// Validates the search query: every problem in one 422, as FastAPI reports them.
fn search_query(q: &QueryPairs) -> Result<BashQuery, ApiError> {
    let mut c = Checker::new();
    let kind = q
        .get("kind__eq")
        .and_then(|raw| {
            c.literal(
                &Value::from(raw),
                loc!["query", "kind__eq"],
                &["BashCommand", "BashOutput"],
            )
        })
        .and_then(|k| EventKind::parse(&k));
    let command_id = q
        .get("command_id__eq")
        .and_then(|raw| c.uuid(&Value::from(raw), loc!["query", "command_id__eq"]));
    let mut datetime = |name: &str| {
        let raw = q.get(name)?;
        match parse_query_datetime(raw) {
            Ok(t) => Some(t),
            Err(msg) => {
                c.push(ValidationItem::new(
                    "datetime_from_date_parsing",
                    loc!["query", name],
                    msg,
                    Value::from(raw),
                ));
                None
            }
        }
    };
    let timestamp_gte = datetime("timestamp__gte");
    let timestamp_lt = datetime("timestamp__lt");
    let sort_order = match q.get("sort_order") {
        None => SortOrder::Timestamp,
        Some(raw) => match c
            .enumeration(
                raw,
                loc!["query", "sort_order"],
                &["TIMESTAMP", "TIMESTAMP_DESC"],
            )
            .as_deref()
        {
            Some("TIMESTAMP_DESC") => SortOrder::TimestampDesc,
            _ => SortOrder::Timestamp,
        },
    };
    let limit = c.limit(q, 100);
    c.finish()?;
    Ok(BashQuery {
        kind,
        command_id,
        timestamp_gte,
        timestamp_lt,
        sort_order,
        page_id: q.get("page_id").map(str::to_string),
        limit: usize::try_from(limit).unwrap_or(100),
    })
}
