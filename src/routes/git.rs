//! `/api/git`: changes and diff of the repository at a path (API.md §6). Relative paths are
//! resolved against the server's working directory; the git work runs on the blocking pool.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ApiError;
use crate::workspace::git;
use crate::workspace::pypath::{resolve, url_tail};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/git/changes/{path:.*}", web::get().to(changes))
        .route("/api/git/diff/{path:.*}", web::get().to(diff));
}

/// The decoded `{path}` tail.
fn tail(req: &HttpRequest, prefix: &str) -> String {
    url_tail(req.uri().path(), prefix)
        .or_else(|| req.match_info().get("path").map(str::to_string))
        .unwrap_or_default()
}

/// `Path(cwd, path).resolve()`, as the reference locates the repository or file. Blocking.
fn resolved(raw: &str) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
    resolve(&cwd, raw)
}

/// `GET /api/git/changes/{path}`: the sorted list of changed files.
async fn changes(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let raw = tail(&req, "/api/git/changes/");
    let list = web::block(move || git::changes(&resolved(&raw)))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(list.map_err(ApiError::internal)?))
}

/// `GET /api/git/diff/{path}`: the file at the base ref and as it is now.
async fn diff(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let raw = tail(&req, "/api/git/diff/");
    let d = web::block(move || git::diff(&resolved(&raw)))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(d.map_err(ApiError::internal)?))
}
