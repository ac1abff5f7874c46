//! `stratumguard monitor`: STUB in the skeleton commit.

#[derive(clap::Args, Debug)]
pub struct MonitorArgs {}

pub fn run(_args: MonitorArgs, _common: &super::Common) -> anyhow::Result<i32> {
    anyhow::bail!("monitor: not built yet")
}
