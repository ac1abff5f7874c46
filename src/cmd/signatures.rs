//! `stratumguard signatures`: show the dialects in use, or check a directory
//! of signature files before deploying it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use stratumguard::signatures::{Role, SignatureSet, Transport};

#[derive(clap::Args, Debug)]
pub struct SignaturesArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// List the dialects and their methods (built-in, or --signatures DIR).
    List,
    /// Load and validate every *.json file in DIR; exit 2 with the file and line on error.
    Check { dir: PathBuf },
}

pub fn run(args: SignaturesArgs, common: &super::Common) -> anyhow::Result<i32> {
    match args.action {
        Action::List => {
            let set = common.load_signatures()?;
            for (id, d) in set.dialects.iter().enumerate() {
                let transport = match d.transport {
                    Transport::Line => "JSON lines over TCP",
                    Transport::Http => "JSON-RPC over HTTP",
                };
                writeln!(
                    std::io::stdout(),
                    "{} ({transport}, from {})",
                    d.name,
                    d.source
                )?;
                writeln!(std::io::stdout(), "    {}", d.description)?;
                if let Some(base) = d.refines {
                    writeln!(
                        std::io::stdout(),
                        "    refines {} when marked",
                        set.dialects[base].name
                    )?;
                }
                let names = |role: Role| -> String {
                    let v: Vec<&str> = set
                        .methods_of(id)
                        .filter(|m| m.from == role)
                        .map(|m| m.name.as_str())
                        .collect();
                    if v.is_empty() {
                        "-".into()
                    } else {
                        v.join(", ")
                    }
                };
                writeln!(
                    std::io::stdout(),
                    "    client calls: {}",
                    names(Role::Client)
                )?;
                writeln!(
                    std::io::stdout(),
                    "    server pushes: {}",
                    names(Role::Server)
                )?;
            }
            Ok(0)
        }
        Action::Check { dir } => {
            let set = SignatureSet::load_dir(&dir)
                .with_context(|| format!("checking {}", dir.display()))?;
            writeln!(
                std::io::stdout(),
                "{}: {} dialects, all valid",
                dir.display(),
                set.dialects.len()
            )?;
            Ok(0)
        }
    }
}
