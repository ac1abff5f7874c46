//! `stratumguard signatures`: show the dialects in use, or check a directory
//! of signature files before deploying it.

use std::path::PathBuf;

use anyhow::Context;
use stratumguard::signatures::{Role, SignatureSet};

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
                println!(
                    "{} ({:?} transport, from {})",
                    d.name, d.transport, d.source
                );
                println!("    {}", d.description);
                if let Some(base) = d.refines {
                    println!("    refines {} when marked", set.dialects[base].name);
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
                println!("    client calls: {}", names(Role::Client));
                println!("    server pushes: {}", names(Role::Server));
            }
            Ok(0)
        }
        Action::Check { dir } => {
            let set = SignatureSet::load_dir(&dir)
                .with_context(|| format!("checking {}", dir.display()))?;
            println!(
                "{}: {} dialects, all valid",
                dir.display(),
                set.dialects.len()
            );
            Ok(0)
        }
    }
}
