//! The pure core: no I/O, no clock reads, no processes. Sources feed it
//! decoded values and the time; it answers with events to run hooks for.
//! Everything here is tested by driving it with event sequences.

pub mod event;
pub mod filter;
pub mod fx;
pub mod glob;
pub mod metrics;
// Without the lease watcher nothing feeds leases in; the core keeps its
// (empty) lease state all the same, so the rest needs no cfg.
#[cfg_attr(not(feature = "dhclient"), allow(dead_code))]
pub mod lease;
pub mod managers;
pub mod mirror;
pub mod model;
pub mod policy;
pub mod publish;
pub mod query;
pub mod requests;
pub mod sched;
pub mod state;
pub mod types;
