//! IP allocation for `LoadBalancer` services, with MetalLB's controller semantics.
//! Pure: a function of the configuration (pools, namespaces, services with their
//! current status) and options; no I/O, no clock, no randomness.
//!
//! How a service gets its addresses, in this order:
//! 1. A valid address already in its status is kept, even when a better pool exists
//!    now (a restart never moves a working address). It is dropped when its family is
//!    not the service's, no pool contains it, it is a .0/.255 address of a pool that
//!    avoids them, its pool does not admit the service, the service now asks for
//!    another pool or other addresses, or an earlier service holds it incompatibly.
//! 2. Addresses it asks for (`metallb.io/loadBalancerIPs`, or the deprecated
//!    `spec.loadBalancerIP`): exactly these, from one pool, whatever its `autoAssign`.
//! 3. A pool it asks for (`metallb.io/address-pool`): that pool only, never another.
//! 4. Otherwise an automatic pick among the `autoAssign` pools that admit it: first
//!    the pools with a `serviceAllocation` that selects it (by priority, lower first,
//!    unset last), then the pools without one.
//!
//! Within a pool, addresses come from the first listed range with room, each range
//! walked from its first address; an address is usable when free, or when already
//! shared by compatible services (same `allow-shared-ip` key, no common port, and,
//! under `externalTrafficPolicy: Local`, the same pods).
//!
//! Where MetalLB picks at random (between plain pools, or pools of equal priority),
//! this allocator takes them by name, so that equal inputs give equal outputs.

mod pools;
mod request;
mod sharing;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use k8s_openapi::api::core::v1::Service;

use self::{
    pools::{Offer, admission, containing, first_usable, usable, usable_count},
    request::{Asked, Family, Request, Stack, ignore_reason},
    sharing::Ledger,
};
use crate::config::{Config, Pool, addresses::is_buggy};

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
    pub fn of_service(service: &Service) -> Self {
        Self {
            namespace: crate::config::service_namespace(service).to_owned(),
            name: service.metadata.name.clone().unwrap_or_default(),
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

/// Decides every service of `config`, in a deterministic order, so that the result is
/// stable across runs and restarts:
/// 1. every service with an address in its status keeps it if it still may, in
///    namespace/name order (of two services claiming one address incompatibly, the
///    first keeps it); all these are held before any new address is handed out;
/// 2. then the others get addresses: services naming exact addresses first (so an
///    automatic pick never takes an address another service names), then services
///    that had a status, then new ones, each group in namespace/name order.
///
/// A service whose request cannot be met gets [`Decision::Failed`] and holds nothing;
/// the others are decided as if it were not there.
pub fn allocate(config: &Config, options: &AllocatorOptions) -> BTreeMap<ServiceKey, Decision> {
    let mut decisions = BTreeMap::new();
    let mut requests = Vec::new();
    for service in &config.services {
        let key = ServiceKey::of_service(service);
        if let Some(reason) = ignore_reason(service, options) {
            decisions.insert(key, Decision::Ignored { reason });
            continue;
        }
        match Request::parse(key.clone(), service) {
            Ok(request) => requests.push(request),
            Err(reason) => {
                decisions.insert(key, Decision::Failed { reason });
            }
        }
    }

    let mut ledger = Ledger::default();
    requests.sort_by(|a, b| a.key.cmp(&b.key));
    let mut kept = BTreeMap::new();
    for request in &requests {
        if let Some(allocation) = keep_status(config, request, &ledger) {
            ledger.hold(&allocation.ips, &request.key, &request.share);
            kept.insert(request.key.clone(), allocation);
        }
    }

    let order = |r: &Request| (r.ips.is_none(), r.status.is_empty(), r.key.clone());
    requests.sort_by_cached_key(order);
    for request in &requests {
        let decision = match kept.remove(&request.key) {
            Some(allocation) => Decision::Allocated(complete_dual_stack(
                config,
                request,
                allocation,
                &mut ledger,
            )),
            None => match allocate_new(config, request, &ledger) {
                Ok(allocation) => {
                    ledger.hold(&allocation.ips, &request.key, &request.share);
                    Decision::Allocated(allocation)
                }
                Err(reason) => Decision::Failed { reason },
            },
        };
        decisions.insert(request.key.clone(), decision);
    }
    decisions
}

/// IPv4 first, as [`Allocation::ips`] promises.
fn ipv4_first(mut ips: Vec<IpAddr>) -> Vec<IpAddr> {
    ips.sort_by_key(IpAddr::is_ipv6);
    ips
}

/// The status addresses of `request`, if the service may keep them (see the module
/// documentation for when it may not).
fn keep_status(config: &Config, request: &Request, ledger: &Ledger) -> Option<Allocation> {
    if request.status.is_empty() {
        return None;
    }
    let ips = request
        .status
        .iter()
        .map(|text| text.parse::<IpAddr>().ok().map(|ip| ip.to_canonical()))
        .collect::<Option<Vec<_>>>()?;
    if !request.stack.accepts(&ips) {
        return None;
    }
    let pool = containing(config, *ips.first()?)?;
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
    let ips = ipv4_first(ips);
    if request
        .ips
        .as_ref()
        .is_some_and(|asked| ipv4_first(asked.value.clone()) != ips)
    {
        return None;
    }
    if ips
        .iter()
        .any(|ip| ledger.conflict(*ip, &request.share).is_some())
    {
        return None;
    }
    Some(Allocation {
        pool: pool.name.clone(),
        ips,
    })
}

/// A PreferDualStack service that kept one address gets the other family from the
/// same pool when it has one to give (and keeps its one address otherwise).
fn complete_dual_stack(
    config: &Config,
    request: &Request,
    mut allocation: Allocation,
    ledger: &mut Ledger,
) -> Allocation {
    let (Stack::Prefer { .. }, [kept]) = (request.stack, allocation.ips.as_slice()) else {
        return allocation;
    };
    let missing = Family::of(*kept).other();
    let added = config
        .pool(&allocation.pool)
        .and_then(|pool| first_usable(pool, missing, ledger, &request.share));
    if let Some(ip) = added {
        ledger.hold(&[ip], &request.key, &request.share);
        allocation.ips = ipv4_first(vec![*kept, ip]);
    }
    allocation
}

/// New addresses for `request`: those it names, or from the pool it names, or an
/// automatic pick.
fn allocate_new(config: &Config, request: &Request, ledger: &Ledger) -> Result<Allocation, String> {
    if let Some(asked) = &request.ips {
        return allocate_requested(config, request, asked, ledger);
    }
    if let Some(asked) = &request.pool {
        return allocate_from_pool(config, request, asked, ledger);
    }
    allocate_automatically(config, request, ledger)
}

fn allocate_requested(
    config: &Config,
    request: &Request,
    asked: &Asked<Vec<IpAddr>>,
    ledger: &Ledger,
) -> Result<Allocation, String> {
    let origin = &asked.origin;
    let mut found: Option<(IpAddr, &Pool)> = None;
    for &ip in &asked.value {
        let pool = containing(config, ip)
            .ok_or_else(|| format!("{origin}: {ip} is in no address pool"))?;
        if pool.avoid_buggy_ips && is_buggy(ip) {
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
        if let Some(conflict) = ledger.conflict(ip, &request.share) {
            return Err(format!("{origin}: {ip} is {conflict}"));
        }
    }
    Ok(Allocation {
        pool: pool.name.clone(),
        ips: ipv4_first(asked.value.clone()),
    })
}

fn allocate_from_pool(
    config: &Config,
    request: &Request,
    asked: &Asked<String>,
    ledger: &Ledger,
) -> Result<Allocation, String> {
    let origin = &asked.origin;
    let pool = config
        .pool(&asked.value)
        .ok_or_else(|| format!("{origin}: no address pool has this name"))?;
    admission(pool, request).map_err(|why| format!("{origin}: pool {} {why}", pool.name))?;
    let offer = Offer::of(pool, ledger, &request.share);
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

/// Why `pool` may not be picked automatically for `request`.
fn not_automatic(pool: &Pool, request: &Request) -> Option<String> {
    if !pool.auto_assign {
        return Some("has autoAssign false".into());
    }
    admission(pool, request).err()
}

fn allocate_automatically(
    config: &Config,
    request: &Request,
    ledger: &Ledger,
) -> Result<Allocation, String> {
    let eligible = config
        .pools
        .iter()
        .filter(|pool| not_automatic(pool, request).is_none());
    // Pools with a serviceAllocation that selects the service come first, by priority
    // (unset last), then by name; the plain pools after them, by name.
    let (mut selecting, mut plain): (Vec<&Pool>, Vec<&Pool>) =
        eligible.partition(|pool| pool.allocation.is_some());
    selecting.sort_by_key(|pool| {
        let priority = pool.allocation.as_ref().and_then(|a| a.priority);
        (priority.is_none(), priority, &pool.name)
    });
    plain.sort_by_key(|pool| &pool.name);
    for tier in [&selecting, &plain] {
        if let Some(allocation) = pick_in_tier(tier, request, ledger) {
            return Ok(allocation);
        }
    }

    if config.pools.is_empty() {
        return Err("no address pool is configured".into());
    }
    let causes: Vec<String> = config
        .pools
        .iter()
        .map(|pool| {
            let cause = not_automatic(pool, request).unwrap_or_else(|| {
                Offer::of(pool, ledger, &request.share).shortfall(pool, request)
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
/// PreferDualStack, failing that, the first giving its primary family, then the first
/// giving the other one (MetalLB's order).
fn pick_in_tier(tier: &[&Pool], request: &Request, ledger: &Ledger) -> Option<Allocation> {
    let mut fallback: [Option<Allocation>; 2] = [None, None];
    for pool in tier {
        let offer = Offer::of(pool, ledger, &request.share);
        let allocation = |ips| Allocation {
            pool: pool.name.clone(),
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

/// Addresses of one pool (`metallb_allocator_addresses_total`) and those handed out
/// (`metallb_allocator_addresses_in_use_total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// Usable addresses (without .0/.255 under avoidBuggyIPs), saturating.
    pub total: u128,
    /// Distinct addresses allocated (a shared address counts once).
    pub in_use: u64,
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
            let used = in_use.get(pool.name.as_str()).map_or(0, BTreeSet::len);
            let usage = PoolUsage {
                total: usable_count(pool),
                in_use: u64::try_from(used).unwrap_or(u64::MAX),
            };
            (pool.name.clone(), usage)
        })
        .collect()
}
