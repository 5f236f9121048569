//! [`KernelMemory`]: the core `MemorySource` over `ZwQuerySystemInformation` (classes 182,
//! then 2 if needed, and 0 for RAM; `docs/windows-memory.md` §3.2) and two documented standard
//! event objects (§3.3): `\KernelObjects\LowMemoryCondition` and
//! `\KernelObjects\MaximumCommitCondition`. Parsing and the trust rules live in
//! `vmballoon_nt::memory`; this file only makes the calls.
//!
//! The `ZwQuerySystemInformation` layouts are not documented: a reply of a size not known
//! for its class is not used at all (fail closed, `vmballoon_nt::memory`), and the first snapshot traces
//! the OS build (`RtlGetVersion`) with the layouts it used (`MemoryLayout`), once.

use core::ptr::{self, NonNull};

use vmballoon_core::platform::{MemoryError, MemorySnapshot, MemorySource};
use wdk_sys::ntddk::{IoCreateNotificationEvent, KeReadStateEvent, RtlGetVersion, ZwClose};
use wdk_sys::{HANDLE, KEVENT, NTSTATUS, PVOID, RTL_OSVERSIONINFOW, ULONG};

use crate::etw;
use crate::kernel::{Waitable, ulong_size_of, unicode_string, utf16};
use vmballoon_nt::events::{OsVersion, diagnostic_event, layout_event};
use vmballoon_nt::memory::{self as replies, Diagnostic, InfoClass, Layout, Parsed};
use vmballoon_nt::ntstatus::nt_result;

unsafe extern "system" {
    /// Exported by ntoskrnl since NT 4.0 but absent from the WDK headers, so declared here
    /// (as virtio-win's `ntddkex.h` does; `docs/windows-memory.md` §3.2). PASSIVE_LEVEL.
    fn ZwQuerySystemInformation(
        SystemInformationClass: ULONG,
        SystemInformation: PVOID,
        SystemInformationLength: ULONG,
        ReturnLength: *mut ULONG,
    ) -> NTSTATUS;
}

const LOW_MEMORY_NAME: &str = r"\KernelObjects\LowMemoryCondition";
static LOW_MEMORY: [u16; LOW_MEMORY_NAME.len()] = utf16(LOW_MEMORY_NAME);
const MAXIMUM_COMMIT_NAME: &str = r"\KernelObjects\MaximumCommitCondition";
static MAXIMUM_COMMIT: [u16; MAXIMUM_COMMIT_NAME.len()] = utf16(MAXIMUM_COMMIT_NAME);

/// Room for the largest reply, aligned like the structures.
#[repr(C, align(8))]
struct Reply([u8; replies::PERFORMANCE_MAX_SIZE]);

/// An open handle to a standard event object (`IoCreateNotificationEvent`), closed on drop.
struct StandardEvent {
    event: NonNull<KEVENT>,
    handle: HANDLE,
}

impl StandardEvent {
    /// Opens the standard event `name` (PASSIVE_LEVEL): these exist from boot, and
    /// `IoCreateNotificationEvent` opens an existing named event.
    fn open(name: &'static [u16]) -> Result<Self, NTSTATUS> {
        let mut name = unicode_string(name);
        let mut handle: HANDLE = ptr::null_mut();
        // SAFETY: `name` and `handle` are live locals; PASSIVE_LEVEL (DriverEntry).
        let event = unsafe { IoCreateNotificationEvent(&mut name, &mut handle) };
        let event = NonNull::new(event).ok_or(wdk_sys::STATUS_INSUFFICIENT_RESOURCES)?;
        Ok(Self { event, handle })
    }

    /// Whether the event is signalled now (`KeReadStateEvent`).
    fn signalled(&self) -> bool {
        // SAFETY: the event pointer stays valid while our handle is open (until drop).
        unsafe { KeReadStateEvent(self.event.as_ptr()) != 0 }
    }

    /// The event as a wait object, valid while `self` (its handle) lives.
    fn waitable(&self) -> Waitable<'_> {
        // SAFETY: a system event object, resident, kept alive by our open handle for the
        // borrow of `self`.
        unsafe { Waitable::new(self.event.cast()) }
    }
}

impl Drop for StandardEvent {
    fn drop(&mut self) {
        // SAFETY: our handle from IoCreateNotificationEvent, closed once; the worker that
        // waited on the event has ended before the driver state is dropped.
        let _ = unsafe { ZwClose(self.handle) };
    }
}

/// Guest memory state for the engine.
pub struct KernelMemory {
    low_memory: StandardEvent,
    maximum_commit: StandardEvent,
    /// The last diagnostic traced per class, so a persistent one is written once.
    traced: [Option<Diagnostic>; 3],
    /// The layouts in use, and whether the `MemoryLayout` event has been written.
    layout: Layout,
    layout_traced: bool,
}

impl KernelMemory {
    /// Opens `LowMemoryCondition` and `MaximumCommitCondition` (PASSIVE_LEVEL).
    pub fn open() -> Result<Self, NTSTATUS> {
        Ok(Self {
            low_memory: StandardEvent::open(&LOW_MEMORY)?,
            maximum_commit: StandardEvent::open(&MAXIMUM_COMMIT)?,
            traced: [None; 3],
            layout: Layout::default(),
            layout_traced: false,
        })
    }

    /// `LowMemoryCondition`, for the worker's wait.
    pub fn low_memory(&self) -> Waitable<'_> {
        self.low_memory.waitable()
    }

    /// `MaximumCommitCondition`, for the worker's wait.
    pub fn maximum_commit(&self) -> Waitable<'_> {
        self.maximum_commit.waitable()
    }

    fn query(&mut self, class: InfoClass, parse: fn(&[u8], u32) -> Parsed) -> Parsed {
        let mut buf = Reply([0; replies::PERFORMANCE_MAX_SIZE]);
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
            Err(status) => replies::failed(class, status),
            Ok(()) => parse(buf.0.get(..len).unwrap_or(&[]), returned),
        };
        self.layout.record(class, returned, &parsed);
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

    /// Traces the OS build and the layouts the first snapshot used, once.
    fn trace_layout_once(&mut self) {
        if core::mem::replace(&mut self.layout_traced, true) {
            return;
        }
        etw::write(&layout_event(os_version(), &self.layout));
    }
}

/// The OS version (`RtlGetVersion`, PASSIVE_LEVEL); all zero if it fails (it is documented
/// to always succeed).
fn os_version() -> OsVersion {
    let mut info = RTL_OSVERSIONINFOW {
        dwOSVersionInfoSize: const { ulong_size_of::<RTL_OSVERSIONINFOW>() },
        ..RTL_OSVERSIONINFOW::default()
    };
    // SAFETY: `info` is a live local with its size member set, as the routine requires.
    let status = unsafe { RtlGetVersion(&mut info) };
    match nt_result(status) {
        Ok(()) => OsVersion {
            major: info.dwMajorVersion,
            minor: info.dwMinorVersion,
            build: info.dwBuildNumber,
        },
        Err(_) => OsVersion::default(),
    }
}

impl MemorySource for KernelMemory {
    fn snapshot(&mut self) -> Result<MemorySnapshot, MemoryError> {
        let mut fields = self
            .query(InfoClass::MemoryUsage, replies::parse_memory_usage)
            .fields;
        if !fields.is_complete() {
            fields = fields.or(self
                .query(InfoClass::Performance, replies::parse_performance)
                .fields);
        }
        // SYSTEM_BASIC_INFORMATION's page count is the RAM size of record (§3.2).
        fields = self
            .query(InfoClass::Basic, replies::parse_basic)
            .fields
            .or(fields);
        self.trace_layout_once();
        fields.into_snapshot(self.low_memory.signalled(), self.maximum_commit.signalled())
    }
}
