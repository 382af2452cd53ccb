//! The desktop supervisor: owns the optional VNC desktop. Started at server start-up when
//! `enable_vnc` is on: runs TigerVNC's `vncserver` for `$DISPLAY`, then keeps a noVNC proxy child
//! in front of it, reports whether the proxy runs, and at shutdown kills the proxy's process
//! group and stops the VNC server (`vncserver -kill`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use actix::prelude::*;
use tokio::process::{Child, Command};

use crate::config::Config;
use crate::error::ApiError;
use crate::sidecar::{drain_output, is_alive, terminate};

/// How long `vncserver` may take to start the X server (it daemonises and exits).
const VNC_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `vncserver -kill` may take at shutdown.
const VNC_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The programs and parameters of the desktop, from the environment variables the reference reads.
#[derive(Debug, Clone)]
pub struct DesktopSettings {
    /// TigerVNC's start script.
    pub vncserver: PathBuf,
    /// noVNC's proxy script.
    pub novnc_proxy: PathBuf,
    /// `DISPLAY`, default `:1`.
    pub display: String,
    /// `VNC_GEOMETRY`, default `1280x800`.
    pub geometry: String,
    /// `NOVNC_PORT`, default 8002.
    pub novnc_port: u16,
    /// `NOVNC_WEB`, default `/opt/novnc-web`.
    pub novnc_web: PathBuf,
}

impl DesktopSettings {
    pub fn from_env() -> Self {
        let var = |k: &str, d: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| d.to_string())
        };
        DesktopSettings {
            vncserver: PathBuf::from("vncserver"),
            novnc_proxy: PathBuf::from("/usr/share/novnc/utils/novnc_proxy"),
            display: var("DISPLAY", ":1"),
            geometry: var("VNC_GEOMETRY", "1280x800"),
            novnc_port: var("NOVNC_PORT", "8002").parse().unwrap_or(8002),
            novnc_web: PathBuf::from(var("NOVNC_WEB", "/opt/novnc-web")),
        }
    }

    /// The VNC port of the display (`:1` -> 5901).
    pub fn vnc_port(&self) -> u16 {
        let n = self
            .display
            .rsplit(':')
            .next()
            .and_then(|d| d.split('.').next())
            .and_then(|d| d.parse::<u16>().ok());
        5900 + n.unwrap_or(1)
    }
}

/// Owns the noVNC proxy process and remembers whether it started the VNC server.
pub struct DesktopSupervisor {
    settings: DesktopSettings,
    vnc_started: bool,
    proxy: Option<Child>,
}

/// Asks whether the desktop is reachable (the proxy runs).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsDesktopRunning;

/// Stops the proxy and the VNC server (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopDesktop;

/// The VNC server has been started (or failed to); the proxy child, if it was launched.
#[derive(Message)]
#[rtype(result = "()")]
struct DesktopLaunched {
    vnc_started: bool,
    proxy: Option<Child>,
}

async fn launch(s: DesktopSettings) -> DesktopLaunched {
    let vnc = Command::new(&s.vncserver)
        .arg(&s.display)
        .args([
            "-geometry",
            &s.geometry,
            "-depth",
            "24",
            "-localhost",
            "yes",
            "-SecurityTypes",
            "None",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(VNC_START_TIMEOUT, vnc).await {
        Ok(Ok(st)) if st.success() => {}
        Ok(Ok(st)) => {
            log::warn!(
                "vncserver {} exited with {st}; the desktop will not run",
                s.display
            );
            return DesktopLaunched {
                vnc_started: false,
                proxy: None,
            };
        }
        Ok(Err(e)) => {
            log::warn!(
                "cannot run {}: {e}; the desktop will not run",
                s.vncserver.display()
            );
            return DesktopLaunched {
                vnc_started: false,
                proxy: None,
            };
        }
        Err(_) => {
            log::warn!(
                "vncserver did not start within {}s",
                VNC_START_TIMEOUT.as_secs()
            );
            return DesktopLaunched {
                vnc_started: false,
                proxy: None,
            };
        }
    }
    let mut proxy = Command::new(&s.novnc_proxy);
    proxy
        .args([
            "--listen",
            &format!("0.0.0.0:{}", s.novnc_port),
            "--vnc",
            &format!("127.0.0.1:{}", s.vnc_port()),
        ])
        .arg("--web")
        .arg(&s.novnc_web)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    match proxy.spawn() {
        Ok(mut child) => {
            if let Some(out) = child.stdout.take() {
                actix::spawn(drain_output("novnc", out, None, || {}));
            }
            if let Some(err) = child.stderr.take() {
                actix::spawn(drain_output("novnc", err, None, || {}));
            }
            log::info!("desktop available through noVNC on port {}", s.novnc_port);
            DesktopLaunched {
                vnc_started: true,
                proxy: Some(child),
            }
        }
        Err(e) => {
            log::warn!(
                "cannot start {}: {e}; the desktop will not be reachable",
                s.novnc_proxy.display()
            );
            DesktopLaunched {
                vnc_started: true,
                proxy: None,
            }
        }
    }
}

async fn stop_vnc(s: &DesktopSettings) {
    let kill = Command::new(&s.vncserver)
        .args(["-kill", &s.display])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    let _ = tokio::time::timeout(VNC_STOP_TIMEOUT, kill).await;
}

impl DesktopSupervisor {
    pub fn new(settings: DesktopSettings) -> Self {
        DesktopSupervisor {
            settings,
            vnc_started: false,
            proxy: None,
        }
    }
}

impl Actor for DesktopSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let me = ctx.address();
        let settings = self.settings.clone();
        actix::spawn(async move {
            let launched = launch(settings).await;
            me.do_send(launched);
        });
    }
}

impl Handler<DesktopLaunched> for DesktopSupervisor {
    type Result = ();

    fn handle(&mut self, msg: DesktopLaunched, _: &mut Self::Context) {
        self.vnc_started = msg.vnc_started;
        self.proxy = msg.proxy;
    }
}

impl Handler<IsDesktopRunning> for DesktopSupervisor {
    type Result = bool;

    fn handle(&mut self, _: IsDesktopRunning, _: &mut Self::Context) -> bool {
        self.proxy.as_mut().is_some_and(is_alive)
    }
}

impl Handler<StopDesktop> for DesktopSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopDesktop, _: &mut Self::Context) -> Self::Result {
        let proxy = self.proxy.take();
        let vnc = std::mem::take(&mut self.vnc_started).then(|| self.settings.clone());
        Box::pin(async move {
            if let Some(p) = proxy {
                terminate(p).await;
            }
            if let Some(s) = vnc {
                stop_vnc(&s).await;
            }
        })
    }
}

/// The typed handle routes use; `None` inside when the desktop is disabled in the configuration.
#[derive(Clone)]
pub struct DesktopHandle {
    addr: Option<Addr<DesktopSupervisor>>,
}

impl DesktopHandle {
    /// Starts the supervisor when `enable_vnc` is on.
    pub fn start(cfg: &Config) -> Self {
        let addr = cfg
            .enable_vnc
            .then(|| DesktopSupervisor::new(DesktopSettings::from_env()).start());
        DesktopHandle { addr }
    }

    /// A handle around an already started supervisor (tests).
    pub fn from_addr(addr: Addr<DesktopSupervisor>) -> Self {
        DesktopHandle { addr: Some(addr) }
    }

    /// Whether the desktop runs; `None` when disabled.
    pub async fn running(&self) -> Result<Option<bool>, ApiError> {
        match &self.addr {
            Some(a) => Ok(Some(a.send(IsDesktopRunning).await?)),
            None => Ok(None),
        }
    }

    /// Stops the desktop, if any (shutdown).
    pub async fn shutdown(&self) {
        if let Some(a) = &self.addr {
            let _ = a.send(StopDesktop).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn vnc_port_follows_the_display() {
        let s = DesktopSettings {
            display: ":3".into(),
            ..DesktopSettings::from_env()
        };
        assert_eq!(s.vnc_port(), 5903);
        let s = DesktopSettings {
            display: "host:2.0".into(),
            ..s
        };
        assert_eq!(s.vnc_port(), 5902);
    }

    #[actix_rt::test]
    async fn starts_vnc_then_proxy_and_stops_both() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        let vnc = script(
            d.path(),
            "vncserver",
            &format!("echo \"vnc $@\" >> {}", log.display()),
        );
        let proxy = script(
            d.path(),
            "novnc_proxy",
            &format!("echo \"proxy $@\" >> {}\nexec sleep 600", log.display()),
        );
        let settings = DesktopSettings {
            vncserver: vnc,
            novnc_proxy: proxy,
            display: ":1".into(),
            geometry: "800x600".into(),
            novnc_port: 18002,
            novnc_web: PathBuf::from("/web"),
        };
        let h = DesktopHandle::from_addr(DesktopSupervisor::new(settings).start());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while h.running().await.unwrap() != Some(true)
            || !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("proxy")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "desktop did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        h.shutdown().await;
        assert_eq!(h.running().await.unwrap(), Some(false));
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            vec![
                "vnc :1 -geometry 800x600 -depth 24 -localhost yes -SecurityTypes None",
                "proxy --listen 0.0.0.0:18002 --vnc 127.0.0.1:5901 --web /web",
                "vnc -kill :1",
            ]
        );
    }

    #[actix_rt::test]
    async fn absent_programs_leave_the_desktop_off() {
        let settings = DesktopSettings {
            vncserver: PathBuf::from("/nonexistent/vncserver"),
            ..DesktopSettings::from_env()
        };
        let h = DesktopHandle::from_addr(DesktopSupervisor::new(settings).start());
        assert_eq!(h.running().await.unwrap(), Some(false));
        h.shutdown().await;
    }
}
