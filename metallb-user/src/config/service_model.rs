//! The Service the core works on: the fields of a Kubernetes `core/v1` Service that
//! the allocator, the election and the plans read, at the same paths as in the API's
//! object (`service.metadata.name`, `service.spec.ports`, `service.status`), and
//! nothing else.
//!
//! A parsed API object takes about 1.6 KiB (most of its fields unset but sized, one
//! annotation in a map node of half a KiB); this one about 600 bytes. At 100,000
//! Services that is the difference between about 160 and 60 MiB. The edges convert:
//! the file reader (after the API server's checks, which need the whole object), the
//! Kubernetes speaker and controller (from their caches).

use std::{borrow::Cow, collections::BTreeMap};

use k8s_openapi::{api::core::v1 as api, apimachinery::pkg::apis::meta::v1::Time};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Labels;

/// The annotation prefixes MetalLB reads (`metallb.io/` and the older
/// `metallb.universe.tf/`): only annotations under them are kept.
pub const ANNOTATION_PREFIXES: [&str; 2] = ["metallb.io/", "metallb.universe.tf/"];

/// A Service as the core reads it. Its JSON is that of the API's object with only
/// these fields (`serde_json::from_value::<k8s_openapi::api::core::v1::Service>` reads
/// it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub metadata: ServiceMeta,
    pub spec: Option<ServiceSpec>,
    pub status: Option<ServiceStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMeta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: Option<Labels>,
    /// MetalLB's annotations only (see [`ANNOTATION_PREFIXES`]).
    #[serde(default)]
    pub annotations: Annotations,
    pub creation_timestamp: Option<Time>,
}

/// What the core reads of `spec`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub load_balancer_class: Option<String>,
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: Option<String>,
    pub ip_families: Option<Vec<String>>,
    pub ip_family_policy: Option<String>,
    pub external_traffic_policy: Option<String>,
    pub selector: Option<BTreeMap<String, String>>,
    pub ports: Option<Vec<ServicePort>>,
}

/// What the core reads of a port: address sharing compares ports and protocols.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    pub port: i32,
    pub protocol: Option<String>,
}

/// What the core reads of `status`: the ingress addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    pub load_balancer: Option<LoadBalancerStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerStatus {
    pub ingress: Option<Vec<LoadBalancerIngress>>,
}

/// An ingress entry: its address, unparsed (one with only a hostname has none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerIngress {
    pub ip: Option<String>,
}

impl From<api::ServiceStatus> for ServiceStatus {
    fn from(status: api::ServiceStatus) -> Self {
        Self {
            load_balancer: status.load_balancer.map(|lb| LoadBalancerStatus {
                ingress: lb.ingress.map(|ingress| {
                    ingress
                        .into_iter()
                        .map(|entry| LoadBalancerIngress { ip: entry.ip })
                        .collect()
                }),
            }),
        }
    }
}

/// The annotations MetalLB reads, under both prefixes: a key among them is kept
/// without an allocation of its own.
const KNOWN_KEYS: [&str; 8] = [
    "metallb.io/address-pool",
    "metallb.io/allow-shared-ip",
    "metallb.io/ip-allocated-from-pool",
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/address-pool",
    "metallb.universe.tf/allow-shared-ip",
    "metallb.universe.tf/ip-allocated-from-pool",
    "metallb.universe.tf/loadBalancerIPs",
];

/// An annotation's key: one of [`KNOWN_KEYS`], or another (misspelt) one as written.
type Key = Cow<'static, str>;

fn key_of(key: String) -> Key {
    match KNOWN_KEYS.iter().find(|known| **known == key) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(key),
    }
}

/// A few annotations, sorted by key: a Service has one or two of MetalLB's, and a map
/// would take a node of half a KiB for one; a slice, not a Vec (exact, and 8 bytes
/// less a Service), the keys MetalLB reads not allocated each time (32 bytes each).
/// In JSON a map, as in the API's object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations(Box<[(Key, Box<str>)]>);

impl Serialize for Annotations {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Annotations {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let all = Option::<BTreeMap<String, String>>::deserialize(deserializer)?;
        Ok(Self::metallb(all.into_iter().flatten()))
    }
}

impl Annotations {
    /// MetalLB's annotations of `all` (an API object's map, sorted by key).
    pub fn metallb(all: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut kept: Vec<(Key, Box<str>)> = all
            .into_iter()
            .filter(|(key, _)| is_metallb(key))
            .map(|(key, value)| (key_of(key), value.into_boxed_str()))
            .collect();
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        kept.dedup_by(|a, b| a.0 == b.0);
        Self(kept.into_boxed_slice())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether `key` is under one of MetalLB's prefixes (in any case: validation warns
/// about a misspelt one).
fn is_metallb(key: &str) -> bool {
    ANNOTATION_PREFIXES.iter().any(|prefix| {
        key.get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    })
}

fn some_shrunk<T>(vec: Option<Vec<T>>) -> Option<Vec<T>> {
    vec.map(|mut vec| {
        vec.shrink_to_fit();
        vec
    })
}

impl From<api::Service> for Service {
    /// Takes what the core reads; the rest of the object is dropped.
    fn from(service: api::Service) -> Self {
        let meta = service.metadata;
        Self {
            metadata: ServiceMeta {
                name: meta.name,
                namespace: meta.namespace,
                labels: meta.labels,
                annotations: Annotations::metallb(meta.annotations.into_iter().flatten()),
                creation_timestamp: meta.creation_timestamp,
            },
            spec: service.spec.map(|spec| ServiceSpec {
                type_: spec.type_,
                load_balancer_class: spec.load_balancer_class,
                load_balancer_ip: spec.load_balancer_ip,
                ip_families: some_shrunk(spec.ip_families),
                ip_family_policy: spec.ip_family_policy,
                external_traffic_policy: spec.external_traffic_policy,
                selector: spec.selector,
                ports: spec.ports.map(|ports| {
                    ports
                        .into_iter()
                        .map(|port| ServicePort {
                            port: port.port,
                            protocol: port.protocol,
                        })
                        .collect()
                }),
            }),
            status: service.status.map(ServiceStatus::from),
        }
    }
}

impl From<&api::Service> for Service {
    fn from(service: &api::Service) -> Self {
        let meta = &service.metadata;
        Self {
            metadata: ServiceMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                labels: meta.labels.clone(),
                annotations: Annotations::metallb(
                    meta.annotations
                        .iter()
                        .flatten()
                        .filter(|(key, _)| is_metallb(key))
                        .map(|(k, v)| (k.clone(), v.clone())),
                ),
                creation_timestamp: meta.creation_timestamp.clone(),
            },
            spec: service.spec.as_ref().map(|spec| ServiceSpec {
                type_: spec.type_.clone(),
                load_balancer_class: spec.load_balancer_class.clone(),
                load_balancer_ip: spec.load_balancer_ip.clone(),
                ip_families: spec.ip_families.clone(),
                ip_family_policy: spec.ip_family_policy.clone(),
                external_traffic_policy: spec.external_traffic_policy.clone(),
                selector: spec.selector.clone(),
                ports: spec.ports.as_ref().map(|ports| {
                    ports
                        .iter()
                        .map(|port| ServicePort {
                            port: port.port,
                            protocol: port.protocol.clone(),
                        })
                        .collect()
                }),
            }),
            status: service.status.clone().map(ServiceStatus::from),
        }
    }
}

/// A Service's name and namespace, in the core's form or the API's.
pub trait ServiceName {
    fn service_name(&self) -> Option<&str>;
    fn service_namespace(&self) -> Option<&str>;
}

impl ServiceName for Service {
    fn service_name(&self) -> Option<&str> {
        self.metadata.name.as_deref()
    }
    fn service_namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }
}

impl ServiceName for api::Service {
    fn service_name(&self) -> Option<&str> {
        self.metadata.name.as_deref()
    }
    fn service_namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(yaml: &str) -> api::Service {
        serde_yaml_ng::from_str(yaml).expect("a Service")
    }

    #[test]
    fn keeps_what_the_core_reads_and_only_metallb_annotations() {
        let full = object(
            "metadata:\n  name: web\n  namespace: shop\n  uid: u-1\n  labels: {app: web}\n  creationTimestamp: '2024-01-02T03:04:05Z'\n  annotations:\n    metallb.io/loadBalancerIPs: 192.0.2.7\n    METALLB.io/Address-Pool: odd\n    metallb.universe.tf/allow-shared-ip: k\n    kubectl.kubernetes.io/last-applied-configuration: '{}'\n    example.com/x: y\n\
             spec:\n  type: LoadBalancer\n  clusterIP: 10.0.0.1\n  loadBalancerClass: c\n  loadBalancerIP: 192.0.2.7\n  ipFamilies: [IPv4]\n  ipFamilyPolicy: SingleStack\n  externalTrafficPolicy: Local\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80, protocol: UDP, targetPort: 8080, nodePort: 30080}\n\
             status:\n  loadBalancer:\n    ingress: [{ip: 192.0.2.7}]\n",
        );
        let want = Service {
            metadata: ServiceMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                annotations: Annotations(
                    [
                        ("METALLB.io/Address-Pool".into(), "odd".into()),
                        ("metallb.io/loadBalancerIPs".into(), "192.0.2.7".into()),
                        ("metallb.universe.tf/allow-shared-ip".into(), "k".into()),
                    ]
                    .into(),
                ),
                creation_timestamp: full.metadata.creation_timestamp.clone(),
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                load_balancer_class: Some("c".into()),
                load_balancer_ip: Some("192.0.2.7".into()),
                ip_families: Some(vec!["IPv4".into()]),
                ip_family_policy: Some("SingleStack".into()),
                external_traffic_policy: Some("Local".into()),
                selector: Some([("app".to_owned(), "web".to_owned())].into()),
                ports: Some(vec![ServicePort {
                    port: 80,
                    protocol: Some("UDP".into()),
                }]),
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(vec![LoadBalancerIngress {
                        ip: Some("192.0.2.7".into()),
                    }]),
                }),
            }),
        };
        assert!(want.metadata.creation_timestamp.is_some());
        assert_eq!(Service::from(&full), want);
        assert_eq!(Service::from(full), want);
        assert_eq!(
            want.metadata.annotations.get("metallb.io/loadBalancerIPs"),
            Some("192.0.2.7")
        );
        assert!(
            want.metadata
                .annotations
                .contains_key("metallb.universe.tf/allow-shared-ip")
        );
        assert_eq!(
            want.metadata.annotations.get("metallb.io/address-pool"),
            None
        );
        assert_eq!(want.metadata.annotations.get("example.com/x"), None);
    }

    #[test]
    fn its_json_is_the_api_objects() {
        let full = object(
            "metadata:\n  name: web\n  annotations: {metallb.io/loadBalancerIPs: 192.0.2.7, example.com/x: y}\n\
             spec: {type: LoadBalancer, loadBalancerIP: 192.0.2.7, ports: [{port: 80}]}\n\
             status: {loadBalancer: {ingress: [{ip: 192.0.2.7}]}}\n",
        );
        let service = Service::from(&full);
        let json = serde_json::to_value(&service).expect("JSON");
        let read: api::Service = serde_json::from_value(json.clone()).expect("an API object");
        assert_eq!(Service::from(read), service);
        assert_eq!(json["spec"]["type"], "LoadBalancer");
        assert_eq!(json["spec"]["loadBalancerIP"], "192.0.2.7");
        assert_eq!(
            json["metadata"]["annotations"],
            serde_json::json!({"metallb.io/loadBalancerIPs": "192.0.2.7"})
        );
        let back: Service = serde_json::from_value(json).expect("read back");
        assert_eq!(back, service);
    }

    #[test]
    fn an_object_without_spec_or_annotations() {
        let service = Service::from(object("metadata: {name: a}\n"));
        assert_eq!(service.metadata.name.as_deref(), Some("a"));
        assert!(service.metadata.annotations.is_empty());
        assert_eq!(service.spec, None);
        assert_eq!(service.status, None);
    }
}
