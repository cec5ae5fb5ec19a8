//! MetalLB's own objects, group `metallb.io`, field for field as MetalLB's CRDs define
//! them: existing MetalLB YAML deserializes unchanged, and the CRDs generated from these
//! types ([`definitions`], `metallb crds`) accept what MetalLB's accept.
//!
//! The kinds this version acts on are [`IPAddressPool`] and [`L2Advertisement`]; the
//! status kinds and the BGP kinds are here with their full schema so that a cluster that
//! has MetalLB's objects keeps them, and so that a file holding them is read, not guessed.

mod bgp;
pub mod bgppeer;
mod duration;
mod ipaddresspool;
mod l2advertisement;
mod schema;
mod service_status;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResourceExt, Resource};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use self::{
    bgp::{
        BFDProfile, BFDProfileSpec, BFDProfileStatus, BGPAdvertisement, BGPAdvertisementSpec,
        BGPAdvertisementStatus, Community, CommunityAlias, CommunitySpec, CommunityStatus,
    },
    ipaddresspool::{IPAddressPool, IPAddressPoolSpec, IPAddressPoolStatus, ServiceAllocation},
    l2advertisement::{
        L2Advertisement, L2AdvertisementSpec, L2AdvertisementStatus, PreferredNodeSelector,
    },
    service_status::{
        InterfaceInfo, MetalLBServiceBGPStatus, MetalLBServiceL2Status, ServiceBGPStatus,
        ServiceBGPStatusSpec, ServiceL2Status, ServiceL2StatusSpec,
    },
};

/// The group of every kind here.
pub const GROUP: &str = "metallb.io";

/// For a spec that MetalLB's CRD does not require: a missing `spec`, `spec: null` and
/// `spec: {}` all mean the empty spec, from YAML as from the API server's JSON.
///
/// The spec type derives its (de)serialization with `#[serde(remote = "Self")]`, which
/// makes the derived code inherent functions; the trait impls here read an optional spec
/// through them. serde asks a missing field's type for `deserialize_option`, so a missing
/// `spec` arrives here as `None` too, with no attribute on the root type kube generates.
macro_rules! spec_may_be_absent {
    ($spec:ty) => {
        impl<'de> ::serde::Deserialize<'de> for $spec {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                struct Present($spec);
                impl<'de> ::serde::Deserialize<'de> for Present {
                    fn deserialize<D: ::serde::Deserializer<'de>>(
                        deserializer: D,
                    ) -> Result<Self, D::Error> {
                        <$spec>::deserialize(deserializer).map(Present)
                    }
                }
                let present: Option<Present> = ::serde::Deserialize::deserialize(deserializer)?;
                Ok(present.map(|p| p.0).unwrap_or_default())
            }
        }

        impl ::serde::Serialize for $spec {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                <$spec>::serialize(self, serializer)
            }
        }
    };
}
pub(crate) use spec_may_be_absent;

/// Why the CRDs could not be generated: a mistake in the types, never in input.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("the schema of {kind} does not round-trip through JSON: {source}")]
    Schema {
        kind: String,
        source: serde_json::Error,
    },
    #[error("merging the versions of {kind}: {source}")]
    Merge {
        kind: &'static str,
        source: kube::core::crd::MergeError,
    },
    #[error("writing the CRDs as YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

/// Every CRD of group `metallb.io` this project defines, as `metallb crds` prints them:
/// generated from the types, in the shape of MetalLB's own (see [`definition`]).
pub fn definitions() -> Result<Vec<CustomResourceDefinition>, DefinitionError> {
    Ok(vec![
        definition::<BFDProfile>()?,
        definition::<BGPAdvertisement>()?,
        bgppeer::definition()?,
        definition::<Community>()?,
        definition::<IPAddressPool>()?,
        definition::<L2Advertisement>()?,
        definition::<ServiceBGPStatus>()?,
        definition::<ServiceL2Status>()?,
    ])
}

/// [`definitions`] as one multi-document YAML.
pub fn definitions_yaml() -> Result<String, DefinitionError> {
    let mut text = String::new();
    for crd in definitions()? {
        let mut value = serde_json::to_value(&crd).map_err(|source| DefinitionError::Schema {
            kind: crd.spec.names.kind.clone(),
            source,
        })?;
        whole_numbers_as_integers(&mut value);
        text.push_str("---\n");
        text.push_str(&serde_yaml_ng::to_string(&value)?);
    }
    Ok(text)
}

/// One kind's CRD, from kube's `CustomResourceExt::crd`, in MetalLB's shape:
/// - `spec` is required at the root exactly when the type refuses an object without one
///   (kube-derive marks it required always; MetalLB's CRDs only for `IPAddressPool`);
/// - no `nullable`: our `Option` fields stand for Go's pointers and `omitempty` fields,
///   which MetalLB's CRDs do not declare nullable, so the API server prunes a `null`
///   and applies the default as it does for MetalLB.
pub fn definition<K>() -> Result<CustomResourceDefinition, DefinitionError>
where
    K: CustomResourceExt + Resource<DynamicType = ()> + DeserializeOwned,
{
    let mut crd = K::crd();
    // What the API server would default, and controller-gen writes.
    crd.spec.names.list_kind = Some(format!("{}List", crd.spec.names.kind));
    let bare = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {},
    });
    let spec_required = serde_json::from_value::<K>(bare).is_err();
    let schema_error = |source| DefinitionError::Schema {
        kind: K::kind(&()).into_owned(),
        source,
    };
    for version in &mut crd.spec.versions {
        let Some(props) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        // JSONSchemaProps round-trips through JSON; editing the JSON is simpler than
        // walking its many optional boxes.
        let mut root = serde_json::to_value(&*props).map_err(schema_error)?;
        remove_nullable(&mut root);
        set_spec_required(&mut root, spec_required);
        declare_object_envelope(&mut root);
        *props = serde_json::from_value(root).map_err(schema_error)?;
    }
    Ok(crd)
}

fn remove_nullable(schema: &mut Value) {
    let Some(schema) = schema.as_object_mut() else {
        return;
    };
    schema.remove("nullable");
    for (keyword, child) in schema.iter_mut() {
        match (keyword.as_str(), child) {
            ("properties", Value::Object(properties)) => {
                properties.values_mut().for_each(remove_nullable);
            }
            ("items" | "additionalProperties" | "not", child) => remove_nullable(child),
            ("allOf" | "anyOf" | "oneOf", Value::Array(schemas)) => {
                schemas.iter_mut().for_each(remove_nullable);
            }
            _ => {}
        }
    }
}

/// The root as controller-gen writes it: `apiVersion`, `kind` and `metadata` declared
/// (kube leaves them to the API server: the same validation either way), and no title
/// (schemars names the Rust type there).
fn declare_object_envelope(root: &mut Value) {
    if let Some(root) = root.as_object_mut() {
        root.remove("title");
    }
    if let Some(properties) = root.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("apiVersion".into(), serde_json::json!({ "type": "string" }));
        properties.insert("kind".into(), serde_json::json!({ "type": "string" }));
        properties.insert("metadata".into(), serde_json::json!({ "type": "object" }));
    }
}

/// `minimum: 1` rather than `1.0`: JSONSchemaProps holds bounds as floats.
fn whole_numbers_as_integers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                && float.fract() == 0.0
                && float.abs() < 9.0e15
            {
                *number = serde_json::Number::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

fn set_spec_required(root: &mut Value, required: bool) {
    let Some(root) = root.as_object_mut() else {
        return;
    };
    let mut list: Vec<Value> = root
        .remove("required")
        .and_then(|r| r.as_array().cloned())
        .unwrap_or_default();
    list.retain(|field| field != "spec");
    if required {
        list.push("spec".into());
    }
    if !list.is_empty() {
        root.insert("required".into(), Value::Array(list));
    }
}

#[cfg(test)]
mod tests;
