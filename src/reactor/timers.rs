//! One timer heap for the loop: hook deadlines, retries, backoff, idle
//! clients. Each owner arms its one timer with its next deadline (or
//! disarms it); the heap keeps every arming and skips stale ones when they
//! come up, so arming is O(log n) and nothing is searched.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Who a timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(usize)]
pub enum Timer {
    /// Hook timeouts (and start retries).
    Hooks,
    /// A netlink dump request that could not be sent.
    NetlinkRetry,
    /// A burst of kernel messages: the socket is read at this pace
    /// rather than at every message (see `Daemon::pace`).
    NetlinkPace,
    /// Policy routing's held-back restores and retries.
    Policy,
    /// A burst is over: give freed memory back to the system.
    Trim,
    /// Event lines queued for subscribers leave.
    Flush,
    /// Idle and dropped control clients.
    Control,
    /// Work left over from a turn whose budget ran out: poll without
    /// sleeping.
    Again,
    /// Audit lines wait to be written, or a failed write is retried.
    Audit,
    /// The service manager's watchdog wants a ping.
    Watchdog,
    /// A changed lease file has settled and is due to be read.
    Lease,
    /// HTTP clients' request, idle and keep-alive deadlines.
    Http,
    /// The bus: a reconnect after backoff, or the end of start-up's wait
    /// for the managers' first read.
    Dbus,
    /// `system.watch_config` saw changes that are due to be reloaded.
    ConfigWatch,
}

/// Every timer, in slot order.
const ALL: [Timer; 14] = [
    Timer::Hooks,
    Timer::NetlinkRetry,
    Timer::NetlinkPace,
    Timer::Policy,
    Timer::Trim,
    Timer::Flush,
    Timer::Control,
    Timer::Again,
    Timer::Audit,
    Timer::Watchdog,
    Timer::Lease,
    Timer::Http,
    Timer::Dbus,
    Timer::ConfigWatch,
];
const N: usize = ALL.len();

fn slot(t: Timer) -> usize {
    t as usize
}

#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Timer)>>,
    armed: [Option<Instant>; N],
}

impl Timers {
    /// Sets `t` to fire at `at`, or disarms it.
    pub fn arm(&mut self, t: Timer, at: Option<Instant>) {
        let s = slot(t);
        if self.armed[s] == at {
            return;
        }
        self.armed[s] = at;
        if let Some(at) = at {
            self.heap.push(Reverse((at, t)));
        }
        // Stale entries are dropped as they surface; keep the heap from
        // growing without bound when one owner re-arms often.
        if self.heap.len() > 64 * N {
            let live: Vec<_> = self
                .armed
                .iter()
                .enumerate()
                .filter_map(|(i, a)| a.map(|a| (i, a)))
                .collect();
            self.heap.clear();
            for (i, a) in live {
                self.heap.push(Reverse((a, ALL[i])));
            }
        }
    }

    /// Whether `t` is set to fire.
    pub fn armed(&self, t: Timer) -> bool {
        self.armed[slot(t)].is_some()
    }

    fn drop_stale(&mut self) {
        while let Some(Reverse((at, t))) = self.heap.peek().copied() {
            if self.armed[slot(t)] == Some(at) {
                return;
            }
            self.heap.pop();
        }
    }

    /// How long `poll` may sleep.
    pub fn timeout(&mut self, now: Instant) -> Option<Duration> {
        self.drop_stale();
        self.heap
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
    }

    /// The next timer due at `now`, disarmed as it is returned.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        self.drop_stale();
        let Reverse((at, t)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.armed[slot(t)] = None;
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rearming_replaces_and_order_holds() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Timers::default();
        t.arm(Timer::Hooks, Some(ms(50)));
        t.arm(Timer::Control, Some(ms(20)));
        t.arm(Timer::Hooks, Some(ms(10)));
        assert_eq!(t.timeout(t0), Some(Duration::from_millis(10)));
        assert_eq!(t.pop_due(ms(15)), Some(Timer::Hooks));
        assert_eq!(t.pop_due(ms(15)), None);
        t.arm(Timer::Control, None);
        assert_eq!(t.timeout(t0), None, "the stale 50 ms arming is gone too");
        for i in 0..10_000 {
            t.arm(Timer::Again, Some(ms(i)));
        }
        assert!(t.heap.len() <= 64 * N + 1);
        assert_eq!(t.pop_due(ms(20_000)), Some(Timer::Again));
        assert_eq!(t.pop_due(ms(20_000)), None);
        // Every timer survives a compaction of the heap.
        for (i, &timer) in ALL.iter().enumerate() {
            assert_eq!(slot(timer), i);
            t.arm(timer, Some(ms(30_000 + i as u64)));
        }
        for i in 0..1000 {
            t.arm(Timer::Again, Some(ms(40_000 + i)));
        }
        let mut fired = Vec::new();
        while let Some(x) = t.pop_due(ms(50_000)) {
            fired.push(x);
        }
        assert_eq!(fired.len(), N, "{fired:?}");
    }
}
