//! `/api/desktop`: the noVNC URL of the desktop (API.md §8).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::http::validate::QueryPairs;
use crate::model::api::DesktopUrlResponse;
use crate::sidecar::desktop::DesktopHandle;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/desktop/url", web::get().to(url));
}

/// `GET /api/desktop/url?base_url=...`: `{"url": ...}`, null while the desktop does not run.
async fn url(desktop: web::Data<DesktopHandle>, q: QueryPairs) -> Result<HttpResponse, ApiError> {
    let Some(running) = desktop.running().await? else {
        return Err(ApiError::http_5xx(
            StatusCode::SERVICE_UNAVAILABLE,
            "Desktop is disabled in configuration. Set enable_vnc=true to enable.",
        ));
    };
    let base_url = q.get("base_url").unwrap_or("http://localhost:8002");
    let url = running.then(|| format!("{base_url}/vnc.html?autoconnect=1&resize=remote"));
    Ok(HttpResponse::Ok().json(DesktopUrlResponse { url }))
}
