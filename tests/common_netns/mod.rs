//! A two-namespace lab for firewall tests: a client namespace and a server
//! namespace joined by a veth pair, with IPv4 and IPv6 on both ends. The
//! server namespace carries two addresses per family (a "pool" and an
//! "other" server) and a tiny TCP server answering `ok` on port 3333 on all
//! of them. Firewall changes are made by running the stratumguard binary
//! under `ip netns exec CLIENT`, so they land in the client namespace only.
//!
//! Dropping the lab kills the server and deletes both namespaces, which also
//! deletes the veth pair and every firewall object made inside them, even
//! when the test failed.
#![allow(dead_code)] // each test file uses a different part of the lab

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const PORT: u16 = 3333;
pub const CLIENT4: &str = "10.77.0.1";
pub const POOL4: &str = "10.77.0.2";
pub const OTHER4: &str = "10.77.0.3";
pub const CLIENT6: &str = "fd77::1";
pub const POOL6: &str = "fd77::2";
pub const OTHER6: &str = "fd77::3";

pub struct Lab {
    pub client: String,
    pub server: String,
    pub dir: tempfile::TempDir,
    server_proc: Option<Child>,
}

fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const SERVER_PY: &str = r#"
import socket
s = socket.create_server(("::", 3333), family=socket.AF_INET6, dualstack_ipv6=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall(b"ok\n")
    finally:
        c.close()
"#;

const CLIENT_PY: &str = r#"
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], 3333), timeout=1)
    print(s.recv(16).decode().strip())
except Exception as e:
    print("failed: %s" % e)
"#;

impl Lab {
    /// Builds the lab; `tag` keeps names apart between tests of one binary,
    /// the pid between test binaries running at once.
    pub fn new(tag: &str) -> Lab {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let client = format!("sg-{tag}-{pid}-{n}-c");
        let server = format!("sg-{tag}-{pid}-{n}-s");
        sh(&["ip", "netns", "add", &client]);
        // From here on, Drop cleans up whatever was made.
        let mut lab = Lab {
            client,
            server: server.clone(),
            dir: tempfile::tempdir().unwrap(),
            server_proc: None,
        };
        sh(&["ip", "netns", "add", &server]);
        // veth names are limited to 15 characters.
        let (vc, vs) = (
            format!("sgc{}x{n}", pid % 100_000),
            format!("sgs{}x{n}", pid % 100_000),
        );
        sh(&[
            "ip",
            "link",
            "add",
            &vc,
            "netns",
            &lab.client,
            "type",
            "veth",
            "peer",
            "name",
            &vs,
            "netns",
            &server,
        ]);
        for (ns, dev, addrs) in [
            (
                &lab.client,
                &vc,
                vec![format!("{CLIENT4}/24"), format!("{CLIENT6}/64")],
            ),
            (
                &server,
                &vs,
                vec![
                    format!("{POOL4}/24"),
                    format!("{OTHER4}/24"),
                    format!("{POOL6}/64"),
                    format!("{OTHER6}/64"),
                ],
            ),
        ] {
            for a in &addrs {
                let mut args = vec!["ip", "-n", ns, "addr", "add", a, "dev", dev];
                if a.contains(':') {
                    args.push("nodad");
                }
                sh(&args);
            }
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let child = Command::new("ip")
            .args(["netns", "exec", &server, "python3", "-c", SERVER_PY])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server");
        lab.server_proc = Some(child);

        // Wait until the server answers on both families.
        let start = Instant::now();
        while !(lab.connects(POOL4) && lab.connects(POOL6)) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "lab server never came up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        lab
    }

    /// Tries a new TCP connection from the client namespace; true when the
    /// server's `ok` came back. A dropped SYN is retried by the kernel, so a
    /// blocked address costs the whole one-second timeout; the veth answers
    /// in well under a millisecond otherwise.
    pub fn connects(&self, addr: &str) -> bool {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                "python3",
                "-c",
                CLIENT_PY,
                addr,
            ])
            .output()
            .expect("client");
        String::from_utf8_lossy(&out.stdout).trim() == "ok"
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    /// Runs stratumguard inside the client namespace with the lab's state file.
    pub fn sg(&self, args: &[&str]) -> Output {
        let state = self.state();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--state", state.to_str().unwrap()]);
        self.sg_raw(&all)
    }

    /// Runs stratumguard inside the client namespace, arguments as given.
    pub fn sg_raw(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                env!("CARGO_BIN_EXE_stratumguard"),
            ])
            .args(args)
            .output()
            .expect("stratumguard")
    }

    /// Runs stratumguard and insists it succeeded; returns its stdout.
    pub fn sg_ok(&self, args: &[&str]) -> String {
        let out = self.sg(args);
        assert!(
            out.status.success(),
            "stratumguard {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a tool inside the client namespace and returns its stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.client];
        all.extend(args);
        String::from_utf8_lossy(&sh(&all).stdout).into_owned()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.server_proc.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
