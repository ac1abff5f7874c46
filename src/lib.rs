//! stratumguard: finds cryptocurrency-mining pool connections by reading TCP
//! payloads for the Stratum protocol, on any port, and feeds the pools it
//! finds to firewall blocklists.
//!
//! The packet path is the same for offline files and live interfaces:
//!
//! ```text
//! capture ─> decode ─> flow::table ─> flow::reassembly ─> stratum ─> pools ─> output / block
//! ```
#![forbid(unsafe_code)]

pub mod block;
pub mod capture;
pub mod decode;
pub mod engine;
pub mod flow;
pub mod output;
pub mod pools;
pub mod signatures;
pub mod stats;
pub mod stratum;
pub mod time;
