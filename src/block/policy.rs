//! What may be blocked.
//!
//! Anyone inside a network can make any address look like a pool to a
//! one-sided sensor (send `mining.subscribe` to the DNS resolver), so the
//! policy only blocks what the server itself proved (a `confirmed` pool)
//! unless told otherwise, and it never blocks the addresses a network cannot
//! live without: loopback, link-local, multicast, unspecified, the host's own
//! addresses, the operator's allowlist, and shared CDN/cloud ranges where one
//! address serves thousands of unrelated sites.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use ipnet::IpNet;
use serde::Deserialize;

use super::BlockError;
use crate::pools::{Confidence, PoolRecord};

/// The never-block list shipped with stratumguard.
pub const BUILTIN_NEVER_BLOCK: &str = include_str!("../../data/never-block.json");

/// Largest allowlist or never-block file read. Such lists are a few hundred
/// lines in practice; a megabyte is far beyond that and still small.
pub const MAX_LIST_FILE_BYTES: u64 = 1024 * 1024;

/// Ranges no blocklist may ever contain, whatever the detection says.
const ALWAYS_ALLOWED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified address"),
    ("127.0.0.0/8", "loopback address"),
    ("169.254.0.0/16", "link-local address"),
    ("224.0.0.0/4", "multicast address"),
    ("255.255.255.255/32", "broadcast address"),
    ("::/128", "unspecified address"),
    ("::1/128", "loopback address"),
    ("fe80::/10", "link-local address"),
    ("ff00::/8", "multicast address"),
];

/// A shared range from the never-block list.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedRange {
    pub net: IpNet,
    pub owner: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NeverBlockFile {
    #[serde(default, rename = "_comment")]
    _comment: Option<String>,
    ranges: Vec<SharedRange>,
}

/// Parses a never-block file (JSON, see `data/never-block.json`).
pub fn parse_never_block(text: &str, path: &Path) -> Result<Vec<SharedRange>, BlockError> {
    let file: NeverBlockFile =
        serde_json::from_str(text).map_err(|e| super::malformed(path, &e))?;
    Ok(file
        .ranges
        .into_iter()
        .map(|r| SharedRange {
            net: r.net.trunc(),
            ..r
        })
        .collect())
}

/// Parses an allowlist: one address or CIDR per line, `#` starts a comment.
pub fn parse_allow_list(text: &str, path: &Path) -> Result<Vec<IpNet>, BlockError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let net = parse_net(line).map_err(|message| BlockError::Invalid {
            path: path.to_path_buf(),
            message: format!("line {}: {message}", i + 1),
        })?;
        out.push(net);
    }
    Ok(out)
}

/// Reads a list file with the size cap.
pub fn read_list_file(path: &Path) -> Result<String, BlockError> {
    use std::io::Read;
    let io = |e| BlockError::Io {
        path: path.to_path_buf(),
        error: e,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    f.take(MAX_LIST_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_LIST_FILE_BYTES {
        return Err(BlockError::Invalid {
            path: path.to_path_buf(),
            message: format!("larger than {MAX_LIST_FILE_BYTES} bytes"),
        });
    }
    Ok(text)
}

/// Parses `ADDR` or `ADDR/LEN` into a network (host bits cleared).
/// IPv4-mapped IPv6 addresses become IPv4, as the kernel sees them.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(canonical_net(net));
    }
    s.parse::<IpAddr>()
        .map(|a| IpNet::from(a.to_canonical()))
        .map_err(|_| format!("not an address or CIDR: {s:?}"))
}

fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), n.prefix_len() - 96)
                .expect("prefix within 0..=32")
                .trunc(),
            None => net.trunc(),
        },
        _ => net.trunc(),
    }
}

/// The host's own addresses, read from `ip -j addr show`.
///
/// Known shortcoming: read once when the blocker starts; an address added to
/// an interface later is not protected until the next start. Reading it per
/// decision would cost a process spawn per pool.
pub fn host_addresses() -> Result<BTreeSet<IpAddr>, String> {
    let out = Command::new("ip")
        .args(["-j", "addr", "show"])
        .output()
        .map_err(|e| format!("running ip -j addr show: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip -j addr show failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_ip_addr_json(&out.stdout)
}

fn parse_ip_addr_json(bytes: &[u8]) -> Result<BTreeSet<IpAddr>, String> {
    #[derive(Deserialize)]
    struct Link {
        #[serde(default)]
        addr_info: Vec<AddrInfo>,
    }
    #[derive(Deserialize)]
    struct AddrInfo {
        local: Option<IpAddr>,
    }
    let links: Vec<Link> =
        serde_json::from_slice(bytes).map_err(|e| format!("ip -j addr show: {e}"))?;
    Ok(links
        .iter()
        .flat_map(|l| &l.addr_info)
        .filter_map(|a| a.local)
        .collect())
}

/// The decision for one address or network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Block,
    Skip(String),
}

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub block_suspected: bool,
    pub allow: Vec<IpNet>,
    pub host_addrs: BTreeSet<IpAddr>,
    pub never_block: Vec<SharedRange>,
    pub force_shared: bool,
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Policy {
    /// Decides on a detected pool.
    pub fn decide_pool(&self, pool: &PoolRecord) -> Decision {
        if pool.confidence == Confidence::Suspected && !self.block_suspected {
            return Decision::Skip(
                "suspected only: the server never answered in a mining protocol \
                 (--block-suspected to block anyway)"
                    .into(),
            );
        }
        self.decide_net(IpNet::from(pool.server.ip().to_canonical()))
    }

    /// Decides on an address or network, whoever asks for it.
    pub fn decide_net(&self, net: IpNet) -> Decision {
        let net = canonical_net(net);
        for (range, what) in ALWAYS_ALLOWED {
            let range: IpNet = range.parse().expect("constant CIDR");
            if overlaps(&range, &net) {
                return Decision::Skip(format!("{what} ({range}) is never blocked"));
            }
        }
        if let Some(a) = self
            .host_addrs
            .iter()
            .find(|a| net.contains(&a.to_canonical()))
        {
            return Decision::Skip(format!("{a} is one of this host's own addresses"));
        }
        if let Some(a) = self.allow.iter().find(|a| overlaps(a, &net)) {
            return Decision::Skip(format!("allowlisted by {a}"));
        }
        if !self.force_shared {
            if let Some(r) = self.never_block.iter().find(|r| overlaps(&r.net, &net)) {
                return Decision::Skip(format!(
                    "shared infrastructure: {} ({}); --force-shared to block anyway",
                    r.owner, r.net
                ));
            }
        }
        Decision::Block
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(addr: &str, confidence: Confidence) -> PoolRecord {
        PoolRecord::for_test(addr, confidence)
    }

    fn shipped() -> Policy {
        Policy {
            never_block: parse_never_block(BUILTIN_NEVER_BLOCK, Path::new("builtin")).unwrap(),
            ..Policy::default()
        }
    }

    #[test]
    fn a_confirmed_pool_is_blocked_and_a_suspected_one_is_not_by_default() {
        let p = shipped();
        assert_eq!(
            p.decide_pool(&pool("203.0.113.9:3333", Confidence::Confirmed)),
            Decision::Block
        );
        let Decision::Skip(why) = p.decide_pool(&pool("203.0.113.9:3333", Confidence::Suspected))
        else {
            panic!("suspected pool was blocked");
        };
        assert!(why.starts_with("suspected only"), "{why}");
    }

    #[test]
    fn block_suspected_includes_suspected_pools() {
        let p = Policy {
            block_suspected: true,
            ..shipped()
        };
        assert_eq!(
            p.decide_pool(&pool("203.0.113.9:3333", Confidence::Suspected)),
            Decision::Block
        );
    }

    #[test]
    fn loopback_link_local_multicast_and_unspecified_are_never_blocked() {
        let p = Policy {
            block_suspected: true,
            ..shipped()
        };
        for a in [
            "127.0.0.1:1",
            "[::1]:1",
            "169.254.1.1:1",
            "[fe80::1]:1",
            "224.0.0.1:1",
        ] {
            assert!(matches!(
                p.decide_pool(&pool(a, Confidence::Confirmed)),
                Decision::Skip(_)
            ));
        }
        assert!(matches!(
            p.decide_net("0.0.0.0/0".parse().unwrap()),
            Decision::Skip(_)
        ));
        assert!(matches!(
            p.decide_net("::/0".parse().unwrap()),
            Decision::Skip(_)
        ));
        // A v4-mapped loopback is still loopback.
        assert!(matches!(
            p.decide_pool(&pool("[::ffff:127.0.0.1]:1", Confidence::Confirmed)),
            Decision::Skip(_)
        ));
    }

    #[test]
    fn the_hosts_own_addresses_and_the_allowlist_are_never_blocked() {
        let p = Policy {
            host_addrs: ["192.0.2.10".parse().unwrap()].into(),
            allow: vec!["198.51.100.0/24".parse().unwrap()],
            ..shipped()
        };
        let Decision::Skip(why) = p.decide_pool(&pool("192.0.2.10:3333", Confidence::Confirmed))
        else {
            panic!()
        };
        assert!(why.contains("own addresses"), "{why}");
        let Decision::Skip(why) = p.decide_pool(&pool("198.51.100.7:3333", Confidence::Confirmed))
        else {
            panic!()
        };
        assert_eq!(why, "allowlisted by 198.51.100.0/24");
        // A network that would swallow an allowed address is refused too.
        assert!(matches!(
            p.decide_net("198.0.0.0/8".parse().unwrap()),
            Decision::Skip(_)
        ));
    }

    #[test]
    fn a_pool_in_shared_cdn_space_is_not_blocked_unless_forced() {
        let p = shipped();
        let cf = pool("104.16.1.1:443", Confidence::Confirmed);
        let Decision::Skip(why) = p.decide_pool(&cf) else {
            panic!("cloudflare blocked")
        };
        assert!(
            why.starts_with("shared infrastructure: Cloudflare"),
            "{why}"
        );
        let forced = Policy {
            force_shared: true,
            ..shipped()
        };
        assert_eq!(forced.decide_pool(&cf), Decision::Block);
    }

    #[test]
    fn the_shipped_never_block_list_parses_and_covers_both_families() {
        let r = parse_never_block(BUILTIN_NEVER_BLOCK, Path::new("builtin")).unwrap();
        assert!(r.iter().any(|r| r.net.addr().is_ipv4()));
        assert!(r.iter().any(|r| r.net.addr().is_ipv6()));
    }

    #[test]
    fn a_bad_allowlist_line_is_named() {
        let err = parse_allow_list("# ok\n10.0.0.0/8\nnot-an-ip\n", Path::new("allow.txt"));
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains("allow.txt") && msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn addresses_parse_to_networks_with_host_bits_cleared() {
        assert_eq!(
            parse_net("192.0.2.7/24").unwrap().to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(parse_net("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(
            parse_net("::ffff:192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert_eq!(
            parse_net("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert!(parse_net("192.0.2.7; rm -rf /").is_err());
    }

    #[test]
    fn ip_addr_json_yields_local_addresses() {
        let j = br#"[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1"}]},
                    {"ifname":"eth0","addr_info":[{"local":"10.1.2.3"},{"local":"fe80::1"}]}]"#;
        let a = parse_ip_addr_json(j).unwrap();
        assert!(a.contains(&"10.1.2.3".parse::<IpAddr>().unwrap()));
        assert_eq!(a.len(), 3);
    }
}
