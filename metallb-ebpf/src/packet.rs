//! Views of the headers the responder reads and rewrites.
//!
//! Multi-byte fields are `u16` words in network order (compare them with `to_be()`
//! constants), which makes every view 2-byte aligned: XDP frames start at an even
//! address and every field offset used here is even, so a reply is built with
//! half-word moves instead of byte-by-byte copies.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use network_types::{arp::ArpHdr, eth::EthHdr, ip::Ipv6Hdr, vlan::VlanHdr};

/// A MAC address as three network-order words.
pub type Mac = [u16; 3];
/// An IPv6 address as eight network-order words.
pub type Ip6 = [u16; 8];

#[repr(C)]
pub struct Eth {
    pub dst: Mac,
    pub src: Mac,
    pub ether_type: u16,
}

#[repr(C)]
pub struct Vlan {
    pub tci: u16,
    pub ether_type: u16,
}

#[repr(C)]
pub struct Arp {
    pub htype: u16,
    pub ptype: u16,
    pub hlen: u8,
    pub plen: u8,
    pub oper: u16,
    pub sha: Mac,
    pub spa: [u16; 2],
    pub tha: Mac,
    pub tpa: [u16; 2],
}

#[repr(C)]
pub struct Ipv6 {
    pub version_class_flow: [u16; 2],
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: Ip6,
    pub dst: Ip6,
}

/// The fixed part of a Neighbor Solicitation or Advertisement (RFC 4861 4.3, 4.4).
#[repr(C)]
pub struct Nd {
    pub icmp_type: u8,
    pub code: u8,
    pub checksum: u16,
    /// Reserved in a solicitation; R/S/O flags in the first byte of an advertisement.
    pub flags: [u16; 2],
    pub target: Ip6,
}

/// A link-layer address option (RFC 4861 4.6.1), 8 bytes on Ethernet.
#[repr(C)]
pub struct NdLinkLayerOpt {
    pub opt_type: u8,
    pub len_units: u8,
    pub addr: Mac,
}

/// The whole IPv6 part of the advertisement the program sends.
#[repr(C)]
pub struct NeighborAdvert {
    pub ip: Ipv6,
    pub nd: Nd,
    pub tlla: NdLinkLayerOpt,
}

// Our views must match the wire sizes that network-types knows.
const _: () = {
    assert!(size_of::<Eth>() == EthHdr::LEN);
    assert!(size_of::<Vlan>() == VlanHdr::LEN);
    assert!(size_of::<Arp>() == ArpHdr::LEN);
    assert!(size_of::<Ipv6>() == Ipv6Hdr::LEN);
    assert!(size_of::<Nd>() == 24);
    assert!(size_of::<NdLinkLayerOpt>() == 8);
    assert!(size_of::<NeighborAdvert>() == 72);
};

/// A pointer to a `T` at `offset` in the frame, if the whole `T` lies inside it.
/// The comparison against `data_end` is what the verifier needs to allow the access.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// A MAC address that can be the source of a request: not multicast/broadcast and not
/// all zeroes.
#[inline(always)]
pub fn is_unicast_mac(mac: &Mac) -> bool {
    // The group bit is the lowest bit of the first byte on the wire.
    let first_byte = mac[0].to_ne_bytes()[0];
    first_byte & 1 == 0 && (mac[0] | mac[1] | mac[2]) != 0
}

/// Reads a MAC stored as bytes in a map value (which is 8-byte aligned, MAC first).
#[inline(always)]
pub fn mac_words(bytes: &[u8; 6]) -> Mac {
    [
        u16::from_ne_bytes([bytes[0], bytes[1]]),
        u16::from_ne_bytes([bytes[2], bytes[3]]),
        u16::from_ne_bytes([bytes[4], bytes[5]]),
    ]
}
