//! The BGP kinds other than `BGPPeer`, metallb.io/v1beta1: `BGPAdvertisement`,
//! `Community`, `BFDProfile`. Schema only for now: BGP mode is not implemented, but the
//! objects are read (and their problems reported) as MetalLB reads them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{schema, spec_may_be_absent};

/// Which pools to advertise to which peers, with which attributes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "BGPAdvertisement",
    plural = "bgpadvertisements",
    namespaced,
    status = "BGPAdvertisementStatus",
    doc = "Advertises the IPs of the selected pools over BGP, with these attributes.",
    printcolumn = r#"{"name": "IPAddressPools", "type": "string", "jsonPath": ".spec.ipAddressPools"}"#,
    printcolumn = r#"{"name": "IPAddressPool Selectors", "type": "string", "jsonPath": ".spec.ipAddressPoolSelectors"}"#,
    printcolumn = r#"{"name": "Peers", "type": "string", "jsonPath": ".spec.peers"}"#,
    printcolumn = r#"{"name": "Node Selectors", "type": "string", "priority": 10, "jsonPath": ".spec.nodeSelectors"}"#
)]
#[serde(remote = "Self", rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.serviceSelectors) || self.serviceSelectors.size() == 0 || ((!has(self.aggregationLength) || self.aggregationLength == 32) && (!has(self.aggregationLengthV6) || self.aggregationLengthV6 == 128))",
    "message": "serviceSelectors and aggregationLength are mutually exclusive, can only be used together with default aggregationLength (32) and aggregationLengthV6 (128)"
}]))]
pub struct BGPAdvertisementSpec {
    /// Prefix length of the IPv4 route advertised for each address (aggregation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::int32", range(min = 1), extend("default" = 32))]
    pub aggregation_length: Option<i32>,
    /// Prefix length of the IPv6 route advertised for each address.
    #[serde(
        rename = "aggregationLengthV6",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "schema::int32", extend("default" = 128))]
    pub aggregation_length_v6: Option<i32>,
    /// The BGP LOCAL_PREF attribute (iBGP only).
    #[serde(default, skip_serializing_if = "schema::omitempty")]
    #[schemars(schema_with = "schema::int32")]
    pub local_pref: u32,
    /// Communities: `1234:1234`, `large:1234:1234:1234`, or the name of a `Community`
    /// alias.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
    /// Pools by name; with none named or selected, every pool.
    #[serde(
        rename = "ipAddressPools",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ip_address_pools: Vec<String>,
    /// Pools by label.
    #[serde(
        rename = "ipAddressPoolSelectors",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schemars(schema_with = "schema::label_selectors")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// The nodes that advertise; empty: every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::label_selectors")]
    pub node_selectors: Vec<LabelSelector>,
    /// `BGPPeer` names to advertise to; empty: every peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
    /// Advertise only these services; only with the default aggregation lengths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::label_selectors")]
    pub service_selectors: Vec<LabelSelector>,
}

spec_may_be_absent!(BGPAdvertisementSpec);

/// Empty, as MetalLB's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct BGPAdvertisementStatus {}

/// Names for BGP communities, usable in a `BGPAdvertisement`'s `communities`.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "Community",
    plural = "communities",
    namespaced,
    status = "CommunityStatus",
    doc = "Aliases for BGP communities."
)]
#[serde(remote = "Self")]
pub struct CommunitySpec {
    /// The aliases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<CommunityAlias>,
}

spec_may_be_absent!(CommunitySpec);

/// One community alias.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct CommunityAlias {
    /// The alias.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The community: `1234:1234` or `large:1234:1234:1234`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// Empty, as MetalLB's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct CommunityStatus {}

/// The timers and modes of a BFD session, which a `BGPPeer` may name.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "BFDProfile",
    plural = "bfdprofiles",
    namespaced,
    status = "BFDProfileStatus",
    doc = "Settings of a BFD session that a BGP session may use.",
    printcolumn = r#"{"name": "Passive Mode", "type": "boolean", "jsonPath": ".spec.passiveMode"}"#,
    printcolumn = r#"{"name": "Transmit Interval", "type": "integer", "jsonPath": ".spec.transmitInterval"}"#,
    printcolumn = r#"{"name": "Receive Interval", "type": "integer", "jsonPath": ".spec.receiveInterval"}"#,
    printcolumn = r#"{"name": "Multiplier", "type": "integer", "jsonPath": ".spec.detectMultiplier"}"#
)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct BFDProfileSpec {
    /// Lowest interval, in milliseconds, at which this system can receive control packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::int32", range(min = 10, max = 60000))]
    pub receive_interval: Option<u32>,
    /// Lowest interval, in milliseconds, at which this system wants to send control
    /// packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::int32", range(min = 10, max = 60000))]
    pub transmit_interval: Option<u32>,
    /// The remote transmission interval times this is the detection timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::int32", range(min = 2, max = 255))]
    pub detect_multiplier: Option<u32>,
    /// Lowest echo packet interval, in milliseconds, this system can handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::int32", range(min = 10, max = 60000))]
    pub echo_interval: Option<u32>,
    /// Echo transmission mode (single hop only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_mode: Option<bool>,
    /// Wait for the peer's control packets before sending any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_mode: Option<bool>,
    /// Minimum TTL of incoming control packets (multi-hop only).
    #[serde(
        rename = "minimumTtl",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "schema::int32", range(min = 1, max = 254))]
    pub minimum_ttl: Option<u32>,
}

spec_may_be_absent!(BFDProfileSpec);

/// Empty, as MetalLB's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct BFDProfileStatus {}
