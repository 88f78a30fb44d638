//! Event sources: I/O and decoding only, one module per source.

pub mod control;
pub mod lease;
pub mod netlink;
