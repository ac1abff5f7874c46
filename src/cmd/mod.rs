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
        .with_writer(std::io::stderr)
        .init();
}
