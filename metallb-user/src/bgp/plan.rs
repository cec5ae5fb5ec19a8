//! MetalLB's BGP speaker logic (its `speaker/bgp_controller.go`: `ShouldAnnounce`,
//! `SetBalancer`, `syncPeers`, `adsForPeer`), pure: for every allocated Service, the
//! prefixes each node announces to each of its peers, with local preference and
//! communities; and, for this node, the sessions to open and what each carries.
//!
//! A node opens a session to every BGPPeer whose `nodeSelectors` select it. It
//! announces a Service when a BGPAdvertisement of the Service's pool selects the node
//! and the Service, the node is usable (not excluded from load balancers, network
//! available, speaker alive) and the Service is served: under
//! `externalTrafficPolicy: Local` by an endpoint on this node, else by any endpoint.
//! Each address becomes the prefix of the advertisement's aggregation length, sent to
//! the advertisement's peers (all when it names none) whose session carries its family.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use serde::Serialize;

use crate::{
    allocator::{Decision, ServiceKey},
    config::{
        Config, Labels,
        bgp::BgpCommunity,
        bgp_config::{BfdProfile, BgpAdvertisement, BgpPeer, compatible_local_pref},
    },
    election::{ElectionContext, Serving, local_traffic, members, serving, slices_by_service},
};

/// An address prefix, host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    /// `addr` masked to `len` bits (`len` beyond the family's width: the whole address).
    pub fn of(addr: IpAddr, len: u8) -> Self {
        match addr {
            IpAddr::V4(a) => {
                let len = len.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Self {
                    addr: IpAddr::V4((u32::from(a) & mask).into()),
                    len,
                }
            }
            IpAddr::V6(a) => {
                let len = len.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Self {
                    addr: IpAddr::V6((u128::from(a) & mask).into()),
                    len,
                }
            }
        }
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::fmt::Display for BgpCommunity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BgpCommunity::Legacy(asn, value) => write!(f, "{asn}:{value}"),
            BgpCommunity::Large(global, first, second) => {
                write!(f, "large:{global}:{first}:{second}")
            }
        }
    }
}

impl Serialize for BgpCommunity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The path attributes a prefix is sent with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Attributes {
    /// LOCAL_PREF; BGP carries it on iBGP sessions only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub communities: BTreeSet<BgpCommunity>,
}

impl Attributes {
    /// Two advertisements giving one prefix to one peer: communities add up; of two
    /// local preferences (which validation keeps apart for the same update) the
    /// higher is kept, so that the result does not depend on order.
    fn merge(&mut self, other: &Attributes) {
        self.communities.extend(other.communities.iter().copied());
        self.local_pref = match (self.local_pref, other.local_pref) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

/// One prefix one node sends one peer for a Service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Announcement {
    pub node: String,
    pub peer: String,
    pub prefix: Prefix,
    #[serde(flatten)]
    pub attributes: Attributes,
    /// The BGPAdvertisement(s) it comes from.
    pub advertisements: Vec<String>,
}

/// A Service in BGP mode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceBgp {
    /// By node, then peer, then prefix.
    pub announcements: Vec<Announcement>,
    /// Nodes that do not announce it though an advertisement of its pool could, and why;
    /// the empty node name: why no node does.
    pub not_announced: BTreeMap<String, String>,
}

/// A session this node opens, and what it announces on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub peer: BgpPeer,
    pub prefixes: BTreeMap<Prefix, Attributes>,
}

/// What this node's BGP speaker does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeBgp {
    /// By peer name.
    pub sessions: Vec<Session>,
    /// Every BFD profile of the configuration (sessions name theirs).
    pub bfd_profiles: Vec<BfdProfile>,
    /// The Services it announces, each with the peers it is announced to (what a
    /// ServiceBGPStatus reports); not part of FRR's configuration.
    pub services: BTreeMap<ServiceKey, BTreeSet<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpPlan {
    /// Services of a pool some BGPAdvertisement advertises.
    pub services: BTreeMap<ServiceKey, ServiceBgp>,
    pub this_node: NodeBgp,
}

/// A node's labels from the configuration; a node the configuration does not list has
/// none (standalone on one machine).
fn node_labels(config: &Config, node: &str) -> Labels {
    config
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default()
}

/// The peers a node with `labels` opens sessions to (MetalLB's `syncPeers`).
pub fn peers_of<'a>(config: &'a Config, labels: &Labels) -> Vec<&'a BgpPeer> {
    config
        .bgp
        .peers
        .iter()
        .filter(|p| p.selects(labels))
        .collect()
}

/// MetalLB's `checkBGPAdvConflicts`: two advertisements of one Service, both selecting
/// this node, with local preferences that would collide.
fn conflict(ads: &[&BgpAdvertisement], config: &Config, pool: &str) -> Option<String> {
    let (has_v4, has_v6) = config.pool(pool).map_or((true, true), |p| {
        (
            p.ranges.iter().any(|r| r.is_ipv4()),
            p.ranges.iter().any(|r| !r.is_ipv4()),
        )
    });
    for (i, a) in ads.iter().enumerate() {
        for b in &ads[i + 1..] {
            if !compatible_local_pref(a, b, has_v4, has_v6, true) {
                return Some(format!(
                    "advertisements {} and {} have conflicting LOCAL_PREF ({} vs {})",
                    a.name, b.name, a.local_pref, b.local_pref
                ));
            }
        }
    }
    None
}

/// Plans BGP for every Service of `config` and this node's sessions.
pub fn plan_bgp(
    config: &Config,
    decisions: &BTreeMap<ServiceKey, Decision>,
    this_node: &str,
    context: &ElectionContext,
) -> BgpPlan {
    let mut out = BgpPlan::default();
    if config.bgp.is_empty() {
        return out;
    }
    let nodes = members(config, this_node, context);
    let slices = slices_by_service(config);
    // Every node's peers, by node.
    let peers_by_node: BTreeMap<&str, Vec<&BgpPeer>> = nodes
        .iter()
        .map(|n| (n.name.as_str(), peers_of(config, &n.labels)))
        .collect();
    for service in &config.services {
        let key = ServiceKey::of_service(service);
        let Some(Decision::Allocated(allocation)) = decisions.get(&key) else {
            continue;
        };
        let service_labels = service.metadata.labels.clone().unwrap_or_default();
        let pool_ads: Vec<&BgpAdvertisement> = config
            .bgp
            .advertisements
            .iter()
            .filter(|a| a.pools.contains(&allocation.pool))
            .collect();
        if pool_ads.is_empty() {
            continue;
        }
        let mut plan = ServiceBgp::default();
        let served = serving(slices.get(&key), context.endpoints);
        let local = local_traffic(service);
        if matches!(served, Serving::Somewhere { any: false, .. }) {
            plan.not_announced.insert(
                String::new(),
                "no endpoint of the service is ready (or serving)".into(),
            );
        }
        for node in &nodes {
            if plan.not_announced.contains_key("") {
                break;
            }
            let ads: Vec<&BgpAdvertisement> = pool_ads
                .iter()
                .copied()
                .filter(|a| a.selects_node(&node.labels) && a.selects_service(&service_labels))
                .collect();
            let reason = if ads.is_empty() {
                Some("no BGPAdvertisement of its pool selects this node (or the service)".into())
            } else if let Some(conflict) = conflict(&ads, config, &allocation.pool) {
                Some(conflict)
            } else if local
                && matches!(&served, Serving::Somewhere { nodes, .. } if !nodes.contains(&node.name))
            {
                Some("externalTrafficPolicy Local: no ready endpoint on this node".into())
            } else {
                None
            };
            if let Some(reason) = reason {
                plan.not_announced.insert(node.name.clone(), reason);
                continue;
            }
            let peers = peers_by_node
                .get(node.name.as_str())
                .cloned()
                .unwrap_or_default();
            // (peer, prefix) -> attributes and the advertisements that gave them.
            let mut routes: BTreeMap<(String, Prefix), (Attributes, Vec<String>)> = BTreeMap::new();
            for ip in &allocation.ips {
                for ad in &ads {
                    let len = if ip.is_ipv4() {
                        ad.aggregation_length
                    } else {
                        ad.aggregation_length_v6
                    };
                    let prefix = Prefix::of(*ip, len);
                    let attributes = Attributes {
                        local_pref: (ad.local_pref != 0).then_some(ad.local_pref),
                        communities: ad.communities.clone(),
                    };
                    for peer in peers
                        .iter()
                        .filter(|p| ad.selects_peer(&p.name) && p.families.carries(*ip))
                    {
                        let entry = routes
                            .entry((peer.name.clone(), prefix))
                            .or_insert_with(|| (attributes.clone(), Vec::new()));
                        entry.0.merge(&attributes);
                        if !entry.1.contains(&ad.name) {
                            entry.1.push(ad.name.clone());
                        }
                    }
                }
            }
            if routes.is_empty() {
                plan.not_announced.insert(
                    node.name.clone(),
                    "no session of this node takes its advertisements (peers, address family)"
                        .into(),
                );
            }
            for ((peer, prefix), (attributes, advertisements)) in routes {
                plan.announcements.push(Announcement {
                    node: node.name.clone(),
                    peer,
                    prefix,
                    attributes,
                    advertisements,
                });
            }
        }
        plan.announcements
            .sort_by(|a, b| (&a.node, &a.peer, a.prefix).cmp(&(&b.node, &b.peer, b.prefix)));
        if plan.announcements.is_empty() && plan.not_announced.is_empty() {
            plan.not_announced
                .insert(String::new(), "no node may announce it".into());
        }
        out.services.insert(key, plan);
    }
    out.this_node = node_bgp(config, this_node, &out.services);
    out
}

/// This node's sessions, with the prefixes of every Service it announces merged.
fn node_bgp(
    config: &Config,
    this_node: &str,
    services: &BTreeMap<ServiceKey, ServiceBgp>,
) -> NodeBgp {
    let labels = node_labels(config, this_node);
    let mut peers_by_service: BTreeMap<ServiceKey, BTreeSet<String>> = BTreeMap::new();
    let mut sessions: Vec<Session> = peers_of(config, &labels)
        .into_iter()
        .map(|peer| Session {
            peer: peer.clone(),
            prefixes: BTreeMap::new(),
        })
        .collect();
    let announcements = services
        .iter()
        .flat_map(|(key, s)| s.announcements.iter().map(move |a| (key, a)))
        .filter(|(_, a)| a.node == this_node);
    for (key, announcement) in announcements {
        if let Some(session) = sessions
            .iter_mut()
            .find(|s| s.peer.name == announcement.peer)
        {
            peers_by_service
                .entry(key.clone())
                .or_default()
                .insert(announcement.peer.clone());
            session
                .prefixes
                .entry(announcement.prefix)
                .or_default()
                .merge(&announcement.attributes);
        }
    }
    NodeBgp {
        sessions,
        // Every profile, used or not, as MetalLB's FRR mode renders them.
        bfd_profiles: config.bgp.bfd_profiles.values().cloned().collect(),
        services: peers_by_service,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{ValidateOptions, file::parse, validate},
        election::EndpointRule,
        plan::{PlanOptions, plan},
    };

    const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: default}\nspec: {addresses: [10.20.30.0/24]}\n---\n";
    const DUAL_POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: default}\nspec: {addresses: [10.20.30.0/24, 'fc00::/120']}\n---\n";

    fn peer(name: &str, spec: &str) -> String {
        format!(
            "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {{myASN: 64500, {spec}}}\n---\n"
        )
    }

    fn ad(name: &str, spec: &str) -> String {
        format!(
            "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n---\n"
        )
    }

    fn node(name: &str, labels: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n---\n"
        )
    }

    /// Service `test1` asking for `ips`, with `extra` spec fields.
    fn service(ips: &str, extra: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: test1, namespace: default, labels: {{app: web}}, annotations: {{metallb.io/loadBalancerIPs: '{ips}'}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]{extra}}}\n---\n"
        )
    }

    /// An EndpointSlice of `test1` with one endpoint on each of `nodes` (ready or not).
    fn endpoints(nodes: &[(&str, bool)]) -> String {
        let endpoints: Vec<String> = nodes
            .iter()
            .map(|(node, ready)| {
                format!(
                    "{{addresses: [2.3.4.5], nodeName: {node}, conditions: {{ready: {ready}}}}}"
                )
            })
            .collect();
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: test1-x, namespace: default, labels: {{kubernetes.io/service-name: test1}}}}\naddressType: IPv4\nendpoints: [{}]\n---\n",
            endpoints.join(", ")
        )
    }

    fn planned(text: &str, this_node: &str) -> BgpPlan {
        let validation = validate(&parse(text).expect("parses"), &ValidateOptions::default());
        let config = validation
            .config
            .unwrap_or_else(|| panic!("invalid: {:?}", validation.errors));
        let options = PlanOptions {
            node_name: this_node.into(),
            election: ElectionContext {
                live_nodes: None,
                endpoints: EndpointRule::AssumeServing,
                ..ElectionContext::default()
            },
            ..PlanOptions::default()
        };
        plan(&config, &options, &[]).bgp
    }

    /// `node peer prefix [lp=N] [communities]` for each announcement of `default/test1`,
    /// then `! node: reason` for each node that does not announce it.
    fn shown(plan: &BgpPlan) -> Vec<String> {
        let Some(service) = plan.services.values().next() else {
            return vec!["(not a BGP service)".into()];
        };
        let mut out: Vec<String> = service
            .announcements
            .iter()
            .map(|a| {
                let mut line = format!("{} {} {}", a.node, a.peer, a.prefix);
                if let Some(lp) = a.attributes.local_pref {
                    line += &format!(" lp={lp}");
                }
                if !a.attributes.communities.is_empty() {
                    let c: Vec<String> = a
                        .attributes
                        .communities
                        .iter()
                        .map(|c| c.to_string())
                        .collect();
                    line += &format!(" [{}]", c.join(","));
                }
                line
            })
            .collect();
        out.extend(
            service
                .not_announced
                .iter()
                .map(|(node, reason)| format!("! {node}: {reason}")),
        );
        out
    }

    /// Cases of MetalLB's `speaker/bgp_controller_test.go` (TestBGPSpeaker,
    /// TestNodeSelectors, TestServiceSelectors...) and of the issue, as (what, the
    /// configuration, this node, what `test1` gets).
    fn table() -> Vec<(&'static str, String, &'static str, Vec<&'static str>)> {
        let nodes = node("pandora", "zone: a") + &node("iris", "zone: b");
        let peer1 = peer("peer1", "peerASN: 64500, peerAddress: 1.2.3.4");
        vec![
            (
                "one peer, one service, every node announces (Cluster)",
                POOL.to_owned() + &peer1 + &ad("adv", "") + &nodes + &service("10.20.30.1", ""),
                "pandora",
                vec!["iris peer1 10.20.30.1/32", "pandora peer1 10.20.30.1/32"],
            ),
            (
                "multiple advertisement config: aggregation, local pref, communities",
                POOL.to_owned()
                    + &peer1
                    + &ad(
                        "a1",
                        "aggregationLength: 32, localPref: 100, communities: ['0:1234', '0:2345'], nodeSelectors: [{matchLabels: {zone: a}}]",
                    )
                    + &ad(
                        "a2",
                        "aggregationLength: 24, localPref: 1000, nodeSelectors: [{matchLabels: {zone: a}}]",
                    )
                    + &nodes
                    + &service("10.20.30.1", ""),
                "pandora",
                vec![
                    "pandora peer1 10.20.30.0/24 lp=1000",
                    "pandora peer1 10.20.30.1/32 lp=100 [0:1234,0:2345]",
                    "! iris: no BGPAdvertisement of its pool selects this node (or the service)",
                ],
            ),
            (
                "multiple advertisement config, one only for the other node",
                POOL.to_owned()
                    + &peer1
                    + &ad(
                        "a1",
                        "localPref: 100, communities: ['0:1234'], nodeSelectors: [{matchLabels: {zone: a}}]",
                    )
                    + &ad(
                        "a2",
                        "aggregationLength: 24, localPref: 1000, nodeSelectors: [{matchLabels: {zone: b}}]",
                    )
                    + &nodes
                    + &service("10.20.30.1", ""),
                "pandora",
                vec![
                    "iris peer1 10.20.30.0/24 lp=1000",
                    "pandora peer1 10.20.30.1/32 lp=100 [0:1234]",
                ],
            ),
            (
                "one advertisement with a peer selector",
                POOL.to_owned()
                    + &peer1
                    + &peer("peer2", "peerASN: 64501, peerAddress: 1.2.3.5")
                    + &ad("a1", "communities: ['large:1:2:3'], peers: [peer2]")
                    + &ad("a2", "aggregationLength: 24")
                    + &node("pandora", "")
                    + &service("10.20.30.1", ""),
                "pandora",
                vec![
                    "pandora peer1 10.20.30.0/24",
                    "pandora peer2 10.20.30.0/24",
                    "pandora peer2 10.20.30.1/32 [large:1:2:3]",
                ],
            ),
            (
                "peers by node selector",
                POOL.to_owned()
                    + &peer(
                        "peer1",
                        "peerASN: 64501, peerAddress: 1.2.3.4, nodeSelectors: [{matchLabels: {zone: b}}]",
                    )
                    + &peer("peer2", "peerASN: 64501, peerAddress: 1.2.3.5")
                    + &ad("adv", "")
                    + &nodes
                    + &service("10.20.30.1", ""),
                "pandora",
                vec![
                    "iris peer1 10.20.30.1/32",
                    "iris peer2 10.20.30.1/32",
                    "pandora peer2 10.20.30.1/32",
                ],
            ),
            (
                "IPv6 addresses go to IPv6 and dual-stack sessions only",
                DUAL_POOL.to_owned()
                    + &peer1
                    + &peer("peer6", "peerASN: 64501, peerAddress: 'fc00:1::1'")
                    + &peer(
                        "dual",
                        "peerASN: 64501, peerAddress: 1.2.3.6, dualStackAddressFamily: true",
                    )
                    + &ad("adv", "aggregationLengthV6: 124")
                    + &node("pandora", "")
                    + &service(
                        "10.20.30.1,fc00::17",
                        ", ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]",
                    ),
                "pandora",
                vec![
                    "pandora dual 10.20.30.1/32",
                    "pandora dual fc00::10/124",
                    "pandora peer1 10.20.30.1/32",
                    "pandora peer6 fc00::10/124",
                ],
            ),
            (
                "a named community (Community object)",
                POOL.to_owned()
                    + &peer1
                    + "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: communities}\nspec:\n  communities:\n  - {name: no-advertise, value: '65535:65282'}\n  - {name: big, value: 'large:64500:1:2'}\n---\n"
                    + &ad("adv", "communities: [no-advertise, big, '7:7']")
                    + &node("pandora", "")
                    + &service("10.20.30.1", ""),
                "pandora",
                vec!["pandora peer1 10.20.30.1/32 [7:7,65535:65282,large:64500:1:2]"],
            ),
            (
                "externalTrafficPolicy Local: only the node with a ready endpoint",
                POOL.to_owned()
                    + &peer1
                    + &ad("adv", "")
                    + &nodes
                    + &service("10.20.30.1", ", externalTrafficPolicy: Local")
                    + &endpoints(&[("iris", true), ("pandora", false)]),
                "pandora",
                vec![
                    "iris peer1 10.20.30.1/32",
                    "! pandora: externalTrafficPolicy Local: no ready endpoint on this node",
                ],
            ),
            (
                "Cluster with a ready endpoint on one node: every node",
                POOL.to_owned()
                    + &peer1
                    + &ad("adv", "")
                    + &nodes
                    + &service("10.20.30.1", "")
                    + &endpoints(&[("iris", true)]),
                "pandora",
                vec!["iris peer1 10.20.30.1/32", "pandora peer1 10.20.30.1/32"],
            ),
            (
                "only unready endpoints: nobody",
                POOL.to_owned()
                    + &peer1
                    + &ad("adv", "")
                    + &nodes
                    + &service("10.20.30.1", "")
                    + &endpoints(&[("iris", false)]),
                "pandora",
                vec!["! : no endpoint of the service is ready (or serving)"],
            ),
            (
                "a node excluded from load balancers does not announce",
                POOL.to_owned()
                    + &peer1
                    + &ad("adv", "")
                    + &node(
                        "pandora",
                        "node.kubernetes.io/exclude-from-external-load-balancers: ''",
                    )
                    + &node("iris", "")
                    + &service("10.20.30.1", ""),
                "pandora",
                vec!["iris peer1 10.20.30.1/32"],
            ),
            (
                "service selectors (OR across selectors)",
                POOL.to_owned()
                    + &peer1
                    + &ad(
                        "web",
                        "serviceSelectors: [{matchLabels: {app: db}}, {matchLabels: {app: web}}], communities: ['1:1']",
                    )
                    + &ad(
                        "db",
                        "serviceSelectors: [{matchLabels: {app: db}}], communities: ['2:2']",
                    )
                    + &node("pandora", "")
                    + &service("10.20.30.1", ""),
                "pandora",
                vec!["pandora peer1 10.20.30.1/32 [1:1]"],
            ),
            (
                "service selectors with conflicting local preferences: not announced",
                POOL.to_owned()
                    + &peer1
                    + &ad(
                        "a1",
                        "serviceSelectors: [{matchLabels: {app: web}}], localPref: 100",
                    )
                    + &ad(
                        "a2",
                        "serviceSelectors: [{matchExpressions: [{key: app, operator: Exists}]}], localPref: 200",
                    )
                    + &node("pandora", "")
                    + &service("10.20.30.1", ""),
                "pandora",
                vec![
                    "! pandora: advertisements a1 and a2 have conflicting LOCAL_PREF (100 vs 200)",
                ],
            ),
            (
                "standalone without nodes: this node, unlabelled",
                POOL.to_owned()
                    + &peer1
                    + &ad("adv", "aggregationLength: 28")
                    + &service("10.20.30.17", ""),
                "solo",
                vec!["solo peer1 10.20.30.16/28"],
            ),
        ]
    }

    #[test]
    fn bgp_plan_table() {
        for (what, text, this_node, want) in table() {
            assert_eq!(shown(&planned(&text, this_node)), want, "{what}");
        }
    }

    #[test]
    fn a_pool_without_bgp_advertisement_is_not_a_bgp_service() {
        let text = POOL.to_owned()
            + &peer("peer1", "peerASN: 64500, peerAddress: 1.2.3.4")
            + "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: other}\nspec: {addresses: [10.9.9.0/24]}\n---\n"
            + &ad("adv", "ipAddressPools: [other]")
            + &service("10.20.30.1", "");
        let plan = planned(&text, "n");
        assert!(plan.services.is_empty(), "{:?}", plan.services);
        // The session still opens, with nothing to announce.
        assert_eq!(plan.this_node.sessions.len(), 1);
        assert!(plan.this_node.sessions[0].prefixes.is_empty());
    }

    #[test]
    fn this_nodes_sessions_merge_every_service() {
        let text = DUAL_POOL.to_owned()
            + &peer(
                "ibgp",
                "peerASN: 64500, peerAddress: 1.2.3.4, bfdProfile: fast",
            )
            + &peer(
                "other-zone",
                "peerASN: 64501, peerAddress: 1.2.3.5, nodeSelectors: [{matchLabels: {zone: b}}]",
            )
            + "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast}\nspec: {receiveInterval: 100}\n---\n"
            + &ad(
                "agg",
                "aggregationLength: 24, aggregationLengthV6: 120, localPref: 50, communities: ['1:1']",
            )
            + &ad("host", "communities: ['2:2']")
            + &node("pandora", "zone: a")
            + &service("10.20.30.1", "")
            + "apiVersion: v1\nkind: Service\nmetadata: {name: test2, namespace: default, annotations: {metallb.io/loadBalancerIPs: 10.20.30.2}}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n";
        let plan = planned(&text, "pandora");
        let node = &plan.this_node;
        assert_eq!(node.sessions.len(), 1, "only the peer selecting this node");
        let session = &node.sessions[0];
        assert_eq!(session.peer.name, "ibgp");
        assert!(session.peer.is_internal());
        let prefixes: Vec<String> = session
            .prefixes
            .iter()
            .map(|(p, a)| format!("{p} {:?} {:?}", a.local_pref, a.communities))
            .collect();
        assert_eq!(
            prefixes,
            [
                "10.20.30.0/24 Some(50) {Legacy(1, 1)}",
                "10.20.30.1/32 None {Legacy(2, 2)}",
                "10.20.30.2/32 None {Legacy(2, 2)}",
            ]
        );
        assert_eq!(node.bfd_profiles.len(), 1);
        assert_eq!(node.bfd_profiles[0].receive_interval, Some(100));
        assert_eq!(node.bfd_profiles[0].transmit_interval, None);
    }

    #[test]
    fn prefixes_are_masked() {
        for (addr, len, want) in [
            ("10.20.30.77", 32, "10.20.30.77/32"),
            ("10.20.30.77", 26, "10.20.30.64/26"),
            ("10.20.30.77", 0, "0.0.0.0/0"),
            ("fc00::1:77", 112, "fc00::1:0/112"),
            ("fc00::1:77", 128, "fc00::1:77/128"),
            ("fc00::1:77", 0, "::/0"),
        ] {
            assert_eq!(Prefix::of(addr.parse().unwrap(), len).to_string(), want);
        }
    }
}
