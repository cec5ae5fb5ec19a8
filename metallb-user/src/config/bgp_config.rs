//! The BGP kinds of a configuration, checked ([`super::bgp`]'s per-object rules, then
//! MetalLB's rules across objects: `setBGPAdvertisementsToPools`,
//! `validateBGPAdvPerPool`, references to BFD profiles and community aliases) into the
//! model the BGP plan works on. Pure.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::{
    Labels, Pool, Selector, ValidateOptions,
    addresses::PoolEntry,
    bgp::{
        BgpCommunity, check_advertisement, check_bfd_profile, check_community, check_peer,
        parse_community,
    },
    crd::{
        BFDProfile, Community,
        bgppeer::{
            Duration,
            v1beta2::{BGPPeer, DynamicASNMode},
        },
    },
    file::ConfigFile,
    names::shorten,
    validate::Checker,
};

/// The AS number a peer must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerAsn {
    Number(u32),
    /// `dynamicASN: internal`: learned, and equal to ours (iBGP).
    Internal,
    /// `dynamicASN: external`: learned, and different from ours (eBGP).
    External,
}

impl std::fmt::Display for PeerAsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAsn::Number(asn) => write!(f, "{asn}"),
            PeerAsn::Internal => f.write_str("internal"),
            PeerAsn::External => f.write_str("external"),
        }
    }
}

/// Which prefixes a session carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Families {
    Ipv4,
    Ipv6,
    /// An unnumbered session, or `dualStackAddressFamily`.
    Both,
}

impl Families {
    pub fn carries(self, addr: IpAddr) -> bool {
        match self {
            Families::Ipv4 => addr.is_ipv4(),
            Families::Ipv6 => addr.is_ipv6(),
            Families::Both => true,
        }
    }
}

/// A validated BGPPeer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpPeer {
    pub name: String,
    pub my_asn: u32,
    pub peer_asn: PeerAsn,
    /// `localASN`: the AS number shown to this peer instead of `my_asn`.
    pub local_asn: Option<u32>,
    /// The address to dial, or `None` for an unnumbered session on `interface`.
    pub address: Option<IpAddr>,
    pub interface: Option<String>,
    /// `None`: BGP's port (179).
    pub port: Option<u16>,
    pub source_address: Option<IpAddr>,
    /// Whole seconds, as FRR takes them; `None`: FRR's default.
    pub hold_time: Option<u64>,
    pub keepalive_time: Option<u64>,
    pub connect_time: Option<u64>,
    pub router_id: Option<Ipv4Addr>,
    pub node_selectors: Vec<Selector>,
    pub password: String,
    /// `passwordSecret` (namespace, name): read by the Kubernetes speaker only.
    pub password_secret: Option<(String, String)>,
    pub bfd_profile: Option<String>,
    pub graceful_restart: bool,
    pub ebgp_multihop: bool,
    pub vrf: String,
    pub families: Families,
}

impl BgpPeer {
    /// iBGP: LOCAL_PREF is sent (on eBGP sessions BGP does not carry it).
    pub fn is_internal(&self) -> bool {
        match self.peer_asn {
            PeerAsn::Number(asn) => asn == self.local_asn.unwrap_or(self.my_asn),
            PeerAsn::Internal => true,
            PeerAsn::External => false,
        }
    }

    /// Whether the node with `labels` opens this session (no selector: every node).
    pub fn selects(&self, labels: &Labels) -> bool {
        self.node_selectors.is_empty() || self.node_selectors.iter().any(|s| s.matches(labels))
    }
}

/// A validated BGPAdvertisement, communities resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpAdvertisement {
    pub name: String,
    /// The pools it advertises (existing pools only).
    pub pools: BTreeSet<String>,
    pub aggregation_length: u8,
    pub aggregation_length_v6: u8,
    /// 0: not set.
    pub local_pref: u32,
    pub communities: BTreeSet<BgpCommunity>,
    /// Peer names; empty: every peer.
    pub peers: Vec<String>,
    pub node_selectors: Vec<Selector>,
    pub service_selectors: Vec<Selector>,
}

impl BgpAdvertisement {
    pub fn selects_node(&self, labels: &Labels) -> bool {
        self.node_selectors.is_empty() || self.node_selectors.iter().any(|s| s.matches(labels))
    }

    pub fn selects_service(&self, labels: &Labels) -> bool {
        self.service_selectors.is_empty()
            || self.service_selectors.iter().any(|s| s.matches(labels))
    }

    pub fn selects_peer(&self, peer: &str) -> bool {
        self.peers.is_empty() || self.peers.iter().any(|p| p == peer)
    }
}

/// A validated BFDProfile. Unset values are left to FRR, whose defaults are MetalLB's
/// documented ones (300 ms intervals, multiplier 3, echo 50 ms, minimum TTL 254).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BfdProfile {
    pub name: String,
    pub receive_interval: Option<u32>,
    pub transmit_interval: Option<u32>,
    pub detect_multiplier: Option<u32>,
    pub echo_interval: Option<u32>,
    pub echo_mode: bool,
    pub passive_mode: bool,
    pub minimum_ttl: Option<u32>,
}

/// The BGP part of the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpConfig {
    /// Sorted by name.
    pub peers: Vec<BgpPeer>,
    /// Sorted by name.
    pub advertisements: Vec<BgpAdvertisement>,
    /// By name.
    pub bfd_profiles: BTreeMap<String, BfdProfile>,
}

impl BgpConfig {
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty() && self.advertisements.is_empty()
    }
}

fn whole_seconds(duration: Option<Duration>) -> Option<u64> {
    duration.and_then(Duration::to_std).map(|d| d.as_secs())
}

/// MetalLB's `parseTimers`: a missing hold time is three keepalives, a missing
/// keepalive a third of the hold time.
fn timers(hold: Option<Duration>, keepalive: Option<Duration>) -> (Option<u64>, Option<u64>) {
    match (whole_seconds(hold), whole_seconds(keepalive)) {
        (Some(h), Some(k)) => (Some(h), Some(k)),
        (Some(h), None) => (Some(h), Some(h / 3)),
        (None, Some(k)) => (Some(k * 3), Some(k)),
        (None, None) => (None, None),
    }
}

fn parsed_address(text: &str) -> Option<IpAddr> {
    (!text.is_empty()).then(|| text.parse().ok()).flatten()
}

fn peer(peer: &BGPPeer) -> BgpPeer {
    let spec = &peer.spec;
    let address = parsed_address(&spec.peer_address);
    let (hold_time, keepalive_time) = timers(spec.hold_time, spec.keepalive_time);
    let families = match address {
        _ if !spec.interface.is_empty() || spec.dual_stack_address_family => Families::Both,
        Some(IpAddr::V6(_)) => Families::Ipv6,
        _ => Families::Ipv4,
    };
    let secret = spec.password_secret.name.clone().unwrap_or_default();
    BgpPeer {
        name: peer.metadata.name.clone().unwrap_or_default(),
        my_asn: spec.my_asn,
        peer_asn: match spec.dynamic_asn {
            Some(DynamicASNMode::Internal) => PeerAsn::Internal,
            Some(DynamicASNMode::External) => PeerAsn::External,
            None => PeerAsn::Number(spec.peer_asn),
        },
        local_asn: (spec.local_asn != 0).then_some(spec.local_asn),
        address,
        interface: (!spec.interface.is_empty()).then(|| spec.interface.clone()),
        port: (spec.peer_port != 0).then_some(spec.peer_port),
        source_address: parsed_address(&spec.source_address),
        hold_time,
        keepalive_time,
        connect_time: whole_seconds(spec.connect_time),
        router_id: parsed_address(&spec.router_id).and_then(|a| match a {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        }),
        node_selectors: Vec::new(),
        password: spec.password.clone(),
        password_secret: (!secret.is_empty()).then(|| {
            (
                spec.password_secret
                    .namespace
                    .clone()
                    .or_else(|| peer.metadata.namespace.clone())
                    .unwrap_or_default(),
                secret,
            )
        }),
        bfd_profile: (!spec.bfd_profile.is_empty()).then(|| spec.bfd_profile.clone()),
        graceful_restart: spec.enable_graceful_restart,
        ebgp_multihop: spec.ebgp_multi_hop,
        vrf: spec.vrf_name.clone(),
        families,
    }
}

/// Selectors already checked (and reported) by [`super::bgp`]: the valid ones.
fn compiled(selectors: &[LabelSelector]) -> Vec<Selector> {
    selectors
        .iter()
        .filter_map(|s| Selector::compile(s).ok())
        .collect()
}

/// `Kind namespace/name`, as [`Checker::metallb_object`] names objects.
fn object_name(kind: &str, meta: &ObjectMeta, options: &ValidateOptions) -> String {
    format!(
        "{kind} {}/{}",
        shorten(meta.namespace.as_deref().unwrap_or(&options.namespace)),
        shorten(meta.name.as_deref().unwrap_or_default())
    )
}

fn bfd_profile(profile: &BFDProfile) -> BfdProfile {
    let spec = &profile.spec;
    BfdProfile {
        name: profile.metadata.name.clone().unwrap_or_default(),
        receive_interval: spec.receive_interval,
        transmit_interval: spec.transmit_interval,
        detect_multiplier: spec.detect_multiplier,
        echo_interval: spec.echo_interval,
        echo_mode: spec.echo_mode.unwrap_or(false),
        passive_mode: spec.passive_mode.unwrap_or(false),
        minimum_ttl: spec.minimum_ttl,
    }
}

/// The prefix lengths of the largest aligned blocks `range` is made of (MetalLB's
/// `cidrsPerAddresses`): the shortest is the one an aggregation must not undercut.
fn shortest_block(range: &super::AddrRange) -> u8 {
    let bits: u32 = if range.first.is_ipv4() { 32 } else { 128 };
    let value = |addr: IpAddr| match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let (mut start, last) = (value(range.first), value(range.last));
    if bits == 128 && start == 0 && last == u128::MAX {
        return 0;
    }
    let mut shortest = bits;
    loop {
        // The largest block aligned at `start` that ends at or before `last`.
        let mut size_bits = if start == 0 {
            bits
        } else {
            start.trailing_zeros().min(bits)
        };
        while size_bits > 0 && (size_bits >= 128 || start + ((1u128 << size_bits) - 1) > last) {
            size_bits -= 1;
        }
        shortest = shortest.min(bits - size_bits);
        let end = start + ((1u128 << size_bits) - 1);
        if end >= last {
            break;
        }
        start = end + 1;
    }
    u8::try_from(shortest).unwrap_or(0)
}

/// Checks the BGP kinds of `file` (every object by MetalLB's webhook rules, then the
/// rules across them) and builds the model; errors and warnings go to `check`.
pub(super) fn resolve(
    file: &ConfigFile,
    pools: &[Pool],
    options: &ValidateOptions,
    check: &mut Checker,
) -> BgpConfig {
    let mut out = BgpConfig::default();
    let absorb = |check: &mut Checker, checked: super::bgp::Checked| {
        for issue in checked.errors {
            check.error(&issue.object, &issue.field, &issue.value, issue.message);
        }
        for issue in checked.warnings {
            check.warning(&issue.object, &issue.field, &issue.value, issue.message);
        }
    };

    // Communities: aliases, each defined once across the objects.
    let mut aliases: BTreeMap<String, BgpCommunity> = BTreeMap::new();
    for (i, community) in file.communities.iter().enumerate() {
        let before: Vec<Community> = file.communities[..i].to_vec();
        absorb(check, check_community(community, &before, options));
        for alias in &community.spec.communities {
            if let Ok(value) = parse_community(&alias.value) {
                aliases.entry(alias.name.clone()).or_insert(value);
            }
        }
    }
    let alias_names: BTreeSet<String> = aliases.keys().cloned().collect();

    for profile in &file.bfd_profiles {
        absorb(check, check_bfd_profile(profile, options));
        let model = bfd_profile(profile);
        let object = object_name("BFDProfile", &profile.metadata, options);
        if out.bfd_profiles.contains_key(&model.name) {
            check.error(
                &object,
                "metadata.name",
                &model.name,
                "duplicate BFDProfile",
            );
        }
        out.bfd_profiles.insert(model.name.clone(), model);
    }

    for crd in &file.bgp_peers {
        absorb(check, check_peer(crd, options));
        let mut model = peer(crd);
        let object = object_name("BGPPeer", &crd.metadata, options);
        model.node_selectors = compiled(&crd.spec.node_selectors);
        if out.peers.iter().any(|p| p.name == model.name) {
            check.error(&object, "metadata.name", &model.name, "duplicate BGPPeer");
        }
        if let Some(profile) = &model.bfd_profile
            && !out.bfd_profiles.contains_key(profile)
        {
            check.error(
                &object,
                "spec.bfdProfile",
                profile,
                "no BFDProfile has this name (MetalLB: peer referencing non existing bfd profile)",
            );
        }
        if model.password_secret.is_some() {
            check.warning(
                &object,
                "spec.passwordSecret",
                "",
                "read by the Kubernetes speaker only: a standalone file gives spec.password",
            );
        }
        out.peers.push(model);
    }

    for crd in &file.bgp_advertisements {
        absorb(check, check_advertisement(crd, &alias_names, options));
        let spec = &crd.spec;
        let name = crd.metadata.name.clone().unwrap_or_default();
        let object = object_name("BGPAdvertisement", &crd.metadata, options);
        if out.advertisements.iter().any(|a| a.name == name) {
            check.error(
                &object,
                "metadata.name",
                &name,
                "duplicate BGPAdvertisement",
            );
        }
        let mut communities = BTreeSet::new();
        for (i, text) in spec.communities.iter().enumerate() {
            match aliases
                .get(text)
                .copied()
                .or_else(|| parse_community(text).ok())
            {
                Some(value) => {
                    communities.insert(value);
                }
                // A value of the wrong size is reported by check_advertisement already.
                None if text.contains(':') => {}
                None => check.error(
                    &object,
                    &format!("spec.communities[{i}]"),
                    text,
                    "no Community defines this alias, and it is not a community value",
                ),
            }
        }
        for (i, peer) in spec.peers.iter().enumerate() {
            if !out.peers.iter().any(|p| &p.name == peer) {
                check.warning(
                    &object,
                    &format!("spec.peers[{i}]"),
                    peer,
                    "no BGPPeer has this name: nothing is advertised to it",
                );
            }
        }
        let pool_selectors = compiled(&spec.ip_address_pool_selectors);
        let mut selected = BTreeSet::new();
        if spec.ip_address_pools.is_empty() && spec.ip_address_pool_selectors.is_empty() {
            selected.extend(pools.iter().map(|p| p.name.clone()));
        } else {
            for (i, pool_name) in spec.ip_address_pools.iter().enumerate() {
                if pools.iter().any(|p| &p.name == pool_name) {
                    selected.insert(pool_name.clone());
                } else {
                    check.warning(
                        &object,
                        &format!("spec.ipAddressPools[{i}]"),
                        pool_name,
                        "no IPAddressPool has this name: it advertises nothing",
                    );
                }
            }
            for pool in pools {
                if pool_selectors.iter().any(|s| s.matches(&pool.labels)) {
                    selected.insert(pool.name.clone());
                }
            }
        }
        let clamp = |value: Option<i32>, default: u8| {
            value.and_then(|v| u8::try_from(v).ok()).unwrap_or(default)
        };
        out.advertisements.push(BgpAdvertisement {
            name,
            pools: selected,
            aggregation_length: clamp(spec.aggregation_length, 32),
            aggregation_length_v6: clamp(spec.aggregation_length_v6, 128),
            local_pref: spec.local_pref,
            communities,
            peers: spec.peers.clone(),
            node_selectors: compiled(&spec.node_selectors),
            service_selectors: compiled(&spec.service_selectors),
        });
    }
    // The nodes' labels; without nodes, the one unlabelled node of a standalone speaker.
    let mut nodes: Vec<Labels> = file
        .nodes
        .iter()
        .map(|n| n.metadata.labels.clone().unwrap_or_default())
        .collect();
    if nodes.is_empty() {
        nodes.push(Labels::new());
    }
    check_per_pool(file, &nodes, &out.advertisements, options, check);
    out.peers.sort_by(|a, b| a.name.cmp(&b.name));
    out.advertisements.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// MetalLB's `validateBGPAdvPerPool`: an aggregation no shorter than the blocks of the
/// pool, and one LOCAL_PREF for the same update (same pool, aggregation, peers, nodes).
fn check_per_pool(
    file: &ConfigFile,
    nodes: &[Labels],
    ads: &[BgpAdvertisement],
    options: &ValidateOptions,
    check: &mut Checker,
) {
    for pool in &file.pools {
        let pool_name = pool.metadata.name.clone().unwrap_or_default();
        let entries: Vec<(String, PoolEntry)> = pool
            .spec
            .addresses
            .iter()
            .filter_map(|text| PoolEntry::parse(text).ok().map(|e| (text.clone(), e)))
            .collect();
        let (has_v4, has_v6) = (
            entries.iter().any(|(_, e)| e.range.first.is_ipv4()),
            entries.iter().any(|(_, e)| e.range.first.is_ipv6()),
        );
        let mine: Vec<&BgpAdvertisement> = ads
            .iter()
            .filter(|a| a.pools.contains(&pool_name))
            .collect();
        for (i, ad) in mine.iter().enumerate() {
            let object = format!("BGPAdvertisement {}/{}", options.namespace, ad.name);
            for (text, entry) in &entries {
                let (length, field) = if entry.range.first.is_ipv4() {
                    (ad.aggregation_length, "spec.aggregationLength")
                } else {
                    (ad.aggregation_length_v6, "spec.aggregationLengthV6")
                };
                let shortest = shortest_block(&entry.range);
                if length < shortest {
                    check.error(
                        &object,
                        field,
                        &length.to_string(),
                        format!(
                            "invalid aggregation length {length}: prefix {shortest} in this pool ({pool_name}) is more specific than the aggregation length for addresses {text}"
                        ),
                    );
                }
            }
            if !ad.service_selectors.is_empty() {
                continue;
            }
            for earlier in &mine[..i] {
                let overlap = nodes
                    .iter()
                    .any(|n| ad.selects_node(n) && earlier.selects_node(n));
                if earlier.service_selectors.is_empty()
                    && !compatible_local_pref(ad, earlier, has_v4, has_v6, overlap)
                {
                    check.error(
                        &object,
                        "spec.localPref",
                        &ad.local_pref.to_string(),
                        format!(
                            "invalid local preference {}: local preference {} was already set for the same type of BGP update by BGPAdvertisement {} (common pool {pool_name}, aggregation lengths, peers and nodes)",
                            ad.local_pref, earlier.local_pref, earlier.name
                        ),
                    );
                }
            }
        }
    }
}

/// MetalLB's `BGPAdvertisementsHaveCompatibleLocalPref`; `nodes_overlap`: whether
/// some node is selected by both (MetalLB compares the selected node sets).
pub fn compatible_local_pref(
    a: &BgpAdvertisement,
    b: &BgpAdvertisement,
    has_v4: bool,
    has_v6: bool,
    nodes_overlap: bool,
) -> bool {
    if a.local_pref == b.local_pref {
        return true;
    }
    let v4_differs = a.aggregation_length != b.aggregation_length;
    let v6_differs = a.aggregation_length_v6 != b.aggregation_length_v6;
    let aggregation_differs = match (has_v4, has_v6) {
        (false, false) => true,
        (true, false) => v4_differs,
        (false, true) => v6_differs,
        (true, true) => v4_differs && v6_differs,
    };
    if aggregation_differs {
        return true;
    }
    if !a.peers.is_empty() && !b.peers.is_empty() && !a.peers.iter().any(|p| b.peers.contains(p)) {
        return true;
    }
    !nodes_overlap
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        AddrRange,
        validate::tests::{Want::*, check_table, pool},
    };

    fn peer(name: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {{myASN: 64500, {spec}}}\n"
        )
    }

    fn ad(name: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n"
        )
    }

    fn node(name: &str, labels: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n"
        )
    }

    /// MetalLB's `internal/config/config_test.go` (TestParse) cases across BGP objects.
    #[test]
    fn metallb_cross_object_rules() {
        let p1 = pool("pool1", "  addresses: [10.20.30.40/24]");
        let peer1 = peer("peer1", "peerASN: 64501, peerAddress: 1.2.3.4");
        check_table(&[
            ("advertisement with default BGP settings", p1.clone() + &ad("a", ""), Valid),
            (
                "bad aggregation length (incompatible with CIDR)",
                p1.clone() + &ad("a", "aggregationLength: 16"),
                Refused(&["BGPAdvertisement metallb-system/a: spec.aggregationLength \"16\": invalid aggregation length 16: prefix 24 in this pool (pool1) is more specific than the aggregation length for addresses 10.20.30.40/24"]),
            ),
            (
                "aggregation length by range",
                pool("pool1", "  addresses: [3.3.3.2-3.3.3.254]") + &ad("a", "aggregationLength: 26"),
                Valid,
            ),
            (
                "aggregation length by range, too wide",
                pool("pool1", "  addresses: [3.3.3.2-3.3.3.254]") + &ad("a", "aggregationLength: 24"),
                Refused(&["prefix 26 in this pool"]),
            ),
            (
                "different local pref - same peers and nodes",
                p1.clone() + &ad("a", "localPref: 100") + &ad("b", "localPref: 200"),
                Refused(&["BGPAdvertisement metallb-system/b: spec.localPref \"200\": invalid local preference 200: local preference 100 was already set"]),
            ),
            (
                "different local pref - different ipv4 aggregation length",
                p1.clone() + &ad("a", "localPref: 100") + &ad("b", "localPref: 200, aggregationLength: 24"),
                Valid,
            ),
            (
                "different local pref - dual-stack pool, only the IPv4 length differs",
                pool("pool1", "  addresses: [10.20.30.40/24, 'fc00::/120']") + &ad("a", "localPref: 100") + &ad("b", "localPref: 200, aggregationLength: 24"),
                Refused(&["invalid local preference 200"]),
            ),
            (
                "different local pref - same peers & different nodes",
                p1.clone() + &node("node1", "node: node1") + &node("node2", "node: node2")
                    + &ad("a", "localPref: 100, nodeSelectors: [{matchLabels: {node: node1}}]")
                    + &ad("b", "localPref: 200, nodeSelectors: [{matchLabels: {node: node2}}]"),
                Valid,
            ),
            (
                "different local pref - different peers & same nodes",
                p1.clone() + &peer1 + &peer("peer2", "peerASN: 64501, peerAddress: 1.2.3.5")
                    + &ad("a", "localPref: 100, peers: [peer1]")
                    + &ad("b", "localPref: 200, peers: [peer2]"),
                Valid,
            ),
            (
                "different local pref - service selectors are not compared",
                p1.clone() + &ad("a", "localPref: 100, serviceSelectors: [{matchLabels: {a: b}}]") + &ad("b", "localPref: 200"),
                Valid,
            ),
            (
                "bad community ref (unknown ref) - in BGP adv",
                p1.clone() + &ad("a", "communities: [unknown-alias]"),
                Refused(&["BGPAdvertisement metallb-system/a: spec.communities[0] \"unknown-alias\": no Community defines this alias"]),
            ),
            (
                "peer with non existing BFD Profile",
                peer("p", "peerASN: 64501, peerAddress: 1.2.3.4, bfdProfile: nope"),
                Refused(&["BGPPeer metallb-system/p: spec.bfdProfile \"nope\": no BFDProfile has this name"]),
            ),
            (
                "duplicate peers",
                peer1.clone() + &peer1,
                Refused(&["duplicate BGPPeer"]),
            ),
            (
                "an advertisement naming a missing peer or pool",
                p1.clone() + &ad("a", "peers: [ghost], ipAddressPools: [nope]"),
                Warns(&["spec.peers[0] \"ghost\": no BGPPeer has this name", "spec.ipAddressPools[0] \"nope\": no IPAddressPool has this name"]),
            ),
            (
                "v1beta1 BGPPeer is read and converted",
                "---\napiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: old}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 1.2.3.4}\n".to_owned(),
                Valid,
            ),
        ]);
    }

    #[test]
    fn shortest_block_of_cidrs_and_ranges() {
        let range = |text: &str| -> AddrRange { PoolEntry::parse(text).unwrap().range };
        for (text, want) in [
            ("10.0.0.0/24", 24),
            ("10.0.0.7/32", 32),
            ("10.0.0.0-10.0.0.255", 24),
            ("10.0.0.1-10.0.0.6", 31),
            ("10.0.0.0-10.0.1.255", 23),
            ("0.0.0.0/0", 0),
            ("2001:db8::/64", 64),
            ("2001:db8::1-2001:db8::2", 128),
            ("2001:db8::2-2001:db8::3", 127),
            ("::/0", 0),
        ] {
            assert_eq!(shortest_block(&range(text)), want, "{text}");
        }
    }

    #[test]
    fn timers_are_completed_as_metallb_completes_them() {
        let d = |s: &str| Some(s.parse::<Duration>().unwrap());
        assert_eq!(timers(d("9s"), None), (Some(9), Some(3)));
        assert_eq!(timers(None, d("3s")), (Some(9), Some(3)));
        assert_eq!(timers(d("90s"), d("30s")), (Some(90), Some(30)));
        assert_eq!(timers(None, None), (None, None));
    }
}
