//! `cargo xtask bench e2e`'s probe, a bench-only object (the agent never loads it):
//!
//! - `e2e_sink`, an XDP program on the client's veth, counts the ARP replies and
//!   Neighbor Advertisements that reach the client and drops them, so that the client's
//!   kernel never processes them (no skb, no neighbour code) and the answered count
//!   does not depend on a socket. Anything else passes. As any XDP program on the peer
//!   does, it also lets native XDP_TX frames reach the client.
//! - Raw tracepoints on `softirq_entry`/`softirq_exit` sum the NET_RX softirq time per
//!   CPU with the clock (not the tick), and on `napi_poll` split it at each poll's end:
//!   a poll in which the sink ran (or whose NAPI context was seen so before) is the
//!   client veth's and counts apart. Softirq time that ran on the stack of a userspace
//!   responder thread (its tids in `e2e_responder_tids`) is counted too, because the
//!   kernel, without IRQ time accounting, charges it to that thread's runtime as well.
#![no_std]
#![no_main]

#[path = "../runtime.rs"]
mod runtime;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    btf_maps::{HashMap, PerCpuArray},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{btf_map, raw_tracepoint, xdp},
    programs::{RawTracePointContext, XdpContext},
};
use metallb_common::e2e::{E2eCounters, NET_RX_SOFTIRQ, SoftirqClock};

#[btf_map(name = "e2e_counters")]
static COUNTERS: PerCpuArray<E2eCounters, 1> = PerCpuArray::new();

#[btf_map(name = "e2e_clock")]
static CLOCK: PerCpuArray<SoftirqClock, 1> = PerCpuArray::new();

/// NAPI contexts seen running the sink: the client veth's.
#[btf_map(name = "e2e_client_napi")]
static CLIENT_NAPI: HashMap<u64, u8, 64> = HashMap::new();

/// Thread ids of the userspace responder, filled by the bench.
#[btf_map(name = "e2e_responder_tids")]
static RESPONDER_TIDS: HashMap<u32, u8, 64> = HashMap::new();

const ETH_HLEN: usize = 14;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ARPOP_REPLY: u16 = 2;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOR_ADVERT: u8 = 136;

fn counters() -> Option<&'static mut E2eCounters> {
    // SAFETY: a per-CPU slot, touched only by this CPU's programs, which do not nest
    // (XDP and softirq tracepoints run with bottom halves off).
    COUNTERS.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

fn clock() -> Option<&'static mut SoftirqClock> {
    // SAFETY: as above.
    CLOCK.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

fn byte_at(ctx: &XdpContext, offset: usize) -> Option<u8> {
    let at = ctx.data() + offset;
    if at + 1 > ctx.data_end() {
        return None;
    }
    // SAFETY: checked against data_end.
    Some(unsafe { *(at as *const u8) })
}

fn be16_at(ctx: &XdpContext, offset: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        byte_at(ctx, offset)?,
        byte_at(ctx, offset + 1)?,
    ]))
}

#[xdp]
pub fn e2e_sink(ctx: XdpContext) -> u32 {
    if let Some(clock) = clock() {
        clock.in_client_poll = 1;
    }
    let Some(counters) = counters() else {
        return XDP_PASS;
    };
    let reply = match be16_at(&ctx, 12) {
        Some(ETH_P_ARP) => be16_at(&ctx, ETH_HLEN + 6) == Some(ARPOP_REPLY),
        Some(ETH_P_IPV6) => {
            byte_at(&ctx, ETH_HLEN + 6) == Some(IPPROTO_ICMPV6)
                && byte_at(&ctx, ETH_HLEN + 40) == Some(ND_NEIGHBOR_ADVERT)
        }
        _ => false,
    };
    if !reply {
        counters.passed += 1;
        return XDP_PASS;
    }
    if be16_at(&ctx, 12) == Some(ETH_P_ARP) {
        counters.arp_replies += 1;
    } else {
        counters.neighbor_advertisements += 1;
    }
    XDP_DROP
}

/// `softirq_entry(unsigned int vec_nr)`.
#[raw_tracepoint(tracepoint = "softirq_entry")]
pub fn e2e_softirq_entry(ctx: RawTracePointContext) -> u32 {
    let vector: u64 = ctx.arg(0);
    if let Some(clock) = clock() {
        // SAFETY: a helper without arguments.
        let now = unsafe { bpf_ktime_get_ns() };
        clock.entered = now;
        clock.mark = now;
        clock.vector = vector as u32;
        clock.in_client_poll = 0;
    }
    0
}

/// `softirq_exit(unsigned int vec_nr)`.
#[raw_tracepoint(tracepoint = "softirq_exit")]
pub fn e2e_softirq_exit(_ctx: RawTracePointContext) -> u32 {
    let (Some(clock), Some(counters)) = (clock(), counters()) else {
        return 0;
    };
    if clock.entered == 0 {
        return 0;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let spent = now.saturating_sub(clock.entered);
    if clock.vector == NET_RX_SOFTIRQ {
        counters.net_rx_ns += spent;
        counters.net_rx_runs += 1;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    // SAFETY: the value is read only to test presence.
    if unsafe { RESPONDER_TIDS.get(tid) }.is_some() {
        counters.responder_softirq_ns += spent;
    }
    clock.entered = 0;
    0
}

/// `napi_poll(struct napi_struct *napi, int work, int budget)`, at the end of a poll.
#[raw_tracepoint(tracepoint = "napi_poll")]
pub fn e2e_napi_poll(ctx: RawTracePointContext) -> u32 {
    let napi: u64 = ctx.arg(0);
    let (Some(clock), Some(counters)) = (clock(), counters()) else {
        return 0;
    };
    if clock.entered == 0 || clock.vector != NET_RX_SOFTIRQ {
        return 0;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let spent = now.saturating_sub(clock.mark);
    clock.mark = now;
    let sink_ran = clock.in_client_poll != 0;
    clock.in_client_poll = 0;
    // SAFETY: the value is read only to test presence.
    let known = unsafe { CLIENT_NAPI.get(napi) }.is_some();
    if sink_ran && !known {
        let _ = CLIENT_NAPI.insert(napi, 1, 0);
    }
    if sink_ran || known {
        counters.client_poll_ns += spent;
        counters.client_polls += 1;
    }
    0
}
