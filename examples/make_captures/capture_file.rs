//! Writers for the two capture container formats: classic libpcap and pcapng.
//!
//! Only what the crafted captures need: little-endian files, one interface,
//! microsecond timestamps, whole packets (captured length = wire length).

/// One packet as it goes into a capture file.
pub struct Record {
    /// Microseconds since the Unix epoch.
    pub ts_micros: u64,
    pub data: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    Pcapng,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::Pcapng => "pcapng",
        }
    }
}

/// Snapshot length written in the headers; every crafted packet is far smaller.
const SNAPLEN: u32 = 65_535;

pub fn encode(format: Format, linktype: u32, records: &[Record]) -> Vec<u8> {
    match format {
        Format::Pcap => encode_pcap(linktype, records),
        Format::Pcapng => encode_pcapng(linktype, records),
    }
}

fn encode_pcap(linktype: u32, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();

    // Global header: magic, version 2.4, zone, sigfigs, snaplen, linktype.
    put_u32(&mut out, 0xa1b2_c3d4);
    put_u16(&mut out, 2);
    put_u16(&mut out, 4);
    put_u32(&mut out, 0);
    put_u32(&mut out, 0);
    put_u32(&mut out, SNAPLEN);
    put_u32(&mut out, linktype);

    for r in records {
        let len = r.data.len() as u32;
        put_u32(&mut out, (r.ts_micros / 1_000_000) as u32);
        put_u32(&mut out, (r.ts_micros % 1_000_000) as u32);
        put_u32(&mut out, len);
        put_u32(&mut out, len);
        out.extend_from_slice(&r.data);
    }
    out
}

const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_IDB: u32 = 0x0000_0001;
const PCAPNG_EPB: u32 = 0x0000_0006;

fn encode_pcapng(linktype: u32, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();

    // Section header: byte-order magic, version 1.0, section length unknown.
    let mut body = Vec::new();
    put_u32(&mut body, 0x1a2b_3c4d);
    put_u16(&mut body, 1);
    put_u16(&mut body, 0);
    body.extend_from_slice(&(-1i64).to_le_bytes());
    put_block(&mut out, PCAPNG_SHB, &body);

    // One interface; with no if_tsresol option its stamps are in microseconds.
    let mut body = Vec::new();
    put_u16(&mut body, linktype as u16);
    put_u16(&mut body, 0);
    put_u32(&mut body, SNAPLEN);
    put_block(&mut out, PCAPNG_IDB, &body);

    for r in records {
        let mut body = Vec::new();
        let len = r.data.len() as u32;
        put_u32(&mut body, 0);
        put_u32(&mut body, (r.ts_micros >> 32) as u32);
        put_u32(&mut body, r.ts_micros as u32);
        put_u32(&mut body, len);
        put_u32(&mut body, len);
        body.extend_from_slice(&r.data);
        while body.len() % 4 != 0 {
            body.push(0);
        }
        put_block(&mut out, PCAPNG_EPB, &body);
    }
    out
}

/// A pcapng block: type, total length, body (already padded), total length again.
fn put_block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) {
    let total = (body.len() + 12) as u32;
    put_u32(out, block_type);
    put_u32(out, total);
    out.extend_from_slice(body);
    put_u32(out, total);
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
