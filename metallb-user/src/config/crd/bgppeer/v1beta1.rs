//! `BGPPeer` metallb.io/v1beta1: deprecated, served, not stored.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{super::schema, BGPPeerStatus, Duration};
use crate::config::crd::spec_may_be_absent;

/// The peer, AS numbers, timers and options of the session (the old form: see v1beta2).
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "BGPPeer",
    plural = "bgppeers",
    namespaced,
    status = "BGPPeerStatus",
    storage = false,
    deprecated = "v1beta1 is deprecated, please use v1beta2",
    doc = "A BGP session to open from the speakers.",
    printcolumn = r#"{"name": "Address", "type": "string", "jsonPath": ".spec.peerAddress"}"#,
    printcolumn = r#"{"name": "ASN", "type": "string", "jsonPath": ".spec.peerASN"}"#,
    printcolumn = r#"{"name": "BFD Profile", "type": "string", "jsonPath": ".spec.bfdProfile"}"#,
    printcolumn = r#"{"name": "Multi Hops", "type": "string", "jsonPath": ".spec.ebgpMultiHop"}"#
)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct BGPPeerSpec {
    /// AS number of the local end.
    #[serde(rename = "myASN")]
    #[schemars(schema_with = "schema::asn")]
    pub my_asn: u32,
    /// AS number expected from the remote end.
    #[serde(rename = "peerASN")]
    #[schemars(schema_with = "schema::asn")]
    pub peer_asn: u32,
    /// Address to dial.
    pub peer_address: String,
    /// Source address of the session.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_address: String,
    /// Port to dial.
    #[serde(default, skip_serializing_if = "schema::omitempty")]
    #[schemars(schema_with = "schema::integer", range(min = 0, max = 16384))]
    pub peer_port: u16,
    /// Requested BGP hold time (RFC 4271).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<Duration>,
    /// Requested BGP keepalive time (RFC 4271).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<Duration>,
    /// Router ID advertised to the peer.
    #[serde(rename = "routerID", default, skip_serializing_if = "String::is_empty")]
    pub router_id: String,
    /// Connect only from nodes matching one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<NodeSelector>,
    /// TCP MD5 password.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// The `BFDProfile` of the session's BFD session, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bfd_profile: String,
    /// The peer is several hops away.
    #[serde(default, skip_serializing_if = "schema::omitempty")]
    pub ebgp_multi_hop: bool,
}

spec_may_be_absent!(BGPPeerSpec);

/// v1beta1's own node selector (v1beta2 uses `metav1.LabelSelector`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    /// Labels a node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements a node's labels must meet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<MatchExpression>,
}

/// A requirement on a label of v1beta1's [`NodeSelector`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct MatchExpression {
    /// The label.
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    /// The values (at least one).
    #[schemars(length(min = 1))]
    pub values: Vec<String>,
}
