//! An independent reference for the XDP responder: what it must do with any frame,
//! decided from RFC 826 (ARP) and RFC 4861 (Neighbor Discovery), parsed with
//! etherparse and the replies built with it. It shares no code with the program.
//!
//! Where the RFCs allow more than the program handles, the reference follows the
//! program's documented limits, so that the two must agree exactly: no extension
//! headers, at most [`MAX_OPTIONS`] options, each of length 1 (8 bytes), one 802.1Q
//! tag at most. Where the program is stricter than the RFCs on purpose, so is this:
//! no answer when the sender hardware address, the source link-layer option or the
//! Ethernet source is a group address, all zeroes or the VIP's own MAC, nor to a
//! source in ::/96 or ::ffff:0:0/96 other than ::, nor to a gratuitous request
//! (sender = target).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, ArpPacketSlice, EtherType, Ethernet2Header,
    Ethernet2HeaderSlice, Icmpv6Slice, Icmpv6Type, IpNumber, Ipv6FlowLabel, Ipv6Header,
    Ipv6HeaderSlice, SingleVlanHeaderSlice,
};

/// Options the program walks in a solicitation.
pub const MAX_OPTIONS: usize = 3;

/// A VIP as the program's tables hold it.
#[derive(Clone, Copy, Debug)]
pub struct OracleVip {
    pub addr: IpAddr,
    pub ifindex: u32,
    pub vlan_id: u16,
    pub mac: [u8; 6],
    /// Answered (else suppressed: dropped).
    pub answer: bool,
}

/// What the program must do with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    Pass,
    Drop,
    /// Transmit exactly these bytes.
    Tx(Vec<u8>),
}

const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const NEIGHBOR_SOLICIT: u8 = 135;
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;

fn is_unicast(mac: &[u8]) -> bool {
    mac[0] & 1 == 0 && mac.iter().any(|b| *b != 0)
}

/// The decision for `frame` received on `ifindex`, given the VIPs in the tables.
pub fn expected(frame: &[u8], ifindex: u32, vips: &[OracleVip]) -> Expected {
    decide(frame, ifindex, vips).unwrap_or(Expected::Pass)
}

/// `None`: pass.
fn decide(frame: &[u8], ifindex: u32, vips: &[OracleVip]) -> Option<Expected> {
    let eth = Ethernet2HeaderSlice::from_slice(frame).ok()?;
    let (l3_at, ether_type, vlan_id) = match u16::from(eth.ether_type()) {
        ETHERTYPE_VLAN => {
            let tag = SingleVlanHeaderSlice::from_slice(&frame[Ethernet2Header::LEN..]).ok()?;
            (
                Ethernet2Header::LEN + 4,
                u16::from(tag.ether_type()),
                tag.vlan_identifier().value(),
            )
        }
        other => (Ethernet2Header::LEN, other, 0),
    };
    if !is_unicast(&eth.source()) {
        // Checked by the program only on the ARP and NDP paths: nothing else is
        // answered anyway.
        return None;
    }
    let find = |addr: IpAddr| {
        vips.iter()
            .find(|vip| vip.addr == addr && vip.ifindex == ifindex && vip.vlan_id == vlan_id)
    };
    match ether_type {
        ETHERTYPE_ARP => arp(frame, l3_at, &eth, find),
        ETHERTYPE_IPV6 => ndp(frame, l3_at, &eth, find),
        _ => None,
    }
}

fn arp<'v>(
    frame: &[u8],
    l3_at: usize,
    eth: &Ethernet2HeaderSlice,
    find: impl Fn(IpAddr) -> Option<&'v OracleVip>,
) -> Option<Expected> {
    let arp = ArpPacketSlice::from_slice(&frame[l3_at..]).ok()?;
    if arp.hw_addr_type() != ArpHardwareId::ETHERNET
        || arp.proto_addr_type() != EtherType::IPV4
        || arp.hw_addr_size() != 6
        || arp.proto_addr_size() != 4
        || arp.operation() != ArpOperation::REQUEST
    {
        return None;
    }
    let sha: [u8; 6] = arp.sender_hw_addr().try_into().ok()?;
    let spa: [u8; 4] = arp.sender_protocol_addr().try_into().ok()?;
    let tpa: [u8; 4] = arp.target_protocol_addr().try_into().ok()?;
    if !is_unicast(&sha) {
        return None;
    }
    let vip = find(IpAddr::V4(Ipv4Addr::from(tpa)))?;
    if sha == vip.mac || eth.source() == vip.mac {
        return None;
    }
    if !vip.answer {
        return Some(Expected::Drop);
    }
    if spa == tpa {
        return None;
    }
    // RFC 826: swap the sender and target fields, our MAC as the sender, opcode
    // reply; to the requester's hardware address. Everything else of the frame (the
    // tag, padding) stays.
    let reply = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REPLY,
        &vip.mac,
        &tpa,
        &sha,
        &spa,
    )
    .ok()?;
    let mut out = frame.to_vec();
    out[..6].copy_from_slice(&sha);
    out[6..12].copy_from_slice(&vip.mac);
    out[l3_at..l3_at + reply.packet_len()].copy_from_slice(&reply.to_bytes());
    Some(Expected::Tx(out))
}

/// In ::/96 or ::ffff:0:0/96: unspecified, loopback, IPv4-compatible, IPv4-mapped.
fn embeds_v4_or_loopback(addr: &Ipv6Addr) -> bool {
    let s = addr.segments();
    s[..5] == [0; 5] && (s[5] == 0 || s[5] == 0xffff)
}

fn solicited_node_group(target: &Ipv6Addr) -> Ipv6Addr {
    let o = target.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

fn ndp<'v>(
    frame: &[u8],
    l3_at: usize,
    eth: &Ethernet2HeaderSlice,
    find: impl Fn(IpAddr) -> Option<&'v OracleVip>,
) -> Option<Expected> {
    let ip = Ipv6HeaderSlice::from_slice(&frame[l3_at..]).ok()?;
    // RFC 4861 7.1.1: hop limit 255, ICMPv6 length >= 24, code 0, valid checksum;
    // the program takes no extension headers.
    if ip.next_header() != IpNumber::IPV6_ICMP || ip.hop_limit() != 255 {
        return None;
    }
    let payload_len = usize::from(ip.payload_length());
    let payload = frame.get(l3_at + Ipv6Header::LEN..l3_at + Ipv6Header::LEN + payload_len)?;
    if payload_len < 24 || (payload_len - 24) % 8 != 0 || payload_len > 24 + MAX_OPTIONS * 8 {
        return None;
    }
    let icmp = Icmpv6Slice::from_slice(payload).ok()?;
    if icmp.type_u8() != NEIGHBOR_SOLICIT || icmp.code_u8() != 0 {
        return None;
    }
    if !icmp.is_checksum_valid(ip.source(), ip.destination()) {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(&payload[8..24]).ok()?);
    let source = ip.source_addr();
    let destination = ip.destination_addr();
    let mut source_ll = None;
    for option in payload[24..].chunks(8) {
        // Length 0 is invalid (RFC 4861 4.6); longer ones the program does not walk.
        if option[1] != 1 {
            return None;
        }
        if option[0] == OPT_SOURCE_LL {
            source_ll = Some(<[u8; 6]>::try_from(&option[2..8]).ok()?);
        }
    }
    if target.is_multicast() || source.is_multicast() {
        return None;
    }
    let dad = source.is_unspecified();
    if embeds_v4_or_loopback(&source) && !dad {
        return None;
    }
    let to_group = destination == solicited_node_group(&target);
    if !(to_group || (!dad && destination == target)) {
        return None;
    }
    // RFC 4861 7.2.4: to all nodes, unsolicited, for a duplicate address detection
    // probe (which must carry no source link-layer option); to the source otherwise.
    let (reply_mac, reply_ip, solicited) = if dad {
        if source_ll.is_some() {
            return None;
        }
        (
            [0x33, 0x33, 0, 0, 0, 1],
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            false,
        )
    } else {
        let mac = source_ll.unwrap_or(eth.source());
        if !is_unicast(&mac) {
            return None;
        }
        (mac, source, true)
    };
    let vip = find(IpAddr::V6(target))?;
    if reply_mac == vip.mac || eth.source() == vip.mac {
        return None;
    }
    if !vip.answer {
        return Some(Expected::Drop);
    }
    Some(Expected::Tx(advertisement(
        frame, l3_at, vip, target, reply_mac, reply_ip, solicited,
    )?))
}

/// The Neighbor Advertisement for `target`, in the solicitation's Ethernet header
/// (and tag): Solicited as given, Router and Override clear, one target link-layer
/// address option, traffic class and flow label zero.
fn advertisement(
    frame: &[u8],
    l3_at: usize,
    vip: &OracleVip,
    target: Ipv6Addr,
    reply_mac: [u8; 6],
    reply_ip: Ipv6Addr,
    solicited: bool,
) -> Option<Vec<u8>> {
    let mut out = frame[..l3_at].to_vec();
    out[..6].copy_from_slice(&reply_mac);
    out[6..12].copy_from_slice(&vip.mac);
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&[OPT_TARGET_LL, 1]);
    body.extend_from_slice(&vip.mac);
    let icmp_type =
        Icmpv6Type::NeighborAdvertisement(etherparse::icmpv6::NeighborAdvertisementHeader {
            router: false,
            solicited,
            r#override: false,
        });
    let checksum = icmp_type
        .calc_checksum(target.octets(), reply_ip.octets(), &body)
        .ok()?;
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: u16::try_from(8 + body.len()).ok()?,
        next_header: IpNumber::IPV6_ICMP,
        hop_limit: 255,
        source: target.octets(),
        destination: reply_ip.octets(),
    };
    out.extend_from_slice(&ip.to_bytes());
    out.extend_from_slice(
        &etherparse::Icmpv6Header {
            icmp_type,
            checksum,
        }
        .to_bytes(),
    );
    out.extend_from_slice(&body);
    Some(out)
}
