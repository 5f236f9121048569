//! [`ManualClock`]: time that moves only when a test (or the simulator) says so, so that
//! back-offs, hold-offs and poll intervals are exact and no test waits on a real clock.

use std::cell::Cell;
use std::rc::Rc;

use crate::platform::Clock;
use crate::units::{Duration, Instant};

/// A clock that moves only when told to. Clones share the time.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Rc<Cell<u64>>,
}

impl ManualClock {
    /// A clock at time zero.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `d` (saturating at the end of time).
    pub fn advance(&self, d: Duration) {
        self.nanos
            .set(self.nanos.get().saturating_add(d.as_nanos()));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.nanos.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_time_and_it_moves_only_when_told() {
        let clock = ManualClock::new();
        let other = clock.clone();
        assert_eq!(clock.now(), Instant::from_nanos(0));
        other.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), Instant::from_nanos(2_000_000_000));
        clock.advance(Duration::from_nanos(u64::MAX));
        assert_eq!(other.now(), Instant::from_nanos(u64::MAX));
    }
}
