//! What the responder does with one frame, in plain Rust: the rules of the XDP program
//! (`metallb-ebpf/src/{main,arp,ndp}.rs`) for the userspace datapath. Pure: a frame
//! and a lookup in, the outcome, the counters it moves and the reply's bytes out; no
//! sockets, so the exact-bytes table runs against it as it runs against the program.
//!
//! The program's order of checks is kept, so that a frame lands in the same
//! [`Outcome`] and moves the same counters in both datapaths.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use metallb_common::{
    Outcome, VipAction, VipCounters,
    ndp::{
        NA_FLAG_SOLICITED, NA_PAYLOAD_LEN, NEIGHBOR_ADVERT, NEIGHBOR_SOLICIT, NEXT_HEADER_ICMPV6,
        OPT_SOURCE_LL_ADDR, OPT_TARGET_LL_ADDR, solicited_node_group,
    },
};

use super::maps::{VipConfig, VipKey};

const ETH_LEN: usize = 14;
const VLAN_ETH_LEN: usize = 18;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const ARP_LEN: usize = 28;
const ARP_REQUEST_HEAD: [u8; 8] = [0, 1, 0x08, 0x00, 6, 4, 0, 1];
const ARP_REPLY_HEAD: [u8; 8] = [0, 1, 0x08, 0x00, 6, 4, 0, 2];

const IPV6_LEN: usize = 40;
const ND_LEN: usize = 24;
const OPT_LEN: usize = 8;
/// Options the program walks; a longer message is passed.
const MAX_OPTIONS: usize = 3;
const NA_LEN: usize = IPV6_LEN + NA_PAYLOAD_LEN as usize;
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// What was done with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// As the program counts it (an answer: [`Outcome::TxArpReply`] or
    /// [`Outcome::TxNeighborAdvert`]).
    pub outcome: Outcome,
    /// The VIP entry whose counters move, and by how much.
    pub vip: Option<(VipKey, VipCounters)>,
    /// The frame to send back, for an answer.
    pub reply: Option<Vec<u8>>,
}

impl Response {
    fn pass(outcome: Outcome) -> Self {
        Response {
            outcome,
            vip: None,
            reply: None,
        }
    }

    /// The XDP verdict the program returns for it: `XDP_TX`, `XDP_DROP` or `XDP_PASS`.
    pub fn verdict(&self) -> u32 {
        match self.outcome {
            Outcome::TxArpReply | Outcome::TxNeighborAdvert => 3,
            Outcome::DropSuppressed | Outcome::DropFenced => 1,
            _ => 2,
        }
    }
}

fn be16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

fn mac_at(frame: &[u8], at: usize) -> [u8; 6] {
    let mut mac = [0; 6];
    mac.copy_from_slice(&frame[at..at + 6]);
    mac
}

fn group_or_zero(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0 || *mac == [0; 6]
}

/// As the program's `both_unicast`: neither is a group address or all zeroes.
fn both_unicast(a: &[u8; 6], b: &[u8; 6]) -> bool {
    !group_or_zero(a) && (a == b || !group_or_zero(b))
}

/// The program's `take_request`: counts a request, says what to do unless answering.
fn take_request(config: &VipConfig, fenced: bool, counters: &mut VipCounters) -> Option<Outcome> {
    counters.requests += 1;
    match config.action {
        VipAction::Answer if fenced => Some(Outcome::DropFenced),
        VipAction::Answer => None,
        VipAction::Suppress => {
            counters.suppressed += 1;
            Some(Outcome::DropSuppressed)
        }
    }
}

/// The program's `take_claim`: another host claims the VIP.
fn claim(key: VipKey, config: Option<VipConfig>) -> Response {
    match config {
        Some(config) if config.action == VipAction::Answer => Response {
            outcome: Outcome::PassConflict,
            vip: Some((
                key,
                VipCounters {
                    conflicts: 1,
                    ..VipCounters::default()
                },
            )),
            reply: None,
        },
        _ => Response::pass(Outcome::PassNotRequest),
    }
}

/// What the responder does with `frame`, received on `ifindex`, given the entries
/// `find` returns; `fenced`: the fence timer says answer nothing.
pub fn respond(
    frame: &[u8],
    ifindex: u32,
    fenced: bool,
    find: impl Fn(&VipKey) -> Option<VipConfig>,
) -> Response {
    if frame.len() < ETH_LEN {
        return Response::pass(Outcome::PassMalformed);
    }
    let key = |addr: IpAddr, vlan_id| VipKey {
        addr,
        ifindex,
        vlan_id,
    };
    match be16(frame, 12) {
        ETH_P_IPV4 => Response::pass(Outcome::PassNotArpOrNdp),
        ETH_P_ARP => arp(frame, ETH_LEN, |a| key(a, 0), fenced, &find),
        ETH_P_IPV6 => ndp(frame, ETH_LEN, |a| key(a, 0), fenced, &find),
        ETH_P_8021AD => Response::pass(Outcome::PassVlanUnsupported),
        ETH_P_8021Q => {
            if frame.len() < VLAN_ETH_LEN {
                return Response::pass(Outcome::PassMalformed);
            }
            let vlan_id = be16(frame, 14) & 0x0fff;
            match be16(frame, 16) {
                ETH_P_8021Q | ETH_P_8021AD => Response::pass(Outcome::PassVlanUnsupported),
                ETH_P_ARP => arp(frame, VLAN_ETH_LEN, |a| key(a, vlan_id), fenced, &find),
                ETH_P_IPV6 => ndp(frame, VLAN_ETH_LEN, |a| key(a, vlan_id), fenced, &find),
                _ => Response::pass(Outcome::PassNotArpOrNdp),
            }
        }
        _ => Response::pass(Outcome::PassNotArpOrNdp),
    }
}

fn arp(
    frame: &[u8],
    l3: usize,
    key: impl Fn(IpAddr) -> VipKey,
    fenced: bool,
    find: &impl Fn(&VipKey) -> Option<VipConfig>,
) -> Response {
    if frame.len() < l3 + ARP_LEN {
        return Response::pass(Outcome::PassMalformed);
    }
    let arp = &frame[l3..l3 + ARP_LEN];
    let ip = |at: usize| {
        IpAddr::V4(Ipv4Addr::new(
            arp[at],
            arp[at + 1],
            arp[at + 2],
            arp[at + 3],
        ))
    };
    let (spa, tpa) = (ip(14), ip(24));
    if arp[..8] != ARP_REQUEST_HEAD {
        if arp[..6] != ARP_REQUEST_HEAD[..6] {
            return Response::pass(Outcome::PassMalformed);
        }
        if arp[..8] == ARP_REPLY_HEAD {
            return claim(key(spa), find(&key(spa)));
        }
        return Response::pass(Outcome::PassNotRequest);
    }
    let sha = mac_at(arp, 8);
    let eth_src = mac_at(frame, 6);
    if !both_unicast(&sha, &eth_src) {
        return Response::pass(Outcome::PassMalformed);
    }
    let vip = key(tpa);
    let Some(config) = find(&vip) else {
        return Response::pass(Outcome::PassUnknownTarget);
    };
    if sha == config.mac.0 || eth_src == config.mac.0 {
        return Response::pass(Outcome::PassMalformed);
    }
    let mut counters = VipCounters::default();
    let counted = |outcome, counters| Response {
        outcome,
        vip: Some((vip, counters)),
        reply: None,
    };
    if let Some(outcome) = take_request(&config, fenced, &mut counters) {
        return counted(outcome, counters);
    }
    if spa == tpa {
        // A gratuitous request for our VIP from another host: never answered.
        counters.conflicts += 1;
        return counted(Outcome::PassConflict, counters);
    }
    // RFC 826: back to the sender hardware address, sender and target swapped. The
    // rest of the frame (tag, padding) stays as it came.
    let mut out = frame.to_vec();
    out[0..6].copy_from_slice(&sha);
    out[6..12].copy_from_slice(&config.mac.0);
    let reply = &mut out[l3..l3 + ARP_LEN];
    reply[7] = 2;
    reply[18..24].copy_from_slice(&sha);
    reply[24..28].copy_from_slice(&arp[14..18]);
    reply[8..14].copy_from_slice(&config.mac.0);
    reply[14..18].copy_from_slice(&arp[24..28]);
    counters.replies += 1;
    Response {
        outcome: Outcome::TxArpReply,
        vip: Some((vip, counters)),
        reply: Some(out),
    }
}

/// The one's complement sum (RFC 1071) of `bytes` as big-endian words, unfolded.
fn sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks(2)
        .map(|w| u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The ICMPv6 checksum sum: pseudo-header (RFC 8200 8.1) and message.
fn icmpv6_sum(src: &[u8], dst: &[u8], message: &[u8]) -> u64 {
    sum(src) + sum(dst) + message.len() as u64 + u64::from(NEXT_HEADER_ICMPV6) + sum(message)
}

/// In ::/96 (unspecified, loopback, IPv4-compatible) or ::ffff:0:0/96 (IPv4-mapped).
fn embeds_v4_or_loopback(addr: &Ipv6Addr) -> bool {
    let s = addr.segments();
    s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff)
}

fn ndp(
    frame: &[u8],
    l3: usize,
    key: impl Fn(IpAddr) -> VipKey,
    fenced: bool,
    find: &impl Fn(&VipKey) -> Option<VipConfig>,
) -> Response {
    let end = frame.len();
    let ip = l3;
    if ip + IPV6_LEN > end || frame[ip] >> 4 != 6 {
        return Response::pass(Outcome::PassMalformed);
    }
    // Extension headers are not walked.
    if frame[ip + 6] != NEXT_HEADER_ICMPV6 {
        return Response::pass(Outcome::PassNotArpOrNdp);
    }
    let nd = ip + IPV6_LEN;
    if nd + 1 > end {
        return Response::pass(Outcome::PassMalformed);
    }
    let icmp_type = frame[nd];
    if icmp_type != NEIGHBOR_SOLICIT && icmp_type != NEIGHBOR_ADVERT {
        return Response::pass(Outcome::PassNotArpOrNdp);
    }
    if nd + ND_LEN > end {
        return Response::pass(Outcome::PassMalformed);
    }
    // RFC 4861 7.1: hop limit 255, code 0, whole 8-byte options, valid checksum.
    if frame[ip + 7] != 255 || frame[nd + 1] != 0 {
        return Response::pass(Outcome::PassNdpInvalid);
    }
    let payload_len = usize::from(be16(frame, ip + 4));
    if !(ND_LEN..=ND_LEN + MAX_OPTIONS * OPT_LEN).contains(&payload_len)
        || !(payload_len - ND_LEN).is_multiple_of(OPT_LEN)
    {
        return Response::pass(Outcome::PassNdpInvalid);
    }
    if nd + payload_len > end {
        return Response::pass(Outcome::PassMalformed);
    }
    let mut source_ll = None;
    for option in frame[nd + ND_LEN..nd + payload_len].chunks(OPT_LEN) {
        if option[1] != 1 {
            return Response::pass(Outcome::PassNdpInvalid);
        }
        if option[0] == OPT_SOURCE_LL_ADDR {
            source_ll = Some(mac_at(option, 2));
        }
    }
    let addr = |at: usize| {
        let mut octets = [0; 16];
        octets.copy_from_slice(&frame[at..at + 16]);
        Ipv6Addr::from(octets)
    };
    let (src, dst, target) = (addr(ip + 8), addr(ip + 24), addr(nd + 8));
    if target.is_multicast()
        || src.is_multicast()
        || (embeds_v4_or_loopback(&src) && !src.is_unspecified())
        || fold(icmpv6_sum(
            &frame[ip + 8..ip + 24],
            &frame[ip + 24..ip + 40],
            &frame[nd..nd + payload_len],
        )) != 0xffff
    {
        return Response::pass(Outcome::PassNdpInvalid);
    }
    let vip = key(IpAddr::V6(target));
    if icmp_type == NEIGHBOR_ADVERT {
        return claim(vip, find(&vip));
    }
    let dad = src.is_unspecified();
    let to_group = dst.octets() == solicited_node_group(target.octets());
    if !to_group && (dad || dst != target) {
        return Response::pass(Outcome::PassNdpInvalid);
    }
    let eth_src = mac_at(frame, 6);
    // RFC 4861 7.2.4: a duplicate address detection probe (no source link-layer
    // option allowed) is answered to all nodes, unsolicited; any other to its source.
    let (reply_mac, reply_ip, flags) = match (dad, source_ll) {
        (true, Some(_)) => return Response::pass(Outcome::PassNdpInvalid),
        (true, None) if both_unicast(&eth_src, &eth_src) => (ALL_NODES_MAC, ALL_NODES, 0),
        (false, source_ll) if both_unicast(&source_ll.unwrap_or(eth_src), &eth_src) => {
            (source_ll.unwrap_or(eth_src), src, NA_FLAG_SOLICITED)
        }
        _ => return Response::pass(Outcome::PassMalformed),
    };
    let Some(config) = find(&vip) else {
        return Response::pass(Outcome::PassUnknownTarget);
    };
    let our_mac = config.mac.0;
    if reply_mac == our_mac || eth_src == our_mac {
        return Response::pass(Outcome::PassMalformed);
    }
    let mut counters = VipCounters::default();
    if let Some(outcome) = take_request(&config, fenced, &mut counters) {
        return Response {
            outcome,
            vip: Some((vip, counters)),
            reply: None,
        };
    }
    counters.replies += 1;
    Response {
        outcome: Outcome::TxNeighborAdvert,
        vip: Some((vip, counters)),
        reply: Some(advertisement(
            &frame[..l3],
            our_mac,
            reply_mac,
            target,
            reply_ip,
            flags,
        )),
    }
}

/// The advertisement in the solicitation's Ethernet header (and tag): IPv6 with
/// traffic class and flow label zero, the message with one target link-layer option.
fn advertisement(
    link_header: &[u8],
    our_mac: [u8; 6],
    reply_mac: [u8; 6],
    target: Ipv6Addr,
    reply_ip: Ipv6Addr,
    flags: u8,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(link_header.len() + NA_LEN);
    out.extend_from_slice(link_header);
    out[0..6].copy_from_slice(&reply_mac);
    out[6..12].copy_from_slice(&our_mac);
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&NA_PAYLOAD_LEN.to_be_bytes());
    out.extend_from_slice(&[NEXT_HEADER_ICMPV6, 255]);
    out.extend_from_slice(&target.octets());
    out.extend_from_slice(&reply_ip.octets());
    let mut message = vec![NEIGHBOR_ADVERT, 0, 0, 0, flags, 0, 0, 0];
    message.extend_from_slice(&target.octets());
    message.extend_from_slice(&[OPT_TARGET_LL_ADDR, 1]);
    message.extend_from_slice(&our_mac);
    let checksum = !fold(icmpv6_sum(&target.octets(), &reply_ip.octets(), &message));
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
    out.extend_from_slice(&message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::iface::MacAddr;

    const NODE: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];
    const ASKER: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn table(key: &VipKey) -> Option<VipConfig> {
        (key.addr == IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))).then_some(VipConfig {
            mac: MacAddr(NODE),
            action: VipAction::Answer,
        })
    }

    #[test]
    fn an_arp_request_for_a_vip_is_answered_with_swapped_addresses() {
        let mut request = vec![0xff; 6];
        request.extend_from_slice(&ASKER);
        request.extend_from_slice(&[0x08, 0x06]);
        request.extend_from_slice(&ARP_REQUEST_HEAD);
        request.extend_from_slice(&ASKER);
        request.extend_from_slice(&[192, 0, 2, 1]);
        request.extend_from_slice(&[0; 6]);
        request.extend_from_slice(&[192, 0, 2, 100]);
        let response = respond(&request, 3, false, table);
        assert_eq!(response.outcome, Outcome::TxArpReply);
        let mut want = ASKER.to_vec();
        want.extend_from_slice(&NODE);
        want.extend_from_slice(&[0x08, 0x06]);
        want.extend_from_slice(&ARP_REPLY_HEAD);
        want.extend_from_slice(&NODE);
        want.extend_from_slice(&[192, 0, 2, 100]);
        want.extend_from_slice(&ASKER);
        want.extend_from_slice(&[192, 0, 2, 1]);
        assert_eq!(response.reply, Some(want));
        // The same request from our own MAC is our own, come back: not answered.
        request[6..12].copy_from_slice(&NODE);
        assert_eq!(
            respond(&request, 3, false, table).outcome,
            Outcome::PassMalformed
        );
    }
}
