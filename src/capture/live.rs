//! Live capture from network interfaces with libpcap.
//!
//! Each interface gets its own OS thread running libpcap's blocking read loop.
//! The threads copy every packet into an owned buffer and hand it to one
//! bounded queue that the consumer (the `monitor` command's tokio task, which
//! owns the single [`Engine`](crate::engine::Engine)) drains in batches.
//!
//! The queue is bounded twice, by packets and by bytes. When the consumer
//! falls behind, a capture thread drops the packet and counts it against its
//! interface instead of waiting: waiting would only move the loss into the
//! kernel's ring buffer, where it is counted too but the backlog it builds
//! delays every later detection.
//!
//! An interface that fails while running (it was removed) ends its own
//! thread with a [`CaptureMsg::Ended`] message; the others keep running. One
//! that goes down or loses its link raises no error in libpcap, so that is
//! found by asking the OS ([`link_states`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::decode::LinkType;
use crate::time::Timestamp;

/// How long one libpcap read waits for a packet before it returns, so the
/// capture thread can look at its stop flag and refresh its counters. 100 ms
/// keeps that prompt without waking an idle sensor more than ten times a
/// second.
///
/// Libpcap 1.10 on Linux does not honour this timeout while no packet
/// arrives (its ring-buffer read polls again instead of returning), so the
/// timeout alone cannot stop an idle thread. [`LiveCapture`] therefore also
/// wakes the threads with `pcap_breakloop`, which interrupts a blocked read
/// there; the timeout still serves platforms where it works.
pub const READ_TIMEOUT_MS: i32 = 100;

/// Packets the queue between the capture threads and the engine may hold.
/// At 100 000 packets/s this is about 80 ms of traffic: enough to ride out a
/// pause of the consumer (printing, a blocker call) without loss, small
/// enough that a consumer that cannot keep up is noticed in the drop counter
/// within a second rather than after minutes of backlog.
pub const QUEUE_PACKETS: usize = 8192;

/// Bytes of packet data the queue may hold. Packets are copied at their
/// captured length, so 8192 packets of Ethernet size take about 12 MiB, but
/// with GRO/TSO a single captured "packet" can reach 64 KiB; this cap keeps
/// the worst case at 64 MiB instead of the 512 MiB the packet cap alone would
/// allow.
pub const QUEUE_BYTES: usize = 64 << 20;

/// How often a capture thread copies libpcap's counters into the shared
/// statistics. The periodic stats line is at most this much out of date.
const STATS_REFRESH: Duration = Duration::from_secs(1);

/// The largest snap length libpcap accepts (its `MAXIMUM_SNAPLEN`).
pub const MAX_SNAPLEN: u32 = 262_144;

/// How a live capture is opened.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Promiscuous mode: a SPAN/mirror port carries other hosts' traffic,
    /// which the NIC only passes up when it is promiscuous.
    pub promisc: bool,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// Kernel buffer size in bytes; libpcap's default when `None`.
    pub buffer_size: Option<u32>,
    /// A BPF filter expression (tcpdump syntax).
    pub bpf: Option<String>,
}

/// Why an interface could not be opened for capture. Each message says what
/// the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot list network interfaces: {0}")]
    ListInterfaces(String),
    #[error("no such interface: {name} (interfaces here: {available})")]
    NoSuchInterface { name: String, available: String },
    #[error("interface {name} is down: bring it up first (ip link set {name} up)")]
    InterfaceDown { name: String },
    #[error(
        "no permission to capture on {name}: run as root or give the binary the \
         CAP_NET_RAW capability (setcap cap_net_raw=eip /path/to/stratumguard)"
    )]
    PermissionDenied { name: String },
    #[error("BPF filter {filter:?} does not compile on {name}: {message} (tcpdump syntax, e.g. 'tcp and not port 22')")]
    BadFilter {
        name: String,
        filter: String,
        message: String,
    },
    #[error("cannot open {name} for capture: {message}")]
    Open { name: String, message: String },
    #[error("cannot start the capture thread for {name}: {message}")]
    Thread { name: String, message: String },
}

/// Checks that every named interface exists and is up, before anything is
/// opened, so that a typo is reported as such and not as a libpcap error.
pub fn check_interfaces(names: &[String]) -> Result<(), LiveError> {
    let devices = pcap::Device::list().map_err(|e| LiveError::ListInterfaces(pcap_message(&e)))?;
    for name in names {
        let Some(dev) = devices.iter().find(|d| &d.name == name) else {
            let available: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
            return Err(LiveError::NoSuchInterface {
                name: name.clone(),
                available: if available.is_empty() {
                    "none visible".to_string()
                } else {
                    available.join(", ")
                },
            });
        };
        if !dev.flags.is_up() {
            return Err(LiveError::InterfaceDown { name: name.clone() });
        }
    }
    Ok(())
}

/// An interface's state as the operating system reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Up,
    /// Administratively down (`ip link set X down`).
    Down,
    /// Up, but without a link: cable pulled, mirror port disabled, veth peer
    /// down.
    NoCarrier,
    /// No longer listed: removed.
    Gone,
}

/// The current state of each named interface, in order.
///
/// Libpcap keeps reading an interface that went down without any error (it
/// just sees no packets), so a sensor that must notice a dead mirror port
/// asks the OS instead.
pub fn link_states(names: &[String]) -> Result<Vec<LinkState>, LiveError> {
    let devices = pcap::Device::list().map_err(|e| LiveError::ListInterfaces(pcap_message(&e)))?;
    Ok(names
        .iter()
        .map(|name| match devices.iter().find(|d| &d.name == name) {
            None => LinkState::Gone,
            Some(d) if !d.flags.is_up() => LinkState::Down,
            Some(d) if !d.flags.is_running() => LinkState::NoCarrier,
            Some(_) => LinkState::Up,
        })
        .collect())
}

/// One opened interface, not yet capturing.
pub struct LiveSource {
    name: String,
    link: LinkType,
    link_name: String,
    cap: pcap::Capture<pcap::Active>,
}

impl LiveSource {
    /// Opens `name` for capture and applies the filter.
    pub fn open(name: &str, opts: &LiveOptions) -> Result<LiveSource, LiveError> {
        let snaplen = opts.snaplen.min(MAX_SNAPLEN) as i32;
        let mut inactive = pcap::Capture::from_device(name)
            .map_err(|e| open_error(name, &e))?
            .promisc(opts.promisc)
            .snaplen(snaplen)
            .timeout(READ_TIMEOUT_MS)
            // Without immediate mode libpcap waits for a block of its ring
            // buffer to fill (or the timeout) before handing packets over,
            // which would delay a detection on a quiet link.
            .immediate_mode(true);
        if let Some(size) = opts.buffer_size {
            inactive = inactive.buffer_size(size.min(i32::MAX as u32) as i32);
        }
        let mut cap = inactive.open().map_err(|e| open_error(name, &e))?;

        if let Some(filter) = &opts.bpf {
            cap.filter(filter, true).map_err(|e| LiveError::BadFilter {
                name: name.to_string(),
                filter: filter.clone(),
                message: pcap_message(&e),
            })?;
        }

        let dl = cap.get_datalink();
        let link_name = dl
            .get_name()
            .unwrap_or_else(|_| format!("LINKTYPE {}", dl.0));
        Ok(LiveSource {
            name: name.to_string(),
            link: LinkType(dl.0),
            link_name,
            cap,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// libpcap's name for the link type (`EN10MB`, `LINUX_SLL2`, ...).
    pub fn link_name(&self) -> &str {
        &self.link_name
    }
}

/// libpcap reports why `pcap_activate` failed only as text (the pcap crate
/// drops the status code), so the few failures a user can fix are told apart
/// by the wording libpcap uses for them on Linux.
fn open_error(name: &str, e: &pcap::Error) -> LiveError {
    let message = pcap_message(e);
    let lower = message.to_ascii_lowercase();
    let name = name.to_string();
    if lower.contains("permission") || lower.contains("operation not permitted") {
        LiveError::PermissionDenied { name }
    } else if lower.contains("no such device") {
        LiveError::NoSuchInterface {
            name,
            available: "see `ip link`".to_string(),
        }
    } else if lower.contains("not up") || lower.contains("network is down") {
        LiveError::InterfaceDown { name }
    } else {
        LiveError::Open { name, message }
    }
}

/// The text of a pcap error without the crate's "libpcap error: " prefix,
/// which would repeat what the surrounding message already says.
fn pcap_message(e: &pcap::Error) -> String {
    match e {
        pcap::Error::PcapError(s) if !s.is_empty() => s.clone(),
        other => other.to_string(),
    }
}

/// One captured packet, owned, on its way to the engine.
#[derive(Debug)]
pub struct LivePacket {
    /// Index of the interface in the order given to [`LiveCapture::start`].
    pub iface: usize,
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: Vec<u8>,
    pub wire_len: u32,
}

/// What the capture threads send to the consumer.
#[derive(Debug)]
pub enum CaptureMsg {
    Packet(LivePacket),
    /// The interface's thread stopped: `error` says why when it was not asked
    /// to (the interface went away or went down).
    Ended {
        iface: usize,
        error: Option<String>,
    },
}

/// Counters one capture thread shares with the consumer.
#[derive(Debug, Default)]
struct Shared {
    /// Packets handed to the queue.
    queued: AtomicU64,
    /// Packets dropped because the queue was full (by packets or by bytes).
    queue_dropped: AtomicU64,
    /// libpcap's counters, as of the last refresh, widened to 64 bits.
    pcap_received: AtomicU64,
    pcap_dropped: AtomicU64,
    pcap_if_dropped: AtomicU64,
    ended: AtomicBool,
}

/// A snapshot of one interface's counters.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InterfaceStats {
    pub name: String,
    /// Packets libpcap received (those that passed the BPF filter). On
    /// Linux this includes the ones the kernel then dropped.
    pub received: u64,
    /// Packets the kernel dropped because its buffer was full.
    pub kernel_dropped: u64,
    /// Packets the interface or its driver dropped.
    pub if_dropped: u64,
    /// Packets handed to the engine's queue.
    pub queued: u64,
    /// Packets dropped because the engine's queue was full.
    pub queue_dropped: u64,
    /// False once the interface's capture thread has stopped.
    pub running: bool,
}

/// The byte side of the queue's bound. Capture threads reserve a packet's
/// length before sending it; the consumer releases it when it takes the
/// packet out.
#[derive(Debug, Default)]
struct ByteBudget {
    used: AtomicUsize,
}

impl ByteBudget {
    fn try_reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= QUEUE_BYTES)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Running capture threads and the receiving end of their queue.
pub struct LiveCapture {
    rx: mpsc::Receiver<CaptureMsg>,
    names: Vec<String>,
    shared: Vec<Arc<Shared>>,
    threads: Vec<JoinHandle<()>>,
    /// One per thread: interrupts its blocked read (see [`READ_TIMEOUT_MS`]).
    wakers: Vec<pcap::BreakLoop>,
    stop: Arc<AtomicBool>,
    budget: Arc<ByteBudget>,
}

impl LiveCapture {
    /// Starts one capture thread per source.
    pub fn start(sources: Vec<LiveSource>) -> Result<LiveCapture, LiveError> {
        let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
        let stop = Arc::new(AtomicBool::new(false));
        let budget = Arc::new(ByteBudget::default());
        let mut live = LiveCapture {
            rx,
            names: sources.iter().map(|s| s.name.clone()).collect(),
            shared: Vec::new(),
            threads: Vec::new(),
            wakers: Vec::new(),
            stop: stop.clone(),
            budget: budget.clone(),
        };
        for (iface, mut source) in sources.into_iter().enumerate() {
            live.wakers.push(source.cap.breakloop_handle());
            let shared = Arc::new(Shared::default());
            live.shared.push(shared.clone());
            let worker = Worker {
                iface,
                source,
                tx: tx.clone(),
                shared,
                stop: stop.clone(),
                budget: budget.clone(),
                last_pcap: [0; 3],
            };
            let name = live.names[iface].clone();
            let handle = std::thread::Builder::new()
                .name(format!("capture {name}"))
                .spawn(move || worker.run())
                .map_err(|e| LiveError::Thread {
                    name,
                    message: e.to_string(),
                });
            match handle {
                Ok(h) => live.threads.push(h),
                Err(e) => {
                    live.shutdown();
                    return Err(e);
                }
            }
        }
        Ok(live)
    }

    /// Interface names, in the order of [`LivePacket::iface`].
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Waits for the next messages and moves up to `limit` of them into
    /// `out`. Returns 0 only when every capture thread has ended and the
    /// queue is empty.
    pub async fn recv_batch(&mut self, out: &mut Vec<CaptureMsg>, limit: usize) -> usize {
        let start = out.len();
        let n = self.rx.recv_many(out, limit).await;
        self.release(&out[start..]);
        n
    }

    /// Takes what is queued without waiting (used after [`stop`](Self::stop)
    /// to finish the packets already captured).
    pub fn try_recv_batch(&mut self, out: &mut Vec<CaptureMsg>, limit: usize) -> usize {
        let start = out.len();
        while out.len() - start < limit {
            match self.rx.try_recv() {
                Ok(msg) => out.push(msg),
                Err(_) => break,
            }
        }
        self.release(&out[start..]);
        out.len() - start
    }

    fn release(&self, msgs: &[CaptureMsg]) {
        let bytes: usize = msgs
            .iter()
            .map(|m| match m {
                CaptureMsg::Packet(p) => p.data.len(),
                CaptureMsg::Ended { .. } => 0,
            })
            .sum();
        self.budget.release(bytes);
    }

    /// Asks every capture thread to copy libpcap's counters into the shared
    /// statistics now, even when its interface is quiet. The refresh happens
    /// on the threads, a moment later.
    pub fn request_stats(&self) {
        for w in &self.wakers {
            w.breakloop();
        }
    }

    /// Counters of every interface, as of the threads' last refresh: at most
    /// a second old while packets flow, and current shortly after
    /// [`request_stats`](Self::request_stats).
    pub fn stats(&self) -> Vec<InterfaceStats> {
        self.names
            .iter()
            .zip(&self.shared)
            .map(|(name, s)| InterfaceStats {
                name: name.clone(),
                received: s.pcap_received.load(Ordering::Relaxed),
                kernel_dropped: s.pcap_dropped.load(Ordering::Relaxed),
                if_dropped: s.pcap_if_dropped.load(Ordering::Relaxed),
                queued: s.queued.load(Ordering::Relaxed),
                queue_dropped: s.queue_dropped.load(Ordering::Relaxed),
                running: !s.ended.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Stops every capture thread and waits for them. Packets already queued
    /// stay readable with [`try_recv_batch`](Self::try_recv_batch), and the
    /// counters are final afterwards.
    pub fn stop(&mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.wakers {
            w.breakloop();
        }
        // Closing first means no thread can be left waiting for room in a
        // full queue (see `Worker::run`); what is queued stays readable.
        self.rx.close();
        for handle in self.threads.drain(..) {
            // A capture thread that panicked has nothing more to report; its
            // counters keep their last values.
            let _ = handle.join();
        }
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The state one capture thread owns.
struct Worker {
    iface: usize,
    source: LiveSource,
    tx: mpsc::Sender<CaptureMsg>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    budget: Arc<ByteBudget>,
    /// libpcap's counters (received, dropped, interface-dropped) at the last
    /// refresh.
    last_pcap: [u32; 3],
}

impl Worker {
    fn run(mut self) {
        let mut last_refresh = Instant::now();
        let error = loop {
            if self.stop.load(Ordering::Relaxed) {
                break None;
            }
            match self.source.cap.next_packet() {
                Ok(packet) => hand_over(
                    &packet,
                    self.iface,
                    self.source.link,
                    &self.tx,
                    &self.shared,
                    &self.budget,
                ),
                Err(pcap::Error::TimeoutExpired) => {}
                // The pcap crate reports `PCAP_ERROR_BREAK`, the answer to a
                // `pcap_breakloop` wake-up, under this name: either a stop
                // (seen at the top of the loop) or a request for counters.
                Err(pcap::Error::NoMorePackets) => {
                    self.refresh_stats();
                    last_refresh = Instant::now();
                    continue;
                }
                Err(e) => break Some(pcap_message(&e)),
            }
            if last_refresh.elapsed() >= STATS_REFRESH {
                self.refresh_stats();
                last_refresh = Instant::now();
            }
        };
        self.refresh_stats();
        self.shared.ended.store(true, Ordering::Relaxed);
        if let Some(e) = &error {
            tracing::debug!(interface = %self.source.name, error = %e, "capture stopped");
        }

        // The end message must not be lost to a full queue, so this one send
        // waits for room. It cannot hang: once the consumer closes or drops
        // the receiver, the send fails at once.
        let _ = self.tx.blocking_send(CaptureMsg::Ended {
            iface: self.iface,
            error,
        });
    }

    /// Adds what libpcap counted since the last refresh to the shared
    /// 64-bit totals.
    ///
    /// Libpcap's counters are 32 bits wide and wrap after about 4.3 billion
    /// packets, half a day at 100 000 packets/s, while a sensor runs for
    /// weeks. Adding wrapping differences keeps the totals right as long as
    /// fewer than 2^32 packets pass between two refreshes, and refreshes
    /// happen every second while packets flow.
    fn refresh_stats(&mut self) {
        // Counters that cannot be read (rare: a vanished interface) keep
        // their last values rather than dropping to zero.
        let Ok(st) = self.source.cap.stats() else {
            return;
        };
        let now = [st.received, st.dropped, st.if_dropped];
        let totals = [
            &self.shared.pcap_received,
            &self.shared.pcap_dropped,
            &self.shared.pcap_if_dropped,
        ];
        for ((total, now), last) in totals.into_iter().zip(now).zip(&mut self.last_pcap) {
            total.fetch_add(u64::from(now.wrapping_sub(*last)), Ordering::Relaxed);
            *last = now;
        }
    }
}

/// Copies one packet into the queue, or counts it as dropped when the queue
/// is full. Never waits: see the module documentation.
fn hand_over(
    packet: &pcap::Packet<'_>,
    iface: usize,
    link: LinkType,
    tx: &mpsc::Sender<CaptureMsg>,
    shared: &Shared,
    budget: &ByteBudget,
) {
    let len = packet.data.len();
    if !budget.try_reserve(len) {
        shared.queue_dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // `time_t` and `suseconds_t` are 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    let ts = Timestamp::from_secs_micros(
        packet.header.ts.tv_sec as i64,
        packet.header.ts.tv_usec as i64,
    );
    let msg = CaptureMsg::Packet(LivePacket {
        iface,
        ts,
        link,
        data: packet.data.to_vec(),
        wire_len: packet.header.len,
    });
    match tx.try_send(msg) {
        Ok(()) => {
            shared.queued.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            budget.release(len);
            // A closed queue means the monitor is stopping: the packet
            // came after the end of the run and is not a loss.
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                shared.queue_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_budget_refuses_what_would_pass_the_cap_and_frees_on_release() {
        let b = ByteBudget::default();
        assert!(b.try_reserve(QUEUE_BYTES - 10));
        assert!(!b.try_reserve(11));
        assert!(b.try_reserve(10));
        assert!(!b.try_reserve(1));
        b.release(100);
        assert!(b.try_reserve(100));
    }

    fn header(len: u32) -> pcap::PacketHeader {
        pcap::PacketHeader {
            ts: libc::timeval {
                tv_sec: 1_700_000_000,
                tv_usec: 5,
            },
            caplen: len,
            len,
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_packets_instead_of_waiting() {
        let (tx, mut rx) = mpsc::channel(2);
        let (shared, budget) = (Shared::default(), ByteBudget::default());
        let data = vec![0u8; 60];
        let hdr = header(60);
        for _ in 0..5 {
            hand_over(
                &pcap::Packet::new(&hdr, &data),
                0,
                LinkType(1),
                &tx,
                &shared,
                &budget,
            );
        }
        assert_eq!(shared.queued.load(Ordering::Relaxed), 2);
        assert_eq!(shared.queue_dropped.load(Ordering::Relaxed), 3);
        // Only the queued packets hold budget.
        assert_eq!(budget.used.load(Ordering::Relaxed), 120);
        let Ok(CaptureMsg::Packet(p)) = rx.try_recv() else {
            panic!("a packet is queued")
        };
        assert_eq!(
            (p.ts, p.data.len(), p.wire_len),
            (Timestamp(1_700_000_000_000_005), 60, 60)
        );
    }

    #[test]
    fn a_packet_past_the_byte_cap_is_dropped_and_counted() {
        let (tx, _rx) = mpsc::channel(QUEUE_PACKETS);
        let (shared, budget) = (Shared::default(), ByteBudget::default());
        assert!(budget.try_reserve(QUEUE_BYTES - 100));
        let data = vec![0u8; 101];
        let hdr = header(101);
        hand_over(
            &pcap::Packet::new(&hdr, &data),
            0,
            LinkType(1),
            &tx,
            &shared,
            &budget,
        );
        assert_eq!(shared.queued.load(Ordering::Relaxed), 0);
        assert_eq!(shared.queue_dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_missing_interface_is_named_in_the_error() {
        let err = check_interfaces(&["sg-no-such-if0".to_string()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no such interface: sg-no-such-if0"), "{msg}");
    }

    #[test]
    fn permission_wording_from_libpcap_becomes_a_permission_error() {
        let e = pcap::Error::PcapError(
            "You don't have permission to perform this capture on that device \
             (socket: Operation not permitted)"
                .into(),
        );
        let err = open_error("eth0", &e);
        assert!(matches!(err, LiveError::PermissionDenied { .. }));
        assert!(err.to_string().contains("CAP_NET_RAW"));
    }
}
