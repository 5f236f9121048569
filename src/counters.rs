//! The `VM Balloon` performance-counter set (`docs/windows-memory.md §9.6`): registered with
//! PCW at start, one instance over a data block in the driver's nonpaged state, updated by
//! the worker after each tick, closed and unregistered at unload. The layout, names and
//! values are `vmballoon_nt::counters`'; this file only makes the four PCW calls.
//!
//! **No lock on the hot path.** PCW reads the instance's data block whenever a consumer
//! collects, on its own thread, and the documentation does not say when (§9.6). The block
//! is [`COUNT`] naturally aligned 8-byte atomics; the worker, its only writer, stores each
//! value with one relaxed atomic store, so a reader sees every counter either before or
//! after an update, never half of one. Two counters read during an update may come from
//! two consecutive ticks; each is still a value the driver published, which is all a
//! sampled counter promises. A lock would make PCW's collection wait on the worker's
//! batch, which the documentation gives no reason for.
//!
//! Counters are for operators: a registration that fails leaves the driver running without
//! them (the balloon does not depend on them).

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};

use wdk_sys::ntddk::{PcwCloseInstance, PcwCreateInstance, PcwRegister, PcwUnregister};
use wdk_sys::{
    NTSTATUS, PCW_COUNTER_DESCRIPTOR, PCW_DATA, PCW_REGISTRATION_FLAGS,
    PCW_REGISTRATION_INFORMATION, PCW_VERSION_1, PPCW_INSTANCE, PPCW_REGISTRATION,
    STATUS_UNSUCCESSFUL, ULONG,
};

use crate::kernel::{ulong_size_of, unicode_string, utf16};
use vmballoon_nt::counters::{
    BLOCK_BYTES, COUNT, COUNTER_SET_NAME, INSTANCE_NAME, PerfCounter, VALUE_BYTES,
};
use vmballoon_nt::ntstatus::nt_result;

/// The counter set's name as UTF-16 (the registration name).
static SET_NAME: [u16; COUNTER_SET_NAME.len()] = utf16(COUNTER_SET_NAME);

/// The instance's name as UTF-16.
static INSTANCE: [u16; INSTANCE_NAME.len()] = utf16(INSTANCE_NAME);

/// One descriptor per counter: id, offset and size in the single data block (structure 0).
static DESCRIPTORS: [PCW_COUNTER_DESCRIPTOR; COUNT] = descriptors();

#[allow(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    reason = "const evaluation: an index out of range or an overflow fails the build"
)]
const fn descriptors() -> [PCW_COUNTER_DESCRIPTOR; COUNT] {
    let mut out = [PCW_COUNTER_DESCRIPTOR {
        Id: 0,
        StructIndex: 0,
        Offset: 0,
        Size: 0,
    }; COUNT];
    let mut i = 0;
    while i < COUNT {
        let c = PerfCounter::ALL[i];
        out[i] = PCW_COUNTER_DESCRIPTOR {
            Id: c.id(),
            StructIndex: 0,
            Offset: c.offset(),
            Size: VALUE_SIZE,
        };
        i += 1;
    }
    out
}

/// `PCW_VERSION_1`: the version every Windows since 7 accepts (`PCW_VERSION_2` only from
/// 10.0.19645, later than Windows 10 22H2); with it `Flags` is ignored.
const VERSION: ULONG = PCW_VERSION_1;
/// `PCW_COUNTER_DESCRIPTOR.Size` of every counter.
const VALUE_SIZE: u16 = 8;
const _: () = assert!(VALUE_BYTES == VALUE_SIZE as usize);
/// `PCW_REGISTRATION_INFORMATION.CounterCount`.
const COUNTER_COUNT: ULONG = 16;
const _: () = assert!(COUNT == COUNTER_COUNT as usize);
const _: () = assert!(VALUE_BYTES == core::mem::size_of::<AtomicU64>());
const _: () = assert!(BLOCK_BYTES == core::mem::size_of::<CounterBlock>());

/// The instance's data block: what PCW reads, in `vmballoon_nt::counters` order. Lives in
/// the driver's nonpaged state, at a fixed address, from before
/// [`PerfCounters::register`] until after the registration is dropped.
#[repr(C, align(8))]
pub struct CounterBlock {
    values: [AtomicU64; COUNT],
}

impl CounterBlock {
    /// All zero.
    pub const fn new() -> Self {
        Self {
            values: [const { AtomicU64::new(0) }; COUNT],
        }
    }

    /// Publishes `values` (the worker, after each tick): one relaxed store per counter,
    /// no lock (see the module documentation).
    pub fn publish(&self, values: &[u64; COUNT]) {
        for (slot, &v) in self.values.iter().zip(values) {
            slot.store(v, Ordering::Relaxed);
        }
    }
}

/// The PCW registration and its one instance. Dropping it closes the instance, then
/// unregisters (`PcwUnregister` destroys the registration's instances, after which
/// `PcwCloseInstance` must not be called: §9.6).
pub struct PerfCounters {
    registration: NonNull<wdk_sys::_PCW_REGISTRATION>,
    instance: NonNull<wdk_sys::_PCW_INSTANCE>,
}

impl PerfCounters {
    /// Registers the `VM Balloon` counter set and creates its instance over `block`.
    ///
    /// # Safety
    /// `block` is in nonpaged memory and stays valid, at the same address, until the
    /// returned value is dropped. Called at PASSIVE_LEVEL (PCW: IRQL <= APC_LEVEL).
    pub unsafe fn register(block: *const CounterBlock) -> Result<Self, NTSTATUS> {
        let name = unicode_string(&SET_NAME);
        let mut info = PCW_REGISTRATION_INFORMATION {
            Version: VERSION,
            Name: &name,
            CounterCount: COUNTER_COUNT,
            // PCW only reads the descriptors (the registration captures its inputs).
            Counters: DESCRIPTORS.as_ptr().cast_mut(),
            // No callback: PCW reads the instance's block itself.
            Callback: None,
            CallbackContext: ptr::null_mut(),
            Flags: PCW_REGISTRATION_FLAGS::PcwRegistrationNone,
        };
        let mut registration: PPCW_REGISTRATION = ptr::null_mut();
        // SAFETY: `info`, the name and the descriptors are valid for the call (PCW captures
        // them); PASSIVE_LEVEL (our caller's contract).
        let status = unsafe { PcwRegister(&mut registration, &mut info) };
        nt_result(status)?;
        let registration = NonNull::new(registration).ok_or(STATUS_UNSUCCESSFUL)?;
        let instance_name = unicode_string(&INSTANCE);
        let mut data = PCW_DATA {
            Data: block.cast(),
            Size: const { ulong_size_of::<CounterBlock>() },
        };
        let mut instance: PPCW_INSTANCE = ptr::null_mut();
        // SAFETY: a live registration; `data` describes `block`, valid until the instance
        // is closed (our caller's contract); the name is valid for the call.
        let status = unsafe {
            PcwCreateInstance(
                &mut instance,
                registration.as_ptr(),
                &instance_name,
                1,
                &mut data,
            )
        };
        match nt_result(status).ok().and(NonNull::new(instance)) {
            Some(instance) => Ok(Self {
                registration,
                instance,
            }),
            None => {
                // SAFETY: registered above, not used after this.
                unsafe { PcwUnregister(registration.as_ptr()) };
                Err(status)
            }
        }
    }
}

impl Drop for PerfCounters {
    fn drop(&mut self) {
        // SAFETY: the instance from `register`, closed once, before its registration is
        // destroyed.
        unsafe { PcwCloseInstance(self.instance.as_ptr()) };
        // SAFETY: the registration from `register`, unregistered once; nothing uses it
        // after.
        unsafe { PcwUnregister(self.registration.as_ptr()) };
    }
}
