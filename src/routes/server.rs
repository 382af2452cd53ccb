//! Server details, open to everyone: `/alive`, `/health`, `/server_info`, `/` and `/static`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::config::Config;
use crate::error::ApiError;
use crate::model::api::ServerInfo;
use crate::state::Activity;

/// The server's title and version as reported by `/server_info`.
const TITLE: &str = "OpenHands Agent Server";
const VERSION: &str = "1.4.1";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/alive", web::get().to(alive))
        .route("/health", web::get().to(health))
        .route("/server_info", web::get().to(server_info))
        .route("/", web::get().to(root));
}

/// `/static/{path}`, registered after every other route (see [`super::configure`]).
pub fn configure_static(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/{path:.*}", web::get().to(static_file));
}

async fn alive() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json("OK")
}

async fn server_info(activity: web::Data<Activity>) -> HttpResponse {
    HttpResponse::Ok().json(ServerInfo {
        uptime: activity.uptime(),
        idle_time: activity.idle_time(),
        title: TITLE,
        version: VERSION,
        docs: "/docs",
        redoc: "/redoc",
    })
}

fn static_dir(cfg: &Config) -> Option<&std::path::Path> {
    cfg.static_files_path.as_deref().filter(|p| p.is_dir())
}

async fn root(cfg: web::Data<Config>, activity: web::Data<Activity>) -> HttpResponse {
    match static_dir(&cfg) {
        Some(dir) => {
            let location = if dir.join("index.html").is_file() {
                "/static/index.html"
            } else {
                "/static/"
            };
            HttpResponse::Found()
                .insert_header(("location", location))
                .finish()
        }
        None => server_info(activity).await,
    }
}

async fn static_file(
    req: HttpRequest,
    cfg: web::Data<Config>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let dir = static_dir(&cfg).ok_or_else(ApiError::not_found)?;
    let rel = path.into_inner();
    if rel.is_empty() || rel.split('/').any(|s| s == "..") {
        return Err(ApiError::not_found());
    }
    // As Starlette's StaticFiles (symlinks not followed out): the real path must stay inside
    // the real directory, so a symlink pointing elsewhere is not served.
    let (dir, full) = (dir.to_path_buf(), dir.join(&rel));
    let real = web::block(move || {
        let real = full.canonicalize().ok()?;
        real.starts_with(dir.canonicalize().ok()?).then_some(real)
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(ApiError::not_found)?;
    let file = actix_files::NamedFile::open_async(&real)
        .await
        .map_err(|_| ApiError::not_found())?;
    if file.metadata().is_dir() {
        return Err(ApiError::not_found());
    }
    Ok(file
        .use_etag(true)
        .use_last_modified(true)
        .into_response(&req))
}
