//! `stratumguard analyze` (skeleton).

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// pcap/pcapng files or directories of them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(_args: AnalyzeArgs, _common: &super::Common) -> anyhow::Result<i32> {
    anyhow::bail!("analyze: not built yet")
}
