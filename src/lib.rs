//! A wire-compatible Rust reimplementation of the OpenHands Agent Server.
//!
//! # Layout
//!
//! - [`config`]: the typed configuration (defaults < `--config` file < `OH_*` environment).
//! - [`error`]: [`error::ApiError`], the one error type at the HTTP edge, and its JSON bodies.
//! - [`http`]: the request gate (route table, CORS, session keys, access log) and request decoding
//!   with FastAPI-shaped 422 errors ([`http::validate`]).
//! - [`routes`]: one file per resource; thin handlers that call actor handles.
//! - [`state`]: process-wide facts (uptime, idle time).
//! - [`logging`]: `env_logger` set-up, plain or JSON lines.
//! - [`conversation`]: the conversation registry and conversation actors (event log, state,
//!   subscribers, agent-loop seam) on their own arbiters, with typed handles.
//! - [`model`]: the wire model (events, conversation models, requests) and its JSON rules.
//! - [`store`]: persistence without actix: event log and index, conversation directories, cipher.
//!
//! Long-lived actors are started by [`Services::start`] before the HTTP server, and their handles
//! are passed to [`build_app`] as app data. `actors.md` at the top of the repository maps them.

pub mod config;
pub mod conversation;
pub mod error;
pub mod http;
pub mod logging;
pub mod model;
pub mod routes;
pub mod state;
pub mod store;

use std::net::TcpListener;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::config::Config;
use crate::state::Activity;

/// Everything the routes need, created once before the HTTP server starts.
#[derive(Clone)]
pub struct Services {
    pub config: web::Data<Config>,
    pub activity: web::Data<Activity>,
    /// The conversation registry (conversations, events, subscriptions).
    pub conversations: web::Data<conversation::RegistryHandle>,
}

impl Services {
    /// Creates the data directories and starts the long-lived actors.
    pub async fn start(config: Config) -> std::io::Result<Services> {
        crate::error::set_debug_bodies(config.debug);
        tokio::fs::create_dir_all(&config.conversations_path).await?;
        tokio::fs::create_dir_all(&config.bash_events_dir).await?;
        let activity = web::Data::new(Activity::default());
        let conversations = conversation::RegistryHandle::start(
            config.conversations_path.clone(),
            config.secret_key.as_deref(),
            activity.clone().into_inner(),
        )
        .await;
        Ok(Services {
            config: web::Data::new(config),
            activity,
            conversations: web::Data::new(conversations),
        })
    }

    /// Stops the actors in order: sockets, agent loops, commands, then flushes logs.
    pub async fn shutdown(&self) {
        self.conversations.shutdown().await;
    }
}

/// The application: the gate middleware, app data and every route. Used by `main` and the tests.
pub fn build_app(
    services: Services,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(services.config.clone())
        .app_data(services.activity.clone())
        .app_data(services.conversations.clone())
        .app_data(web::PayloadConfig::new(services.config.max_body_bytes))
        .configure(routes::configure)
        .wrap(from_fn(http::gate))
}

/// Starts the HTTP server on `listener` with `services`; returns the running server.
pub fn start_server(services: Services, listener: TcpListener) -> std::io::Result<Server> {
    let server = HttpServer::new(move || build_app(services.clone()))
        .listen(listener)?
        .shutdown_timeout(10)
        .run();
    Ok(server)
}
