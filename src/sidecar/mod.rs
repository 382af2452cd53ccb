//! Optional helper programs the server supervises (CONFIG.md §5): the VS Code server
//! ([`vscode`]) and the VNC desktop ([`desktop`]). Each is an actor that owns its child
//! processes, reports whether they run, and kills them (whole process group) at shutdown.

pub mod desktop;
pub mod vscode;

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// How long a child gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// True while `child` has not exited.
pub fn is_alive(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}

/// Stops `child` and everything in its process group: SIGTERM, then SIGKILL after
/// [`STOP_GRACE`]. The child must have been spawned as a process-group leader.
pub async fn terminate(mut child: Child) {
    let Some(pid) = child.id() else {
        return;
    };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Stragglers that ignored SIGTERM while the leader exited.
    let _ = killpg(group, Signal::SIGKILL);
}

/// Logs the lines of a child's output under `name` until it closes; returns once a line contains
/// `marker` is seen by calling `on_marker` (at most once), and keeps draining afterwards so the
/// pipe never fills.
pub async fn drain_output<R, F>(
    name: &'static str,
    reader: R,
    marker: Option<&'static str>,
    on_marker: F,
) where
    R: tokio::io::AsyncRead + Unpin,
    F: FnOnce(),
{
    let mut lines = BufReader::new(reader).lines();
    let mut on_marker = Some(on_marker);
    while let Ok(Some(line)) = lines.next_line().await {
        log::debug!(target: "sidecar", "{name}: {line}");
        if let Some(m) = marker
            && line.contains(m)
            && let Some(f) = on_marker.take()
        {
            f();
        }
    }
}
