//! `vmballoon-testkit`: what the property tests (`tests/properties.rs`), the hostile-input
//! tests (`tests/hostile_inputs.rs`) and the fuzz targets (`fuzz/`) share, so that they
//! check the very same rules. Test code only: it uses `std` and the simulator, and the
//! driver never depends on it.
//!
//! The engine under attack, one concern per module:
//!
//! | module | what it holds |
//! |---|---|
//! | [`harness`] | [`harness::Harness`]: one simulated VM running the real engine against the hostile host and guest, with every invariant checked after every tick, then recovery and unload; [`harness::run`] for one whole run |
//! | [`host`] | [`host::Hostile`], the `Backdoor` that answers as a [`host::Reply`] script says (with readable constructors such as [`host::Reply::status`]) and otherwise as the simulator's VMware host |
//! | [`guest`] | the simulator's Windows guest as a faulty allocator and memory source ([`guest::Faults`]), and the [`guest::GuestStep`]s between ticks |
//! | [`oracle`] | what the engine must know and may do, computed independently of it, and the broken invariants |
//!
//! The decoders against independent specifications:
//!
//! | module | what it holds |
//! |---|---|
//! | [`channel`] | a [`channel::TransferCase`] (START, TARGET, one transfer, against a host that answers anything) and [`channel::check`], which runs it through the core's `Channel` and compares every observable with `docs/protocol.md` §3–§5 |
//! | [`memory`] | [`memory::check`]: the driver's `ZwQuerySystemInformation` parsers (`vmballoon_nt::memory`) against an independent reading of `docs/windows-memory.md` §3.2 |

pub mod channel;
pub mod guest;
pub mod harness;
pub mod host;
pub mod memory;
pub mod oracle;
