//! The whole pure core in one call: configuration -> allocation -> election -> the VIP
//! entries this node's datapath must hold. `metallb plan` prints it; the speaker applies
//! it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use metallb_common::VipAction;
use serde::Serialize;

use crate::{
    allocator::{
        Allocations, AllocatorOptions, Decision, PoolUsage, ServiceKey, allocate, from_status,
        pool_usage,
    },
    config::{Config, selector::any_matches},
    datapath::{
        iface::{Interface, MacAddr},
        maps::{VipConfig, VipKey},
    },
    election::{Election, ElectionContext, Interfaces, elect},
};

/// Where the services' addresses come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressSource {
    /// Allocated here (standalone mode: nobody else does).
    #[default]
    Allocate,
    /// The services' status, written by the controller (Kubernetes mode).
    Status,
}

#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// This node's name (the election's identity; matched against Node objects).
    pub node_name: String,
    pub allocator: AllocatorOptions,
    pub addresses: AddressSource,
    pub election: ElectionContext,
}

/// What this node does for one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Answers ARP/NDP for the service's addresses on these interfaces.
    Announce { interfaces: Vec<String> },
    /// Another node announces: requests reaching this node are dropped.
    Suppress { owner: String },
    /// Nothing on this node: not allocated, not announced, or no interface of this
    /// node is in the announcement.
    None { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePlan {
    pub decision: Decision,
    /// What is odd about the service's request without making it fail (both
    /// annotation prefixes with different values, say).
    pub warnings: Vec<String>,
    pub election: Option<Election>,
    pub role: Role,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub services: BTreeMap<ServiceKey, ServicePlan>,
    /// The entries the datapath must hold.
    pub vips: BTreeMap<VipKey, VipConfig>,
    pub pools: BTreeMap<String, PoolUsage>,
}

/// Plans every service of `config` for this node, whose datapath runs on `interfaces`.
pub fn plan(config: &Config, options: &PlanOptions, interfaces: &[Interface]) -> Plan {
    let Allocations {
        decisions,
        mut warnings,
    } = match options.addresses {
        AddressSource::Allocate => allocate(config, &options.allocator),
        AddressSource::Status => from_status(config, &options.allocator),
    };
    let elections = elect(config, &decisions, &options.node_name, &options.election);
    let mut out = Plan {
        pools: pool_usage(config, &decisions),
        ..Plan::default()
    };
    for (key, decision) in decisions {
        let warnings = warnings.remove(&key).unwrap_or_default();
        let election = elections.get(&key).cloned();
        let role = match (&decision, &election) {
            (Decision::Ignored { reason }, _) => Role::None {
                reason: format!("ignored: {reason}"),
            },
            (Decision::Failed { reason }, _) => Role::None {
                reason: format!("allocation failed: {reason}"),
            },
            (_, None) => Role::None {
                reason: "not elected".into(),
            },
            (_, Some(Election::NotAnnounced { reason, .. })) => Role::None {
                reason: reason.clone(),
            },
            (
                _,
                Some(Election::Announced {
                    ips,
                    owner,
                    interfaces: wanted,
                    ..
                }),
            ) => role_for(
                ips,
                owner,
                wanted,
                &options.node_name,
                interfaces,
                &mut out.vips,
            ),
        };
        out.services.insert(
            key,
            ServicePlan {
                decision,
                warnings,
                election,
                role,
            },
        );
    }
    out
}

/// This node's part of an announcement, adding its VIP entries to `vips`.
fn role_for(
    ips: &[IpAddr],
    owner: &str,
    wanted: &Interfaces,
    this_node: &str,
    interfaces: &[Interface],
    vips: &mut BTreeMap<VipKey, VipConfig>,
) -> Role {
    let ours = owner == this_node;
    let on: Vec<&Interface> = interfaces
        .iter()
        .filter(|i| !ours || wanted.includes(&i.name))
        .collect();
    if on.is_empty() {
        return Role::None {
            reason: "none of this node's interfaces is in the announcement".into(),
        };
    }
    let action = if ours {
        VipAction::Answer
    } else {
        VipAction::Suppress
    };
    for iface in &on {
        for ip in ips {
            let key = VipKey {
                addr: *ip,
                ifindex: iface.ifindex,
                vlan_id: 0,
            };
            let config = VipConfig {
                mac: MacAddr(iface.mac),
                action,
            };
            // Two services sharing an address elect alike; should they not, answering
            // wins over suppressing.
            vips.entry(key)
                .and_modify(|existing| {
                    if action == VipAction::Answer {
                        *existing = config;
                    }
                })
                .or_insert(config);
        }
    }
    if ours {
        Role::Announce {
            interfaces: on.iter().map(|i| i.name.clone()).collect(),
        }
    } else {
        Role::Suppress {
            owner: owner.into(),
        }
    }
}

/// The interfaces the speaker attaches to: those named on the command line; else those
/// the L2Advertisements that may select this node name, and every up, non-loopback
/// interface when one of them names none. Returns the interfaces and the names that
/// do not exist on this host.
pub fn interfaces_to_attach(
    config: &Config,
    node_name: &str,
    explicit: &[String],
    host: &BTreeMap<String, Interface>,
) -> (Vec<Interface>, Vec<String>) {
    let usable = |i: &&Interface| i.up && !i.loopback;
    let named = |names: &BTreeSet<String>| {
        let found = names.iter().filter_map(|n| host.get(n)).cloned().collect();
        let missing = names
            .iter()
            .filter(|n| !host.contains_key(*n))
            .cloned()
            .collect();
        (found, missing)
    };
    if !explicit.is_empty() {
        return named(&explicit.iter().cloned().collect());
    }
    let labels = config
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node_name))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    let mine: Vec<_> = config
        .l2_advertisements
        .iter()
        .filter(|a| a.node_selectors.is_empty() || any_matches(&a.node_selectors, &labels))
        .collect();
    if mine.iter().any(|a| a.interfaces.is_empty()) {
        return (host.values().filter(usable).cloned().collect(), Vec::new());
    }
    named(
        &mine
            .iter()
            .flat_map(|a| a.interfaces.iter().cloned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        allocator::from_status,
        config::{ValidateOptions, file::parse, validate},
    };

    fn config(text: &str) -> Config {
        validate(&parse(text).expect("parses"), &ValidateOptions::default())
            .config
            .expect("valid")
    }

    fn iface(name: &str, ifindex: u32, up: bool, loopback: bool) -> Interface {
        Interface {
            name: name.into(),
            ifindex,
            mac: [2, 0, 0, 0, 0, ifindex as u8],
            up,
            loopback,
            multicast: true,
        }
    }

    fn host() -> BTreeMap<String, Interface> {
        [
            iface("lo", 1, true, true),
            iface("eth0", 2, true, false),
            iface("eth1", 3, true, false),
            iface("eth2", 4, false, false),
        ]
        .into_iter()
        .map(|i| (i.name.clone(), i))
        .collect()
    }

    const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/24, '2001:db8::/120']}\n";

    fn names(interfaces: &[Interface]) -> Vec<&str> {
        interfaces.iter().map(|i| i.name.as_str()).collect()
    }

    /// The Kubernetes speaker's plan (addresses from the status the controller wrote,
    /// endpoints as the API lists them, every node's speaker alive) equals the
    /// standalone plan of the same objects, when the file carries the EndpointSlices.
    #[test]
    fn standalone_and_kubernetes_mode_plan_the_same_objects_alike() {
        let ready = |service: &str, node: &str| {
            format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [10.1.0.1], conditions: {{ready: true}}, nodeName: {node}}}]\n"
            )
        };
        let service = |name: &str, spec: &str| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]{spec}}}\n"
            )
        };
        let text = POOL.to_string()
            + "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\n"
            + "---\napiVersion: v1\nkind: Node\nmetadata: {name: me}\n"
            + "---\napiVersion: v1\nkind: Node\nmetadata: {name: other}\n"
            + &service("web", "")
            + &ready("web", "other")
            + &service("local", ", externalTrafficPolicy: Local")
            + &ready("local", "me")
            + &service(
                "dual",
                ", ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]",
            )
            + &ready("dual", "other")
            + &service("idle", "")
            + "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: idle-1, labels: {kubernetes.io/service-name: idle}}\naddressType: IPv4\nendpoints: []\n";
        let host = host();
        let attached = [host["eth0"].clone()];
        for node in ["me", "other"] {
            let standalone = plan(
                &config(&text),
                &PlanOptions {
                    node_name: node.into(),
                    ..PlanOptions::default()
                },
                &attached,
            );
            // What the controller writes: the allocations, as status.
            let mut cluster = config(&text);
            for svc in &mut cluster.services {
                if let Some(ServicePlan {
                    decision: Decision::Allocated(a),
                    ..
                }) = standalone.services.get(&ServiceKey::of_service(svc))
                {
                    svc.status = Some(crate::allocator::status_with(&a.ips));
                }
            }
            let kubernetes = plan(
                &cluster,
                &PlanOptions {
                    node_name: node.into(),
                    addresses: AddressSource::Status,
                    election: ElectionContext {
                        live_nodes: Some(BTreeSet::from(["me".into(), "other".into()])),
                        endpoints: crate::election::EndpointRule::Observed,
                    },
                    ..PlanOptions::default()
                },
                &attached,
            );
            let roles = |p: &Plan| -> Vec<(String, Role)> {
                p.services
                    .iter()
                    .map(|(k, s)| (k.to_string(), s.role.clone()))
                    .collect()
            };
            assert_eq!(roles(&kubernetes), roles(&standalone), "{node}");
            assert_eq!(kubernetes.vips, standalone.vips, "{node}");
            // And the rules were exercised: the idle service is not announced, the
            // Local one only from its endpoint's node.
            let role = |name: &str| {
                standalone.services[&ServiceKey {
                    namespace: "default".into(),
                    name: name.into(),
                }]
                    .role
                    .clone()
            };
            assert!(
                matches!(role("idle"), Role::None { reason } if reason.contains("no endpoint"))
            );
            match (node, role("local")) {
                ("me", Role::Announce { .. }) | ("other", Role::Suppress { .. }) => {}
                (node, other) => panic!("{node}: local is {other:?}"),
            }
        }
    }

    /// Kubernetes mode takes the status as it is: never allocates.
    #[test]
    fn addresses_from_the_status_table() {
        let svc = |name: &str, spec: &str, status: &str| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]{spec}}}\nstatus: {{loadBalancer: {{ingress: [{status}]}}}}\n"
            )
        };
        let text = POOL.to_string()
            + &svc("kept", "", "{ip: 192.0.2.7}")
            + &svc(
                "dual",
                ", ipFamilyPolicy: PreferDualStack",
                "{ip: '2001:db8::5'}, {ip: 192.0.2.8}",
            )
            + &svc("none", "", "")
            + &svc("outside", "", "{ip: 198.51.100.1}")
            + &svc(
                "classy",
                ", loadBalancerClass: other.io/lb",
                "{ip: 192.0.2.9}",
            )
            + &svc("host", "", "{hostname: lb.example}");
        let decisions = from_status(&config(&text), &AllocatorOptions::default()).decisions;
        let shown = |name: &str| -> String {
            match &decisions[&ServiceKey {
                namespace: "default".into(),
                name: name.into(),
            }] {
                Decision::Allocated(a) => format!("{} {:?}", a.pool, a.ips),
                Decision::Failed { reason } => format!("failed: {reason}"),
                Decision::Ignored { reason } => format!("ignored: {reason}"),
            }
        };
        assert_eq!(shown("kept"), "p [192.0.2.7]");
        assert_eq!(shown("dual"), "p [192.0.2.8, 2001:db8::5]");
        assert_eq!(
            shown("none"),
            "ignored: no address in its status yet (the controller assigns it)"
        );
        assert_eq!(
            shown("host"),
            "ignored: no address in its status yet (the controller assigns it)"
        );
        assert_eq!(
            shown("outside"),
            "failed: its status address 198.51.100.1 is in no address pool (the controller will correct it)"
        );
        assert!(
            shown("classy").starts_with("ignored: spec.loadBalancerClass is \"other.io/lb\""),
            "{}",
            shown("classy")
        );
    }

    #[test]
    fn interfaces_to_attach_table() {
        let adv = |spec: &str| {
            format!(
                "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: a{}}}\nspec: {spec}\n",
                spec.len()
            )
        };
        let node = "---\napiVersion: v1\nkind: Node\nmetadata: {name: me, labels: {zone: east}}\n";
        /// (config, --interface, attached, missing)
        type Case = (
            String,
            Vec<&'static str>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            // (config, --interface, attached, missing)
            (
                POOL.to_string() + &adv("{}"),
                vec![],
                vec!["eth0", "eth1"],
                vec![],
            ),
            (
                POOL.to_string() + &adv("{interfaces: [eth1, eth9]}"),
                vec![],
                vec!["eth1"],
                vec!["eth9"],
            ),
            (
                POOL.to_string() + &adv("{interfaces: [eth1]}") + &adv("{}"),
                vec![],
                vec!["eth0", "eth1"],
                vec![],
            ),
            (
                POOL.to_string() + &adv("{interfaces: [eth1]}"),
                vec!["eth0", "lo"],
                vec!["eth0", "lo"],
                vec![],
            ),
            (
                POOL.to_string()
                    + node
                    + &adv("{interfaces: [eth0], nodeSelectors: [{matchLabels: {zone: west}}]}"),
                vec![],
                vec![],
                vec![],
            ),
            (
                POOL.to_string()
                    + node
                    + &adv("{interfaces: [eth0], nodeSelectors: [{matchLabels: {zone: east}}]}"),
                vec![],
                vec!["eth0"],
                vec![],
            ),
            (POOL.to_string(), vec![], vec![], vec![]),
        ];
        for (text, explicit, attached, missing) in cases {
            let explicit: Vec<String> = explicit.into_iter().map(String::from).collect();
            let (got, got_missing) = interfaces_to_attach(&config(&text), "me", &explicit, &host());
            assert_eq!(names(&got), attached, "{text}");
            assert_eq!(got_missing, missing, "{text}");
        }
    }

    #[test]
    fn plan_answers_on_the_owners_interfaces_and_suppresses_elsewhere() {
        // "me" is preferred, so it wins whatever the hash says; its advertisement names
        // eth1, the other node's names none: this node answers on eth1 only.
        let text = POOL.to_string()
            + "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: mine}\nspec: {interfaces: [eth1], nodeSelectors: [{matchLabels: {name: me}}], preferredNodeSelectors: [{weight: 50, preference: {matchLabels: {name: me}}}]}\n"
            + "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: theirs}\nspec: {nodeSelectors: [{matchLabels: {name: other}}]}\n"
            + "---\napiVersion: v1\nkind: Node\nmetadata: {name: me, labels: {name: me}}\n"
            + "---\napiVersion: v1\nkind: Node\nmetadata: {name: other, labels: {name: other}}\n"
            + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, annotations: {metallb.io/loadBalancerIPs: '192.0.2.7'}}\nspec: {type: LoadBalancer}\n";
        let cfg = config(&text);
        let host = host();
        let attached = [host["eth0"].clone(), host["eth1"].clone()];
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let web = ServiceKey {
            namespace: "default".into(),
            name: "web".into(),
        };

        let mine = plan(
            &cfg,
            &PlanOptions {
                node_name: "me".into(),
                ..Default::default()
            },
            &attached,
        );
        assert_eq!(
            mine.services[&web].role,
            Role::Announce {
                interfaces: vec!["eth1".into()]
            }
        );
        assert_eq!(
            mine.vips,
            BTreeMap::from([(
                VipKey {
                    addr: ip,
                    ifindex: 3,
                    vlan_id: 0
                },
                VipConfig {
                    mac: MacAddr([2, 0, 0, 0, 0, 3]),
                    action: VipAction::Answer
                }
            )])
        );

        let theirs = plan(
            &cfg,
            &PlanOptions {
                node_name: "other".into(),
                ..Default::default()
            },
            &attached,
        );
        assert_eq!(
            theirs.services[&web].role,
            Role::Suppress { owner: "me".into() }
        );
        let suppressed: Vec<(u32, VipAction)> = theirs
            .vips
            .iter()
            .map(|(k, c)| (k.ifindex, c.action))
            .collect();
        assert_eq!(
            suppressed,
            [(2, VipAction::Suppress), (3, VipAction::Suppress)],
            "every attached interface"
        );
    }
}
