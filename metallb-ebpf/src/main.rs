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
    if ether_type == ETH_P_IPV4 {
        return count(Outcome::PassNotArpOrNdp);
    }
    // Loaded again, with a load the compiler must keep: with the same value, it would
    // merge the test above into the dispatch below, and every IPv4 frame would pay for
    // the dispatch's compares and for what it hoists before them.
    // SAFETY: as above.
    let ether_type: u16 = unsafe { load_volatile(data + ETH_TYPE) };
    let outcome = respond(&ctx, ether_type);
    // An answer has been counted as its VIP's reply: no second counter, and no lookup
    // of this one on the path that matters most.
    if matches!(outcome, Outcome::TxArpReply | Outcome::TxNeighborAdvert) {
        return XDP_TX;
    }
    count(outcome)
}

/// Counts a frame that is not answered in [`XdpStats`], and returns its verdict. The
/// lookup is a call as far as the compiler knows: after it nothing but the outcome is
/// left to keep.
#[inline(always)]
fn count(outcome: Outcome) -> u32 {
    if let Some(stats) = XDP_STATS.get_ptr_mut(0) {
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

/// Dispatches on the EtherType (of a frame with a whole Ethernet header). The ARP and
/// NDP handlers are inlined once per header layout (untagged, one 802.1Q tag), so
/// that every offset in them is a constant.
#[inline(always)]
fn respond(ctx: &XdpContext, ether_type: u16) -> Outcome {
    if ether_type == ETH_P_ARP {
        return arp::respond::<ETH_LEN>(ctx, 0);
    }
    if ether_type == ETH_P_IPV6 {
        return ndp::respond::<ETH_LEN>(ctx, 0);
    }
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
