//! A small test server for the `monitor` integration test, in three modes:
//!
//! - `stratum`: a Stratum v1 pool. It answers `mining.subscribe` with
//!   subscription details and an extranonce, `mining.authorize` and
//!   `mining.submit` with `true`, and then pushes `mining.set_difficulty` and
//!   `mining.notify` on its own every `--push-ms`.
//! - `http`: a plain web server answering any request with a small page.
//! - `jsonrpc`: a newline-delimited JSON-RPC 2.0 service that is not mining
//!   (`system.ping`, `math.add`) and also pushes status notifications: it
//!   looks like Stratum on the wire in every way but the methods.
//!
//! It exits by itself after `--run-secs`, so a test that forgets it does not
//! leave it running.
//!
//! ```text
//! cargo run --example stratum_pool -- --listen 127.0.0.1:47123 --mode stratum
//! ```

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

/// Connections served at once; a test needs one or two.
const MAX_CONNECTIONS: usize = 16;
/// A request line longer than this ends the connection: the test peers send
/// lines of a few hundred bytes.
const MAX_LINE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Stratum,
    Http,
    Jsonrpc,
}

#[derive(Parser, Debug)]
struct Args {
    /// Address and port to listen on.
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long, value_enum, default_value = "stratum")]
    mode: Mode,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 30)]
    run_secs: u64,
    /// Milliseconds between pushed messages (stratum and jsonrpc modes).
    #[arg(long, default_value_t = 200)]
    push_ms: u64,
}

fn main() {
    let args = Args::parse();
    let listener = match TcpListener::bind(args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("stratum_pool: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    println!(
        "stratum_pool: listening on {} ({:?})",
        args.listen, args.mode
    );

    // The accept loop runs on its own thread; the main thread only bounds the
    // run time and then exits the whole process, connections included.
    let active = Arc::new(AtomicUsize::new(0));
    let push = Duration::from_millis(args.push_ms.max(10));
    let mode = args.mode;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(stream) = conn else { continue };
            if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                continue; // dropped: closes the connection
            }
            active.fetch_add(1, Ordering::SeqCst);
            let active = active.clone();
            std::thread::spawn(move || {
                let peer = stream.peer_addr().ok();
                let result = match mode {
                    Mode::Stratum => serve_stratum(stream, push),
                    Mode::Http => serve_http(stream),
                    Mode::Jsonrpc => serve_jsonrpc(stream, push),
                };
                if let Err(e) = result {
                    eprintln!("stratum_pool: connection {peer:?}: {e}");
                }
                active.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    std::thread::sleep(Duration::from_secs(args.run_secs));
    println!("stratum_pool: run time over, exiting");
}

/// Reads newline-terminated lines with a timeout, keeping a partial line
/// across timeouts.
struct LineReader {
    reader: BufReader<TcpStream>,
    partial: Vec<u8>,
}

enum Next {
    Line(String),
    Timeout,
    Closed,
}

impl LineReader {
    fn new(stream: TcpStream, timeout: Duration) -> std::io::Result<LineReader> {
        stream.set_read_timeout(Some(timeout))?;
        Ok(LineReader {
            reader: BufReader::new(stream),
            partial: Vec::new(),
        })
    }

    fn next(&mut self) -> std::io::Result<Next> {
        match self.reader.read_until(b'\n', &mut self.partial) {
            Ok(0) => Ok(Next::Closed),
            Ok(_) if self.partial.ends_with(b"\n") => {
                let line = String::from_utf8_lossy(&self.partial).trim().to_string();
                self.partial.clear();
                Ok(Next::Line(line))
            }
            Ok(_) => Ok(Next::Closed), // EOF in the middle of a line
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if self.partial.len() > MAX_LINE {
                    return Err(std::io::Error::new(ErrorKind::InvalidData, "line too long"));
                }
                Ok(Next::Timeout)
            }
            Err(e) => Err(e),
        }
    }
}

fn send(stream: &mut TcpStream, msg: &Value) -> std::io::Result<()> {
    let mut line = msg.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes())
}

fn serve_stratum(stream: TcpStream, push: Duration) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut lines = LineReader::new(stream, push / 2)?;
    let mut authorized = false;
    let mut job = 0u32;
    let mut last_push = Instant::now();
    loop {
        match lines.next()? {
            Next::Closed => return Ok(()),
            Next::Timeout => {}
            Next::Line(line) => {
                let Ok(req) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let id = req.get("id").cloned().unwrap_or(Value::Null);
                let method = req.get("method").and_then(Value::as_str).unwrap_or("");
                let reply = match method {
                    "mining.subscribe" => json!({
                        "id": id,
                        "result": [
                            [["mining.set_difficulty", "b4b6693b72a50c7116db18d6497cac52"],
                             ["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]],
                            "08000002",
                            4
                        ],
                        "error": null
                    }),
                    "mining.authorize" => {
                        authorized = true;
                        json!({ "id": id, "result": true, "error": null })
                    }
                    "mining.submit" => json!({ "id": id, "result": true, "error": null }),
                    _ => {
                        json!({ "id": id, "result": null, "error": [20, "unsupported method", null] })
                    }
                };
                send(&mut out, &reply)?;
                if method == "mining.authorize" {
                    push_work(&mut out, &mut job)?;
                    last_push = Instant::now();
                }
            }
        }
        if authorized && last_push.elapsed() >= push {
            push_work(&mut out, &mut job)?;
            last_push = Instant::now();
        }
    }
}

/// A difficulty and a new job, as a pool sends them after authorization and
/// whenever the chain moves.
fn push_work(out: &mut TcpStream, job: &mut u32) -> std::io::Result<()> {
    *job += 1;
    send(
        out,
        &json!({ "id": null, "method": "mining.set_difficulty", "params": [512] }),
    )?;
    let ntime = format!("{:08x}", 0x6650_0000u32 + *job);
    send(
        out,
        &json!({
            "id": null,
            "method": "mining.notify",
            "params": [
                format!("{:x}", *job),
                "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",
                "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008",
                "072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000",
                [],
                "20000000",
                "1d00ffff",
                ntime,
                *job == 1
            ]
        }),
    )
}

fn serve_http(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || request.len() > MAX_LINE {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let body = "<!doctype html><title>status</title><p>all systems nominal</p>\n";
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}

fn serve_jsonrpc(stream: TcpStream, push: Duration) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    let mut lines = LineReader::new(stream, push / 2)?;
    let mut last_push = Instant::now();
    let mut seq = 0u64;
    loop {
        match lines.next()? {
            Next::Closed => return Ok(()),
            Next::Timeout => {}
            Next::Line(line) => {
                let Ok(req) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let id = req.get("id").cloned().unwrap_or(Value::Null);
                let reply = match req.get("method").and_then(Value::as_str) {
                    Some("system.ping") => json!({ "jsonrpc": "2.0", "result": "pong", "id": id }),
                    Some("math.add") => {
                        let sum: f64 = req["params"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_f64).sum())
                            .unwrap_or(0.0);
                        json!({ "jsonrpc": "2.0", "result": sum, "id": id })
                    }
                    _ => json!({
                        "jsonrpc": "2.0",
                        "error": { "code": -32601, "message": "method not found" },
                        "id": id
                    }),
                };
                send(&mut out, &reply)?;
            }
        }
        if last_push.elapsed() >= push {
            seq += 1;
            send(
                &mut out,
                &json!({ "jsonrpc": "2.0", "method": "status.update", "params": { "seq": seq, "load": 0.25 } }),
            )?;
            last_push = Instant::now();
        }
    }
}
