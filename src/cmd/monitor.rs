//! `stratumguard monitor`: watch interfaces live and report pools as they appear.
//!
//! Capture threads (`capture::live`) feed one bounded queue. This command's
//! tokio task owns the only `Engine`: it feeds it a batch at a time, prints
//! each pool event as soon as the batch that raised it is done, ages flows
//! once a second, and prints statistics every `--stats-interval` and at exit.
//! The engine is the same one `analyze` drives, so live and offline detection
//! cannot drift apart.

mod report;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use stratumguard::block::{BlockOptions, BlockStatus, Blocker};
use stratumguard::capture::live::{
    self, CaptureMsg, LinkState, LiveCapture, LiveOptions, LiveSource,
};
use stratumguard::engine::Engine;
use stratumguard::pools::PoolEvent;
use stratumguard::time::Timestamp;

/// Queue messages handed to the engine per batch: enough to amortise one
/// wake-up of the task, few enough that the events a batch raises are
/// printed within a millisecond or so of their packet arriving.
const BATCH: usize = 256;

/// How long after asking the capture threads for fresh counters the stats
/// line is printed: they answer within microseconds unless busy with a
/// packet, and a stats line a few milliseconds late changes nothing.
const STATS_SETTLE: Duration = Duration::from_millis(20);

/// Longest stats interval accepted: a week already means "rarely", and a
/// bound keeps the timer arithmetic far from overflow.
const MAX_INTERVAL_SECS: u64 = 7 * 24 * 3600;
/// Longest `--duration`: ten years, for the same reason; a sensor meant to
/// run for ever simply leaves `--duration` out.
const MAX_DURATION_SECS: u64 = 10 * 365 * 24 * 3600;

/// How often interface states are read, to report one that went down or
/// lost its link (libpcap does not). Listing interfaces takes a few
/// milliseconds, so every few seconds costs nothing and still tells the
/// operator of a dead mirror port promptly.
const LINK_CHECK_EVERY: Duration = Duration::from_secs(5);

/// How often idle flows are aged out. Flow idle timeouts are tens of seconds,
/// so a second of slack changes nothing a user can see.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// How often the blocker's upkeep runs. The blocker updates the firewall at
/// most once per `APPLY_INTERVAL_SECS` and leaves the rest pending, and only
/// its upkeep drops expired entries (iptables rules have no timeout of their
/// own); without it a pool reported blocked stayed reachable until the next
/// detection.
const BLOCK_UPKEEP_EVERY: Duration = Duration::from_secs(stratumguard::block::APPLY_INTERVAL_SECS);

#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    /// Interface to capture on (repeat for more, e.g. -i eth1 -i eth2).
    #[arg(short = 'i', long = "interface", value_name = "IFACE", required = true)]
    pub interfaces: Vec<String>,
    /// Do not put the interfaces in promiscuous mode (a SPAN/mirror port
    /// needs it to see other hosts' traffic, so it is on by default).
    #[arg(long)]
    pub no_promisc: bool,
    /// Capture only packets matching this BPF filter (tcpdump syntax).
    #[arg(long, value_name = "FILTER")]
    pub bpf: Option<String>,
    /// Bytes kept of each packet.
    #[arg(long, value_name = "BYTES", default_value_t = 65_535,
          value_parser = clap::value_parser!(u32).range(64..=live::MAX_SNAPLEN as i64))]
    pub snaplen: u32,
    /// Kernel capture buffer size in bytes (libpcap's default when not given).
    #[arg(long, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(65_536..=i32::MAX as i64))]
    pub buffer_size: Option<u32>,
    /// Print events and statistics as JSON lines (EVE-style) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also append each detection line to this file.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Seconds between statistics lines (0: only at exit; at most a week).
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=MAX_INTERVAL_SECS))]
    pub stats_interval: u64,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_DURATION_SECS))]
    pub duration: Option<u64>,
    #[command(flatten)]
    pub engine: super::EngineArgs,
    /// Boxed: the blocking options are most of this struct's size, and the
    /// command enum in `main` holds it by value.
    #[command(flatten)]
    pub block: Box<BlockOptions>,
}

pub fn run(args: MonitorArgs, common: &super::Common) -> anyhow::Result<i32> {
    // Everything that can fail is checked and opened before capture starts,
    // so a mistake ends the run at once with one line and exit 2.
    for (i, name) in args.interfaces.iter().enumerate() {
        if args.interfaces[..i].contains(name) {
            bail!("interface {name} is given twice");
        }
    }
    let sigs = common.load_signatures()?;
    live::check_interfaces(&args.interfaces)?;
    let opts = LiveOptions {
        promisc: !args.no_promisc,
        snaplen: args.snaplen,
        buffer_size: args.buffer_size,
        bpf: args.bpf.clone(),
    };
    let sources: Vec<LiveSource> = args
        .interfaces
        .iter()
        .map(|name| LiveSource::open(name, &opts))
        .collect::<Result<_, _>>()?;
    let blocker = Blocker::from_options(&args.block)?;
    let events_file = match &args.events {
        Some(path) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open events file {}", path.display()))?,
        ),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;

    // Capture starts here; the user hears which interfaces are watched.
    for s in &sources {
        eprintln!(
            "stratumguard: monitoring {} (link type {}, {}, snaplen {}{})",
            s.name(),
            s.link_name(),
            if opts.promisc {
                "promiscuous"
            } else {
                "not promiscuous"
            },
            opts.snaplen,
            opts.bpf
                .as_ref()
                .map(|f| format!(", filter {f:?}"))
                .unwrap_or_default(),
        );
    }
    let capture = LiveCapture::start(sources)?;
    let monitor = Monitor {
        engine: Engine::new(args.engine.config(), sigs),
        capture,
        blocker,
        events_file,
        json: args.json,
        started: Instant::now(),
        events: Vec::new(),
    };
    runtime.block_on(monitor.run(args.stats_interval, args.duration))
}

/// Why the monitor loop ended.
enum Stop {
    Signal(&'static str),
    Duration,
    AllInterfacesGone,
}

struct Monitor {
    engine: Engine,
    capture: LiveCapture,
    blocker: Option<Blocker>,
    events_file: Option<File>,
    json: bool,
    started: Instant,
    /// Reused between batches so draining events allocates nothing.
    events: Vec<PoolEvent>,
}

impl Monitor {
    async fn run(mut self, stats_interval: u64, duration: Option<u64>) -> anyhow::Result<i32> {
        let mut batch = Vec::with_capacity(BATCH);
        let mut running = self.capture.names().len();

        // Timers and signals.
        let mut expire = tokio::time::interval(EXPIRE_EVERY);
        expire.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stats_every = Duration::from_secs(stats_interval.max(1));
        let mut stats =
            tokio::time::interval_at(tokio::time::Instant::now() + stats_every, stats_every);
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = async {
            match duration {
                Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut link_check = tokio::time::interval(LINK_CHECK_EVERY);
        link_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut links = vec![LinkState::Up; running];
        let mut block_upkeep = tokio::time::interval(BLOCK_UPKEEP_EVERY);
        block_upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut terminate = Terminate::new()?;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let stats_due = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(stats_due);
        let mut stats_pending = false;

        // The loop: packets as they come, with the timers in between.
        let stop = loop {
            tokio::select! {
                n = self.capture.recv_batch(&mut batch, BATCH) => {
                    if n == 0 {
                        break Stop::AllInterfacesGone;
                    }
                    running -= self.feed(&mut batch);
                    self.report_events()?;
                    if running == 0 {
                        break Stop::AllInterfacesGone;
                    }
                }
                _ = expire.tick() => self.engine.expire(Timestamp::now()),
                _ = link_check.tick() => self.check_links(&mut links),
                _ = block_upkeep.tick(), if self.blocker.is_some() => self.block_upkeep(),
                _ = stats.tick(), if stats_interval > 0 => {
                    self.capture.request_stats();
                    stats_due.as_mut().reset(tokio::time::Instant::now() + STATS_SETTLE);
                    stats_pending = true;
                }
                _ = &mut stats_due, if stats_pending => {
                    stats_pending = false;
                    self.print_stats(false)?;
                }
                _ = &mut deadline => break Stop::Duration,
                _ = &mut ctrl_c => break Stop::Signal("SIGINT"),
                _ = terminate.recv() => break Stop::Signal("SIGTERM"),
            }
        };

        // Shutdown: stop capturing, finish what was already captured, report.
        self.capture.stop();
        while self.capture.try_recv_batch(&mut batch, BATCH) > 0 {
            self.feed(&mut batch);
            self.report_events()?;
        }
        match stop {
            Stop::Signal(name) => eprintln!("stratumguard: {name} received, stopping"),
            Stop::Duration => eprintln!("stratumguard: --duration reached, stopping"),
            Stop::AllInterfacesGone => {}
        }
        self.print_stats(true)?;
        if let Some(b) = self.blocker.as_mut() {
            b.finish().context("finishing the blocklist")?;
        }
        match stop {
            Stop::AllInterfacesGone => {
                bail!("every interface stopped capturing; nothing left to watch")
            }
            _ => Ok(0),
        }
    }

    /// Feeds a batch to the engine and empties it. Returns how many
    /// interfaces ended within the batch.
    fn feed(&mut self, batch: &mut Vec<CaptureMsg>) -> usize {
        let mut ended = 0;
        for msg in batch.drain(..) {
            match msg {
                CaptureMsg::Packet(p) => self.engine.process(p.ts, p.link, &p.data, p.wire_len),
                CaptureMsg::Ended { iface, error } => {
                    ended += 1;
                    let name = &self.capture.names()[iface];
                    if let Some(e) = error {
                        eprintln!("stratumguard: interface {name} stopped capturing: {e}");
                    }
                }
            }
        }
        ended
    }

    /// Applies blocks held back by the blocker's rate limit and removes
    /// expired ones. A failure is reported and monitoring goes on.
    fn block_upkeep(&mut self) {
        if let Some(b) = self.blocker.as_mut() {
            if let Err(e) = b.tick() {
                eprintln!("stratumguard: cannot update the blocklist: {e:#}");
            }
        }
    }

    /// Reports interfaces whose link state changed since the last check. A
    /// removed interface is reported by its capture thread instead.
    fn check_links(&self, last: &mut [LinkState]) {
        let names = self.capture.names();
        let now = match live::link_states(names) {
            Ok(states) => states,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read interface states");
                return;
            }
        };
        let capture = self.capture.stats();
        for (i, state) in now.into_iter().enumerate() {
            if state == last[i] || state == LinkState::Gone || !capture[i].running {
                continue;
            }
            let name = &names[i];
            match state {
                LinkState::Down => eprintln!(
                    "stratumguard: interface {name} went down: no packets until it is up again"
                ),
                LinkState::NoCarrier => eprintln!(
                    "stratumguard: interface {name} lost its link: no packets until it is back"
                ),
                LinkState::Up => eprintln!("stratumguard: interface {name} is up again"),
                LinkState::Gone => {}
            }
            last[i] = state;
        }
    }

    /// Prints (and appends to the events file) every event the engine raised,
    /// after handing its pool to the blocker.
    fn report_events(&mut self) -> anyhow::Result<()> {
        let mut events = std::mem::take(&mut self.events);
        self.engine.drain_events(&mut events);
        for ev in events.drain(..) {
            let status = self.blocker.as_mut().map(|b| block(b, &ev));
            let line = report::event(&ev, status.as_ref(), self.json);
            println_flushed(&line)?;
            if let Some(f) = self.events_file.as_mut() {
                // One write per line, so lines from concurrent writers of an
                // append-only file do not interleave.
                f.write_all(format!("{line}\n").as_bytes())
                    .context("cannot write to the events file")?;
            }
        }
        self.events = events;
        Ok(())
    }

    fn print_stats(&mut self, last: bool) -> anyhow::Result<()> {
        let ifaces = self.capture.stats();
        let engine = self.engine.stats();
        let pools = self.engine.pools().len();
        let uptime = self.started.elapsed();
        for line in report::stats_lines(&ifaces, &engine, pools, uptime, last) {
            eprintln!("{line}");
        }
        if self.json {
            println_flushed(&report::stats_json(&ifaces, &engine, pools, uptime, last))?;
        }
        Ok(())
    }
}

/// Hands one pool to the blocker. A blocker failure is shown with the event
/// and on stderr but does not stop monitoring: the detection still matters.
fn block(blocker: &mut Blocker, ev: &PoolEvent) -> BlockStatus {
    match blocker.observe(&ev.pool, Timestamp::now()) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("stratumguard: cannot block {}: {e:#}", ev.pool.server);
            BlockStatus::NotBlocked(format!("blocker error: {e:#}"))
        }
    }
}

fn println_flushed(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// SIGTERM, the signal service managers stop a sensor with. There is no such
/// signal elsewhere; there the monitor stops on Ctrl-C or `--duration` only.
struct Terminate {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Terminate {
    fn new() -> anyhow::Result<Terminate> {
        Ok(Terminate {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot listen for SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        self.signal.recv().await;
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    }
}
