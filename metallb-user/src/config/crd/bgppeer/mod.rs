//! `BGPPeer`: served as v1beta1 (deprecated) and v1beta2 (stored), as MetalLB serves it.
//! MetalLB converts between the two in a conversion webhook; [`conversion`] is that
//! conversion, as pure functions.

pub mod conversion;
pub mod v1beta1;
pub mod v1beta2;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::crd::merge_crds;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DefinitionError;
pub use super::duration::Duration;

/// Empty, as MetalLB's (both versions).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct BGPPeerStatus {}

/// The CRD with both versions, v1beta2 stored, listed by version name as MetalLB lists
/// them. No `conversion` section, as MetalLB's CRD base: its deployment adds the
/// webhook (see [`conversion`]).
pub fn definition() -> Result<CustomResourceDefinition, DefinitionError> {
    let versions = vec![
        super::definition::<v1beta1::BGPPeer>()?,
        super::definition::<v1beta2::BGPPeer>()?,
    ];
    let mut crd = merge_crds(versions, "v1beta2").map_err(|source| DefinitionError::Merge {
        kind: "BGPPeer",
        source,
    })?;
    crd.spec.versions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(crd)
}
