//! Types shared by the XDP program (`metallb-ebpf`) and the agent (`metallb-user`).
//!
//! Every map key and value is `#[repr(C)]` with explicit padding, so the layout is the
//! same on both sides and in the BTF that `bpftool map dump` uses to print field names.
//! Addresses are stored as byte arrays in network order, which bpftool prints readably.
#![no_std]

/// Map names, as declared in the object file and used as pin file names under the
/// pin directory. Kernel map names are cut at 15 bytes, so these stay short.
pub mod map_names {
    /// IPv4 VIPs: [`crate::VipKeyV4`] -> per-CPU [`crate::VipState`].
    pub const VIPS_V4: &str = "vips_v4";
    /// IPv6 VIPs: [`crate::VipKeyV6`] -> per-CPU [`crate::VipState`].
    pub const VIPS_V6: &str = "vips_v6";
    /// Global per-CPU [`crate::XdpStats`], a single entry at index 0.
    pub const XDP_STATS: &str = "xdp_stats";
    /// Every map the program declares, in a fixed order.
    pub const ALL: [&str; 3] = [VIPS_V4, VIPS_V6, XDP_STATS];
}

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "metallb_xdp";

/// Default directory under bpffs where the agent pins the maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/metallb";

/// Default capacity of each VIP map (IPv4 and IPv6 separately). The maps are created
/// without preallocation, so the capacity costs nothing until entries exist.
pub const DEFAULT_MAX_VIPS: u32 = 262_144;

/// What the XDP program does with ARP requests and Neighbor Solicitations for a VIP.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VipAction {
    /// This node announces the VIP: answer with the interface's MAC.
    Answer = 1,
    /// Another node announces the VIP: drop the request so that this node's kernel
    /// cannot answer it either (kube-proxy IPVS puts every VIP on `kube-ipvs0`).
    Suppress = 2,
}

impl VipAction {
    /// Decodes the byte stored in [`VipState::action`].
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Answer),
            2 => Some(Self::Suppress),
            _ => None,
        }
    }
}

/// Key of the IPv4 VIP map: the VIP on one interface, in one VLAN.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKeyV4 {
    /// The VIP, network byte order.
    pub addr: [u8; 4],
    /// Interface the request arrives on (`xdp_md.ingress_ifindex`).
    pub ifindex: u32,
    /// 802.1Q VLAN id of the request, 0 when untagged (or priority-tagged).
    pub vlan_id: u16,
    pub _pad: [u8; 2],
}

/// Key of the IPv6 VIP map: the VIP on one interface, in one VLAN.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKeyV6 {
    /// The VIP, network byte order.
    pub addr: [u8; 16],
    /// Interface the solicitation arrives on (`xdp_md.ingress_ifindex`).
    pub ifindex: u32,
    /// 802.1Q VLAN id of the solicitation, 0 when untagged (or priority-tagged).
    pub vlan_id: u16,
    pub _pad: [u8; 2],
}

/// Per-CPU value of both VIP maps: what to do (written by the agent) and what was
/// done (counted by the XDP program on the CPU that saw the frame).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipState {
    /// MAC address of the interface, the sender of every reply.
    pub mac: [u8; 6],
    /// A [`VipAction`] as `u8`.
    pub action: u8,
    pub _pad: u8,
    /// ARP requests / Neighbor Solicitations seen for this VIP.
    pub requests: u64,
    /// Replies sent (ARP replies / Neighbor Advertisements).
    pub replies: u64,
    /// Another host claimed this VIP: a gratuitous ARP (sender IP = target IP = VIP)
    /// or an ARP reply / Neighbor Advertisement for it. Never answered.
    pub conflicts: u64,
    /// Requests dropped because the VIP is suppressed on this node.
    pub suppressed: u64,
}

impl VipState {
    /// A fresh entry with zeroed counters.
    pub const fn new(mac: [u8; 6], action: VipAction) -> Self {
        Self {
            mac,
            action: action as u8,
            _pad: 0,
            requests: 0,
            replies: 0,
            conflicts: 0,
            suppressed: 0,
        }
    }
}

/// Global per-CPU counters: what the program did with every frame it saw.
/// Exactly one field is incremented per frame.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Passed: neither ARP nor an ICMPv6 Neighbor Solicitation/Advertisement
    /// (IPv6 with extension headers lands here too).
    pub pass_not_arp_or_ndp: u64,
    /// Passed: more than one VLAN tag, or an 802.1ad service tag.
    pub pass_vlan_unsupported: u64,
    /// Passed: truncated, or fields this program does not handle (ARP hardware or
    /// protocol type/length, a multicast or zero sender MAC, IPv6 version).
    pub pass_malformed: u64,
    /// Passed: not a request: an ARP reply (or other operation) or a Neighbor
    /// Advertisement. These are never answered.
    pub pass_not_request: u64,
    /// Passed: an NDP message that is invalid or not fully understood (hop limit not
    /// 255, code not 0, bad checksum, multicast target, odd options, destination not
    /// the target or its solicited-node group, ...).
    pub pass_ndp_invalid: u64,
    /// Passed: a well-formed request for an address that is not in the maps for this
    /// interface and VLAN.
    pub pass_unknown_target: u64,
    /// Passed: a claim by another host for one of our VIPs (see [`VipState::conflicts`]).
    pub pass_conflict: u64,
    /// Passed: the reply could not be built (frame could not be resized).
    pub pass_tx_error: u64,
    /// Answered with an ARP reply.
    pub tx_arp_reply: u64,
    /// Answered with a Neighbor Advertisement.
    pub tx_neighbor_advert: u64,
    /// Dropped: a request for a suppressed VIP.
    pub drop_suppressed: u64,
}

/// What the program did with a frame. The discriminant is the index of the matching
/// `u64` field of [`XdpStats`], so the program counts with one indexed increment.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    PassNotArpOrNdp = 0,
    PassVlanUnsupported = 1,
    PassMalformed = 2,
    PassNotRequest = 3,
    PassNdpInvalid = 4,
    PassUnknownTarget = 5,
    PassConflict = 6,
    PassTxError = 7,
    TxArpReply = 8,
    TxNeighborAdvert = 9,
    DropSuppressed = 10,
}

impl Outcome {
    /// Every outcome, in [`XdpStats`] field order.
    pub const ALL: [Outcome; 11] = [
        Outcome::PassNotArpOrNdp,
        Outcome::PassVlanUnsupported,
        Outcome::PassMalformed,
        Outcome::PassNotRequest,
        Outcome::PassNdpInvalid,
        Outcome::PassUnknownTarget,
        Outcome::PassConflict,
        Outcome::PassTxError,
        Outcome::TxArpReply,
        Outcome::TxNeighborAdvert,
        Outcome::DropSuppressed,
    ];

    /// The name of the matching [`XdpStats`] field.
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::PassNotArpOrNdp => "pass_not_arp_or_ndp",
            Outcome::PassVlanUnsupported => "pass_vlan_unsupported",
            Outcome::PassMalformed => "pass_malformed",
            Outcome::PassNotRequest => "pass_not_request",
            Outcome::PassNdpInvalid => "pass_ndp_invalid",
            Outcome::PassUnknownTarget => "pass_unknown_target",
            Outcome::PassConflict => "pass_conflict",
            Outcome::PassTxError => "pass_tx_error",
            Outcome::TxArpReply => "tx_arp_reply",
            Outcome::TxNeighborAdvert => "tx_neighbor_advert",
            Outcome::DropSuppressed => "drop_suppressed",
        }
    }
}

impl XdpStats {
    /// Adds `other` field by field (to sum the per-CPU copies).
    pub fn add(&mut self, other: &XdpStats) {
        self.pass_not_arp_or_ndp += other.pass_not_arp_or_ndp;
        self.pass_vlan_unsupported += other.pass_vlan_unsupported;
        self.pass_malformed += other.pass_malformed;
        self.pass_not_request += other.pass_not_request;
        self.pass_ndp_invalid += other.pass_ndp_invalid;
        self.pass_unknown_target += other.pass_unknown_target;
        self.pass_conflict += other.pass_conflict;
        self.pass_tx_error += other.pass_tx_error;
        self.tx_arp_reply += other.tx_arp_reply;
        self.tx_neighbor_advert += other.tx_neighbor_advert;
        self.drop_suppressed += other.drop_suppressed;
    }

    /// The counter of one outcome.
    pub const fn get(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::PassNotArpOrNdp => self.pass_not_arp_or_ndp,
            Outcome::PassVlanUnsupported => self.pass_vlan_unsupported,
            Outcome::PassMalformed => self.pass_malformed,
            Outcome::PassNotRequest => self.pass_not_request,
            Outcome::PassNdpInvalid => self.pass_ndp_invalid,
            Outcome::PassUnknownTarget => self.pass_unknown_target,
            Outcome::PassConflict => self.pass_conflict,
            Outcome::PassTxError => self.pass_tx_error,
            Outcome::TxArpReply => self.tx_arp_reply,
            Outcome::TxNeighborAdvert => self.tx_neighbor_advert,
            Outcome::DropSuppressed => self.drop_suppressed,
        }
    }
}

/// Size and layout checks: a mismatch between kernel and user types would corrupt maps.
const _: () = {
    assert!(core::mem::size_of::<VipKeyV4>() == 12);
    assert!(core::mem::size_of::<VipKeyV6>() == 24);
    assert!(core::mem::size_of::<VipState>() == 40);
    assert!(core::mem::align_of::<VipState>() == 8);
    assert!(core::mem::size_of::<XdpStats>() == Outcome::ALL.len() * 8);
    // Outcome discriminants index the XdpStats fields.
    use core::mem::offset_of;
    assert!(offset_of!(XdpStats, pass_not_arp_or_ndp) == 8 * Outcome::PassNotArpOrNdp as usize);
    assert!(
        offset_of!(XdpStats, pass_vlan_unsupported) == 8 * Outcome::PassVlanUnsupported as usize
    );
    assert!(offset_of!(XdpStats, pass_malformed) == 8 * Outcome::PassMalformed as usize);
    assert!(offset_of!(XdpStats, pass_not_request) == 8 * Outcome::PassNotRequest as usize);
    assert!(offset_of!(XdpStats, pass_ndp_invalid) == 8 * Outcome::PassNdpInvalid as usize);
    assert!(offset_of!(XdpStats, pass_unknown_target) == 8 * Outcome::PassUnknownTarget as usize);
    assert!(offset_of!(XdpStats, pass_conflict) == 8 * Outcome::PassConflict as usize);
    assert!(offset_of!(XdpStats, pass_tx_error) == 8 * Outcome::PassTxError as usize);
    assert!(offset_of!(XdpStats, tx_arp_reply) == 8 * Outcome::TxArpReply as usize);
    assert!(offset_of!(XdpStats, tx_neighbor_advert) == 8 * Outcome::TxNeighborAdvert as usize);
    assert!(offset_of!(XdpStats, drop_suppressed) == 8 * Outcome::DropSuppressed as usize);
};

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are #[repr(C)] plain data with explicit padding and no
    // implicit holes (checked by the size assertions above), valid for any bit pattern.
    unsafe impl aya::Pod for super::VipKeyV4 {}
    unsafe impl aya::Pod for super::VipKeyV6 {}
    unsafe impl aya::Pod for super::VipState {}
    unsafe impl aya::Pod for super::XdpStats {}
}
