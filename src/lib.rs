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
//! - [`memory`]: allocator settings, and freed heap pages given back to the OS once the server
//!   goes quiet (after a burst, after deletions).
//! - [`conversation`]: the conversation registry and conversation actors (event log, state,
//!   subscribers, agent-loop seam) on their own arbiters, with typed handles.
//! - [`model`]: the wire model (events, conversation models, requests) and its JSON rules.
//! - [`openapi`]: the OpenAPI document (route table + route docs + the model's own schemas)
//!   served at `/openapi.json` (built on its first request), and the offline `/docs` page.
//! - [`store`]: persistence without actix: event log and index, conversation directories, cipher.
//! - [`workspace`]: pure cores of the file and git routes (paths, downloads, uploads, trajectory
//!   zip, git changes and diffs).
//! - [`sidecar`]: supervisors of the optional VS Code and VNC desktop processes.
//! - [`llm`]: LLM clients (OpenAI Chat Completions, Anthropic Messages, OpenAI Responses), provider
//!   routing by model prefix, retries, error mapping, usage metrics.
//! - [`tools`]: built-in tools (terminal on a PTY, file_editor, task_tracker, finish, think): their
//!   LLM schemas, argument validation and per-conversation execution.
//! - [`agent`]: pure cores of the agent loop (system prompt, events → LLM messages, reply → events,
//!   confirmation, stuck detection, condensation, title / ask-agent) and a one-step driver.
//! - [`bash`]: background shell commands: the `BashSupervisor` (event log, fan-out) and one
//!   `BashCommandActor` per command (PTY, process group), behind [`bash::BashHandle`].
//! - [`ws`]: WebSocket session actors (the only users of `actix-web-actors`) and their bounded
//!   outbound queue.
//! - [`webhooks`]: outgoing event and conversation webhooks, subscribed to conversations.
//!
//! Long-lived actors are started by [`Services::start`] before the HTTP server, and their handles
//! are passed to [`build_app`] as app data. `actors.md` at the top of the repository maps them.

pub mod agent;
pub mod bash;
pub mod config;
pub mod conversation;
pub mod error;
pub mod http;
pub mod llm;
pub mod logging;
pub mod memory;
pub mod model;
pub mod openapi;
pub mod routes;
pub mod sidecar;
pub mod state;
pub mod store;
pub mod tools;
pub mod webhooks;
pub mod workspace;
pub mod ws;

use std::net::TcpListener;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::config::Config;
use crate::sidecar::desktop::DesktopHandle;
use crate::sidecar::vscode::VscodeHandle;
use crate::state::Activity;

/// Everything the routes need, created once before the HTTP server starts.
#[derive(Clone)]
pub struct Services {
    pub config: web::Data<Config>,
    pub activity: web::Data<Activity>,
    /// The conversation registry (conversations, events, subscriptions).
    pub conversations: web::Data<conversation::RegistryHandle>,
    /// The VS Code supervisor (absent inside when disabled).
    pub vscode: web::Data<VscodeHandle>,
    /// The VNC desktop supervisor (absent inside when disabled).
    pub desktop: web::Data<DesktopHandle>,
    /// The bash service (background commands and their events).
    pub bash: web::Data<bash::BashHandle>,
    /// Outgoing webhooks (inert when none is configured).
    pub webhooks: web::Data<webhooks::WebhookHub>,
}

impl Services {
    /// Creates the data directories and starts the long-lived actors.
    pub async fn start(config: Config) -> std::io::Result<Services> {
        crate::error::set_debug_bodies(config.debug);
        tokio::fs::create_dir_all(&config.conversations_path).await?;
        tokio::fs::create_dir_all(&config.bash_events_dir).await?;
        let activity = web::Data::new(Activity::default());
        let webhooks = webhooks::WebhookHub::start(&config);
        let conversations = conversation::RegistryHandle::start_limited(
            config.conversations_path.clone(),
            config.secret_key.as_deref(),
            activity.clone().into_inner(),
            webhooks.observer(),
            conversation::Limits::from_config(&config),
        )
        .await;
        let vscode = web::Data::new(VscodeHandle::start(&config));
        let desktop = web::Data::new(DesktopHandle::start(&config));
        let bash = bash::BashHandle::start(
            config.bash_events_dir.clone(),
            config.max_concurrent_bash_commands,
        )
        .await?;
        Ok(Services {
            config: web::Data::new(config),
            activity,
            conversations: web::Data::new(conversations),
            vscode,
            desktop,
            bash: web::Data::new(bash),
            webhooks: web::Data::new(webhooks),
        })
    }

    /// Stops the actors in order: sockets, agent loops, commands, then flushes logs.
    pub async fn shutdown(&self) {
        // Conversations first: each cancels its step, tells its subscribers (Disconnect 1001:
        // sockets close, webhooks take what is left) and writes its state files.
        self.conversations.shutdown().await;
        // Commands: kill every process group, reap, record the last events.
        self.bash.shutdown().await;
        // Webhooks post what they still hold (bounded wait).
        self.webhooks.shutdown().await;
        self.vscode.shutdown().await;
        self.desktop.shutdown().await;
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
        .app_data(services.vscode.clone())
        .app_data(services.desktop.clone())
        .app_data(services.bash.clone())
        .app_data(services.webhooks.clone())
        .app_data(web::PayloadConfig::new(services.config.max_body_bytes))
        .app_data(http::extractor_errors::json_config(
            services.config.max_body_bytes,
        ))
        .app_data(http::extractor_errors::query_config())
        .app_data(http::extractor_errors::path_config())
        .configure(routes::configure)
        .wrap(from_fn(http::gate))
}

/// Seconds the HTTP workers give open connections (idle keep-alives, slow clients) once shutdown
/// has started; with the services stopping meanwhile, the process exits well within 10 s.
const SHUTDOWN_TIMEOUT_SECS: u64 = 8;

/// Starts the HTTP server on `listener` with `services`; returns the running server. It does not
/// handle signals itself: [`serve_until_signal`] does, or the caller stops it through its handle.
pub fn start_server(services: Services, listener: TcpListener) -> std::io::Result<Server> {
    let workers = services.config.http_workers;
    let server = HttpServer::new(move || build_app(services.clone()))
        // event frames are small and written as they happen: Nagle's algorithm would hold one
        // back until the previous one is acknowledged (tens of ms with a delayed ACK)
        .tcp_nodelay(true)
        .workers(workers)
        .listen(listener)?
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .disable_signals()
        .run();
    Ok(server)
}

/// Runs `server` until SIGTERM or SIGINT, then shuts down in the designed order: the HTTP server
/// stops accepting while the services stop (sockets closed, agent loops stopped, commands killed,
/// events flushed), so in-flight requests and sockets end promptly instead of holding the
/// workers until their timeout. Returns the server's own result.
pub async fn serve_until_signal(services: Services, server: Server) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handle = server.handle();
    let mut running = actix_rt::spawn(server);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let finished = tokio::select! {
        res = &mut running => Some(res),
        _ = term.recv() => None,
        _ = int.recv() => None,
    };
    if let Some(res) = finished {
        // the server stopped by itself (an error): stop the services all the same
        services.shutdown().await;
        return res.unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    }
    log::info!("shutting down: closing sockets, stopping conversations and commands");
    futures_util::future::join(services.shutdown(), handle.stop(true)).await;
    running
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}
