//! Services as the API server would admit them (`ValidateService` and the allocation
//! rules of its registry), and what MetalLB would silently make of their annotations.
//!
//! What the API server refuses is an error: such a Service could never exist in a
//! cluster. What it accepts but no configuration can meet (a malformed or unmeetable
//! MetalLB request, a misspelt MetalLB annotation) is a warning: the file stays valid,
//! the Service gets no address (or an automatic one), and `metallb plan` says why.
//! Values the API server fills in by default (type, protocol, policies) are checked
//! only when present.

use std::{collections::BTreeSet, net::IpAddr, ops::RangeInclusive};

use k8s_openapi::{
    api::core::v1::{self as api, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::{Pool, Service, names, service_model::ANNOTATION_PREFIXES, validate::Checker};
use crate::allocator::requested;

const TYPES: [&str; 4] = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
const TRAFFIC_POLICIES: [&str; 2] = ["Cluster", "Local"];
const SESSION_AFFINITIES: [&str; 2] = ["ClientIP", "None"];
const IP_FAMILIES: [&str; 2] = ["IPv4", "IPv6"];
const IP_FAMILY_POLICIES: [&str; 3] = ["SingleStack", "PreferDualStack", "RequireDualStack"];
const PORTS: RangeInclusive<i32> = 1..=65535;
/// The API server's default `--service-node-port-range`.
const DEFAULT_NODE_PORTS: RangeInclusive<i32> = 30000..=32767;

/// The annotations MetalLB reads (`metallb.io/` and the older `metallb.universe.tf/`).
const KNOWN_ANNOTATIONS: [&str; 4] = [
    "address-pool",
    "loadBalancerIPs",
    "allow-shared-ip",
    "ip-allocated-from-pool",
];

/// An IPv6 CIDR's subnet-router anycast address, which its pool never hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldBack {
    pub ip: IpAddr,
    pub pool: String,
    /// The `spec.addresses` entry, as written.
    pub entry: String,
}

fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!("not one of {}", allowed.join(", ")))
    }
}

/// What the API server would refuse in `spec` (metadata is checked as for every
/// object). Also warns, without refusing, about a Service with no port: the API server
/// refuses it, but in a standalone file ports matter only for address sharing, and a
/// short file with none is a common, harmless test.
pub(super) fn check_spec(check: &mut Checker, object: &str, spec: &ServiceSpec) {
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if let Err(why) = one_of(kind, &TYPES) {
        check.error(object, "spec.type", kind, why);
    }
    let load_balancer = kind == "LoadBalancer";
    let external_name = kind == "ExternalName";
    let headless = spec.cluster_ip.as_deref() == Some("None");
    if headless && (load_balancer || kind == "NodePort") {
        check.error(
            object,
            "spec.clusterIP",
            "None",
            format!("may not be None for {kind} services"),
        );
    }

    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !headless && !external_name {
        check.warning(
            object,
            "spec.ports",
            "",
            "no port: the API server requires one (kubectl apply would refuse this Service)",
        );
    }
    let mut names_seen = BTreeSet::new();
    let mut ports_seen: Vec<(&str, i32, usize)> = Vec::new();
    let mut node_ports_seen: Vec<(&str, i32, usize)> = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let name = port.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            if ports.len() > 1 {
                check.error(
                    object,
                    &format!("{field}.name"),
                    "",
                    "required when a Service has more than one port",
                );
            }
        } else if let Err(why) = names::dns1123_label(name) {
            check.error(object, &format!("{field}.name"), name, why);
        } else if !names_seen.insert(name) {
            check.error(
                object,
                &format!("{field}.name"),
                name,
                "duplicate port name",
            );
        }
        if !PORTS.contains(&port.port) {
            check.error(
                object,
                &format!("{field}.port"),
                &port.port.to_string(),
                "must be 1 to 65535",
            );
        }
        // An empty protocol is defaulted to TCP.
        let protocol = port
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("TCP");
        if let Err(why) = one_of(protocol, &PROTOCOLS) {
            check.error(object, &format!("{field}.protocol"), protocol, why);
        }
        match &port.target_port {
            // 0 and "" are defaulted to the port.
            Some(IntOrString::Int(target)) if *target != 0 && !PORTS.contains(target) => {
                check.error(
                    object,
                    &format!("{field}.targetPort"),
                    &target.to_string(),
                    "must be 1 to 65535, or the name of a container port",
                );
            }
            Some(IntOrString::String(target)) if !target.is_empty() => {
                if let Err(why) = names::iana_service_name(target) {
                    check.error(object, &format!("{field}.targetPort"), target, why);
                }
            }
            _ => {}
        }
        if let Some(node_port) = port.node_port.filter(|n| *n != 0) {
            let shown = node_port.to_string();
            if kind == "ClusterIP" {
                check.error(
                    object,
                    &format!("{field}.nodePort"),
                    &shown,
                    "may not be used when type is ClusterIP",
                );
            } else if !PORTS.contains(&node_port) {
                check.error(
                    object,
                    &format!("{field}.nodePort"),
                    &shown,
                    "must be 1 to 65535",
                );
            } else if !DEFAULT_NODE_PORTS.contains(&node_port) {
                check.warning(
                    object,
                    &format!("{field}.nodePort"),
                    &shown,
                    "outside the API server's default NodePort range 30000-32767: refused unless its --service-node-port-range includes it",
                );
            }
            if let Some((.., first)) = node_ports_seen
                .iter()
                .find(|(p, n, _)| *p == protocol && *n == node_port)
            {
                check.error(
                    object,
                    &format!("{field}.nodePort"),
                    &shown,
                    format!(
                        "duplicate: {protocol} node port {node_port} is also spec.ports[{first}]'s"
                    ),
                );
            }
            node_ports_seen.push((protocol, node_port, i));
        }
        if let Some((.., first)) = ports_seen
            .iter()
            .find(|(p, n, _)| *p == protocol && *n == port.port)
        {
            check.error(
                object,
                &field,
                &format!("{protocol}/{}", port.port),
                format!("duplicate port: also spec.ports[{first}]"),
            );
        }
        ports_seen.push((protocol, port.port, i));
        if let Some(app_protocol) = &port.app_protocol
            && let Err(why) = names::qualified_name(app_protocol)
        {
            check.error(object, &format!("{field}.appProtocol"), app_protocol, why);
        }
    }

    for (key, value) in spec.selector.iter().flatten() {
        if let Err(why) = names::qualified_name(key) {
            check.error(object, "spec.selector", key, format!("label key {why}"));
        }
        if let Err(why) = names::label_value(value) {
            check.error(
                object,
                &format!("spec.selector[{key}]"),
                value,
                format!("label value {why}"),
            );
        }
    }
    if let Some(affinity) = spec.session_affinity.as_deref()
        && let Err(why) = one_of(affinity, &SESSION_AFFINITIES)
    {
        check.error(object, "spec.sessionAffinity", affinity, why);
    }
    if let Some(policy) = spec.external_traffic_policy.as_deref() {
        let has_external_ips = !spec.external_ips.as_deref().unwrap_or_default().is_empty();
        if !(load_balancer || kind == "NodePort" || (kind == "ClusterIP" && has_external_ips)) {
            check.error(
                object,
                "spec.externalTrafficPolicy",
                policy,
                "may only be set for externally-accessible services (type LoadBalancer or NodePort, or with externalIPs)",
            );
        } else if let Err(why) = one_of(policy, &TRAFFIC_POLICIES) {
            check.error(object, "spec.externalTrafficPolicy", policy, why);
        }
    }
    if let Some(policy) = spec.internal_traffic_policy.as_deref()
        && let Err(why) = one_of(policy, &TRAFFIC_POLICIES)
    {
        check.error(object, "spec.internalTrafficPolicy", policy, why);
    }
    check_families(check, object, spec, external_name);
    if let Some(class) = spec.load_balancer_class.as_deref() {
        if !load_balancer {
            check.error(
                object,
                "spec.loadBalancerClass",
                class,
                "may only be used when type is LoadBalancer",
            );
        } else if let Err(why) = names::qualified_name(class) {
            check.error(object, "spec.loadBalancerClass", class, why);
        }
    }
    if spec.allocate_load_balancer_node_ports.is_some() && !load_balancer {
        check.error(
            object,
            "spec.allocateLoadBalancerNodePorts",
            "",
            "may only be used when type is LoadBalancer",
        );
    }
    if external_name {
        // The value (a CNAME) may end with a dot, to mark it fully qualified.
        let cname = spec.external_name.as_deref().unwrap_or_default();
        let trimmed = cname.strip_suffix('.').unwrap_or(cname);
        if trimmed.is_empty() {
            check.error(
                object,
                "spec.externalName",
                "",
                "required when type is ExternalName",
            );
        } else if let Err(why) = names::dns1123_subdomain(trimmed) {
            check.error(object, "spec.externalName", cname, why);
        }
    }
}

/// `spec.ipFamilies` and `spec.ipFamilyPolicy`.
fn check_families(check: &mut Checker, object: &str, spec: &ServiceSpec, external_name: bool) {
    let families = spec.ip_families.as_deref().unwrap_or_default();
    if external_name {
        if !families.is_empty() {
            check.error(
                object,
                "spec.ipFamilies",
                "",
                "may not be set for ExternalName services",
            );
        }
        if let Some(policy) = &spec.ip_family_policy {
            check.error(
                object,
                "spec.ipFamilyPolicy",
                policy,
                "may not be set for ExternalName services",
            );
        }
        return;
    }
    for (i, family) in families.iter().enumerate() {
        let field = format!("spec.ipFamilies[{i}]");
        if let Err(why) = one_of(family, &IP_FAMILIES) {
            check.error(object, &field, family, why);
        } else if families[..i].contains(family) {
            check.error(
                object,
                &field,
                family,
                "duplicate: a Service has at most one of each family",
            );
        }
    }
    if let Some(policy) = spec.ip_family_policy.as_deref() {
        if let Err(why) = one_of(policy, &IP_FAMILY_POLICIES) {
            check.error(object, "spec.ipFamilyPolicy", policy, why);
        } else if policy == "SingleStack" && families.len() > 1 {
            check.error(
                object,
                "spec.ipFamilyPolicy",
                policy,
                "must be RequireDualStack or PreferDualStack when spec.ipFamilies lists two families",
            );
        }
    }
}

/// Warns about `metallb.io/` and `metallb.universe.tf/` annotations MetalLB does not
/// read: a misspelt `address-pool` would otherwise quietly give an automatic address.
pub(super) fn check_annotations(check: &mut Checker, object: &str, service: &api::Service) {
    for key in service
        .metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, _)| k)
    {
        let lower = key.to_ascii_lowercase();
        let Some(prefix) = ANNOTATION_PREFIXES.iter().find(|p| lower.starts_with(*p)) else {
            continue;
        };
        let known = KNOWN_ANNOTATIONS.iter().any(|name| {
            ANNOTATION_PREFIXES
                .iter()
                .any(|p| *key == format!("{p}{name}"))
        });
        if known {
            continue;
        }
        let name = &key[prefix.len()..];
        let closest = KNOWN_ANNOTATIONS
            .iter()
            .min_by_key(|known| {
                edit_distance(&name.to_ascii_lowercase(), &known.to_ascii_lowercase())
            })
            .unwrap_or(&KNOWN_ANNOTATIONS[0]);
        check.warning(
            object,
            "metadata.annotations",
            key,
            format!(
                "MetalLB reads no such annotation, so it is ignored; the closest it reads is {prefix}{closest}"
            ),
        );
    }
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Warns about what a `LoadBalancer` service asks of MetalLB that can never be met,
/// read with the allocator's own request parsing: a malformed `loadBalancerIPs`, two
/// addresses of one family, an unknown pool, an address in no pool; and what the
/// allocator warns about (both annotation prefixes with different values).
pub(super) fn check_request(
    check: &mut Checker,
    object: &str,
    service: &Service,
    pools: &[Pool],
    held_back: &[HeldBack],
) {
    let kind = service.spec.as_ref().and_then(|s| s.type_.as_deref());
    if kind != Some("LoadBalancer") {
        return;
    }
    let never = "the service can get no address";
    let (asked, warnings) = requested(service);
    for warning in warnings {
        check.warning(object, "", "", warning);
    }
    let asked = match asked {
        Ok(asked) => asked,
        Err(reason) => {
            check.warning(object, "", "", format!("{reason}: {never}"));
            return;
        }
    };
    if let Some(pool) = &asked.pool
        && !pools.iter().any(|p| p.name == pool.value)
    {
        check.warning(
            object,
            "",
            "",
            format!("{}: no IPAddressPool has this name: {never}", pool.origin),
        );
    }
    for ip in asked.ips.iter().flat_map(|ips| &ips.value) {
        if pools
            .iter()
            .any(|p| p.ranges.iter().any(|r| r.contains(*ip)))
        {
            continue;
        }
        let origin = asked
            .ips
            .as_ref()
            .map(|a| a.origin.as_str())
            .unwrap_or_default();
        let why = match held_back.iter().find(|h| h.ip == *ip) {
            Some(h) => format!(
                "{ip} is the subnet-router anycast address of {} in pool {}, which is never handed out",
                h.entry, h.pool
            ),
            None => format!("{ip} is in no IPAddressPool"),
        };
        check.warning(object, "", "", format!("{origin}: {why}: {never}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::tests::{Refused, Valid, Want, Warns, check_table, pool};

    /// A Service: `meta` and `spec` are the insides of YAML flow mappings.
    fn svc(meta: &str, spec: &str) -> String {
        format!("---\napiVersion: v1\nkind: Service\nmetadata: {{{meta}}}\nspec: {{{spec}}}\n")
    }

    /// A LoadBalancer Service `x` with one port, plus `spec`.
    fn lb(spec: &str) -> String {
        svc(
            "name: x",
            &format!("type: LoadBalancer, ports: [{{port: 80}}], {spec}"),
        )
    }

    /// What the API server would refuse: errors.
    fn api_table() -> Vec<(&'static str, String, Want)> {
        vec![
            ("a plain LoadBalancer", lb(""), Valid),
            (
                "every field the API server defaults, given",
                lb(
                    "sessionAffinity: ClientIP, externalTrafficPolicy: Local, internalTrafficPolicy: Cluster, ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv6, IPv4], loadBalancerClass: example.com/lb, allocateLoadBalancerNodePorts: false, selector: {app: web}",
                ),
                Valid,
            ),
            (
                "port -1",
                svc("name: x", "type: LoadBalancer, ports: [{port: -1}]"),
                Refused(&["Service default/x: spec.ports[0].port \"-1\": must be 1 to 65535"]),
            ),
            (
                "port 0",
                svc("name: x", "type: LoadBalancer, ports: [{port: 0}]"),
                Refused(&["spec.ports[0].port \"0\": must be 1 to 65535"]),
            ),
            (
                "port 70000",
                svc("name: x", "type: LoadBalancer, ports: [{port: 70000}]"),
                Refused(&["spec.ports[0].port \"70000\": must be 1 to 65535"]),
            ),
            (
                "port 65535",
                svc("name: x", "type: LoadBalancer, ports: [{port: 65535}]"),
                Valid,
            ),
            (
                "protocol BOGUS",
                svc(
                    "name: x",
                    "type: LoadBalancer, ports: [{port: 80, protocol: BOGUS}]",
                ),
                Refused(&["spec.ports[0].protocol \"BOGUS\": not one of TCP, UDP, SCTP"]),
            ),
            (
                "protocol SCTP",
                svc(
                    "name: x",
                    "type: LoadBalancer, ports: [{port: 80, protocol: SCTP}]",
                ),
                Valid,
            ),
            (
                "protocol tcp (case matters)",
                svc(
                    "name: x",
                    "type: LoadBalancer, ports: [{port: 80, protocol: tcp}]",
                ),
                Refused(&["\"tcp\": not one of TCP, UDP, SCTP"]),
            ),
            (
                "targetPort 70000",
                svc("name: x", "ports: [{port: 80, targetPort: 70000}]"),
                Refused(&[
                    "spec.ports[0].targetPort \"70000\": must be 1 to 65535, or the name of a container port",
                ]),
            ),
            (
                "targetPort -1",
                svc("name: x", "ports: [{port: 80, targetPort: -1}]"),
                Refused(&["spec.ports[0].targetPort \"-1\""]),
            ),
            // 0 and "" are defaulted to the port.
            (
                "targetPort 0",
                svc("name: x", "ports: [{port: 80, targetPort: 0}]"),
                Valid,
            ),
            (
                "targetPort http",
                svc("name: x", "ports: [{port: 80, targetPort: http}]"),
                Valid,
            ),
            (
                "targetPort HTTP",
                svc("name: x", "ports: [{port: 80, targetPort: HTTP}]"),
                Refused(&["spec.ports[0].targetPort \"HTTP\": must be an IANA service name"]),
            ),
            (
                "nodePort 70000",
                svc(
                    "name: x",
                    "type: NodePort, ports: [{port: 80, nodePort: 70000}]",
                ),
                Refused(&["spec.ports[0].nodePort \"70000\": must be 1 to 65535"]),
            ),
            (
                "nodePort 30080",
                svc(
                    "name: x",
                    "type: NodePort, ports: [{port: 80, nodePort: 30080}]",
                ),
                Valid,
            ),
            (
                "nodePort 8080, outside the default range",
                svc(
                    "name: x",
                    "type: LoadBalancer, ports: [{port: 80, nodePort: 8080}]",
                ),
                Warns(&[
                    "spec.ports[0].nodePort \"8080\": outside the API server's default NodePort range 30000-32767",
                ]),
            ),
            (
                "nodePort on a ClusterIP service",
                svc("name: x", "ports: [{port: 80, nodePort: 30080}]"),
                Refused(&[
                    "spec.ports[0].nodePort \"30080\": may not be used when type is ClusterIP",
                ]),
            ),
            (
                "two ports without names",
                svc("name: x", "ports: [{port: 80}, {port: 443}]"),
                Refused(&[
                    "spec.ports[0].name: required when a Service has more than one port",
                    "spec.ports[1].name: required",
                ]),
            ),
            (
                "the same port twice",
                svc(
                    "name: x",
                    "ports: [{name: a, port: 80}, {name: b, port: 80, protocol: TCP}]",
                ),
                Refused(&["spec.ports[1] \"TCP/80\": duplicate port: also spec.ports[0]"]),
            ),
            (
                "one port number, two protocols",
                svc(
                    "name: x",
                    "ports: [{name: a, port: 53}, {name: b, port: 53, protocol: UDP}]",
                ),
                Valid,
            ),
            (
                "the same port name twice",
                svc(
                    "name: x",
                    "ports: [{name: a, port: 80}, {name: a, port: 81}]",
                ),
                Refused(&["spec.ports[1].name \"a\": duplicate port name"]),
            ),
            (
                "a port name with a dot",
                svc("name: x", "ports: [{name: a.b, port: 80}]"),
                Refused(&["spec.ports[0].name \"a.b\": must be a lowercase RFC 1123 label"]),
            ),
            (
                "the same node port twice",
                svc(
                    "name: x",
                    "type: NodePort, ports: [{name: a, port: 80, nodePort: 30001}, {name: b, port: 81, nodePort: 30001}]",
                ),
                Refused(&[
                    "spec.ports[1].nodePort \"30001\": duplicate: TCP node port 30001 is also spec.ports[0]'s",
                ]),
            ),
            (
                "appProtocol with a blank",
                svc("name: x", "ports: [{port: 80, appProtocol: 'h 2'}]"),
                Refused(&["spec.ports[0].appProtocol \"h 2\""]),
            ),
            (
                "type Loadbalancer",
                svc("name: x", "type: Loadbalancer, ports: [{port: 80}]"),
                Refused(&[
                    "spec.type \"Loadbalancer\": not one of ClusterIP, NodePort, LoadBalancer, ExternalName",
                ]),
            ),
            (
                "externalTrafficPolicy Locale",
                lb("externalTrafficPolicy: Locale"),
                Refused(&["spec.externalTrafficPolicy \"Locale\": not one of Cluster, Local"]),
            ),
            (
                "externalTrafficPolicy on a ClusterIP service",
                svc(
                    "name: x",
                    "ports: [{port: 80}], externalTrafficPolicy: Local",
                ),
                Refused(&[
                    "spec.externalTrafficPolicy \"Local\": may only be set for externally-accessible services",
                ]),
            ),
            (
                "externalTrafficPolicy with externalIPs",
                svc(
                    "name: x",
                    "ports: [{port: 80}], externalIPs: [192.0.2.1], externalTrafficPolicy: Local",
                ),
                Valid,
            ),
            (
                "internalTrafficPolicy Node",
                lb("internalTrafficPolicy: Node"),
                Refused(&["spec.internalTrafficPolicy \"Node\": not one of Cluster, Local"]),
            ),
            (
                "sessionAffinity Sticky",
                lb("sessionAffinity: Sticky"),
                Refused(&["spec.sessionAffinity \"Sticky\": not one of ClientIP, None"]),
            ),
            (
                "ipFamilies [IPv5]",
                lb("ipFamilies: [IPv5]"),
                Refused(&["spec.ipFamilies[0] \"IPv5\": not one of IPv4, IPv6"]),
            ),
            (
                "ipFamilies [IPv4, IPv4]",
                lb("ipFamilies: [IPv4, IPv4]"),
                Refused(&["spec.ipFamilies[1] \"IPv4\": duplicate"]),
            ),
            (
                "three ipFamilies",
                lb("ipFamilies: [IPv4, IPv6, IPv4], ipFamilyPolicy: RequireDualStack"),
                Refused(&["spec.ipFamilies[2] \"IPv4\": duplicate"]),
            ),
            (
                "ipFamilyPolicy DualStack",
                lb("ipFamilyPolicy: DualStack"),
                Refused(&[
                    "spec.ipFamilyPolicy \"DualStack\": not one of SingleStack, PreferDualStack, RequireDualStack",
                ]),
            ),
            (
                "SingleStack with two families",
                lb("ipFamilyPolicy: SingleStack, ipFamilies: [IPv4, IPv6]"),
                Refused(&[
                    "spec.ipFamilyPolicy \"SingleStack\": must be RequireDualStack or PreferDualStack when spec.ipFamilies lists two families",
                ]),
            ),
            (
                "two families and no policy",
                lb("ipFamilies: [IPv4, IPv6]"),
                Valid,
            ),
            (
                "loadBalancerClass on a ClusterIP service",
                svc(
                    "name: x",
                    "ports: [{port: 80}], loadBalancerClass: example.com/lb",
                ),
                Refused(&[
                    "spec.loadBalancerClass \"example.com/lb\": may only be used when type is LoadBalancer",
                ]),
            ),
            (
                "an empty loadBalancerClass",
                lb("loadBalancerClass: ''"),
                Refused(&["spec.loadBalancerClass: has an empty name"]),
            ),
            (
                "allocateLoadBalancerNodePorts on a NodePort service",
                svc(
                    "name: x",
                    "type: NodePort, ports: [{port: 80}], allocateLoadBalancerNodePorts: true",
                ),
                Refused(&[
                    "spec.allocateLoadBalancerNodePorts: may only be used when type is LoadBalancer",
                ]),
            ),
            (
                "a headless LoadBalancer",
                lb("clusterIP: None"),
                Refused(&["spec.clusterIP \"None\": may not be None for LoadBalancer services"]),
            ),
            (
                "a headless ClusterIP service needs no port",
                svc("name: x", "clusterIP: None"),
                Valid,
            ),
            (
                "an ExternalName service",
                svc(
                    "name: x",
                    "type: ExternalName, externalName: db.example.com.",
                ),
                Valid,
            ),
            (
                "an ExternalName service without a name",
                svc("name: x", "type: ExternalName"),
                Refused(&["spec.externalName: required when type is ExternalName"]),
            ),
            (
                "an ExternalName service with families",
                svc(
                    "name: x",
                    "type: ExternalName, externalName: db.example.com, ipFamilies: [IPv4]",
                ),
                Refused(&["spec.ipFamilies: may not be set for ExternalName services"]),
            ),
            (
                "a selector value with a blank",
                lb("selector: {app: 'web server'}"),
                Refused(&["spec.selector[app] \"web server\": label value must be"]),
            ),
            (
                "a selector key with a blank",
                lb("selector: {'my app': web}"),
                Refused(&["spec.selector \"my app\": label key name part must be"]),
            ),
            (
                "a Service name starting with a digit",
                svc("name: 1web", "ports: [{port: 80}]"),
                Refused(&[
                    "Service default/1web: metadata.name \"1web\": must be a lowercase RFC 1035 label",
                ]),
            ),
            (
                "a Service name with escapes and a newline",
                svc("name: \"web\\e[31m\\r\\n\"", "ports: [{port: 80}]"),
                Refused(&[
                    "metadata.name \"web\\u{1b}[31m\\r\\n\": must be a lowercase RFC 1035 label",
                ]),
            ),
            (
                "a 64-character Service name",
                svc(&format!("name: {}", "s".repeat(64)), "ports: [{port: 80}]"),
                Refused(&["must be no more than 63 characters (has 64)"]),
            ),
            (
                "a Service namespace in capitals",
                svc("name: x, namespace: Default", "ports: [{port: 80}]"),
                Refused(&[
                    "Service Default/x: metadata.namespace \"Default\": must be a lowercase RFC 1123 label",
                ]),
            ),
            (
                // Refused by the API server; only a warning here (see check_spec).
                "a Service with no port",
                svc("name: x", "type: LoadBalancer"),
                Warns(&[
                    "Service default/x: spec.ports: no port: the API server requires one (kubectl apply would refuse this Service)",
                ]),
            ),
        ]
    }

    #[test]
    fn what_the_api_server_refuses() {
        check_table(&api_table());
    }

    /// What MetalLB would silently make of a Service: warnings.
    fn metallb_table() -> Vec<(&'static str, String, Want)> {
        let pools = pool("a", "  addresses: [192.0.2.0/24, '2001:db8::/120']")
            + &pool("b", "  addresses: [198.51.100.0/24]");
        let with = |annotations: &str, spec: &str| {
            pools.clone()
                + &svc(
                    &format!("name: x, annotations: {{{annotations}}}"),
                    &format!("type: LoadBalancer, ports: [{{port: 80}}], {spec}"),
                )
        };
        // The pools' own warning, in every case.
        const ANYCAST: &str = "IPAddressPool metallb-system/a: spec.addresses[1] \"2001:db8::/120\": 2001:db8:: is its subnet-router anycast address";
        vec![
            (
                "a met request",
                with(
                    "metallb.io/address-pool: a, metallb.io/loadBalancerIPs: '192.0.2.7,2001:db8::7'",
                    "ipFamilyPolicy: RequireDualStack",
                ),
                Warns(&[ANYCAST]),
            ),
            (
                "loadBalancerIPs not-an-ip",
                with("metallb.io/loadBalancerIPs: not-an-ip", ""),
                Warns(&[
                    ANYCAST,
                    "Service default/x: annotation metallb.io/loadBalancerIPs=\"not-an-ip\": \"not-an-ip\" is not an IP address: the service can get no address",
                ]),
            ),
            (
                "two IPv4 addresses",
                with("metallb.io/loadBalancerIPs: '192.0.2.7,192.0.2.8'", ""),
                Warns(&[
                    ANYCAST,
                    "annotation metallb.io/loadBalancerIPs=\"192.0.2.7,192.0.2.8\": lists two IPv4 addresses; at most one per IP family: the service can get no address",
                ]),
            ),
            (
                "an IPv6 address for a single-stack IPv4 service",
                with("metallb.io/loadBalancerIPs: '2001:db8::7'", ""),
                Warns(&[
                    ANYCAST,
                    "2001:db8::7 is IPv6, but the service is single-stack IPv4",
                ]),
            ),
            (
                "an address outside every pool",
                with("metallb.io/loadBalancerIPs: 203.0.113.9", ""),
                Warns(&[
                    ANYCAST,
                    "Service default/x: annotation metallb.io/loadBalancerIPs=\"203.0.113.9\": 203.0.113.9 is in no IPAddressPool: the service can get no address",
                ]),
            ),
            (
                "the deprecated spec.loadBalancerIP outside every pool",
                with("", "loadBalancerIP: 203.0.113.9"),
                Warns(&[
                    ANYCAST,
                    "spec.loadBalancerIP=\"203.0.113.9\": 203.0.113.9 is in no IPAddressPool",
                ]),
            ),
            (
                "a held-back anycast address",
                with(
                    "metallb.io/loadBalancerIPs: '2001:db8::'",
                    "ipFamilies: [IPv6]",
                ),
                Warns(&[
                    ANYCAST,
                    "annotation metallb.io/loadBalancerIPs=\"2001:db8::\": 2001:db8:: is the subnet-router anycast address of 2001:db8::/120 in pool a, which is never handed out: the service can get no address",
                ]),
            ),
            (
                "an unknown pool",
                with("metallb.universe.tf/address-pool: nope", ""),
                Warns(&[
                    ANYCAST,
                    "Service default/x: annotation metallb.universe.tf/address-pool=\"nope\": no IPAddressPool has this name: the service can get no address",
                ]),
            ),
            (
                "both prefixes with different values: metallb.io wins",
                with(
                    "metallb.io/address-pool: a, metallb.universe.tf/address-pool: nope",
                    "",
                ),
                Warns(&[
                    ANYCAST,
                    "Service default/x: annotations metallb.io/address-pool=\"a\" and metallb.universe.tf/address-pool=\"nope\" disagree; metallb.io/address-pool is used (as MetalLB does), remove one of them",
                ]),
            ),
            (
                "metallb.io/adress-pool",
                with("metallb.io/adress-pool: a", ""),
                Warns(&[
                    "Service default/x: metadata.annotations \"metallb.io/adress-pool\": MetalLB reads no such annotation, so it is ignored; the closest it reads is metallb.io/address-pool",
                    ANYCAST,
                ]),
            ),
            (
                "metallb.io/loadbalancerIPs",
                with("metallb.io/loadbalancerIPs: 192.0.2.7", ""),
                Warns(&[
                    "\"metallb.io/loadbalancerIPs\": MetalLB reads no such annotation, so it is ignored; the closest it reads is metallb.io/loadBalancerIPs",
                    ANYCAST,
                ]),
            ),
            (
                "metallb.universe.tf/allow-shared-ips",
                with("metallb.universe.tf/allow-shared-ips: k", ""),
                Warns(&[
                    "the closest it reads is metallb.universe.tf/allow-shared-ip",
                    ANYCAST,
                ]),
            ),
            (
                "an upper-case prefix",
                with("Metallb.io/address-pool: a", ""),
                Warns(&[
                    "\"Metallb.io/address-pool\": MetalLB reads no such annotation, so it is ignored; the closest it reads is metallb.io/address-pool",
                    ANYCAST,
                ]),
            ),
            (
                "the pool MetalLB's controller records",
                with("metallb.io/ip-allocated-from-pool: a", ""),
                Warns(&[ANYCAST]),
            ),
            (
                "other annotations are none of MetalLB's business",
                with("example.com/metallb.io-like: x, metallb.io: x", ""),
                Warns(&[ANYCAST]),
            ),
            (
                // Not a LoadBalancer: MetalLB never reads its request.
                "a ClusterIP service's request",
                pools.clone()
                    + &svc(
                        "name: x, annotations: {metallb.io/loadBalancerIPs: not-an-ip}",
                        "ports: [{port: 80}]",
                    ),
                Warns(&[ANYCAST]),
            ),
            (
                // The API server's error is enough.
                "a refused service's request",
                pools.clone()
                    + &svc(
                        "name: x, annotations: {metallb.io/loadBalancerIPs: not-an-ip}",
                        "type: LoadBalancer, ports: [{port: 0}]",
                    ),
                Refused(&["spec.ports[0].port \"0\""]),
            ),
        ]
    }

    #[test]
    fn what_metallb_would_silently_make_of_a_service() {
        check_table(&metallb_table());
    }

    #[test]
    fn edit_distance_table() {
        for (a, b, want) in [
            ("", "", 0),
            ("abc", "abc", 0),
            ("adress-pool", "address-pool", 1),
            ("allow-shared-ips", "allow-shared-ip", 1),
            ("loadbalancerips", "loadbalancerips", 0),
            ("kitten", "sitting", 3),
            ("", "abc", 3),
        ] {
            assert_eq!(edit_distance(a, b), want, "{a} {b}");
        }
    }
}
