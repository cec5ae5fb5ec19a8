//! MetalLB's rules for the BGP kinds that hold without a BGP implementation: what its
//! admission webhooks refuse beyond the schema (its `internal/config/config.go`:
//! `peerFromCR`, `parseTimers`, `bgpAdvertisementFromCR`, `communitiesFromCrs`,
//! `bfdProfileFromCR`; `internal/bgp/community`), with MetalLB's reasons in this
//! project's form (object, field, value). Pure.
//!
//! As MetalLB's webhooks do, references that may be satisfied later (a BFDProfile or
//! Community named before it exists, a password Secret) are not refused; here they are
//! warned about where the objects are known.

use std::collections::BTreeSet;

use super::{
    Issue, ValidateOptions,
    crd::{
        BFDProfile, BGPAdvertisement, Community,
        bgppeer::{
            Duration,
            v1beta2::{BGPPeer, DynamicASNMode},
        },
    },
    validate::Checker,
};

/// A BGP community value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BgpCommunity {
    /// `<AS number>:<value>`, 16 bits each.
    Legacy(u16, u16),
    /// `large:<global administrator>:<local data 1>:<local data 2>`, 32 bits each.
    Large(u32, u32, u32),
}

/// Why a string is not a community, in MetalLB's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommunityError {
    /// The shape of a community, with a part that is not a number of its size.
    #[error("invalid community value: {0}")]
    Value(String),
    /// Not the shape of a community (perhaps the name of a `Community` alias).
    #[error("invalid community format: {0}")]
    Format(String),
}

/// Go's `strconv.ParseUint(text, 10, bits)`: decimal digits only (no sign).
fn decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// MetalLB's `community.New`.
pub fn parse_community(text: &str) -> Result<BgpCommunity, CommunityError> {
    let section = |part: &str| {
        CommunityError::Value(format!(
            "invalid section {part:?} of community {text:?}: not a number of this size"
        ))
    };
    let parts: Vec<&str> = text.split(':').collect();
    match parts.as_slice() {
        [upper, lower] => Ok(BgpCommunity::Legacy(
            decimal(upper).ok_or_else(|| section(upper))?,
            decimal(lower).ok_or_else(|| section(lower))?,
        )),
        [marker, global, first, second] => {
            if *marker != "large" {
                return Err(CommunityError::Value(format!(
                    "invalid marker for large community, expected community to be of format large:<uint32>:<uint32>:<uint32> but got {text:?} instead"
                )));
            }
            Ok(BgpCommunity::Large(
                decimal(global).ok_or_else(|| section(global))?,
                decimal(first).ok_or_else(|| section(first))?,
                decimal(second).ok_or_else(|| section(second))?,
            ))
        }
        _ => Err(CommunityError::Format(text.to_owned())),
    }
}

/// What checking one object found.
#[derive(Debug, Default)]
pub struct Checked {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

impl From<Checker> for Checked {
    fn from(check: Checker) -> Self {
        let (errors, warnings) = check.finish();
        Self { errors, warnings }
    }
}

fn shown(duration: Option<Duration>) -> String {
    duration.map(|d| d.to_string()).unwrap_or_default()
}

/// MetalLB's `parseTimers`: an absent hold time is three keepalives, an absent
/// keepalive a third of the hold time; the hold time, in whole seconds, is 0 or at
/// least 3 s; the keepalive is not longer than the hold time.
fn check_timers(
    check: &mut Checker,
    object: &str,
    hold: Option<Duration>,
    keepalive: Option<Duration>,
) {
    let (hold_nanos, keepalive_nanos) = match (hold, keepalive) {
        (None, None) => return,
        (Some(h), Some(k)) => (h.as_nanos(), k.as_nanos()),
        (Some(h), None) => (h.as_nanos(), h.as_nanos() / 3),
        (None, Some(k)) => (k.as_nanos().saturating_mul(3), k.as_nanos()),
    };
    let whole_seconds = hold_nanos / 1_000_000_000;
    if whole_seconds != 0 && whole_seconds < 3 {
        check.error(
            object,
            "spec.holdTime",
            &Duration::from_nanos(hold_nanos).to_string(),
            "invalid hold time: must be 0 or >=3s",
        );
    }
    if keepalive_nanos > hold_nanos {
        check.error(
            object,
            "spec.keepaliveTime",
            &shown(keepalive),
            format!(
                "invalid keepaliveTime, must be lower than holdTime {:?}",
                shown(hold)
            ),
        );
    }
}

fn check_address(check: &mut Checker, object: &str, field: &str, value: &str, what: &str) {
    if !value.is_empty() && value.parse::<std::net::IpAddr>().is_err() {
        check.error(
            object,
            field,
            value,
            format!("invalid {what}: not an IP address"),
        );
    }
}

/// A BGPPeer (v1beta2, the version MetalLB's webhook reviews).
pub fn check_peer(peer: &BGPPeer, options: &ValidateOptions) -> Checked {
    let mut check = Checker::new();
    let object = check.metallb_object("BGPPeer", &peer.metadata, options);
    let spec = &peer.spec;
    if spec.my_asn == 0 {
        check.error(&object, "spec.myASN", "", "missing local ASN");
    }
    match (spec.peer_asn, spec.dynamic_asn) {
        (0, None) => check.error(
            &object,
            "spec.peerASN",
            "",
            "missing peer ASN and dynamicASN",
        ),
        (asn, Some(mode)) if asn != 0 => check.error(
            &object,
            "spec.dynamicASN",
            match mode {
                DynamicASNMode::Internal => "internal",
                DynamicASNMode::External => "external",
            },
            "both peer ASN and dynamicASN specified",
        ),
        _ => {}
    }
    if spec.peer_asn == spec.my_asn && spec.ebgp_multi_hop {
        check.error(
            &object,
            "spec.ebgpMultiHop",
            "",
            "invalid ebgp-multihop parameter set for an ibgp peer",
        );
    }
    match (spec.peer_address.is_empty(), spec.interface.is_empty()) {
        (true, true) => check.error(
            &object,
            "spec.peerAddress",
            "",
            "peer has no Address or Interface specified",
        ),
        (false, false) => check.error(
            &object,
            "spec.interface",
            &spec.interface,
            "peer has both Address and Interface specified",
        ),
        _ => {}
    }
    check_timers(&mut check, &object, spec.hold_time, spec.keepalive_time);
    check_address(
        &mut check,
        &object,
        "spec.peerAddress",
        &spec.peer_address,
        "BGPPeer address",
    );
    check_address(
        &mut check,
        &object,
        "spec.routerID",
        &spec.router_id,
        "router ID",
    );
    check_address(
        &mut check,
        &object,
        "spec.sourceAddress",
        &spec.source_address,
        "source IP",
    );
    check.selectors(&object, "spec.nodeSelectors", &spec.node_selectors);
    if !spec.password.is_empty()
        && !spec
            .password_secret
            .name
            .clone()
            .unwrap_or_default()
            .is_empty()
    {
        check.error(
            &object,
            "spec.passwordSecret",
            "",
            "can not have both password and secret ref set in peer config",
        );
    }
    if spec.disable_mp {
        check.warning(
            &object,
            "spec.disableMP",
            "",
            "disable mp is deprecated and has no effect since it's the default behavior now",
        );
    }
    check.into()
}

/// A BGPAdvertisement; `aliases` are the names the cluster's Community objects define.
pub fn check_advertisement(
    advertisement: &BGPAdvertisement,
    aliases: &BTreeSet<String>,
    options: &ValidateOptions,
) -> Checked {
    let mut check = Checker::new();
    let object = check.metallb_object("BGPAdvertisement", &advertisement.metadata, options);
    let spec = &advertisement.spec;
    check.no_duplicates(&object, "spec.ipAddressPools", &spec.ip_address_pools);
    check.no_duplicates(&object, "spec.communities", &spec.communities);
    check.no_duplicates(&object, "spec.peers", &spec.peers);
    check.selectors(
        &object,
        "spec.ipAddressPoolSelectors",
        &spec.ip_address_pool_selectors,
    );
    check.selectors(&object, "spec.nodeSelectors", &spec.node_selectors);
    check.selectors(&object, "spec.serviceSelectors", &spec.service_selectors);
    let length = |value: Option<i32>| value.map(|v| v.to_string()).unwrap_or_default();
    if !spec.service_selectors.is_empty() {
        if spec.aggregation_length.is_some_and(|l| l != 32) {
            check.error(
                &object,
                "spec.aggregationLength",
                &length(spec.aggregation_length),
                "serviceSelectors and aggregationLength are mutually exclusive, both cannot be set",
            );
        }
        if spec.aggregation_length_v6.is_some_and(|l| l != 128) {
            check.error(
                &object,
                "spec.aggregationLengthV6",
                &length(spec.aggregation_length_v6),
                "serviceSelectors and aggregationLengthV6 are mutually exclusive, both cannot be set",
            );
        }
    }
    if spec.aggregation_length.is_some_and(|l| l > 32) {
        check.error(
            &object,
            "spec.aggregationLength",
            &length(spec.aggregation_length),
            "invalid aggregation length for IPv4",
        );
    }
    if spec.aggregation_length_v6.is_some_and(|l| l > 128) {
        check.error(
            &object,
            "spec.aggregationLengthV6",
            &length(spec.aggregation_length_v6),
            "invalid aggregation length for IPv6",
        );
    }
    for (i, text) in spec.communities.iter().enumerate() {
        if aliases.contains(text) {
            continue;
        }
        let field = format!("spec.communities[{i}]");
        match parse_community(text) {
            Ok(_) => {}
            Err(error @ CommunityError::Value(_)) => {
                check.error(&object, &field, text, format!("invalid community in BGP advertisement: {error}"));
            }
            // Not a value: the name of an alias, perhaps one not created yet.
            Err(CommunityError::Format(_)) => check.warning(
                &object,
                &field,
                text,
                "neither a community value (1234:1234, large:1:2:3) nor the name of an alias any Community defines",
            ),
        }
    }
    check.into()
}

/// A Community, checked with the aliases of the `others` the cluster has: each value is
/// a community, and no alias name is defined twice.
pub fn check_community(
    community: &Community,
    others: &[Community],
    options: &ValidateOptions,
) -> Checked {
    let mut check = Checker::new();
    let object = check.metallb_object("Community", &community.metadata, options);
    let mut defined: BTreeSet<&str> = others
        .iter()
        .flat_map(|other| {
            other
                .spec
                .communities
                .iter()
                .map(|alias| alias.name.as_str())
        })
        .collect();
    for (i, alias) in community.spec.communities.iter().enumerate() {
        if let Err(error) = parse_community(&alias.value) {
            check.error(
                &object,
                &format!("spec.communities[{i}].value"),
                &alias.value,
                format!("parsing community {:?}: {error}", alias.name),
            );
        }
        if !defined.insert(&alias.name) {
            check.error(
                &object,
                &format!("spec.communities[{i}].name"),
                &alias.name,
                "duplicate definition of community",
            );
        }
    }
    check.into()
}

/// A BFDProfile: MetalLB's ranges (the CRD's too).
pub fn check_bfd_profile(profile: &BFDProfile, options: &ValidateOptions) -> Checked {
    let mut check = Checker::new();
    let object = check.metallb_object("BFDProfile", &profile.metadata, options);
    let spec = &profile.spec;
    let ranges = [
        (
            "spec.detectMultiplier",
            spec.detect_multiplier,
            2,
            255,
            "detect multiplier",
        ),
        (
            "spec.receiveInterval",
            spec.receive_interval,
            10,
            60000,
            "receive interval",
        ),
        (
            "spec.transmitInterval",
            spec.transmit_interval,
            10,
            60000,
            "transmit interval",
        ),
        ("spec.minimumTtl", spec.minimum_ttl, 1, 254, "minimum ttl"),
        (
            "spec.echoInterval",
            spec.echo_interval,
            10,
            60000,
            "echo interval",
        ),
    ];
    for (field, value, min, max, what) in ranges {
        if let Some(value) = value.filter(|v| !(min..=max).contains(v)) {
            check.error(
                &object,
                field,
                &value.to_string(),
                format!("invalid {what} value: must be in {min}-{max} range"),
            );
        }
    }
    check.into()
}

/// The BGPPeers that name the BFDProfile `profile` (which may then not be deleted).
pub fn bfd_profile_users<'a>(profile: &str, peers: &'a [BGPPeer]) -> Vec<&'a str> {
    peers
        .iter()
        .filter(|peer| peer.spec.bfd_profile == profile)
        .filter_map(|peer| peer.metadata.name.as_deref())
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn communities_are_read_as_metallb_reads_them() {
        // MetalLB's TestNewBGPCommunity, then the edges of Go's ParseUint.
        let cases: &[(&str, Result<BgpCommunity, &str>)] = &[
            ("12345:12345", Ok(BgpCommunity::Legacy(12345, 12345))),
            ("12345", Err("invalid community format: 12345")),
            (
                "large:12345:12345:12345",
                Ok(BgpCommunity::Large(12345, 12345, 12345)),
            ),
            (
                "larg:12345:12345:12345",
                Err("invalid community value: invalid marker for large community"),
            ),
            (
                "large:12345:wrong:12345",
                Err("invalid community value: invalid section \"wrong\""),
            ),
            (
                "12345:12345:12345",
                Err("invalid community format: 12345:12345:12345"),
            ),
            ("65535:0", Ok(BgpCommunity::Legacy(65535, 0))),
            (
                "65536:0",
                Err("invalid community value: invalid section \"65536\""),
            ),
            (
                "+1:2",
                Err("invalid community value: invalid section \"+1\""),
            ),
            ("1:", Err("invalid community value: invalid section \"\"")),
            (
                "large:4294967295:0:1",
                Ok(BgpCommunity::Large(u32::MAX, 0, 1)),
            ),
            ("large:4294967296:0:1", Err("invalid community value")),
            ("no-export", Err("invalid community format: no-export")),
        ];
        for (text, want) in cases {
            match (parse_community(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{text}"),
                (Err(got), Err(want)) => {
                    assert!(got.to_string().starts_with(want), "{text}: {got}")
                }
                (got, want) => panic!("{text}: {got:?}, wanted {want:?}"),
            }
        }
    }

    fn object<T: serde::de::DeserializeOwned>(kind: &str, spec: Value) -> T {
        let api_version = if kind == "BGPPeer" {
            "metallb.io/v1beta2"
        } else {
            "metallb.io/v1beta1"
        };
        serde_json::from_value(json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": "x", "namespace": "metallb-system"},
            "spec": spec,
        }))
        .unwrap()
    }

    /// Each fragment is in one of `issues`, and each issue has one of the fragments.
    fn assert_issues(case: usize, issues: &[Issue], fragments: &[&str]) {
        let shown: Vec<String> = issues.iter().map(ToString::to_string).collect();
        for fragment in fragments {
            assert!(
                shown.iter().any(|issue| issue.contains(fragment)),
                "case {case}: {shown:?} lacks {fragment:?}"
            );
        }
        for issue in &shown {
            assert!(
                fragments.iter().any(|fragment| issue.contains(fragment)),
                "case {case}: unexpected {issue:?}"
            );
        }
    }

    #[test]
    fn peers_follow_metallb_rules() {
        let options = ValidateOptions::default();
        let base = json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1"});
        let with = |extra: Value| {
            let mut spec = base.clone();
            json_patch::merge(&mut spec, &extra);
            spec
        };
        // (spec, errors, warnings): from MetalLB's peerFromCR and parseTimers.
        let cases: Vec<(Value, Vec<&str>, Vec<&str>)> = vec![
            (base.clone(), vec![], vec![]),
            (
                with(json!({"myASN": 0})),
                vec!["BGPPeer metallb-system/x: spec.myASN: missing local ASN"],
                vec![],
            ),
            (
                with(json!({"peerASN": 0})),
                vec!["spec.peerASN: missing peer ASN and dynamicASN"],
                vec![],
            ),
            (
                with(json!({"peerASN": 0, "dynamicASN": "external"})),
                vec![],
                vec![],
            ),
            (
                with(json!({"dynamicASN": "internal"})),
                vec!["spec.dynamicASN \"internal\": both peer ASN and dynamicASN specified"],
                vec![],
            ),
            (
                with(json!({"peerASN": 64500, "ebgpMultiHop": true})),
                vec!["spec.ebgpMultiHop: invalid ebgp-multihop parameter set for an ibgp peer"],
                vec![],
            ),
            (
                with(json!({"peerAddress": null})),
                vec!["peer has no Address or Interface specified"],
                vec![],
            ),
            (
                with(json!({"peerAddress": null, "interface": "eth0"})),
                vec![],
                vec![],
            ),
            (
                with(json!({"interface": "eth0"})),
                vec!["spec.interface \"eth0\": peer has both Address and Interface specified"],
                vec![],
            ),
            (
                with(json!({"peerAddress": "192.0.2.300"})),
                vec!["spec.peerAddress \"192.0.2.300\": invalid BGPPeer address"],
                vec![],
            ),
            (
                with(json!({"routerID": "r1"})),
                vec!["spec.routerID \"r1\": invalid router ID"],
                vec![],
            ),
            (
                with(json!({"sourceAddress": "fe80::1%eth0"})),
                vec!["spec.sourceAddress \"fe80::1%eth0\": invalid source IP"],
                vec![],
            ),
            (
                with(json!({"holdTime": "2s"})),
                vec!["spec.holdTime \"2s\": invalid hold time: must be 0 or >=3s"],
                vec![],
            ),
            (with(json!({"holdTime": "0s"})), vec![], vec![]),
            (
                with(json!({"holdTime": "3s", "keepaliveTime": "1s"})),
                vec![],
                vec![],
            ),
            (with(json!({"holdTime": "3.9s"})), vec![], vec![]),
            // An absent hold time is three keepalives: 0.9 s makes a 2.7 s hold time.
            (
                with(json!({"keepaliveTime": "900ms"})),
                vec!["invalid hold time: must be 0 or >=3s"],
                vec![],
            ),
            (
                with(json!({"holdTime": "30s", "keepaliveTime": "40s"})),
                vec![
                    "spec.keepaliveTime \"40s\": invalid keepaliveTime, must be lower than holdTime \"30s\"",
                ],
                vec![],
            ),
            (
                with(json!({"password": "p", "passwordSecret": {"name": "s"}})),
                vec![
                    "spec.passwordSecret: can not have both password and secret ref set in peer config",
                ],
                vec![],
            ),
            (
                with(
                    json!({"nodeSelectors": [{"matchLabels": {"a": "b"}}, {"matchLabels": {"a": "b"}}]}),
                ),
                vec!["spec.nodeSelectors[1]", "duplicate selector"],
                vec![],
            ),
            (
                with(json!({"disableMP": true})),
                vec![],
                vec![
                    "spec.disableMP: disable mp is deprecated and has no effect since it's the default behavior now",
                ],
            ),
        ];
        for (i, (spec, errors, warnings)) in cases.into_iter().enumerate() {
            let checked = check_peer(&object("BGPPeer", spec), &options);
            assert_issues(i, &checked.errors, &errors);
            assert_issues(i, &checked.warnings, &warnings);
        }
    }

    #[test]
    fn advertisements_communities_and_bfd_profiles_follow_metallb_rules() {
        let options = ValidateOptions::default();
        let aliases: BTreeSet<String> = ["no-advertise".to_string()].into();
        let advertisement = |spec: Value| {
            check_advertisement(&object("BGPAdvertisement", spec), &aliases, &options)
        };
        // (checked, errors, warnings)
        let cases: Vec<(Checked, Vec<&str>, Vec<&str>)> = vec![
            (advertisement(json!({})), vec![], vec![]),
            (
                advertisement(
                    json!({"communities": ["65535:65282", "large:1:2:3", "no-advertise"]}),
                ),
                vec![],
                vec![],
            ),
            (
                advertisement(json!({"communities": ["65536:1"]})),
                vec![
                    "spec.communities[0] \"65536:1\": invalid community in BGP advertisement: invalid community value",
                ],
                vec![],
            ),
            (
                advertisement(json!({"communities": ["not-yet"]})),
                vec![],
                vec!["spec.communities[0] \"not-yet\": neither a community value"],
            ),
            (
                advertisement(json!({"peers": ["a", "a"]})),
                vec!["spec.peers[1] \"a\": duplicate entry"],
                vec![],
            ),
            (
                advertisement(json!({"ipAddressPools": ["a", "a"]})),
                vec!["spec.ipAddressPools[1] \"a\": duplicate entry"],
                vec![],
            ),
            (
                advertisement(json!({"aggregationLength": 33})),
                vec!["spec.aggregationLength \"33\": invalid aggregation length for IPv4"],
                vec![],
            ),
            (
                advertisement(json!({"aggregationLengthV6": 129})),
                vec!["invalid aggregation length for IPv6"],
                vec![],
            ),
            (
                advertisement(
                    json!({"aggregationLength": 24, "serviceSelectors": [{"matchLabels": {"a": "b"}}]}),
                ),
                vec!["serviceSelectors and aggregationLength are mutually exclusive"],
                vec![],
            ),
            (
                advertisement(
                    json!({"aggregationLength": 32, "serviceSelectors": [{"matchLabels": {"a": "b"}}]}),
                ),
                vec![],
                vec![],
            ),
        ];
        let other: Community = object(
            "Community",
            json!({"communities": [{"name": "taken", "value": "1:1"}]}),
        );
        let community = |spec: Value| {
            check_community(
                &object("Community", spec),
                std::slice::from_ref(&other),
                &options,
            )
        };
        let bfd = |spec: Value| check_bfd_profile(&object("BFDProfile", spec), &options);
        let more: Vec<(Checked, Vec<&str>, Vec<&str>)> = vec![
            (
                community(
                    json!({"communities": [{"name": "a", "value": "1:2"}, {"name": "b", "value": "large:1:2:3"}]}),
                ),
                vec![],
                vec![],
            ),
            (
                community(json!({"communities": [{"name": "a", "value": "1:2:3"}]})),
                vec![
                    "spec.communities[0].value \"1:2:3\": parsing community \"a\": invalid community format: 1:2:3",
                ],
                vec![],
            ),
            (
                community(json!({"communities": [{"name": "taken", "value": "1:2"}]})),
                vec!["spec.communities[0].name \"taken\": duplicate definition of community"],
                vec![],
            ),
            (
                community(
                    json!({"communities": [{"name": "a", "value": "1:2"}, {"name": "a", "value": "1:3"}]}),
                ),
                vec!["spec.communities[1].name \"a\": duplicate definition of community"],
                vec![],
            ),
            (
                bfd(json!({"detectMultiplier": 3, "receiveInterval": 300})),
                vec![],
                vec![],
            ),
            (
                bfd(json!({"detectMultiplier": 1})),
                vec![
                    "spec.detectMultiplier \"1\": invalid detect multiplier value: must be in 2-255 range",
                ],
                vec![],
            ),
            (
                bfd(json!({"minimumTtl": 255})),
                vec!["invalid minimum ttl value: must be in 1-254 range"],
                vec![],
            ),
        ];
        for (i, (checked, errors, warnings)) in cases.into_iter().chain(more).enumerate() {
            assert_issues(i, &checked.errors, &errors);
            assert_issues(i, &checked.warnings, &warnings);
        }
    }

    #[test]
    fn a_bfd_profile_is_in_use_while_a_peer_names_it() {
        let peer = |name: &str, profile: &str| -> BGPPeer {
            let mut peer: BGPPeer = object(
                "BGPPeer",
                json!({"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1", "bfdProfile": profile}),
            );
            peer.metadata.name = Some(name.into());
            peer
        };
        let peers = [peer("a", "fast"), peer("b", "slow"), peer("c", "fast")];
        assert_eq!(bfd_profile_users("fast", &peers), ["a", "c"]);
        assert!(bfd_profile_users("unused", &peers).is_empty());
    }
}
