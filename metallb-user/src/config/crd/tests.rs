use kube::{CustomResourceExt, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;
use crate::config::file;

/// The three ways of writing no spec, as YAML text after `metadata`.
const ABSENT: [(&str, &str); 3] = [
    ("missing", ""),
    ("null", "spec: null\n"),
    ("empty", "spec: {}\n"),
];

fn yaml_object(api_version: &str, kind: &str, spec: &str) -> String {
    format!(
        "apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: x, namespace: metallb-system}}\n{spec}"
    )
}

/// What the API server would send for the object (JSON).
fn json_object(api_version: &str, kind: &str, spec: &str) -> Value {
    let mut object = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "metallb-system", "resourceVersion": "1"},
    });
    match spec {
        "" => {}
        "spec: null\n" => object["spec"] = Value::Null,
        _ => object["spec"] = json!({}),
    }
    object
}

/// `Ok(())` when an object without a spec reads as `K` with the default spec, through
/// serde_json as `kube::Api<K>` reads it; the error text otherwise.
fn read_without_spec<K>(spec: &str) -> Result<(), String>
where
    K: DeserializeOwned + Resource<DynamicType = ()> + kube::core::object::HasSpec,
    K::Spec: Default + PartialEq + std::fmt::Debug,
{
    let object = json_object(&K::api_version(&()), &K::kind(&()), spec);
    let read: K = serde_json::from_value(object).map_err(|e| e.to_string())?;
    assert_eq!(read.spec(), &K::Spec::default(), "{}", K::kind(&()));
    assert_eq!(read.meta().name.as_deref(), Some("x"));
    Ok(())
}

#[test]
fn a_spec_that_metallb_does_not_require_may_be_missing_null_or_empty() {
    for (form, spec) in ABSENT {
        let results = [
            (
                "L2Advertisement",
                read_without_spec::<L2Advertisement>(spec),
            ),
            (
                "ServiceL2Status",
                read_without_spec::<ServiceL2Status>(spec),
            ),
            (
                "ServiceBGPStatus",
                read_without_spec::<ServiceBGPStatus>(spec),
            ),
            (
                "BGPAdvertisement",
                read_without_spec::<BGPAdvertisement>(spec),
            ),
            ("Community", read_without_spec::<Community>(spec)),
            ("BFDProfile", read_without_spec::<BFDProfile>(spec)),
        ];
        for (kind, result) in results {
            assert_eq!(result, Ok(()), "{kind} with spec {form}");
        }
    }
}

#[test]
fn a_required_spec_or_spec_field_is_refused_as_the_api_server_would() {
    // IPAddressPool: spec and spec.addresses are required. BGPPeer: the spec is
    // optional, but once there, myASN is required (and in v1beta1 peerASN and
    // peerAddress too); a missing or null spec is the zero spec, as in Go.
    let cases: [(&str, Result<(), String>, &str); 9] = [
        (
            "IPAddressPool missing",
            read_without_spec::<IPAddressPool>(""),
            "missing field `spec`",
        ),
        (
            "IPAddressPool null",
            read_without_spec::<IPAddressPool>("spec: null\n"),
            "invalid type: null",
        ),
        (
            "IPAddressPool empty",
            read_without_spec::<IPAddressPool>("spec: {}\n"),
            "missing field `addresses`",
        ),
        (
            "BGPPeer v1beta1 missing",
            read_without_spec::<bgppeer::v1beta1::BGPPeer>(""),
            "",
        ),
        (
            "BGPPeer v1beta1 null",
            read_without_spec::<bgppeer::v1beta1::BGPPeer>("spec: null\n"),
            "",
        ),
        (
            "BGPPeer v1beta1 empty",
            read_without_spec::<bgppeer::v1beta1::BGPPeer>("spec: {}\n"),
            "missing field `myASN`",
        ),
        (
            "BGPPeer v1beta2 missing",
            read_without_spec::<bgppeer::v1beta2::BGPPeer>(""),
            "",
        ),
        (
            "BGPPeer v1beta2 null",
            read_without_spec::<bgppeer::v1beta2::BGPPeer>("spec: null\n"),
            "",
        ),
        (
            "BGPPeer v1beta2 empty",
            read_without_spec::<bgppeer::v1beta2::BGPPeer>("spec: {}\n"),
            "missing field `myASN`",
        ),
    ];
    for (case, result, error) in cases {
        match result {
            Ok(()) => assert!(
                error.is_empty(),
                "{case}: read, but should fail with {error}"
            ),
            Err(message) => assert!(
                !error.is_empty() && message.contains(error),
                "{case}: {message:?} should name {error:?}"
            ),
        }
    }
}

#[test]
fn metallb_documented_minimal_l2advertisement_loads_from_a_file() {
    // MetalLB's documentation: announce every pool from every node.
    for (form, spec) in ABSENT {
        let text = format!(
            "{}---\n{}",
            yaml_object(
                "metallb.io/v1beta1",
                "IPAddressPool",
                "spec: {addresses: [192.0.2.0/24]}\n"
            ),
            yaml_object("metallb.io/v1beta1", "L2Advertisement", spec),
        );
        let parsed = file::parse(&text).unwrap_or_else(|e| panic!("spec {form}: {e:?}"));
        assert_eq!(parsed.warnings, [], "spec {form}");
        assert_eq!(parsed.l2_advertisements.len(), 1);
        assert_eq!(
            parsed.l2_advertisements[0].spec,
            L2AdvertisementSpec::default()
        );
        let validation = crate::config::validate(&parsed, &Default::default());
        assert_eq!(validation.errors, [], "spec {form}");
        let config = validation.config.expect("valid");
        let selected: Vec<&str> = config.l2_advertisements[0]
            .pools
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(selected, ["x"], "spec {form}: every pool is announced");
    }
}

#[test]
fn a_file_pool_without_addresses_is_an_error_naming_the_field() {
    for (form, spec, field, message) in [
        ("missing", "", "spec", "missing field `spec`"),
        ("null", "spec: null\n", "spec", "missing field `addresses`"),
        ("empty", "spec: {}\n", "spec", "missing field `addresses`"),
    ] {
        let text = yaml_object("metallb.io/v1beta1", "IPAddressPool", spec);
        let errors = file::parse(&text).expect_err(form);
        assert_eq!(errors.len(), 1, "spec {form}: {errors:?}");
        assert_eq!(errors[0].field, field, "spec {form}: {errors:?}");
        assert!(
            errors[0].message.contains(message),
            "spec {form}: {errors:?}"
        );
    }
}

#[test]
fn ignored_kinds_are_read_and_their_problems_are_warnings() {
    // (apiVersion, kind, spec, expected warnings as "field: message" fragments)
    let status = "ignored: a status object, written by MetalLB, not configuration";
    let cases: Vec<(&str, &str, &str, Vec<String>)> = vec![
        (
            "metallb.io/v1beta1",
            "ServiceL2Status",
            "status: {node: n1}\n",
            vec![format!("kind: {status}")],
        ),
        (
            "metallb.io/v1beta1",
            "ServiceBGPStatus",
            "spec: {}\n",
            vec![format!("kind: {status}")],
        ),
        (
            "metallb.io/v1beta1",
            "ConfigurationState",
            "",
            vec![format!("kind: {status}")],
        ),
    ];
    for (api_version, kind, spec, expected) in cases {
        let text = yaml_object(api_version, kind, spec);
        let parsed = file::parse(&text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        let warnings: Vec<String> = parsed
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.field, w.message))
            .collect();
        assert_eq!(warnings.len(), expected.len(), "{text}: {warnings:#?}");
        for (warning, expected) in warnings.iter().zip(&expected) {
            assert!(
                warning.starts_with(expected.as_str()),
                "{text}: {warning:?} is not {expected:?}"
            );
        }
    }
}

#[test]
fn bgp_kinds_are_read_and_their_problems_are_errors() {
    // (apiVersion, kind, spec, Ok(warnings) or Err(errors), as "field: message" fragments)
    type Expected = Result<Vec<&'static str>, Vec<&'static str>>;
    let cases: Vec<(&str, &str, &str, Expected)> = vec![
        (
            "metallb.io/v1beta2",
            "BGPPeer",
            "spec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.1}\n",
            Ok(vec![]),
        ),
        // No spec: read (validation then finds no myASN).
        ("metallb.io/v1beta1", "BGPPeer", "", Ok(vec![])),
        (
            "metallb.io/v1beta2",
            "BGPPeer",
            "spec: {}\n",
            Err(vec!["spec: missing field `myASN`"]),
        ),
        (
            "metallb.io/v1beta2",
            "BGPPeer",
            "spec: {myASN: -1}\n",
            Err(vec!["spec.myASN: invalid value: integer `-1`"]),
        ),
        (
            "metallb.io/v1beta2",
            "BGPPeer",
            "spec: {myASN: 1, holdTime: '90'}\n",
            Err(vec!["spec.holdTime: time: missing unit in duration \"90\""]),
        ),
        (
            "metallb.io/v1beta2",
            "BGPPeer",
            "spec: {myASN: 1, dynamicASN: both}\n",
            Err(vec!["spec.dynamicASN: unknown variant `both`"]),
        ),
        (
            "metallb.io/v1beta1",
            "BGPAdvertisement",
            "spec: null\n",
            Ok(vec![]),
        ),
        (
            "metallb.io/v1beta1",
            "BGPAdvertisement",
            "spec: {aggregationLenght: 24}\n",
            Ok(vec!["spec.aggregationLenght: unknown field, ignored"]),
        ),
        (
            "metallb.io/v1beta1",
            "BFDProfile",
            "spec: {receiveInterval: 300}\n",
            Ok(vec![]),
        ),
        ("metallb.io/v1beta1", "Community", "", Ok(vec![])),
        (
            "metallb.io/v1beta3",
            "BGPPeer",
            "spec: {}\n",
            Err(vec!["apiVersion/kind: not a kind this configuration reads"]),
        ),
    ];
    for (api_version, kind, spec, expected) in cases {
        let text = yaml_object(api_version, kind, spec);
        let shown = |issues: &[crate::config::Issue]| -> Vec<String> {
            issues
                .iter()
                .map(|w| format!("{}: {}", w.field, w.message))
                .collect()
        };
        let (got, expected) = match (file::parse(&text), expected) {
            (Ok(parsed), Ok(expected)) => (shown(&parsed.warnings), expected),
            (Err(errors), Err(expected)) => (shown(&errors), expected),
            (got, expected) => panic!("{text}: {got:?}, expected {expected:?}"),
        };
        assert_eq!(got.len(), expected.len(), "{text}: {got:#?}");
        for (issue, expected) in got.iter().zip(&expected) {
            assert!(
                issue.starts_with(expected),
                "{text}: {issue:?} is not {expected:?}"
            );
        }
    }
}

#[test]
fn unknown_and_mistyped_fields_inside_an_optional_spec_are_named() {
    let text = yaml_object(
        "metallb.io/v1beta1",
        "L2Advertisement",
        "spec: {interfacez: [eth0]}\n",
    );
    let parsed = file::parse(&text).expect("parses");
    assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
    assert_eq!(parsed.warnings[0].field, "spec.interfacez");
    let text = yaml_object(
        "metallb.io/v1beta1",
        "IPAddressPool",
        "spec: {addresses: [192.0.2.0/24], serviceAllocation: {priorty: 1}}\n",
    );
    let parsed = file::parse(&text).expect("parses");
    assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
    assert_eq!(parsed.warnings[0].field, "spec.serviceAllocation.priorty");
    let text = yaml_object(
        "metallb.io/v1beta1",
        "L2Advertisement",
        "spec: {interfaces: eth0}\n",
    );
    let errors = file::parse(&text).expect_err("a string is not a list");
    assert_eq!(errors[0].field, "spec.interfaces", "{errors:?}");
}

#[test]
fn objects_write_back_as_metallb_writes_them() {
    let adv: L2Advertisement =
        serde_json::from_value(json_object("metallb.io/v1beta1", "L2Advertisement", "")).unwrap();
    let written = serde_json::to_value(&adv).unwrap();
    assert_eq!(written["spec"], json!({}));
    let pool: IPAddressPool = serde_json::from_value(json!({
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p"},
        "spec": {"addresses": ["192.0.2.0/24"], "serviceAllocation": {"priority": 3_000_000_000_i64}},
        "status": {"assignedIPv4": 1, "assignedIPv6": 0, "availableIPv4": 255, "availableIPv6": 0},
    }))
    .unwrap();
    assert_eq!(
        pool.spec.service_allocation.as_ref().map(|a| a.priority),
        Some(3_000_000_000)
    );
    assert_eq!(pool.status.as_ref().map(|s| s.available_ipv4), Some(255));
    assert_eq!(
        serde_json::to_value(&pool).unwrap()["status"],
        json!({"assignedIPv4": 1, "assignedIPv6": 0, "availableIPv4": 255, "availableIPv6": 0})
    );
    // MetalLB's status has all four counts, or is not there.
    let partial = serde_json::from_value::<IPAddressPool>(json!({
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": "p"},
        "spec": {"addresses": []},
        "status": {"assignedIPv4": 1},
    }));
    assert!(partial.is_err());
}

#[test]
fn every_kind_is_defined_once_with_its_schema() {
    let definitions = definitions().expect("generates");
    let names: Vec<&str> = definitions
        .iter()
        .filter_map(|crd| crd.metadata.name.as_deref())
        .collect();
    assert_eq!(
        names,
        [
            "bfdprofiles.metallb.io",
            "bgpadvertisements.metallb.io",
            "bgppeers.metallb.io",
            "communities.metallb.io",
            "ipaddresspools.metallb.io",
            "l2advertisements.metallb.io",
            "servicebgpstatuses.metallb.io",
            "servicel2statuses.metallb.io",
        ]
    );
    let text = serde_json::to_string(&definitions).unwrap();
    assert!(
        !text.contains("nullable"),
        "MetalLB's schemas declare nothing nullable"
    );
    let peer = &definitions[2];
    let versions: Vec<(&str, bool, Option<bool>)> = peer
        .spec
        .versions
        .iter()
        .map(|v| (v.name.as_str(), v.storage, v.deprecated))
        .collect();
    assert_eq!(
        versions,
        [("v1beta1", false, Some(true)), ("v1beta2", true, None)]
    );
    assert_eq!(IPAddressPool::crd_name(), "ipaddresspools.metallb.io");
}

#[test]
fn the_root_requires_spec_only_where_metallb_does() {
    for crd in definitions().expect("generates") {
        for version in &crd.spec.versions {
            let root = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema");
            let required = root.required.clone().unwrap_or_default();
            let expected: &[&str] = if crd.spec.names.kind == "IPAddressPool" {
                &["spec"]
            } else {
                &[]
            };
            assert_eq!(
                required, expected,
                "{} {}",
                crd.spec.names.kind, version.name
            );
        }
    }
}
