//! Event sources: I/O and decoding only, one module per source.

pub mod control;
#[cfg(feature = "dbus")]
pub mod dbus;
pub mod netlink;
