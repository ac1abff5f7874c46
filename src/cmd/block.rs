//! `stratumguard block ...`: STUB in the skeleton commit.

#[derive(clap::Args, Debug)]
pub struct BlockCmd {}

pub fn run(_args: BlockCmd) -> anyhow::Result<i32> {
    anyhow::bail!("block: not built yet")
}
