//! `cargo xtask bench allocator`: how long the allocator takes for
//! 10,000 services over 20 pools, in one batch (`metallb plan`, the standalone
//! speaker, a controller's start) and one service at a time (the controller after its
//! start). Plain timing with `Instant`, the median of a few runs; every run also
//! checks that every service got an address.
//!
//! The services and pools are those of `cargo xtask bench scale` (`workload`): every
//! third service IPv6, every tenth PreferDualStack, every twentieth sharing an address
//! under a key with others (distinct ports), every fiftieth asking for a pool by name;
//! the others take the first free IPv4 address. The pools have no serviceAllocation,
//! so they fill one after the other, by name: every allocation also walks past the
//! full pools before the one with room.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use metallb_user::{
    allocator::{Allocator, AllocatorOptions, Decision, ServiceKey, allocate, status_with},
    config::{Config, Service},
};

mod workload;

use workload::{POOLS, pools, service};

const SERVICES: usize = 10_000;
const RUNS: usize = 5;

fn config() -> Config {
    Config {
        // 1,024 IPv4 and 1,024 IPv6 addresses per pool: 20,480 of each family.
        pools: pools(10, 10),
        services: (0..SERVICES).map(service).collect(),
        ..Config::default()
    }
}

fn with_status(mut service: Service, decision: &Decision) -> Service {
    if let Decision::Allocated(allocation) = decision {
        service.status = Some(status_with(&allocation.ips));
    }
    service
}

/// The median of `RUNS` runs of `run`, which returns how long its measured part took.
fn median(mut run: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS).map(|_| run()).collect();
    times.sort();
    times[RUNS / 2]
}

fn main() {
    let config = config();
    let options = AllocatorOptions::default();

    let mut decisions = BTreeMap::new();
    let batch = median(|| {
        let start = Instant::now();
        decisions = allocate(&config, &options).decisions;
        start.elapsed()
    });
    let allocated = decisions
        .values()
        .filter(|d| matches!(d, Decision::Allocated(_)))
        .count();
    assert_eq!(allocated, SERVICES, "every service gets an address");
    println!(
        "allocate (batch, no status):          {SERVICES} services, {POOLS} pools: {:>9.2?}",
        batch
    );

    // A restart: every service carries the status it was given, in reverse order.
    let restarted: Vec<Service> = config
        .services
        .iter()
        .rev()
        .map(|s| with_status(s.clone(), &decisions[&ServiceKey::of_service(s)]))
        .collect();
    let restart = median(|| {
        let mut allocator = Allocator::new(&config, options.clone());
        let start = Instant::now();
        let again = allocator.assign_all(&restarted).decisions;
        let elapsed = start.elapsed();
        assert_eq!(again, decisions, "a restart moves nobody");
        elapsed
    });
    println!(
        "assign_all (restart, every status):   {SERVICES} services, {POOLS} pools: {:>9.2?}",
        restart
    );

    // One service at a time, as the controller after its start.
    let mut allocator = Allocator::new(&config, options.clone());
    allocator.assign_all(&restarted);
    let changes = 1_000;
    let changed = median(|| {
        let start = Instant::now();
        for service in restarted.iter().take(changes) {
            allocator.assign(service);
        }
        start.elapsed() / u32::try_from(changes).expect("small")
    });
    println!(
        "assign (one changed service, kept):   {:>9.2?} each",
        changed
    );
    let cycle = median(|| {
        let start = Instant::now();
        for (i, service) in config.services.iter().enumerate().take(changes) {
            let key = ServiceKey::of_service(service);
            allocator.release(&key);
            let mut fresh = service.clone();
            fresh.metadata.name = Some(format!("new-{i:05}"));
            allocator.assign(&fresh);
            allocator.release(&ServiceKey::of_service(&fresh));
            allocator.assign(&restarted[SERVICES - 1 - i]);
        }
        start.elapsed() / u32::try_from(changes).expect("small")
    });
    println!(
        "release + assign new (delete/create): {:>9.2?} each (two of each per round)",
        cycle
    );
    let reload = median(|| {
        let start = Instant::now();
        let released = allocator.set_config(&config);
        let elapsed = start.elapsed();
        assert!(released.is_empty());
        elapsed
    });
    println!(
        "set_config (pools unchanged):          {SERVICES} held, {POOLS} pools: {:>9.2?}",
        reload
    );
}
