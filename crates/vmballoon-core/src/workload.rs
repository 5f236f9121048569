//! Benchmark workloads shared by the criterion benches and the callgrind harness
//! (feature `fake`): the engine on the cheapest platform ([`OpenHost`], [`RangePages`],
//! [`StaticMemory`]), so the measurement is the core's own work per frame.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    reason = "benchmark harness, not driver code"
)]

use crate::config::{Config, Param, RawConfig, validate};
use crate::engine::Balloon;
use crate::fake::{ManualClock, OpenHost, RangePages, StaticMemory};
use crate::protocol::Capabilities;
use crate::units::{Frames, PageSize};

/// The engine on the minimal-cost platform.
pub type BenchBalloon = Balloon<OpenHost, RangePages, StaticMemory, ManualClock>;

/// Which path to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Inflate from empty to the target.
    Inflate,
    /// Deflate from the target to empty.
    Deflate,
}

/// An engine with a started session whose host asks for `frames` of `size` pages; for
/// [`Path::Deflate`] already inflated to it, with the host target then set to zero.
#[must_use]
pub fn setup(path: Path, size: PageSize, frames: Frames) -> BenchBalloon {
    let (caps, large) = match size {
        // BASIC | BATCHED: 4 KiB pages only, and the registry agrees.
        PageSize::Small => (Capabilities::BASIC.union(Capabilities::BATCHED), 0),
        // Everything vmballoon asks for (0x2E), 2 MiB pages included.
        PageSize::Large => (Capabilities::REQUESTED, 1),
    };
    let raw = RawConfig::new().with(Param::UseLargePages, large);
    let total = Frames::from_mib(64 * 1024);
    let config = Config {
        ..validate(&raw, total).config
    };
    let host = OpenHost::new(u64::from(caps.bits()), Frames::ZERO);
    let mut b = Balloon::new(
        host,
        RangePages::new(),
        StaticMemory::roomy(total),
        ManualClock::new(),
        config,
    );
    b.tick(); // session start, target 0
    b.backdoor_mut().set_target(frames);
    if path == Path::Deflate {
        run(&mut b);
        b.backdoor_mut().set_target(Frames::ZERO);
    }
    b
}

/// Ticks until the engine has no more work; returns the frames moved.
pub fn run(b: &mut BenchBalloon) -> Frames {
    let mut moved = Frames::ZERO;
    loop {
        let r = b.tick();
        moved = moved.saturating_add(r.inflated).saturating_add(r.deflated);
        if !r.more_work {
            return moved;
        }
    }
}
