//! `cargo xtask bench scale`: how the pure core grows with the cluster, in a release
//! build. The allocator alone and the whole plan (`metallb plan`'s core: allocation,
//! election, this node's entries) for 1,000 to 100,000 Services over 20 pools (IPv4 and
//! IPv6), the same Services over pools 256 times larger (memory must not follow the
//! pools), and the election for up to 5,000 Nodes x 10,000 Services: MetalLB's election
//! alone, and the speaker's plan (allocation, ranking, the election from the
//! rankings). Prints wall time, CPU time (every thread's) and the peak heap the step
//! allocated (a counting allocator), with the CPU model, the load average and the
//! election's threads (`BENCH_SCALE_THREADS=N`; default: every CPU).
//!
//! A change of the live nodes (a failover: one of 3 nodes dies) at 1,000 to 100,000
//! Services: the whole plan made again against the election run again on what the
//! last plan kept (`plan::Standing`, what the speaker does).
//!
//! Kubernetes mode (addresses from the Services' status, an EndpointSlice each, 3
//! nodes) at 1,000 to 100,000 Services: one Service's status changes; the replan with
//! the word the Kubernetes source gives (`config::changes::between` of the keys the
//! watch events touched) against the replan without (every Service's digest), and the
//! whole plan (what a Node's heartbeat cost before its planned part was compared).
//!
//! `BENCH_SCALE_QUICK=1` stops at 10,000 Services and 1,000 Nodes;
//! `BENCH_SCALE_ONLY=plan`, `election`, `failover` or `kubernetes` runs one part,
//! `break-even` the election of small clusters on one thread and on every CPU (where
//! threads pay).
//!
//! Targets (issue 15): allocation of 10,000 / 100,000 Services under 1 s / 10 s with
//! memory linear in the Services; 5,000 Nodes x 10,000 Services elected under 5 s.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::BTreeMap,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Node;
use kube::api::ObjectMeta;
mod cpu;
mod workload;

use cpu::cpu_time;
use workload::{POOLS, pools, service};

use metallb_user::{
    allocator::{AllocatorOptions, Decision, allocate},
    config::{Config, L2Advertisement},
    election::{ElectionContext, PARALLEL_HASHES, Threads, elect},
    plan::{PlanOptions, plan, plan_keeping},
};

/// Counts the bytes held on the heap, and the most held since the last reset.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let held = HELD.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(held, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        grew(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What one step cost.
struct Cost {
    wall: Duration,
    cpu: Duration,
    /// The most heap it held beyond what was held before it.
    heap: usize,
}

impl std::fmt::Display for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>9.2?} {:>9.2?} {:>8.1} MiB",
            self.wall,
            self.cpu,
            self.heap as f64 / (1024.0 * 1024.0)
        )
    }
}

/// The CPU time of every thread of the bench (it runs nothing else meanwhile).
fn process_cpu_time() -> Duration {
    cpu_time(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// The machine's load average over the last minute.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The election's threads: `BENCH_SCALE_THREADS`, or every CPU.
fn threads() -> Threads {
    match std::env::var("BENCH_SCALE_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
    {
        Some(count) => Threads::exactly(count),
        None => Threads::default(),
    }
}

/// Runs `step`, returning its result and its cost.
fn measured<T>(step: impl FnOnce() -> T) -> (T, Cost) {
    let before = HELD.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let (start, start_cpu) = (Instant::now(), process_cpu_time());
    let out = step();
    let cost = Cost {
        wall: start.elapsed(),
        cpu: process_cpu_time() - start_cpu,
        heap: PEAK.load(Ordering::Relaxed) - before,
    };
    (out, cost)
}

fn node(i: usize) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(format!("node-{i:05}")),
            labels: Some(BTreeMap::from([(
                "zone".to_string(),
                format!("zone-{}", i % 3),
            )])),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

fn config(services: usize, nodes: usize, v4_bits: u32, v6_bits: u32) -> Config {
    Config {
        pools: pools(v4_bits, v6_bits),
        l2_advertisements: vec![L2Advertisement {
            name: "all".into(),
            pools: (0..POOLS).map(|i| format!("pool-{i:02}")).collect(),
            node_selectors: Vec::new(),
            interfaces: Vec::new(),
            service_selectors: Vec::new(),
            preferred_nodes: Vec::new(),
        }],
        services: (0..services).map(service).collect(),
        nodes: (0..nodes).map(node).collect(),
        ..Config::default()
    }
}

fn allocated(decisions: &BTreeMap<metallb_user::allocator::ServiceKey, Decision>) -> usize {
    decisions
        .values()
        .filter(|d| matches!(d, Decision::Allocated(_)))
        .count()
}

fn main() {
    let quick = std::env::var_os("BENCH_SCALE_QUICK").is_some();
    let only = std::env::var("BENCH_SCALE_ONLY").unwrap_or_default();
    let threads = threads();
    println!("CPU: {}", metallb_testkit::cpu_model());
    println!(
        "release build; wall and CPU time (every thread's; the machine may be shared), heap = the most the step held beyond what was held before it"
    );
    println!(
        "election threads: {} (BENCH_SCALE_THREADS; CPUs: {}), for parts of at least {PARALLEL_HASHES} hashes; load average {}",
        threads.count(),
        Threads::default().count(),
        load()
    );
    let counts: &[usize] = if quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 100_000]
    };
    if only.is_empty() || only == "plan" {
        allocator_and_plan(counts, threads);
    }
    if only.is_empty() || only == "election" {
        election(quick, threads);
    }
    if only == "break-even" {
        break_even();
    }
    if only.is_empty() || only == "failover" {
        failover(counts, threads);
    }
    if only.is_empty() || only == "kubernetes" {
        kubernetes(counts, threads);
    }
}

fn allocator_and_plan(counts: &[usize], threads: Threads) {
    println!();
    println!("Allocator and plan, 20 pools, IPv4 + IPv6 (1/3 IPv6, 1/10 dual-stack):");
    println!(
        "{:>9} {:>14}   {:>9} {:>9} {:>12}   {:>9} {:>9} {:>12}",
        "services", "pools (v4/v6)", "allocate", "cpu", "heap", "plan", "cpu", "heap"
    );
    // Pools 256 times larger must cost no more memory: the allocator holds what is
    // taken, not what is free.
    let sizes: &[(u32, u32)] = &[(16, 16), (24, 64)];
    for &services in counts {
        for &(v4_bits, v6_bits) in sizes {
            let cfg = config(services, 0, v4_bits, v6_bits);
            let options = AllocatorOptions::default();
            let (allocations, allocate_cost) = measured(|| allocate(&cfg, &options));
            assert_eq!(
                allocated(&allocations.decisions),
                services,
                "every service gets an address"
            );
            drop(allocations);
            let plan_options = PlanOptions {
                node_name: "node-00000".into(),
                election: ElectionContext {
                    threads,
                    ..ElectionContext::default()
                },
                ..PlanOptions::default()
            };
            let (planned, plan_cost) = measured(|| plan(&cfg, &plan_options, &[]));
            assert_eq!(planned.services.len(), services);
            drop(planned);
            println!(
                "{services:>9} {:>14}   {allocate_cost}   {plan_cost}",
                format!("2^{v4_bits}/2^{v6_bits}"),
            );
        }
    }
}

/// The election alone (MetalLB's, every candidate hashed), and the speaker's plan of
/// the same cluster: allocated, ranked (every candidate hashed) and elected from the
/// rankings.
fn election(quick: bool, threads: Threads) {
    println!();
    println!(
        "Election (every node eligible, first address's hash decides), and the speaker's plan (allocate, rank, elect from the rankings):"
    );
    println!(
        "{:>7} {:>9}   {:>9} {:>9} {:>12}   {:>9} {:>9} {:>12}   {:>5}",
        "nodes", "services", "elect", "cpu", "heap", "kept plan", "cpu", "heap", "load"
    );
    let shapes: &[(usize, usize)] = if quick {
        &[(1_000, 1_000), (1_000, 10_000)]
    } else {
        &[(1_000, 1_000), (2_000, 2_000), (5_000, 10_000)]
    };
    for &(nodes, services) in shapes {
        let cfg = config(services, nodes, 16, 16);
        let decisions = allocate(&cfg, &AllocatorOptions::default()).decisions;
        let context = ElectionContext {
            threads,
            ..ElectionContext::default()
        };
        let (elections, elect_cost) = measured(|| elect(&cfg, &decisions, "node-00000", &context));
        assert_eq!(elections.len(), services);
        drop(elections);
        let options = PlanOptions {
            node_name: "node-00000".into(),
            election: context,
            ..PlanOptions::default()
        };
        let (kept, kept_cost) = measured(|| plan_keeping(&cfg, &options, &[]));
        assert_eq!(kept.0.services.len(), services);
        drop(kept);
        println!(
            "{nodes:>7} {services:>9}   {elect_cost}   {kept_cost}   {:>5}",
            load()
        );
    }
}

/// `BENCH_SCALE_ONLY=break-even`: the election of small clusters on one thread and on
/// every CPU however small, the best of 20 runs each: where threads start to pay.
fn break_even() {
    println!();
    println!(
        "Break-even: elect on 1 thread vs {} threads for every part, best of 20 (100 nodes):",
        Threads::default().count()
    );
    println!(
        "{:>9} {:>9}   {:>10} {:>10}",
        "services", "hashes", "1 thread", "threads"
    );
    for services in [5, 10, 25, 50, 100, 200, 400, 1_000] {
        let cfg = config(services, 100, 16, 16);
        let decisions = allocate(&cfg, &AllocatorOptions::default()).decisions;
        let best = |threads: Threads| {
            let context = ElectionContext {
                threads,
                ..ElectionContext::default()
            };
            (0..20)
                .map(|_| {
                    measured(|| elect(&cfg, &decisions, "node-00000", &context))
                        .1
                        .wall
                })
                .min()
                .unwrap_or_default()
        };
        let one = best(Threads::exactly(1));
        let all = best(Threads::default().from_hashes(0));
        println!(
            "{services:>9} {:>9}   {one:>10.2?} {all:>10.2?}",
            services * 100
        );
    }
}

fn failover(counts: &[usize], threads: Threads) {
    println!();
    println!(
        "A node of 3 dies (its Services move): the whole plan again vs the election again on what the last plan kept vs the re-election of the Services that move (their entries; then their roles):"
    );
    println!(
        "{:>9}   {:>9} {:>9} {:>12}   {:>9} {:>9} {:>12}   {:>9} {:>9} {:>12}   {:>9} {:>9} {:>12}   {:>7}",
        "services",
        "plan",
        "cpu",
        "heap",
        "elect",
        "cpu",
        "heap",
        "re-elect",
        "cpu",
        "heap",
        "roles",
        "cpu",
        "heap",
        "moved"
    );
    for &services in counts {
        let cfg = config(services, 3, 16, 16);
        let options = |live: &[usize]| PlanOptions {
            node_name: "node-00000".into(),
            election: ElectionContext {
                live_nodes: Some(live.iter().map(|&i| format!("node-{i:05}")).collect()),
                threads,
                ..ElectionContext::default()
            },
            ..PlanOptions::default()
        };
        // This node's one interface: its entries are made too.
        let eth0 = eth0();
        let (first, standing) = plan_keeping(&cfg, &options(&[0, 1, 2]), &eth0);
        let mut standing = standing.expect("kept without BGP");
        let mut kept = standing.clone();
        let after = options(&[0, 1]);
        let (whole, plan_cost) = measured(|| plan(&cfg, &after, &eth0));
        let (again, elect_cost) = measured(|| kept.plan(&after, &eth0));
        assert_eq!(whole.services, again.services, "the same plan");
        assert_eq!(whole.vips, again.vips, "the same entries");
        let (reelection, reelect_cost) = measured(|| standing.reelect(&after, &eth0));
        let mut reelection = reelection.expect("re-elected");
        let mut vips = first.vips;
        for (key, value) in &reelection.vips {
            match value {
                Some(config) => vips.insert(*key, *config),
                None => vips.remove(key),
            };
        }
        assert_eq!(whole.vips, vips, "the same entries, re-elected");
        let (moved, roles_cost) = measured(|| reelection.moved(&after, &eth0));
        println!(
            "{services:>9}   {plan_cost}   {elect_cost}   {reelect_cost}   {roles_cost}   {:>7}",
            moved.len()
        );
    }
}

/// The node's one interface, `eth0`, of the plans that make entries.
fn eth0() -> [metallb_user::datapath::iface::Interface; 1] {
    [metallb_user::datapath::iface::Interface {
        name: "eth0".into(),
        ifindex: 2,
        mac: [2, 0, 0, 0, 0, 2],
        up: true,
        loopback: false,
        multicast: true,
    }]
}

/// Kubernetes mode: one Service's status changes among `counts` (see the module's
/// documentation).
fn kubernetes(counts: &[usize], threads: Threads) {
    use metallb_user::{
        allocator::{ServiceKey, status_with},
        config::changes::between,
        election::EndpointRule,
        plan::AddressSource,
    };
    println!();
    println!(
        "Kubernetes mode (status addresses, an EndpointSlice each, 3 nodes), one Service's status changed: the word from the touched keys, the replan with it vs without, the whole plan:"
    );
    println!(
        "{:>9}   {:>9}   {:>9} {:>9} {:>12} {:>6}   {:>9} {:>9} {:>12} {:>6}   {:>9} {:>9} {:>12}   {:>5}",
        "services",
        "word",
        "with",
        "cpu",
        "heap",
        "looked",
        "without",
        "cpu",
        "heap",
        "looked",
        "whole",
        "cpu",
        "heap",
        "load"
    );
    let eth0 = eth0();
    for &services in counts {
        let mut cfg = config(services, 3, 16, 16);
        // The addresses as the controller writes them, the Services in key order as
        // the source hands them, each with a ready endpoint on a node.
        let decisions = allocate(&cfg, &AllocatorOptions::default()).decisions;
        for service in &mut cfg.services {
            if let Some(Decision::Allocated(a)) = decisions.get(&ServiceKey::of_service(service)) {
                service.status = Some(status_with(&a.ips));
            }
        }
        drop(decisions);
        cfg.services.sort_by_cached_key(ServiceKey::of_service);
        let keys: Vec<ServiceKey> = cfg.services.iter().map(ServiceKey::of_service).collect();
        cfg.endpoint_slices = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("{}-x1", key.name), "namespace": key.namespace,
                                 "labels": {"kubernetes.io/service-name": key.name}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [format!("10.200.{}.{}", i / 250 % 250, i % 250)],
                                   "conditions": {"ready": true}, "nodeName": format!("node-{:05}", i % 3)}],
                }))
                .expect("a slice")
            })
            .collect();
        let options = PlanOptions {
            node_name: "node-00000".into(),
            addresses: AddressSource::Status,
            election: ElectionContext {
                live_nodes: Some((0..3).map(|i| format!("node-{i:05}")).collect()),
                endpoints: EndpointRule::Observed,
                threads,
            },
            ..PlanOptions::default()
        };
        let (_, standing) = plan_keeping(&cfg, &options, &eth0);
        let standing = standing.expect("kept without BGP");
        // A Service in the middle, IPv4 alone and not sharing, moves to an address
        // of the last pool that no other holds at these sizes.
        let changed = (services / 2..services)
            .find(|&i| {
                let service = &cfg.services[i];
                let ips = metallb_user::allocator::status_addresses(service).unwrap_or_default();
                ips.len() == 1
                    && ips[0].is_ipv4()
                    && !service
                        .metadata
                        .annotations
                        .contains_key("metallb.io/allow-shared-ip")
            })
            .expect("an IPv4 Service");
        let ip: std::net::IpAddr = "10.152.255.250".parse().expect("an address");
        cfg.services[changed].status = Some(status_with(&[ip]));
        let touched = std::collections::BTreeSet::from([keys[changed].clone()]);
        let (word, word_cost) = measured(|| between(&keys, &keys, &touched));
        assert!(word.is_some(), "a word");
        let (mut with, mut without) = (standing.clone(), standing);
        let (replan, with_cost) = measured(|| with.replan(&cfg, &options, &eth0, word.as_ref()));
        let replan = replan.expect("replanned with the word");
        let (again, without_cost) = measured(|| without.replan(&cfg, &options, &eth0, None));
        let again = again.expect("replanned without");
        assert_eq!(replan.vips, again.vips, "the same entries");
        assert_eq!(replan.services, again.services, "the same plans");
        assert_eq!(replan.services.len(), 1, "one Service planned again");
        let (whole, whole_cost) = measured(|| plan(&cfg, &options, &eth0));
        assert_eq!(whole.services.len(), services);
        drop(whole);
        println!(
            "{services:>9}   {:>9.2?}   {with_cost} {:>6}   {without_cost} {:>6}   {whole_cost}   {:>5}",
            word_cost.wall,
            replan.looked,
            again.looked,
            load()
        );
    }
}
