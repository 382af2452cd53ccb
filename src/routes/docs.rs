//! The API documentation, open to everyone: `/openapi.json` (built once, see [`crate::openapi`])
//! and the offline pages `/docs`, `/redoc` and `/docs/oauth2-redirect`.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, web};

use crate::openapi::{DOCS_HTML, DOCUMENT, OAUTH2_REDIRECT_HTML};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(openapi))
        .route("/docs", web::get().to(docs))
        .route("/redoc", web::get().to(docs))
        .route("/docs/oauth2-redirect", web::get().to(oauth2_redirect));
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(DOCUMENT.as_str())
}

/// `/docs` and `/redoc`: one self-contained page (no CDN) that renders `openapi.json`.
async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::html())
        .body(DOCS_HTML)
}

async fn oauth2_redirect() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::html())
        .body(OAUTH2_REDIRECT_HTML)
}
