//! Helpers shared by the capture tests: finding captures, reading expected
//! verdicts, running `stratumguard analyze --json` and comparing results.

#![allow(
    dead_code,
    reason = "each test crate uses a different subset of these helpers"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One reported or expected pool: what the comparison looks at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Verdict {
    pub endpoint: SocketAddr,
    pub dialect: String,
    pub confidence: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\t{}\t{}",
            self.endpoint, self.dialect, self.confidence
        )
    }
}

/// Every `.pcap` and `.pcapng` file under `dir`, recursively, sorted.
pub fn captures_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries =
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            ) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `dir/NAME.pcap` -> `dir/NAME.expected.tsv`.
pub fn expected_path(capture: &Path) -> PathBuf {
    let stem = capture
        .file_stem()
        .expect("a capture has a file name")
        .to_string_lossy();
    capture.with_file_name(format!("{stem}.expected.tsv"))
}

/// Reads an expected-verdict file: `endpoint<TAB>dialect<TAB>confidence`
/// lines, `#` comments and blank lines ignored.
pub fn read_expected(path: &Path) -> BTreeSet<Verdict> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read expected verdicts {}: {e}", path.display()));
    let mut verdicts = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [endpoint, dialect, confidence] = fields[..] else {
            panic!(
                "{}:{}: expected 3 tab-separated fields, got {line:?}",
                path.display(),
                n + 1
            );
        };
        let endpoint = endpoint.parse().unwrap_or_else(|e| {
            panic!(
                "{}:{}: bad endpoint {endpoint:?}: {e}",
                path.display(),
                n + 1
            )
        });
        assert!(
            matches!(confidence, "confirmed" | "suspected"),
            "{}:{}: confidence must be confirmed or suspected, got {confidence:?}",
            path.display(),
            n + 1
        );
        let fresh = verdicts.insert(Verdict {
            endpoint,
            dialect: dialect.into(),
            confidence: confidence.into(),
        });
        assert!(fresh, "{}:{}: duplicate line", path.display(), n + 1);
    }
    verdicts
}

/// What one run of `stratumguard analyze --json` produced.
pub struct Analysis {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Pool records, in output order (duplicates kept so they can be caught).
    pub pools: Vec<Verdict>,
    /// `{"event_type":"error",...}` objects.
    pub errors: Vec<Value>,
    /// Lines of stdout that are not JSON objects.
    pub garbage: Vec<String>,
}

impl Analysis {
    /// The reported pools as a set, or a description of records reported
    /// more than once for the same endpoint and dialect.
    pub fn pool_set(&self) -> Result<BTreeSet<Verdict>, String> {
        let mut seen: BTreeMap<(SocketAddr, &str), Vec<&str>> = BTreeMap::new();
        for p in &self.pools {
            seen.entry((p.endpoint, &p.dialect))
                .or_default()
                .push(&p.confidence);
        }
        let repeated: Vec<String> = seen
            .iter()
            .filter(|(_, c)| c.len() > 1)
            .map(|((ep, d), c)| format!("{ep} {d} reported {} times ({})", c.len(), c.join(", ")))
            .collect();
        if repeated.is_empty() {
            Ok(self.pools.iter().cloned().collect())
        } else {
            Err(repeated.join("\n"))
        }
    }

    /// Context for a failure message: the command, exit status and stderr.
    pub fn context(&self) -> String {
        let mut s = format!("command: {}\n{}\n", self.command, self.status);
        if !self.garbage.is_empty() {
            s.push_str(&format!(
                "stdout lines that are not JSON objects: {:?}\n",
                self.garbage
            ));
        }
        let stderr = self.stderr.trim();
        if !stderr.is_empty() {
            let shown: String = stderr.chars().take(2_000).collect();
            s.push_str(&format!("stderr:\n{shown}\n"));
        }
        s
    }
}

/// Runs the built binary: `stratumguard analyze --json PATHS...`.
pub fn analyze(paths: &[&Path]) -> Analysis {
    let bin = env!("CARGO_BIN_EXE_stratumguard");
    let mut cmd = Command::new(bin);
    cmd.arg("analyze").arg("--json").args(paths);
    let command = format!(
        "stratumguard analyze --json {}",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();

    let mut pools = Vec::new();
    let mut errors = Vec::new();
    let mut garbage = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            garbage.push(line.to_string());
            continue;
        };
        match v.get("event_type").and_then(Value::as_str) {
            Some("mining_pool") => match pool_verdict(&v) {
                Some(p) => pools.push(p),
                None => garbage.push(line.to_string()),
            },
            Some("error") => errors.push(v),
            Some(_) => {}
            None => garbage.push(line.to_string()),
        }
    }
    Analysis {
        command,
        status: out.status,
        stdout,
        stderr,
        pools,
        errors,
        garbage,
    }
}

fn pool_verdict(v: &Value) -> Option<Verdict> {
    let ip: std::net::IpAddr = v.get("dest_ip")?.as_str()?.parse().ok()?;
    let port = u16::try_from(v.get("dest_port")?.as_u64()?).ok()?;
    let mining = v.get("mining")?;
    Some(Verdict {
        endpoint: SocketAddr::new(ip, port),
        dialect: mining.get("dialect")?.as_str()?.to_string(),
        confidence: mining.get("confidence")?.as_str()?.to_string(),
    })
}

/// Compares reported pools with the expected set exactly, describing every
/// difference.
pub fn compare(
    capture: &str,
    expected: &BTreeSet<Verdict>,
    analysis: &Analysis,
) -> Result<(), String> {
    let reported = match analysis.pool_set() {
        Ok(r) => r,
        Err(repeated) => {
            return Err(format!(
                "{capture}: the same pool was reported more than once:\n{repeated}\n{}",
                analysis.context()
            ));
        }
    };
    if analysis.garbage.is_empty() && &reported == expected {
        return Ok(());
    }
    let mut msg = format!(
        "{capture}: reported pools differ from {}\n",
        "the expected verdicts"
    );
    for v in expected.difference(&reported) {
        msg.push_str(&format!("  missing: {v}\n"));
    }
    for v in reported.difference(expected) {
        msg.push_str(&format!("  extra:   {v}\n"));
    }
    if expected.is_empty() {
        msg.push_str("  (the capture is clean: nothing may be reported)\n");
    }
    msg.push_str(&analysis.context());
    Err(msg)
}

/// Runs the binary on one committed capture and compares with the file beside it.
pub fn check_committed_capture(relative: &str) {
    let capture = repo_root().join("captures").join(relative);
    assert!(
        capture.is_file(),
        "capture {} is missing",
        capture.display()
    );
    let expected = read_expected(&expected_path(&capture));
    let analysis = analyze(&[&capture]);
    if let Err(msg) = compare(relative, &expected, &analysis) {
        panic!("{msg}");
    }
    assert!(
        analysis.status.code() == Some(0),
        "{relative}: analysis of a sound capture must exit 0\n{}",
        analysis.context()
    );
}
