//! IPv6 Neighbor Discovery (RFC 4861) for IPv6 VIPs: answer Neighbor Solicitations
//! with a Neighbor Advertisement, count advertisements by other hosts as claims.
//!
//! The solicitation is verified whole (checksum included) and rewritten in place into
//! the advertisement: the target stays where it is, every other field is stored. The
//! checksums' terms that depend only on the VIP come with its table cell
//! ([`VipNdpTerms`](metallb_common::VipNdpTerms)); the rest is summed from the frame.
//! The usual solicitation (one source link-layer option) takes a shorter path than the
//! rest.

use aya_ebpf::{helpers::bpf_xdp_adjust_tail, programs::XdpContext};
use metallb_common::{
    Outcome, VipCellV6,
    ndp::{
        NA_FLAG_SOLICITED, NA_PAYLOAD_LEN, NEIGHBOR_ADVERT, NEIGHBOR_SOLICIT, NEXT_HEADER_ICMPV6,
        OPT_SOURCE_LL_ADDR, solicited_node_group,
    },
};

use crate::{
    ifindex,
    packet::{ETH_DST, ETH_SRC, Mac, MacWord, both_unicast, either_is, load, store},
    table::{Vip, find_v6},
};

/// Options this program walks: more than any real solicitation carries (source
/// link-layer address, nonce). A longer message is passed to the kernel.
const MAX_OPTIONS: usize = 3;
const OPT_LEN: usize = 8;

// The IPv6 header.
const IPV6_LEN: usize = 40;
const IP_PAYLOAD_LEN: usize = 4;
const IP_NEXT_HEADER: usize = 6;
const IP_HOP_LIMIT: usize = 7;
const IP_SRC: usize = 8;
const IP_DST: usize = 24;
// The ICMPv6 message of a solicitation or advertisement, from the IPv6 header.
const ND: usize = IPV6_LEN;
const ND_LEN: usize = 24;
const ND_CODE: usize = ND + 1;
const ND_FLAGS: usize = ND + 4;
const ND_TARGET: usize = ND + 8;
const ND_OPTIONS: usize = ND + ND_LEN;
/// The advertisement: IPv6 header, message, one target link-layer address option.
const NA_LEN: usize = ND_OPTIONS + OPT_LEN;
const _: () = assert!(NA_LEN - IPV6_LEN == NA_PAYLOAD_LEN as usize);

/// ff02::/64 and ::1:ff00:0/104 as native words: the solicited-node group of a
/// target is these with the target's last three bytes.
const GROUP: [u8; 16] = solicited_node_group([0; 16]);
const GROUP_HIGH: u64 = native_word(&GROUP, 0);
const GROUP_LOW: u64 = native_word(&GROUP, 8);
const GROUP_LOW_MASK: u64 = u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0]);
/// ff02::1, where an answer to a duplicate address detection probe goes.
const ALL_NODES_HIGH: u64 = GROUP_HIGH;
const ALL_NODES_LOW: u64 = u64::from_ne_bytes([0, 0, 0, 0, 0, 0, 0, 1]);
const ALL_NODES_MAC: Mac = Mac {
    head: u32::from_ne_bytes([0x33, 0x33, 0, 0]),
    tail: u16::from_ne_bytes([0, 1]),
};

/// The 8 bytes of `bytes` from `at`, as a native word.
const fn native_word(bytes: &[u8; 16], at: usize) -> u64 {
    let b = bytes;
    u64::from_ne_bytes([
        b[at],
        b[at + 1],
        b[at + 2],
        b[at + 3],
        b[at + 4],
        b[at + 5],
        b[at + 6],
        b[at + 7],
    ])
}

/// The sum of the four 32-bit halves of an address held as two native `u64` words,
/// for a one's complement sum (RFC 1071). The low halves' sum is the wrapped sum of
/// the words minus the high halves' sum shifted back up: no masking, no lost carry.
#[inline(always)]
const fn sum_words(high: u64, low: u64) -> u64 {
    let highs = (high >> 32) + (low >> 32);
    highs + high.wrapping_add(low).wrapping_sub(highs << 32)
}

/// The sum of an address at `addr`.
///
/// # Safety
/// As for [`load`], for 16 bytes.
#[inline(always)]
unsafe fn sum_addr(addr: usize) -> u64 {
    unsafe { sum_words(load(addr), load(addr + 8)) }
}

/// Folds a sum below 2^48 (our sums have a few dozen 32-bit terms) to 16 bits
/// (end-around carry): after three 16-bit folds it is at most 0xffff.
#[inline(always)]
fn fold(sum: u64) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// 0xffff's inverse modulo 2^64.
const INVERSE_OF_FFFF: u64 = 0xfffe_fffe_fffe_ffff;
const _: () = assert!(0xffff_u64.wrapping_mul(INVERSE_OF_FFFF) == 1);

/// Whether a message's sum, checksum included, verifies: folds to 0xffff. Folding
/// keeps the remainder by 0xffff (2^16 is 1 modulo 0xffff) and leaves 0 only for 0,
/// so that is: the sum is a nonzero multiple of 0xffff. Tested without folding:
/// multiplied by 0xffff's inverse modulo 2^64, the multiples of 0xffff, and only they,
/// become their quotient, at most `u64::MAX / 0xffff`; minus 1, 0 (the quotient of 0)
/// wraps above it.
#[inline(always)]
fn checksum_ok(sum: u64) -> bool {
    sum.wrapping_mul(INVERSE_OF_FFFF).wrapping_sub(1) < u64::MAX / 0xffff
}

/// The first byte of an address held as native words is the lowest of `high`.
#[inline(always)]
fn is_multicast(high: u64) -> bool {
    high & 0xff == 0xff
}

/// Bytes 8 to 11 of an address, in its `low` word.
const LOW_HEAD_MASK: u64 = u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
const MAPPED_LOW_HEAD: u64 = u64::from_ne_bytes([0, 0, 0xff, 0xff, 0, 0, 0, 0]);

/// Whether an address is in ::/96 (unspecified, loopback ::1, and the deprecated
/// IPv4-compatible addresses, RFC 4291 2.5.2, 2.5.3, 2.5.5.1) or ::ffff:0:0/96
/// (IPv4-mapped, 2.5.5.2): none of them is the address of a node on the link, and
/// none but :: (duplicate address detection) may be the source of a solicitation
/// that is answered. Loopback packets never leave a node, and an answer would carry
/// the address onto the link.
#[inline(always)]
fn is_embedded_v4_or_loopback(high: u64, low: u64) -> bool {
    high == 0 && (low & LOW_HEAD_MASK == 0 || low & LOW_HEAD_MASK == MAPPED_LOW_HEAD)
}

/// Handles the IPv6 packet at `L3` in the frame, seen in `vlan_id`.
#[inline(always)]
pub fn respond<const L3: usize>(ctx: &XdpContext, vlan_id: u16) -> Outcome {
    match usual_solicitation::<L3>(ctx, vlan_id) {
        Some(outcome) => outcome,
        None => respond_any::<L3>(ctx, vlan_id),
    }
}

/// The addresses of a solicitation or advertisement whose checksum verifies, as
/// native words, and the source's one's complement sum.
struct Verified {
    src_high: u64,
    src_low: u64,
    src_sum: u64,
    target_high: u64,
    target_low: u64,
}

/// A valid solicitation, as [`answer`] needs it.
struct Solicitation {
    target_high: u64,
    target_low: u64,
    reply: Reply,
}

/// Where the advertisement goes, and what of it the VIP's
/// [`advert_sum`](metallb_common::VipNdpTerms::advert_sum) leaves out.
struct Reply {
    mac: Mac,
    high: u64,
    low: u64,
    /// The sum of the destination address, and for an unsolicited advertisement the
    /// Solicited flag taken back out.
    sum: u64,
    flags: u8,
}

/// The solicited flag's word, and the sum that takes it out of another (adding its
/// complement is subtracting it, in one's complement arithmetic).
const SOLICITED_WORD: u16 = u16::from_ne_bytes([NA_FLAG_SOLICITED, 0]);
const WITHOUT_SOLICITED: u64 = (0xffff - SOLICITED_WORD) as u64;

impl Reply {
    /// To the asker, Solicited=1.
    #[inline(always)]
    fn to_asker(mac: Mac, high: u64, low: u64, sum: u64) -> Self {
        Reply {
            mac,
            high,
            low,
            sum,
            flags: NA_FLAG_SOLICITED,
        }
    }

    /// To all nodes, Solicited=0: the answer to a duplicate address detection probe
    /// (RFC 4861 7.2.4).
    const ALL_NODES: Reply = Reply {
        mac: ALL_NODES_MAC,
        high: ALL_NODES_HIGH,
        low: ALL_NODES_LOW,
        sum: sum_words(ALL_NODES_HIGH, ALL_NODES_LOW) + WITHOUT_SOLICITED,
        flags: 0,
    };
}

/// The first 8 bytes of the IPv6 header of the usual solicitation, and which of them
/// it fixes: version 6 (whatever the traffic class and flow label), payload length 32,
/// next header ICMPv6, hop limit 255.
const USUAL_HEAD: u64 = u64::from_ne_bytes([0x60, 0, 0, 0, 0, 32, NEXT_HEADER_ICMPV6, 255]);
const USUAL_HEAD_MASK: u64 = u64::from_ne_bytes([0xf0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
const SOLICIT_CODE_0: u16 = u16::from_ne_bytes([NEIGHBOR_SOLICIT, 0]);
const SOURCE_LL_OPTION: u16 = u16::from_ne_bytes([OPT_SOURCE_LL_ADDR, 1]);
/// The pseudo-header's length and next header words for a 32-byte message.
const USUAL_PSEUDO_SUM: u64 =
    32u16.to_be() as u64 + u16::from_ne_bytes([0, NEXT_HEADER_ICMPV6]) as u64;

/// The solicitation almost every asker sends (RFC 4861 4.3 with one source
/// link-layer address option, nothing after it), recognised with five compares and
/// answered here; `None` for any other packet, which [`respond_any`] then handles
/// whole. Its advertisement has exactly its size: the frame is not resized.
///
/// The target is looked up first: map lookups are calls as far as the compiler knows,
/// and what validation computes would otherwise have to be kept on the stack across
/// them. Validation still decides first: an invalid solicitation is passed as invalid,
/// and counted for no VIP, whether or not its target is ours. For a target of ours it
/// takes the VIP's precomputed terms: the solicited-node group, and the sums of the
/// destination and target.
#[inline(always)]
fn usual_solicitation<const L3: usize>(ctx: &XdpContext, vlan_id: u16) -> Option<Outcome> {
    let data = ctx.data();
    let ip = data + L3;
    let end = ctx.data_end();
    if ip + NA_LEN > end {
        return None;
    }
    // SAFETY (every load below): inside the frame, as checked just above.
    unsafe {
        if end - data != L3 + NA_LEN
            || load::<u64>(ip) & USUAL_HEAD_MASK != USUAL_HEAD
            || load::<u16>(ip + ND) != SOLICIT_CODE_0
            || load::<u16>(ip + ND_OPTIONS) != SOURCE_LL_OPTION
        {
            return None;
        }
        // All but the addresses, for the checksum.
        let rest_sum = || {
            USUAL_PSEUDO_SUM
                + load::<u32>(ip + ND) as u64
                + load::<u32>(ip + ND_FLAGS) as u64
                + load::<u32>(ip + ND_OPTIONS) as u64
                + load::<u32>(ip + ND_OPTIONS + 4) as u64
        };
        let source_ll = || Mac::load(ip + ND_OPTIONS + 2);
        let (target_high, target_low) = (load(ip + ND_TARGET), load(ip + ND_TARGET + 8));
        let Some(entry) = find_v6(target_high, target_low, ifindex(ctx), vlan_id) else {
            return Some(match validate::<L3>(data, rest_sum(), Some(source_ll())) {
                Ok(_) => Outcome::PassUnknownTarget,
                Err(outcome) => outcome,
            });
        };
        let (src_high, src_low): (u64, u64) = (load(ip + IP_SRC), load(ip + IP_SRC + 8));
        // From :: (duplicate address detection) a solicitation has no source
        // link-layer option (RFC 4861 7.1.1), and this one has: :: is refused here
        // with loopback and the IPv4-embedding addresses. The target is a VIP, never
        // multicast (pools refuse ff00::/8, as they refuse 224.0.0.0/4 for ARP).
        if is_multicast(src_high) || is_embedded_v4_or_loopback(src_high, src_low) {
            return Some(Outcome::PassNdpInvalid);
        }
        // To the target's solicited-node group, or to the target itself
        // (unreachability detection).
        let terms = &entry.cell.ndp;
        let (dst_high, dst_low): (u64, u64) = (load(ip + IP_DST), load(ip + IP_DST + 8));
        let dst_and_target_sum = if dst_high == GROUP_HIGH
            && dst_low == load::<u64>(terms.group_low.as_ptr() as usize)
        {
            terms.group_and_vip_sum
        } else if dst_high == target_high && dst_low == target_low {
            terms.vip_twice_sum
        } else {
            return Some(Outcome::PassNdpInvalid);
        };
        let src_sum = sum_words(src_high, src_low);
        if !checksum_ok(rest_sum() + src_sum + dst_and_target_sum as u64) {
            return Some(Outcome::PassNdpInvalid);
        }
        // Where the answer goes, and the frame's source: neither a group address nor
        // all zeroes, so that a spoofed option cannot make the answer a broadcast, a
        // multicast or a frame for a bridge's group addresses.
        let senders = Senders {
            asker: MacWord::from_option(ip + ND_OPTIONS),
            frame: MacWord::load(data + ETH_SRC),
        };
        if !both_unicast(senders.asker, senders.frame) {
            return Some(Outcome::PassMalformed);
        }
        // For the usual solicitation `write_advert` reads the asker's addresses again
        // from the frame: of this reply, only the sum and the flags are used.
        let reply = Reply::to_asker(source_ll(), src_high, src_low, src_sum);
        Some(answer::<L3, true>(ctx, data, entry, &reply, senders))
    }
}

/// The checks every solicitation and advertisement gets once its shape is known:
/// neither the source nor the target is multicast, the source is :: or not in the
/// prefixes of [`is_embedded_v4_or_loopback`], and the checksum verifies (`rest_sum`
/// covers all but the addresses).
///
/// # Safety
/// The IPv6 header and the 24-byte message at `ip` must be inside the frame.
#[inline(always)]
unsafe fn verify(ip: usize, rest_sum: u64) -> Result<Verified, Outcome> {
    let (src_high, src_low, target_high, target_low): (u64, u64, u64, u64) = unsafe {
        (
            load(ip + IP_SRC),
            load(ip + IP_SRC + 8),
            load(ip + ND_TARGET),
            load(ip + ND_TARGET + 8),
        )
    };
    if is_multicast(target_high)
        || is_multicast(src_high)
        || (is_embedded_v4_or_loopback(src_high, src_low) && src_low != 0)
    {
        return Err(Outcome::PassNdpInvalid);
    }
    let src_sum = sum_words(src_high, src_low);
    let target_sum = sum_words(target_high, target_low);
    if !checksum_ok(rest_sum + src_sum + unsafe { sum_addr(ip + IP_DST) } + target_sum) {
        return Err(Outcome::PassNdpInvalid);
    }
    Ok(Verified {
        src_high,
        src_low,
        src_sum,
        target_high,
        target_low,
    })
}

/// [`verify`], then the checks of a solicitation's destination.
///
/// # Safety
/// The Ethernet and IPv6 headers and the 24-byte message must be inside the frame
/// that starts at `data`.
#[inline(always)]
unsafe fn validate<const L3: usize>(
    data: usize,
    rest_sum: u64,
    source_ll: Option<Mac>,
) -> Result<Solicitation, Outcome> {
    let ip = data + L3;
    let addrs = unsafe { verify(ip, rest_sum) }?;
    // To the target itself (unreachability detection) or to its solicited-node group;
    // from :: (duplicate address detection) only to the group, and then without a
    // source link-layer option (RFC 4861 7.1.1).
    let (dst_high, dst_low): (u64, u64) = unsafe { (load(ip + IP_DST), load(ip + IP_DST + 8)) };
    let dad = addrs.src_high | addrs.src_low == 0;
    let to_group = dst_high == GROUP_HIGH
        && dst_low & GROUP_LOW_MASK == GROUP_LOW
        && (dst_low ^ addrs.target_low) >> 40 == 0;
    if !to_group && (dad || dst_high != addrs.target_high || dst_low != addrs.target_low) {
        return Err(Outcome::PassNdpInvalid);
    }
    let eth_src = unsafe { Mac::load(data + ETH_SRC) };
    let unicast = |mac: Mac| both_unicast(MacWord::of(mac), MacWord::of(eth_src));
    let reply = match (dad, source_ll) {
        (true, Some(_)) => return Err(Outcome::PassNdpInvalid),
        (true, None) if unicast(eth_src) => Reply::ALL_NODES,
        // The source link-layer address option, else the Ethernet source.
        (false, source_ll) if unicast(source_ll.unwrap_or(eth_src)) => Reply::to_asker(
            source_ll.unwrap_or(eth_src),
            addrs.src_high,
            addrs.src_low,
            addrs.src_sum,
        ),
        _ => return Err(Outcome::PassMalformed),
    };
    Ok(Solicitation {
        target_high: addrs.target_high,
        target_low: addrs.target_low,
        reply,
    })
}

/// Any IPv6 packet: passes what is not a valid solicitation, counts advertisements
/// that claim our VIPs, answers the rest.
#[inline(always)]
fn respond_any<const L3: usize>(ctx: &XdpContext, vlan_id: u16) -> Outcome {
    let end = ctx.data_end();
    let data = ctx.data();
    let ip = data + L3;
    if ip + IPV6_LEN > end {
        return Outcome::PassMalformed;
    }
    // SAFETY (every load below): inside the frame, as checked against `end` before.
    if unsafe { load::<u8>(ip) } >> 4 != 6 {
        return Outcome::PassMalformed;
    }
    // Extension headers are not walked: such a packet is passed as "not NDP".
    if unsafe { load::<u8>(ip + IP_NEXT_HEADER) } != NEXT_HEADER_ICMPV6 {
        return Outcome::PassNotArpOrNdp;
    }
    if ip + ND + 1 > end {
        return Outcome::PassMalformed;
    }
    let icmp_type = unsafe { load::<u8>(ip + ND) };
    if icmp_type != NEIGHBOR_SOLICIT && icmp_type != NEIGHBOR_ADVERT {
        return Outcome::PassNotArpOrNdp;
    }
    if ip + ND_OPTIONS > end {
        return Outcome::PassMalformed;
    }
    // RFC 4861 7.1: hop limit 255 (not forwarded), code 0, length of at least 24 in
    // whole 8-byte options, valid checksum.
    if unsafe { load::<u8>(ip + IP_HOP_LIMIT) } != 255 || unsafe { load::<u8>(ip + ND_CODE) } != 0 {
        return Outcome::PassNdpInvalid;
    }
    let payload_len_word: u16 = unsafe { load(ip + IP_PAYLOAD_LEN) };
    let payload_len = u16::from_be(payload_len_word) as usize;
    if payload_len < ND_LEN
        || payload_len > ND_LEN + MAX_OPTIONS * OPT_LEN
        || (payload_len - ND_LEN) % OPT_LEN != 0
    {
        return Outcome::PassNdpInvalid;
    }
    if ip + ND + payload_len > end {
        return Outcome::PassMalformed;
    }
    // The checksum covers the pseudo-header (addresses, length, next header) and the
    // message, options included: their words are added while walking them.
    let mut rest_sum = payload_len_word as u64
        + u16::from_ne_bytes([0, NEXT_HEADER_ICMPV6]) as u64
        + unsafe { load::<u32>(ip + ND) as u64 + load::<u32>(ip + ND_FLAGS) as u64 };
    let mut source_ll: Option<Mac> = None;
    for i in 0..MAX_OPTIONS {
        let offset = ND_LEN + i * OPT_LEN;
        if offset >= payload_len {
            break;
        }
        let opt = ip + ND + offset;
        if opt + OPT_LEN > end {
            return Outcome::PassMalformed;
        }
        // Length 0 is invalid; longer options are legal but not walked here.
        if unsafe { load::<u8>(opt + 1) } != 1 {
            return Outcome::PassNdpInvalid;
        }
        rest_sum += unsafe { load::<u32>(opt) as u64 + load::<u32>(opt + 4) as u64 };
        if unsafe { load::<u8>(opt) } == OPT_SOURCE_LL_ADDR {
            source_ll = Some(unsafe { Mac::load(opt + 2) });
        }
    }
    if icmp_type == NEIGHBOR_ADVERT {
        // SAFETY: the header and message are inside the frame, as checked above.
        let addrs = match unsafe { verify(ip, rest_sum) } {
            Ok(addrs) => addrs,
            Err(outcome) => return outcome,
        };
        // A valid advertisement for a VIP we answer for: another host claims it.
        return match find_v6(addrs.target_high, addrs.target_low, ifindex(ctx), vlan_id) {
            Some(mut entry) => entry.take_claim(),
            None => Outcome::PassNotRequest,
        };
    }
    // SAFETY: as above.
    let solicitation = match unsafe { validate::<L3>(data, rest_sum, source_ll) } {
        Ok(solicitation) => solicitation,
        Err(outcome) => return outcome,
    };
    let Solicitation {
        target_high,
        target_low,
        reply,
    } = solicitation;
    match find_v6(target_high, target_low, ifindex(ctx), vlan_id) {
        Some(entry) => {
            // SAFETY: the Ethernet header is inside the frame, as checked before. Read
            // again: what was read before the lookup (a call, as far as the compiler
            // knows) would have been kept on the stack.
            let frame = unsafe { MacWord::load_again(data + ETH_SRC) };
            let senders = Senders {
                asker: MacWord::of(reply.mac),
                frame,
            };
            answer::<L3, false>(ctx, data, entry, &reply, senders)
        }
        None => Outcome::PassUnknownTarget,
    }
}

/// Who sent the solicitation: the address the advertisement goes to, and the frame's
/// Ethernet source. The usual solicitation has both at hand from its own checks.
struct Senders {
    asker: MacWord,
    frame: MacWord,
}

/// Answers a valid solicitation for one of our VIPs, in the frame at `data`.
/// `USUAL`: the frame is the usual solicitation ([`usual_solicitation`]): exactly as
/// long as the advertisement, known to be inside from `data` on, and with the asker's
/// address and link-layer address where `reply` took them from (the IPv6 source, the
/// one option).
#[inline(always)]
fn answer<const L3: usize, const USUAL: bool>(
    ctx: &XdpContext,
    data: usize,
    mut entry: Vip<VipCellV6>,
    reply: &Reply,
    senders: Senders,
) -> Outcome {
    // Not to ourselves, nor for a frame that comes from us (a loop, a reflecting
    // switch).
    if either_is(senders.asker, senders.frame, entry.mac_word()) {
        return Outcome::PassMalformed;
    }
    if let Some(outcome) = entry.take_request() {
        return outcome;
    }
    let checksum = !fold(entry.cell.ndp.advert_sum as u64 + reply.sum);
    if !write_advert::<L3, USUAL>(
        ctx,
        data,
        reply,
        entry.mac(),
        &entry.cell.ndp.target_ll_option,
        checksum,
    ) {
        return Outcome::PassTxError;
    }
    entry.counters.replies += 1;
    Outcome::TxNeighborAdvert
}

/// Turns the solicitation into the advertisement: resizes the frame to exactly the
/// advertisement unless it is the `USUAL` one (see [`answer`]), then stores every
/// field that differs.
///
/// What the frame still holds is read from it here: the target (it stays where it
/// is, and moves to the source), and for the usual solicitation the asker's address
/// and link-layer address. Passed in from before the map lookups (calls, as far as
/// the compiler knows), they were kept on the stack: five stores more on the NS hit
/// path.
#[inline(always)]
fn write_advert<const L3: usize, const USUAL: bool>(
    ctx: &XdpContext,
    mut data: usize,
    reply: &Reply,
    our_mac: Mac,
    target_ll_option: &[u8; 8],
    checksum: u16,
) -> bool {
    if !USUAL {
        let delta = (L3 + NA_LEN) as i32 - (ctx.data_end() - ctx.data()) as i32;
        // SAFETY: the helper checks the new size against the frame's buffer.
        if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
            return false;
        }
        data = ctx.data();
        if data + L3 + NA_LEN > ctx.data_end() {
            return false;
        }
    }
    let ip = data + L3;
    // SAFETY: inside the frame: the caller's check still holds for the `USUAL`
    // frame (nothing has moved it since), the check above for the others. Every load
    // comes before the store that overwrites its bytes.
    unsafe {
        let (target_high, target_low): (u64, u64) =
            (load(ip + ND_TARGET), load(ip + ND_TARGET + 8));
        let (to_mac, to_high, to_low) = if USUAL {
            (
                Mac::load(ip + ND_OPTIONS + 2),
                load::<u64>(ip + IP_SRC),
                load::<u64>(ip + IP_SRC + 8),
            )
        } else {
            (reply.mac, reply.high, reply.low)
        };
        to_mac.store(data + ETH_DST);
        our_mac.store(data + ETH_SRC);
        store(ip, u32::from_ne_bytes([0x60, 0, 0, 0]));
        store(ip + IP_PAYLOAD_LEN, NA_PAYLOAD_LEN.to_be());
        store(
            ip + IP_NEXT_HEADER,
            u16::from_ne_bytes([NEXT_HEADER_ICMPV6, 255]),
        );
        store(ip + IP_SRC, target_high);
        store(ip + IP_SRC + 8, target_low);
        store(ip + IP_DST, to_high);
        store(ip + IP_DST + 8, to_low);
        // Type, code, checksum, flags and reserved bytes: one word.
        let [check_0, check_1] = checksum.to_ne_bytes();
        store(
            ip + ND,
            u64::from_ne_bytes([NEIGHBOR_ADVERT, 0, check_0, check_1, reply.flags, 0, 0, 0]),
        );
        // SAFETY (source): 8 bytes of the VIP's cell, 8-byte aligned.
        store(
            ip + ND_OPTIONS,
            load::<u64>(target_ll_option.as_ptr() as usize),
        );
    }
    true
}
