//! Renders a kustomization with `kubectl kustomize`, as `kubectl apply -k` would apply
//! it, into one JSON value per object.

use std::{path::Path, process::Command};

use serde::Deserialize as _;
use serde_json::Value;

/// The objects of the kustomization in `dir`, in kubectl's order. Panics, saying what to
/// do, when kubectl is missing or the kustomization does not render.
pub fn render(dir: &Path) -> Vec<Value> {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "kubectl is not installed: run `cargo xtask setup` (it installs Debian's \
             kubernetes-client), which CI runs too"
        ),
        Err(error) => panic!("running kubectl kustomize {}: {error}", dir.display()),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("kubectl prints UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("kubectl prints YAML"))
        .filter(|object| !object.is_null())
        .collect()
}
