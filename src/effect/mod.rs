//! Effects: executing what the core decided.

pub mod audit;
pub mod hooks;
pub mod policy;
