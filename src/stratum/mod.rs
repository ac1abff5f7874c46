//! Stratum detection: framing the byte streams, reading each message as
//! JSON, and keeping per-flow evidence against the dialect signatures.

pub mod budget;
pub mod framing;
pub mod session;
