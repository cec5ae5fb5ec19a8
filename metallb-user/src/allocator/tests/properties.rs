//! Property tests of the allocator: random small pools (so that addresses collide) and
//! random Services, checked against rules written here from MetalLB's documentation,
//! never with the allocator's own functions: an address lies in a range of the pool
//! its decision names (never a held-back IPv6 anycast address, never .0/.255 of a pool
//! avoiding them), the families are what the Service asks for, the pool it names or
//! the addresses it asks for are what it gets (or it fails with a reason), two Services
//! holding one address may share it, a restart changes nothing; and the same on the
//! one-at-a-time path after random creations and deletions.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use rand::{RngExt as _, rngs::StdRng};

use super::*;
use crate::property::{case_rng, pick, settings};

/// A pool as generated: what the test knows of it, independently of validation.
#[derive(Clone, Debug)]
struct PoolModel {
    name: String,
    /// Inclusive address intervals it may hand out (an IPv6 CIDR without its first,
    /// subnet-router anycast, address).
    ranges: Vec<(IpAddr, IpAddr)>,
    auto_assign: bool,
    avoid_buggy: bool,
    /// serviceAllocation: (listed namespaces, `app` label selected).
    allocation: Option<(Vec<String>, Option<String>)>,
}

impl PoolModel {
    fn contains(&self, ip: IpAddr) -> bool {
        let buggy = match ip {
            IpAddr::V4(v4) => matches!(v4.octets()[3], 0 | 255),
            IpAddr::V6(_) => false,
        };
        !(self.avoid_buggy && buggy)
            && self
                .ranges
                .iter()
                .any(|(first, last)| first.is_ipv4() == ip.is_ipv4() && *first <= ip && ip <= *last)
    }

    /// Whether its serviceAllocation admits a service of `namespace` labelled `app`.
    fn admits(&self, namespace: &str, app: &str) -> bool {
        self.allocation
            .as_ref()
            .is_none_or(|(namespaces, selected)| {
                (namespaces.is_empty() || namespaces.iter().any(|n| n == namespace))
                    && selected.as_ref().is_none_or(|s| s == app)
            })
    }
}

/// Which addresses a Service wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wants {
    V4,
    V6,
    /// PreferDualStack: one or both.
    Prefer,
    Both,
}

/// A Service as generated.
#[derive(Clone)]
struct SvcModel {
    svc: Svc,
    namespace: String,
    app: String,
    wants: Wants,
    /// allow-shared-ip key.
    share: Option<String>,
    ports: BTreeSet<(String, i32)>,
    /// externalTrafficPolicy Local, with the `app` it selects.
    local: Option<String>,
    pool: Option<String>,
    requested: Option<Vec<IpAddr>>,
    /// Status addresses it carried when generated.
    status: Vec<IpAddr>,
}

impl SvcModel {
    fn key(&self) -> ServiceKey {
        ServiceKey {
            namespace: self.namespace.clone(),
            name: self.svc.name.clone(),
        }
    }
}

/// One IPv4 or IPv6 entry of pool `p`, its `k`th, small; with what it may hand out.
fn entry(rng: &mut StdRng, p: usize, k: usize) -> (String, (IpAddr, IpAddr)) {
    let ip = |text: String| text.parse::<IpAddr>().expect("generated address");
    let (a, b) = (2 * k, 2 * k + 1);
    let n = rng.random_range(0..4);
    let (text, first, last) = match rng.random_range(0..5) {
        0 => {
            let bits = *pick(rng, &[29, 30, 31, 32]);
            let size = 1u32 << (32 - bits);
            let last = format!("10.{p}.{a}.{}", size - 1);
            (
                format!("10.{p}.{a}.0/{bits}"),
                format!("10.{p}.{a}.0"),
                last,
            )
        }
        1 => (
            // Across a /24 border: .254, .255, .0, .1.
            format!("10.{p}.{a}.254-10.{p}.{b}.1"),
            format!("10.{p}.{a}.254"),
            format!("10.{p}.{b}.1"),
        ),
        2 => (
            format!("10.{p}.{a}.5-10.{p}.{a}.{}", 5 + n),
            format!("10.{p}.{a}.5"),
            format!("10.{p}.{a}.{}", 5 + n),
        ),
        3 => {
            let bits = *pick(rng, &[125, 126]);
            let size = 1u32 << (128 - bits);
            (
                format!("2001:db8:{p}:{k}::/{bits}"),
                // The anycast address is never handed out.
                format!("2001:db8:{p}:{k}::1"),
                format!("2001:db8:{p}:{k}::{:x}", size - 1),
            )
        }
        _ => (
            format!("2001:db8:{p}:{k}::5-2001:db8:{p}:{k}::{}", 5 + n),
            format!("2001:db8:{p}:{k}::5"),
            format!("2001:db8:{p}:{k}::{}", 5 + n),
        ),
    };
    (text, (ip(first), ip(last)))
}

fn gen_pools(rng: &mut StdRng) -> (Vec<PoolModel>, String) {
    let mut models = Vec::new();
    let mut yaml = namespace("a", "team: x") + &namespace("b", "team: y");
    for p in 0..rng.random_range(1..4) {
        let (mut texts, mut ranges) = (Vec::new(), Vec::new());
        for k in 0..rng.random_range(1..3) {
            let (text, range) = entry(rng, p, k);
            texts.push(text);
            ranges.push(range);
        }
        let model = PoolModel {
            name: format!("p{p}"),
            ranges,
            auto_assign: rng.random_bool(0.8),
            avoid_buggy: rng.random_bool(0.3),
            allocation: rng.random_bool(0.3).then(|| {
                let namespaces = match rng.random_range(0..3) {
                    0 => vec![],
                    1 => vec!["a".to_owned()],
                    _ => vec!["a".to_owned(), "default".to_owned()],
                };
                (namespaces, rng.random_bool(0.4).then(|| "web".to_owned()))
            }),
        };
        let mut spec = vec![
            format!("addresses: [{}]", texts.join(", ")),
            format!("autoAssign: {}", model.auto_assign),
            format!("avoidBuggyIPs: {}", model.avoid_buggy),
        ];
        if let Some((namespaces, app)) = &model.allocation {
            let mut parts = vec![format!("priority: {}", rng.random_range(0..3))];
            if !namespaces.is_empty() {
                parts.push(format!("namespaces: [{}]", namespaces.join(", ")));
            }
            if let Some(app) = app {
                parts.push(format!(
                    "serviceSelectors: [{{matchLabels: {{app: {app}}}}}]"
                ));
            }
            spec.push(format!("serviceAllocation: {{{}}}", parts.join(", ")));
        }
        yaml += &pool(&model.name, &spec.join(", "));
        models.push(model);
    }
    (models, yaml)
}

/// An address of some pool, near one, or of none.
fn some_address(rng: &mut StdRng, pools: &[PoolModel], v6: bool) -> IpAddr {
    let ranges: Vec<(IpAddr, IpAddr)> = pools
        .iter()
        .flat_map(|p| p.ranges.iter().copied())
        .filter(|(first, _)| first.is_ipv6() == v6)
        .collect();
    if ranges.is_empty() || rng.random_bool(0.1) {
        return if v6 {
            "2001:db8:99::1".parse().expect("address")
        } else {
            "10.99.0.1".parse().expect("address")
        };
    }
    let (first, last) = *pick(rng, &ranges);
    let offset = rng.random_range(0..4u32);
    // From just below the range to just above it.
    match (first, last) {
        (IpAddr::V4(f), IpAddr::V4(l)) => {
            let ip = u32::from(f).saturating_add(offset).min(u32::from(l) + 1);
            IpAddr::V4(ip.into())
        }
        (IpAddr::V6(f), IpAddr::V6(l)) => {
            let ip = u128::from(f).saturating_sub(1) + u128::from(offset);
            IpAddr::V6(ip.min(u128::from(l) + 1).into())
        }
        _ => first,
    }
}

fn gen_service(rng: &mut StdRng, i: usize, pools: &[PoolModel]) -> SvcModel {
    let namespace = *pick(rng, &["default", "a", "b"]);
    let key = if namespace == "default" {
        format!("s{i}")
    } else {
        format!("{namespace}/s{i}")
    };
    let app = *pick(rng, &["web", "db"]);
    let mut svc = svc(&key).label("app", app);
    let wants = *pick(
        rng,
        &[Wants::V4, Wants::V4, Wants::V6, Wants::Prefer, Wants::Both],
    );
    svc = match wants {
        Wants::V4 => svc,
        Wants::V6 => svc.v6(),
        Wants::Prefer if rng.random_bool(0.5) => svc.prefer().v6(),
        Wants::Prefer => svc.prefer(),
        Wants::Both => svc.require(),
    };
    let share = rng
        .random_bool(0.6)
        .then(|| (*pick(rng, &["k1", "k2"])).to_owned());
    if let Some(key) = &share {
        svc = svc.share(key);
    }
    let mut ports = BTreeSet::new();
    for _ in 0..rng.random_range(1..3) {
        let protocol = *pick(rng, &["TCP", "UDP"]);
        ports.insert((protocol.to_owned(), *pick(rng, &[53, 80, 443])));
    }
    let listed: Vec<String> = ports.iter().map(|(p, n)| format!("{p}/{n}")).collect();
    svc = svc.ports(&listed.join(" "));
    let local = rng
        .random_bool(0.3)
        .then(|| (*pick(rng, &["web", "db"])).to_owned());
    if let Some(selected) = &local {
        svc = svc.local(&format!("app: {selected}"));
    }
    let pool = rng
        .random_bool(0.25)
        .then(|| format!("p{}", rng.random_range(0..4)));
    if let Some(name) = &pool {
        svc = svc.pool(name);
    }
    let requested = rng.random_bool(0.3).then(|| match wants {
        Wants::V4 => vec![some_address(rng, pools, false)],
        Wants::V6 => vec![some_address(rng, pools, true)],
        Wants::Prefer | Wants::Both => vec![
            some_address(rng, pools, false),
            some_address(rng, pools, true),
        ],
    });
    if let Some(ips) = &requested {
        let text: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
        svc = if ips.len() == 1 && rng.random_bool(0.3) {
            svc.spec(&format!("loadBalancerIP: {:?}", text[0]))
        } else {
            svc.ips(&text.join(","))
        };
    }
    let status: Vec<IpAddr> = if rng.random_bool(0.2) {
        let v6 = rng.random_bool(0.4);
        vec![some_address(rng, pools, v6)]
    } else {
        Vec::new()
    };
    let texts: Vec<String> = status.iter().map(IpAddr::to_string).collect();
    if !texts.is_empty() {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        svc = svc.status(&texts);
    }
    SvcModel {
        svc,
        namespace: namespace.to_owned(),
        app: app.to_owned(),
        wants,
        share,
        ports,
        local,
        pool,
        requested,
        status,
    }
}

/// What is wrong with `allocation` for `service` wherever it came from: an address
/// its pool does not hand out, families the service did not ask for, a pool that does
/// not admit it.
fn check_addresses(
    pools: &[PoolModel],
    service: &SvcModel,
    allocation: &Allocation,
) -> Option<String> {
    let Some(pool) = pools.iter().find(|p| p.name == allocation.pool) else {
        return Some(format!("no pool {}", allocation.pool));
    };
    let ips = &allocation.ips;
    if let Some(ip) = ips.iter().find(|ip| !pool.contains(**ip)) {
        return Some(format!(
            "{ip} is not an address pool {} hands out",
            pool.name
        ));
    }
    let v4 = ips.iter().filter(|ip| ip.is_ipv4()).count();
    let v6 = ips.len() - v4;
    let families_ok = match service.wants {
        Wants::V4 => (v4, v6) == (1, 0),
        Wants::V6 => (v4, v6) == (0, 1),
        Wants::Both => (v4, v6) == (1, 1),
        Wants::Prefer => v4 <= 1 && v6 <= 1 && !ips.is_empty(),
    };
    if !families_ok || (v4 == 1 && ips.first().is_some_and(IpAddr::is_ipv6)) {
        return Some(format!("families {ips:?} for {:?}", service.wants));
    }
    if !pool.admits(&service.namespace, &service.app) {
        return Some(format!("pool {} does not admit it", pool.name));
    }
    if service
        .pool
        .as_ref()
        .is_some_and(|asked| *asked != pool.name)
    {
        return Some(format!("asked for pool {:?}", service.pool));
    }
    if let Some(asked) = &service.requested {
        let mut asked = asked.clone();
        asked.sort_by_key(IpAddr::is_ipv6);
        if asked != *ips {
            return Some(format!("asked for {asked:?}"));
        }
    }
    None
}

/// What is wrong with `decision` for `service`, carrying `status`, by the rules.
fn check_decision(
    pools: &[PoolModel],
    service: &SvcModel,
    status: &[IpAddr],
    decision: &Decision,
) -> Option<String> {
    let allocation = match decision {
        Decision::Allocated(allocation) => allocation,
        Decision::Failed { reason } if reason.trim().is_empty() => {
            return Some("failed without a reason".into());
        }
        Decision::Failed { reason } => {
            if service.requested.is_some() && !reason.contains("loadBalancerIP") {
                return Some(format!(
                    "asked for addresses, refused without naming the request: {reason}"
                ));
            }
            return None;
        }
        Decision::Ignored { reason } => return Some(format!("ignored: {reason}")),
    };
    if let Some(wrong) = check_addresses(pools, service, allocation) {
        return Some(wrong);
    }
    let auto_assign = pools
        .iter()
        .any(|p| p.name == allocation.pool && p.auto_assign);
    let chosen = service.pool.is_some() || service.requested.is_some();
    // A status address is kept whatever autoAssign (PreferDualStack may add the other family).
    let kept = allocation.ips.iter().any(|ip| status.contains(ip));
    if !auto_assign && !chosen && !kept {
        return Some(format!(
            "picked automatically from pool {}, autoAssign false",
            allocation.pool
        ));
    }
    None
}

/// Why `a` and `b` may not hold one address, by MetalLB's rules: the same
/// allow-shared-ip key, no port (protocol and number) in common, and both
/// externalTrafficPolicy Cluster or both Local selecting the same pods.
fn sharing_violation(a: &SvcModel, b: &SvcModel) -> Option<&'static str> {
    if a.share.is_none() || a.share != b.share {
        return Some("not the same sharing key");
    }
    if a.ports.intersection(&b.ports).next().is_some() {
        return Some("a common port");
    }
    if a.local != b.local {
        return Some("not the same traffic policy and pods");
    }
    None
}

/// Checks every holding of `held` (service, its addresses) against the rules, and
/// every pair of services holding one address.
fn check_holdings(context: &str, pools: &[PoolModel], held: &[(&SvcModel, &Allocation)]) {
    let mut by_ip: BTreeMap<IpAddr, Vec<&SvcModel>> = BTreeMap::new();
    for (service, allocation) in held {
        if let Some(wrong) = check_addresses(pools, service, allocation) {
            panic!("{context}: {}: {allocation:?}: {wrong}", service.key());
        }
        for ip in &allocation.ips {
            by_ip.entry(*ip).or_default().push(service);
        }
    }
    for (ip, holders) in &by_ip {
        for (i, a) in holders.iter().enumerate() {
            for b in &holders[i + 1..] {
                if let Some(why) = sharing_violation(a, b) {
                    panic!("{context}: {ip} held by {} and {}: {why}", a.key(), b.key());
                }
            }
        }
    }
}

fn generate(rng: &mut StdRng) -> (Vec<PoolModel>, Vec<SvcModel>, Config) {
    let (pools, mut yaml) = gen_pools(rng);
    let services: Vec<SvcModel> = (0..rng.random_range(1..9))
        .map(|i| gen_service(rng, i, &pools))
        .collect();
    for service in &services {
        yaml += &service.svc.y();
    }
    (pools, services, config_of(&yaml))
}

/// The decisions without the reasons of failures: a failure's reason describes the
/// pools as they were when the Service was decided, which a restart's order (Services
/// with a status first) may change; what each Service gets may not change.
fn outcomes(decisions: &BTreeMap<ServiceKey, Decision>) -> BTreeMap<ServiceKey, Decision> {
    let mut outcomes = decisions.clone();
    for decision in outcomes.values_mut() {
        if let Decision::Failed { reason } = decision {
            reason.clear();
        }
    }
    outcomes
}

#[test]
fn allocation_properties() {
    let (seed, cases) = settings("allocation_properties", 400);
    for case in 0..cases {
        let mut rng = case_rng(seed, case);
        let (pools, services, config) = generate(&mut rng);
        let context = format!("PROPERTY_SEED={seed} case {case}");
        let decisions = allocate(&config, &AllocatorOptions::default()).decisions;
        let mut held = Vec::new();
        for service in &services {
            let decision = &decisions[&service.key()];
            if let Some(wrong) = check_decision(&pools, service, &service.status, decision) {
                panic!("{context}: {}: {decision:?}: {wrong}", service.key());
            }
            if let Decision::Allocated(allocation) = decision {
                held.push((service, allocation));
            }
        }
        check_holdings(&context, &pools, &held);
        let again = allocate(
            &restarted(&config, &decisions),
            &AllocatorOptions::default(),
        );
        assert_eq!(
            outcomes(&again.decisions),
            outcomes(&decisions),
            "{context}: a restart changed the decisions"
        );
    }
}

#[test]
fn one_at_a_time_properties() {
    let (seed, cases) = settings("one_at_a_time_properties", 150);
    for case in 0..cases {
        let mut rng = case_rng(seed, case);
        let (pools, services, config) = generate(&mut rng);
        let context = format!("PROPERTY_SEED={seed} case {case}");
        let objects: Vec<Service> = services.iter().map(|s| s.svc.service()).collect();
        let mut allocator = Allocator::new(&config, AllocatorOptions::default());
        let mut live: BTreeMap<usize, Option<Allocation>> = BTreeMap::new();
        for step in 0..rng.random_range(1..25) {
            let i = rng.random_range(0..services.len());
            let key = services[i].key();
            if live.contains_key(&i) && rng.random_bool(0.4) {
                let before = live.remove(&i).flatten();
                assert_eq!(
                    allocator.release(&key),
                    before,
                    "{context} step {step}: release {key}"
                );
            } else {
                // Created, or changed with the status written for what it holds.
                let mut object = objects[i].clone();
                let mut status = services[i].status.clone();
                if let Some(Some(allocation)) = live.get(&i) {
                    set_status(&mut object, &allocation.ips);
                    status.clone_from(&allocation.ips);
                }
                let decision = allocator.assign(&object).decision;
                if let Some(wrong) = check_decision(&pools, &services[i], &status, &decision) {
                    panic!("{context} step {step}: {key}: {decision:?}: {wrong}");
                }
                let got = match decision {
                    Decision::Allocated(allocation) => Some(allocation),
                    _ => None,
                };
                // What it holds, it keeps (PreferDualStack may gain the other family).
                if let Some(Some(before)) = live.get(&i) {
                    let kept = got.as_ref().is_some_and(|got| {
                        got == before
                            || (services[i].wants == Wants::Prefer
                                && got.pool == before.pool
                                && before.ips.iter().all(|ip| got.ips.contains(ip)))
                    });
                    assert!(
                        kept,
                        "{context} step {step}: {key} held {before:?}, now {got:?}"
                    );
                }
                live.insert(i, got);
            }
            let held: Vec<(&SvcModel, &Allocation)> = live
                .iter()
                .filter_map(|(i, a)| a.as_ref().map(|a| (&services[*i], a)))
                .collect();
            for (service, allocation) in &held {
                assert_eq!(
                    allocator.allocation(&service.key()),
                    Some(*allocation),
                    "{context}"
                );
            }
            assert_eq!(
                allocator.held_keys().count(),
                held.len(),
                "{context} step {step}"
            );
            check_holdings(&format!("{context} step {step}"), &pools, &held);
        }
    }
}
