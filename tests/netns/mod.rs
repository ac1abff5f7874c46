//! One harness for the tests that need a small network of their own: two
//! Linux network namespaces, a client and a server, joined by a veth pair;
//! processes started inside them with their output read line by line; and a
//! TCP connect check run from the client side. Every wait has a deadline.
//!
//! The server namespace carries two addresses per family, a "pool" and an
//! "other" server, so a test can show that blocking one leaves its neighbour
//! alone. stratumguard runs inside the client namespace, so its captures see
//! the veth and its firewall changes land there and nowhere else.
//!
//! Everything made here is removed when the owning value is dropped, also
//! when the test fails or panics: a [`Link`] kills the processes it started,
//! then deletes both namespaces, which deletes the veth pair and every
//! firewall table, chain, rule and set made inside them. A [`Proc`] held by
//! the test is killed when it drops; declared after the link, it drops first.
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and python3, as CI has.

#![allow(
    dead_code,
    reason = "each test file uses the part of the harness it needs"
)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const CLIENT4: &str = "10.77.0.1";
pub const POOL4: &str = "10.77.0.2";
pub const OTHER4: &str = "10.77.0.3";
pub const CLIENT6: &str = "fd77::1";
pub const POOL6: &str = "fd77::2";
pub const OTHER6: &str = "fd77::3";

/// The port of the `ok` servers that [`Link::start_ok_server`] starts by
/// default.
pub const OK_PORT: u16 = 3333;

/// A port where nothing listens in the server namespace.
const CLOSED_PORT: u16 = 9;

/// Bound on setup commands (`ip`, `nft`, ...) and on one stratumguard run
/// that is not a monitor; each takes milliseconds when things are well.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a process starting up or a peer's whole exchange.
pub const STEP: Duration = Duration::from_secs(10);
/// How long a connect check waits for the handshake. A dropped SYN is
/// retried by the kernel, so a blocked address costs all of it; the veth
/// answers in well under a millisecond otherwise.
pub const CONNECT_TIMEOUT_SECS: u32 = 1;

/// Fails the test, with what to do, when it cannot create namespaces. Set
/// `STRATUMGUARD_SKIP_NETNS=1` to skip these tests knowingly instead.
pub fn require_root() -> bool {
    if std::env::var_os("STRATUMGUARD_SKIP_NETNS").is_some() {
        eprintln!("skipped: STRATUMGUARD_SKIP_NETNS is set");
        return false;
    }
    let uid = sh("id", &["-u"]);
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test creates network namespaces and needs root; run it as root \
         (as CI does) or set STRATUMGUARD_SKIP_NETNS=1 to skip it"
    );
    true
}

/// The binary under test.
pub fn stratumguard() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stratumguard"))
}

/// A test peer from `examples/`, built as a plain program.
///
/// Cargo makes runnable examples for `cargo test` and `cargo build
/// --examples`, but not for `cargo test --all-targets` or `--test NAME`
/// (those build examples as test harnesses, or not at all), and a test cannot
/// run cargo itself while cargo runs it. So a missing or outdated peer fails
/// the test with the command that builds it; `scripts/test.sh` runs that
/// command first.
pub fn example(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = stratumguard()
        .parent()
        .expect("the binary has a directory")
        .join("examples")
        .join(name);
    let built = std::fs::metadata(&path).and_then(|m| m.modified());
    let Ok(built) = built else {
        panic!(
            "test peer {} is not built: run `cargo build --examples` first \
             (scripts/test.sh does)",
            path.display()
        );
    };
    let source = root.join("examples").join(format!("{name}.rs"));
    let changed = std::fs::metadata(&source).and_then(|m| m.modified());
    assert!(
        changed.is_ok_and(|c| c <= built),
        "test peer {} is older than {}: run `cargo build --examples` again",
        path.display(),
        source.display()
    );
    path
}

/// Runs a command that must succeed and returns its output; fails the test
/// with its stderr otherwise.
pub fn sh(program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let label = format!("{program} {}", args.join(" "));
    let out = run_bounded(&label, cmd, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "{label} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Short names that do not collide between tests running at once (threads
/// of one test binary, and other test binaries by their pid).
pub fn unique_tag() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}x{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

/// Opens a TCP connection and, when there is a payload, sends it and reads
/// the reply until the server closes or a second passes. Prints `connected`
/// (and the reply) or `failed: REASON`.
const CONNECT_PY: &str = r#"
import socket, sys
addr, port, timeout, payload = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
try:
    s = socket.create_connection((addr, port), timeout=timeout)
except Exception as e:
    print("failed: %s" % e)
    sys.exit(0)
print("connected", flush=True)
if payload:
    s.sendall(payload.encode())
    reply = b""
    try:
        while len(reply) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    except Exception:
        pass
    print(reply.decode(errors="replace"))
s.close()
"#;

impl Netns {
    /// `sg-PREFIX-TAG`, created with its loopback up.
    pub fn new(prefix: &str) -> Netns {
        let name = format!("sg-{prefix}-{}", unique_tag());
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        sh("ip", &full);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program.as_ref());
        c
    }

    /// Runs a tool inside the namespace; it must succeed. Returns its stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        String::from_utf8_lossy(&sh("ip", &full).stdout).into_owned()
    }

    /// Opens a new TCP connection from this namespace. `Ok` with the reply
    /// to `payload` (empty when there is none) when the handshake completed,
    /// `Err` with the reason when it did not.
    pub fn talk(&self, addr: &str, port: u16, payload: &str) -> Result<String, String> {
        let mut cmd = self.command("python3");
        cmd.args(["-c", CONNECT_PY, addr, &port.to_string()])
            .arg(CONNECT_TIMEOUT_SECS.to_string())
            .arg(payload);
        let out = run_bounded(&format!("connect to {addr} {port}"), cmd, STEP);
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.split_once('\n') {
            Some(("connected", reply)) => Ok(reply.to_string()),
            None if stdout == "connected" => Ok(String::new()),
            _ => Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))),
        }
    }

    /// Whether a new TCP connection from this namespace completes its
    /// handshake.
    pub fn connects(&self, addr: &str, port: u16) -> bool {
        self.talk(addr, port, "").is_ok()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Not `sh`: a panic inside drop during a failing test would abort.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A server that speaks no mining protocol at all, on every address of its
/// namespace, on each port given. `greet`: says `ok` and hangs up at once.
/// `read`: reads one line (for two seconds at most) and hangs up without a
/// word.
const PLAIN_SERVER_PY: &str = r#"
import socket, sys, threading
def handle(c, mode):
    try:
        if mode == "greet":
            c.sendall(b"ok\n")
        else:
            c.settimeout(2)
            data = b""
            while b"\n" not in data and len(data) < 65536:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        pass
    finally:
        c.close()
def serve(port, mode):
    s = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c, mode), daemon=True).start()
mode = sys.argv[1]
for p in sys.argv[2:]:
    threading.Thread(target=serve, args=(int(p), mode), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"#;

/// A client and a server namespace joined by a veth pair, with the
/// addresses of the constants above, a scratch directory for state files,
/// and the background servers started in it.
pub struct Link {
    /// Background processes, killed (in `drop`) before the namespaces go.
    procs: Vec<Proc>,
    pub client: Netns,
    pub server: Netns,
    /// The veth end inside the client namespace, where a sensor listens.
    pub client_if: String,
    pub server_if: String,
    dir: tempfile::TempDir,
}

impl Link {
    /// `prefix` names the namespaces after the test (a few letters).
    pub fn new(prefix: &str) -> Link {
        let client = Netns::new(&format!("{prefix}-c"));
        let server = Netns::new(&format!("{prefix}-s"));
        // Interface names have at most 15 characters.
        let tag = unique_tag();
        let (client_if, server_if) = (format!("sgc{tag}"), format!("sgs{tag}"));
        sh(
            "ip",
            &[
                "link",
                "add",
                &client_if,
                "netns",
                &client.name,
                "type",
                "veth",
                "peer",
                "name",
                &server_if,
                "netns",
                &server.name,
            ],
        );
        let link = Link {
            procs: Vec::new(),
            client,
            server,
            client_if,
            server_if,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for a in [CLIENT4, CLIENT6] {
            link.add_address(&link.client, &link.client_if, a);
        }
        for a in [POOL4, OTHER4, POOL6, OTHER6] {
            link.add_address(&link.server, &link.server_if, a);
        }
        link.client.ip(&["link", "set", &link.client_if, "up"]);
        link.server.ip(&["link", "set", &link.server_if, "up"]);
        link.wait_until_up();
        link
    }

    /// Waits until every server address answers the client. Just after set
    /// up, the first packets to a fresh neighbour are sometimes lost, which
    /// costs a connection its first SYN (a one-second retry) and would make
    /// the first connect check of a test lie. A connection to a port where
    /// nothing listens is refused at once when the path works.
    fn wait_until_up(&self) {
        let start = Instant::now();
        for ip in [POOL4, OTHER4, POOL6, OTHER6] {
            loop {
                match self.client.talk(ip, CLOSED_PORT, "") {
                    Err(e) if e.contains("refused") => break,
                    other => assert!(
                        start.elapsed() < STEP,
                        "the link never came up: {ip} port {CLOSED_PORT}: {other:?}"
                    ),
                }
            }
        }
    }

    fn add_address(&self, ns: &Netns, dev: &str, addr: &str) {
        let net = if addr.contains(':') {
            format!("{addr}/64")
        } else {
            format!("{addr}/24")
        };
        let mut args = vec!["addr", "add", &net, "dev", dev];
        // `nodad`: usable at once instead of after duplicate address
        // detection, which would only slow the test.
        if addr.contains(':') {
            args.push("nodad");
        }
        ns.ip(&args);
    }

    /// Gives the server one more address outside the link's subnets (such
    /// as a pool address from a capture) and routes it from the client.
    pub fn add_server_host(&self, addr: &str) {
        let (host, v) = if addr.contains(':') {
            (format!("{addr}/128"), "-6")
        } else {
            (format!("{addr}/32"), "-4")
        };
        let mut args = vec!["addr", "add", &host, "dev", &self.server_if];
        if addr.contains(':') {
            args.push("nodad");
        }
        self.server.ip(&args);
        self.client
            .ip(&[v, "route", "add", &host, "dev", &self.client_if]);
    }

    /// Starts a server answering `ok` on `ports` of every server address.
    pub fn start_ok_server(&mut self, ports: &[u16]) {
        self.start_plain_server("greet", ports);
    }

    /// Starts a server on `ports` of every server address that reads a line
    /// and hangs up without a word.
    pub fn start_silent_server(&mut self, ports: &[u16]) {
        self.start_plain_server("read", ports);
    }

    /// Starts [`PLAIN_SERVER_PY`] and waits until the pool addresses answer
    /// on the first port.
    fn start_plain_server(&mut self, mode: &str, ports: &[u16]) {
        let mut cmd = self.server.command("python3");
        cmd.args(["-c", PLAIN_SERVER_PY, mode]);
        cmd.args(ports.iter().map(u16::to_string));
        let mut p = Proc::spawn(&format!("{mode} server"), cmd);
        let ready = p.stdout().wait_for(STEP, |l| l == "listening");
        assert!(
            ready.is_some(),
            "{mode} server did not start\n{}",
            p.transcript()
        );
        self.procs.push(p);
        let start = Instant::now();
        while !(self.connects(POOL4, ports[0]) && self.connects(POOL6, ports[0])) {
            assert!(start.elapsed() < STEP, "the {mode} server never answered");
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `stratum_pool` in `mode` (stratum, http, jsonrpc) on `addr` in
    /// the server namespace, and waits until it listens.
    pub fn start_peer_server(&self, mode: &str, addr: &str) -> Proc {
        let mut cmd = self.server.command(example("stratum_pool"));
        cmd.args(["--listen", addr, "--mode", mode])
            .args(["--run-secs", "90"]);
        let mut p = Proc::spawn(&format!("{mode} server on {addr}"), cmd);
        let ready = p.stdout().wait_for(STEP, |l| l.contains("listening on"));
        assert!(
            ready.is_some(),
            "{mode} server did not start\n{}",
            p.transcript()
        );
        p
    }

    /// `stratum_miner` in `mode` against `addr`, from the client namespace.
    pub fn peer_client(&self, mode: &str, addr: &str) -> Command {
        let mut cmd = self.client.command(example("stratum_miner"));
        cmd.args(["--connect", addr, "--mode", mode]);
        cmd
    }

    /// Runs one client exchange to completion and checks that it really
    /// took place, so that "no detection" cannot come from "no traffic".
    pub fn exchange(&self, mode: &str, addr: &str) {
        let cmd = self.peer_client(mode, addr);
        let out = run_bounded(&format!("{mode} client"), cmd, STEP);
        assert!(
            out.status.success(),
            "{mode} exchange with {addr} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new TCP connection from the client namespace completes.
    pub fn connects(&self, addr: &str, port: u16) -> bool {
        self.client.connects(addr, port)
    }

    /// Waits (bounded) until a new connection to `addr` fails, as it does
    /// once a firewall update lands; false when it never did.
    pub fn becomes_unreachable(&self, addr: &str, port: u16, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if !self.connects(addr, port) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded) until a new connection to `addr` succeeds again.
    pub fn becomes_reachable(&self, addr: &str, port: u16, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.connects(addr, port) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The blocklist state file that [`Link::sg`] passes.
    pub fn state(&self) -> PathBuf {
        self.path("state.json")
    }

    /// Runs stratumguard inside the client namespace with the link's state
    /// file.
    pub fn sg(&self, args: &[&str]) -> Output {
        let state = self.state();
        let mut all = args.to_vec();
        all.extend(["--state", state.to_str().expect("utf-8 temp path")]);
        self.sg_raw(&all)
    }

    /// Runs stratumguard inside the client namespace, arguments as given.
    pub fn sg_raw(&self, args: &[&str]) -> Output {
        let mut cmd = self.client.command(stratumguard());
        cmd.args(args);
        run_bounded("stratumguard", cmd, COMMAND_TIMEOUT)
    }

    /// Runs stratumguard with the state file and insists it succeeded;
    /// returns its stdout.
    pub fn sg_ok(&self, args: &[&str]) -> String {
        let out = self.sg(args);
        assert!(
            out.status.success(),
            "stratumguard {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Processes first: a namespace with a process inside outlives its
        // name, and its veth with it.
        self.procs.clear();
    }
}

/// Starts `stratumguard monitor --json` in `ns` on `interfaces`, and waits
/// until it captures on each.
pub fn start_monitor(ns: &Netns, interfaces: &[&str], extra: &[&str]) -> Proc {
    let mut cmd = ns.command(stratumguard());
    cmd.arg("monitor");
    for i in interfaces {
        cmd.args(["-i", i]);
    }
    // --duration is only a backstop: each test stops the monitor itself.
    cmd.args(["--json", "--stats-interval", "1", "--duration", "90"])
        .args(extra);
    let mut p = Proc::spawn("monitor", cmd);
    for i in interfaces {
        p.expect_stderr(&format!("monitoring {i} "), STEP);
    }
    p
}

pub fn json(line: &str) -> Option<Value> {
    serde_json::from_str(line).ok()
}

pub fn is_pool_event(v: &Value) -> bool {
    v["event_type"] == "mining_pool"
}

pub fn is_stats(v: &Value) -> bool {
    v["event_type"] == "stats"
}

/// A started process whose stdout and stderr are read line by line on
/// threads. Killed on drop if still running.
pub struct Proc {
    pub label: String,
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

impl Proc {
    pub fn spawn(label: &str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        let stdout = Lines::read(child.stdout.take().expect("piped stdout"));
        let stderr = Lines::read(child.stderr.take().expect("piped stderr"));
        Proc {
            label: label.to_string(),
            child,
            stdout,
            stderr,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&mut self) -> &mut Lines {
        &mut self.stdout
    }

    pub fn stderr(&mut self) -> &mut Lines {
        &mut self.stderr
    }

    /// Waits at most `within` for a stderr line containing `needle`; fails
    /// the test with everything the process said when none comes.
    pub fn expect_stderr(&mut self, needle: &str, within: Duration) -> String {
        match self.stderr.wait_for(within, |l| l.contains(needle)) {
            Some(line) => line,
            None => {
                let transcript = self.transcript();
                panic!(
                    "{} did not say {needle:?} within {within:?}\n{transcript}",
                    self.label
                )
            }
        }
    }

    /// Sends a signal by name (`TERM`, `INT`) with kill(1).
    pub fn signal(&self, name: &str) {
        sh("kill", &[&format!("-{name}"), &self.id().to_string()]);
    }

    /// Waits for the process to exit, at most `timeout`; then reads the rest
    /// of its output. Panics (after killing it) when it does not exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.stdout.finish(Duration::from_secs(2));
                self.stderr.finish(Duration::from_secs(2));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    self.label,
                    self.stdout.all().join("\n"),
                    self.stderr.all().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything read so far, for failure messages.
    pub fn transcript(&mut self) -> String {
        self.stdout.drain_now();
        self.stderr.drain_now();
        format!(
            "--- {} stdout:\n{}\n--- {} stderr:\n{}",
            self.label,
            self.stdout.all().join("\n"),
            self.label,
            self.stderr.all().join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Lines of one output stream, collected as they arrive.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn read(stream: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits at most `timeout` for a line (among those already seen or still
    /// to come) that satisfies `pred`, and returns it.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = pred(&line);
                    self.seen.push(line.clone());
                    if hit {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    fn drain_now(&mut self) {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
    }

    /// Reads until the stream closes (the process has exited), at most
    /// `timeout`.
    fn finish(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
    }

    pub fn all(&self) -> &[String] {
        &self.seen
    }
}

/// Runs a command to completion with a deadline; kills it when it overruns.
/// Output lines are joined with `\n` and carry no trailing newline.
pub fn run_bounded(label: &str, cmd: Command, timeout: Duration) -> Output {
    let mut p = Proc::spawn(label, cmd);
    let status = p.wait(timeout);
    Output {
        status,
        stdout: p.stdout.all().join("\n").into_bytes(),
        stderr: p.stderr.all().join("\n").into_bytes(),
    }
}
