//! A small test client for the `monitor` integration test, the counterpart
//! of `stratum_pool` in the same three modes:
//!
//! - `stratum`: subscribes with a miner agent, authorizes a worker, waits
//!   for work, submits one share and keeps reading jobs until `--run-secs`.
//! - `http`: fetches one page.
//! - `jsonrpc`: makes a few non-mining JSON-RPC calls and reads a pushed
//!   notification.
//!
//! It exits 0 when the exchange went as the mode expects and 1 otherwise, so
//! a test can tell "nothing was detected" from "nothing was said".
//!
//! ```text
//! cargo run --example stratum_miner -- --connect 127.0.0.1:47123 --mode stratum
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

/// How long one connect or read may take before the client gives up.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest reply line accepted from the server.
const MAX_LINE: u64 = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Stratum,
    Http,
    Jsonrpc,
}

#[derive(Parser, Debug)]
struct Args {
    /// The server's address and port.
    #[arg(long)]
    connect: SocketAddr,
    #[arg(long, value_enum, default_value = "stratum")]
    mode: Mode,
    /// Keep the stratum session open this long after the share.
    #[arg(long, default_value_t = 2)]
    run_secs: u64,
    /// The agent sent in `mining.subscribe`.
    #[arg(long, default_value = "cpuminer-opt/3.23.0")]
    agent: String,
    /// The worker name sent in `mining.authorize`.
    #[arg(long, default_value = "bc1qexampleworker.rig1")]
    user: String,
}

type Result<T> = std::result::Result<T, String>;

fn main() {
    let args = Args::parse();
    let result = TcpStream::connect_timeout(&args.connect, IO_TIMEOUT)
        .map_err(|e| format!("cannot connect to {}: {e}", args.connect))
        .and_then(|stream| {
            stream
                .set_read_timeout(Some(IO_TIMEOUT))
                .map_err(|e| e.to_string())?;
            match args.mode {
                Mode::Stratum => mine(stream, &args),
                Mode::Http => fetch_page(stream, &args),
                Mode::Jsonrpc => call_service(stream),
            }
        });
    match result {
        Ok(summary) => println!("stratum_miner: {summary}"),
        Err(e) => {
            eprintln!("stratum_miner: {e}");
            std::process::exit(1);
        }
    }
}

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn new(stream: TcpStream) -> Result<Conn> {
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Conn {
            reader: BufReader::new(stream),
            writer,
        })
    }

    fn send(&mut self, msg: &Value) -> Result<()> {
        let mut line = msg.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| format!("send: {e}"))
    }

    fn recv(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = (&mut self.reader)
            .take(MAX_LINE)
            .read_line(&mut line)
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
        serde_json::from_str(line.trim()).map_err(|e| format!("bad JSON from server: {e}"))
    }

    /// Reads until the reply to request `id`, keeping any message the server
    /// pushed on the way in `pushed`.
    fn reply_to(&mut self, id: u64, pushed: &mut Vec<Value>) -> Result<Value> {
        loop {
            let msg = self.recv()?;
            if msg.get("id").and_then(Value::as_u64) == Some(id) {
                return Ok(msg);
            }
            if msg.get("method").is_some() {
                pushed.push(msg);
            }
        }
    }

    /// Reads one message the server pushes on its own.
    fn pushed(&mut self, pushed: &mut Vec<Value>) -> Result<()> {
        let msg = self.recv()?;
        if msg.get("method").is_some() {
            pushed.push(msg);
        }
        Ok(())
    }
}

/// The parameters of every `mining.notify` among `pushed`.
fn jobs(pushed: &[Value]) -> Vec<&Value> {
    pushed
        .iter()
        .filter(|m| m.get("method").and_then(Value::as_str) == Some("mining.notify"))
        .map(|m| &m["params"])
        .collect()
}

fn mine(stream: TcpStream, args: &Args) -> Result<String> {
    let mut conn = Conn::new(stream)?;
    let mut pushed = Vec::new();

    // Subscribe and authorize, as every Stratum v1 miner starts.
    conn.send(&json!({ "id": 1, "method": "mining.subscribe", "params": [args.agent] }))?;
    let sub = conn.reply_to(1, &mut pushed)?;
    let extranonce2_size = sub["result"][2]
        .as_u64()
        .ok_or("subscribe: no extranonce2 size")?;
    conn.send(&json!({ "id": 2, "method": "mining.authorize", "params": [args.user, "x"] }))?;
    let auth = conn.reply_to(2, &mut pushed)?;
    if auth["result"] != json!(true) {
        return Err(format!("authorize refused: {auth}"));
    }

    // Wait for a job, then submit one share for it.
    let deadline = Instant::now() + IO_TIMEOUT;
    while jobs(&pushed).is_empty() {
        if Instant::now() > deadline {
            return Err("no mining.notify after authorize".into());
        }
        conn.pushed(&mut pushed)?;
    }
    let job = jobs(&pushed)[0].clone();
    let extranonce2 = "00".repeat(extranonce2_size as usize);
    conn.send(&json!({
        "id": 4,
        "method": "mining.submit",
        "params": [args.user, job[0], extranonce2, job[7], "b2957c02"]
    }))?;
    let share = conn.reply_to(4, &mut pushed)?;
    if share["result"] != json!(true) {
        return Err(format!("share rejected: {share}"));
    }

    // Keep mining for a while, as a real miner would.
    let end = Instant::now() + Duration::from_secs(args.run_secs);
    while Instant::now() < end {
        conn.pushed(&mut pushed)?;
    }
    Ok(format!(
        "subscribed, authorized, share accepted, {} jobs received",
        jobs(&pushed).len()
    ))
}

fn fetch_page(mut stream: TcpStream, args: &Args) -> Result<String> {
    let request = format!(
        "GET /status HTTP/1.1\r\nHost: {}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        args.connect
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(MAX_LINE)
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    if !response.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "unexpected HTTP response: {:?}",
            response.lines().next()
        ));
    }
    Ok(format!("fetched a page of {} bytes", response.len()))
}

fn call_service(stream: TcpStream) -> Result<String> {
    let mut conn = Conn::new(stream)?;
    let mut pushed = Vec::new();
    conn.send(&json!({ "jsonrpc": "2.0", "method": "system.ping", "params": [], "id": 1 }))?;
    let pong = conn.reply_to(1, &mut pushed)?;
    conn.send(&json!({ "jsonrpc": "2.0", "method": "math.add", "params": [40, 2], "id": 2 }))?;
    let sum = conn.reply_to(2, &mut pushed)?;
    if pong["result"] != json!("pong") || sum["result"].as_f64() != Some(42.0) {
        return Err(format!("unexpected replies: {pong} {sum}"));
    }

    // Read until the service has pushed a notification too, so the capture
    // holds server-initiated messages as a pool's would.
    let deadline = Instant::now() + IO_TIMEOUT;
    while pushed.is_empty() {
        if Instant::now() > deadline {
            return Err("no notification from the service".into());
        }
        conn.pushed(&mut pushed)?;
    }
    Ok(format!(
        "2 calls answered, {} notification(s) received",
        pushed.len()
    ))
}
