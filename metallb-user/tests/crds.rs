//! The CRDs generated from the config types: `metallb crds` prints them, the copy under
//! `deploy/crds/` is current, and they say what MetalLB's own CRDs say.

use std::{collections::BTreeMap, path::Path, process::Command};

use metallb_user::config::crd;
use serde_json::Value;

const COMMITTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/crds/metallb.io.yaml"
);
const METALLB_CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metallb-crds");

fn generated() -> String {
    crd::definitions_yaml().expect("the types generate CRDs")
}

#[test]
fn the_committed_crds_are_what_the_types_generate() {
    let generated = generated();
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::write(COMMITTED, &generated).expect("write deploy/crds/metallb.io.yaml");
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "deploy/crds/metallb.io.yaml differs from what the types in metallb-user/src/config/crd/ \
         generate. Regenerate it with `UPDATE_CRDS=1 cargo test -p metallb-user --test crds` \
         (or `metallb crds > deploy/crds/metallb.io.yaml`) and review the diff."
    );
}

/// Runs the `metallb` binary: (success, stdout, stderr).
fn metallb(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_metallb"))
        .args(args)
        .output()
        .expect("run metallb");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn metallb_crds_prints_them() {
    let (ok, stdout, stderr) = metallb(&["crds"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, generated());
}

/// Differences from MetalLB's CRDs kept on purpose: (CRD, path, why). Each must still
/// be found, so that this list stays true.
const DELIBERATE: &[(&str, &str, &str)] = &[
    (
        "l2advertisements.metallb.io",
        "spec.versions[v1beta1].schema.openAPIV3Schema.properties.spec.properties.preferredNodeSelectors",
        "only here: added to MetalLB after v0.16.1 (main, commit 27e08220c), which this \
         project implements; its schema is MetalLB main's, field for field",
    ),
    (
        "configurationstates.metallb.io",
        "",
        "only in MetalLB's: a status-only kind that MetalLB's controller and speakers write \
         about themselves; not in issue 12's list, not defined here",
    ),
];

/// What is normalised before comparing, since it does not change what the API server
/// accepts: descriptions and titles (documentation), controller-gen's version
/// annotation, YAML layout and key order (both sides are parsed), `1.0` for `1`, and the
/// order of `required` and `enum` lists.
fn normalised(mut crd: Value) -> Value {
    if let Some(metadata) = crd.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("annotations");
    }
    normalise(&mut crd);
    crd
}

fn normalise(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for documentation in ["description", "title"] {
                if map.get(documentation).is_some_and(Value::is_string) {
                    map.remove(documentation);
                }
            }
            for list in ["required", "enum"] {
                if let Some(Value::Array(items)) = map.get_mut(list) {
                    items.sort_by_key(Value::to_string);
                }
            }
            map.values_mut().for_each(normalise);
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        Value::Number(number) => {
            if let Some(float) = number
                .as_f64()
                .filter(|f| number.is_f64() && f.fract() == 0.0)
            {
                *value = Value::from(float as i64);
            }
        }
        _ => {}
    }
}

/// Every difference between `theirs` (MetalLB's) and `ours`, by path. Versions are
/// matched by name; other lists element by element.
fn differences(path: &str, theirs: &Value, ours: &Value, found: &mut Vec<(String, String)>) {
    let child = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (theirs, ours) {
        (Value::Object(theirs), Value::Object(ours)) => {
            let keys: std::collections::BTreeSet<&String> =
                theirs.keys().chain(ours.keys()).collect();
            for key in keys {
                match (theirs.get(key), ours.get(key)) {
                    (Some(t), Some(o)) => differences(&child(key), t, o, found),
                    (Some(t), None) => found.push((child(key), format!("only in MetalLB's: {t}"))),
                    (None, Some(o)) => found.push((child(key), format!("only here: {o}"))),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(theirs), Value::Array(ours)) if path.ends_with("spec.versions") => {
            let by_name = |versions: &[Value]| -> BTreeMap<String, Value> {
                versions
                    .iter()
                    .map(|v| (v["name"].as_str().unwrap_or_default().to_owned(), v.clone()))
                    .collect()
            };
            let (theirs, ours) = (by_name(theirs), by_name(ours));
            for name in theirs
                .keys()
                .chain(ours.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                let at = format!("{path}[{name}]");
                match (theirs.get(name), ours.get(name)) {
                    (Some(t), Some(o)) => differences(&at, t, o, found),
                    (Some(_), None) => found.push((at, "version only in MetalLB's".into())),
                    (None, Some(_)) => found.push((at, "version only here".into())),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(t), Value::Array(o)) if t.len() == o.len() => {
            for (i, (t, o)) in t.iter().zip(o).enumerate() {
                differences(&format!("{path}[{i}]"), t, o, found);
            }
        }
        (t, o) if t != o => found.push((path.to_owned(), format!("MetalLB's {t}, here {o}"))),
        _ => {}
    }
}

fn crds_by_name(documents: impl IntoIterator<Item = Value>) -> BTreeMap<String, Value> {
    documents
        .into_iter()
        .filter(|d| !d.is_null())
        .map(|d| {
            let name = d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (name, normalised(d))
        })
        .collect()
}

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|document| serde::Deserialize::deserialize(document).expect("valid YAML"))
        .collect()
}

fn metallb_crds() -> BTreeMap<String, Value> {
    let mut paths: Vec<_> = std::fs::read_dir(METALLB_CRDS)
        .expect("fixtures")
        .map(|entry| entry.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 9, "MetalLB v0.16.1 has nine CRDs");
    crds_by_name(paths.iter().flat_map(|p: &std::path::PathBuf| {
        yaml_documents(&std::fs::read_to_string(Path::new(p)).expect("read fixture"))
    }))
}

#[test]
fn the_crds_say_what_metallb_crds_say() {
    let theirs = metallb_crds();
    let ours = crds_by_name(
        crd::definitions()
            .expect("generates")
            .into_iter()
            .map(|crd| serde_json::to_value(crd).expect("CRD as JSON")),
    );
    let mut found = Vec::new();
    for name in theirs
        .keys()
        .chain(ours.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (theirs.get(name), ours.get(name)) {
            (Some(t), Some(o)) => {
                let mut here = Vec::new();
                differences("", t, o, &mut here);
                found.extend(
                    here.into_iter()
                        .map(|(path, what)| (name.clone(), path, what)),
                );
            }
            (Some(_), None) => {
                found.push((name.clone(), String::new(), "CRD only in MetalLB's".into()))
            }
            (None, Some(_)) => found.push((name.clone(), String::new(), "CRD only here".into())),
            (None, None) => {}
        }
    }
    let unexpected: Vec<String> = found
        .iter()
        .filter(|(name, path, _)| !DELIBERATE.iter().any(|(n, p, _)| n == name && p == path))
        .map(|(name, path, what)| format!("{name} {path}: {what}"))
        .collect();
    let stale: Vec<String> = DELIBERATE
        .iter()
        .filter(|(n, p, _)| !found.iter().any(|(name, path, _)| name == n && path == p))
        .map(|(n, p, why)| format!("{n} {p} ({why})"))
        .collect();
    assert!(
        unexpected.is_empty() && stale.is_empty(),
        "differences from MetalLB's CRDs (tests/fixtures/metallb-crds) that are not listed \
         as deliberate:\n{}\n\nlisted as deliberate but no longer found:\n{}",
        unexpected.join("\n"),
        stale.join("\n")
    );
}

#[test]
fn the_comparison_sees_a_changed_field() {
    // The comparison itself: a bound, a default, a required field, a printer column and
    // a rule changed in a copy of MetalLB's BFDProfile are all reported.
    let theirs = metallb_crds()["bfdprofiles.metallb.io"].clone();
    let mut ours = theirs.clone();
    let version = &mut ours["spec"]["versions"][0];
    let spec = &mut version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    spec["properties"]["detectMultiplier"]["maximum"] = 254.into();
    spec["properties"]["echoMode"]["default"] = true.into();
    spec["required"] = serde_json::json!(["echoMode"]);
    spec["x-kubernetes-validations"] = serde_json::json!([{"rule": "true"}]);
    version["additionalPrinterColumns"][1]["jsonPath"] = ".spec.echoInterval".into();
    let mut found = Vec::new();
    differences("", &theirs, &ours, &mut found);
    let paths: Vec<&str> = found.iter().map(|(path, _)| path.as_str()).collect();
    let base = "spec.versions[v1beta1]";
    let spec = format!("{base}.schema.openAPIV3Schema.properties.spec");
    assert_eq!(
        paths,
        [
            format!("{base}.additionalPrinterColumns[1].jsonPath"),
            format!("{spec}.properties.detectMultiplier.maximum"),
            format!("{spec}.properties.echoMode.default"),
            format!("{spec}.required"),
            format!("{spec}.x-kubernetes-validations"),
        ]
    );
}

/// MetalLB's documented way to announce every pool: an L2Advertisement with no spec.
#[test]
fn metallb_documented_minimal_l2advertisement_passes_validate_and_plan() {
    let dir = std::env::temp_dir().join(metallb_testkit::lab::unique_name("crds"));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("minimal.yaml");
    std::fs::write(
        &path,
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: first-pool, namespace: metallb-system}\n\
         spec: {addresses: [192.0.2.0/24]}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: example\n  namespace: metallb-system\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n",
    )
    .expect("write");
    let file = path.to_str().expect("utf-8 path");
    let validate = metallb(&["validate", file]);
    let plan = metallb(&[
        "plan",
        "--config",
        file,
        "--node-name",
        "node-1",
        "--interface",
        "lo",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, stdout, stderr) = validate;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.ends_with("is valid: 1 IPAddressPool(s), 1 L2Advertisement(s), 1 Service(s), 0 Node(s), 0 warning(s)\n"), "{stdout}");
    let (ok, stdout, stderr) = plan;
    assert!(ok, "{stdout}{stderr}");
    let web = stdout
        .lines()
        .find(|l| l.starts_with("default/web"))
        .unwrap_or_default();
    assert!(
        web.contains("192.0.2.0") && web.contains("first-pool") && web.contains("answers on lo"),
        "{stdout}"
    );
}
