//! Effects: executing what the core decided.

pub mod audit;
#[cfg(feature = "dbus")]
pub mod dbus;
pub mod hookdirs;
pub mod hooks;
pub mod policy;
pub mod sdnotify;
pub mod spawner;
pub mod tree;
