//! `BGPPeer` metallb.io/v1beta2: the stored version.

use k8s_openapi::{
    api::core::v1::SecretReference, apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{super::schema, BGPPeerStatus, Duration};
use crate::config::crd::spec_may_be_absent;

/// The peer, AS numbers, timers and options of the session.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta2",
    kind = "BGPPeer",
    plural = "bgppeers",
    namespaced,
    status = "BGPPeerStatus",
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
    /// AS number expected from the remote end; this or `dynamicASN`.
    #[serde(rename = "peerASN", default, skip_serializing_if = "schema::omitempty")]
    #[schemars(schema_with = "schema::asn")]
    pub peer_asn: u32,
    /// AS number advertised to this peer instead of `myASN` (BGP local-as).
    #[serde(
        rename = "localASN",
        default,
        skip_serializing_if = "schema::omitempty"
    )]
    #[schemars(schema_with = "schema::asn", range(min = 1))]
    pub local_asn: u32,
    /// Learn the peer's AS number: `internal` (must equal `myASN`) or `external`
    /// (must differ); this or `peerASN`.
    #[serde(
        rename = "dynamicASN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dynamic_asn: Option<DynamicASNMode>,
    /// Address to dial; this or `interface`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_address: String,
    /// Node interface for an unnumbered session; this or `peerAddress`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    /// Source address of the session.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_address: String,
    /// Port to dial.
    #[serde(default, skip_serializing_if = "schema::omitempty")]
    #[schemars(
        schema_with = "schema::integer",
        range(min = 1, max = 16384),
        extend("default" = 179)
    )]
    pub peer_port: u16,
    /// Requested BGP hold time (RFC 4271).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<Duration>,
    /// Requested BGP keepalive time (RFC 4271).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_time: Option<Duration>,
    /// Time between connection attempts: whole seconds, 1 to 65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535",
            "message": "connect time should be between 1 seconds to 65535"
        },
        {
            "rule": "duration(self).getMilliseconds() % 1000 == 0",
            "message": "connect time should contain a whole number of seconds"
        }
    ]))]
    pub connect_time: Option<Duration>,
    /// Router ID advertised to the peer.
    #[serde(rename = "routerID", default, skip_serializing_if = "String::is_empty")]
    pub router_id: String,
    /// Connect only from nodes matching one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::label_selectors")]
    pub node_selectors: Vec<LabelSelector>,
    /// TCP MD5 password.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// A `kubernetes.io/basic-auth` Secret holding the password under `password`.
    #[serde(default, skip_serializing_if = "schema::omitempty")]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub password_secret: SecretReference,
    /// The `BFDProfile` of the session's BFD session, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bfd_profile: String,
    /// BGP graceful restart (FRR modes); cannot change after creation.
    #[serde(default, skip_serializing_if = "schema::omitempty")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "EnableGracefulRestart cannot be changed after creation"
    }]))]
    pub enable_graceful_restart: bool,
    /// The peer is several hops away (FRR modes).
    #[serde(default, skip_serializing_if = "schema::omitempty")]
    pub ebgp_multi_hop: bool,
    /// Host VRF of the interface to peer from.
    #[serde(rename = "vrf", default, skip_serializing_if = "String::is_empty")]
    pub vrf_name: String,
    /// Separate IPv4 and IPv6 sessions (deprecated: see `dualStackAddressFamily`).
    #[serde(
        rename = "disableMP",
        default,
        skip_serializing_if = "schema::omitempty"
    )]
    #[schemars(extend("default" = false))]
    pub disable_mp: bool,
    /// Exchange both families' prefixes over this session.
    #[serde(default, skip_serializing_if = "schema::omitempty")]
    #[schemars(extend("default" = false))]
    pub dual_stack_address_family: bool,
}

spec_may_be_absent!(BGPPeerSpec);

/// How `dynamicASN` learns the peer's AS number.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DynamicASNMode {
    /// The peer's AS number must equal `myASN`.
    Internal,
    /// The peer's AS number must differ from `myASN`.
    External,
}
