//! TCP flows: the bounded table that tracks them and the per-direction
//! reassembly of their byte streams.

pub mod reassembly;
pub mod table;

/// One of the two directions of a flow, named after the endpoint that sends.
///
/// `Lo` is the endpoint that sorts first ([`table::FlowKey`] orders the two),
/// which says nothing about who is client or server: that is learnt from the
/// handshake or from who sends a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Lo = 0,
    Hi = 1,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
