//! Packet timestamps.
//!
//! Everything downstream of the capture source works in microseconds since the
//! Unix epoch, taken from the packet header, never from the wall clock: an
//! offline analysis of a capture from 2017 must age flows by 2017's clock.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

/// Microseconds since the Unix epoch, as carried by a pcap record header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn from_secs_micros(secs: i64, micros: i64) -> Timestamp {
        // A negative time in a capture header is corrupt; clamp rather than wrap.
        let total = secs.saturating_mul(1_000_000).saturating_add(micros);
        Timestamp(total.max(0) as u64)
    }

    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_micros() as u64)
    }

    pub fn secs(self) -> u64 {
        self.0 / 1_000_000
    }

    pub fn saturating_sub(self, other: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(other.0))
    }

    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_micros() as u64))
    }
}

/// RFC 3339 in UTC with microseconds, the form Suricata's EVE uses.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_micros(self.0);
        write!(f, "{}", humantime::format_rfc3339_micros(t))
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
