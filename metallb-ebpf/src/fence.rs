//! Self-fencing: the datapath stops answering when its agent has not renewed the
//! heartbeat in time, so that a hung, killed or cut-off agent cannot keep claiming
//! VIPs that a peer has taken over.
//!
//! The program pays nothing per frame for it but one load of `fenced` (see
//! `table::fenced`): a BPF timer compares the clock with the agent's deadline
//! (`fence_at` in the control block) and flips `fenced`. The agent arms the timer
//! once by running [`metallb_fence`] (BPF_PROG_TEST_RUN); the timer re-arms itself,
//! and lives as long as its pinned map, whatever happens to the agent.

use aya_ebpf::{
    bindings::{
        bpf_timer,
        xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX},
    },
    btf_maps::Array,
    cty::c_void,
    helpers::generated::{
        bpf_ktime_get_ns, bpf_timer_init, bpf_timer_set_callback, bpf_timer_start,
    },
    macros::{btf_map, xdp},
    programs::XdpContext,
};

use crate::table::VIP_CTL_VALUE;

/// The map value: the kernel finds the timer by its BTF type name, `bpf_timer`.
#[repr(C)]
pub struct FenceSlot {
    timer: bpf_timer,
}

#[btf_map(name = "fence_timer")]
static FENCE_TIMER: Array<FenceSlot, 1> = Array::new();

const CLOCK_MONOTONIC: u64 = 1;
const EBUSY: i64 = 16;
/// How often the timer looks again while fenced or while fencing is off, and the
/// longest it sleeps before a deadline: an agent may move `fence_at` earlier (a
/// successor that ends a restart grace) or set it for the first time.
const RECHECK_NS: u64 = 5_000_000;
const MAX_SLEEP_NS: u64 = 20_000_000;

/// Arms the fence timer (again): for each agent that loads the program, so the
/// callback is the newest program's. `XDP_PASS` when the timer runs; otherwise the
/// step that failed: `XDP_ABORTED` (no map slot, or init), `XDP_DROP` (callback),
/// `XDP_TX` (start).
#[xdp]
pub fn metallb_fence(_ctx: XdpContext) -> u32 {
    let Some(slot) = FENCE_TIMER.get_ptr_mut(0) else {
        return XDP_ABORTED;
    };
    // SAFETY: the map's only value; the helpers check what they are given.
    unsafe {
        let timer = &raw mut (*slot).timer;
        // The map is named by its definition's address, which the loader relocates.
        let map = core::ptr::from_ref(&FENCE_TIMER).cast_mut().cast();
        let init = bpf_timer_init(timer, map, CLOCK_MONOTONIC);
        // EBUSY: an earlier agent initialised it; it is re-armed with our callback.
        if init != 0 && init != -EBUSY {
            return XDP_ABORTED;
        }
        if bpf_timer_set_callback(timer, fence_tick as *mut c_void) != 0 {
            return XDP_DROP;
        }
        if bpf_timer_start(timer, 0, 0) != 0 {
            return XDP_TX;
        }
    }
    XDP_PASS
}

/// The timer's callback: fences or unfences by the clock, then sleeps until the
/// deadline (at most [`MAX_SLEEP_NS`]), or [`RECHECK_NS`] while fenced or off.
#[inline(never)]
extern "C" fn fence_tick(_map: *mut c_void, _key: *mut u32, slot: *mut FenceSlot) -> i64 {
    use core::ptr::{read_volatile, write_volatile};
    // SAFETY: the control block is a map value that outlives the program; the agent
    // writes only `fence_at` of these fields, the timer the others.
    unsafe {
        let now = bpf_ktime_get_ns();
        let ctl = &raw mut VIP_CTL_VALUE;
        let at = read_volatile(&(*ctl).fence_at);
        let fence = at != 0 && now >= at;
        if fence != (read_volatile(&(*ctl).fenced) != 0) {
            write_volatile(&mut (*ctl).fenced, fence as u32);
            if fence {
                write_volatile(
                    &mut (*ctl).fence_episodes,
                    read_volatile(&(*ctl).fence_episodes) + 1,
                );
            }
        }
        write_volatile(
            &mut (*ctl).fence_ticks,
            read_volatile(&(*ctl).fence_ticks) + 1,
        );
        let next = if fence || at == 0 {
            RECHECK_NS
        } else {
            (at - now).clamp(1, MAX_SLEEP_NS)
        };
        bpf_timer_start(&raw mut (*slot).timer, next, 0);
    }
    0
}
