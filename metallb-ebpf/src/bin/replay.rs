//! The benchmark's replay program. BPF_PROG_TEST_RUN with `repeat > 1` runs a program
//! again on its own output: after one run an ARP request has become a reply. This
//! program first restores a pristine frame (the next of up to
//! [`MAX_FRAMES`](metallb_common::replay::MAX_FRAMES), cycling, so that a run can
//! spread over many VIPs), then tail-calls the program under test in slot 0 of
//! `replay_subject`. Timing it with a floor program in that slot and then with the
//! responder gives the responder's own cost in a hot loop.
#![no_std]
#![no_main]
// An atomic add on a map value: core's atomic types have no read-modify-write
// operations on this target.
#![allow(internal_features)]
#![feature(core_intrinsics)]

#[path = "../runtime.rs"]
mod runtime;

use aya_ebpf::{
    bindings::xdp_action::XDP_ABORTED,
    btf_maps::{Array, ProgramArray},
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use metallb_common::replay::{FRAME_BYTES, MAX_FRAMES, ReplayCursor, ReplayFrame};

#[btf_map(name = "replay_frames")]
static FRAMES: Array<ReplayFrame, { MAX_FRAMES as usize }> = Array::new();

#[btf_map(name = "replay_cursor")]
static CURSOR: Array<ReplayCursor, 1> = Array::new();

#[btf_map(name = "replay_subject")]
static SUBJECT: ProgramArray<1> = ProgramArray::new();

const WORD: usize = 8;

#[xdp]
pub fn replay(ctx: XdpContext) -> u32 {
    let Some(cursor) = CURSOR.get_ptr_mut(0) else {
        return XDP_ABORTED;
    };
    // SAFETY: a valid map value; test runs of one program do not overlap.
    let cursor = unsafe { &mut *cursor };
    let index = cursor.next;
    let next = index + 1;
    cursor.next = if next >= cursor.count { 0 } else { next };
    let Some(frame) = FRAMES.get(index) else {
        return XDP_ABORTED;
    };
    let (data, end) = (ctx.data(), ctx.data_end());
    // Bounds are checked on pointers only: the verifier does not relate a length
    // computed from them back to the frame.
    if data + WORD > end {
        return XDP_ABORTED;
    }
    let src = frame.bytes.as_ptr();
    // Whole words, then one last word ending at the end of the frame (it may overlap
    // the one before): no byte loop, whatever the length.
    for word in 0..FRAME_BYTES / WORD {
        let offset = word * WORD;
        if data + offset + WORD > end {
            break;
        }
        // SAFETY: checked against data_end above; the source is inside the map value.
        unsafe {
            ((data + offset) as *mut u64)
                .write_unaligned((src.add(offset) as *const u64).read_unaligned())
        };
    }
    let offset = (end - data - WORD) & (FRAME_BYTES - 1);
    if data + offset + WORD > end || offset + WORD > FRAME_BYTES {
        return XDP_ABORTED;
    }
    // SAFETY: as above.
    unsafe {
        ((data + offset) as *mut u64)
            .write_unaligned((src.add(offset) as *const u64).read_unaligned());
    }
    if cursor.settle != 0 {
        use core::intrinsics::{AtomicOrdering, atomic_xadd};
        // SAFETY: a u64 of the map value, 8-byte aligned; only this program writes it.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(&raw mut cursor.settled, 1) };
    }
    // SAFETY: the program array holds XDP programs only.
    unsafe { SUBJECT.tail_call(&ctx, 0) };
    XDP_ABORTED
}
