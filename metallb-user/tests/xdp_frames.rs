//! Exact-bytes tests of the XDP responder through BPF_PROG_TEST_RUN (needs root and
//! bpffs). Every case runs one crafted frame through the real program and checks the
//! verdict, every byte of the frame it leaves, the one outcome it must count (in the
//! frame totals: the global counters, and the VIPs' replies for answers) and the
//! per-VIP counters. Each test runs in a network namespace of its own.

mod support;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use etherparse::{ArpOperation, IcmpEchoHeader, Icmpv6Type, PacketBuilder};
use metallb_common::{Outcome, VipAction, VipViewKey, VipViewValue, XdpStats};
use metallb_testkit::lab::{NetnsGuard, ScratchPinDir};
use metallb_user::datapath::{
    Datapath, DatapathOptions,
    iface::MacAddr,
    maps::{VipConfig, VipCounters, VipKey},
};
use support::*;

const ETH_HLEN: usize = 14;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;

const ASKER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Differs from ASKER_MAC so the tests see which one the reply goes to.
const ASKER_OPTION_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const OTHER_HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
const ZERO_MAC: [u8; 6] = [0; 6];
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
/// A bridge's group address (STP): a frame to it stays on one segment and is
/// consumed by every bridge there.
const BRIDGE_GROUP_MAC: [u8; 6] = [0x01, 0x80, 0xc2, 0, 0, 0];
const IPV4_MULTICAST_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0, 0, 1];
/// Group addresses and all zeroes: never the source of a frame, never where an
/// answer may go.
const NOT_UNICAST_MACS: [(&str, [u8; 6]); 5] = [
    ("broadcast", BROADCAST),
    ("IPv4 multicast", IPV4_MULTICAST_MAC),
    ("IPv6 multicast", ALL_NODES_MAC),
    ("bridge group", BRIDGE_GROUP_MAC),
    ("all-zero", ZERO_MAC),
];

const ASKER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP_SUPPRESSED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
const VIP_OTHER_IF: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 102);
const VIP_VLAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 110);
const UNKNOWN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);

const ASKER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const VIP6_SUPPRESSED: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x101);
const VIP6_VLAN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x110);
const UNKNOWN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The interface each fixture creates in its namespace (a veth, whose peer the kernel
/// numbers first).
const IF: u32 = 3;
const IF_NAME: &str = "xdp-test0";
const OTHER_IF: u32 = 99;
const VLAN: u16 = 10;

/// Field drop order: the datapath first, then its pins, then back to our namespace.
struct Fixture {
    dp: Datapath,
    _pins: ScratchPinDir,
    _netns: NetnsGuard,
}

fn key(addr: impl Into<IpAddr>, ifindex: u32, vlan_id: u16) -> VipKey {
    VipKey {
        addr: addr.into(),
        ifindex,
        vlan_id,
    }
}

fn fixture() -> Fixture {
    let netns = NetnsGuard::enter_new().expect("enter a new network namespace");
    metallb_testkit::lab::run(
        "ip",
        &[
            "link",
            "add",
            IF_NAME,
            "type",
            "veth",
            "peer",
            "name",
            "xdp-test1",
        ],
    )
    .expect("add veth");
    metallb_testkit::lab::run("ip", &["link", "set", IF_NAME, "up"]).expect("veth up");
    assert_eq!(nix::net::if_::if_nametoindex(IF_NAME).expect("ifindex"), IF);
    let pins = ScratchPinDir::new("frames");
    let mut dp = Datapath::load(&DatapathOptions {
        pin_dir: pins.path.clone(),
        max_vips: 1024,
    })
    .expect("load the datapath");
    let answer = VipConfig {
        mac: MacAddr(NODE_MAC),
        action: VipAction::Answer,
    };
    let suppress = VipConfig {
        mac: MacAddr(NODE_MAC),
        action: VipAction::Suppress,
    };
    let desired = BTreeMap::from([
        (key(VIP, IF, 0), answer),
        (key(VIP_SUPPRESSED, IF, 0), suppress),
        (key(VIP_OTHER_IF, OTHER_IF, 0), answer),
        (key(VIP_VLAN, IF, VLAN), answer),
        (key(VIP6, IF, 0), answer),
        (key(VIP6_SUPPRESSED, IF, 0), suppress),
        (key(VIP6_VLAN, IF, VLAN), answer),
    ]);
    dp.enable_userspace().expect("start the userspace datapath");
    let report = dp.sync(&desired);
    assert!(report.errors.is_empty(), "sync errors: {:?}", report.errors);
    assert_eq!(report.added.len(), desired.len());
    Fixture {
        dp,
        _pins: pins,
        _netns: netns,
    }
}

/// The two datapaths every table runs against: the XDP program (BPF_PROG_TEST_RUN)
/// and the userspace datapath (its sockets' path, the socket left out), with one
/// fixture: the same entries, the same counters.
#[derive(Clone, Copy, Debug)]
enum Path {
    Xdp,
    Userspace,
}

const PATHS: [Path; 2] = [Path::Xdp, Path::Userspace];

/// The verdict and the frame left, as `Datapath::test_run` gives them.
fn run_on(dp: &Datapath, path: Path, frame: &[u8]) -> (u32, Vec<u8>) {
    match path {
        Path::Xdp => dp.test_run(frame, IF).expect("test run"),
        Path::Userspace => dp.userspace_test_run(frame, IF).expect("userspace run"),
    }
}

struct Case {
    name: String,
    frame: Vec<u8>,
    verdict: u32,
    /// The frame the program must leave; `None`: the input, untouched.
    output: Option<Vec<u8>>,
    outcome: Outcome,
    /// The VIP entry whose counters must change, and by how much; all others must not.
    vip: Option<(VipKey, VipCounters)>,
}

fn counters(requests: u64, replies: u64, conflicts: u64, suppressed: u64) -> VipCounters {
    VipCounters {
        requests,
        replies,
        conflicts,
        suppressed,
    }
}

fn answered() -> VipCounters {
    counters(1, 1, 0, 0)
}

fn pass(name: &str, frame: Vec<u8>, outcome: Outcome) -> Case {
    Case {
        name: name.into(),
        frame,
        verdict: XDP_PASS,
        output: None,
        outcome,
        vip: None,
    }
}

fn vip_counters(dp: &Datapath) -> BTreeMap<VipKey, VipCounters> {
    dp.vips()
        .expect("read VIPs")
        .into_iter()
        .map(|r| (r.key, r.counters))
        .collect()
}

fn stats_delta(before: &XdpStats, after: &XdpStats) -> Vec<(Outcome, u64)> {
    Outcome::ALL
        .into_iter()
        .map(|o| (o, after.get(o) - before.get(o)))
        .filter(|(_, d)| *d != 0)
        .collect()
}

/// The metrics' view of the counters (the mapped arrays, read at scrape time) gives
/// what the records read for `inspect` give: per VIP summed over its interfaces, each
/// entry's claims, every answer (removed VIPs' too).
fn assert_view_agrees(dp: &Datapath) {
    let records = dp.vips().expect("read VIPs");
    let view = dp.counter_view().expect("counter view");
    assert_eq!(view.revision(), dp.revision());
    let mut per_ip: BTreeMap<IpAddr, VipCounters> = BTreeMap::new();
    for r in &records {
        let sum = per_ip.entry(r.key.addr).or_default();
        sum.requests += r.counters.requests;
        sum.replies += r.counters.replies;
        sum.conflicts += r.counters.conflicts;
        sum.suppressed += r.counters.suppressed;
    }
    assert_eq!(view.per_ip(), per_ip.into_iter().collect::<Vec<_>>());
    let conflicts: Vec<(IpAddr, bool, u64)> = records
        .iter()
        .map(|r| {
            let answered = r.action == Some(VipAction::Answer);
            (r.key.addr, answered, r.counters.conflicts)
        })
        .collect();
    assert_eq!(view.conflicts().collect::<Vec<_>>(), conflicts);
    let frames = dp.frame_counts(&records).expect("frame counts");
    assert_eq!(
        view.replies(),
        (frames.tx_arp_reply, frames.tx_neighbor_advert)
    );
}

/// Every frame so far, by outcome (answers are counted per VIP, and added up here).
fn frame_counts(dp: &Datapath) -> XdpStats {
    dp.frame_counts(&dp.vips().expect("read VIPs"))
        .expect("frame counts")
}

fn run_cases(dp: &Datapath, cases: Vec<Case>) {
    assert!(!cases.is_empty());
    for (case, path) in cases.iter().flat_map(|case| PATHS.map(|path| (case, path))) {
        let stats_before = frame_counts(dp);
        let vips_before = vip_counters(dp);
        let (verdict, out) = run_on(dp, path, &case.frame);
        let stats_after = frame_counts(dp);
        let name = &format!("{} ({path:?})", case.name);
        assert_eq!(
            verdict,
            case.verdict,
            "{name}: verdict (counted: {:?})",
            stats_delta(&stats_before, &stats_after)
        );
        let expected = case.output.as_ref().unwrap_or(&case.frame);
        assert_eq!(
            &out,
            expected,
            "{name}: output frame\n got:\n{}\n want:\n{}",
            hex(&out),
            hex(expected)
        );
        assert_eq!(
            stats_delta(&stats_before, &stats_after),
            vec![(case.outcome, 1)],
            "{name}: global counters"
        );
        for (key, after) in vip_counters(dp) {
            let before = vips_before.get(&key).copied().unwrap_or_default();
            let delta = counters(
                after.requests - before.requests,
                after.replies - before.replies,
                after.conflicts - before.conflicts,
                after.suppressed - before.suppressed,
            );
            let want = match case.vip {
                Some((k, d)) if k == key => d,
                _ => VipCounters::default(),
            };
            assert_eq!(delta, want, "{name}: counters of {key:?}");
        }
    }
    assert_view_agrees(dp);
}

fn arp_request(sender_ip: Ipv4Addr, target_ip: Ipv4Addr, vlan: Option<u16>) -> Vec<u8> {
    arp(
        ArpOperation::REQUEST,
        ASKER_MAC,
        BROADCAST,
        (ASKER_MAC, sender_ip),
        (ZERO_MAC, target_ip),
        vlan,
    )
}

fn arp_reply_from_node(target_ip: Ipv4Addr, vlan: Option<u16>) -> Vec<u8> {
    arp(
        ArpOperation::REPLY,
        NODE_MAC,
        ASKER_MAC,
        (NODE_MAC, VIP),
        (ASKER_MAC, target_ip),
        vlan,
    )
}

/// Sets bytes of a frame at an offset (to break one field of a valid frame).
fn patched(mut frame: Vec<u8>, offset: usize, bytes: &[u8]) -> Vec<u8> {
    frame[offset..offset + bytes.len()].copy_from_slice(bytes);
    frame
}

#[test]
fn arp_frames_exact_bytes_and_counters() {
    let f = fixture();
    let request = arp_request(ASKER_V4, VIP, None);
    assert_eq!(request.len(), 42);
    // Offset of the ARP header in an untagged frame.
    const A: usize = 14;

    let mut padded = request.clone();
    padded.resize(60, 0);
    let mut padded_reply = arp_reply_from_node(ASKER_V4, None);
    padded_reply.resize(60, 0);

    let mut cases = vec![
        Case {
            name: "plain request".into(),
            frame: request.clone(),
            verdict: XDP_TX,
            output: Some(arp_reply_from_node(ASKER_V4, None)),
            outcome: Outcome::TxArpReply,
            vip: Some((key(VIP, IF, 0), answered())),
        },
        Case {
            name: "request padded to 60 bytes keeps its padding".into(),
            frame: padded,
            verdict: XDP_TX,
            output: Some(padded_reply),
            outcome: Outcome::TxArpReply,
            vip: Some((key(VIP, IF, 0), answered())),
        },
        Case {
            name: "probe from 0.0.0.0".into(),
            frame: arp_request(Ipv4Addr::UNSPECIFIED, VIP, None),
            verdict: XDP_TX,
            output: Some(arp_reply_from_node(Ipv4Addr::UNSPECIFIED, None)),
            outcome: Outcome::TxArpReply,
            vip: Some((key(VIP, IF, 0), answered())),
        },
        Case {
            name: "VLAN-tagged request gets a tagged reply".into(),
            frame: arp_request(ASKER_V4, VIP_VLAN, Some(VLAN)),
            verdict: XDP_TX,
            output: Some(arp(
                ArpOperation::REPLY,
                NODE_MAC,
                ASKER_MAC,
                (NODE_MAC, VIP_VLAN),
                (ASKER_MAC, ASKER_V4),
                Some(VLAN),
            )),
            outcome: Outcome::TxArpReply,
            vip: Some((key(VIP_VLAN, IF, VLAN), answered())),
        },
        Case {
            name: "priority-tagged (VLAN 0) request is the untagged network".into(),
            frame: arp_request(ASKER_V4, VIP, Some(0)),
            verdict: XDP_TX,
            output: Some(arp_reply_from_node(ASKER_V4, Some(0))),
            outcome: Outcome::TxArpReply,
            vip: Some((key(VIP, IF, 0), answered())),
        },
        pass(
            "reply is never answered",
            arp(
                ArpOperation::REPLY,
                ASKER_MAC,
                NODE_MAC,
                (ASKER_MAC, ASKER_V4),
                (NODE_MAC, VIP),
                None,
            ),
            Outcome::PassNotRequest,
        ),
        pass(
            "other ARP operation",
            arp(
                ArpOperation::from(3),
                ASKER_MAC,
                BROADCAST,
                (ASKER_MAC, ASKER_V4),
                (ZERO_MAC, VIP),
                None,
            ),
            Outcome::PassNotRequest,
        ),
        Case {
            vip: Some((key(VIP, IF, 0), counters(0, 0, 1, 0))),
            ..pass(
                "reply from another host claiming our VIP is a conflict",
                arp(
                    ArpOperation::REPLY,
                    OTHER_HOST_MAC,
                    BROADCAST,
                    (OTHER_HOST_MAC, VIP),
                    (BROADCAST, VIP),
                    None,
                ),
                Outcome::PassConflict,
            )
        },
        Case {
            vip: Some((key(VIP, IF, 0), counters(1, 0, 1, 0))),
            ..pass(
                "gratuitous request from another host for our VIP is a conflict",
                arp(
                    ArpOperation::REQUEST,
                    OTHER_HOST_MAC,
                    BROADCAST,
                    (OTHER_HOST_MAC, VIP),
                    (ZERO_MAC, VIP),
                    None,
                ),
                Outcome::PassConflict,
            )
        },
        pass(
            "unknown target",
            arp_request(ASKER_V4, UNKNOWN_V4, None),
            Outcome::PassUnknownTarget,
        ),
        pass(
            "VIP announced on another interface",
            arp_request(ASKER_V4, VIP_OTHER_IF, None),
            Outcome::PassUnknownTarget,
        ),
        pass(
            "VLAN VIP asked untagged",
            arp_request(ASKER_V4, VIP_VLAN, None),
            Outcome::PassUnknownTarget,
        ),
        pass(
            "untagged VIP asked in another VLAN",
            arp_request(ASKER_V4, VIP, Some(20)),
            Outcome::PassUnknownTarget,
        ),
        pass(
            "double 802.1Q tag",
            {
                let mut frame = arp_request(ASKER_V4, VIP_VLAN, Some(VLAN));
                frame.splice(12..12, [0x81, 0x00, 0x00, 20]);
                frame
            },
            Outcome::PassVlanUnsupported,
        ),
        pass(
            "802.1ad service tag",
            patched(
                arp_request(ASKER_V4, VIP_VLAN, Some(VLAN)),
                12,
                &[0x88, 0xa8],
            ),
            Outcome::PassVlanUnsupported,
        ),
        pass(
            "htype not Ethernet",
            patched(request.clone(), A, &[0, 6]),
            Outcome::PassMalformed,
        ),
        pass(
            "ptype not IPv4",
            patched(request.clone(), A + 2, &[0x86, 0xdd]),
            Outcome::PassMalformed,
        ),
        pass(
            "hlen not 6",
            patched(request.clone(), A + 4, &[8]),
            Outcome::PassMalformed,
        ),
        pass(
            "plen not 4",
            patched(request.clone(), A + 5, &[16]),
            Outcome::PassMalformed,
        ),
        Case {
            name: "reply goes to ar$sha, not to the Ethernet source".into(),
            frame: arp(
                ArpOperation::REQUEST,
                ASKER_MAC,
                BROADCAST,
                (ASKER_OPTION_MAC, ASKER_V4),
                (ZERO_MAC, VIP),
                None,
            ),
            verdict: XDP_TX,
            output: Some(arp(
                ArpOperation::REPLY,
                NODE_MAC,
                ASKER_OPTION_MAC,
                (NODE_MAC, VIP),
                (ASKER_OPTION_MAC, ASKER_V4),
                None,
            )),
            outcome: Outcome::TxArpReply,
            vip: Some((key(VIP, IF, 0), answered())),
        },
        pass(
            "sender MAC is our own",
            patched(request.clone(), A + 8, &NODE_MAC),
            Outcome::PassMalformed,
        ),
        pass(
            "Ethernet source is our own",
            patched(request.clone(), 6, &NODE_MAC),
            Outcome::PassMalformed,
        ),
        pass(
            "our own gratuitous ARP come back is no conflict",
            arp(
                ArpOperation::REQUEST,
                NODE_MAC,
                BROADCAST,
                (NODE_MAC, VIP),
                (ZERO_MAC, VIP),
                None,
            ),
            Outcome::PassMalformed,
        ),
        Case {
            name: "suppressed VIP is dropped".into(),
            frame: arp_request(ASKER_V4, VIP_SUPPRESSED, None),
            verdict: XDP_DROP,
            output: None,
            outcome: Outcome::DropSuppressed,
            vip: Some((key(VIP_SUPPRESSED, IF, 0), counters(1, 0, 0, 1))),
        },
        pass(
            "IPv4 frame passes through",
            {
                let mut frame = Vec::new();
                PacketBuilder::ethernet2(ASKER_MAC, NODE_MAC)
                    .ipv4(ASKER_V4.octets(), VIP.octets(), 64)
                    .udp(5000, 53)
                    .write(&mut frame, b"payload")
                    .expect("udp frame");
                frame
            },
            Outcome::PassNotArpOrNdp,
        ),
    ];
    for (what, mac) in NOT_UNICAST_MACS {
        cases.push(pass(
            &format!("{what} sender MAC"),
            patched(request.clone(), A + 8, &mac),
            Outcome::PassMalformed,
        ));
        cases.push(pass(
            &format!("{what} Ethernet source"),
            patched(request.clone(), 6, &mac),
            Outcome::PassMalformed,
        ));
    }
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (as no driver
    // delivers them); every length from there on is tried.
    for len in ETH_HLEN..request.len() {
        cases.push(pass(
            &format!("request truncated to {len} bytes"),
            request[..len].to_vec(),
            Outcome::PassMalformed,
        ));
    }
    run_cases(&f.dp, cases);
}

fn sllao(mac: [u8; 6]) -> Vec<u8> {
    ll_option(1, mac)
}

/// A solicitation for `target` from the asker to the target's solicited-node group.
fn ns_to_group(target: Ipv6Addr, options: &[&[u8]], vlan: Option<u16>) -> Vec<u8> {
    let (group, group_mac) = solicited_node(target);
    ns(ASKER_MAC, group_mac, ASKER_V6, group, target, options, vlan)
}

/// A solicitation for `target` from `source` to the target's solicited-node group.
fn ns_to_group_from(source: Ipv6Addr, target: Ipv6Addr, options: &[&[u8]]) -> Vec<u8> {
    let (group, group_mac) = solicited_node(target);
    ns(ASKER_MAC, group_mac, source, group, target, options, None)
}

fn solicited_na(dst_mac: [u8; 6], target: Ipv6Addr, vlan: Option<u16>) -> Vec<u8> {
    na(
        NODE_MAC, dst_mac, target, ASKER_V6, target, true, false, vlan,
    )
}

#[test]
fn ndp_frames_exact_bytes_and_counters() {
    let f = fixture();
    let option = sllao(ASKER_OPTION_MAC);
    let valid = ns_to_group(VIP6, &[&option], None);
    assert_eq!(valid.len(), 86);
    // Offsets in an untagged frame: IPv6 header, then ICMPv6.
    const IP: usize = 14;
    const ICMP: usize = IP + 40;
    let nonce = [14u8, 1, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02];
    let (vip_group, vip_group_mac) = solicited_node(VIP6);

    let mut cases = vec![
        Case {
            name: "NS to the solicited-node group, reply to the source link-layer option".into(),
            frame: valid.clone(),
            verdict: XDP_TX,
            output: Some(solicited_na(ASKER_OPTION_MAC, VIP6, None)),
            outcome: Outcome::TxNeighborAdvert,
            vip: Some((key(VIP6, IF, 0), answered())),
        },
        Case {
            name: "NS unicast to the VIP (unreachability detection)".into(),
            frame: ns(ASKER_MAC, NODE_MAC, ASKER_V6, VIP6, VIP6, &[&option], None),
            verdict: XDP_TX,
            output: Some(solicited_na(ASKER_OPTION_MAC, VIP6, None)),
            outcome: Outcome::TxNeighborAdvert,
            vip: Some((key(VIP6, IF, 0), answered())),
        },
        Case {
            name: "NS without source link-layer option: reply to the Ethernet source, frame grows"
                .into(),
            frame: ns(ASKER_MAC, NODE_MAC, ASKER_V6, VIP6, VIP6, &[], None),
            verdict: XDP_TX,
            output: Some(solicited_na(ASKER_MAC, VIP6, None)),
            outcome: Outcome::TxNeighborAdvert,
            vip: Some((key(VIP6, IF, 0), answered())),
        },
        Case {
            name: "DAD probe (with nonce): advertisement to all nodes, Solicited=0".into(),
            frame: ns(
                ASKER_MAC,
                vip_group_mac,
                Ipv6Addr::UNSPECIFIED,
                vip_group,
                VIP6,
                &[&nonce],
                None,
            ),
            verdict: XDP_TX,
            output: Some(na(
                NODE_MAC,
                ALL_NODES_MAC,
                VIP6,
                ALL_NODES,
                VIP6,
                false,
                false,
                None,
            )),
            outcome: Outcome::TxNeighborAdvert,
            vip: Some((key(VIP6, IF, 0), answered())),
        },
        Case {
            name: "DAD probe without options".into(),
            frame: ns(
                ASKER_MAC,
                vip_group_mac,
                Ipv6Addr::UNSPECIFIED,
                vip_group,
                VIP6,
                &[],
                None,
            ),
            verdict: XDP_TX,
            output: Some(na(
                NODE_MAC,
                ALL_NODES_MAC,
                VIP6,
                ALL_NODES,
                VIP6,
                false,
                false,
                None,
            )),
            outcome: Outcome::TxNeighborAdvert,
            vip: Some((key(VIP6, IF, 0), answered())),
        },
        Case {
            name: "NS with two options (nonce, source link-layer): frame shrinks".into(),
            frame: ns_to_group(VIP6, &[&nonce, &option], None),
            verdict: XDP_TX,
            output: Some(solicited_na(ASKER_OPTION_MAC, VIP6, None)),
            outcome: Outcome::TxNeighborAdvert,
            vip: Some((key(VIP6, IF, 0), answered())),
        },
        Case {
            name: "NS with bytes after its IPv6 payload: the advertisement drops them".into(),
            frame: [valid.clone(), vec![0xee; 10]].concat(),
            verdict: XDP_TX,
            output: Some(solicited_na(ASKER_OPTION_MAC, VIP6, None)),
            outcome: Outcome::TxNeighborAdvert,
            vip: Some((key(VIP6, IF, 0), answered())),
        },
        Case {
            name: "VLAN-tagged NS gets a tagged advertisement".into(),
            frame: ns_to_group(VIP6_VLAN, &[&option], Some(VLAN)),
            verdict: XDP_TX,
            output: Some(solicited_na(ASKER_OPTION_MAC, VIP6_VLAN, Some(VLAN))),
            outcome: Outcome::TxNeighborAdvert,
            vip: Some((key(VIP6_VLAN, IF, VLAN), answered())),
        },
        Case {
            name: "suppressed VIP is dropped".into(),
            frame: ns_to_group(VIP6_SUPPRESSED, &[&option], None),
            verdict: XDP_DROP,
            output: None,
            outcome: Outcome::DropSuppressed,
            vip: Some((key(VIP6_SUPPRESSED, IF, 0), counters(1, 0, 0, 1))),
        },
        pass(
            "unknown target",
            ns_to_group(UNKNOWN_V6, &[&option], None),
            Outcome::PassUnknownTarget,
        ),
        pass(
            "VLAN VIP asked untagged",
            ns_to_group(VIP6_VLAN, &[&option], None),
            Outcome::PassUnknownTarget,
        ),
        pass(
            "hop limit 254",
            icmpv6(
                ASKER_MAC,
                vip_group_mac,
                ASKER_V6,
                vip_group,
                254,
                Icmpv6Type::NeighborSolicitation,
                &nd_body(VIP6, &[&option]),
                None,
            ),
            Outcome::PassNdpInvalid,
        ),
        pass(
            "code 1",
            icmpv6(
                ASKER_MAC,
                vip_group_mac,
                ASKER_V6,
                vip_group,
                255,
                Icmpv6Type::Unknown {
                    type_u8: 135,
                    code_u8: 1,
                    bytes5to8: [0; 4],
                },
                &nd_body(VIP6, &[&option]),
                None,
            ),
            Outcome::PassNdpInvalid,
        ),
        pass(
            "bad checksum",
            {
                let mut frame = valid.clone();
                frame[ICMP + 2] ^= 0x01;
                frame
            },
            Outcome::PassNdpInvalid,
        ),
        pass(
            "hop-by-hop extension header",
            {
                let mut frame = valid.clone();
                // Next header: hop-by-hop; payload length +8; an 8-byte header with
                // PadN, pointing on to ICMPv6. The ICMPv6 checksum stays valid.
                frame[IP + 6] = 0;
                let len = u16::from_be_bytes([frame[IP + 4], frame[IP + 5]]) + 8;
                frame[IP + 4..IP + 6].copy_from_slice(&len.to_be_bytes());
                frame.splice(ICMP..ICMP, [58, 0, 1, 4, 0, 0, 0, 0]);
                frame
            },
            Outcome::PassNotArpOrNdp,
        ),
        pass(
            "multicast target",
            ns_to_group(ALL_NODES, &[&option], None),
            Outcome::PassNdpInvalid,
        ),
        pass(
            "destination neither the target nor its group",
            ns(
                ASKER_MAC,
                NODE_MAC,
                ASKER_V6,
                UNKNOWN_V6,
                VIP6,
                &[&option],
                None,
            ),
            Outcome::PassNdpInvalid,
        ),
        pass(
            "NS to the solicited-node group of another address",
            {
                // ff02::1:ff80:80 sums like the VIP's group ff02::1:ff00:100: only
                // comparing the address, not the checksum, tells them apart.
                let (group, group_mac) = solicited_node("2001:db8::80:80".parse().expect("v6"));
                ns(
                    ASKER_MAC,
                    group_mac,
                    ASKER_V6,
                    group,
                    VIP6,
                    &[&option],
                    None,
                )
            },
            Outcome::PassNdpInvalid,
        ),
        pass(
            "multicast source",
            ns(
                ASKER_MAC,
                vip_group_mac,
                ALL_NODES,
                vip_group,
                VIP6,
                &[&option],
                None,
            ),
            Outcome::PassNdpInvalid,
        ),
        pass(
            "bad checksum, unknown target",
            {
                let mut frame = ns_to_group(UNKNOWN_V6, &[&option], None);
                frame[ICMP + 2] ^= 0x01;
                frame
            },
            Outcome::PassNdpInvalid,
        ),
        pass(
            "DAD probe with a source link-layer option",
            ns(
                ASKER_MAC,
                vip_group_mac,
                Ipv6Addr::UNSPECIFIED,
                vip_group,
                VIP6,
                &[&option],
                None,
            ),
            Outcome::PassNdpInvalid,
        ),
        pass(
            "DAD probe unicast to the target",
            ns(
                ASKER_MAC,
                NODE_MAC,
                Ipv6Addr::UNSPECIFIED,
                VIP6,
                VIP6,
                &[],
                None,
            ),
            Outcome::PassNdpInvalid,
        ),
        pass(
            "option of length 0",
            ns_to_group(VIP6, &[&[1, 0, 0, 0, 0, 0, 0, 0]], None),
            Outcome::PassNdpInvalid,
        ),
        pass(
            "four options, more than the program walks",
            ns_to_group(VIP6, &[&option, &nonce, &nonce, &nonce], None),
            Outcome::PassNdpInvalid,
        ),
        pass(
            "payload length that is not options of 8 bytes",
            ns_to_group(VIP6, &[&[1, 1, 0, 0]], None),
            Outcome::PassNdpInvalid,
        ),
        Case {
            vip: Some((key(VIP6, IF, 0), counters(0, 0, 1, 0))),
            ..pass(
                "advertisement from another host for our VIP is a conflict",
                na(
                    OTHER_HOST_MAC,
                    ALL_NODES_MAC,
                    VIP6,
                    ALL_NODES,
                    VIP6,
                    false,
                    true,
                    None,
                ),
                Outcome::PassConflict,
            )
        },
        pass(
            "advertisement for another address",
            na(
                OTHER_HOST_MAC,
                ALL_NODES_MAC,
                UNKNOWN_V6,
                ALL_NODES,
                UNKNOWN_V6,
                false,
                true,
                None,
            ),
            Outcome::PassNotRequest,
        ),
        pass(
            "ICMPv6 echo request",
            icmpv6(
                ASKER_MAC,
                NODE_MAC,
                ASKER_V6,
                VIP6,
                64,
                Icmpv6Type::EchoRequest(IcmpEchoHeader { id: 1, seq: 1 }),
                b"ping",
                None,
            ),
            Outcome::PassNotArpOrNdp,
        ),
    ];
    // Sources that never leave a node or are no node's address on the link: loopback
    // (RFC 4291 2.5.3), IPv4-mapped (2.5.5.2), IPv4-compatible (2.5.5.1, deprecated).
    for source in ["::1", "::ffff:192.0.2.1", "::192.0.2.1", "::2"] {
        let source: Ipv6Addr = source.parse().expect("v6");
        cases.push(pass(
            &format!("NS from {source}"),
            ns(
                ASKER_MAC,
                vip_group_mac,
                source,
                vip_group,
                VIP6,
                &[&option],
                None,
            ),
            Outcome::PassNdpInvalid,
        ));
        cases.push(pass(
            &format!("NS from {source} without options"),
            ns(ASKER_MAC, vip_group_mac, source, vip_group, VIP6, &[], None),
            Outcome::PassNdpInvalid,
        ));
        cases.push(pass(
            &format!("NS from {source} for an unknown target"),
            ns_to_group_from(source, UNKNOWN_V6, &[&option]),
            Outcome::PassNdpInvalid,
        ));
    }
    // A spoofed option or Ethernet source must not make the answer a broadcast, a
    // multicast, a frame to a bridge's group, or to ourselves.
    for (what, mac) in NOT_UNICAST_MACS.into_iter().chain([("our own", NODE_MAC)]) {
        cases.push(pass(
            &format!("{what} source link-layer option"),
            ns_to_group(VIP6, &[&sllao(mac)], None),
            Outcome::PassMalformed,
        ));
        cases.push(pass(
            &format!("{what} source link-layer option after a nonce"),
            ns_to_group(VIP6, &[&nonce, &sllao(mac)], None),
            Outcome::PassMalformed,
        ));
        cases.push(pass(
            &format!("{what} Ethernet source"),
            patched(valid.clone(), 6, &mac),
            Outcome::PassMalformed,
        ));
        cases.push(pass(
            &format!("{what} Ethernet source, no option"),
            ns(mac, NODE_MAC, ASKER_V6, VIP6, VIP6, &[], None),
            Outcome::PassMalformed,
        ));
        cases.push(pass(
            &format!("DAD probe from {what} Ethernet source"),
            ns(
                mac,
                vip_group_mac,
                Ipv6Addr::UNSPECIFIED,
                vip_group,
                VIP6,
                &[],
                None,
            ),
            Outcome::PassMalformed,
        ));
    }
    for (what, mac) in NOT_UNICAST_MACS {
        cases.push(pass(
            &format!("{what} source link-layer option, unknown target"),
            ns_to_group(UNKNOWN_V6, &[&sllao(mac)], None),
            Outcome::PassMalformed,
        ));
    }
    for len in ETH_HLEN..valid.len() {
        cases.push(pass(
            &format!("NS truncated to {len} bytes"),
            valid[..len].to_vec(),
            Outcome::PassMalformed,
        ));
    }
    run_cases(&f.dp, cases);
}

/// The NAs the program builds must be what the kernel accepts: etherparse checks
/// the checksum independently.
#[test]
fn advertisement_checksum_verifies_independently() {
    let f = fixture();
    for frame in [
        ns_to_group(VIP6, &[&sllao(ASKER_OPTION_MAC)], None),
        ns(ASKER_MAC, NODE_MAC, ASKER_V6, VIP6, VIP6, &[], Some(0)),
        ns_to_group(VIP6_VLAN, &[&sllao(ASKER_MAC)], Some(VLAN)),
    ] {
        let (verdict, out) = f.dp.test_run(&frame, IF).expect("test run");
        assert_eq!(verdict, XDP_TX);
        let sliced = etherparse::SlicedPacket::from_ethernet(&out).expect("parse reply");
        let Some(etherparse::NetSlice::Ipv6(ip)) = sliced.net else {
            panic!("reply is not IPv6: {}", hex(&out))
        };
        let Some(etherparse::TransportSlice::Icmpv6(icmp)) = sliced.transport else {
            panic!("reply is not ICMPv6: {}", hex(&out))
        };
        let header = ip.header();
        let expected = icmp
            .icmp_type()
            .calc_checksum(header.source(), header.destination(), icmp.payload())
            .expect("checksum");
        assert_eq!(icmp.checksum(), expected, "reply {}", hex(&out));
    }
}

/// The program counts an answer once, as its VIP's reply, not in the global counters;
/// the totals add the replies up, and keep those of VIPs that are gone.
#[test]
fn answers_are_counted_per_vip_and_totals_keep_removed_vips() {
    let mut f = fixture();
    let ask = |dp: &Datapath| {
        let (verdict, _) = dp
            .test_run(&arp_request(ASKER_V4, VIP, None), IF)
            .expect("test run");
        assert_eq!(verdict, XDP_TX);
        let ns = ns_to_group(VIP6, &[&sllao(ASKER_OPTION_MAC)], None);
        let (verdict, _) = dp.test_run(&ns, IF).expect("test run");
        assert_eq!(verdict, XDP_TX);
    };
    let answers = |dp: &Datapath| {
        let counts = frame_counts(dp);
        assert_view_agrees(dp);
        (counts.tx_arp_reply, counts.tx_neighbor_advert)
    };
    // Answers an adopted program of an older version counted globally as well as per
    // VIP: the totals must not count them twice.
    {
        use aya::maps::{Map, MapData, PerCpuArray, PerCpuValues};
        let data = MapData::from_pin(f.dp.pin_dir().join("xdp_stats")).expect("open xdp_stats");
        let mut stats: PerCpuArray<_, XdpStats> =
            PerCpuArray::try_from(Map::PerCpuArray(data)).expect("per-CPU array");
        let cpus = aya::util::nr_cpus().expect("CPUs");
        let old = XdpStats {
            tx_arp_reply: 5,
            tx_neighbor_advert: 5,
            ..XdpStats::default()
        };
        let values = PerCpuValues::try_from(vec![old; cpus]).expect("values");
        stats.set(0, values, 0).expect("write xdp_stats");
    }
    let raw_before = f.dp.stats().expect("stats");
    ask(&f.dp);
    assert_eq!(
        f.dp.stats().expect("stats"),
        raw_before,
        "no global counter"
    );
    assert_eq!(answers(&f.dp), (1, 1));

    let all = f.dp.installed();
    let mut without = all.clone();
    without.remove(&key(VIP, IF, 0));
    without.remove(&key(VIP6, IF, 0));
    let view = f.dp.counter_view().expect("counter view");
    let report = f.dp.sync(&without);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(answers(&f.dp), (1, 1), "removed, counters not yet free");
    // A view taken before the sync still reads the removed VIPs' own counters: their
    // ids are not reused before a later sync (by then a new view is published).
    let vip = view
        .per_ip()
        .into_iter()
        .find(|(ip, _)| *ip == IpAddr::from(VIP));
    assert_eq!(vip, Some((VIP.into(), answered())));
    assert_ne!(view.revision(), f.dp.revision());
    // The next sync frees the removed VIPs' counter ids, and back they come with
    // fresh counters.
    let report = f.dp.sync(&all);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(answers(&f.dp), (1, 1), "ids freed and reused");
    ask(&f.dp);
    assert_eq!(answers(&f.dp), (2, 2));
    let vip = f.dp.vip_counters(&key(VIP, IF, 0)).expect("read");
    assert_eq!(vip, Some(answered()), "the VIP's own counters start again");
}

/// An apply that changes nothing (the interfaces changed, the plan did not) keeps the
/// revision, so that the metrics' view stays current; a change gives a new one.
#[test]
fn only_a_sync_that_changes_something_gives_a_new_revision() {
    let mut f = fixture();
    let all = f.dp.installed();
    let view = f.dp.counter_view().expect("counter view");
    assert_eq!(view.revision(), f.dp.revision());
    let report = f.dp.sync(&all);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(f.dp.revision(), view.revision(), "nothing changed");
    let report =
        f.dp.update(std::iter::empty::<(&VipKey, &Option<VipConfig>)>());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(f.dp.revision(), view.revision(), "an empty delta");
    assert_view_agrees(&f.dp);

    let mut without = all.clone();
    without.remove(&key(VIP, IF, 0));
    let report = f.dp.sync(&without);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_ne!(f.dp.revision(), view.revision(), "a VIP removed");
    assert_view_agrees(&f.dp);
}

#[test]
fn sync_applies_a_diff_and_keeps_counters() {
    let mut f = fixture();
    let request = arp_request(ASKER_V4, VIP, None);
    assert_eq!(f.dp.test_run(&request, IF).expect("run").0, XDP_TX);

    // Same set with one MAC changed, one entry gone, one added.
    let mut desired: BTreeMap<VipKey, VipConfig> = f.dp.installed();
    let new_mac = MacAddr([0x02, 0, 0, 0, 0, 0xbb]);
    desired.insert(
        key(VIP, IF, 0),
        VipConfig {
            mac: new_mac,
            action: VipAction::Answer,
        },
    );
    desired.remove(&key(VIP_OTHER_IF, OTHER_IF, 0));
    desired.insert(
        key(UNKNOWN_V4, IF, 0),
        VipConfig {
            mac: MacAddr(NODE_MAC),
            action: VipAction::Answer,
        },
    );
    let report = f.dp.sync(&desired);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.changed, vec![key(VIP, IF, 0)]);
    assert_eq!(report.removed, vec![key(VIP_OTHER_IF, OTHER_IF, 0)]);
    assert_eq!(report.added, vec![key(UNKNOWN_V4, IF, 0)]);
    // Both answer with a MAC their neighbours have not heard: both get announced.
    assert_eq!(
        report.now_answering,
        vec![key(VIP, IF, 0), key(UNKNOWN_V4, IF, 0)]
    );
    assert_eq!(f.dp.installed(), desired);

    // The changed entry answers with the new MAC and kept its counters.
    let (verdict, out) = f.dp.test_run(&request, IF).expect("run");
    assert_eq!(verdict, XDP_TX);
    assert_eq!(&out[6..12], &new_mac.0, "Ethernet source of the reply");
    let records = f.dp.vips().expect("vips");
    let vip = records
        .iter()
        .find(|r| r.key == key(VIP, IF, 0))
        .expect("VIP entry");
    assert_eq!(vip.counters, counters(2, 2, 0, 0));
    assert_eq!(vip.mac, new_mac);
    assert!(
        !records
            .iter()
            .any(|r| r.key == key(VIP_OTHER_IF, OTHER_IF, 0))
    );

    // Suppress -> answer is reported as newly answering; an unchanged set is a no-op.
    desired.insert(
        key(VIP_SUPPRESSED, IF, 0),
        VipConfig {
            mac: MacAddr(NODE_MAC),
            action: VipAction::Answer,
        },
    );
    let report = f.dp.sync(&desired);
    assert_eq!(report.now_answering, vec![key(VIP_SUPPRESSED, IF, 0)]);
    let report = f.dp.sync(&desired);
    assert!(report.added.is_empty() && report.changed.is_empty() && report.removed.is_empty());
}

fn test_if_multicast_macs() -> Vec<String> {
    let table = std::fs::read_to_string("/proc/thread-self/net/dev_mcast").expect("dev_mcast");
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&IF_NAME)).then(|| fields[4].to_string())
        })
        .collect()
}

#[test]
fn ipv6_vips_join_their_solicited_node_groups() {
    let mut f = fixture();
    // VIP6 and this one share the low 24 bits, hence one group.
    let twin = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);
    let vip_mac = "3333ff000100".to_string();
    let vlan_mac = "3333ff000110".to_string();
    let macs = test_if_multicast_macs();
    assert!(
        macs.contains(&vip_mac) && macs.contains(&vlan_mac),
        "{macs:?}"
    );

    let mut desired = f.dp.installed();
    let answer = VipConfig {
        mac: MacAddr(NODE_MAC),
        action: VipAction::Answer,
    };
    desired.insert(key(twin, IF, 0), answer);
    assert!(f.dp.sync(&desired).errors.is_empty());
    desired.remove(&key(VIP6, IF, 0));
    assert!(f.dp.sync(&desired).errors.is_empty());
    assert!(
        test_if_multicast_macs().contains(&vip_mac),
        "the twin still needs the group"
    );
    desired.remove(&key(twin, IF, 0));
    assert!(f.dp.sync(&desired).errors.is_empty());
    assert!(
        !test_if_multicast_macs().contains(&vip_mac),
        "last user gone, group left"
    );

    let Fixture { dp, _pins, _netns } = f;
    let errors = dp.shutdown();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        !test_if_multicast_macs().contains(&vlan_mac),
        "shutdown leaves every group"
    );
}

#[test]
fn a_new_agent_adopts_pinned_entries_and_shutdown_unpins() {
    let f = fixture();
    assert_eq!(
        f.dp.test_run(&arp_request(ASKER_V4, VIP, None), IF)
            .expect("run")
            .0,
        XDP_TX
    );
    let installed = f.dp.installed();
    let pin_dir = f.dp.pin_dir().to_path_buf();
    let Fixture { dp, _pins, _netns } = f;
    // Exit without shutdown: the pins stay.
    drop(dp);
    assert!(pin_dir.join("vips_v4").exists());

    let dp = Datapath::load(&DatapathOptions {
        pin_dir: pin_dir.clone(),
        max_vips: 1024,
    })
    .expect("load again");
    assert_eq!(dp.installed(), installed);
    let vip = dp
        .vips()
        .expect("vips")
        .into_iter()
        .find(|r| r.key == key(VIP, IF, 0))
        .expect("VIP");
    assert_eq!(vip.counters, answered(), "counters survive the restart");
    assert_eq!(
        dp.test_run(&arp_request(ASKER_V4, VIP, None), IF)
            .expect("run")
            .0,
        XDP_TX
    );

    let errors = dp.shutdown();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        !pin_dir.exists(),
        "shutdown removes the pins and their directory"
    );
}

/// An agent of a version before [`VipNdpTerms`] left cells whose terms are zeroes (it
/// wrote padding there). A new agent adopting them must fill the terms in before its
/// program answers from them.
#[test]
fn cells_pinned_without_ndp_terms_get_them_on_adoption() {
    use aya::maps::{Array, Map, MapData};
    use metallb_common::{VipBucketV6, VipNdpTerms};

    let f = fixture();
    let solicitation = ns_to_group(VIP6, &[&sllao(ASKER_OPTION_MAC)], None);
    let advert = solicited_na(ASKER_OPTION_MAC, VIP6, None);
    let pin_dir = f.dp.pin_dir().to_path_buf();
    let Fixture { dp, _pins, _netns } = f;
    drop(dp);

    let data = MapData::from_pin(pin_dir.join("vips_v6")).expect("open pinned vips_v6");
    let mut table: Array<_, VipBucketV6> = Array::try_from(Map::Array(data)).expect("array");
    let mut cleared = 0;
    for index in 0..table.len() {
        let mut bucket = table.get(&index, 0).expect("read bucket");
        let mut changed = false;
        for cell in bucket.cells.iter_mut().filter(|c| c.counter_id != 0) {
            changed |= cell.ndp != VipNdpTerms::default();
            cell.ndp = VipNdpTerms::default();
        }
        if changed {
            table.set(index, bucket, 0).expect("write bucket");
            cleared += 1;
        }
    }
    // Two halves of the three IPv6 VIPs the fixture installs.
    assert!(cleared >= 3, "{cleared} buckets of IPv6 cells cleared");

    let dp = Datapath::load(&DatapathOptions {
        pin_dir,
        max_vips: 1024,
    })
    .expect("load again");
    let (verdict, out) = dp.test_run(&solicitation, IF).expect("test run");
    assert_eq!(verdict, XDP_TX);
    assert_eq!(hex(&out), hex(&advert));
    let errors = dp.shutdown();
    assert!(errors.is_empty(), "{errors:?}");
}

/// The `vips` map as pinned under `pin_dir`, read straight from the kernel.
fn pinned_view(pin_dir: &std::path::Path) -> BTreeMap<VipViewKey, VipViewValue> {
    use aya::maps::{HashMap, Map, MapData};
    let data = MapData::from_pin(pin_dir.join("vips")).expect("open the pinned vips map");
    let map: HashMap<_, VipViewKey, VipViewValue> =
        HashMap::try_from(Map::HashMap(data)).expect("a hash map");
    map.iter()
        .map(|entry| entry.expect("read an entry"))
        .collect()
}

/// The key a person finds in the `vips` map for a VIP: the address in its first bytes.
fn view_key_of(addr: IpAddr, ifindex: u32, vlan_id: u16) -> VipViewKey {
    let mut bytes = [0; 16];
    let family = match addr {
        IpAddr::V4(v4) => {
            bytes[..4].copy_from_slice(&v4.octets());
            4
        }
        IpAddr::V6(v6) => {
            bytes = v6.octets();
            6
        }
    };
    VipViewKey {
        addr: bytes,
        ifindex,
        vlan_id,
        family,
        _pad: 0,
    }
}

/// What the `vips` map must hold for `desired`, counter ids aside: (MAC, action).
fn expected_view(desired: &BTreeMap<VipKey, VipConfig>) -> BTreeMap<VipViewKey, ([u8; 6], u8)> {
    desired
        .iter()
        .map(|(k, c)| {
            (
                view_key_of(k.addr, k.ifindex, k.vlan_id),
                (c.mac.0, c.action as u8),
            )
        })
        .collect()
}

fn view_without_ids(
    view: &BTreeMap<VipViewKey, VipViewValue>,
) -> BTreeMap<VipViewKey, ([u8; 6], u8)> {
    view.iter().map(|(k, v)| (*k, (v.mac, v.action))).collect()
}

/// The replies counted under `counter_id` in a family's pinned per-CPU counters.
fn pinned_replies(pin_dir: &std::path::Path, map: &str, counter_id: u32) -> u64 {
    use aya::maps::{Array, Map, MapData};
    use metallb_user::datapath::maps::Maps;
    // One block of `counter_stride` ids per CPU.
    let ctl = Maps::read_pinned_ctl(&pin_dir.join("vip_ctl")).expect("read vip_ctl");
    let data = MapData::from_pin(pin_dir.join(map)).expect("open the pinned counters");
    let stats: Array<_, VipCounters> = Array::try_from(Map::Array(data)).expect("array");
    let cpus = stats.len() / ctl.counter_stride;
    (0..cpus)
        .map(|cpu| {
            let index = cpu * ctl.counter_stride + counter_id;
            stats.get(&index, 0).expect("read counters").replies
        })
        .sum()
}

/// The `vips` map holds exactly the live entries, with the MAC, the action and the id
/// under which the program counts each VIP; after a sync, exactly the new set.
#[test]
fn the_vips_map_holds_exactly_the_live_entries() {
    let mut f = fixture();
    let pin_dir = f.dp.pin_dir().to_path_buf();
    let installed = f.dp.installed();
    let view = pinned_view(&pin_dir);
    assert_eq!(view_without_ids(&view), expected_view(&installed));
    for family in [4, 6] {
        let ids: std::collections::BTreeSet<u32> = view
            .iter()
            .filter(|(k, _)| k.family == family)
            .map(|(_, v)| v.counter_id)
            .collect();
        let entries = view.keys().filter(|k| k.family == family).count();
        assert_eq!(ids.len(), entries, "IPv{family}: one counter id per entry");
        assert!(!ids.contains(&0), "IPv{family}: 0 marks an empty cell");
    }
    // The id is the one the program counts the VIP's answers under.
    assert_eq!(
        f.dp.test_run(&arp_request(ASKER_V4, VIP, None), IF)
            .expect("run")
            .0,
        XDP_TX
    );
    let ns = ns_to_group(VIP6, &[&sllao(ASKER_OPTION_MAC)], None);
    assert_eq!(f.dp.test_run(&ns, IF).expect("run").0, XDP_TX);
    let v4_id = view[&view_key_of(VIP.into(), IF, 0)].counter_id;
    let v6_id = view[&view_key_of(VIP6.into(), IF, 0)].counter_id;
    assert_eq!(pinned_replies(&pin_dir, "vip_stats_v4", v4_id), 1);
    assert_eq!(pinned_replies(&pin_dir, "vip_stats_v6", v6_id), 1);

    // Removed, added, and changed in place (action only) or rebuilt (another MAC).
    let mut next = installed.clone();
    next.remove(&key(VIP_SUPPRESSED, IF, 0));
    next.remove(&key(VIP6_VLAN, IF, VLAN));
    let config = |mac, action| VipConfig {
        mac: MacAddr(mac),
        action,
    };
    for (vip, vip_config) in [
        (
            key(Ipv4Addr::new(192, 0, 2, 120), IF, 0),
            config(NODE_MAC, VipAction::Answer),
        ),
        (
            key(VIP_OTHER_IF, OTHER_IF, 0),
            config(NODE_MAC, VipAction::Suppress),
        ),
        (key(VIP6, IF, 0), config(OTHER_HOST_MAC, VipAction::Answer)),
    ] {
        next.insert(vip, vip_config);
    }
    let report = f.dp.sync(&next);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let view = pinned_view(&pin_dir);
    assert_eq!(view_without_ids(&view), expected_view(&next));
    assert!(!view.contains_key(&view_key_of(VIP_SUPPRESSED.into(), IF, 0)));
    assert!(!view.contains_key(&view_key_of(VIP6_VLAN.into(), IF, VLAN)));
    assert_eq!(
        view[&view_key_of(VIP.into(), IF, 0)].counter_id,
        v4_id,
        "an entry that stays keeps its counters"
    );

    // Everything removed: nothing left.
    let report = f.dp.sync(&BTreeMap::new());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(pinned_view(&pin_dir), BTreeMap::new());
}

/// An agent that adopts pinned tables makes the `vips` map match them: entries an
/// earlier agent left there that the tables do not hold go, missing ones come, and
/// pins of a version without the map get one.
#[test]
fn an_adopting_agent_makes_the_vips_map_match_the_tables() {
    use aya::maps::{HashMap, Map, MapData};

    let f = fixture();
    let installed = f.dp.installed();
    let pin_dir = f.dp.pin_dir().to_path_buf();
    let Fixture { dp, _pins, _netns } = f;
    drop(dp);
    {
        let data = MapData::from_pin(pin_dir.join("vips")).expect("open vips");
        let mut map: HashMap<_, VipViewKey, VipViewValue> =
            HashMap::try_from(Map::HashMap(data)).expect("hash map");
        let stale = view_key_of(Ipv4Addr::new(198, 51, 100, 1).into(), IF, 0);
        map.insert(stale, VipViewValue::default(), 0)
            .expect("insert a stale entry");
        map.remove(&view_key_of(VIP.into(), IF, 0))
            .expect("remove a live entry");
    }
    let dp = Datapath::load(&DatapathOptions {
        pin_dir: pin_dir.clone(),
        max_vips: 1024,
    })
    .expect("load again");
    assert_eq!(
        view_without_ids(&pinned_view(&pin_dir)),
        expected_view(&installed)
    );
    drop(dp);

    std::fs::remove_file(pin_dir.join("vips")).expect("unpin vips");
    let dp = Datapath::load(&DatapathOptions {
        pin_dir: pin_dir.clone(),
        max_vips: 1024,
    })
    .expect("load on pins without a vips map");
    assert_eq!(
        view_without_ids(&pinned_view(&pin_dir)),
        expected_view(&installed)
    );
    let errors = dp.shutdown();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!pin_dir.exists(), "shutdown unpins the vips map too");
}

/// What a person sees: `bpftool -j map dump pinned DIR/vips` prints every live entry,
/// and only those, with the field names of the map's BTF.
#[test]
fn bpftool_dumps_the_vips_map_with_field_names() {
    let f = fixture();
    let output = std::process::Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(f.dp.pin_dir().join("vips"))
        .output()
        .expect("run bpftool");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let entries = dump.as_array().expect("an array of entries");
    let mut seen = BTreeMap::new();
    for entry in entries {
        let formatted = &entry["formatted"];
        let (view_key, value) = (&formatted["key"], &formatted["value"]);
        let bytes = field_bytes(view_key, "addr", entry);
        let addr: IpAddr = match view_key["family"].as_u64() {
            Some(4) => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into(),
            Some(6) => Ipv6Addr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes")).into(),
            other => panic!("key.family {other:?} in {entry}"),
        };
        let mac = field_bytes(value, "mac", entry);
        assert!(
            value["counter_id"].as_u64().is_some_and(|id| id > 0),
            "value.counter_id by name in {entry}"
        );
        seen.insert(
            key(
                addr,
                field_u64(view_key, "ifindex", entry) as u32,
                field_u64(view_key, "vlan_id", entry) as u16,
            ),
            (mac, field_u64(value, "action", entry) as u8),
        );
    }
    let expected: BTreeMap<VipKey, (Vec<u8>, u8)> =
        f.dp.installed()
            .into_iter()
            .map(|(k, c)| (k, (c.mac.0.to_vec(), c.action as u8)))
            .collect();
    assert_eq!(seen, expected);
}

fn field_bytes(object: &serde_json::Value, field: &str, entry: &serde_json::Value) -> Vec<u8> {
    object[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} by name in {entry}"))
        .iter()
        .map(|byte| byte.as_u64().expect("a byte") as u8)
        .collect()
}

fn field_u64(object: &serde_json::Value, field: &str, entry: &serde_json::Value) -> u64 {
    object[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} by name in {entry}"))
}

#[test]
fn a_pinned_map_of_another_layout_is_refused_by_name() {
    let _netns = NetnsGuard::enter_new().expect("netns");
    let pins = ScratchPinDir::new("layout");
    std::fs::create_dir_all(&pins.path).expect("pin dir");
    let stale = pins.path.join("vips_v4");
    let status = std::process::Command::new("bpftool")
        .args(["map", "create"])
        .arg(&stale)
        .args([
            "type", "hash", "key", "4", "value", "4", "entries", "16", "name", "vips_v4",
        ])
        .status()
        .expect("run bpftool");
    assert!(status.success());
    let error = Datapath::load(&DatapathOptions {
        pin_dir: pins.path.clone(),
        max_vips: 1024,
    })
    .err()
    .expect("a stale map must be refused");
    let message = error.to_string();
    assert!(message.contains(&stale.display().to_string()), "{message}");
    assert!(message.contains("does not fit this version"), "{message}");
}

/// A bpf filesystem is mounted on demand at /sys/fs/bpf only (see
/// `netns_under_ip_netns_exec_the_speaker_mounts_a_bpffs_and_answers`): never over a
/// directory elsewhere, whose contents it would hide.
#[test]
fn a_pin_directory_outside_bpffs_and_sys_fs_bpf_is_refused() {
    let dir = std::env::temp_dir().join(metallb_testkit::lab::unique_name("notbpf"));
    let error = Datapath::load(&DatapathOptions {
        pin_dir: dir.clone(),
        max_vips: 16,
    })
    .err()
    .expect("must be refused");
    assert_eq!(
        error.to_string(),
        format!(
            "{} is not on a bpf filesystem, and not under /sys/fs/bpf, where the speaker mounts one when there is none; mount one with `mount -t bpf bpf DIR`, or choose a pin directory under /sys/fs/bpf",
            dir.display()
        )
    );
    assert!(!dir.exists(), "nothing created");
}

/// The program must see the old set or the new one, never a mix: while syncs add and
/// remove other VIPs (each a rebuild and a flip) and toggle one VIP's action, two
/// VIPs that stay must be answered on every single frame.
#[test]
fn vips_that_stay_are_answered_through_every_flip() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    const LOOPBACK: u32 = 1; // exists in every namespace, the reader thread's included
    let stay_v4 = Ipv4Addr::new(192, 0, 2, 50);
    let stay_v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x50);
    let mut f = fixture();
    let answer = VipConfig {
        mac: MacAddr(NODE_MAC),
        action: VipAction::Answer,
    };
    let base = BTreeMap::from([
        (key(stay_v4, LOOPBACK, 0), answer),
        (key(stay_v6, LOOPBACK, 0), answer),
    ]);
    assert!(f.dp.sync(&base).errors.is_empty());
    let pinned = f.dp.pin_dir().join("program");
    f.dp.pin_program(&pinned).expect("pin the program");
    let reader = aya::programs::Xdp::from_pin(&pinned, aya_obj::programs::XdpAttachType::Interface)
        .expect("second handle");
    let arp = arp_request(ASKER_V4, stay_v4, None);
    let ns = ns_to_group(stay_v6, &[&sllao(ASKER_MAC)], None);

    let stop = AtomicBool::new(false);
    let (runs, misses) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for frame in [&arp, &ns] {
                    let (verdict, _) =
                        metallb_user::datapath::test_run(&reader, frame, LOOPBACK).expect("run");
                    runs.fetch_add(1, Ordering::Relaxed);
                    if verdict != XDP_TX {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        for round in 0u8..100 {
            let mut desired = base.clone();
            for i in 0..40u8 {
                let other = Ipv4Addr::new(198, 51, round % 2, i);
                desired.insert(key(other, LOOPBACK, 0), answer);
                desired.insert(
                    key(
                        Ipv6Addr::from(u128::from(other.to_bits()) | (1 << 100)),
                        LOOPBACK,
                        0,
                    ),
                    answer,
                );
            }
            let toggled = if round % 2 == 0 {
                VipAction::Answer
            } else {
                VipAction::Suppress
            };
            desired.insert(
                key(VIP, LOOPBACK, 0),
                VipConfig {
                    mac: MacAddr(NODE_MAC),
                    action: toggled,
                },
            );
            let report = f.dp.sync(&desired);
            assert!(
                report.errors.is_empty(),
                "round {round}: {:?}",
                report.errors
            );
        }
        stop.store(true, Ordering::Relaxed);
    });
    let _ = std::fs::remove_file(&pinned);
    let runs = runs.into_inner();
    assert!(runs > 1000, "the reader ran only {runs} frames");
    assert_eq!(
        misses.into_inner(),
        0,
        "frames for VIPs that stayed went unanswered ({runs} runs)"
    );
}

/// A full table refuses the VIPs that do not fit, by name, and keeps serving the rest.
#[test]
fn a_full_table_names_what_does_not_fit_and_keeps_the_rest() {
    let _netns = NetnsGuard::enter_new().expect("netns");
    let pins = ScratchPinDir::new("full");
    let mut dp = Datapath::load(&DatapathOptions {
        pin_dir: pins.path.clone(),
        max_vips: 4,
    })
    .expect("load");
    let answer = VipConfig {
        mac: MacAddr(NODE_MAC),
        action: VipAction::Answer,
    };
    let desired: BTreeMap<VipKey, VipConfig> = (11..=16)
        .map(|i| (key(Ipv4Addr::new(192, 0, 2, i), 1, 0), answer))
        .collect();
    let report = dp.sync(&desired);
    assert_eq!(report.added.len(), 4);
    let messages: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].contains("192.0.2.15") && messages[0].contains("4 entries"),
        "{messages:?}"
    );
    assert!(messages[1].contains("192.0.2.16"), "{messages:?}");
    for i in 11..=14 {
        let frame = arp_request(ASKER_V4, Ipv4Addr::new(192, 0, 2, i), None);
        assert_eq!(
            dp.test_run(&frame, 1).expect("run").0,
            XDP_TX,
            "192.0.2.{i}"
        );
    }
}

#[test]
fn counters_read_in_batches_are_each_vips_own() {
    // 900 more VIPs: their counter ids span several BPF_MAP_LOOKUP_BATCH calls. Each
    // VIP asked a different number of times (0 to 3); `vips()` (batched, for the
    // metrics) must give every VIP the counters its own lookup gives.
    let mut f = fixture();
    let mut desired = f.dp.installed();
    let many: Vec<Ipv4Addr> = (0..900u32)
        .map(|i| Ipv4Addr::from(0x0a00_0000 + i))
        .collect();
    for vip in &many {
        desired.insert(
            key(*vip, IF, 0),
            VipConfig {
                mac: MacAddr(NODE_MAC),
                action: VipAction::Answer,
            },
        );
    }
    let report = f.dp.sync(&desired);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for (i, vip) in many.iter().enumerate() {
        for _ in 0..i % 4 {
            let request = arp_request(ASKER_V4, *vip, None);
            assert_eq!(f.dp.test_run(&request, IF).expect("run").0, XDP_TX);
        }
    }
    let records = f.dp.vips().expect("vips");
    assert_eq!(records.len(), desired.len());
    for record in &records {
        let own = f.dp.vip_counters(&record.key).expect("read");
        assert_eq!(Some(record.counters), own, "{:?}", record.key);
    }
    for (i, vip) in many.iter().enumerate() {
        let record = records.iter().find(|r| r.key == key(*vip, IF, 0));
        let asked = (i % 4) as u64;
        assert_eq!(
            record.map(|r| r.counters),
            Some(counters(asked, asked, 0, 0)),
            "{vip}"
        );
    }
    assert_view_agrees(&f.dp);
}

/// How many of the live keys of a pinned table sit past their home bucket, where a
/// lookup walks on across buckets: (keys, past their home bucket).
fn keys_past_their_home_bucket<B: aya::Pod>(
    pin_dir: &std::path::Path,
    map: &str,
    folded: impl Fn(&B) -> Vec<Option<u64>>,
    seed: impl Fn(&metallb_common::VipTableHalf) -> u64,
) -> (usize, usize) {
    use aya::maps::{Array, Map, MapData};
    use metallb_common::{BUCKET_CELLS, home_cell};
    use metallb_user::datapath::maps::Maps;

    let ctl = Maps::read_pinned_ctl(&pin_dir.join("vip_ctl")).expect("read vip_ctl");
    let half = &ctl.halves[(ctl.active & 1) as usize];
    let cells = ctl.cell_mask + 1;
    let data = MapData::from_pin(pin_dir.join(map)).expect("open pinned table");
    let table: Array<_, B> = Array::try_from(Map::Array(data)).expect("array");
    let (mut keys, mut past) = (0, 0);
    for bucket in 0..cells / BUCKET_CELLS {
        let index = (half.base / BUCKET_CELLS as u64) as u32 + bucket;
        let value = table.get(&index, 0).expect("read bucket");
        for (slot, folded) in folded(&value).into_iter().enumerate() {
            let Some(folded) = folded else { continue };
            let cell = bucket * BUCKET_CELLS + slot as u32;
            let home = home_cell(folded, seed(half), ctl.shift) & ctl.cell_mask;
            let distance = cell.wrapping_sub(home) & ctl.cell_mask;
            keys += 1;
            past += usize::from(home % BUCKET_CELLS + distance >= BUCKET_CELLS);
        }
    }
    (keys, past)
}

#[test]
fn every_vip_of_a_full_table_is_answered_wherever_its_cell() {
    // The table's capacity (1,024 per family: 2,048 cells per half) nearly filled,
    // with addresses at random (consecutive ones, the hash spreads evenly): many keys
    // sit past their home cell, some past their home bucket. Each must be answered, by
    // its own entry; addresses that are not VIPs are passed (a miss walks to an empty
    // cell).
    use metallb_common::{VipBucketV4, VipBucketV6};

    let mut f = fixture();
    let mut rng = Rng(0x5eed);
    let v4: std::collections::BTreeSet<Ipv4Addr> = (0..1000)
        .map(|_| Ipv4Addr::from(0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff)))
        .collect();
    let v6: std::collections::BTreeSet<Ipv6Addr> = (0..1000)
        .map(|_| Ipv6Addr::from((0x2001_0db8_0000_0001u128 << 64) | u128::from(rng.next())))
        .collect();
    let answer = VipConfig {
        mac: MacAddr(NODE_MAC),
        action: VipAction::Answer,
    };
    let desired: BTreeMap<VipKey, VipConfig> = v4
        .iter()
        .map(|a| IpAddr::from(*a))
        .chain(v6.iter().map(|a| IpAddr::from(*a)))
        .map(|addr| (key(addr, IF, 0), answer))
        .collect();
    let report = f.dp.sync(&desired);
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    let pin_dir = f.dp.pin_dir().to_path_buf();
    let (keys_v4, past_v4) = keys_past_their_home_bucket(
        &pin_dir,
        "vips_v4",
        |b: &VipBucketV4| {
            b.cells
                .iter()
                .map(|c| (c.counter_id != 0).then(|| c.key.folded()))
                .collect()
        },
        |half| half.seed_v4,
    );
    let (keys_v6, past_v6) = keys_past_their_home_bucket(
        &pin_dir,
        "vips_v6",
        |b: &VipBucketV6| {
            b.cells
                .iter()
                .map(|c| (c.counter_id != 0).then(|| c.key.folded()))
                .collect()
        },
        |half| half.seed_v6,
    );
    assert_eq!((keys_v4, keys_v6), (v4.len(), v6.len()));
    assert!(
        past_v4 > 0 && past_v6 > 0,
        "no key past its home bucket ({past_v4} IPv4, {past_v6} IPv6): the test walks no bucket after the first"
    );

    for path in PATHS {
        for vip in &v4 {
            let (verdict, out) = run_on(&f.dp, path, &arp_request(ASKER_V4, *vip, None));
            let reply = arp(
                ArpOperation::REPLY,
                NODE_MAC,
                ASKER_MAC,
                (NODE_MAC, *vip),
                (ASKER_MAC, ASKER_V4),
                None,
            );
            assert_eq!(
                (verdict, hex(&out)),
                (XDP_TX, hex(&reply)),
                "{path:?} {vip}"
            );
        }
        for vip in &v6 {
            let request = ns_to_group(*vip, &[&sllao(ASKER_OPTION_MAC)], None);
            let (verdict, out) = run_on(&f.dp, path, &request);
            let advert = solicited_na(ASKER_OPTION_MAC, *vip, None);
            assert_eq!(
                (verdict, hex(&out)),
                (XDP_TX, hex(&advert)),
                "{path:?} {vip}"
            );
        }
        for i in 0..64u32 {
            let missing = Ipv4Addr::from(0x0b00_0000 + i * 0x1_0001);
            let (verdict, _) = run_on(&f.dp, path, &arp_request(ASKER_V4, missing, None));
            assert_eq!(verdict, XDP_PASS, "{path:?} {missing}");
            let missing = Ipv6Addr::from((0x2001_0db8_0000_0002u128 << 64) | u128::from(i));
            let request = ns_to_group(missing, &[&sllao(ASKER_OPTION_MAC)], None);
            assert_eq!(
                run_on(&f.dp, path, &request).0,
                XDP_PASS,
                "{path:?} {missing}"
            );
        }
    }
    // Each answer counted for its own VIP: twice, once per datapath.
    let counted = vip_counters(&f.dp);
    assert_eq!(counted.len(), desired.len());
    for (key, counters_of) in &counted {
        assert_eq!(*counters_of, counters(2, 2, 0, 0), "{key:?}");
    }
}

/// A small deterministic generator (splitmix64): the same seed gives the same frames
/// on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Where the network header starts: after one 802.1Q tag, if the frame has one.
fn l3_offset(frame: &[u8]) -> usize {
    if frame.len() >= 14 && frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    }
}

/// Recomputes the ICMPv6 checksum of an IPv6 frame whose message is whole (with
/// etherparse), so that mutations reach the checks behind it.
fn fix_icmpv6_checksum(frame: &mut [u8]) {
    let ip = l3_offset(frame);
    let Some(header) = frame.get(ip..ip + 40) else {
        return;
    };
    let payload_len = u16::from_be_bytes([header[4], header[5]]) as usize;
    let (src, dst): ([u8; 16], [u8; 16]) = (
        header[8..24].try_into().expect("16 bytes"),
        header[24..40].try_into().expect("16 bytes"),
    );
    let Some(message) = frame.get(ip + 40..ip + 40 + payload_len) else {
        return;
    };
    if message.len() < 8 {
        return;
    }
    let icmp_type = Icmpv6Type::Unknown {
        type_u8: message[0],
        code_u8: message[1],
        bytes5to8: message[4..8].try_into().expect("4 bytes"),
    };
    if let Ok(checksum) = icmp_type.calc_checksum(src, dst, &message[8..]) {
        frame[ip + 42..ip + 44].copy_from_slice(&checksum.to_be_bytes());
    }
}

const INTERESTING_MACS: [[u8; 6]; 8] = [
    ASKER_MAC,
    ASKER_OPTION_MAC,
    NODE_MAC,
    ZERO_MAC,
    BROADCAST,
    BRIDGE_GROUP_MAC,
    IPV4_MULTICAST_MAC,
    ALL_NODES_MAC,
];

fn interesting_v4(rng: &mut Rng) -> [u8; 4] {
    let known = [
        ASKER_V4,
        VIP,
        VIP_SUPPRESSED,
        VIP_OTHER_IF,
        VIP_VLAN,
        UNKNOWN_V4,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
    ];
    if rng.below(8) == 0 {
        rng.next().to_ne_bytes()[..4].try_into().expect("4 bytes")
    } else {
        rng.pick(&known).octets()
    }
}

fn interesting_v6(rng: &mut Rng) -> [u8; 16] {
    let known: [Ipv6Addr; 12] = [
        ASKER_V6,
        VIP6,
        VIP6_SUPPRESSED,
        VIP6_VLAN,
        UNKNOWN_V6,
        ALL_NODES,
        solicited_node(VIP6).0,
        solicited_node(VIP6_VLAN).0,
        Ipv6Addr::UNSPECIFIED,
        Ipv6Addr::LOCALHOST,
        "::ffff:192.0.2.1".parse().expect("v6"),
        "fe80::1".parse().expect("v6"),
    ];
    if rng.below(8) == 0 {
        let mut addr = [0; 16];
        addr[..8].copy_from_slice(&rng.next().to_ne_bytes());
        addr[8..].copy_from_slice(&rng.next().to_ne_bytes());
        addr
    } else {
        rng.pick(&known).octets()
    }
}

/// Valid requests and solicitations, for VIPs answered, suppressed, in a VLAN, on
/// another interface, and for no VIP: what the mutations start from.
fn property_templates() -> Vec<Vec<u8>> {
    let option = sllao(ASKER_OPTION_MAC);
    let nonce = [14u8, 1, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02];
    let (vip_group, vip_group_mac) = solicited_node(VIP6);
    vec![
        arp_request(ASKER_V4, VIP, None),
        arp_request(ASKER_V4, VIP, Some(0)),
        arp_request(ASKER_V4, VIP_SUPPRESSED, None),
        arp_request(ASKER_V4, VIP_VLAN, Some(VLAN)),
        arp_request(ASKER_V4, VIP_OTHER_IF, None),
        arp_request(ASKER_V4, UNKNOWN_V4, None),
        ns_to_group(VIP6, &[&option], None),
        ns_to_group(VIP6_SUPPRESSED, &[&option], None),
        ns_to_group(VIP6_VLAN, &[&option], Some(VLAN)),
        ns_to_group(VIP6, &[&nonce, &option], None),
        ns_to_group(UNKNOWN_V6, &[&option], None),
        ns(ASKER_MAC, NODE_MAC, ASKER_V6, VIP6, VIP6, &[&option], None),
        ns(ASKER_MAC, NODE_MAC, ASKER_V6, VIP6, VIP6, &[], None),
        ns(
            ASKER_MAC,
            vip_group_mac,
            Ipv6Addr::UNSPECIFIED,
            vip_group,
            VIP6,
            &[&nonce],
            None,
        ),
    ]
}

/// One random change of a frame: bits, bytes, length, tags, addresses, options.
fn mutate(rng: &mut Rng, frame: &mut Vec<u8>) {
    let l3 = l3_offset(frame);
    let is_arp = frame.len() >= l3 && frame[l3 - 2..l3] == [0x08, 0x06];
    let set = |frame: &mut Vec<u8>, at: usize, bytes: &[u8]| {
        if let Some(slot) = frame.get_mut(at..at + bytes.len()) {
            slot.copy_from_slice(bytes);
        }
    };
    match rng.below(11) {
        0 => {
            let at = rng.below(frame.len());
            frame[at] ^= 1 << rng.below(8);
        }
        1 => {
            let at = rng.below(frame.len());
            frame[at] = rng.byte();
        }
        2 => {
            let len = ETH_HLEN + rng.below(frame.len() - ETH_HLEN + 1);
            frame.truncate(len);
        }
        3 => {
            for _ in 0..1 + rng.below(40) {
                frame.push(rng.byte());
            }
        }
        4 => {
            if l3 == 18 && frame.len() >= 18 && rng.below(2) == 0 {
                frame.drain(12..16);
            } else {
                let tci = [
                    rng.byte() & if rng.below(2) == 0 { 0xf0 } else { 0xff },
                    rng.byte(),
                ];
                let tpid = rng.pick(&[[0x81, 0x00], [0x81, 0x00], [0x88, 0xa8]]);
                frame.splice(12..12, [tpid[0], tpid[1], tci[0], tci[1]]);
            }
        }
        5 => {
            let mac = rng.pick(&INTERESTING_MACS);
            let at = if is_arp {
                rng.pick(&[0, 6, l3 + 8, l3 + 18])
            } else {
                rng.pick(&[0, 6, l3 + 40 + 24 + 2, l3 + 40 + 32 + 2])
            };
            set(frame, at, &mac);
        }
        6 => {
            if is_arp {
                let at = rng.pick(&[l3 + 14, l3 + 24]);
                set(frame, at, &interesting_v4(rng));
            } else {
                let at = rng.pick(&[l3 + 8, l3 + 24, l3 + 40 + 8]);
                set(frame, at, &interesting_v6(rng));
                if rng.below(4) != 0 {
                    fix_icmpv6_checksum(frame);
                }
            }
        }
        7 => {
            // New options of any length byte, the payload length to match.
            if frame.len() >= l3 + 40 + 24 {
                frame.truncate(l3 + 40 + 24);
                for _ in 0..rng.below(5) {
                    let any = rng.byte();
                    let kind = rng.pick(&[1, 2, 14, any]);
                    let any = rng.byte();
                    let len = rng.pick(&[1, 1, 1, 0, 2, any]);
                    frame.extend([kind, len]);
                    frame.extend((0..6).map(|_| rng.byte()));
                }
                let payload = (frame.len() - l3 - 40) as u16;
                set(frame, l3 + 4, &payload.to_be_bytes());
                fix_icmpv6_checksum(frame);
            }
        }
        8 => fix_icmpv6_checksum(frame),
        9 => {
            // Hop limit, type, code, payload length.
            let at = rng.pick(&[l3 + 7, l3 + 40, l3 + 41, l3 + 5]);
            let any = rng.byte();
            let value = rng.pick(&[255, 254, 0, 135, 136, 1, 24, 32, any]);
            set(frame, at, &[value]);
            if rng.below(2) == 0 {
                fix_icmpv6_checksum(frame);
            }
        }
        _ => {
            let any = [rng.byte(), rng.byte()];
            let ether_type = rng.pick(&[[0x08, 0x06], [0x86, 0xdd], [0x08, 0x00], any]);
            set(frame, l3 - 2, &ether_type);
        }
    }
}

/// A frame for the property test: a mutated template, or random bytes.
fn property_frame(rng: &mut Rng, templates: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(16) == 0 {
        let len = ETH_HLEN + rng.below(100);
        return (0..len).map(|_| rng.byte()).collect();
    }
    let mut frame = templates[rng.below(templates.len())].clone();
    for _ in 0..1 + rng.below(4) {
        mutate(rng, &mut frame);
    }
    frame
}

/// Frames that once disagreed with the reference: run first, every time.
const PROPERTY_REGRESSIONS: &str = include_str!("fixtures/xdp_property_regressions.txt");

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// What the program did with one frame, where the reference disagrees.
fn disagreement(
    dp: &Datapath,
    path: Path,
    frame: &[u8],
    vips: &[metallb_testkit::frame_oracle::OracleVip],
) -> Option<String> {
    use metallb_testkit::frame_oracle::{Expected, expected};
    let want = expected(frame, IF, vips);
    let (verdict, out) = run_on(dp, path, frame);
    let agrees = match &want {
        Expected::Pass => verdict == XDP_PASS && out == frame,
        Expected::Drop => verdict == XDP_DROP,
        Expected::Tx(reply) => verdict == XDP_TX && &out == reply,
    };
    let one_line = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    (!agrees).then(|| {
        format!(
            "frame {}\n  reference: {}\n  {path:?}: verdict {verdict}, {}",
            one_line(frame),
            match &want {
                Expected::Tx(reply) => format!("tx {}", one_line(reply)),
                other => format!("{other:?}"),
            },
            one_line(&out)
        )
    })
}

/// The property: for every frame, the program passes it untouched, drops it, or
/// sends exactly the reply the reference (`metallb_testkit::frame_oracle`, etherparse
/// and the RFCs, never our parser) decides; so it never answers for an address that
/// is not an announced VIP on that interface and VLAN. Frames are valid requests
/// and solicitations mutated (bits, bytes, truncation, extension, VLAN tags,
/// addresses, options of every length), and random bytes.
///
/// `XDP_PROPERTY_SEED` replays a run, `XDP_PROPERTY_FRAMES` sets how many (100,000
/// by default, a few seconds). A frame that disagrees is printed as hex: add it to
/// `tests/fixtures/xdp_property_regressions.txt`, where it is run first every time.
#[test]
fn mutated_frames_agree_with_an_independent_reference() {
    use metallb_testkit::frame_oracle::OracleVip;
    let f = fixture();
    let vips: Vec<OracleVip> =
        f.dp.installed()
            .into_iter()
            .map(|(key, config)| OracleVip {
                addr: key.addr,
                ifindex: key.ifindex,
                vlan_id: key.vlan_id,
                mac: config.mac.0,
                answer: config.action == VipAction::Answer,
            })
            .collect();
    let seed = std::env::var("XDP_PROPERTY_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("XDP_PROPERTY_SEED: a u64"))
        .unwrap_or(0x5eed_0016);
    let frames = std::env::var("XDP_PROPERTY_FRAMES")
        .ok()
        .map(|s| s.parse::<usize>().expect("XDP_PROPERTY_FRAMES: a count"))
        .unwrap_or(100_000);
    eprintln!("property test: XDP_PROPERTY_SEED={seed} XDP_PROPERTY_FRAMES={frames}");

    let mut failures: Vec<String> = PROPERTY_REGRESSIONS
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|hex| !hex.is_empty())
        .flat_map(|hex| PATHS.map(|path| disagreement(&f.dp, path, &unhex(hex), &vips)))
        .flatten()
        .map(|text| format!("(regression) {text}"))
        .collect();
    let templates = property_templates();
    let mut rng = Rng(seed);
    let mut answered = 0usize;
    for _ in 0..frames {
        let frame = property_frame(&mut rng, &templates);
        let disagreements: Vec<String> = PATHS
            .iter()
            .filter_map(|path| disagreement(&f.dp, *path, &frame, &vips))
            .collect();
        if !disagreements.is_empty() {
            failures.extend(disagreements);
            if failures.len() >= 20 {
                break;
            }
        } else if matches!(
            metallb_testkit::frame_oracle::expected(&frame, IF, &vips),
            metallb_testkit::frame_oracle::Expected::Tx(_)
        ) {
            answered += 1;
        }
    }
    eprintln!("property test: {answered} of {frames} frames answered, as the reference says");
    assert!(
        failures.is_empty(),
        "{} frames disagree with the reference (XDP_PROPERTY_SEED={seed}); add each to tests/fixtures/xdp_property_regressions.txt:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The mutations must leave enough frames answerable for the property to say
    // something about answers, not only about passes.
    assert!(
        answered * 20 >= frames,
        "only {answered} of {frames} frames were answerable"
    );
}

/// When the idle half cannot be built (no seed places every key), nothing of the sync
/// is applied: the live entries stay as they were, nothing is reported as added or
/// answering (so no gratuitous announcement is sent for an entry not installed), and
/// the next sync applies it.
#[test]
fn a_failed_rebuild_changes_nothing_and_the_next_sync_retries() {
    let mut f = fixture();
    let before = f.dp.installed();
    let new_vip = Ipv4Addr::new(192, 0, 2, 120);
    let mut desired = before.clone();
    desired.insert(
        key(new_vip, IF, 0),
        VipConfig {
            mac: MacAddr(NODE_MAC),
            action: VipAction::Answer,
        },
    );
    // An action-only change in the same sync, which would go to the live half in
    // place: it must not, either.
    desired.insert(
        key(VIP_SUPPRESSED, IF, 0),
        VipConfig {
            mac: MacAddr(NODE_MAC),
            action: VipAction::Answer,
        },
    );
    desired.remove(&key(VIP6, IF, 0));

    f.dp.fail_next_rebuild();
    let report = f.dp.sync(&desired);
    assert_eq!(
        report
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [metallb_user::datapath::DatapathError::IndexFull { family: "IPv4" }.to_string()]
    );
    // Not what was asked for: the speaker's next change is a full sync.
    assert!(!report.complete);
    assert!(report.added.is_empty(), "{:?}", report.added);
    assert!(report.changed.is_empty(), "{:?}", report.changed);
    assert!(report.removed.is_empty(), "{:?}", report.removed);
    assert!(
        report.now_answering.is_empty(),
        "{:?}",
        report.now_answering
    );
    assert_eq!(f.dp.installed(), before);
    let run = |dp: &Datapath, frame: Vec<u8>| dp.test_run(&frame, IF).expect("run").0;
    assert_eq!(run(&f.dp, arp_request(ASKER_V4, new_vip, None)), XDP_PASS);
    assert_eq!(
        run(&f.dp, arp_request(ASKER_V4, VIP_SUPPRESSED, None)),
        XDP_DROP
    );
    let option = sllao(ASKER_OPTION_MAC);
    assert_eq!(run(&f.dp, ns_to_group(VIP6, &[&option], None)), XDP_TX);

    let report = f.dp.sync(&desired);
    assert!(
        report.errors.is_empty() && report.complete,
        "{:?}",
        report.errors
    );
    assert_eq!(report.added, [key(new_vip, IF, 0)]);
    assert_eq!(report.removed, [key(VIP6, IF, 0)]);
    assert_eq!(
        report.now_answering,
        [key(VIP_SUPPRESSED, IF, 0), key(new_vip, IF, 0)]
    );
    assert_eq!(f.dp.installed(), desired);
    assert_eq!(run(&f.dp, arp_request(ASKER_V4, new_vip, None)), XDP_TX);
    assert_eq!(
        run(&f.dp, arp_request(ASKER_V4, VIP_SUPPRESSED, None)),
        XDP_TX
    );
    assert_eq!(run(&f.dp, ns_to_group(VIP6, &[&option], None)), XDP_PASS);
}

/// One change at a time (a VIP added, removed, moved to another MAC, or switched
/// between answering and suppressing), each written into the idle half of the tables
/// key by key (with and without [`Datapath::tidy`] in between; the whole desired set
/// given to [`Datapath::sync`], or only the entry that changed to [`Datapath::update`]):
/// after every change the program answers exactly the desired VIPs, with their MACs,
/// through whichever half is live; a flip happens exactly for the changes that need one (not for an action
/// change, stored in place).
#[test]
fn one_change_at_a_time_is_answered_exactly_through_both_halves() {
    let mut f = fixture();
    let generation = |dp: &Datapath| {
        metallb_user::datapath::maps::Maps::read_pinned_ctl(&dp.pin_dir().join("vip_ctl"))
            .expect("read the control block")
            .generation
    };
    let other_mac = [0x02, 0, 0, 0, 0, 0xbb];
    let mut desired = f.dp.installed();
    let vips: Vec<IpAddr> = (0..24u32)
        .flat_map(|i| {
            [
                IpAddr::from(Ipv4Addr::new(198, 51, 100, i as u8)),
                IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, i as u16)),
            ]
        })
        .collect();
    let answered = |dp: &Datapath, vip: IpAddr| -> (u32, Option<[u8; 6]>) {
        let frame = match vip {
            IpAddr::V4(v4) => arp_request(ASKER_V4, v4, None),
            IpAddr::V6(v6) => ns_to_group(v6, &[&sllao(ASKER_MAC)], None),
        };
        let (verdict, out) = dp.test_run(&frame, IF).expect("run");
        let source = (verdict == XDP_TX).then(|| out[6..12].try_into().expect("a MAC"));
        (verdict, source)
    };
    for round in 0..96usize {
        let vip = vips[round * 7 % vips.len()];
        let k = key(vip, IF, 0);
        let before = generation(&f.dp);
        let flips = match desired.get(&k).copied() {
            None => {
                desired.insert(
                    k,
                    VipConfig {
                        mac: MacAddr(NODE_MAC),
                        action: VipAction::Answer,
                    },
                );
                true
            }
            Some(_) if round % 3 == 0 => {
                desired.remove(&k);
                true
            }
            Some(config) if round % 3 == 1 => {
                let mac = if config.mac.0 == NODE_MAC {
                    other_mac
                } else {
                    NODE_MAC
                };
                desired.insert(
                    k,
                    VipConfig {
                        mac: MacAddr(mac),
                        ..config
                    },
                );
                true
            }
            Some(config) => {
                let action = match config.action {
                    VipAction::Answer => VipAction::Suppress,
                    _ => VipAction::Answer,
                };
                desired.insert(k, VipConfig { action, ..config });
                false
            }
        };
        if round % 2 == 0 {
            assert!(f.dp.tidy().is_empty(), "round {round}");
        }
        let report = if round % 4 < 2 {
            f.dp.sync(&desired)
        } else {
            // Only the entry that changed, beside an unchanged one and one absent and
            // asked to be: no-ops.
            let mut delta = BTreeMap::from([(k, desired.get(&k).copied())]);
            if let Some((same, config)) = desired.iter().find(|(other, _)| **other != k) {
                delta.insert(*same, Some(*config));
            }
            delta.insert(
                key(IpAddr::from(Ipv4Addr::new(198, 51, 101, 1)), IF, 0),
                None,
            );
            f.dp.update(&delta)
        };
        assert!(
            report.errors.is_empty() && report.complete,
            "round {round}: {:?}",
            report.errors
        );
        assert_eq!(
            report.added.len() + report.removed.len() + report.changed.len(),
            1,
            "round {round}"
        );
        assert_eq!(
            generation(&f.dp) - before,
            u64::from(flips),
            "round {round}: flips"
        );
        assert_eq!(f.dp.installed(), desired, "round {round}");
        for vip in &vips {
            let expected = match desired.get(&key(*vip, IF, 0)) {
                None => (XDP_PASS, None),
                Some(c) if c.action == VipAction::Answer => (XDP_TX, Some(c.mac.0)),
                Some(_) => (XDP_DROP, None),
            };
            assert_eq!(answered(&f.dp, *vip), expected, "round {round}: {vip}");
        }
    }
}

/// Waits (2 s at most) until the fence timer has put the datapath in `fenced`.
fn wait_fenced(dp: &Datapath, fenced: bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while dp.fence().fenced != fenced {
        assert!(
            std::time::Instant::now() < deadline,
            "fenced is still {} after 2 s: {:?}",
            !fenced,
            dp.fence()
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Past its deadline the datapath answers nothing: requests for the VIPs it answers
/// are dropped (the kernel may own them too) and counted as fenced; suppressed and
/// unknown VIPs are handled as before. A renewed deadline makes it answer again; no
/// deadline, it never fences, and the timer keeps running.
#[test]
fn a_fenced_datapath_drops_requests_for_its_vips_and_counts_them() {
    let f = fixture();
    let option = sllao(ASKER_OPTION_MAC);
    let ticks = f.dp.fence().ticks;
    assert!(!f.dp.fence().fenced);
    assert_eq!(f.dp.fence().deadline_in, None);

    f.dp.set_fence_deadline(Some(std::time::Duration::ZERO))
        .expect("set the deadline");
    wait_fenced(&f.dp, true);
    assert!(f.dp.fence().ticks > ticks, "{:?}", f.dp.fence());
    assert_eq!(f.dp.fence().episodes, 1);
    let fenced = |requests| counters(requests, 0, 0, 0);
    run_cases(
        &f.dp,
        vec![
            Case {
                name: "fenced: ARP request for an answered VIP".into(),
                frame: arp_request(ASKER_V4, VIP, None),
                verdict: XDP_DROP,
                output: None,
                outcome: Outcome::DropFenced,
                vip: Some((key(VIP, IF, 0), fenced(1))),
            },
            Case {
                name: "fenced: ARP request in a VLAN".into(),
                frame: arp_request(ASKER_V4, VIP_VLAN, Some(VLAN)),
                verdict: XDP_DROP,
                output: None,
                outcome: Outcome::DropFenced,
                vip: Some((key(VIP_VLAN, IF, VLAN), fenced(1))),
            },
            Case {
                name: "fenced: NS for an answered VIP".into(),
                frame: ns_to_group(VIP6, &[&option], None),
                verdict: XDP_DROP,
                output: None,
                outcome: Outcome::DropFenced,
                vip: Some((key(VIP6, IF, 0), fenced(1))),
            },
            Case {
                name: "fenced: a suppressed VIP is still suppressed".into(),
                frame: arp_request(ASKER_V4, VIP_SUPPRESSED, None),
                verdict: XDP_DROP,
                output: None,
                outcome: Outcome::DropSuppressed,
                vip: Some((key(VIP_SUPPRESSED, IF, 0), counters(1, 0, 0, 1))),
            },
            Case {
                name: "fenced: an unknown address passes".into(),
                frame: arp_request(ASKER_V4, UNKNOWN_V4, None),
                verdict: XDP_PASS,
                output: None,
                outcome: Outcome::PassUnknownTarget,
                vip: None,
            },
        ],
    );

    f.dp.set_fence_deadline(Some(std::time::Duration::from_secs(60)))
        .expect("renew the deadline");
    wait_fenced(&f.dp, false);
    let answer = Case {
        name: "renewed: answered again".into(),
        frame: arp_request(ASKER_V4, VIP, None),
        verdict: XDP_TX,
        output: Some(arp_reply_from_node(ASKER_V4, None)),
        outcome: Outcome::TxArpReply,
        vip: Some((key(VIP, IF, 0), answered())),
    };
    run_cases(&f.dp, vec![answer]);

    // No deadline: never fenced, however long; the timer still runs.
    f.dp.set_fence_deadline(None).expect("no deadline");
    let ticks = f.dp.fence().ticks;
    let until = std::time::Instant::now() + std::time::Duration::from_millis(100);
    while std::time::Instant::now() < until || f.dp.fence().ticks < ticks + 2 {
        assert!(!f.dp.fence().fenced);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(f.dp.fence().episodes, 1);
}
