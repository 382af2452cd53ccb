//! `/api/conversations` (API.md §2): start, get, search, count, batch get, title, delete, run,
//! pause, secrets, confirmation policy, security analyzer, generate_title, ask_agent. Thin:
//! validate, one handle call, answer with the reference's status and body.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::conversation::registry::SortOrder;
use crate::conversation::{ConversationHandle, RegistryHandle, seam};
use crate::error::{ApiError, ValidationItem};
use crate::http::validate::{Checker, JsonBody, QueryPairs, path_uuid};
use crate::loc;
use crate::model::api::{AskAgentResponse, GenerateTitleResponse, Success};
use crate::model::{ExecutionStatus, requests};
use crate::webhooks::WebhookHub;

/// Batch get accepts fewer than this many ids (DEVIATIONS #12: 422 instead of the assert's 500).
const MAX_BATCH_IDS: usize = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // the static paths first: the scope below would take `search` and `count` for ids
    cfg.route("/api/conversations/search", web::get().to(search))
        .route("/api/conversations/count", web::get().to(count))
        .service(
            web::resource("/api/conversations")
                .route(web::get().to(batch_get))
                .route(web::post().to(start)),
        )
        // One scope for everything under a conversation id: the router matches the dynamic
        // prefix once (a regex), then the paths inside by plain comparison, instead of trying
        // one regex per route in turn (a third of the server's time on `POST .../events`).
        .service(
            web::scope("/api/conversations/{conversation_id}")
                .service(
                    web::resource("")
                        .route(web::get().to(get))
                        .route(web::patch().to(update_title))
                        .route(web::delete().to(delete)),
                )
                .route("/run", web::post().to(run))
                .route("/pause", web::post().to(pause))
                .route("/secrets", web::post().to(secrets))
                .route("/confirmation_policy", web::post().to(confirmation_policy))
                .route("/security_analyzer", web::post().to(security_analyzer))
                .route("/generate_title", web::post().to(generate_title))
                .route("/ask_agent", web::post().to(ask_agent))
                .configure(super::events::configure),
        );
}

/// A response whose body is already JSON text.
pub fn raw_json(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}

/// `{"items":[...],"next_page_id":...}` from pre-serialized items.
pub fn page_json<S: AsRef<str>>(items: &[S], next: Option<&str>) -> String {
    let mut out =
        String::with_capacity(64 + items.iter().map(|i| i.as_ref().len() + 1).sum::<usize>());
    out.push_str("{\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item.as_ref());
    }
    out.push_str("],\"next_page_id\":");
    out.push_str(&serde_json::to_string(&next).unwrap_or_else(|_| "null".into()));
    out.push('}');
    out
}

fn success(ok: bool) -> HttpResponse {
    HttpResponse::Ok().json(Success { success: ok })
}

fn status_query(c: &mut Checker, q: &QueryPairs) -> Option<ExecutionStatus> {
    let raw = q.get("status")?;
    c.enumeration(raw, loc!["query", "status"], &ExecutionStatus::ALL)
        .and_then(|s| ExecutionStatus::parse(&s))
}

/// The conversation for `raw`, or the given error when it is unknown.
async fn find(
    reg: &RegistryHandle,
    raw: &str,
    unknown: fn() -> ApiError,
) -> Result<ConversationHandle, ApiError> {
    let id = path_uuid(raw, "conversation_id")?;
    reg.get(id).await?.ok_or_else(unknown)
}

async fn search(reg: web::Data<RegistryHandle>, q: QueryPairs) -> Result<HttpResponse, ApiError> {
    let mut c = Checker::new();
    let limit = c.limit(&q, 100);
    let status = status_query(&mut c, &q);
    let sort = match q.get("sort_order") {
        Some(raw) => c
            .enumeration(raw, loc!["query", "sort_order"], &SortOrder::NAMES)
            .and_then(|s| SortOrder::parse(&s)),
        None => Some(SortOrder::CreatedAtDesc),
    };
    c.finish()?;
    let sort = sort.unwrap_or(SortOrder::CreatedAtDesc);
    let (items, next) = reg
        .search(
            status,
            sort,
            q.get("page_id").map(String::from),
            limit as usize,
        )
        .await?;
    Ok(raw_json(StatusCode::OK, page_json(&items, next.as_deref())))
}

async fn count(reg: web::Data<RegistryHandle>, q: QueryPairs) -> Result<HttpResponse, ApiError> {
    let mut c = Checker::new();
    let status = status_query(&mut c, &q);
    c.finish()?;
    Ok(HttpResponse::Ok().json(reg.count(status).await?))
}

async fn batch_get(
    reg: web::Data<RegistryHandle>,
    q: QueryPairs,
) -> Result<HttpResponse, ApiError> {
    let raw = q.get_all("ids");
    if raw.is_empty() {
        return Err(ApiError::validation(ValidationItem::new(
            "missing",
            loc!["query", "ids"],
            "Field required",
            Value::Null,
        )));
    }
    let mut c = Checker::new();
    let ids = requests::uuid_list(&mut c, &raw, &[Value::from("query"), Value::from("ids")]);
    if raw.len() >= MAX_BATCH_IDS {
        c.push(
            ValidationItem::new(
                "too_long",
                loc!["query", "ids"],
                format!("List should have at most {} items after validation, not {}", MAX_BATCH_IDS - 1, raw.len()),
                json!(raw),
            )
            .with_ctx(json!({"field_type": "List", "max_length": MAX_BATCH_IDS - 1, "actual_length": raw.len()})),
        );
    }
    c.finish()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(match reg.get(id).await? {
            Some(h) => h.info().await?,
            None => "null".to_string(),
        });
    }
    Ok(raw_json(StatusCode::OK, format!("[{}]", out.join(","))))
}

async fn start(
    reg: web::Data<RegistryHandle>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let req = requests::start_conversation(&body)?;
    let (info, created, _) = reg.start_conversation(req).await?;
    Ok(raw_json(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        info,
    ))
}

async fn get(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let h = find(&reg, &path, ApiError::not_found).await?;
    Ok(raw_json(StatusCode::OK, h.info().await?))
}

async fn update_title(
    reg: web::Data<RegistryHandle>,
    hooks: web::Data<WebhookHub>,
    path: web::Path<String>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    let title = requests::update_title(&body)?;
    match reg.get(id).await? {
        Some(h) => {
            h.set_title(title).await?;
            hooks.conversation_changed(&h).await;
            Ok(success(true))
        }
        None => Ok(success(false)),
    }
}

async fn delete(
    reg: web::Data<RegistryHandle>,
    hooks: web::Data<WebhookHub>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    let last_info = hooks.info_before_delete(&reg, id).await;
    if reg.delete(id).await? {
        hooks.post_info(last_info);
        // what the conversation held (its log, its subscribers' queues) is free now
        crate::memory::request_trim();
        Ok(success(true))
    } else {
        Err(ApiError::bad_request())
    }
}

async fn run(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let h = find(&reg, &path, ApiError::not_found).await?;
    h.run().await?;
    Ok(success(true))
}

async fn pause(
    reg: web::Data<RegistryHandle>,
    hooks: web::Data<WebhookHub>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let h = find(&reg, &path, ApiError::bad_request).await?;
    h.pause().await?;
    hooks.conversation_changed(&h).await;
    Ok(success(true))
}

async fn secrets(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    let secrets = requests::update_secrets(&body)?;
    let h = reg.get(id).await?.ok_or_else(ApiError::not_found)?;
    h.update_secrets(secrets).await?;
    Ok(success(true))
}

async fn confirmation_policy(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    let policy = requests::set_policy(&body)?;
    let h = reg.get(id).await?.ok_or_else(ApiError::not_found)?;
    h.set_confirmation_policy(policy).await?;
    Ok(success(true))
}

async fn security_analyzer(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    let analyzer = requests::set_analyzer(&body)?;
    let h = reg.get(id).await?.ok_or_else(ApiError::not_found)?;
    h.set_security_analyzer(analyzer).await?;
    Ok(success(true))
}

/// The reference's answer for an unknown conversation on the two LLM routes.
fn unknown_500() -> ApiError {
    ApiError::http_5xx(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
}

async fn generate_title(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    // every field is optional, so is the body; a broken or oversized one is still refused
    let body = match body {
        Ok(JsonBody(b)) => b,
        Err(ApiError::Validation(items))
            if items.len() == 1 && items[0].kind == "missing" && items[0].loc == loc!["body"] =>
        {
            json!({})
        }
        Err(e) => return Err(e),
    };
    let (max_length, llm) = requests::generate_title(&body)?;
    let h = reg.get(id).await?.ok_or_else(unknown_500)?;
    let title = seam::generate_title(&h, max_length, llm).await?;
    Ok(HttpResponse::Ok().json(GenerateTitleResponse { title }))
}

async fn ask_agent(
    reg: web::Data<RegistryHandle>,
    path: web::Path<String>,
    JsonBody(body): JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = path_uuid(&path, "conversation_id")?;
    let question = requests::ask_agent(&body)?;
    let h = reg.get(id).await?.ok_or_else(unknown_500)?;
    let response = seam::ask_agent(&h, &question).await?;
    Ok(HttpResponse::Ok().json(AskAgentResponse { response }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_built_from_raw_json() {
        assert_eq!(
            page_json(&["{\"a\":1}", "2"], Some("x")),
            r#"{"items":[{"a":1},2],"next_page_id":"x"}"#
        );
        assert_eq!(
            page_json::<&str>(&[], None),
            r#"{"items":[],"next_page_id":null}"#
        );
    }
}
