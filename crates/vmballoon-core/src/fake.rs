//! Test doubles for the core's traits (feature `fake`): [`ScriptedBackdoor`], an
//! embedded-hal-mock style backdoor whose expected calls are listed up front and checked
//! by [`ScriptedBackdoor::done`] (and on drop).
//!
//! These are test code: they panic on a broken expectation, which is their job.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    reason = "test double: a broken expectation must fail the test loudly"
)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::vec::Vec;

use crate::protocol::{BATCH_CAPACITY, Backdoor, BatchPage, RawReply};
use crate::units::Pfn;

/// One expected backdoor call and the reply to give.
#[derive(Clone, Debug)]
pub struct Expect {
    command: u32,
    args: Option<(u64, u64)>,
    entries_in: Option<Vec<u64>>,
    entry_statuses: Vec<u32>,
    overwrites: Vec<(usize, u64)>,
    reply: RawReply,
}

impl Expect {
    /// Expect `command` with exactly these RBX / RSI arguments.
    #[must_use]
    pub fn call(command: u32, arg1: u64, arg2: u64) -> Self {
        Self {
            args: Some((arg1, arg2)),
            ..Self::command(command)
        }
    }

    /// Expect `command` with any arguments.
    #[must_use]
    pub fn command(command: u32) -> Self {
        Self {
            command,
            args: None,
            entries_in: None,
            entry_statuses: Vec::new(),
            overwrites: Vec::new(),
            reply: RawReply::default(),
        }
    }

    /// Expect the batch page to hold exactly these entries (raw values) before the call.
    #[must_use]
    pub fn entries_in(mut self, raw: &[u64]) -> Self {
        self.entries_in = Some(raw.to_vec());
        self
    }

    /// OR these statuses into entries 0.. of the batch page during the call.
    #[must_use]
    pub fn entry_statuses(mut self, statuses: &[u32]) -> Self {
        self.entry_statuses = statuses.to_vec();
        self
    }

    /// Overwrite entry `index` with `raw` during the call (a host rewriting addresses).
    #[must_use]
    pub fn overwrite_entry(mut self, index: usize, raw: u64) -> Self {
        self.overwrites.push((index, raw));
        self
    }

    /// Reply with these EAX / RBX / RCX values.
    #[must_use]
    pub fn replies(mut self, status: u32, result: u64, capabilities: u64) -> Self {
        self.reply = RawReply {
            status,
            result,
            capabilities,
        };
        self
    }
}

#[derive(Debug)]
struct State {
    expected: VecDeque<Expect>,
    made: usize,
    done_called: bool,
    has_page: bool,
}

/// A backdoor that replays a script. Clones share the script, so a test keeps a handle
/// after moving one into the engine, then calls [`ScriptedBackdoor::done`].
#[derive(Debug)]
pub struct ScriptedBackdoor {
    state: Rc<RefCell<State>>,
    // Each handle has its own page: only the one inside the engine is ever used.
    page: Option<std::boxed::Box<BatchPage>>,
}

impl Clone for ScriptedBackdoor {
    fn clone(&self) -> Self {
        let has_page = self.state.borrow().has_page;
        Self {
            state: Rc::clone(&self.state),
            page: has_page.then(|| std::boxed::Box::new(BatchPage::zeroed())),
        }
    }
}

impl ScriptedBackdoor {
    /// The PFN the fake batch page claims to have.
    pub const BATCH_PFN: u64 = 0xB_A7C4;

    /// A backdoor expecting exactly `script`, in order, with a batch page.
    pub fn new(script: impl IntoIterator<Item = Expect>) -> Self {
        Self::build(script, true)
    }

    /// A backdoor expecting `script`, on a platform that has no batch page.
    pub fn without_batch_page(script: impl IntoIterator<Item = Expect>) -> Self {
        Self::build(script, false)
    }

    fn build(script: impl IntoIterator<Item = Expect>, page: bool) -> Self {
        Self {
            state: Rc::new(RefCell::new(State {
                expected: script.into_iter().collect(),
                made: 0,
                done_called: false,
                has_page: page,
            })),
            page: page.then(|| std::boxed::Box::new(BatchPage::zeroed())),
        }
    }

    /// Appends more expectations.
    pub fn expect(&self, more: impl IntoIterator<Item = Expect>) {
        self.state.borrow_mut().expected.extend(more);
    }

    /// Calls made so far.
    #[must_use]
    pub fn calls_made(&self) -> usize {
        self.state.borrow().made
    }

    /// Asserts that every expected call was made.
    pub fn done(&self) {
        let mut s = self.state.borrow_mut();
        s.done_called = true;
        assert!(
            s.expected.is_empty(),
            "expected calls not made: {:?}",
            s.expected
        );
    }
}

impl Drop for ScriptedBackdoor {
    fn drop(&mut self) {
        // The last handle checks that the test called `done()` (embedded-hal-mock style).
        if Rc::strong_count(&self.state) == 1 && !std::thread::panicking() {
            let s = self.state.borrow();
            assert!(s.done_called, "ScriptedBackdoor dropped without done()");
        }
    }
}

impl Backdoor for ScriptedBackdoor {
    fn call(&mut self, command: u32, arg1: u64, arg2: u64) -> RawReply {
        let mut s = self.state.borrow_mut();
        s.made += 1;
        let n = s.made;
        let e = s.expected.pop_front().unwrap_or_else(|| {
            panic!("unexpected call #{n}: command {command} ({arg1:#x}, {arg2:#x})")
        });
        assert_eq!(command, e.command, "call #{n}: wrong command");
        if let Some((a1, a2)) = e.args {
            assert_eq!(
                (arg1, arg2),
                (a1, a2),
                "call #{n} (command {command}): wrong arguments"
            );
        }
        drop(s);
        if let Some(page) = self.page.as_mut() {
            if let Some(want) = &e.entries_in {
                let count = usize::try_from(arg2).unwrap().min(BATCH_CAPACITY);
                let got: Vec<u64> = page.entries[..count]
                    .iter()
                    .map(|v| u64::from_le(*v))
                    .collect();
                assert_eq!(&got, want, "call #{n}: wrong batch entries");
            }
            for (i, st) in e.entry_statuses.iter().enumerate() {
                page.entries[i] = (u64::from_le(page.entries[i]) | u64::from(*st)).to_le();
            }
            for &(i, raw) in &e.overwrites {
                page.entries[i] = raw.to_le();
            }
        }
        e.reply
    }

    fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)> {
        let pfn = Pfn::new(Self::BATCH_PFN)?;
        self.page.as_deref_mut().map(|p| (p, pfn))
    }
}
