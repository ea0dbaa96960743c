//! The IPC buffer: `seL4_IPCBuffer` and where Microkit maps it.
//!
//! Layout from libsel4 `include/sel4/shared_types.h` (`struct
//! seL4_IPCBuffer_`): tag, `msg[seL4_MsgMaxLength = 120]`, `userData`,
//! `caps_or_badges[seL4_MsgMaxExtraCaps = 3]`, `receiveCNode`,
//! `receiveIndex`, `receiveDepth`; 1024 bytes, aligned to its size. The
//! Microkit tool maps it at `seL4_UserVSpaceTop & !0xfff`
//! (`tool/microkit/src/sel4.rs`, `pd_ipc_buffer`) and sets each PD TCB's
//! IPC buffer address there (`capdl/builder.rs`).

use crate::message::{MessageInfo, MSG_MAX_EXTRA_CAPS, MSG_MAX_LENGTH};

/// `seL4_IPCBuffer`, field for field.
#[repr(C, align(1024))]
#[derive(Clone, Copy)]
pub struct IpcBuffer {
    /// Tag of the last message (the kernel writes it only in some paths;
    /// the syscall return value is authoritative).
    pub tag: MessageInfo,
    /// Message registers; MR0..MR3 also travel in x2..x5.
    pub msg: [u64; MSG_MAX_LENGTH],
    /// Free for the user (libsel4 keeps nothing there).
    pub user_data: u64,
    /// Extra caps to send, or badges of received unwrapped caps.
    pub caps_or_badges: [u64; MSG_MAX_EXTRA_CAPS],
    /// CNode to receive a cap into.
    pub receive_cnode: u64,
    /// Index in that CNode.
    pub receive_index: u64,
    /// Depth of that index.
    pub receive_depth: u64,
}

const _: () = assert!(core::mem::size_of::<IpcBuffer>() == 1024);
const _: () = assert!(core::mem::align_of::<IpcBuffer>() == 1024);
const _: () = assert!(core::mem::offset_of!(IpcBuffer, tag) == 0);
const _: () = assert!(core::mem::offset_of!(IpcBuffer, msg) == 8);
const _: () = assert!(core::mem::offset_of!(IpcBuffer, user_data) == 968);
const _: () = assert!(core::mem::offset_of!(IpcBuffer, caps_or_badges) == 976);
const _: () = assert!(core::mem::offset_of!(IpcBuffer, receive_cnode) == 1000);
const _: () = assert!(core::mem::offset_of!(IpcBuffer, receive_index) == 1008);
const _: () = assert!(core::mem::offset_of!(IpcBuffer, receive_depth) == 1016);

/// Small-page size (`seL4_PageBits` = 12 on aarch64).
pub const PAGE_SIZE: u64 = 0x1000;

/// `seL4_UserVSpaceTop` of the aarch64 hypervisor configs with a 40-bit
/// physical address space (`CONFIG_ARM_PA_SIZE_BITS_40`; libsel4
/// `sel4_arch_include/aarch64/sel4/sel4_arch/constants.h`): every
/// Cortex-A53 board we target (`qemu_virt_aarch64` with `-cpu cortex-a53`,
/// `imx8mp_evk`, `imx8mm_evk`). 44-bit boards (0xfff_ffff_ffff) and
/// non-hypervisor configs (0x7fff_ffff_ffff) differ: with an SDK the value
/// comes from its `address_space_constants.json` instead.
pub const VSPACE_USER_TOP_PA40_HYP: u64 = 0xff_ffff_ffff;

/// `seL4_UserVSpaceTop` for the build: the SDK's when one was given at
/// build time, else [`VSPACE_USER_TOP_PA40_HYP`].
#[cfg(sel4_sdk)]
pub const VSPACE_USER_TOP: u64 = crate::sdk::VSPACE_USER_TOP;
/// `seL4_UserVSpaceTop` for the build: the SDK's when one was given at
/// build time, else [`VSPACE_USER_TOP_PA40_HYP`].
#[cfg(not(sel4_sdk))]
pub const VSPACE_USER_TOP: u64 = VSPACE_USER_TOP_PA40_HYP;

/// Where the tool maps the IPC buffer: the top page of user memory.
#[must_use]
pub const fn ipc_buffer_vaddr(vspace_user_top: u64) -> u64 {
    vspace_user_top & !(PAGE_SIZE - 1)
}

/// The initial stack pointer the tool gives every PD's TCB: one guard page
/// below the IPC buffer (`pd_stack_top`). The stack grows down from here;
/// `stack_size` bytes below it are mapped.
#[must_use]
pub const fn stack_top(vspace_user_top: u64) -> u64 {
    ipc_buffer_vaddr(vspace_user_top) - PAGE_SIZE
}

/// IPC buffer address of this build.
pub const IPC_BUFFER_VADDR: u64 = ipc_buffer_vaddr(VSPACE_USER_TOP);

/// Reads message register `i` from this PD's IPC buffer; `None` past
/// MR119. Only meaningful inside a PD packed by the tool (the page is
/// mapped there).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[must_use]
pub fn get_mr(i: usize) -> Option<u64> {
    if i >= MSG_MAX_LENGTH {
        return None;
    }
    let buf = IPC_BUFFER_VADDR as *const IpcBuffer;
    // SAFETY: the Microkit tool maps a read-write frame for the IPC buffer
    // at IPC_BUFFER_VADDR in every PD, so the address is valid and aligned;
    // `i` is in bounds; the kernel writes the page between syscalls, so it
    // is read volatile through a raw pointer and never held as a reference.
    Some(unsafe { core::ptr::addr_of!((*buf).msg[i]).read_volatile() })
}

/// Writes message register `i` of this PD's IPC buffer; `false` past MR119.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn set_mr(i: usize, value: u64) -> bool {
    if i >= MSG_MAX_LENGTH {
        return false;
    }
    let buf = IPC_BUFFER_VADDR as *mut IpcBuffer;
    // SAFETY: as in `get_mr`: mapped, aligned, in bounds, accessed only
    // through raw volatile pointers.
    unsafe { core::ptr::addr_of_mut!((*buf).msg[i]).write_volatile(value) };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pa40_hypervisor_layout_matches_the_reference() {
        assert_eq!(ipc_buffer_vaddr(VSPACE_USER_TOP_PA40_HYP), 0xff_ffff_f000);
        assert_eq!(stack_top(VSPACE_USER_TOP_PA40_HYP), 0xff_ffff_e000);
    }

    #[test]
    fn other_configs_follow_the_same_rule() {
        assert_eq!(ipc_buffer_vaddr(0x7fff_ffff_ffff), 0x7fff_ffff_f000);
        assert_eq!(ipc_buffer_vaddr(0xfff_ffff_ffff), 0xfff_ffff_f000);
    }
}
