//! `IPAddressPool`, metallb.io/v1beta1.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::schema;

/// The addresses of a pool, and which services may get them. Required, as in MetalLB's
/// CRD.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    plural = "ipaddresspools",
    namespaced,
    status = "IPAddressPoolStatus",
    doc = "A pool of IP addresses that can be allocated to LoadBalancer services.",
    printcolumn = r#"{"name": "Auto Assign", "type": "boolean", "jsonPath": ".spec.autoAssign"}"#,
    printcolumn = r#"{"name": "Avoid Buggy IPs", "type": "boolean", "jsonPath": ".spec.avoidBuggyIPs"}"#,
    printcolumn = r#"{"name": "Addresses", "type": "string", "jsonPath": ".spec.addresses"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// CIDRs (`192.168.10.0/24`, `fc00:f853::/120`) or ranges (`192.168.9.1-192.168.9.5`).
    pub addresses: Vec<String>,
    /// When false, only services that ask for this pool or for one of its addresses get
    /// an address from it. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = true))]
    pub auto_assign: Option<bool>,
    /// Skip IPv4 addresses ending in .0 and .255.
    #[serde(
        rename = "avoidBuggyIPs",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    #[schemars(extend("default" = false))]
    pub avoid_buggy_ips: bool,
    /// Which services the pool serves, and with which priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

/// Restricts a pool to some namespaces and services, and ranks it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Lower wins; unset (0) ranks after every set priority.
    #[serde(default, skip_serializing_if = "schema::omitempty")]
    #[schemars(schema_with = "schema::integer")]
    pub priority: i64,
    /// Namespaces whose services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Namespaces, by label, whose services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::label_selectors")]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Services, by label, that may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::label_selectors")]
    pub service_selectors: Vec<LabelSelector>,
}

/// How many addresses of the pool are in use and free, by family (written by the
/// controller).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct IPAddressPoolStatus {
    /// Assigned IPv4 addresses.
    #[serde(rename = "assignedIPv4")]
    pub assigned_ipv4: i64,
    /// Assigned IPv6 addresses.
    #[serde(rename = "assignedIPv6")]
    pub assigned_ipv6: i64,
    /// Free IPv4 addresses.
    #[serde(rename = "availableIPv4")]
    pub available_ipv4: i64,
    /// Free IPv6 addresses.
    #[serde(rename = "availableIPv6")]
    pub available_ipv6: i64,
}
