//! IP allocation for `LoadBalancer` services, with MetalLB's controller semantics.
//! Pure: a function of the configuration (pools, namespaces, services with their
//! current status) and options; no I/O, no clock, no randomness.
//!
//! STUB: the API is fixed; the implementation and its table tests are being written.

use std::{collections::BTreeMap, net::IpAddr};

use crate::config::Config;

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
    Ignored { reason: String },
    Allocated(Allocation),
    /// The request cannot be met (MetalLB's `AllocationFailed` event); the service
    /// gets nothing, others are unaffected.
    Failed { reason: String },
}

/// Decides every service of `config`, in a deterministic order (services that already
/// have an address in their status first), so that the result is stable across runs.
pub fn allocate(_config: &Config, _options: &AllocatorOptions) -> BTreeMap<ServiceKey, Decision> {
    BTreeMap::new()
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
pub fn pool_usage(_config: &Config, _decisions: &BTreeMap<ServiceKey, Decision>) -> BTreeMap<String, PoolUsage> {
    BTreeMap::new()
}
