//! An independent specification of reply decoding, checked against the core's `Channel`:
//! START's negotiation, TARGET's width rule, and one `transfer` (batched or single-page,
//! lock or unlock, 4 KiB or 2 MiB) against a host that answers any EAX / RBX / RCX and
//! writes anything into the batch page. Used by `tests/properties.rs` and the
//! `channel_reply` fuzz target.
//!
//! The expected outcome is computed here from `docs/protocol.md` §3–§5 and the decisions the
//! core documents (a rewritten address is "not done", a batch failure overrides entry
//! statuses, a target too wide for a 32-bit session is rejected but does not undo the
//! pages), without calling the channel's own helpers.

use vmballoon_core::channel::{Channel, Direction, Transfer};
use vmballoon_core::error::Error;
use vmballoon_core::mask::PageMask;
use vmballoon_core::protocol::{
    BATCH_CAPACITY, Backdoor, BatchPage, Capabilities, Command, RawReply, Status,
};
use vmballoon_core::units::{Frames, PageSize, Pfn};

/// What the host writes into one batch entry during the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryOp {
    /// Leaves it as the guest wrote it (status SUCCESS).
    Keep,
    /// ORs these bits into the entry (the low 5 are the status; higher ones reach the
    /// reserved bits and the address).
    Or(u64),
    /// Overwrites it.
    Raw(u64),
}

/// One case: START, optionally TARGET, then one transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferCase {
    /// START's EAX and RCX.
    pub start: (u32, u64),
    /// TARGET's EAX and RBX, if a TARGET is sent after START.
    pub target: Option<(u32, u64)>,
    /// The limit TARGET sends.
    pub limit: u64,
    /// Lock (true) or unlock.
    pub lock: bool,
    /// 2 MiB pages (true) or 4 KiB.
    pub large: bool,
    /// Page `i`'s PFN; a value above `Pfn::MAX` means the page has none.
    pub pfns: Vec<u64>,
    /// The count passed to `transfer` (pages past `pfns` have no PFN; above 512 clamps).
    pub count: usize,
    /// EAX, RBX, RCX of each page call, cycled.
    pub replies: Vec<(u32, u64, u64)>,
    /// What the host writes into entry `k` of a batch, cycled.
    pub ops: Vec<EntryOp>,
    /// Written over every entry past the batch's count when not zero.
    pub tail: u64,
}

const BATCH_PFN: u64 = 0xB_A7C4;

struct CaseHost {
    start: RawReply,
    target: RawReply,
    replies: Vec<RawReply>,
    next: usize,
    ops: Vec<EntryOp>,
    tail: u64,
    page: Box<BatchPage>,
    calls: Vec<(u32, u64, u64, Vec<u64>)>,
}

impl Backdoor for CaseHost {
    fn call(&mut self, command: u32, arg1: u64, arg2: u64) -> RawReply {
        let n = usize::try_from(arg2).unwrap_or(0).min(BATCH_CAPACITY);
        let batched = matches!(command, 6..=9);
        let sent = if batched {
            self.page.entries[..n]
                .iter()
                .map(|e| u64::from_le(*e))
                .collect()
        } else {
            Vec::new()
        };
        self.calls.push((command, arg1, arg2, sent));
        if batched {
            for k in 0..n {
                let raw = u64::from_le(self.page.entries[k]);
                let new = match self.ops.get(k % self.ops.len().max(1)) {
                    None | Some(EntryOp::Keep) => raw,
                    Some(EntryOp::Or(bits)) => raw | bits,
                    Some(EntryOp::Raw(v)) => *v,
                };
                self.page.entries[k] = new.to_le();
            }
            if self.tail != 0 {
                for (i, e) in self.page.entries.iter_mut().enumerate().skip(n) {
                    *e = (self.tail ^ i as u64).to_le();
                }
            }
        }
        match command {
            0 => self.start,
            1 => self.target,
            _ => {
                let r = self.replies[self.next % self.replies.len()];
                self.next += 1;
                r
            }
        }
    }

    fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)> {
        Some((&mut self.page, Pfn::new(BATCH_PFN)?))
    }
}

/// The error a reply status means for `command`, by `docs/protocol.md` §3 (`None`: success).
#[must_use]
pub fn expected_error(command: Command, status: u32) -> Option<Error> {
    match status {
        0 => None,
        0x0300_0000 if command == Command::Start => None,
        7 => Some(Error::Reset { command }),
        8 => Some(Error::Busy { command }),
        1..=6 | 0xFFFF_FFFF => Some(Error::Host {
            command,
            status: Status::from_raw(status),
        }),
        raw => Some(Error::UnknownStatus { command, raw }),
    }
}

/// The session START gives, by `docs/protocol.md` §4: (batched, large pages, 64-bit targets),
/// or `None`.
#[must_use]
pub fn expected_session(status: u32, rcx: u64) -> Option<(bool, bool, bool)> {
    let granted = match status {
        0x0300_0000 => (rcx & 0xFFFF_FFFF) & 0x2E,
        0 => 0x02,
        _ => return None,
    };
    let batched = granted & 0x04 != 0;
    if !batched && granted & 0x02 == 0 {
        return None;
    }
    Some((batched, batched && granted & 0x08 != 0, granted & 0x20 != 0))
}

fn mask(v: &[usize]) -> PageMask {
    let mut m = PageMask::EMPTY;
    for &i in v {
        m.insert(i);
    }
    m
}

/// Runs `case` through a real `Channel` and compares every observable with the
/// specification above.
///
/// # Errors
/// The first difference, described.
#[allow(clippy::too_many_lines)]
pub fn check(case: &TransferCase) -> Result<(), String> {
    let (status, rbx) = case.target.unwrap_or_default();
    let replies: Vec<RawReply> = if case.replies.is_empty() {
        vec![RawReply::default()]
    } else {
        case.replies
            .iter()
            .map(|&(status, result, capabilities)| RawReply {
                status,
                result,
                capabilities,
            })
            .collect()
    };
    let host = CaseHost {
        start: RawReply {
            status: case.start.0,
            result: 0,
            capabilities: case.start.1,
        },
        target: RawReply {
            status,
            result: rbx,
            capabilities: 0,
        },
        replies,
        next: 0,
        ops: case.ops.clone(),
        tail: case.tail,
        page: Box::new(BatchPage::zeroed()),
        calls: Vec::new(),
    };
    let mut ch = Channel::new(host);
    let err = |m: String| Err(format!("{m}\n  case: {case:?}"));

    // START.
    let session = expected_session(case.start.0, case.start.1);
    let started = ch.start(Capabilities::REQUESTED);
    match (
        expected_error(Command::Start, case.start.0),
        session,
        &started,
    ) {
        (Some(e), _, Err(got)) if *got == e => {}
        (None, None, Err(Error::NotGranted { .. })) => {}
        (None, Some((batched, large, wide)), Ok(s)) => {
            let mode_ok = (s.mode == vmballoon_core::protocol::LockMode::Batched) == batched;
            if !mode_ok || s.large_pages != large || s.target_64bit != wide {
                return err(format!("START negotiated {s:?}, expected {:?}", session));
            }
            if !Capabilities::REQUESTED.contains(s.capabilities) {
                return err(format!("granted {s:?} beyond the request"));
            }
        }
        (e, s, got) => {
            return err(format!(
                "START answered {got:?}, expected error {e:?} / session {s:?}"
            ));
        }
    }
    ch.finish_reset();
    let mut session = if started.is_ok() { session } else { None };
    let mut target = 0u64;

    // TARGET.
    if let (Some((status, rbx)), Some((_, _, wide))) = (case.target, session) {
        let got = ch.get_target(Frames::new(case.limit));
        let too_wide_limit = !wide && case.limit > u64::from(u32::MAX);
        let want = if too_wide_limit {
            Err(Error::TooWide {
                command: Command::Target,
                value: case.limit,
            })
        } else {
            match expected_error(Command::Target, status) {
                Some(e) => Err(e),
                None if !wide && rbx > u64::from(u32::MAX) => Err(Error::ReplyOutOfRange {
                    command: Command::Target,
                    value: rbx,
                }),
                None => Ok(Frames::new(rbx)),
            }
        };
        if got != want {
            return err(format!("TARGET gave {got:?}, expected {want:?}"));
        }
        if let Ok(t) = want {
            target = t.get();
        }
        if matches!(want, Err(Error::Reset { .. })) {
            session = None;
            if ch.session().is_some() || !ch.reset_pending() {
                return err("RESET on TARGET did not end the session".to_owned());
            }
        }
        if !too_wide_limit
            && ch.backdoor().calls.last().map(|c| (c.0, c.1)) != Some((1, case.limit))
        {
            return err("TARGET did not send the limit in RBX".to_owned());
        }
    }
    if ch.target().get() != target {
        return err(format!("target {} expected {target}", ch.target().get()));
    }
    let calls_before = ch.backdoor().calls.len();

    // The transfer.
    let size = if case.large {
        PageSize::Large
    } else {
        PageSize::Small
    };
    let direction = if case.lock {
        Direction::Lock
    } else {
        Direction::Unlock
    };
    let pfns = case.pfns.clone();
    let t = ch.transfer(direction, size, case.count, |i| {
        pfns.get(i).and_then(|&p| Pfn::new(p))
    });
    let count = case.count.min(BATCH_CAPACITY);
    let valid = |i: usize| {
        pfns.get(i)
            .copied()
            .filter(|&p| p <= Pfn::MAX.get())
            .filter(|&p| !case.large || p % 512 == 0)
    };
    let want = expected_transfer(case, session, count, &valid, &mut target);
    let calls = &ch.backdoor().calls[calls_before..];
    if let Err(m) = check_sent(case, session, count, &valid, calls) {
        return err(m);
    }
    if t != want {
        return err(format!("transfer gave {t:?}\n  expected {want:?}"));
    }
    if ch.target().get() != target {
        return err(format!(
            "after the transfer the target is {}, expected {target}",
            ch.target().get()
        ));
    }
    if t.stop.is_some_and(Error::is_reset) && (ch.session().is_some() || !ch.reset_pending()) {
        return err("RESET did not end the session".to_owned());
    }
    Ok(())
}

fn command_for(case: &TransferCase, batched: bool) -> Command {
    match (batched, case.lock, case.large) {
        (false, true, _) => Command::Lock,
        (false, false, _) => Command::Unlock,
        (true, true, false) => Command::BatchedLock,
        (true, false, false) => Command::BatchedUnlock,
        (true, true, true) => Command::Batched2mLock,
        (true, false, true) => Command::Batched2mUnlock,
    }
}

fn expected_transfer(
    case: &TransferCase,
    session: Option<(bool, bool, bool)>,
    count: usize,
    valid: &dyn Fn(usize) -> Option<u64>,
    target: &mut u64,
) -> Transfer {
    let mut out = Transfer {
        done: PageMask::EMPTY,
        refused: PageMask::EMPTY,
        calls: 0,
        stop: None,
        not_needed: false,
    };
    let Some((batched, large_ok, wide)) = session else {
        out.stop = Some(Error::NotStarted {
            command: if case.lock {
                Command::Lock
            } else {
                Command::Unlock
            },
        });
        return out;
    };
    let command = command_for(case, batched);
    if case.large && !large_ok {
        out.stop = Some(Error::NotGranted { command });
        return out;
    }
    let fits = |v: u64| wide || v <= u64::from(u32::MAX);
    let (mut done, mut refused) = (Vec::new(), Vec::new());
    let replies: Vec<(u32, u64, u64)> = if case.replies.is_empty() {
        vec![(0, 0, 0)]
    } else {
        case.replies.clone()
    };
    if batched {
        let sent: Vec<(usize, u64)> = (0..count)
            .filter_map(|i| valid(i).map(|p| (i, p)))
            .collect();
        if case.lock {
            refused.extend((0..count).filter(|&i| valid(i).is_none()));
        }
        if !sent.is_empty() {
            out.calls = 1;
            let (status, rbx, _) = replies[0];
            if let Some(e) = expected_error(command, status) {
                out.stop = Some(e);
            } else {
                if fits(rbx) {
                    *target = rbx;
                } else {
                    out.stop = Some(Error::ReplyOutOfRange {
                        command,
                        value: rbx,
                    });
                }
                for (k, &(i, pfn)) in sent.iter().enumerate() {
                    let written = pfn << 12;
                    let after = match case.ops.get(k % case.ops.len().max(1)) {
                        None | Some(EntryOp::Keep) => written,
                        Some(EntryOp::Or(bits)) => written | bits,
                        Some(EntryOp::Raw(v)) => *v,
                    };
                    if after >> 12 != pfn {
                        continue; // a rewritten address tells nothing about our page
                    }
                    match (after & 0x1F, case.lock) {
                        (0, _) => done.push(i),
                        (2 | 3 | 5, true) => refused.push(i),
                        (6, true) => out.not_needed = true,
                        _ => {}
                    }
                }
            }
        }
    } else {
        for i in 0..count {
            // The first page not taken ends a single-page pass (`docs/protocol.md` §3): a
            // frame too high for EBX is refused locally, without a call.
            if valid(i).filter(|&p| p <= u64::from(u32::MAX)).is_none() {
                if case.lock {
                    refused.push(i);
                }
                break;
            }
            // Every page before this one was answered: the i-th reply is this page's.
            let (status, rbx, _) = replies[i % replies.len()];
            out.calls += 1;
            match expected_error(command, status) {
                None => {
                    done.push(i);
                    if fits(rbx) {
                        *target = rbx;
                    } else {
                        out.stop = Some(Error::ReplyOutOfRange {
                            command,
                            value: rbx,
                        });
                        break;
                    }
                }
                Some(Error::Host { status, .. }) => {
                    match (status.raw(), case.lock) {
                        (2 | 3 | 5, true) => refused.push(i),
                        (6, true) => out.not_needed = true,
                        _ => {}
                    }
                    break;
                }
                Some(e) => {
                    out.stop = Some(e);
                    break;
                }
            }
        }
    }
    out.done = mask(&done);
    out.refused = mask(&refused);
    out
}

/// What went on the wire: the command, RBX, RSI and (batched) the entries, in order.
fn check_sent(
    case: &TransferCase,
    session: Option<(bool, bool, bool)>,
    count: usize,
    valid: &dyn Fn(usize) -> Option<u64>,
    calls: &[(u32, u64, u64, Vec<u64>)],
) -> Result<(), String> {
    let Some((batched, large_ok, _)) = session else {
        return if calls.is_empty() {
            Ok(())
        } else {
            Err("a page command without a session".to_owned())
        };
    };
    if case.large && !large_ok {
        return if calls.is_empty() {
            Ok(())
        } else {
            Err("a 2 MiB command without the capability".to_owned())
        };
    }
    let command = command_for(case, batched).number();
    if batched {
        let sent: Vec<u64> = (0..count)
            .filter_map(|i| valid(i).map(|p| p << 12))
            .collect();
        match calls {
            [] if sent.is_empty() => Ok(()),
            [(c, a1, a2, entries)]
                if *c == command && *a1 == BATCH_PFN && *a2 == sent.len() as u64 =>
            {
                if *entries == sent {
                    Ok(())
                } else {
                    Err(format!("batch entries {entries:x?}, expected {sent:x?}"))
                }
            }
            other => Err(format!(
                "batched calls {:?}, expected one of command {command} with {} entries",
                other.iter().map(|c| (c.0, c.1, c.2)).collect::<Vec<_>>(),
                sent.len()
            )),
        }
    } else {
        let expected: Vec<u64> = (0..count)
            .map_while(|i| valid(i).filter(|&p| p <= u64::from(u32::MAX)))
            .collect();
        for (k, (c, a1, a2, _)) in calls.iter().enumerate() {
            if *c != command || expected.get(k) != Some(a1) || *a2 != 0 {
                return Err(format!(
                    "single-page call {k}: ({c}, {a1:#x}, {a2}), expected ({command}, {:x?}, 0)",
                    expected.get(k)
                ));
            }
        }
        Ok(())
    }
}
