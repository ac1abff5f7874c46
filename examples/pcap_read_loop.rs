//! The baseline for `bench/run.py`: read a capture with libpcap and do
//! nothing with the packets but count them.
//!
//! `analyze` is measured against this loop in the same run, so the ratio
//! says how much of the time goes to our own work rather than to reading
//! the file. Anything added here beyond counting would flatter that ratio.
//!
//! Usage: `pcap_read_loop FILE` prints `packets=N bytes=M` on stdout, where
//! `bytes` is the sum of captured lengths.

use std::process::ExitCode;

use pcap::{Capture, Error};

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: pcap_read_loop FILE");
        return ExitCode::from(2);
    };
    let shown = path.to_string_lossy().into_owned();

    let mut capture = match Capture::from_file(&path) {
        Ok(capture) => capture,
        Err(e) => {
            eprintln!("pcap_read_loop: {shown}: {e}");
            return ExitCode::from(2);
        }
    };

    let mut packets: u64 = 0;
    let mut bytes: u64 = 0;
    loop {
        match capture.next_packet() {
            Ok(packet) => {
                packets += 1;
                bytes += packet.data.len() as u64;
            }
            Err(Error::NoMorePackets) => break,
            Err(e) => {
                eprintln!("pcap_read_loop: {shown}: after packet {packets}: {e}");
                return ExitCode::from(2);
            }
        }
    }

    println!("packets={packets} bytes={bytes}");
    ExitCode::SUCCESS
}
