//! Constants: `#define` integers as bindgen emits them (`u32`), and the NTSTATUS and
//! POOL_FLAG values wdk-sys hand-ports (`src/constants.rs`) because bindgen cannot read the
//! MSVC-suffixed or cast macros.

use crate::types::{NTSTATUS, POOL_FLAGS};

pub const FALSE: u32 = 0;
pub const TRUE: u32 = 1;
pub const IO_NO_INCREMENT: u32 = 0;
pub const SYNCHRONIZE: u32 = 0x0010_0000;
/// ((STANDARD_RIGHTS_READ | KEY_QUERY_VALUE | KEY_ENUMERATE_SUB_KEYS | KEY_NOTIFY) & ~SYNCHRONIZE)
pub const KEY_READ: u32 = 0x0002_0019;
pub const OBJ_CASE_INSENSITIVE: u32 = 0x0000_0040;
pub const OBJ_KERNEL_HANDLE: u32 = 0x0000_0200;
pub const PO_CB_SYSTEM_STATE_LOCK: u32 = 3;
/// wdm.h: wait blocks built into every thread (`KeWaitForMultipleObjects`).
pub const THREAD_WAIT_OBJECTS: u32 = 3;
/// wdm.h: the most objects one `KeWaitForMultipleObjects` may wait on.
pub const MAXIMUM_WAIT_OBJECTS: u32 = 64;
pub const MM_DONT_ZERO_ALLOCATION: u32 = 0x0000_0001;
pub const MM_ALLOCATE_FROM_LOCAL_NODE_ONLY: u32 = 0x0000_0002;
pub const MM_ALLOCATE_FULLY_REQUIRED: u32 = 0x0000_0004;
pub const MM_ALLOCATE_NO_WAIT: u32 = 0x0000_0008;
pub const MM_ALLOCATE_PREFER_CONTIGUOUS: u32 = 0x0000_0010;
pub const MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS: u32 = 0x0000_0020;
pub const MM_ALLOCATE_FAST_LARGE_PAGES: u32 = 0x0000_0040;
pub const PAGE_SIZE: u32 = 4096;
/// winnt.h / wdm.h memory protection: read/write, no-execute.
pub const PAGE_READWRITE: u32 = 0x04;
/// wdm.h `NODE_REQUIREMENT`: let Mm choose the node.
pub const MM_ANY_NODE_OK: u32 = 0x8000_0000;

pub const POOL_FLAG_NON_PAGED: POOL_FLAGS = 0x0000_0000_0000_0040;

pub const STATUS_SUCCESS: NTSTATUS = 0_i32;
pub const STATUS_WAIT_0: NTSTATUS = 0_i32;
pub const STATUS_UNSUCCESSFUL: NTSTATUS = -1_073_741_823_i32;
pub const STATUS_INSUFFICIENT_RESOURCES: NTSTATUS = -1_073_741_670_i32;
pub const STATUS_OBJECT_NAME_NOT_FOUND: NTSTATUS = -1_073_741_772_i32;
/// 0xC0000024
pub const STATUS_OBJECT_TYPE_MISMATCH: NTSTATUS = -1_073_741_788_i32;
/// 0xC0000023
pub const STATUS_BUFFER_TOO_SMALL: NTSTATUS = -1_073_741_789_i32;
pub const STATUS_DEVICE_DOES_NOT_EXIST: NTSTATUS = -1_073_741_632_i32;
pub const STATUS_NOT_SUPPORTED: NTSTATUS = -1_073_741_637_i32;
pub const STATUS_SHARING_VIOLATION: NTSTATUS = -1_073_741_757_i32;

pub const WDF_NO_OBJECT_ATTRIBUTES: crate::types::PWDF_OBJECT_ATTRIBUTES = core::ptr::null_mut();
pub const WDF_NO_HANDLE: crate::types::PVOID = core::ptr::null_mut();
/// wdm.h: the PCW version every Windows since 7 accepts.
pub const PCW_VERSION_1: u32 = 256;
/// wdm.h: `KBUGCHECK_REMOVE_PAGES.Flags`.
pub const KB_REMOVE_PAGES_FLAG_PHYSICAL_ADDRESS: u32 = 2;
pub const KB_REMOVE_PAGES_FLAG_ADDITIONAL_RANGES_EXIST: u32 = 2147483648;
