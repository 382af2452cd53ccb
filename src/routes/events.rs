//! `/api/conversations/{id}/events` (API.md §3): search, count, get, batch get, send message,
//! respond to confirmation. Unknown conversations answer 404 "Conversation not found: <id>".

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use super::conversations::{page_json, raw_json};
use crate::conversation::{ConversationHandle, RegistryHandle};
use crate::error::{ApiError, ValidationItem};
use crate::http::validate::{Checker, JsonBody, QueryPairs, path_uuid};
use crate::loc;
use crate::model::api::Success;
use crate::model::events::kind_from_filter;
use crate::model::{Source, requests};
use crate::store::event_log::EventFilter;

/// The event routes, relative to the scope `/api/conversations/{conversation_id}` that
/// [`super::conversations::configure`] registers them in.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/events/search", web::get().to(search))
        .route("/events/count", web::get().to(count))
        .route(
            "/events/respond_to_confirmation",
            web::post().to(respond_to_confirmation),
        )
        .service(
            web::resource("/events")
                .route(web::get().to(batch_get))
                .route(web::post().to(send_message)),
        )
        .route("/events/{event_id}", web::get().to(get_event));
}

fn not_found(id: &uuid::Uuid) -> ApiError {
    ApiError::client(
        StatusCode::NOT_FOUND,
        format!("Conversation not found: {}", id.hyphenated()),
    )
}

async fn find(reg: &RegistryHandle, id: uuid::Uuid) -> Result<ConversationHandle, ApiError> {
    reg.get(id).await?.ok_or_else(|| not_found(&id))
}

/// The filters shared by search and count (API.md §3.1).
fn filter(c: &mut Checker, q: &QueryPairs) -> EventFilter {
    let mut f = EventFilter {
        kind: q.get("kind").map(kind_from_filter),
        source: q
            .get("source")
            .map(|s| serde_json::from_value::<Source>(Value::from(s)).ok()),
        body: q.get("body").map(str::to_lowercase),
        ..EventFilter::default()
    };
    for (name, slot) in [
        ("timestamp__gte", &mut f.timestamp_gte),
        ("timestamp__lt", &mut f.timestamp_lt),
    ] {
        if let Some(raw) = q.get(name) {
            match requests::timestamp_bound(raw) {
                Some(b) => *slot = Some(b),
                None => c.push(
                    ValidationItem::new(
                        "datetime_from_date_parsing",
                        loc!["query", name],
                        "Input should be a valid datetime or date, invalid character in year",
                        Value::from(raw),
                    )
                    .with_ctx(json!({"error": "invalid character in year"})),
                ),
            }
        }
    }
    f
}

async fn search(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
    q: QueryPairs,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    let mut c = Checker::new();
    let limit = c.limit(&q, 100);
    let f = filter(&mut c, &q);
    let desc = match q.get("sort_order") {
        Some(raw) => c
            .enumeration(
                raw,
                loc!["query", "sort_order"],
                &["TIMESTAMP", "TIMESTAMP_DESC"],
            )
            .is_some_and(|s| s == "TIMESTAMP_DESC"),
        None => false,
    };
    c.finish()?;
    let h = find(&reg, id).await?;
    let (items, next) = h
        .search_events(f, desc, q.get("page_id").map(String::from), limit as usize)
        .await?;
    Ok(raw_json(StatusCode::OK, page_json(&items, next.as_deref())))
}

async fn count(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
    q: QueryPairs,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    let mut c = Checker::new();
    let f = filter(&mut c, &q);
    c.finish()?;
    let h = find(&reg, id).await?;
    Ok(HttpResponse::Ok().json(h.count_events(f).await?))
}

/// DEVIATIONS #13: an unknown event id is 404 `{"detail":"Not Found"}`.
async fn get_event(
    reg: web::Data<RegistryHandle>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_id, event_id) = path.into_inner();
    let id = path_uuid(&raw_id, "conversation_id")?;
    let h = find(&reg, id).await?;
    match h.get_events(vec![event_id]).await?.pop().flatten() {
        Some(json) => Ok(raw_json(StatusCode::OK, json.to_string())),
        None => Err(ApiError::not_found()),
    }
}

/// The ids are the JSON body of this GET; unknown ids give `null` (DEVIATIONS #13).
async fn batch_get(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    let mut c = Checker::new();
    let mut ids = Vec::new();
    if let Some(list) = c.list(&body, loc!["body"]) {
        for (i, v) in list.iter().enumerate() {
            if let Some(s) = c.string(v, loc!["body", i]) {
                ids.push(s);
            }
        }
    }
    c.finish()?;
    let h = find(&reg, id).await?;
    let items = h.get_events(ids).await?;
    let parts: Vec<&str> = items
        .iter()
        .map(|i| i.as_deref().unwrap_or("null"))
        .collect();
    Ok(raw_json(StatusCode::OK, format!("[{}]", parts.join(","))))
}

async fn send_message(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    let msg = requests::send_message(&body)?;
    let h = find(&reg, id).await?;
    h.send_message(msg).await?;
    Ok(HttpResponse::Ok().json(Success::OK))
}

async fn respond_to_confirmation(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    let (accept, reason) = requests::respond_to_confirmation(&body)?;
    let h = find(&reg, id).await?;
    h.respond_to_confirmation(accept, reason).await?;
    Ok(HttpResponse::Ok().json(Success::OK))
}
