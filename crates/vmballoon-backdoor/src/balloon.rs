//! [`VmwareBackdoor`]: the core's [`Backdoor`] over the real balloon port.

use core::ptr::{self, NonNull};

use vmballoon_core::protocol::{Backdoor, BatchPage, Command, RawReply};
use vmballoon_core::units::Pfn;

use crate::port::port_call;
use crate::registers::Request;

/// The balloon backdoor on port `0x5670`, with the session's batch page if it has one.
///
/// Built once VMware is detected; the glue keeps it for the driver's lifetime.
#[derive(Debug)]
pub struct VmwareBackdoor {
    /// The batch page and the frame that holds it. `None` on the single-page path.
    batch: Option<(NonNull<BatchPage>, Pfn)>,
}

impl VmwareBackdoor {
    /// A backdoor that shares `page` (at frame `pfn`) with the host for batched commands.
    ///
    /// # Safety
    ///
    /// * VMware was established with [`detect`](crate::detect), so port `0x5670` is the
    ///   balloon backdoor, and the calls run at CPL0.
    /// * `page` is valid for reads and writes, 4 KiB aligned, resident (never paged out:
    ///   the host writes it by physical address), and not freed or unmapped while this
    ///   object lives.
    /// * This object owns `page` exclusively for its lifetime: nothing else reads or
    ///   writes it, except the host during a call.
    /// * `pfn` is the physical frame that holds `page`. The glue allocates it below
    ///   4 GiB so the PFN also fits a 32-bit EBX (`docs/protocol.md` §5).
    #[must_use]
    pub unsafe fn new(page: NonNull<BatchPage>, pfn: Pfn) -> Self {
        Self {
            batch: Some((page, pfn)),
        }
    }

    /// A backdoor without a batch page: the single-page LOCK / UNLOCK path.
    ///
    /// # Safety
    ///
    /// VMware was established with [`detect`](crate::detect), so port `0x5670` is the
    /// balloon backdoor, and the calls run at CPL0.
    #[must_use]
    pub unsafe fn without_batch_page() -> Self {
        Self { batch: None }
    }
}

// SAFETY: the object owns its batch page exclusively (constructor contract) and the page
// is ordinary kernel memory, not tied to a thread, so moving the owner to another thread
// (a timer callback, a work item) is sound. It is not `Sync`: nothing needs sharing.
unsafe impl Send for VmwareBackdoor {}

impl Backdoor for VmwareBackdoor {
    fn call(&mut self, command: u32, arg1: u64, arg2: u64) -> RawReply {
        let batch_pfn = self.batch.map(|(_, pfn)| pfn);
        if names_foreign_page(command, arg1, batch_pfn) {
            // The host would write per-entry statuses into whatever frame RBX names. Refuse
            // without calling, and answer as an empty port does (`docs/protocol.md` §8): EAX
            // all ones (FAILURE), RBX and RCX unchanged.
            return RawReply {
                status: u32::MAX,
                result: arg1,
                capabilities: u64::from(command),
            };
        }
        let shared = self
            .batch
            .map_or(ptr::null_mut(), |(page, _)| page.as_ptr());
        // SAFETY: the constructor's contract makes port 0x5670 VMware's balloon backdoor and
        // `shared` null or a valid, resident page we own. `&mut self` means no reference
        // from `batch_page` is alive, so the host's writes alias nothing; and a batched
        // command names exactly that page (checked above).
        let regs = unsafe { port_call(Request::balloon(command, arg1, arg2), shared) };
        regs.reply()
    }

    fn batch_page(&mut self) -> Option<(&mut BatchPage, Pfn)> {
        let (mut page, pfn) = self.batch?;
        // SAFETY: the page is valid, aligned and exclusively ours (constructor contract),
        // and the returned borrow holds `&mut self`, so no call can run while it lives.
        let page = unsafe { page.as_mut() };
        Some((page, pfn))
    }
}

/// Whether a batched command (6–9) would make the host write a frame other than our
/// batch page: its RBX is the batch page's PFN (`docs/protocol.md` §2.5).
fn names_foreign_page(command: u32, arg1: u64, batch_pfn: Option<Pfn>) -> bool {
    let batched = [
        Command::BatchedLock,
        Command::BatchedUnlock,
        Command::Batched2mLock,
        Command::Batched2mUnlock,
    ]
    .iter()
    .any(|c| c.number() == command);
    batched && batch_pfn.is_none_or(|pfn| pfn.get() != arg1)
}

#[cfg(test)]
mod tests {
    use std::boxed::Box;

    use super::*;

    #[test]
    fn batched_commands_must_name_the_batch_page() {
        let ours = Pfn::new(0x1234);
        for command in 6..=9 {
            assert!(!names_foreign_page(command, 0x1234, ours), "{command}");
            assert!(names_foreign_page(command, 0x1235, ours), "{command}");
            // No batch page at all: a batched command can only name a foreign frame.
            assert!(names_foreign_page(command, 0x1234, None), "{command}");
        }
    }

    #[test]
    fn other_commands_carry_any_arg1() {
        // LOCK / UNLOCK name the page being ballooned; START, TARGET and GUEST_ID carry
        // masks, limits and types. None of them makes the host write guest memory.
        for command in [0, 1, 2, 3, 4, 10] {
            assert!(!names_foreign_page(command, 0xDEAD, Pfn::new(0x1234)));
            assert!(!names_foreign_page(command, 0xDEAD, None));
        }
    }

    #[test]
    fn batch_page_gives_back_the_page_and_its_pfn() {
        let page = NonNull::from(Box::leak(Box::new(BatchPage::zeroed())));
        let pfn = Pfn::new(0x8_0000).unwrap();
        {
            // SAFETY: the page is a live, aligned heap allocation owned by this test and
            // freed only after this scope. The port and PFN conditions are vacuous: this
            // test never calls `call`, so no `in` runs and the host never sees the PFN.
            let mut backdoor = unsafe { VmwareBackdoor::new(page, pfn) };
            let (batch, got_pfn) = backdoor.batch_page().unwrap();
            assert_eq!(got_pfn, pfn);
            batch.entries[0] = 0x8_0000_0000;
        }
        // SAFETY: `page` came from `Box::leak` above and the backdoor's scope has ended.
        let page = unsafe { Box::from_raw(page.as_ptr()) };
        assert_eq!(page.entries[0], 0x8_0000_0000);
    }

    #[test]
    fn without_batch_page_has_none() {
        // SAFETY: `call` is never invoked, so no `in` runs.
        let mut backdoor = unsafe { VmwareBackdoor::without_batch_page() };
        assert!(backdoor.batch_page().is_none());
    }

    #[test]
    fn vmware_backdoor_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<VmwareBackdoor>();
    }
}
