//! A harness for tests that need a small network of their own: Linux network
//! namespaces joined by veth pairs, processes started inside them, and their
//! output read line by line with a deadline on every wait.
//!
//! Everything it creates is removed when the owning value is dropped, also
//! when the test fails or panics: processes are killed first (they are
//! declared after the namespaces in a test, so they drop first), then the
//! namespaces are deleted, which deletes their interfaces with them.
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), as CI runs it.

#![allow(dead_code)] // each test file uses the part of the harness it needs

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Fails the test, with what to do, when it cannot create namespaces. Set
/// `STRATUMGUARD_SKIP_NETNS=1` to skip these tests knowingly instead.
pub fn require_root() -> bool {
    if std::env::var_os("STRATUMGUARD_SKIP_NETNS").is_some() {
        eprintln!("skipped: STRATUMGUARD_SKIP_NETNS is set");
        return false;
    }
    let uid = Command::new("id").arg("-u").output().expect("run id -u");
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_string();
    assert_eq!(
        uid, "0",
        "this test creates network namespaces and needs root; run it as root \
         (as CI does) or set STRATUMGUARD_SKIP_NETNS=1 to skip it"
    );
    true
}

/// The built binary under test and the examples beside it.
pub fn stratumguard() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stratumguard"))
}

/// `cargo test` builds the examples into `target/<profile>/examples/`, next
/// to the directory of the binary under test.
pub fn example(name: &str) -> PathBuf {
    let bin = stratumguard();
    let path = bin
        .parent()
        .expect("binary has a directory")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "example {name} not built at {}",
        path.display()
    );
    path
}

/// Runs a setup command, failing the test with its stderr when it fails.
pub fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e}");
        });
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Short names that do not collide between tests running at once (one
/// process, several threads) or with a previous run that was killed.
pub fn unique_tag() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Netns {
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["netns", "exec", &self.name, "ip"];
        full.extend_from_slice(args);
        sh("ip", &full);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
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

/// Two namespaces, a "miner" host and a "pool" host, joined by a veth pair
/// with an IPv4 and an IPv6 subnet of their own.
pub struct Link {
    pub miner: Netns,
    pub pool: Netns,
    /// The veth end inside the miner namespace, where the sensor listens.
    pub miner_if: String,
    pub pool_if: String,
    pub miner_ip: String,
    pub pool_ip: String,
    /// The pool host's IPv6 address (the miner's is `...::1`).
    pub pool_ip6: String,
}

impl Link {
    /// `subnet` is the third octet of 10.231.X.0/24; namespaces are private,
    /// so it only has to differ from nothing, but distinct values keep the
    /// captures of different tests easy to tell apart.
    pub fn new(subnet: u8) -> Link {
        let tag = unique_tag();
        let miner = Netns::new(format!("sg-miner-{tag}"));
        let pool = Netns::new(format!("sg-pool-{tag}"));
        let miner_if = format!("sgm{tag}");
        let pool_if = format!("sgp{tag}");
        sh(
            "ip",
            &[
                "link",
                "add",
                &miner_if,
                "netns",
                &miner.name,
                "type",
                "veth",
                "peer",
                "name",
                &pool_if,
                "netns",
                &pool.name,
            ],
        );
        let miner_ip = format!("10.231.{subnet}.1");
        let pool_ip = format!("10.231.{subnet}.2");
        miner.ip(&["addr", "add", &format!("{miner_ip}/24"), "dev", &miner_if]);
        pool.ip(&["addr", "add", &format!("{pool_ip}/24"), "dev", &pool_if]);
        // `nodad`: the addresses are usable at once instead of after
        // duplicate address detection, which would only slow the test.
        let (miner_ip6, pool_ip6) = (format!("fd31:{subnet}::1"), format!("fd31:{subnet}::2"));
        miner.ip(&[
            "addr",
            "add",
            &format!("{miner_ip6}/64"),
            "dev",
            &miner_if,
            "nodad",
        ]);
        pool.ip(&[
            "addr",
            "add",
            &format!("{pool_ip6}/64"),
            "dev",
            &pool_if,
            "nodad",
        ]);
        miner.ip(&["link", "set", &miner_if, "up"]);
        pool.ip(&["link", "set", &pool_if, "up"]);
        Link {
            miner,
            pool,
            miner_if,
            pool_if,
            miner_ip,
            pool_ip,
            pool_ip6,
        }
    }
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
