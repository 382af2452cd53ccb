//! `GET /api/tools/`: the tool names registered in the server (API.md §7).

use actix_web::{HttpResponse, web};

use crate::tools::REGISTERED_TOOLS;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/tools/", web::get().to(list_tools));
}

async fn list_tools() -> HttpResponse {
    HttpResponse::Ok().json(REGISTERED_TOOLS)
}
