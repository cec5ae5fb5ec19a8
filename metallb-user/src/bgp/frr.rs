//! One FRR configuration from this node's BGP plan, as MetalLB's FRR mode renders it
//! (its `internal/bgp/frr/templates`): a `router bgp` per (myASN, routerID, VRF); per
//! neighbor its session (remote-as, ebgp-multihop, local-as, port, timers, password,
//! update-source, BFD profile), an inbound deny-all route-map and an outbound one that
//! sets local preference and communities on the prefixes that carry them and lets out
//! only the prefixes planned for that neighbor; `network` statements; the BFD profiles.
//! Pure.
//!
//! One deliberate difference: a neighbor whose BGPPeer does not ask for graceful restart
//! gets `graceful-restart-disable`. FRR otherwise advertises the capability, and a router
//! that honours it (BIRD does by default) keeps a dead node's routes for FRR's restart
//! time (120 s): a two-minute black hole where BFD or the hold timer should withdraw.

use std::{collections::BTreeMap, fmt::Write as _};

use super::plan::{NodeBgp, Prefix, Session};
use crate::config::{
    bgp::BgpCommunity,
    bgp_config::{BfdProfile, BgpPeer, Families},
};

/// What FRR needs besides the plan.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    pub hostname: String,
    /// FRR's log level (`informational`, `debugging`, ...).
    pub log_level: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            hostname: "metallb".into(),
            log_level: "informational".into(),
        }
    }
}

/// FRR's family keyword of a prefix list (`ip` / `ipv6`).
fn family_keyword(prefix: &Prefix) -> &'static str {
    if prefix.is_ipv4() { "ip" } else { "ipv6" }
}

/// MetalLB's neighbor ID: the address (or interface), `-vrf` when in a VRF.
fn neighbor_id(peer: &BgpPeer) -> String {
    let id = peer_name(peer);
    if peer.vrf.is_empty() {
        id
    } else {
        format!("{id}-{}", peer.vrf)
    }
}

/// How FRR names the neighbor: its address, or its interface (unnumbered).
fn peer_name(peer: &BgpPeer) -> String {
    match (&peer.address, &peer.interface) {
        (Some(address), _) => address.to_string(),
        (None, Some(interface)) => interface.clone(),
        (None, None) => String::new(),
    }
}

fn community_text(community: &BgpCommunity) -> String {
    match community {
        BgpCommunity::Legacy(asn, value) => format!("{asn}:{value}"),
        BgpCommunity::Large(a, b, c) => format!("{a}:{b}:{c}"),
    }
}

/// A prefix list that sets one attribute on the prefixes it holds.
struct Modifier {
    name: String,
    family: &'static str,
    prefixes: Vec<String>,
    set: String,
}

/// MetalLB's per-neighbor filters (`prefixfilters.tmpl`).
fn neighbor_filters(out: &mut String, session: &Session) {
    let id = neighbor_id(&session.peer);
    let _ = writeln!(out, "route-map {id}-in deny 20");
    // Keyed by MetalLB's prefix-list names, which also give the order.
    let mut local_prefs: BTreeMap<String, Modifier> = BTreeMap::new();
    let mut communities: BTreeMap<String, Modifier> = BTreeMap::new();
    for (prefix, attributes) in &session.prefixes {
        let family = family_keyword(prefix);
        if let Some(local_pref) = attributes.local_pref {
            let name = format!("{id}-{local_pref}-{family}-localpref-prefixes");
            local_prefs
                .entry(name.clone())
                .or_insert_with(|| Modifier {
                    name,
                    family,
                    prefixes: Vec::new(),
                    set: format!("set local-preference {local_pref}"),
                })
                .prefixes
                .push(prefix.to_string());
        }
        for community in &attributes.communities {
            let value = community_text(community);
            let (name, set) = match community {
                BgpCommunity::Legacy(..) => (
                    format!("{id}-{value}-{family}-community-prefixes"),
                    format!("set community {value} additive"),
                ),
                BgpCommunity::Large(..) => (
                    format!("{id}-large:{value}-{family}-community-prefixes"),
                    format!("set large-community {value} additive"),
                ),
            };
            communities
                .entry(name.clone())
                .or_insert_with(|| Modifier {
                    name,
                    family,
                    prefixes: Vec::new(),
                    set,
                })
                .prefixes
                .push(prefix.to_string());
        }
    }
    let mut route_map_seq = 0;
    let mut next_seq = || {
        route_map_seq += 1;
        route_map_seq
    };
    for modifier in local_prefs.values_mut().chain(communities.values_mut()) {
        modifier.prefixes.sort();
        for (i, prefix) in modifier.prefixes.iter().enumerate() {
            let _ = writeln!(
                out,
                "{} prefix-list {} seq {} permit {prefix}",
                modifier.family,
                modifier.name,
                i + 1
            );
        }
        let _ = writeln!(out, "route-map {id}-out permit {}", next_seq());
        let _ = writeln!(
            out,
            "  match {} address prefix-list {}",
            modifier.family, modifier.name
        );
        let _ = writeln!(out, "  {}", modifier.set);
        let _ = writeln!(out, "  on-match next");
    }
    for (keyword, v4) in [("ip", true), ("ipv6", false)] {
        let list = format!("{id}-allowed-ipv{}", if v4 { 4 } else { 6 });
        let mut allowed: Vec<String> = session
            .prefixes
            .keys()
            .filter(|p| p.is_ipv4() == v4)
            .map(|p| p.to_string())
            .collect();
        allowed.sort();
        if allowed.is_empty() {
            let _ = writeln!(out, "{keyword} prefix-list {list} seq 1 deny any");
        }
        for (i, prefix) in allowed.iter().enumerate() {
            let _ = writeln!(
                out,
                "{keyword} prefix-list {list} seq {} permit {prefix}",
                i + 1
            );
        }
    }
    for (keyword, v4) in [("ip", true), ("ipv6", false)] {
        let _ = writeln!(out, "route-map {id}-out permit {}", next_seq());
        let _ = writeln!(
            out,
            "  match {keyword} address prefix-list {id}-allowed-ipv{}",
            if v4 { 4 } else { 6 }
        );
    }
}

/// MetalLB's `mustDisableConnectedCheck`: single-hop IPv6 eBGP.
fn disable_connected_check(peer: &BgpPeer) -> bool {
    peer.families == Families::Ipv6
        && !peer.ebgp_multihop
        && (peer.interface.is_some() || !peer.is_internal())
}

/// MetalLB's `neighborsession.tmpl`, plus `graceful-restart-disable` (see the module).
fn neighbor_session(out: &mut String, peer: &BgpPeer) {
    let name = peer_name(peer);
    let asn = peer.peer_asn.to_string();
    match &peer.interface {
        Some(interface) if peer.address.is_none() => {
            let _ = writeln!(out, "  neighbor {interface} interface remote-as {asn}");
        }
        _ => {
            let _ = writeln!(out, "  neighbor {name} remote-as {asn}");
        }
    }
    let mut line = |text: String| {
        let _ = writeln!(out, "  neighbor {name} {text}");
    };
    if peer.ebgp_multihop {
        line("ebgp-multihop".into());
    }
    if let Some(local_asn) = peer.local_asn {
        line(format!("local-as {local_asn} no-prepend replace-as"));
    }
    line(format!("port {}", peer.port.unwrap_or(179)));
    if let (Some(keepalive), Some(hold)) = (peer.keepalive_time, peer.hold_time) {
        line(format!("timers {keepalive} {hold}"));
    }
    if let Some(connect) = peer.connect_time.filter(|c| *c != 0) {
        line(format!("timers connect {connect}"));
    }
    if !peer.password.is_empty() {
        line(format!("password {}", peer.password));
    }
    if let Some(source) = peer.source_address {
        line(format!("update-source {source}"));
    }
    if peer.graceful_restart {
        line("graceful-restart".into());
    } else {
        line("graceful-restart-disable".into());
    }
    if let Some(profile) = &peer.bfd_profile {
        line("bfd".into());
        line(format!("bfd profile {profile}"));
    }
    if disable_connected_check(peer) {
        line("disable-connected-check".into());
    }
}

/// MetalLB's `neighboripfamily.tmpl`.
fn neighbor_families(out: &mut String, peer: &BgpPeer) {
    let name = peer_name(peer);
    let id = neighbor_id(peer);
    for (family, on) in [
        ("ipv4", peer.families != Families::Ipv6),
        ("ipv6", peer.families != Families::Ipv4),
    ] {
        if on {
            let _ = writeln!(out, "  address-family {family} unicast");
            let _ = writeln!(out, "    neighbor {name} activate");
            let _ = writeln!(out, "    neighbor {name} route-map {id}-in in");
            let _ = writeln!(out, "    neighbor {name} route-map {id}-out out");
            let _ = writeln!(out, "  exit-address-family");
        }
    }
}

fn bfd_profile(out: &mut String, profile: &BfdProfile) {
    let _ = writeln!(out, "  profile {}", profile.name);
    let mut line = |text: String| {
        let _ = writeln!(out, "    {text}");
    };
    if let Some(v) = profile.receive_interval {
        line(format!("receive-interval {v}"));
    }
    if let Some(v) = profile.transmit_interval {
        line(format!("transmit-interval {v}"));
    }
    if let Some(v) = profile.detect_multiplier {
        line(format!("detect-multiplier {v}"));
    }
    if profile.echo_mode {
        line("echo-mode".into());
    }
    if let Some(v) = profile.echo_interval {
        line(format!("echo receive-interval {v}"));
        line(format!("echo transmit-interval {v}"));
    }
    if profile.passive_mode {
        line("passive-mode".into());
    }
    if let Some(v) = profile.minimum_ttl {
        line(format!("minimum-ttl {v}"));
    }
}

/// The sessions grouped as MetalLB groups them: by router (`myASN@routerID@vrf`), then
/// by neighbor (`asn@address@vrf`), each in the order of those keys.
fn routers(node: &NodeBgp) -> BTreeMap<String, BTreeMap<String, &Session>> {
    let mut out: BTreeMap<String, BTreeMap<String, &Session>> = BTreeMap::new();
    for session in &node.sessions {
        let peer = &session.peer;
        let router_id = peer
            .router_id
            .map_or_else(|| "<nil>".to_string(), |id| id.to_string());
        let router = format!("{}@{router_id}@{}", peer.my_asn, peer.vrf);
        let neighbor = format!("{}@{}@{}", peer.peer_asn, peer_name(peer), peer.vrf);
        out.entry(router)
            .or_default()
            .entry(neighbor)
            .or_insert(session);
    }
    out
}

/// The whole configuration file.
pub fn render(node: &NodeBgp, options: &RenderOptions) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "log stdout {}", options.log_level);
    let _ = writeln!(out, "log timestamp precision 3");
    let _ = writeln!(out, "hostname {}", options.hostname);
    let _ = writeln!(out, "ip nht resolve-via-default");
    let _ = writeln!(out, "ipv6 nht resolve-via-default");
    let routers = routers(node);
    for neighbors in routers.values() {
        for session in neighbors.values() {
            neighbor_filters(&mut out, session);
        }
    }
    for neighbors in routers.values() {
        let Some(first) = neighbors.values().next() else {
            continue;
        };
        let peer = &first.peer;
        out.push('\n');
        if peer.vrf.is_empty() {
            let _ = writeln!(out, "router bgp {}", peer.my_asn);
        } else {
            let _ = writeln!(out, "router bgp {} vrf {}", peer.my_asn, peer.vrf);
        }
        let _ = writeln!(out, "  no bgp ebgp-requires-policy");
        let _ = writeln!(out, "  no bgp network import-check");
        let _ = writeln!(out, "  no bgp default ipv4-unicast");
        let _ = writeln!(out, "  bgp graceful-restart preserve-fw-state");
        if let Some(router_id) = peer.router_id {
            let _ = writeln!(out, "  bgp router-id {router_id}");
        }
        for session in neighbors.values() {
            neighbor_session(&mut out, &session.peer);
        }
        for session in neighbors.values() {
            neighbor_families(&mut out, &session.peer);
        }
        for v4 in [true, false] {
            let mut prefixes: Vec<String> = neighbors
                .values()
                .flat_map(|s| s.prefixes.keys())
                .filter(|p| p.is_ipv4() == v4)
                .map(|p| p.to_string())
                .collect();
            prefixes.sort();
            prefixes.dedup();
            if !prefixes.is_empty() {
                let _ = writeln!(
                    out,
                    "  address-family ipv{} unicast",
                    if v4 { 4 } else { 6 }
                );
                for prefix in prefixes {
                    let _ = writeln!(out, "    network {prefix}");
                }
                let _ = writeln!(out, "  exit-address-family");
            }
        }
    }
    if !node.bfd_profiles.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "bfd");
        for profile in &node.bfd_profiles {
            bfd_profile(&mut out, profile);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{bgp::plan::Attributes, config::bgp_config::PeerAsn};

    /// MetalLB's test session: 10.1.1.254 (AS 100) to 10.2.2.254 (AS 200), eBGP
    /// multi-hop, 1 s timers, password.
    fn metallb_peer() -> BgpPeer {
        BgpPeer {
            name: "test-peer".into(),
            my_asn: 100,
            peer_asn: PeerAsn::Number(200),
            local_asn: None,
            address: Some("10.2.2.254".parse().unwrap()),
            interface: None,
            port: Some(179),
            source_address: Some("10.1.1.254".parse().unwrap()),
            hold_time: Some(1),
            keepalive_time: Some(1),
            connect_time: None,
            router_id: Some("10.1.1.254".parse().unwrap()),
            node_selectors: Vec::new(),
            password: "password".into(),
            password_secret: None,
            bfd_profile: None,
            graceful_restart: false,
            ebgp_multihop: true,
            vrf: String::new(),
            families: Families::Ipv4,
        }
    }

    /// MetalLB's test prefixes are not masked (`172.16.1.10/24`).
    fn prefix(text: &str) -> Prefix {
        let (addr, len) = text.split_once('/').unwrap();
        Prefix {
            addr: addr.parse().unwrap(),
            len: len.parse().unwrap(),
        }
    }

    fn session(peer: BgpPeer, prefixes: &[(&str, Option<u32>, &[&str])]) -> Session {
        Session {
            peer,
            prefixes: prefixes
                .iter()
                .map(|(p, local_pref, communities)| {
                    let communities: BTreeSet<BgpCommunity> = communities
                        .iter()
                        .map(|c| crate::config::bgp::parse_community(c).unwrap())
                        .collect();
                    (
                        prefix(p),
                        Attributes {
                            local_pref: *local_pref,
                            communities,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Lines without Go templates' blank and whitespace-only ones, trailing spaces cut.
    fn normalized(text: &str) -> Vec<String> {
        text.lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn golden(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/metallb-frr/{name}.golden",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Our output is MetalLB's but for `graceful-restart-disable` on the neighbors that
    /// do not ask for graceful restart (see the module): those lines are checked, then
    /// left out of the comparison.
    fn assert_renders_as_metallb(node: &NodeBgp, name: &str) {
        let options = RenderOptions {
            hostname: "dummyhostname".into(),
            log_level: "informational".into(),
        };
        let ours = normalized(&render(node, &options));
        let mut disabled: Vec<&str> = ours
            .iter()
            .map(|l| l.trim_start())
            .filter(|l| l.ends_with(" graceful-restart-disable"))
            .collect();
        let mut wanted_disabled: Vec<String> = node
            .sessions
            .iter()
            .filter(|s| !s.peer.graceful_restart)
            .map(|s| format!("neighbor {} graceful-restart-disable", peer_name(&s.peer)))
            .collect();
        disabled.sort_unstable();
        wanted_disabled.sort_unstable();
        assert_eq!(disabled, wanted_disabled, "{name}: {ours:#?}");
        let ours: Vec<String> = ours
            .iter()
            .filter(|l| !l.ends_with(" graceful-restart-disable"))
            .cloned()
            .collect();
        assert_eq!(ours, normalized(&golden(name)), "{name}");
    }

    #[test]
    fn renders_metallb_goldens() {
        let communities: &[&str] = &["large:1111:2222:3333", "large:2222:3333:4444", "3333:4444"];
        assert_renders_as_metallb(
            &NodeBgp {
                sessions: vec![session(
                    metallb_peer(),
                    &[("172.16.1.10/24", Some(300), communities)],
                )],
                bfd_profiles: Vec::new(),
                services: Default::default(),
            },
            "TestLargeCommunities",
        );
        assert_renders_as_metallb(
            &NodeBgp {
                sessions: vec![session(
                    metallb_peer(),
                    &[
                        ("172.16.1.10/24", None, &["1111:2222"]),
                        ("172.16.1.11/24", None, &[]),
                    ],
                )],
                bfd_profiles: Vec::new(),
                services: Default::default(),
            },
            "TestTwoAdvertisements",
        );
        let profile = |name: &str| BfdProfile {
            name: name.into(),
            receive_interval: Some(60),
            transmit_interval: Some(70),
            detect_multiplier: Some(5),
            echo_interval: Some(90),
            echo_mode: false,
            passive_mode: false,
            minimum_ttl: Some(60),
        };
        assert_renders_as_metallb(
            &NodeBgp {
                sessions: vec![session(
                    BgpPeer {
                        keepalive_time: Some(2),
                        bfd_profile: Some("foo".into()),
                        ..metallb_peer()
                    },
                    &[],
                )],
                bfd_profiles: vec![profile("bar"), profile("foo")],
                services: Default::default(),
            },
            "TestBFDWithSession",
        );
        assert_renders_as_metallb(
            &NodeBgp {
                sessions: vec![
                    session(
                        BgpPeer {
                            connect_time: Some(1),
                            ..metallb_peer()
                        },
                        &[],
                    ),
                    session(
                        BgpPeer {
                            name: "test-peer2".into(),
                            my_asn: 300,
                            peer_asn: PeerAsn::Number(400),
                            address: Some("10.4.4.255".parse().unwrap()),
                            source_address: Some("10.3.3.254".parse().unwrap()),
                            router_id: Some("10.3.3.254".parse().unwrap()),
                            connect_time: Some(1),
                            ..metallb_peer()
                        },
                        &[],
                    ),
                ],
                bfd_profiles: Vec::new(),
                services: Default::default(),
            },
            "TestTwoSessions",
        );
        assert_renders_as_metallb(
            &NodeBgp {
                sessions: vec![session(
                    BgpPeer {
                        peer_asn: PeerAsn::Number(100),
                        address: Some("10:2:2::254".parse().unwrap()),
                        source_address: Some("10:1:1::254".parse().unwrap()),
                        connect_time: Some(1),
                        ebgp_multihop: false,
                        families: Families::Ipv6,
                        ..metallb_peer()
                    },
                    &[],
                )],
                bfd_profiles: Vec::new(),
                services: Default::default(),
            },
            "TestSingleIPv6IBGPSession",
        );
        assert_renders_as_metallb(
            &NodeBgp {
                sessions: vec![session(
                    BgpPeer {
                        my_asn: 102,
                        peer_asn: PeerAsn::Number(100),
                        hold_time: None,
                        keepalive_time: None,
                        password: String::new(),
                        graceful_restart: true,
                        ebgp_multihop: false,
                        ..metallb_peer()
                    },
                    &[],
                )],
                bfd_profiles: Vec::new(),
                services: Default::default(),
            },
            "TestSingleSessionWithGracefulRestart",
        );
    }

    #[test]
    fn single_hop_ipv6_ebgp_disables_the_connected_check_and_vrfs_name_routers() {
        let peer = BgpPeer {
            address: Some("fc00::1".parse().unwrap()),
            source_address: None,
            ebgp_multihop: false,
            families: Families::Ipv6,
            vrf: "red".into(),
            local_asn: Some(65000),
            ..metallb_peer()
        };
        let text = render(
            &NodeBgp {
                sessions: vec![session(peer, &[("fc00:5::/64", Some(10), &["1:2"])])],
                bfd_profiles: Vec::new(),
                services: Default::default(),
            },
            &RenderOptions::default(),
        );
        for line in [
            "router bgp 100 vrf red",
            "  neighbor fc00::1 local-as 65000 no-prepend replace-as",
            "  neighbor fc00::1 disable-connected-check",
            "    neighbor fc00::1 route-map fc00::1-red-out out",
            "ipv6 prefix-list fc00::1-red-10-ipv6-localpref-prefixes seq 1 permit fc00:5::/64",
            "ipv6 prefix-list fc00::1-red-1:2-ipv6-community-prefixes seq 1 permit fc00:5::/64",
            "ipv6 prefix-list fc00::1-red-allowed-ipv6 seq 1 permit fc00:5::/64",
            "ip prefix-list fc00::1-red-allowed-ipv4 seq 1 deny any",
            "  address-family ipv6 unicast\n    network fc00:5::/64\n  exit-address-family",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(!text.contains("address-family ipv4"), "{text}");
    }
}
