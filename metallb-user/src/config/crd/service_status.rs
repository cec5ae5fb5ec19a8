//! `ServiceL2Status` and `ServiceBGPStatus`, metallb.io/v1beta1: what the speakers report
//! about the services they announce. Their `spec` is empty.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{schema, spec_may_be_absent};

/// Empty: the speakers report in the status.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ServiceL2Status",
    plural = "servicel2statuses",
    namespaced,
    status = "MetalLBServiceL2Status",
    doc = "The node and interfaces that announce a LoadBalancer service in layer 2 mode.",
    printcolumn = r#"{"name": "Allocated Node", "type": "string", "jsonPath": ".status.node"}"#,
    printcolumn = r#"{"name": "Service Name", "type": "string", "jsonPath": ".status.serviceName"}"#,
    printcolumn = r#"{"name": "Service Namespace", "type": "string", "jsonPath": ".status.serviceNamespace"}"#
)]
#[serde(remote = "Self")]
pub struct ServiceL2StatusSpec {}

spec_may_be_absent!(ServiceL2StatusSpec);

/// The status of a [`ServiceL2Status`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetalLBServiceL2Status {
    /// The node that announces the service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = schema::immutable)]
    pub node: String,
    /// The service this status is about.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = schema::immutable)]
    pub service_name: String,
    /// The namespace of that service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = schema::immutable)]
    pub service_namespace: String,
    /// The interfaces the service is announced on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceInfo>,
}

/// A network interface of a layer 2 announcement.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct InterfaceInfo {
    /// The interface's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Empty: the speakers report in the status.
#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "metallb.io",
    version = "v1beta1",
    kind = "ServiceBGPStatus",
    plural = "servicebgpstatuses",
    namespaced,
    status = "MetalLBServiceBGPStatus",
    doc = "The BGP peers a LoadBalancer service is advertised to, from one node.",
    printcolumn = r#"{"name": "Node", "type": "string", "jsonPath": ".status.node"}"#,
    printcolumn = r#"{"name": "Service Name", "type": "string", "jsonPath": ".status.serviceName"}"#,
    printcolumn = r#"{"name": "Service Namespace", "type": "string", "jsonPath": ".status.serviceNamespace"}"#
)]
#[serde(remote = "Self")]
pub struct ServiceBGPStatusSpec {}

spec_may_be_absent!(ServiceBGPStatusSpec);

/// The status of a [`ServiceBGPStatus`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetalLBServiceBGPStatus {
    /// The node that advertises the service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = schema::immutable)]
    pub node: String,
    /// The service this status is about.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = schema::immutable)]
    pub service_name: String,
    /// The namespace of that service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(transform = schema::immutable)]
    pub service_namespace: String,
    /// The peers the service is configured to be advertised to (whether it is depends
    /// on each session's state).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,
}
