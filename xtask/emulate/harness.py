"""Runs the real vmballoon.sys in an emulated Windows kernel (TEST harness).

`cargo xtask emulate` runs this with a scenario (xtask/emulate/scenarios.toml). speakeasy
(Mandiant's emulator, over unicorn) is the CPU and the loader: it maps the PE, binds its
imports to hook addresses and runs x86-64 code. Everything the driver asks of Windows is
answered here, by a small model of the kernel objects it uses (pool, events, threads,
callbacks, load-image notification, the KMDF loader, ETW), and everything it asks of the
VMware host or of the memory manager is forwarded to `vmballoon-serve`, the simulator's own
host and guest models, so one protocol checker and one memory model judge both the engine
in the simulator and the real binary.

Contract checks (each a failure; the contracts are those of docs/windows-memory.md §9, the
project's summary of the WDK reference pages):
* every kernel call at an IRQL its page allows: each thread runs at a known IRQL (the
  power callback at DISPATCH_LEVEL, the documented worst case of a callback object);
* MmFreePagesFromMdl only on an MDL that MmAllocatePagesForMdlEx returned, unmodified
  (header and PFN array byte-identical), once, then ExFreePool of it; the allocation's
  flags as documented;
* MmAllocateContiguousNodeMemory with one of PAGE_READWRITE / PAGE_EXECUTE_READWRITE
  (the batch page must be the no-execute one), below 4 GiB, a valid node; freed once with
  MmFreeContiguousMemory, and not used after;
* KeWaitForMultipleObjects: 1..=MAXIMUM_WAIT_OBJECTS objects, a caller-supplied
  WaitBlockArray of Count KWAIT_BLOCKs in nonpaged memory the driver owns whenever Count >
  THREAD_WAIT_OBJECTS (bug check 0xC otherwise), not shared by two waits at once (the
  harness scribbles over it during the wait: it belongs to the kernel then);
* the standard event objects (LowMemoryCondition, MaximumCommitCondition) opened with
  IoCreateNotificationEvent, waited on from a dedicated thread, never set or cleared by the
  driver, not used after their handle is closed;
* the load-image notify routine: PsSetLoadImageNotifyRoutineEx with a documented flag,
  a nonpageable routine of the image, removed by unload, never from the routine itself;
  the routine (called here for every image the scenario loads, in a thread of its own at
  PASSIVE_LEVEL) does not block, read the registry or talk to the host;
* the power callback returns without blocking and without talking to the host (the
  worker does that), and the balloon is empty before the system is back in S0;
* RtlGetVersion with the size member set; WdfDriverCreate's config with its size, the
  non-PnP flag, EvtDriverUnload and DriverPoolTag (the tag of the driver's pool blocks);
* ETW: the provider GUID is the one its name derives, every event decodes;
* performance counters (docs/windows-memory.md §9.6): PcwRegister with PCW_VERSION_1, a
  name and one 8-byte descriptor per counter in order; PcwCreateInstance over a nonpaged
  block of the driver's; the instance closed before PcwUnregister; the values the worker
  published, read at the close, agree with the models (Balloon MB, Frames Locked,
  Backdoor Calls);
* crash dumps (docs/windows-memory.md §9.5): KeRegisterBugCheckReasonCallback with
  KbCallbackRemovePages, a nonpageable routine and a nonpaged record, deregistered by
  unload; at a scenario's `dumps_at_s` the routine runs at HIGH_LEVEL, called again while
  it asks to be, and every physical range it hands over must be pages the balloon holds
  (with `dump_all_held`, all of them);
* every pool block freed with its tag; every registration undone by unload (ETW, the
  power callback and its callback object, the load-image routine, the counter set, the
  bug-check callback, registry keys,
  handles, the KMDF bind); no KeBugCheckEx; nothing left allocated at the end; and from the
  server: no protocol violation, no page freed while the host holds it, no leaked page.

Emulator limits, handled here (docs: xtask/emulate/README.md):
* Threads run one after another. Each kernel thread the driver sees (the system thread
  it creates, the power callback's caller, the loading thread of an image, unload's
  caller) is a saved CPU context on its own 24 KiB stack; a wait that cannot be satisfied
  saves the caller and runs another ready thread, or, when none is, advances simulated
  time to the next timeout, scenario action or memory-condition change. So unload keeps
  its real order: stop signalled, worker joined, pages freed.
* The kernel stack is sized from SizeOfStackCommit: the emulated copy's header says
  24 KiB, as Windows x64 kernel stacks are.
* unicorn 1.0.2 cannot hook CPUID: each CPUID (located by `cargo xtask build-sys` from the
  disassembly) is rewritten in emulated memory to two NOPs with a code hook on them that
  answers the leaf in EAX and skips them.
* The aux_klib stand-in's two functions are rewritten in emulated memory to jump to a
  harness hook, which answers with the scenario's module list.
"""

import hashlib
import json
import logging
import struct
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import speakeasy
import unicorn
from unicorn import x86_const as ucx

logging.getLogger("speakeasy").setLevel(logging.CRITICAL)

MASK64 = (1 << 64) - 1
STATUS_SUCCESS = 0
STATUS_TIMEOUT = 0x102
STATUS_BUFFER_TOO_SMALL = 0xC0000023
STATUS_OBJECT_TYPE_MISMATCH = 0xC0000024
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_INFO_LENGTH_MISMATCH = 0xC0000004
STATUS_INVALID_INFO_CLASS = 0xC0000003
STATUS_INVALID_PARAMETER_2 = 0xC00000F0
STATUS_PROCEDURE_NOT_FOUND = 0xC000007A

BACKDOOR_PORT = 0x5658
BACKDOOR_MAGIC = 0x564D5868
BALLOON_PORT = 0x5670
BALLOON_MAGIC = 0x456C6D6F
BATCHED = {6, 7, 8, 9}
LOCKS = {2, 6, 8}
START = 0
COMMANDS = ["START", "TARGET", "LOCK", "UNLOCK", "GUEST_ID", "GET_PROTO_V3",
            "BATCHED_LOCK", "BATCHED_UNLOCK", "BATCHED_2M_LOCK", "BATCHED_2M_UNLOCK",
            "DOORBELL_SET"]

KERNEL_STACK = 0x6000
PAGE = 0x1000
LARGE = 0x200000
MDL_HEADER = 0x30
MDL_PAGES_LOCKED = 0x0002
DRIVER_UNLOAD_OFFSET = 0x68
PO_CB_SYSTEM_STATE_LOCK = 3
WDF_FUNCTION_COUNT = 458
WDF_TABLE = {116: "WdfDriverCreate", 119: "WdfDriverOpenParametersRegistryKey",
             231: "WdfRegistryClose", 240: "WdfRegistryQueryULong"}
WDF_DRIVER_CONFIG_SIZE = 32
AUX_RECORD = 0x110

# MmAllocatePagesForMdlEx flags (docs/windows-memory.md §1.2): the documented ones.
MM_DONT_ZERO_ALLOCATION = 0x01
MM_ALLOCATE_FROM_LOCAL_NODE_ONLY = 0x02
MM_ALLOCATE_FULLY_REQUIRED = 0x04
MM_ALLOCATE_NO_WAIT = 0x08
MM_ALLOCATE_PREFER_CONTIGUOUS = 0x10
MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS = 0x20
MM_ALLOCATE_FAST_LARGE_PAGES = 0x40
MM_DOCUMENTED_FLAGS = (MM_DONT_ZERO_ALLOCATION | MM_ALLOCATE_FROM_LOCAL_NODE_ONLY
                       | MM_ALLOCATE_FULLY_REQUIRED | MM_ALLOCATE_NO_WAIT
                       | MM_ALLOCATE_PREFER_CONTIGUOUS | MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS
                       | MM_ALLOCATE_FAST_LARGE_PAGES)
MM_MAX_TOTAL = (1 << 32) - PAGE
MM_CACHING_TYPES = 6

# MmAllocateContiguousNodeMemory (§1.8).
PAGE_READWRITE = 0x04
PAGE_EXECUTE_READWRITE = 0x40
PAGE_NOCACHE = 0x200
PAGE_WRITECOMBINE = 0x400
MM_ANY_NODE_OK = 0x80000000
NODES = 1

# ExAllocatePool2 (§9.2).
POOL_FLAG_UNINITIALIZED = 0x2
POOL_FLAG_NON_PAGED = 0x40

# Waits (§9.3): THREAD_WAIT_OBJECTS and MAXIMUM_WAIT_OBJECTS (wdm.h), sizeof(KWAIT_BLOCK)
# on x64 (the mirror asserts it against the real bindings).
THREAD_WAIT_OBJECTS = 3
MAXIMUM_WAIT_OBJECTS = 64
KWAIT_BLOCK_SIZE = 0x30
WAIT_ANY = 1
KERNEL_MODE = 0
SYNCHRONIZE = 0x00100000

# The standard event objects the harness models, and which guest-model signal each is.
STANDARD_EVENTS = {r"\KernelObjects\LowMemoryCondition": "low_memory",
                   r"\KernelObjects\MaximumCommitCondition": "high_commit"}

# Load-image notification (§9.4).
PS_IMAGE_NOTIFY_CONFLICTING_ARCHITECTURE = 0x1
IMAGE_INFO_SIZE = 0x28
IMAGE_SYSTEM_MODE = 1 << 8

# RtlGetVersion: sizeof(RTL_OSVERSIONINFOW) and sizeof(RTL_OSVERSIONINFOEXW); the version
# the emulated kernel reports (Windows 10 22H2).
OSVERSIONINFO_SIZES = (276, 284)
OS_VERSION = (10, 0, 19045)

# ETW (§6): the provider the driver must register, and its enable-callback arguments (a
# session listening at TRACE_LEVEL_VERBOSE, every keyword).
PROVIDER_NAME = "VmBalloon.Driver"
EVENT_CONTROL_CODE_ENABLE_PROVIDER = 1
TRACE_LEVEL_VERBOSE = 5
EVENT_PROVIDER_SET_TRAITS = 2
MAX_EVENT_DATA_DESCRIPTORS = 128

# IRQLs, and the highest each kernel call allows (docs/windows-memory.md §9; the waits'
# rule depends on their timeout and is checked in their handlers). A call the harness
# models but lists here under no rule is a harness error.
PASSIVE_LEVEL, APC_LEVEL, DISPATCH_LEVEL, HIGH_LEVEL = 0, 1, 2, 15
IRQL_NAMES = {0: "PASSIVE_LEVEL", 1: "APC_LEVEL", 2: "DISPATCH_LEVEL", 15: "HIGH_LEVEL"}
MAX_IRQL = {
    "ExAllocatePool2": DISPATCH_LEVEL, "ExFreePoolWithTag": DISPATCH_LEVEL,
    "ExFreePool": DISPATCH_LEVEL,
    "MmAllocatePagesForMdlEx": DISPATCH_LEVEL, "MmFreePagesFromMdl": DISPATCH_LEVEL,
    "MmAllocateContiguousNodeMemory": DISPATCH_LEVEL,
    "MmFreeContiguousMemory": DISPATCH_LEVEL, "MmGetPhysicalAddress": HIGH_LEVEL,
    "ZwQuerySystemInformation": PASSIVE_LEVEL, "RtlGetVersion": PASSIVE_LEVEL,
    "KeInitializeEvent": HIGH_LEVEL, "KeSetEvent": DISPATCH_LEVEL,
    "KeClearEvent": DISPATCH_LEVEL, "KeReadStateEvent": DISPATCH_LEVEL,
    "IoCreateNotificationEvent": PASSIVE_LEVEL,
    "KeWaitForSingleObject": None, "KeWaitForMultipleObjects": None,
    "ZwWaitForSingleObject": PASSIVE_LEVEL, "KeQueryInterruptTimePrecise": HIGH_LEVEL,
    "KeGetCurrentIrql": HIGH_LEVEL, "KeBugCheckEx": HIGH_LEVEL,
    "PsCreateSystemThread": PASSIVE_LEVEL, "PsTerminateSystemThread": PASSIVE_LEVEL,
    "ZwClose": PASSIVE_LEVEL,
    "ExCreateCallback": APC_LEVEL, "ExRegisterCallback": APC_LEVEL,
    "ExUnregisterCallback": APC_LEVEL, "ObfDereferenceObject": DISPATCH_LEVEL,
    "ExInitializeRundownProtection": DISPATCH_LEVEL,
    "ExAcquireRundownProtection": DISPATCH_LEVEL,
    "ExReleaseRundownProtection": DISPATCH_LEVEL,
    "ExWaitForRundownProtectionRelease": APC_LEVEL,
    "PsSetLoadImageNotifyRoutineEx": PASSIVE_LEVEL,
    "PsRemoveLoadImageNotifyRoutine": APC_LEVEL,
    "PcwRegister": APC_LEVEL, "PcwCreateInstance": APC_LEVEL,
    "PcwCloseInstance": APC_LEVEL, "PcwUnregister": APC_LEVEL,
    "KeRegisterBugCheckReasonCallback": HIGH_LEVEL,
    "KeDeregisterBugCheckReasonCallback": HIGH_LEVEL,
    "EtwRegister": PASSIVE_LEVEL, "EtwUnregister": PASSIVE_LEVEL,
    "EtwSetInformation": PASSIVE_LEVEL, "EtwWriteTransfer": HIGH_LEVEL,
    "memcmp": HIGH_LEVEL, "__chkstk": HIGH_LEVEL,
    "AuxKlibInitialize": PASSIVE_LEVEL, "AuxKlibQueryModuleInformation": PASSIVE_LEVEL,
    "WdfVersionBind": PASSIVE_LEVEL, "WdfVersionUnbind": PASSIVE_LEVEL,
    "WdfDriverCreate": PASSIVE_LEVEL, "WdfDriverOpenParametersRegistryKey": PASSIVE_LEVEL,
    "WdfRegistryQueryULong": PASSIVE_LEVEL, "WdfRegistryClose": PASSIVE_LEVEL,
    # The harness's own entry points (not kernel calls).
    "ThreadExit": HIGH_LEVEL, "Schedule": HIGH_LEVEL, "FxFrameworkUnload": HIGH_LEVEL,
    "EtwEnableReturn": HIGH_LEVEL,
}
REGISTRY_CALLS = {"WdfDriverOpenParametersRegistryKey", "WdfRegistryQueryULong",
                  "WdfRegistryClose"}

STUB_PAGES = 4
ARENA = 128 << 20

# ntoskrnl's memmove/memcpy and memset, as native code in the emulated kernel (a call
# through Python for every struct copy would dominate the run). Windows x64 ABI: RCX, RDX,
# R8 in; RDI and RSI preserved.
MEMMOVE = bytes.fromhex(
    "4889c8"        # mov rax, rcx
    "57"            # push rdi
    "56"            # push rsi
    "4889cf"        # mov rdi, rcx
    "4889d6"        # mov rsi, rdx
    "4c89c1"        # mov rcx, r8
    "4839f7"        # cmp rdi, rsi
    "7619"          # jbe forward
    "4c8d0c0e"      # lea r9, [rsi+rcx]
    "4c39cf"        # cmp rdi, r9
    "7310"          # jae forward
    "488d740eff"    # lea rsi, [rsi+rcx-1]
    "488d7c0fff"    # lea rdi, [rdi+rcx-1]
    "fd"            # std
    "f3a4"          # rep movsb
    "fc"            # cld
    "eb02"          # jmp done
    "f3a4"          # forward: rep movsb
    "5e"            # done: pop rsi
    "5f"            # pop rdi
    "c3"            # ret
)
MEMSET = bytes.fromhex(
    "4989c9"        # mov r9, rcx
    "57"            # push rdi
    "4889cf"        # mov rdi, rcx
    "89d0"          # mov eax, edx
    "4c89c1"        # mov rcx, r8
    "f3aa"          # rep stosb
    "4c89c8"        # mov rax, r9
    "5f"            # pop rdi
    "c3"            # ret
)


def provider_guid(name):
    """The GUID an ETW provider name derives (EventSource's name hash, which TraceLogging
    providers use too), as the 16 bytes of a GUID in memory."""
    namespace = bytes([0x48, 0x2C, 0x2D, 0xB2, 0xC3, 0x90, 0x47, 0xC8,
                       0x87, 0xF8, 0x1A, 0x15, 0xBF, 0xC1, 0x30, 0xFB])
    digest = bytearray(hashlib.sha1(namespace + name.upper().encode("utf-16-be")).digest())
    digest[7] = (digest[7] & 0x0F) | 0x50
    return bytes(digest[:16])


def guid_text(raw):
    d1, d2, d3 = struct.unpack_from("<IHH", raw)
    return "%08x-%04x-%04x-%s-%s" % (d1, d2, d3, raw[8:10].hex(), raw[10:16].hex())


def is_pool_tag(tag):
    """A pool tag as ExAllocatePool2 wants it: non-zero, printable ASCII (§9.2)."""
    raw = struct.pack("<I", tag)
    return tag != 0 and all(0x20 <= b <= 0x7E for b in raw)


# ---- TraceLogging decoding (the event metadata and payload ETW consumers read) ----------

FIXED_SIZES = {3: 1, 4: 1, 5: 2, 6: 2, 7: 4, 8: 4, 9: 8, 10: 8, 11: 4, 12: 8, 13: 4,
               15: 16, 16: 8, 17: 8, 18: 16, 20: 4, 21: 8}
SIGNED = {3, 5, 7, 9}


def tlg_skip_tag(meta, i):
    while i < len(meta) and meta[i] & 0x80:
        i += 1
    return i + 1


def tlg_decode(meta, payload):
    """(name, fields) of a TraceLogging event from its metadata blob and payload. Raises
    ValueError on anything the harness does not decode."""
    size = struct.unpack_from("<H", meta)[0]
    meta = meta[:size]
    i = tlg_skip_tag(meta, 2)
    end = meta.index(b"\0", i)
    name = meta[i:end].decode()
    i = end + 1
    fields = {}
    p = 0
    while i < len(meta):
        end = meta.index(b"\0", i)
        fname = meta[i:end].decode()
        i = end + 1
        intype = meta[i]
        i += 1
        if intype & 0x80:
            outtype = meta[i]
            i += 1
            if outtype & 0x80:
                i = tlg_skip_tag(meta, i)
        kind = intype & 0x1F
        flags = intype & 0x60
        if flags == 0x40 and kind in FIXED_SIZES:
            # A variable-count array: a u16 count in the payload, then the elements.
            n = struct.unpack_from("<H", payload, p)[0]
            size = FIXED_SIZES[kind]
            raw = payload[p + 2:p + 2 + n * size]
            if len(raw) != n * size:
                raise ValueError("payload too short for %s" % fname)
            fields[fname] = [int.from_bytes(raw[k * size:(k + 1) * size], "little",
                                            signed=kind in SIGNED) for k in range(n)]
            p += 2 + n * size
            continue
        if flags:
            raise ValueError("array or custom field %s" % fname)
        if kind in FIXED_SIZES:
            n = FIXED_SIZES[kind]
            raw = payload[p:p + n]
            if len(raw) != n:
                raise ValueError("payload too short for %s" % fname)
            value = int.from_bytes(raw, "little", signed=kind in SIGNED) \
                if kind not in (11, 12, 15, 18) else raw.hex()
            p += n
        elif kind in (22, 23, 14, 25):
            n = struct.unpack_from("<H", payload, p)[0]
            raw = payload[p + 2:p + 2 + n]
            p += 2 + n
            value = raw.decode("utf-16-le" if kind == 22 else "utf-8", "replace") \
                if kind in (22, 23) else raw.hex()
        elif kind == 2:
            end = payload.index(b"\0", p)
            value = payload[p:end].decode("utf-8", "replace")
            p = end + 1
        else:
            raise ValueError("field %s of in-type %d" % (fname, kind))
        fields[fname] = value
    if p != len(payload):
        raise ValueError("%d payload bytes left over" % (len(payload) - p))
    return name, fields


def check_natives(kernel, memmove, memset):
    """Runs the hand-encoded helpers above on overlapping buffers before the driver runs:
    a self-check of their bytes."""
    uc = kernel.uc
    buf = kernel.arena.alloc(0x100, 16)
    stack = kernel.arena.alloc(0x1000, PAGE)
    done = kernel.arena.alloc(16, 16)
    kernel.wr(done, b"\xf4")

    def call(fn, a, b, n):
        kernel.wr64(stack + 0x800, done)
        uc.reg_write(ucx.UC_X86_REG_RSP, stack + 0x800)
        for r, v in ((ucx.UC_X86_REG_RCX, a), (ucx.UC_X86_REG_RDX, b), (ucx.UC_X86_REG_R8, n)):
            uc.reg_write(r, v)
        uc.emu_start(fn, done)
        return uc.reg_read(ucx.UC_X86_REG_RAX)

    pattern = bytes(range(64))
    for dst_off, src_off in ((8, 0), (0, 8), (100, 0)):
        kernel.wr(buf, bytes(0x100))
        kernel.wr(buf + src_off, pattern)
        expect = bytearray(0x100)
        expect[src_off:src_off + 64] = pattern
        expect[dst_off:dst_off + 64] = pattern
        if call(memmove, buf + dst_off, buf + src_off, 64) != buf + dst_off \
                or kernel.rd(buf, 0x100) != bytes(expect):
            raise Failure("the native memmove helper is broken")
    kernel.wr(buf, bytes(16))
    call(memset, buf + 3, 0x1AB, 5)
    if kernel.rd(buf, 10) != b"\0\0\0" + b"\xab" * 5 + b"\0\0":
        raise Failure("the native memset helper is broken")


def check_decoder():
    """A self-check of the TraceLogging decoder on a hand-made event."""
    meta = b"Ev\0A\0\x08B\0\x8a\x01C\0\x17"
    meta = struct.pack("<H", len(meta) + 3) + b"\0" + meta
    payload = struct.pack("<IQH", 7, 2**40, 3) + b"xyz"
    if tlg_decode(meta, payload) != ("Ev", {"A": 7, "B": 2**40, "C": "xyz"}):
        raise Failure("the TraceLogging decoder is broken")
    if provider_guid(PROVIDER_NAME) != bytes.fromhex("9ecb2fe9afd7245d096682f058c99cd3"):
        raise Failure("the provider GUID derivation is broken")


class Arena:
    """Pool, MDLs, stacks and the batch page, carved from one mapping made once (mapping
    memory during the run would flush unicorn's translation cache). Freed blocks are
    reused by size."""

    def __init__(self, emu):
        self.base = emu.mem_map(ARENA, tag="harness.arena")
        self.next = self.base
        self.free_lists = {}
        self.sizes = {}

    def alloc(self, size, align):
        size = max(16, (size + 15) & ~15)
        key = (size, align)
        if self.free_lists.get(key):
            addr = self.free_lists[key].pop()
        else:
            addr = (self.next + align - 1) & ~(align - 1)
            if addr + size > self.base + ARENA:
                raise Failure("the harness's memory arena is exhausted")
            self.next = addr + size
        self.sizes[addr] = key
        return addr

    def free(self, addr):
        key = self.sizes.pop(addr)
        self.free_lists.setdefault(key, []).append(addr)


class Failure(Exception):
    """The run cannot go on (an unmodelled call, a bug check, a deadlock)."""


class Sim:
    """The vmballoon-serve process: one JSON request per line, one reply per line."""

    def __init__(self, exe, scenario):
        self.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.init = self.call({"op": "init", "scenario": str(scenario)})
        if "error" in self.init:
            raise Failure("vmballoon-serve: %s" % self.init["error"])

    def call(self, req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise Failure("vmballoon-serve ended")
        reply = json.loads(line)
        if "error" in reply:
            raise Failure("vmballoon-serve: %s (request %s)" % (reply["error"], req["op"]))
        return reply

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class Thread:
    """A kernel thread as the driver sees it: a saved CPU context, what it waits for, the
    IRQL it runs at and what kind of caller it is (`entry`, `worker`, `unload`, `power`
    for the \\Callback\\PowerState notifier, `image` for a loading thread)."""

    def __init__(self, name, kind, start=None, args=(), stack=None, irql=PASSIVE_LEVEL):
        self.name = name
        self.kind = kind
        self.start = start
        self.args = args
        self.stack = stack
        self.irql = irql
        self.state = "new" if start is not None else "running"
        self.ctx = None
        self.wait = None
        self.wake_status = 0
        self.handle = None
        self.access = 0
        self.min_rsp = None
        self.etw_return = None
        self.blocked_in = []


class Wait:
    """A wait: any of `objects` (event addresses, Thread objects or run-down refs), until
    `deadline`, with the caller's wait blocks (address, bytes) if any."""

    def __init__(self, objects, deadline, single, what, blocks=None):
        self.objects = objects
        self.deadline = deadline
        self.single = single
        self.what = what
        self.blocks = blocks


class Kernel:
    """The modelled kernel and the scheduler of the emulated threads."""

    def __init__(self, sys_path, facts, sim, case):
        self.case = case
        self.sim = sim
        self.facts = facts
        self.failures = []
        self.now = 0
        self.signals = {"low_memory": False, "high_commit": False}
        self.std_events = {}
        self.wakes = {"low_memory": 0, "high_commit": 0}
        self.events = {}
        self.handles = {}
        self.next_handle = 0x1000
        self.pool = {}
        self.pool_hint = None
        self.pool_tags = set()
        self.driver_pool_tag = None
        self.mdls = {}
        self.contiguous = {}
        self.batch_va = None
        self.etw = {}
        self.etw_writes = 0
        self.etw_counts = {}
        self.etw_log = []
        self.callback_objects = {}
        self.registrations = {}
        # PCW (docs/windows-memory.md §9.6): registration -> {"name", "instances": set}
        self.pcw = {}
        self.pcw_instances = {}
        # KbCallbackRemovePages records (docs/windows-memory.md §9.5): record -> routine
        self.bugcheck_records = {}
        # What the driver had published in its counters when it closed the instance, and
        # whether the bug-check callback was registered (the report's "operators" line).
        self.pcw_closed = None
        self.dump_log = []
        self.bugcheck_registered = False
        self.image_routines = {}
        self.rundown = {}
        self.registry_keys = set()
        self.bound = False
        self.unbound = False
        self.wdf_driver = None
        self.evt_unload = None
        self.driver_object = None
        self.threads = []
        self.current = Thread("DriverEntry", "entry")
        self.threads.append(self.current)
        self.actions = []
        self.idle_checks = []
        self.finished = False
        self.port_calls = 0
        self.mm = {"mdls": 0, "short": 0, "none": 0, "bounded": 0}
        self.balloon_calls = 0
        self.backdoor_calls = {}
        self.start0_calls = 0
        self.lock_calls = 0
        self.bugcheck = None
        self.s0 = True
        self.power_log = []
        self.image_log = []
        self.stood_down = None
        self.held_at_unload = None
        self.api_calls = 0
        self.multi_waits = {"calls": 0, "over_thread_wait_objects": 0, "with_blocks": 0,
                            "max_count": 0}
        self.registry = sim.init["registry"]
        self.status = None

        data = bytearray(Path(sys_path).read_bytes())
        pe = struct.unpack_from("<I", data, 0x3C)[0]
        # SizeOfStackCommit (PE32+ optional header + 0x50): the emulator sizes the kernel
        # stack from it; Windows x64 kernel stacks are 24 KiB.
        struct.pack_into("<Q", data, pe + 24 + 0x50, KERNEL_STACK)
        self.sections = self.parse_sections(data, pe)
        config = json.loads((Path(speakeasy.__file__).parent / "configs" / "default.json")
                            .read_text())
        config["timeout"] = 600
        config["max_api_count"] = 1 << 40
        config["analysis"]["strings"] = False
        self.se = speakeasy.Speakeasy(config=config)
        self.module = self.se.load_module(data=bytes(data))
        self.emu = self.se.emu
        self.uc = self.emu.emu_eng.emu
        self.base = self.module.get_base()
        # The kernel's side of every call: each import slot of the image points at a
        # one-byte stub (`ret`) in a harness page, and one code hook over that page
        # answers the call (speakeasy's own import path maps and unmaps memory on every
        # call, which flushes unicorn's translation cache: far too slow for a balloon).
        self.arena = Arena(self.emu)
        self.stub_base = self.emu.mem_map(STUB_PAGES * PAGE, tag="harness.stubs")
        self.stub_names = {}
        self.stub_addrs = {}
        natives = {"memcpy": MEMMOVE, "memmove": MEMMOVE, "memset": MEMSET}
        self.native_base = self.stub_base + (STUB_PAGES - 1) * PAGE
        native_at = {}
        offset = 0
        for name, code in (("memmove", MEMMOVE), ("memset", MEMSET)):
            native_at[code] = self.native_base + offset
            self.wr(self.native_base + offset, code)
            offset += 0x80
        for slot, (dll, name) in self.module.imports.items():
            if name in natives:
                self.wr64(slot, native_at[natives[name]])
            else:
                self.wr64(slot, self.stub(name))
        last = self.stub_base + (STUB_PAGES - 1) * PAGE - 1
        self.uc.hook_add(unicorn.UC_HOOK_CODE, self.on_stub, None, self.stub_base, last)
        self.uc.hook_add(unicorn.UC_HOOK_INSN, self.on_in, None, 1, 0, ucx.UC_X86_INS_IN)
        for rva in facts["cpuid"]:
            site = self.base + rva
            self.emu.mem_write(site, b"\x90\x90")
            self.uc.hook_add(unicorn.UC_HOOK_CODE, self.on_cpuid, None, site, site)
        for name in ("AuxKlibInitialize", "AuxKlibQueryModuleInformation"):
            stub = b"\x48\xb8" + struct.pack("<Q", self.stub(name)) + b"\xff\xe0"
            self.emu.mem_write(self.base + facts["symbols"][name], stub)
        check_natives(self, native_at[MEMMOVE], native_at[MEMSET])
        check_decoder()
        self.exit_addr = self.stub("ThreadExit")
        self.schedule_addr = self.stub("Schedule")
        self.framework_unload = self.stub("FxFrameworkUnload")
        self.etw_enable_return = self.stub("EtwEnableReturn")

    @staticmethod
    def parse_sections(data, pe):
        """(rva, size, characteristics, name) of each section of the image."""
        count = struct.unpack_from("<H", data, pe + 6)[0]
        optional = struct.unpack_from("<H", data, pe + 20)[0]
        table = pe + 24 + optional
        out = []
        for i in range(count):
            raw = data[table + 40 * i:table + 40 * (i + 1)]
            name = raw[:8].rstrip(b"\0").decode("ascii", "replace")
            vsize, rva = struct.unpack_from("<II", raw, 8)
            chars = struct.unpack_from("<I", raw, 36)[0]
            out.append((rva, vsize, chars, name))
        return out

    def image_section(self, addr):
        rva = addr - self.base
        for start, size, chars, name in self.sections:
            if start <= rva < start + size:
                return chars, name
        return None

    def nonpaged_code(self, addr):
        """Whether `addr` is in an executable, resident section of the image (not INIT,
        not a PAGE* section): where a routine the kernel calls later must be."""
        found = self.image_section(addr)
        if found is None:
            return False
        chars, name = found
        return bool(chars & 0x20000000) and not chars & 0x02000000 \
            and not name.upper().startswith(("PAGE", "INIT"))

    def nonpaged(self, addr, size):
        """Whether [addr, addr + size) is nonpaged memory the driver owns: one live pool
        block, the current thread's own kernel stack, or resident data of the image."""
        hint = self.pool_hint
        if hint is not None and hint in self.pool and \
                hint <= addr and addr + size <= hint + self.pool[hint]["size"]:
            return True
        for start, block in self.pool.items():
            if block["kind"] == "pool" and start <= addr and addr + size <= start + block["size"]:
                self.pool_hint = start
                return True
        t = self.current
        if t.stack is not None and t.stack <= addr and addr + size <= t.stack + KERNEL_STACK:
            return True
        found = self.image_section(addr)
        if found is not None and self.image_section(addr + size - 1) == found:
            chars, name = found
            return not chars & 0x02000000 and not name.upper().startswith(("PAGE", "INIT"))
        return False

    # ---- registers and memory -----------------------------------------------------------

    def reg(self, r):
        return self.uc.reg_read(r)

    def setreg(self, r, v):
        self.uc.reg_write(r, v & MASK64)

    def rd(self, addr, n):
        return bytes(self.emu.mem_read(addr, n))

    def rd64(self, addr):
        return struct.unpack("<Q", self.rd(addr, 8))[0]

    def rd32(self, addr):
        return struct.unpack("<I", self.rd(addr, 4))[0]

    def wr(self, addr, data):
        self.emu.mem_write(addr, bytes(data))

    def wr64(self, addr, v):
        self.wr(addr, struct.pack("<Q", v & MASK64))

    def wr32(self, addr, v):
        self.wr(addr, struct.pack("<I", v & 0xFFFFFFFF))

    def ustr(self, ptr):
        if not ptr:
            return None
        length, _, buf = struct.unpack("<HHxxxxQ", self.rd(ptr, 16))
        return self.rd(buf, length).decode("utf-16-le") if buf else ""

    def alloc(self, size, tag, align=16, fill=0):
        addr = self.arena.alloc(size, align)
        self.wr(addr, bytes([fill]) * size)
        return addr

    def new_handle(self, obj):
        self.next_handle += 4
        self.handles[self.next_handle] = obj
        return self.next_handle

    def fail(self, message):
        self.failures.append(message)

    def fail_mdl(self, message):
        """A breach of MmFreePagesFromMdl's contract (the MDL-ownership check)."""
        self.failures.append("[mdl] " + message)

    def report(self):
        return self.sim.call({"op": "report"})

    def held_and_owned(self):
        """(frames the host holds, frames the driver still owns) from the models."""
        r = self.report()
        return r["final_held_frames"], r["balloon_owned_frames"]

    # ---- the import dispatcher -----------------------------------------------------------

    def stub(self, name):
        addr = self.stub_addrs.get(name)
        if addr is None:
            addr = self.stub_base + 8 * len(self.stub_addrs)
            if addr >= self.native_base:
                raise Failure("out of stub slots")
            self.wr(addr, b"\xc3")
            self.stub_addrs[name] = addr
            self.stub_names[addr] = name
        return addr

    def on_stub(self, uc, address, size, user_data):
        name = self.stub_names.get(address)
        if name is not None:
            self.dispatch("kernel", name)

    def args(self, n):
        regs = [ucx.UC_X86_REG_RCX, ucx.UC_X86_REG_RDX, ucx.UC_X86_REG_R8, ucx.UC_X86_REG_R9]
        out = [self.reg(r) for r in regs[:n]]
        rsp = self.reg(ucx.UC_X86_REG_RSP)
        for i in range(4, n):
            out.append(self.rd64(rsp + 8 + 8 * i))
        return out

    def ret(self, value):
        rsp = self.reg(ucx.UC_X86_REG_RSP)
        self.setreg(ucx.UC_X86_REG_RIP, self.rd64(rsp))
        self.setreg(ucx.UC_X86_REG_RSP, rsp + 8)
        self.setreg(ucx.UC_X86_REG_RAX, value)

    def who(self):
        t = self.current
        return {"power": "the power callback", "image": "the load-image notify routine",
                "worker": "the worker thread", "unload": "DriverUnload",
                "entry": "DriverEntry",
                "bugcheck": "the KbCallbackRemovePages callback"}.get(t.kind, t.name)

    def check_irql(self, name, limit, detail=""):
        t = self.current
        if t.irql > limit:
            self.fail("%s%s from %s at %s: allowed at %s at most (docs/windows-memory.md §9)"
                      % (name, detail, self.who(), IRQL_NAMES[t.irql], IRQL_NAMES[limit]))

    def dispatch(self, mod, name):
        """Replaces speakeasy's handler for every import and callback address."""
        self.api_calls += 1
        rsp = self.reg(ucx.UC_X86_REG_RSP)
        t = self.current
        if t.min_rsp is None or rsp < t.min_rsp:
            t.min_rsp = rsp
        handler = getattr(self, "api_" + name, None)
        try:
            if handler is None:
                raise Failure("the driver called %s!%s, which the harness does not model"
                              % (mod, name))
            if name not in MAX_IRQL:
                raise Failure("harness: no IRQL rule for %s" % name)
            limit = MAX_IRQL[name]
            if limit is not None:
                self.check_irql(name, limit)
            if t.kind == "image" and name in REGISTRY_CALLS:
                self.fail("the load-image notify routine read the registry (%s): notify "
                          "routines must not (docs/windows-memory.md §9.4)" % name)
            result = handler()
            if result is not None:
                self.ret(result)
        except Failure as e:
            self.fail(str(e))
            self.stop()

    def stop(self):
        self.finished = True
        self.setreg(ucx.UC_X86_REG_RIP, self.emu.return_hook)

    # ---- threads ------------------------------------------------------------------------

    def refresh_signals(self):
        m = self.sim.call({"op": "memory"})
        self.signals = {"low_memory": m["low_memory"], "high_commit": m["high_commit"]}
        return m

    def signaled(self, obj):
        if isinstance(obj, Thread):
            return obj.state == "done"
        if isinstance(obj, tuple) and obj[0] == "rundown":
            return self.rundown.get(obj[1], {}).get("active", 0) == 0
        std = self.std_events.get(obj)
        if std is not None:
            if std["handles"] <= 0 and not std["reported"]:
                std["reported"] = True
                self.fail("%s used after its last handle was closed (ZwClose)" % std["name"])
            return self.signals[std["signal"]]
        ev = self.events.get(obj)
        if ev is None:
            raise Failure("wait on %#x, which is not an initialised event" % obj)
        return ev["state"]

    def satisfied(self, w):
        for i, obj in enumerate(w.objects):
            if self.signaled(obj):
                std = self.std_events.get(obj)
                if std is not None and not w.single:
                    self.wakes[std["signal"]] += 1
                ev = self.events.get(obj)
                if ev is not None and ev["type"] == 1:
                    ev["state"] = False
                return STATUS_SUCCESS + (0 if w.single else i)
        if w.deadline is not None and self.now >= w.deadline:
            return STATUS_TIMEOUT
        return None

    def wait(self, objects, timeout_ptr, single, what, blocks=None):
        deadline = None
        zero = False
        if timeout_ptr:
            raw = struct.unpack("<q", self.rd(timeout_ptr, 8))[0]
            if raw > 0:
                raise Failure("%s with an absolute timeout" % what)
            deadline = self.now + (-raw) * 100
            zero = raw == 0
        # A wait that may block: APC_LEVEL at most; with a zero timeout DISPATCH_LEVEL
        # (docs/windows-memory.md §9.3).
        self.check_irql(what, DISPATCH_LEVEL if zero else APC_LEVEL,
                        " with %s" % ("a zero timeout" if zero else "a timeout of %.3f s"
                                      % ((deadline - self.now) / 1e9) if deadline is not None
                                      else "no timeout"))
        if any(o in self.std_events for o in objects):
            if self.current.kind != "worker":
                self.fail("%s waited on a standard event object: the documented pattern is a "
                          "dedicated thread (docs/windows-memory.md §3.3)" % self.who())
            self.refresh_signals()
        w = Wait(objects, deadline, single, what, blocks)
        status = self.satisfied(w)
        if status is not None:
            return status
        self.block(w)
        return None

    def block(self, w):
        t = self.current
        if t.kind in ("power", "image", "bugcheck"):
            self.fail("%s blocked in %s: it must record the notice, signal the worker and "
                      "return (docs/windows-memory.md §9.4)" % (self.who(), w.what))
        if w.blocks is not None:
            lo, n = w.blocks
            for other in self.threads:
                if other.state == "blocked" and other.wait.blocks is not None:
                    olo, on = other.wait.blocks
                    if lo < olo + on and olo < lo + n:
                        self.fail("two threads wait with the same KWAIT_BLOCK array (%#x)" % lo)
        t.blocked_in.append(w.what)
        self.ret(0)
        t.ctx = self.uc.context_save()
        t.state = "blocked"
        t.wait = w
        self.schedule()

    def wake_waiters(self):
        for t in self.threads:
            if t.state == "blocked":
                status = self.satisfied_now(t.wait)
                if status is not None:
                    t.state, t.wait, t.wake_status = "ready", None, status

    def satisfied_now(self, w):
        deadline, w.deadline = w.deadline, None
        status = self.satisfied(w)
        w.deadline = deadline
        return status

    def switch_to(self, t):
        self.current = t
        if t.state == "new":
            top = t.stack + KERNEL_STACK - 0x40
            rsp = top - 8
            self.wr64(rsp, self.exit_addr)
            for r, v in zip((ucx.UC_X86_REG_RCX, ucx.UC_X86_REG_RDX, ucx.UC_X86_REG_R8,
                             ucx.UC_X86_REG_R9), t.args):
                self.setreg(r, v)
            self.setreg(ucx.UC_X86_REG_RSP, rsp)
            self.setreg(ucx.UC_X86_REG_RIP, t.start)
        else:
            self.uc.context_restore(t.ctx)
            self.setreg(ucx.UC_X86_REG_RAX, t.wake_status)
            # A PC written in a hook restarts emulation there; restoring a context alone
            # does not say so.
            self.setreg(ucx.UC_X86_REG_RIP, self.reg(ucx.UC_X86_REG_RIP))
        t.state = "running"

    def schedule(self):
        """Runs the next ready thread (a callback's caller first); with none, runs the
        checks due when the system is idle, then moves simulated time on."""
        while True:
            ready = [t for t in self.threads if t.state in ("ready", "new")]
            if ready:
                ready.sort(key=lambda t: t.kind not in ("power", "image", "bugcheck"))
                self.switch_to(ready[0])
                return
            while self.idle_checks:
                self.idle_checks.pop(0)()
            blocked = [t for t in self.threads if t.state == "blocked"]
            pending = [a for a in self.actions if not a["done"]]
            if not blocked and not pending:
                self.finished = True
                self.setreg(ucx.UC_X86_REG_RIP, self.emu.return_hook)
                return
            times = [t.wait.deadline for t in blocked if t.wait.deadline is not None]
            times += [a["at"] for a in pending]
            if not times:
                raise Failure("deadlock: %s wait forever"
                              % ", ".join("%s (%s)" % (t.name, t.wait.what) for t in blocked))
            to = max(min(times), self.now)
            watched = {self.std_events[o]["signal"] for t in blocked for o in t.wait.objects
                       if o in self.std_events}
            r = self.sim.call({
                "op": "advance", "to_ns": to,
                "stop_on_low_memory": "low_memory" in watched and not self.signals["low_memory"],
                "stop_on_high_commit": "high_commit" in watched and not self.signals["high_commit"],
            })
            self.now = r["now_ns"]
            self.signals = {"low_memory": r["low_memory"], "high_commit": r["high_commit"]}
            for t in blocked:
                status = self.satisfied(t.wait)
                if status is not None:
                    t.state, t.wait, t.wake_status = "ready", None, status
            for a in pending:
                if a["at"] <= self.now and not a["done"]:
                    a["done"] = True
                    self.start_action(a)

    def start_action(self, a):
        kind = a["kind"]
        if kind == "unload":
            self.held_at_unload = self.report()["final_held_frames"]
            unload = self.rd64(self.driver_object + DRIVER_UNLOAD_OFFSET)
            if not unload:
                raise Failure("DRIVER_OBJECT.DriverUnload is not set")
            stack = self.alloc(KERNEL_STACK, "stack.unload", PAGE)
            self.threads.append(Thread("unload", "unload", unload, (self.driver_object,), stack))
        elif kind in ("sleep", "resume"):
            self.power_event(a)
        elif kind == "image":
            self.image_load(a)
        elif kind == "dump":
            self.dump_event(a)

    def api_ThreadExit(self):
        t = self.current
        t.state = "done"
        if t.kind == "power":
            self.power_returned(t)
        elif t.kind == "image":
            self.image_returned(t)
        elif t.kind == "bugcheck":
            self.dump_returned(t)
        self.wake_waiters()
        self.schedule()

    def api_Schedule(self):
        self.schedule()

    # ---- power: \Callback\PowerState ---------------------------------------------------

    def power_event(self, a):
        """Calls every registered \\Callback\\PowerState routine with
        PO_CB_SYSTEM_STATE_LOCK, at DISPATCH_LEVEL (a callback object's routines run at
        the notifier's IRQL, at most DISPATCH_LEVEL: the worst case the driver must take)."""
        sleep = a["kind"] == "sleep"
        entry = {"event": a["kind"], "at_s": self.now / 1e9}
        if not sleep:
            held, owned = self.held_and_owned()
            entry.update(held_before=held, owned_before=owned)
            if held or owned:
                self.fail("back in S0 at %.1f s with a balloon: the host holds %d frames, "
                          "the driver %d (it must stay empty until then)"
                          % (self.now / 1e9, held, owned))
        self.power_log.append(entry)
        if not self.registrations:
            self.fail("%s at %.1f s: no power callback is registered" % (a["kind"], self.now / 1e9))
            return
        if sleep:
            self.s0 = False
        for fn, ctx in list(self.registrations.values()):
            stack = self.alloc(KERNEL_STACK, "stack.power", PAGE)
            t = Thread("power-" + a["kind"], "power", fn,
                       (ctx, PO_CB_SYSTEM_STATE_LOCK, 0 if sleep else 1), stack, DISPATCH_LEVEL)
            t.entry = entry
            self.threads.append(t)

    def power_returned(self, t):
        entry = t.entry
        entry["returned_blocked"] = list(t.blocked_in)
        if entry["event"] == "resume":
            self.s0 = True
            entry["locks_before"] = self.lock_calls
            return

        def emptied():
            held, owned = self.held_and_owned()
            entry.update(held_when_idle=held, owned_when_idle=owned, idle_at_s=self.now / 1e9)
            if held or owned:
                self.fail("after the sleep notification the system went idle with a balloon: "
                          "the host holds %d frames, the driver %d (the worker must empty it "
                          "at once)" % (held, owned))
        self.idle_checks.append(emptied)

    # ---- load-image notification --------------------------------------------------------

    def image_load(self, a):
        """Maps an image: calls every registered load-image notify routine in a loading
        thread of its own at PASSIVE_LEVEL (docs/windows-memory.md §9.4)."""
        path, pid = a.get("path"), a.get("pid", 0)
        held, owned = self.held_and_owned()
        entry = {"path": path, "pid": pid, "at_s": self.now / 1e9, "held_before": held,
                 "stand_down": a.get("stand_down", False), "start0_before": self.start0_calls,
                 "calls_before": self.balloon_calls}
        self.image_log.append(entry)
        min_held = a.get("min_held_mib")
        if min_held is not None and held < min_held * 256:
            self.fail("%s loads at %.1f s with %.1f MiB ballooned, at least %d MiB expected"
                      % (path, self.now / 1e9, held / 256, min_held))
        if not self.image_routines:
            self.fail("%s loads at %.1f s: no load-image notify routine is registered"
                      % (path, self.now / 1e9))
            return
        name = 0
        if path is not None:
            raw = path.encode("utf-16-le")
            buf = self.alloc(len(raw) + 2, "image.name")
            self.wr(buf, raw)
            name = self.alloc(16, "image.ustr")
            self.wr(name, struct.pack("<HHxxxxQ", len(raw), len(raw) + 2, buf))
        info = self.alloc(IMAGE_INFO_SIZE, "image.info")
        self.wr(info, struct.pack("<IxxxxQIxxxxQI", IMAGE_SYSTEM_MODE if pid == 0 else 0,
                                  0xFFFFF80012340000, 0, 0x8000, 0))
        for routine in self.image_routines:
            stack = self.alloc(KERNEL_STACK, "stack.image", PAGE)
            t = Thread("image-load", "image", routine, (name, pid, info), stack, PASSIVE_LEVEL)
            t.entry = entry
            self.threads.append(t)

    def image_returned(self, t):
        entry = t.entry
        entry["returned_blocked"] = list(t.blocked_in)

        def judged():
            held, owned = self.held_and_owned()
            entry.update(held_when_idle=held, owned_when_idle=owned)
            start0 = self.start0_calls - entry["start0_before"]
            if not entry["stand_down"]:
                if start0:
                    self.fail("%r (process %d) made the driver end its session: only "
                              "vmmemctl.sys loading as a driver may" % (entry["path"], entry["pid"]))
                return
            stood = [e for e in self.etw_log if e["name"] == "StoodDown"
                     and e["t_s"] >= entry["at_s"]]
            problems = []
            if not start0:
                problems.append("no START(0)")
            if held:
                problems.append("the host holds %d frames" % held)
            if owned:
                problems.append("the driver owns %d frames" % owned)
            if self.etw_writes and not stood:
                problems.append("no StoodDown ETW event")
            elif stood and stood[0]["fields"].get("FreedFrames") != entry["held_before"]:
                problems.append("StoodDown says %s frames freed, the host held %d"
                                % (stood[0]["fields"].get("FreedFrames"), entry["held_before"]))
            if problems:
                self.fail("vmmemctl.sys loaded at %.1f s and the system went idle without the "
                          "driver standing down: %s" % (entry["at_s"], "; ".join(problems)))
            else:
                self.stood_down = self.now
                entry["stood_down_at_s"] = self.now / 1e9
        self.idle_checks.append(judged)

    def api_PsSetLoadImageNotifyRoutineEx(self):
        routine, flags = self.args(2)
        if flags & ~PS_IMAGE_NOTIFY_CONFLICTING_ARCHITECTURE:
            self.fail("PsSetLoadImageNotifyRoutineEx with flags %#x (only "
                      "PS_IMAGE_NOTIFY_CONFLICTING_ARCHITECTURE is documented)" % flags)
            return STATUS_INVALID_PARAMETER_2
        if not self.nonpaged_code(routine):
            self.fail("PsSetLoadImageNotifyRoutineEx(%#x): not resident code of the image" % routine)
        if routine in self.image_routines:
            self.fail("the load-image notify routine registered twice")
        self.image_routines[routine] = flags
        return STATUS_SUCCESS

    def api_PsRemoveLoadImageNotifyRoutine(self):
        (routine,) = self.args(1)
        if self.current.kind == "image":
            self.fail("PsRemoveLoadImageNotifyRoutine from the load-image notify routine: it "
                      "waits for a running routine to return, a deadlock (docs/windows-memory.md §9.4)")
            return STATUS_SUCCESS
        if self.image_routines.pop(routine, None) is None:
            self.fail("PsRemoveLoadImageNotifyRoutine(%#x): not registered" % routine)
            return STATUS_PROCEDURE_NOT_FOUND
        # A routine that is running is waited for before the removal returns (documented).
        running = [t for t in self.threads if t.kind == "image" and t.start == routine
                   and t.state != "done"]
        if running:
            return self.wait([running[0]], 0, True, "PsRemoveLoadImageNotifyRoutine")
        return STATUS_SUCCESS

    # ---- the backdoor and CPUID ---------------------------------------------------------

    def on_in(self, uc, port, size, user_data):
        self.port_calls += 1
        eax = self.reg(ucx.UC_X86_REG_RAX) & 0xFFFFFFFF
        rcx = self.reg(ucx.UC_X86_REG_RCX)
        port = self.reg(ucx.UC_X86_REG_RDX) & 0xFFFF
        if self.case.get("cpu", "vmware") != "vmware":
            self.fail("`in` on port %#x although CPUID does not report VMware" % port)
        if self.current.kind in ("power", "image"):
            self.fail("%s talked to the host (port %#x): the worker does that "
                      "(docs/windows-memory.md §9.4)" % (self.who(), port))
        if port == BACKDOOR_PORT:
            if eax != BACKDOOR_MAGIC or (rcx & 0xFFFF) != 10:
                self.fail("backdoor port call with eax %#x ecx %#x" % (eax, rcx))
            if not self.case.get("backdoor", True):
                return 0xFFFFFFFF
            self.setreg(ucx.UC_X86_REG_RBX, BACKDOOR_MAGIC)
            self.setreg(ucx.UC_X86_REG_RCX, 2)
            return 6
        if port != BALLOON_PORT:
            self.fail("`in` on port %#x" % port)
            return 0xFFFFFFFF
        if eax != BALLOON_MAGIC:
            self.fail("balloon call with magic %#x" % eax)
        command = rcx & 0xFFFFFFFF
        name = COMMANDS[command] if command < len(COMMANDS) else "cmd-%d" % command
        if self.stood_down is not None:
            self.fail("%s at %.1f s, after standing down for vmmemctl.sys (it must stay idle "
                      "until unload)" % (name, self.now / 1e9))
        self.balloon_calls += 1
        arg1 = self.reg(ucx.UC_X86_REG_RBX)
        arg2 = self.reg(ucx.UC_X86_REG_RSI)
        if command == START and arg1 == 0:
            self.start0_calls += 1
        if command in LOCKS:
            self.lock_calls += 1
            if not self.s0:
                self.fail("%s at %.1f s, before the system was back in S0 (no inflation "
                          "between a sleep notification and the return to S0)"
                          % (name, self.now / 1e9))
        for inj in self.case.get("inject", []):
            if inj["before_call"] == self.balloon_calls:
                self.sim.call(dict({"op": "inject"}, **{k: v for k, v in inj.items()
                                                         if k != "before_call"}))
        req = {"op": "backdoor", "command": command, "arg1": arg1, "arg2": arg2}
        count = 0
        if command in BATCHED and self.batch_va is not None and 1 <= arg2 <= 512:
            if self.contiguous.get(self.batch_va, {}).get("freed", True):
                self.fail("%s uses the batch page after MmFreeContiguousMemory" % name)
            count = arg2
            req["entries"] = list(struct.unpack("<%dQ" % count, self.rd(self.batch_va, 8 * count)))
        r = self.sim.call(req)
        if count and r["entries"]:
            self.wr(self.batch_va, struct.pack("<%dQ" % len(r["entries"]), *r["entries"]))
        self.backdoor_calls[name] = self.backdoor_calls.get(name, 0) + 1
        self.setreg(ucx.UC_X86_REG_RBX, r["result"])
        self.setreg(ucx.UC_X86_REG_RCX, r["capabilities"])
        return r["status"] & 0xFFFFFFFF

    def on_cpuid(self, uc, address, size, user_data):
        eax = self.cpuid(self.reg(ucx.UC_X86_REG_RAX) & 0xFFFFFFFF)
        self.setreg(ucx.UC_X86_REG_RAX, eax)
        self.setreg(ucx.UC_X86_REG_RIP, address + 2)

    def cpuid(self, leaf):
        cpu = self.case.get("cpu", "vmware")
        vendor = {"vmware": b"VMwareVMware", "kvm": b"KVMKVMKVM\0\0\0"}.get(cpu)
        if leaf == 1:
            eax, ebx, ecx, edx = 0x000906EA, 0, 0x0 | (0x80000000 if vendor else 0), 0
        elif leaf == 0x40000000 and vendor:
            eax = 0x40000010
            ebx, ecx, edx = struct.unpack("<III", vendor)
        else:
            eax = ebx = ecx = edx = 0
        self.setreg(ucx.UC_X86_REG_RBX, ebx)
        self.setreg(ucx.UC_X86_REG_RCX, ecx)
        self.setreg(ucx.UC_X86_REG_RDX, edx)
        return eax

    # ---- aux_klib (the stand-in's functions jump here) ---------------------------------

    def api_AuxKlibInitialize(self):
        return STATUS_SUCCESS

    def api_AuxKlibQueryModuleInformation(self):
        size_ptr, element, buf = self.args(3)
        paths = [r"\SystemRoot\system32\ntoskrnl.exe", r"\SystemRoot\system32\hal.dll",
                 r"\SystemRoot\System32\drivers\WDFLDR.SYS",
                 r"\SystemRoot\System32\drivers\vmballoon.sys"]
        if self.case.get("vmmemctl", False):
            paths.append(r"\SystemRoot\System32\drivers\vmmemctl.sys")
        if element != AUX_RECORD:
            raise Failure("AuxKlibQueryModuleInformation with element size %#x" % element)
        need = len(paths) * AUX_RECORD
        if not buf:
            self.wr32(size_ptr, need)
            return STATUS_SUCCESS
        if self.rd32(size_ptr) < need:
            return STATUS_BUFFER_TOO_SMALL
        for i, p in enumerate(paths):
            rec = bytearray(AUX_RECORD)
            struct.pack_into("<QIH", rec, 0, 0xFFFFF80000000000 + i * 0x100000, 0x100000,
                             p.rfind("\\") + 1)
            rec[0x0E:0x0E + len(p)] = p.encode()
            self.wr(buf + i * AUX_RECORD, rec)
        return STATUS_SUCCESS

    # ---- KMDF loader and the framework functions the driver calls ----------------------

    def api_WdfVersionBind(self):
        drv, path, bind, globals_out = self.args(4)
        size, comp = struct.unpack("<I4xQ", self.rd(bind, 16))
        major, minor, build, count, table_ptr = struct.unpack("<IIIIQ", self.rd(bind + 16, 24))
        component = self.rd(comp, 22).decode("utf-16-le")
        if size != 48 or component != "KmdfLibrary" or (major, minor) != (1, 31) \
                or count != WDF_FUNCTION_COUNT:
            raise Failure("WdfVersionBind: bind info %r" % ((size, component, major, minor, count),))
        table = self.alloc(8 * WDF_FUNCTION_COUNT, "wdf.table")
        for i in range(WDF_FUNCTION_COUNT):
            self.wr64(table + 8 * i, self.stub(WDF_TABLE.get(i, "WdfUnmodelled")))
        self.wr64(table_ptr, table)
        self.wr64(globals_out, self.alloc(0x100, "wdf.globals"))
        self.bound = True
        return STATUS_SUCCESS

    def api_WdfVersionUnbind(self):
        if not self.bound or self.unbound:
            self.fail("WdfVersionUnbind without a bind")
        self.unbound = True
        return STATUS_SUCCESS

    def api_WdfDriverCreate(self):
        _g, drv, path, attrs, config, out = self.args(6)
        size, _add, unload, flags, tag = struct.unpack("<I4xQQII", self.rd(config, 32))
        if size != WDF_DRIVER_CONFIG_SIZE:
            self.fail("WDF_DRIVER_CONFIG.Size %d, sizeof is %d" % (size, WDF_DRIVER_CONFIG_SIZE))
        if not flags & 1:
            self.fail("WdfDriverCreate without WdfDriverInitNonPnpDriver")
        if not unload:
            self.fail("WdfDriverCreate without EvtDriverUnload: a non-PnP driver could not unload")
        if not is_pool_tag(tag):
            self.fail("WDF_DRIVER_CONFIG.DriverPoolTag %#x is not a pool tag (non-zero, "
                      "printable ASCII)" % tag)
        self.driver_pool_tag = tag
        self.evt_unload = unload
        self.driver_object = drv
        self.wdf_driver = 0x7DF0000
        self.wr64(out, self.wdf_driver)
        self.wr64(drv + DRIVER_UNLOAD_OFFSET, self.framework_unload)
        return STATUS_SUCCESS

    def api_FxFrameworkUnload(self):
        # The framework's DriverUnload calls EvtDriverUnload(WDFDRIVER): a tail call, so the
        # driver's routine returns straight to the stand-in's unload wrapper.
        self.setreg(ucx.UC_X86_REG_RCX, self.wdf_driver)
        self.setreg(ucx.UC_X86_REG_RIP, self.evt_unload)
        return None

    def api_WdfDriverOpenParametersRegistryKey(self):
        _g, driver, access, attrs, key_out = self.args(5)
        if driver != self.wdf_driver:
            self.fail("WdfDriverOpenParametersRegistryKey on %#x" % driver)
        key = self.new_handle("registry-key")
        self.registry_keys.add(key)
        self.wr64(key_out, key)
        return STATUS_SUCCESS

    def api_WdfRegistryQueryULong(self):
        _g, key, name_ptr, value_ptr = self.args(4)
        if key not in self.registry_keys:
            raise Failure("WdfRegistryQueryULong on a key that is not open")
        name = self.ustr(name_ptr)
        value = self.registry.get(name)
        if value is None:
            return STATUS_OBJECT_NAME_NOT_FOUND
        if value == "wrong-type":
            return STATUS_OBJECT_TYPE_MISMATCH
        self.wr32(value_ptr, value)
        return STATUS_SUCCESS

    def api_WdfRegistryClose(self):
        _g, key = self.args(2)
        if key not in self.registry_keys:
            self.fail("WdfRegistryClose of a key that is not open")
        self.registry_keys.discard(key)
        self.handles.pop(key, None)
        return 0

    # ---- pool ---------------------------------------------------------------------------

    def api_ExAllocatePool2(self):
        flags, size, tag = self.args(3)
        tag &= 0xFFFFFFFF
        if not flags & POOL_FLAG_NON_PAGED:
            self.fail("ExAllocatePool2 with flags %#x: the driver's memory must be nonpaged" % flags)
        if not is_pool_tag(tag):
            self.fail("ExAllocatePool2 with tag %#x (non-zero printable ASCII required)" % tag)
        self.pool_tags.add(tag)
        # Zeroed unless POOL_FLAG_UNINITIALIZED (docs/windows-memory.md §9.2); uninitialised
        # memory is filled with a pattern, so a driver relying on zeros would show.
        fill = 0xCD if flags & POOL_FLAG_UNINITIALIZED else 0
        addr = self.alloc(size, "pool", fill=fill)
        self.pool[addr] = {"size": size, "tag": tag, "kind": "pool"}
        return addr

    def api_ExFreePoolWithTag(self):
        p, tag = self.args(2)
        block = self.pool.pop(p, None)
        if block is None:
            self.fail("ExFreePoolWithTag(%#x), which is not an allocated pool block" % p)
        elif block["kind"] != "pool":
            self.fail_mdl("ExFreePoolWithTag of an MDL from MmAllocatePagesForMdlEx")
        elif block["tag"] != tag & 0xFFFFFFFF:
            self.fail("pool block freed with tag %#x, allocated with %#x" % (tag, block["tag"]))
        else:
            # Freed memory is scribbled over, so a use after free reads garbage.
            self.wr(p, b"\xdd" * block["size"])
            self.arena.free(p)
        return 0

    def api_ExFreePool(self):
        (p,) = self.args(1)
        block = self.pool.pop(p, None)
        mdl = self.mdls.get(p)
        if block is None:
            self.fail("ExFreePool(%#x), which is not an allocated pool block" % p)
        elif block["kind"] != "mdl":
            self.fail("pool block (tag %#x) freed without its tag" % block["tag"])
        elif mdl["state"] != "pages-freed":
            self.fail_mdl("ExFreePool of an MDL whose pages were not freed by MmFreePagesFromMdl first")
        else:
            mdl["state"] = "freed"
            self.arena.free(p)
        return 0

    # ---- the memory manager -------------------------------------------------------------

    def api_MmAllocatePagesForMdlEx(self):
        low, high, skip, total, cache, flags = self.args(6)
        cache &= 0xFFFFFFFF
        flags &= 0xFFFFFFFF
        where = "MmAllocatePagesForMdlEx(skip %#x, %#x bytes, flags %#x)" % (skip, total, flags)
        # The documented arguments (docs/windows-memory.md §1.2-§1.4).
        if flags & ~MM_DOCUMENTED_FLAGS:
            self.fail("%s: flags outside the documented MM_ALLOCATE_* set" % where)
        if skip % PAGE or total == 0 or total > MM_MAX_TOTAL or low > high \
                or cache >= MM_CACHING_TYPES:
            self.fail("%s: arguments out of the documented range" % where)
        if flags & MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS and skip and \
                (skip & (skip - 1) or total % skip):
            self.fail("%s: contiguous chunks need a power-of-two SkipBytes and TotalBytes a "
                      "multiple of it" % where)
        if flags & MM_ALLOCATE_FAST_LARGE_PAGES and not (
                flags & MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS and skip and skip % LARGE == 0):
            self.fail("%s: MM_ALLOCATE_FAST_LARGE_PAGES needs MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS "
                      "and a SkipBytes multiple of the large-page size" % where)
        if self.stood_down is not None:
            self.fail("%s at %.1f s, after standing down for vmmemctl.sys" % (where, self.now / 1e9))
        if not self.s0:
            self.fail("%s at %.1f s, before the system was back in S0" % (where, self.now / 1e9))
        whole_blocks = skip == LARGE and bool(flags & MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS)
        unit = LARGE if whole_blocks else PAGE
        if total % unit or skip not in (0, LARGE) or \
                (flags & MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS and not whole_blocks):
            raise Failure("%s: not modelled" % where)
        if low != 0:
            raise Failure("%s: a LowAddress above 0 is not modelled" % where)
        request = {"op": "allocate", "frames": total // PAGE,
                   "whole_blocks": whole_blocks,
                   "prefer_contiguous": bool(flags & MM_ALLOCATE_PREFER_CONTIGUOUS)}
        high &= 0xFFFFFFFFFFFFFFFF
        if high != 0xFFFFFFFFFFFFFFFF:
            # HighAddress is the last byte a page may hold: pages below (high + 1) / 4 KiB.
            if (high + 1) % PAGE:
                self.fail("%s: HighAddress %#x is not the last byte of a page" % (where, high))
            request["below"] = (high + 1) // PAGE
            self.mm["bounded"] += 1
        r = self.sim.call(request)
        self.mm["mdls"] += 1
        frames = r["pfns"]
        if frames is None:
            self.mm["none"] += 1
            return 0
        if len(frames) < total // PAGE:
            self.mm["short"] += 1
        size = MDL_HEADER + 8 * len(frames)
        mdl = self.alloc(size, "mdl")
        header = struct.pack("<QhhxxxxQQQII", 0, size & 0x7FFF if size < 0x8000 else -1,
                             MDL_PAGES_LOCKED, 0, 0, 0, len(frames) * PAGE, 0)
        self.wr(mdl, header + struct.pack("<%dQ" % len(frames), *frames))
        self.pool[mdl] = {"size": size, "tag": None, "kind": "mdl"}
        self.mdls[mdl] = {"bytes": self.rd(mdl, size), "state": "allocated"}
        return mdl

    def mdl_frames(self, mdl):
        count = self.rd32(mdl + 0x28) // PAGE
        return list(struct.unpack("<%dQ" % count, self.rd(mdl + MDL_HEADER, 8 * count)))

    def api_MmFreePagesFromMdl(self):
        (mdl,) = self.args(1)
        known = self.mdls.get(mdl)
        if known is None:
            block = self.pool.get(mdl)
            tag = block["tag"] if block else None
            self.fail_mdl("MmFreePagesFromMdl on an MDL that MmAllocatePagesForMdlEx did not "
                          "return (%s)" % ("a pool block with tag %#x" % tag if block else "%#x" % mdl))
            self.sim.call({"op": "free", "frames": self.mdl_frames(mdl)})
            return 0
        if known["state"] != "allocated":
            self.fail_mdl("MmFreePagesFromMdl twice on one MDL")
            return 0
        now = self.rd(mdl, len(known["bytes"]))
        if now != known["bytes"]:
            before = struct.unpack_from("<I", known["bytes"], 0x28)[0] // PAGE
            after = self.rd32(mdl + 0x28) // PAGE
            self.fail_mdl("MmFreePagesFromMdl on a modified MDL (pages %d -> %d)" % (before, after))
        # The memory model judges the free too (a partial or unknown MDL frees nothing).
        self.sim.call({"op": "free", "frames": self.mdl_frames(mdl)})
        known["state"] = "pages-freed"
        return 0

    def api_MmAllocateContiguousNodeMemory(self):
        size, low, high, boundary, protect, node = self.args(6)
        protect &= 0xFFFFFFFF
        node &= 0xFFFFFFFF
        where = "MmAllocateContiguousNodeMemory(%#x bytes, protect %#x)" % (size, protect)
        base = protect & (PAGE_READWRITE | PAGE_EXECUTE_READWRITE)
        cache = protect & (PAGE_NOCACHE | PAGE_WRITECOMBINE)
        # docs/windows-memory.md §1.8: exactly one of PAGE_READWRITE and
        # PAGE_EXECUTE_READWRITE, at most one caching modifier, nothing else.
        if base not in (PAGE_READWRITE, PAGE_EXECUTE_READWRITE) \
                or cache == PAGE_NOCACHE | PAGE_WRITECOMBINE \
                or protect & ~(PAGE_READWRITE | PAGE_EXECUTE_READWRITE | PAGE_NOCACHE | PAGE_WRITECOMBINE):
            self.fail("%s: Protect must hold exactly one of PAGE_READWRITE and "
                      "PAGE_EXECUTE_READWRITE and at most one caching modifier" % where)
        if base == PAGE_EXECUTE_READWRITE:
            self.fail("%s: executable memory for the batch page (it must be no-execute: "
                      "PAGE_READWRITE)" % where)
        if size == 0 or low > high or (boundary and boundary & (boundary - 1)):
            self.fail("%s: NumberOfBytes, the address range or BoundaryAddressMultiple out of "
                      "the documented range" % where)
        if high > 0xFFFFFFFF:
            self.fail("%s: HighestAcceptableAddress %#x: the batch page must lie below 4 GiB "
                      "(docs/protocol.md §5)" % (where, high))
        if node != MM_ANY_NODE_OK and node >= NODES:
            self.fail("%s: PreferredNode %#x is neither MM_ANY_NODE_OK nor a node" % (where, node))
        if size != PAGE:
            raise Failure("%s: not modelled (one page only)" % where)
        # Not zeroed (documented): a pattern, so a driver relying on zeros would show.
        va = self.alloc(PAGE, "contiguous", PAGE, fill=0xCD)
        self.contiguous[va] = {"size": size, "freed": False, "high": high}
        if self.batch_va is None:
            self.batch_va = va
        return va

    def api_MmGetPhysicalAddress(self):
        (va,) = self.args(1)
        block = self.contiguous.get(va)
        if va != self.batch_va or block is None or block["freed"]:
            raise Failure("MmGetPhysicalAddress(%#x): not the batch page" % va)
        pa = self.sim.init["batch_pfn"] * PAGE
        if pa > block["high"]:
            raise Failure("the model's batch page lies above HighestAcceptableAddress")
        return pa

    def api_MmFreeContiguousMemory(self):
        (va,) = self.args(1)
        block = self.contiguous.get(va)
        if block is None or block["freed"]:
            self.fail("MmFreeContiguousMemory(%#x): not an allocation of "
                      "MmAllocateContiguousNodeMemory, or freed before" % va)
        else:
            block["freed"] = True
            self.wr(va, b"\xdd" * PAGE)
        return 0

    def api_ZwQuerySystemInformation(self):
        cls, buf, length, ret_ptr = self.args(4)
        m = self.refresh_signals()
        f = lambda v: v if v is not None else 0  # noqa: E731
        if cls == 0:
            data = bytearray(0x40)
            struct.pack_into("<II", data, 0x08, PAGE, m["total"])
        elif cls == 2:
            data = bytearray(0x158)
            struct.pack_into("<III", data, 0x2C, f(m["available"]), f(m["committed"]),
                             f(m["commit_limit"]))
            struct.pack_into("<q", data, 0x148, f(m["resident_available"]))
        elif cls == 182:
            data = bytearray(0x38)
            struct.pack_into("<QQqQ", data, 0, m["total"] * PAGE, f(m["available"]) * PAGE,
                             f(m["resident_available"]) * PAGE, f(m["committed"]) * PAGE)
            struct.pack_into("<Q", data, 0x28, f(m["commit_limit"]) * PAGE)
        else:
            return STATUS_INVALID_INFO_CLASS
        if ret_ptr:
            self.wr32(ret_ptr, len(data))
        if length < len(data):
            return STATUS_INFO_LENGTH_MISMATCH
        self.wr(buf, data)
        return STATUS_SUCCESS

    def api_RtlGetVersion(self):
        (info,) = self.args(1)
        size = self.rd32(info)
        if size not in OSVERSIONINFO_SIZES:
            self.fail("RtlGetVersion with dwOSVersionInfoSize %d: the caller sets it to the size "
                      "of RTL_OSVERSIONINFOW (276) or RTL_OSVERSIONINFOEXW (284)" % size)
            return STATUS_SUCCESS
        out = bytearray(size)
        struct.pack_into("<IIIII", out, 0, size, OS_VERSION[0], OS_VERSION[1], OS_VERSION[2], 2)
        self.wr(info, out)
        return STATUS_SUCCESS

    # ---- events, waits, time ------------------------------------------------------------

    def api_KeInitializeEvent(self):
        ev, kind, state = self.args(3)
        if not self.nonpaged(ev, 0x18):
            self.fail("KeInitializeEvent(%#x): an event must be in nonpaged memory" % ev)
        for t in self.threads:
            if t.state == "blocked" and ev in t.wait.objects:
                self.fail("KeInitializeEvent(%#x) while %s waits on it" % (ev, t.name))
        self.events[ev] = {"type": kind & 0xFFFFFFFF, "state": bool(state & 0xFF)}
        return 0

    def standard_event_touched(self, call, ev):
        std = self.std_events[ev]
        self.fail("%s on %s: the system sets and clears the standard event objects; drivers "
                  "wait on them (docs/windows-memory.md §3.3)" % (call, std["name"]))

    def api_KeSetEvent(self):
        ev, _incr, wait = self.args(3)
        if ev in self.std_events:
            self.standard_event_touched("KeSetEvent", ev)
            return 0
        e = self.events.get(ev)
        if e is None:
            raise Failure("KeSetEvent on %#x, not an initialised event" % ev)
        if wait & 0xFF:
            self.fail("KeSetEvent with Wait TRUE (the driver never follows it with a wait)")
        previous = int(e["state"])
        e["state"] = True
        self.wake_waiters()
        return previous

    def api_KeClearEvent(self):
        (ev,) = self.args(1)
        if ev in self.std_events:
            self.standard_event_touched("KeClearEvent", ev)
            return 0
        if ev not in self.events:
            raise Failure("KeClearEvent on %#x, not an initialised event" % ev)
        self.events[ev]["state"] = False
        return 0

    def api_KeReadStateEvent(self):
        (ev,) = self.args(1)
        if ev in self.std_events:
            self.refresh_signals()
        return int(self.signaled(ev))

    def api_IoCreateNotificationEvent(self):
        name_ptr, handle_ptr = self.args(2)
        name = self.ustr(name_ptr)
        signal = STANDARD_EVENTS.get(name)
        if signal is None:
            raise Failure("IoCreateNotificationEvent(%r): not a standard event object the "
                          "harness models" % name)
        ev = next((a for a, s in self.std_events.items() if s["name"] == name), None)
        if ev is None:
            ev = self.alloc(0x18, "std-event")
            self.std_events[ev] = {"name": name, "signal": signal, "handles": 0,
                                   "reported": False}
        self.std_events[ev]["handles"] += 1
        self.wr64(handle_ptr, self.new_handle(("std-event", ev)))
        return ev

    def api_KeWaitForSingleObject(self):
        obj, reason, mode, alertable, timeout = self.args(5)
        return self.wait([obj], timeout, True, "KeWaitForSingleObject")

    def api_KeWaitForMultipleObjects(self):
        count, objs, wait_type, reason, mode, alertable, timeout, blocks = self.args(8)
        count &= 0xFFFFFFFF
        what = "KeWaitForMultipleObjects(%d objects)" % count
        if wait_type & 0xFFFFFFFF != WAIT_ANY:
            raise Failure("%s with WaitType %d (only WaitAny modelled)" % (what, wait_type))
        if mode & 0xFF != KERNEL_MODE:
            self.fail("%s in UserMode: the driver's waits are KernelMode" % what)
        if not 1 <= count <= MAXIMUM_WAIT_OBJECTS:
            raise Failure("%s: Count outside 1..=MAXIMUM_WAIT_OBJECTS is bug check 0xC" % what)
        span = None
        stats = self.multi_waits
        stats["calls"] += 1
        stats["max_count"] = max(stats["max_count"], count)
        stats["over_thread_wait_objects"] += count > THREAD_WAIT_OBJECTS
        stats["with_blocks"] += bool(blocks)
        if count > THREAD_WAIT_OBJECTS and not blocks:
            self.fail("%s without a WaitBlockArray: more than THREAD_WAIT_OBJECTS (%d) needs "
                      "one, else bug check 0xC MAXIMUM_WAIT_OBJECTS_EXCEEDED "
                      "(docs/windows-memory.md §9.3)" % (what, THREAD_WAIT_OBJECTS))
        if blocks:
            span = (blocks, count * KWAIT_BLOCK_SIZE)
            if not self.nonpaged(*span):
                self.fail("%s: the WaitBlockArray at %#x (%d bytes) is not nonpaged memory the "
                          "driver owns" % (what, blocks, span[1]))
            else:
                # The blocks are the kernel's during the wait: their contents are opaque.
                self.wr(blocks, b"\xa5" * span[1])
        objects = [self.rd64(objs + 8 * i) for i in range(count)]
        return self.wait(objects, timeout, False, what, span)

    def api_ZwWaitForSingleObject(self):
        handle, alertable, timeout = self.args(3)
        obj = self.handles.get(handle)
        if not isinstance(obj, Thread):
            raise Failure("ZwWaitForSingleObject on handle %#x (%r)" % (handle, obj))
        if not obj.access & SYNCHRONIZE:
            self.fail("ZwWaitForSingleObject on a thread handle without SYNCHRONIZE access")
        return self.wait([obj], timeout, True, "ZwWaitForSingleObject")

    def api_KeQueryInterruptTimePrecise(self):
        (qpc,) = self.args(1)
        if qpc:
            self.wr64(qpc, self.now // 100)
        return self.now // 100

    def api_KeGetCurrentIrql(self):
        return self.current.irql

    def api_KeBugCheckEx(self):
        code, p1, p2, p3, p4 = self.args(5)
        self.bugcheck = code & 0xFFFFFFFF
        raise Failure("KeBugCheckEx(%#x, %#x, %#x, %#x, %#x)" % (code, p1, p2, p3, p4))

    # ---- threads and handles ------------------------------------------------------------

    def api_PsCreateSystemThread(self):
        handle_ptr, access, attrs, process, client, start, ctx = self.args(7)
        if not self.nonpaged_code(start):
            self.fail("PsCreateSystemThread with a start routine outside the image's code")
        stack = self.alloc(KERNEL_STACK, "stack.worker", PAGE)
        t = Thread("worker", "worker", start, (ctx,), stack)
        t.access = access & 0xFFFFFFFF
        t.handle = self.new_handle(t)
        self.threads.append(t)
        self.wr64(handle_ptr, t.handle)
        return STATUS_SUCCESS

    def api_PsTerminateSystemThread(self):
        t = self.current
        if t.kind != "worker":
            raise Failure("PsTerminateSystemThread from %s" % t.name)
        t.state = "done"
        self.wake_waiters()
        self.schedule()
        return None

    def api_ZwClose(self):
        (handle,) = self.args(1)
        obj = self.handles.pop(handle, None)
        if obj is None:
            self.fail("ZwClose(%#x), not an open handle" % handle)
        elif isinstance(obj, tuple) and obj[0] == "std-event":
            self.std_events[obj[1]]["handles"] -= 1
        return STATUS_SUCCESS

    # ---- callbacks, run-down ------------------------------------------------------------

    def api_ExCreateCallback(self):
        obj_out, attrs, create, multiple = self.args(4)
        name = self.ustr(self.rd64(attrs + 0x10))
        if name.lower() != r"\callback\powerstate":
            raise Failure("ExCreateCallback(%r)" % name)
        if create & 0xFF:
            self.fail("ExCreateCallback(%s, Create = TRUE): drivers must not ask for the "
                      "system's callback objects to be created" % name)
        obj = self.alloc(0x10, "callback-object")
        self.callback_objects[obj] = 1
        self.wr64(obj_out, obj)
        return STATUS_SUCCESS

    def api_ObfDereferenceObject(self):
        (obj,) = self.args(1)
        if self.callback_objects.get(obj, 0) <= 0:
            self.fail("ObfDereferenceObject(%#x) without a reference" % obj)
        else:
            self.callback_objects[obj] -= 1
        return 0

    # ---- performance counters and the bug-check callback (§9.5, §9.6) --------------------

    def api_PcwRegister(self):
        out, info = self.args(2)
        version = self.rd32(info)
        name = self.ustr(self.rd64(info + 8))
        count = self.rd32(info + 16)
        counters = self.rd64(info + 24)
        if version != 0x100:
            self.fail("PcwRegister with Version %#x: PCW_VERSION_1 is the one every supported "
                      "Windows accepts (docs/windows-memory.md §9.6)" % version)
        if not name:
            self.fail("PcwRegister with an empty counter-set name")
        offsets = []
        for i in range(count):
            d = counters + 8 * i
            cid, struct, offset, size = (int.from_bytes(self.rd(d + 2 * k, 2), "little")
                                         for k in range(4))
            if cid != i or struct != 0 or size != 8:
                self.fail("PcwRegister: counter descriptor %d is (%d, %d, %d, %d)"
                          % (i, cid, struct, offset, size))
            offsets.append(offset)
        handle = self.alloc(0x10, "pcw-registration")
        self.pcw[handle] = {"name": name, "count": count, "instances": set(),
                            "end": max(offsets, default=0) + 8}
        self.wr64(out, handle)
        return STATUS_SUCCESS

    def api_PcwCreateInstance(self):
        out, reg, name_ptr, count = self.args(4)
        (data,) = self.args(5)[4:]
        if reg not in self.pcw:
            raise Failure("PcwCreateInstance on %#x, not a registration" % reg)
        block, size = self.rd64(data), self.rd32(data + 8)
        if count != 1 or size < self.pcw[reg]["end"]:
            self.fail("PcwCreateInstance: %d data block(s) of %d bytes for counters ending at %d"
                      % (count, size, self.pcw[reg]["end"]))
        if not self.nonpaged(block, size):
            self.fail("PcwCreateInstance(%#x): the data block PCW reads must be nonpaged "
                      "memory the driver owns" % block)
        handle = self.alloc(0x10, "pcw-instance")
        self.pcw[reg]["instances"].add(handle)
        self.pcw_instances[handle] = {"reg": reg, "block": block, "size": size,
                                      "name": self.ustr(name_ptr)}
        self.wr64(out, handle)
        return STATUS_SUCCESS

    def api_PcwCloseInstance(self):
        (inst,) = self.args(1)
        found = self.pcw_instances.pop(inst, None)
        if found is None:
            self.fail("PcwCloseInstance(%#x): not an open instance (PcwUnregister destroys "
                      "its instances; they must not be closed after it)" % inst)
            return 0
        self.pcw[found["reg"]]["instances"].discard(inst)
        # The last values the worker published (vmballoon_nt::counters order): they must
        # agree with what the models saw (docs/windows-memory.md §9.6).
        values = [self.rd64(found["block"] + 8 * i) for i in range(found["size"] // 8)]
        self.pcw_closed = {"name": found["name"], "values": values}
        if len(values) >= 14:
            report = self.report()
            balloon_mib, locked, calls = values[0], values[7], values[13]
            if balloon_mib * 256 > report["peak_held_frames"]:
                self.fail("counter Balloon MB %d above the peak the host held (%d frames)"
                          % (balloon_mib, report["peak_held_frames"]))
            if report["peak_held_frames"] and not locked:
                self.fail("the host held pages but counter Frames Locked is 0: the worker "
                          "never published its counters")
            if calls > self.port_calls:
                self.fail("counter Backdoor Calls %d above the %d port calls the driver made"
                          % (calls, self.port_calls))
        return 0

    def api_PcwUnregister(self):
        (reg,) = self.args(1)
        found = self.pcw.pop(reg, None)
        if found is None:
            self.fail("PcwUnregister(%#x): not registered" % reg)
            return 0
        for inst in found["instances"]:
            self.pcw_instances.pop(inst, None)
        if found["instances"]:
            self.fail("PcwUnregister with an instance still open: the driver closes its "
                      "instance first (docs/windows-memory.md §9.6)")
        return 0

    def api_KeRegisterBugCheckReasonCallback(self):
        record, routine, reason, component = self.args(4)
        if reason != 6:
            self.fail("KeRegisterBugCheckReasonCallback with reason %d (KbCallbackRemovePages "
                      "is 6)" % reason)
        if not self.nonpaged_code(routine):
            self.fail("KeRegisterBugCheckReasonCallback(%#x): the routine must be nonpageable "
                      "code" % routine)
        if not self.nonpaged(record, 48):
            self.fail("KeRegisterBugCheckReasonCallback: the record %#x must stay in nonpaged "
                      "memory while registered" % record)
        if record in self.bugcheck_records:
            self.fail("KeRegisterBugCheckReasonCallback: record %#x registered twice" % record)
        self.bugcheck_records[record] = routine
        self.bugcheck_registered = True
        return 1

    def api_KeDeregisterBugCheckReasonCallback(self):
        (record,) = self.args(1)
        if self.bugcheck_records.pop(record, None) is None:
            self.fail("KeDeregisterBugCheckReasonCallback(%#x): not registered" % record)
            return 0
        return 1

    def dump_event(self, a):
        """A crash dump being written (docs/windows-memory.md §9.5): every registered
        KbCallbackRemovePages routine is called at HIGH_LEVEL with a zeroed
        KBUGCHECK_REMOVE_PAGES, again and again while it sets
        KB_REMOVE_PAGES_FLAG_ADDITIONAL_RANGES_EXIST, keeping Context between calls. The
        emulated threads run one at a time, so the worker is stopped at a kernel call here,
        not in the middle of a store (the portable table's property test covers that)."""
        entry = {"at_s": self.now / 1e9, "ranges": 0, "frames": 0,
                 "held": self.report()["final_held_frames"]}
        self.dump_log.append(entry)
        if not self.bugcheck_records:
            self.fail("a dump at %.1f s: no KbCallbackRemovePages routine is registered"
                      % (self.now / 1e9))
            return
        for record, routine in list(self.bugcheck_records.items()):
            data = self.alloc(0x20, "remove-pages")
            self.dump_call(entry, record, routine, data)

    def dump_call(self, entry, record, routine, data):
        self.wr32(data + 8, 0)        # Flags: zero on entry
        self.wr32(data + 12, 0xE2)    # BugCheckCode: MANUALLY_INITIATED_CRASH
        self.wr64(data + 16, 0)
        self.wr64(data + 24, 0)
        stack = self.alloc(KERNEL_STACK, "stack.bugcheck", PAGE)
        t = Thread("bugcheck", "bugcheck", routine, (6, record, data, 0x20), stack, HIGH_LEVEL)
        t.entry, t.record, t.data = entry, record, data
        self.threads.append(t)

    def dump_returned(self, t):
        entry, data = t.entry, t.data
        flags, address, count = self.rd32(data + 8), self.rd64(data + 16), self.rd64(data + 24)
        if count:
            if flags & 3 != 2:
                self.fail("KbCallbackRemovePages returned flags %#x: the ranges are physical "
                          "(KB_REMOVE_PAGES_FLAG_PHYSICAL_ADDRESS alone)" % flags)
            if address % PAGE:
                self.fail("KbCallbackRemovePages returned an unaligned address %#x" % address)
            held = set()
            for mdl, m in self.mdls.items():
                if m["state"] == "allocated":
                    held.update(self.mdl_frames(mdl))
            first = address // PAGE
            outside = [f for f in range(first, first + count) if f not in held]
            if outside:
                self.fail("KbCallbackRemovePages handed the dump writer %d page(s) the balloon "
                          "does not hold (first PFN %#x): they would be left out of the dump"
                          % (len(outside), outside[0]))
            entry["ranges"] += 1
            entry["frames"] += count
        if flags & 0x80000000:
            if entry["ranges"] > 4096:
                self.fail("KbCallbackRemovePages asks to be called again without end")
                return
            self.dump_call(entry, t.record, t.start, data)

    def api_ExRegisterCallback(self):
        obj, fn, ctx = self.args(3)
        if obj not in self.callback_objects:
            raise Failure("ExRegisterCallback on %#x" % obj)
        if not self.nonpaged_code(fn):
            self.fail("ExRegisterCallback(%#x): the routine must be nonpageable code" % fn)
        handle = self.alloc(0x10, "callback-registration")
        self.registrations[handle] = (fn, ctx)
        return handle

    def api_ExUnregisterCallback(self):
        (handle,) = self.args(1)
        if self.registrations.pop(handle, None) is None:
            self.fail("ExUnregisterCallback(%#x), not registered" % handle)
        return 0

    def api_ExInitializeRundownProtection(self):
        (ref,) = self.args(1)
        self.rundown[ref] = {"active": 0, "down": False}
        return 0

    def api_ExAcquireRundownProtection(self):
        (ref,) = self.args(1)
        r = self.rundown.get(ref)
        if r is None:
            raise Failure("ExAcquireRundownProtection before initialisation")
        if r["down"]:
            return 0
        r["active"] += 1
        return 1

    def api_ExReleaseRundownProtection(self):
        (ref,) = self.args(1)
        r = self.rundown[ref]
        if r["active"] <= 0:
            self.fail("ExReleaseRundownProtection without an acquisition")
        r["active"] -= 1
        self.wake_waiters()
        return 0

    def api_ExWaitForRundownProtectionRelease(self):
        (ref,) = self.args(1)
        self.rundown[ref]["down"] = True
        return self.wait([("rundown", ref)], 0, True, "ExWaitForRundownProtectionRelease")

    # ---- ETW ----------------------------------------------------------------------------

    def api_EtwRegister(self):
        guid_ptr, callback, ctx, handle_ptr = self.args(4)
        guid = self.rd(guid_ptr, 16)
        if guid != provider_guid(PROVIDER_NAME):
            self.fail("EtwRegister of provider %s, not %s (the GUID %s derives)"
                      % (guid_text(guid), PROVIDER_NAME, guid_text(provider_guid(PROVIDER_NAME))))
        handle = 0xE7000 + len(self.etw) + 1
        self.etw[handle] = {"guid": guid, "name": None}
        self.wr64(handle_ptr, handle)
        if not callback:
            return STATUS_SUCCESS
        # A trace session has the provider enabled (verbose, every keyword), so ETW calls the
        # enable callback before EtwRegister returns: a call into the driver from this hook,
        # with a frame below the caller's and a return into EtwEnableReturn.
        rsp = self.reg(ucx.UC_X86_REG_RSP)
        frame = rsp - 0x40
        self.current.etw_return = rsp
        self.wr64(frame, self.etw_enable_return)
        self.wr64(frame + 0x28, 0)
        self.wr64(frame + 0x30, 0)
        self.wr64(frame + 0x38, ctx)
        self.setreg(ucx.UC_X86_REG_RCX, guid_ptr)
        self.setreg(ucx.UC_X86_REG_RDX, EVENT_CONTROL_CODE_ENABLE_PROVIDER)
        self.setreg(ucx.UC_X86_REG_R8, TRACE_LEVEL_VERBOSE)
        self.setreg(ucx.UC_X86_REG_R9, MASK64)
        self.setreg(ucx.UC_X86_REG_RSP, frame)
        self.setreg(ucx.UC_X86_REG_RIP, callback)
        return None

    def api_EtwEnableReturn(self):
        self.setreg(ucx.UC_X86_REG_RSP, self.current.etw_return)
        self.current.etw_return = None
        return STATUS_SUCCESS

    def api_EtwUnregister(self):
        (handle,) = self.args(1)
        if self.etw.pop(handle, None) is None:
            self.fail("EtwUnregister(%#x), not registered" % handle)
        return STATUS_SUCCESS

    def api_EtwSetInformation(self):
        handle, cls, info, length = self.args(4)
        reg = self.etw.get(handle)
        if reg is None:
            self.fail("EtwSetInformation(%#x), not registered" % handle)
        elif cls & 0xFFFFFFFF == EVENT_PROVIDER_SET_TRAITS:
            traits = self.rd(info, length & 0xFFFFFFFF)
            name = traits[2:traits.index(b"\0", 2)].decode("utf-8", "replace")
            reg["name"] = name
            if name != PROVIDER_NAME or provider_guid(name) != reg["guid"]:
                self.fail("ETW provider %r registered with GUID %s, which is not the GUID its "
                          "name derives (%s)" % (name, guid_text(reg["guid"]),
                                                 guid_text(provider_guid(name))))
        return STATUS_SUCCESS

    def api_EtwWriteTransfer(self):
        handle, desc, activity, related, count, data = self.args(6)
        self.etw_writes += 1
        if handle not in self.etw:
            self.fail("EtwWriteTransfer on %#x, not a registered provider" % handle)
            return STATUS_SUCCESS
        count &= 0xFFFFFFFF
        if count > MAX_EVENT_DATA_DESCRIPTORS:
            self.fail("EtwWriteTransfer with %d data descriptors (at most %d)"
                      % (count, MAX_EVENT_DATA_DESCRIPTORS))
            return STATUS_SUCCESS
        meta = None
        payload = b""
        for i in range(count):
            ptr, size, kind = struct.unpack("<QII", self.rd(data + 16 * i, 16))
            raw = self.rd(ptr, size) if size else b""
            if kind == 1:
                meta = raw
            elif kind == 0:
                payload += raw
        try:
            if meta is None:
                raise ValueError("no event metadata")
            name, fields = tlg_decode(meta, payload)
        except (ValueError, struct.error) as e:
            self.fail("an ETW event that does not decode: %s" % e)
            return STATUS_SUCCESS
        self.etw_counts[name] = self.etw_counts.get(name, 0) + 1
        if name != "Stats":
            self.etw_log.append({"name": name, "t_s": self.now / 1e9, "fields": fields})
        if name == "MemoryLayout":
            traced = (fields.get("OsMajor"), fields.get("OsMinor"), fields.get("OsBuild"))
            if traced != OS_VERSION:
                self.fail("MemoryLayout traces OS %s, RtlGetVersion reported %s" % (traced, OS_VERSION))
        return STATUS_SUCCESS

    # ---- C runtime exports of ntoskrnl --------------------------------------------------

    def api_memcmp(self):
        a, b, n = self.args(3)
        x, y = self.rd(a, n), self.rd(b, n)
        for i in range(n):
            if x[i] != y[i]:
                return (x[i] - y[i]) & MASK64
        return 0

    def api___chkstk(self):
        return self.reg(ucx.UC_X86_REG_RAX)

    # ---- the run --------------------------------------------------------------------------

    def run(self):
        duration = self.sim.init["duration_ns"]
        for p in self.case.get("power", []):
            self.actions.append({"at": int(p["at_s"] * 1e9), "kind": p["event"], "done": False})
        for img in self.case.get("images", []):
            self.actions.append(dict(img, at=int(img["at_s"] * 1e9), kind="image", done=False))
        for at_s in self.case.get("dumps_at_s", []):
            self.actions.append({"at": int(at_s * 1e9), "kind": "dump", "done": False})
        self.actions.append({"at": duration, "kind": "unload", "done": False})
        self.actions.sort(key=lambda a: a["at"])
        self.se.run_module(self.module)
        self.status = self.emu.curr_run.ret_val
        if self.status is not None:
            self.status &= 0xFFFFFFFF
        err = self.emu.curr_run.error
        if err:
            self.fail("DriverEntry: emulation error %s at %s" % (err.get("type"), err.get("pc")))
        self.current.state = "done"
        if self.status == STATUS_SUCCESS and not self.failures:
            if self.driver_object is None:
                self.fail("DriverEntry succeeded without WdfDriverCreate")
            else:
                self.drop_speakeasy_code_hook()
                self.se.call(self.schedule_addr, [])
                for r in self.emu.runs[1:]:
                    if r.error:
                        self.fail("emulation error %s at %s (%s)" % (r.error.get("type"),
                                  r.error.get("pc"), r.error.get("traceback", "")[-300:]))
                if not self.finished:
                    self.fail("the emulation stopped before unload finished")
        return self.check()

    def drop_speakeasy_code_hook(self):
        """speakeasy installs a code hook over all memory when a run ends (to see its
        return address): a Python call per instruction from then on, even while it is
        disabled. Removed before the worker runs; speakeasy adds it again at the end."""
        hook = self.emu.tmp_code_hook
        if hook is not None:
            self.uc.hook_del(hook.handle)
            self.emu.tmp_code_hook = None

    def check(self):
        report = self.report()
        leftovers = []
        blocks = [b for b in self.pool.values() if b["kind"] == "pool"]
        if blocks:
            tags = sorted({"%#x" % b["tag"] for b in blocks})
            leftovers.append("%d pool block(s) never freed (tag %s)" % (len(blocks), ", ".join(tags)))
        unfreed = [m for m in self.mdls.values() if m["state"] != "freed"]
        if unfreed:
            self.fail_mdl("at the end: %d MDL(s) from MmAllocatePagesForMdlEx not freed "
                          "(MmFreePagesFromMdl, then ExFreePool)" % len(unfreed))
        if any(not c["freed"] for c in self.contiguous.values()):
            leftovers.append("the batch page was never freed (MmFreeContiguousMemory)")
        if self.etw:
            leftovers.append("ETW provider still registered")
        if self.registrations:
            leftovers.append("the power callback is still registered")
        if self.case.get("dump_all_held"):
            for d in self.dump_log:
                if d["frames"] != d["held"]:
                    self.fail("the dump at %.1f s left out %d frames; the host held %d, all in "
                              "whole 2 MiB blocks, each one range" % (d["at_s"], d["frames"],
                                                                        d["held"]))
        if self.pcw or self.pcw_instances:
            leftovers.append("the performance-counter set is still registered")
        if self.bugcheck_records:
            leftovers.append("the bug-check reason callback is still registered (a crash "
                             "would call into the unloaded driver)")
        if any(n > 0 for n in self.callback_objects.values()):
            leftovers.append("a callback object reference was never released")
        if self.image_routines:
            leftovers.append("the load-image notify routine is still registered (the next "
                             "image load would call into the unloaded driver)")
        if self.registry_keys:
            leftovers.append("registry key(s) left open")
        if self.handles:
            leftovers.append("%d handle(s) left open" % len(self.handles))
        if self.bound and not self.unbound:
            leftovers.append("never unbound from KMDF")
        if self.driver_pool_tag is not None and self.pool_tags - {self.driver_pool_tag}:
            leftovers.append("pool tags %s besides the DriverPoolTag %#x"
                             % (sorted("%#x" % t for t in self.pool_tags - {self.driver_pool_tag}),
                                self.driver_pool_tag))
        for item in leftovers:
            self.fail("at the end: " + item)
        if report["violations"]:
            for m in report["violation_messages"][:8]:
                self.fail("host/guest model: " + m)
        if report["leaked_frames"]:
            self.fail("%d ballooned frames were never returned to the guest" % report["leaked_frames"])
        for m in report["contract_messages"][:8]:
            self.fail_mdl("memory model: " + m)
        if report["final_held_frames"]:
            self.fail("the host still holds %d frames at the end" % report["final_held_frames"])
        stacks = {t.name: (t.stack + KERNEL_STACK - t.min_rsp) for t in self.threads
                  if t.stack and t.min_rsp}
        return report, stacks


def run_case(case, root, serve, sys_path, facts):
    sim_path = root / case["sim"]
    sim = Sim(serve, sim_path)
    started = time.time()
    kernel = Kernel(sys_path, facts, sim, case)
    try:
        report, stacks = kernel.run()
    except Failure as e:
        kernel.fail(str(e))
        report, stacks = sim.call({"op": "report"}), {}
    sim.close()
    return {
        "name": case["name"],
        "status": kernel.status,
        "failures": kernel.failures,
        "report": report,
        "stacks": stacks,
        "port_calls": kernel.port_calls,
        "backdoor_calls": kernel.backdoor_calls,
        "api_calls": kernel.api_calls,
        "etw_writes": kernel.etw_writes,
        "etw_counts": kernel.etw_counts,
        "etw_log": kernel.etw_log,
        "power": kernel.power_log,
        "images": kernel.image_log,
        "stood_down": kernel.stood_down is not None,
        "held_at_unload": kernel.held_at_unload,
        "mm": kernel.mm,
        "wakes": kernel.wakes,
        "multi_waits": kernel.multi_waits,
        "pcw_closed": kernel.pcw_closed,
        "dumps": kernel.dump_log,
        "bugcheck_registered": kernel.bugcheck_registered,
        "registry": sim.init["registry"],
        "seconds": time.time() - started,
    }


def verdict(case, result):
    """Checks the scenario's expectations; returns (verdict, problems)."""
    problems = list(result["failures"])
    report = result["report"]
    status = result["status"]
    peak_mib = report["peak_held_frames"] / 256
    if status != case.get("status", 0):
        problems.append("DriverEntry returned %s, expected %#x"
                        % ("%#x" % status if status is not None else "nothing", case.get("status", 0)))
    lo, hi = case.get("peak_mib", [0, 0])
    if not lo <= peak_mib <= hi:
        problems.append("peak balloon %.1f MiB, expected %g..%g" % (peak_mib, lo, hi))
    cap = case.get("cap_mib")
    if cap is not None and peak_mib > cap:
        problems.append("registry cap MaxBalloonMB=%d ignored: peak %.1f MiB" % (cap, peak_mib))
    most = case.get("max_guest_failures")
    if most is not None and report["guest_alloc_failures"] > most:
        problems.append("the guest failed %d allocations, at most %d expected"
                        % (report["guest_alloc_failures"], most))
    limit = case.get("max_port_calls")
    if limit is not None and result["port_calls"] > limit:
        problems.append("%d backdoor port calls, at most %d expected"
                        % (result["port_calls"], limit))
    for key, value, what in (("min_resets", report["resets_answered"], "RESET answers"),
                             ("min_busy", report["busy_answered"], "BUSY answers"),
                             ("min_refused", report["refused_pages"], "refused pages"),
                             ("min_failed_allocations",
                              result["mm"]["short"] + result["mm"]["none"],
                              "short or empty MDLs"),
                             ("min_low_memory_wakes", result["wakes"]["low_memory"],
                              "LowMemoryCondition wakes"),
                             ("min_high_commit_wakes", result["wakes"]["high_commit"],
                              "MaximumCommitCondition wakes"),
                             ("min_bounded_allocations", result["mm"]["bounded"],
                              "MDLs below a HighAddress (compaction)")):
        if value < case.get(key, 0):
            problems.append("%d %s, at least %d expected" % (value, what, case[key]))
    held = case.get("held_at_unload_mib")
    if held is not None:
        at_unload = (result["held_at_unload"] or 0) / 256
        if not held[0] <= at_unload <= held[1]:
            problems.append("%.1f MiB ballooned when unload began, expected %g..%g"
                            % (at_unload, held[0], held[1]))
    for want in case.get("events", []):
        # A name, or a table of a name and field values the event must carry.
        if isinstance(want, str):
            want = {"name": want}
        fields = {k: v for k, v in want.items() if k != "name"}
        if not any(e["name"] == want["name"] and all(e["fields"].get(k) == v
                                                     for k, v in fields.items())
                   for e in result["etw_log"]) and not (
                       not fields and result["etw_counts"].get(want["name"])):
            problems.append("no %s ETW event%s" % (want["name"], " with %s" % fields if fields else ""))
    for p in case.get("power", []):
        done = [e for e in result["power"] if e["event"] == p["event"]]
        if not done:
            problems.append("the %s notification never reached the driver" % p["event"])
        elif p["event"] == "sleep" and "held_when_idle" not in done[0]:
            problems.append("the system never went idle after the sleep notification")
    if case.get("stood_down") and not result["stood_down"]:
        problems.append("the driver never stood down for vmmemctl.sys")
    for img in result["images"]:
        if "held_when_idle" not in img:
            problems.append("the system never went idle after %s loaded" % img["path"])
    return ("pass" if not problems else "fail"), problems


def main():
    root, serve, sys_path, facts_path, cases_path = (Path(a) for a in sys.argv[1:6])
    only = sys.argv[6:]
    facts = json.loads(facts_path.read_text())
    cases = tomllib.loads(cases_path.read_text())["scenario"]
    unknown = set(only) - {c["name"] for c in cases}
    if unknown:
        raise SystemExit("unknown scenario(s): %s" % ", ".join(sorted(unknown)))
    for case in cases:
        if only and case["name"] not in only:
            continue
        result = run_case(case, root, serve, sys_path, facts)
        result["verdict"], result["problems"] = verdict(case, result)
        result["cap_mib"] = case.get("cap_mib")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
