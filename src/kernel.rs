//! Small audited kernel helpers shared by the glue: counted strings, relative timeouts,
//! events, multi-object waits, pool memory and system threads. Each wraps one NT call
//! with its contract.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use vmballoon_core::units::Duration;
use wdk_sys::ntddk::{
    ExAllocatePool2, ExFreePoolWithTag, KeInitializeEvent, KeSetEvent, KeWaitForMultipleObjects,
    KeWaitForSingleObject, PsCreateSystemThread, ZwClose, ZwWaitForSingleObject,
};
use wdk_sys::{
    _EVENT_TYPE, _KWAIT_REASON, _MODE, _WAIT_TYPE, BOOLEAN, FALSE, HANDLE, IO_NO_INCREMENT, KEVENT,
    KPRIORITY, KPROCESSOR_MODE, KWAIT_BLOCK, LARGE_INTEGER, MAXIMUM_WAIT_OBJECTS, NTSTATUS,
    OBJ_KERNEL_HANDLE, OBJECT_ATTRIBUTES, PKSTART_ROUTINE, POOL_FLAG_NON_PAGED, PVOID, SYNCHRONIZE,
    THREAD_WAIT_OBJECTS, TRUE, ULONG, UNICODE_STRING,
};

use vmballoon_nt::ntstatus::{nt_result, wait_index};

/// Pool tag of every allocation the driver makes ("VmBl" in pool tools), also the
/// framework's tag for the driver's WDF objects (`WDF_DRIVER_CONFIG.DriverPoolTag`).
pub const POOL_TAG: ULONG = u32::from_le_bytes(*b"VmBl");

/// Kernel mode, as the `KPROCESSOR_MODE` the wait and object calls take.
pub const KERNEL_MODE: KPROCESSOR_MODE = 0;
const _: () = assert!(_MODE::KernelMode == 0);

/// `IO_NO_INCREMENT` as the `KPRIORITY` `KeSetEvent` takes.
const NO_INCREMENT: KPRIORITY = 0;
const _: () = assert!(IO_NO_INCREMENT == 0);

/// A C `BOOL` (`TRUE` / `FALSE`, which bindgen emits as `u32`) as a `BOOLEAN`.
const fn boolean(value: u32) -> BOOLEAN {
    if value == 0 { 0 } else { 1 }
}

/// `FALSE` as a `BOOLEAN` argument.
pub const NT_FALSE: BOOLEAN = boolean(FALSE);

/// `TRUE` as a `BOOLEAN` argument.
pub const NT_TRUE: BOOLEAN = boolean(TRUE);

/// `sizeof(T)` as the `ULONG` the structures' `Size`/`Length` members hold. Evaluated at
/// compile time wherever it is used in a `const`; a structure too large for a `ULONG`
/// fails the build there.
pub const fn ulong_size_of<T>() -> ULONG {
    let bytes = core::mem::size_of::<T>();
    assert!(
        bytes <= ULONG::MAX as usize,
        "structure larger than a ULONG"
    );
    #[expect(
        clippy::cast_possible_truncation,
        reason = "checked against ULONG::MAX just above"
    )]
    let size = bytes as ULONG;
    size
}

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

/// ASCII `s` as UTF-16, for `const` object names. `N` must be `s.len()` and `s` ASCII:
/// anything else fails the build where the name is defined.
pub const fn utf16<const N: usize>(s: &str) -> [u16; N] {
    assert!(
        s.len() == N && s.is_ascii(),
        "an ASCII name of exactly N bytes"
    );
    let mut out = [0u16; N];
    let mut bytes = s.as_bytes();
    let mut units: &mut [u16] = &mut out;
    while let ([byte, more_bytes @ ..], [unit, more_units @ ..]) = (bytes, units) {
        *unit = *byte as u16;
        bytes = more_bytes;
        units = more_units;
    }
    out
}

/// `OBJECT_ATTRIBUTES` for a kernel handle (`InitializeObjectAttributes` is a macro).
pub fn object_attributes(name: *mut UNICODE_STRING, attributes: ULONG) -> OBJECT_ATTRIBUTES {
    OBJECT_ATTRIBUTES {
        Length: const { ulong_size_of::<OBJECT_ATTRIBUTES>() },
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
    LARGE_INTEGER {
        QuadPart: ticks.saturating_neg(),
    }
}

/// What an [`Event`] does when signalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Stays signalled until cleared, waking every waiter.
    Notification,
    /// Wakes one waiter and resets itself.
    Synchronization,
}

/// A `KEVENT` in nonpaged memory, initialised in place.
///
/// Invariant: an `Event` exists only where [`Event::init`] built one — there is no other
/// constructor, and the layout is exactly a `KEVENT` — so every `&Event` refers to an
/// initialised kernel event, and the safe methods below cannot reach a zeroed header.
#[repr(transparent)]
pub struct Event(UnsafeCell<KEVENT>);

impl Event {
    /// Builds a non-signalled event of `kind` at `slot` (`KeInitializeEvent`).
    ///
    /// # Safety
    /// `slot` is valid for writes, in nonpaged memory, and not in use; the event it holds
    /// afterwards is neither moved nor freed while any thread may still wait on or set it.
    pub unsafe fn init(slot: *mut Self, kind: EventKind) {
        let event = slot.cast::<KEVENT>();
        // SAFETY: our caller's contract: valid for writes and unused; a KEVENT is plain data,
        // so a zeroed one is a valid value for KeInitializeEvent to fill in.
        unsafe { event.write(KEVENT::default()) };
        let kind = match kind {
            EventKind::Notification => _EVENT_TYPE::NotificationEvent,
            EventKind::Synchronization => _EVENT_TYPE::SynchronizationEvent,
        };
        // SAFETY: a resident KEVENT at its final address that no thread uses yet.
        unsafe { KeInitializeEvent(event, kind, NT_FALSE) };
    }

    /// Signals the event (`KeSetEvent`, no priority boost, no wait follows).
    pub fn set(&self) {
        // SAFETY: initialised (the type's invariant) and resident; KeSetEvent is callable at
        // <= DISPATCH_LEVEL.
        let _ = unsafe { KeSetEvent(self.0.get(), NO_INCREMENT, NT_FALSE) };
    }

    /// The object pointer for the wait calls.
    fn object(&self) -> PVOID {
        self.0.get().cast()
    }

    /// The event as one object of a [`WaitBlocks::wait_any`].
    pub fn waitable(&self) -> Waitable<'_> {
        // SAFETY: an initialised KEVENT (the type's invariant), resident, alive for the
        // borrow of `self`.
        unsafe { Waitable::new(NonNull::from(&self.0).cast()) }
    }

    /// Waits for the event, at most `timeout` (forever if `None`). IRQL <= APC_LEVEL: a
    /// wait that may block is not allowed at DISPATCH_LEVEL (`KeWaitForSingleObject`).
    pub fn wait(&self, timeout: Option<Duration>) -> NTSTATUS {
        let mut t = timeout.map(relative_timeout);
        let t_ptr = t.as_mut().map_or(ptr::null_mut(), ptr::from_mut);
        // SAFETY: initialised (the type's invariant) and resident; `t_ptr` is null or a live
        // local; kernel-mode, non-alertable wait.
        unsafe {
            KeWaitForSingleObject(
                self.object(),
                _KWAIT_REASON::Executive,
                KERNEL_MODE,
                NT_FALSE,
                t_ptr,
            )
        }
    }
}

/// A dispatcher object (an initialised, resident `KEVENT` here) that stays valid for `'a`:
/// what a [`WaitBlocks::wait_any`] may wait on.
#[derive(Clone, Copy, Debug)]
pub struct Waitable<'a> {
    object: NonNull<c_void>,
    _valid: PhantomData<&'a ()>,
}

impl Waitable<'_> {
    /// # Safety
    /// `object` is an initialised dispatcher object in nonpaged memory, valid (not moved,
    /// freed or closed) for the chosen lifetime.
    pub unsafe fn new(object: NonNull<c_void>) -> Self {
        Self {
            object,
            _valid: PhantomData,
        }
    }
}

// The portable decoder's constants are the WDK's.
const _: () = assert!(vmballoon_nt::ntstatus::STATUS_WAIT_0 == wdk_sys::STATUS_WAIT_0);
const _: () =
    assert!(vmballoon_nt::ntstatus::MAXIMUM_WAIT_OBJECTS == MAXIMUM_WAIT_OBJECTS as usize);

/// How many objects one [`WaitBlocks::wait_any`] can wait on: stop, notice,
/// LowMemoryCondition and MaximumCommitCondition.
pub const WAIT_OBJECTS: usize = 4;
const _: () = assert!(WAIT_OBJECTS <= MAXIMUM_WAIT_OBJECTS as usize);
// More than the thread's built-in wait blocks: the caller must supply them (below).
const _: () = assert!(WAIT_OBJECTS > THREAD_WAIT_OBJECTS as usize);

/// Caller-supplied wait blocks for `KeWaitForMultipleObjects` on more than
/// `THREAD_WAIT_OBJECTS` objects. The documented contract: `sizeof(KWAIT_BLOCK) * Count`
/// bytes of nonpaged memory, which need not be initialised and are opaque to the driver,
/// used only for the duration of the wait. The driver keeps them in its nonpaged pool
/// state (the worker's `Work`), not on the worker's stack.
pub struct WaitBlocks(MaybeUninit<[KWAIT_BLOCK; WAIT_OBJECTS]>);

impl WaitBlocks {
    /// Storage for the wait blocks (uninitialised, as the routine allows).
    pub const fn new() -> Self {
        Self(MaybeUninit::uninit())
    }

    /// Waits, kernel-mode and not alertable, until one of `objects` is signalled or
    /// `timeout` passes (forever if `None`); the index of the signalled object, `None` on
    /// a timeout. At most [`WAIT_OBJECTS`] objects: any beyond are not waited on; with none
    /// it returns `None` at once.
    /// PASSIVE_LEVEL or APC_LEVEL (a wait that may block), in a system thread.
    pub fn wait_any(
        &mut self,
        objects: &[Waitable<'_>],
        timeout: Option<Duration>,
    ) -> Option<usize> {
        let mut array: [PVOID; WAIT_OBJECTS] = [ptr::null_mut(); WAIT_OBJECTS];
        let count = array
            .iter_mut()
            .zip(objects)
            .map(|(slot, w)| *slot = w.object.as_ptr())
            .count();
        if count == 0 {
            // Nothing to wait on: a wait on zero objects is not documented.
            return None;
        }
        let mut t = timeout.map(relative_timeout);
        let t_ptr = t.as_mut().map_or(ptr::null_mut(), ptr::from_mut);
        // SAFETY: `array` holds `count` (<= WAIT_OBJECTS <= MAXIMUM_WAIT_OBJECTS) dispatcher
        // objects that outlive this call (`Waitable`'s contract), in nonpaged memory; the
        // pointer array itself may be on the stack (documented). `self.0` is storage for
        // `WAIT_OBJECTS >= count` KWAIT_BLOCKs in the driver's nonpaged pool state,
        // exclusively ours for the wait (`&mut self`). `t_ptr` is null or a live local.
        // Kernel-mode, non-alertable: only an object or the timeout ends the wait.
        let status = unsafe {
            KeWaitForMultipleObjects(
                ULONG::try_from(count).unwrap_or(0),
                array.as_mut_ptr(),
                _WAIT_TYPE::WaitAny,
                _KWAIT_REASON::Executive,
                KERNEL_MODE,
                NT_FALSE,
                t_ptr,
                self.0.as_mut_ptr().cast::<KWAIT_BLOCK>(),
            )
        };
        wait_index(status, count)
    }
}

/// Nonpaged, tagged pool for one `T`, **zero-filled** (`ExAllocatePool2` zeroes unless
/// `POOL_FLAG_UNINITIALIZED` is passed, which this never does). `None` when the pool is
/// exhausted.
pub fn pool_alloc<T>(bytes: usize) -> Option<NonNull<T>> {
    // Pool blocks are 16-byte aligned on x64: enough for every T this is used for.
    const { assert!(core::mem::align_of::<T>() <= 16) };
    // SAFETY: ExAllocatePool2 has no preconditions at <= DISPATCH_LEVEL; every caller runs
    // at PASSIVE_LEVEL.
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

/// A system thread, held by the kernel handle `PsCreateSystemThread` returned. Dropping
/// it (or [`Thread::join`]) waits until the thread has ended, then closes the handle, so
/// a `Thread` can never be let go of while its thread still runs.
///
/// No object reference is taken: `ObReferenceObjectByHandle` would need the
/// `PsThreadType` data import (which does not link, `xtask/mirror/README.md`) and could
/// fail after the thread had started, leaving a running thread nobody could wait for.
/// Waiting on the handle has no such failure: once `spawn` returns `Ok`, joining works.
pub struct Thread(HANDLE);

impl Thread {
    /// Starts `routine(context)` on a new system thread (PASSIVE_LEVEL, system process).
    /// `Err` only when no thread was created.
    ///
    /// # Safety
    /// `context` stays valid until the thread has ended (the `Thread` is joined or
    /// dropped), and `routine` ends the thread with `PsTerminateSystemThread`.
    pub unsafe fn spawn(routine: PKSTART_ROUTINE, context: PVOID) -> Result<Self, NTSTATUS> {
        let mut handle: HANDLE = ptr::null_mut();
        let mut attrs = object_attributes(ptr::null_mut(), 0);
        // SAFETY: out-pointers are live locals; the context contract is our caller's.
        // SYNCHRONIZE is all the handle is used for (the wait in `drop`); OBJ_KERNEL_HANDLE
        // makes it valid in every process context, unload's included.
        let status = unsafe {
            PsCreateSystemThread(
                &mut handle,
                SYNCHRONIZE,
                &mut attrs,
                ptr::null_mut(),
                ptr::null_mut(),
                routine,
                context,
            )
        };
        nt_result(status)?;
        Ok(Self(handle))
    }

    /// Waits until the thread has ended, then closes the handle.
    pub fn join(self) {
        drop(self);
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        // SAFETY: our kernel handle with SYNCHRONIZE access, open until the close below; no
        // timeout (the thread ends once it sees its stop request); PASSIVE_LEVEL (unload or
        // DriverEntry).
        let _ = unsafe { ZwWaitForSingleObject(self.0, NT_FALSE, ptr::null_mut()) };
        // SAFETY: the handle from PsCreateSystemThread, closed exactly once (in drop).
        let _ = unsafe { ZwClose(self.0) };
    }
}
