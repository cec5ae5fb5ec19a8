//! The responder on a real interface (needs root): a node namespace runs the datapath
//! on its veth end, a client namespace asks with `arping` and `ndisc6`, tools nobody
//! here wrote. Every scenario runs in native and in generic XDP mode and on the
//! userspace datapath, each in a lab of its own that is removed when the test ends,
//! pass or fail.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use metallb_common::VipAction;
use metallb_testkit::lab::{Lab, NetnsGuard, ScratchPinDir};
use metallb_user::datapath::{
    Datapath, DatapathKind, DatapathOptions, Responder, XdpMode,
    iface::{self, MacAddr},
    maps::{VipConfig, VipCounters, VipKey},
};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const NOT_A_VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const NOT_A_VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x200);
/// A MAC no interface has, so an answer carrying it can only come from the XDP entry.
const ENTRY_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x01, 0x99]);

/// Field drop order: detach (datapath), then the pins, then the namespaces.
struct Node {
    dp: Datapath,
    _pins: ScratchPinDir,
    lab: Lab,
    ifindex: u32,
}

impl Node {
    fn start(responder: Responder, tag: &str) -> Self {
        let (mode, kind) = match responder {
            Responder::Xdp(mode) => (mode, DatapathKind::Xdp),
            Responder::Userspace => (XdpMode::Generic, DatapathKind::Userspace),
        };
        let mut lab = Lab::new(tag).expect("create the lab");
        lab.prepare_client_for(mode)
            .expect("prepare the client end");
        let pins = ScratchPinDir::new(tag);
        let _netns = NetnsGuard::enter(&lab.node_ns).expect("enter the node namespace");
        let mut dp = Datapath::load(&DatapathOptions {
            pin_dir: pins.path.clone(),
            max_vips: 64,
        })
        .expect("load the datapath");
        let used = dp.attach_with(lab.node_if, mode, kind).expect("attach");
        assert_eq!(
            used, responder,
            "veth supports {mode} XDP: no fallback expected"
        );
        let ifindex = iface::by_name(lab.node_if).expect("node interface").ifindex;
        Node {
            dp,
            _pins: pins,
            lab,
            ifindex,
        }
    }

    fn set_vips(&mut self, entries: &[(IpAddr, MacAddr, VipAction)]) {
        let desired: BTreeMap<VipKey, VipConfig> = entries
            .iter()
            .map(|(addr, mac, action)| {
                (
                    VipKey {
                        addr: *addr,
                        ifindex: self.ifindex,
                        vlan_id: 0,
                    },
                    VipConfig {
                        mac: *mac,
                        action: *action,
                    },
                )
            })
            .collect();
        // Multicast filters are set in the namespace of the calling thread.
        let _netns = NetnsGuard::enter(&self.lab.node_ns).expect("enter the node namespace");
        let report = self.dp.sync(&desired);
        assert!(report.errors.is_empty(), "sync: {:?}", report.errors);
    }

    fn counters(&self, addr: IpAddr) -> VipCounters {
        self.dp
            .vips()
            .expect("read VIPs")
            .into_iter()
            .find(|r| r.key.addr == addr)
            .map(|r| r.counters)
            .unwrap_or_default()
    }

    /// `arping` from the client: the MAC of every reply, in order.
    fn arping(&self, target: Ipv4Addr, count: u32) -> Vec<MacAddr> {
        let out = self.lab.arping(target, count, 3).expect("run arping");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .filter(|line| line.contains("reply from"))
            .map(|line| {
                let mac = line
                    .split('[')
                    .nth(1)
                    .and_then(|rest| rest.split(']').next());
                mac.and_then(|m| m.parse().ok())
                    .unwrap_or_else(|| panic!("unparsable arping line {line:?}"))
            })
            .collect()
    }

    /// `ndisc6` from the client: the target link-layer address it got, if any.
    fn ndisc6(&self, target: Ipv6Addr) -> Option<MacAddr> {
        let out = self.lab.ndisc6(target).expect("run ndisc6");
        let text = String::from_utf8_lossy(&out.stdout);
        let mac = text
            .lines()
            .find_map(|line| line.strip_prefix("Target link-layer address: "))
            .map(|m| {
                m.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("ndisc6 printed {m:?}: {e}"))
            });
        assert_eq!(mac.is_some(), out.status.success(), "ndisc6 output: {text}");
        mac
    }

    /// What kube-proxy in IPVS mode does: the VIP on a kube-ipvs0 interface (a veth
    /// here), for which the kernel answers ARP on every interface. Returns the node
    /// namespace.
    fn vip_on_kube_ipvs0(&self) -> String {
        let ns = self.lab.node_ns.clone();
        let link = [
            "link",
            "add",
            "kube-ipvs0",
            "type",
            "veth",
            "peer",
            "name",
            "kube-ipvs1",
        ];
        self.lab.ip(&ns, &link).expect("add kube-ipvs0");
        let addr = format!("{VIP}/32");
        self.lab
            .ip(&ns, &["addr", "add", &addr, "dev", "kube-ipvs0"])
            .expect("VIP on kube-ipvs0");
        ns
    }

    fn node_owns(&self, addr: IpAddr) -> bool {
        let out = self
            .lab
            .ip(&self.lab.node_ns, &["-o", "addr", "show"])
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr}/"))
    }
}

fn answers_from_the_map(mode: Responder, tag: &str) {
    let mut node = Node::start(mode, tag);
    let node_mac = node.lab.node_mac;
    node.set_vips(&[
        (VIP.into(), node_mac, VipAction::Answer),
        (VIP6.into(), node_mac, VipAction::Answer),
    ]);
    assert!(!node.node_owns(VIP.into()) && !node.node_owns(VIP6.into()));

    assert_eq!(
        node.arping(VIP, 2),
        vec![node_mac, node_mac],
        "{mode}: arping the VIP"
    );
    assert_eq!(
        node.counters(VIP.into()),
        VipCounters {
            requests: 2,
            replies: 2,
            conflicts: 0,
            suppressed: 0
        }
    );
    assert_eq!(node.ndisc6(VIP6), Some(node_mac), "{mode}: ndisc6 the VIP");
    let v6 = node.counters(VIP6.into());
    assert!(
        v6.requests >= 1 && v6.replies == v6.requests,
        "{mode}: {v6:?}"
    );

    assert_eq!(
        node.arping(NOT_A_VIP, 1),
        vec![],
        "{mode}: a non-VIP gets no answer"
    );
    assert_eq!(
        node.ndisc6(NOT_A_VIP6),
        None,
        "{mode}: a non-VIP gets no answer"
    );
    let stats = node.dp.stats().expect("stats");
    assert!(stats.pass_unknown_target >= 2, "{stats:?}");

    node.set_vips(&[]);
    assert_eq!(
        node.arping(VIP, 1),
        vec![],
        "{mode}: a removed VIP is not answered"
    );
    assert_eq!(
        node.ndisc6(VIP6),
        None,
        "{mode}: a removed VIP is not answered"
    );

    let Node { dp, _pins, lab, .. } = node;
    let errors = {
        let _netns = NetnsGuard::enter(&lab.node_ns).expect("enter the node namespace");
        dp.shutdown()
    };
    assert!(errors.is_empty(), "{errors:?}");
}

/// kube-proxy in IPVS mode puts every VIP on kube-ipvs0, and then the kernel answers
/// ARP for it on every interface. An answer entry must be the only one answering; a
/// suppress entry must leave the VIP unanswered, the kernel included.
fn suppression_silences_the_kernel(mode: XdpMode, tag: &str) {
    let mut node = Node::start(Responder::Xdp(mode), tag);
    let node_mac = node.lab.node_mac;
    let ns = node.vip_on_kube_ipvs0();
    // The kernel answers solicitations only for addresses of the receiving interface.
    node.lab
        .ip(
            &ns,
            &[
                "addr",
                "add",
                &format!("{VIP6}/128"),
                "dev",
                node.lab.node_if,
                "nodad",
            ],
        )
        .expect("VIP6 on the node interface");

    // Control: with no entry, the node's kernel answers, with the interface's MAC.
    assert_eq!(
        node.arping(VIP, 1),
        vec![node_mac],
        "{mode}: the kernel answers by itself"
    );
    assert_eq!(
        node.ndisc6(VIP6),
        Some(node_mac),
        "{mode}: the kernel answers by itself"
    );

    // Answer: only XDP answers (the entry's MAC, never the kernel's).
    node.set_vips(&[
        (VIP.into(), ENTRY_MAC, VipAction::Answer),
        (VIP6.into(), ENTRY_MAC, VipAction::Answer),
    ]);
    assert_eq!(
        node.arping(VIP, 2),
        vec![ENTRY_MAC, ENTRY_MAC],
        "{mode}: XDP answers alone"
    );
    assert_eq!(
        node.ndisc6(VIP6),
        Some(ENTRY_MAC),
        "{mode}: XDP answers alone"
    );

    // Suppress: nobody answers.
    node.set_vips(&[
        (VIP.into(), node_mac, VipAction::Suppress),
        (VIP6.into(), node_mac, VipAction::Suppress),
    ]);
    assert_eq!(
        node.arping(VIP, 2),
        vec![],
        "{mode}: suppressed, not even the kernel answers"
    );
    assert_eq!(
        node.ndisc6(VIP6),
        None,
        "{mode}: suppressed, not even the kernel answers"
    );
    let v4 = node.counters(VIP.into());
    assert!(
        v4.suppressed >= 2 && v4.suppressed == v4.requests - 2,
        "{mode}: {v4:?}"
    );
    let v6 = node.counters(VIP6.into());
    assert!(v6.suppressed >= 1, "{mode}: {v6:?}");
}

#[test]
fn netns_native_answers_from_the_map() {
    answers_from_the_map(Responder::Xdp(XdpMode::Native), "ans-nat");
}

#[test]
fn netns_generic_answers_from_the_map() {
    answers_from_the_map(Responder::Xdp(XdpMode::Generic), "ans-gen");
}

#[test]
fn netns_userspace_answers_from_the_map() {
    answers_from_the_map(Responder::Userspace, "ans-usr");
}

/// The userspace datapath cannot drop what the kernel answers: with a VIP on
/// kube-ipvs0 the kernel answers too, until arp_ignore=1 (what kube-proxy's strictARP
/// sets) keeps it to addresses of the receiving interface. Then the entry answers
/// alone, and a suppressed VIP is not answered at all.
#[test]
fn netns_userspace_suppression_needs_arp_ignore() {
    let mut node = Node::start(Responder::Userspace, "sup-usr");
    let node_mac = node.lab.node_mac;
    let ns = node.vip_on_kube_ipvs0();
    node.set_vips(&[(VIP.into(), ENTRY_MAC, VipAction::Answer)]);
    let both = node.arping(VIP, 2);
    assert!(
        both.contains(&ENTRY_MAC) && both.contains(&node_mac),
        "the entry and the kernel both answer: {both:?}"
    );
    let sysctl = |value: &str| {
        metallb_testkit::lab::exec_in(
            &ns,
            "sysctl",
            &["-q", &format!("net.ipv4.conf.all.arp_ignore={value}")],
        )
        .expect("sysctl arp_ignore")
    };
    sysctl("1");
    assert_eq!(
        node.arping(VIP, 2),
        vec![ENTRY_MAC, ENTRY_MAC],
        "with arp_ignore=1 the entry answers alone"
    );
    node.set_vips(&[(VIP.into(), node_mac, VipAction::Suppress)]);
    assert_eq!(
        node.arping(VIP, 2),
        vec![],
        "suppressed, and the kernel quiet"
    );
    let v4 = node.counters(VIP.into());
    // The entry's counters go on through the change of action.
    assert!(
        v4.suppressed >= 2 && v4.requests == v4.replies + v4.suppressed,
        "{v4:?}"
    );
}

#[test]
fn netns_native_suppression_silences_the_kernel() {
    suppression_silences_the_kernel(XdpMode::Native, "sup-nat");
}

#[test]
fn netns_generic_suppression_silences_the_kernel() {
    suppression_silences_the_kernel(XdpMode::Generic, "sup-gen");
}
