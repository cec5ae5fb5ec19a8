//! What each component may ask of the Kubernetes API: ONE table, from which the RBAC
//! objects of `deploy/rbac.yaml` are generated (`metallb rbac`), and against which the
//! tests check every request the code makes through the test API server (nothing it
//! does is refused, nothing the table grants goes unused).
//!
//! A rule is either cluster-wide (a ClusterRole, bound by a ClusterRoleBinding) or
//! limited to MetalLB's own namespace (a Role there, bound by a RoleBinding). The names
//! are MetalLB's: ServiceAccounts `controller` and `speaker`, ClusterRoles
//! `metallb-system:controller` and `metallb-system:speaker`; the Roles are named after
//! their component (MetalLB shares one, `pod-lister`, between both).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::ServiceAccount,
        rbac::v1::{
            ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
        },
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use serde::Serialize;

use super::{certs, memberlist_secret};

/// Where a rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace and the cluster-scoped resources (ClusterRole).
    Cluster,
    /// MetalLB's namespace only (Role).
    Namespace,
}

/// One line of the table: these verbs on these resources of one API group.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub api_group: &'static str,
    /// As RBAC names them: `services`, or `services/status` for a subresource.
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub scope: Scope,
    /// When not empty, only the objects of these names.
    pub resource_names: &'static [&'static str],
    /// The code that makes these calls (for people reading the table).
    pub used_by: &'static str,
}

/// A component: its ServiceAccount (and Role, binding) name and its rules.
#[derive(Clone, Copy, Debug)]
pub struct Component {
    pub name: &'static str,
    pub rules: &'static [Rule],
}

const fn rule(
    api_group: &'static str,
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
    scope: Scope,
    used_by: &'static str,
) -> Rule {
    Rule {
        api_group,
        resources,
        verbs,
        scope,
        resource_names: &[],
        used_by,
    }
}

/// A rule limited to the objects named `names` (RBAC cannot limit `create` or `list`
/// by name: those need a rule of their own).
const fn named(
    api_group: &'static str,
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
    scope: Scope,
    names: &'static [&'static str],
    used_by: &'static str,
) -> Rule {
    Rule {
        resource_names: names,
        ..rule(api_group, resources, verbs, scope, used_by)
    }
}

/// `metallb controller`: the allocator, its Lease, the webhooks and their certificates
/// (as deployed: `--webhook-cert-secret metallb-webhook-cert`).
pub const CONTROLLER: Component = Component {
    name: "controller",
    rules: &[
        rule(
            "",
            &["services"],
            &["get", "list", "watch", "patch"],
            Scope::Cluster,
            "controller.rs: the Service watch; the pool annotation (merge patch); a \
             Service read again after a 409",
        ),
        rule(
            "",
            &["services/status"],
            &["patch"],
            Scope::Cluster,
            "controller.rs: status.loadBalancer.ingress",
        ),
        rule(
            "",
            &["namespaces"],
            &["list", "watch"],
            Scope::Cluster,
            "controller.rs: the namespace selectors of serviceAllocation",
        ),
        rule(
            "events.k8s.io",
            &["events"],
            &["list", "create", "patch"],
            Scope::Cluster,
            "controller.rs: Events on Services and pools (kube's Recorder patches a \
             repeated one); the AllocationFailed Events of earlier runs, listed once at \
             the first decision so that a restart does not repeat them",
        ),
        rule(
            "metallb.io",
            &["ipaddresspools"],
            &["list", "watch"],
            Scope::Namespace,
            "controller.rs and webhook.rs: the pool watches",
        ),
        rule(
            "metallb.io",
            &["ipaddresspools/status"],
            &["patch"],
            Scope::Namespace,
            "controller.rs: the pools' assigned and available counts",
        ),
        rule(
            "metallb.io",
            &["l2advertisements", "bgppeers", "communities"],
            &["list", "watch"],
            Scope::Namespace,
            "webhook.rs: what an admission is checked against (advertisements; the \
             BGPPeers naming a BFDProfile to delete; the Community aliases)",
        ),
        named(
            "",
            &["secrets"],
            &["get", "patch"],
            Scope::Namespace,
            &[certs::DEFAULT_SECRET],
            "certs.rs: the webhook's CA and certificate, read and renewed (the version \
             read in each patch)",
        ),
        rule(
            "",
            &["secrets"],
            &["create"],
            Scope::Namespace,
            "certs.rs and memberlist_secret.rs: the webhook's certificate Secret and the \
             speakers' memberlist Secret, made when missing",
        ),
        named(
            "",
            &["secrets"],
            &["get"],
            Scope::Namespace,
            &[memberlist_secret::DEFAULT_SECRET],
            "memberlist_secret.rs: whether the speakers' membership key exists \
             (--ml-secret-name)",
        ),
        named(
            "apps",
            &["deployments"],
            &["get"],
            Scope::Namespace,
            &[memberlist_secret::DEFAULT_DEPLOYMENT],
            "memberlist_secret.rs: the controller's Deployment, made the memberlist \
             Secret's owner (--deployment)",
        ),
        named(
            "admissionregistration.k8s.io",
            &["validatingwebhookconfigurations"],
            &["get", "patch"],
            Scope::Cluster,
            &[certs::WEBHOOK_CONFIGURATION],
            "certs.rs: the caBundle of every webhook",
        ),
        named(
            "apiextensions.k8s.io",
            &["customresourcedefinitions"],
            &["get", "patch"],
            Scope::Cluster,
            &[certs::CONVERSION_CRD],
            "certs.rs: the caBundle of the BGPPeer conversion webhook",
        ),
        rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update"],
            Scope::Namespace,
            "leader.rs: the leader election (--lease-name, so not restricted by name)",
        ),
    ],
};

/// `metallb speaker` in Kubernetes mode (without --config).
pub const SPEAKER: Component = Component {
    name: "speaker",
    rules: &[
        rule(
            "",
            &["services", "nodes", "namespaces"],
            &["get", "list", "watch"],
            Scope::Cluster,
            "the speaker's source: the Services' addresses, node selectors and \
             conditions, namespace selectors",
        ),
        rule(
            "discovery.k8s.io",
            &["endpointslices"],
            &["get", "list", "watch"],
            Scope::Cluster,
            "the speaker's source: ready endpoints, externalTrafficPolicy: Local",
        ),
        rule(
            "events.k8s.io",
            &["events"],
            &["create", "patch"],
            Scope::Cluster,
            "the speaker: nodeAssigned on the Service; bgpConfigNotApplied and \
             bgpConfigApplied on its Pod",
        ),
        rule(
            "",
            &["pods"],
            &["get", "list", "watch"],
            Scope::Namespace,
            "the speaker: the live members, the Ready speaker Pods; on SIGTERM, its own \
             Pod (lifecycle.rs: is it being replaced?)",
        ),
        rule(
            "",
            &["configmaps"],
            &["list", "watch"],
            Scope::Namespace,
            "the speaker: metallb-excludel2, the interfaces never announced on",
        ),
        rule(
            "metallb.io",
            &[
                "l2advertisements",
                "ipaddresspools",
                "bgppeers",
                "bgpadvertisements",
                "bfdprofiles",
                "communities",
            ],
            &["list", "watch"],
            Scope::Namespace,
            "the speaker's source: the configuration",
        ),
        rule(
            "",
            &["secrets"],
            &["list", "watch"],
            Scope::Namespace,
            "the speaker's source: the BGPPeers' passwordSecret (basic-auth Secrets of \
             MetalLB's namespace only; RBAC cannot limit a watch to the names the peers give)",
        ),
        rule(
            "metallb.io",
            &["servicel2statuses"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
            Scope::Namespace,
            "the speaker: a ServiceL2Status per Service this node announces",
        ),
        rule(
            "metallb.io",
            &["servicel2statuses/status"],
            &["patch"],
            Scope::Namespace,
            "the speaker: a ServiceL2Status's node, service and interfaces",
        ),
        rule(
            "metallb.io",
            &["servicebgpstatuses"],
            &["list", "create", "delete"],
            Scope::Namespace,
            "the speaker: a ServiceBGPStatus per Service this node announces over BGP",
        ),
        rule(
            "metallb.io",
            &["servicebgpstatuses/status"],
            &["patch"],
            Scope::Namespace,
            "the speaker: a ServiceBGPStatus's node, service and peers",
        ),
        rule(
            "apps",
            &["daemonsets"],
            &["get"],
            Scope::Namespace,
            "the speaker on SIGTERM (lifecycle.rs): its DaemonSet still there (a rolling \
             update: keep the datapath) or gone or being deleted (an uninstall: remove it)",
        ),
    ],
};

pub const COMPONENTS: &[Component] = &[CONTROLLER, SPEAKER];

/// One API request as the API server's authorizer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub api_group: &'a str,
    /// The resource's plural name, without its subresource.
    pub resource: &'a str,
    /// `status`, or empty.
    pub subresource: &'a str,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: &'a str,
    /// `None` for a cluster-scoped object or a list across every namespace.
    pub namespace: Option<&'a str>,
    /// `None` for a collection (list, watch, create).
    pub name: Option<&'a str>,
}

impl Request<'_> {
    /// The resource as RBAC names it: `services/status`.
    pub fn rbac_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

impl Rule {
    /// Whether this rule lets `request` through when MetalLB runs in `namespace`, as
    /// Kubernetes' RBAC authorizer decides.
    pub fn allows(&self, request: &Request<'_>, namespace: &str) -> bool {
        let in_scope = match self.scope {
            Scope::Cluster => true,
            Scope::Namespace => request.namespace == Some(namespace),
        };
        let resource = request.rbac_resource();
        // A rule naming objects cannot allow a request that names none (list, create).
        let named = self.resource_names.is_empty()
            || request
                .name
                .is_some_and(|name| self.resource_names.contains(&name));
        in_scope
            && self.api_group == request.api_group
            && self.resources.contains(&resource.as_str())
            && self.verbs.contains(&request.verb)
            && named
    }
}

impl Component {
    /// The ServiceAccount's user name in MetalLB's `namespace`, as the API server
    /// authenticates the Pods.
    pub fn user(&self, namespace: &str) -> String {
        format!("system:serviceaccount:{namespace}:{}", self.name)
    }

    /// The first rule that allows `request`, if any.
    pub fn allowing(&self, request: &Request<'_>, namespace: &str) -> Option<&'static Rule> {
        self.rules
            .iter()
            .find(|rule| rule.allows(request, namespace))
    }

    fn policy_rules(&self, scope: Scope) -> Vec<PolicyRule> {
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        self.rules
            .iter()
            .filter(|rule| rule.scope == scope)
            .map(|rule| PolicyRule {
                api_groups: Some(vec![rule.api_group.to_owned()]),
                resources: Some(strings(rule.resources)),
                verbs: strings(rule.verbs),
                resource_names: (!rule.resource_names.is_empty())
                    .then(|| strings(rule.resource_names)),
                non_resource_urls: None,
            })
            .collect()
    }
}

/// One generated object (they serialize with their apiVersion and kind).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    ServiceAccount(ServiceAccount),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
}

fn metadata(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(BTreeMap::from([("app".to_owned(), "metallb".to_owned())])),
        ..ObjectMeta::default()
    }
}

/// Every component's ServiceAccount, roles and bindings for MetalLB in `namespace`.
pub fn objects(namespace: &str) -> Vec<Object> {
    let mut objects = Vec::new();
    for component in COMPONENTS {
        let subjects = Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: component.name.into(),
            namespace: Some(namespace.into()),
            api_group: None,
        }]);
        let role_ref = |kind: &str, name: &str| RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: kind.into(),
            name: name.into(),
        };
        objects.push(Object::ServiceAccount(ServiceAccount {
            metadata: metadata(component.name, Some(namespace)),
            ..ServiceAccount::default()
        }));
        let cluster_rules = component.policy_rules(Scope::Cluster);
        if !cluster_rules.is_empty() {
            let name = format!("{namespace}:{}", component.name);
            objects.push(Object::ClusterRole(ClusterRole {
                metadata: metadata(&name, None),
                rules: Some(cluster_rules),
                aggregation_rule: None,
            }));
            objects.push(Object::ClusterRoleBinding(ClusterRoleBinding {
                metadata: metadata(&name, None),
                role_ref: role_ref("ClusterRole", &name),
                subjects: subjects.clone(),
            }));
        }
        let namespaced_rules = component.policy_rules(Scope::Namespace);
        if !namespaced_rules.is_empty() {
            objects.push(Object::Role(Role {
                metadata: metadata(component.name, Some(namespace)),
                rules: Some(namespaced_rules),
            }));
            objects.push(Object::RoleBinding(RoleBinding {
                metadata: metadata(component.name, Some(namespace)),
                role_ref: role_ref("Role", component.name),
                subjects,
            }));
        }
    }
    objects
}

/// [`objects`] as one multi-document YAML, the content of `deploy/rbac.yaml`.
pub fn manifests(namespace: &str) -> Result<String, serde_yaml_ng::Error> {
    let mut text = String::from(
        "# Generated by `metallb rbac` from metallb-user/src/kubernetes/rbac.rs: edit the\n\
         # table there, then `UPDATE_RBAC=1 cargo test -p metallb-user --test deploy`.\n",
    );
    for object in objects(namespace) {
        text.push_str("---\n");
        text.push_str(&serde_yaml_ng::to_string(&object)?);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "metallb-system";

    fn request<'a>(
        api_group: &'a str,
        resource: &'a str,
        subresource: &'a str,
        verb: &'a str,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            api_group,
            resource,
            subresource,
            verb,
            namespace,
            name,
        }
    }

    #[test]
    fn a_rule_allows_as_the_rbac_authorizer_does() {
        let cluster = rule("", &["services"], &["get", "list"], Scope::Cluster, "");
        let namespaced = rule(
            "metallb.io",
            &["ipaddresspools/status"],
            &["patch"],
            Scope::Namespace,
            "",
        );
        let named = Rule {
            resource_names: &["bgppeers.metallb.io"],
            ..rule(
                "apiextensions.k8s.io",
                &["customresourcedefinitions"],
                &["get", "patch", "list"],
                Scope::Cluster,
                "",
            )
        };
        let cases: &[(&Rule, Request<'_>, bool, &str)] = &[
            (
                &cluster,
                request("", "services", "", "list", None, None),
                true,
                "list across namespaces",
            ),
            (
                &cluster,
                request("", "services", "", "get", Some("web"), Some("a")),
                true,
                "get in any namespace",
            ),
            (
                &cluster,
                request("", "services", "", "patch", Some("web"), Some("a")),
                false,
                "verb not granted",
            ),
            (
                &cluster,
                request("", "services", "status", "get", Some("web"), Some("a")),
                false,
                "a subresource is its own resource",
            ),
            (
                &cluster,
                request("apps", "services", "", "get", Some("web"), Some("a")),
                false,
                "another group",
            ),
            (
                &namespaced,
                request(
                    "metallb.io",
                    "ipaddresspools",
                    "status",
                    "patch",
                    Some(NS),
                    Some("p"),
                ),
                true,
                "in MetalLB's namespace",
            ),
            (
                &namespaced,
                request(
                    "metallb.io",
                    "ipaddresspools",
                    "status",
                    "patch",
                    Some("web"),
                    Some("p"),
                ),
                false,
                "in another namespace",
            ),
            (
                &namespaced,
                request(
                    "metallb.io",
                    "ipaddresspools",
                    "status",
                    "patch",
                    None,
                    Some("p"),
                ),
                false,
                "cluster-wide",
            ),
            (
                &namespaced,
                request(
                    "metallb.io",
                    "ipaddresspools",
                    "",
                    "patch",
                    Some(NS),
                    Some("p"),
                ),
                false,
                "the object, not its status",
            ),
            (
                &named,
                request(
                    "apiextensions.k8s.io",
                    "customresourcedefinitions",
                    "",
                    "get",
                    None,
                    Some("bgppeers.metallb.io"),
                ),
                true,
                "the named object",
            ),
            (
                &named,
                request(
                    "apiextensions.k8s.io",
                    "customresourcedefinitions",
                    "",
                    "get",
                    None,
                    Some("ipaddresspools.metallb.io"),
                ),
                false,
                "another object",
            ),
            (
                &named,
                request(
                    "apiextensions.k8s.io",
                    "customresourcedefinitions",
                    "",
                    "list",
                    None,
                    None,
                ),
                false,
                "a list names no object",
            ),
        ];
        for (rule, request, allowed, why) in cases {
            assert_eq!(rule.allows(request, NS), *allowed, "{why}: {request:?}");
        }
    }

    #[test]
    fn every_component_gets_an_account_and_its_rules_split_by_scope() {
        let objects = objects(NS);
        let names: Vec<String> = objects
            .iter()
            .map(|object| {
                let value = serde_json::to_value(object).unwrap();
                format!(
                    "{} {}",
                    value["kind"].as_str().unwrap(),
                    value["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "ServiceAccount controller",
                "ClusterRole metallb-system:controller",
                "ClusterRoleBinding metallb-system:controller",
                "Role controller",
                "RoleBinding controller",
                "ServiceAccount speaker",
                "ClusterRole metallb-system:speaker",
                "ClusterRoleBinding metallb-system:speaker",
                "Role speaker",
                "RoleBinding speaker",
            ]
        );
        let Object::Role(role) = &objects[3] else {
            panic!("{:?}", objects[3]);
        };
        assert_eq!(role.metadata.namespace.as_deref(), Some(NS));
        let rules = role.rules.as_ref().unwrap();
        assert_eq!(rules.len(), 8);
        assert_eq!(
            rules[1].resources.as_deref(),
            Some(&["ipaddresspools/status".to_owned()][..])
        );
        assert_eq!(rules[1].verbs, ["patch"]);
        // The webhook's Secret by name; its creation cannot be limited so.
        assert_eq!(
            rules[3].resource_names.as_deref(),
            Some(&["metallb-webhook-cert".to_owned()][..])
        );
        assert_eq!(rules[4].verbs, ["create"]);
        assert_eq!(rules[4].resource_names, None);
        // The speakers' memberlist Secret: read by name only.
        assert_eq!(
            rules[5].resource_names.as_deref(),
            Some(&["memberlist".to_owned()][..])
        );
        assert_eq!(rules[5].verbs, ["get"]);
        // Its owner, the controller's Deployment: read by name only.
        assert_eq!(
            rules[6].resources.as_deref(),
            Some(&["deployments".to_owned()][..])
        );
        assert_eq!(
            rules[6].resource_names.as_deref(),
            Some(&["controller".to_owned()][..])
        );
        assert_eq!(rules[6].verbs, ["get"]);
        let Object::ClusterRoleBinding(binding) = &objects[2] else {
            panic!("{:?}", objects[2]);
        };
        assert_eq!(binding.role_ref.name, "metallb-system:controller");
        assert_eq!(
            binding.subjects.as_ref().unwrap()[0].namespace.as_deref(),
            Some(NS)
        );
    }

    #[test]
    fn verbs_are_kubernetes_verbs_and_no_rule_repeats_another() {
        const VERBS: &[&str] = &[
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        ];
        for component in COMPONENTS {
            let mut seen = std::collections::BTreeSet::new();
            for rule in component.rules {
                assert!(
                    !rule.used_by.is_empty(),
                    "{}: {rule:?} says nothing of its use",
                    component.name
                );
                for verb in rule.verbs {
                    assert!(VERBS.contains(verb), "{}: verb {verb}", component.name);
                    for resource in rule.resources {
                        assert!(
                            // The same verb on other named objects is no repeat.
                            seen.insert((
                                rule.api_group,
                                *resource,
                                *verb,
                                rule.scope == Scope::Cluster,
                                rule.resource_names,
                            )),
                            "{}: {verb} {resource} granted twice",
                            component.name
                        );
                    }
                }
            }
        }
    }
}
