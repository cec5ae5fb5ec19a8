//! Frames for the datapath tests, built with etherparse: an implementation of ARP,
//! IPv6 and ICMPv6 (checksums included) that shares no code with the XDP program.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder, VlanId,
    icmpv6::NeighborAdvertisementHeader,
};

pub const BROADCAST: [u8; 6] = [0xff; 6];

fn vlan_id(vlan: u16) -> VlanId {
    VlanId::try_new(vlan).expect("test VLAN id fits in 12 bits")
}

/// An Ethernet frame carrying an ARP packet, optionally behind one 802.1Q tag.
pub fn arp(
    op: ArpOperation,
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    sender: ([u8; 6], Ipv4Addr),
    target: ([u8; 6], Ipv4Addr),
    vlan: Option<u16>,
) -> Vec<u8> {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &sender.0,
        &sender.1.octets(),
        &target.0,
        &target.1.octets(),
    )
    .expect("valid ARP packet");
    let mut out = Vec::new();
    let builder = PacketBuilder::ethernet2(eth_src, eth_dst);
    match vlan {
        Some(id) => builder.single_vlan(vlan_id(id)).arp(packet).write(&mut out),
        None => builder.arp(packet).write(&mut out),
    }
    .expect("write ARP frame");
    out
}

/// The body of an NDP message after its first 8 bytes: target then options.
pub fn nd_body(target: Ipv6Addr, options: &[&[u8]]) -> Vec<u8> {
    let mut body = target.octets().to_vec();
    for opt in options {
        body.extend_from_slice(opt);
    }
    body
}

/// A link-layer address option (type 1 = source, 2 = target).
pub fn ll_option(opt_type: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut opt = vec![opt_type, 1];
    opt.extend_from_slice(&mac);
    opt
}

/// Ethernet + IPv6 + ICMPv6 of the given type, with a correct checksum.
#[allow(clippy::too_many_arguments)]
pub fn icmpv6(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    icmp: Icmpv6Type,
    body: &[u8],
    vlan: Option<u16>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let builder = PacketBuilder::ethernet2(eth_src, eth_dst);
    match vlan {
        Some(id) => builder
            .single_vlan(vlan_id(id))
            .ipv6(src.octets(), dst.octets(), hop_limit)
            .icmpv6(icmp)
            .write(&mut out, body),
        None => builder
            .ipv6(src.octets(), dst.octets(), hop_limit)
            .icmpv6(icmp)
            .write(&mut out, body),
    }
    .expect("write ICMPv6 frame");
    out
}

/// A Neighbor Solicitation.
pub fn ns(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    options: &[&[u8]],
    vlan: Option<u16>,
) -> Vec<u8> {
    icmpv6(
        eth_src,
        eth_dst,
        src,
        dst,
        255,
        Icmpv6Type::NeighborSolicitation,
        &nd_body(target, options),
        vlan,
    )
}

/// A Neighbor Advertisement with a target link-layer address option.
#[allow(clippy::too_many_arguments)]
pub fn na(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    solicited: bool,
    r#override: bool,
    vlan: Option<u16>,
) -> Vec<u8> {
    icmpv6(
        eth_src,
        eth_dst,
        src,
        dst,
        255,
        Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
            router: false,
            solicited,
            r#override,
        }),
        &nd_body(target, &[&ll_option(2, eth_src)]),
        vlan,
    )
}

/// The solicited-node multicast group of `addr` and its Ethernet address.
pub fn solicited_node(addr: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let o = addr.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        u16::from_be_bytes([o[14], o[15]]),
    );
    (group, [0x33, 0x33, 0xff, o[13], o[14], o[15]])
}

/// Hex dump for assertion messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
