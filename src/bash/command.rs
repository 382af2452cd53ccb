//! `BashCommandActor`: one per command. Owns the command's process (a process-group leader
//! running `/bin/sh -c <command>`), the PTY its stdout is written to and the pipe of its
//! stderr. It streams the output as ordered `BashOutput` events through the supervisor and reports
//! the exit code in the last one, sent only once both streams reached end of file (the exit
//! status often arrives before the last bytes). On timeout, kill or actor stop the whole process
//! group is killed; the shell is always reaped.
//!
//! Why stdout on a PTY but stderr on a pipe: the reference reports stdout and stderr separately
//! (its goldens hold `"stdout": "out\n", "stderr": "err\n"` for one command), which a single PTY
//! cannot do; the PTY keeps programs line-buffered, so output streams as it is printed.
//! Output post-processing is off (no `\r\n`), stdin is `/dev/null` and the PTY is not a
//! controlling terminal (nothing waits for input), and `TERM=dumb`, `PAGER=cat`, `GIT_PAGER=cat`
//! keep colours and pagers away. Known difference from the reference's pipes: tools that format
//! for terminals do so (`ls` prints columns).

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use actix::prelude::*;
use nix::sys::signal::{Signal, killpg};
use nix::sys::termios::{OutputFlags, SetArg, tcgetattr, tcsetattr};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::chunker::{Chunk, Chunker, Collector, Stream};
use super::model::{BashCommand, BashOutput, spawn_error_text};
use super::supervisor::{BashSupervisor, CommandStopped, RecordOutput};

/// Bytes per read from the PTY and the stderr pipe.
const READ_BUF: usize = 64 * 1024;
/// After a timeout kill, how long to wait for the streams to close before giving up on them
/// (a process that left the group may still hold the terminal).
const DRAIN_AFTER_KILL: Duration = Duration::from_secs(2);
/// Terminal size: wide, so tools that cut lines to the terminal width (ps, dpkg) keep them whole.
const PTY_ROWS: u16 = 24;
const PTY_COLS: u16 = 500;
/// Characters per stream kept for `execute_bash_command`'s collected output (DEVIATIONS #10).
pub const COLLECT_LIMIT: usize = 16 * 1024 * 1024;
/// The reference's exit code for a timeout or a spawn error.
const EXIT_FAILED: i64 = -1;

/// The actor of one running command.
pub struct BashCommandActor {
    command: BashCommand,
    supervisor: Addr<BashSupervisor>,
    /// `execute_bash_command` waits here for the final output with the collected text.
    waiter: Option<oneshot::Sender<BashOutput>>,
    /// The process group (the shell's pid); `None` before spawning or when spawning failed.
    pgid: Option<Pid>,
    /// The final event is recorded: the group has nothing left to kill.
    finished: bool,
}

impl BashCommandActor {
    pub fn new(
        command: BashCommand,
        supervisor: Addr<BashSupervisor>,
        waiter: Option<oneshot::Sender<BashOutput>>,
    ) -> Self {
        BashCommandActor {
            command,
            supervisor,
            waiter,
            pgid: None,
            finished: false,
        }
    }

    fn kill_group(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH: the group is already gone.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    /// The final event is recorded: answer a waiting `execute_bash_command`, then stop.
    fn finish(&mut self, out: BashOutput, collected: Option<Collector>, ctx: &mut Context<Self>) {
        self.finished = true;
        if let Some(w) = self.waiter.take() {
            let reply = match collected {
                Some(c) => {
                    let (stdout, stderr) = c.finish();
                    BashOutput {
                        stdout,
                        stderr,
                        ..out
                    }
                }
                None => out,
            };
            let _ = w.send(reply);
        }
        ctx.stop();
    }
}

/// Kills the command's process group now (server shutdown). The command still drains, reaps and
/// records its final event (exit code `-9`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct KillCommand;

impl Actor for BashCommandActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let id = self.command.id;
        let supervisor = self.supervisor.clone();
        match spawn(&self.command) {
            Err(text) => {
                let out = BashOutput::new(id, 0, Some(EXIT_FAILED), None, Some(text));
                let fut = async move {
                    record(&supervisor, out.clone()).await;
                    (out, None)
                };
                ctx.spawn(
                    fut.into_actor(self)
                        .map(|(out, collected), act, ctx| act.finish(out, collected, ctx)),
                );
            }
            Ok(p) => {
                self.pgid = Some(p.pgid);
                let fut = pump(
                    p,
                    id,
                    self.command.timeout,
                    supervisor,
                    self.waiter.is_some(),
                );
                ctx.spawn(
                    fut.into_actor(self)
                        .map(|(out, collected), act, ctx| act.finish(out, collected, ctx)),
                );
            }
        }
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if !self.finished {
            self.kill_group();
        }
        self.supervisor.do_send(CommandStopped(self.command.id));
    }
}

impl Handler<KillCommand> for BashCommandActor {
    type Result = ();

    fn handle(&mut self, _msg: KillCommand, _ctx: &mut Context<Self>) {
        if !self.finished {
            self.kill_group();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The process and its output pump (plain async code, run inside the actor's context).

/// The spawned process and its output ends.
struct Process {
    child: tokio::process::Child,
    pty: pty_process::Pty,
    stderr: tokio::process::ChildStderr,
    pgid: Pid,
}

/// Starts `/bin/sh -c <command>` on a fresh PTY in its own session; the error is the reference's
/// spawn-failure text.
fn spawn(command: &BashCommand) -> Result<Process, String> {
    let pty_err = |e: pty_process::Error| match e {
        pty_process::Error::Io(e) => spawn_error_text(e.raw_os_error(), &e.to_string(), None),
        pty_process::Error::Rustix(e) => spawn_error_text(Some(e.raw_os_error()), "", None),
        other => spawn_error_text(None, &other.to_string(), None),
    };
    let (pty, pts) = pty_process::open().map_err(pty_err)?;
    pty.resize(pty_process::Size::new(PTY_ROWS, PTY_COLS))
        .map_err(pty_err)?;
    let mut attrs = tcgetattr(&pts).map_err(|e| spawn_error_text(Some(e as i32), "", None))?;
    attrs.output_flags.remove(OutputFlags::OPOST);
    tcsetattr(&pts, SetArg::TCSANOW, &attrs)
        .map_err(|e| spawn_error_text(Some(e as i32), "", None))?;

    let slave = std::os::fd::AsFd::as_fd(&pts)
        .try_clone_to_owned()
        .map_err(|e| spawn_error_text(e.raw_os_error(), &e.to_string(), None))?;
    drop(pts);
    // Its own process group, no new session: std can then spawn with posix_spawn (no fork of
    // this large process), and the terminal is not a controlling terminal, so a program that
    // opens /dev/tty to prompt fails at once instead of waiting for input until the timeout.
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&command.command)
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped())
        .env("TERM", "dumb")
        .env("PAGER", "cat")
        .env("GIT_PAGER", "cat")
        .process_group(0);
    if let Some(cwd) = &command.cwd {
        cmd.current_dir(cwd);
    }
    let spawned = cmd.spawn();
    // Our copy of the terminal's child end must close now, or the PTY never reports end of file.
    drop(cmd);
    let mut child = spawned.map_err(|e| {
        let errno = e.raw_os_error();
        // Like Python's OSError, a failed chdir names the directory.
        let path = match errno {
            Some(libc::ENOENT | libc::ENOTDIR | libc::EACCES) => {
                command.cwd.as_deref().or(Some("/bin/sh"))
            }
            _ => None,
        };
        spawn_error_text(errno, &e.to_string(), path)
    })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    match (child.stderr.take(), pid) {
        (Some(stderr), Some(pid)) => Ok(Process {
            child,
            pty,
            stderr,
            pgid: Pid::from_raw(pid),
        }),
        _ => {
            let _ = child.start_kill();
            Err(spawn_error_text(
                None,
                "the child process has no stderr pipe",
                None,
            ))
        }
    }
}

/// Sends one event to the supervisor now; the returned future resolves once it is recorded.
/// Awaiting it before sending the next keeps a command's events in order and paces the reads:
/// a command runs at most one chunk ahead of its own log.
fn record(supervisor: &Addr<BashSupervisor>, out: BashOutput) -> impl Future<Output = ()> + use<> {
    let request = supervisor.send(RecordOutput(out));
    async move {
        if let Err(e) = request.await {
            log::error!("bash command: cannot record output: {e}");
        }
    }
}

/// Reads both streams until end of file and the exit status, cutting chunks as they fill;
/// records them, then the final event. Returns the final event, and the collected output when
/// `collect` is set.
async fn pump(
    p: Process,
    command_id: uuid::Uuid,
    timeout: i64,
    supervisor: Addr<BashSupervisor>,
    collect: bool,
) -> (BashOutput, Option<Collector>) {
    let Process {
        mut child,
        mut pty,
        mut stderr,
        pgid,
    } = p;
    let started = Instant::now();
    let far = started + Duration::from_secs(100 * 365 * 86_400);
    let deadline = started
        .checked_add(Duration::from_secs(u64::try_from(timeout).unwrap_or(0)))
        .unwrap_or(far);
    // Created once (not per loop turn): a read loop on a PTY turns thousands of times.
    let timeout_at = tokio::time::sleep_until(deadline.min(far));
    let give_up_at = tokio::time::sleep_until(far);
    let exited = child.wait();
    tokio::pin!(timeout_at, give_up_at, exited);

    let mut chunker = Chunker::new();
    let mut collector = collect.then(|| Collector::new(COLLECT_LIMIT));
    let mut out_buf = vec![0u8; READ_BUF];
    let mut err_buf = vec![0u8; READ_BUF];
    let (mut out_open, mut err_open) = (true, true);
    let mut status: Option<Option<std::process::ExitStatus>> = None;
    let mut timed_out = false;
    let mut in_flight = None;

    while out_open || err_open || status.is_none() {
        let read: Option<(Stream, usize)> = tokio::select! {
            r = pty.read(&mut out_buf), if out_open => match r {
                Ok(0) => { out_open = false; None }
                Ok(n) => Some((Stream::Stdout, n)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
                // EIO: every holder of the terminal closed it (end of output on a PTY).
                Err(_) => { out_open = false; None }
            },
            r = stderr.read(&mut err_buf), if err_open => match r {
                Ok(0) => { err_open = false; None }
                Ok(n) => Some((Stream::Stderr, n)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
                Err(_) => { err_open = false; None }
            },
            s = &mut exited, if status.is_none() => { status = Some(s.ok()); None }
            () = &mut timeout_at, if !timed_out => {
                timed_out = true;
                let _ = killpg(pgid, Signal::SIGKILL);
                give_up_at.as_mut().reset(Instant::now() + DRAIN_AFTER_KILL);
                None
            }
            () = &mut give_up_at, if timed_out => break,
        };
        let Some((stream, n)) = read else { continue };
        let data = match stream {
            Stream::Stdout => &out_buf[..n],
            Stream::Stderr => &err_buf[..n],
        };
        for chunk in chunker.push(stream, data) {
            if let Some(c) = collector.as_mut() {
                c.add(&chunk);
            }
            if let Some(previous) = in_flight.take() {
                previous.await;
            }
            let Chunk {
                order,
                stdout,
                stderr,
            } = chunk;
            in_flight = Some(record(
                &supervisor,
                BashOutput::new(command_id, order, None, stdout, stderr),
            ));
        }
    }
    if status.is_none() {
        // Gave up draining after a kill: still reap the shell (bounded), never leave a zombie.
        let _ = killpg(pgid, Signal::SIGKILL);
        status = tokio::time::timeout(DRAIN_AFTER_KILL, &mut exited)
            .await
            .ok()
            .map(Result::ok);
    }
    let exit_code = match (timed_out, status.flatten()) {
        (true, _) | (false, None) => EXIT_FAILED,
        (false, Some(st)) => st
            .code()
            .map(i64::from)
            .or_else(|| st.signal().map(|s| -i64::from(s)))
            .unwrap_or(EXIT_FAILED),
    };
    let last = chunker.finish();
    if let Some(c) = collector.as_mut() {
        c.add(&last);
    }
    if let Some(previous) = in_flight.take() {
        previous.await;
    }
    let final_out = BashOutput::new(
        command_id,
        last.order,
        Some(exit_code),
        last.stdout,
        last.stderr,
    );
    record(&supervisor, final_out.clone()).await;
    (final_out, collector)
}
