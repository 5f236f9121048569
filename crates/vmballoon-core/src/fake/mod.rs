//! Test doubles for the core's traits (feature `fake`; they use `std`, and the driver never
//! enables it). One concern per module, every double re-exported here:
//!
//! | module | doubles | for |
//! |---|---|---|
//! | `script` | [`ScriptedBackdoor`], [`Expect`] | pinning the exact protocol sequence: the host's calls listed up front, replayed in order, checked by [`ScriptedBackdoor::done`] |
//! | `world` | [`FakeWorld`], its handles [`FakePages`] and [`FakeMemory`], [`FakeUnit`] | a small guest that keeps Windows' books and checks on drop that no page leaked |
//! | `store` | [`VecStore`] | the shelves, staged batch and parked units a platform keeps (also the simulator's) |
//! | `clock` | [`ManualClock`] | time that moves only when told |
//! | `minimal` | [`OpenHost`], [`RangePages`], [`RangeUnit`], [`StaticMemory`] | the cheapest platform, so a benchmark sees the engine's own work |
//!
//! These are test code: they panic on a broken expectation, which is their job.

mod clock;
mod minimal;
mod script;
mod store;
mod world;

pub use clock::ManualClock;
pub use minimal::{OpenHost, RangePages, RangeUnit, StaticMemory};
pub use script::{Expect, ScriptedBackdoor};
pub use store::VecStore;
pub use world::{FakeMemory, FakePages, FakeUnit, FakeWorld};
