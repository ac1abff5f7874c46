//! Blocking: turns pool records into firewall entries.
//!
//! ```text
//! pool record ──> policy ──> state ──> backend
//!                (confirmed?  (entries,   (nftables | ipset | iptables | windows | list,
//!                 allowlist,   TTL, cap,   each possibly wrapped in the dry run)
//!                 never-block) atomic file)
//! ```
//!
//! The [`Blocker`] owns the three. Backends only ever see parsed
//! [`IpNet`]s and port numbers: nothing from the wire reaches a command line
//! as text, and no shell is involved anywhere.

use std::io::Write;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Serialize;

use crate::pools::PoolRecord;
use crate::time::Timestamp;

pub mod backend;
pub mod ipset;
pub mod iptables;
pub mod list;
pub mod nft;
pub mod policy;
pub mod state;
pub mod windows;
mod xtables;

use backend::{Backend, Desired, DesiredEntry, DryRun, Plan, RENEW_SLACK_SECS};
use policy::{Decision, Policy};
use state::{Entry, PortRange, Source, State, Upsert};

pub const DEFAULT_STATE_PATH: &str = "/var/lib/stratumguard/state.json";
pub const DEFAULT_LIST_PATH: &str = "/var/lib/stratumguard/blocklist.txt";
pub const DEFAULT_WINDOWS_DIR: &str = "/var/lib/stratumguard/windows";

/// Least time between two firewall updates triggered by detections. A flood
/// of new pools then costs one transaction a second, not one per pool; the
/// entries in between are applied together at the next update, at a
/// `tick`, or at `finish`.
pub const APPLY_INTERVAL_SECS: u64 = 1;

pub const BACKENDS: &[&str] = &["nftables", "ipset", "iptables", "windows", "list"];

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    // `error`, not `source`: the message already carries it, and a chain
    // printer would otherwise print it twice.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: malformed at line {line}, column {column}: {message}", path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{program}: {message}")]
    Command { program: String, message: String },
    #[error("the blocklist is full: all {max} entries were added by hand (raise --block-max)")]
    Full { max: usize },
    #[error("unknown backend {0:?} (choose one of nftables, ipset, iptables, windows, list)")]
    UnknownBackend(String),
    #[error("{net} not blocked: {reason}")]
    Refused { net: IpNet, reason: String },
}

pub(crate) fn malformed(path: &Path, e: &serde_json::Error) -> BlockError {
    // serde_json ends its message with the position, which we give apart.
    let full = e.to_string();
    let message = match full.rfind(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    BlockError::Malformed {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message,
    }
}

/// Writes a file so that a reader (or a crash) sees the old contents or the
/// new ones, never a mix: temporary file in the same directory, fsync,
/// rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BlockError> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Like [`write_atomic`], with the contents streamed by `fill` (through a
/// buffer) rather than held in memory whole.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), BlockError> {
    let io = |e| BlockError::Io {
        path: path.to_path_buf(),
        error: e,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));

    let f = std::fs::File::create(&tmp).map_err(io)?;
    let mut w = std::io::BufWriter::new(f);
    fill(&mut w).map_err(io)?;
    let f = w.into_inner().map_err(|e| io(e.into_error()))?;
    f.sync_all().map_err(io)?;
    drop(f);

    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

fn parse_net_arg(s: &str) -> Result<IpNet, String> {
    policy::parse_net(s)
}

fn parse_max(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("{s:?}: expected a positive number of entries")),
        Ok(n) if n > u32::MAX as usize => Err(format!("{s}: at most {} entries", u32::MAX)),
        Ok(n) => Ok(n),
    }
}

/// Policy, state and output settings shared by `analyze`/`monitor --block`
/// and the `block` subcommands.
#[derive(clap::Args, Debug, Clone)]
pub struct BlockSettings {
    /// Also block pools only seen from the client side (anyone can fake those).
    #[arg(long)]
    pub block_suspected: bool,
    /// Never block this address or network (repeatable).
    #[arg(long = "allow", value_name = "CIDR", value_parser = parse_net_arg)]
    pub allow: Vec<IpNet>,
    /// Never block the addresses/networks in FILE (one per line, # comments).
    #[arg(long, value_name = "FILE")]
    pub allow_file: Option<PathBuf>,
    /// Replace the shipped never-block list of shared CDN/cloud ranges (JSON).
    #[arg(long, value_name = "FILE")]
    pub never_block_file: Option<PathBuf>,
    /// Block pools even inside the never-block list's shared ranges.
    #[arg(long)]
    pub force_shared: bool,
    /// Also block these TCP ports outright, e.g. 3333,5555,14444-14450.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub block_ports: Vec<PortRange>,
    /// Also block this network (repeatable); kept in the state until removed.
    #[arg(long = "block-cidr", value_name = "CIDR", value_parser = parse_net_arg)]
    pub block_cidr: Vec<IpNet>,
    /// Lifetime of a detected entry in seconds, renewed on each sighting; 0 = permanent.
    #[arg(long, value_name = "SECS", default_value_t = state::DEFAULT_TTL_SECS)]
    pub block_ttl: u64,
    /// Most entries per backend; the least recently seen pools go first.
    #[arg(long, value_name = "N", default_value_t = state::DEFAULT_MAX_ENTRIES,
          value_parser = parse_max)]
    pub block_max: usize,
    /// Blocklist state file.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_STATE_PATH)]
    pub state: PathBuf,
    /// Print exactly what would change; change nothing (not even the state file).
    #[arg(long)]
    pub dry_run: bool,
    /// Output file of the list backend (FILE and FILE.json).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_LIST_PATH)]
    pub list_file: PathBuf,
    /// Output directory of the windows backend's scripts.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_WINDOWS_DIR)]
    pub windows_dir: PathBuf,
}

impl Default for BlockSettings {
    fn default() -> BlockSettings {
        BlockSettings {
            block_suspected: false,
            allow: Vec::new(),
            allow_file: None,
            never_block_file: None,
            force_shared: false,
            block_ports: Vec::new(),
            block_cidr: Vec::new(),
            block_ttl: state::DEFAULT_TTL_SECS,
            block_max: state::DEFAULT_MAX_ENTRIES,
            state: DEFAULT_STATE_PATH.into(),
            dry_run: false,
            list_file: DEFAULT_LIST_PATH.into(),
            windows_dir: DEFAULT_WINDOWS_DIR.into(),
        }
    }
}

impl BlockSettings {
    fn ttl(&self) -> Option<u64> {
        (self.block_ttl > 0).then_some(self.block_ttl)
    }

    /// Builds the policy: allowlists, the never-block list, host addresses.
    pub fn policy(&self) -> Result<Policy, BlockError> {
        let mut allow = self.allow.clone();
        if let Some(f) = &self.allow_file {
            allow.extend(policy::parse_allow_list(&policy::read_list_file(f)?, f)?);
        }
        let never_block = match &self.never_block_file {
            Some(f) => policy::parse_never_block(&policy::read_list_file(f)?, f)?,
            None => policy::parse_never_block(
                policy::BUILTIN_NEVER_BLOCK,
                Path::new("built-in never-block list"),
            )?,
        };
        let host_addrs = policy::host_addresses().unwrap_or_else(|e| {
            tracing::warn!("cannot read this host's addresses, they are not protected: {e}");
            Default::default()
        });
        Ok(Policy {
            block_suspected: self.block_suspected,
            allow,
            host_addrs,
            never_block,
            force_shared: self.force_shared,
        })
    }

    /// The backend named, wrapped in the recording dry run if asked.
    pub fn backend(&self, name: &str) -> Result<Box<dyn Backend>, BlockError> {
        let inner: Box<dyn Backend> = match name {
            "nftables" | "nft" => Box::new(nft::Nft),
            "ipset" => Box::new(ipset::Ipset),
            "iptables" => Box::new(iptables::Iptables),
            "windows" => Box::new(windows::Windows {
                dir: self.windows_dir.clone(),
            }),
            "list" => Box::new(list::List {
                path: self.list_file.clone(),
            }),
            other => return Err(BlockError::UnknownBackend(other.to_string())),
        };
        Ok(if self.dry_run {
            Box::new(DryRun::new(inner))
        } else {
            inner
        })
    }
}

/// Options shared by `analyze --block` and `monitor --block`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct BlockOptions {
    /// Firewall backend to feed with the pools found: nftables, ipset,
    /// iptables, windows or list.
    #[arg(long, value_name = "BACKEND")]
    pub block: Option<String>,
    #[command(flatten)]
    pub settings: BlockSettings,
}

/// What the blocker did with one pool record, shown beside the detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockStatus {
    Blocked,
    /// `--dry-run`: it would have been blocked; nothing was changed.
    WouldBlock,
    NotBlocked(String),
}

/// Counters of the blocker's decisions, for the stats output.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BlockerStats {
    /// Pools that became new entries.
    pub added: u64,
    /// Sightings of pools already blocked.
    pub renewed: u64,
    /// Pools the policy refused (suspected, allowlisted, shared, ...).
    pub not_blocked: u64,
    /// Entries dropped because of the cap (kept across restarts in the state).
    pub dropped_over_cap: u64,
    /// Firewall updates that changed something.
    pub applies: u64,
}

/// Wall-clock Unix seconds: firewall timers run on it.
fn wall_secs() -> u64 {
    Timestamp::now().secs()
}

pub struct Blocker {
    policy: Policy,
    state: State,
    state_path: PathBuf,
    backend: Box<dyn Backend>,
    dry_run: bool,
    /// Print dry-run plans to stderr (analyze/monitor); `block` prints its own.
    echo_dry_run: bool,
    ttl: Option<u64>,
    max: usize,
    clock: Box<dyn Fn() -> u64 + Send>,
    dirty: bool,
    last_apply: Option<u64>,
    stats: BlockerStats,
}

impl Blocker {
    /// Builds the blocker for `analyze`/`monitor`, or `None` without `--block`.
    ///
    /// Loads the state (a malformed file is an error and the firewall is not
    /// touched: it keeps enforcing what was applied last), adds the
    /// `--block-cidr`/`--block-ports` extras, and applies, so that a restart
    /// re-installs what was blocked.
    pub fn from_options(o: &BlockOptions) -> anyhow::Result<Option<Blocker>> {
        let Some(name) = &o.block else {
            return Ok(None);
        };
        let s = &o.settings;
        let mut b = Blocker::open(s.backend(name)?, s)?;
        b.echo_dry_run = true;
        b.add_operator_extras(s)?;
        b.apply()?;
        Ok(Some(b))
    }

    /// Builds a blocker over a given backend from the settings.
    pub fn open(backend: Box<dyn Backend>, s: &BlockSettings) -> Result<Blocker, BlockError> {
        let mut state = State::load(&s.state)?;
        match &state.backend {
            Some(b) if b != backend.name() && !(state.is_empty() && state.ports.is_empty()) => {
                return Err(BlockError::Invalid {
                    path: s.state.clone(),
                    message: format!(
                        "holds entries applied with the {b} backend; use --backend {b}, or another --state for {}",
                        backend.name()
                    ),
                });
            }
            _ => state.backend = Some(backend.name().to_string()),
        }
        Ok(Blocker::with_parts(s.policy()?, state, backend, s))
    }

    /// Builds a blocker from its parts (tests inject the policy and backend).
    pub fn with_parts(
        policy: Policy,
        state: State,
        backend: Box<dyn Backend>,
        s: &BlockSettings,
    ) -> Blocker {
        Blocker {
            policy,
            state,
            state_path: s.state.clone(),
            backend,
            dry_run: s.dry_run,
            echo_dry_run: false,
            ttl: s.ttl(),
            max: s.block_max,
            clock: Box::new(wall_secs),
            dirty: false,
            last_apply: None,
            stats: BlockerStats::default(),
        }
    }

    /// Replaces the wall clock (tests).
    pub fn set_clock(&mut self, clock: Box<dyn Fn() -> u64 + Send>) {
        self.clock = clock;
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn stats(&self) -> BlockerStats {
        BlockerStats {
            dropped_over_cap: self.state.dropped_over_cap,
            ..self.stats.clone()
        }
    }

    /// Puts `--block-cidr` networks and `--block-ports` into the state. They
    /// stay there (permanent) until `block remove`.
    pub fn add_operator_extras(&mut self, s: &BlockSettings) -> Result<(), BlockError> {
        let now = (self.clock)();
        for net in &s.block_cidr {
            if self.state.get(net).is_some_and(|e| e.expires.is_none()) {
                continue;
            }
            self.add_manual(*net, Source::Operator, None, now)?;
        }
        for p in &s.block_ports {
            self.dirty |= self.state.ports.insert(*p);
        }
        Ok(())
    }

    fn add_manual(
        &mut self,
        net: IpNet,
        source: Source,
        ttl: Option<u64>,
        now: u64,
    ) -> Result<(), BlockError> {
        if let Decision::Skip(reason) = self.policy.decide_net(net) {
            return Err(BlockError::Refused { net, reason });
        }
        self.state.add_manual(net, source, now, ttl, self.max)?;
        self.dirty = true;
        Ok(())
    }

    /// `block add`: the same policy as for detections, except that the
    /// confidence question does not arise.
    pub fn add(&mut self, net: IpNet, ttl: Option<u64>) -> Result<(), BlockError> {
        let now = (self.clock)();
        self.add_manual(net, Source::Manual, ttl, now)
    }

    /// `block remove`: returns whether the entry was there.
    pub fn remove(&mut self, net: &IpNet) -> bool {
        let gone = self.state.remove(net).is_some();
        self.dirty |= gone;
        gone
    }

    pub fn add_ports(&mut self, ports: &[PortRange]) {
        for p in ports {
            self.dirty |= self.state.ports.insert(*p);
        }
    }

    pub fn remove_ports(&mut self, ports: &[PortRange]) -> bool {
        let mut any = false;
        for p in ports {
            any |= self.state.ports.remove(p);
        }
        self.dirty |= any;
        any
    }

    /// Decides on one pool record and, when it is to be blocked, records it
    /// and brings the firewall up to date (at most once per
    /// [`APPLY_INTERVAL_SECS`]; the rest waits for the next update, `tick` or
    /// `finish`).
    ///
    /// `_now` is the capture time of the sighting; entry lifetimes run on the
    /// wall clock instead, because the firewall's timers do.
    pub fn observe(&mut self, pool: &PoolRecord, _now: Timestamp) -> anyhow::Result<BlockStatus> {
        let net = IpNet::from(pool.server.ip().to_canonical());
        if let Decision::Skip(reason) = self.policy.decide_pool(pool) {
            tracing::debug!(pool = %pool.server, %reason, "not blocked");
            self.stats.not_blocked += 1;
            return Ok(BlockStatus::NotBlocked(reason));
        }

        let now = (self.clock)();
        let before = self.state.get(&net).and_then(|e| e.expires);
        let template = Entry {
            net,
            source: Source::Detected,
            dialect: Some(pool.dialect.clone()),
            confidence: Some(pool.confidence.as_str().to_string()),
            pool: Some(pool.server),
            added: now,
            renewed: now,
            expires: None,
        };
        match self
            .state
            .upsert_detected(template, now, self.ttl, self.max)
        {
            Upsert::Added { evicted } => {
                tracing::debug!(pool = %pool.server, ?evicted, "blocked");
                self.stats.added += 1;
                self.dirty = true;
            }
            Upsert::Renewed => {
                self.stats.renewed += 1;
                let after = self.state.get(&net).and_then(|e| e.expires);
                if let (Some(b), Some(a)) = (before, after) {
                    self.dirty |= a > b + RENEW_SLACK_SECS;
                }
            }
            Upsert::Refused => {
                self.stats.not_blocked += 1;
                return Ok(BlockStatus::NotBlocked(format!(
                    "blocklist full: all {} entries were added by hand (--block-max)",
                    self.max
                )));
            }
        }
        self.apply_if_due(now)?;
        Ok(if self.dry_run {
            BlockStatus::WouldBlock
        } else {
            BlockStatus::Blocked
        })
    }

    fn apply_if_due(&mut self, now: u64) -> Result<(), BlockError> {
        let due = self
            .last_apply
            .is_none_or(|t| now.saturating_sub(t) >= APPLY_INTERVAL_SECS);
        if self.dirty && due {
            self.apply()?;
        }
        Ok(())
    }

    /// Periodic upkeep for long runs: drops expired entries and applies
    /// pending changes. `monitor` should call it every few seconds; without
    /// it, iptables rules (which have no timeouts of their own) outlive
    /// their entries until the next detection.
    pub fn tick(&mut self) -> anyhow::Result<()> {
        let now = (self.clock)();
        if !self.state.expire(now).is_empty() {
            self.dirty = true;
        }
        self.apply_if_due(now)?;
        Ok(())
    }

    /// Applies whatever is still pending.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        if self.dirty {
            self.apply()?;
        }
        Ok(())
    }

    /// What the backends should hold now.
    pub fn desired(&self, now: u64) -> Desired {
        let entries = self
            .state
            .entries()
            .filter(|e| !e.is_expired(now))
            .map(|e| {
                let timeout = e
                    .expires
                    .map(|x| u32::try_from(x - now).unwrap_or(u32::MAX));
                (
                    e.net,
                    DesiredEntry {
                        timeout,
                        expires_at: e.expires,
                    },
                )
            })
            .collect();
        Desired {
            entries,
            ports: self.state.ports.iter().copied().collect(),
            max: self.max,
        }
    }

    /// Expires entries, saves the state (not in a dry run) and makes the
    /// firewall match it. Returns the plan that was carried out (or, in a
    /// dry run, would have been).
    pub fn apply(&mut self) -> Result<Plan, BlockError> {
        let now = (self.clock)();
        self.state.expire(now);
        let evicted = self.state.enforce_cap(self.max);
        if evicted > 0 {
            tracing::warn!(
                evicted,
                max = self.max,
                "blocklist over its cap: least recently seen dropped"
            );
        }
        let desired = self.desired(now);
        let plan = self.backend.plan(&desired)?;
        if !self.dry_run {
            self.state.save(&self.state_path)?;
        } else if self.echo_dry_run && !plan.is_empty() {
            eprint!(
                "stratumguard: dry run, {} would change:\n{plan}",
                self.backend.name()
            );
        }
        if !plan.is_empty() {
            self.backend.execute(&plan)?;
            self.stats.applies += 1;
        }
        self.dirty = false;
        self.last_apply = Some(now);
        Ok(plan)
    }

    /// Removes everything the backend created. The state is emptied too
    /// unless `keep_state`, so a restart does not put it back.
    pub fn flush(&mut self, keep_state: bool) -> Result<Plan, BlockError> {
        let plan = self.backend.plan_flush()?;
        if !keep_state {
            let dropped = self.state.dropped_over_cap;
            self.state = State::default();
            self.state.dropped_over_cap = dropped;
            if !self.dry_run {
                self.state.save(&self.state_path)?;
            }
        }
        if !plan.is_empty() {
            self.backend.execute(&plan)?;
        }
        self.dirty = false;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::backend::Memory;
    use super::*;
    use crate::pools::Confidence;

    fn pool(addr: &str, confidence: Confidence) -> PoolRecord {
        PoolRecord::for_test(addr, confidence)
    }

    /// A blocker over a recording dry run of the in-memory backend, with a
    /// clock the test moves.
    fn blocker(dir: &Path, max: usize, ttl: u64) -> (Blocker, Arc<AtomicU64>) {
        let s = BlockSettings {
            state: dir.join("state.json"),
            block_max: max,
            block_ttl: ttl,
            ..BlockSettings::default()
        };
        let policy = Policy {
            never_block: policy::parse_never_block(policy::BUILTIN_NEVER_BLOCK, Path::new("b"))
                .unwrap(),
            ..Policy::default()
        };
        let mut b = Blocker::with_parts(policy, State::default(), Box::new(Memory::default()), &s);
        let t = Arc::new(AtomicU64::new(1_000));
        let tc = t.clone();
        b.set_clock(Box::new(move || tc.load(Ordering::SeqCst)));
        (b, t)
    }

    #[test]
    fn a_confirmed_pool_is_blocked_saved_and_applied() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = blocker(dir.path(), 10, 3600);
        let st = b
            .observe(
                &pool("203.0.113.5:3333", Confidence::Confirmed),
                Timestamp(0),
            )
            .unwrap();
        assert_eq!(st, BlockStatus::Blocked);
        let saved = State::load(&dir.path().join("state.json")).unwrap();
        let e = saved.get(&"203.0.113.5/32".parse().unwrap()).unwrap();
        assert_eq!(e.expires, Some(1_000 + 3600));
        assert_eq!(e.pool, Some("203.0.113.5:3333".parse().unwrap()));
        // Applying the same state again plans nothing.
        assert!(b.apply().unwrap().is_empty());
    }

    #[test]
    fn a_one_sided_fake_request_is_reported_and_not_blocked() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = blocker(dir.path(), 10, 3600);
        let st = b
            .observe(&pool("203.0.113.5:53", Confidence::Suspected), Timestamp(0))
            .unwrap();
        let BlockStatus::NotBlocked(why) = st else {
            panic!("blocked a suspected pool")
        };
        assert!(why.starts_with("suspected only"));
        assert!(b.state().is_empty());
        assert_eq!(b.stats().not_blocked, 1);
    }

    #[test]
    fn a_pool_in_the_never_block_list_is_reported_as_shared_infrastructure() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = blocker(dir.path(), 10, 3600);
        let st = b
            .observe(
                &pool("[2606:4700::1]:443", Confidence::Confirmed),
                Timestamp(0),
            )
            .unwrap();
        let BlockStatus::NotBlocked(why) = st else {
            panic!("blocked cloudflare")
        };
        assert!(why.starts_with("shared infrastructure"), "{why}");
    }

    #[test]
    fn a_flood_of_confirmed_pools_keeps_the_blocklist_at_the_cap_and_counts_drops() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, t) = blocker(dir.path(), 50, 3600);
        for i in 0..500u32 {
            t.store(1_000 + u64::from(i), Ordering::SeqCst);
            let ip = std::net::Ipv4Addr::from(0xcb00_7100 + i); // 203.0.113.0 onwards
            let st = b
                .observe(
                    &pool(&format!("{ip}:3333"), Confidence::Confirmed),
                    Timestamp(0),
                )
                .unwrap();
            assert_eq!(st, BlockStatus::Blocked);
        }
        b.finish().unwrap();
        assert_eq!(b.state().len(), 50);
        assert_eq!(b.stats().dropped_over_cap, 450);
        assert_eq!(b.desired(1_500).entries.len(), 50);
    }

    #[test]
    fn entries_expire_after_the_ttl_and_a_resighting_renews_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, t) = blocker(dir.path(), 10, 100);
        let p = pool("203.0.113.5:3333", Confidence::Confirmed);
        b.observe(&p, Timestamp(0)).unwrap();
        t.store(1_090, Ordering::SeqCst);
        b.observe(&p, Timestamp(0)).unwrap();
        t.store(1_150, Ordering::SeqCst);
        b.tick().unwrap();
        assert_eq!(b.state().len(), 1, "renewed at 1090, so alive until 1190");
        t.store(1_190, Ordering::SeqCst);
        b.tick().unwrap();
        assert!(b.state().is_empty());
    }

    #[test]
    fn manual_adds_obey_the_always_allowed_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = blocker(dir.path(), 10, 100);
        assert!(matches!(
            b.add("127.0.0.1/32".parse().unwrap(), None),
            Err(BlockError::Refused { .. })
        ));
        b.add("203.0.113.0/24".parse().unwrap(), None).unwrap();
        assert!(b.remove(&"203.0.113.0/24".parse().unwrap()));
        assert!(!b.remove(&"203.0.113.0/24".parse().unwrap()));
    }
}
