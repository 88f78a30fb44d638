//! netevctl: talks to netevd over its control socket.
fn main() {}
