//! ARP (RFC 826) for IPv4 VIPs: answer requests, count claims by other hosts.

use aya_ebpf::programs::XdpContext;
use metallb_common::{Outcome, VipAction, VipKeyV4};

use crate::{
    Ingress, ifindex,
    packet::{Arp, Eth, is_unicast_mac, mac_words, ptr_at},
    table::find_v4,
};

const HTYPE_ETHERNET: u16 = 1u16.to_be();
const PTYPE_IPV4: u16 = 0x0800u16.to_be();
const OP_REQUEST: u16 = 1u16.to_be();
const OP_REPLY: u16 = 2u16.to_be();

#[inline(always)]
fn key(ctx: &XdpContext, addr: [u16; 2], ingress: Ingress) -> VipKeyV4 {
    VipKeyV4 {
        // SAFETY: two network-order words are the four address bytes in wire order.
        addr: unsafe { core::mem::transmute::<[u16; 2], [u8; 4]>(addr) },
        ifindex: ifindex(ctx),
        vlan_id: ingress.vlan_id,
        _pad: [0; 2],
    }
}

#[inline(always)]
pub fn respond(ctx: &XdpContext, eth: *mut Eth, ingress: Ingress) -> Outcome {
    let Some(arp) = ptr_at::<Arp>(ctx, ingress.l3_offset) else {
        return Outcome::PassMalformed;
    };
    // SAFETY: ptr_at checked that the whole header is inside the frame.
    let (arp, eth) = unsafe { (&mut *arp, &mut *eth) };
    if arp.htype != HTYPE_ETHERNET || arp.ptype != PTYPE_IPV4 || arp.hlen != 6 || arp.plen != 4 {
        return Outcome::PassMalformed;
    }
    if arp.oper != OP_REQUEST {
        if arp.oper == OP_REPLY {
            return claim_by_reply(ctx, arp, ingress);
        }
        return Outcome::PassNotRequest;
    }
    if !is_unicast_mac(&arp.sha) {
        return Outcome::PassMalformed;
    }

    let vip = arp.tpa;
    let Some(mut entry) = find_v4(&key(ctx, vip, ingress)) else {
        return Outcome::PassUnknownTarget;
    };
    if let Some(outcome) = entry.take_request() {
        return outcome;
    }
    if arp.spa == vip {
        // A gratuitous ARP for our VIP from another host: split brain, never answer it.
        entry.counters.conflicts += 1;
        return Outcome::PassConflict;
    }

    // Turn the request into the reply in place, unicast back to the asker.
    let our_mac = mac_words(&entry.mac);
    eth.dst = eth.src;
    eth.src = our_mac;
    arp.oper = OP_REPLY;
    arp.tha = arp.sha;
    arp.tpa = arp.spa;
    arp.sha = our_mac;
    arp.spa = vip;
    entry.counters.replies += 1;
    Outcome::TxArpReply
}

/// An ARP reply whose sender address is a VIP we answer for: another host claims it.
#[inline(always)]
fn claim_by_reply(ctx: &XdpContext, arp: &Arp, ingress: Ingress) -> Outcome {
    if let Some(entry) = find_v4(&key(ctx, arp.spa, ingress))
        && entry.action == Some(VipAction::Answer)
    {
        entry.counters.conflicts += 1;
        return Outcome::PassConflict;
    }
    Outcome::PassNotRequest
}
