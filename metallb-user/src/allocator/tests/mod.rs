//! Table tests: each case is a configuration (pools, namespaces, services with their
//! annotations and status, as YAML) and the exact decision expected for the services
//! it names, with their warnings. Every case is also run twice (same result), again
//! as after a restart: with the statuses of the first run and the services listed in
//! reverse order (same result again), and through the incremental path a controller
//! takes (same result again).
//!
//! Then MetalLB's own tests whose outcome depends on order, sharing, pools,
//! dual-stack or status keeping, ported from `internal/allocator/allocator_test.go`
//! and `controller/controller_test.go`: as table cases where one service is decided
//! at a time, and as sequences of steps on one [`Allocator`] where MetalLB's test
//! drives its allocator through assignments, releases and pool changes.

mod kubernetes_parity;
mod metallb;
mod properties;

use super::*;
use crate::config::{
    Service,
    file::parse,
    validate::{ValidateOptions, validate},
};

/// The configuration of `yaml`, its Services taken as written: the allocator must cope
/// with Services that the API server (and so `validate`) would refuse, too.
fn config_of(yaml: &str) -> Config {
    let mut file = parse(yaml).unwrap_or_else(|e| panic!("{yaml}\ndoes not parse: {e:#?}"));
    let services = std::mem::take(&mut file.services);
    file.service_issues = Default::default();
    let validation = validate(&file, &ValidateOptions::default());
    let mut config = validation
        .config
        .unwrap_or_else(|| panic!("{yaml}\nis not valid: {:#?}", validation.errors));
    config.services = services;
    config
}

/// An IPAddressPool; `spec` is the inside of a YAML flow mapping.
fn pool(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {{{spec}}}\n"
    )
}

fn namespace(name: &str, labels: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n"
    )
}

/// A Service under construction: `type: LoadBalancer` unless told otherwise.
#[derive(Clone)]
struct Svc {
    namespace: Option<String>,
    name: String,
    kind: Option<String>,
    annotations: Vec<(String, String)>,
    labels: Vec<(String, String)>,
    spec: Vec<String>,
    status: Option<String>,
    created: Option<String>,
}

/// `name` or `namespace/name`.
fn svc(key: &str) -> Svc {
    let (namespace, name) = match key.split_once('/') {
        Some((namespace, name)) => (Some(namespace.to_owned()), name.to_owned()),
        None => (None, key.to_owned()),
    };
    Svc {
        namespace,
        name,
        kind: Some("LoadBalancer".into()),
        annotations: Vec::new(),
        labels: Vec::new(),
        spec: Vec::new(),
        status: None,
        created: None,
    }
}

impl Svc {
    fn ann(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.into(), value.into()));
        self
    }
    fn pool(self, name: &str) -> Self {
        self.ann("metallb.io/address-pool", name)
    }
    fn ips(self, ips: &str) -> Self {
        self.ann("metallb.io/loadBalancerIPs", ips)
    }
    fn share(self, key: &str) -> Self {
        self.ann("metallb.io/allow-shared-ip", key)
    }
    fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }
    /// One entry of the spec's flow mapping, e.g. `ipFamilyPolicy: RequireDualStack`.
    fn spec(mut self, entry: &str) -> Self {
        self.spec.push(entry.into());
        self
    }
    fn kind(mut self, kind: Option<&str>) -> Self {
        self.kind = kind.map(Into::into);
        self
    }
    fn v6(self) -> Self {
        self.spec("ipFamilies: [IPv6]")
    }
    fn require(self) -> Self {
        self.spec("ipFamilyPolicy: RequireDualStack")
    }
    fn prefer(self) -> Self {
        self.spec("ipFamilyPolicy: PreferDualStack")
    }
    /// Space-separated `PROTO/port`.
    fn ports(self, ports: &str) -> Self {
        let entries: Vec<String> = ports
            .split_whitespace()
            .map(|p| {
                let (protocol, port) = p.split_once('/').expect("PROTO/port");
                format!("{{port: {port}, protocol: {protocol}}}")
            })
            .collect();
        self.spec(&format!("ports: [{}]", entries.join(", ")))
    }
    /// `externalTrafficPolicy: Local` selecting `selector` (a flow mapping's inside).
    fn local(self, selector: &str) -> Self {
        self.spec("externalTrafficPolicy: Local")
            .spec(&format!("selector: {{{selector}}}"))
    }
    fn status(mut self, ips: &[&str]) -> Self {
        let ingress: Vec<String> = ips.iter().map(|ip| format!("{{ip: {ip:?}}}")).collect();
        self.status = Some(format!(
            "{{loadBalancer: {{ingress: [{}]}}}}",
            ingress.join(", ")
        ));
        self
    }
    fn raw_status(mut self, status: &str) -> Self {
        self.status = Some(status.into());
        self
    }
    /// `metadata.creationTimestamp`, RFC 3339.
    fn created(mut self, at: &str) -> Self {
        self.created = Some(at.into());
        self
    }
    /// `namespace/name` or `name`, as [`key`] reads it.
    fn key_text(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{namespace}/{}", self.name),
            None => self.name.clone(),
        }
    }
    fn service(&self) -> Service {
        let yaml = self.y();
        parse(&yaml)
            .unwrap_or_else(|e| panic!("{yaml}\ndoes not parse: {e:#?}"))
            .services
            .remove(0)
    }
    fn y(&self) -> String {
        let pairs = |pairs: &[(String, String)]| {
            pairs
                .iter()
                .map(|(k, v)| format!("{k:?}: {v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut meta = vec![format!("name: {}", self.name)];
        if let Some(namespace) = &self.namespace {
            meta.push(format!("namespace: {namespace}"));
        }
        if let Some(created) = &self.created {
            meta.push(format!("creationTimestamp: {created:?}"));
        }
        if !self.annotations.is_empty() {
            meta.push(format!("annotations: {{{}}}", pairs(&self.annotations)));
        }
        if !self.labels.is_empty() {
            meta.push(format!("labels: {{{}}}", pairs(&self.labels)));
        }
        let mut spec = self
            .kind
            .iter()
            .map(|kind| format!("type: {kind}"))
            .collect::<Vec<_>>();
        spec.extend(self.spec.iter().cloned());
        let mut text = format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{{}}}\nspec: {{{}}}\n",
            meta.join(", "),
            spec.join(", ")
        );
        if let Some(status) = &self.status {
            text += &format!("status: {status}\n");
        }
        text
    }
}

#[derive(Clone, Copy, Debug)]
enum Want {
    /// Pool and comma-separated addresses, exactly.
    Got(&'static str, &'static str),
    /// A fragment of the reason.
    Fails(&'static str),
    Ignored(&'static str),
}
use Want::*;

struct Case {
    name: &'static str,
    yaml: String,
    class: Option<&'static str>,
    want: Vec<(&'static str, Want)>,
    /// (service, fragment of its one warning); services not listed have none.
    warns: Vec<(&'static str, &'static str)>,
}

fn case(name: &'static str, objects: &[String], want: &[(&'static str, Want)]) -> Case {
    Case {
        name,
        yaml: objects.concat(),
        class: None,
        want: want.to_vec(),
        warns: Vec::new(),
    }
}

impl Case {
    fn class(mut self, class: &'static str) -> Self {
        self.class = Some(class);
        self
    }
    fn warns(mut self, service: &'static str, fragment: &'static str) -> Self {
        self.warns.push((service, fragment));
        self
    }
}

fn key(text: &str) -> ServiceKey {
    let (namespace, name) = text.split_once('/').unwrap_or(("default", text));
    ServiceKey {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn ip_list(text: &str) -> Vec<IpAddr> {
    text.split(',')
        .map(|ip| ip.trim().parse().expect("test address"))
        .collect()
}

fn check(case: &str, decisions: &BTreeMap<ServiceKey, Decision>, service: &str, want: Want) {
    let got = decisions
        .get(&key(service))
        .unwrap_or_else(|| panic!("{case}: no decision for {service}"));
    check_one(case, service, got, want);
}

fn check_one(case: &str, service: &str, got: &Decision, want: Want) {
    match (want, got) {
        (Got(pool, ips), got) => {
            let want = Decision::Allocated(Allocation {
                pool: pool.into(),
                ips: ip_list(ips),
            });
            assert_eq!(got, &want, "{case}: {service}");
        }
        (Fails(fragment), Decision::Failed { reason })
        | (Ignored(fragment), Decision::Ignored { reason }) => {
            assert!(
                reason.contains(fragment),
                "{case}: {service}: reason {reason:?} lacks {fragment:?}"
            );
        }
        (want, got) => panic!("{case}: {service}: want {want:?}, got {got:?}"),
    }
}

fn set_status(service: &mut Service, ips: &[IpAddr]) {
    service.status = Some(status_with(ips));
}

/// `config` as a restarted controller sees it: what it allocated is in the statuses,
/// what failed has none, and the services come in another order.
fn restarted(config: &Config, decisions: &BTreeMap<ServiceKey, Decision>) -> Config {
    let mut config = config.clone();
    for service in &mut config.services {
        match decisions.get(&ServiceKey::of_service(service)) {
            Some(Decision::Allocated(allocation)) => set_status(service, &allocation.ips),
            Some(Decision::Failed { .. }) => set_status(service, &[]),
            _ => {}
        }
    }
    config.services.reverse();
    config
}

/// The path of a controller that starts on the services carrying a status (as it
/// finds them in a cluster) and then sees the others created one after the other,
/// in the shared order; then every service is changed (assigned again) in reverse
/// order with the status it was given, and the pools are set again unchanged:
/// nothing may move. Returns the decisions and the allocator.
fn incremental(config: &Config, options: &AllocatorOptions) -> BTreeMap<ServiceKey, Decision> {
    let mut allocator = Allocator::new(config, options.clone());
    let (existing, created): (Vec<&Service>, Vec<&Service>) = allocation_order(&config.services)
        .into_iter()
        .map(|i| &config.services[i])
        .partition(|service| has_status_address(service));
    let existing: Vec<Service> = existing.into_iter().cloned().collect();
    let mut decisions = allocator.assign_all(&existing).decisions;
    for service in created {
        let decision = allocator.assign(service).decision;
        decisions.insert(ServiceKey::of_service(service), decision);
    }
    for service in config.services.iter().rev() {
        let key = ServiceKey::of_service(service);
        let mut changed = service.clone();
        if let Some(Decision::Allocated(allocation)) = decisions.get(&key) {
            set_status(&mut changed, &allocation.ips);
        }
        assert_eq!(
            Some(&allocator.assign(&changed).decision),
            decisions.get(&key),
            "{key} assigned again"
        );
    }
    let usage = allocator.usage();
    assert_eq!(allocator.set_config(config), Vec::<ServiceKey>::new());
    assert_eq!(allocator.usage(), usage);
    for (key, decision) in &decisions {
        let held = match decision {
            Decision::Allocated(allocation) => Some(allocation),
            _ => None,
        };
        assert_eq!(allocator.allocation(key), held, "{key} after set_config");
    }
    assert_eq!(usage, pool_usage(config, &decisions));
    decisions
}

fn run(case: &Case) {
    let config = config_of(&case.yaml);
    let options = AllocatorOptions {
        load_balancer_class: case.class.map(Into::into),
    };
    let Allocations {
        decisions,
        warnings,
    } = allocate(&config, &options);
    assert_eq!(
        decisions.len(),
        config.services.len(),
        "{}: one decision per service",
        case.name
    );
    for (service, want) in &case.want {
        check(case.name, &decisions, service, *want);
    }
    let warned: Vec<(ServiceKey, usize)> =
        warnings.iter().map(|(k, w)| (k.clone(), w.len())).collect();
    let want_warned: Vec<(ServiceKey, usize)> =
        case.warns.iter().map(|(s, _)| (key(s), 1)).collect();
    assert_eq!(warned, want_warned, "{}: warnings {warnings:#?}", case.name);
    for (service, fragment) in &case.warns {
        let warning = &warnings[&key(service)][0];
        assert!(
            warning.contains(fragment),
            "{}: {service}: warning {warning:?} lacks {fragment:?}",
            case.name
        );
    }
    assert_eq!(
        allocate(&config, &options).decisions,
        decisions,
        "{}: same input, same output",
        case.name
    );
    let again = allocate(&restarted(&config, &decisions), &options).decisions;
    assert_eq!(
        again, decisions,
        "{}: a restart changed the result",
        case.name
    );
    assert_eq!(
        incremental(&config, &options),
        decisions,
        "{}: the incremental path disagrees with the batch",
        case.name
    );
}

const A: &str = "addresses: [10.0.0.0/30]";
const B: &str = "addresses: [10.0.1.0/30]";
/// IPv4 and IPv6, the IPv6 range listed first.
const MIXED: &str = "addresses: [2001:db8::-2001:db8::3, 10.0.0.0/30]";

fn scope_cases() -> Vec<Case> {
    vec![
        case(
            "a ClusterIP service is ignored and holds nothing",
            &[pool("a", A), svc("x").kind(Some("ClusterIP")).status(&["10.0.0.0"]).y(), svc("y").y()],
            &[("x", Ignored("spec.type is ClusterIP, not LoadBalancer")), ("y", Got("a", "10.0.0.0"))],
        ),
        case(
            "no spec.type means ClusterIP",
            &[pool("a", A), svc("x").kind(None).y()],
            &[("x", Ignored("spec.type is ClusterIP, not LoadBalancer"))],
        ),
        case(
            "a NodePort service is ignored",
            &[pool("a", A), svc("x").kind(Some("NodePort")).y()],
            &[("x", Ignored("spec.type is NodePort"))],
        ),
        case(
            "a controller without class ignores services with one",
            &[pool("a", A), svc("x").spec("loadBalancerClass: other.io/lb").y(), svc("y").y()],
            &[
                (
                    "x",
                    Ignored("spec.loadBalancerClass is \"other.io/lb\", and this controller handles only services without a class"),
                ),
                ("y", Got("a", "10.0.0.0")),
            ],
        ),
        case(
            "a controller with a class ignores services without one",
            &[pool("a", A), svc("x").y(), svc("y").spec("loadBalancerClass: metallb.io/lb").y()],
            &[
                ("x", Ignored("no spec.loadBalancerClass, and this controller handles only class \"metallb.io/lb\"")),
                ("y", Got("a", "10.0.0.0")),
            ],
        )
        .class("metallb.io/lb"),
        case(
            "a controller with a class ignores other classes",
            &[pool("a", A), svc("x").spec("loadBalancerClass: other.io/lb").y()],
            &[("x", Ignored("spec.loadBalancerClass is \"other.io/lb\", and this controller handles only class \"metallb.io/lb\""))],
        )
        .class("metallb.io/lb"),
    ]
}

fn pick_cases() -> Vec<Case> {
    vec![
        case(
            "the lowest address, .0 included",
            &[pool("a", A), svc("x").y()],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "services are served in listed order, not by name",
            &[pool("a", A), svc("other/a").y(), svc("b").y(), svc("a").y()],
            &[
                ("other/a", Got("a", "10.0.0.0")),
                ("b", Got("a", "10.0.0.1")),
                ("a", Got("a", "10.0.0.2")),
            ],
        ),
        case(
            "listed range order beats numeric order",
            &[
                pool("a", "addresses: [10.0.1.0/31, 10.0.0.0/31]"),
                svc("x").y(),
                svc("y").y(),
                svc("z").y(),
            ],
            &[
                ("x", Got("a", "10.0.1.0")),
                ("y", Got("a", "10.0.1.1")),
                ("z", Got("a", "10.0.0.0")),
            ],
        ),
        case(
            "a range is walked from its first address",
            &[
                pool("a", "addresses: [10.0.0.7-10.0.0.9]"),
                svc("x").y(),
                svc("y").y(),
            ],
            &[("x", Got("a", "10.0.0.7")), ("y", Got("a", "10.0.0.8"))],
        ),
        case(
            "an IPv6 address ending in :: is ordinary in a range",
            &[
                pool("a", "addresses: [2001:db8::-2001:db8::3]"),
                svc("x").v6().y(),
            ],
            &[("x", Got("a", "2001:db8::"))],
        ),
        case(
            "an IPv6 CIDR never hands out its subnet-router anycast address",
            &[
                pool("a", "addresses: [2001:db8::/126]"),
                svc("x").v6().y(),
                svc("y").v6().ips("2001:db8::").y(),
            ],
            &[
                ("x", Got("a", "2001:db8::1")),
                (
                    "y",
                    Fails(
                        "annotation metallb.io/loadBalancerIPs=\"2001:db8::\": 2001:db8:: is in no address pool",
                    ),
                ),
            ],
        ),
        case(
            "a subnet-router anycast address in the status is given up",
            &[
                pool("a", "addresses: [2001:db8::/126]"),
                svc("z").v6().status(&["2001:db8::"]).y(),
            ],
            &[("z", Got("a", "2001:db8::1"))],
        ),
        case(
            "an exhausted pool fails the next service",
            &[
                pool("a", "addresses: [10.0.0.5/32]"),
                svc("x").y(),
                svc("y").y(),
            ],
            &[
                ("x", Got("a", "10.0.0.5")),
                (
                    "y",
                    Fails(
                        "no address pool can give an IPv4 address automatically: pool a has no free IPv4 address",
                    ),
                ),
            ],
        ),
        case(
            "no pool at all",
            &[svc("x").y()],
            &[("x", Fails("no address pool is configured"))],
        ),
        case(
            "plain pools are taken by name",
            &[pool("b", B), pool("a", A), svc("x").y()],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "a full plain pool gives way to the next",
            &[
                pool("a", "addresses: [10.0.0.0/32]"),
                pool("b", "addresses: [10.0.1.0/32]"),
                svc("x").y(),
                svc("y").y(),
                svc("z").y(),
            ],
            &[
                ("x", Got("a", "10.0.0.0")),
                ("y", Got("b", "10.0.1.0")),
                (
                    "z",
                    Fails("pool a has no free IPv4 address; pool b has no free IPv4 address"),
                ),
            ],
        ),
        case(
            "a pool without the service's family is passed over",
            &[
                pool("a", "addresses: [2001:db8::-2001:db8::3]"),
                pool("b", B),
                svc("x").y(),
            ],
            &[("x", Got("b", "10.0.1.0"))],
        ),
    ]
}

fn buggy_cases() -> Vec<Case> {
    vec![
        case(
            "avoidBuggyIPs skips .0",
            &[
                pool("a", "addresses: [10.0.0.0/24], avoidBuggyIPs: true"),
                svc("x").y(),
            ],
            &[("x", Got("a", "10.0.0.1"))],
        ),
        case(
            "avoidBuggyIPs skips .255 and .0 across a /24 boundary",
            &[
                pool("a", "addresses: [10.0.0.254-10.0.1.1], avoidBuggyIPs: true"),
                svc("x").y(),
                svc("y").y(),
                svc("z").y(),
            ],
            &[
                ("x", Got("a", "10.0.0.254")),
                ("y", Got("a", "10.0.1.1")),
                ("z", Fails("pool a has no free IPv4 address")),
            ],
        ),
        case(
            "avoidBuggyIPs leaves IPv6 alone",
            &[
                pool(
                    "a",
                    "addresses: [2001:db8::-2001:db8::3], avoidBuggyIPs: true",
                ),
                svc("x").v6().y(),
            ],
            &[("x", Got("a", "2001:db8::"))],
        ),
        case(
            "asking for .0 of a pool that avoids it fails",
            &[
                pool("a", "addresses: [10.0.0.0/24], avoidBuggyIPs: true"),
                svc("x").ips("10.0.0.0").y(),
            ],
            &[(
                "x",
                Fails(
                    "annotation metallb.io/loadBalancerIPs=\"10.0.0.0\": 10.0.0.0 ends in .0 or .255, which pool a avoids (avoidBuggyIPs)",
                ),
            )],
        ),
        case(
            "asking for .255 of a pool that does not avoid it works",
            &[
                pool("a", "addresses: [10.0.0.0/24]"),
                svc("x").ips("10.0.0.255").y(),
            ],
            &[("x", Got("a", "10.0.0.255"))],
        ),
        case(
            "a .255 status under avoidBuggyIPs is dropped",
            &[
                pool("a", "addresses: [10.0.0.0/24], avoidBuggyIPs: true"),
                svc("x").status(&["10.0.0.255"]).y(),
            ],
            &[("x", Got("a", "10.0.0.1"))],
        ),
        case(
            "a pool of only buggy addresses has none to give",
            &[
                pool("a", "addresses: [10.0.0.255-10.0.1.0], avoidBuggyIPs: true"),
                svc("x").y(),
            ],
            &[("x", Fails("pool a has no free IPv4 address"))],
        ),
    ]
}

fn auto_assign_cases() -> Vec<Case> {
    vec![
        case(
            "an autoAssign false pool is never picked automatically",
            &[
                pool("a", "addresses: [10.0.0.0/30], autoAssign: false"),
                svc("x").y(),
            ],
            &[(
                "x",
                Fails(
                    "no address pool can give an IPv4 address automatically: pool a has autoAssign false",
                ),
            )],
        ),
        case(
            "an autoAssign false pool is passed over",
            &[
                pool("a", "addresses: [10.0.0.0/30], autoAssign: false"),
                pool("b", B),
                svc("x").y(),
            ],
            &[("x", Got("b", "10.0.1.0"))],
        ),
        case(
            "the pool annotation reaches an autoAssign false pool",
            &[
                pool("a", "addresses: [10.0.0.0/30], autoAssign: false"),
                pool("b", B),
                svc("x").pool("a").y(),
            ],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "a requested address reaches an autoAssign false pool",
            &[
                pool("a", "addresses: [10.0.0.0/30], autoAssign: false"),
                svc("x").ips("10.0.0.2").y(),
            ],
            &[("x", Got("a", "10.0.0.2"))],
        ),
        case(
            "a status address in an autoAssign false pool is kept",
            &[
                pool("a", "addresses: [10.0.0.0/30], autoAssign: false"),
                pool("b", B),
                svc("x").status(&["10.0.0.3"]).y(),
            ],
            &[("x", Got("a", "10.0.0.3"))],
        ),
    ]
}

fn service_allocation_cases() -> Vec<Case> {
    let web_pool = pool(
        "web",
        "addresses: [10.0.9.0/30], serviceAllocation: {namespaces: [web]}",
    );
    vec![
        case(
            "a pool with only a priority beats plain pools",
            &[
                pool("a", A),
                pool(
                    "z",
                    "addresses: [10.0.9.0/30], serviceAllocation: {priority: 5}",
                ),
                svc("x").y(),
            ],
            &[("x", Got("z", "10.0.9.0"))],
        ),
        case(
            "the lower priority number wins",
            &[
                pool(
                    "x",
                    "addresses: [10.0.1.0/30], serviceAllocation: {priority: 10}",
                ),
                pool(
                    "y",
                    "addresses: [10.0.2.0/30], serviceAllocation: {priority: 5}",
                ),
                svc("s").y(),
            ],
            &[("s", Got("y", "10.0.2.0"))],
        ),
        case(
            "a set priority ranks before an unset one",
            &[
                pool(
                    "a",
                    "addresses: [10.0.1.0/30], serviceAllocation: {namespaces: [default]}",
                ),
                pool(
                    "p",
                    "addresses: [10.0.2.0/30], serviceAllocation: {priority: 50, namespaces: [default]}",
                ),
                svc("s").y(),
            ],
            &[("s", Got("p", "10.0.2.0"))],
        ),
        case(
            "a selecting pool without priority still ranks before plain pools",
            &[
                pool("a", A),
                pool(
                    "z",
                    "addresses: [10.0.9.0/30], serviceAllocation: {namespaces: [default]}",
                ),
                svc("s").y(),
            ],
            &[("s", Got("z", "10.0.9.0"))],
        ),
        case(
            "equal priorities are taken by name",
            &[
                pool(
                    "c",
                    "addresses: [10.0.1.0/30], serviceAllocation: {priority: 3}",
                ),
                pool(
                    "b",
                    "addresses: [10.0.2.0/30], serviceAllocation: {priority: 3}",
                ),
                svc("s").y(),
            ],
            &[("s", Got("b", "10.0.2.0"))],
        ),
        case(
            "a namespace pool serves its namespace",
            &[pool("a", A), web_pool.clone(), svc("web/x").y()],
            &[("web/x", Got("web", "10.0.9.0"))],
        ),
        case(
            "a namespace pool does not serve other namespaces",
            &[pool("a", A), web_pool.clone(), svc("x").y()],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "a namespace pool alone cannot serve another namespace",
            &[web_pool.clone(), svc("dev/x").y()],
            &[(
                "dev/x",
                Fails("pool web serves only namespaces web (serviceAllocation), not namespace dev"),
            )],
        ),
        case(
            "a restricted pool serves only what it selects, even when the others are full",
            &[
                pool("a", "addresses: [10.0.0.0/32]"),
                web_pool.clone(),
                svc("dev/a").y(),
                svc("dev/b").y(),
            ],
            &[
                ("dev/a", Got("a", "10.0.0.0")),
                (
                    "dev/b",
                    Fails(
                        "pool a has no free IPv4 address; pool web serves only namespaces web (serviceAllocation), not namespace dev",
                    ),
                ),
            ],
        ),
        case(
            "a full selecting pool gives way to plain pools",
            &[
                pool("a", A),
                pool(
                    "web",
                    "addresses: [10.0.9.0/32], serviceAllocation: {namespaces: [web]}",
                ),
                svc("web/a").y(),
                svc("web/b").y(),
            ],
            &[
                ("web/a", Got("web", "10.0.9.0")),
                ("web/b", Got("a", "10.0.0.0")),
            ],
        ),
        case(
            "namespaceSelectors select by the namespace's labels",
            &[
                namespace("team-blue", "team: blue"),
                namespace("team-red", "team: red"),
                pool("a", A),
                pool(
                    "blue",
                    "addresses: [10.0.9.0/30], serviceAllocation: {namespaceSelectors: [{matchLabels: {team: blue}}]}",
                ),
                svc("team-blue/x").y(),
                svc("team-red/x").y(),
            ],
            &[
                ("team-blue/x", Got("blue", "10.0.9.0")),
                ("team-red/x", Got("a", "10.0.0.0")),
            ],
        ),
        case(
            "serviceSelectors select by the service's labels",
            &[
                pool("a", A),
                pool(
                    "sel",
                    "addresses: [10.0.9.0/30], serviceAllocation: {serviceSelectors: [{matchLabels: {app: web}}]}",
                ),
                svc("x").label("app", "web").y(),
                svc("y").label("app", "db").y(),
            ],
            &[("x", Got("sel", "10.0.9.0")), ("y", Got("a", "10.0.0.0"))],
        ),
        case(
            "namespaces and serviceSelectors must both match",
            &[
                pool("a", A),
                pool(
                    "both",
                    "addresses: [10.0.9.0/30], serviceAllocation: {namespaces: [web], serviceSelectors: [{matchLabels: {app: web}}]}",
                ),
                svc("web/x").label("app", "db").y(),
                svc("web/y").label("app", "web").y(),
                svc("z").label("app", "web").y(),
            ],
            &[
                ("web/x", Got("a", "10.0.0.0")),
                ("web/y", Got("both", "10.0.9.0")),
                ("z", Got("a", "10.0.0.1")),
            ],
        ),
        case(
            "a priority pool with autoAssign false is passed over",
            &[
                pool("a", A),
                pool(
                    "z",
                    "addresses: [10.0.9.0/30], autoAssign: false, serviceAllocation: {priority: 1}",
                ),
                svc("x").y(),
            ],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "namespaceSelectors that select no namespace: the pool serves nobody",
            &[
                pool("a", A),
                pool(
                    "none",
                    "addresses: [10.0.9.0/30], serviceAllocation: {namespaceSelectors: [{matchLabels: {team: red}}]}",
                ),
                svc("x").pool("none").y(),
                svc("y").y(),
            ],
            &[
                (
                    "x",
                    Fails(
                        "annotation metallb.io/address-pool=\"none\": pool none serves no service",
                    ),
                ),
                ("y", Got("a", "10.0.0.0")),
            ],
        ),
        case(
            "serviceSelectors also apply to the pool annotation",
            &[
                pool(
                    "sel",
                    "addresses: [10.0.9.0/30], serviceAllocation: {serviceSelectors: [{matchLabels: {app: web}}]}",
                ),
                svc("x").pool("sel").y(),
            ],
            &[(
                "x",
                Fails(
                    "pool sel serves only services matching its serviceAllocation.serviceSelectors, and this service's labels do not match",
                ),
            )],
        ),
    ]
}

fn pool_annotation_cases() -> Vec<Case> {
    vec![
        case(
            "the pool annotation beats priorities",
            &[
                pool("a", A),
                pool(
                    "z",
                    "addresses: [10.0.9.0/30], serviceAllocation: {priority: 1}",
                ),
                svc("x").pool("a").y(),
            ],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "an unknown pool fails",
            &[pool("a", A), svc("x").pool("nope").y()],
            &[(
                "x",
                Fails("annotation metallb.io/address-pool=\"nope\": no address pool has this name"),
            )],
        ),
        case(
            "a full annotated pool never falls back",
            &[
                pool("a", "addresses: [10.0.0.0/32]"),
                pool("b", B),
                svc("x").pool("a").y(),
                svc("y").pool("a").y(),
            ],
            &[
                ("x", Got("a", "10.0.0.0")),
                (
                    "y",
                    Fails(
                        "annotation metallb.io/address-pool=\"a\": pool a cannot give an IPv4 address: it has no free IPv4 address",
                    ),
                ),
            ],
        ),
        case(
            "the annotated pool's namespaces still apply",
            &[
                pool(
                    "web",
                    "addresses: [10.0.9.0/30], serviceAllocation: {namespaces: [web]}",
                ),
                svc("x").pool("web").y(),
            ],
            &[(
                "x",
                Fails(
                    "annotation metallb.io/address-pool=\"web\": pool web serves only namespaces web (serviceAllocation), not namespace default",
                ),
            )],
        ),
        case(
            "the older prefix of address-pool",
            &[
                pool("a", A),
                pool("b", B),
                svc("x").ann("metallb.universe.tf/address-pool", "b").y(),
            ],
            &[("x", Got("b", "10.0.1.0"))],
        ),
        case(
            "both prefixes with different pools: metallb.io wins, with a warning",
            &[
                pool("a", A),
                pool("b", B),
                svc("x")
                    .ann("metallb.universe.tf/address-pool", "b")
                    .pool("a")
                    .y(),
            ],
            &[("x", Got("a", "10.0.0.0"))],
        )
        .warns(
            "x",
            "annotations metallb.io/address-pool=\"a\" and metallb.universe.tf/address-pool=\"b\" disagree; metallb.io/address-pool is used",
        ),
        case(
            "both prefixes naming one pool work",
            &[
                pool("a", A),
                pool("b", B),
                svc("x")
                    .pool("b")
                    .ann("metallb.universe.tf/address-pool", "b")
                    .y(),
            ],
            &[("x", Got("b", "10.0.1.0"))],
        ),
        case(
            "an annotated pool without the service's family fails",
            &[
                pool("a", A),
                pool("b", "addresses: [2001:db8::-2001:db8::3]"),
                svc("x").v6().pool("a").y(),
            ],
            &[(
                "x",
                Fails(
                    "annotation metallb.io/address-pool=\"a\": pool a cannot give an IPv6 address: it has no IPv6 addresses",
                ),
            )],
        ),
        case(
            "an empty pool annotation is no request",
            &[pool("a", A), svc("x").pool("").y()],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "an annotated IPv4-only pool cannot serve RequireDualStack",
            &[pool("a", A), svc("x").require().pool("a").y()],
            &[(
                "x",
                Fails(
                    "pool a cannot give an IPv4 and an IPv6 address (spec.ipFamilyPolicy RequireDualStack): it has no IPv6 addresses",
                ),
            )],
        ),
        case(
            "an annotated pool serves PreferDualStack with what it has",
            &[
                pool("a", A),
                pool("m", "addresses: [10.0.1.0/30, 2001:db8::-2001:db8::3]"),
                svc("x").prefer().pool("a").y(),
            ],
            &[("x", Got("a", "10.0.0.0"))],
        ),
    ]
}

fn requested_ip_cases() -> Vec<Case> {
    let dual = pool("d", MIXED);
    vec![
        case(
            "loadBalancerIPs gives exactly that address",
            &[pool("a", A), svc("x").ips("10.0.0.2").y()],
            &[("x", Got("a", "10.0.0.2"))],
        ),
        case(
            "the deprecated spec.loadBalancerIP works",
            &[pool("a", A), svc("x").spec("loadBalancerIP: 10.0.0.3").y()],
            &[("x", Got("a", "10.0.0.3"))],
        ),
        case(
            "the older prefix of loadBalancerIPs",
            &[
                pool("a", A),
                svc("x")
                    .ann("metallb.universe.tf/loadBalancerIPs", "10.0.0.1")
                    .y(),
            ],
            &[("x", Got("a", "10.0.0.1"))],
        ),
        case(
            "the annotation and spec.loadBalancerIP together fail",
            &[
                pool("a", A),
                svc("x")
                    .ips("10.0.0.1")
                    .spec("loadBalancerIP: 10.0.0.2")
                    .y(),
            ],
            &[(
                "x",
                Fails(
                    "both annotation metallb.io/loadBalancerIPs=\"10.0.0.1\" and spec.loadBalancerIP=\"10.0.0.2\" are set",
                ),
            )],
        ),
        case(
            "a malformed loadBalancerIPs fails",
            &[pool("a", A), svc("x").ips("10.0.0.300").y(), svc("y").y()],
            &[
                (
                    "x",
                    Fails(
                        "annotation metallb.io/loadBalancerIPs=\"10.0.0.300\": \"10.0.0.300\" is not an IP address",
                    ),
                ),
                ("y", Got("a", "10.0.0.0")),
            ],
        ),
        case(
            "a malformed spec.loadBalancerIP fails",
            &[pool("a", A), svc("x").spec("loadBalancerIP: abc").y()],
            &[(
                "x",
                Fails("spec.loadBalancerIP=\"abc\": \"abc\" is not an IP address"),
            )],
        ),
        case(
            "two IPv4 addresses fail",
            &[pool("a", A), svc("x").ips("10.0.0.1,10.0.0.2").y()],
            &[(
                "x",
                Fails(
                    "annotation metallb.io/loadBalancerIPs=\"10.0.0.1,10.0.0.2\": lists two IPv4 addresses; at most one per IP family",
                ),
            )],
        ),
        case(
            "three addresses fail",
            &[
                dual.clone(),
                svc("x").require().ips("10.0.0.1,2001:db8::1,10.0.0.2").y(),
            ],
            &[("x", Fails("lists 3 addresses; at most one per IP family"))],
        ),
        case(
            "an address outside every pool fails",
            &[pool("a", A), svc("x").ips("192.168.1.1").y()],
            &[(
                "x",
                Fails(
                    "annotation metallb.io/loadBalancerIPs=\"192.168.1.1\": 192.168.1.1 is in no address pool",
                ),
            )],
        ),
        case(
            "an address held by a service that does not share fails",
            &[
                pool("a", A),
                svc("a").status(&["10.0.0.1"]).y(),
                svc("b").ips("10.0.0.1").y(),
            ],
            &[
                ("a", Got("a", "10.0.0.1")),
                (
                    "b",
                    Fails(
                        "annotation metallb.io/loadBalancerIPs=\"10.0.0.1\": 10.0.0.1 is in use by default/a, which does not allow sharing",
                    ),
                ),
            ],
        ),
        case(
            "two services naming one address: the first listed gets it",
            &[
                pool("a", A),
                svc("b").ips("10.0.0.1").y(),
                svc("a").ips("10.0.0.1").y(),
            ],
            &[
                ("b", Got("a", "10.0.0.1")),
                ("a", Fails("10.0.0.1 is in use by default/b")),
            ],
        ),
        case(
            "a requested address in the annotated pool",
            &[
                pool("a", A),
                pool("b", B),
                svc("x").ips("10.0.1.1").pool("b").y(),
            ],
            &[("x", Got("b", "10.0.1.1"))],
        ),
        case(
            "a requested address outside the annotated pool fails",
            &[
                pool("a", A),
                pool("b", B),
                svc("x").ips("10.0.0.1").pool("b").y(),
            ],
            &[(
                "x",
                Fails(
                    "annotation metallb.io/loadBalancerIPs=\"10.0.0.1\": 10.0.0.1 is in pool a, but annotation metallb.io/address-pool=\"b\" asks for pool b",
                ),
            )],
        ),
        case(
            "a requested address in a pool that does not admit the service fails",
            &[
                pool(
                    "web",
                    "addresses: [10.0.9.0/30], serviceAllocation: {namespaces: [web]}",
                ),
                svc("x").ips("10.0.9.1").y(),
            ],
            &[(
                "x",
                Fails(
                    "10.0.9.1 is in pool web, which serves only namespaces web (serviceAllocation), not namespace default",
                ),
            )],
        ),
        case(
            "an IPv6 address for an IPv4 service fails",
            &[dual.clone(), svc("x").ips("2001:db8::1").y()],
            &[(
                "x",
                Fails(
                    "annotation metallb.io/loadBalancerIPs=\"2001:db8::1\": 2001:db8::1 is IPv6, but the service is single-stack IPv4",
                ),
            )],
        ),
        case(
            "two addresses for a single-stack service fail",
            &[dual.clone(), svc("x").ips("10.0.0.1,2001:db8::1").y()],
            &[(
                "x",
                Fails("asks for two addresses, but the service is single-stack IPv4"),
            )],
        ),
        case(
            "a dual-stack service gets both addresses it names, IPv4 first",
            &[
                dual.clone(),
                svc("x").require().ips("2001:db8::2,10.0.0.2").y(),
            ],
            &[("x", Got("d", "10.0.0.2,2001:db8::2"))],
        ),
        case(
            "a dual-stack service cannot name one address",
            &[dual.clone(), svc("x").prefer().ips("10.0.0.1").y()],
            &[(
                "x",
                Fails(
                    "a dual-stack service (spec.ipFamilyPolicy PreferDualStack) needs one IPv4 and one IPv6 address, not one",
                ),
            )],
        ),
        case(
            "a dual-stack service cannot name one address in spec.loadBalancerIP",
            &[
                dual.clone(),
                svc("x").require().spec("loadBalancerIP: 10.0.0.1").y(),
            ],
            &[(
                "x",
                Fails(
                    "spec.loadBalancerIP=\"10.0.0.1\": a dual-stack service (spec.ipFamilyPolicy RequireDualStack)",
                ),
            )],
        ),
        case(
            "both addresses of a dual-stack service must come from one pool",
            &[
                pool("a", A),
                pool("b", "addresses: [2001:db8::-2001:db8::3]"),
                svc("x").require().ips("10.0.0.1,2001:db8::1").y(),
            ],
            &[(
                "x",
                Fails(
                    "10.0.0.1 is in pool a and 2001:db8::1 in pool b; both addresses must come from one pool",
                ),
            )],
        ),
        case(
            "spaces around the addresses are allowed",
            &[
                dual.clone(),
                svc("x").require().ips(" 10.0.0.1 , 2001:db8::1 ").y(),
            ],
            &[("x", Got("d", "10.0.0.1,2001:db8::1"))],
        ),
        case(
            "a trailing comma fails",
            &[pool("a", A), svc("x").ips("10.0.0.1,").y()],
            &[(
                "x",
                Fails(
                    "annotation metallb.io/loadBalancerIPs=\"10.0.0.1,\": \"\" is not an IP address",
                ),
            )],
        ),
        case(
            "an address an earlier automatic pick took is not displaced",
            &[pool("a", A), svc("a").y(), svc("b").ips("10.0.0.0").y()],
            &[
                ("a", Got("a", "10.0.0.0")),
                (
                    "b",
                    Fails(
                        "annotation metallb.io/loadBalancerIPs=\"10.0.0.0\": 10.0.0.0 is in use by default/a, which does not allow sharing",
                    ),
                ),
            ],
        ),
        case(
            "a requested address replaces another status address",
            &[
                pool("a", A),
                svc("x").status(&["10.0.0.1"]).ips("10.0.0.2").y(),
            ],
            &[("x", Got("a", "10.0.0.2"))],
        ),
        case(
            "an IPv4-mapped IPv6 address is the IPv4 address",
            &[pool("a", A), svc("x").ips("::ffff:10.0.0.1").y()],
            &[("x", Got("a", "10.0.0.1"))],
        ),
    ]
}

fn family_cases() -> Vec<Case> {
    let dual = pool("d", MIXED);
    vec![
        case(
            "IPv4 by default, even when the pool lists IPv6 first",
            &[dual.clone(), svc("x").y()],
            &[("x", Got("d", "10.0.0.0"))],
        ),
        case(
            "ipFamilies [IPv6] gets an IPv6 address",
            &[dual.clone(), svc("x").v6().y()],
            &[("x", Got("d", "2001:db8::"))],
        ),
        case(
            "RequireDualStack gets one address of each family",
            &[dual.clone(), svc("x").require().y()],
            &[("x", Got("d", "10.0.0.0,2001:db8::"))],
        ),
        case(
            "RequireDualStack fails on an IPv4-only pool",
            &[pool("a", A), svc("x").require().y()],
            &[(
                "x",
                Fails(
                    "no address pool can give an IPv4 and an IPv6 address (spec.ipFamilyPolicy RequireDualStack) automatically: pool a has no IPv6 addresses",
                ),
            )],
        ),
        case(
            "RequireDualStack passes over a single-family pool",
            &[
                pool("a", A),
                pool("b", "addresses: [10.0.1.0/30, 2001:db8::-2001:db8::3]"),
                svc("x").require().y(),
            ],
            &[("x", Got("b", "10.0.1.0,2001:db8::"))],
        ),
        case(
            "PreferDualStack takes what an IPv4-only pool offers",
            &[pool("a", A), svc("x").prefer().y()],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "PreferDualStack gets both families when the pool has them",
            &[dual.clone(), svc("x").prefer().y()],
            &[("x", Got("d", "10.0.0.0,2001:db8::"))],
        ),
        case(
            "PreferDualStack prefers a pool with both families",
            &[
                pool("a", A),
                pool("b", "addresses: [10.0.1.0/30, 2001:db8::-2001:db8::3]"),
                svc("x").prefer().y(),
            ],
            &[("x", Got("b", "10.0.1.0,2001:db8::"))],
        ),
        case(
            "PreferDualStack falls back to its primary family first",
            &[
                pool("a", A),
                pool("b", "addresses: [2001:db8::-2001:db8::3]"),
                svc("v4first").prefer().y(),
                svc("v6first").prefer().spec("ipFamilies: [IPv6, IPv4]").y(),
            ],
            &[
                ("v4first", Got("a", "10.0.0.0")),
                ("v6first", Got("b", "2001:db8::")),
            ],
        ),
        case(
            "PreferDualStack with an IPv4 status gets IPv6 from that same pool",
            &[
                pool("a", "addresses: [10.0.0.0/30, 2001:db8::-2001:db8::3]"),
                pool(
                    "z",
                    "addresses: [10.0.9.0/30, 2001:db8:1::-2001:db8:1::3], serviceAllocation: {priority: 1}",
                ),
                svc("x").prefer().status(&["10.0.0.2"]).y(),
            ],
            &[("x", Got("a", "10.0.0.2,2001:db8::"))],
        ),
        case(
            "PreferDualStack with an IPv4 status in an IPv4-only pool keeps one address",
            &[
                pool("a", A),
                pool("b", "addresses: [10.0.1.0/30, 2001:db8::-2001:db8::3]"),
                svc("x").prefer().status(&["10.0.0.2"]).y(),
            ],
            &[("x", Got("a", "10.0.0.2"))],
        ),
        case(
            "two ipFamilies and no policy mean RequireDualStack",
            &[
                pool("a", A),
                dual.replace("10.0.0.0/30", "10.0.1.0/30"),
                svc("x").spec("ipFamilies: [IPv4, IPv6]").y(),
            ],
            &[("x", Got("d", "10.0.1.0,2001:db8::"))],
        ),
        case(
            "two ipFamilies with SingleStack fail",
            &[
                dual.clone(),
                svc("x")
                    .spec("ipFamilies: [IPv4, IPv6]")
                    .spec("ipFamilyPolicy: SingleStack")
                    .y(),
            ],
            &[(
                "x",
                Fails(
                    "spec.ipFamilies lists IPv4 and IPv6, but spec.ipFamilyPolicy is SingleStack",
                ),
            )],
        ),
        case(
            "an unknown family fails",
            &[dual.clone(), svc("x").spec("ipFamilies: [IPv5]").y()],
            &[(
                "x",
                Fails("spec.ipFamilies[0]=\"IPv5\" is not IPv4 or IPv6"),
            )],
        ),
        case(
            "a family listed twice fails",
            &[dual.clone(), svc("x").spec("ipFamilies: [IPv4, IPv4]").y()],
            &[("x", Fails("spec.ipFamilies lists IPv4 twice"))],
        ),
        case(
            "an unknown policy fails",
            &[dual.clone(), svc("x").spec("ipFamilyPolicy: DualStack").y()],
            &[(
                "x",
                Fails(
                    "spec.ipFamilyPolicy=\"DualStack\" is not SingleStack, PreferDualStack or RequireDualStack",
                ),
            )],
        ),
        case(
            "RequireDualStack with only an IPv4 status is reallocated",
            &[dual.clone(), svc("x").require().status(&["10.0.0.1"]).y()],
            &[("x", Got("d", "10.0.0.0,2001:db8::"))],
        ),
        case(
            "a single-stack service with a dual-stack status is reallocated",
            &[
                dual.clone(),
                svc("x").status(&["10.0.0.1", "2001:db8::1"]).y(),
            ],
            &[("x", Got("d", "10.0.0.0"))],
        ),
        case(
            "an IPv4 service with an IPv6 status is reallocated",
            &[dual.clone(), svc("x").status(&["2001:db8::1"]).y()],
            &[("x", Got("d", "10.0.0.0"))],
        ),
        case(
            "RequireDualStack fails when the pool's IPv4 addresses are used up",
            &[
                pool("d", "addresses: [10.0.0.0/32, 2001:db8::-2001:db8::3]"),
                svc("s1").y(),
                svc("s2").require().y(),
            ],
            &[
                ("s1", Got("d", "10.0.0.0")),
                ("s2", Fails("pool d has no free IPv4 address")),
            ],
        ),
        case(
            "an IPv6 service with only IPv4 pools fails",
            &[pool("a", A), svc("x").v6().y()],
            &[(
                "x",
                Fails(
                    "no address pool can give an IPv6 address automatically: pool a has no IPv6 addresses",
                ),
            )],
        ),
        case(
            "a dual-stack status split across two pools is reallocated from one",
            &[
                pool("a", A),
                pool("b", "addresses: [10.0.1.0/30, 2001:db8::-2001:db8::3]"),
                svc("x").require().status(&["10.0.0.1", "2001:db8::3"]).y(),
            ],
            &[("x", Got("b", "10.0.1.0,2001:db8::"))],
        ),
    ]
}

fn sharing_cases() -> Vec<Case> {
    let dual = pool("d", MIXED);
    vec![
        case(
            "one key and different ports share an address",
            &[
                pool("a", A),
                svc("a").share("k").ports("TCP/80").y(),
                svc("b").share("k").ports("TCP/443").y(),
            ],
            &[("a", Got("a", "10.0.0.0")), ("b", Got("a", "10.0.0.0"))],
        ),
        case(
            "one key and a common port: the next address",
            &[
                pool("a", A),
                svc("a").share("k").ports("TCP/80").y(),
                svc("b").share("k").ports("TCP/80").y(),
            ],
            &[("a", Got("a", "10.0.0.0")), ("b", Got("a", "10.0.0.1"))],
        ),
        case(
            "a common port on a named address fails",
            &[
                pool("a", A),
                svc("a").share("k").ports("TCP/80").ips("10.0.0.0").y(),
                svc("b").share("k").ports("TCP/80").ips("10.0.0.0").y(),
            ],
            &[
                ("a", Got("a", "10.0.0.0")),
                (
                    "b",
                    Fails("10.0.0.0 is shared, but port TCP/80 is already used on it by default/a"),
                ),
            ],
        ),
        case(
            "different keys on a named address fail",
            &[
                pool("a", A),
                svc("a").share("k1").ips("10.0.0.0").y(),
                svc("b").share("k2").ips("10.0.0.0").y(),
            ],
            &[(
                "b",
                Fails(
                    "10.0.0.0 is in use by default/a under sharing key \"k1\", not this service's key \"k2\"",
                ),
            )],
        ),
        case(
            "different keys get different addresses",
            &[
                pool("a", A),
                svc("a").share("k1").y(),
                svc("b").share("k2").y(),
            ],
            &[("a", Got("a", "10.0.0.0")), ("b", Got("a", "10.0.0.1"))],
        ),
        case(
            "a service without key cannot join a shared address",
            &[
                pool("a", A),
                svc("a").share("k").ips("10.0.0.0").y(),
                svc("b").ips("10.0.0.0").y(),
            ],
            &[(
                "b",
                Fails(
                    "10.0.0.0 is in use by default/a, and this service has no allow-shared-ip annotation to share it",
                ),
            )],
        ),
        case(
            "Local services selecting the same pods share",
            &[
                pool("a", A),
                svc("a").share("k").local("app: web").ports("TCP/80").y(),
                svc("b").share("k").local("app: web").ports("TCP/443").y(),
            ],
            &[("a", Got("a", "10.0.0.0")), ("b", Got("a", "10.0.0.0"))],
        ),
        case(
            "Local services selecting other pods do not share",
            &[
                pool("a", A),
                svc("a").share("k").local("app: web").ips("10.0.0.0").y(),
                svc("b").share("k").local("app: db").ips("10.0.0.0").y(),
                svc("c").share("k").local("app: db").y(),
            ],
            &[
                (
                    "b",
                    Fails(
                        "in use by default/a with externalTrafficPolicy Local and spec.selector {app=web}, not this service's {app=db}; Local services share only when they select the same pods",
                    ),
                ),
                ("c", Got("a", "10.0.0.1")),
            ],
        ),
        case(
            "a Local service cannot share with a Cluster one",
            &[
                pool("a", A),
                svc("a").share("k").ips("10.0.0.0").y(),
                svc("b").share("k").local("app: web").ips("10.0.0.0").y(),
            ],
            &[(
                "b",
                Fails(
                    "in use by default/a with externalTrafficPolicy Cluster; a Local service shares only with Local services",
                ),
            )],
        ),
        case(
            "a Cluster service cannot share with a Local one",
            &[
                pool("a", A),
                svc("a").share("k").local("app: web").ips("10.0.0.0").y(),
                svc("b").share("k").ips("10.0.0.0").y(),
            ],
            &[(
                "b",
                Fails(
                    "in use by default/a with externalTrafficPolicy Local; a Cluster service cannot share with it",
                ),
            )],
        ),
        case(
            "a Local service without selector still cannot share with a Cluster one",
            &[
                pool("a", A),
                svc("a").share("k").ips("10.0.0.0").y(),
                svc("b")
                    .share("k")
                    .spec("externalTrafficPolicy: Local")
                    .ips("10.0.0.0")
                    .y(),
            ],
            &[(
                "b",
                Fails(
                    "with externalTrafficPolicy Cluster; a Local service shares only with Local services",
                ),
            )],
        ),
        case(
            "sharing works across namespaces",
            &[
                pool("a", A),
                svc("one/a").share("k").ports("TCP/80").y(),
                svc("two/a").share("k").ports("TCP/443").y(),
            ],
            &[
                ("one/a", Got("a", "10.0.0.0")),
                ("two/a", Got("a", "10.0.0.0")),
            ],
        ),
        case(
            "the same number under TCP and UDP is no clash",
            &[
                pool("a", A),
                svc("a").share("k").ports("TCP/53").y(),
                svc("b").share("k").ports("UDP/53").y(),
            ],
            &[("a", Got("a", "10.0.0.0")), ("b", Got("a", "10.0.0.0"))],
        ),
        case(
            "a port without protocol is TCP",
            &[
                pool("a", A),
                svc("a")
                    .share("k")
                    .spec("ports: [{port: 80}]")
                    .ips("10.0.0.0")
                    .y(),
                svc("b").share("k").ports("TCP/80").ips("10.0.0.0").y(),
            ],
            &[("b", Fails("port TCP/80 is already used on it by default/a"))],
        ),
        case(
            "a sharing key takes the lowest usable address, here a shared one",
            &[
                pool("a", A),
                svc("a")
                    .share("k")
                    .ports("TCP/80")
                    .status(&["10.0.0.0"])
                    .y(),
                svc("b").share("k").ports("TCP/443").y(),
                svc("c").y(),
            ],
            &[
                ("a", Got("a", "10.0.0.0")),
                ("b", Got("a", "10.0.0.0")),
                ("c", Got("a", "10.0.0.1")),
            ],
        ),
        case(
            "a sharing key takes the lowest usable address, here a free one",
            &[
                pool("a", A),
                svc("a").share("k").status(&["10.0.0.2"]).y(),
                svc("b").share("k").y(),
            ],
            &[("a", Got("a", "10.0.0.2")), ("b", Got("a", "10.0.0.0"))],
        ),
        case(
            "an address held under another key is passed over",
            &[
                pool("a", A),
                svc("a").share("k1").status(&["10.0.0.0"]).y(),
                svc("b").share("k2").y(),
            ],
            &[("a", Got("a", "10.0.0.0")), ("b", Got("a", "10.0.0.1"))],
        ),
        case(
            "the older prefix of allow-shared-ip",
            &[
                pool("a", A),
                svc("a")
                    .ann("metallb.universe.tf/allow-shared-ip", "k")
                    .ports("TCP/80")
                    .y(),
                svc("b").share("k").ports("TCP/81").y(),
            ],
            &[("a", Got("a", "10.0.0.0")), ("b", Got("a", "10.0.0.0"))],
        ),
        case(
            "dual-stack services share both addresses",
            &[
                dual.clone(),
                svc("a").require().share("k").ports("TCP/80").y(),
                svc("b").require().share("k").ports("TCP/81").y(),
            ],
            &[
                ("a", Got("d", "10.0.0.0,2001:db8::")),
                ("b", Got("d", "10.0.0.0,2001:db8::")),
            ],
        ),
        case(
            "of two incompatible services with one status address, the first listed keeps it",
            &[
                pool("a", A),
                svc("b").status(&["10.0.0.1"]).y(),
                svc("a").status(&["10.0.0.1"]).y(),
            ],
            &[("b", Got("a", "10.0.0.1")), ("a", Got("a", "10.0.0.0"))],
        ),
        case(
            "compatible services keep a shared status address",
            &[
                pool("a", A),
                svc("b")
                    .share("k")
                    .ports("TCP/81")
                    .status(&["10.0.0.1"])
                    .y(),
                svc("a")
                    .share("k")
                    .ports("TCP/80")
                    .status(&["10.0.0.1"])
                    .y(),
            ],
            &[("a", Got("a", "10.0.0.1")), ("b", Got("a", "10.0.0.1"))],
        ),
        case(
            "a sharing key cannot help when the only address clashes",
            &[
                pool("a", "addresses: [10.0.0.0/32]"),
                svc("a").share("k").ports("TCP/80").y(),
                svc("b").share("k").ports("TCP/80").y(),
            ],
            &[
                ("a", Got("a", "10.0.0.0")),
                (
                    "b",
                    Fails("pool a has no IPv4 address free or shareable under key \"k\""),
                ),
            ],
        ),
        case(
            "an empty sharing key does not share",
            &[
                pool("a", A),
                svc("a").share("").ips("10.0.0.0").y(),
                svc("b").share("").ips("10.0.0.0").y(),
            ],
            &[(
                "b",
                Fails("10.0.0.0 is in use by default/a, which does not allow sharing"),
            )],
        ),
    ]
}

fn stability_cases() -> Vec<Case> {
    let web_pool = pool(
        "web",
        "addresses: [10.0.9.0/30], serviceAllocation: {namespaces: [web]}",
    );
    vec![
        case(
            "a status address is kept although a better pool exists",
            &[
                pool("a", A),
                pool(
                    "z",
                    "addresses: [10.0.9.0/30], serviceAllocation: {priority: 1}",
                ),
                svc("x").status(&["10.0.0.2"]).y(),
            ],
            &[("x", Got("a", "10.0.0.2"))],
        ),
        case(
            "a status address in no pool is replaced",
            &[pool("a", A), svc("x").status(&["192.168.0.1"]).y()],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "a status address in a pool that no longer admits the service is replaced",
            &[
                pool("a", A),
                web_pool.clone(),
                svc("x").status(&["10.0.9.1"]).y(),
            ],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "a status address in a pool that still admits the service is kept",
            &[
                pool("a", A),
                web_pool.clone(),
                svc("web/x").status(&["10.0.9.1"]).y(),
            ],
            &[("web/x", Got("web", "10.0.9.1"))],
        ),
        case(
            "services with a status are served before new ones",
            &[
                pool("a", A),
                svc("a").y(),
                svc("b").status(&["10.0.0.0"]).y(),
            ],
            &[("a", Got("a", "10.0.0.1")), ("b", Got("a", "10.0.0.0"))],
        ),
        case(
            "a status kept before any new address is handed out",
            &[
                pool("a", A),
                svc("a").status(&["10.0.0.9"]).y(),
                svc("b").status(&["10.0.0.0"]).y(),
            ],
            &[("a", Got("a", "10.0.0.1")), ("b", Got("a", "10.0.0.0"))],
        ),
        case(
            "a status moves when the service asks for another pool",
            &[
                pool("a", A),
                pool("b", B),
                svc("x").status(&["10.0.0.1"]).pool("b").y(),
            ],
            &[("x", Got("b", "10.0.1.0"))],
        ),
        case(
            "a status stays when the service asks for its pool",
            &[
                pool("a", A),
                pool("b", B),
                svc("x").status(&["10.0.0.1"]).pool("a").y(),
            ],
            &[("x", Got("a", "10.0.0.1"))],
        ),
        case(
            "a status equal to the requested address is kept",
            &[
                pool("a", A),
                svc("x").status(&["10.0.0.3"]).ips("10.0.0.3").y(),
            ],
            &[("x", Got("a", "10.0.0.3"))],
        ),
        case(
            "a malformed status is ignored",
            &[pool("a", A), svc("x").status(&["not-an-ip"]).y()],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "a status with only a hostname is no status",
            &[
                pool("a", A),
                svc("a")
                    .raw_status("{loadBalancer: {ingress: [{hostname: lb.example.com}]}}")
                    .y(),
                svc("b").y(),
            ],
            &[("a", Got("a", "10.0.0.0")), ("b", Got("a", "10.0.0.1"))],
        ),
        case(
            "a status with two IPv4 addresses is replaced",
            &[pool("a", A), svc("x").status(&["10.0.0.1", "10.0.0.2"]).y()],
            &[("x", Got("a", "10.0.0.0"))],
        ),
        case(
            "a failing service leaves the others unaffected",
            &[
                pool("a", A),
                svc("a").y(),
                svc("b").ips("nope").y(),
                svc("c").pool("nope").y(),
                svc("d").y(),
            ],
            &[
                ("a", Got("a", "10.0.0.0")),
                ("b", Fails("\"nope\" is not an IP address")),
                ("c", Fails("no address pool has this name")),
                ("d", Got("a", "10.0.0.1")),
            ],
        ),
        case(
            "a failing service holds nothing, not even its status address",
            &[
                pool("a", A),
                svc("a").status(&["10.0.0.0"]).ips("10.0.0.0,10.0.0.1").y(),
                svc("b").y(),
            ],
            &[
                ("a", Fails("lists two IPv4 addresses")),
                ("b", Got("a", "10.0.0.0")),
            ],
        ),
        case(
            "a service that fails for want of room does not disturb later ones",
            &[
                pool("a", "addresses: [10.0.0.0/32]"),
                pool("b", B),
                svc("a").pool("a").y(),
                svc("b").pool("a").y(),
                svc("c").y(),
            ],
            &[
                ("a", Got("a", "10.0.0.0")),
                ("b", Fails("pool a cannot give")),
                ("c", Got("b", "10.0.1.0")),
            ],
        ),
    ]
}

/// The order between services (issue 10): status first, then creationTimestamp,
/// then the listed order.
fn order_cases() -> Vec<Case> {
    const T1: &str = "2024-01-01T00:00:00Z";
    const T2: &str = "2024-01-02T00:00:00Z";
    vec![
        case(
            "the first free address goes to the service listed first",
            &[pool("a", A), svc("zeta").y(), svc("alpha").y()],
            &[
                ("zeta", Got("a", "10.0.0.0")),
                ("alpha", Got("a", "10.0.0.1")),
            ],
        ),
        case(
            "a requested address taken by an earlier automatic pick fails, across namespaces",
            &[
                pool("a", "addresses: [10.0.0.0/32]"),
                svc("z/auto").y(),
                svc("a/named").spec("loadBalancerIP: 10.0.0.0").y(),
            ],
            &[
                ("z/auto", Got("a", "10.0.0.0")),
                (
                    "a/named",
                    Fails(
                        "spec.loadBalancerIP=\"10.0.0.0\": 10.0.0.0 is in use by z/auto, which does not allow sharing",
                    ),
                ),
            ],
        ),
        case(
            "a requested address listed first is served first",
            &[
                pool("a", A),
                svc("named").ips("10.0.0.0").y(),
                svc("auto").y(),
            ],
            &[
                ("named", Got("a", "10.0.0.0")),
                ("auto", Got("a", "10.0.0.1")),
            ],
        ),
        case(
            "creationTimestamp orders before the listed order",
            &[
                pool("a", A),
                svc("late").created(T2).y(),
                svc("early").created(T1).y(),
            ],
            &[
                ("early", Got("a", "10.0.0.0")),
                ("late", Got("a", "10.0.0.1")),
            ],
        ),
        case(
            "services without creationTimestamp come after those with one",
            &[pool("a", A), svc("new").y(), svc("old").created(T2).y()],
            &[("old", Got("a", "10.0.0.0")), ("new", Got("a", "10.0.0.1"))],
        ),
        case(
            "equal creationTimestamps keep the listed order",
            &[
                pool("a", A),
                svc("b").created(T1).y(),
                svc("a").created(T1).y(),
            ],
            &[("b", Got("a", "10.0.0.0")), ("a", Got("a", "10.0.0.1"))],
        ),
        case(
            "a status comes before an older creationTimestamp",
            &[
                pool("a", "addresses: [10.0.0.0/32]"),
                svc("older").created(T1).ips("10.0.0.0").y(),
                svc("kept").created(T2).status(&["10.0.0.0"]).y(),
            ],
            &[
                ("kept", Got("a", "10.0.0.0")),
                ("older", Fails("10.0.0.0 is in use by default/kept")),
            ],
        ),
        case(
            "services with a status keep theirs whatever their creationTimestamp",
            &[
                pool("a", A),
                svc("x").created(T2).status(&["10.0.0.0"]).y(),
                svc("y").created(T1).status(&["10.0.0.1"]).y(),
                svc("z").created(T1).y(),
            ],
            &[
                ("x", Got("a", "10.0.0.0")),
                ("y", Got("a", "10.0.0.1")),
                ("z", Got("a", "10.0.0.2")),
            ],
        ),
        case(
            "of two status claims on one address, the older creationTimestamp keeps it",
            &[
                pool("a", A),
                svc("young").created(T2).status(&["10.0.0.2"]).y(),
                svc("old").created(T1).status(&["10.0.0.2"]).y(),
            ],
            &[
                ("old", Got("a", "10.0.0.2")),
                ("young", Got("a", "10.0.0.0")),
            ],
        ),
        case(
            "a service whose status is invalid is served after every valid status is held",
            &[
                pool("a", A),
                svc("moved").status(&["192.168.0.1"]).y(),
                svc("kept").status(&["10.0.0.0"]).y(),
                svc("new").y(),
            ],
            &[
                ("kept", Got("a", "10.0.0.0")),
                ("moved", Got("a", "10.0.0.1")),
                ("new", Got("a", "10.0.0.2")),
            ],
        ),
        case(
            "a shared address goes to the first listed, the others share it in order",
            &[
                pool("a", "addresses: [10.0.0.0/31]"),
                svc("c").share("k").ports("TCP/80").y(),
                svc("b").share("k").ports("TCP/80").y(),
                svc("a").share("k").ports("TCP/443").y(),
            ],
            &[
                ("c", Got("a", "10.0.0.0")),
                ("b", Got("a", "10.0.0.1")),
                ("a", Got("a", "10.0.0.0")),
            ],
        ),
    ]
}

/// Both annotation prefixes on one service (issue 10): `metallb.io/` wins,
/// `metallb.universe.tf/` is the fallback, a disagreement is a warning.
fn prefix_cases() -> Vec<Case> {
    let dual = pool("d", MIXED);
    vec![
        case(
            "both prefixes of loadBalancerIPs disagreeing: metallb.io wins, with a warning",
            &[
                pool("a", A),
                svc("x")
                    .ips("10.0.0.2")
                    .ann("metallb.universe.tf/loadBalancerIPs", "10.0.0.3")
                    .y(),
            ],
            &[("x", Got("a", "10.0.0.2"))],
        )
        .warns(
            "x",
            "annotations metallb.io/loadBalancerIPs=\"10.0.0.2\" and metallb.universe.tf/loadBalancerIPs=\"10.0.0.3\" disagree; metallb.io/loadBalancerIPs is used (as MetalLB does), remove one of them",
        ),
        case(
            "both prefixes of allow-shared-ip disagreeing: metallb.io wins, with a warning",
            &[
                pool("a", A),
                svc("a").share("k1").ports("TCP/80").y(),
                svc("b")
                    .share("k1")
                    .ann("metallb.universe.tf/allow-shared-ip", "k2")
                    .ports("TCP/81")
                    .y(),
            ],
            &[("a", Got("a", "10.0.0.0")), ("b", Got("a", "10.0.0.0"))],
        )
        .warns(
            "b",
            "annotations metallb.io/allow-shared-ip=\"k1\" and metallb.universe.tf/allow-shared-ip=\"k2\" disagree",
        ),
        case(
            "only the older prefix of allow-shared-ip is the fallback",
            &[
                pool("a", A),
                svc("a").share("k").ports("TCP/80").y(),
                svc("b")
                    .ann("metallb.universe.tf/allow-shared-ip", "k")
                    .ports("TCP/81")
                    .y(),
            ],
            &[("a", Got("a", "10.0.0.0")), ("b", Got("a", "10.0.0.0"))],
        ),
        case(
            "an empty metallb.io annotation wins over the older prefix, as in MetalLB",
            &[
                pool("a", A),
                pool("b", B),
                svc("x")
                    .pool("")
                    .ann("metallb.universe.tf/address-pool", "b")
                    .y(),
            ],
            &[("x", Got("a", "10.0.0.0"))],
        )
        .warns(
            "x",
            "annotations metallb.io/address-pool=\"\" and metallb.universe.tf/address-pool=\"b\" disagree",
        ),
        case(
            "both prefixes equal give no warning",
            &[
                pool("a", A),
                svc("x")
                    .ips("10.0.0.1")
                    .ann("metallb.universe.tf/loadBalancerIPs", " 10.0.0.1 ")
                    .y(),
            ],
            &[("x", Got("a", "10.0.0.1"))],
        ),
        case(
            "the older prefix's value is not read when metallb.io is there, even if malformed",
            &[
                dual.clone(),
                svc("x")
                    .require()
                    .ips("10.0.0.1,2001:db8::1")
                    .ann("metallb.universe.tf/loadBalancerIPs", "nonsense")
                    .y(),
            ],
            &[("x", Got("d", "10.0.0.1,2001:db8::1"))],
        )
        .warns("x", "metallb.universe.tf/loadBalancerIPs=\"nonsense\""),
        case(
            "a warning is given even when the request fails",
            &[
                pool("a", A),
                svc("x")
                    .pool("a")
                    .ann("metallb.universe.tf/address-pool", "b")
                    .spec("ipFamilies: [IPv5]")
                    .y(),
            ],
            &[("x", Fails("spec.ipFamilies[0]=\"IPv5\" is not IPv4 or IPv6"))],
        )
        .warns("x", "metallb.io/address-pool=\"a\""),
    ]
}

fn all_cases() -> Vec<Case> {
    [
        scope_cases(),
        pick_cases(),
        buggy_cases(),
        auto_assign_cases(),
        service_allocation_cases(),
        pool_annotation_cases(),
        requested_ip_cases(),
        family_cases(),
        sharing_cases(),
        stability_cases(),
        order_cases(),
        prefix_cases(),
        metallb::controller_mutation_cases(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn run_all(cases: Vec<Case>) {
    for case in &cases {
        run(case);
    }
}

#[test]
fn table_scope() {
    run_all(scope_cases());
}

#[test]
fn table_picks() {
    run_all(pick_cases());
}

#[test]
fn table_avoid_buggy_ips() {
    run_all(buggy_cases());
}

#[test]
fn table_auto_assign() {
    run_all(auto_assign_cases());
}

#[test]
fn table_service_allocation() {
    run_all(service_allocation_cases());
}

#[test]
fn table_pool_annotation() {
    run_all(pool_annotation_cases());
}

#[test]
fn table_requested_ips() {
    run_all(requested_ip_cases());
}

#[test]
fn table_ip_families() {
    run_all(family_cases());
}

#[test]
fn table_sharing() {
    run_all(sharing_cases());
}

#[test]
fn table_stability() {
    run_all(stability_cases());
}

#[test]
fn table_order() {
    run_all(order_cases());
}

#[test]
fn table_annotation_prefixes() {
    run_all(prefix_cases());
}

#[test]
fn table_metallb_controller_mutation() {
    run_all(metallb::controller_mutation_cases());
}

#[test]
fn table_case_names_are_unique() {
    let mut names = BTreeSet::new();
    for case in all_cases() {
        assert!(
            names.insert(case.name),
            "duplicate case name {:?}",
            case.name
        );
    }
}

#[test]
fn restart_in_any_order_keeps_every_address() {
    let mut objects = vec![
        pool("a", "addresses: [10.0.0.0/29], avoidBuggyIPs: true"),
        pool("d", "addresses: [10.0.1.0/29, 2001:db8::/125]"),
        pool(
            "p",
            "addresses: [10.0.2.0/30], serviceAllocation: {priority: 1, namespaces: [web]}",
        ),
    ];
    let services = [
        svc("web/a").y(),
        svc("web/b").y(),
        svc("web/c").y(),
        svc("web/d").y(),
        svc("x").share("k").ports("TCP/80").y(),
        svc("y").share("k").ports("TCP/443").y(),
        svc("z").require().y(),
        svc("w").prefer().y(),
        svc("v").ips("10.0.0.5").y(),
        svc("u").pool("d").v6().y(),
    ];
    objects.extend(services.iter().cloned());
    let config = config_of(&objects.concat());
    let options = AllocatorOptions::default();
    let first = allocate(&config, &options).decisions;
    assert!(
        first.values().all(|d| matches!(d, Decision::Allocated(_))),
        "{first:#?}"
    );
    // Every rotation of the listed order, after a restart, gives the same addresses.
    let with_status = restarted(&config, &first);
    for shift in 0..with_status.services.len() {
        let mut rotated = with_status.clone();
        rotated.services.rotate_left(shift);
        assert_eq!(
            allocate(&rotated, &options).decisions,
            first,
            "rotation {shift}"
        );
    }
    // Without statuses the listed order decides (it stands for creation order).
    let mut reversed = config.clone();
    reversed.services.reverse();
    assert_ne!(allocate(&reversed, &options).decisions, first);
}

/// `allocate` keeps no request of a decided service; a second service of the same
/// key (validation refuses it; the allocator takes Services as written) still replaces
/// the first, which gives back its address, as `assign_all` does.
#[test]
fn allocate_decides_a_key_given_twice_as_assign_all() {
    let config = config_of(
        &[
            pool("a", "addresses: [10.0.0.0/30]"),
            svc("s").ips("10.0.0.1").y(),
            svc("t").y(),
            svc("s").ips("10.0.0.1").ports("TCP/443").y(),
        ]
        .concat(),
    );
    let options = AllocatorOptions::default();
    let decided = allocate(&config, &options);
    assert_eq!(
        decided,
        Allocator::new(&config, options).assign_all(&config.services)
    );
    check("twice", &decided.decisions, "s", Got("a", "10.0.0.1"));
    check("twice", &decided.decisions, "t", Got("a", "10.0.0.0"));
}

#[test]
fn every_failure_reason_names_the_service_request() {
    // Failures of automatic picks name what was wanted; those of requests name the
    // annotation or field and its value.
    for case in all_cases() {
        let config = config_of(&case.yaml);
        let options = AllocatorOptions {
            load_balancer_class: case.class.map(Into::into),
        };
        for (key, decision) in allocate(&config, &options).decisions {
            let Decision::Failed { reason } = decision else {
                continue;
            };
            let names_request = [
                "annotation",
                "annotations",
                "spec.",
                "both ",
                "no address pool",
            ]
            .iter()
            .any(|fragment| reason.contains(fragment));
            assert!(names_request, "{}: {key}: {reason}", case.name);
        }
    }
}

/// Expected usage of one pool: (name, total, in use).
type Usage = (&'static str, u128, u64);

/// (pools, services, expected usage of every pool).
fn usage_table() -> Vec<(Vec<String>, Vec<Svc>, Vec<Usage>)> {
    vec![
        (
            vec![pool("a", "addresses: [10.0.0.0/24]")],
            vec![],
            vec![("a", 256, 0)],
        ),
        (
            vec![pool("a", "addresses: [10.0.0.0/24], avoidBuggyIPs: true")],
            vec![],
            vec![("a", 254, 0)],
        ),
        (
            vec![pool("a", "addresses: [10.0.0.0/23], avoidBuggyIPs: true")],
            vec![],
            vec![("a", 508, 0)],
        ),
        (
            vec![pool(
                "a",
                "addresses: [10.0.0.254-10.0.1.1], avoidBuggyIPs: true",
            )],
            vec![],
            vec![("a", 2, 0)],
        ),
        (
            vec![pool(
                "a",
                "addresses: [10.0.0.1-10.0.0.254], avoidBuggyIPs: true",
            )],
            vec![],
            vec![("a", 254, 0)],
        ),
        (
            vec![pool("a", "addresses: [10.0.0.255/32], avoidBuggyIPs: true")],
            vec![],
            vec![("a", 0, 0)],
        ),
        (
            vec![pool("a", "addresses: [128.0.0.0/2], avoidBuggyIPs: true")],
            vec![],
            vec![("a", (1u128 << 30) - (1 << 23), 0)],
        ),
        (
            // The subnet-router anycast address 2001:db8:: is never handed out.
            vec![pool(
                "a",
                "addresses: [2001:db8::/120], avoidBuggyIPs: true",
            )],
            vec![],
            vec![("a", 255, 0)],
        ),
        (
            vec![pool("a", "addresses: ['2001:db8::-2001:db8::ff']")],
            vec![],
            vec![("a", 256, 0)],
        ),
        (
            vec![pool("a", "addresses: ['4000::/2']")],
            vec![],
            vec![("a", (1u128 << 126) - 1, 0)],
        ),
        (
            vec![pool("a", "addresses: ['2000::/3', '4000::/2']")],
            vec![],
            vec![("a", (1u128 << 125) - 1 + (1u128 << 126) - 1, 0)],
        ),
        (
            vec![
                pool(
                    "a",
                    "addresses: [10.0.0.0/30, 10.0.2.0/31, 2001:db8::-2001:db8::3]",
                ),
                pool("b", B),
            ],
            vec![svc("x"), svc("y").require(), svc("z").pool("b")],
            vec![("a", 10, 3), ("b", 4, 1)],
        ),
        (
            vec![pool("a", A)],
            vec![
                svc("x").share("k").ports("TCP/80"),
                svc("y").share("k").ports("TCP/81"),
                svc("z").share("k").ports("TCP/82"),
            ],
            vec![("a", 4, 1)],
        ),
        (
            vec![pool("a", "addresses: [10.0.0.0/32]")],
            vec![svc("x"), svc("y"), svc("i").kind(Some("ClusterIP"))],
            vec![("a", 1, 1)],
        ),
    ]
}

#[test]
fn pool_usage_table() {
    for (pools, services, want) in usage_table() {
        let yaml = pools.concat() + &services.iter().map(Svc::y).collect::<String>();
        let config = config_of(&yaml);
        let usage = pool_usage(
            &config,
            &allocate(&config, &AllocatorOptions::default()).decisions,
        );
        let got: Vec<(&str, u128, u64)> = usage
            .iter()
            .map(|(name, u)| (name.as_str(), u.total, u.in_use))
            .collect();
        assert_eq!(got, want, "{yaml}");
    }
}

#[test]
fn enough_table_cases() {
    let (allocation, usage) = (all_cases().len(), usage_table().len());
    assert!(
        allocation + usage >= 100,
        "only {allocation} + {usage} table cases"
    );
    println!("{allocation} allocation cases, {usage} usage cases");
}
