"""Runs the real vmballoon.sys in an emulated Windows kernel (TEST harness).

`cargo xtask emulate` runs this with a scenario (xtask/emulate/scenarios.toml). speakeasy
(Mandiant's emulator, over unicorn) is the CPU and the loader: it maps the PE, binds its
imports to hook addresses and runs x86-64 code. Everything the driver asks of Windows is
answered here, by a small model of the kernel objects it uses (pool, events, threads,
callbacks, the KMDF loader, ETW), and everything it asks of the VMware host or of the
memory manager is forwarded to `vmballoon-serve`, the simulator's own host and guest
models, so one protocol checker and one memory model judge both the engine in the
simulator and the real binary.

Contract checks (each a failure): MmFreePagesFromMdl only on an MDL that
MmAllocatePagesForMdlEx returned, unmodified (header and PFN array byte-identical), once,
then ExFreePool of it; every pool block freed with its tag; every registration undone by
unload (ETW, the power callback and its callback object, registry keys, handles, the KMDF
bind); no KeBugCheckEx; nothing left allocated at the end; and from the server: no
protocol violation, no page freed while the host holds it, no leaked page.

Emulator limits, handled here (docs: xtask/emulate/README.md):
* Threads run one after another. Each kernel thread the driver sees (the system thread
  it creates, the power callback's caller, unload's caller) is a saved CPU context on
  its own 24 KiB stack; a wait that cannot be satisfied saves the caller and runs
  another ready thread, or, when none is, advances simulated time to the next timeout,
  scenario action or LowMemoryCondition change. So unload keeps its real order: stop
  signalled, worker joined, pages freed.
* The kernel stack is sized from SizeOfStackCommit: the emulated copy's header says
  24 KiB, as Windows x64 kernel stacks are.
* unicorn 1.0.2 cannot hook CPUID: each CPUID (located by `cargo xtask build-sys` from the
  disassembly) is rewritten in emulated memory to two NOPs with a code hook on them that
  answers the leaf in EAX and skips them.
* The aux_klib stand-in's two functions are rewritten in emulated memory to jump to a
  harness hook, which answers with the scenario's module list.
"""

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
STATUS_UNSUCCESSFUL = 0xC0000001
STATUS_NOT_IMPLEMENTED = 0xC0000002
STATUS_BUFFER_TOO_SMALL = 0xC0000023
STATUS_OBJECT_TYPE_MISMATCH = 0xC0000024
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
STATUS_INFO_LENGTH_MISMATCH = 0xC0000004
STATUS_INVALID_INFO_CLASS = 0xC0000003

BACKDOOR_PORT = 0x5658
BACKDOOR_MAGIC = 0x564D5868
BALLOON_PORT = 0x5670
BALLOON_MAGIC = 0x456C6D6F
BATCHED = {6, 7, 8, 9}
COMMANDS = ["START", "TARGET", "LOCK", "UNLOCK", "GUEST_ID", "GET_PROTO_V3",
            "BATCHED_LOCK", "BATCHED_UNLOCK", "BATCHED_2M_LOCK", "BATCHED_2M_UNLOCK",
            "DOORBELL_SET"]

KERNEL_STACK = 0x6000
PAGE = 0x1000
LARGE = 0x200000
MM_ALLOCATE_PREFER_CONTIGUOUS = 0x10
MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS = 0x20
MDL_HEADER = 0x30
MDL_PAGES_LOCKED = 0x0002
DRIVER_UNLOAD_OFFSET = 0x68
PO_CB_SYSTEM_STATE_LOCK = 3
WDF_FUNCTION_COUNT = 458
WDF_TABLE = {116: "WdfDriverCreate", 119: "WdfDriverOpenParametersRegistryKey",
             231: "WdfRegistryClose", 240: "WdfRegistryQueryULong"}
AUX_RECORD = 0x110


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
    """A kernel thread as the driver sees it: a saved CPU context and what it waits for."""

    def __init__(self, name, start=None, args=(), stack=None):
        self.name = name
        self.start = start
        self.args = args
        self.stack = stack
        self.state = "new" if start is not None else "running"
        self.ctx = None
        self.wait = None
        self.wake_status = 0
        self.handle = None
        self.min_rsp = None


class Wait:
    """A wait: any of `objects` (event addresses or Thread objects), until `deadline`."""

    def __init__(self, objects, deadline, single, what):
        self.objects = objects
        self.deadline = deadline
        self.single = single
        self.what = what


class Kernel:
    """The modelled kernel and the scheduler of the emulated threads."""

    def __init__(self, sys_path, facts, sim, case):
        self.case = case
        self.sim = sim
        self.facts = facts
        self.failures = []
        self.now = 0
        self.low = False
        self.events = {}
        self.lowmem_event = None
        self.handles = {}
        self.next_handle = 0x1000
        self.pool = {}
        self.mdls = {}
        self.contiguous = {}
        self.batch_va = None
        self.etw = {}
        self.etw_writes = 0
        self.callback_objects = {}
        self.registrations = {}
        self.rundown = {}
        self.registry_keys = set()
        self.bound = False
        self.unbound = False
        self.wdf_driver = None
        self.evt_unload = None
        self.driver_object = None
        self.threads = []
        self.current = Thread("DriverEntry")
        self.threads.append(self.current)
        self.actions = []
        self.finished = False
        self.port_calls = 0
        self.mm = {"mdls": 0, "short": 0, "none": 0}
        self.low_memory_wakes = 0
        self.balloon_calls = 0
        self.backdoor_calls = {}
        self.bugcheck = None
        self.sleep_checks = []
        self.api_calls = 0
        self.registry = sim.init["registry"]

        data = bytearray(Path(sys_path).read_bytes())
        pe = struct.unpack_from("<I", data, 0x3C)[0]
        # SizeOfStackCommit (PE32+ optional header + 0x50): the emulator sizes the kernel
        # stack from it; Windows x64 kernel stacks are 24 KiB.
        struct.pack_into("<Q", data, pe + 24 + 0x50, KERNEL_STACK)
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
        self.exit_addr = self.stub("ThreadExit")
        self.schedule_addr = self.stub("Schedule")
        self.framework_unload = self.stub("FxFrameworkUnload")

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

    def alloc(self, size, tag, align=16):
        addr = self.arena.alloc(size, align)
        self.wr(addr, bytes(size))
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

    def signaled(self, obj):
        if isinstance(obj, Thread):
            return obj.state == "done"
        if isinstance(obj, tuple) and obj[0] == "rundown":
            return self.rundown.get(obj[1], {}).get("active", 0) == 0
        if obj == self.lowmem_event:
            return self.low
        ev = self.events.get(obj)
        if ev is None:
            raise Failure("wait on %#x, which is not an initialised event" % obj)
        return ev["state"]

    def satisfied(self, w):
        for i, obj in enumerate(w.objects):
            if self.signaled(obj):
                if obj == self.lowmem_event and not w.single:
                    self.low_memory_wakes += 1
                ev = self.events.get(obj)
                if ev is not None and ev["type"] == 1 and obj != self.lowmem_event:
                    ev["state"] = False
                return STATUS_SUCCESS + (0 if w.single else i)
        if w.deadline is not None and self.now >= w.deadline:
            return STATUS_TIMEOUT
        return None

    def wait(self, objects, timeout_ptr, single, what):
        deadline = None
        if timeout_ptr:
            raw = struct.unpack("<q", self.rd(timeout_ptr, 8))[0]
            if raw > 0:
                raise Failure("%s with an absolute timeout" % what)
            deadline = self.now + (-raw) * 100
        w = Wait(objects, deadline, single, what)
        status = self.satisfied(w)
        if status is not None:
            return status
        self.block(w)
        return None

    def block(self, w):
        t = self.current
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
        """Runs the next ready thread; with none, moves simulated time on."""
        while True:
            ready = [t for t in self.threads if t.state in ("ready", "new")]
            if ready:
                self.switch_to(ready[0])
                return
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
            watch = any(self.lowmem_event in t.wait.objects for t in blocked)
            r = self.sim.call({"op": "advance", "to_ns": to,
                               "stop_on_low_memory": watch and not self.low})
            self.now, self.low = r["now_ns"], r["low_memory"]
            for t in blocked:
                status = self.satisfied(t.wait)
                if status is not None:
                    t.state, t.wait, t.wake_status = "ready", None, status
            for a in pending:
                if a["at"] <= self.now and not a["done"]:
                    a["done"] = True
                    self.start_action(a)

    def start_action(self, a):
        stack = self.alloc(KERNEL_STACK, "stack." + a["kind"], PAGE)
        if a["kind"] == "unload":
            unload = self.rd64(self.driver_object + DRIVER_UNLOAD_OFFSET)
            if not unload:
                raise Failure("DRIVER_OBJECT.DriverUnload is not set")
            t = Thread("unload", unload, (self.driver_object,), stack)
        else:
            regs = list(self.registrations.values())
            if not regs:
                self.fail("%s at %.1f s: no power callback is registered" % (a["kind"], self.now / 1e9))
                return
            fn, ctx = regs[0]
            arg2 = 0 if a["kind"] == "sleep" else 1
            t = Thread("power-" + a["kind"], fn, (ctx, PO_CB_SYSTEM_STATE_LOCK, arg2), stack)
        self.threads.append(t)

    def api_ThreadExit(self):
        t = self.current
        t.state = "done"
        if t.name == "power-sleep":
            held = self.sim.call({"op": "report"})["final_held_frames"]
            self.sleep_checks.append(held)
            if held:
                self.fail("the power callback returned before the balloon was emptied "
                          "(the host still holds %d frames)" % held)
        self.wake_waiters()
        self.schedule()

    def api_Schedule(self):
        self.schedule()

    # ---- the backdoor and CPUID ---------------------------------------------------------

    def on_in(self, uc, port, size, user_data):
        self.port_calls += 1
        eax = self.reg(ucx.UC_X86_REG_RAX) & 0xFFFFFFFF
        rcx = self.reg(ucx.UC_X86_REG_RCX)
        port = self.reg(ucx.UC_X86_REG_RDX) & 0xFFFF
        if self.case.get("cpu", "vmware") != "vmware":
            self.fail("`in` on port %#x although CPUID does not report VMware" % port)
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
        self.balloon_calls += 1
        for inj in self.case.get("inject", []):
            if inj["before_call"] == self.balloon_calls:
                self.sim.call(dict({"op": "inject"}, **{k: v for k, v in inj.items()
                                                         if k != "before_call"}))
        arg1 = self.reg(ucx.UC_X86_REG_RBX)
        arg2 = self.reg(ucx.UC_X86_REG_RSI)
        req = {"op": "backdoor", "command": command, "arg1": arg1, "arg2": arg2}
        count = 0
        if command in BATCHED and self.batch_va is not None and 1 <= arg2 <= 512:
            count = arg2
            req["entries"] = list(struct.unpack("<%dQ" % count, self.rd(self.batch_va, 8 * count)))
        r = self.sim.call(req)
        if count and r["entries"]:
            self.wr(self.batch_va, struct.pack("<%dQ" % len(r["entries"]), *r["entries"]))
        name = COMMANDS[command] if command < len(COMMANDS) else "cmd-%d" % command
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
        _size, _add, unload, flags = struct.unpack("<I4xQQI", self.rd(config, 28))
        if not flags & 1:
            self.fail("WdfDriverCreate without WdfDriverInitNonPnpDriver")
        if not unload:
            self.fail("WdfDriverCreate without EvtDriverUnload: a non-PnP driver could not unload")
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
        addr = self.alloc(size, "pool")
        self.pool[addr] = {"size": size, "tag": tag & 0xFFFFFFFF, "kind": "pool"}
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
        whole_blocks = skip == LARGE and bool(flags & MM_ALLOCATE_REQUIRE_CONTIGUOUS_CHUNKS)
        unit = LARGE if whole_blocks else PAGE
        if total == 0 or total % unit or (skip not in (0, LARGE)):
            raise Failure("MmAllocatePagesForMdlEx of %#x bytes, skip %#x" % (total, skip))
        r = self.sim.call({"op": "allocate", "frames": total // PAGE,
                           "whole_blocks": whole_blocks,
                           "prefer_contiguous": bool(flags & MM_ALLOCATE_PREFER_CONTIGUOUS)})
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

    def api_MmAllocateContiguousMemorySpecifyCache(self):
        size, low, high, boundary, cache = self.args(5)
        if size != PAGE or high > 0xFFFFFFFF:
            raise Failure("contiguous allocation of %#x bytes below %#x" % (size, high))
        va = self.alloc(PAGE, "contiguous", PAGE)
        self.contiguous[va] = size
        if self.batch_va is None:
            self.batch_va = va
        return va

    def api_MmGetPhysicalAddress(self):
        (va,) = self.args(1)
        if va != self.batch_va:
            raise Failure("MmGetPhysicalAddress(%#x)" % va)
        return self.sim.init["batch_pfn"] * PAGE

    def api_MmFreeContiguousMemory(self):
        (va,) = self.args(1)
        if self.contiguous.pop(va, None) is None:
            self.fail("MmFreeContiguousMemory(%#x), not allocated" % va)
        else:
            self.arena.free(va)
        return 0

    def api_ZwQuerySystemInformation(self):
        cls, buf, length, ret_ptr = self.args(4)
        m = self.sim.call({"op": "memory"})
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

    # ---- events, waits, time ------------------------------------------------------------

    def api_KeInitializeEvent(self):
        ev, kind, state = self.args(3)
        self.events[ev] = {"type": kind & 0xFFFFFFFF, "state": bool(state & 0xFF)}
        return 0

    def api_KeSetEvent(self):
        ev, _incr, _wait = self.args(3)
        e = self.events.get(ev)
        if e is None:
            raise Failure("KeSetEvent on %#x, not an initialised event" % ev)
        previous = int(e["state"])
        e["state"] = True
        self.wake_waiters()
        return previous

    def api_KeClearEvent(self):
        (ev,) = self.args(1)
        if ev not in self.events:
            raise Failure("KeClearEvent on %#x, not an initialised event" % ev)
        self.events[ev]["state"] = False
        return 0

    def api_KeReadStateEvent(self):
        (ev,) = self.args(1)
        return int(self.signaled(ev))

    def api_IoCreateNotificationEvent(self):
        name_ptr, handle_ptr = self.args(2)
        name = self.ustr(name_ptr)
        if name != r"\KernelObjects\LowMemoryCondition":
            raise Failure("IoCreateNotificationEvent(%r)" % name)
        if self.lowmem_event is None:
            self.lowmem_event = self.alloc(0x18, "lowmem")
        self.wr64(handle_ptr, self.new_handle("lowmem-event"))
        return self.lowmem_event

    def api_KeWaitForSingleObject(self):
        obj, reason, mode, alertable, timeout = self.args(5)
        return self.wait([obj], timeout, True, "KeWaitForSingleObject")

    def api_KeWaitForMultipleObjects(self):
        count, objs, wait_type, reason, mode, alertable, timeout, blocks = self.args(8)
        if wait_type & 0xFFFFFFFF != 1:
            raise Failure("KeWaitForMultipleObjects with WaitType %d (only WaitAny modelled)" % wait_type)
        if count > 3 and not blocks:
            self.fail("KeWaitForMultipleObjects of %d objects without a wait-block array" % count)
        objects = [self.rd64(objs + 8 * i) for i in range(count)]
        return self.wait(objects, timeout, False, "KeWaitForMultipleObjects")

    def api_ZwWaitForSingleObject(self):
        handle, alertable, timeout = self.args(3)
        obj = self.handles.get(handle)
        if not isinstance(obj, Thread):
            raise Failure("ZwWaitForSingleObject on handle %#x (%r)" % (handle, obj))
        return self.wait([obj], timeout, True, "ZwWaitForSingleObject")

    def api_KeQueryInterruptTimePrecise(self):
        (qpc,) = self.args(1)
        if qpc:
            self.wr64(qpc, self.now // 100)
        return self.now // 100

    def api_KeGetCurrentIrql(self):
        return 0

    def api_KeBugCheckEx(self):
        code, p1, p2, p3, p4 = self.args(5)
        self.bugcheck = code & 0xFFFFFFFF
        raise Failure("KeBugCheckEx(%#x, %#x, %#x, %#x, %#x)" % (code, p1, p2, p3, p4))

    # ---- threads and handles ------------------------------------------------------------

    def api_PsCreateSystemThread(self):
        handle_ptr, access, attrs, process, client, start, ctx = self.args(7)
        stack = self.alloc(KERNEL_STACK, "stack.worker", PAGE)
        t = Thread("worker", start, (ctx,), stack)
        t.handle = self.new_handle(t)
        self.threads.append(t)
        self.wr64(handle_ptr, t.handle)
        return STATUS_SUCCESS

    def api_PsTerminateSystemThread(self):
        t = self.current
        if t.name != "worker":
            raise Failure("PsTerminateSystemThread from %s" % t.name)
        t.state = "done"
        self.wake_waiters()
        self.schedule()
        return None

    def api_ZwClose(self):
        (handle,) = self.args(1)
        if self.handles.pop(handle, None) is None:
            self.fail("ZwClose(%#x), not an open handle" % handle)
        return STATUS_SUCCESS

    # ---- callbacks, run-down ------------------------------------------------------------

    def api_ExCreateCallback(self):
        obj_out, attrs, create, multiple = self.args(4)
        name = self.ustr(self.rd64(attrs + 0x10))
        if name.lower() != r"\callback\powerstate" or create & 0xFF:
            raise Failure("ExCreateCallback(%r, create=%d)" % (name, create & 0xFF))
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

    def api_ExRegisterCallback(self):
        obj, fn, ctx = self.args(3)
        if obj not in self.callback_objects:
            raise Failure("ExRegisterCallback on %#x" % obj)
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
        r["active"] -= 1
        self.wake_waiters()
        return 0

    def api_ExWaitForRundownProtectionRelease(self):
        (ref,) = self.args(1)
        self.rundown[ref]["down"] = True
        return self.wait([("rundown", ref)], 0, True, "ExWaitForRundownProtectionRelease")

    # ---- ETW ----------------------------------------------------------------------------

    def api_EtwRegister(self):
        guid, callback, ctx, handle_ptr = self.args(4)
        handle = 0xE7000 + len(self.etw) + 1
        self.etw[handle] = True
        self.wr64(handle_ptr, handle)
        return STATUS_SUCCESS

    def api_EtwUnregister(self):
        (handle,) = self.args(1)
        if not self.etw.pop(handle, False):
            self.fail("EtwUnregister(%#x), not registered" % handle)
        return STATUS_SUCCESS

    def api_EtwSetInformation(self):
        return STATUS_SUCCESS

    def api_EtwWriteTransfer(self):
        self.etw_writes += 1
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
        self.actions.append({"at": duration, "kind": "unload", "done": False})
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
        report = self.sim.call({"op": "report"})
        leftovers = []
        blocks = [b for b in self.pool.values() if b["kind"] == "pool"]
        if blocks:
            tags = sorted({"%#x" % b["tag"] for b in blocks})
            leftovers.append("%d pool block(s) never freed (tag %s)" % (len(blocks), ", ".join(tags)))
        unfreed = [m for m in self.mdls.values() if m["state"] != "freed"]
        if unfreed:
            self.fail_mdl("at the end: %d MDL(s) from MmAllocatePagesForMdlEx not freed "
                          "(MmFreePagesFromMdl, then ExFreePool)" % len(unfreed))
        if self.contiguous:
            leftovers.append("the batch page was never freed")
        if self.etw:
            leftovers.append("ETW provider still registered")
        if self.registrations:
            leftovers.append("the power callback is still registered")
        if any(n > 0 for n in self.callback_objects.values()):
            leftovers.append("a callback object reference was never released")
        if self.registry_keys:
            leftovers.append("registry key(s) left open")
        open_handles = [h for h, o in self.handles.items()]
        if open_handles:
            leftovers.append("%d handle(s) left open" % len(open_handles))
        if self.bound and not self.unbound:
            leftovers.append("never unbound from KMDF")
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
        "status": kernel.status if hasattr(kernel, "status") else None,
        "failures": kernel.failures,
        "report": report,
        "stacks": stacks,
        "port_calls": kernel.port_calls,
        "backdoor_calls": kernel.backdoor_calls,
        "api_calls": kernel.api_calls,
        "etw_writes": kernel.etw_writes,
        "sleep_checks": kernel.sleep_checks,
        "mm": kernel.mm,
        "low_memory_wakes": kernel.low_memory_wakes,
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
                             ("min_low_memory_wakes", result["low_memory_wakes"],
                              "LowMemoryCondition wakes")):
        if value < case.get(key, 0):
            problems.append("%d %s, at least %d expected" % (value, what, case[key]))
    if case.get("power") and not result["sleep_checks"]:
        problems.append("the sleep notification never reached the driver's callback")
    mdl_only = bool(problems) and all(p.startswith("[mdl] ") for p in problems)
    if case.get("until_whole_mdl"):
        if mdl_only:
            return "expected-fail", problems
        if not problems:
            return "unexpected-pass", ["passes: remove `until_whole_mdl` from its entry"]
        return "fail", problems
    return ("pass" if not problems else "fail"), problems


def main():
    root, serve, sys_path, facts_path, cases_path = (Path(a) for a in sys.argv[1:6])
    only = sys.argv[6:]
    facts = json.loads(facts_path.read_text())
    cases = tomllib.loads(cases_path.read_text())["scenario"]
    for case in cases:
        if only and case["name"] not in only:
            continue
        result = run_case(case, root, serve, sys_path, facts)
        result["verdict"], result["problems"] = verdict(case, result)
        result["cap_mib"] = case.get("cap_mib")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
