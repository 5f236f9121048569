//! Fuzz bytes → cases. Every choice is biased toward the values that matter (the status
//! codes, the capability sets, the absurd targets) but can reach any value.

use arbitrary::{Result, Unstructured};
use vmballoon_core::config::{Param, RawConfig, RawValue, validate};
use vmballoon_core::protocol::Capabilities;
use vmballoon_core::units::Frames;
use vmballoon_sim::guest::PinKind;
use vmballoon_sim::host::HostSpec;

use vmballoon_testkit::channel::{EntryOp, TransferCase};
use vmballoon_testkit::guest::{Faults, GuestStep, guest_spec};
use vmballoon_testkit::harness::Setup;
use vmballoon_testkit::host::{EntryReply, Reply, status};

/// EAX: each status class, 0x03000000, undefined values, anything.
pub fn eax(u: &mut Unstructured<'_>) -> Result<u32> {
    Ok(match u.int_in_range(0u8..=9)? {
        0 => status::SUCCESS,
        1 => status::SUCCESS_WITH_CAPS,
        2 => status::FAILURE,
        3 => status::RESET,
        4 => status::BUSY,
        5 | 6 => u.int_in_range(1u32..=6)?,
        7 => u.int_in_range(9u32..=0xFFFF)?,
        _ => u.arbitrary()?,
    })
}

/// A target in frames for a guest of `ram_mib`: in range, 0, past RAM, around u32::MAX,
/// u64::MAX, anything.
pub fn target(u: &mut Unstructured<'_>, ram_mib: u64) -> Result<u64> {
    let ram = Frames::from_mib(ram_mib).get();
    Ok(match u.int_in_range(0u8..=7)? {
        0..=2 => u.int_in_range(0..=ram)?,
        3 => 0,
        4 => u.int_in_range(ram..=ram.saturating_mul(4))?,
        5 => u64::from(u32::MAX) + u64::from(u.int_in_range(0u8..=1)?),
        6 => u64::MAX,
        _ => u.arbitrary()?,
    })
}

fn entry_reply(u: &mut Unstructured<'_>) -> Result<EntryReply> {
    Ok(match u.int_in_range(0u8..=6)? {
        0..=2 => EntryReply::Honest,
        3 | 4 => EntryReply::Refuse(u.arbitrary()?),
        5 => EntryReply::Rewrite {
            xor: u.arbitrary()?,
            status: u.arbitrary()?,
        },
        _ => EntryReply::Reserved(u.arbitrary()?),
    })
}

/// One host reply.
pub fn reply(u: &mut Unstructured<'_>, ram_mib: u64) -> Result<Reply> {
    Ok(match u.int_in_range(0u8..=9)? {
        0..=3 => Reply::Honest,
        4..=6 => Reply::answer(eax(u)?, target(u, ram_mib)?, u.arbitrary()?),
        7 => Reply::Target(target(u, ram_mib)?),
        8 => Reply::Caps(u.arbitrary()?),
        _ => {
            let n = u.int_in_range(1usize..=6)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(entry_reply(u)?);
            }
            let tail = if u.arbitrary()? { u.arbitrary()? } else { 0 };
            Reply::entries(entries, tail)
        }
    })
}

fn raw_value(u: &mut Unstructured<'_>, max: u32) -> Result<RawValue> {
    Ok(match u.int_in_range(0u8..=8)? {
        0..=2 => RawValue::Missing,
        3 => RawValue::WrongType,
        4..=7 => RawValue::Dword(u.int_in_range(0..=max)?),
        _ => RawValue::Dword(u.arbitrary()?),
    })
}

/// The shortest poll interval of these runs, in milliseconds. Each run ends with 30
/// simulated seconds of recovery, ticked at the poll interval: a 100 ms poll would make that
/// 300 ticks, the default second 30, and 3 s 10. Shorter polls, the default one and a
/// registry without the value are the property tests' (`tests/properties.rs`).
const MIN_POLL_MS: u32 = 3000;

fn registry(u: &mut Unstructured<'_>, ram_mib: u64) -> Result<vmballoon_core::config::Config> {
    let ram = u32::try_from(ram_mib).unwrap_or(u32::MAX);
    let mut raw = RawConfig::new();
    for p in Param::ALL {
        let max = match p {
            Param::MaxBalloonMb => ram,
            Param::ReserveMb => ram / 2,
            Param::MaxBalloonPercent => 100,
            Param::PollIntervalMs => 10_000,
            Param::UseLargePages | Param::DeflateOnLowMemory => 1,
        };
        let mut v = if p == Param::ReserveMb && u.ratio(3u8, 4)? {
            // An explicit small reserve most of the time: in the small guests of these runs
            // the automatic one (half of RAM plus 8 MiB below 128 MiB) leaves the balloon
            // no room at all.
            RawValue::Dword(u.int_in_range(1..=(ram / 4).max(1))?)
        } else {
            raw_value(u, max)?
        };
        if p == Param::PollIntervalMs && !matches!(v, RawValue::Dword(x) if x >= MIN_POLL_MS) {
            v = RawValue::Dword(u.int_in_range(MIN_POLL_MS..=10_000)?);
        }
        raw.set(p, v);
    }
    Ok(validate(&raw, Frames::from_mib(ram_mib)).config)
}

/// A guest, a host and the registry.
///
/// The guests are small, 4 to 16 MiB (1024 to 4096 frames, two to eight 2 MiB blocks):
/// enough for whole blocks and scattered pages, several batches per pass, migration and
/// every host capability set, while what a run costs (the simulator models every frame)
/// stays small enough for tens of thousands of runs a second. Guests of 16 to 512 MiB are
/// the property tests' (`tests/properties.rs`).
pub fn setup(u: &mut Unstructured<'_>) -> Result<Setup> {
    let ram = match u.int_in_range(0u8..=3)? {
        0 | 1 | 2 => u.int_in_range(4u64..=8)?,
        _ => u.int_in_range(8u64..=16)?,
    };
    let os = u.int_in_range(0..=ram / 2)?;
    let pagefile = if u.arbitrary()? {
        0
    } else {
        u.int_in_range(0..=ram * 2)?
    };
    let committed = if u.arbitrary()? {
        0
    } else {
        u.int_in_range(0..=ram)?
    };
    let scattered = u.arbitrary()?;
    let c = Capabilities::from_bits;
    let caps = match u.int_in_range(0u8..=6)? {
        0 => None,
        1 => Some(c(0x02)),
        2 => Some(c(0x06)),
        3 => Some(c(0x04)),
        4 => Some(c(0x0E)),
        5 => Some(c(0x2E)),
        _ => {
            let b: u32 = u.int_in_range(0..=15)?;
            Some(c((b & 7) << 1 | (b & 8) << 2))
        }
    };
    let pct = match u.int_in_range(0u8..=2)? {
        0 => 65,
        1 => 0,
        _ => u.int_in_range(0u8..=100)?,
    };
    Ok(Setup {
        guest: guest_spec(ram, os, pagefile, committed, scattered),
        host: HostSpec {
            capabilities: caps,
            max_balloon_percent: pct,
        },
        config: registry(u, ram)?,
    })
}

fn faults(u: &mut Unstructured<'_>) -> Result<Faults> {
    Ok(Faults {
        fail_snapshots: u.int_in_range(0..=2)?,
        force_low_memory: u.int_in_range(0..=3)?,
        fail_alloc: [u.int_in_range(0..=2)?, u.int_in_range(0..=2)?],
        short_alloc: [u.int_in_range(0..=3)?, u.int_in_range(0..=3)?],
    })
}

/// One guest step.
pub fn guest_step(u: &mut Unstructured<'_>, ram_mib: u64) -> Result<GuestStep> {
    let kind = |u: &mut Unstructured<'_>| u.choose(&PinKind::ALL).copied();
    Ok(match u.int_in_range(0u8..=11)? {
        0 | 1 => GuestStep::Idle,
        2 | 3 => GuestStep::Lock {
            kind: kind(u)?,
            mib: u.int_in_range(0..=ram_mib / 2)?,
        },
        4 => GuestStep::Lock {
            kind: kind(u)?,
            mib: u.int_in_range(0..=ram_mib * 2)?,
        },
        5 => GuestStep::Commit {
            mib: u.int_in_range(0..=ram_mib)?,
        },
        6 | 7 => GuestStep::Release(u.arbitrary()?),
        8 => GuestStep::Faults(faults(u)?),
        9 => GuestStep::Config(registry(u, ram_mib)?),
        _ => GuestStep::Target(target(u, ram_mib)?),
    })
}

/// A whole engine run: setup, host script, guest steps (at most 12: each is a tick; the
/// property tests run up to 24), recovery target.
pub fn engine_run(u: &mut Unstructured<'_>) -> Result<(Setup, Vec<Reply>, Vec<GuestStep>, u64)> {
    let s = setup(u)?;
    let ram = s.guest.ram.mib_floor();
    let n = u.int_in_range(0usize..=120)?;
    let mut script = Vec::with_capacity(n);
    for _ in 0..n {
        script.push(reply(u, ram)?);
    }
    let m = u.int_in_range(1usize..=12)?;
    let mut steps = Vec::with_capacity(m);
    for _ in 0..m {
        steps.push(guest_step(u, ram)?);
    }
    let t = target(u, ram)?;
    Ok((s, script, steps, t))
}

fn pfn(u: &mut Unstructured<'_>) -> Result<u64> {
    Ok(match u.int_in_range(0u8..=9)? {
        0..=4 => u.int_in_range(0u64..=0xF_FFFF)?,
        5 | 6 => u.int_in_range(0u64..=0x7FF)? * 512,
        7 => u64::from(u32::MAX) + u64::from(u.int_in_range(0u8..=1)?),
        8 => (u64::MAX >> 12) + u64::from(u.int_in_range(0u8..=1)?),
        _ => u.arbitrary()?,
    })
}

fn entry_op(u: &mut Unstructured<'_>) -> Result<EntryOp> {
    Ok(match u.int_in_range(0u8..=7)? {
        0..=2 => EntryOp::Keep,
        3 | 4 => EntryOp::Or(u.int_in_range(0u64..=31)?),
        5 => EntryOp::Or(u.int_in_range(0u64..=0xFFF)?),
        6 => EntryOp::Or(u.arbitrary()?),
        _ => EntryOp::Raw(u.arbitrary()?),
    })
}

/// START, TARGET and one transfer.
pub fn transfer_case(u: &mut Unstructured<'_>) -> Result<TransferCase> {
    let start_status = match u.int_in_range(0u8..=3)? {
        0 | 1 => status::SUCCESS_WITH_CAPS,
        2 => status::SUCCESS,
        _ => eax(u)?,
    };
    let start_rcx = if u.arbitrary()? {
        u64::from(u.arbitrary::<u8>()?)
    } else {
        u.arbitrary()?
    };
    let target_reply = if u.arbitrary()? {
        let s = if u.arbitrary()? { 0 } else { eax(u)? };
        Some((s, target(u, 4096)?))
    } else {
        None
    };
    let limit = if u.arbitrary()? {
        u.int_in_range(0u64..=0xF_FFFF)?
    } else {
        u.arbitrary()?
    };
    let lock = u.arbitrary()?;
    let large = u.arbitrary()?;
    let n = u.int_in_range(0usize..=40)?;
    let mut pfns = Vec::with_capacity(n);
    for _ in 0..n {
        pfns.push(pfn(u)?);
    }
    let count = if u.ratio(1u8, 5)? {
        u.int_in_range(0usize..=600)?
    } else {
        u.int_in_range(0usize..=40)?
    };
    let r = u.int_in_range(1usize..=5)?;
    let mut replies = Vec::with_capacity(r);
    for _ in 0..r {
        let s = if u.ratio(2u8, 3)? { 0 } else { eax(u)? };
        replies.push((s, target(u, 4096)?, u.arbitrary()?));
    }
    let k = u.int_in_range(1usize..=5)?;
    let mut ops = Vec::with_capacity(k);
    for _ in 0..k {
        ops.push(entry_op(u)?);
    }
    let tail = if u.arbitrary()? { u.arbitrary()? } else { 0 };
    Ok(TransferCase {
        start: (start_status, start_rcx),
        target: target_reply,
        limit,
        lock,
        large,
        pfns,
        count,
        replies,
        ops,
        tail,
    })
}
