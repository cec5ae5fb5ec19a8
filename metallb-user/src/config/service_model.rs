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

/// Services packed in a few bytes each (about 50 for a Service of a LoadBalancer
/// type, an address annotation and a port), for the file reader to keep those of the
/// documents it does not read again ([`super::file::Kept`]): 100,000 Services take
/// about 60 MiB as objects, 5 as bytes. Not a format to store: the reader packs and
/// unpacks them in one process.
pub(crate) mod packed {
    use std::{borrow::Cow, collections::BTreeMap};

    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

    use super::{
        Annotations, KNOWN_KEYS, LoadBalancerIngress, LoadBalancerStatus, Service, ServiceMeta,
        ServicePort, ServiceSpec, ServiceStatus,
    };

    /// Strings written as their index in [`KNOWN`]: these, then the annotation keys
    /// MetalLB reads ([`KNOWN_KEYS`], which are then not allocated again either).
    const COMMON: [&str; 16] = [
        "default",
        "LoadBalancer",
        "TCP",
        "UDP",
        "SCTP",
        "IPv4",
        "IPv6",
        "Cluster",
        "Local",
        "SingleStack",
        "PreferDualStack",
        "RequireDualStack",
        "ClusterIP",
        "NodePort",
        "app",
        "",
    ];
    const KNOWN: [&str; COMMON.len() + KNOWN_KEYS.len()] = {
        let mut known = [""; COMMON.len() + KNOWN_KEYS.len()];
        let mut i = 0;
        while i < known.len() {
            known[i] = if i < COMMON.len() {
                COMMON[i]
            } else {
                KNOWN_KEYS[i - COMMON.len()]
            };
            i += 1;
        }
        known
    };

    fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn signed(out: &mut Vec<u8>, value: i64) {
        varint(out, ((value << 1) ^ (value >> 63)) as u64);
    }

    /// 0: none; odd: [`KNOWN`]'s string; even: so many bytes follow (twice their count, plus 2).
    fn opt_str(out: &mut Vec<u8>, text: Option<&str>) {
        let Some(text) = text else {
            return varint(out, 0);
        };
        match KNOWN.iter().position(|known| *known == text) {
            Some(i) => varint(out, 2 * i as u64 + 1),
            None => {
                varint(out, 2 * text.len() as u64 + 2);
                out.extend_from_slice(text.as_bytes());
            }
        }
    }

    fn count(out: &mut Vec<u8>, len: Option<usize>) {
        varint(out, len.map_or(0, |len| len as u64 + 1));
    }

    fn map(out: &mut Vec<u8>, map: Option<&BTreeMap<String, String>>) {
        count(out, map.map(BTreeMap::len));
        for (key, value) in map.into_iter().flatten() {
            opt_str(out, Some(key));
            opt_str(out, Some(value));
        }
    }

    /// Appends `service` to `out`.
    pub(crate) fn pack(out: &mut Vec<u8>, service: &Service) {
        let meta = &service.metadata;
        opt_str(out, meta.name.as_deref());
        opt_str(out, meta.namespace.as_deref());
        map(out, meta.labels.as_ref());
        count(out, Some(meta.annotations.0.len()));
        for (key, value) in meta.annotations.iter() {
            opt_str(out, Some(key));
            opt_str(out, Some(value));
        }
        match &meta.creation_timestamp {
            None => varint(out, 0),
            Some(Time(at)) => {
                varint(out, 1);
                signed(out, at.as_second());
                signed(out, i64::from(at.subsec_nanosecond()));
            }
        }
        match &service.spec {
            None => varint(out, 0),
            Some(spec) => {
                varint(out, 1);
                opt_str(out, spec.type_.as_deref());
                opt_str(out, spec.load_balancer_class.as_deref());
                opt_str(out, spec.load_balancer_ip.as_deref());
                count(out, spec.ip_families.as_ref().map(Vec::len));
                for family in spec.ip_families.iter().flatten() {
                    opt_str(out, Some(family));
                }
                opt_str(out, spec.ip_family_policy.as_deref());
                opt_str(out, spec.external_traffic_policy.as_deref());
                map(out, spec.selector.as_ref());
                count(out, spec.ports.as_ref().map(Vec::len));
                for port in spec.ports.iter().flatten() {
                    signed(out, i64::from(port.port));
                    opt_str(out, port.protocol.as_deref());
                }
            }
        }
        match &service.status {
            None => varint(out, 0),
            Some(status) => match status.load_balancer.as_ref().map(|lb| lb.ingress.as_ref()) {
                None => varint(out, 1),
                Some(None) => varint(out, 2),
                Some(Some(ingress)) => {
                    varint(out, ingress.len() as u64 + 3);
                    for entry in ingress {
                        opt_str(out, entry.ip.as_deref());
                    }
                }
            },
        }
    }

    /// Reads what [`pack`] wrote.
    pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

    impl Reader<'_> {
        fn varint(&mut self) -> Option<u64> {
            let mut value = 0u64;
            for shift in (0..64).step_by(7) {
                let (&byte, rest) = self.0.split_first()?;
                self.0 = rest;
                value |= u64::from(byte & 0x7f) << shift;
                if byte < 0x80 {
                    return Some(value);
                }
            }
            None
        }

        fn signed(&mut self) -> Option<i64> {
            let value = self.varint()?;
            Some(((value >> 1) as i64) ^ -((value & 1) as i64))
        }

        fn cow(&mut self) -> Option<Option<Cow<'static, str>>> {
            let code = self.varint()?;
            if code == 0 {
                return Some(None);
            }
            if code % 2 == 1 {
                return Some(Some(Cow::Borrowed(KNOWN.get((code / 2) as usize)?)));
            }
            let len = usize::try_from(code / 2 - 1).ok()?;
            if self.0.len() < len {
                return None;
            }
            let (bytes, rest) = self.0.split_at(len);
            self.0 = rest;
            Some(Some(Cow::Owned(
                std::str::from_utf8(bytes).ok()?.to_owned(),
            )))
        }

        fn opt_str(&mut self) -> Option<Option<String>> {
            Some(self.cow()?.map(Cow::into_owned))
        }

        fn str(&mut self) -> Option<String> {
            self.opt_str()?
        }

        fn count(&mut self) -> Option<Option<usize>> {
            let count = self.varint()?;
            Some(count.checked_sub(1).map(|count| count as usize))
        }

        fn map(&mut self) -> Option<Option<BTreeMap<String, String>>> {
            let Some(len) = self.count()? else {
                return Some(None);
            };
            let mut map = BTreeMap::new();
            for _ in 0..len {
                map.insert(self.str()?, self.str()?);
            }
            Some(Some(map))
        }

        fn vec<T>(
            &mut self,
            mut item: impl FnMut(&mut Self) -> Option<T>,
        ) -> Option<Option<Vec<T>>> {
            let Some(len) = self.count()? else {
                return Some(None);
            };
            let mut items = Vec::with_capacity(len.min(self.0.len()));
            for _ in 0..len {
                items.push(item(self)?);
            }
            Some(Some(items))
        }

        /// The next Service; `None` at the end or if the bytes are not [`pack`]'s.
        pub(crate) fn service(&mut self) -> Option<Service> {
            let name = self.opt_str()?;
            let namespace = self.opt_str()?;
            let labels = self.map()?;
            let annotations = self.vec(|reader| {
                let key = reader.cow()??;
                Some((key, reader.str()?.into_boxed_str()))
            })??;
            let creation_timestamp = match self.varint()? {
                0 => None,
                _ => {
                    let second = self.signed()?;
                    let nanosecond = i32::try_from(self.signed()?).ok()?;
                    Some(Time(Timestamp::new(second, nanosecond).ok()?))
                }
            };
            let spec = match self.varint()? {
                0 => None,
                _ => Some(ServiceSpec {
                    type_: self.opt_str()?,
                    load_balancer_class: self.opt_str()?,
                    load_balancer_ip: self.opt_str()?,
                    ip_families: self.vec(Self::str)?,
                    ip_family_policy: self.opt_str()?,
                    external_traffic_policy: self.opt_str()?,
                    selector: self.map()?,
                    ports: self.vec(|reader| {
                        Some(ServicePort {
                            port: i32::try_from(reader.signed()?).ok()?,
                            protocol: reader.opt_str()?,
                        })
                    })?,
                }),
            };
            let status = match self.varint()? {
                0 => None,
                1 => Some(ServiceStatus {
                    load_balancer: None,
                }),
                2 => Some(ServiceStatus {
                    load_balancer: Some(LoadBalancerStatus { ingress: None }),
                }),
                n => {
                    let mut ingress = Vec::with_capacity(((n - 3) as usize).min(self.0.len()));
                    for _ in 3..n {
                        ingress.push(LoadBalancerIngress {
                            ip: self.opt_str()?,
                        });
                    }
                    Some(ServiceStatus {
                        load_balancer: Some(LoadBalancerStatus {
                            ingress: Some(ingress),
                        }),
                    })
                }
            };
            Some(Service {
                metadata: ServiceMeta {
                    name,
                    namespace,
                    labels,
                    annotations: Annotations(annotations.into_boxed_slice()),
                    creation_timestamp,
                },
                spec,
                status,
            })
        }
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

    #[test]
    fn a_packed_service_unpacks_as_it_was() {
        let full = object(
            "metadata:\n  name: web\n  namespace: shop\n  labels: {app: web, x: ''}\n  creationTimestamp: '2024-01-02T03:04:05.123456789Z'\n  annotations:\n    metallb.io/loadBalancerIPs: 192.0.2.7\n    METALLB.io/Address-Pool: odd\n    metallb.universe.tf/allow-shared-ip: k\n\
             spec:\n  type: LoadBalancer\n  loadBalancerClass: c\n  loadBalancerIP: 192.0.2.7\n  ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: PreferDualStack\n  externalTrafficPolicy: Local\n  selector: {app: web}\n  ports:\n  - {port: -3, protocol: UDP}\n  - {port: 2147483647}\n\
             status:\n  loadBalancer:\n    ingress: [{ip: 192.0.2.7}, {hostname: h}]\n",
        );
        let services = [
            Service::from(full),
            Service::from(object("metadata: {name: a}\n")),
            Service::default(),
            Service::from(object("metadata: {name: b}\nspec: {}\nstatus: {}\n")),
            Service::from(object("metadata: {name: b}\nstatus: {loadBalancer: {}}\n")),
            Service::from(object(
                "metadata: {name: b}\nstatus: {loadBalancer: {ingress: []}}\n",
            )),
            Service::from(object(&format!(
                "metadata: {{name: {}}}\n",
                "n".repeat(300)
            ))),
        ];
        let mut bytes = Vec::new();
        for service in &services {
            packed::pack(&mut bytes, service);
        }
        let mut reader = packed::Reader(&bytes);
        for service in &services {
            assert_eq!(reader.service().as_ref(), Some(service));
        }
        assert!(reader.0.is_empty());
        assert_eq!(reader.service(), None);
        // Cut short: none, never a panic.
        for end in 0..bytes.len() {
            let mut reader = packed::Reader(&bytes[..end]);
            while reader.service().is_some() {}
        }
    }
}
