//! Enum-indexed counters with name tables: adding a counter is one enum variant and one
//! name, and printing them all is one loop (the vmw_balloon debugfs habit).

use crate::protocol::{Command, Status};

/// Calls by command and by the status the host returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallStats {
    counts: [[u64; Status::COUNT]; Command::COUNT],
}

impl Default for CallStats {
    fn default() -> Self {
        Self::new()
    }
}

impl CallStats {
    /// All zero.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            counts: [[0; Status::COUNT]; Command::COUNT],
        }
    }

    /// Counts one call of `command` answered with `status`.
    pub fn record(&mut self, command: Command, status: Status) {
        if let Some(c) = self
            .counts
            .get_mut(command.index())
            .and_then(|row| row.get_mut(status.index()))
        {
            *c = c.saturating_add(1);
        }
    }

    /// Calls of `command` answered with `status` (all undefined statuses count together).
    #[must_use]
    pub fn count(&self, command: Command, status: Status) -> u64 {
        self.counts
            .get(command.index())
            .and_then(|row| row.get(status.index()))
            .copied()
            .unwrap_or(0)
    }

    /// Calls of `command`, whatever the answer.
    #[must_use]
    pub fn calls(&self, command: Command) -> u64 {
        self.counts
            .get(command.index())
            .map_or(0, |row| row.iter().fold(0u64, |a, &b| a.saturating_add(b)))
    }

    /// Calls of `command` that did not succeed.
    #[must_use]
    pub fn failures(&self, command: Command) -> u64 {
        self.calls(command)
            .saturating_sub(self.count(command, Status::Success))
            .saturating_sub(self.count(command, Status::SuccessWithCapabilities))
    }

    /// Every backdoor call made.
    #[must_use]
    pub fn total(&self) -> u64 {
        Command::ALL
            .iter()
            .fold(0u64, |a, &c| a.saturating_add(self.calls(c)))
    }

    /// `(command, status, count)` for every non-zero cell, for traces and reports.
    pub fn iter(&self) -> impl Iterator<Item = (Command, Status, u64)> + '_ {
        Command::ALL.into_iter().flat_map(move |c| {
            Status::ALL
                .into_iter()
                .map(move |s| (c, s, self.count(c, s)))
                .filter(|&(_, _, n)| n != 0)
        })
    }
}
