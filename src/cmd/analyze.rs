//! `stratumguard analyze`: find pools in capture files.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use stratumguard::block::{BlockOptions, BlockStatus, Blocker};
use stratumguard::capture::offline;
use stratumguard::engine::Engine;
use stratumguard::output::{eve, summary, table};
use stratumguard::pools::Confidence;
use stratumguard::time::Timestamp;

/// Files smaller than this finish before a progress bar is worth drawing.
const PROGRESS_MIN_BYTES: u64 = 64 * 1024 * 1024;

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// pcap/pcapng files, or directories searched recursively for *.pcap, *.pcapng, *.cap.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// One JSON object per line (EVE-style) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 when any pool is found (stored or not: see --max-pools).
    #[arg(long)]
    pub fail_on_detect: bool,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub engine: super::EngineArgs,
    #[command(flatten)]
    pub block: BlockOptions,
}

pub fn run(args: AnalyzeArgs, common: &super::Common) -> anyhow::Result<i32> {
    let sigs = common.load_signatures()?;
    let mut blocker = Blocker::from_options(&args.block)?;
    let mut engine = Engine::new(args.engine.config(), sigs);
    let started = Instant::now();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();

    let (files, path_errors) = offline::expand_paths(&args.paths);
    let mut failed = !path_errors.is_empty();
    for e in &path_errors {
        report_error(&mut out, args.json, "", e)?;
    }
    if files.is_empty() && path_errors.is_empty() {
        anyhow::bail!("no capture files (*.pcap, *.pcapng, *.cap, *.dmp) in the paths given");
    }

    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = (!args.no_progress && std::io::stderr().is_terminal() && total >= PROGRESS_MIN_BYTES)
        .then(|| progress_bar(total));
    let mut done_bytes = 0;
    for f in &files {
        let result = offline::read_file(f, &mut engine, |n| {
            if let Some(b) = &bar {
                b.set_position(done_bytes + n);
            }
        });
        // Flows do not carry over from one file to the next; pools do.
        engine.clear_flows();
        match result {
            Ok(r) => done_bytes += r.bytes_read,
            Err((r, e)) => {
                done_bytes += r.bytes_read;
                failed = true;
                report_error(
                    &mut out,
                    args.json,
                    &f.display().to_string(),
                    &e.to_string(),
                )?;
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    let pools = engine.pools().sorted();
    let now = Timestamp::now();
    let mut statuses: Vec<Option<BlockStatus>> = Vec::with_capacity(pools.len());
    for p in &pools {
        statuses.push(match blocker.as_mut() {
            Some(b) => Some(b.observe(p, now)?),
            None => None,
        });
    }
    if let Some(b) = blocker.as_mut() {
        b.finish()?;
    }

    let stats = engine.stats();
    let confirmed = pools
        .iter()
        .filter(|p| p.confidence == Confidence::Confirmed)
        .count();
    let counts = (confirmed, pools.len() - confirmed);
    if args.json {
        for (p, s) in pools.iter().zip(&statuses) {
            writeln!(out, "{}", eve::pool_record(p, s.as_ref()))?;
        }
        let extra = serde_json::json!({
            "files": files.len(),
            "pools": pools.len(),
            "elapsed_s": started.elapsed().as_secs_f64(),
        });
        writeln!(out, "{}", eve::stats(&stats, extra))?;
    } else {
        if pools.is_empty() {
            writeln!(out, "no mining pools found")?;
        } else {
            write!(out, "{}", table::pool_table(&pools, &statuses))?;
        }
        writeln!(
            out,
            "{}",
            summary::analyze_line(files.len(), &stats, counts, started.elapsed())
        )?;
        if let Some(l) = summary::limits_line(&stats) {
            writeln!(out, "{l}")?;
        }
    }
    out.flush()?;

    Ok(if failed {
        2
    } else if args.fail_on_detect && (!pools.is_empty() || stats.pools_dropped_full > 0) {
        1
    } else {
        0
    })
}

/// Errors go to stderr always, and into the JSON stream as well.
fn report_error(
    out: &mut impl Write,
    json: bool,
    file: &str,
    message: &str,
) -> std::io::Result<()> {
    eprintln!("stratumguard: error: {message}");
    if json {
        writeln!(out, "{}", eve::error(file, message))?;
    }
    Ok(())
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}
