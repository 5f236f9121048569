//! Types, exactly as the real bindings spell them (`golden.txt`; x64 MSVC: `c_long` is
//! 32 bits). Source header per item.

use core::ffi::{
    c_char, c_int, c_long, c_longlong, c_short, c_uchar, c_ulong, c_ulonglong, c_ushort, c_void,
};

// --- basic typedefs (ntdef.h, basetsd.h, corecrt.h) ---
pub type wchar_t = c_ushort;
pub type UCHAR = c_uchar;
pub type PUCHAR = *mut UCHAR;
pub type USHORT = c_ushort;
pub type ULONG = c_ulong;
pub type LONG = c_long;
pub type CCHAR = c_char;
pub type CSHORT = c_short;
pub type LONGLONG = c_longlong;
pub type ULONGLONG = c_ulonglong;
pub type ULONG64 = c_ulonglong;
pub type PULONG64 = *mut c_ulonglong;
pub type DWORD = c_ulong;
pub type ULONG_PTR = c_ulonglong;
pub type LONG_PTR = c_longlong;
pub type SIZE_T = ULONG_PTR;
pub type PFN_NUMBER = ULONG64;
pub type BOOLEAN = UCHAR;
pub type WCHAR = wchar_t;
pub type PWCH = *mut WCHAR;
pub type PVOID = *mut c_void;
pub type HANDLE = *mut c_void;
pub type PHANDLE = *mut HANDLE;
pub type PULONG = *mut ULONG;
pub type NTSTATUS = LONG;
pub type ACCESS_MASK = ULONG;
pub type KIRQL = UCHAR;
pub type KPRIORITY = LONG;
pub type KPROCESSOR_MODE = CCHAR;
pub type POOL_FLAGS = ULONG64;
/// wdm.h: `typedef ULONG NODE_REQUIREMENT;`
pub type NODE_REQUIREMENT = ULONG;

// --- LARGE_INTEGER / PHYSICAL_ADDRESS (ntdef.h, wdm.h) ---
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _LARGE_INTEGER__bindgen_ty_1 {
    pub LowPart: ULONG,
    pub HighPart: LONG,
}
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _LARGE_INTEGER__bindgen_ty_2 {
    pub LowPart: ULONG,
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
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
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
impl Default for _OBJECT_ATTRIBUTES {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
pub type OBJECT_ATTRIBUTES = _OBJECT_ATTRIBUTES;
pub type POBJECT_ATTRIBUTES = *mut OBJECT_ATTRIBUTES;

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _CLIENT_ID {
    pub UniqueProcess: HANDLE,
    pub UniqueThread: HANDLE,
}
impl Default for _CLIENT_ID {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
pub type CLIENT_ID = _CLIENT_ID;
pub type PCLIENT_ID = *mut CLIENT_ID;

// --- opaque kernel objects (no definition in the WDK headers) ---
#[repr(C)]
#[derive(Debug)]
pub struct _CALLBACK_OBJECT {
    _unused: [u8; 0],
}
pub type PCALLBACK_OBJECT = *mut _CALLBACK_OBJECT;
/// `PEPROCESS` is `struct _KPROCESS *` (wdm.h), opaque.
#[repr(C)]
#[derive(Debug)]
pub struct _KPROCESS {
    _unused: [u8; 0],
}
pub type PEPROCESS = *mut _KPROCESS;
/// `struct _EPROCESS`, named by `MDL.Process` only, never defined: bindgen's one-byte
/// placeholder.
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _EPROCESS {
    pub _address: u8,
}

// --- dispatcher objects (wdm.h). DISPATCHER_HEADER: of the seven views of its leading
// union only the first (`Lock`/`LockNV`) is mirrored (the glue never reads a header
// field; the union's size is the same); size 0x18 as on x64. ---
#[repr(C)]
#[derive(Copy, Clone)]
pub union _DISPATCHER_HEADER__bindgen_ty_1__bindgen_ty_1 {
    pub Lock: LONG,
    pub LockNV: LONG,
}
impl Default for _DISPATCHER_HEADER__bindgen_ty_1__bindgen_ty_1 {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
#[repr(C)]
#[derive(Copy, Clone)]
pub union _DISPATCHER_HEADER__bindgen_ty_1 {
    pub __bindgen_anon_1: _DISPATCHER_HEADER__bindgen_ty_1__bindgen_ty_1,
}
impl Default for _DISPATCHER_HEADER__bindgen_ty_1 {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}

#[repr(C)]
#[derive(Copy, Clone)]
pub struct _DISPATCHER_HEADER {
    pub __bindgen_anon_1: _DISPATCHER_HEADER__bindgen_ty_1,
    pub SignalState: LONG,
    pub WaitListHead: LIST_ENTRY,
}
impl Default for _DISPATCHER_HEADER {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
pub type DISPATCHER_HEADER = _DISPATCHER_HEADER;
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _KEVENT {
    pub Header: DISPATCHER_HEADER,
}
impl Default for _KEVENT {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}

pub type KEVENT = _KEVENT;
pub type PKEVENT = *mut _KEVENT;
pub type PRKEVENT = *mut _KEVENT;
const _: () = assert!(core::mem::size_of::<KEVENT>() == 0x18);

/// KWAIT_BLOCK (wdm.h): opaque to drivers, which only supply storage for
/// `KeWaitForMultipleObjects` waits on more than THREAD_WAIT_OBJECTS objects; the glue
/// never touches a member (members left out, real size).
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _KWAIT_BLOCK {
    _rest: [u64; 6],
}
impl Default for _KWAIT_BLOCK {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}

pub type KWAIT_BLOCK = _KWAIT_BLOCK;
pub type PKWAIT_BLOCK = *mut _KWAIT_BLOCK;
const _: () = assert!(core::mem::size_of::<KWAIT_BLOCK>() == 0x30);

// --- OSVERSIONINFOW / RTL_OSVERSIONINFOW (wdm.h) ---
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _OSVERSIONINFOW {
    pub dwOSVersionInfoSize: ULONG,
    pub dwMajorVersion: ULONG,
    pub dwMinorVersion: ULONG,
    pub dwBuildNumber: ULONG,
    pub dwPlatformId: ULONG,
    pub szCSDVersion: [WCHAR; 128usize],
}
impl Default for _OSVERSIONINFOW {
    fn default() -> Self {
        Self {
            dwOSVersionInfoSize: 0,
            dwMajorVersion: 0,
            dwMinorVersion: 0,
            dwBuildNumber: 0,
            dwPlatformId: 0,
            szCSDVersion: [0; 128],
        }
    }
}
pub type RTL_OSVERSIONINFOW = _OSVERSIONINFOW;
pub type PRTL_OSVERSIONINFOW = *mut _OSVERSIONINFOW;
const _: () = assert!(core::mem::size_of::<RTL_OSVERSIONINFOW>() == 276);

// --- IMAGE_INFO (ntddk.h): the glue only receives a pointer in its load-image notify
// routine and never reads it; the bit-field union is kept as its ULONG view. ---
#[repr(C)]
#[derive(Copy, Clone)]
pub union _IMAGE_INFO__bindgen_ty_1 {
    pub Properties: ULONG,
}
impl Default for _IMAGE_INFO__bindgen_ty_1 {
    fn default() -> Self {
        Self { Properties: 0 }
    }
}
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _IMAGE_INFO {
    pub __bindgen_anon_1: _IMAGE_INFO__bindgen_ty_1,
    pub ImageBase: PVOID,
    pub ImageSelector: ULONG,
    pub ImageSize: SIZE_T,
    pub ImageSectionNumber: ULONG,
}
impl Default for _IMAGE_INFO {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
pub type IMAGE_INFO = _IMAGE_INFO;
pub type PIMAGE_INFO = *mut _IMAGE_INFO;
const _: () = assert!(core::mem::size_of::<IMAGE_INFO>() == 0x28);

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
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
#[repr(C)]
#[derive(Copy, Clone)]
pub struct _EX_RUNDOWN_REF {
    pub __bindgen_anon_1: _EX_RUNDOWN_REF__bindgen_ty_1,
}
impl Default for _EX_RUNDOWN_REF {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
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

// --- MDL (wdm.h, docs/windows-memory.md §1.5) ---
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
pub type PMDL = *mut _MDL;
const _: () = assert!(core::mem::size_of::<MDL>() == 0x30);

// --- callbacks: function typedefs become Option<unsafe extern "C" fn> ---
pub type KSTART_ROUTINE = ::core::option::Option<unsafe extern "C" fn(StartContext: PVOID)>;
pub type PKSTART_ROUTINE = KSTART_ROUTINE;
/// ntddk.h `PLOAD_IMAGE_NOTIFY_ROUTINE`.
pub type PLOAD_IMAGE_NOTIFY_ROUTINE = Option<
    unsafe extern "C" fn(FullImageName: PUNICODE_STRING, ProcessId: HANDLE, ImageInfo: PIMAGE_INFO),
>;
pub type CALLBACK_FUNCTION =
    ::core::option::Option<unsafe extern "C" fn(CallbackContext: PVOID, Argument1: PVOID, Argument2: PVOID)>;
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
impl Default for _DRIVER_OBJECT {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
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
/// `WDFOBJECT` is a plain `HANDLE` in wdftypes.h (no `DECLARE_HANDLE` struct).
pub type WDFOBJECT = HANDLE;
#[repr(C)]
#[derive(Debug)]
pub struct WDFDEVICE_INIT {
    _unused: [u8; 0],
}
pub type PWDFDEVICE_INIT = *mut WDFDEVICE_INIT;

// The `EVT_WDF_*` role typedefs are function types in C, which bindgen does not emit: only
// the `PFN_WDF_*` pointer types exist, with unnamed parameters (`arg1`...).
pub type PFN_WDF_DRIVER_DEVICE_ADD = ::core::option::Option<
    unsafe extern "C" fn(arg1: WDFDRIVER, arg2: PWDFDEVICE_INIT) -> NTSTATUS,
>;
pub type PFN_WDF_DRIVER_UNLOAD = ::core::option::Option<unsafe extern "C" fn(arg1: WDFDRIVER)>;
pub type PFN_WDF_OBJECT_CONTEXT_CLEANUP =
    ::core::option::Option<unsafe extern "C" fn(arg1: WDFOBJECT)>;
pub type PFN_WDF_OBJECT_CONTEXT_DESTROY =
    ::core::option::Option<unsafe extern "C" fn(arg1: WDFOBJECT)>;

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

/// WDF_OBJECT_CONTEXT_TYPE_INFO: the glue only names its pointer type; members left out,
/// real size.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _WDF_OBJECT_CONTEXT_TYPE_INFO {
    _rest: [u64; 5],
}
impl Default for _WDF_OBJECT_CONTEXT_TYPE_INFO {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
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
impl Default for _WDF_OBJECT_ATTRIBUTES {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
pub type WDF_OBJECT_ATTRIBUTES = _WDF_OBJECT_ATTRIBUTES;
pub type PWDF_OBJECT_ATTRIBUTES = *mut _WDF_OBJECT_ATTRIBUTES;

/// WDF_DRIVER_GLOBALS (wdfglobals.h): the glue only passes the pointer; members left out,
/// real size.
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _WDF_DRIVER_GLOBALS {
    _rest: [u64; 7],
}
impl Default for _WDF_DRIVER_GLOBALS {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
pub type PWDF_DRIVER_GLOBALS = *mut _WDF_DRIVER_GLOBALS;

pub type WDFFUNC = ::core::option::Option<unsafe extern "C" fn()>;

pub type PFN_WDFDRIVERCREATE = ::core::option::Option<
    unsafe extern "C" fn(
        DriverGlobals: PWDF_DRIVER_GLOBALS,
        DriverObject: PDRIVER_OBJECT,
        RegistryPath: PCUNICODE_STRING,
        DriverAttributes: PWDF_OBJECT_ATTRIBUTES,
        DriverConfig: PWDF_DRIVER_CONFIG,
        Driver: *mut WDFDRIVER,
    ) -> NTSTATUS,
>;
pub type PFN_WDFDRIVEROPENPARAMETERSREGISTRYKEY = ::core::option::Option<
    unsafe extern "C" fn(
        DriverGlobals: PWDF_DRIVER_GLOBALS,
        Driver: WDFDRIVER,
        DesiredAccess: ACCESS_MASK,
        KeyAttributes: PWDF_OBJECT_ATTRIBUTES,
        Key: *mut WDFKEY,
    ) -> NTSTATUS,
>;
pub type PFN_WDFREGISTRYQUERYULONG = ::core::option::Option<
    unsafe extern "C" fn(
        DriverGlobals: PWDF_DRIVER_GLOBALS,
        Key: WDFKEY,
        ValueName: PCUNICODE_STRING,
        Value: PULONG,
    ) -> NTSTATUS,
>;
pub type PFN_WDFREGISTRYCLOSE =
    ::core::option::Option<unsafe extern "C" fn(DriverGlobals: PWDF_DRIVER_GLOBALS, Key: WDFKEY)>;

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

// --- Performance counters (wdm.h, PCW; docs/windows-memory.md §9.6) ---
#[repr(C)]
#[derive(Debug)]
pub struct _PCW_INSTANCE {
    _unused: [u8; 0],
}
pub type PPCW_INSTANCE = *mut _PCW_INSTANCE;
#[repr(C)]
#[derive(Debug)]
pub struct _PCW_REGISTRATION {
    _unused: [u8; 0],
}
pub type PPCW_REGISTRATION = *mut _PCW_REGISTRATION;
#[repr(C)]
#[derive(Debug, Default, Copy, Clone)]
pub struct _PCW_COUNTER_DESCRIPTOR {
    pub Id: USHORT,
    pub StructIndex: USHORT,
    pub Offset: USHORT,
    pub Size: USHORT,
}
pub type PCW_COUNTER_DESCRIPTOR = _PCW_COUNTER_DESCRIPTOR;
pub type PPCW_COUNTER_DESCRIPTOR = *mut _PCW_COUNTER_DESCRIPTOR;
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _PCW_DATA {
    pub Data: *const ::core::ffi::c_void,
    pub Size: ULONG,
}
impl Default for _PCW_DATA {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
pub type PCW_DATA = _PCW_DATA;
pub type PPCW_DATA = *mut _PCW_DATA;
/// PCW_CALLBACK_INFORMATION (wdm.h): only named by the callback type, which the glue
/// leaves NULL; members left out, real size.
#[repr(C)]
#[derive(Copy, Clone)]
pub union _PCW_CALLBACK_INFORMATION {
    _rest: [u64; 5],
}
impl Default for _PCW_CALLBACK_INFORMATION {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for unions does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
pub type PCW_CALLBACK_INFORMATION = _PCW_CALLBACK_INFORMATION;
pub type PPCW_CALLBACK_INFORMATION = *mut _PCW_CALLBACK_INFORMATION;
pub mod _PCW_CALLBACK_TYPE {
    pub type Type = core::ffi::c_int;
    pub const PcwCallbackAddCounter: Type = 0;
    pub const PcwCallbackRemoveCounter: Type = 1;
    pub const PcwCallbackEnumerateInstances: Type = 2;
    pub const PcwCallbackCollectData: Type = 3;
}
pub use self::_PCW_CALLBACK_TYPE::Type as PCW_CALLBACK_TYPE;
pub type PPCW_CALLBACK = ::core::option::Option<
    unsafe extern "C" fn(
        arg1: PCW_CALLBACK_TYPE,
        arg2: PPCW_CALLBACK_INFORMATION,
        arg3: PVOID,
    ) -> NTSTATUS,
>;
pub mod PCW_REGISTRATION_FLAGS {
    pub type Type = core::ffi::c_int;
    pub const PcwRegistrationNone: Type = 0;
    pub const PcwRegistrationSiloNeutral: Type = 1;
}
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _PCW_REGISTRATION_INFORMATION {
    pub Version: ULONG,
    pub Name: PCUNICODE_STRING,
    pub CounterCount: ULONG,
    pub Counters: PPCW_COUNTER_DESCRIPTOR,
    pub Callback: PPCW_CALLBACK,
    pub CallbackContext: PVOID,
    pub Flags: PCW_REGISTRATION_FLAGS::Type,
}
impl Default for _PCW_REGISTRATION_INFORMATION {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
pub type PCW_REGISTRATION_INFORMATION = _PCW_REGISTRATION_INFORMATION;
pub type PPCW_REGISTRATION_INFORMATION = *mut _PCW_REGISTRATION_INFORMATION;

// --- Bug-check reason callbacks (wdm.h; docs/windows-memory.md §9.5) ---
pub mod _KBUGCHECK_CALLBACK_REASON {
    pub type Type = core::ffi::c_int;
    pub const KbCallbackInvalid: Type = 0;
    pub const KbCallbackReserved1: Type = 1;
    pub const KbCallbackSecondaryDumpData: Type = 2;
    pub const KbCallbackDumpIo: Type = 3;
    pub const KbCallbackAddPages: Type = 4;
    pub const KbCallbackSecondaryMultiPartDumpData: Type = 5;
    pub const KbCallbackRemovePages: Type = 6;
    pub const KbCallbackTriageDumpData: Type = 7;
    pub const KbCallbackReserved2: Type = 8;
}
pub use self::_KBUGCHECK_CALLBACK_REASON::Type as KBUGCHECK_CALLBACK_REASON;
/// Opaque in the real bindings as well: the driver supplies the record's storage.
#[repr(C)]
#[derive(Debug)]
pub struct _KBUGCHECK_REASON_CALLBACK_RECORD {
    _unused: [u8; 0],
}
pub type KBUGCHECK_REASON_CALLBACK_ROUTINE = ::core::option::Option<
    unsafe extern "C" fn(
        Reason: KBUGCHECK_CALLBACK_REASON,
        Record: *mut _KBUGCHECK_REASON_CALLBACK_RECORD,
        ReasonSpecificData: PVOID,
        ReasonSpecificDataLength: ULONG,
    ),
>;
pub type PKBUGCHECK_REASON_CALLBACK_ROUTINE = KBUGCHECK_REASON_CALLBACK_ROUTINE;
pub type KBUGCHECK_REASON_CALLBACK_RECORD = _KBUGCHECK_REASON_CALLBACK_RECORD;
pub type PKBUGCHECK_REASON_CALLBACK_RECORD = *mut _KBUGCHECK_REASON_CALLBACK_RECORD;
#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct _KBUGCHECK_REMOVE_PAGES {
    pub Context: PVOID,
    pub Flags: ULONG,
    pub BugCheckCode: ULONG,
    pub Address: ULONG_PTR,
    pub Count: ULONG_PTR,
}
impl Default for _KBUGCHECK_REMOVE_PAGES {
    fn default() -> Self {
        let mut s = ::core::mem::MaybeUninit::<Self>::uninit();
        // SAFETY: (mirror) plain C data, for which all-zero is a valid value; bindgen's
        // `impl Default` for types with pointers does the same.
        unsafe {
            ::core::ptr::write_bytes(s.as_mut_ptr(), 0, 1);
            s.assume_init()
        }
    }
}
pub type KBUGCHECK_REMOVE_PAGES = _KBUGCHECK_REMOVE_PAGES;
