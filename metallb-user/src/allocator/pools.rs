//! Pools seen by the allocator: whom they admit, which of their addresses are usable,
//! which are free, and the first usable address of a family.

use std::net::IpAddr;

use super::{
    FamilyUsage, PoolUsage,
    free::FreeSet,
    request::{Family, Request, Stack},
    sharing::{Ledger, ShareProfile},
};
use crate::config::{AddrRange, Pool, addresses::is_buggy, selector::any_matches};

/// Whether `pool` may serve the service of `request` at all (its `serviceAllocation`),
/// or why not, phrased to follow "pool NAME". `autoAssign` is not considered here: it
/// only concerns automatic picks.
pub(super) fn admission(pool: &Pool, request: &Request) -> Result<(), String> {
    let Some(allocation) = &pool.allocation else {
        return Ok(());
    };
    let namespace = &request.key.namespace;
    if allocation.namespaces.is_empty() && allocation.service_selectors.is_empty() {
        // Namespace selectors that select no namespace, and nothing else: the pool
        // selects nothing (MetalLB would read the empty set as "no restriction").
        return Err(
            "serves no service: its serviceAllocation.namespaceSelectors select no namespace"
                .into(),
        );
    }
    if !allocation.namespaces.is_empty() && !allocation.namespaces.contains(namespace) {
        let listed: Vec<&str> = allocation.namespaces.iter().map(String::as_str).collect();
        return Err(format!(
            "serves only namespaces {} (serviceAllocation), not namespace {namespace}",
            listed.join(", ")
        ));
    }
    if !allocation.service_selectors.is_empty()
        && !any_matches(&allocation.service_selectors, &request.labels)
    {
        return Err(
            "serves only services matching its serviceAllocation.serviceSelectors, and this service's labels do not match"
                .into(),
        );
    }
    Ok(())
}

/// Whether `pool` never hands out `ip`, although its ranges may contain it.
pub(super) fn skipped(pool: &Pool, ip: IpAddr) -> bool {
    pool.avoid_buggy_ips && is_buggy(ip)
}

/// Whether `pool` may hand out `ip`: in one of its ranges, and not skipped.
pub(super) fn usable(pool: &Pool, ip: IpAddr) -> bool {
    pool.ranges.iter().any(|r| r.contains(ip)) && !skipped(pool, ip)
}

fn has_family(pool: &Pool, family: Family) -> bool {
    pool.ranges.iter().any(|r| Family::of(r.first) == family)
}

/// One pool with its free addresses and how many of its addresses are held.
#[derive(Clone, Debug)]
pub(super) struct PoolState {
    pub pool: Pool,
    /// The free addresses of each range, in listed order.
    free: Vec<FreeSet>,
    /// Distinct addresses held, IPv4 and IPv6.
    in_use: [u64; 2],
}

impl PoolState {
    /// `pool` with every address free.
    pub fn new(pool: Pool) -> Self {
        let skip = |ip| skipped(&pool, ip);
        let free = pool
            .ranges
            .iter()
            .map(|range| FreeSet::new(range, &skip))
            .collect();
        Self {
            pool,
            free,
            in_use: [0, 0],
        }
    }

    /// Marks `ip`, of range `range`, held by its first holder.
    pub fn take(&mut self, range: usize, ip: IpAddr) {
        let pool = &self.pool;
        if let Some(free) = self.free.get_mut(range)
            && free.take(ip, &|ip| skipped(pool, ip))
        {
            self.in_use[Family::of(ip) as usize] += 1;
        }
    }

    /// Marks `ip`, of range `range`, free again (its last holder let it go).
    pub fn give_back(&mut self, range: usize, ip: IpAddr) {
        if let Some(free) = self.free.get_mut(range)
            && free.give_back(ip)
        {
            let in_use = &mut self.in_use[Family::of(ip) as usize];
            *in_use = in_use.saturating_sub(1);
        }
    }

    /// The first address of `family` a service with `profile` may use: the first
    /// listed range with room, and in it the lowest address that is free or
    /// shareable.
    pub fn first_usable(
        &self,
        family: Family,
        ledger: &Ledger,
        profile: &ShareProfile,
    ) -> Option<IpAddr> {
        self.pool
            .ranges
            .iter()
            .zip(&self.free)
            .filter(|(range, _)| Family::of(range.first) == family)
            .find_map(|(range, free)| {
                let lowest_free = free.first();
                ledger
                    .first_shareable(range.first, range.last, lowest_free, profile)
                    .or(lowest_free)
            })
    }

    /// The first usable address of each family for a service with `profile`.
    pub fn offer(&self, ledger: &Ledger, profile: &ShareProfile) -> Offer {
        Offer {
            v4: self.first_usable(Family::V4, ledger, profile),
            v6: self.first_usable(Family::V6, ledger, profile),
        }
    }

    pub fn usage(&self) -> PoolUsage {
        let family = |family: Family| FamilyUsage {
            total: usable_count(&self.pool, family),
            in_use: self.in_use[family as usize],
        };
        PoolUsage::of(family(Family::V4), family(Family::V6))
    }
}

/// The first usable address of each family of one pool.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Offer {
    pub v4: Option<IpAddr>,
    pub v6: Option<IpAddr>,
}

impl Offer {
    pub fn get(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.v4,
            Family::V6 => self.v6,
        }
    }

    /// The addresses `stack` takes from this pool alone, IPv4 first.
    pub fn choose(&self, stack: Stack) -> Option<Vec<IpAddr>> {
        match (stack, self.v4, self.v6) {
            (Stack::Single(family), ..) => self.get(family).map(|ip| vec![ip]),
            (_, Some(v4), Some(v6)) => Some(vec![v4, v6]),
            (Stack::Require, ..) => None,
            (Stack::Prefer { .. }, Some(ip), None) | (Stack::Prefer { .. }, None, Some(ip)) => {
                Some(vec![ip])
            }
            (Stack::Prefer { .. }, None, None) => None,
        }
    }

    /// What this pool lacks for `request`, phrased to follow "pool NAME":
    /// "has no IPv6 addresses", "has no free IPv4 address".
    pub fn shortfall(&self, pool: &Pool, request: &Request) -> String {
        let needed: &[Family] = match request.stack {
            Stack::Single(Family::V4) => &[Family::V4],
            Stack::Single(Family::V6) => &[Family::V6],
            Stack::Prefer { .. } | Stack::Require => &[Family::V4, Family::V6],
        };
        let missing: Vec<String> = needed
            .iter()
            .filter(|family| self.get(**family).is_none())
            .map(|family| {
                if !has_family(pool, *family) {
                    format!("no {family} addresses")
                } else if let Some(key) = &request.share.key {
                    format!("no {family} address free or shareable under key {key:?}")
                } else {
                    format!("no free {family} address")
                }
            })
            .collect();
        if missing.is_empty() {
            // Not reached for a pool that was tried and refused; said for completeness.
            "has room".into()
        } else {
            format!("has {}", missing.join(" and "))
        }
    }
}

/// Addresses of `family` that `pool` can hand out: every address of its ranges of
/// that family, without IPv4 .0/.255 under avoidBuggyIPs; saturating at `u128::MAX`.
pub(super) fn usable_count(pool: &Pool, family: Family) -> u128 {
    pool.ranges
        .iter()
        .filter(|range| Family::of(range.first) == family)
        .fold(0u128, |total, range| {
            let buggy = if pool.avoid_buggy_ips {
                buggy_count(range)
            } else {
                0
            };
            total.saturating_add(range.size() - buggy)
        })
}

/// IPv4 addresses ending in .0 or .255 in `range`, counted without walking it.
fn buggy_count(range: &AddrRange) -> u128 {
    let (IpAddr::V4(first), IpAddr::V4(last)) = (range.first, range.last) else {
        return 0;
    };
    let (first, last) = (u128::from(u32::from(first)), u128::from(u32::from(last)));
    // How many n in 0..=x have n % 256 == rest.
    let up_to = |x: u128, rest: u128| if x < rest { 0 } else { (x - rest) / 256 + 1 };
    [0, 255]
        .into_iter()
        .map(|rest| up_to(last, rest) - first.checked_sub(1).map_or(0, |below| up_to(below, rest)))
        .sum()
}
