//! Small audited kernel helpers shared by the glue: counted strings, relative timeouts,
//! events, pool memory and system threads. Each wraps one NT call with its contract.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ptr::{self, NonNull};

use vmballoon_core::units::Duration;
use wdk_sys::ntddk::{
    ExAllocatePool2, ExFreePoolWithTag, KeClearEvent, KeInitializeEvent, KeSetEvent,
    KeWaitForSingleObject, ObReferenceObjectByHandle, ObfDereferenceObject, PsCreateSystemThread,
    ZwClose,
};
use wdk_sys::{
    _EVENT_TYPE, _KWAIT_REASON, _MODE, FALSE, HANDLE, IO_NO_INCREMENT, KEVENT, KPRIORITY,
    KPROCESSOR_MODE, LARGE_INTEGER, NTSTATUS, OBJ_KERNEL_HANDLE, OBJECT_ATTRIBUTES,
    PKSTART_ROUTINE, POOL_FLAG_NON_PAGED, PVOID, PsThreadType, SYNCHRONIZE, THREAD_ALL_ACCESS,
    ULONG, UNICODE_STRING,
};

/// Pool tag of every allocation the driver makes ("VmBl" in pool tools).
pub const POOL_TAG: ULONG = u32::from_le_bytes(*b"VmBl");

/// Kernel mode, as the `KPROCESSOR_MODE` the wait and object calls take.
pub const KERNEL_MODE: KPROCESSOR_MODE = _MODE::KernelMode as KPROCESSOR_MODE;

/// A counted UTF-16 string over a static buffer (`RtlInitUnicodeString` without the
/// scan). `PCUNICODE_STRING` callees never write through `Buffer`.
pub fn unicode_string(s: &'static [u16]) -> UNICODE_STRING {
    // Names here are short literals; saturate rather than wrap if one ever is not.
    let bytes = u16::try_from(s.len().saturating_mul(2)).unwrap_or(u16::MAX - 1);
    UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        Buffer: s.as_ptr().cast_mut(),
    }
}

/// ASCII `s` as UTF-16, for `const` object names (`N` must be `s.len()`).
pub const fn utf16<const N: usize>(s: &str) -> [u16; N] {
    let b = s.as_bytes();
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N && i < b.len() {
        out[i] = b[i] as u16;
        i += 1;
    }
    out
}

/// `OBJECT_ATTRIBUTES` for a kernel handle (`InitializeObjectAttributes` is a macro).
pub fn object_attributes(name: *mut UNICODE_STRING, attributes: ULONG) -> OBJECT_ATTRIBUTES {
    OBJECT_ATTRIBUTES {
        // The struct is 48 bytes: the cast cannot truncate.
        Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as ULONG,
        RootDirectory: ptr::null_mut(),
        ObjectName: name,
        // OBJ_KERNEL_HANDLE: the handle is valid in any process and invisible to user mode.
        Attributes: attributes | OBJ_KERNEL_HANDLE,
        SecurityDescriptor: ptr::null_mut(),
        SecurityQualityOfService: ptr::null_mut(),
    }
}

/// A relative NT timeout (negative, in 100 ns units).
pub fn relative_timeout(d: Duration) -> LARGE_INTEGER {
    let ticks = i64::try_from(d.as_nanos() / 100).unwrap_or(i64::MAX);
    LARGE_INTEGER { QuadPart: -ticks }
}

/// A `KEVENT` in nonpaged memory that never moves once initialised.
pub struct Event(UnsafeCell<KEVENT>);

impl Event {
    /// An uninitialised event; call [`Event::init`] at its final address.
    pub fn new() -> Self {
        Self(UnsafeCell::new(KEVENT::default()))
    }

    /// Initialises the event, non-signalled: a notification event stays signalled until
    /// cleared; a synchronization event wakes one waiter and resets itself.
    ///
    /// # Safety
    /// `self` is in nonpaged memory at its final address, nobody waits on it yet, and it is
    /// not moved until no thread can wait on or set it any more.
    pub unsafe fn init(&self, notification: bool) {
        let kind = if notification {
            _EVENT_TYPE::NotificationEvent
        } else {
            _EVENT_TYPE::SynchronizationEvent
        };
        // SAFETY: our caller guarantees a resident, unshared, unmoving KEVENT.
        unsafe { KeInitializeEvent(self.0.get(), kind, FALSE as u8) };
    }

    /// Signals the event (`KeSetEvent`, no priority boost, no wait follows).
    pub fn set(&self) {
        // SAFETY: the event was initialised (`init` precedes every use by construction of
        // the driver state) and stays resident; KeSetEvent is callable at <= DISPATCH_LEVEL.
        let _ = unsafe { KeSetEvent(self.0.get(), IO_NO_INCREMENT as KPRIORITY, FALSE as u8) };
    }

    /// Resets the event to non-signalled (`KeClearEvent`).
    pub fn clear(&self) {
        // SAFETY: the event was initialised and stays resident; any IRQL <= DISPATCH_LEVEL.
        unsafe { KeClearEvent(self.0.get()) };
    }

    /// The object pointer for the wait calls.
    pub fn object(&self) -> PVOID {
        self.0.get().cast()
    }

    /// Waits for the event, at most `timeout` (forever if `None`). PASSIVE_LEVEL.
    pub fn wait(&self, timeout: Option<Duration>) -> NTSTATUS {
        let mut t = timeout.map(relative_timeout);
        let t_ptr = t.as_mut().map_or(ptr::null_mut(), ptr::from_mut);
        // SAFETY: the event is initialised and resident; `t_ptr` is null or a live local.
        unsafe {
            KeWaitForSingleObject(
                self.object(),
                _KWAIT_REASON::Executive,
                KERNEL_MODE,
                FALSE as u8,
                t_ptr,
            )
        }
    }
}

/// Nonpaged, tagged pool for one `T`, uninitialised. `None` when the pool is exhausted.
pub fn pool_alloc<T>(bytes: usize) -> Option<NonNull<T>> {
    // SAFETY: ExAllocatePool2 has no preconditions at <= DISPATCH_LEVEL; every caller runs
    // at PASSIVE_LEVEL. Pool blocks are 16-byte aligned on x64, which callers assert for T.
    let p = unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, bytes as u64, POOL_TAG) };
    NonNull::new(p.cast())
}

/// Frees a block from [`pool_alloc`].
///
/// # Safety
/// `p` came from [`pool_alloc`], is not used afterwards, and holds nothing left to drop.
pub unsafe fn pool_free<T>(p: NonNull<T>) {
    // SAFETY: our caller passes a live block with our tag.
    unsafe { ExFreePoolWithTag(p.as_ptr().cast(), POOL_TAG) };
}

/// A referenced system thread object, to wait for its end.
pub struct Thread(NonNull<c_void>);

impl Thread {
    /// Starts `routine(context)` on a new system thread (PASSIVE_LEVEL, system process).
    ///
    /// # Safety
    /// `context` stays valid until the thread has ended ([`Thread::join`]), and `routine`
    /// ends the thread with `PsTerminateSystemThread`.
    pub unsafe fn spawn(routine: PKSTART_ROUTINE, context: PVOID) -> Result<Self, NTSTATUS> {
        let mut handle: HANDLE = ptr::null_mut();
        let mut attrs = object_attributes(ptr::null_mut(), 0);
        // SAFETY: out-pointers are live locals; the context contract is our caller's.
        let status = unsafe {
            PsCreateSystemThread(
                &mut handle,
                THREAD_ALL_ACCESS,
                &mut attrs,
                ptr::null_mut(),
                ptr::null_mut(),
                routine,
                context,
            )
        };
        if status < 0 {
            return Err(status);
        }
        let mut object: PVOID = ptr::null_mut();
        // SAFETY: `PsThreadType` is an ntoskrnl export set before any driver loads and never
        // written afterwards; this copies the pointer out, no reference is formed.
        let thread_type_ptr = unsafe { PsThreadType };
        // SAFETY: the export points at the thread object type, valid for the system's life.
        let thread_type = unsafe { *thread_type_ptr };
        // SAFETY: `handle` is the kernel handle just created; `object` is a live local.
        let status = unsafe {
            ObReferenceObjectByHandle(
                handle,
                SYNCHRONIZE,
                thread_type,
                KERNEL_MODE,
                &mut object,
                ptr::null_mut(),
            )
        };
        // SAFETY: the handle is ours and used no more; the reference (if any) keeps the
        // thread object alive.
        let _ = unsafe { ZwClose(handle) };
        match NonNull::new(object) {
            Some(o) if status >= 0 => Ok(Self(o)),
            _ => Err(status),
        }
    }

    /// Waits until the thread has ended, then drops the reference.
    pub fn join(self) {
        // SAFETY: `self.0` is a referenced thread object (a dispatcher object).
        let _ = unsafe {
            KeWaitForSingleObject(
                self.0.as_ptr(),
                _KWAIT_REASON::Executive,
                KERNEL_MODE,
                FALSE as u8,
                ptr::null_mut(),
            )
        };
        // SAFETY: releases the reference taken in `spawn`, exactly once (`self` is consumed).
        let _ = unsafe { ObfDereferenceObject(self.0.as_ptr()) };
    }
}
