//! `stratumguard signatures` (skeleton).

#[derive(clap::Args, Debug)]
pub struct SignaturesArgs {}

pub fn run(_args: SignaturesArgs, _common: &super::Common) -> anyhow::Result<i32> {
    anyhow::bail!("signatures: not built yet")
}
