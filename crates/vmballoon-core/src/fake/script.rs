//! The scripted host: [`ScriptedBackdoor`], an embedded-hal-mock style [`Backdoor`] whose
//! expected calls are listed up front as [`Expect`]s, replayed in order and checked by
//! [`ScriptedBackdoor::done`] (and on drop).
//!
//! An [`Expect`] names one call the guest must make and the registers the host answers with.
//! The constructors read like the protocol (`docs/protocol.md` §2): [`Expect::start`],
//! [`Expect::guest_id`], [`Expect::target`], [`Expect::batch`], [`Expect::page`], each
//! answered with SUCCESS unless a reply modifier ([`Expect::with_status`],
//! [`Expect::from_empty_port`], [`Expect::replies`]) says otherwise. The register-level
//! [`Expect::call`] and [`Expect::command`] remain for what no constructor names.
//!
//! ```
//! use vmballoon_core::channel::Channel;
//! use vmballoon_core::fake::{Expect, ScriptedBackdoor};
//! use vmballoon_core::protocol::{Capabilities, Command, Status};
//! use vmballoon_core::units::Frames;
//!
//! let host = ScriptedBackdoor::new([
//!     Expect::start(0x2E),                            // everything vmballoon asks for
//!     Expect::guest_id(),                             // Windows
//!     Expect::target(Frames::from_mib(4096), 16_384), // limit 4 GiB; target 64 MiB
//!     Expect::any(Command::Target).with_status(Status::Busy),
//! ]);
//! let mut channel = Channel::new(host.clone());
//! channel.start(Capabilities::REQUESTED).unwrap();
//! channel.guest_id().unwrap();
//! assert_eq!(channel.get_target(Frames::from_mib(4096)), Ok(Frames::new(16_384)));
//! assert!(channel.get_target(Frames::from_mib(4096)).unwrap_err().is_busy());
//! host.done();
//! ```
//!
//! Test code: a broken expectation panics, which is its job.
#![allow(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test double: a broken expectation must fail the test loudly"
)]

use std::boxed::Box;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::vec::Vec;

use crate::protocol::{
    BATCH_CAPACITY, Backdoor, BatchPage, Capabilities, Command, GUEST_TYPE, RawReply, Status,
};
use crate::units::{Frames, Pfn};

/// One expected backdoor call and the reply to give.
///
/// Build one with a constructor that names the call ([`Expect::start`], [`Expect::target`],
/// ...), then adjust the reply ([`Expect::with_status`]) or the batch page
/// ([`Expect::entry_statuses`], [`Expect::overwrite_entry`], [`Expect::entries_in`]).
#[derive(Clone, Debug)]
pub struct Expect {
    command: u32,
    args: Option<(u64, u64)>,
    entries_in: Option<Vec<u64>>,
    entry_statuses: Vec<u32>,
    overwrites: Vec<(usize, u64)>,
    reply: RawReply,
}

/// What the START of the reset sequence asks for (`Capabilities::REQUESTED`, `0x2E`).
const REQUESTED: u64 = Capabilities::REQUESTED.bits() as u64;

impl Expect {
    // --- Calls, by what the guest sends. Each is answered with SUCCESS (EAX 0, RBX 0,
    // --- RCX 0) unless the constructor says otherwise.

    /// START asking for what vmballoon asks for (`0x2E`), answered by a current host:
    /// `0x03000000` (SUCCESS_WITH_CAPABILITIES) with `granted` in RCX (`docs/protocol.md`
    /// §2.1, §4). `granted` is the raw register: a host may set bits that were not asked for.
    ///
    /// For any other answer to START, adjust the reply: `Expect::start(0)` (granting nothing)
    /// `.with_status(Status::Reset)`, or `.from_empty_port()` for no balloon host at all.
    #[must_use]
    pub fn start(granted: u64) -> Self {
        Self::call(Command::Start.number(), REQUESTED, 0).replies(
            Status::SuccessWithCapabilities.raw(),
            0,
            granted,
        )
    }

    /// START asking for `0x2E`, answered by a legacy (protocol 2) host: plain SUCCESS and
    /// nothing in RCX, which means BASIC only (`docs/protocol.md` §4).
    #[must_use]
    pub fn legacy_start() -> Self {
        Self::call(Command::Start.number(), REQUESTED, 0)
    }

    /// START(0), the "null capability" start that closes the session before pages are
    /// freed (shutdown, or batching granted without a batch page), answered with SUCCESS.
    #[must_use]
    pub fn null_start() -> Self {
        Self::call(Command::Start.number(), 0, 0)
    }

    /// GUEST_ID with the Windows value (4), answered with SUCCESS (`docs/protocol.md` §2.4).
    #[must_use]
    pub fn guest_id() -> Self {
        Self::call(Command::GuestId.number(), GUEST_TYPE as u64, 0)
    }

    /// The START and GUEST_ID that open a session on a host granting `granted`: the reset
    /// sequence as the engine runs it when it has a batch page.
    #[must_use]
    pub fn handshake(granted: u64) -> [Self; 2] {
        [Self::start(granted), Self::guest_id()]
    }

    /// TARGET with `limit` (the guest's RAM) in RBX, answered with SUCCESS and `target` in
    /// RBX (`docs/protocol.md` §2.2). `target` is the raw register, in 4 KiB frames.
    #[must_use]
    pub fn target(limit: Frames, target: u64) -> Self {
        Self::call(Command::Target.number(), limit.get(), 0).replies(0, target, 0)
    }

    /// A batched command (BATCHED_LOCK, BATCHED_UNLOCK or their 2 MiB forms) over
    /// [`ScriptedBackdoor::BATCH_PFN`] with `count` entries in RSI, answered with SUCCESS and
    /// `target` in RBX (`docs/protocol.md` §2.5). Every entry keeps status SUCCESS unless
    /// [`Expect::entry_statuses`] or [`Expect::overwrite_entry`] says otherwise.
    #[must_use]
    pub fn batch(command: Command, count: u64, target: u64) -> Self {
        Self::call(command.number(), ScriptedBackdoor::BATCH_PFN, count).replies(0, target, 0)
    }

    /// A single-page LOCK or UNLOCK of frame `pfn`, answered with SUCCESS and `target` in
    /// RBX (`docs/protocol.md` §2.3).
    #[must_use]
    pub fn page(command: Command, pfn: u64, target: u64) -> Self {
        Self::call(command.number(), pfn, 0).replies(0, target, 0)
    }

    /// `command` with any arguments, answered with SUCCESS.
    #[must_use]
    pub fn any(command: Command) -> Self {
        Self::command(command.number())
    }

    /// Command number `command` with exactly these RBX / RSI arguments, answered with
    /// SUCCESS (EAX, RBX and RCX all 0).
    #[must_use]
    pub fn call(command: u32, arg1: u64, arg2: u64) -> Self {
        Self {
            args: Some((arg1, arg2)),
            ..Self::command(command)
        }
    }

    /// Command number `command` with any arguments, answered with SUCCESS (EAX, RBX and RCX
    /// all 0).
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

    // --- Replies.

    /// Answers with `status` in EAX instead; RBX and RCX stay as set.
    #[must_use]
    pub fn with_status(mut self, status: Status) -> Self {
        self.reply.status = status.raw();
        self
    }

    /// Answers as a port with no balloon behind it reads (QEMU's `vmport`, bare metal):
    /// EAX all ones, RBX and RCX left as the guest loaded them (`docs/protocol.md` §8).
    ///
    /// # Panics
    /// If the arguments are not scripted ([`Expect::command`], [`Expect::any`]).
    #[must_use]
    pub fn from_empty_port(mut self) -> Self {
        let (arg1, _) = self
            .args
            .expect("from_empty_port needs the arguments the guest loads");
        self.reply = RawReply {
            status: u32::MAX,
            result: arg1,
            capabilities: u64::from(self.command),
        };
        self
    }

    /// Answers with these raw EAX / RBX / RCX values.
    #[must_use]
    pub fn replies(mut self, status: u32, result: u64, capabilities: u64) -> Self {
        self.reply = RawReply {
            status,
            result,
            capabilities,
        };
        self
    }

    // --- The batch page.

    /// Expects the batch page to hold exactly these entries (raw values) before the call.
    #[must_use]
    pub fn entries_in(mut self, raw: &[u64]) -> Self {
        self.entries_in = Some(raw.to_vec());
        self
    }

    /// ORs these raw statuses into entries 0.. of the batch page during the call.
    #[must_use]
    pub fn entry_statuses(mut self, statuses: &[u32]) -> Self {
        self.entry_statuses = statuses.to_vec();
        self
    }

    /// Overwrites entry `index` with `raw` during the call (a host rewriting addresses).
    #[must_use]
    pub fn overwrite_entry(mut self, index: usize, raw: u64) -> Self {
        self.overwrites.push((index, raw));
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
    page: Option<Box<BatchPage>>,
}

impl Clone for ScriptedBackdoor {
    fn clone(&self) -> Self {
        let has_page = self.state.borrow().has_page;
        Self {
            state: Rc::clone(&self.state),
            page: has_page.then(|| Box::new(BatchPage::zeroed())),
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
            page: page.then(|| Box::new(BatchPage::zeroed())),
        }
    }

    /// Appends more expectations.
    pub fn expect(&self, more: impl IntoIterator<Item = Expect>) {
        self.state.borrow_mut().expected.extend(more);
    }

    /// Expected calls not made yet.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.state.borrow().expected.len()
    }

    /// Calls made so far.
    #[must_use]
    pub fn calls_made(&self) -> usize {
        self.state.borrow().made
    }

    /// Asserts that every expected call was made.
    ///
    /// # Panics
    /// If an expected call was not made.
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
        s.made = s.made.saturating_add(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(e: &Expect) -> (u32, u64, u64) {
        (e.reply.status, e.reply.result, e.reply.capabilities)
    }

    fn sent(e: &Expect) -> (u32, Option<(u64, u64)>) {
        (e.command, e.args)
    }

    #[test]
    fn constructors_script_the_registers_they_name() {
        let start = Expect::start(0x0E);
        assert_eq!(sent(&start), (0, Some((0x2E, 0))));
        assert_eq!(reply(&start), (0x0300_0000, 0, 0x0E));
        let legacy = Expect::legacy_start();
        assert_eq!(
            (sent(&legacy), reply(&legacy)),
            ((0, Some((0x2E, 0))), (0, 0, 0))
        );
        let null = Expect::null_start();
        assert_eq!((sent(&null), reply(&null)), ((0, Some((0, 0))), (0, 0, 0)));
        let id = Expect::guest_id();
        assert_eq!((sent(&id), reply(&id)), ((4, Some((4, 0))), (0, 0, 0)));
        let [s, g] = Expect::handshake(0x06);
        assert_eq!(
            (sent(&s), reply(&s)),
            ((0, Some((0x2E, 0))), (0x0300_0000, 0, 0x06))
        );
        assert_eq!(sent(&g), (4, Some((4, 0))));
        let t = Expect::target(Frames::from_mib(4096), 681_574);
        assert_eq!(
            (sent(&t), reply(&t)),
            ((1, Some((1_048_576, 0))), (0, 681_574, 0))
        );
        let b = Expect::batch(Command::Batched2mUnlock, 128, 7);
        assert_eq!(
            (sent(&b), reply(&b)),
            ((9, Some((ScriptedBackdoor::BATCH_PFN, 128))), (0, 7, 0))
        );
        let p = Expect::page(Command::Unlock, 0x101, 3);
        assert_eq!((sent(&p), reply(&p)), ((3, Some((0x101, 0))), (0, 3, 0)));
        let any = Expect::any(Command::BatchedLock);
        assert_eq!((sent(&any), reply(&any)), ((6, None), (0, 0, 0)));
    }

    #[test]
    fn reply_modifiers_change_only_what_they_name() {
        let busy = Expect::target(Frames::new(1), 9).with_status(Status::Busy);
        assert_eq!(reply(&busy), (8, 9, 0));
        let odd = Expect::any(Command::Target).with_status(Status::Unknown(0x77));
        assert_eq!(reply(&odd), (0x77, 0, 0));
        // An empty port: all ones in EAX, RBX and RCX as loaded (arg1, command number).
        let empty = Expect::start(0).from_empty_port();
        assert_eq!(reply(&empty), (u32::MAX, 0x2E, 0));
        let empty = Expect::target(Frames::new(5), 9).from_empty_port();
        assert_eq!(reply(&empty), (u32::MAX, 5, 1));
    }

    #[test]
    fn the_script_replays_replies_and_writes_entry_statuses() {
        let mut host = ScriptedBackdoor::new([
            Expect::start(0x2E),
            Expect::batch(Command::BatchedLock, 2, 40)
                .entries_in(&[0x1000, 0x2000])
                .entry_statuses(&[0, 5]),
        ]);
        let r = host.call(0, 0x2E, 0);
        assert_eq!((r.status, r.capabilities), (0x0300_0000, 0x2E));
        let (page, pfn) = host.batch_page().unwrap();
        assert_eq!(pfn.get(), ScriptedBackdoor::BATCH_PFN);
        page.entries[0] = 0x1000_u64.to_le();
        page.entries[1] = 0x2000_u64.to_le();
        let r = host.call(6, ScriptedBackdoor::BATCH_PFN, 2);
        assert_eq!((r.status, r.result), (0, 40));
        let (page, _) = host.batch_page().unwrap();
        assert_eq!(u64::from_le(page.entries[1]), 0x2005);
        assert_eq!(host.calls_made(), 2);
        host.done();
    }

    #[test]
    #[should_panic(expected = "wrong arguments")]
    fn a_call_with_other_arguments_fails_the_test() {
        let mut host = ScriptedBackdoor::new([Expect::target(Frames::new(100), 1)]);
        let _ = host.call(1, 101, 0);
    }

    #[test]
    #[should_panic(expected = "dropped without done()")]
    fn a_script_dropped_without_done_fails_the_test() {
        let _host = ScriptedBackdoor::new([]);
    }
}
