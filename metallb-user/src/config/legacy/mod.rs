//! MetalLB's legacy configuration (the ConfigMap `config` of MetalLB up to v0.12, key
//! `config`: `address-pools`, `peers`, `bgp-communities`, `bfd-profiles`) turned into
//! the equivalent metallb.io objects, named and shaped as MetalLB's own converter
//! (`configmaptocrs`) makes them, and checked as MetalLB v0.12 checked the ConfigMap.
//! Pure: text in, objects (or every problem) out.
//!
//! What MetalLB's converter does, and so this:
//! - each pool becomes an `IPAddressPool` of its name; a `layer2` pool gets an
//!   `L2Advertisement` `l2advertisementN`, each `bgp-advertisements` entry a
//!   `BGPAdvertisement` `bgpadvertisementN` (one with no attributes for a `bgp` pool with
//!   none), numbered from 1 in pool order;
//! - each peer becomes a `BGPPeer` (v1beta2) `peerN`, its hold time rounded down to whole
//!   seconds (90s when unset), its keepalive time likewise when set;
//! - `bgp-communities` become one `Community` `communities`, aliases sorted by name;
//! - each BFD profile a `BFDProfile`, with `echoMode` and `passiveMode` always written;
//! - names that are not Kubernetes names (`My_Pool`, `01-pool`) are lowercased,
//!   underscores made dashes, cut to 63 characters and to their first letter, with a
//!   warning; references to them follow.
//!
//! Where this differs: a configuration MetalLB v0.12 would have refused (an unknown
//! `protocol` such as `l2`, a malformed CIDR, a peer without an AS number, ...) is an
//! error naming the field and the value, where MetalLB's converter writes objects
//! anyway; unknown keys are warnings; no `status` or empty `passwordSecret` is written.

mod emit;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::{
    api::core::v1::ConfigMap,
    apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement},
};
use serde::{Deserialize, Deserializer, Serialize};
use serde_yaml_ng::Value;

use super::{
    AddrRange, DEFAULT_NAMESPACE, Issue, Selector, ValidateOptions,
    crd::{
        BFDProfile, BFDProfileSpec, BGPAdvertisement, BGPAdvertisementSpec, Community,
        CommunityAlias, CommunitySpec, IPAddressPool, IPAddressPoolSpec, L2Advertisement,
        L2AdvertisementSpec,
        bgppeer::{
            Duration,
            v1beta2::{BGPPeer, BGPPeerSpec},
        },
    },
    file::{self, ConfigFile, typed, yaml},
    names, validate,
};

/// The first line of the output.
pub const HEADER: &str =
    "# Converted from MetalLB's ConfigMap configuration by `metallb migrate-config`.\n";

#[derive(Clone, Debug, Default)]
pub struct MigrateOptions {
    /// The namespace of the objects written; default: the ConfigMap's, else
    /// `metallb-system`.
    pub namespace: Option<String>,
}

/// What the conversion found. `objects` is `Some` exactly when `errors` is empty.
#[derive(Debug, Default)]
pub struct Migration {
    pub objects: Option<Objects>,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

/// The converted objects, by kind, each in the order MetalLB's converter writes them.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub peers: Vec<BGPPeer>,
    pub pools: Vec<IPAddressPool>,
    pub bgp_advertisements: Vec<BGPAdvertisement>,
    pub l2_advertisements: Vec<L2Advertisement>,
    pub bfd_profiles: Vec<BFDProfile>,
    pub communities: Vec<Community>,
}

impl Objects {
    /// A multi-document YAML for `kubectl apply -f`: [`HEADER`], then every object
    /// followed by `---`, in MetalLB's converter's order (peers, pools, BGP
    /// advertisements, L2 advertisements, BFD profiles, communities).
    pub fn to_yaml(&self) -> Result<String, serde_json::Error> {
        fn values<T: Serialize>(
            objects: &[T],
        ) -> Result<Vec<serde_json::Value>, serde_json::Error> {
            objects.iter().map(serde_json::to_value).collect()
        }
        let kinds = [
            values(&self.peers)?,
            values(&self.pools)?,
            values(&self.bgp_advertisements)?,
            values(&self.l2_advertisements)?,
            values(&self.bfd_profiles)?,
            values(&self.communities)?,
        ];
        let mut text = String::from(HEADER);
        for object in kinds.iter().flatten() {
            text.push_str(&emit::document(object));
            text.push_str("---\n");
        }
        Ok(text)
    }
}

/// Converts `text`: a ConfigMap (`kubectl get configmap -n metallb-system config -o
/// yaml`), or the YAML of its `data.config` alone.
pub fn migrate(text: &str, options: &MigrateOptions) -> Migration {
    let mut migration = Migration::default();
    let Some(input) = read_input(text, &mut migration) else {
        return migration;
    };
    let namespace = options
        .namespace
        .clone()
        .or(input.namespace)
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let Some(config) = read_config(&input.config, input.source, &mut migration) else {
        return migration;
    };
    let mut converter = Converter {
        namespace,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let objects = converter.convert(&config);
    migration.errors.append(&mut converter.errors);
    migration.warnings.append(&mut converter.warnings);
    if !migration.errors.is_empty() {
        return migration;
    }
    // What `metallb validate` and MetalLB's webhook check of the pools (overlaps, special
    // blocks, ...), on the objects as written.
    let written = ConfigFile {
        pools: objects.pools.clone(),
        l2_advertisements: objects.l2_advertisements.clone(),
        ..ConfigFile::default()
    };
    let validation = validate(
        &written,
        &ValidateOptions {
            namespace: converter.namespace,
        },
    );
    migration.errors.extend(validation.errors);
    migration.warnings.extend(validation.warnings);
    if migration.errors.is_empty() {
        migration.objects = Some(objects);
    }
    migration
}

/// Where the configuration came from, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The whole input is the configuration.
    Bare,
    /// The `data.config` of a ConfigMap.
    ConfigMapData,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Bare => "configuration",
            Source::ConfigMapData => "data.config",
        }
    }
}

struct Input {
    config: String,
    source: Source,
    namespace: Option<String>,
}

/// The one document of `text`; `None` with the problems in `migration`, or, when `text`
/// holds none, with a warning and nothing to write.
fn one_document(text: &str, what: &str, migration: &mut Migration) -> Option<(usize, Value)> {
    let mut documents = Vec::new();
    file::read_documents(text, |read| match read {
        file::DocumentRead::Value { index, value } => documents.push((index, value)),
        file::DocumentRead::Problem(issue) => migration.errors.push(Issue {
            object: format!("{what} {}", issue.object),
            ..issue
        }),
    });
    if !migration.errors.is_empty() {
        return None;
    }
    if documents.len() > 1 {
        migration.errors.push(Issue::new(
            what,
            "",
            "",
            format!(
                "holds {} YAML documents; give one: the ConfigMap, or its data.config",
                documents.len()
            ),
        ));
        return None;
    }
    if documents.is_empty() {
        migration.warnings.push(Issue::new(
            what,
            "",
            "",
            "empty: there is nothing to convert",
        ));
        migration.objects = Some(Objects::default());
    }
    documents.pop()
}

/// The configuration text: `text` itself, or the `data.config` of the ConfigMap it is.
fn read_input(text: &str, migration: &mut Migration) -> Option<Input> {
    let (document, value) = one_document(text, "input", migration)?;
    let is_object = value.get("kind").is_some() || value.get("apiVersion").is_some();
    if !is_object {
        return Some(Input {
            config: text.to_owned(),
            source: Source::Bare,
            namespace: None,
        });
    }
    let text_at = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text_at("apiVersion"), text_at("kind"));
    if (api_version, kind) != ("v1", "ConfigMap") {
        migration.errors.push(Issue::new(
            "input",
            "apiVersion/kind",
            &format!("{api_version} {kind}"),
            "not MetalLB's configuration: give its ConfigMap (v1 ConfigMap `config`, \
             `kubectl get configmap -n metallb-system config -o yaml`) or the YAML of its data.config",
        ));
        return None;
    }
    let read = typed::read::<ConfigMap>(value, MAX_TYPE_ERRORS);
    let locations = yaml::Locations::of(text.strip_prefix('\u{feff}').unwrap_or(text));
    for error in &read.errors {
        let at = locations
            .locate(document, &error.path)
            .map(|position| format!(" at {position}"))
            .unwrap_or_default();
        migration.errors.push(Issue::new(
            "ConfigMap",
            &yaml::path_text(&error.path),
            "",
            format!("{}{at}", error.message),
        ));
    }
    let config_map = read.object?;
    let name = config_map.metadata.name.clone().unwrap_or_default();
    let namespace = config_map.metadata.namespace.clone();
    let object = format!(
        "ConfigMap {}/{name}",
        namespace.as_deref().unwrap_or_default()
    );
    let data = config_map.data.unwrap_or_default();
    let Some(config) = data.get("config") else {
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        migration.errors.push(Issue::new(
            &object,
            "data.config",
            "",
            format!(
                "missing: MetalLB reads its configuration from the key `config` (the ConfigMap has {})",
                if keys.is_empty() {
                    "no data".to_owned()
                } else {
                    format!("keys {}", keys.join(", "))
                }
            ),
        ));
        return None;
    };
    Some(Input {
        config: config.clone(),
        source: Source::ConfigMapData,
        namespace,
    })
}

/// Type errors reported at most (then one line says there are more).
const MAX_TYPE_ERRORS: usize = 50;

/// The configuration as typed values; its type errors are errors, its unknown keys
/// warnings, each with its place.
fn read_config(text: &str, source: Source, migration: &mut Migration) -> Option<LegacyConfig> {
    let what = source.name();
    let (document, value) = one_document(text, what, migration)?;
    if !value.is_mapping() {
        migration.errors.push(Issue::new(
            what,
            "",
            "",
            "not a mapping of address-pools, peers, bgp-communities, bfd-profiles",
        ));
        return None;
    }
    let read = typed::read::<LegacyConfig>(value, MAX_TYPE_ERRORS);
    let locations = yaml::Locations::of(text.strip_prefix('\u{feff}').unwrap_or(text));
    let at = |path: &[yaml::Step]| {
        let of = match source {
            Source::Bare => "",
            Source::ConfigMapData => " of data.config",
        };
        locations
            .locate(document, path)
            .map(|position| format!(" at {position}{of}"))
            .unwrap_or_default()
    };
    for error in &read.errors {
        migration.errors.push(Issue::new(
            what,
            &yaml::path_text(&error.path),
            "",
            format!("{}{}", error.message, at(&error.path)),
        ));
    }
    if read.stopped_early {
        migration.errors.push(Issue::new(
            what,
            "",
            "",
            format!("more type errors not shown (at most {MAX_TYPE_ERRORS})"),
        ));
    }
    for field in &read.unknown_fields {
        migration.warnings.push(Issue::new(
            what,
            &yaml::path_text(field),
            "",
            format!(
                "unknown key, ignored (MetalLB v0.12 refused it){}",
                at(field)
            ),
        ));
    }
    read.object
}

/// A string of the configuration. Go's YAML decoder (MetalLB's) gives a string field
/// the text of any scalar, so `password: 1234` or `rack: 1` in `match-labels` were
/// strings: integers and booleans are taken as their text; null is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Text(String);

impl Text {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a string")
            }
            fn visit_str<E>(self, value: &str) -> Result<Text, E> {
                Ok(Text(value.to_owned()))
            }
            fn visit_i64<E>(self, value: i64) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }
            fn visit_u64<E>(self, value: u64) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }
            fn visit_bool<E>(self, value: bool) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Text, E> {
                Ok(Text::default())
            }
            fn visit_none<E>(self) -> Result<Text, E> {
                Ok(Text::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<Text, D::Error> {
                Text::deserialize(inner)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A list whose missing or null entries are empty entries, as Go decodes them
/// (`address-pools: [ - ]` is a pool with no name, reported as such).
fn entries<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let entries: Option<Vec<Option<T>>> = Option::deserialize(deserializer)?;
    Ok(entries
        .unwrap_or_default()
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect())
}

/// MetalLB v0.12's `configFile`, key for key.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LegacyConfig {
    #[serde(default, deserialize_with = "entries")]
    peers: Vec<LegacyPeer>,
    #[serde(default)]
    bgp_communities: Option<BTreeMap<String, Text>>,
    #[serde(default, deserialize_with = "entries")]
    address_pools: Vec<LegacyPool>,
    #[serde(default, deserialize_with = "entries")]
    bfd_profiles: Vec<LegacyBfdProfile>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LegacyPeer {
    #[serde(default)]
    my_asn: Option<u32>,
    #[serde(default)]
    peer_asn: Option<u32>,
    #[serde(default)]
    peer_address: Text,
    #[serde(default)]
    source_address: Text,
    #[serde(default)]
    peer_port: Option<u16>,
    #[serde(default)]
    hold_time: Text,
    #[serde(default)]
    keepalive_time: Text,
    #[serde(default)]
    router_id: Text,
    #[serde(default, deserialize_with = "entries")]
    node_selectors: Vec<LegacyNodeSelector>,
    #[serde(default)]
    password: Text,
    #[serde(default)]
    bfd_profile: Text,
    #[serde(default)]
    ebgp_multihop: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LegacyNodeSelector {
    #[serde(default)]
    match_labels: Option<BTreeMap<String, Text>>,
    #[serde(default, deserialize_with = "entries")]
    match_expressions: Vec<LegacyRequirement>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
struct LegacyRequirement {
    #[serde(default)]
    key: Text,
    #[serde(default)]
    operator: Text,
    #[serde(default)]
    values: Option<Vec<Text>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LegacyPool {
    #[serde(default)]
    name: Text,
    #[serde(default)]
    protocol: Text,
    #[serde(default)]
    addresses: Option<Vec<Text>>,
    #[serde(default)]
    auto_assign: Option<bool>,
    #[serde(default)]
    avoid_buggy_ips: Option<bool>,
    #[serde(default, deserialize_with = "entries")]
    bgp_advertisements: Vec<LegacyBgpAdvertisement>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LegacyBgpAdvertisement {
    #[serde(default)]
    aggregation_length: Option<i32>,
    #[serde(default)]
    aggregation_length_v6: Option<i32>,
    #[serde(default)]
    localpref: Option<u32>,
    #[serde(default)]
    communities: Option<Vec<Text>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct LegacyBfdProfile {
    #[serde(default)]
    name: Text,
    #[serde(default)]
    receive_interval: Option<u32>,
    #[serde(default)]
    transmit_interval: Option<u32>,
    #[serde(default)]
    detect_multiplier: Option<u32>,
    #[serde(default)]
    echo_interval: Option<u32>,
    #[serde(default)]
    echo_mode: Option<bool>,
    #[serde(default)]
    passive_mode: Option<bool>,
    #[serde(default)]
    minimum_ttl: Option<u32>,
}

/// MetalLB's converter's test of a name it leaves alone.
fn is_metallb_k8s_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    (2..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[1..].iter().all(inner)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// MetalLB's converter's `formatToK8S`: cut to 63 bytes, lowercased, `_` made `-`, and
/// from the first ASCII letter on; `None` when there is no letter.
fn metallb_k8s_name(name: &str) -> Option<String> {
    if is_metallb_k8s_name(name) {
        return Some(name.to_owned());
    }
    let mut end = name.len().min(names::LABEL_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let converted = name[..end].to_lowercase().replace('_', "-");
    let first_letter = converted.find(|c: char| c.is_ascii_lowercase())?;
    Some(converted[first_letter..].to_owned())
}

/// The prefix length of the widest CIDR block of `range` split into CIDR blocks (Go's
/// `ipaddr.Summarize`): a CIDR's own prefix length, for a range its widest block.
fn widest_block(range: &AddrRange) -> u32 {
    let (bits, first, last) = match (range.first, range.last) {
        (IpAddr::V4(first), IpAddr::V4(last)) => (
            32,
            u128::from(u32::from(first)),
            u128::from(u32::from(last)),
        ),
        (first, last) => (128, ip_bits(first), ip_bits(last)),
    };
    let mut widest = bits;
    let mut start = first;
    loop {
        // The largest aligned block at `start` that ends at or before `last`.
        let mut host_bits = start.trailing_zeros().min(bits);
        while host_bits > 0 && last - start < low_mask(host_bits) {
            host_bits -= 1;
        }
        widest = widest.min(bits - host_bits);
        let end = start + low_mask(host_bits);
        if end >= last {
            return widest;
        }
        start = end + 1;
    }
}

/// `2^bits - 1`.
fn low_mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

fn ip_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A BGP community as MetalLB reads one: `AS:value` (16 bits each), or
/// `large:global:local1:local2` (32 bits each).
fn check_community(text: &str) -> Result<(), String> {
    let fields: Vec<&str> = text.split(':').collect();
    let fits = |field: &str, bits: u32| {
        !field.is_empty()
            && field.bytes().all(|b| b.is_ascii_digit())
            && field.parse::<u64>().is_ok_and(|n| n < 1 << bits)
    };
    match fields.as_slice() {
        [high, low] => [high, low]
            .iter()
            .find(|field| !fits(field, 16))
            .map_or(Ok(()), |field| {
                Err(format!("section {field:?} is not a number from 0 to 65535"))
            }),
        ["large", parts @ ..] if parts.len() == 3 => parts
            .iter()
            .find(|field| !fits(field, 32))
            .map_or(Ok(()), |field| {
                Err(format!(
                    "section {field:?} is not a number from 0 to 4294967295"
                ))
            }),
        _ => Err(
            "not a community: AS:value (16 bits each) or large:global:local1:local2 (32 bits each)"
                .into(),
        ),
    }
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpAddr>()
        .map_err(|_| "not an IP address".to_owned())
}

/// A Go duration rounded down to whole seconds, as MetalLB reads its timers.
fn whole_seconds(text: &str) -> Result<Duration, String> {
    let duration: Duration = text.parse().map_err(|error| format!("{error}"))?;
    const SECOND: i64 = 1_000_000_000;
    Ok(Duration::from_nanos(duration.as_nanos() / SECOND * SECOND))
}

struct Converter {
    namespace: String,
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
}

/// `address-pools[1] (name)`, or `address-pools[1]` when it has none.
fn entry(list: &str, index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("{list}[{index}]")
    } else {
        format!("{list}[{index}] ({name})")
    }
}

impl Converter {
    fn error(&mut self, object: &str, field: &str, value: &str, message: impl Into<String>) {
        self.errors.push(Issue::new(object, field, value, message));
    }

    fn warning(&mut self, object: &str, field: &str, value: &str, message: impl Into<String>) {
        self.warnings
            .push(Issue::new(object, field, value, message));
    }

    fn metadata(&self, name: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            ..Default::default()
        }
    }

    fn convert(&mut self, config: &LegacyConfig) -> Objects {
        let (bfd_profiles, bfd_names) = self.bfd_profiles(&config.bfd_profiles);
        let aliases = config.bgp_communities.clone().unwrap_or_default();
        let communities = self.communities(&aliases);
        let peers = self.peers(&config.peers, &bfd_names);
        let (pools, bgp_advertisements, l2_advertisements) =
            self.pools(&config.address_pools, &aliases);
        if !peers.is_empty() {
            self.warning(
                "peers",
                "",
                "",
                "converted to BGPPeer objects: the standalone speaker peers with them (not yet the Kubernetes speaker)",
            );
        }
        Objects {
            peers,
            pools,
            bgp_advertisements,
            l2_advertisements,
            bfd_profiles,
            communities,
        }
    }

    /// The object name for `name` (field `name` of `object`), renamed as MetalLB's
    /// converter renames it, with a warning; `None` (with an error) when it cannot be a
    /// name.
    fn object_name(&mut self, object: &str, kind: &str, name: &str) -> Option<String> {
        if name.is_empty() {
            self.error(object, "name", "", "missing");
            return None;
        }
        let Some(renamed) = metallb_k8s_name(name) else {
            self.error(
                object,
                "name",
                name,
                format!("cannot be made the name of the {kind}: it has no letter"),
            );
            return None;
        };
        if let Err(why) = names::dns1123_subdomain(&renamed) {
            let shown = if renamed == name {
                String::new()
            } else {
                format!(" (made {renamed:?})")
            };
            self.error(
                object,
                "name",
                name,
                format!("cannot be made the name of the {kind}{shown}: it {why}; rename it"),
            );
            return None;
        }
        if renamed != name {
            self.warning(
                object,
                "name",
                name,
                format!(
                    "the {kind} is named {renamed:?}: an object name is a lowercase RFC 1123 subdomain (renamed as MetalLB's converter renames it)"
                ),
            );
        }
        Some(renamed)
    }

    /// Each entry's object name, refusing names given twice, before or after renaming.
    fn unique_names(&mut self, list: &str, kind: &str, names: &[&str]) -> Vec<Option<String>> {
        let mut taken: BTreeMap<String, usize> = BTreeMap::new();
        let mut given: BTreeMap<&str, usize> = BTreeMap::new();
        let mut out = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let object = entry(list, i, name);
            if let Some(first) = given.get(name).filter(|_| !name.is_empty()) {
                self.error(
                    &object,
                    "name",
                    name,
                    format!("duplicate definition: {list}[{first}] has the same name"),
                );
                out.push(None);
                continue;
            }
            given.insert(name, i);
            let renamed = self.object_name(&object, kind, name);
            if let Some(renamed) = &renamed {
                if let Some(first) = taken.get(renamed) {
                    self.error(
                        &object,
                        "name",
                        name,
                        format!(
                            "becomes {renamed:?}, the name {list}[{first}] gets too; rename one"
                        ),
                    );
                    out.push(None);
                    continue;
                }
                taken.insert(renamed.clone(), i);
            }
            out.push(renamed);
        }
        out
    }

    /// The profiles, and the object name of each profile name given.
    fn bfd_profiles(
        &mut self,
        profiles: &[LegacyBfdProfile],
    ) -> (Vec<BFDProfile>, BTreeMap<String, String>) {
        let given: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        let object_names = self.unique_names("bfd-profiles", "BFDProfile", &given);
        let mut out = Vec::new();
        let mut by_name = BTreeMap::new();
        for (i, (profile, object_name)) in profiles.iter().zip(object_names).enumerate() {
            let object = entry("bfd-profiles", i, profile.name.as_str());
            let mut in_range = |field: &str, value: Option<u32>, min: u32, max: u32| {
                if let Some(value) = value.filter(|v| !(min..=max).contains(v)) {
                    self.error(
                        &object,
                        field,
                        &value.to_string(),
                        format!("must be from {min} to {max}"),
                    );
                }
                value
            };
            let spec = BFDProfileSpec {
                receive_interval: in_range("receive-interval", profile.receive_interval, 10, 60000),
                transmit_interval: in_range(
                    "transmit-interval",
                    profile.transmit_interval,
                    10,
                    60000,
                ),
                detect_multiplier: in_range("detect-multiplier", profile.detect_multiplier, 2, 255),
                echo_interval: in_range("echo-interval", profile.echo_interval, 10, 60000),
                echo_mode: Some(profile.echo_mode.unwrap_or_default()),
                passive_mode: Some(profile.passive_mode.unwrap_or_default()),
                minimum_ttl: in_range("minimum-ttl", profile.minimum_ttl, 1, 254),
            };
            if let Some(name) = object_name {
                by_name.insert(profile.name.0.clone(), name.clone());
                out.push(BFDProfile {
                    metadata: self.metadata(&name),
                    spec,
                    status: None,
                });
            }
        }
        (out, by_name)
    }

    fn communities(&mut self, aliases: &BTreeMap<String, Text>) -> Vec<Community> {
        let mut listed = Vec::new();
        for (name, value) in aliases {
            if let Err(why) = check_community(value.as_str()) {
                self.error("bgp-communities", name, value.as_str(), why);
            }
            listed.push(CommunityAlias {
                name: name.clone(),
                value: value.0.clone(),
            });
        }
        if listed.is_empty() {
            return Vec::new();
        }
        vec![Community {
            metadata: self.metadata("communities"),
            spec: CommunitySpec {
                communities: listed,
            },
            status: None,
        }]
    }

    fn peers(
        &mut self,
        peers: &[LegacyPeer],
        bfd_names: &BTreeMap<String, String>,
    ) -> Vec<BGPPeer> {
        let mut out: Vec<BGPPeer> = Vec::new();
        for (i, peer) in peers.iter().enumerate() {
            let object = entry("peers", i, peer.peer_address.as_str());
            let errors_before = self.errors.len();
            let spec = self.peer_spec(&object, peer, bfd_names);
            if self.errors.len() != errors_before {
                continue;
            }
            if let Some(first) = out.iter().position(|earlier| earlier.spec == spec) {
                self.error(
                    &object,
                    "",
                    "",
                    format!("the same session as peers[{first}]"),
                );
                continue;
            }
            out.push(BGPPeer {
                metadata: self.metadata(&format!("peer{}", i + 1)),
                spec,
                status: None,
            });
        }
        out
    }

    fn peer_spec(
        &mut self,
        object: &str,
        peer: &LegacyPeer,
        bfd_names: &BTreeMap<String, String>,
    ) -> BGPPeerSpec {
        let my_asn = peer.my_asn.unwrap_or_default();
        let peer_asn = peer.peer_asn.unwrap_or_default();
        if my_asn == 0 {
            self.error(object, "my-asn", "", "missing: the local AS number");
        }
        if peer_asn == 0 {
            self.error(object, "peer-asn", "", "missing: the peer's AS number");
        }
        let ebgp_multi_hop = peer.ebgp_multihop.unwrap_or_default();
        if ebgp_multi_hop && my_asn == peer_asn {
            self.error(
                object,
                "ebgp-multihop",
                "true",
                "is for eBGP, and this peer is iBGP (my-asn equals peer-asn)",
            );
        }
        let address = peer.peer_address.as_str();
        if address.is_empty() {
            self.error(object, "peer-address", "", "missing");
        } else if let Err(why) = parse_ip(address) {
            self.error(object, "peer-address", address, why);
        }
        for (field, text) in [
            ("source-address", &peer.source_address),
            ("router-id", &peer.router_id),
        ] {
            if !text.as_str().is_empty()
                && let Err(why) = parse_ip(text.as_str())
            {
                self.error(object, field, text.as_str(), why);
            }
        }
        let hold_time = match peer.hold_time.as_str() {
            "" => Some(Duration::from_nanos(90 * 1_000_000_000)),
            text => match whole_seconds(text) {
                Ok(rounded) if rounded.as_nanos() != 0 && rounded.as_nanos() < 3_000_000_000 => {
                    self.error(object, "hold-time", text, "must be 0 or at least 3s");
                    None
                }
                Ok(rounded) => Some(rounded),
                Err(why) => {
                    self.error(object, "hold-time", text, why);
                    None
                }
            },
        };
        let keepalive_time = match peer.keepalive_time.as_str() {
            "" => None,
            text => match whole_seconds(text) {
                Ok(rounded) => {
                    if let Some(hold) = hold_time.filter(|hold| rounded > *hold) {
                        self.error(
                            object,
                            "keepalive-time",
                            text,
                            format!("must not be longer than the hold time ({hold})"),
                        );
                    }
                    Some(rounded)
                }
                Err(why) => {
                    self.error(object, "keepalive-time", text, why);
                    None
                }
            },
        };
        let node_selectors = peer
            .node_selectors
            .iter()
            .enumerate()
            .filter_map(|(k, selector)| self.node_selector(object, k, selector))
            .collect();
        let bfd_profile = match peer.bfd_profile.as_str() {
            "" => String::new(),
            name => match bfd_names.get(name) {
                Some(object_name) => object_name.clone(),
                None => {
                    self.error(
                        object,
                        "bfd-profile",
                        name,
                        "names no entry of bfd-profiles",
                    );
                    String::new()
                }
            },
        };
        BGPPeerSpec {
            my_asn,
            peer_asn,
            peer_address: address.to_owned(),
            source_address: peer.source_address.0.clone(),
            peer_port: peer.peer_port.unwrap_or_default(),
            hold_time,
            keepalive_time,
            router_id: peer.router_id.0.clone(),
            node_selectors,
            password: peer.password.0.clone(),
            bfd_profile,
            ebgp_multi_hop,
            ..BGPPeerSpec::default()
        }
    }

    fn node_selector(
        &mut self,
        object: &str,
        index: usize,
        selector: &LegacyNodeSelector,
    ) -> Option<LabelSelector> {
        let match_labels: BTreeMap<String, String> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value.0.clone()))
            .collect();
        let match_expressions: Vec<LabelSelectorRequirement> = selector
            .match_expressions
            .iter()
            .map(|requirement| LabelSelectorRequirement {
                key: requirement.key.0.clone(),
                operator: requirement.operator.0.clone(),
                values: requirement
                    .values
                    .as_ref()
                    .filter(|values| !values.is_empty())
                    .map(|values| values.iter().map(|v| v.0.clone()).collect()),
            })
            .collect();
        let converted = LabelSelector {
            match_labels: (!match_labels.is_empty()).then_some(match_labels),
            match_expressions: (!match_expressions.is_empty()).then_some(match_expressions),
        };
        match Selector::compile(&converted) {
            Ok(_) => Some(converted),
            Err(why) => {
                let shown = serde_json::to_string(&converted).unwrap_or_default();
                self.error(object, &format!("node-selectors[{index}]"), &shown, why);
                None
            }
        }
    }

    fn pools(
        &mut self,
        pools: &[LegacyPool],
        aliases: &BTreeMap<String, Text>,
    ) -> (
        Vec<IPAddressPool>,
        Vec<BGPAdvertisement>,
        Vec<L2Advertisement>,
    ) {
        let given: Vec<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        let object_names = self.unique_names("address-pools", "IPAddressPool", &given);
        let (mut out, mut bgp, mut l2) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (pool, object_name)) in pools.iter().zip(object_names).enumerate() {
            let object = entry("address-pools", i, pool.name.as_str());
            let addresses: Vec<String> = pool
                .addresses
                .iter()
                .flatten()
                .map(|a| a.0.clone())
                .collect();
            if addresses.is_empty() {
                self.error(&object, "addresses", "", "the pool has no addresses");
            }
            let mut ranges = Vec::new();
            for (j, address) in addresses.iter().enumerate() {
                match AddrRange::parse(address) {
                    Ok(range) => ranges.push(range),
                    Err(why) => self.error(&object, &format!("addresses[{j}]"), address, why),
                }
            }
            let protocol = pool.protocol.as_str();
            let advertisements = &pool.bgp_advertisements;
            let name = object_name.clone().unwrap_or_default();
            match protocol {
                "layer2" => {
                    if !advertisements.is_empty() {
                        self.error(
                            &object,
                            "bgp-advertisements",
                            "",
                            "a layer2 pool cannot have bgp-advertisements (MetalLB refuses it)",
                        );
                    }
                    l2.push(L2Advertisement {
                        metadata: self.metadata(&format!("l2advertisement{}", l2.len() + 1)),
                        spec: L2AdvertisementSpec {
                            ip_address_pools: vec![name.clone()],
                            ..L2AdvertisementSpec::default()
                        },
                        status: None,
                    });
                }
                "bgp" => {
                    let specs = self.bgp_advertisements(&object, advertisements, &ranges, aliases);
                    let specs = if advertisements.is_empty() {
                        vec![BGPAdvertisementSpec::default()]
                    } else {
                        specs
                    };
                    for spec in specs {
                        bgp.push(BGPAdvertisement {
                            metadata: self.metadata(&format!("bgpadvertisement{}", bgp.len() + 1)),
                            spec: BGPAdvertisementSpec {
                                ip_address_pools: vec![name.clone()],
                                ..spec
                            },
                            status: None,
                        });
                    }
                    self.warning(
                        &object,
                        "protocol",
                        protocol,
                        "converted to a BGPAdvertisement: announced over BGP by the standalone speaker (not yet by the Kubernetes speaker)",
                    );
                }
                "" => self.error(&object, "protocol", "", "missing: layer2 or bgp"),
                other => self.error(
                    &object,
                    "protocol",
                    other,
                    "unknown protocol: MetalLB's are layer2 and bgp",
                ),
            }
            if object_name.is_some() {
                out.push(IPAddressPool {
                    metadata: self.metadata(&name),
                    spec: IPAddressPoolSpec {
                        addresses,
                        auto_assign: pool.auto_assign,
                        avoid_buggy_ips: pool.avoid_buggy_ips.unwrap_or_default(),
                        service_allocation: None,
                    },
                    status: None,
                });
            }
        }
        (out, bgp, l2)
    }

    fn bgp_advertisements(
        &mut self,
        object: &str,
        advertisements: &[LegacyBgpAdvertisement],
        ranges: &[AddrRange],
        aliases: &BTreeMap<String, Text>,
    ) -> Vec<BGPAdvertisementSpec> {
        let mut out = Vec::new();
        for (k, advertisement) in advertisements.iter().enumerate() {
            let field = |name: &str| format!("bgp-advertisements[{k}].{name}");
            if let Some(first) = advertisements[..k].iter().position(|a| a == advertisement) {
                self.error(
                    object,
                    &format!("bgp-advertisements[{k}]"),
                    "",
                    format!("duplicate definition: the same as bgp-advertisements[{first}]"),
                );
            }
            let lengths = [
                (
                    "aggregation-length",
                    advertisement.aggregation_length,
                    1,
                    32,
                    true,
                ),
                (
                    "aggregation-length-v6",
                    advertisement.aggregation_length_v6,
                    0,
                    128,
                    false,
                ),
            ];
            for (name, length, min, max, ipv4) in lengths {
                let Some(length) = length else { continue };
                if !(min..=max).contains(&length) {
                    self.error(
                        object,
                        &field(name),
                        &length.to_string(),
                        format!("must be from {min} to {max}"),
                    );
                    continue;
                }
                let length = length as u32;
                for range in ranges.iter().filter(|r| r.is_ipv4() == ipv4) {
                    let widest = widest_block(range);
                    if length < widest {
                        self.error(
                            object,
                            &field(name),
                            &length.to_string(),
                            format!(
                                "is shorter than the prefix length {widest} of {range}: a /{length} route would take in addresses outside the pool"
                            ),
                        );
                    }
                }
            }
            let communities: Vec<String> = advertisement
                .communities
                .iter()
                .flatten()
                .map(|c| c.0.clone())
                .collect();
            let mut seen = BTreeSet::new();
            for (c, community) in communities.iter().enumerate() {
                let field = field(&format!("communities[{c}]"));
                if !seen.insert(community) {
                    self.error(
                        object,
                        &field,
                        community,
                        "duplicate definition of the community",
                    );
                } else if !aliases.contains_key(community)
                    && let Err(why) = check_community(community)
                {
                    self.error(
                        object,
                        &field,
                        community,
                        format!("{why}, and no name in bgp-communities"),
                    );
                }
            }
            out.push(BGPAdvertisementSpec {
                aggregation_length: advertisement.aggregation_length,
                aggregation_length_v6: advertisement.aggregation_length_v6,
                local_pref: advertisement.localpref.unwrap_or_default(),
                communities,
                ..BGPAdvertisementSpec::default()
            });
        }
        out
    }
}

#[cfg(test)]
mod tests;
