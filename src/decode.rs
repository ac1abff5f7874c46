//! Link, IP and TCP decoding.

/// A pcap link-layer type (the `LINKTYPE_*` number in the file header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkType(pub i32);
