//! What the controller writes on a Service for the allocator's decision, and which
//! Events it emits: a pure function of the Service as read and the decision, so that
//! "write only when something changed" is decided (and tested) in one place.
//!
//! The controller owns two things on a Service: `status.loadBalancer.ingress` and the
//! annotation `metallb.io/ip-allocated-from-pool` (MetalLB's). It never touches a
//! Service of another `loadBalancerClass`; it clears its own state from a Service that
//! is no longer a LoadBalancer, and from one whose request cannot be met.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use crate::allocator::{Decision, ServiceKey};

/// The annotation naming the pool a Service's addresses come from.
pub const POOL_ANNOTATION: &str = "metallb.io/ip-allocated-from-pool";

/// An Event about a Service, with MetalLB's reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The writes one decision needs (none when the Service already shows it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceUpdate {
    /// `Some(Some(pool))`: set the annotation; `Some(None)`: remove it.
    pub annotation: Option<Option<String>>,
    /// `Some(ips)`: write these as `status.loadBalancer.ingress` (empty: clear it).
    pub ingress: Option<Vec<String>>,
    pub events: Vec<ServiceEvent>,
}

impl ServiceUpdate {
    pub fn writes(&self) -> bool {
        self.annotation.is_some() || self.ingress.is_some()
    }
}

/// The ingress addresses in the status, as written.
pub fn status_ips(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| ingress.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

fn pool_annotation(service: &Service) -> Option<&str> {
    service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POOL_ANNOTATION))
        .map(String::as_str)
}

fn is_load_balancer(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

/// Addresses as Go's `%q` prints a list of them, as MetalLB's Events do:
/// `["192.0.2.1" "2001:db8::1"]`.
fn quoted(ips: &[String]) -> String {
    let inner: Vec<String> = ips.iter().map(|ip| format!("{ip:?}")).collect();
    format!("[{}]", inner.join(" "))
}

/// The writes and Events that make `service` show `decision`.
pub fn update_for(service: &Service, decision: &Decision) -> ServiceUpdate {
    let key = ServiceKey::of_service(service);
    let current = status_ips(service);
    let current_pool = pool_annotation(service);
    let (wanted_ips, wanted_pool): (Vec<String>, Option<&str>) = match decision {
        // Another implementation's Service: never touched.
        Decision::Ignored { .. } if is_load_balancer(service) => return ServiceUpdate::default(),
        // No longer a LoadBalancer: what we wrote is cleared.
        Decision::Ignored { .. } | Decision::Failed { .. } => (Vec::new(), None),
        Decision::Allocated(allocation) => (
            allocation.ips.iter().map(IpAddr::to_string).collect(),
            Some(allocation.pool.as_str()),
        ),
    };
    let same_ips = {
        let parse = |ips: &[String]| -> Option<Vec<IpAddr>> {
            ips.iter().map(|ip| ip.parse::<IpAddr>().ok()).collect()
        };
        match (parse(&current), parse(&wanted_ips)) {
            (Some(a), Some(b)) => a == b,
            _ => current == wanted_ips,
        }
    };
    let mut update = ServiceUpdate {
        annotation: (current_pool != wanted_pool).then(|| wanted_pool.map(str::to_owned)),
        ingress: (!same_ips).then(|| wanted_ips.clone()),
        events: Vec::new(),
    };
    match decision {
        Decision::Failed { reason } => update.events.push(ServiceEvent {
            warning: true,
            reason: "AllocationFailed",
            note: format!("Failed to allocate IP for \"{key}\": {reason}"),
        }),
        Decision::Allocated(_) if !same_ips => {
            if !current.is_empty() {
                update.events.push(ServiceEvent {
                    warning: false,
                    reason: "ClearAssignment",
                    note: format!(
                        "current IP {} for \"{key}\" not allowed by config or no longer asked for, assigning a new one",
                        quoted(&current)
                    ),
                });
            }
            update.events.push(ServiceEvent {
                warning: false,
                reason: "IPAllocated",
                note: format!("Assigned IP {}", quoted(&wanted_ips)),
            });
        }
        _ => {}
    }
    update
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::allocator::Allocation;

    fn service(kind: &str, ips: &[&str], pool: Option<&str>) -> Service {
        let mut annotations = serde_json::Map::new();
        if let Some(pool) = pool {
            annotations.insert(POOL_ANNOTATION.into(), pool.into());
        }
        let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "annotations": annotations},
            "spec": {"type": kind},
            "status": {"loadBalancer": {"ingress": ingress}},
        }))
        .unwrap()
    }

    fn allocated(pool: &str, ips: &[&str]) -> Decision {
        Decision::Allocated(Allocation {
            pool: pool.into(),
            ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        })
    }

    fn failed() -> Decision {
        Decision::Failed {
            reason: "no address pool can give an IPv4 address automatically".into(),
        }
    }

    fn ignored() -> Decision {
        Decision::Ignored {
            reason: "whatever".into(),
        }
    }

    /// (service, decision, annotation write, ingress write, event reasons)
    type Case = (
        Service,
        Decision,
        Option<Option<String>>,
        Option<Vec<String>>,
        Vec<&'static str>,
    );

    #[test]
    fn update_table() {
        let some = |s: &str| Some(Some(s.to_owned()));
        let ips = |list: &[&str]| Some(list.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        // (service, decision, annotation write, ingress write, event reasons)
        let cases: Vec<Case> = vec![
            // New allocation: both written, IPAllocated.
            (
                service("LoadBalancer", &[], None),
                allocated("p", &["192.0.2.1"]),
                some("p"),
                ips(&["192.0.2.1"]),
                vec!["IPAllocated"],
            ),
            // Already shown: nothing at all (a restart writes nothing).
            (
                service("LoadBalancer", &["192.0.2.1"], Some("p")),
                allocated("p", &["192.0.2.1"]),
                None,
                None,
                vec![],
            ),
            // The same address written differently is the same address.
            (
                service("LoadBalancer", &["2001:db8:0::1"], Some("p")),
                allocated("p", &["2001:db8::1"]),
                None,
                None,
                vec![],
            ),
            // Only the annotation is missing (a status from before): only it is written.
            (
                service("LoadBalancer", &["192.0.2.1"], None),
                allocated("p", &["192.0.2.1"]),
                some("p"),
                None,
                vec![],
            ),
            // The pool was renamed around the address.
            (
                service("LoadBalancer", &["192.0.2.1"], Some("old")),
                allocated("new", &["192.0.2.1"]),
                some("new"),
                None,
                vec![],
            ),
            // The address moves: ClearAssignment then IPAllocated.
            (
                service("LoadBalancer", &["192.0.2.1"], Some("p")),
                allocated("p", &["192.0.2.9"]),
                None,
                ips(&["192.0.2.9"]),
                vec!["ClearAssignment", "IPAllocated"],
            ),
            // Failure clears what we wrote, with AllocationFailed.
            (
                service("LoadBalancer", &["192.0.2.1"], Some("p")),
                failed(),
                Some(None),
                ips(&[]),
                vec!["AllocationFailed"],
            ),
            (
                service("LoadBalancer", &[], None),
                failed(),
                None,
                None,
                vec!["AllocationFailed"],
            ),
            // Another class: untouched even with an address and our annotation.
            (
                service("LoadBalancer", &["192.0.2.1"], Some("p")),
                ignored(),
                None,
                None,
                vec![],
            ),
            // No longer a LoadBalancer: cleared, no event.
            (
                service("ClusterIP", &["192.0.2.1"], Some("p")),
                ignored(),
                Some(None),
                ips(&[]),
                vec![],
            ),
            (
                service("ClusterIP", &[], None),
                ignored(),
                None,
                None,
                vec![],
            ),
        ];
        for (i, (svc, decision, annotation, ingress, events)) in cases.into_iter().enumerate() {
            let update = update_for(&svc, &decision);
            assert_eq!(update.annotation, annotation, "case {i}");
            assert_eq!(update.ingress, ingress, "case {i}");
            let reasons: Vec<&str> = update.events.iter().map(|e| e.reason).collect();
            assert_eq!(reasons, events, "case {i}");
        }
    }

    #[test]
    fn event_notes_say_what_happened_as_metallb_does() {
        let update = update_for(
            &service("LoadBalancer", &[], None),
            &allocated("p", &["192.0.2.1", "2001:db8::1"]),
        );
        assert_eq!(
            update.events[0].note,
            "Assigned IP [\"192.0.2.1\" \"2001:db8::1\"]"
        );
        let update = update_for(&service("LoadBalancer", &[], None), &failed());
        assert_eq!(
            update.events[0].note,
            "Failed to allocate IP for \"ns/web\": no address pool can give an IPv4 address automatically"
        );
        assert!(update.events[0].warning);
    }
}
