//! The guest's configuration and the model's vocabulary: what a scenario's `[guest]` says,
//! the kinds of pinned memory, and who owns a frame.

use vmballoon_core::units::Frames;

/// Frames in one 2 MiB block.
pub const BLOCK_FRAMES: u64 = 512;

/// How many refused 4 KiB pages a peer model holds per cycle ([`PeerPages::retain`]): the
/// refused-page limit of every VMware driver (`VMW_BALLOON_MAX_REFUSED`,
/// `BALLOON_ERROR_PAGES`: 16, `protocol.md` §3 rule 3).
pub const PEER_HELD_REFUSED: usize = 16;

/// The largest guest the model accepts: 64 GiB (16 Mi frames, 64 MiB of frame table).
pub const MAX_RAM: Frames = Frames::from_mib(64 * 1024);

/// The four kinds of pinned memory a scenario can request (`lock_mib` + `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinKind {
    /// `VirtualLock` (charged through the working-set minimum).
    VirtualLock,
    /// AWE `AllocateUserPhysicalPages`.
    Awe,
    /// `VirtualAlloc(MEM_LARGE_PAGES)`: whole 2 MiB blocks.
    LargePages,
    /// Another driver's MDL allocation or `MmProbeAndLockPages`.
    DriverLocked,
}

impl PinKind {
    /// Every kind, in table order.
    pub const ALL: [Self; 4] = [
        Self::VirtualLock,
        Self::Awe,
        Self::LargePages,
        Self::DriverLocked,
    ];

    /// The name used in scenario files.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::VirtualLock => "virtual-lock",
            Self::Awe => "awe",
            Self::LargePages => "large-pages",
            Self::DriverLocked => "driver-locked",
        }
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
    /// Free, zeroed or standby: available.
    Free,
    /// The OS's nonpaged memory.
    Os,
    /// Allocated to the balloon (in flight in the engine, or stored).
    Balloon,
    /// A balloon page the host refused, held until the end of the cycle.
    HeldRefused,
    /// Pinned by request number `n`.
    Pinned(usize),
    /// A resident pageable page of request number `n`.
    Pageable(usize),
}
