//! The XDP responder: answers ARP requests and IPv6 Neighbor Solicitations for the VIPs
//! in its maps, in place, with `XDP_TX`; drops them for suppressed VIPs; passes
//! everything else, and everything it does not fully understand, with `XDP_PASS`.
//! Every frame increments exactly one counter of [`XdpStats`].
#![no_std]
#![no_main]

mod arp;
mod ndp;
mod packet;
mod table;

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    btf_maps::PerCpuArray,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use metallb_common::{Outcome, XdpStats};
use network_types::eth::EtherType;

use crate::packet::{Eth, Vlan, ptr_at};

#[btf_map(name = "xdp_stats")]
static XDP_STATS: PerCpuArray<XdpStats, 1> = PerCpuArray::new();

const ETH_P_8021Q: u16 = EtherType::Ieee8021q as u16;
const ETH_P_8021AD: u16 = EtherType::Ieee8021ad as u16;
const ETH_P_ARP: u16 = EtherType::Arp as u16;
const ETH_P_IPV4: u16 = EtherType::Ipv4 as u16;
const ETH_P_IPV6: u16 = EtherType::Ipv6 as u16;

/// Where the request was seen.
#[derive(Clone, Copy)]
pub struct Ingress {
    /// Offset of the ARP or IPv6 header (after the Ethernet header and the VLAN tag).
    pub l3_offset: usize,
    pub vlan_id: u16,
}

/// The receiving interface. Read only on the ARP/NDP paths: it is three dependent
/// loads that the pass-through path does not need.
#[inline(always)]
pub fn ifindex(ctx: &XdpContext) -> u32 {
    ctx.ingress_ifindex() as u32
}

#[xdp]
pub fn metallb_xdp(ctx: XdpContext) -> u32 {
    let outcome = respond(&ctx);
    count(outcome);
    match outcome {
        Outcome::TxArpReply | Outcome::TxNeighborAdvert => XDP_TX,
        Outcome::DropSuppressed => XDP_DROP,
        _ => XDP_PASS,
    }
}

#[inline(always)]
fn respond(ctx: &XdpContext) -> Outcome {
    let Some(eth) = ptr_at::<Eth>(ctx, 0) else {
        return Outcome::PassMalformed;
    };
    let mut ether_type = unsafe { (*eth).ether_type };
    // The frame every node sees most, first: this is the cost all traffic pays.
    if ether_type == ETH_P_IPV4 {
        return Outcome::PassNotArpOrNdp;
    }
    let mut ingress = Ingress {
        l3_offset: size_of::<Eth>(),
        vlan_id: 0,
    };
    if ether_type == ETH_P_8021Q {
        let Some(tag) = ptr_at::<Vlan>(ctx, size_of::<Eth>()) else {
            return Outcome::PassMalformed;
        };
        let tag = unsafe { &*tag };
        // VLAN id 0 is a priority tag: the frame belongs to the untagged network.
        ingress.vlan_id = u16::from_be(tag.tci) & 0x0fff;
        ingress.l3_offset += size_of::<Vlan>();
        ether_type = tag.ether_type;
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            return Outcome::PassVlanUnsupported;
        }
    } else if ether_type == ETH_P_8021AD {
        return Outcome::PassVlanUnsupported;
    }
    if ether_type == ETH_P_ARP {
        arp::respond(ctx, eth, ingress)
    } else if ether_type == ETH_P_IPV6 {
        ndp::respond(ctx, ingress)
    } else {
        Outcome::PassNotArpOrNdp
    }
}

#[inline(always)]
fn count(outcome: Outcome) {
    if let Some(stats) = XDP_STATS.get_ptr_mut(0) {
        // SAFETY: the value is this CPU's XdpStats, a run of u64 counters that the
        // Outcome discriminant indexes (checked in metallb-common).
        unsafe { *stats.cast::<u64>().add(outcome as usize) += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
