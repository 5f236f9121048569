//! `vmballoon-serve`: the simulator's host and guest models as a server for the emulation
//! harness of `cargo xtask emulate`, which runs the real `vmballoon.sys` in an emulated
//! Windows kernel. The harness is only the CPU and the loader; everything the driver asks
//! of the VMware host or the Windows memory manager is answered here, by the same
//! [`HostModel`] (with its protocol checker) and [`GuestModel`] that judge the engine in
//! the simulator.
//!
//! # Protocol
//!
//! One JSON object per line on stdin, one JSON reply per line on stdout, in order. Every
//! request has an `op`; an error reply is `{"error": "..."}`.
//!
//! | op | request | reply |
//! |---|---|---|
//! | `init` | `scenario` (path of a scenario TOML) | `ram_frames`, `batch_pfn`, `duration_ns`, `registry` (value name → DWORD, or `"wrong-type"`) |
//! | `advance` | `to_ns`, `stop_on_low_memory`, `stop_on_high_commit` | `now_ns`, `low_memory`, `high_commit`: simulated time moves to `to_ns` (or to the first instant at which `LowMemoryCondition`, or `MaximumCommitCondition`, becomes signalled, if asked), applying the scenario's events, guest retries and the once-a-second working-set manager as [`crate::runner`] does |
//! | `backdoor` | `command`, `arg1`, `arg2`, `entries` (the batch page's first `arg2` entries, batched commands only) | `status`, `result`, `capabilities`, `entries` (written back) |
//! | `allocate` | `frames` (`TotalBytes` / 4 KiB), `whole_blocks` (`MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS` with a 2 MiB skip), `prefer_contiguous`, `below` (optional: (`HighAddress` + 1) / 4 KiB) | `pfns`: the MDL's PFN array (4 KiB frames), or `null` when Mm returns no MDL |
//! | `free` | `frames`: the PFN array of the MDL passed to `MmFreePagesFromMdl` | `{}`; anything but a whole, untouched MDL the model handed out is a contract violation |
//! | `inject` | one of `host_reset: true`, `host_busy_calls: N`, `host_refuse_next: N` | `{}`: the scenario event of that name, now (for faults at a given backdoor call rather than a given time) |
//! | `memory` | — | `total`, `resident_available`, `available`, `committed`, `commit_limit` (frames), `low_memory` and `high_commit` (the states of `\KernelObjects\LowMemoryCondition` and `\KernelObjects\MaximumCommitCondition`: [`GuestModel::low_memory`], [`GuestModel::high_commit`]) |
//! | `report` | — | the run's numbers: calls by command and answer, frames locked and unlocked, peak and final balloon (frames the host holds), protocol and contract violations, leaks |
//!
//! Every use of the guest model's allocation API is in one function,
//! [`guest_mm`]: the adapter between the driver's MDL calls and the model.

use std::io::{BufRead, Write};
use std::path::Path;

use serde_json::{Value, json};
use vmballoon_core::config::{Param, RawValue};
use vmballoon_core::platform::Clock;
use vmballoon_core::protocol::{BatchPage, Command};
use vmballoon_core::units::{Duration, Frames, Instant};

use crate::ManualClock;
use crate::guest::{GuestModel, MdlRequest, free_mdl_checked};
use crate::host::HostModel;
use crate::runner::TRIM_WAKE_DELAY;
use crate::scenario::{Action, Scenario};
use crate::world::{SharedWorld, World};

const SECOND: u64 = 1_000_000_000;

/// One call of the driver into the memory manager, as the adapter sees it.
#[derive(Debug)]
pub enum MmCall {
    /// `MmAllocatePagesForMdlEx`.
    Allocate(MdlRequest),
    /// `MmFreePagesFromMdl` on an MDL whose PFN array lists these 4 KiB frames.
    Free {
        /// The MDL's PFN array.
        frames: Vec<u64>,
    },
    /// 4 KiB frames still allocated to the driver (the leak count at the end).
    HeldFrames,
}

/// The outcome of an [`MmCall`].
#[derive(Debug, PartialEq, Eq)]
pub enum MmReply {
    /// The MDL's PFN array (4 KiB frames).
    Allocated(Vec<u64>),
    /// No MDL.
    NoMemory,
    /// Pages returned.
    Freed,
    /// Frames held ([`MmCall::HeldFrames`]).
    Frames(u64),
}

/// The adapter: every use of the guest model's allocation API. An allocation is the model's
/// `MmAllocatePagesForMdlEx`; a free goes through [`free_mdl_checked`], which records in the
/// contract checker any free of something other than a whole, untouched MDL the model
/// handed out (nothing is freed then) and any page the host still holds.
pub fn guest_mm(world: &SharedWorld, call: MmCall) -> MmReply {
    let mut w = world.borrow_mut();
    let w = &mut *w;
    match call {
        MmCall::Allocate(req) => match w.guest.mdl_allocate(req) {
            Some(pfns) => MmReply::Allocated(pfns),
            None => MmReply::NoMemory,
        },
        MmCall::Free { frames } => {
            free_mdl_checked(w, &frames);
            MmReply::Freed
        }
        MmCall::HeldFrames => MmReply::Frames(w.guest.balloon_frames().get()),
    }
}

/// Which signals end an `advance` early, the instant they become signalled.
#[derive(Clone, Copy, Debug, Default)]
struct StopOn {
    /// `\KernelObjects\LowMemoryCondition`.
    low: bool,
    /// `\KernelObjects\MaximumCommitCondition`.
    high_commit: bool,
}

/// The server's state: the scenario and the world.
pub struct Server {
    scenario: Scenario,
    clock: ManualClock,
    world: SharedWorld,
    page: Box<BatchPage>,
    next_event: usize,
    next_second: u64,
    trim_wake: Option<u64>,
    peak_held: u64,
}

impl Server {
    /// Loads `path` and builds the world at t = 0.
    ///
    /// # Errors
    /// The scenario file's error.
    pub fn new(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let scenario =
            Scenario::parse(&text, &path.display().to_string()).map_err(|e| e.to_string())?;
        let clock = ManualClock::new();
        let guest_model =
            GuestModel::new(scenario.guest).with_mdl_accounting(scenario.mdl_accounting);
        let host = HostModel::new(scenario.host, guest_model.total());
        let world = World::new(guest_model, host, clock.clone());
        Ok(Self {
            scenario,
            clock,
            world,
            page: Box::new(BatchPage::zeroed()),
            next_event: 0,
            next_second: SECOND,
            trim_wake: None,
            peak_held: 0,
        })
    }

    fn now(&self) -> u64 {
        self.clock.now().as_nanos()
    }

    fn init_reply(&self) -> Value {
        let w = self.world.borrow();
        let mut registry = serde_json::Map::new();
        for param in Param::ALL {
            match self.scenario.raw_config.get(param) {
                RawValue::Missing => {}
                RawValue::Dword(v) => {
                    registry.insert(param.name().to_owned(), json!(v));
                }
                RawValue::WrongType => {
                    registry.insert(param.name().to_owned(), json!("wrong-type"));
                }
            }
        }
        json!({
            "name": self.scenario.name,
            "ram_frames": w.guest.total().get(),
            "batch_pfn": w.guest.batch_page_pfn(),
            "duration_ns": self.scenario.duration.as_nanos(),
            "registry": registry,
        })
    }

    /// Moves simulated time to `to` (or to the first instant with `LowMemoryCondition`
    /// signalled, when `stop.low` and it was not signalled before; likewise
    /// `MaximumCommitCondition` with `stop.high_commit`), as the runner does between driver
    /// ticks.
    fn advance(&mut self, to: u64, stop: StopOn) -> Value {
        let (was_low, was_high) = {
            let w = self.world.borrow();
            (w.guest.low_memory(), w.guest.high_commit())
        };
        loop {
            let retry = self
                .world
                .borrow()
                .guest
                .next_retry()
                .map(Instant::as_nanos);
            let event = self
                .scenario
                .events
                .get(self.next_event)
                .map(|e| e.at.as_nanos());
            let t = [
                Some(self.next_second),
                event,
                retry,
                self.trim_wake,
                Some(to),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(to)
            .max(self.now());
            if t > to {
                break;
            }
            let now = self.now();
            if t > now {
                self.clock.advance(Duration::from_nanos(t - now));
            }
            while let Some(e) = self.scenario.events.get(self.next_event)
                && e.at.as_nanos() <= t
            {
                let action = e.action.clone();
                self.apply(&action);
                self.next_event += 1;
            }
            {
                let mut w = self.world.borrow_mut();
                w.guest.retry_due(Instant::from_nanos(t));
                if t >= self.next_second || self.trim_wake.is_some_and(|w| w <= t) {
                    w.guest.balance_at(Instant::from_nanos(t));
                    self.trim_wake = None;
                }
                if t >= self.next_second {
                    self.next_second = t - t % SECOND + SECOND;
                }
                if self.trim_wake.is_none()
                    && w.guest.low_memory()
                    && !w.guest.pageable_resident().is_zero()
                {
                    self.trim_wake = Some(t.saturating_add(TRIM_WAKE_DELAY.as_nanos()));
                }
            }
            let (low, high) = {
                let w = self.world.borrow();
                (w.guest.low_memory(), w.guest.high_commit())
            };
            if (stop.low && low && !was_low) || (stop.high_commit && high && !was_high) {
                break;
            }
            if t >= to {
                break;
            }
        }
        let w = self.world.borrow();
        json!({
            "now_ns": self.now(),
            "low_memory": w.guest.low_memory(),
            "high_commit": w.guest.high_commit(),
        })
    }

    fn apply(&mut self, action: &Action) {
        self.world.borrow_mut().apply(action);
    }

    fn inject(&mut self, req: &Value) -> Result<Value, String> {
        let action = if req.get("host_reset").and_then(Value::as_bool) == Some(true) {
            Action::HostReset
        } else if let Some(n) = req.get("host_busy_calls").and_then(Value::as_u64) {
            Action::HostBusy(n)
        } else if let Some(n) = req.get("host_refuse_next").and_then(Value::as_u64) {
            Action::HostRefuse(n)
        } else {
            return Err("inject: no host_reset, host_busy_calls or host_refuse_next".into());
        };
        self.apply(&action);
        Ok(json!({}))
    }

    fn backdoor(&mut self, req: &Value) -> Result<Value, String> {
        let command = u32::try_from(num(req, "command")?).map_err(|e| e.to_string())?;
        let arg1 = num(req, "arg1")?;
        let arg2 = num(req, "arg2")?;
        let batched = matches!(
            Command::ALL.get(command as usize),
            Some(
                Command::BatchedLock
                    | Command::BatchedUnlock
                    | Command::Batched2mLock
                    | Command::Batched2mUnlock
            )
        );
        if batched && let Some(entries) = req.get("entries").and_then(Value::as_array) {
            for (slot, v) in self.page.entries.iter_mut().zip(entries) {
                *slot = v.as_u64().unwrap_or(0);
            }
        }
        let mut w = self.world.borrow_mut();
        let World {
            guest,
            host,
            checker,
            ..
        } = &mut *w;
        let pfn = guest.batch_page_pfn();
        let reply = host.handle(guest, checker, (&mut self.page, pfn), command, arg1, arg2);
        self.peak_held = self.peak_held.max(host.held_frames().get());
        let count = usize::try_from(arg2)
            .unwrap_or(0)
            .min(self.page.entries.len());
        let entries: Vec<u64> = if batched {
            self.page.entries.iter().take(count).copied().collect()
        } else {
            Vec::new()
        };
        Ok(json!({
            "status": reply.status,
            "result": reply.result,
            "capabilities": reply.capabilities,
            "entries": entries,
        }))
    }

    fn mm(&mut self, call: MmCall) -> Value {
        match guest_mm(&self.world, call) {
            MmReply::Allocated(pfns) => json!({ "pfns": pfns }),
            MmReply::NoMemory => json!({ "pfns": null }),
            MmReply::Freed => json!({}),
            MmReply::Frames(n) => json!({ "frames": n }),
        }
    }

    fn memory(&self) -> Value {
        let s = self.world.borrow().guest.snapshot();
        let f = |v: Option<Frames>| v.map(Frames::get);
        json!({
            "total": s.total.get(),
            "resident_available": f(s.resident_available),
            "available": f(s.available),
            "committed": f(s.committed),
            "commit_limit": f(s.commit_limit),
            "low_memory": s.low_memory,
            "high_commit": s.high_commit,
        })
    }

    fn report(&mut self) -> Value {
        let held_by_driver = match guest_mm(&self.world, MmCall::HeldFrames) {
            MmReply::Frames(n) => n,
            _ => 0,
        };
        let w = self.world.borrow();
        let mut calls = serde_json::Map::new();
        for (command, status, n) in w.host.calls().iter() {
            calls.insert(format!("{} {}", command.name(), status.name()), json!(n));
        }
        let balloon_owned = w.guest.balloon_frames().get();
        json!({
            "calls": calls,
            "total_calls": w.host.total_calls(),
            "frames_locked": w.host.frames_locked(),
            "frames_unlocked": w.host.frames_unlocked(),
            "refused_pages": w.host.refused_pages(),
            "resets_answered": w.host.resets_answered(),
            "busy_answered": w.host.busy_answered(),
            "peak_held_frames": self.peak_held,
            "final_held_frames": w.host.held_frames().get(),
            "violations": w.checker.count(),
            "violation_messages": w.checker.violations().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "contract_violations": w.contract.count(),
            "contract_messages": w.contract.violations().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "leaked_frames": held_by_driver.saturating_add(w.guest.dropped_frames().get()),
            "balloon_owned_frames": balloon_owned,
            "guest_alloc_failures": w.guest.alloc_failures(),
            "min_resident_available_frames": w.guest.min_resident_available().get(),
            "guest_type": w.host.guest_type(),
        })
    }

    /// Handles one request.
    pub fn handle(&mut self, req: &Value) -> Value {
        let op = req.get("op").and_then(Value::as_str).unwrap_or("");
        let reply = match op {
            "init" => Ok(self.init_reply()),
            "advance" => num(req, "to_ns").map(|to| {
                let flag = |k: &str| req.get(k).and_then(Value::as_bool).unwrap_or(false);
                let stop = StopOn {
                    low: flag("stop_on_low_memory"),
                    high_commit: flag("stop_on_high_commit"),
                };
                self.advance(to, stop)
            }),
            "backdoor" => self.backdoor(req),
            "allocate" => num(req, "frames").map(|frames| {
                let flag = |k: &str| req.get(k).and_then(Value::as_bool).unwrap_or(false);
                self.mm(MmCall::Allocate(MdlRequest {
                    frames,
                    whole_blocks: flag("whole_blocks"),
                    prefer_contiguous: flag("prefer_contiguous"),
                    below: req.get("below").and_then(Value::as_u64),
                }))
            }),
            "free" => {
                let frames = req
                    .get("frames")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default();
                Ok(self.mm(MmCall::Free { frames }))
            }
            "inject" => self.inject(req),
            "memory" => Ok(self.memory()),
            "report" => Ok(self.report()),
            other => Err(format!("unknown op `{other}`")),
        };
        reply.unwrap_or_else(|e| json!({ "error": e }))
    }
}

fn num(req: &Value, key: &str) -> Result<u64, String> {
    req.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("`{key}` missing or not an unsigned integer"))
}

/// Serves requests from `input` until it ends: the first must be `init`.
///
/// # Errors
/// The scenario cannot be loaded, or the streams fail.
pub fn serve(input: impl BufRead, mut output: impl Write) -> Result<(), String> {
    let mut server: Option<Server> = None;
    for line in input.lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        let req: Value = serde_json::from_str(&line).map_err(|e| format!("bad request: {e}"))?;
        let reply = match (&mut server, req.get("op").and_then(Value::as_str)) {
            (None, Some("init")) => {
                let path = req.get("scenario").and_then(Value::as_str).unwrap_or("");
                let s = Server::new(Path::new(path))?;
                let reply = s.init_reply();
                server = Some(s);
                reply
            }
            (None, _) => json!({ "error": "the first request must be `init`" }),
            (Some(s), _) => s.handle(&req),
        };
        writeln!(output, "{reply}").map_err(|e| e.to_string())?;
        output.flush().map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(text: &str) -> Server {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("vmballoon-serve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{n}.toml"));
        std::fs::write(&path, text).unwrap();
        Server::new(&path).unwrap()
    }

    const SMALL: &str = "name = \"t\"\nduration_s = 10\n[guest]\nram_mib = 256\nos_locked_mib = 16\n\
                         [config]\nMaxBalloonMB = 64\n[[events]]\nat_s = 1\ntarget_mib = 32\n";

    #[test]
    fn a_whole_mdl_round_trip_leaves_nothing_and_a_partial_free_is_a_violation() {
        let mut s = server(SMALL);
        let init = s.init_reply();
        assert_eq!(init["registry"]["MaxBalloonMB"], 64);
        let a = s.handle(&json!({"op": "allocate", "frames": 8, "prefer_contiguous": true}));
        let pfns: Vec<u64> = serde_json::from_value(a["pfns"].clone()).unwrap();
        assert_eq!(pfns.len(), 8);
        assert_eq!(s.report()["leaked_frames"], 8);
        // Three pages through another MDL: refused, nothing freed.
        assert_eq!(
            s.handle(&json!({"op": "free", "frames": &pfns[..3]})),
            json!({})
        );
        assert_eq!(s.report()["contract_violations"], 1);
        assert_eq!(s.report()["leaked_frames"], 8);
        // The whole MDL: freed.
        assert_eq!(s.handle(&json!({"op": "free", "frames": &pfns})), json!({}));
        let r = s.report();
        assert_eq!(r["leaked_frames"], 0);
        assert_eq!(r["violations"], 0);
        assert_eq!(r["contract_violations"], 1);
    }

    #[test]
    fn whole_block_allocations_come_whole() {
        let mut s = server(SMALL);
        let a = s.handle(&json!({"op": "allocate", "frames": 512, "whole_blocks": true}));
        let pfns: Vec<u64> = serde_json::from_value(a["pfns"].clone()).unwrap();
        assert_eq!(pfns.len(), 512);
        assert_eq!(pfns[0] % 512, 0);
        assert_eq!(s.handle(&json!({"op": "free", "frames": &pfns})), json!({}));
        assert_eq!(s.report()["contract_violations"], 0);
    }

    #[test]
    fn an_allocation_below_a_high_address_takes_only_lower_frames() {
        let mut s = server(SMALL);
        // Frames 4096.. are free (16 MiB of OS memory below): ask for 8 below 4100.
        let a = s.handle(
            &json!({"op": "allocate", "frames": 8, "prefer_contiguous": true,
                                 "below": 4100}),
        );
        let pfns: Vec<u64> = serde_json::from_value(a["pfns"].clone()).unwrap();
        assert_eq!(pfns.len(), 4, "{pfns:?}");
        assert!(pfns.iter().all(|&p| p < 4100));
        // Nothing free below the OS memory: no MDL.
        let none = s.handle(&json!({"op": "allocate", "frames": 8, "below": 4000}));
        assert_eq!(none["pfns"], Value::Null);
        assert_eq!(s.handle(&json!({"op": "free", "frames": &pfns})), json!({}));
    }

    #[test]
    fn advance_applies_events_and_the_host_answers_target() {
        let mut s = server(SMALL);
        let _ = s.handle(&json!({"op": "advance", "to_ns": 2 * SECOND}));
        let start = s.handle(&json!({"op": "backdoor", "command": 0, "arg1": 0x7, "arg2": 0}));
        assert_eq!(start["status"], 0x0300_0000);
        let target = s.handle(&json!({"op": "backdoor", "command": 1, "arg1": 65536, "arg2": 0}));
        assert_eq!(target["result"], Frames::from_mib(32).get());
        let m = s.memory();
        assert_eq!(m["total"], Frames::from_mib(256).get());
    }

    #[test]
    fn advance_stops_when_maximum_commit_condition_is_set_and_memory_reports_it() {
        // 512 MiB of commit limit (RAM + page file); 495 MiB committed at 3 s leaves
        // 1 MiB, under the 2 MiB threshold of a 256 MiB guest.
        let mut s = server(
            "name = \"c\"\nduration_s = 10\n[guest]\nram_mib = 256\nos_locked_mib = 16\n\
             pagefile_mib = 256\n[[events]]\nat_s = 3\nid = \"apps\"\ncommit_mib = 495\n",
        );
        assert_eq!(s.memory()["high_commit"], false);
        let r =
            s.handle(&json!({"op": "advance", "to_ns": 8 * SECOND, "stop_on_high_commit": true}));
        assert_eq!(r["now_ns"], 3 * SECOND, "{r}");
        assert_eq!(r["high_commit"], true);
        assert_eq!(s.memory()["high_commit"], true);
        // Already signalled: no early stop.
        let r =
            s.handle(&json!({"op": "advance", "to_ns": 8 * SECOND, "stop_on_high_commit": true}));
        assert_eq!(r["now_ns"], 8 * SECOND);
        // Not asked to stop: time runs to the end.
        let mut s = server(
            "name = \"c\"\nduration_s = 10\n[guest]\nram_mib = 256\nos_locked_mib = 16\n\
             pagefile_mib = 256\n[[events]]\nat_s = 3\nid = \"apps\"\ncommit_mib = 495\n",
        );
        let r = s.handle(&json!({"op": "advance", "to_ns": 8 * SECOND}));
        assert_eq!(r["now_ns"], 8 * SECOND);
        assert_eq!(r["high_commit"], true);
    }

    #[test]
    fn freeing_a_page_the_host_holds_is_a_violation() {
        let mut s = server(SMALL);
        let _ = s.handle(&json!({"op": "backdoor", "command": 0, "arg1": 0x2, "arg2": 0}));
        let a = s.handle(&json!({"op": "allocate", "frames": 1}));
        let pfn = a["pfns"][0].as_u64().unwrap();
        let lock = s.handle(&json!({"op": "backdoor", "command": 2, "arg1": pfn, "arg2": 0}));
        assert_eq!(lock["status"], 0, "{lock} {}", s.report());
        let _ = s.handle(&json!({"op": "free", "frames": [pfn]}));
        assert_eq!(s.report()["contract_violations"], 1);
    }
}
