//! IP allocation for `LoadBalancer` services, with MetalLB's controller semantics.
//! Pure: a function of the configuration (pools, namespaces, services with their
//! current status), options and what was allocated before; no I/O, no clock, no
//! randomness.
//!
//! [`Allocator`] holds the pools and who holds which address. The Kubernetes
//! controller drives it one service at a time ([`Allocator::assign`],
//! [`Allocator::release`], [`Allocator::set_config`]); `metallb plan` and the
//! standalone speaker call [`allocate`], which sorts the services in
//! [`allocation_order`] and assigns them one after the other through the same
//! [`Allocator::assign`], so the two modes cannot disagree.
//!
//! Order between services, as MetalLB's controller sees them: services that already
//! carry an address in `status.loadBalancer.ingress` first, keeping it (as at a
//! controller's start: every valid status is held before any new address is handed
//! out); then by `metadata.creationTimestamp` where set; then in the order given
//! (the file's order, which stands for creation order). A service asking for an
//! address that an earlier one holds fails; it never displaces it.
//!
//! How a service gets its addresses, in this order:
//! 1. A valid address already in its status is kept, even when a better pool exists
//!    now (a restart never moves a working address). It is dropped when its family
//!    is not the service's, no pool contains it, it is a .0/.255 address of a pool
//!    that avoids them, its pool does not admit the service, the service now asks
//!    for another pool or other addresses, or an earlier service holds it
//!    incompatibly. As in MetalLB's controller, the service object is the truth:
//!    what the allocator held for it before does not count, so a decision never
//!    depends on the history of the allocator, only on what the others hold.
//! 2. Addresses it asks for (`metallb.io/loadBalancerIPs`, or the deprecated
//!    `spec.loadBalancerIP`): exactly these, from one pool, whatever its `autoAssign`.
//! 3. A pool it asks for (`metallb.io/address-pool`): that pool only, never another.
//! 4. Otherwise an automatic pick among the `autoAssign` pools that admit it: first
//!    the pools with a `serviceAllocation` that selects it (by priority, lower first,
//!    unset last), then the pools without one.
//!
//! Within a pool, addresses come from the first listed range with room, and in it
//! the lowest usable address (so an address given back is handed out again first);
//! an address is usable when free, or when already shared by compatible services
//! (same `allow-shared-ip` key, no common port, and, under
//! `externalTrafficPolicy: Local`, the same pods). Free addresses are kept as
//! intervals per range: finding, taking or giving back one costs O(log n).
//!
//! Annotations are read as MetalLB reads them: `metallb.io/NAME` when present, else
//! `metallb.universe.tf/NAME`; when both are present with different values, the
//! decision comes with a warning naming both.
//!
//! Where MetalLB picks at random (between plain pools, or pools of equal priority),
//! this allocator takes them by name, so that equal inputs give equal outputs.

mod free;
mod pools;
mod request;
mod sharing;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use self::{
    pools::{PoolState, admission, skipped, usable, usable_count},
    request::{Asked, Family, Request, Stack, ignore_reason, status_ips},
    sharing::Ledger,
};
use crate::config::{
    Config, Pool, Service, ServiceName,
    service_model::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus},
};

pub use self::request::{RequestedAddresses, requested};

/// Which services this allocator handles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocatorOptions {
    /// `spec.loadBalancerClass` this controller answers for. `None`: only services
    /// without a class (MetalLB's default).
    pub load_balancer_class: Option<String>,
}

/// A service, by namespace and name (namespace `default` when the object has none).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

impl ServiceKey {
    /// The key of `service` (namespace `default` when it has none).
    pub fn of_service(service: &impl ServiceName) -> Self {
        Self {
            namespace: crate::config::service_namespace(service).to_owned(),
            name: service.service_name().unwrap_or_default().to_owned(),
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The addresses a service got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The pool every address comes from (a dual-stack service gets both from one pool).
    pub pool: String,
    /// One address per IP family the service asked for, IPv4 first.
    pub ips: Vec<IpAddr>,
}

/// What the allocator decided for one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not for this allocator (not `type: LoadBalancer`, or another class).
    Ignored {
        reason: String,
    },
    Allocated(Allocation),
    /// The request cannot be met (MetalLB's `AllocationFailed` event); the service
    /// gets nothing, others are unaffected.
    Failed {
        reason: String,
    },
}

/// One service's decision, and what the allocator noticed on the way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    pub decision: Decision,
    /// What is odd about the service's request without making it fail (e.g. both
    /// annotation prefixes with different values): for `plan` to print and the
    /// speaker and controller to log.
    pub warnings: Vec<String>,
}

/// The decisions for many services.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocations {
    pub decisions: BTreeMap<ServiceKey, Decision>,
    /// [`Assigned::warnings`] of the services that have some.
    pub warnings: BTreeMap<ServiceKey, Vec<String>>,
}

/// The indexes of `services` in the order they are allocated: services carrying an
/// address in their status first, then by `metadata.creationTimestamp` (services
/// without one after those with one), then in the given order. The controller
/// lists services by namespace/name, so that is its last criterion.
pub fn allocation_order(services: &[Service]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..services.len()).collect();
    order.sort_by_cached_key(|&i| {
        let service = &services[i];
        let created = service.metadata.creation_timestamp.clone();
        (!has_status_address(service), created.is_none(), created, i)
    });
    order
}

/// Whether `service` carries an address in `status.loadBalancer.ingress` (a hostname
/// alone is no address): such services come first in [`allocation_order`].
pub fn has_status_address(service: &Service) -> bool {
    status_ips(service).next().is_some()
}

/// The addresses in the status of `service`, parsed as the allocator reads them to
/// keep them (IPv4 first); `None` when it has none or one is malformed.
pub fn status_addresses(service: &Service) -> Option<Vec<IpAddr>> {
    let mut ips = Vec::new();
    for text in status_ips(service) {
        ips.push(text.parse::<IpAddr>().ok()?.to_canonical());
    }
    (!ips.is_empty()).then(|| ipv4_first(ips))
}

/// The status that says a service has `ips` (what the controller writes).
pub fn status_with(ips: &[IpAddr]) -> ServiceStatus {
    let ingress = ips
        .iter()
        .map(|ip| LoadBalancerIngress {
            ip: Some(ip.to_string()),
        })
        .collect();
    ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(ingress),
        }),
    }
}

/// Decides every service of `config`: [`Allocator::assign_all`] on a fresh
/// allocator, which is dropped after. So it keeps of a decided service only what the
/// decisions of the others need (the addresses it holds, with its sharing profile),
/// not its request: at 100,000 Services the requests were 58 MiB of heap more at the
/// speaker's peak. The decisions are those of `assign_all`.
pub fn allocate(config: &Config, options: &AllocatorOptions) -> Allocations {
    Allocator::new(config, options.clone()).decide_all(&config.services, Keep::Addresses)
}

/// What [`Allocator::decide_all`] keeps of each service it decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    /// Its request and allocation ([`Held`]): a later change, release or
    /// [`Allocator::set_config`] needs them.
    Requests,
    /// The addresses it holds, in the ledger and the pools only (a one-shot
    /// allocation, [`allocate`]): what the decisions of the others need.
    Addresses,
}

/// The addresses each service carries in its status, as the Kubernetes speaker takes
/// them: the controller wrote them, nothing is allocated here (so that all speakers
/// and the controller see one truth). As MetalLB's speaker, a service is not announced
/// when its status holds no address, an address that does not parse, or addresses
/// that no one pool holds.
pub fn from_status(config: &Config, options: &AllocatorOptions) -> Allocations {
    from_status_of(config, options, &config.services)
}

/// [`from_status`] for some services (each is decided alone: from its status and
/// the pools of `config`).
pub fn from_status_of<'a>(
    config: &Config,
    options: &AllocatorOptions,
    services: impl IntoIterator<Item = &'a Service>,
) -> Allocations {
    let mut out = Allocations::default();
    for service in services {
        let key = ServiceKey::of_service(service);
        let decision = status_decision(config, options, service);
        out.decisions.insert(key, decision);
    }
    out
}

fn status_decision(config: &Config, options: &AllocatorOptions, service: &Service) -> Decision {
    if let Some(reason) = ignore_reason(service, options) {
        return Decision::Ignored { reason };
    }
    let mut ips = Vec::new();
    for text in status_ips(service) {
        match text.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip.to_canonical()),
            Err(_) => {
                return Decision::Failed {
                    reason: format!(
                        "status.loadBalancer.ingress holds {text:?}, not an IP address"
                    ),
                };
            }
        }
    }
    let Some(first) = ips.first().copied() else {
        return Decision::Ignored {
            reason: "no address in its status yet (the controller assigns it)".into(),
        };
    };
    let holds = |pool: &&Pool, ip: IpAddr| pool.ranges.iter().any(|r| r.contains(ip));
    match config.pools.iter().find(|pool| holds(pool, first)) {
        Some(pool) if ips.iter().all(|ip| holds(&pool, *ip)) => Decision::Allocated(Allocation {
            pool: pool.name.clone(),
            ips: ipv4_first(ips),
        }),
        Some(pool) => Decision::Failed {
            reason: format!(
                "its status addresses {ips:?} are not all in pool {} (the controller will correct it)",
                pool.name
            ),
        },
        None => Decision::Failed {
            reason: format!(
                "its status address {first} is in no address pool (the controller will correct it)"
            ),
        },
    }
}

/// What the allocator holds for one service.
#[derive(Clone, Debug)]
struct Held {
    request: Request,
    allocation: Allocation,
}

/// The pools, and the addresses held by each service. Pure and stateful: the
/// Kubernetes controller keeps one and drives it one service at a time; [`allocate`]
/// uses a fresh one per configuration.
#[derive(Clone, Debug)]
pub struct Allocator {
    options: AllocatorOptions,
    /// As in the configuration (by name).
    pools: Vec<PoolState>,
    by_name: BTreeMap<String, usize>,
    /// (pool, range) by the range's first address; pools do not overlap (validation
    /// refuses it), so the range that may contain an address is the last starting at
    /// or below it.
    by_first: BTreeMap<IpAddr, (usize, usize)>,
    ledger: Ledger,
    /// Boxed: a map's node has room for eleven values, mostly unused, and a Held is
    /// some 250 bytes.
    held: BTreeMap<ServiceKey, Box<Held>>,
}

impl Allocator {
    /// An allocator for the pools of `config`, holding nothing. (The configuration's
    /// services are not assigned: see [`Allocator::assign_all`].)
    pub fn new(config: &Config, options: AllocatorOptions) -> Self {
        let mut allocator = Self {
            options,
            pools: Vec::new(),
            by_name: BTreeMap::new(),
            by_first: BTreeMap::new(),
            ledger: Ledger::default(),
            held: BTreeMap::new(),
        };
        allocator.load_pools(config);
        allocator
    }

    fn load_pools(&mut self, config: &Config) {
        self.pools = config.pools.iter().cloned().map(PoolState::new).collect();
        self.by_name = config
            .pools
            .iter()
            .enumerate()
            .map(|(i, pool)| (pool.name.clone(), i))
            .collect();
        self.by_first = config
            .pools
            .iter()
            .enumerate()
            .flat_map(|(p, pool)| {
                pool.ranges
                    .iter()
                    .enumerate()
                    .map(move |(r, range)| (range.first, (p, r)))
            })
            .collect();
        self.ledger = Ledger::default();
    }

    /// Replaces the pools (an IPAddressPool was added, edited or deleted). Every
    /// service keeps what it holds if it still may (see the module documentation);
    /// the others hold nothing now and are returned, to be assigned again. Services
    /// that failed before may succeed now: assign them again too.
    pub fn set_config(&mut self, config: &Config) -> Vec<ServiceKey> {
        let held = std::mem::take(&mut self.held);
        self.load_pools(config);
        let mut released = Vec::new();
        // Holdings were compatible with each other and stay so: the order of holding
        // them again does not matter.
        for (key, held) in held {
            let Held {
                request,
                allocation,
            } = *held;
            match self.keepable(&request, &allocation.ips) {
                Some(allocation) => self.hold(request, allocation),
                None => released.push(key),
            }
        }
        released
    }

    /// Decides `service` (added or changed): it keeps what its status says if it
    /// still may; otherwise it gets new addresses, or fails and holds nothing. What
    /// it held here before is given back first and does not count (the service
    /// object is the truth, as in MetalLB: feed a service with the status written
    /// for it). A service that is not for this allocator holds nothing.
    pub fn assign(&mut self, service: &Service) -> Assigned {
        self.assign_keeping(service, Keep::Requests)
    }

    /// [`Allocator::assign`], keeping `keep` of the service.
    fn assign_keeping(&mut self, service: &Service, keep: Keep) -> Assigned {
        let key = ServiceKey::of_service(service);
        self.unhold(&key);
        let mut warnings = Vec::new();
        if let Some(reason) = ignore_reason(service, &self.options) {
            return Assigned {
                decision: Decision::Ignored { reason },
                warnings,
            };
        }
        let decision = match Request::parse(key, service, &mut warnings) {
            Err(reason) => Decision::Failed { reason },
            Ok(request) => match self.decide(&request) {
                Ok(allocation) => {
                    match keep {
                        Keep::Requests => self.hold(request, allocation.clone()),
                        Keep::Addresses => self.take(&request, &allocation.ips),
                    }
                    Decision::Allocated(allocation)
                }
                Err(reason) => Decision::Failed { reason },
            },
        };
        Assigned { decision, warnings }
    }

    /// Decides `services` as MetalLB's controller does at its start: in
    /// [`allocation_order`], every valid status address is held first, then each
    /// service is [assigned](Allocator::assign) in turn. What the allocator held
    /// for these services before is given back first; other services keep theirs.
    pub fn assign_all(&mut self, services: &[Service]) -> Allocations {
        self.decide_all(services, Keep::Requests)
    }

    /// [`Allocator::assign_all`], keeping `keep` of each service it decides.
    fn decide_all(&mut self, services: &[Service], keep: Keep) -> Allocations {
        let order = allocation_order(services);
        for &i in &order {
            self.hold_status(&services[i]);
        }
        let mut out = Allocations::default();
        for &i in &order {
            let key = ServiceKey::of_service(&services[i]);
            // A second service of the same key (validation refuses them) replaces
            // the first, which gives back what it got, as `assign` does with a
            // kept request.
            if keep == Keep::Addresses
                && let Some(Decision::Allocated(first)) = out.decisions.get(&key)
            {
                self.give_back(&key, &first.ips);
            }
            let assigned = self.assign_keeping(&services[i], keep);
            if !assigned.warnings.is_empty() {
                out.warnings.insert(key.clone(), assigned.warnings);
            }
            out.decisions.insert(key, assigned.decision);
        }
        out
    }

    /// Gives back what `service` holds (it was deleted, or is no longer a
    /// LoadBalancer of this class); returns what it held.
    pub fn release(&mut self, service: &ServiceKey) -> Option<Allocation> {
        self.unhold(service).map(|held| held.allocation)
    }

    /// The services that hold addresses.
    pub fn held_keys(&self) -> impl Iterator<Item = &ServiceKey> {
        self.held.keys()
    }

    /// What `service` holds.
    pub fn allocation(&self, service: &ServiceKey) -> Option<&Allocation> {
        self.held.get(service).map(|held| &held.allocation)
    }

    /// Usage of every pool, by name.
    pub fn usage(&self) -> BTreeMap<String, PoolUsage> {
        self.pools
            .iter()
            .map(|state| (state.pool.name.clone(), state.usage()))
            .collect()
    }

    /// Holds the status addresses of `service` if it may keep them (and nothing
    /// otherwise).
    fn hold_status(&mut self, service: &Service) {
        let key = ServiceKey::of_service(service);
        self.unhold(&key);
        if ignore_reason(service, &self.options).is_some() {
            return;
        }
        let Ok(request) = Request::parse(key, service, &mut Vec::new()) else {
            return;
        };
        if let Some(allocation) = status(&request).and_then(|ips| self.keepable(&request, &ips)) {
            self.hold(request, allocation);
        }
    }

    /// Records that the service of `request` holds `allocation` (already checked).
    fn hold(&mut self, request: Request, allocation: Allocation) {
        self.take(&request, &allocation.ips);
        self.held.insert(
            request.key.clone(),
            Box::new(Held {
                request,
                allocation,
            }),
        );
    }

    /// Records in the ledger and the pools that the service of `request` holds `ips`.
    fn take(&mut self, request: &Request, ips: &[IpAddr]) {
        for &ip in ips {
            if self.ledger.hold(ip, &request.key, &request.share)
                && let Some((pool, range)) = self.locate(ip)
            {
                self.pools[pool].take(range, ip);
            }
        }
    }

    fn unhold(&mut self, service: &ServiceKey) -> Option<Box<Held>> {
        let held = self.held.remove(service)?;
        self.give_back(service, &held.allocation.ips);
        Some(held)
    }

    /// Records in the ledger and the pools that `service` no longer holds `ips`.
    fn give_back(&mut self, service: &ServiceKey, ips: &[IpAddr]) {
        for &ip in ips {
            if self.ledger.release(ip, service)
                && let Some((pool, range)) = self.locate(ip)
            {
                self.pools[pool].give_back(range, ip);
            }
        }
    }

    /// The (pool, range) containing `ip`.
    fn locate(&self, ip: IpAddr) -> Option<(usize, usize)> {
        let (_, &(pool, range)) = self.by_first.range(..=ip).next_back()?;
        self.pools[pool].pool.ranges[range]
            .contains(ip)
            .then_some((pool, range))
    }

    /// The pool whose ranges contain `ip`.
    fn containing(&self, ip: IpAddr) -> Option<&Pool> {
        self.locate(ip).map(|(pool, _)| &self.pools[pool].pool)
    }

    fn pool_state(&self, name: &str) -> Option<&PoolState> {
        self.by_name.get(name).map(|&i| &self.pools[i])
    }

    /// What `request` gets: its status if it may keep it, else new addresses.
    fn decide(&self, request: &Request) -> Result<Allocation, String> {
        match status(request).and_then(|ips| self.keepable(request, &ips)) {
            Some(allocation) => Ok(self.complete_dual_stack(request, allocation)),
            None => self.allocate_new(request),
        }
    }

    /// `ips` for `request`, if the service may keep them (see the module
    /// documentation for when it may not).
    fn keepable(&self, request: &Request, ips: &[IpAddr]) -> Option<Allocation> {
        if !request.stack.accepts(ips) {
            return None;
        }
        let pool = self.containing(*ips.first()?)?;
        if !ips.iter().all(|ip| usable(pool, *ip)) || admission(pool, request).is_err() {
            return None;
        }
        if request
            .pool
            .as_ref()
            .is_some_and(|asked| asked.value != pool.name)
        {
            return None;
        }
        let ips = ipv4_first(ips.to_vec());
        if request
            .ips
            .as_ref()
            .is_some_and(|asked| ipv4_first(asked.value.clone()) != ips)
        {
            return None;
        }
        if ips
            .iter()
            .any(|ip| self.ledger.conflict(*ip, &request.share).is_some())
        {
            return None;
        }
        Some(Allocation {
            pool: pool.name.clone(),
            ips,
        })
    }

    /// A PreferDualStack service that kept one address gets the other family from
    /// the same pool when it has one to give (and keeps its one address otherwise).
    fn complete_dual_stack(&self, request: &Request, mut allocation: Allocation) -> Allocation {
        let (Stack::Prefer { .. }, [kept]) = (request.stack, allocation.ips.as_slice()) else {
            return allocation;
        };
        let kept = *kept;
        let added = self.pool_state(&allocation.pool).and_then(|state| {
            state.first_usable(Family::of(kept).other(), &self.ledger, &request.share)
        });
        if let Some(ip) = added {
            allocation.ips = ipv4_first(vec![kept, ip]);
        }
        allocation
    }

    /// New addresses for `request`: those it names, or from the pool it names, or an
    /// automatic pick.
    fn allocate_new(&self, request: &Request) -> Result<Allocation, String> {
        if let Some(asked) = &request.ips {
            return self.allocate_requested(request, asked);
        }
        if let Some(asked) = &request.pool {
            return self.allocate_from_pool(request, asked);
        }
        self.allocate_automatically(request)
    }

    fn allocate_requested(
        &self,
        request: &Request,
        asked: &Asked<Vec<IpAddr>>,
    ) -> Result<Allocation, String> {
        let origin = &asked.origin;
        let mut found: Option<(IpAddr, &Pool)> = None;
        for &ip in &asked.value {
            let pool = self
                .containing(ip)
                .ok_or_else(|| format!("{origin}: {ip} is in no address pool"))?;
            if skipped(pool, ip) {
                return Err(format!(
                    "{origin}: {ip} ends in .0 or .255, which pool {} avoids (avoidBuggyIPs)",
                    pool.name
                ));
            }
            match found {
                Some((first, first_pool)) if first_pool.name != pool.name => {
                    return Err(format!(
                        "{origin}: {first} is in pool {} and {ip} in pool {}; both addresses must come from one pool",
                        first_pool.name, pool.name
                    ));
                }
                Some(_) => {}
                None => found = Some((ip, pool)),
            }
        }
        // Parsing refuses an empty list, so this error is only a safeguard.
        let (first, pool) = found.ok_or_else(|| format!("{origin}: no address"))?;
        admission(pool, request)
            .map_err(|why| format!("{origin}: {first} is in pool {}, which {why}", pool.name))?;
        if let Some(wanted) = &request.pool
            && wanted.value != pool.name
        {
            return Err(format!(
                "{origin}: {first} is in pool {}, but {} asks for pool {}",
                pool.name, wanted.origin, wanted.value
            ));
        }
        for &ip in &asked.value {
            if let Some(conflict) = self.ledger.conflict(ip, &request.share) {
                return Err(format!("{origin}: {ip} is {conflict}"));
            }
        }
        Ok(Allocation {
            pool: pool.name.clone(),
            ips: ipv4_first(asked.value.clone()),
        })
    }

    fn allocate_from_pool(
        &self,
        request: &Request,
        asked: &Asked<String>,
    ) -> Result<Allocation, String> {
        let origin = &asked.origin;
        let state = self
            .pool_state(&asked.value)
            .ok_or_else(|| format!("{origin}: no address pool has this name"))?;
        let pool = &state.pool;
        admission(pool, request).map_err(|why| format!("{origin}: pool {} {why}", pool.name))?;
        let offer = state.offer(&self.ledger, &request.share);
        match offer.choose(request.stack) {
            Some(ips) => Ok(Allocation {
                pool: pool.name.clone(),
                ips,
            }),
            None => Err(format!(
                "{origin}: pool {} cannot give {}: it {}",
                pool.name,
                request.stack.wanted(),
                offer.shortfall(pool, request)
            )),
        }
    }

    fn allocate_automatically(&self, request: &Request) -> Result<Allocation, String> {
        let eligible = self
            .pools
            .iter()
            .filter(|state| not_automatic(&state.pool, request).is_none());
        // Pools with a serviceAllocation that selects the service come first, by
        // priority (unset last), then by name; the plain pools after them, by name.
        let (mut selecting, mut plain): (Vec<&PoolState>, Vec<&PoolState>) =
            eligible.partition(|state| state.pool.allocation.is_some());
        selecting.sort_by_key(|state| {
            let priority = state.pool.allocation.as_ref().and_then(|a| a.priority);
            (priority.is_none(), priority, &state.pool.name)
        });
        plain.sort_by_key(|state| &state.pool.name);
        for tier in [&selecting, &plain] {
            if let Some(allocation) = self.pick_in_tier(tier, request) {
                return Ok(allocation);
            }
        }

        if self.pools.is_empty() {
            return Err("no address pool is configured".into());
        }
        let causes: Vec<String> = self
            .pools
            .iter()
            .map(|state| {
                let pool = &state.pool;
                let cause = not_automatic(pool, request).unwrap_or_else(|| {
                    state
                        .offer(&self.ledger, &request.share)
                        .shortfall(pool, request)
                });
                format!("pool {} {cause}", pool.name)
            })
            .collect();
        Err(format!(
            "no address pool can give {} automatically: {}",
            request.stack.wanted(),
            causes.join("; ")
        ))
    }

    /// The first pool of `tier` that gives the service everything it wants; for
    /// PreferDualStack, failing that, the first giving its primary family, then the
    /// first giving the other one (MetalLB's order).
    fn pick_in_tier(&self, tier: &[&PoolState], request: &Request) -> Option<Allocation> {
        let mut fallback: [Option<Allocation>; 2] = [None, None];
        for state in tier {
            let offer = state.offer(&self.ledger, &request.share);
            let allocation = |ips| Allocation {
                pool: state.pool.name.clone(),
                ips,
            };
            match request.stack {
                Stack::Single(_) | Stack::Require => {
                    if let Some(ips) = offer.choose(request.stack) {
                        return Some(allocation(ips));
                    }
                }
                Stack::Prefer { primary } => {
                    if let (Some(v4), Some(v6)) = (offer.v4, offer.v6) {
                        return Some(allocation(vec![v4, v6]));
                    }
                    for (slot, family) in fallback.iter_mut().zip([primary, primary.other()]) {
                        if slot.is_none() {
                            *slot = offer.get(family).map(|ip| allocation(vec![ip]));
                        }
                    }
                }
            }
        }
        let [primary, secondary] = fallback;
        primary.or(secondary)
    }
}

/// IPv4 first, as [`Allocation::ips`] promises.
fn ipv4_first(mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
    ips.sort_by_key(IpAddr::is_ipv6);
    ips
}

/// The status addresses of `request`, parsed; `None` when it has none or one is
/// malformed.
fn status(request: &Request) -> Option<Vec<IpAddr>> {
    if request.status.is_empty() {
        return None;
    }
    request
        .status
        .iter()
        .map(|text| text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical()))
        .collect()
}

/// Why `pool` may not be picked automatically for `request`.
fn not_automatic(pool: &Pool, request: &Request) -> Option<String> {
    if !pool.auto_assign {
        return Some("has autoAssign false".into());
    }
    admission(pool, request).err()
}

/// Addresses of one family of a pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FamilyUsage {
    /// Usable addresses (without .0/.255 under avoidBuggyIPs), saturating.
    pub total: u128,
    /// Distinct addresses allocated (a shared address counts once).
    pub in_use: u64,
}

impl FamilyUsage {
    /// Addresses not allocated (MetalLB's `availableIPv4` / `availableIPv6`).
    pub fn available(&self) -> u128 {
        self.total.saturating_sub(u128::from(self.in_use))
    }
}

/// Addresses of one pool (`metallb_allocator_addresses_total`) and those handed out
/// (`metallb_allocator_addresses_in_use_total`), in all and by family (the pool's
/// `status` in Kubernetes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Usable addresses (without .0/.255 under avoidBuggyIPs), saturating.
    pub total: u128,
    /// Distinct addresses allocated (a shared address counts once).
    pub in_use: u64,
    pub ipv4: FamilyUsage,
    pub ipv6: FamilyUsage,
}

impl PoolUsage {
    fn of(ipv4: FamilyUsage, ipv6: FamilyUsage) -> Self {
        Self {
            total: ipv4.total.saturating_add(ipv6.total),
            in_use: ipv4.in_use.saturating_add(ipv6.in_use),
            ipv4,
            ipv6,
        }
    }
}

/// Usage of every pool of `config` under `decisions`.
pub fn pool_usage(
    config: &Config,
    decisions: &BTreeMap<ServiceKey, Decision>,
) -> BTreeMap<String, PoolUsage> {
    let mut in_use: BTreeMap<&str, BTreeSet<IpAddr>> = BTreeMap::new();
    for decision in decisions.values() {
        if let Decision::Allocated(allocation) = decision {
            in_use
                .entry(allocation.pool.as_str())
                .or_default()
                .extend(&allocation.ips);
        }
    }
    config
        .pools
        .iter()
        .map(|pool| {
            let used = in_use.get(pool.name.as_str());
            let family = |family: Family| FamilyUsage {
                total: usable_count(pool, family),
                in_use: used.map_or(0, |ips| {
                    let count = ips.iter().filter(|ip| Family::of(**ip) == family).count();
                    u64::try_from(count).unwrap_or(u64::MAX)
                }),
            };
            let usage = PoolUsage::of(family(Family::V4), family(Family::V6));
            (pool.name.clone(), usage)
        })
        .collect()
}
