//! Event sources: I/O and decoding only, one module per source.

pub mod control;
#[cfg(feature = "dbus")]
pub mod dbus;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "dhclient")]
pub mod lease;
pub mod netlink;
