//! nftables backend: a table of our own, `inet stratumguard`, with address
//! sets for IPv4 and IPv6 (hosts in hash sets with per-element timeouts,
//! networks in interval sets) and three base chains that drop traffic to and
//! from them.
//!
//! The chains hook input, output and forward at priority -10 (`filter - 10`),
//! so they run before the usual filter chains and a general accept there
//! cannot shadow a block. Every change is one nft transaction built with the
//! `nftables` crate's JSON schema: the table is deleted and rebuilt inside
//! that transaction, so the kernel goes from the old set to the new one at
//! once, and objects outside our table are never named.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ipnet::IpNet;
use nftables::expr::{
    Elem, Expression, NamedExpression, Payload, PayloadField, Prefix, Range, SetItem,
};
use nftables::schema::{
    Chain, Element, NfCmd, NfListObject, NfObject, Nftables, Rule, Set, SetFlag, SetType,
    SetTypeValue, Table,
};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::backend::{diff, nft_error, Action, Backend, Change, Desired, Plan};
use super::BlockError;

pub const TABLE: &str = "stratumguard";

/// Runs before the standard filter priority (0), as `filter - 10`.
pub const CHAIN_PRIORITY: i32 = -10;

const SET_ADDR4: &str = "addr4";
const SET_ADDR6: &str = "addr6";
const SET_NET4: &str = "net4";
const SET_NET6: &str = "net6";

pub struct Nft;

/// One rule we want: chain, the match, and the comment that names it (the
/// comment is how a later run recognises its rules without parsing them).
struct WantedRule {
    chain: &'static str,
    left: (&'static str, &'static str),
    right: Expression<'static>,
    comment: String,
}

fn wanted_rules(desired: &Desired) -> Vec<WantedRule> {
    let mut out = Vec::new();
    let dirs: [(&str, &[&str]); 3] = [
        ("input", &["saddr"]),
        ("output", &["daddr"]),
        ("forward", &["saddr", "daddr"]),
    ];
    for (chain, fields) in dirs {
        for field in fields {
            for (proto, set) in [
                ("ip", SET_ADDR4),
                ("ip6", SET_ADDR6),
                ("ip", SET_NET4),
                ("ip6", SET_NET6),
            ] {
                out.push(WantedRule {
                    chain,
                    left: (proto, field),
                    right: Expression::String(Cow::Owned(format!("@{set}"))),
                    comment: format!("stratumguard: {proto} {field} @{set} drop"),
                });
            }
        }
        if desired.ports.is_empty() {
            continue;
        }
        // Outgoing connections to a blocked port, and the answers coming back.
        let port_fields: &[&str] = match chain {
            "input" => &["sport"],
            "output" => &["dport"],
            _ => &["dport", "sport"],
        };
        for field in port_fields {
            let items = desired
                .ports
                .iter()
                .map(|p| {
                    SetItem::Element(if p.lo == p.hi {
                        Expression::Number(u32::from(p.lo))
                    } else {
                        Expression::Range(Box::new(Range {
                            range: [
                                Expression::Number(p.lo.into()),
                                Expression::Number(p.hi.into()),
                            ],
                        }))
                    })
                })
                .collect();
            out.push(WantedRule {
                chain,
                left: ("tcp", field),
                right: Expression::Named(NamedExpression::Set(items)),
                comment: format!(
                    "stratumguard: tcp {field} {{{}}} drop",
                    desired.ports_text("-")
                ),
            });
        }
    }
    out
}

fn addr_expr(net: &IpNet) -> Expression<'static> {
    let addr = Expression::String(Cow::Owned(net.addr().to_string()));
    if net.prefix_len() == net.max_prefix_len() {
        addr
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(addr),
            len: u32::from(net.prefix_len()),
        }))
    }
}

fn elem_expr(net: &IpNet, timeout: Option<u32>) -> Expression<'static> {
    match timeout {
        None => addr_expr(net),
        Some(t) => Expression::Named(NamedExpression::Elem(Elem {
            val: Box::new(addr_expr(net)),
            timeout: Some(t),
            expires: None,
            comment: None,
            counter: None,
        })),
    }
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

/// The transaction that replaces our table with the desired one.
pub fn rebuild(desired: &Desired) -> Nftables<'static> {
    let mut objs: Vec<NfObject<'static>> = Vec::new();
    let add = |o| NfObject::CmdObject(NfCmd::Add(o));

    // Adding first makes the delete valid when the table does not exist yet.
    objs.push(add(NfListObject::Table(table())));
    objs.push(NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(
        table(),
    ))));
    objs.push(add(NfListObject::Table(table())));

    let size = u32::try_from(desired.max).unwrap_or(u32::MAX);
    for (name, ty, interval) in [
        (SET_ADDR4, SetType::Ipv4Addr, false),
        (SET_ADDR6, SetType::Ipv6Addr, false),
        (SET_NET4, SetType::Ipv4Addr, true),
        (SET_NET6, SetType::Ipv6Addr, true),
    ] {
        let mut flags = std::collections::HashSet::from([SetFlag::Timeout]);
        if interval {
            flags.insert(SetFlag::Interval);
        }
        objs.push(add(NfListObject::Set(Box::new(Set {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: name.into(),
            handle: None,
            set_type: SetTypeValue::Single(ty),
            policy: None,
            flags: Some(flags),
            elem: None,
            timeout: None,
            gc_interval: None,
            size: Some(size),
            comment: None,
        }))));
    }

    for (name, hook) in [
        ("input", NfHook::Input),
        ("output", NfHook::Output),
        ("forward", NfHook::Forward),
    ] {
        objs.push(add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: name.into(),
            _type: Some(NfChainType::Filter),
            hook: Some(hook),
            prio: Some(CHAIN_PRIORITY),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        })));
    }

    for r in wanted_rules(desired) {
        let m = Statement::Match(Match {
            left: Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                PayloadField {
                    protocol: r.left.0.into(),
                    field: r.left.1.into(),
                },
            ))),
            right: r.right,
            op: Operator::EQ,
        });
        objs.push(add(NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: TABLE.into(),
            chain: r.chain.into(),
            expr: Cow::Owned(vec![m, Statement::Drop(None)]),
            handle: None,
            index: None,
            comment: Some(r.comment.into()),
        })));
    }

    let mut by_set: BTreeMap<&str, Vec<Expression<'static>>> = BTreeMap::new();
    for (net, e) in desired.hosts() {
        let set = if net.addr().is_ipv4() {
            SET_ADDR4
        } else {
            SET_ADDR6
        };
        by_set
            .entry(set)
            .or_default()
            .push(elem_expr(net, e.timeout));
    }
    for (net, e) in desired.networks() {
        let set = if net.addr().is_ipv4() {
            SET_NET4
        } else {
            SET_NET6
        };
        by_set
            .entry(set)
            .or_default()
            .push(elem_expr(&net, e.timeout));
    }
    for (set, elems) in by_set {
        objs.push(add(NfListObject::Element(Element {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: set.into(),
            elem: Cow::Owned(elems),
        })));
    }
    Nftables {
        objects: Cow::Owned(objs),
    }
}

/// What our table holds now.
#[derive(Default)]
struct Installed {
    exists: bool,
    elements: BTreeMap<IpNet, Option<u32>>,
    /// Rule comments, per chain, in order.
    rules: BTreeMap<String, Vec<String>>,
    sizes: Vec<Option<u32>>,
}

fn parse_elem(e: &Expression) -> Option<(IpNet, Option<u32>)> {
    match e {
        Expression::String(s) => s
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|a| (IpNet::from(a), None)),
        Expression::Named(NamedExpression::Prefix(p)) => match &*p.addr {
            Expression::String(s) => {
                let a: std::net::IpAddr = s.parse().ok()?;
                IpNet::new(a, u8::try_from(p.len).ok()?)
                    .ok()
                    .map(|n| (n, None))
            }
            _ => None,
        },
        Expression::Named(NamedExpression::Elem(el)) => {
            let (net, _) = parse_elem(&el.val)?;
            Some((net, el.expires.or(el.timeout)))
        }
        _ => None,
    }
}

fn read_installed() -> Result<Installed, BlockError> {
    let args = ["list", "table", "inet", TABLE];
    let ruleset = match nftables::helper::get_current_ruleset_with_args(
        nftables::helper::DEFAULT_NFT,
        args,
    ) {
        Ok(r) => r,
        Err(nftables::helper::NftablesError::NftFailed { stderr, .. })
            if stderr.contains("No such file or directory") =>
        {
            return Ok(Installed::default());
        }
        Err(e) => {
            return Err(BlockError::Command {
                program: "nft".into(),
                message: nft_error(&e),
            })
        }
    };
    let mut inst = Installed {
        exists: true,
        ..Installed::default()
    };
    for obj in ruleset.objects.iter() {
        match obj {
            NfObject::ListObject(NfListObject::Set(s)) if s.table == TABLE => {
                inst.sizes.push(s.size);
                for e in s.elem.iter().flat_map(|v| v.iter()) {
                    if let Some((net, left)) = parse_elem(e) {
                        inst.elements.insert(net, left);
                    }
                }
            }
            NfObject::ListObject(NfListObject::Rule(r)) if r.table == TABLE => {
                let comment = r.comment.as_deref().unwrap_or("").to_string();
                inst.rules
                    .entry(r.chain.to_string())
                    .or_default()
                    .push(comment);
            }
            NfObject::ListObject(NfListObject::Chain(c)) if c.table == TABLE => {
                inst.rules.entry(c.name.to_string()).or_default();
            }
            _ => {}
        }
    }
    Ok(inst)
}

/// The entries that will really be installed (contained networks left out).
fn installable(desired: &Desired) -> BTreeMap<IpNet, super::backend::DesiredEntry> {
    let mut m: BTreeMap<_, _> = desired.hosts().map(|(n, e)| (*n, *e)).collect();
    m.extend(desired.networks());
    m
}

impl Backend for Nft {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn plan(&mut self, desired: &Desired) -> Result<Plan, BlockError> {
        let inst = read_installed()?;
        let mut changes = diff(&inst.elements, &installable(desired));

        let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in ["input", "output", "forward"] {
            want.insert(c.to_string(), Vec::new());
        }
        for r in wanted_rules(desired) {
            want.entry(r.chain.to_string()).or_default().push(r.comment);
        }
        let size = u32::try_from(desired.max).ok();
        if !inst.exists {
            changes.insert(0, Change::Rules(format!("create table inet {TABLE}")));
        } else if inst.rules != want
            || inst.sizes.len() != 4
            || inst.sizes.iter().any(|s| *s != size)
        {
            changes.insert(
                0,
                Change::Rules(format!("rebuild chains and sets of table inet {TABLE}")),
            );
        }
        if changes.is_empty() {
            return Ok(Plan::default());
        }
        Ok(Plan {
            changes,
            actions: vec![Action::Nft(rebuild(desired))],
        })
    }

    fn plan_flush(&mut self) -> Result<Plan, BlockError> {
        let inst = read_installed()?;
        if !inst.exists {
            return Ok(Plan::default());
        }
        let mut changes: Vec<Change> = inst.elements.keys().map(|n| Change::Remove(*n)).collect();
        changes.push(Change::Rules(format!("delete table inet {TABLE}")));
        let tx = Nftables {
            objects: Cow::Owned(vec![NfObject::CmdObject(NfCmd::Delete(
                NfListObject::Table(table()),
            ))]),
        };
        Ok(Plan {
            changes,
            actions: vec![Action::Nft(tx)],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::backend::DesiredEntry;
    use super::*;

    #[test]
    fn the_transaction_touches_only_our_table_and_carries_timeouts() {
        let mut d = Desired {
            max: 1000,
            ..Desired::default()
        };
        d.entries.insert(
            "192.0.2.1/32".parse().unwrap(),
            DesiredEntry {
                timeout: Some(600),
                expires_at: Some(0),
            },
        );
        d.entries.insert(
            "2001:db8::/32".parse().unwrap(),
            DesiredEntry {
                timeout: None,
                expires_at: None,
            },
        );
        d.ports = vec!["3333".parse().unwrap(), "14444-14450".parse().unwrap()];
        let json = serde_json::to_value(rebuild(&d)).unwrap();
        let text = json.to_string();
        for obj in json["nftables"].as_array().unwrap() {
            let (_, inner) = obj.as_object().unwrap().iter().next().unwrap();
            let (_, o) = inner.as_object().unwrap().iter().next().unwrap();
            let table = o.get("table").or_else(|| o.get("name")).unwrap();
            assert_eq!(o["family"], "inet");
            assert!(table == "stratumguard" || o.get("table").is_some_and(|t| t == "stratumguard"));
        }
        assert!(
            text.contains(r#""timeout":600,"val":"192.0.2.1""#),
            "{text}"
        );
        assert!(
            text.contains(r#"{"prefix":{"addr":"2001:db8::","len":32}}"#),
            "{text}"
        );
        assert!(text.contains(r#""prio":-10"#));
        assert!(text.contains(r#"{"range":[14444,14450]}"#), "{text}");
        assert!(text.contains(r#""size":1000"#));
    }

    #[test]
    fn kernel_elements_parse_back_with_their_remaining_time() {
        let e: Expression =
            serde_json::from_str(r#"{"elem":{"val":"192.0.2.1","timeout":600,"expires":599}}"#)
                .unwrap();
        assert_eq!(
            parse_elem(&e),
            Some(("192.0.2.1/32".parse().unwrap(), Some(599)))
        );
        let p: Expression =
            serde_json::from_str(r#"{"prefix":{"addr":"10.0.0.0","len":8}}"#).unwrap();
        assert_eq!(parse_elem(&p), Some(("10.0.0.0/8".parse().unwrap(), None)));
    }
}
