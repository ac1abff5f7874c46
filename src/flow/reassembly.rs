//! In-order bytes out of one direction of a TCP connection.
//!
//! Segments that arrive in order go straight through without a copy.
//! Retransmitted and overlapping bytes are trimmed, so a keep-alive that
//! re-sends the last byte already delivered delivers nothing. Segments from
//! the future are copied into a small per-direction queue until the hole
//! before them fills. When the queue is full the hole is given up on: the
//! reader is told there is a gap and delivery resumes at the earliest queued
//! byte. That is also how a capture that starts mid-stream, or that lost a
//! packet, carries on.

use crate::stats::Stats;
use crate::stratum::budget::Budget;

/// Queued out-of-order segments per direction. Real reordering is a few
/// segments deep; a longer queue is a lost packet or an attack, and waiting
/// longer would only delay the skip.
pub const MAX_QUEUED_SEGMENTS: usize = 16;

/// Queued out-of-order bytes per direction: a handful of full-size segments.
pub const MAX_QUEUED_BYTES: usize = 32 * 1024;

/// A segment further ahead than this is not reordering but a jump (a capture
/// gap or a forged sequence number): give up on the hole at once.
pub const MAX_AHEAD: u32 = 1 << 20;

/// Receives what a direction delivers, in order.
pub trait StreamSink {
    /// The next in-order bytes.
    fn data(&mut self, bytes: &[u8]);
    /// Bytes before the next `data` were lost: any partial message is void.
    fn gap(&mut self);
}

#[derive(Default)]
pub struct Reassembler {
    /// Sequence number of the next byte to deliver; `None` before the first
    /// segment or SYN of this direction.
    next: Option<u32>,
    queue: Vec<(u32, Box<[u8]>)>,
    queued_bytes: usize,
}

impl Reassembler {
    /// A SYN fixes the first sequence number of the stream.
    pub fn syn(&mut self, isn: u32) {
        if self.next.is_none() {
            self.next = Some(isn.wrapping_add(1));
        }
    }

    /// Whether the stream's start is known (a SYN, or bytes already seen).
    pub fn started(&self) -> bool {
        self.next.is_some()
    }

    /// Bytes held in the out-of-order queue.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Takes one segment's payload.
    pub fn segment(
        &mut self,
        seq: u32,
        payload: &[u8],
        sink: &mut dyn StreamSink,
        stats: &mut Stats,
        budget: &Budget,
    ) {
        if payload.is_empty() {
            return;
        }
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.wrapping_sub(next);

        if ahead == 0 || ahead > u32::MAX / 2 {
            // At or before `next`: trim what was already delivered.
            let behind = next.wrapping_sub(seq) as usize;
            if behind >= payload.len() {
                return;
            }
            self.deliver(&payload[behind..], sink);
            let before = self.queued_bytes;
            self.drain(sink);
            budget.give(before - self.queued_bytes);
            return;
        }

        let full = self.queue.len() >= MAX_QUEUED_SEGMENTS
            || self.queued_bytes + payload.len() > MAX_QUEUED_BYTES
            || (ahead <= MAX_AHEAD && !budget.take(payload.len()));
        if ahead > MAX_AHEAD || full {
            stats.ooo_dropped += u64::from(full);
            let before = self.queued_bytes;
            self.skip_gap(Some((seq, payload)), sink, stats);
            budget.give(before);
            return;
        }
        self.enqueue(seq, payload);
    }

    /// Gives up on the hole before the earliest queued byte (or `extra`) and
    /// delivers everything queued, skipping any further holes as well.
    fn skip_gap(
        &mut self,
        extra: Option<(u32, &[u8])>,
        sink: &mut dyn StreamSink,
        stats: &mut Stats,
    ) {
        let next = self.next.unwrap_or(0);
        if let Some((seq, bytes)) = extra {
            // The newcomer may be far ahead of the queue; order by distance from `next`.
            if self
                .queue
                .iter()
                .all(|(s, _)| s.wrapping_sub(next) > seq.wrapping_sub(next))
            {
                stats.gaps_skipped += 1;
                sink.gap();
                self.next = Some(seq);
                self.deliver(bytes, sink);
                self.drain_skipping(sink, stats);
                return;
            }
            self.enqueue_unbounded(seq, bytes);
        }
        self.drain_skipping(sink, stats);
    }

    fn drain_skipping(&mut self, sink: &mut dyn StreamSink, stats: &mut Stats) {
        while !self.queue.is_empty() {
            self.drain(sink);
            if let Some((seq, _)) = self.queue.first() {
                stats.gaps_skipped += 1;
                sink.gap();
                self.next = Some(*seq);
            }
        }
    }

    fn deliver(&mut self, bytes: &[u8], sink: &mut dyn StreamSink) {
        sink.data(bytes);
        self.next = Some(self.next.unwrap_or(0).wrapping_add(bytes.len() as u32));
    }

    /// Delivers queued segments that have become contiguous.
    fn drain(&mut self, sink: &mut dyn StreamSink) {
        while let Some((seq, _)) = self.queue.first() {
            let next = self.next.unwrap_or(*seq);
            let ahead = seq.wrapping_sub(next);
            if ahead != 0 && ahead <= u32::MAX / 2 {
                return;
            }
            let (seq, bytes) = self.queue.remove(0);
            self.queued_bytes -= bytes.len();
            let behind = next.wrapping_sub(seq) as usize;
            if behind < bytes.len() {
                self.deliver(&bytes[behind..], sink);
            }
        }
    }

    /// Bytes this direction holds, to give back to the budget when the flow goes.
    pub fn release(&mut self, budget: &Budget) {
        budget.give(self.queued_bytes);
        self.queue = Vec::new();
        self.queued_bytes = 0;
    }

    fn enqueue(&mut self, seq: u32, payload: &[u8]) {
        self.enqueue_unbounded(seq, payload);
    }

    fn enqueue_unbounded(&mut self, seq: u32, payload: &[u8]) {
        let next = self.next.unwrap_or(seq);
        let key = seq.wrapping_sub(next);
        let at = self
            .queue
            .partition_point(|(s, _)| s.wrapping_sub(next) <= key);
        self.queue.insert(at, (seq, payload.into()));
        self.queued_bytes += payload.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Collects the stream; a gap is written as a marker the data never holds.
    #[derive(Default)]
    struct Collect(Vec<u8>, usize);

    impl StreamSink for Collect {
        fn data(&mut self, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
        fn gap(&mut self) {
            self.1 += 1;
        }
    }

    fn feed(segs: &[(u32, &[u8])], isn: Option<u32>) -> Collect {
        let mut r = Reassembler::default();
        if let Some(isn) = isn {
            r.syn(isn);
        }
        let mut c = Collect::default();
        let mut st = Stats::default();
        let b = Budget::default();
        for (seq, p) in segs {
            r.segment(*seq, p, &mut c, &mut st, &b);
        }
        c
    }

    #[test]
    fn in_order_segments_pass_through() {
        let c = feed(&[(1, b"ab"), (3, b"cd")], Some(0));
        assert_eq!(c.0, b"abcd");
        assert_eq!(c.1, 0);
    }

    #[test]
    fn keepalive_resending_the_last_byte_delivers_nothing() {
        let c = feed(&[(1, b"ab\n"), (3, b"\n"), (4, b"x")], Some(0));
        assert_eq!(c.0, b"ab\nx");
    }

    #[test]
    fn overlapping_retransmission_delivers_only_the_new_tail() {
        let c = feed(&[(1, b"abc"), (2, b"bcdef")], Some(0));
        assert_eq!(c.0, b"abcdef");
    }

    #[test]
    fn out_of_order_segments_are_put_back_in_order() {
        let c = feed(&[(5, b"ef"), (3, b"cd"), (1, b"ab")], Some(0));
        assert_eq!(c.0, b"abcdef");
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let c = feed(&[(u32::MAX - 1, b"ab"), (0, b"cd")], Some(u32::MAX - 2));
        assert_eq!(c.0, b"abcd");
    }

    #[test]
    fn a_hole_that_never_fills_is_skipped_once_the_queue_is_full() {
        let mut segs: Vec<(u32, Vec<u8>)> = vec![(1, b"a".to_vec())];
        // Byte 2 is lost; 17 later one-byte segments overflow the queue.
        for i in 0..(MAX_QUEUED_SEGMENTS as u32 + 1) {
            segs.push((3 + i, vec![b'b']));
        }
        let refs: Vec<(u32, &[u8])> = segs.iter().map(|(s, p)| (*s, p.as_slice())).collect();
        let c = feed(&refs, Some(0));
        assert_eq!(c.1, 1);
        assert_eq!(c.0.len(), 1 + MAX_QUEUED_SEGMENTS + 1);
    }

    #[test]
    fn a_far_jump_is_a_gap_not_a_queue_entry() {
        let c = feed(&[(1, b"a"), (1 + MAX_AHEAD + 10, b"z")], Some(0));
        assert_eq!(c.0, b"az");
        assert_eq!(c.1, 1);
    }

    #[test]
    fn a_million_tiny_out_of_order_segments_stay_bounded() {
        let mut r = Reassembler::default();
        r.syn(0);
        let mut c = Collect::default();
        let mut st = Stats::default();
        let b = Budget::default();
        // Every other byte is missing, so nothing is ever contiguous.
        for i in 0..1_000_000u32 {
            r.segment(2 + 2 * i, b"x", &mut c, &mut st, &b);
            assert!(r.queue.len() <= MAX_QUEUED_SEGMENTS);
            assert!(r.queued_bytes() <= MAX_QUEUED_BYTES);
        }
        assert!(st.gaps_skipped > 0);
    }

    proptest! {
        /// Against the obvious model: cut a stream into segments, shuffle,
        /// duplicate some; with no loss, the output is the stream itself.
        #[test]
        fn any_order_and_duplication_within_the_queue_yields_the_stream(
            data in proptest::collection::vec(any::<u8>(), 1..400),
            cuts in proptest::collection::vec(1usize..40, 1..30),
            isn in any::<u32>(),
            perm_seed in any::<u64>(),
            dups in proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        ) {
            let mut segs = Vec::new();
            let mut off = 0;
            for c in cuts.iter().cycle() {
                if off >= data.len() { break; }
                let end = (off + c).min(data.len());
                segs.push((isn.wrapping_add(1).wrapping_add(off as u32), data[off..end].to_vec()));
                off = end;
            }
            for d in &dups {
                let s = segs[d.index(segs.len())].clone();
                segs.push(s);
            }
            // A deterministic shuffle limited to windows the queue can hold.
            let mut rng = perm_seed;
            for w in segs.chunks_mut(MAX_QUEUED_SEGMENTS / 2) {
                for i in (1..w.len()).rev() {
                    rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let j = (rng >> 33) as usize % (i + 1);
                    w.swap(i, j);
                }
            }
            let refs: Vec<(u32, &[u8])> = segs.iter().map(|(s, p)| (*s, p.as_slice())).collect();
            let c = feed(&refs, Some(isn));
            prop_assert_eq!(c.1, 0);
            prop_assert_eq!(c.0, data);
        }

        /// Whatever arrives (random sequence numbers, overlaps, wraps),
        /// nothing panics, no byte is delivered more often than it was sent,
        /// and there is at most one gap per segment.
        #[test]
        fn arbitrary_segments_never_panic_nor_deliver_more_than_was_sent(
            segs in proptest::collection::vec((any::<u32>(), proptest::collection::vec(any::<u8>(), 0..50)), 0..100),
        ) {
            let refs: Vec<(u32, &[u8])> = segs.iter().map(|(s, p)| (*s, p.as_slice())).collect();
            let c = feed(&refs, None);
            let sent: usize = segs.iter().map(|(_, p)| p.len()).sum();
            prop_assert!(c.0.len() <= sent, "{} delivered of {} sent", c.0.len(), sent);
            prop_assert!(c.1 <= segs.len());
        }
    }
}
