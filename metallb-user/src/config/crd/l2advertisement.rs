//! `L2Advertisement`, metallb.io/v1beta1.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{schema, spec_may_be_absent};

/// Which pools to announce, from which nodes and interfaces. May be left out: then every
/// pool is announced, from every node.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    namespaced,
    status = "L2AdvertisementStatus",
    doc = "Announces the LoadBalancer IPs of the selected pools with ARP and NDP.",
    printcolumn = r#"{"name": "IPAddressPools", "type": "string", "jsonPath": ".spec.ipAddressPools"}"#,
    printcolumn = r#"{"name": "IPAddressPool Selectors", "type": "string", "jsonPath": ".spec.ipAddressPoolSelectors"}"#,
    printcolumn = r#"{"name": "Interfaces", "type": "string", "jsonPath": ".spec.interfaces"}"#,
    printcolumn = r#"{"name": "Node Selectors", "type": "string", "priority": 10, "jsonPath": ".spec.nodeSelectors"}"#
)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools by name. With no pool named or selected, every pool is announced.
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
    /// The nodes that may announce; empty: every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::label_selectors")]
    pub node_selectors: Vec<LabelSelector>,
    /// Announce only from these interfaces; empty: every interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Announce only these services of the selected pools; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::label_selectors")]
    pub service_selectors: Vec<LabelSelector>,
    /// Soft preferences in the election of the announcing node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_node_selectors: Vec<PreferredNodeSelector>,
}

spec_may_be_absent!(L2AdvertisementSpec);

/// A weighted preference for the nodes a selector matches.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PreferredNodeSelector {
    /// 1-100; weights of matching preferences add up.
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
    /// The nodes that get the weight; empty: every node.
    #[schemars(schema_with = "schema::label_selector")]
    pub preference: LabelSelector,
}

/// Empty, as MetalLB's: the kind has the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct L2AdvertisementStatus {}
