//! The disk's limits for docs/performance.md, measured in a directory on the same file system as
//! the server's data: what one durable append costs (the journal's sync per batch), what a
//! durable file costs the plain way (temp file, fsync, rename, fsync of the directory: the cost
//! per event before the journal), and what creating an event file without a sync costs (each
//! event still gets its file, in the reference's layout).
//!
//! ```sh
//! cargo run --release --example disk_limits -- /tmp/disk-limits 500
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const SIZE: usize = 2048;

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p / 100.0).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut v: Vec<Duration>) {
    let n = v.len();
    println!(
        "{name:<58} p50 {:>7.3} ms  p99 {:>7.3} ms  (n={n})",
        pct(&mut v, 50.0),
        pct(&mut v, 99.0)
    );
}

fn timed(n: usize, mut f: impl FnMut(usize)) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let t = Instant::now();
            f(i);
            t.elapsed()
        })
        .collect()
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "disk-limits".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(500);
    let dir = Path::new(&dir);
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let data = vec![b'x'; SIZE];

    // one durable append: what a journal batch costs, whatever its size
    let mut journal = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("journal"))?;
    report(
        "append 2 KB + fdatasync (journal batch)",
        timed(n, |_| {
            journal.write_all(&data).unwrap();
            journal.sync_data().unwrap();
        }),
    );

    // the plain durable file: temp file, fsync, rename, fsync of the directory
    let d1 = dir.join("durable");
    fs::create_dir_all(&d1)?;
    report(
        "2 KB file: write, fsync, rename, fsync dir (old per event)",
        timed(n, |i| {
            let tmp = d1.join(format!(".tmp-{i}"));
            let mut f = File::create(&tmp).unwrap();
            f.write_all(&data).unwrap();
            f.sync_all().unwrap();
            fs::rename(&tmp, d1.join(format!("event-{i:05}.json"))).unwrap();
            File::open(&d1).unwrap().sync_all().unwrap();
        }),
    );

    // an event file without a sync: the part of an append each event still costs
    let d2 = dir.join("unsynced");
    fs::create_dir_all(&d2)?;
    report(
        "2 KB file: write, rename, no sync (per event now)",
        timed(n, |i| {
            let tmp = d2.join(format!(".tmp-{i}"));
            let mut f = File::create(&tmp).unwrap();
            f.write_all(&data).unwrap();
            drop(f);
            fs::rename(&tmp, d2.join(format!("event-{i:05}.json"))).unwrap();
        }),
    );

    // one group commit of 16 events: one journal sync of 32 KB, then 16 unsynced files
    let d3 = dir.join("batch");
    fs::create_dir_all(&d3)?;
    let mut k = 0;
    let (mut syncs, mut files) = (Vec::new(), Vec::new());
    let rec = data.repeat(16);
    let batches = timed(n / 4, |_| {
        let t = Instant::now();
        journal.write_all(&rec).unwrap();
        journal.sync_data().unwrap();
        syncs.push(t.elapsed());
        let t = Instant::now();
        for _ in 0..16 {
            let tmp = d3.join(format!(".tmp-{k}"));
            let mut f = File::create(&tmp).unwrap();
            f.write_all(&data).unwrap();
            drop(f);
            fs::rename(&tmp, d3.join(format!("event-{k:05}.json"))).unwrap();
            k += 1;
        }
        files.push(t.elapsed());
    });
    report(
        "batch of 16 events (32 KB journal sync + 16 files)",
        batches,
    );
    report("  of which the journal append + fdatasync", syncs);
    report("  of which the 16 unsynced files", files);
    fs::remove_dir_all(dir)?;
    Ok(())
}
