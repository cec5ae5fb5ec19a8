//! ARP (RFC 826) for IPv4 VIPs: answer requests, count claims by other hosts.

use aya_ebpf::programs::XdpContext;
use metallb_common::Outcome;

use crate::{
    ifindex,
    packet::{ETH_DST, ETH_SRC, Mac, MacWord, both_unicast, either_is, load, store},
    table::find_v4,
};

const ARP_LEN: usize = 28;
// Offsets in the ARP message.
const SHA: usize = 8;
const SPA: usize = 14;
const THA: usize = 18;
const TPA: usize = 24;
const OPER: usize = 6;

/// The first 8 bytes of a request we answer, as one word: hardware type Ethernet,
/// protocol IPv4, lengths 6 and 4, operation 1 (request).
const REQUEST_HEAD: u64 = u64::from_ne_bytes([0, 1, 0x08, 0x00, 6, 4, 0, 1]);
/// The same with operation 2 (reply).
const REPLY_HEAD: u64 = u64::from_ne_bytes([0, 1, 0x08, 0x00, 6, 4, 0, 2]);
/// The bytes before the operation.
const TYPES_MASK: u64 = u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]);
const OP_REPLY: u16 = 2u16.to_be();

/// Handles the ARP message at `L3` in the frame, seen in `vlan_id`.
#[inline(always)]
pub fn respond<const L3: usize>(ctx: &XdpContext, vlan_id: u16) -> Outcome {
    let data = ctx.data();
    let arp = data + L3;
    if arp + ARP_LEN > ctx.data_end() {
        return Outcome::PassMalformed;
    }
    // SAFETY (all loads and stores below): inside the frame, checked just above.
    let head: u64 = unsafe { load(arp) };
    if head != REQUEST_HEAD {
        if head & TYPES_MASK != REQUEST_HEAD & TYPES_MASK {
            return Outcome::PassMalformed;
        }
        if head == REPLY_HEAD {
            // A reply whose sender is a VIP we answer for: another host claims it.
            let spa: u32 = unsafe { load(arp + SPA) };
            return match find_v4(spa, ifindex(ctx), vlan_id) {
                Some(mut entry) => entry.take_claim(),
                None => Outcome::PassNotRequest,
            };
        }
        return Outcome::PassNotRequest;
    }
    // The reply goes to the sender hardware address (RFC 826, as Linux does). Neither
    // it nor the Ethernet source may be a group address or all zeroes: a spoofed
    // request must not turn the reply into a broadcast, a multicast or a frame for the
    // bridge's own group addresses (01:80:c2:...).
    if !unsafe { both_unicast(MacWord::load(arp + SHA), MacWord::load(data + ETH_SRC)) } {
        return Outcome::PassMalformed;
    }

    let tpa: u32 = unsafe { load(arp + TPA) };
    let Some(mut entry) = find_v4(tpa, ifindex(ctx), vlan_id) else {
        return Outcome::PassUnknownTarget;
    };
    // Nor may either be our own MAC: a reply to ourselves, or our own request come
    // back (a loop, a reflecting switch), which is no conflict either.
    if unsafe {
        either_is(
            MacWord::load_again(arp + SHA),
            MacWord::load_again(data + ETH_SRC),
            entry.mac_word(),
        )
    } {
        return Outcome::PassMalformed;
    }
    if let Some(outcome) = entry.take_request() {
        return outcome;
    }
    let spa: u32 = unsafe { load(arp + SPA) };
    if spa == tpa {
        // A gratuitous ARP for our VIP from another host: split brain, never answer it.
        entry.counters.conflicts += 1;
        return Outcome::PassConflict;
    }

    // Turn the request into the reply in place, unicast back to the asker.
    let our_mac = entry.mac();
    unsafe {
        let sha = Mac::load(arp + SHA);
        sha.store(data + ETH_DST);
        our_mac.store(data + ETH_SRC);
        store(arp + OPER, OP_REPLY);
        sha.store(arp + THA);
        store(arp + TPA, spa);
        our_mac.store(arp + SHA);
        store(arp + SPA, tpa);
    }
    entry.counters.replies += 1;
    Outcome::TxArpReply
}
