//! `/api/vscode`: the VS Code server's status and its URL with the connection token (API.md §8).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::error::ApiError;
use crate::http::validate::QueryPairs;
use crate::model::api::VscodeUrlResponse;
use crate::sidecar::vscode::VscodeHandle;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/vscode/url", web::get().to(url))
        .route("/api/vscode/status", web::get().to(status));
}

/// `GET /api/vscode/url?base_url=...&workspace_dir=...`: `{"url": ...}`, null without a token.
async fn url(vscode: web::Data<VscodeHandle>, q: QueryPairs) -> Result<HttpResponse, ApiError> {
    let Some(state) = vscode.state().await? else {
        return Err(ApiError::http_5xx(
            StatusCode::SERVICE_UNAVAILABLE,
            "VSCode is disabled in configuration. Set enable_vscode=true to enable.",
        ));
    };
    let base_url = q.get("base_url").unwrap_or("http://localhost:8001");
    let workspace_dir = q.get("workspace_dir").unwrap_or("workspace");
    let url = state
        .token
        .map(|t| format!("{base_url}/?tkn={t}&folder={workspace_dir}"));
    Ok(HttpResponse::Ok().json(VscodeUrlResponse { url }))
}

/// `GET /api/vscode/status`: `{"running", "enabled"}` (plus a message when disabled).
async fn status(vscode: web::Data<VscodeHandle>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(match vscode.state().await? {
        Some(state) => json!({"running": state.running, "enabled": true}),
        None => json!({"running": false, "enabled": false, "message": "VSCode is disabled in configuration"}),
    }))
}
