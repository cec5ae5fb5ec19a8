//! A standalone configuration file: a multi-document YAML of the objects a user would
//! `kubectl apply` (MetalLB's IPAddressPool and L2Advertisement, core/v1 Service, Node,
//! Namespace), parsed into typed objects with every problem named.

use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use serde::de::DeserializeOwned;

use super::{
    Issue,
    crd::{IPAddressPool, L2Advertisement},
};

/// Every object of a configuration file, by kind, in file order.
#[derive(Clone, Debug, Default)]
pub struct ConfigFile {
    pub pools: Vec<IPAddressPool>,
    pub l2_advertisements: Vec<L2Advertisement>,
    pub services: Vec<Service>,
    pub nodes: Vec<Node>,
    pub namespaces: Vec<Namespace>,
    /// Objects kept but not used, unknown fields: reported, never fatal.
    pub warnings: Vec<Issue>,
}

/// MetalLB kinds that configure its BGP mode, which this version does not implement.
const BGP_KINDS: [&str; 6] = [
    "BGPPeer",
    "BGPAdvertisement",
    "BFDProfile",
    "Community",
    "ServiceBGPStatus",
    "ConfigurationState",
];

/// Parses `text`; on failure, every problem found, not just the first.
pub fn parse(text: &str) -> Result<ConfigFile, Vec<Issue>> {
    let mut file = ConfigFile::default();
    let mut errors = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let place = format!("document {}", index + 1);
        match <serde_yaml_ng::Value as serde::Deserialize>::deserialize(document) {
            Ok(serde_yaml_ng::Value::Null) => {}
            Ok(value) => add_object(&mut file, &mut errors, &place, value),
            Err(error) => {
                errors.push(Issue::new(
                    &place,
                    "",
                    "",
                    format!("not valid YAML: {error}"),
                ));
                // The parser cannot resynchronise: later documents are not read.
                break;
            }
        }
    }
    if errors.is_empty() {
        Ok(file)
    } else {
        Err(errors)
    }
}

fn text_field<'a>(value: &'a serde_yaml_ng::Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_str()
}

fn add_object(
    file: &mut ConfigFile,
    errors: &mut Vec<Issue>,
    place: &str,
    value: serde_yaml_ng::Value,
) {
    let api_version = text_field(&value, &["apiVersion"])
        .unwrap_or_default()
        .to_owned();
    let kind = text_field(&value, &["kind"]).unwrap_or_default().to_owned();
    let name = text_field(&value, &["metadata", "name"])
        .unwrap_or_default()
        .to_owned();
    let object = if name.is_empty() {
        format!("{place} ({kind})")
    } else {
        format!("{place} ({kind} {name})")
    };
    let group = api_version.split_once('/').map_or("", |(group, _)| group);
    match (api_version.as_str(), kind.as_str()) {
        ("", _) => errors.push(Issue::new(&object, "apiVersion", "", "missing apiVersion")),
        (_, "") => errors.push(Issue::new(&object, "kind", "", "missing kind")),
        ("metallb.io/v1beta1", "IPAddressPool") => typed(value, &object, errors, &mut file.warnings, &mut file.pools),
        ("metallb.io/v1beta1", "L2Advertisement") => {
            typed(value, &object, errors, &mut file.warnings, &mut file.l2_advertisements)
        }
        ("v1", "Service") => typed(value, &object, errors, &mut file.warnings, &mut file.services),
        ("v1", "Node") => typed(value, &object, errors, &mut file.warnings, &mut file.nodes),
        ("v1", "Namespace") => typed(value, &object, errors, &mut file.warnings, &mut file.namespaces),
        ("v1", "List") => match value.get("items").and_then(|items| items.as_sequence()) {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    add_object(file, errors, &format!("{object} items[{i}]"), item.clone());
                }
            }
            None => errors.push(Issue::new(&object, "items", "", "a List needs a sequence of items")),
        },
        ("v1", "ConfigMap") => file.warnings.push(Issue::new(
            &object,
            "kind",
            &kind,
            "ignored: the legacy ConfigMap configuration is not read; use IPAddressPool and L2Advertisement",
        )),
        (_, kind) if group == "metallb.io" && BGP_KINDS.contains(&kind) => file.warnings.push(Issue::new(
            &object,
            "kind",
            kind,
            "ignored: BGP mode is not implemented yet",
        )),
        _ => errors.push(Issue::new(
            &object,
            "apiVersion/kind",
            &format!("{api_version} {kind}"),
            "not a kind this configuration reads (metallb.io/v1beta1 IPAddressPool, L2Advertisement; v1 Service, Node, Namespace, List)",
        )),
    }
}

/// Deserializes one object, naming the field of a type error and warning about fields
/// that the kind does not have (a typo would otherwise be silently ignored).
fn typed<T: DeserializeOwned>(
    value: serde_yaml_ng::Value,
    object: &str,
    errors: &mut Vec<Issue>,
    warnings: &mut Vec<Issue>,
    into: &mut Vec<T>,
) {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let result: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut on_unknown));
    match result {
        Ok(typed) => into.push(typed),
        Err(error) => {
            let field = error.path().to_string();
            errors.push(Issue::new(
                object,
                &field,
                "",
                error.into_inner().to_string(),
            ));
        }
    }
    // kube's custom resources take apiVersion and kind as read already; anything else
    // unknown is a typo or a field of a newer version.
    for field in unknown
        .into_iter()
        .filter(|f| f != "apiVersion" && f != "kind")
    {
        warnings.push(Issue::new(object, &field, "", "unknown field, ignored"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_metallb_examples_parse_unchanged() {
        // From MetalLB's documentation (configuration, usage, advanced L2 pages).
        let text = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: metallb-system
spec:
  addresses:
  - 192.168.10.0/24
  - 192.168.9.1-192.168.9.5
  - fc00:f853:0ccd:e799::/124
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: expensive
  namespace: metallb-system
spec:
  addresses:
  - 42.176.25.64/30
  autoAssign: false
  avoidBuggyIPs: true
  serviceAllocation:
    priority: 50
    namespaces:
      - namespace-a
      - namespace-b
    namespaceSelectors:
      - matchLabels:
          foo: bar
    serviceSelectors:
      - matchExpressions:
          - {key: app, operator: In, values: [bar]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: metallb-system
spec:
  ipAddressPools:
  - first-pool
  ipAddressPoolSelectors:
  - matchLabels:
      zone: east
  nodeSelectors:
  - matchLabels:
      kubernetes.io/hostname: NodeA
  interfaces:
  - eth0
  - eth1
---
apiVersion: v1
kind: Service
metadata:
  name: nginx
  annotations:
    metallb.io/address-pool: first-pool
    metallb.io/loadBalancerIPs: 192.168.10.100
spec:
  ports:
  - port: 80
    targetPort: 80
  selector:
    app: nginx
  type: LoadBalancer
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: external
  namespace: metallb-system
"#;
        let file = parse(text).expect("parses");
        assert_eq!(file.pools.len(), 2);
        assert_eq!(file.pools[0].spec.addresses.len(), 3);
        let expensive = &file.pools[1].spec;
        assert_eq!(expensive.auto_assign, Some(false));
        assert!(expensive.avoid_buggy_ips);
        let allocation = expensive
            .service_allocation
            .as_ref()
            .expect("serviceAllocation");
        assert_eq!(allocation.priority, 50);
        assert_eq!(allocation.namespaces, ["namespace-a", "namespace-b"]);
        assert_eq!(allocation.namespace_selectors.len(), 1);
        assert_eq!(allocation.service_selectors.len(), 1);
        let adv = &file.l2_advertisements[0].spec;
        assert_eq!(adv.ip_address_pools, ["first-pool"]);
        assert_eq!(adv.interfaces, ["eth0", "eth1"]);
        assert_eq!(adv.node_selectors.len(), 1);
        assert_eq!(file.services.len(), 1);
        assert_eq!(file.warnings.len(), 1, "{:?}", file.warnings);
        assert!(
            file.warnings[0]
                .to_string()
                .contains("BGP mode is not implemented yet")
        );
    }

    #[test]
    fn every_problem_is_named() {
        let text = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: a}
spec:
  addresses: [192.0.2.0/24]
  autoAssign: "yes"
---
kind: Service
metadata: {name: b}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: c}
---
apiVersion: v1
kind: Service
metadata: {name: d}
spec: [not, a, map
"#;
        let errors = parse(text).expect_err("must fail");
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 4, "{text:#?}");
        assert!(
            text[0].contains("IPAddressPool a") && text[0].contains("spec.autoAssign"),
            "{text:#?}"
        );
        assert!(text[1].contains("missing apiVersion"), "{text:#?}");
        assert!(text[2].contains("example.com/v1 Widget"), "{text:#?}");
        assert!(text[3].contains("not valid YAML"), "{text:#?}");
    }

    #[test]
    fn unknown_fields_are_warnings() {
        let text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec:\n  addresses: [192.0.2.0/24]\n  autoassign: false\n";
        let file = parse(text).expect("parses");
        assert_eq!(file.warnings.len(), 1);
        let warning = file.warnings[0].to_string();
        assert!(
            warning.contains("spec.autoassign") && warning.contains("unknown field"),
            "{warning}"
        );
    }

    #[test]
    fn lists_and_empty_documents() {
        let text = "---\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a, labels: {team: x}}\n- apiVersion: v1\n  kind: Node\n  metadata: {name: n1}\n";
        let file = parse(text).expect("parses");
        assert_eq!(file.namespaces.len(), 1);
        assert_eq!(file.nodes.len(), 1);
    }
}
