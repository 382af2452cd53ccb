//! `agent-server`: parses the command line, loads the configuration, starts the actors and the
//! HTTP server, and shuts down gracefully on SIGINT/SIGTERM.

use std::net::TcpListener;
use std::path::PathBuf;

use clap::Parser;

use agent_server::Services;
use agent_server::config::Config;

/// Command line, as the reference's plus `--config`.
#[derive(Debug, Parser)]
#[command(
    name = "agent-server",
    version,
    about = "OpenHands-compatible agent server"
)]
struct Cli {
    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    host: String,
    /// Port to bind.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Optional configuration file (TOML or JSON); the environment overrides it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    agent_server::memory::tune_allocator();
    let code = run().await;
    agent_server::logging::flush();
    code
}

async fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agent-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    agent_server::logging::init(config.debug);
    agent_server::memory::start_idle_trimmer();
    if config.secret_key.is_none() {
        log::warn!(
            "OH_SECRET_KEY is not set: secrets will be redacted in persisted conversation files"
        );
    }
    let services = match Services::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agent-server: cannot start: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let listener = match TcpListener::bind((cli.host.as_str(), cli.port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("agent-server: cannot bind {}:{}: {e}", cli.host, cli.port);
            return std::process::ExitCode::from(1);
        }
    };
    log::info!(
        "Starting OpenHands-compatible agent server on {}:{}",
        cli.host,
        cli.port
    );
    let server = match agent_server::start_server(services.clone(), listener) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agent-server: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match agent_server::serve_until_signal(services, server).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent-server: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
