//! A fuzz driver that runs on the stable toolchain: mutates a corpus seeded
//! from the real captures and the shipped files, runs every mutant through a
//! target from `fuzz/targets.rs`, and reports panics (crashes and broken
//! bounds) and inputs that run too long. See `fuzz/README.md` for what it
//! finds and what it cannot.
//!
//!     cargo run --profile fuzz --example fuzz -- --seconds 60 all
//!     cargo run --profile fuzz --example fuzz -- --replay FILE packets

use std::collections::HashSet;
use std::panic;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

#[path = "targets.rs"]
mod targets;

use targets::{Target, TARGETS};

/// Corpus entries kept per target; past it a new entry replaces a random one.
const MAX_CORPUS: usize = 4096;
/// Windows taken from each capture file as seeds for the `packets` target.
const WINDOWS_PER_CAPTURE: usize = 8;
/// Crash and slow inputs saved per target; more of the same add nothing.
const MAX_SAVED: usize = 20;

#[derive(Parser, Debug)]
#[command(about = "Mutational fuzzing of stratumguard's input parsers (stable toolchain)")]
struct Args {
    /// Total time for all targets named, split evenly.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seed of the mutation generator; the same seed makes the same inputs.
    #[arg(long, default_value_t = 0x5747_4a52)]
    seed: u64,
    /// Longest input tried.
    #[arg(long, default_value_t = 64 * 1024)]
    max_len: usize,
    /// An input that runs longer than this many milliseconds is a failure
    /// (quadratic work on hostile input is a denial of service).
    #[arg(long, default_value_t = 3000)]
    slow_ms: u64,
    /// Run this one input through the target and exit.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Where failing inputs are written.
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// Write each target's seeds to DIR/TARGET/ (a starting corpus for
    /// libFuzzer) and exit.
    #[arg(long, value_name = "DIR")]
    write_seeds: Option<PathBuf>,
    /// Target names, or `all`.
    #[arg(required = true)]
    targets: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let names: Vec<&str> = if args.targets.iter().any(|t| t == "all") {
        TARGETS.iter().map(|(n, _)| *n).collect()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    for n in &names {
        if targets::target(n).is_none() {
            let known: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
            eprintln!("fuzz: unknown target {n:?} (known: {})", known.join(", "));
            return ExitCode::from(2);
        }
    }

    let last_panic = install_panic_hook();
    if let Some(file) = &args.replay {
        return replay(file, &names, &last_panic);
    }

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some(dir) = &args.write_seeds {
        return write_seeds(dir, &names, &root, args.max_len);
    }
    let artifacts = args
        .artifacts
        .clone()
        .unwrap_or_else(|| root.join("fuzz/artifacts"));
    let watchdog = Watchdog::start(artifacts.clone(), Duration::from_millis(args.slow_ms * 20));
    let per_target = Duration::from_secs(args.seconds) / names.len() as u32;
    let mut failed = false;
    for (i, name) in names.iter().enumerate() {
        let target = targets::target(name).expect("checked above");
        let seeds = seeds(name, &root, args.max_len);
        let mut run = Run {
            name,
            target,
            rng: fastrand::Rng::with_seed(args.seed.wrapping_add(i as u64)),
            args: &args,
            artifacts: artifacts.join(name),
            last_panic: &last_panic,
            watchdog: &watchdog,
            report: Report::default(),
        };
        run.fuzz(seeds, per_target);
        failed |= run.report.crashes + run.report.slow > 0;
        println!("{}", run.report.line(name));
    }
    if failed {
        eprintln!(
            "fuzz: failures found; inputs are in {}",
            artifacts.display()
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs one saved input through each named target, with the panic shown.
fn replay(file: &Path, names: &[&str], last_panic: &Mutex<Option<String>>) -> ExitCode {
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("fuzz: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let mut code = ExitCode::SUCCESS;
    for name in names {
        let target = targets::target(name).expect("checked");
        let started = Instant::now();
        match panic::catch_unwind(|| target(&data)) {
            Ok(bits) => println!(
                "{name}: ok in {:.1} ms, reached {bits:#x}",
                started.elapsed().as_secs_f64() * 1e3
            ),
            Err(_) => {
                let msg = last_panic.lock().map(|m| m.clone()).ok().flatten();
                println!("{name}: PANIC {}", msg.unwrap_or_default());
                code = ExitCode::FAILURE;
            }
        }
    }
    code
}

fn write_seeds(dir: &Path, names: &[&str], root: &Path, max_len: usize) -> ExitCode {
    for name in names {
        let d = dir.join(name);
        let written = std::fs::create_dir_all(&d).and_then(|_| {
            for seed in seeds(name, root, max_len) {
                std::fs::write(d.join(format!("seed-{:016x}", fnv1a(&seed))), &seed)?;
            }
            Ok(())
        });
        if let Err(e) = written {
            eprintln!("fuzz: {}: {e}", d.display());
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// Seeds per target: real captures, shipped files, committed regressions.
fn seeds(name: &str, root: &Path, max_len: usize) -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    match name {
        "packets" => {
            for capture in files_under(&root.join("captures"), &["pcap", "pcapng"]) {
                seeds.extend(targets::packet_seeds_from_capture(
                    &capture,
                    max_len / 4,
                    WINDOWS_PER_CAPTURE,
                ));
            }
        }
        "tcp-flow" => {
            // Structured input: any bytes decode to some flow; vary the sizes.
            let mut rng = fastrand::Rng::with_seed(7);
            for len in [16, 64, 256, 1024, 4096, 16384] {
                seeds.push((0..len).map(|_| rng.u8(..)).collect());
            }
        }
        "signatures" => {
            seeds.push(targets::SIGNATURE_FILES.join("\0").into_bytes());
            seeds.extend(
                targets::SIGNATURE_FILES
                    .iter()
                    .map(|t| t.as_bytes().to_vec()),
            );
        }
        "state-file" => seeds.extend(
            targets::state_file::STATE_SEEDS
                .iter()
                .map(|t| t.as_bytes().to_vec()),
        ),
        _ => {}
    }
    let prefix = format!("{name}-");
    for f in files_under(&root.join("tests/hostile/regressions"), &["bin"]) {
        let is_ours = f
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix));
        if is_ours {
            seeds.extend(std::fs::read(&f).ok());
        }
    }
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    seeds
}

fn files_under(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                pending.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| extensions.contains(&x))
            {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

#[derive(Default)]
struct Report {
    execs: u64,
    elapsed: Duration,
    corpus: usize,
    feature_sets: usize,
    slowest: Duration,
    crashes: u64,
    slow: u64,
}

impl Report {
    fn line(&self, name: &str) -> String {
        format!(
            "{name}: {} execs in {:.1} s ({:.0}/s), corpus {}, {} feature sets, slowest {:.1} ms, {} crashes, {} slow",
            self.execs,
            self.elapsed.as_secs_f64(),
            self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.corpus,
            self.feature_sets,
            self.slowest.as_secs_f64() * 1e3,
            self.crashes,
            self.slow
        )
    }
}

struct Run<'a> {
    name: &'a str,
    target: Target,
    rng: fastrand::Rng,
    args: &'a Args,
    artifacts: PathBuf,
    last_panic: &'a Mutex<Option<String>>,
    watchdog: &'a Watchdog,
    report: Report,
}

impl Run<'_> {
    fn fuzz(&mut self, seeds: Vec<Vec<u8>>, budget: Duration) {
        let started = Instant::now();
        let mut seen: HashSet<u64> = HashSet::new();
        let mut corpus: Vec<Vec<u8>> = Vec::new();
        let mut crash_sites: HashSet<String> = HashSet::new();

        // Every seed runs once as it is.
        let mut queue: Vec<Vec<u8>> = seeds;
        queue.reverse();
        while started.elapsed() < budget {
            let input = match queue.pop() {
                Some(seed) => seed,
                None => {
                    let mut input = corpus[self.rng.usize(..corpus.len())].clone();
                    let rounds = 1 << self.rng.u32(0..4);
                    for _ in 0..rounds {
                        mutate(&mut input, &corpus, &mut self.rng);
                    }
                    input.truncate(self.args.max_len);
                    input
                }
            };

            self.watchdog.arm(self.name, &input);
            let t = Instant::now();
            let target = self.target;
            let result = panic::catch_unwind(|| target(&input));
            let took = t.elapsed();
            self.watchdog.disarm();
            self.report.execs += 1;
            self.report.slowest = self.report.slowest.max(took);

            match result {
                Ok(bits) => {
                    if took > Duration::from_millis(self.args.slow_ms) {
                        self.report.slow += 1;
                        let path = self.save("slow", &input);
                        eprintln!(
                            "{}: input took {:.0} ms: {}",
                            self.name,
                            took.as_secs_f64() * 1e3,
                            path.display()
                        );
                    }
                    let new = seen.insert(bits);
                    if new || corpus.is_empty() {
                        if corpus.len() < MAX_CORPUS {
                            corpus.push(input);
                        } else {
                            let at = self.rng.usize(..corpus.len());
                            corpus[at] = input;
                        }
                    }
                }
                Err(_) => {
                    self.report.crashes += 1;
                    let msg = self
                        .last_panic
                        .lock()
                        .map(|m| m.clone())
                        .ok()
                        .flatten()
                        .unwrap_or_default();
                    // One report per panic site; the message's first line names it.
                    let site = msg.lines().next().unwrap_or("").to_string();
                    if crash_sites.insert(site) {
                        let path = self.save("crash", &input);
                        eprintln!("{}: PANIC {msg}\n  input: {}", self.name, path.display());
                    }
                }
            }
        }
        self.report.elapsed = started.elapsed();
        self.report.corpus = corpus.len();
        self.report.feature_sets = seen.len();
    }

    fn save(&self, kind: &str, input: &[u8]) -> PathBuf {
        let path = self
            .artifacts
            .join(format!("{kind}-{:016x}.bin", fnv1a(input)));
        let saved = self.report.crashes + self.report.slow;
        if saved <= MAX_SAVED as u64 {
            let _ = std::fs::create_dir_all(&self.artifacts);
            if let Err(e) = std::fs::write(&path, input) {
                eprintln!("fuzz: cannot write {}: {e}", path.display());
            }
        }
        path
    }
}

/// Bytes that matter to the parsers under test: JSON and line structure,
/// HTTP framing, method names, and lengths at their edges.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"\"method\":",
    b"\"result\":",
    b"\"error\":",
    b"\"id\":",
    b"\"params\":",
    b"mining.subscribe",
    b"mining.notify",
    b"mining.authorize",
    b"login",
    b"job",
    b"eth_submitLogin",
    b"EthereumStratum/1.0.0",
    b"POST / HTTP/1.1\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked\r\n",
    b"0\r\n\r\n",
    b"X-Mining-Extensions: midstate\r\n",
    b"\"/params/0\"",
    b"\"refines\":",
    b"\"markers\":",
    b"\"version\":1",
    b"\"net\":\"10.0.0.0/8\"",
    b"\"source\":\"detected\"",
    b"\xff\xfe",
    b"\0",
];

const INTERESTING_U16: &[u16] = &[0, 1, 4, 5, 15, 20, 40, 60, 0x7fff, 0x8000, 0xffff];
const INTERESTING_U32: &[u32] = &[0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];

fn mutate(input: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut fastrand::Rng) {
    let len = input.len();
    match rng.u32(0..11) {
        // Flip a bit.
        0 if len > 0 => {
            let i = rng.usize(..len);
            input[i] ^= 1 << rng.u32(0..8);
        }
        // Set a byte.
        1 if len > 0 => {
            let i = rng.usize(..len);
            input[i] = rng.u8(..);
        }
        // Insert a token.
        2 => {
            let t = TOKENS[rng.usize(..TOKENS.len())];
            let at = rng.usize(..=len);
            input.splice(at..at, t.iter().copied());
        }
        // Overwrite with a token.
        3 if len > 0 => {
            let t = TOKENS[rng.usize(..TOKENS.len())];
            let at = rng.usize(..len);
            let end = (at + t.len()).min(len);
            input[at..end].copy_from_slice(&t[..end - at]);
        }
        // Delete a range.
        4 if len > 0 => {
            let at = rng.usize(..len);
            let n = rng.usize(1..=(len - at).min(64));
            input.drain(at..at + n);
        }
        // Duplicate a range (repetition: long lines, deep nesting, floods).
        5 if len > 0 => {
            let at = rng.usize(..len);
            let n = rng.usize(1..=(len - at).min(256));
            let piece = input[at..at + n].to_vec();
            let times = 1 << rng.u32(0..7);
            let to = rng.usize(..=len);
            for _ in 0..times {
                input.splice(to..to, piece.iter().copied());
            }
        }
        // A length field at its edges, in either byte order.
        6 if len >= 2 => {
            let at = rng.usize(..len - 1);
            let v = INTERESTING_U16[rng.usize(..INTERESTING_U16.len())];
            let b = if rng.bool() {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            input[at..at + 2].copy_from_slice(&b);
        }
        7 if len >= 4 => {
            let at = rng.usize(..len - 3);
            let v = INTERESTING_U32[rng.usize(..INTERESTING_U32.len())];
            let b = if rng.bool() {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            input[at..at + 4].copy_from_slice(&b);
        }
        // Add or subtract a little.
        8 if len > 0 => {
            let i = rng.usize(..len);
            input[i] = input[i].wrapping_add(rng.u8(..16)).wrapping_sub(8);
        }
        // Splice in part of another corpus entry.
        9 if !corpus.is_empty() => {
            let other = &corpus[rng.usize(..corpus.len())];
            if !other.is_empty() {
                let a = rng.usize(..other.len());
                let b = rng.usize(a..=other.len().min(a + 1024));
                let at = rng.usize(..=len);
                input.splice(at..at, other[a..b].iter().copied());
            }
        }
        // Cut the tail.
        10 if len > 1 => input.truncate(rng.usize(1..len)),
        _ => input.push(rng.u8(..)),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Keeps the last panic's message and place, and prints nothing: the driver
/// reports each panic site once.
fn install_panic_hook() -> Arc<Mutex<Option<String>>> {
    let last = Arc::new(Mutex::new(None));
    let keep = last.clone();
    panic::set_hook(Box::new(move |info| {
        let place = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if let Ok(mut l) = keep.lock() {
            *l = Some(format!("at {place}\n{payload}"));
        }
    }));
    last
}

/// Catches an input that never finishes (a hang, not just slowness): a
/// thread that writes the running input out and aborts the process.
struct Watchdog {
    current: Arc<Mutex<(String, Vec<u8>)>>,
    /// Milliseconds since `epoch` when the running input started; 0 when idle.
    started: Arc<AtomicU64>,
    epoch: Instant,
}

impl Watchdog {
    fn start(artifacts: PathBuf, limit: Duration) -> Watchdog {
        let w = Watchdog {
            current: Arc::new(Mutex::new((String::new(), Vec::new()))),
            started: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        };
        let (current, started, epoch) = (w.current.clone(), w.started.clone(), w.epoch);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            let s = started.load(Ordering::Relaxed);
            let now = epoch.elapsed().as_millis() as u64;
            if s != 0 && now.saturating_sub(s) > limit.as_millis() as u64 {
                let (name, input) = current.lock().map(|c| c.clone()).unwrap_or_default();
                let dir = artifacts.join(&name);
                let path = dir.join(format!("hang-{:016x}.bin", fnv1a(&input)));
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(&path, &input);
                eprintln!(
                    "{name}: input still running after {} s, aborting: {}",
                    limit.as_secs(),
                    path.display()
                );
                std::process::abort();
            }
        });
        w
    }

    fn arm(&self, name: &str, input: &[u8]) {
        if let Ok(mut c) = self.current.lock() {
            c.0.clear();
            c.0.push_str(name);
            c.1.clear();
            c.1.extend_from_slice(input);
        }
        let now = (self.epoch.elapsed().as_millis() as u64).max(1);
        self.started.store(now, Ordering::Relaxed);
    }

    fn disarm(&self) {
        self.started.store(0, Ordering::Relaxed);
    }
}
