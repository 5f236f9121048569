//! Functions (wdm.h / ntddk.h), as bindgen declares them on x64: `unsafe extern "C"`,
//! `#[must_use]` when they return NTSTATUS.

use crate::types::*;

unsafe extern "C" {
    // Pool
    pub fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
    pub fn ExFreePoolWithTag(P: PVOID, Tag: ULONG);
    pub fn ExFreePool(P: PVOID);
    // Memory manager
    pub fn MmAllocatePagesForMdlEx(
        LowAddress: PHYSICAL_ADDRESS,
        HighAddress: PHYSICAL_ADDRESS,
        SkipBytes: PHYSICAL_ADDRESS,
        TotalBytes: SIZE_T,
        CacheType: MEMORY_CACHING_TYPE,
        Flags: ULONG,
    ) -> PMDL;
    pub fn MmFreePagesFromMdl(MemoryDescriptorList: PMDL);
    /// wdm.h, Windows 8+, IRQL <= DISPATCH_LEVEL; freed with MmFreeContiguousMemory.
    pub fn MmAllocateContiguousNodeMemory(
        NumberOfBytes: SIZE_T,
        LowestAcceptableAddress: PHYSICAL_ADDRESS,
        HighestAcceptableAddress: PHYSICAL_ADDRESS,
        BoundaryAddressMultiple: PHYSICAL_ADDRESS,
        Protect: ULONG,
        PreferredNode: NODE_REQUIREMENT,
    ) -> PVOID;
    pub fn MmFreeContiguousMemory(BaseAddress: PVOID);
    pub fn MmGetPhysicalAddress(BaseAddress: PVOID) -> PHYSICAL_ADDRESS;
    // Events and waits
    pub fn KeInitializeEvent(Event: PRKEVENT, Type: EVENT_TYPE, State: BOOLEAN);
    pub fn KeSetEvent(Event: PRKEVENT, Increment: KPRIORITY, Wait: BOOLEAN) -> LONG;
    pub fn KeReadStateEvent(Event: PRKEVENT) -> LONG;
    #[must_use]
    pub fn KeWaitForSingleObject(
        Object: PVOID,
        WaitReason: KWAIT_REASON,
        WaitMode: KPROCESSOR_MODE,
        Alertable: BOOLEAN,
        Timeout: PLARGE_INTEGER,
    ) -> NTSTATUS;
    #[must_use]
    pub fn KeWaitForMultipleObjects(
        Count: ULONG,
        Object: *mut PVOID,
        WaitType: WAIT_TYPE,
        WaitReason: KWAIT_REASON,
        WaitMode: KPROCESSOR_MODE,
        Alertable: BOOLEAN,
        Timeout: PLARGE_INTEGER,
        WaitBlockArray: PKWAIT_BLOCK,
    ) -> NTSTATUS;
    pub fn IoCreateNotificationEvent(EventName: PUNICODE_STRING, EventHandle: PHANDLE) -> PKEVENT;
    // Bug-check reason callbacks
    pub fn KeRegisterBugCheckReasonCallback(
        CallbackRecord: PKBUGCHECK_REASON_CALLBACK_RECORD,
        CallbackRoutine: PKBUGCHECK_REASON_CALLBACK_ROUTINE,
        Reason: KBUGCHECK_CALLBACK_REASON,
        Component: PUCHAR,
    ) -> BOOLEAN;
    pub fn KeDeregisterBugCheckReasonCallback(
        CallbackRecord: PKBUGCHECK_REASON_CALLBACK_RECORD,
    ) -> BOOLEAN;
    // Performance counters (PCW)
    #[must_use]
    pub fn PcwRegister(
        Registration: *mut PPCW_REGISTRATION,
        Info: PPCW_REGISTRATION_INFORMATION,
    ) -> NTSTATUS;
    pub fn PcwUnregister(Registration: PPCW_REGISTRATION);
    #[must_use]
    pub fn PcwCreateInstance(
        Instance: *mut PPCW_INSTANCE,
        Registration: PPCW_REGISTRATION,
        Name: PCUNICODE_STRING,
        Count: ULONG,
        Data: PPCW_DATA,
    ) -> NTSTATUS;
    pub fn PcwCloseInstance(Instance: PPCW_INSTANCE);
    // Time
    pub fn KeQueryInterruptTimePrecise(QpcTimeStamp: PULONG64) -> ULONG64;
    // Threads and objects
    #[must_use]
    pub fn PsCreateSystemThread(
        ThreadHandle: PHANDLE,
        DesiredAccess: ULONG,
        ObjectAttributes: POBJECT_ATTRIBUTES,
        ProcessHandle: HANDLE,
        ClientId: PCLIENT_ID,
        StartRoutine: PKSTART_ROUTINE,
        StartContext: PVOID,
    ) -> NTSTATUS;
    #[must_use]
    pub fn PsTerminateSystemThread(ExitStatus: NTSTATUS) -> NTSTATUS;
    pub fn ObfDereferenceObject(Object: PVOID) -> LONG_PTR;
    #[must_use]
    pub fn ZwClose(Handle: HANDLE) -> NTSTATUS;
    /// ntifs.h (part of wdk-sys's base headers: ntifs.h, ntddk.h).
    #[must_use]
    pub fn ZwWaitForSingleObject(
        Handle: HANDLE,
        Alertable: BOOLEAN,
        Timeout: PLARGE_INTEGER,
    ) -> NTSTATUS;
    // Run-down protection (wdm.h; FASTCALL, which x64 ignores)
    pub fn ExInitializeRundownProtection(RunRef: PEX_RUNDOWN_REF);
    pub fn ExAcquireRundownProtection(RunRef: PEX_RUNDOWN_REF) -> BOOLEAN;
    pub fn ExReleaseRundownProtection(RunRef: PEX_RUNDOWN_REF);
    pub fn ExWaitForRundownProtectionRelease(RunRef: PEX_RUNDOWN_REF);
    // Load-image notification (ntddk.h; the Ex form since Windows 10 1709), PASSIVE_LEVEL
    #[must_use]
    pub fn PsSetLoadImageNotifyRoutineEx(
        NotifyRoutine: PLOAD_IMAGE_NOTIFY_ROUTINE,
        Flags: ULONG_PTR,
    ) -> NTSTATUS;
    #[must_use]
    pub fn PsRemoveLoadImageNotifyRoutine(NotifyRoutine: PLOAD_IMAGE_NOTIFY_ROUTINE) -> NTSTATUS;
    // Version (wdm.h), PASSIVE_LEVEL
    #[must_use]
    pub fn RtlGetVersion(lpVersionInformation: PRTL_OSVERSIONINFOW) -> NTSTATUS;
    // Callback objects
    #[must_use]
    pub fn ExCreateCallback(
        CallbackObject: *mut PCALLBACK_OBJECT,
        ObjectAttributes: POBJECT_ATTRIBUTES,
        Create: BOOLEAN,
        AllowMultipleCallbacks: BOOLEAN,
    ) -> NTSTATUS;
    pub fn ExRegisterCallback(
        CallbackObject: PCALLBACK_OBJECT,
        CallbackFunction: PCALLBACK_FUNCTION,
        CallbackContext: PVOID,
    ) -> PVOID;
    pub fn ExUnregisterCallback(CallbackRegistration: PVOID);
}
