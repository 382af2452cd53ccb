//! HTTP routes, one file per resource. Each file has a `configure` that registers exactly the
//! entries of [`crate::http::ROUTES`] it owns; handlers stay thin (extract, call a handle, map).

pub mod bash;
pub mod conversations;
pub mod desktop;
pub mod docs;
pub mod events;
pub mod events_socket;
pub mod files;
pub mod git;
pub mod server;
pub mod tools;
pub mod vscode;

use actix_web::web;

/// Registers every route of the server.
pub fn configure(cfg: &mut web::ServiceConfig) {
    server::configure(cfg);
    docs::configure(cfg);
    // the event routes are registered inside the conversation scope
    conversations::configure(cfg);
    tools::configure(cfg);
    events_socket::configure(cfg);
    files::configure(cfg);
    git::configure(cfg);
    vscode::configure(cfg);
    desktop::configure(cfg);
    bash::configure(cfg);
    // Routes with a dynamic first segment cost the router a regex each for every request that
    // reaches them: these (rarely used) go last.
    server::configure_static(cfg);
}
