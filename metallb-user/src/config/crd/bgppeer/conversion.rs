//! BGPPeer conversion between v1beta1 and v1beta2, as MetalLB's conversion webhook does it
//! (`api/v1beta1/bgppeer_conversion.go`, v1beta2 the hub), including its quirks:
//!
//! - a timer absent in v1beta1 becomes `0s` in v1beta2 (MetalLB takes the address of
//!   v1beta1's zero `metav1.Duration`), and an absent v1beta2 timer reads as `0s` in
//!   v1beta1;
//! - timers are re-encoded the Go way (`90s` becomes `1m30s`), and one that Go cannot
//!   read fails the conversion;
//! - v1beta2's fields that v1beta1 lacks (`passwordSecret`, `dynamicASN`, `interface`,
//!   `vrf`, `connectTime`, ...) are dropped when converting down.
//!
//! [`review`] answers a `ConversionReview` request: what a controller serves on the
//! webhook's `/convert` path.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::core::{
    Status,
    conversion::{ConversionRequest, ConversionResponse},
};
use serde_json::Value;

use super::{v1beta1, v1beta2};

impl From<v1beta1::BGPPeer> for v1beta2::BGPPeer {
    fn from(peer: v1beta1::BGPPeer) -> Self {
        let spec = peer.spec;
        Self {
            metadata: peer.metadata,
            spec: v1beta2::BGPPeerSpec {
                my_asn: spec.my_asn,
                peer_asn: spec.peer_asn,
                peer_address: spec.peer_address,
                source_address: spec.source_address,
                peer_port: spec.peer_port,
                hold_time: Some(spec.hold_time.unwrap_or_default()),
                keepalive_time: Some(spec.keepalive_time.unwrap_or_default()),
                router_id: spec.router_id,
                password: spec.password,
                bfd_profile: spec.bfd_profile,
                ebgp_multi_hop: spec.ebgp_multi_hop,
                node_selectors: spec
                    .node_selectors
                    .into_iter()
                    .map(label_selector)
                    .collect(),
                ..Default::default()
            },
            status: peer.status,
        }
    }
}

impl From<v1beta2::BGPPeer> for v1beta1::BGPPeer {
    fn from(peer: v1beta2::BGPPeer) -> Self {
        let spec = peer.spec;
        Self {
            metadata: peer.metadata,
            spec: v1beta1::BGPPeerSpec {
                my_asn: spec.my_asn,
                peer_asn: spec.peer_asn,
                peer_address: spec.peer_address,
                source_address: spec.source_address,
                peer_port: spec.peer_port,
                hold_time: Some(spec.hold_time.unwrap_or_default()),
                keepalive_time: Some(spec.keepalive_time.unwrap_or_default()),
                router_id: spec.router_id,
                password: spec.password,
                bfd_profile: spec.bfd_profile,
                ebgp_multi_hop: spec.ebgp_multi_hop,
                node_selectors: spec.node_selectors.into_iter().map(node_selector).collect(),
            },
            status: peer.status,
        }
    }
}

/// MetalLB's `parseNodeSelector`: an empty selector stays empty; empty parts are left out.
fn label_selector(selector: v1beta1::NodeSelector) -> LabelSelector {
    let expressions: Vec<LabelSelectorRequirement> = selector
        .match_expressions
        .into_iter()
        .map(|e| LabelSelectorRequirement {
            key: e.key,
            operator: e.operator,
            values: (!e.values.is_empty()).then_some(e.values),
        })
        .collect();
    LabelSelector {
        match_labels: (!selector.match_labels.is_empty()).then_some(selector.match_labels),
        match_expressions: (!expressions.is_empty()).then_some(expressions),
    }
}

/// MetalLB's `labelsToLegacySelector`: v1beta1's `values` is always written, even empty.
fn node_selector(selector: LabelSelector) -> v1beta1::NodeSelector {
    v1beta1::NodeSelector {
        match_labels: selector.match_labels.unwrap_or_default(),
        match_expressions: selector
            .match_expressions
            .unwrap_or_default()
            .into_iter()
            .map(|e| v1beta1::MatchExpression {
                key: e.key,
                operator: e.operator,
                values: e.values.unwrap_or_default(),
            })
            .collect(),
    }
}

/// Why an object could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConversionError {
    #[error(
        "cannot convert to {0:?}: BGPPeer is served as metallb.io/v1beta1 and metallb.io/v1beta2"
    )]
    UnknownTarget(String),
    #[error("{kind:?} {api_version:?} is not a metallb.io BGPPeer version this webhook converts")]
    UnknownSource { api_version: String, kind: String },
    #[error("BGPPeer {name}: {source}")]
    Invalid {
        name: String,
        source: serde_json::Error,
    },
}

const V1BETA1: &str = "metallb.io/v1beta1";
const V1BETA2: &str = "metallb.io/v1beta2";

/// Converts one object (JSON, as in a `ConversionReview`) to `desired_api_version`. An
/// object already in that version is returned unchanged.
pub fn convert(object: &Value, desired_api_version: &str) -> Result<Value, ConversionError> {
    let text = |key: &str| object.get(key).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if desired_api_version != V1BETA1 && desired_api_version != V1BETA2 {
        return Err(ConversionError::UnknownTarget(desired_api_version.into()));
    }
    if kind != "BGPPeer" || (api_version != V1BETA1 && api_version != V1BETA2) {
        return Err(ConversionError::UnknownSource {
            api_version: api_version.into(),
            kind: kind.into(),
        });
    }
    if api_version == desired_api_version {
        return Ok(object.clone());
    }
    let invalid = |source| ConversionError::Invalid {
        name: object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("unnamed")
            .into(),
        source,
    };
    let converted = if api_version == V1BETA1 {
        let peer: v1beta1::BGPPeer = serde_json::from_value(object.clone()).map_err(invalid)?;
        serde_json::to_value(v1beta2::BGPPeer::from(peer))
    } else {
        let peer: v1beta2::BGPPeer = serde_json::from_value(object.clone()).map_err(invalid)?;
        serde_json::to_value(v1beta1::BGPPeer::from(peer))
    };
    converted.map_err(invalid)
}

/// Answers a `ConversionReview` request: every object converted, in order, or a failure
/// naming the first object that could not be.
pub fn review(request: ConversionRequest) -> ConversionResponse {
    let converted: Result<Vec<Value>, String> = request
        .objects
        .iter()
        .enumerate()
        .map(|(index, object)| {
            convert(object, &request.desired_api_version)
                .map_err(|error| format!("object {index}: {error}"))
        })
        .collect();
    let response = ConversionResponse::for_request(request);
    match converted {
        Ok(objects) => response.success(objects),
        Err(message) => response.failure(Status::failure(&message, "Invalid")),
    }
}

#[cfg(test)]
mod tests;
