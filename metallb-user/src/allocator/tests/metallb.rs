//! MetalLB's own tests, ported: `controller/controller_test.go` (TestControllerMutation
//! as table cases, the other controller tests and `internal/allocator/allocator_test.go`
//! as sequences of steps on one [`Allocator`]). Only the cases whose outcome depends
//! on order, sharing, pools, dual-stack or status keeping.
//!
//! Deliberate differences, said again where a case meets them:
//! - MetalLB picks at random between equally eligible pools; this allocator takes
//!   them by name, so where MetalLB's test accepts any address of a set, the exact
//!   address is asserted here.
//! - MetalLB's tests build pools without validation, some overlapping; validation
//!   refuses overlapping pools, so such pools get addresses of their own here.
//! - MetalLB reads a service's families from `spec.clusterIPs`, which a single-stack
//!   cluster gives one of; a file has no cluster, so `ipFamilies` and
//!   `ipFamilyPolicy` decide, as on a dual-stack cluster.
//! - When a changed service's request cannot be met, MetalLB's controller clears what
//!   it held (its allocator alone would keep it): so does [`Allocator::assign`].
//! - An IPv6 CIDR of prefix length 126 or less never hands out its subnet-router
//!   anycast address here (MetalLB hands it out): where MetalLB's test expects that
//!   address, its CIDR is written as the equal `first-last` range.
//! - Pool names follow the API server's rules here (`not_this_one` is
//!   `not-this-one`).

use super::*;

/// TestControllerMutation's pools. Its `pool5` is `[1.2.3.0/31, 1000::/127]`,
/// overlapping `pool1` and `pool3`: here it has addresses of its own.
fn controller_pools() -> Vec<String> {
    let team = "serviceSelectors: [{matchLabels: {team: metallb}}]";
    vec![
        pool("pool1", "addresses: [1.2.3.0/31]"),
        pool("pool2", "addresses: [3.4.5.6/32], autoAssign: false"),
        pool("pool3", "addresses: ['1000::/127']"),
        pool("pool4", "addresses: ['2000::1/128'], autoAssign: false"),
        pool("pool5", "addresses: [1.2.3.2/31, '1000::2/127']"),
        pool(
            "pool6",
            "addresses: [7.8.9.0/31], serviceAllocation: {priority: 10, namespaces: [test-ns1]}",
        ),
        pool(
            "pool7",
            "addresses: [10.11.12.0/31], serviceAllocation: {priority: 11, namespaces: [test-ns1]}",
        ),
        pool(
            "pool8",
            &format!("addresses: [13.14.15.0/31], serviceAllocation: {{priority: 9, {team}}}"),
        ),
        pool(
            "pool9",
            "addresses: [16.17.18.0/31], serviceAllocation: {namespaces: [test-ns2]}",
        ),
        pool(
            "pool10",
            &format!("addresses: [19.20.21.0/31], serviceAllocation: {{priority: 8, {team}}}"),
        ),
        pool(
            "pool11",
            &format!(
                "addresses: [22.23.24.0/31], serviceAllocation: {{priority: 8, namespaces: [test-ns1], {team}}}"
            ),
        ),
        pool(
            "pool12",
            &format!(
                "addresses: [25.26.27.0/31], serviceAllocation: {{priority: 5, namespaces: [test-ns1], {team}}}"
            ),
        ),
    ]
}

/// TestControllerMutation: (case, the service, the decision). In MetalLB every
/// service is named "test" (its key), here "test" in its namespace.
fn controller_mutation() -> Vec<(&'static str, Svc, Want)> {
    let dual = |s: Svc| s.spec("ipFamilies: [IPv4, IPv6]");
    let hostname_and = |ip: &str| {
        format!("{{loadBalancer: {{ingress: [{{hostname: foo.bar.local}}, {{ip: {ip:?}}}]}}}}")
    };
    vec![
        (
            "simple non-LoadBalancer",
            svc("test").kind(Some("ClusterIP")),
            Ignored("spec.type is ClusterIP, not LoadBalancer"),
        ),
        ("simple LoadBalancer", svc("test"), Got("pool1", "1.2.3.0")),
        (
            "request specific IP",
            svc("test").spec("loadBalancerIP: 1.2.3.1"),
            Got("pool1", "1.2.3.1"),
        ),
        (
            "request specific IP via custom annotation",
            svc("test").ips("1.2.3.1"),
            Got("pool1", "1.2.3.1"),
        ),
        (
            "request IP from both svc.spec.LoadBalancerIP and custom annotation",
            svc("test").ips("1.2.3.1").spec("loadBalancerIP: 1.2.3.2"),
            Fails(
                "both annotation metallb.io/loadBalancerIPs=\"1.2.3.1\" and spec.loadBalancerIP=\"1.2.3.2\" are set",
            ),
        ),
        (
            "request invalid IP",
            svc("test").spec("loadBalancerIP: please sir may I have an IP address thank you"),
            Fails("is not an IP address"),
        ),
        (
            "incompatible ip and address pool annotations",
            svc("test").ips("1.2.3.1").pool("pool2"),
            Fails(
                "1.2.3.1 is in pool pool1, but annotation metallb.io/address-pool=\"pool2\" asks for pool pool2",
            ),
        ),
        (
            "request invalid IP via custom annotation",
            svc("test").ips("please sir may I have an IP address thank you"),
            Fails("is not an IP address"),
        ),
        (
            "request two IPs from same ip family via custom annotation",
            svc("test").ips("1.2.3.1,1.2.3.2"),
            Fails("lists two IPv4 addresses; at most one per IP family"),
        ),
        (
            "request infeasible IP",
            svc("test")
                .spec("loadBalancerIP: 1.2.3.4")
                .status(&["1.2.3.1"]),
            Fails("spec.loadBalancerIP=\"1.2.3.4\": 1.2.3.4 is in no address pool"),
        ),
        (
            "request IP from specific pool",
            svc("test").pool("pool1"),
            Got("pool1", "1.2.3.0"),
        ),
        (
            "switch to a different specific pool",
            svc("test").pool("pool2").status(&["1.2.3.0"]),
            Got("pool2", "3.4.5.6"),
        ),
        (
            "unknown pool requested",
            svc("test").pool("does-not-exist"),
            Fails(
                "annotation metallb.io/address-pool=\"does-not-exist\": no address pool has this name",
            ),
        ),
        (
            "invalid IP assigned",
            svc("test").status(&["2.3.4.5"]),
            Got("pool1", "1.2.3.0"),
        ),
        (
            "invalid ingress state",
            svc("test").raw_status(&hostname_and("10.10.10.10")),
            Got("pool1", "1.2.3.0"),
        ),
        (
            "former LoadBalancer, now NodePort",
            svc("test").kind(Some("NodePort")).status(&["1.2.3.0"]),
            Ignored("spec.type is NodePort, not LoadBalancer"),
        ),
        (
            "request layer2 service",
            svc("test").spec("loadBalancerIP: 3.4.5.6"),
            Got("pool2", "3.4.5.6"),
        ),
        (
            "Layer2 service with local traffic policy",
            svc("test")
                .spec("loadBalancerIP: 3.4.5.6")
                .spec("externalTrafficPolicy: Local"),
            Got("pool2", "3.4.5.6"),
        ),
        // "No ClusterIP": MetalLB leaves a service without cluster IPs alone (it
        // cannot tell its family); a file has no cluster IPs, IPv4 is the default.
        (
            "request IP from wrong ip-family (ipv4)",
            svc("test").v6().spec("loadBalancerIP: 1.2.3.1"),
            Fails("1.2.3.1 is IPv4, but the service is single-stack IPv6"),
        ),
        (
            "request IP from wrong ip-family (ipv4) via custom annotation",
            svc("test").v6().ips("1.2.3.1"),
            Fails("1.2.3.1 is IPv4, but the service is single-stack IPv6"),
        ),
        (
            "request IP from wrong ip-family (ipv6)",
            svc("test").spec("loadBalancerIP: '1000::'"),
            Fails("1000:: is IPv6, but the service is single-stack IPv4"),
        ),
        (
            "request IP from wrong ip-family (ipv6) via custom annotation",
            svc("test").ips("1000::"),
            Fails("1000:: is IPv6, but the service is single-stack IPv4"),
        ),
        (
            "IP from wrong ip-family (ipv6) assigned",
            svc("test").status(&["1000::"]),
            Got("pool1", "1.2.3.0"),
        ),
        (
            "IP from wrong ip-family (ipv4) assigned",
            svc("test").v6().status(&["1.2.3.0"]),
            Got("pool3", "1000::"),
        ),
        // MetalLB: 1.2.3.0 and 1000:: from its overlapping pool5.
        (
            "simple dual-stack LoadBalancer",
            svc("test").require(),
            Got("pool5", "1.2.3.2,1000::2"),
        ),
        (
            "request IPs from specific pool",
            svc("test").require().pool("pool5"),
            Got("pool5", "1.2.3.2,1000::2"),
        ),
        (
            "simple dual-stack LoadBalancer with PreferDualStack policy",
            dual(svc("test")).prefer(),
            Got("pool5", "1.2.3.2,1000::2"),
        ),
        (
            "single-stack LoadBalancer with PreferDualStack policy",
            svc("test-ns1/test").prefer(),
            Got("pool6", "7.8.9.0"),
        ),
        (
            "request IPs from dualstack pool with PreferDualStack policy",
            dual(svc("test")).prefer().pool("pool5"),
            Got("pool5", "1.2.3.2,1000::2"),
        ),
        (
            "request IP from single-stack ipv4 pool with PreferDualStack policy",
            dual(svc("test")).prefer().pool("pool1"),
            Got("pool1", "1.2.3.0"),
        ),
        (
            "request IP from single-stack ipv6 pool with PreferDualStack policy",
            svc("test").v6().prefer().pool("pool3"),
            Got("pool3", "1000::"),
        ),
        // MetalLB: 1.2.3.0 alone, its single-stack cluster gave one cluster IP. (Its
        // RequireDualStack twin fails there for the same reason; here it would get
        // both addresses, as on a dual-stack cluster.)
        (
            "request IPs from dualstack pool with PreferDualStack policy but single stack clusterip",
            svc("test").prefer().pool("pool5"),
            Got("pool5", "1.2.3.2,1000::2"),
        ),
        (
            "request specific loadbalancer IP with dual-stack",
            dual(svc("test")).spec("loadBalancerIP: 1.2.3.1"),
            Fails(
                "a dual-stack service (spec.ipFamilyPolicy RequireDualStack) needs one IPv4 and one IPv6 address, not one",
            ),
        ),
        (
            "request specific loadbalancer IPv4 address via custom annotation for dual-stack config",
            dual(svc("test")).ips("1.2.3.1"),
            Fails("needs one IPv4 and one IPv6 address, not one"),
        ),
        // MetalLB asks for 1.2.3.0 and 1000::, both in its overlapping pool5.
        (
            "request dual-stack loadbalancer IPs via custom annotation",
            dual(svc("test")).require().ips("1.2.3.2,1000::2"),
            Got("pool5", "1.2.3.2,1000::2"),
        ),
        (
            "request dual-stack loadbalancer with invalid ingress",
            svc("test")
                .spec("ipFamilies: [IPv6, IPv4]")
                .require()
                .raw_status(&hostname_and("1000::")),
            Got("pool5", "1.2.3.2,1000::2"),
        ),
        (
            "request dual-stack loadbalancer IPs via custom annotation in a single stack cluster",
            svc("test").ips("1.2.3.0,1000::"),
            Fails("asks for two addresses, but the service is single-stack IPv4"),
        ),
        (
            "request IP for service from namespace specific ip pool",
            svc("test-ns1/test"),
            Got("pool6", "7.8.9.0"),
        ),
        (
            "request IP for service from no priority namespace specific ip pool",
            svc("test-ns2/test"),
            Got("pool9", "16.17.18.0"),
        ),
        (
            "request IP for service from service label specific ip pool",
            svc("test").label("team", "metallb"),
            Got("pool10", "19.20.21.0"),
        ),
        (
            "request IP for service from ip pool having both namespace and service label",
            svc("test-ns1/test").label("team", "metallb"),
            Got("pool12", "25.26.27.0"),
        ),
        (
            "simple LoadBalancer, ips already assigned but can't determine family",
            svc("test").status(&["1.2.3.0", "1.2.3.1", "1.2.3.2"]),
            Got("pool1", "1.2.3.0"),
        ),
    ]
}

pub(super) fn controller_mutation_cases() -> Vec<Case> {
    let pools = controller_pools();
    controller_mutation()
        .into_iter()
        .map(|(name, service, want)| {
            let mut objects = pools.clone();
            objects.push(service.y());
            let key = Box::leak(service.key_text().into_boxed_str());
            case(name, &objects, &[(key, want)])
        })
        .collect()
}

/// MetalLB runs TestControllerMutation's cases on one controller, 100 times in
/// shuffled orders: each decision must be the same whatever came before. Here: on
/// one allocator, in several orders.
#[test]
fn controller_mutation_does_not_depend_on_history() {
    let cases = controller_mutation();
    let config = config_of(&controller_pools().concat());
    let count = cases.len();
    let coprime = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a == 1
    };
    // Multiplying by a step coprime with the count permutes 0..count.
    let orders: Vec<Vec<usize>> = (1..count)
        .filter(|step| coprime(*step, count))
        .take(4)
        .flat_map(|step| {
            let forward: Vec<usize> = (0..count).map(|i| i * step % count).collect();
            let backward = forward.iter().rev().copied().collect();
            [forward, backward]
        })
        .collect();
    assert_eq!(orders.len(), 8);
    for order in orders {
        let mut allocator = Allocator::new(&config, AllocatorOptions::default());
        for i in order {
            let (name, service, want) = &cases[i];
            let decision = allocator.assign(&service.service()).decision;
            check_one(name, &service.key_text(), &decision, *want);
        }
    }
}

/// How a round of steps shapes its services (single-stack IPv4 or IPv6, dual-stack).
type Shape = fn(Svc) -> Svc;

/// One step on an allocator.
enum Step {
    /// The service is created or changed: its decision. After a failure it holds
    /// nothing.
    Assign(Svc, Want),
    /// The service is deleted.
    Release(&'static str),
    /// The pools are replaced: the services that lose their addresses.
    Pools(Vec<String>, Vec<&'static str>),
    /// The pool a service holds addresses from.
    HeldFrom(&'static str, Option<&'static str>),
    /// A pool's counts: IPv4 assigned and available, IPv6 assigned and available
    /// (MetalLB's `PoolCounters`); `None`: no such pool.
    Usage(&'static str, Option<[u128; 4]>),
}
use Step::*;

fn run_steps(name: &str, pools: &[String], steps: Vec<Step>) {
    let mut allocator = Allocator::new(&config_of(&pools.concat()), AllocatorOptions::default());
    for (i, step) in steps.into_iter().enumerate() {
        let at = format!("{name}, step {i}");
        match step {
            Assign(service, want) => {
                let decision = allocator.assign(&service.service()).decision;
                let key_text = service.key_text();
                check_one(&at, &key_text, &decision, want);
                let held = match &decision {
                    Decision::Allocated(allocation) => Some(allocation),
                    _ => None,
                };
                assert_eq!(allocator.allocation(&key(&key_text)), held, "{at}");
            }
            Release(service) => {
                assert!(allocator.release(&key(service)).is_some(), "{at}");
            }
            Pools(pools, released) => {
                let mut got = allocator.set_config(&config_of(&pools.concat()));
                got.sort();
                let mut want: Vec<ServiceKey> = released.into_iter().map(key).collect();
                want.sort();
                assert_eq!(got, want, "{at}: released");
            }
            HeldFrom(service, pool) => assert_eq!(
                allocator
                    .allocation(&key(service))
                    .map(|allocation| allocation.pool.as_str()),
                pool,
                "{at}"
            ),
            Usage(pool, want) => {
                let got = allocator.usage().get(pool).map(|u| {
                    [
                        u128::from(u.ipv4.in_use),
                        u.ipv4.available(),
                        u128::from(u.ipv6.in_use),
                        u.ipv6.available(),
                    ]
                });
                assert_eq!(got, want, "{at}: usage of {pool}");
            }
        }
    }
}

/// allocator_test.go TestAssignment: explicit addresses (the controller's path for
/// `loadBalancerIPs`), sharing keys, backend keys (externalTrafficPolicy), buggy
/// addresses, dual-stack and pool selection.
#[test]
fn allocator_assignment() {
    let pools = [
        pool("test", "addresses: [1.2.3.4/31, '1000::4/127']"),
        pool(
            "test2",
            "addresses: [1.2.4.0/24, '1000::4:0/120'], avoidBuggyIPs: true",
        ),
        pool(
            "test3",
            "addresses: [1.2.5.0/24, '1000::5:0/120'], avoidBuggyIPs: true, serviceAllocation: {namespaces: [test-ns1]}",
        ),
        pool(
            "test4",
            "addresses: [1.2.6.0/24, '1000::6:0/120'], avoidBuggyIPs: true, serviceAllocation: {serviceSelectors: [{matchLabels: {team: metallb}}]}",
        ),
        pool(
            "test5",
            "addresses: [1.2.7.0/24, '1000::7:0/120'], avoidBuggyIPs: true, serviceAllocation: {priority: 20, namespaces: [test-ns1], serviceSelectors: [{matchLabels: {team: metallb}}]}",
        ),
        pool(
            "test6",
            "addresses: [1.2.8.0/24, '1000::9:0/120'], avoidBuggyIPs: true, serviceAllocation: {priority: 20, namespaces: [test-ns2], serviceSelectors: [{matchLabels: {foo: bar}}]}",
        ),
    ];
    let shared =
        |name: &str, ip: &str, key: &str, ports: &str| svc(name).ips(ip).share(key).ports(ports);
    let buggy = "ends in .0 or .255, which pool test2 avoids (avoidBuggyIPs)";
    run_steps(
        "TestAssignment",
        &pools,
        vec![
            Assign(svc("s1").ips("1.2.3.4"), Got("test", "1.2.3.4")),
            Assign(svc("s1").ips("1.2.3.4"), Got("test", "1.2.3.4")),
            Assign(
                svc("s2").ips("1.2.3.4"),
                Fails("1.2.3.4 is in use by default/s1, which does not allow sharing"),
            ),
            Assign(svc("s2").ips("1.2.3.5"), Got("test", "1.2.3.5")),
            // MetalLB's allocator keeps s1 on 1.2.3.4 here; its controller, which
            // clears a service whose requested addresses changed, does not.
            Assign(
                svc("s1").ips("1.2.3.5"),
                Fails("1.2.3.5 is in use by default/s2"),
            ),
            Assign(svc("s2").ips("1.2.3.4"), Got("test", "1.2.3.4")),
            Assign(svc("s1").ips("1.2.3.5"), Got("test", "1.2.3.5")),
            Assign(svc("s3").ips("1.2.4.0"), Fails(buggy)),
            Assign(svc("s3").ips("1.2.4.255"), Fails(buggy)),
            Assign(svc("s3").ips("1.2.4.254"), Got("test2", "1.2.4.254")),
            Assign(
                shared("s4", "1.2.4.3", "sharing", "TCP/80"),
                Got("test2", "1.2.4.3"),
            ),
            // s4 changes its sharing key in place.
            Assign(
                shared("s4", "1.2.4.3", "share", "TCP/80"),
                Got("test2", "1.2.4.3"),
            ),
            Assign(
                shared("s3", "1.2.4.3", "share", "TCP/80"),
                Fails("1.2.4.3 is shared, but port TCP/80 is already used on it by default/s4"),
            ),
            Assign(
                shared("s3", "1.2.4.3", "othershare", "TCP/443"),
                Fails(
                    "in use by default/s4 under sharing key \"share\", not this service's key \"othershare\"",
                ),
            ),
            // MetalLB's "backend key": a Local service does not share with a Cluster one.
            Assign(
                shared("s3", "1.2.4.3", "share", "TCP/443").local("app: web"),
                Fails("in use by default/s4 with externalTrafficPolicy Cluster"),
            ),
            Assign(
                shared("s3", "1.2.4.3", "share", "TCP/443"),
                Got("test2", "1.2.4.3"),
            ),
            // s3 changes its ports, keeping the address.
            Assign(
                shared("s3", "1.2.4.3", "share", "UDP/53"),
                Got("test2", "1.2.4.3"),
            ),
            Assign(
                shared("s3", "1.2.4.3", "othershare", "TCP/443"),
                Fails("not this service's key \"othershare\""),
            ),
            Assign(
                shared("s3", "1.2.4.3", "share", "TCP/443").local("app: web"),
                Fails("with externalTrafficPolicy Cluster"),
            ),
            Assign(svc("s4").ips("1.2.4.254"), Got("test2", "1.2.4.254")),
            // IPv6 (MetalLB repeats every IPv4 step; the logic is the same).
            Assign(svc("s1").v6().ips("1000::4"), Got("test", "1000::4")),
            Assign(
                svc("s2").v6().ips("1000::4"),
                Fails("1000::4 is in use by default/s1"),
            ),
            Assign(svc("s2").v6().ips("1000::4:5"), Got("test2", "1000::4:5")),
            // (buggy addresses are IPv4 only)
            Assign(svc("s3").v6().ips("1000::4:ff"), Got("test2", "1000::4:ff")),
            Assign(
                shared("s4", "1000::4:3", "share", "TCP/80").v6(),
                Got("test2", "1000::4:3"),
            ),
            Assign(
                shared("s3", "1000::4:3", "share", "TCP/80").v6(),
                Fails("port TCP/80 is already used on it by default/s4"),
            ),
            Assign(
                shared("s3", "1000::4:3", "share", "TCP/443").v6(),
                Got("test2", "1000::4:3"),
            ),
            // Dual-stack.
            Release("s2"),
            Assign(
                svc("s1").require().ips("1.2.3.4,1000::4"),
                Got("test", "1.2.3.4,1000::4"),
            ),
            Assign(
                svc("s1").require().ips("1.2.4.5,1000::4"),
                Fails(
                    "1.2.4.5 is in pool test2 and 1000::4 in pool test; both addresses must come from one pool",
                ),
            ),
            // Pools restricted to namespaces and service labels.
            Assign(svc("test-ns1/s1").ips("1.2.5.10"), Got("test3", "1.2.5.10")),
            Assign(
                svc("testns-not-exist/s1").ips("1.2.5.10"),
                Fails(
                    "1.2.5.10 is in pool test3, which serves only namespaces test-ns1 (serviceAllocation), not namespace testns-not-exist",
                ),
            ),
            Assign(
                svc("testns-not-exist/s1")
                    .label("team", "metallb")
                    .ips("1.2.6.10"),
                Got("test4", "1.2.6.10"),
            ),
            Assign(
                svc("testns-not-exist/s1")
                    .label("team", "red")
                    .ips("1.2.6.10"),
                Fails(
                    "1.2.6.10 is in pool test4, which serves only services matching its serviceAllocation.serviceSelectors",
                ),
            ),
            Assign(
                svc("test-ns1/s1").label("team", "metallb").ips("1.2.7.10"),
                Got("test5", "1.2.7.10"),
            ),
            Assign(
                svc("test-ns2/s1").label("team", "metallb").ips("1.2.8.10"),
                Fails("1.2.8.10 is in pool test6, which serves only services matching"),
            ),
            Assign(
                svc("testns-not-exist/s1")
                    .label("foo", "bar")
                    .ips("1.2.8.10"),
                Fails(
                    "serves only namespaces test-ns2 (serviceAllocation), not namespace testns-not-exist",
                ),
            ),
        ],
    );
}

/// allocator_test.go TestPoolAllocation: a pool named by the annotation, filled up,
/// addresses given back and handed out again, sharing once full. MetalLB's test also
/// has pools test-v4, test-v6 and test-dualstack with test's very addresses
/// (overlapping): they are left out.
#[test]
fn allocator_pool_allocation() {
    let pools = [
        pool(
            "not-this-one",
            "addresses: [192.168.0.0/16, 'fc00::1:0/112']",
        ),
        pool(
            "test",
            "addresses: [1.2.3.4/31, 1.2.3.10/31, '1000::/127', '2000::/127']",
        ),
        pool("test2", "addresses: [10.20.30.0/24, 'fc00::2:0/120']"),
    ];
    let from = |name: &str| svc(name).pool("test");
    let full = |family: &str| {
        if family == "IPv4" {
            Fails(
                "annotation metallb.io/address-pool=\"test\": pool test cannot give an IPv4 address: it has no free IPv4 address",
            )
        } else if family == "IPv6" {
            Fails("pool test cannot give an IPv6 address: it has no free IPv6 address")
        } else {
            Fails(
                "pool test cannot give an IPv4 and an IPv6 address (spec.ipFamilyPolicy RequireDualStack): it has no free IPv4 address and no free IPv6 address",
            )
        }
    };
    let mut steps = Vec::new();
    // (family, the service, the four addresses in order)
    let rounds: [(&str, Shape, [&str; 4]); 3] = [
        (
            "IPv4",
            |s| s,
            ["1.2.3.4", "1.2.3.5", "1.2.3.10", "1.2.3.11"],
        ),
        ("IPv6", Svc::v6, ["1000::", "1000::1", "2000::", "2000::1"]),
        (
            "dual",
            Svc::require,
            [
                "1.2.3.4,1000::",
                "1.2.3.5,1000::1",
                "1.2.3.10,2000::",
                "1.2.3.11,2000::1",
            ],
        ),
    ];
    for (family, shape, ips) in rounds {
        for (name, ip) in ["s1", "s2", "s3", "s4"].into_iter().zip(ips) {
            steps.push(Assign(shape(from(name)), Got("test", ip)));
        }
        steps.push(Assign(shape(from("s5")), full(family)));
        steps.push(Assign(shape(from("s6")), full(family)));
        steps.push(Release("s1"));
        steps.push(Assign(shape(from("s5")), Got("test", ips[0])));
        steps.push(Assign(shape(from("s6")), full(family)));
        steps.push(Release("s5"));
        steps.push(Assign(
            shape(from("s5").share("share").ports("TCP/80")),
            Got("test", ips[0]),
        ));
        steps.push(Assign(
            shape(from("s6").share("share").ports("TCP/443")),
            Got("test", ips[0]),
        ));
        for name in ["s2", "s3", "s4", "s5", "s6"] {
            steps.push(Release(name));
        }
    }
    steps.push(Assign(
        svc("s5").pool("nonexistentpool"),
        Fails("no address pool has this name"),
    ));
    run_steps("TestPoolAllocation", &pools, steps);
}

/// allocator_test.go TestAllocation: automatic picks over two pools. MetalLB picks
/// one of the two at random each time; here test1 comes first, by name.
#[test]
fn allocator_allocation() {
    let pools = [
        pool("test1", "addresses: [1.2.3.4/31, '1000::4/127']"),
        pool("test2", "addresses: [1.2.3.10/31, '1000::10/127']"),
    ];
    let none_left = "no address pool can give";
    let mut steps = Vec::new();
    let rounds: [(Shape, [(&str, &str); 4]); 3] = [
        (
            |s| s,
            [
                ("test1", "1.2.3.4"),
                ("test1", "1.2.3.5"),
                ("test2", "1.2.3.10"),
                ("test2", "1.2.3.11"),
            ],
        ),
        (
            Svc::v6,
            [
                ("test1", "1000::4"),
                ("test1", "1000::5"),
                ("test2", "1000::10"),
                ("test2", "1000::11"),
            ],
        ),
        (
            Svc::require,
            [
                ("test1", "1.2.3.4,1000::4"),
                ("test1", "1.2.3.5,1000::5"),
                ("test2", "1.2.3.10,1000::10"),
                ("test2", "1.2.3.11,1000::11"),
            ],
        ),
    ];
    for (shape, wanted) in rounds {
        for (name, (pool, ip)) in ["s1", "s2", "s3", "s4"].into_iter().zip(wanted) {
            steps.push(Assign(shape(svc(name)), Got(pool, ip)));
        }
        steps.push(Assign(shape(svc("s5")), Fails(none_left)));
        steps.push(Assign(shape(svc("s6")), Fails(none_left)));
        steps.push(Release("s1"));
        let (pool, ip) = wanted[0];
        steps.push(Assign(
            shape(svc("s5").share("share").ports("TCP/80")),
            Got(pool, ip),
        ));
        steps.push(Assign(shape(svc("s6")), Fails(none_left)));
        steps.push(Assign(
            shape(svc("s6").share("share").ports("TCP/443")),
            Got(pool, ip),
        ));
        for name in ["s2", "s3", "s4", "s5", "s6"] {
            steps.push(Release(name));
        }
    }
    run_steps("TestAllocation", &pools, steps);
}

/// allocator_test.go TestBuggyIPs: .0 and .255 are ordinary addresses unless the
/// pool avoids them. (MetalLB accepts any of the six addresses for each service.)
#[test]
fn allocator_buggy_ips() {
    let pools = [
        pool("test", "addresses: [1.2.3.0/31]"),
        pool("test2", "addresses: [1.2.3.254/31]"),
        pool("test3", "addresses: [1.2.4.0/31], avoidBuggyIPs: true"),
        pool("test4", "addresses: [1.2.4.254/31], avoidBuggyIPs: true"),
    ];
    let wanted = [
        ("test", "1.2.3.0"),
        ("test", "1.2.3.1"),
        ("test2", "1.2.3.254"),
        ("test2", "1.2.3.255"),
        ("test3", "1.2.4.1"),
        ("test4", "1.2.4.254"),
    ];
    let mut steps: Vec<Step> = wanted
        .into_iter()
        .enumerate()
        .map(|(i, (pool, ip))| {
            let name = Box::leak(format!("s{}", i + 1).into_boxed_str());
            Assign(svc(name), Got(pool, ip))
        })
        .collect();
    steps.push(Assign(
        svc("s7"),
        Fails("pool test has no free IPv4 address; pool test2 has no free IPv4 address; pool test3 has no free IPv4 address; pool test4 has no free IPv4 address"),
    ));
    run_steps("TestBuggyIPs", &pools, steps);
}

/// allocator_test.go TestConfigReload: the pools change under two services; each
/// keeps its address (possibly from a renamed or split pool) if still allowed.
#[test]
fn allocator_config_reload() {
    let initial = [
        pool("test", "addresses: [1.2.3.0/30, '1000::-1000::3']"),
        pool("unused", "addresses: [1.2.4.0/30, '1001::-1001::3']"),
    ];
    let test = |spec: &str| vec![pool("test", spec)];
    // (case, new pools, released, pool of s1, pool of s2)
    type Reload = (
        &'static str,
        Vec<String>,
        Vec<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
    );
    let cases: Vec<Reload> = vec![
        (
            "set same config is no-op",
            initial.to_vec(),
            vec![],
            Some("test"),
            Some("test"),
        ),
        (
            "expand pool",
            test("addresses: [1.2.3.0/24, '1000::-1000::ff']"),
            vec![],
            Some("test"),
            Some("test"),
        ),
        (
            "shrink pool",
            test("addresses: [1.2.3.0/30, '1000::-1000::3']"),
            vec![],
            Some("test"),
            Some("test"),
        ),
        (
            "can't shrink further, removing the service allocation",
            test("addresses: [1.2.3.2/31, '1000::-1000::3']"),
            vec!["s1"],
            None,
            Some("test"),
        ),
        (
            "can't shrink further ipv6, removing the service allocation",
            test("addresses: [1.2.3.0/30, '1000::2/127']"),
            vec!["s2"],
            Some("test"),
            None,
        ),
        (
            "rename the pool",
            vec![pool("test2", "addresses: [1.2.3.0/30, '1000::-1000::3']")],
            vec![],
            Some("test2"),
            Some("test2"),
        ),
        (
            "split pool",
            vec![
                pool("test", "addresses: [1.2.3.0/31, '1000::2/127']"),
                pool("test2", "addresses: [1.2.3.2/31, '1000::/127']"),
            ],
            vec![],
            Some("test"),
            Some("test2"),
        ),
        (
            "enable buggy IPs not allowed",
            vec![pool(
                "test2",
                "addresses: [1.2.3.0/31, '1000::/127'], avoidBuggyIPs: true",
            )],
            vec!["s1"],
            None,
            Some("test2"),
        ),
    ];
    for (name, pools, released, s1, s2) in cases {
        run_steps(
            name,
            &initial,
            vec![
                Assign(svc("s1").status(&["1.2.3.0"]), Got("test", "1.2.3.0")),
                Assign(svc("s2").v6().status(&["1000::"]), Got("test", "1000::")),
                Pools(pools, released),
                HeldFrom("s1", s1),
                HeldFrom("s2", s2),
            ],
        );
    }
}

/// allocator_test.go TestAutoAssign: a pool with autoAssign false is never picked.
#[test]
fn allocator_auto_assign() {
    let pools = [
        pool(
            "test1",
            "addresses: [1.2.3.4/31, '1000::4/127'], autoAssign: false",
        ),
        pool("test2", "addresses: [1.2.3.10/31, '1000::10/127']"),
    ];
    let none = "pool test1 has autoAssign false; pool test2 has no free";
    let mut steps = Vec::new();
    let rounds: [(Shape, [&str; 2]); 2] = [
        (|s| s, ["1.2.3.10", "1.2.3.11"]),
        (Svc::v6, ["1000::10", "1000::11"]),
    ];
    for (shape, ips) in rounds {
        steps.push(Assign(shape(svc("s1")), Got("test2", ips[0])));
        steps.push(Assign(shape(svc("s2")), Got("test2", ips[1])));
        for name in ["s3", "s4", "s5"] {
            steps.push(Assign(shape(svc(name)), Fails(none)));
        }
        steps.push(Release("s1"));
        steps.push(Release("s2"));
    }
    run_steps("TestAutoAssign", &pools, steps);
}

/// allocator_test.go TestPoolCount: usable addresses per family. MetalLB counts a
/// range of 2^62 addresses or more as MaxInt64; here counts are exact (u128), and
/// 1000::/64 holds back its subnet-router anycast address.
#[test]
fn allocator_pool_count() {
    // (addresses, avoidBuggyIPs, IPv4, IPv6)
    let cases: [(&str, bool, u128, u128); 5] = [
        ("[1.2.3.0/24]", false, 256, 0),
        ("[1.2.3.0/24, 2.3.4.128/25]", false, 384, 0),
        ("[1.2.3.0/24, 2.3.4.128/25]", true, 381, 0),
        (
            "[1.2.3.0/24, 2.3.4.128/25, '1000::/64']",
            true,
            381,
            (1 << 64) - 1,
        ),
        ("[1.2.3.0/31, '1000::/127']", true, 1, 2),
    ];
    for (addresses, avoid, ipv4, ipv6) in cases {
        let config = config_of(&pool(
            "p",
            &format!("addresses: {addresses}, avoidBuggyIPs: {avoid}"),
        ));
        let usage = Allocator::new(&config, AllocatorOptions::default()).usage()["p"];
        assert_eq!(
            (usage.ipv4.total, usage.ipv6.total, usage.total),
            (ipv4, ipv6, ipv4 + ipv6),
            "{addresses} avoidBuggyIPs {avoid}"
        );
    }
}

/// allocator_test.go TestPoolMetrics: assigned and available counts per family as
/// services come and go, a shared address counted once; a deleted pool has none.
#[test]
fn allocator_pool_metrics() {
    let pools = [pool("test", "addresses: [1.2.3.4/30, '1000::4-1000::7']")];
    let counts = |in_use: u128| Usage("test", Some([in_use, 4 - in_use, 0, 4]));
    let shared = |name: &str, port: &str| svc(name).ips("1.2.3.4").share("key").ports(port);
    run_steps(
        "TestPoolMetrics",
        &pools,
        vec![
            counts(0),
            Assign(svc("s1").ips("1.2.3.4"), Got("test", "1.2.3.4")),
            counts(1),
            Assign(svc("s2").ips("1.2.3.5"), Got("test", "1.2.3.5")),
            counts(2),
            Release("s1"),
            counts(1),
            Release("s2"),
            counts(0),
            Assign(shared("s1", "TCP/80"), Got("test", "1.2.3.4")),
            counts(1),
            Assign(shared("s2", "TCP/443"), Got("test", "1.2.3.4")),
            counts(1),
            Assign(shared("s3", "TCP/23"), Got("test", "1.2.3.4")),
            counts(1),
            Release("s1"),
            counts(1),
            Release("s2"),
            counts(1),
            Release("s3"),
            counts(0),
            Assign(svc("s1").ips("1.2.3.4"), Got("test", "1.2.3.4")),
            Pools(vec![], vec!["s1"]),
            Usage("test", None),
        ],
    );
}

/// controller_test.go TestControllerConfig: nothing to allocate from until pools
/// exist; pools removed under a service take its address away. (MetalLB's
/// controller waits for its first configuration without an event; here the service
/// fails with the reason.)
#[test]
fn controller_config() {
    let default = vec![pool("default", "addresses: [1.2.3.0/24]")];
    run_steps(
        "TestControllerConfig",
        &[],
        vec![
            Assign(svc("test"), Fails("no address pool is configured")),
            Pools(vec![], vec![]),
            Assign(svc("test"), Fails("no address pool is configured")),
            Pools(default, vec![]),
            Assign(svc("test"), Got("default", "1.2.3.0")),
            Pools(vec![], vec!["test"]),
            Assign(
                svc("test").status(&["1.2.3.0"]),
                Fails("no address pool is configured"),
            ),
        ],
    );
}

/// controller_test.go TestDeleteRecyclesIP: a deleted service's address goes to the
/// next service that asks.
#[test]
fn controller_delete_recycles_ip() {
    run_steps(
        "TestDeleteRecyclesIP",
        &[pool("default", "addresses: [1.2.3.0/32]")],
        vec![
            Assign(svc("test"), Got("default", "1.2.3.0")),
            Assign(
                svc("test2"),
                Fails(
                    "no address pool can give an IPv4 address automatically: pool default has no free IPv4 address",
                ),
            ),
            Release("test"),
            Assign(svc("test2"), Got("default", "1.2.3.0")),
        ],
    );
}

/// controller_test.go TestControllerReassign: a new pool moves nobody; deleting a
/// service's pool moves it to what remains.
#[test]
fn controller_reassign() {
    let default = pool("default", "addresses: [1.2.3.0/24, '1000::1/127']");
    let second = pool("second", "addresses: [4.5.6.0/24]");
    let assigned = || svc("test").status(&["1.2.3.0"]);
    run_steps(
        "TestControllerReassign",
        std::slice::from_ref(&default),
        vec![
            Assign(svc("test"), Got("default", "1.2.3.0")),
            Pools(vec![default.clone(), second.clone()], vec![]),
            Assign(assigned(), Got("default", "1.2.3.0")),
            Pools(vec![second], vec!["test"]),
            Assign(assigned(), Got("second", "4.5.6.0")),
        ],
    );
}

/// controller_test.go TestControllerDualStackConfig.
#[test]
fn controller_dual_stack_config() {
    run_steps(
        "TestControllerDualStackConfig",
        &[],
        vec![
            Assign(
                svc("test").require(),
                Fails("no address pool is configured"),
            ),
            Pools(
                vec![pool("default", "addresses: [1.2.3.0/24, '1000::1/127']")],
                vec![],
            ),
            Assign(svc("test").require(), Got("default", "1.2.3.0,1000::")),
        ],
    );
}
