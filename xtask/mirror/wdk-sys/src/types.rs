//! Types, in bindgen's shape (x64 MSVC: `c_long` is 32 bits). Source header per item.

use core::ffi::{c_int, c_void};

// --- basic typedefs (ntdef.h, basetsd.h) ---
pub type UCHAR = u8;
pub type USHORT = u16;
pub type ULONG = u32;
pub type LONG = i32;
pub type CCHAR = i8;
pub type CSHORT = i16;
pub type LONGLONG = i64;
pub type ULONGLONG = u64;
pub type ULONG64 = u64;
pub type PULONG64 = *mut ULONG64;
pub type DWORD = u32;
pub type ULONG_PTR = u64;
pub type LONG_PTR = i64;
pub type SIZE_T = ULONG_PTR;
pub type PFN_NUMBER = ULONG_PTR;
pub type BOOLEAN = UCHAR;
pub type WCHAR = u16;
pub type PWCH = *mut WCHAR;
pub type PVOID = *mut c_void;
pub type HANDLE = PVOID;
pub type PHANDLE = *mut HANDLE;
pub type PULONG = *mut ULONG;
pub type NTSTATUS = LONG;
pub type ACCESS_MASK = ULONG;
pub type KIRQL = UCHAR;
pub type KPRIORITY = LONG;
pub type KPROCESSOR_MODE = CCHAR;
pub type POOL_FLAGS = ULONG64;

// --- LARGE_INTEGER / PHYSICAL_ADDRESS (ntdef.h, wdm.h) ---
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _LARGE_INTEGER__bindgen_ty_1 {
    pub LowPart: DWORD,
    pub HighPart: LONG,
}
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _LARGE_INTEGER__bindgen_ty_2 {
    pub LowPart: DWORD,
    pub HighPart: LONG,
}
#[repr(C)]
#[derive(Copy, Clone)]
pub union _LARGE_INTEGER {
    pub __bindgen_anon_1: _LARGE_INTEGER__bindgen_ty_1,
    pub u: _LARGE_INTEGER__bindgen_ty_2,
    pub QuadPart: LONGLONG,
}
impl Default for _LARGE_INTEGER {
    fn default() -> Self {
        Self { QuadPart: 0 }
    }
}
pub type LARGE_INTEGER = _LARGE_INTEGER;
pub type PLARGE_INTEGER = *mut LARGE_INTEGER;
pub type PHYSICAL_ADDRESS = LARGE_INTEGER;

// --- LIST_ENTRY, UNICODE_STRING, OBJECT_ATTRIBUTES, CLIENT_ID (ntdef.h, wdm.h) ---
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _LIST_ENTRY {
    pub Flink: *mut _LIST_ENTRY,
    pub Blink: *mut _LIST_ENTRY,
}
impl Default for _LIST_ENTRY {
    fn default() -> Self {
        Self {
            Flink: core::ptr::null_mut(),
            Blink: core::ptr::null_mut(),
        }
    }
}
pub type LIST_ENTRY = _LIST_ENTRY;

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _UNICODE_STRING {
    pub Length: USHORT,
    pub MaximumLength: USHORT,
    pub Buffer: PWCH,
}
impl Default for _UNICODE_STRING {
    fn default() -> Self {
        Self {
            Length: 0,
            MaximumLength: 0,
            Buffer: core::ptr::null_mut(),
        }
    }
}
pub type UNICODE_STRING = _UNICODE_STRING;
pub type PUNICODE_STRING = *mut UNICODE_STRING;
pub type PCUNICODE_STRING = *const UNICODE_STRING;

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _OBJECT_ATTRIBUTES {
    pub Length: ULONG,
    pub RootDirectory: HANDLE,
    pub ObjectName: PUNICODE_STRING,
    pub Attributes: ULONG,
    pub SecurityDescriptor: PVOID,
    pub SecurityQualityOfService: PVOID,
}
pub type OBJECT_ATTRIBUTES = _OBJECT_ATTRIBUTES;
pub type POBJECT_ATTRIBUTES = *mut OBJECT_ATTRIBUTES;

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _CLIENT_ID {
    pub UniqueProcess: HANDLE,
    pub UniqueThread: HANDLE,
}
pub type PCLIENT_ID = *mut _CLIENT_ID;

// --- opaque kernel objects (no definition in the WDK headers) ---
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _CALLBACK_OBJECT {
    _unused: [u8; 0],
}
pub type PCALLBACK_OBJECT = *mut _CALLBACK_OBJECT;
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _EPROCESS {
    _unused: [u8; 0],
}
pub type PEPROCESS = *mut _EPROCESS;

// --- dispatcher objects (wdm.h). DISPATCHER_HEADER: only the Lock view of the leading
// union is mirrored (the glue never reads a header field); size 0x18 as on x64. ---
#[repr(C)]
#[derive(Copy, Clone)]
pub union _DISPATCHER_HEADER__bindgen_ty_1 {
    pub Lock: LONG,
    pub LockNV: LONG,
}
impl Default for _DISPATCHER_HEADER__bindgen_ty_1 {
    fn default() -> Self {
        Self { Lock: 0 }
    }
}
#[repr(C)]
#[derive(Default, Copy, Clone)]
pub struct _DISPATCHER_HEADER {
    pub __bindgen_anon_1: _DISPATCHER_HEADER__bindgen_ty_1,
    pub SignalState: LONG,
    pub WaitListHead: LIST_ENTRY,
}
pub type DISPATCHER_HEADER = _DISPATCHER_HEADER;
#[repr(C)]
#[derive(Default, Copy, Clone)]
pub struct _KEVENT {
    pub Header: DISPATCHER_HEADER,
}
pub type KEVENT = _KEVENT;
pub type PKEVENT = *mut _KEVENT;
pub type PRKEVENT = *mut _KEVENT;
const _: () = assert!(core::mem::size_of::<KEVENT>() == 0x18);

/// KWAIT_BLOCK: opaque here (the glue passes NULL: <= THREAD_WAIT_OBJECTS objects).
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _KWAIT_BLOCK {
    _opaque: [u64; 6],
}
pub type PKWAIT_BLOCK = *mut _KWAIT_BLOCK;

// --- EX_RUNDOWN_REF (wdm.h): opaque to drivers; `union { __volatile ULONG_PTR Count;
// __volatile PVOID Ptr; }`, the anonymous union named as bindgen names it. ---
#[repr(C)]
#[derive(Copy, Clone)]
pub union _EX_RUNDOWN_REF__bindgen_ty_1 {
    pub Count: ULONG_PTR,
    pub Ptr: PVOID,
}
impl Default for _EX_RUNDOWN_REF__bindgen_ty_1 {
    fn default() -> Self {
        Self { Count: 0 }
    }
}
#[repr(C)]
#[derive(Default, Copy, Clone)]
pub struct _EX_RUNDOWN_REF {
    pub __bindgen_anon_1: _EX_RUNDOWN_REF__bindgen_ty_1,
}
pub type EX_RUNDOWN_REF = _EX_RUNDOWN_REF;
pub type PEX_RUNDOWN_REF = *mut _EX_RUNDOWN_REF;
const _: () = assert!(core::mem::size_of::<EX_RUNDOWN_REF>() == 8);

// --- ModuleConsts enums (wdm.h) ---
pub mod _EVENT_TYPE {
    pub type Type = core::ffi::c_int;
    pub const NotificationEvent: Type = 0;
    pub const SynchronizationEvent: Type = 1;
}
pub use self::_EVENT_TYPE::Type as EVENT_TYPE;
pub mod _WAIT_TYPE {
    pub type Type = core::ffi::c_int;
    pub const WaitAll: Type = 0;
    pub const WaitAny: Type = 1;
    pub const WaitNotification: Type = 2;
    pub const WaitDequeue: Type = 3;
    pub const WaitDpc: Type = 4;
}
pub use self::_WAIT_TYPE::Type as WAIT_TYPE;
pub mod _KWAIT_REASON {
    pub type Type = core::ffi::c_int;
    pub const Executive: Type = 0;
    pub const FreePage: Type = 1;
    pub const PageIn: Type = 2;
}
pub use self::_KWAIT_REASON::Type as KWAIT_REASON;
pub mod _MODE {
    pub type Type = core::ffi::c_int;
    pub const KernelMode: Type = 0;
    pub const UserMode: Type = 1;
    pub const MaximumMode: Type = 2;
}
pub use self::_MODE::Type as MODE;
pub mod _MEMORY_CACHING_TYPE {
    pub type Type = core::ffi::c_int;
    pub const MmNonCached: Type = 0;
    pub const MmCached: Type = 1;
    pub const MmWriteCombined: Type = 2;
    pub const MmHardwareCoherentCached: Type = 3;
    pub const MmNonCachedUnordered: Type = 4;
    pub const MmUSWCCached: Type = 5;
    pub const MmMaximumCacheType: Type = 6;
    pub const MmNotMapped: Type = -1;
}
pub use self::_MEMORY_CACHING_TYPE::Type as MEMORY_CACHING_TYPE;

// --- MDL (wdm.h, windows-memory.md 1.5) ---
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _MDL {
    pub Next: *mut _MDL,
    pub Size: CSHORT,
    pub MdlFlags: CSHORT,
    pub Process: *mut _EPROCESS,
    pub MappedSystemVa: PVOID,
    pub StartVa: PVOID,
    pub ByteCount: ULONG,
    pub ByteOffset: ULONG,
}
impl Default for _MDL {
    fn default() -> Self {
        Self {
            Next: core::ptr::null_mut(),
            Size: 0,
            MdlFlags: 0,
            Process: core::ptr::null_mut(),
            MappedSystemVa: core::ptr::null_mut(),
            StartVa: core::ptr::null_mut(),
            ByteCount: 0,
            ByteOffset: 0,
        }
    }
}
pub type MDL = _MDL;
pub type PMDL = *mut MDL;
const _: () = assert!(core::mem::size_of::<MDL>() == 0x30);

// --- callbacks: function typedefs become Option<unsafe extern "C" fn> ---
pub type KSTART_ROUTINE = Option<unsafe extern "C" fn(StartContext: PVOID)>;
pub type PKSTART_ROUTINE = KSTART_ROUTINE;
pub type CALLBACK_FUNCTION =
    Option<unsafe extern "C" fn(CallbackContext: PVOID, Argument1: PVOID, Argument2: PVOID)>;
pub type PCALLBACK_FUNCTION = CALLBACK_FUNCTION;

// --- DRIVER_OBJECT (wdm.h): the glue only passes a pointer to WDF; members it never
// touches are left out (type and name kept). ---
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _DRIVER_OBJECT {
    pub Type: CSHORT,
    pub Size: CSHORT,
    _rest: [u64; 41],
}
pub type DRIVER_OBJECT = _DRIVER_OBJECT;
pub type PDRIVER_OBJECT = *mut _DRIVER_OBJECT;

// --- WDF (wdftypes.h, wdfdriver.h, wdfobject.h, wdfglobals.h, wdffuncenum.h) ---
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct WDFDRIVER__ {
    pub unused: c_int,
}
pub type WDFDRIVER = *mut WDFDRIVER__;
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct WDFKEY__ {
    pub unused: c_int,
}
pub type WDFKEY = *mut WDFKEY__;
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct WDFOBJECT__ {
    pub unused: c_int,
}
pub type WDFOBJECT = *mut WDFOBJECT__;
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct WDFDEVICE_INIT {
    _unused: [u8; 0],
}
pub type PWDFDEVICE_INIT = *mut WDFDEVICE_INIT;

pub type EVT_WDF_DRIVER_DEVICE_ADD =
    Option<unsafe extern "C" fn(Driver: WDFDRIVER, DeviceInit: PWDFDEVICE_INIT) -> NTSTATUS>;
pub type PFN_WDF_DRIVER_DEVICE_ADD = EVT_WDF_DRIVER_DEVICE_ADD;
pub type EVT_WDF_DRIVER_UNLOAD = Option<unsafe extern "C" fn(Driver: WDFDRIVER)>;
pub type PFN_WDF_DRIVER_UNLOAD = EVT_WDF_DRIVER_UNLOAD;
pub type EVT_WDF_OBJECT_CONTEXT_CLEANUP = Option<unsafe extern "C" fn(Object: WDFOBJECT)>;
pub type PFN_WDF_OBJECT_CONTEXT_CLEANUP = EVT_WDF_OBJECT_CONTEXT_CLEANUP;
pub type EVT_WDF_OBJECT_CONTEXT_DESTROY = Option<unsafe extern "C" fn(Object: WDFOBJECT)>;
pub type PFN_WDF_OBJECT_CONTEXT_DESTROY = EVT_WDF_OBJECT_CONTEXT_DESTROY;

#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _WDF_DRIVER_CONFIG {
    pub Size: ULONG,
    pub EvtDriverDeviceAdd: PFN_WDF_DRIVER_DEVICE_ADD,
    pub EvtDriverUnload: PFN_WDF_DRIVER_UNLOAD,
    pub DriverInitFlags: ULONG,
    pub DriverPoolTag: ULONG,
}
pub type WDF_DRIVER_CONFIG = _WDF_DRIVER_CONFIG;
pub type PWDF_DRIVER_CONFIG = *mut _WDF_DRIVER_CONFIG;

pub mod _WDF_DRIVER_INIT_FLAGS {
    pub type Type = core::ffi::c_int;
    pub const WdfDriverInitNonPnpDriver: Type = 1;
    pub const WdfDriverInitNoDispatchOverride: Type = 2;
    pub const WdfVerifyOn: Type = 4;
    pub const WdfVerifierOn: Type = 8;
    pub const WdfDriverInitCompanion: Type = 16;
}
pub use self::_WDF_DRIVER_INIT_FLAGS::Type as WDF_DRIVER_INIT_FLAGS;
pub mod _WDF_EXECUTION_LEVEL {
    pub type Type = core::ffi::c_int;
    pub const WdfExecutionLevelInvalid: Type = 0;
    pub const WdfExecutionLevelInheritFromParent: Type = 1;
    pub const WdfExecutionLevelPassive: Type = 2;
    pub const WdfExecutionLevelDispatch: Type = 3;
}
pub use self::_WDF_EXECUTION_LEVEL::Type as WDF_EXECUTION_LEVEL;
pub mod _WDF_SYNCHRONIZATION_SCOPE {
    pub type Type = core::ffi::c_int;
    pub const WdfSynchronizationScopeInvalid: Type = 0;
    pub const WdfSynchronizationScopeInheritFromParent: Type = 1;
    pub const WdfSynchronizationScopeDevice: Type = 2;
    pub const WdfSynchronizationScopeQueue: Type = 3;
    pub const WdfSynchronizationScopeNone: Type = 4;
}
pub use self::_WDF_SYNCHRONIZATION_SCOPE::Type as WDF_SYNCHRONIZATION_SCOPE;

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _WDF_OBJECT_CONTEXT_TYPE_INFO {
    _unused: [u8; 0],
}
pub type PCWDF_OBJECT_CONTEXT_TYPE_INFO = *const _WDF_OBJECT_CONTEXT_TYPE_INFO;

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _WDF_OBJECT_ATTRIBUTES {
    pub Size: ULONG,
    pub EvtCleanupCallback: PFN_WDF_OBJECT_CONTEXT_CLEANUP,
    pub EvtDestroyCallback: PFN_WDF_OBJECT_CONTEXT_DESTROY,
    pub ExecutionLevel: WDF_EXECUTION_LEVEL,
    pub SynchronizationScope: WDF_SYNCHRONIZATION_SCOPE,
    pub ParentObject: WDFOBJECT,
    pub ContextSizeOverride: usize,
    pub ContextTypeInfo: PCWDF_OBJECT_CONTEXT_TYPE_INFO,
}
pub type WDF_OBJECT_ATTRIBUTES = _WDF_OBJECT_ATTRIBUTES;
pub type PWDF_OBJECT_ATTRIBUTES = *mut _WDF_OBJECT_ATTRIBUTES;

/// WDF_DRIVER_GLOBALS: opaque to drivers.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _WDF_DRIVER_GLOBALS {
    _unused: [u8; 0],
}
pub type PWDF_DRIVER_GLOBALS = *mut _WDF_DRIVER_GLOBALS;

pub type WDFFUNC = Option<unsafe extern "C" fn()>;

pub type PFN_WDFDRIVERCREATE = Option<
    unsafe extern "C" fn(
        DriverGlobals: PWDF_DRIVER_GLOBALS,
        DriverObject: PDRIVER_OBJECT,
        RegistryPath: PCUNICODE_STRING,
        DriverAttributes: PWDF_OBJECT_ATTRIBUTES,
        DriverConfig: PWDF_DRIVER_CONFIG,
        Driver: *mut WDFDRIVER,
    ) -> NTSTATUS,
>;
pub type PFN_WDFDRIVEROPENPARAMETERSREGISTRYKEY = Option<
    unsafe extern "C" fn(
        DriverGlobals: PWDF_DRIVER_GLOBALS,
        Driver: WDFDRIVER,
        DesiredAccess: ACCESS_MASK,
        KeyAttributes: PWDF_OBJECT_ATTRIBUTES,
        Key: *mut WDFKEY,
    ) -> NTSTATUS,
>;
pub type PFN_WDFREGISTRYQUERYULONG = Option<
    unsafe extern "C" fn(
        DriverGlobals: PWDF_DRIVER_GLOBALS,
        Key: WDFKEY,
        ValueName: PCUNICODE_STRING,
        Value: PULONG,
    ) -> NTSTATUS,
>;
pub type PFN_WDFREGISTRYCLOSE =
    Option<unsafe extern "C" fn(DriverGlobals: PWDF_DRIVER_GLOBALS, Key: WDFKEY)>;

/// KMDF wdffuncenum.h table indices (append-only across KMDF versions).
pub mod _WDFFUNCENUM {
    pub type Type = core::ffi::c_int;
    pub const WdfDriverCreateTableIndex: Type = 116;
    pub const WdfDriverOpenParametersRegistryKeyTableIndex: Type = 119;
    pub const WdfRegistryCloseTableIndex: Type = 231;
    pub const WdfRegistryQueryULongTableIndex: Type = 240;
}

// The WDF stub library's globals (WdfDriverEntry.lib, linked statically into the driver):
// ordinary data symbols, not `__imp_` data imports. These are the only extern statics the
// mirror may have (README.md, "No data imports"; checked by `cargo xtask check-windows`).
unsafe extern "C" {
    /// `WdfFunctions_01031` in C; wdk-build's bindgen callback renames the Rust item
    /// `WdfFunctions`, and bindgen keeps the C symbol with `link_name`.
    #[link_name = "WdfFunctions_01031"]
    pub static mut WdfFunctions: *const WDFFUNC;
    pub static mut WdfDriverGlobals: PWDF_DRIVER_GLOBALS;
    pub static mut WdfFunctionCount: ULONG;
}
