//! Property test of parsing and validation: valid configurations (the examples and
//! one built here) mutated at random (fields deleted, values of another type, random
//! strings and numbers, malformed CIDRs and ranges, objects written twice, random
//! annotations on Services, text cut or spliced) go through `parse`, `validate` and the
//! allocator without a panic, and every error names its object and its field.

use std::panic::{AssertUnwindSafe, catch_unwind};

use rand::{RngExt as _, rngs::StdRng};
use serde::Deserialize as _;
use serde_yaml_ng::{Mapping, Value};

use super::{Issue, file::parse, validate::ValidateOptions, validate::validate};
use crate::{
    allocator::{AllocatorOptions, allocate},
    property::{case_rng, pick, settings},
};

/// Everything the examples do not show: selectors, serviceAllocation, an exclusion
/// ConfigMap, namespaces, nodes, a List, sharing annotations.
const BUILT: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: a}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {zone: east}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: shared, namespace: metallb-system, labels: {zone: east}}
spec:
  addresses: [10.1.0.0/30, 10.1.0.254-10.1.1.1, "2001:db8:1::/126"]
  autoAssign: true
  avoidBuggyIPs: true
  serviceAllocation:
    priority: 10
    namespaces: [team-a]
    namespaceSelectors: [{matchLabels: {team: a}}]
    serviceSelectors: [{matchExpressions: [{key: app, operator: In, values: [web]}]}]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: east, namespace: metallb-system}
spec:
  ipAddressPoolSelectors: [{matchLabels: {zone: east}}]
  nodeSelectors: [{matchLabels: {zone: east}}]
  interfaces: [eth0]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: metallb-excludel2, namespace: metallb-system}
data:
  excludel2.yaml: |
    announcedInterfacesToExclude: ['^veth.*']
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: web
    namespace: team-a
    labels: {app: web}
    annotations: {metallb.io/allow-shared-ip: k, metallb.io/loadBalancerIPs: "10.1.0.1,2001:db8:1::1"}
  spec:
    type: LoadBalancer
    ipFamilyPolicy: RequireDualStack
    ipFamilies: [IPv4, IPv6]
    externalTrafficPolicy: Local
    selector: {app: web}
    ports: [{port: 80, protocol: TCP}]
  status: {loadBalancer: {ingress: [{ip: 10.1.0.1}]}}
- apiVersion: v1
  kind: Service
  metadata:
    name: dns
    namespace: team-a
    labels: {app: web}
    annotations: {metallb.io/allow-shared-ip: k, metallb.io/address-pool: shared}
  spec: {type: LoadBalancer, loadBalancerIP: 10.1.0.1, ports: [{port: 53, protocol: UDP}]}
"#;

const STRINGS: &[&str] = &[
    "192.0.2.0/24",
    "192.0.2.0/33",
    "192.0.2.300/24",
    "192.0.2.9-192.0.2.1",
    "192.0.2.1-192.0.2.1",
    "0.0.0.0/0",
    "::/0",
    "2001:db8::/129",
    "2001:db8::/64",
    "2001:db8::5-2001:db8::1",
    "2001:db8::-2001:db9::",
    "192.0.2.1-2001:db8::1",
    "fe80::/10",
    "ff02::1/128",
    "::ffff:192.0.2.1/128",
    "255.255.255.255/32",
    "10.0.0.0/24/8",
    "10.0.0.0/ 24",
    " 10.0.0.0/24",
    "1.2.3.4 - 1.2.3.5",
    "-",
    "/",
    "a-b",
    "192.0.2.101,2001:db8::101",
    "192.0.2.101,192.0.2.102",
    "192.0.2.101,2001:db8::101,192.0.2.102",
    "demo-pool",
    "metallb-system",
    "default",
    "LoadBalancer",
    "ClusterIP",
    "Local",
    "Cluster",
    "IPv4",
    "IPv6",
    "PreferDualStack",
    "RequireDualStack",
    "SingleStack",
    "TCP",
    "UDP",
    "SCTP",
    "In",
    "NotIn",
    "Exists",
    "Gt",
    "^veth[",
    "",
    " ",
    "-a-",
    "A_B",
    "x/y/z",
    "日本",
    "\u{0}\u{7f}\u{202e}",
    "metallb.io/address-pool",
];

const KEYS: &[&str] = &[
    "name",
    "namespace",
    "addresses",
    "autoAssign",
    "avoidBuggyIPs",
    "serviceAllocation",
    "priority",
    "matchLabels",
    "matchExpressions",
    "key",
    "operator",
    "values",
    "port",
    "protocol",
    "ip",
    "type",
    "ipFamilies",
    "ipFamilyPolicy",
    "ipAddressPools",
    "<<",
];

const ANNOTATIONS: &[&str] = &[
    "metallb.io/address-pool",
    "metallb.io/loadBalancerIPs",
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/address-pool",
    "metallb.universe.tf/loadBalancerIPs",
    "metallb.universe.tf/allow-shared-ip",
    "metallb.io/ip-allocated-from-pool",
    "bad key",
    "-x.io/y",
];

fn random_string(rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 => "x".repeat(rng.random_range(60..400)),
        1 => (0..rng.random_range(0..12))
            .map(|_| char::from(rng.random_range(0x20..0x7f_u8)))
            .collect(),
        2 => (0..rng.random_range(1..6))
            .filter_map(|_| char::from_u32(rng.random_range(0..0x3000)))
            .collect(),
        _ => (*pick(rng, STRINGS)).to_owned(),
    }
}

fn random_scalar(rng: &mut StdRng) -> Value {
    match rng.random_range(0..8) {
        0 => Value::Null,
        1 => Value::Bool(rng.random_bool(0.5)),
        2 => Value::from(*pick(
            rng,
            &[0, -1, 1, 80, 65535, 65536, i64::MAX, i64::MIN],
        )),
        3 => Value::from(*pick(rng, &[0.5, -0.0, 1e300, f64::NAN, f64::INFINITY])),
        4 => Value::from(u64::MAX),
        _ => Value::String(random_string(rng)),
    }
}

fn random_value(rng: &mut StdRng, depth: usize) -> Value {
    match rng.random_range(0..6) {
        0 if depth < 2 => Value::Sequence(
            (0..rng.random_range(0..3))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        1 if depth < 2 => {
            let mut map = Mapping::new();
            for _ in 0..rng.random_range(0..3) {
                map.insert(Value::from(*pick(rng, KEYS)), random_value(rng, depth + 1));
            }
            Value::Mapping(map)
        }
        _ => random_scalar(rng),
    }
}

/// One step from a node to a child.
#[derive(Clone)]
enum Step {
    Key(Value),
    Index(usize),
}

fn paths(value: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                here.push(Step::Key(key.clone()));
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push(Step::Index(i));
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |node, step| match step {
        Step::Key(key) => node.as_mapping_mut()?.get_mut(key),
        Step::Index(i) => node.as_sequence_mut()?.get_mut(*i),
    })
}

/// One random change somewhere in `document`.
fn mutate_node(rng: &mut StdRng, document: &mut Value) {
    let mut all = Vec::new();
    paths(document, &mut Vec::new(), &mut all);
    let path = pick(rng, &all).clone();
    match (rng.random_range(0..5), path.split_last()) {
        (0, Some((last, parent))) => match (at(document, parent), last) {
            (Some(Value::Mapping(map)), Step::Key(key)) => {
                map.remove(key);
            }
            (Some(Value::Sequence(items)), Step::Index(i)) => {
                items.remove(*i);
            }
            _ => {}
        },
        (1, _) => match at(document, &path) {
            Some(Value::Mapping(map)) => {
                map.insert(Value::from(*pick(rng, KEYS)), random_value(rng, 1));
            }
            Some(Value::Sequence(items)) => {
                let item = match items.first() {
                    Some(first) if rng.random_bool(0.5) => first.clone(),
                    _ => random_value(rng, 1),
                };
                items.push(item);
            }
            Some(node) => *node = random_scalar(rng),
            None => {}
        },
        _ if !path.is_empty() => {
            if let Some(node) = at(document, &path) {
                *node = random_value(rng, 0);
            }
        }
        _ => {}
    }
}

/// A random annotation on a Service of `documents`, if there is one.
fn annotate(rng: &mut StdRng, documents: &mut [Value]) {
    let services: Vec<usize> = (0..documents.len())
        .filter(|&i| documents[i].get("kind").and_then(Value::as_str) == Some("Service"))
        .collect();
    if services.is_empty() {
        return;
    }
    let service = &mut documents[*pick(rng, &services)];
    let Some(metadata) = service.get_mut("metadata").and_then(Value::as_mapping_mut) else {
        return;
    };
    let annotations = metadata
        .entry(Value::from("annotations"))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if let Value::Mapping(annotations) = annotations {
        annotations.insert(
            Value::from(*pick(rng, ANNOTATIONS)),
            Value::String(random_string(rng)),
        );
    }
}

/// A random address entry in place of one of a pool of `documents`.
fn readdress(rng: &mut StdRng, documents: &mut [Value]) {
    let document = rng.random_range(0..documents.len());
    if let Some(Value::Sequence(addresses)) = documents[document]
        .get_mut("spec")
        .and_then(|spec| spec.get_mut("addresses"))
    {
        let entry = Value::String(random_string(rng));
        match addresses.len() {
            0 => addresses.push(entry),
            n => addresses[rng.random_range(0..n)] = entry,
        }
    }
}

/// Text cut, or with a YAML token spliced in.
fn mangle(rng: &mut StdRng, text: &mut String) {
    let mut cut = rng.random_range(0..=text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    if rng.random_bool(0.3) {
        text.truncate(cut);
    } else {
        let token = *pick(
            rng,
            &[
                ":", "{", "]", "- ", "&a ", "*a", "<<: *a\n", "\t", "---\n", "'", "\"", "? ",
            ],
        );
        text.insert_str(cut, token);
    }
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).expect("a valid base"))
        .filter(|value| !value.is_null())
        .collect()
}

fn mutated(rng: &mut StdRng, bases: &[Vec<Value>]) -> String {
    let mut documents = pick(rng, bases).clone();
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..8) {
            0 => {
                let copy = pick(rng, &documents).clone();
                documents.push(copy);
            }
            1 => annotate(rng, &mut documents),
            2 => readdress(rng, &mut documents),
            _ => {
                let i = rng.random_range(0..documents.len());
                mutate_node(rng, &mut documents[i]);
            }
        }
    }
    let mut text = documents
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n");
    if rng.random_bool(0.1) {
        mangle(rng, &mut text);
    }
    text
}

/// The kinds validation names its objects by.
const KINDS: &[&str] = &[
    "IPAddressPool",
    "L2Advertisement",
    "Service",
    "Node",
    "Namespace",
    "EndpointSlice",
    "ConfigMap",
    "BGPPeer",
    "BGPAdvertisement",
    "BFDProfile",
    "Community",
];

/// Why `issue`, an error of `stage`, does not name its object and field.
fn unnamed(stage: &str, issue: &Issue) -> Option<&'static str> {
    if issue.object.trim().is_empty() {
        return Some("no object");
    }
    if stage == "parse" {
        // Whole documents: text that is not YAML, a bad merge key, too many errors.
        let whole = ["not valid YAML", "merge key", "more type errors"];
        if issue.field.is_empty() && !whole.iter().any(|w| issue.message.starts_with(w)) {
            return Some("no field");
        }
        if !issue.object.starts_with("document ") {
            return Some("no document");
        }
        return None;
    }
    let kind = KINDS
        .iter()
        .any(|kind| issue.object.starts_with(&format!("{kind} ")));
    if !kind {
        return Some("no kind");
    }
    if issue.field.is_empty() {
        return Some("no field");
    }
    None
}

/// Parses, validates and allocates `text`: whether it was refused; or the errors that
/// do not name their object and field, or the panic.
fn check(text: &str) -> Result<bool, String> {
    let run = catch_unwind(AssertUnwindSafe(|| {
        let mut wrong = Vec::new();
        let mut refused = true;
        match parse(text) {
            Err(errors) => {
                wrong.extend(
                    errors
                        .iter()
                        .filter_map(|e| unnamed("parse", e).map(|w| (w, e.clone()))),
                );
            }
            Ok(file) => {
                let validation = validate(&file, &ValidateOptions::default());
                wrong.extend(
                    validation
                        .errors
                        .iter()
                        .filter_map(|e| unnamed("validate", e).map(|w| (w, e.clone()))),
                );
                if let Some(config) = validation.config {
                    refused = false;
                    allocate(&config, &AllocatorOptions::default());
                }
            }
        }
        (refused, wrong)
    }));
    match run {
        Ok((refused, wrong)) if wrong.is_empty() => Ok(refused),
        Ok((_, wrong)) => Err(format!("errors not naming object and field: {wrong:#?}")),
        Err(panic) => Err(format!(
            "panicked: {:?}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or(panic.downcast_ref::<&str>().copied())
        )),
    }
}

#[test]
fn mutated_configurations_never_panic_and_every_error_is_named() {
    let texts = [
        include_str!("../../../examples/standalone.yaml"),
        include_str!("../../../examples/bgp.yaml"),
        BUILT,
    ];
    for text in texts {
        assert_eq!(check(text), Ok(false), "a base is valid:\n{text}");
    }
    let bases: Vec<Vec<Value>> = texts.iter().map(|text| documents(text)).collect();
    let (seed, cases) = settings("configuration_properties", 2000);
    let (mut rejected, mut failures) = (0, Vec::new());
    for case in 0..cases {
        let mut rng = case_rng(seed, case);
        let text = mutated(&mut rng, &bases);
        match check(&text) {
            Ok(refused) => rejected += usize::from(refused),
            Err(why) => failures.push(format!("PROPERTY_SEED={seed} case {case}: {why}\n{text}")),
        }
    }
    println!("{rejected} of {cases} mutated files refused");
    if std::env::var("PROPERTY_ALL").is_ok() {
        for failure in &failures {
            println!("FAILURE {failure}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, first:\n{}",
        failures.len(),
        failures[0]
    );
}

#[test]
fn a_missing_top_level_field_is_named_as_the_field() {
    // Found by the property: `missing field` at the top of an object, and a top-level
    // key that is a map, came with no field.
    let text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nspec: {addresses: [192.0.2.0/24]}\n---\n\
                apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\n";
    let text =
        format!("{text}---\napiVersion: v1\nkind: Namespace\n? {{metadata: {{name: a}}}}\n: x\n");
    let errors = parse(&text).expect_err("no metadata, no spec, a key that is a map");
    let named: Vec<(&str, &str, &str)> = errors
        .iter()
        .map(|e| (e.object.as_str(), e.field.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        named,
        [
            (
                "document 1 (IPAddressPool)",
                "metadata",
                "missing field `metadata` at line 1 column 1"
            ),
            (
                "document 2 (IPAddressPool a)",
                "spec",
                "missing field `spec` at line 5 column 1"
            ),
            (
                "document 3 (Namespace)",
                "key metadata: name: a",
                "invalid type: map, expected field identifier at line 9 column 1"
            ),
        ]
    );
}
