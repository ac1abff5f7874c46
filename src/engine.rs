//! Wires the packet path together. `analyze` and `monitor` both drive one
//! `Engine`; nothing in here knows whether packets come from a file or a
//! device, and nothing here reads the wall clock: time is the packets' own.
//!
//! Cost per packet, cheapest first: a packet of a flow that is decided costs
//! a decode and one table lookup. A flow is decided once it is confirmed (and
//! the login was read), once a direction turned out not to be ours (TLS,
//! binary, HTTP GET), once both directions passed the inspection depth, or
//! once it closed. Only undecided flows reach reassembly and JSON parsing.

use std::sync::Arc;
use std::time::Duration;

use crate::decode::{self, LinkType, Skip};
use crate::flow::reassembly::{Reassembler, StreamSink};
use crate::flow::table::{FlowKey, FlowTable, Lookup};
use crate::flow::Side;
use crate::pools::{self, PoolEvent, PoolId, PoolRegistry};
use crate::signatures::SignatureSet;
use crate::stats::Stats;
use crate::stratum::budget::{self, Budget};
use crate::stratum::framing::Framer;
use crate::stratum::session::Session;
use crate::time::Timestamp;

/// Limits of the packet path. Every one bounds memory or work on input an
/// attacker may choose.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Flows tracked at once; past it the least recently seen flow goes.
    pub max_flows: usize,
    /// A flow with no packet for this long is forgotten.
    pub idle_timeout: Duration,
    /// Bytes read from each direction of a flow before it stops costing work.
    pub inspect_depth: usize,
    /// Bytes held between packets across all flows.
    pub buffer_budget: usize,
    /// Pool records kept.
    pub max_pools: usize,
}

/// Flows at once by default: a busy site's concurrent TCP connections, at
/// roughly 600 bytes each in the worst case (about 150 MiB when full).
pub const DEFAULT_MAX_FLOWS: usize = 262_144;
/// Stratum connections sit quiet between jobs for a minute or two at most.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// A miner's login, the pool's answer and the first jobs fit in far less.
pub const DEFAULT_INSPECT_DEPTH: usize = 32 * 1024;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_flows: DEFAULT_MAX_FLOWS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            inspect_depth: DEFAULT_INSPECT_DEPTH,
            buffer_budget: budget::DEFAULT_BUFFER_BUDGET,
            max_pools: pools::DEFAULT_MAX_POOLS,
        }
    }
}

/// The quiet tag of a decided flow that counts in no pool.
const NO_POOL: PoolId = PoolId::MAX;

/// What the table keeps for every flow. Small on purpose: a flood of flows
/// that never carry a payload costs only this.
#[derive(Default)]
struct Flow {
    /// Initial sequence numbers from SYNs, by sending side.
    isn: [Option<u32>; 2],
    /// The client's side, when the handshake told.
    client: Option<Side>,
    fin: [bool; 2],
    /// The pool record this flow counts in, once it does.
    pool: Option<PoolId>,
    inspect: Option<Box<Inspect>>,
}

/// State of a flow that is being read. Boxed, so decided flows do not carry it.
struct Inspect {
    reasm: [Reassembler; 2],
    framer: [Framer; 2],
    read: [usize; 2],
    session: Session,
}

impl Inspect {
    fn new(isn: [Option<u32>; 2], client: Option<Side>) -> Inspect {
        let mut reasm: [Reassembler; 2] = Default::default();
        for (r, isn) in reasm.iter_mut().zip(isn) {
            if let Some(isn) = isn {
                r.syn(isn);
            }
        }
        let framer = [Framer::new(), Framer::new()];
        let mut session = Session::default();
        session.client = client;
        Inspect {
            reasm,
            framer,
            read: [0; 2],
            session,
        }
    }

    fn release(&mut self, budget: &Budget) {
        for i in 0..2 {
            self.reasm[i].release(budget);
            self.framer[i].stop(budget);
        }
    }
}

/// Feeds one direction's in-order bytes to its framer and the session.
struct Feed<'a> {
    framer: &'a mut Framer,
    session: &'a mut Session,
    side: Side,
    sigs: &'a SignatureSet,
    budget: &'a Budget,
}

impl StreamSink for Feed<'_> {
    fn data(&mut self, bytes: &[u8]) {
        let (session, side, sigs) = (&mut *self.session, self.side, self.sigs);
        self.framer.push(bytes, self.budget, &mut |unit| {
            session.on_unit(side, unit, sigs)
        });
    }

    fn gap(&mut self) {
        self.framer.gap(self.budget);
    }
}

pub struct Engine {
    cfg: EngineConfig,
    sigs: Arc<SignatureSet>,
    table: FlowTable<Flow>,
    budget: Budget,
    stats: Stats,
    pools: PoolRegistry,
    events: Vec<PoolEvent>,
}

impl Engine {
    pub fn new(cfg: EngineConfig, sigs: Arc<SignatureSet>) -> Engine {
        Engine {
            table: FlowTable::new(cfg.max_flows),
            budget: Budget::new(cfg.buffer_budget),
            pools: PoolRegistry::new(cfg.max_pools),
            stats: Stats::default(),
            events: Vec::new(),
            sigs,
            cfg,
        }
    }

    /// Feeds one captured packet. `wire_len` is the packet's length on the wire,
    /// which exceeds `data.len()` when the snap length cut it.
    pub fn process(&mut self, ts: Timestamp, link: LinkType, data: &[u8], wire_len: u32) {
        self.stats.packets += 1;
        self.stats.bytes += u64::from(wire_len.max(data.len() as u32));

        let seg = match decode::decode(link, data) {
            Ok(seg) => seg,
            Err(Skip::NotTcp) | Err(Skip::Fragment) => {
                self.stats.non_tcp += 1;
                return;
            }
            Err(Skip::UnsupportedLink) | Err(Skip::Malformed) => {
                self.stats.decode_errors += 1;
                return;
            }
        };
        if seg.truncated {
            self.stats.truncated += 1;
        }

        let (key, side) = FlowKey::of((seg.src, seg.src_port), (seg.dst, seg.dst_port));
        let mut lookup = if seg.payload.is_empty() && !seg.flags.syn {
            // An ACK, FIN or RST of a flow not in the table (closed, evicted,
            // or begun before the capture) says nothing: do not make a flow.
            match self.table.find(key, ts) {
                Some(l) => l,
                None => return,
            }
        } else {
            self.table.lookup(key, ts, Flow::default)
        };
        if matches!(lookup, Lookup::Quiet(_)) && seg.flags.syn && !seg.flags.ack {
            // A new connection reusing a decided flow's ports: start afresh.
            self.table.remove(&key);
            lookup = self.table.lookup(key, ts, Flow::default);
        }
        let entry = match lookup {
            // A decided flow: answered from the table's index alone.
            Lookup::Quiet(tag) => {
                if tag != NO_POOL {
                    self.pools.touch(tag, ts);
                }
                return;
            }
            Lookup::Flow(entry) => entry,
        };
        let flow = entry.value;
        if entry.created {
            self.stats.flows_created += 1;
        }
        if let Some((_, mut old)) = entry.evicted {
            self.stats.flows_evicted_pressure += 1;
            if let Some(i) = old.inspect.as_mut() {
                i.release(&self.budget);
            }
        }

        // The handshake says who the client is and where each stream starts.
        if seg.flags.syn {
            flow.isn[side.index()] = Some(seg.seq);
            flow.client = Some(if seg.flags.ack { side.other() } else { side });
            if let Some(i) = flow.inspect.as_mut() {
                i.reasm[side.index()].syn(seg.seq);
                i.session.client = flow.client;
            }
        }

        let mut finished = false;
        if !seg.payload.is_empty() {
            let inspect = flow
                .inspect
                .get_or_insert_with(|| Box::new(Inspect::new(flow.isn, flow.client)));
            let ix = side.index();
            let Inspect {
                reasm,
                framer,
                read,
                session,
            } = &mut **inspect;
            let mut feed = Feed {
                framer: &mut framer[ix],
                session,
                side,
                sigs: &self.sigs,
                budget: &self.budget,
            };
            reasm[ix].segment(
                seg.seq,
                seg.payload,
                &mut feed,
                &mut self.stats,
                &self.budget,
            );
            self.stats.lines_too_long += std::mem::take(&mut framer[ix].lines_cut);
            self.stats.json_errors += std::mem::take(&mut session.json_errors);

            read[ix] += seg.payload.len();
            if read[ix] > self.cfg.inspect_depth && !framer[ix].is_ignoring() {
                framer[ix].stop(&self.budget);
                reasm[ix].release(&self.budget);
                if session.confidence.is_none() {
                    self.stats.depth_reached += 1;
                }
            }

            if session.changed {
                session.changed = false;
                let id = report(
                    &mut self.pools,
                    &mut self.events,
                    &self.sigs,
                    &key,
                    flow.pool,
                    session,
                    ts,
                );
                flow.pool = flow.pool.or(id);
            }

            let not_ours = session.confidence.is_none() && framer.iter().any(Framer::is_ignoring);
            let both_stopped = framer.iter().all(Framer::is_ignoring);
            finished = session.settled() || not_ours || both_stopped;
        }

        if seg.flags.fin {
            flow.fin[side.index()] = true;
        }
        let closed = seg.flags.rst || flow.fin == [true, true];
        if finished || closed {
            if let Some(mut i) = flow.inspect.take() {
                i.release(&self.budget);
            }
            let tag = flow.pool.unwrap_or(NO_POOL);
            if closed {
                // Its last ACKs find no flow and are dropped above.
                self.table.remove(&key);
            } else {
                self.table.set_quiet(&key, tag);
            }
        }
    }

    /// Forgets every flow (the end of one input file), keeping the pools.
    pub fn clear_flows(&mut self) {
        while let Some((_, mut flow)) = self.table.pop_idle(Timestamp(u64::MAX)) {
            if let Some(i) = flow.inspect.as_mut() {
                i.release(&self.budget);
            }
        }
    }

    /// Moves the pool events raised since the last call into `out`.
    pub fn drain_events(&mut self, out: &mut Vec<PoolEvent>) {
        out.append(&mut self.events);
    }

    /// Evicts flows idle for longer than the timeout, as of `now`.
    pub fn expire(&mut self, now: Timestamp) {
        let cutoff = Timestamp(
            now.0
                .saturating_sub(self.cfg.idle_timeout.as_micros() as u64),
        );
        while let Some((_, mut flow)) = self.table.pop_idle(cutoff) {
            self.stats.flows_evicted_idle += 1;
            if let Some(i) = flow.inspect.as_mut() {
                i.release(&self.budget);
            }
        }
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.pools_dropped_full = self.pools.dropped_full;
        s.buffer_refused = self.budget.refused();
        s.buffered_bytes = self.budget.held() as u64;
        s.flows_tracked = self.table.len() as u64;
        s
    }

    pub fn pools(&self) -> &PoolRegistry {
        &self.pools
    }

    pub fn signatures(&self) -> &SignatureSet {
        &self.sigs
    }

    /// Number of flows currently tracked.
    pub fn flows(&self) -> usize {
        self.table.len()
    }
}

/// Hands a flow's new evidence to the pool registry; returns the record's id.
fn report(
    pools: &mut PoolRegistry,
    events: &mut Vec<PoolEvent>,
    sigs: &SignatureSet,
    key: &FlowKey,
    counted: Option<PoolId>,
    session: &mut Session,
    ts: Timestamp,
) -> Option<PoolId> {
    let (Some(conf), Some(client), Some(dialect)) =
        (session.confidence, session.client, session.dialect)
    else {
        return None;
    };
    let server = key.endpoint(client.other());
    let client_ip = key.endpoint(client).ip();
    let name = &sigs.dialects[dialect].name;
    let (id, event) = pools.observe(
        server,
        name,
        client_ip,
        conf,
        &session.sighting,
        counted.is_none(),
        ts,
    );
    if let Some(ev) = &event {
        tracing::debug!(
            pool = %server,
            client = %client_ip,
            dialect = %name,
            confidence = conf.as_str(),
            methods = ?session.sighting.methods,
            event = ?ev.kind,
            "mining flow reported"
        );
    }
    events.extend(event);
    session.sighting.methods.clear();
    id
}
