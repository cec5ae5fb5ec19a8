//! IPv6 Neighbor Discovery (RFC 4861) for IPv6 VIPs: answer Neighbor Solicitations
//! with a Neighbor Advertisement, count advertisements by other hosts as claims.

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use metallb_common::{Outcome, VipAction, VipKeyV6};
use network_types::ip::IpProto;

use crate::{
    Ingress, ifindex,
    packet::{Eth, Ip6, Ipv6, Mac, Nd, NdLinkLayerOpt, NeighborAdvert, mac_words, ptr_at},
    table::find_v6,
};

const NEXT_HEADER_ICMPV6: u8 = IpProto::Ipv6Icmp as u8;
const NEIGHBOR_SOLICIT: u8 = 135;
const NEIGHBOR_ADVERT: u8 = 136;
const OPT_SOURCE_LL_ADDR: u8 = 1;
const OPT_TARGET_LL_ADDR: u8 = 2;
/// Options this program walks: more than any real solicitation carries (source
/// link-layer address, nonce). A longer message is passed to the kernel.
const MAX_OPTIONS: usize = 3;
const ND_LEN: usize = size_of::<Nd>();
const OPT_LEN: usize = size_of::<NdLinkLayerOpt>();
const NA_FLAG_SOLICITED: u8 = 0x40;
const IPV6_HEADER_LEN: usize = size_of::<Ipv6>();
const NA_PAYLOAD_LEN: usize = size_of::<NeighborAdvert>() - IPV6_HEADER_LEN;

const fn words(bytes: [u8; 16]) -> Ip6 {
    let mut out = [0u16; 8];
    let mut i = 0;
    while i < 8 {
        out[i] = u16::from_ne_bytes([bytes[2 * i], bytes[2 * i + 1]]);
        i += 1;
    }
    out
}

/// ff02::1, where an answer to a duplicate address detection probe goes.
const ALL_NODES: Ip6 = words([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
const ALL_NODES_MAC: Mac = [
    u16::from_ne_bytes([0x33, 0x33]),
    0,
    u16::from_ne_bytes([0, 1]),
];

#[inline(always)]
fn key(ctx: &XdpContext, addr: Ip6, ingress: Ingress) -> VipKeyV6 {
    VipKeyV6 {
        // SAFETY: eight network-order words are the sixteen address bytes in wire order.
        addr: unsafe { core::mem::transmute::<Ip6, [u8; 16]>(addr) },
        ifindex: ifindex(ctx),
        vlan_id: ingress.vlan_id,
        _pad: [0; 2],
    }
}

#[inline(always)]
fn is_multicast(addr: &Ip6) -> bool {
    addr[0].to_ne_bytes()[0] == 0xff
}

#[inline(always)]
fn is_unspecified(addr: &Ip6) -> bool {
    (addr[0] | addr[1] | addr[2] | addr[3] | addr[4] | addr[5] | addr[6] | addr[7]) == 0
}

/// ff02::1:ffXX:XXXX, the solicited-node group of `target` (RFC 4291 2.7.1).
#[inline(always)]
fn is_solicited_node_of(dst: &Ip6, target: &Ip6) -> bool {
    dst[0] == 0xff02u16.to_be()
        && (dst[1] | dst[2] | dst[3] | dst[4]) == 0
        && dst[5] == 1u16.to_be()
        && dst[6] == u16::from_ne_bytes([0xff, target[6].to_ne_bytes()[1]])
        && dst[7] == target[7]
}

#[inline(always)]
pub fn respond(ctx: &XdpContext, ingress: Ingress) -> Outcome {
    let Some(ip) = ptr_at::<Ipv6>(ctx, ingress.l3_offset) else {
        return Outcome::PassMalformed;
    };
    // SAFETY: ptr_at checked that the whole header is inside the frame.
    let ip = unsafe { &*ip };
    if ip.version_class_flow[0].to_ne_bytes()[0] >> 4 != 6 {
        return Outcome::PassMalformed;
    }
    // Extension headers are not walked: such a packet is passed as "not NDP".
    if ip.next_header != NEXT_HEADER_ICMPV6 {
        return Outcome::PassNotArpOrNdp;
    }
    let nd_offset = ingress.l3_offset + IPV6_HEADER_LEN;
    let Some(icmp_type) = ptr_at::<u8>(ctx, nd_offset) else {
        return Outcome::PassMalformed;
    };
    let icmp_type = unsafe { *icmp_type };
    if icmp_type != NEIGHBOR_SOLICIT && icmp_type != NEIGHBOR_ADVERT {
        return Outcome::PassNotArpOrNdp;
    }
    let Some(nd) = ptr_at::<Nd>(ctx, nd_offset) else {
        return Outcome::PassMalformed;
    };
    // SAFETY: as above.
    let nd = unsafe { &*nd };
    // RFC 4861 7.1: hop limit 255 (not forwarded), code 0, length of at least 24 in
    // whole 8-byte options, valid checksum.
    if ip.hop_limit != 255 || nd.code != 0 {
        return Outcome::PassNdpInvalid;
    }
    let payload_len = u16::from_be(ip.payload_len) as usize;
    if payload_len < ND_LEN
        || payload_len > ND_LEN + MAX_OPTIONS * OPT_LEN
        || (payload_len - ND_LEN) % OPT_LEN != 0
    {
        return Outcome::PassNdpInvalid;
    }
    if ctx.data() + nd_offset + payload_len > ctx.data_end() {
        return Outcome::PassMalformed;
    }
    if is_multicast(&nd.target) || is_multicast(&ip.src) {
        return Outcome::PassNdpInvalid;
    }
    // The checksum covers the options too: their words are added while walking them.
    let mut sum = sum_words(&ip.src)
        + sum_words(&ip.dst)
        + ip.payload_len as u32
        + u16::from_ne_bytes([0, NEXT_HEADER_ICMPV6]) as u32
        + u16::from_ne_bytes([nd.icmp_type, nd.code]) as u32
        + nd.checksum as u32
        + sum_words(&nd.flags)
        + sum_words(&nd.target);

    let mut source_ll: Option<Mac> = None;
    for i in 0..MAX_OPTIONS {
        let offset = ND_LEN + i * OPT_LEN;
        if offset >= payload_len {
            break;
        }
        let Some(opt) = ptr_at::<NdLinkLayerOpt>(ctx, nd_offset + offset) else {
            return Outcome::PassMalformed;
        };
        // SAFETY: as above.
        let opt = unsafe { &*opt };
        // Length 0 is invalid; longer options are legal but not walked here.
        if opt.len_units != 1 {
            return Outcome::PassNdpInvalid;
        }
        sum += u16::from_ne_bytes([opt.opt_type, opt.len_units]) as u32 + sum_words(&opt.addr);
        if opt.opt_type == OPT_SOURCE_LL_ADDR {
            source_ll = Some(opt.addr);
        }
    }
    if fold(sum) != 0xffff {
        return Outcome::PassNdpInvalid;
    }
    if icmp_type == NEIGHBOR_ADVERT {
        return claim_by_advert(ctx, nd, ingress);
    }
    // A solicitation: to the target itself (unreachability detection) or to its
    // solicited-node group; from :: (duplicate address detection) only to the group,
    // and then without a source link-layer option (RFC 4861 7.1.1).
    let target = nd.target;
    let dad = is_unspecified(&ip.src);
    let to_group = is_solicited_node_of(&ip.dst, &target);
    if !to_group && (dad || ip.dst != target) {
        return Outcome::PassNdpInvalid;
    }
    if dad && source_ll.is_some() {
        return Outcome::PassNdpInvalid;
    }

    let Some(mut entry) = find_v6(&key(ctx, target, ingress)) else {
        return Outcome::PassUnknownTarget;
    };
    if let Some(outcome) = entry.take_request() {
        return outcome;
    }

    // RFC 4861 7.2.4: answer the asker, or all nodes (Solicited=0) for a DAD probe.
    let (reply_ll, reply_ip, flags) = if dad {
        (ALL_NODES_MAC, ALL_NODES, 0)
    } else {
        let Some(eth) = ptr_at::<Eth>(ctx, 0) else {
            return Outcome::PassMalformed;
        };
        let asker_ll = match source_ll {
            Some(mac) => mac,
            None => unsafe { (*eth).src },
        };
        (asker_ll, ip.src, NA_FLAG_SOLICITED)
    };
    let our_mac = mac_words(&entry.mac);
    if !write_advert(ctx, ingress, our_mac, reply_ll, reply_ip, target, flags) {
        return Outcome::PassTxError;
    }
    entry.counters.replies += 1;
    Outcome::TxNeighborAdvert
}

/// Builds the advertisement in place of the solicitation: resizes the frame to
/// exactly the advertisement, then writes every byte of it after the VLAN tag.
#[inline(always)]
fn write_advert(
    ctx: &XdpContext,
    ingress: Ingress,
    our_mac: Mac,
    reply_ll: Mac,
    reply_ip: Ip6,
    target: Ip6,
    flags: u8,
) -> bool {
    let frame_len = (ctx.data_end() - ctx.data()) as i32;
    let delta = (ingress.l3_offset + size_of::<NeighborAdvert>()) as i32 - frame_len;
    // SAFETY: the helper checks the new size against the frame's buffer.
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return false;
    }
    let (Some(eth), Some(na)) = (
        ptr_at::<Eth>(ctx, 0),
        ptr_at::<NeighborAdvert>(ctx, ingress.l3_offset),
    ) else {
        return false;
    };
    // SAFETY: ptr_at checked both ranges against the resized frame.
    let (eth, na) = unsafe { (&mut *eth, &mut *na) };
    eth.dst = reply_ll;
    eth.src = our_mac;
    na.ip.version_class_flow = [0x6000u16.to_be(), 0];
    na.ip.payload_len = (NA_PAYLOAD_LEN as u16).to_be();
    na.ip.next_header = NEXT_HEADER_ICMPV6;
    na.ip.hop_limit = 255;
    na.ip.src = target;
    na.ip.dst = reply_ip;
    na.nd.icmp_type = NEIGHBOR_ADVERT;
    na.nd.code = 0;
    na.nd.checksum = 0;
    na.nd.flags = [u16::from_ne_bytes([flags, 0]), 0];
    na.nd.target = target;
    na.tlla.opt_type = OPT_TARGET_LL_ADDR;
    na.tlla.len_units = 1;
    na.tlla.addr = our_mac;
    // Computed from the values written, not read back: the target counts twice (as the
    // source address and in the message).
    let sum = 2 * sum_words(&target)
        + sum_words(&reply_ip)
        + (NA_PAYLOAD_LEN as u16).to_be() as u32
        + u16::from_ne_bytes([0, NEXT_HEADER_ICMPV6]) as u32
        + u16::from_ne_bytes([NEIGHBOR_ADVERT, 0]) as u32
        + u16::from_ne_bytes([flags, 0]) as u32
        + u16::from_ne_bytes([OPT_TARGET_LL_ADDR, 1]) as u32
        + sum_words(&our_mac);
    na.nd.checksum = !fold(sum);
    true
}

/// A valid advertisement for a VIP we answer for: another host claims it.
#[inline(always)]
fn claim_by_advert(ctx: &XdpContext, nd: &Nd, ingress: Ingress) -> Outcome {
    if let Some(entry) = find_v6(&key(ctx, nd.target, ingress))
        && entry.action == Some(VipAction::Answer)
    {
        entry.counters.conflicts += 1;
        return Outcome::PassConflict;
    }
    Outcome::PassNotRequest
}

/// Sum of network-order words as they sit in memory. The one's complement sum does
/// not depend on byte order (RFC 1071), so summing native loads and storing the
/// result natively gives the right bytes.
#[inline(always)]
fn sum_words<const N: usize>(words: &[u16; N]) -> u32 {
    let mut sum = 0u32;
    for word in words {
        sum += *word as u32;
    }
    sum
}

/// Folds a 32-bit partial sum to 16 bits (end-around carry).
#[inline(always)]
fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}
