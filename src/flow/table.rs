//! The flow table: a hash map from the unordered endpoint pair to a slot in a
//! slab, with the slots on an intrusive least-recently-seen list.
//!
//! The list gives both evictions in O(1): by idle time (pop from the cold end
//! while the coldest flow is older than the timeout) and by pressure (when the
//! table is full, the coldest flow makes room for the new one). A flood of
//! distinct flows therefore costs a bounded table and a counter, never memory.

use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap;

use super::Side;
use crate::time::Timestamp;

/// The two endpoints of a TCP connection, in a fixed order so that both
/// directions find the same entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo: (IpAddr, u16),
    pub hi: (IpAddr, u16),
}

impl FlowKey {
    /// The key of a segment sent from `src` to `dst`, and the side that sent it.
    pub fn of(src: (IpAddr, u16), dst: (IpAddr, u16)) -> (FlowKey, Side) {
        if src <= dst {
            (FlowKey { lo: src, hi: dst }, Side::Lo)
        } else {
            (FlowKey { lo: dst, hi: src }, Side::Hi)
        }
    }

    pub fn endpoint(&self, side: Side) -> SocketAddr {
        let (ip, port) = match side {
            Side::Lo => self.lo,
            Side::Hi => self.hi,
        };
        SocketAddr::new(ip, port)
    }
}

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

/// What a lookup found or made.
pub struct Entry<'a, T> {
    pub value: &'a mut T,
    pub created: bool,
    /// A flow evicted to make room for this one (table full).
    pub evicted: Option<(FlowKey, T)>,
}

pub struct FlowTable<T> {
    index: FxHashMap<FlowKey, u32>,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    newest: u32,
    oldest: u32,
    max: usize,
}

impl<T> FlowTable<T> {
    /// A table that holds at most `max` flows (at least one).
    pub fn new(max: usize) -> FlowTable<T> {
        let max = max.max(1);
        FlowTable {
            index: FxHashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Finds the flow of `key`, or makes it with `make`, and marks it seen at `ts`.
    pub fn get_or_insert(
        &mut self,
        key: FlowKey,
        ts: Timestamp,
        make: impl FnOnce() -> T,
    ) -> Entry<'_, T> {
        if let Some(&i) = self.index.get(&key) {
            self.touch(i, ts);
            let value = self.slots[i as usize]
                .value
                .as_mut()
                .expect("indexed slot holds a flow");
            return Entry {
                value,
                created: false,
                evicted: None,
            };
        }

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
            value: Some(make()),
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
        self.index.insert(key, i);
        self.link_newest(i);
        let value = self.slots[i as usize]
            .value
            .as_mut()
            .expect("slot just filled");
        Entry {
            value,
            created: true,
            evicted,
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
        let i = self.index.remove(key)?;
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

    fn touch(&mut self, i: u32, ts: Timestamp) {
        let s = &mut self.slots[i as usize];
        if ts > s.last_seen {
            s.last_seen = ts;
        }
        if self.newest != i {
            self.unlink(i);
            self.link_newest(i);
        }
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
        for n in 1..=3 {
            t.get_or_insert(key(n), Timestamp(n as u64), || n);
        }
        // Seeing flow 1 again makes flow 2 the coldest.
        t.get_or_insert(key(1), Timestamp(10), || 0);
        let e = t.get_or_insert(key(4), Timestamp(11), || 4);
        assert!(e.created);
        assert_eq!(e.evicted.map(|(_, v)| v), Some(2));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn idle_flows_pop_oldest_first_and_stop_at_the_cutoff() {
        let mut t = FlowTable::new(10);
        for n in 1..=5 {
            t.get_or_insert(key(n), Timestamp(n as u64 * 100), || n);
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
            if t.get_or_insert(k, Timestamp(n as u64), || ())
                .evicted
                .is_some()
            {
                evicted += 1;
            }
        }
        assert_eq!(t.len(), 1000);
        assert_eq!(evicted, 1_000_000 - 1000);
        assert!(t.slots.len() <= 1000);
    }
}
