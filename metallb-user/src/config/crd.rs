//! MetalLB's own configuration objects, metallb.io/v1beta1, field for field: existing
//! MetalLB YAML deserializes unchanged. Derived with kube's `CustomResource`, so the
//! Kubernetes mode registers these very types as CRDs.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A set of addresses MetalLB may hand out to `LoadBalancer` services.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    plural = "ipaddresspools",
    namespaced,
    status = "IPAddressPoolStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// CIDRs (`192.168.10.0/24`, `fc00:f853::/120`) or ranges (`192.168.9.1-192.168.9.5`).
    pub addresses: Vec<String>,
    /// When false, only services that ask for this pool or for one of its addresses get
    /// an address from it. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_assign: Option<bool>,
    /// Skip IPv4 addresses ending in .0 and .255.
    #[serde(
        rename = "avoidBuggyIPs",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub avoid_buggy_ips: bool,
    /// Which services the pool serves, and with which priority.
    #[serde(
        rename = "serviceAllocation",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub service_allocation: Option<ServiceAllocation>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Lower wins; unset (0) ranks after every set priority.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_selectors: Vec<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
}

fn is_zero(value: &i32) -> bool {
    *value == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolStatus {
    #[serde(rename = "assignedIPv4", default)]
    pub assigned_ipv4: i64,
    #[serde(rename = "assignedIPv6", default)]
    pub assigned_ipv6: i64,
    #[serde(rename = "availableIPv4", default)]
    pub available_ipv4: i64,
    #[serde(rename = "availableIPv6", default)]
    pub available_ipv6: i64,
}

/// Announce the addresses of some pools with ARP/NDP, from some nodes and interfaces.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    /// Pools by name. With no pool named or selected, every pool is announced.
    #[serde(
        rename = "ipAddressPools",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ip_address_pools: Vec<String>,
    #[serde(
        rename = "ipAddressPoolSelectors",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    /// The nodes that may announce; empty: every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_selectors: Vec<LabelSelector>,
    /// Announce only from these interfaces; empty: every interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Announce only these services of the selected pools; empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_selectors: Vec<LabelSelector>,
    /// Soft preferences in the election of the announcing node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_node_selectors: Vec<PreferredNodeSelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PreferredNodeSelector {
    /// 1-100; weights of matching preferences add up.
    pub weight: i32,
    pub preference: LabelSelector,
}
