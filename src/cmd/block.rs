//! `stratumguard block list | add | remove | flush | apply`: inspect and
//! change the blocklist by hand, or re-apply the saved state (after a reboot,
//! or from a timer so that backends without timeouts drop expired entries).

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use ipnet::IpNet;
use stratumguard::block::policy::parse_net;
use stratumguard::block::state::{parse_port_list, PortRange};
use stratumguard::block::{BlockSettings, Blocker};

#[derive(clap::Args, Debug)]
pub struct BlockCmd {
    // Boxed: the settings are large, and `Command` holds this inline.
    #[command(subcommand)]
    action: Box<Action>,
}

/// Options every `block` action takes.
#[derive(clap::Args, Debug)]
struct Target {
    /// Firewall backend: nftables, ipset, iptables, windows or list.
    #[arg(long, value_name = "BACKEND", default_value = "nftables")]
    backend: String,
    #[command(flatten)]
    settings: BlockSettings,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Show the entries in the state file.
    List {
        /// One JSON object per entry instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Block addresses or networks (ADDR[/LEN]), or TCP ports (PORT or LO-HI).
    Add {
        #[arg(required = true, value_name = "ADDR[/LEN]|PORT")]
        items: Vec<String>,
        /// Lifetime in seconds; without it, hand-added entries are permanent.
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Unblock addresses or networks, or TCP ports.
    Remove {
        #[arg(required = true, value_name = "ADDR[/LEN]|PORT")]
        items: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Remove everything stratumguard created in the backend, and nothing else.
    Flush {
        /// Keep the state file's entries (a later `apply` puts them back).
        #[arg(long)]
        keep_state: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Make the backend match the state file (drops expired entries).
    Apply {
        #[command(flatten)]
        target: Target,
    },
}

/// An item on the command line: an address/network or a port/range.
enum Item {
    Net(IpNet),
    Ports(Vec<PortRange>),
}

fn parse_item(s: &str) -> anyhow::Result<Item> {
    if let Ok(n) = parse_net(s) {
        return Ok(Item::Net(n));
    }
    parse_port_list(s)
        .map(Item::Ports)
        .map_err(|_| anyhow::anyhow!("{s:?} is neither an address, a network nor a port"))
}

fn open(t: &Target) -> anyhow::Result<Blocker> {
    let backend = t.settings.backend(&t.backend)?;
    let mut b = Blocker::open(backend, &t.settings)
        .with_context(|| format!("loading the block state {}", t.settings.state.display()))?;
    b.add_operator_extras(&t.settings)?;
    Ok(b)
}

fn apply_and_report(b: &mut Blocker, dry_run: bool) -> anyhow::Result<()> {
    let plan = b
        .apply()
        .with_context(|| format!("applying to {}", b.backend_name()))?;
    if dry_run {
        print!("{plan}");
    } else {
        for c in &plan.changes {
            writeln!(std::io::stdout(), "{c}")?;
        }
    }
    Ok(())
}

pub fn run(args: BlockCmd) -> anyhow::Result<i32> {
    match *args.action {
        Action::List { json, target } => {
            let b = open(&target)?;
            let now = stratumguard::time::Timestamp::now().secs();
            if json {
                for e in b.state().entries() {
                    writeln!(std::io::stdout(), "{}", serde_json::to_string(e)?)?;
                }
                return Ok(0);
            }
            writeln!(
                std::io::stdout(),
                "{:<43} {:<9} {:<17} {:<12} POOL",
                "ENTRY",
                "SOURCE",
                "DIALECT",
                "EXPIRES IN"
            )?;
            for e in b.state().entries() {
                let left = match e.expires {
                    None => "never".to_string(),
                    Some(x) => format!("{}s", x.saturating_sub(now)),
                };
                let pool = e.pool.as_ref().map_or(String::new(), SocketAddr::to_string);
                writeln!(
                    std::io::stdout(),
                    "{:<43} {:<9} {:<17} {:<12} {}",
                    e.net.to_string(),
                    e.source.as_str(),
                    e.dialect.as_deref().unwrap_or("-"),
                    left,
                    pool
                )?;
            }
            let ports: Vec<String> = b.state().ports.iter().map(|p| p.to_string()).collect();
            if !ports.is_empty() {
                writeln!(std::io::stdout(), "ports: {}", ports.join(","))?;
            }
            if b.state().dropped_over_cap > 0 {
                writeln!(
                    std::io::stdout(),
                    "dropped over the cap: {}",
                    b.state().dropped_over_cap
                )?;
            }
            Ok(0)
        }
        Action::Add { items, ttl, target } => {
            let mut b = open(&target)?;
            let ttl = ttl.filter(|t| *t > 0);
            for s in &items {
                match parse_item(s)? {
                    Item::Net(n) => b.add(n, ttl)?,
                    Item::Ports(p) => b.add_ports(&p),
                }
            }
            apply_and_report(&mut b, target.settings.dry_run)?;
            Ok(0)
        }
        Action::Remove { items, target } => {
            let mut b = open(&target)?;
            let mut missing = 0;
            for s in &items {
                let found = match parse_item(s)? {
                    Item::Net(n) => b.remove(&n),
                    Item::Ports(p) => b.remove_ports(&p),
                };
                if !found {
                    eprintln!("stratumguard: {s} is not in the blocklist");
                    missing += 1;
                }
            }
            apply_and_report(&mut b, target.settings.dry_run)?;
            Ok(if missing > 0 { 1 } else { 0 })
        }
        Action::Flush { keep_state, target } => {
            let backend = target.settings.backend(&target.backend)?;
            // Flushing must work even when the state file is damaged.
            let state =
                stratumguard::block::state::State::load(&target.settings.state).unwrap_or_default();
            // A state file kept for another backend is that backend's record:
            // this flush clears only what stratumguard made here.
            let keep_state = match state.backend.as_deref() {
                Some(other) if other != backend.name() => {
                    eprintln!(
                        "stratumguard: {} holds the {other} backend's entries; kept (flush that with --backend {other})",
                        target.settings.state.display()
                    );
                    true
                }
                _ => keep_state,
            };
            let mut b = Blocker::with_parts(Default::default(), state, backend, &target.settings);
            let plan = b.flush(keep_state)?;
            if target.settings.dry_run {
                print!("{plan}");
            } else {
                for c in &plan.changes {
                    writeln!(std::io::stdout(), "{c}")?;
                }
            }
            Ok(0)
        }
        Action::Apply { target } => {
            let mut b = open(&target)?;
            apply_and_report(&mut b, target.settings.dry_run)?;
            Ok(0)
        }
    }
}
