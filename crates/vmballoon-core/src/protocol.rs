//! The VMware balloon wire protocol (`docs/protocol.md` §1–§5): ports and magics, command
//! numbers, status codes, capability bits and their negotiation, guest types, the batch
//! page, and the [`Backdoor`] trait that carries one register-level call.
//!
//! Nothing here talks to a host: [`crate::channel::Channel`] is the one place that does.

use crate::units::{FRAME_BYTES, Pfn};

/// I/O port of the balloon backdoor (`docs/protocol.md` §1.1). Not the general backdoor port.
pub const BALLOON_PORT: u16 = 0x5670;
/// Magic the balloon backdoor expects in EAX ("Elmo" as big-endian bytes).
pub const BALLOON_MAGIC: u32 = 0x456C_6D6F;
/// I/O port of the general VMware backdoor, used only for detection (GETVERSION).
pub const BACKDOOR_PORT: u16 = 0x5658;
/// Magic of the general backdoor ("VMXh"); GETVERSION echoes it in EBX.
pub const BACKDOOR_MAGIC: u32 = 0x564D_5868;
/// General-backdoor command: get the backdoor version (`docs/protocol.md` §1.3).
pub const BACKDOOR_CMD_GETVERSION: u32 = 10;
/// General-backdoor command: guest RAM size (QEMU reports bytes, truncated to 32 bits).
pub const BACKDOOR_CMD_GETRAMSIZE: u32 = 20;

/// A balloon command, with its number on the wire (`docs/protocol.md` §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Command {
    /// START: open or reset the session and negotiate capabilities.
    Start = 0,
    /// TARGET: read the host's balloon target (in 4 KiB frames).
    Target = 1,
    /// LOCK: give one 4 KiB page to the host (needs BASIC_CMDS).
    Lock = 2,
    /// UNLOCK: take one 4 KiB page back (needs BASIC_CMDS).
    Unlock = 3,
    /// GUEST_ID: tell the host the guest OS type.
    GuestId = 4,
    /// Retired 2012 "GET_PROTO_V3": listed so the numbering is complete; never sent.
    RetiredGetProtoV3 = 5,
    /// BATCHED_LOCK: give up to 512 4 KiB pages listed in the batch page.
    BatchedLock = 6,
    /// BATCHED_UNLOCK: take back up to 512 4 KiB pages listed in the batch page.
    BatchedUnlock = 7,
    /// BATCHED_2M_LOCK: give up to 512 2 MiB pages listed in the batch page.
    Batched2mLock = 8,
    /// BATCHED_2M_UNLOCK: take back up to 512 2 MiB pages listed in the batch page.
    Batched2mUnlock = 9,
    /// VMCI_DOORBELL_SET: register a wakeup doorbell. vmballoon never requests the
    /// capability and never sends it (`docs/protocol.md` §2.6: polling is the designed path).
    VmciDoorbellSet = 10,
}

impl Command {
    /// Number of commands, for enum-indexed tables.
    pub const COUNT: usize = 11;

    /// Every command, in wire order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::Start,
        Self::Target,
        Self::Lock,
        Self::Unlock,
        Self::GuestId,
        Self::RetiredGetProtoV3,
        Self::BatchedLock,
        Self::BatchedUnlock,
        Self::Batched2mLock,
        Self::Batched2mUnlock,
        Self::VmciDoorbellSet,
    ];

    /// The command number in ECX.
    #[must_use]
    pub const fn number(self) -> u32 {
        self as u32
    }

    /// Index into enum-indexed tables.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Name used in stats and traces.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Target => "target",
            Self::Lock => "lock",
            Self::Unlock => "unlock",
            Self::GuestId => "guest-id",
            Self::RetiredGetProtoV3 => "get-proto-v3",
            Self::BatchedLock => "batched-lock",
            Self::BatchedUnlock => "batched-unlock",
            Self::Batched2mLock => "batched-2m-lock",
            Self::Batched2mUnlock => "batched-2m-unlock",
            Self::VmciDoorbellSet => "doorbell-set",
        }
    }

    /// Whether a successful reply carries the new target in EBX (`docs/protocol.md` §2:
    /// commands 1, 2, 3, 6, 7, 8, 9; Linux's `VMW_BALLOON_CMD_WITH_TARGET_MASK`). The
    /// channel takes the target from exactly these replies, in its one call path.
    #[must_use]
    pub const fn replies_with_target(self) -> bool {
        matches!(
            self,
            Self::Target
                | Self::Lock
                | Self::Unlock
                | Self::BatchedLock
                | Self::BatchedUnlock
                | Self::Batched2mLock
                | Self::Batched2mUnlock
        )
    }

    /// The capability the host must have granted before this command may be sent.
    #[must_use]
    pub const fn required_capability(self) -> Capabilities {
        match self {
            Self::Start | Self::Target | Self::GuestId => Capabilities::NONE,
            Self::Lock | Self::Unlock => Capabilities::BASIC,
            Self::BatchedLock | Self::BatchedUnlock => Capabilities::BATCHED,
            Self::Batched2mLock | Self::Batched2mUnlock => Capabilities::BATCHED_2M,
            Self::VmciDoorbellSet => Capabilities::SIGNALED_WAKEUP,
            // Never valid: no capability grants the retired command.
            Self::RetiredGetProtoV3 => Capabilities::RESERVED_BIT0,
        }
    }
}

/// A status the host returns in EAX, or in the low 5 bits of a batch entry (`docs/protocol.md` §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// 0: success.
    Success,
    /// 0x03000000: START succeeded and the granted capabilities are in ECX.
    SuccessWithCapabilities,
    /// 0xFFFFFFFF: generic failure; also what an empty port reads (QEMU, bare metal).
    Failure,
    /// 1: unknown or unsupported command.
    CmdInvalid,
    /// 2: PPN outside guest RAM or not balloonable.
    PpnInvalid,
    /// 3: page already locked.
    PpnLocked,
    /// 4: UNLOCK of a page the host does not hold.
    PpnUnlocked,
    /// 5: the host cannot balloon this page.
    PpnPinned,
    /// 6: the host needs no more pages.
    PpnNotNeeded,
    /// 7: the host demands a session reset.
    Reset,
    /// 8: the host is temporarily busy.
    Busy,
    /// Any other value: not defined by the protocol.
    Unknown(u32),
}

impl Status {
    /// Number of distinct status kinds (for enum-indexed tables): 11 named + unknown.
    pub const COUNT: usize = 12;

    /// Every named status and one representative unknown value, in table order.
    pub const ALL: [Self; Self::COUNT] = [
        Self::Success,
        Self::SuccessWithCapabilities,
        Self::Failure,
        Self::CmdInvalid,
        Self::PpnInvalid,
        Self::PpnLocked,
        Self::PpnUnlocked,
        Self::PpnPinned,
        Self::PpnNotNeeded,
        Self::Reset,
        Self::Busy,
        Self::Unknown(0xDEAD),
    ];

    /// Decode EAX. `IN EAX, DX` yields 32 bits, so the status is compared as a `u32`.
    #[must_use]
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Self::Success,
            0x0300_0000 => Self::SuccessWithCapabilities,
            0xFFFF_FFFF => Self::Failure,
            1 => Self::CmdInvalid,
            2 => Self::PpnInvalid,
            3 => Self::PpnLocked,
            4 => Self::PpnUnlocked,
            5 => Self::PpnPinned,
            6 => Self::PpnNotNeeded,
            7 => Self::Reset,
            8 => Self::Busy,
            other => Self::Unknown(other),
        }
    }

    /// The value on the wire.
    #[must_use]
    pub const fn raw(self) -> u32 {
        match self {
            Self::Success => 0,
            Self::SuccessWithCapabilities => 0x0300_0000,
            Self::Failure => 0xFFFF_FFFF,
            Self::CmdInvalid => 1,
            Self::PpnInvalid => 2,
            Self::PpnLocked => 3,
            Self::PpnUnlocked => 4,
            Self::PpnPinned => 5,
            Self::PpnNotNeeded => 6,
            Self::Reset => 7,
            Self::Busy => 8,
            Self::Unknown(v) => v,
        }
    }

    /// Index into enum-indexed tables.
    #[must_use]
    pub const fn index(self) -> usize {
        match self {
            Self::Success => 0,
            Self::SuccessWithCapabilities => 1,
            Self::Failure => 2,
            Self::CmdInvalid => 3,
            Self::PpnInvalid => 4,
            Self::PpnLocked => 5,
            Self::PpnUnlocked => 6,
            Self::PpnPinned => 7,
            Self::PpnNotNeeded => 8,
            Self::Reset => 9,
            Self::Busy => 10,
            Self::Unknown(_) => 11,
        }
    }

    /// Name used in stats and traces.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::SuccessWithCapabilities => "success-with-caps",
            Self::Failure => "failure",
            Self::CmdInvalid => "cmd-invalid",
            Self::PpnInvalid => "ppn-invalid",
            Self::PpnLocked => "ppn-locked",
            Self::PpnUnlocked => "ppn-unlocked",
            Self::PpnPinned => "ppn-pinned",
            Self::PpnNotNeeded => "ppn-not-needed",
            Self::Reset => "reset",
            Self::Busy => "busy",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// A set of capability bits (`docs/protocol.md` §4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(u32);

impl Capabilities {
    /// No capability.
    pub const NONE: Self = Self(0);
    /// Bit 0: reserved since the 2012 v3 mix-up; never requested, ignored if granted.
    pub const RESERVED_BIT0: Self = Self(0x01);
    /// Bit 1: single-page LOCK / UNLOCK.
    pub const BASIC: Self = Self(0x02);
    /// Bit 2: BATCHED_LOCK / BATCHED_UNLOCK.
    pub const BATCHED: Self = Self(0x04);
    /// Bit 3: BATCHED_2M_LOCK / BATCHED_2M_UNLOCK.
    pub const BATCHED_2M: Self = Self(0x08);
    /// Bit 4: VMCI doorbell wakeup. Never requested: it needs `vmci.sys` integration.
    pub const SIGNALED_WAKEUP: Self = Self(0x10);
    /// Bit 5: 64-bit TARGET limit and result.
    pub const TARGET_64BIT: Self = Self(0x20);

    /// What vmballoon asks for in START: BASIC | BATCHED | BATCHED_2M | 64-bit target
    /// (`0x2E`), never the doorbell (`docs/protocol.md` §10.2).
    pub const REQUESTED: Self =
        Self(Self::BASIC.0 | Self::BATCHED.0 | Self::BATCHED_2M.0 | Self::TARGET_64BIT.0);

    /// The raw mask.
    #[must_use]
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Capabilities from a raw mask.
    #[must_use]
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// Whether every bit of `other` is set in `self`.
    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Bits set in both.
    #[must_use]
    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Bits set in either.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// How lock and unlock travel to the host: the two protocol variants differ only in how
/// many pages go per call, so they are data, not two code paths (Linux `batch_max_pages`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// One page per LOCK / UNLOCK call (legacy or BASIC-only host).
    Single,
    /// Up to 512 entries per call through the batch page.
    Batched,
}

/// The outcome of START: what this session may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// Capabilities in effect: the host's grant, limited to what was requested.
    pub capabilities: Capabilities,
    /// Single-page or batched lock and unlock.
    pub mode: LockMode,
    /// Whether 2 MiB pages may be used (only with batching: `docs/protocol.md` §4 rule 4).
    pub large_pages: bool,
    /// Whether TARGET's limit and result, and single-page PFNs, travel as 64-bit values.
    pub target_64bit: bool,
}

impl Session {
    /// Negotiate from the START reply, as `docs/protocol.md` §4 prescribes.
    ///
    /// * `0x03000000`: the granted capabilities are in ECX. A host that grants bits the guest
    ///   did not request is ignored for those bits (the host is supposed to AND them).
    /// * `0`: a legacy host (protocol version 2): BASIC only.
    /// * anything else: no session.
    ///
    /// Returns `None` when no usable lock command was granted (neither BASIC nor BATCHED):
    /// such a session could never inflate.
    #[must_use]
    pub fn negotiate(requested: Capabilities, status: Status, ecx: u64) -> Option<Self> {
        let granted = match status {
            // ECX is 64 bits wide on the wire; capability bits live in the low 32.
            Status::SuccessWithCapabilities => {
                Capabilities::from_bits((ecx & 0xFFFF_FFFF) as u32).intersection(requested)
            }
            // A legacy host answers START with plain SUCCESS: assume BASIC_CMDS only.
            Status::Success => Capabilities::BASIC.intersection(requested),
            _ => return None,
        };
        let mode = if granted.contains(Capabilities::BATCHED) {
            LockMode::Batched
        } else if granted.contains(Capabilities::BASIC) {
            LockMode::Single
        } else {
            return None;
        };
        Some(Self {
            capabilities: granted,
            mode,
            // 2 MiB pages exist only as batched commands: use them only when both BATCHED
            // and BATCHED_2M are granted (Linux ~v4.18 "do not use 2MB without batching").
            large_pages: mode == LockMode::Batched && granted.contains(Capabilities::BATCHED_2M),
            target_64bit: granted.contains(Capabilities::TARGET_64BIT),
        })
    }

    /// The lock command for pages of `size` in this session.
    #[must_use]
    pub const fn lock_command(self, size: crate::units::PageSize) -> Command {
        match (self.mode, size) {
            (LockMode::Single, _) => Command::Lock,
            (LockMode::Batched, crate::units::PageSize::Small) => Command::BatchedLock,
            (LockMode::Batched, crate::units::PageSize::Large) => Command::Batched2mLock,
        }
    }

    /// The unlock command for pages of `size` in this session.
    #[must_use]
    pub const fn unlock_command(self, size: crate::units::PageSize) -> Command {
        match (self.mode, size) {
            (LockMode::Single, _) => Command::Unlock,
            (LockMode::Batched, crate::units::PageSize::Small) => Command::BatchedUnlock,
            (LockMode::Batched, crate::units::PageSize::Large) => Command::Batched2mUnlock,
        }
    }
}

/// Guest OS types for GUEST_ID (`docs/protocol.md` §2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum GuestType {
    /// 0: unknown.
    Unknown = 0,
    /// 1: Linux.
    Linux = 1,
    /// 2: BSD.
    Bsd = 2,
    /// 3: Windows NT 4.
    WindowsNt4 = 3,
    /// 4: Windows NT 5+: the only "modern Windows" value that exists; sent by vmballoon.
    WindowsNt5 = 4,
    /// 5: Solaris.
    Solaris = 5,
    /// 6: macOS.
    MacOs = 6,
    /// 7: FrobOS (VMware's internal test OS).
    FrobOs = 7,
}

/// The guest type vmballoon reports: no newer Windows value was ever defined.
pub const GUEST_TYPE: GuestType = GuestType::WindowsNt5;

/// Entries in the batch page: one 4 KiB page of little-endian u64s.
pub const BATCH_CAPACITY: usize = 512;

// The batch page is exactly one 4 KiB frame of 8-byte entries (`docs/protocol.md` §5).
const _: () = assert!((BATCH_CAPACITY * core::mem::size_of::<u64>()) as u64 == FRAME_BYTES);

/// The 4 KiB page shared with the host for batched commands. The guest writes entries
/// 0..n−1, the host ORs a status into each; entries past n are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C, align(4096))]
pub struct BatchPage {
    /// Raw entries, little-endian on the wire (x86_64 is little-endian; see [`BatchEntry`]).
    pub entries: [u64; BATCH_CAPACITY],
}

const _: () = assert!(core::mem::size_of::<BatchPage>() as u64 == FRAME_BYTES);

impl BatchPage {
    /// A zeroed page.
    #[must_use]
    pub const fn zeroed() -> Self {
        Self {
            entries: [0; BATCH_CAPACITY],
        }
    }
}

impl Default for BatchPage {
    fn default() -> Self {
        Self::zeroed()
    }
}

/// One batch entry: bits 63..12 the page's physical address (its PFN << 12), bits 11..5
/// reserved (zero), bits 4..0 the host's per-entry status (`docs/protocol.md` §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchEntry(u64);

impl BatchEntry {
    const ADDRESS_MASK: u64 = !0xFFF;
    const STATUS_MASK: u64 = 0x1F;
    const RESERVED_MASK: u64 = 0xFE0;

    /// The entry the guest writes for the page starting at `pfn` (status bits zero).
    #[must_use]
    pub const fn for_page(pfn: Pfn) -> Self {
        Self(pfn.phys_addr())
    }

    /// An entry as read back from the page.
    #[must_use]
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw 64-bit value (`u64::to_le` of this is what sits in memory).
    #[must_use]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The PFN named by the entry (the low 12 bits masked off).
    #[must_use]
    pub const fn pfn(self) -> Pfn {
        Pfn::containing(self.0 & Self::ADDRESS_MASK)
    }

    /// The host's per-entry status (low 5 bits: only codes 0–8 fit, never −1).
    #[must_use]
    pub const fn status(self) -> Status {
        Status::from_raw((self.0 & Self::STATUS_MASK) as u32)
    }

    /// Whether any reserved bit (11..5) is set: a guest must never send one.
    #[must_use]
    pub const fn has_reserved_bits(self) -> bool {
        self.0 & Self::RESERVED_MASK != 0
    }
}

/// The register image of one balloon reply (`docs/protocol.md` §1.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RawReply {
    /// EAX: the status. `IN EAX, DX` zero-extends, so it is a `u32`.
    pub status: u32,
    /// RBX: the result (the new target for commands that carry one).
    pub result: u64,
    /// RCX: the granted capabilities (START only); clobbered otherwise.
    pub capabilities: u64,
}

/// One register-level hypervisor call plus the page shared with the host.
///
/// The contract of [`Backdoor::call`] (`docs/protocol.md` §1.2):
///
/// | register | in | out |
/// |---|---|---|
/// | EAX | [`BALLOON_MAGIC`] | status |
/// | EBX / RBX | `arg1` | result (target) |
/// | ECX / RCX | command number | granted capabilities (START) |
/// | EDX / DX | [`BALLOON_PORT`] | clobbered |
/// | ESI / RSI | `arg2` | clobbered |
///
/// The implementation supplies the magic and the port; the host may read and write the
/// batch page during the call.
pub trait Backdoor {
    /// Executes one balloon call with `command` in ECX, `arg1` in RBX and `arg2` in RSI.
    fn call(&mut self, command: u32, arg1: u64, arg2: u64) -> RawReply;

    /// The batch page and its PFN, or `None` if this platform has none (then the engine
    /// uses single-page commands only, or sends START(0) if batching was granted).
    fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)>;
}

impl<T: Backdoor + ?Sized> Backdoor for &mut T {
    fn call(&mut self, command: u32, arg1: u64, arg2: u64) -> RawReply {
        (**self).call(command, arg1, arg2)
    }

    fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)> {
        (**self).batch_page()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::PageSize;

    #[test]
    fn ports_and_magics_match_protocol_md() {
        assert_eq!(BALLOON_PORT, 0x5670);
        assert_eq!(BALLOON_MAGIC, 0x456C_6D6F);
        assert_eq!(BACKDOOR_PORT, 0x5658);
        assert_eq!(BACKDOOR_MAGIC, 0x564D_5868);
        assert_eq!(BACKDOOR_CMD_GETVERSION, 10);
        assert_eq!(BACKDOOR_CMD_GETRAMSIZE, 20);
        // "Elmo" as big-endian bytes.
        assert_eq!(&BALLOON_MAGIC.to_be_bytes(), b"Elmo");
        assert_eq!(&BACKDOOR_MAGIC.to_be_bytes(), b"VMXh");
    }

    #[test]
    fn command_numbers_match_protocol_md() {
        let expected = [
            (Command::Start, 0),
            (Command::Target, 1),
            (Command::Lock, 2),
            (Command::Unlock, 3),
            (Command::GuestId, 4),
            (Command::RetiredGetProtoV3, 5),
            (Command::BatchedLock, 6),
            (Command::BatchedUnlock, 7),
            (Command::Batched2mLock, 8),
            (Command::Batched2mUnlock, 9),
            (Command::VmciDoorbellSet, 10),
        ];
        for (i, (cmd, n)) in expected.into_iter().enumerate() {
            assert_eq!(cmd.number(), n);
            assert_eq!(Command::ALL[i], cmd);
            assert_eq!(cmd.index(), i);
        }
    }

    #[test]
    fn commands_with_target_in_reply_are_1_2_3_6_7_8_9() {
        let with: [u32; 7] = [1, 2, 3, 6, 7, 8, 9];
        for cmd in Command::ALL {
            assert_eq!(
                cmd.replies_with_target(),
                with.contains(&cmd.number()),
                "{cmd:?}"
            );
        }
    }

    #[test]
    fn status_codes_match_protocol_md() {
        let expected: [(Status, u32); 11] = [
            (Status::Success, 0),
            (Status::SuccessWithCapabilities, 0x0300_0000),
            (Status::Failure, 0xFFFF_FFFF),
            (Status::CmdInvalid, 1),
            (Status::PpnInvalid, 2),
            (Status::PpnLocked, 3),
            (Status::PpnUnlocked, 4),
            (Status::PpnPinned, 5),
            (Status::PpnNotNeeded, 6),
            (Status::Reset, 7),
            (Status::Busy, 8),
        ];
        for (s, raw) in expected {
            assert_eq!(s.raw(), raw);
            assert_eq!(Status::from_raw(raw), s);
        }
        assert_eq!(Status::from_raw(9), Status::Unknown(9));
        assert_eq!(Status::from_raw(1000), Status::Unknown(1000));
        for (i, s) in Status::ALL.into_iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }

    #[test]
    fn capability_bits_match_protocol_md() {
        assert_eq!(Capabilities::RESERVED_BIT0.bits(), 0x01);
        assert_eq!(Capabilities::BASIC.bits(), 0x02);
        assert_eq!(Capabilities::BATCHED.bits(), 0x04);
        assert_eq!(Capabilities::BATCHED_2M.bits(), 0x08);
        assert_eq!(Capabilities::SIGNALED_WAKEUP.bits(), 0x10);
        assert_eq!(Capabilities::TARGET_64BIT.bits(), 0x20);
        // BASIC | BATCHED | 2M | 64-bit target, never the doorbell, never bit 0.
        assert_eq!(Capabilities::REQUESTED.bits(), 0x2E);
    }

    #[test]
    fn negotiation_full_grant_uses_batching_and_large_pages() {
        let s = Session::negotiate(
            Capabilities::REQUESTED,
            Status::SuccessWithCapabilities,
            0x2E,
        )
        .unwrap();
        assert_eq!(s.mode, LockMode::Batched);
        assert!(s.large_pages);
        assert!(s.target_64bit);
        assert_eq!(s.lock_command(PageSize::Large), Command::Batched2mLock);
        assert_eq!(s.unlock_command(PageSize::Small), Command::BatchedUnlock);
    }

    #[test]
    fn legacy_host_success_means_basic_only() {
        let s = Session::negotiate(Capabilities::REQUESTED, Status::Success, 0xFFFF).unwrap();
        assert_eq!(s.capabilities, Capabilities::BASIC);
        assert_eq!(s.mode, LockMode::Single);
        assert!(!s.large_pages);
        assert!(!s.target_64bit);
        assert_eq!(s.lock_command(PageSize::Small), Command::Lock);
        assert_eq!(s.unlock_command(PageSize::Small), Command::Unlock);
    }

    #[test]
    fn huge_pages_require_batching() {
        // BASIC + 2M without BATCHED: 2 MiB pages exist only as batched commands.
        let s = Session::negotiate(
            Capabilities::REQUESTED,
            Status::SuccessWithCapabilities,
            0x0A,
        )
        .unwrap();
        assert_eq!(s.mode, LockMode::Single);
        assert!(!s.large_pages);
    }

    #[test]
    fn host_cannot_grant_unrequested_capabilities() {
        // A buggy host grants everything, including the doorbell and reserved bit 0.
        let s = Session::negotiate(
            Capabilities::REQUESTED,
            Status::SuccessWithCapabilities,
            0xFFFF_FFFF_FFFF_FFFF,
        )
        .unwrap();
        assert_eq!(s.capabilities, Capabilities::REQUESTED);
        assert!(!s.capabilities.contains(Capabilities::SIGNALED_WAKEUP));
    }

    #[test]
    fn start_failure_or_no_lock_command_means_no_session() {
        for status in [
            Status::Failure,
            Status::Busy,
            Status::Reset,
            Status::Unknown(3),
        ] {
            assert_eq!(
                Session::negotiate(Capabilities::REQUESTED, status, 0x2E),
                None
            );
        }
        // Only the 64-bit-target bit: nothing to lock pages with.
        assert_eq!(
            Session::negotiate(
                Capabilities::REQUESTED,
                Status::SuccessWithCapabilities,
                0x20
            ),
            None
        );
    }

    #[test]
    fn batched_without_basic_still_batches() {
        let s = Session::negotiate(
            Capabilities::REQUESTED,
            Status::SuccessWithCapabilities,
            0x04,
        )
        .unwrap();
        assert_eq!(s.mode, LockMode::Batched);
        assert!(!s.large_pages);
    }

    #[test]
    fn guest_type_is_windows_nt5() {
        assert_eq!(GUEST_TYPE as u32, 4);
        assert_eq!(GuestType::Linux as u32, 1);
        assert_eq!(GuestType::FrobOs as u32, 7);
    }

    #[test]
    fn batch_entry_encoding_4k() {
        let pfn = Pfn::new(0x12_3456).unwrap();
        let e = BatchEntry::for_page(pfn);
        assert_eq!(e.raw(), 0x1_2345_6000);
        assert_eq!(e.pfn(), pfn);
        assert_eq!(e.status(), Status::Success);
        assert!(!e.has_reserved_bits());
    }

    #[test]
    fn batch_entry_encoding_2m_and_status_bits() {
        // A 2 MiB entry names the 2 MiB-aligned first frame.
        let pfn = Pfn::new(0x40_0200).unwrap();
        assert!(pfn.is_aligned_to(PageSize::Large));
        let written = BatchEntry::for_page(pfn);
        assert_eq!(written.raw(), 0x4_0020_0000);
        // The host ORs PPN_PINNED (5) into the low bits.
        let back = BatchEntry::from_raw(written.raw() | 5);
        assert_eq!(back.pfn(), pfn);
        assert_eq!(back.status(), Status::PpnPinned);
        // A 5-bit status field can hold 0..=31: 31 decodes as an unknown status.
        assert_eq!(BatchEntry::from_raw(0x1F).status(), Status::Unknown(31));
        assert!(BatchEntry::from_raw(0x20).has_reserved_bits());
        assert!(BatchEntry::from_raw(0x800).has_reserved_bits());
        // The highest PFN encodes without losing bits.
        assert_eq!(BatchEntry::for_page(Pfn::MAX).pfn(), Pfn::MAX);
    }

    #[test]
    fn batch_page_is_one_frame() {
        assert_eq!(core::mem::size_of::<BatchPage>(), 4096);
        assert_eq!(core::mem::align_of::<BatchPage>(), 4096);
        assert_eq!(BATCH_CAPACITY, 512);
    }
}
