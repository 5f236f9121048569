//! The table of page ranges the bug-check callback hands the dump writer
//! (`docs/windows-memory.md §9.5`): ballooned pages left out of crash dumps.
//!
//! **The reader** is a `KbCallbackRemovePages` routine: it runs at HIGH_LEVEL with the
//! system halted, may take no lock, allocate nothing and touch no pageable memory, and may
//! have stopped the writer (the worker) at any instruction, in the middle of a batch.
//! **The writer** is the worker alone. So the table is a fixed array of slots, each a
//! `(start, count)` range behind its own generation number, written with the seqlock
//! protocol:
//!
//! 1. the generation is made odd (the slot is being written),
//! 2. `start` and `count` are stored,
//! 3. the generation is made even again (one more than before the write began).
//!
//! A reader takes the generation, the range and the generation again, and reports the
//! range only when both generations are the same even number and `count` is non-zero. So a
//! reader that stopped the writer anywhere, or even one that ran beside it, reports only
//! ranges as they were between two complete writes — never half a write.
//!
//! **The rule that makes this safe for Windows** is the writer's order, not the table: a
//! range is published only after the pages are the driver's (allocated, not yet freed),
//! and withdrawn — the generation even again — before any of them is freed. A reader
//! therefore never reports a page that Windows has back; pages in flight (allocated but not
//! published yet, or withdrawn but not freed yet) are merely left in the dump. A range
//! that finds no free slot is left in the dump too: the table never grows.
//!
//! Every step is one [`Store`] applied with [`RangeTable::apply`]; the writer's methods
//! return the steps in order, so the property tests run a reader between every two steps
//! of exactly the sequence the driver performs.

use core::sync::atomic::{AtomicU64, Ordering, fence};

use vmballoon_core::units::Pfn;

/// Slots in the driver's table: ranges the dump writer can be told about. 16 bytes each
/// plus 8 of generation: 24 KiB of nonpaged memory. A 2 MiB unit is one range, so this
/// covers a balloon of 2 GiB of scattered-page units at the least and 2 TiB of whole
/// blocks; units beyond it stay in dumps.
pub const SLOTS: usize = 1024;

/// A run of physically contiguous 4 KiB frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// The first frame.
    pub start: Pfn,
    /// Frames in the run (at least 1).
    pub count: u64,
}

/// The longest run of consecutive PFNs in `pfns` (the first of equal length); `None` when
/// `pfns` is empty. A 2 MiB unit is one run of 512; a unit of scattered pages gives its
/// longest run to the table, and the rest of it stays in dumps.
#[must_use]
pub fn longest_run(pfns: impl IntoIterator<Item = Pfn>) -> Option<Run> {
    let mut best: Option<Run> = None;
    let mut current: Option<Run> = None;
    for pfn in pfns {
        current = match current {
            Some(run)
                if run
                    .start
                    .checked_add(run.count)
                    .is_some_and(|next| next == pfn) =>
            {
                Some(Run {
                    start: run.start,
                    count: run.count.saturating_add(1),
                })
            }
            _ => Some(Run {
                start: pfn,
                count: 1,
            }),
        };
        if let Some(run) = current
            && best.is_none_or(|b| run.count > b.count)
        {
            best = Some(run);
        }
    }
    best
}

/// One store of the write protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// Slot `.0`'s generation becomes `.1`.
    Generation(usize, u64),
    /// Slot `.0`'s first frame becomes `.1`.
    Start(usize, u64),
    /// Slot `.0`'s frame count becomes `.1`.
    Count(usize, u64),
}

/// The writer's steps for one slot write: generation odd, range, generation even.
pub type Steps = [Store; 4];

/// A slot the table gave a range: withdraw it with [`RangeTable::withdraw`] before any of
/// its pages is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket(usize);

impl Ticket {
    /// The slot index (for the glue's bookkeeping).
    #[must_use]
    pub const fn slot(self) -> usize {
        self.0
    }
}

#[derive(Debug)]
struct Slot {
    generation: AtomicU64,
    start: AtomicU64,
    count: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            start: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// The slot's range as a reader sees it: `None` when empty or being written.
    fn read(&self) -> Option<Run> {
        let before = self.generation.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        let start = self.start.load(Ordering::Relaxed);
        let count = self.count.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let after = self.generation.load(Ordering::Relaxed);
        if before != after || count == 0 {
            return None;
        }
        Some(Run {
            start: Pfn::new(start)?,
            count,
        })
    }
}

/// The table: [`N`](RangeTable) slots, written by one writer, read by any number of
/// readers at any time (see the module documentation). The writer also keeps which slots
/// it has in use; readers never look at that.
#[derive(Debug)]
pub struct RangeTable<const N: usize> {
    slots: [Slot; N],
}

impl<const N: usize> Default for RangeTable<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RangeTable<N> {
    /// Every slot empty. This is all zero bits (generation, start and count 0 in every
    /// slot), so a table may also be built in place by zeroing its memory, which the glue
    /// does to keep its 24 KiB off the kernel stack.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            slots: [const { Slot::new() }; N],
        }
    }

    /// Applies one step of the write protocol. Writer only (one writer at a time).
    pub fn apply(&self, store: Store) {
        let (slot, field, value, order) = match store {
            // Odd: the slot is being written; the fence below keeps it before the range.
            Store::Generation(i, g) if g % 2 == 1 => (i, 0, g, Ordering::Relaxed),
            // Even: the write is complete; Release keeps the range before it.
            Store::Generation(i, g) => (i, 0, g, Ordering::Release),
            Store::Start(i, v) => (i, 1, v, Ordering::Relaxed),
            Store::Count(i, v) => (i, 2, v, Ordering::Relaxed),
        };
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        match field {
            0 => {
                s.generation.store(value, order);
                if value % 2 == 1 {
                    fence(Ordering::Release);
                }
            }
            1 => s.start.store(value, order),
            _ => s.count.store(value, order),
        }
    }

    fn steps(&self, slot: usize, start: u64, count: u64) -> Option<Steps> {
        let g = self.slots.get(slot)?.generation.load(Ordering::Relaxed);
        let odd = g.wrapping_add(1) | 1;
        Some([
            Store::Generation(slot, odd),
            Store::Start(slot, start),
            Store::Count(slot, count),
            Store::Generation(slot, odd.wrapping_add(1)),
        ])
    }

    /// A free slot (count 0, as the writer left it), if any. Writer only.
    fn free_slot(&self) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.count.load(Ordering::Relaxed) == 0)
    }

    /// The steps that publish `run` in a free slot, and the slot's ticket; `None` when the
    /// table is full (the run stays in dumps). Call only once the run's pages are the
    /// driver's; apply every step, in order, before the next write. Writer only.
    #[must_use]
    pub fn publish_steps(&self, run: Run) -> Option<(Ticket, Steps)> {
        if run.count == 0 {
            return None;
        }
        let slot = self.free_slot()?;
        let steps = self.steps(slot, run.start.get(), run.count)?;
        Some((Ticket(slot), steps))
    }

    /// The steps that withdraw the range of `ticket`. Apply them all before freeing any of
    /// its pages. Writer only.
    #[must_use]
    pub fn withdraw_steps(&self, ticket: Ticket) -> Option<Steps> {
        self.steps(ticket.0, 0, 0)
    }

    /// Publishes `run` (all steps): see [`RangeTable::publish_steps`].
    pub fn publish(&self, run: Run) -> Option<Ticket> {
        let (ticket, steps) = self.publish_steps(run)?;
        for s in steps {
            self.apply(s);
        }
        Some(ticket)
    }

    /// Withdraws the range of `ticket` (all steps): see [`RangeTable::withdraw_steps`].
    pub fn withdraw(&self, ticket: Ticket) {
        for s in self.withdraw_steps(ticket).into_iter().flatten() {
            self.apply(s);
        }
    }

    /// The reader: the first complete range at slot `cursor` or after, and the cursor of
    /// the slot after it. The dump callback starts at cursor 0 and keeps the returned
    /// cursor between its calls. No lock, no allocation, no loop longer than the table.
    #[must_use]
    pub fn next_range(&self, cursor: usize) -> Option<(Run, usize)> {
        self.slots
            .get(cursor..)?
            .iter()
            .enumerate()
            .find_map(|(i, s)| {
                s.read()
                    .map(|r| (r, cursor.saturating_add(i).saturating_add(1)))
            })
    }

    /// Every range a reader sees now, in slot order.
    pub fn ranges(&self) -> impl Iterator<Item = Run> + '_ {
        self.slots.iter().filter_map(Slot::read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn pfn(n: u64) -> Pfn {
        Pfn::new(n).unwrap()
    }

    #[test]
    fn longest_run_of_units() {
        assert_eq!(longest_run([]), None);
        let block = (0x2_0000..0x2_0200).map(pfn);
        assert_eq!(
            longest_run(block),
            Some(Run {
                start: pfn(0x2_0000),
                count: 512
            })
        );
        let scattered = [5, 9, 10, 11, 3, 4, 20, 21, 22].map(pfn);
        assert_eq!(
            longest_run(scattered),
            Some(Run {
                start: pfn(9),
                count: 3
            })
        );
        assert_eq!(
            longest_run([7, 7, 8].map(pfn)),
            Some(Run {
                start: pfn(7),
                count: 2
            })
        );
    }

    #[test]
    fn publish_withdraw_and_reuse() {
        let t = RangeTable::<2>::new();
        let a = Run {
            start: pfn(100),
            count: 4,
        };
        let b = Run {
            start: pfn(500),
            count: 512,
        };
        let ta = t.publish(a).unwrap();
        let tb = t.publish(b).unwrap();
        assert_eq!(t.ranges().collect::<Vec<_>>(), [a, b]);
        // Full: the next run stays in dumps.
        assert_eq!(t.publish(a), None);
        t.withdraw(ta);
        assert_eq!(t.ranges().collect::<Vec<_>>(), [b]);
        let c = Run {
            start: pfn(7),
            count: 1,
        };
        assert_eq!(t.publish(c), Some(ta));
        assert_eq!(t.ranges().collect::<Vec<_>>(), [c, b]);
        t.withdraw(tb);
        t.withdraw(ta);
        assert_eq!(t.ranges().count(), 0);
        assert_eq!(t.publish(Run { count: 0, ..c }), None);
    }

    #[test]
    fn the_callback_cursor_walks_every_range_once() {
        let t = RangeTable::<8>::new();
        let runs: Vec<Run> = [3, 40, 900]
            .map(|s| Run {
                start: pfn(s),
                count: 2,
            })
            .to_vec();
        let tickets: Vec<_> = runs.iter().map(|&r| t.publish(r).unwrap()).collect();
        t.withdraw(tickets[1]);
        let mut cursor = 0;
        let mut seen = Vec::new();
        while let Some((run, next)) = t.next_range(cursor) {
            seen.push(run);
            cursor = next;
        }
        assert_eq!(seen, [runs[0], runs[2]]);
        assert_eq!(t.next_range(usize::MAX), None);
    }

    #[test]
    fn a_reader_inside_a_write_reports_nothing_of_that_slot() {
        let t = RangeTable::<1>::new();
        let run = Run {
            start: pfn(64),
            count: 8,
        };
        let (ticket, steps) = t.publish_steps(run).unwrap();
        for (i, s) in steps.iter().enumerate() {
            t.apply(*s);
            let seen: Vec<_> = t.ranges().collect();
            if i + 1 < steps.len() {
                assert!(seen.is_empty(), "after step {i}: {seen:?}");
            } else {
                assert_eq!(seen, [run]);
            }
        }
        // A reader stopped between the withdrawal's steps reports the old range whole or
        // nothing, never a mix.
        for s in t.withdraw_steps(ticket).unwrap() {
            t.apply(s);
            for r in t.ranges() {
                assert_eq!(r, run);
            }
        }
        assert_eq!(t.ranges().count(), 0);
    }

    /// What the worker does to one unit.
    #[derive(Clone, Debug)]
    enum Op {
        /// Allocate a unit of these PFNs, then publish its longest run.
        Take(Vec<u64>),
        /// Withdraw unit `.0 % live`'s range, then free its pages.
        Give(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            // Units drawn from a small PFN space so freed pages are reused by later units.
            prop::collection::vec(0u64..64, 1..12).prop_map(|mut v| {
                v.sort_unstable();
                v.dedup();
                Op::Take(v)
            }),
            any::<usize>().prop_map(Op::Give),
        ]
    }

    /// One writer step, as the driver runs them.
    enum Step {
        /// Pages become the driver's (MmAllocatePagesForMdlEx returned them).
        Own(Vec<u64>),
        /// One store of the table protocol.
        Table(Store),
        /// Pages go back to Windows (MmFreePagesFromMdl).
        Free(Vec<u64>),
    }

    proptest! {
        /// A reader run after every single step of the writer — the crash may stop the
        /// worker anywhere — reports only pages the balloon holds at that instant.
        #[test]
        fn a_reader_at_any_step_reports_only_pages_the_balloon_holds(
            ops in prop::collection::vec(op(), 1..40)
        ) {
            let table = RangeTable::<4>::new();
            // The writer's plan: every step in order, computed as the driver would.
            let mut live: Vec<(Vec<u64>, Option<Ticket>)> = Vec::new();
            let mut owned_by_anyone: BTreeSet<u64> = BTreeSet::new();
            let mut owned: BTreeSet<u64> = BTreeSet::new();
            let mut published_total = 0usize;
            for op in ops {
                let mut steps = Vec::new();
                match op {
                    Op::Take(pfns) => {
                        // Mm never hands out a page that is still the balloon's.
                        let pfns: Vec<u64> =
                            pfns.into_iter().filter(|p| !owned_by_anyone.contains(p)).collect();
                        if pfns.is_empty() {
                            continue;
                        }
                        owned_by_anyone.extend(&pfns);
                        steps.push(Step::Own(pfns.clone()));
                        // Decided before any store of this write is applied, as the
                        // driver decides.
                        let mut ticket = None;
                        let run = longest_run(pfns.iter().map(|&p| pfn(p))).unwrap();
                        let publish = table.publish_steps(run);
                        // Apply now what came before, then this write step by step.
                        for s in steps.drain(..) {
                            check_step(&table, &mut owned, s)?;
                        }
                        if let Some((t, stores)) = publish {
                            ticket = Some(t);
                            published_total += 1;
                            for s in stores {
                                check_step(&table, &mut owned, Step::Table(s))?;
                            }
                        }
                        live.push((pfns, ticket));
                    }
                    Op::Give(i) => {
                        if live.is_empty() {
                            continue;
                        }
                        let (pfns, ticket) = live.swap_remove(i % live.len());
                        if let Some(t) = ticket {
                            for s in table.withdraw_steps(t).unwrap() {
                                check_step(&table, &mut owned, Step::Table(s))?;
                            }
                        }
                        for p in &pfns {
                            owned_by_anyone.remove(p);
                        }
                        check_step(&table, &mut owned, Step::Free(pfns))?;
                    }
                }
            }
            // Whatever was published and is still live is reported (nothing is lost while
            // the worker is between writes).
            let reported: usize = table.ranges().count();
            let expected = live.iter().filter(|(_, t)| t.is_some()).count();
            prop_assert_eq!(reported, expected);
            prop_assert!(published_total >= expected);
        }
    }

    #[test]
    fn the_check_catches_pages_freed_before_their_range_is_withdrawn() {
        // The property's checker is not vacuous: the wrong order (free, then withdraw)
        // fails it at the free.
        let table = RangeTable::<4>::new();
        let mut owned = BTreeSet::new();
        check_step(&table, &mut owned, Step::Own(vec![1, 2, 3])).unwrap();
        let (_, steps) = table
            .publish_steps(Run {
                start: pfn(1),
                count: 3,
            })
            .unwrap();
        for s in steps {
            check_step(&table, &mut owned, Step::Table(s)).unwrap();
        }
        assert!(check_step(&table, &mut owned, Step::Free(vec![1, 2, 3])).is_err());
    }

    /// Applies one writer step, then runs a reader (the dump callback's loop) and checks
    /// every page it reports is owned.
    fn check_step(
        table: &RangeTable<4>,
        owned: &mut BTreeSet<u64>,
        step: Step,
    ) -> Result<(), TestCaseError> {
        match step {
            Step::Own(p) => owned.extend(p),
            Step::Table(s) => table.apply(s),
            Step::Free(p) => {
                for x in p {
                    owned.remove(&x);
                }
            }
        }
        let mut cursor = 0;
        while let Some((run, next)) = table.next_range(cursor) {
            for x in run.start.get()..run.start.get() + run.count {
                prop_assert!(owned.contains(&x), "reported page {} not held", x);
            }
            cursor = next;
        }
        Ok(())
    }
}
