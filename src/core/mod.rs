//! The pure core: no I/O, no clock reads, no processes. Sources feed it
//! decoded values and the time; it answers with events to run hooks for.
//! Everything here is tested by driving it with event sequences.

pub mod event;
pub mod glob;
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
