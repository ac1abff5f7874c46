//! Packet sources. Each yields `(timestamp, link type, captured bytes, wire length)`;
//! nothing after this point knows whether a packet came from a file or a device.

pub mod live;
pub mod offline;
