//! [`KernelMemory`]: the core `MemorySource` over `ZwQuerySystemInformation` (classes 182,
//! then 2 if needed, and 0 for RAM; `windows-memory.md` §3.2) and the
//! `\KernelObjects\LowMemoryCondition` event (§3.3). Parsing and the trust rules live in
//! [`crate::memsnap`]; this file only makes the calls.

use core::ffi::c_void;
use core::ptr::{self, NonNull};

use vmballoon_core::platform::{MemoryError, MemorySnapshot, MemorySource};
use wdk_sys::ntddk::{IoCreateNotificationEvent, KeReadStateEvent, ZwClose};
use wdk_sys::{HANDLE, KEVENT, NTSTATUS, PVOID, ULONG};

use crate::etw;
use crate::events::diagnostic_event;
use crate::kernel::{unicode_string, utf16};
use crate::memsnap::{self, Diagnostic, InfoClass, Parsed};
use crate::ntstatus::nt_result;

unsafe extern "system" {
    /// Exported by ntoskrnl since NT 4.0 but absent from the WDK headers, so declared here
    /// (as virtio-win's `ntddkex.h` does; `windows-memory.md` §3.2). PASSIVE_LEVEL.
    fn ZwQuerySystemInformation(
        SystemInformationClass: ULONG,
        SystemInformation: PVOID,
        SystemInformationLength: ULONG,
        ReturnLength: *mut ULONG,
    ) -> NTSTATUS;
}

const LOW_MEMORY_NAME: &str = r"\KernelObjects\LowMemoryCondition";
static LOW_MEMORY: [u16; LOW_MEMORY_NAME.len()] = utf16(LOW_MEMORY_NAME);

/// Room for the largest reply, aligned like the structures.
#[repr(C, align(8))]
struct Reply([u8; memsnap::PERFORMANCE_MAX_SIZE]);

/// Guest memory state for the engine.
pub struct KernelMemory {
    low_memory: NonNull<KEVENT>,
    handle: HANDLE,
    /// The last diagnostic traced per class, so a persistent one is written once.
    traced: [Option<Diagnostic>; 3],
}

impl KernelMemory {
    /// Opens `LowMemoryCondition` (PASSIVE_LEVEL).
    pub fn open() -> Result<Self, NTSTATUS> {
        let mut name = unicode_string(&LOW_MEMORY);
        let mut handle: HANDLE = ptr::null_mut();
        // SAFETY: `name` and `handle` are live locals; the standard event exists from boot
        // and IoCreateNotificationEvent opens it.
        let event = unsafe { IoCreateNotificationEvent(&mut name, &mut handle) };
        let low_memory = NonNull::new(event).ok_or(wdk_sys::STATUS_INSUFFICIENT_RESOURCES)?;
        Ok(Self {
            low_memory,
            handle,
            traced: [None; 3],
        })
    }

    /// The event object, for the worker's wait. Valid while `self` lives (its handle is
    /// open).
    pub fn low_memory_object(&self) -> PVOID {
        self.low_memory.as_ptr().cast::<c_void>()
    }

    fn query(&mut self, class: InfoClass, parse: fn(&[u8], u32) -> Parsed) -> Parsed {
        let mut buf = Reply([0; memsnap::PERFORMANCE_MAX_SIZE]);
        let len = class.buffer_size().min(buf.0.len());
        let mut returned: ULONG = 0;
        // SAFETY: `buf` is a live, 8-aligned local of at least `len` bytes; `returned` a
        // live local. Kernel-mode caller at PASSIVE_LEVEL.
        let status = unsafe {
            ZwQuerySystemInformation(
                class.number(),
                buf.0.as_mut_ptr().cast(),
                // A buffer too large for a ULONG is passed as empty: the query fails closed.
                ULONG::try_from(len).unwrap_or(0),
                &mut returned,
            )
        };
        let parsed = match nt_result(status) {
            Err(status) => memsnap::failed(class, status),
            Ok(()) => parse(buf.0.get(..len).unwrap_or(&[]), returned),
        };
        let slot = match class {
            InfoClass::Basic => 0,
            InfoClass::Performance => 1,
            InfoClass::MemoryUsage => 2,
        };
        if let Some(last) = self.traced.get_mut(slot)
            && *last != parsed.diagnostic
        {
            *last = parsed.diagnostic;
            if let Some(d) = parsed.diagnostic {
                etw::write(&diagnostic_event(d));
            }
        }
        parsed
    }
}

impl MemorySource for KernelMemory {
    fn snapshot(&mut self) -> Result<MemorySnapshot, MemoryError> {
        let mut fields = self
            .query(InfoClass::MemoryUsage, memsnap::parse_memory_usage)
            .fields;
        if !fields.is_complete() {
            fields = fields.or(self
                .query(InfoClass::Performance, memsnap::parse_performance)
                .fields);
        }
        // SYSTEM_BASIC_INFORMATION's page count is the RAM size of record (§3.2).
        fields = self
            .query(InfoClass::Basic, memsnap::parse_basic)
            .fields
            .or(fields);
        // SAFETY: the event pointer stays valid while our handle is open.
        let low = unsafe { KeReadStateEvent(self.low_memory.as_ptr()) } != 0;
        // MaximumCommitCondition is wired by the glue's commit watch; until then it reads as
        // clear, which only means the commit term of the ceiling is the sole commit guard.
        fields.into_snapshot(low, false)
    }
}

impl Drop for KernelMemory {
    fn drop(&mut self) {
        // SAFETY: our handle from IoCreateNotificationEvent, closed once; the worker that
        // waited on the event has ended before the driver state is dropped.
        let _ = unsafe { ZwClose(self.handle) };
    }
}
