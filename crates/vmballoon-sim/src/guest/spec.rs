//! The guest's configuration and the model's vocabulary: what a scenario's `[guest]` says,
//! the kinds of pinned memory, and who owns a frame.

use vmballoon_core::units::Frames;

/// Frames in one 2 MiB block.
pub const BLOCK_FRAMES: u64 = 512;

/// How many refused 4 KiB pages a peer model holds per cycle ([`PeerPages::retain`](super::PeerPages::retain)): the
/// refused-page limit of every VMware driver (`VMW_BALLOON_MAX_REFUSED`,
/// `BALLOON_ERROR_PAGES`: 16, `docs/protocol.md` §3 rule 3).
pub const PEER_HELD_REFUSED: usize = 16;

/// The largest guest the model accepts: 64 GiB (16 Mi frames, 64 MiB of frame table).
pub const MAX_RAM: Frames = Frames::from_mib(64 * 1024);

/// The kinds of pinned memory a scenario can request (`lock_mib` + `kind`). Whether a
/// kind may wait for the working-set manager, and what it is charged, is in the
/// [guest module docs](super) ("Allocations that wait and allocations that cannot").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinKind {
    /// `VirtualLock` (charged through the working-set minimum). Waits: "may … force the
    /// system to swap out other critical pages to the paging file" (its Learn page).
    VirtualLock,
    /// AWE `AllocateUserPhysicalPages`. Does not wait (an assumption); may be granted
    /// partially (documented).
    Awe,
    /// `VirtualAlloc(MEM_LARGE_PAGES)`: whole 2 MiB blocks; may page out or move
    /// pageable pages to build them.
    LargePages,
    /// Another driver's `MmAllocatePagesForMdlEx` without `MM_ALLOCATE_PREFER_CONTIGUOUS`.
    /// Does not wait (an assumption); may come back short (documented).
    DriverLocked,
    /// Nonpaged-pool growth (`ExAllocatePool2` with a nonpaged flag, callable at
    /// DISPATCH_LEVEL, where nothing can wait): available pages only.
    NonpagedPool,
    /// `MmProbeAndLockPages` of a buffer: "makes it resident" (may block for paging), so
    /// it waits for trimming; charged to resident available only (the buffer's commit
    /// was charged when it was allocated).
    ProbeAndLock,
}

impl PinKind {
    /// Every kind, in table order.
    pub const ALL: [Self; 6] = [
        Self::VirtualLock,
        Self::Awe,
        Self::LargePages,
        Self::DriverLocked,
        Self::NonpagedPool,
        Self::ProbeAndLock,
    ];

    /// The name used in scenario files.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::VirtualLock => "virtual-lock",
            Self::Awe => "awe",
            Self::LargePages => "large-pages",
            Self::DriverLocked => "driver-locked",
            Self::NonpagedPool => "nonpaged-pool",
            Self::ProbeAndLock => "probe-and-lock",
        }
    }

    /// Whether a request of this kind may wait for the working-set manager to trim (and
    /// for the modified page writer) to find its pages: `VirtualLock`,
    /// `MmProbeAndLockPages` and large pages. The others take available pages (free,
    /// zeroed, standby) as they are, without waiting.
    #[must_use]
    pub const fn waits(self) -> bool {
        matches!(
            self,
            Self::VirtualLock | Self::LargePages | Self::ProbeAndLock
        )
    }

    /// Whether a request of this kind may be granted partially (`partial_ok`): AWE
    /// ("might be less than the number requested") and MDL allocations ("might return an
    /// MDL that describes less memory") are documented to; pool growth is page by page.
    #[must_use]
    pub const fn may_be_partial(self) -> bool {
        matches!(self, Self::Awe | Self::DriverLocked | Self::NonpagedPool)
    }

    /// Whether a request of this kind is charged to commit (all but
    /// `MmProbeAndLockPages`, whose buffer was committed before it was locked;
    /// `docs/windows-memory.md` §3.1 table).
    #[must_use]
    pub const fn charges_commit(self) -> bool {
        !matches!(self, Self::ProbeAndLock)
    }

    /// The kind named `name` in a scenario file.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub(super) const fn index(self) -> usize {
        self as usize
    }
}

/// Where resident pageable pages land in RAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PageableLayout {
    /// Packed into as few 2 MiB blocks as possible, like the balloon's 4 KiB pages (a
    /// freshly booted guest).
    #[default]
    Packed,
    /// Spread evenly over every block with free frames (a guest that has run for a while:
    /// working sets are scattered over physical memory, so few 2 MiB blocks stay whole).
    Scattered,
}

/// Whether the balloon's MDL pages are charged to resident available memory and to
/// commit (`[guest] mdl_accounting`). No public source states either
/// (`docs/windows-memory.md` §1.6); the simulator offers both, and every scenario must hold
/// under both. Available memory drops either way: the pages leave the free lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MdlAccounting {
    /// Charged to resident available memory and to commit, like other locked memory (the
    /// working hypothesis of `docs/windows-memory.md` §1.6).
    #[default]
    Charged,
    /// Charged to neither: resident available and commit do not see the balloon.
    NotCharged,
}

impl MdlAccounting {
    /// Both, in report order.
    pub const ALL: [Self; 2] = [Self::Charged, Self::NotCharged];

    /// The name used in scenario files.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Charged => "charged",
            Self::NotCharged => "not-charged",
        }
    }

    /// The accounting named `name` in a scenario file.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// The guest's configuration (`[guest]` of a scenario).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestSpec {
    /// RAM; a whole number of 2 MiB blocks.
    pub ram: Frames,
    /// Nonpaged OS memory, pinned from t = 0.
    pub os_locked: Frames,
    /// Page-file size: commit limit = RAM + page file.
    pub pagefile: Frames,
    /// Pageable commit already in use at t = 0.
    pub committed: Frames,
    /// Where resident pageable pages land (at boot and for later `commit_mib`).
    pub layout: PageableLayout,
}

/// Who owns a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Free or zeroed: available.
    Free,
    /// The OS's nonpaged memory.
    Os,
    /// Allocated to the balloon (in flight in the engine, or stored).
    Balloon,
    /// A balloon page the host refused, held until the end of the cycle.
    HeldRefused,
    /// Pinned by request number `n`.
    Pinned(usize),
    /// A resident pageable page of request number `n`, in a working set.
    Pageable(usize),
    /// A page of request `n` trimmed from its working set while dirty: on the modified
    /// list, not available until the modified page writer has written it.
    Modified(usize),
    /// A page of request `n` trimmed and clean (written): on the standby list, available
    /// (repurposed after the free pages).
    Standby(usize),
}

/// How long a page stays in its working set before a working-set pass may trim it: it
/// must have survived one pass without being touched (the model touches no page after it
/// became resident, so a page's age is the time since then). An assumption: Windows ages
/// working-set pages over successive passes and trims the oldest first, but no Microsoft
/// document gives the period or the age (`docs/windows-memory.md` §3.6).
pub const TRIM_MIN_AGE: vmballoon_core::units::Duration =
    vmballoon_core::units::Duration::from_secs(1);

/// At most this share of RAM (1/`TRIM_PASS_DIVISOR`) is trimmed from working sets in one
/// pass of the working-set manager. An assumption (no public source bounds a pass):
/// trimming is gradual, not a jump back to the threshold (`docs/windows-memory.md` §3.6).
pub const TRIM_PASS_DIVISOR: u64 = 32;
