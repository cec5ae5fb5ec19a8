//! Requests as a client sends them, for benchmarks: built with etherparse.

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder};

/// A broadcast ARP request from `asker` for `target`.
pub fn arp_request(asker_mac: [u8; 6], asker: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &asker_mac,
        &asker.octets(),
        &[0; 6],
        &target.octets(),
    )
    .expect("ARP packet");
    let mut out = Vec::new();
    PacketBuilder::ethernet2(asker_mac, [0xff; 6])
        .arp(packet)
        .write(&mut out)
        .expect("ARP frame");
    out
}

/// A Neighbor Solicitation from `asker` for `target`, to its solicited-node group,
/// with a source link-layer address option.
pub fn neighbor_solicitation(asker_mac: [u8; 6], asker: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let o = target.octets();
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
    let mut body = o.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&asker_mac);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(asker_mac, [0x33, 0x33, 0xff, o[13], o[14], o[15]])
        .ipv6(asker.octets(), group.octets(), 255)
        .icmpv6(Icmpv6Type::NeighborSolicitation)
        .write(&mut out, &body)
        .expect("NS frame");
    out
}
