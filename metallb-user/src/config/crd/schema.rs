//! Schema pieces that schemars cannot derive the way MetalLB's controller-gen writes them,
//! and the Go `omitempty` rule for serializing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::Value;

/// Go's `omitempty` on a scalar: the zero value is left out.
pub(super) fn omitempty<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A `metav1.LabelSelector` as controller-gen writes it: atomic for server-side apply,
/// which k8s-openapi's schema does not say.
pub(super) fn label_selector(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<LabelSelector>();
    schema.insert("x-kubernetes-map-type".into(), "atomic".into());
    if let Some(expressions) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("matchExpressions"))
    {
        atomic_list(expressions);
        if let Some(values) = expressions
            .get_mut("items")
            .and_then(|i| i.get_mut("properties"))
            .and_then(|p| p.get_mut("values"))
        {
            atomic_list(values);
        }
    }
    schema
}

fn atomic_list(list: &mut Value) {
    if let Some(list) = list.as_object_mut() {
        list.insert("x-kubernetes-list-type".into(), "atomic".into());
    }
}

/// `[]metav1.LabelSelector`.
pub(super) fn label_selectors(generator: &mut SchemaGenerator) -> Schema {
    let items = label_selector(generator);
    json_schema!({ "type": "array", "items": items })
}

/// Go `int`: any integer, no format.
pub(super) fn integer(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer" })
}

/// Go `int32` and `uint32` without bounds (controller-gen writes both as int32).
pub(super) fn int32(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int32" })
}

/// An AS number: MetalLB's `uint32` marked `Format=int64`, 0 to 2^32-1.
pub(super) fn asn(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "format": "int64", "minimum": 0, "maximum": 4_294_967_295_u32 })
}

/// MetalLB's `XValidation:rule="self == oldSelf",message="Value is immutable"`.
pub(super) fn immutable(schema: &mut Schema) {
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{ "rule": "self == oldSelf", "message": "Value is immutable" }]),
    );
}
