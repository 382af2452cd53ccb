//! The machine's limits for `docs/performance.md`, measured the way the server uses the machine:
//! starting `bash -c true` (what a background command costs before it does anything), and
//! the disk under a given directory (put it on the same file system as the server's data):
//! a durable 2 KB file the way the event log writes one (temporary file, fsync, rename, fsync of
//! the directory), the same without any sync, and a plain append with `fdatasync`.
//!
//! ```sh
//! cargo run --release --example machine_limits -- /path/on/the/data/disk 500
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SIZE: usize = 2048;

fn percentile(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p / 100.0).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut v: Vec<Duration>) {
    let n = v.len();
    println!(
        "{name:<52} p50 {:>7.3} ms  p99 {:>7.3} ms  (n={n})",
        percentile(&mut v, 50.0),
        percentile(&mut v, 99.0)
    );
}

fn timed(
    n: usize,
    mut f: impl FnMut(usize) -> std::io::Result<()>,
) -> std::io::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i)?;
        out.push(t.elapsed());
    }
    Ok(out)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "machine-limits".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(500);
    let dir = Path::new(&dir).join("machine-limits-scratch");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let data = vec![b'x'; SIZE];

    report(
        "spawn and reap `bash -c true`",
        timed(n.min(200), |_| {
            let status = Command::new("bash").args(["-c", "true"]).status()?;
            assert!(status.success());
            Ok(())
        })?,
    );

    let durable = dir.join("durable");
    fs::create_dir_all(&durable)?;
    report(
        "2 KB file: write, fsync, rename, fsync directory",
        timed(n, |i| {
            let tmp = durable.join(format!(".tmp-{i}"));
            let mut f = File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            fs::rename(&tmp, durable.join(format!("event-{i:05}.json")))?;
            File::open(&durable)?.sync_all()
        })?,
    );

    let unsynced = dir.join("unsynced");
    fs::create_dir_all(&unsynced)?;
    report(
        "2 KB file: write, rename, no sync",
        timed(n, |i| {
            let tmp = unsynced.join(format!(".tmp-{i}"));
            File::create(&tmp)?.write_all(&data)?;
            fs::rename(&tmp, unsynced.join(format!("event-{i:05}.json")))
        })?,
    );

    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("append.log"))?;
    report(
        "append 2 KB + fdatasync",
        timed(n, |_| {
            log.write_all(&data)?;
            log.sync_data()
        })?,
    );

    fs::remove_dir_all(&dir)
}
