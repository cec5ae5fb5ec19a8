//! The XDP responder: answers ARP requests and IPv6 Neighbor Solicitations for the VIPs
//! in its maps, in place, with `XDP_TX`; drops them for suppressed VIPs; passes
//! everything else, and everything it does not fully understand, with `XDP_PASS`.
//! Every frame is counted once: an answered one in its VIP's `replies`
//! ([`VipCounters`](metallb_common::VipCounters)), any other in [`XdpStats`], by what
//! was done with it and why.
#![no_std]
#![no_main]

mod arp;
mod fence;
mod ndp;
mod packet;
mod runtime;
mod table;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    btf_maps::PerCpuArray,
    helpers::generated::bpf_map_lookup_elem,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use metallb_common::{Outcome, XdpStats};
use network_types::eth::EtherType;

use crate::packet::{ETH_LEN, ETH_TYPE, VLAN_ETH_LEN, VLAN_TCI, VLAN_TYPE, load, load_volatile};

#[btf_map(name = "xdp_stats")]
static XDP_STATS: PerCpuArray<XdpStats, 1> = PerCpuArray::new();

// network-types defines EtherTypes in network order: the native u16 of the wire bytes.
const ETH_P_8021Q: u16 = EtherType::Ieee8021q as u16;
const ETH_P_8021AD: u16 = EtherType::Ieee8021ad as u16;
const ETH_P_ARP: u16 = EtherType::Arp as u16;
const ETH_P_IPV4: u16 = EtherType::Ipv4 as u16;
const ETH_P_IPV6: u16 = EtherType::Ipv6 as u16;

/// The receiving interface. Read only on the ARP/NDP paths: it is three dependent
/// loads that the pass-through path does not need.
#[inline(always)]
pub fn ifindex(ctx: &XdpContext) -> u32 {
    ctx.ingress_ifindex() as u32
}

#[xdp]
pub fn metallb_xdp(ctx: XdpContext) -> u32 {
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + ETH_LEN > end {
        return count(Outcome::PassMalformed);
    }
    // SAFETY: inside the frame, as checked just above.
    let ether_type: u16 = unsafe { load(data + ETH_TYPE) };
    // The frame every node sees most, on a path of its own: the cost all traffic pays.
    if ether_type != ETH_P_IPV4 {
        // SAFETY: the Ethernet header is inside the frame, as checked above.
        return unsafe { respond_not_ipv4(&ctx, data) };
    }
    count(Outcome::PassNotArpOrNdp)
}

/// Every frame but an untagged IPv4 one. Kept apart from the IPv4 test: written this
/// way, the compiler lays the IPv6 test out to fall through into the NDP handler (no
/// jump taken before a solicitation is handled), and the ARP paths run one
/// instruction fewer.
///
/// # Safety
/// The Ethernet header of the frame that starts at `data` must be inside the frame.
#[inline(always)]
unsafe fn respond_not_ipv4(ctx: &XdpContext, data: usize) -> u32 {
    // Loaded again, with loads the compiler must keep: on one value it would merge the
    // tests into one switch, whose compares come in the order of the values, and every
    // IPv4 frame would pay for them and for what it hoists before them. So each test
    // below has a load of its own, in the order that matters: IPv6 first (NDP's answer
    // costs the most), then ARP, then the tagged frames.
    // SAFETY (the loads): the EtherType is in the Ethernet header, inside the frame
    // (this function's contract).
    let outcome = if unsafe { load_volatile::<u16>(data + ETH_TYPE) } == ETH_P_IPV6 {
        ndp::respond::<ETH_LEN>(ctx, 0)
    } else if unsafe { load_volatile::<u16>(data + ETH_TYPE) } == ETH_P_ARP {
        arp::respond::<ETH_LEN>(ctx, 0)
    } else {
        respond_tagged(ctx, unsafe { load_volatile(data + ETH_TYPE) })
    };
    // An answer has been counted as its VIP's reply: no second counter, and no lookup
    // of this one on the path that matters most.
    if matches!(outcome, Outcome::TxArpReply | Outcome::TxNeighborAdvert) {
        return XDP_TX;
    }
    count(outcome)
}

/// Counts a frame that is not answered in [`XdpStats`], and returns its verdict. The
/// lookup is a call as far as the compiler knows: after it nothing but the outcome is
/// left to keep. Its key (0) is read from the control block, whose address is a
/// constant: a key of its own would be stored on the stack and loaded back first.
#[inline(always)]
fn count(outcome: Outcome) -> u32 {
    let map = core::ptr::from_ref(&XDP_STATS).cast_mut().cast();
    // SAFETY: the map's definition and a 4-byte key inside the control block's value,
    // which the helper only reads.
    let stats =
        unsafe { bpf_map_lookup_elem(map, (&raw const table::VIP_CTL_VALUE.stats_key).cast()) };
    if !stats.is_null() {
        // SAFETY: this CPU's XdpStats, a run of u64 counters that the Outcome
        // discriminant indexes (checked in metallb-common).
        unsafe { *stats.cast::<u64>().add(outcome as usize) += 1 };
    }
    if matches!(outcome, Outcome::DropSuppressed | Outcome::DropFenced) {
        XDP_DROP
    } else {
        XDP_PASS
    }
}

/// Handles a frame (with a whole Ethernet header) that is neither IPv4, IPv6 nor ARP:
/// ARP and NDP with one 802.1Q tag. The handlers are inlined once per header layout
/// (untagged, tagged), so that every offset in them is a constant.
#[inline(always)]
fn respond_tagged(ctx: &XdpContext, ether_type: u16) -> Outcome {
    if ether_type == ETH_P_8021AD {
        return Outcome::PassVlanUnsupported;
    }
    if ether_type != ETH_P_8021Q {
        return Outcome::PassNotArpOrNdp;
    }
    let data = ctx.data();
    if data + VLAN_ETH_LEN > ctx.data_end() {
        return Outcome::PassMalformed;
    }
    // SAFETY (loads below): inside the frame, as checked just above.
    let inner_type: u16 = unsafe { load(data + VLAN_TYPE) };
    if inner_type == ETH_P_8021Q || inner_type == ETH_P_8021AD {
        return Outcome::PassVlanUnsupported;
    }
    // VLAN id 0 is a priority tag: the frame belongs to the untagged network.
    let vlan_id = u16::from_be(unsafe { load(data + VLAN_TCI) }) & 0x0fff;
    if inner_type == ETH_P_ARP {
        arp::respond::<VLAN_ETH_LEN>(ctx, vlan_id)
    } else if inner_type == ETH_P_IPV6 {
        ndp::respond::<VLAN_ETH_LEN>(ctx, vlan_id)
    } else {
        Outcome::PassNotArpOrNdp
    }
}
