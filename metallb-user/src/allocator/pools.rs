//! Pools seen by the allocator: whom they admit, which of their addresses are usable,
//! and the first usable address of a family.

use std::net::IpAddr;

use super::{
    request::{Family, Request, Stack},
    sharing::{Ledger, ShareProfile},
};
use crate::config::{AddrRange, Config, Pool, addresses::is_buggy, selector::any_matches};

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

/// The pool whose ranges contain `ip` (pools do not overlap, so there is at most one).
pub(super) fn containing(config: &Config, ip: IpAddr) -> Option<&Pool> {
    config
        .pools
        .iter()
        .find(|pool| pool.ranges.iter().any(|r| r.contains(ip)))
}

/// Whether `pool` may hand out `ip`: in one of its ranges, and not a .0/.255 address
/// when the pool avoids them.
pub(super) fn usable(pool: &Pool, ip: IpAddr) -> bool {
    pool.ranges.iter().any(|r| r.contains(ip)) && !(pool.avoid_buggy_ips && is_buggy(ip))
}

fn has_family(pool: &Pool, family: Family) -> bool {
    pool.ranges
        .iter()
        .any(|r| r.is_ipv4() == (family == Family::V4))
}

/// The first address of `family` the service may use: ranges in listed order, each
/// from its first address; an address is usable when free or shareable.
pub(super) fn first_usable(
    pool: &Pool,
    family: Family,
    ledger: &Ledger,
    profile: &ShareProfile,
) -> Option<IpAddr> {
    pool.ranges
        .iter()
        .filter(|range| range.is_ipv4() == (family == Family::V4))
        .flat_map(AddrRange::iter)
        .filter(|ip| !(pool.avoid_buggy_ips && is_buggy(*ip)))
        .find(|ip| ledger.conflict(*ip, profile).is_none())
}

/// The first usable address of each family of one pool.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Offer {
    pub v4: Option<IpAddr>,
    pub v6: Option<IpAddr>,
}

impl Offer {
    pub fn of(pool: &Pool, ledger: &Ledger, profile: &ShareProfile) -> Self {
        Self {
            v4: first_usable(pool, Family::V4, ledger, profile),
            v6: first_usable(pool, Family::V6, ledger, profile),
        }
    }

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

/// Addresses `pool` can hand out: every address of its ranges, without IPv4 .0/.255
/// under avoidBuggyIPs; saturating at `u128::MAX`.
pub(super) fn usable_count(pool: &Pool) -> u128 {
    pool.ranges.iter().fold(0u128, |total, range| {
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
