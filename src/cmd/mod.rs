//! Subcommands. Each file owns its arguments and its `run`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use stratumguard::signatures::SignatureSet;

pub mod analyze;
pub mod block;
pub mod monitor;
pub mod signatures;

/// Options every subcommand understands.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// More diagnostics on stderr (-v: debug decisions, -vv: per-packet trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Load signatures from this directory instead of the built-in set.
    #[arg(long, value_name = "DIR", global = true)]
    pub signatures: Option<PathBuf>,
}

impl Common {
    pub fn load_signatures(&self) -> anyhow::Result<Arc<SignatureSet>> {
        let set = match &self.signatures {
            Some(dir) => SignatureSet::load_dir(dir)
                .with_context(|| format!("loading signatures from {}", dir.display()))?,
            None => SignatureSet::builtin().context("built-in signatures")?,
        };
        Ok(Arc::new(set))
    }
}

/// Diagnostics go to stderr through `tracing`; results go to stdout.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "stratumguard=debug,warn",
        _ => "stratumguard=trace,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATUMGUARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Limits of the packet path, shared by `analyze` and `monitor`.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Flows tracked at once; past it the least recently seen flow is evicted (and counted).
    #[arg(long, value_name = "N", default_value_t = stratumguard::engine::DEFAULT_MAX_FLOWS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_flows: usize,
    /// Seconds without a packet after which a flow is forgotten.
    #[arg(long, value_name = "SECS", default_value_t = stratumguard::engine::DEFAULT_IDLE_TIMEOUT.as_secs())]
    pub idle_timeout: u64,
    /// Bytes read from each direction of a flow before it stops costing work.
    #[arg(long, value_name = "BYTES", default_value_t = stratumguard::engine::DEFAULT_INSPECT_DEPTH)]
    pub inspect_depth: usize,
    /// MiB that all flows together may hold between packets (partial lines, out-of-order segments).
    #[arg(long, value_name = "MIB", default_value_t = stratumguard::stratum::budget::DEFAULT_BUFFER_BUDGET / (1024 * 1024))]
    pub buffer_mib: usize,
    /// Pool records kept; further new pools are counted, not stored.
    #[arg(long, value_name = "N", default_value_t = stratumguard::pools::DEFAULT_MAX_POOLS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_pools: usize,
}

impl EngineArgs {
    pub fn config(&self) -> stratumguard::engine::EngineConfig {
        stratumguard::engine::EngineConfig {
            max_flows: self.max_flows,
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout),
            inspect_depth: self.inspect_depth,
            buffer_budget: self.buffer_mib.saturating_mul(1024 * 1024),
            max_pools: self.max_pools,
        }
    }
}
