//! The `stratumguard` command line: a thin layer over the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser, Debug)]
#[command(name = "stratumguard", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: cmd::Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Find mining pools in pcap/pcapng files (or directories of them).
    Analyze(Box<cmd::analyze::AnalyzeArgs>),
    /// Watch one or more interfaces live and report pools as they appear.
    Monitor(cmd::monitor::MonitorArgs),
    /// Inspect and change the blocklist stratumguard manages.
    Block(cmd::block::BlockCmd),
    /// List or check detection signatures.
    Signatures(cmd::signatures::SignaturesArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::init_logging(cli.common.verbose);
    let result = match cli.command {
        Command::Analyze(a) => cmd::analyze::run(*a, &cli.common),
        Command::Monitor(a) => cmd::monitor::run(a, &cli.common),
        Command::Block(a) => cmd::block::run(a),
        Command::Signatures(a) => cmd::signatures::run(a, &cli.common),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stratumguard: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
