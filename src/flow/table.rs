//! The flow table: a hash map from the unordered endpoint pair to a slot in a
//! slab, with the slots on an intrusive least-recently-seen list.
//!
//! The list gives both evictions in O(1): by idle time (pop from the cold end
//! while the coldest flow is older than the timeout) and by pressure (when the
//! table is full, the coldest flow makes room for the new one). A flood of
//! distinct flows therefore costs a bounded table and a counter, never memory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rustc_hash::FxHashMap;

use super::Side;
use crate::time::Timestamp;

/// The two endpoints of a TCP connection, in a fixed order so that both
/// directions find the same entry.
///
/// Addresses are kept as 128-bit numbers (IPv4 mapped into IPv6's space,
/// with a flag so that `::ffff:a.b.c.d` and `a.b.c.d` stay apart): hashing
/// and comparing them is then a few integer operations per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    lo: ([u64; 2], u16),
    hi: ([u64; 2], u16),
    v6: bool,
}

impl FlowKey {
    /// The key of a segment sent from `src` to `dst`, and the side that sent it.
    pub fn of(src: (IpAddr, u16), dst: (IpAddr, u16)) -> (FlowKey, Side) {
        let v6 = src.0.is_ipv6();
        let a = (addr_bits(src.0), src.1);
        let b = (addr_bits(dst.0), dst.1);
        if a <= b {
            (FlowKey { lo: a, hi: b, v6 }, Side::Lo)
        } else {
            (FlowKey { lo: b, hi: a, v6 }, Side::Hi)
        }
    }

    pub fn endpoint(&self, side: Side) -> SocketAddr {
        let (bits, port) = match side {
            Side::Lo => self.lo,
            Side::Hi => self.hi,
        };
        let bits = (u128::from(bits[0]) << 64) | u128::from(bits[1]);
        let ip = if self.v6 {
            IpAddr::V6(Ipv6Addr::from(bits))
        } else {
            IpAddr::V4(Ipv4Addr::from(bits as u32))
        };
        SocketAddr::new(ip, port)
    }
}

/// An address as two words: 8-byte alignment keeps the key at 40 bytes,
/// where `u128`'s 16-byte alignment would pad it to 80.
fn addr_bits(ip: IpAddr) -> [u64; 2] {
    let bits = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    [(bits >> 64) as u64, bits as u64]
}

/// How stale a flow's place on the recency list may get. Moving a flow to
/// the front on every packet costs three scattered writes; moving it at most
/// once per this interval keeps eviction order right to within it, which is
/// all that idle and pressure eviction need.
const RELINK_MICROS: u64 = 1_000_000;

const NIL: u32 = u32::MAX;

struct Slot<T> {
    key: FlowKey,
    last_seen: Timestamp,
    /// Towards the most recently seen end.
    newer: u32,
    /// Towards the least recently seen end.
    older: u32,
    value: Option<T>,
}

/// The index's own record of a flow: small, so that a lookup that ends here
/// costs one cache line.
#[derive(Clone, Copy)]
struct Indexed {
    slot: u32,
    /// Set by the owner for a flow it has finished with: its packets are then
    /// answered from the index alone, without touching the flow.
    quiet: Option<u32>,
    /// When the flow last moved to the front of the recency list.
    relinked: Timestamp,
}

/// Reads an index entry and restamps it when it is due to move to the front
/// of the recency list: (slot, quiet tag, whether to move it).
fn stamp(ix: &mut Indexed, ts: Timestamp) -> (u32, Option<u32>, bool) {
    let relink = ts.0 >= ix.relinked.0.saturating_add(RELINK_MICROS);
    if relink {
        ix.relinked = ts;
    }
    (ix.slot, ix.quiet, relink)
}

/// What a lookup found or made.
pub enum Lookup<'a, T> {
    /// A flow marked quiet, with the tag it was given.
    Quiet(u32),
    Flow(Entry<'a, T>),
}

pub struct Entry<'a, T> {
    pub value: &'a mut T,
    pub created: bool,
    /// A flow evicted to make room for this one (table full).
    pub evicted: Option<(FlowKey, T)>,
}

pub struct FlowTable<T> {
    index: FxHashMap<FlowKey, Indexed>,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    newest: u32,
    oldest: u32,
    max: usize,
}

impl<T> FlowTable<T> {
    /// A table that holds at most `max` flows (at least one).
    pub fn new(max: usize) -> FlowTable<T> {
        FlowTable {
            index: FxHashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            max: max.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Finds the flow of `key`, or makes it with `make`, and marks it seen at `ts`.
    pub fn lookup(
        &mut self,
        key: FlowKey,
        ts: Timestamp,
        make: impl FnOnce() -> T,
    ) -> Lookup<'_, T> {
        match self.index.get_mut(&key).map(|ix| stamp(ix, ts)) {
            Some((slot, quiet, relink)) => self.found(slot, quiet, relink, ts),
            None => self.insert(key, ts, make()),
        }
    }

    /// Finds the flow of `key` and marks it seen at `ts`; makes nothing.
    pub fn find(&mut self, key: FlowKey, ts: Timestamp) -> Option<Lookup<'_, T>> {
        let (slot, quiet, relink) = self.index.get_mut(&key).map(|ix| stamp(ix, ts))?;
        Some(self.found(slot, quiet, relink, ts))
    }

    fn found(
        &mut self,
        slot: u32,
        quiet: Option<u32>,
        relink: bool,
        ts: Timestamp,
    ) -> Lookup<'_, T> {
        if relink {
            self.slots[slot as usize].last_seen = ts;
            if self.newest != slot {
                self.unlink(slot);
                self.link_newest(slot);
            }
        }
        if let Some(tag) = quiet {
            return Lookup::Quiet(tag);
        }
        let value = self.slots[slot as usize]
            .value
            .as_mut()
            .expect("indexed slot holds a flow");
        Lookup::Flow(Entry {
            value,
            created: false,
            evicted: None,
        })
    }

    fn insert(&mut self, key: FlowKey, ts: Timestamp, value: T) -> Lookup<'_, T> {
        let evicted = if self.index.len() >= self.max {
            self.pop_oldest()
        } else {
            None
        };
        let slot = Slot {
            key,
            last_seen: ts,
            newer: NIL,
            older: NIL,
            value: Some(value),
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(
            key,
            Indexed {
                slot: i,
                quiet: None,
                relinked: ts,
            },
        );
        self.link_newest(i);
        let value = self.slots[i as usize]
            .value
            .as_mut()
            .expect("slot just filled");
        Lookup::Flow(Entry {
            value,
            created: true,
            evicted,
        })
    }

    /// Marks a flow quiet: its later lookups return `Lookup::Quiet(tag)`.
    pub fn set_quiet(&mut self, key: &FlowKey, tag: u32) {
        if let Some(ix) = self.index.get_mut(key) {
            ix.quiet = Some(tag);
        }
    }

    /// Removes and returns the least recently seen flow if it has been idle
    /// since before `cutoff`.
    pub fn pop_idle(&mut self, cutoff: Timestamp) -> Option<(FlowKey, T)> {
        if self.oldest == NIL || self.slots[self.oldest as usize].last_seen >= cutoff {
            return None;
        }
        self.pop_oldest()
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<T> {
        let i = self.index.remove(key)?.slot;
        self.unlink(i);
        self.free.push(i);
        self.slots[i as usize].value.take()
    }

    fn pop_oldest(&mut self) -> Option<(FlowKey, T)> {
        if self.oldest == NIL {
            return None;
        }
        let key = self.slots[self.oldest as usize].key;
        self.remove(&key).map(|v| (key, v))
    }

    fn unlink(&mut self, i: u32) {
        let (newer, older) = {
            let s = &self.slots[i as usize];
            (s.newer, s.older)
        };
        if newer != NIL {
            self.slots[newer as usize].older = older;
        } else {
            self.newest = older;
        }
        if older != NIL {
            self.slots[older as usize].newer = newer;
        } else {
            self.oldest = newer;
        }
        let s = &mut self.slots[i as usize];
        s.newer = NIL;
        s.older = NIL;
    }

    fn link_newest(&mut self, i: u32) {
        let old_newest = self.newest;
        {
            let s = &mut self.slots[i as usize];
            s.older = old_newest;
            s.newer = NIL;
        }
        if old_newest != NIL {
            self.slots[old_newest as usize].newer = i;
        } else {
            self.oldest = i;
        }
        self.newest = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Inserts or finds, and says what was evicted.
    fn put<T>(t: &mut FlowTable<T>, k: FlowKey, ts: Timestamp, v: T) -> (bool, Option<T>) {
        match t.lookup(k, ts, || v) {
            Lookup::Flow(e) => (e.created, e.evicted.map(|(_, v)| v)),
            Lookup::Quiet(_) => (false, None),
        }
    }

    fn key(n: u16) -> FlowKey {
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        FlowKey::of((a, n), (a, 3333)).0
    }

    #[test]
    fn both_directions_find_the_same_flow() {
        let a = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000);
        let b = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 3333);
        let (k1, s1) = FlowKey::of(a, b);
        let (k2, s2) = FlowKey::of(b, a);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_seen_flow() {
        let mut t = FlowTable::new(3);
        let sec = |n: u64| Timestamp(n * 1_000_000);
        for n in 1..=3 {
            put(&mut t, key(n), sec(n as u64), n);
        }
        // Seeing flow 1 again makes flow 2 the coldest.
        put(&mut t, key(1), sec(10), 0);
        let (created, evicted) = put(&mut t, key(4), sec(11), 4);
        assert!(created);
        assert_eq!(evicted, Some(2));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_flow_seen_again_within_the_relink_interval_keeps_its_place() {
        let mut t = FlowTable::new(2);
        put(&mut t, key(1), Timestamp(0), 1);
        put(&mut t, key(2), Timestamp(10), 2);
        put(&mut t, key(1), Timestamp(20), 0);
        assert_eq!(put(&mut t, key(3), Timestamp(30), 3).1, Some(1));
    }

    #[test]
    fn endpoints_come_back_as_they_went_in() {
        let v4: SocketAddr = "10.0.0.1:3333".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:3333".parse().unwrap();
        for (a, b) in [(v4, "10.0.0.2:1"), (v6, "[2001:db8::2]:1")] {
            let b: SocketAddr = b.parse().unwrap();
            let (k, side) = FlowKey::of((a.ip(), a.port()), (b.ip(), b.port()));
            assert_eq!(k.endpoint(side), a);
            assert_eq!(k.endpoint(side.other()), b);
        }
        let (k4, _) = FlowKey::of((v4.ip(), 3333), (v4.ip(), 1));
        let (k6, _) = FlowKey::of((mapped.ip(), 3333), (mapped.ip(), 1));
        assert_ne!(k4, k6);
    }

    #[test]
    fn a_quiet_flow_is_answered_with_its_tag() {
        let mut t = FlowTable::new(4);
        put(&mut t, key(1), Timestamp(0), 1);
        t.set_quiet(&key(1), 7);
        assert!(matches!(
            t.lookup(key(1), Timestamp(5), || 0),
            Lookup::Quiet(7)
        ));
        assert_eq!(t.remove(&key(1)), Some(1));
    }

    #[test]
    fn idle_flows_pop_oldest_first_and_stop_at_the_cutoff() {
        let mut t = FlowTable::new(10);
        for n in 1..=5 {
            put(&mut t, key(n), Timestamp(n as u64 * 100), n);
        }
        let mut popped = Vec::new();
        while let Some((_, v)) = t.pop_idle(Timestamp(301)) {
            popped.push(v);
        }
        assert_eq!(popped, vec![1, 2, 3]);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_million_distinct_flows_stay_within_the_cap() {
        let mut t = FlowTable::new(1000);
        let mut evicted = 0;
        for n in 0..1_000_000u32 {
            let a = IpAddr::V4(Ipv4Addr::from(n));
            let (k, _) = FlowKey::of((a, 1), (a, 2));
            if put(&mut t, k, Timestamp(n as u64), ()).1.is_some() {
                evicted += 1;
            }
        }
        assert_eq!(t.len(), 1000);
        assert_eq!(evicted, 1_000_000 - 1000);
        assert!(t.slots.len() <= 1000);
    }
}
