//! Effects: executing what the core decided.

#[cfg(feature = "dbus")]
pub mod dbus;
pub mod hooks;
pub mod policy;
