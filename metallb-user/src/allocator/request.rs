//! What a Service asks of the allocator, read from its spec, annotations and status,
//! with every malformed or contradictory request refused with a reason naming the
//! annotation or field and its value.

use std::{fmt, net::IpAddr, sync::Arc};

use super::{
    AllocatorOptions, ServiceKey,
    sharing::{Backend, Port, ShareProfile},
};
use crate::config::{
    Labels, Service,
    service_model::{Annotations, ServiceSpec},
};

/// The current annotation prefix, and the older one MetalLB still reads.
const PREFIX: &str = "metallb.io";
const OLD_PREFIX: &str = "metallb.universe.tf";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Self::V4 } else { Self::V6 }
    }

    pub fn other(self) -> Self {
        match self {
            Self::V4 => Self::V6,
            Self::V6 => Self::V4,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        })
    }
}

/// The addresses a service wants, from `spec.ipFamilies` and `spec.ipFamilyPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stack {
    /// One address of this family.
    Single(Family),
    /// One of each family if a pool can, else what the pool offers, `primary` first.
    Prefer { primary: Family },
    /// One of each family from one pool, or nothing.
    Require,
}

impl Stack {
    /// Whether `ips` (from the status) is what this service should have: one address
    /// of its family, or for dual-stack one of each (PreferDualStack also takes one).
    pub fn accepts(self, ips: &[IpAddr]) -> bool {
        let both = matches!(ips, [a, b] if Family::of(*a) != Family::of(*b));
        match self {
            Self::Single(family) => matches!(ips, [ip] if Family::of(*ip) == family),
            Self::Require => both,
            Self::Prefer { .. } => both || ips.len() == 1,
        }
    }

    /// What the service wants, for failure reasons.
    pub fn wanted(self) -> String {
        match self {
            Self::Single(family) => format!("an {family} address"),
            Self::Prefer { .. } => {
                "an IPv4 or an IPv6 address (spec.ipFamilyPolicy PreferDualStack)".into()
            }
            Self::Require => {
                "an IPv4 and an IPv6 address (spec.ipFamilyPolicy RequireDualStack)".into()
            }
        }
    }

    fn policy(self) -> &'static str {
        match self {
            Self::Single(_) => "SingleStack",
            Self::Prefer { .. } => "PreferDualStack",
            Self::Require => "RequireDualStack",
        }
    }
}

/// A value the service asked for, with where it asked (`annotation metallb.io/x="v"`
/// or `spec.loadBalancerIP="v"`) to name it in reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked<T> {
    pub origin: String,
    pub value: T,
}

/// Everything the allocator needs from one service.
#[derive(Clone, Debug)]
pub(super) struct Request {
    pub key: ServiceKey,
    pub labels: Labels,
    pub stack: Stack,
    /// `address-pool` annotation.
    pub pool: Option<Asked<String>>,
    /// `loadBalancerIPs` annotation or `spec.loadBalancerIP`: checked to be one
    /// address per family the service wants.
    pub ips: Option<Asked<Vec<IpAddr>>>,
    /// Shared with the ledger's record of each address the service holds.
    pub share: Arc<ShareProfile>,
    /// The non-empty `ip` fields of `status.loadBalancer.ingress`, unparsed.
    pub status: Vec<String>,
}

/// Why this allocator leaves `service` alone, or `None` when it is one of ours: a
/// `LoadBalancer` whose class is this controller's. As in MetalLB, a controller
/// started with a class ignores services without one, and one started without a
/// class ignores services that have one.
pub(super) fn ignore_reason(service: &Service, options: &AllocatorOptions) -> Option<String> {
    let spec = service.spec.as_ref();
    let kind = spec.and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP");
    if kind != "LoadBalancer" {
        return Some(format!("spec.type is {kind}, not LoadBalancer"));
    }
    // An empty class is no class (the API server refuses "" anyway).
    let class = spec
        .and_then(|s| s.load_balancer_class.as_deref())
        .filter(|c| !c.is_empty());
    let mine = options
        .load_balancer_class
        .as_deref()
        .filter(|c| !c.is_empty());
    match (class, mine) {
        (None, None) => None,
        (Some(class), Some(mine)) if class == mine => None,
        (Some(class), None) => Some(format!(
            "spec.loadBalancerClass is {class:?}, and this controller handles only services without a class"
        )),
        (Some(class), Some(mine)) => Some(format!(
            "spec.loadBalancerClass is {class:?}, and this controller handles only class {mine:?}"
        )),
        (None, Some(mine)) => Some(format!(
            "no spec.loadBalancerClass, and this controller handles only class {mine:?}"
        )),
    }
}

impl Request {
    /// Reads what `service` asks for, or why its request is malformed. What is odd
    /// without making the request fail (both annotation prefixes with different
    /// values) goes to `warnings`.
    pub fn parse(
        key: ServiceKey,
        service: &Service,
        warnings: &mut Vec<String>,
    ) -> Result<Self, String> {
        let annotations = &service.metadata.annotations;
        let default_spec = ServiceSpec::default();
        let spec = service.spec.as_ref().unwrap_or(&default_spec);

        // Annotations first, so that their warnings are given even when the request
        // fails for another reason.
        let pool = annotation(annotations, "address-pool", warnings);
        let share_key = annotation(annotations, "allow-shared-ip", warnings).map(|a| a.value);
        let ips = requested_ips(annotations, spec, warnings);
        let stack = stack(spec)?;
        let ips = ips?;
        if let Some(asked) = &ips {
            check_families(stack, asked)?;
        }
        let share = Arc::new(ShareProfile {
            key: share_key,
            backend: match spec.external_traffic_policy.as_deref() {
                Some("Local") => Backend::Local(spec.selector.clone().unwrap_or_default()),
                _ => Backend::Cluster,
            },
            ports: ports(spec),
        });
        let status = status_ips(service).map(str::to_owned).collect();
        Ok(Self {
            key,
            labels: service.metadata.labels.clone().unwrap_or_default(),
            stack,
            pool,
            ips,
            share,
            status,
        })
    }
}

/// The non-empty `ip` fields of `service`'s `status.loadBalancer.ingress`.
pub(super) fn status_ips(service: &Service) -> impl Iterator<Item = &str> {
    service
        .status
        .iter()
        .filter_map(|status| status.load_balancer.as_ref())
        .flat_map(|lb| lb.ingress.iter().flatten())
        .filter_map(|ingress| ingress.ip.as_deref())
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
}

/// Families and policy, with the API server's defaults: IPv4 unless `ipFamilies`
/// says otherwise; two families and no policy mean RequireDualStack. A dual-stack
/// policy with one family listed gets the other as secondary (as the API server does
/// on a dual-stack cluster; the pools then decide what a PreferDualStack service gets).
fn stack(spec: &ServiceSpec) -> Result<Stack, String> {
    let mut families = Vec::new();
    for (i, text) in spec.ip_families.iter().flatten().enumerate() {
        let family = match text.as_str() {
            "IPv4" => Family::V4,
            "IPv6" => Family::V6,
            other => {
                return Err(format!(
                    "spec.ipFamilies[{i}]={other:?} is not IPv4 or IPv6"
                ));
            }
        };
        if families.contains(&family) {
            return Err(format!("spec.ipFamilies lists {family} twice"));
        }
        families.push(family);
    }
    let primary = families.first().copied().unwrap_or(Family::V4);
    match spec.ip_family_policy.as_deref() {
        None if families.len() == 2 => Ok(Stack::Require),
        None | Some("SingleStack") if families.len() == 2 => Err(
            "spec.ipFamilies lists IPv4 and IPv6, but spec.ipFamilyPolicy is SingleStack".into(),
        ),
        None | Some("SingleStack") => Ok(Stack::Single(primary)),
        Some("PreferDualStack") => Ok(Stack::Prefer { primary }),
        Some("RequireDualStack") => Ok(Stack::Require),
        Some(other) => Err(format!(
            "spec.ipFamilyPolicy={other:?} is not SingleStack, PreferDualStack or RequireDualStack"
        )),
    }
}

/// The annotation `name` under either prefix, as MetalLB reads it: `metallb.io/`
/// when present (even empty), else `metallb.universe.tf/`; an empty value is no
/// request. When both are present with different values, `warnings` gets a line
/// naming both.
fn annotation(
    annotations: &Annotations,
    name: &str,
    warnings: &mut Vec<String>,
) -> Option<Asked<String>> {
    let read = |prefix: &str| {
        let key = format!("{prefix}/{name}");
        annotations
            .get(&key)
            .map(|value| (key, value.trim().to_owned()))
    };
    let (key, value) = match (read(PREFIX), read(OLD_PREFIX)) {
        (Some((key, value)), Some((old_key, old_value))) => {
            if value != old_value {
                warnings.push(format!(
                    "annotations {key}={value:?} and {old_key}={old_value:?} disagree; {key} is used (as MetalLB does), remove one of them"
                ));
            }
            (key, value)
        }
        (Some(found), None) | (None, Some(found)) => found,
        (None, None) => return None,
    };
    (!value.is_empty()).then(|| Asked {
        origin: format!("annotation {key}={value:?}"),
        value,
    })
}

/// The `loadBalancerIPs` annotation (comma-separated, at most one per family) or the
/// deprecated `spec.loadBalancerIP`, never both.
fn requested_ips(
    annotations: &Annotations,
    spec: &ServiceSpec,
    warnings: &mut Vec<String>,
) -> Result<Option<Asked<Vec<IpAddr>>>, String> {
    let field = spec
        .load_balancer_ip
        .as_deref()
        .map(str::trim)
        .filter(|ip| !ip.is_empty());
    match (annotation(annotations, "loadBalancerIPs", warnings), field) {
        (Some(asked), Some(field)) => Err(format!(
            "both {} and spec.loadBalancerIP={field:?} are set; set only the annotation (spec.loadBalancerIP is deprecated)",
            asked.origin
        )),
        (Some(asked), None) => {
            let value = parse_ips(&asked.origin, asked.value.split(',').map(str::trim))?;
            Ok(Some(Asked {
                origin: asked.origin,
                value,
            }))
        }
        (None, Some(field)) => {
            let origin = format!("spec.loadBalancerIP={field:?}");
            let value = parse_ips(&origin, [field])?;
            Ok(Some(Asked { origin, value }))
        }
        (None, None) => Ok(None),
    }
}

fn parse_ips<'a>(
    origin: &str,
    texts: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<IpAddr>, String> {
    let mut ips = Vec::new();
    for text in texts {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| format!("{origin}: {text:?} is not an IP address"))?;
        // An IPv4-mapped IPv6 address is the IPv4 address (as Go's net.ParseIP reads it).
        ips.push(ip.to_canonical());
    }
    match ips.as_slice() {
        [_] => {}
        [a, b] if Family::of(*a) != Family::of(*b) => {}
        [a, _] => {
            return Err(format!(
                "{origin}: lists two {} addresses; at most one per IP family",
                Family::of(*a)
            ));
        }
        more => {
            return Err(format!(
                "{origin}: lists {} addresses; at most one per IP family",
                more.len()
            ));
        }
    }
    Ok(ips)
}

/// The requested addresses must be exactly what the service's families call for.
fn check_families(stack: Stack, asked: &Asked<Vec<IpAddr>>) -> Result<(), String> {
    let origin = &asked.origin;
    match (stack, asked.value.as_slice()) {
        (Stack::Single(family), [ip]) if Family::of(*ip) == family => Ok(()),
        (Stack::Single(family), [ip]) => Err(format!(
            "{origin}: {ip} is {}, but the service is single-stack {family} (spec.ipFamilies)",
            Family::of(*ip)
        )),
        (Stack::Single(family), _) => Err(format!(
            "{origin}: asks for two addresses, but the service is single-stack {family} (spec.ipFamilyPolicy SingleStack)"
        )),
        (_, [_, _]) => Ok(()),
        (dual, _) => Err(format!(
            "{origin}: a dual-stack service (spec.ipFamilyPolicy {}) needs one IPv4 and one IPv6 address, not one",
            dual.policy()
        )),
    }
}

fn ports(spec: &ServiceSpec) -> Box<[Port]> {
    ShareProfile::sorted_ports(spec.ports.iter().flatten().map(|port| Port {
        protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
        number: port.port,
    }))
}

/// The pool and the addresses `service` asks for, read exactly as the allocator reads
/// them, or why that request is malformed: for validation, which warns about requests
/// that can never be met. The allocator's warnings come with either.
pub fn requested(service: &Service) -> (Result<RequestedAddresses, String>, Vec<String>) {
    let mut warnings = Vec::new();
    let request = Request::parse(ServiceKey::of_service(service), service, &mut warnings);
    let asked = request.map(|request| RequestedAddresses {
        pool: request.pool,
        ips: request.ips,
    });
    (asked, warnings)
}

/// What [`requested`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestedAddresses {
    pub pool: Option<Asked<String>>,
    pub ips: Option<Asked<Vec<IpAddr>>>,
}
