//! The VS Code supervisor: owns the optional `openvscode-server` child process. Started at
//! server start-up when `enable_vscode` is on; if the program is installed and `vscode_port` is
//! free it launches it with a connection token (the first session key, or 64 random hex digits),
//! reports whether it runs, and kills its process group at shutdown.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use actix::prelude::*;
use tokio::process::{Child, Command};

use crate::config::Config;
use crate::error::ApiError;
use crate::sidecar::{drain_output, is_alive, terminate};

/// Where the reference's images install openvscode-server.
pub const VSCODE_HOME: &str = "/openhands/.openvscode-server";
/// How long the server may take to print its ready line before a warning is logged.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The line openvscode-server prints once it serves.
const READY_MARKER: &str = "Web UI available";

/// What the supervisor needs to launch the program.
#[derive(Debug, Clone)]
pub struct VscodeSettings {
    pub binary: PathBuf,
    /// Passed as `--extensions-dir` when it exists.
    pub extensions_dir: PathBuf,
    pub port: u16,
    /// The first session API key: the connection token even before (or without) a launch.
    pub token: Option<String>,
}

impl VscodeSettings {
    pub fn from_config(cfg: &Config) -> Self {
        let home = PathBuf::from(VSCODE_HOME);
        VscodeSettings {
            binary: home.join("bin/openvscode-server"),
            extensions_dir: home.join("extensions"),
            port: cfg.vscode_port,
            token: cfg.session_api_keys.first().cloned(),
        }
    }
}

/// Owns the openvscode-server process, if one was launched.
pub struct VscodeSupervisor {
    settings: VscodeSettings,
    /// The connection token; `None` without session keys until the program starts.
    token: Option<String>,
    child: Option<Child>,
}

/// Asks whether the server runs and which token its URL carries.
#[derive(Message)]
#[rtype(result = "VscodeState")]
pub struct GetVscodeState;

/// The answer to [`GetVscodeState`].
#[derive(Debug, Clone, PartialEq, Eq, MessageResponse)]
pub struct VscodeState {
    pub running: bool,
    pub token: Option<String>,
}

/// Stops the program (shutdown); answers once the process group is gone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopVscode;

impl VscodeSupervisor {
    pub fn new(settings: VscodeSettings) -> Self {
        let token = settings.token.clone();
        VscodeSupervisor {
            settings,
            token,
            child: None,
        }
    }

    fn launch(&mut self) {
        let s = &self.settings;
        if !s.binary.is_file() {
            log::warn!(
                "VSCode is enabled but {} is not installed; VSCode will not run",
                s.binary.display()
            );
            return;
        }
        if std::net::TcpListener::bind(("0.0.0.0", s.port)).is_err() {
            log::warn!("VSCode port {} is in use; VSCode will not run", s.port);
            return;
        }
        let token = self.token.clone().unwrap_or_else(|| {
            (0..32)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect()
        });
        let mut cmd = Command::new(&s.binary);
        cmd.args([
            "--host",
            "0.0.0.0",
            "--connection-token",
            &token,
            "--port",
            &s.port.to_string(),
        ]);
        if s.extensions_dir.is_dir() {
            cmd.arg("--extensions-dir").arg(&s.extensions_dir);
        }
        cmd.arg("--disable-workspace-trust")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("cannot start {}: {e}", s.binary.display());
                return;
            }
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        if let Some(out) = child.stdout.take() {
            actix::spawn(drain_output(
                "openvscode-server",
                out,
                Some(READY_MARKER),
                move || {
                    let _ = ready_tx.send(());
                },
            ));
        }
        if let Some(err) = child.stderr.take() {
            actix::spawn(drain_output("openvscode-server", err, None, || {}));
        }
        let port = s.port;
        actix::spawn(async move {
            match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
                Ok(Ok(())) => log::info!("VSCode server ready on port {port}"),
                _ => log::warn!(
                    "VSCode server did not report ready within {}s",
                    READY_TIMEOUT.as_secs()
                ),
            }
        });
        self.token = Some(token);
        self.child = Some(child);
    }
}

impl Actor for VscodeSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.launch();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        // `kill_on_drop` ends the leader; the group is ended by `StopVscode` in a clean shutdown.
        self.child = None;
    }
}

impl Handler<GetVscodeState> for VscodeSupervisor {
    type Result = VscodeState;

    fn handle(&mut self, _: GetVscodeState, _: &mut Self::Context) -> VscodeState {
        let running = self.child.as_mut().is_some_and(is_alive);
        VscodeState {
            running,
            token: self.token.clone(),
        }
    }
}

impl Handler<StopVscode> for VscodeSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopVscode, _: &mut Self::Context) -> Self::Result {
        let child = self.child.take();
        Box::pin(async move {
            if let Some(c) = child {
                terminate(c).await;
            }
        })
    }
}

/// The typed handle routes use; `None` inside when VS Code is disabled in the configuration.
#[derive(Clone)]
pub struct VscodeHandle {
    addr: Option<Addr<VscodeSupervisor>>,
}

impl VscodeHandle {
    /// Starts the supervisor when `enable_vscode` is on.
    pub fn start(cfg: &Config) -> Self {
        let addr = cfg
            .enable_vscode
            .then(|| VscodeSupervisor::new(VscodeSettings::from_config(cfg)).start());
        VscodeHandle { addr }
    }

    /// A handle around an already started supervisor (tests).
    pub fn from_addr(addr: Addr<VscodeSupervisor>) -> Self {
        VscodeHandle { addr: Some(addr) }
    }

    pub fn enabled(&self) -> bool {
        self.addr.is_some()
    }

    /// Running state and token; `None` when disabled.
    pub async fn state(&self) -> Result<Option<VscodeState>, ApiError> {
        match &self.addr {
            Some(a) => Ok(Some(a.send(GetVscodeState).await?)),
            None => Ok(None),
        }
    }

    /// Kills the program, if any (shutdown).
    pub async fn shutdown(&self) {
        if let Some(a) = &self.addr {
            let _ = a.send(StopVscode).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[actix_rt::test]
    async fn missing_program_is_not_running_but_keeps_the_key_token() {
        let settings = VscodeSettings {
            binary: PathBuf::from("/nonexistent/openvscode-server"),
            extensions_dir: PathBuf::from("/nonexistent"),
            port: free_port(),
            token: Some("k1".into()),
        };
        let h = VscodeHandle::from_addr(VscodeSupervisor::new(settings.clone()).start());
        assert_eq!(
            h.state().await.unwrap(),
            Some(VscodeState {
                running: false,
                token: Some("k1".into())
            })
        );
        let h = VscodeHandle::from_addr(
            VscodeSupervisor::new(VscodeSettings {
                token: None,
                ..settings
            })
            .start(),
        );
        assert_eq!(
            h.state().await.unwrap(),
            Some(VscodeState {
                running: false,
                token: None
            })
        );
    }

    #[actix_rt::test]
    async fn supervises_and_kills_the_program() {
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("args");
        let script = d.path().join("openvscode-server");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho \"$@\" > {}\necho 'Web UI available at http://x'\nexec sleep 600\n", pidfile.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        let settings = VscodeSettings {
            binary: script,
            extensions_dir: d.path().join("none"),
            port,
            token: None,
        };
        let h = VscodeHandle::from_addr(VscodeSupervisor::new(settings).start());
        let state = h.state().await.unwrap().unwrap();
        assert!(state.running);
        let token = state.token.unwrap();
        assert_eq!(token.len(), 64);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let args = loop {
            if let Ok(a) = std::fs::read_to_string(&pidfile).map(|a| a.trim().to_string())
                && !a.is_empty()
            {
                break a;
            }
            assert!(std::time::Instant::now() < deadline, "script did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(
            args,
            format!(
                "--host 0.0.0.0 --connection-token {token} --port {port} --disable-workspace-trust"
            )
        );
        h.shutdown().await;
        assert_eq!(h.state().await.unwrap().map(|s| s.running), Some(false));
    }
}
