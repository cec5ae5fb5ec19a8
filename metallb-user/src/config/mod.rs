//! The configuration: MetalLB's objects as a user writes them (`crd`, `file`), checked
//! with MetalLB's rules (`validate`) into the model the core works on ([`Config`]).
//! Pure: no I/O but the caller's.

pub mod addresses;
pub mod bgp;
pub mod bgp_config;
pub mod changes;
pub mod crd;
pub mod file;
pub mod interfaces;
pub mod legacy;
pub mod names;
pub mod selector;
pub mod service;
pub mod service_model;
pub mod validate;

#[cfg(test)]
mod properties;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::{core::v1::Node, discovery::v1::EndpointSlice};
use serde::Serialize;

use crate::printable::printable;

pub use self::{
    addresses::AddrRange,
    interfaces::InterfaceExclusions,
    selector::{Labels, Selector},
    service_model::{Service, ServiceName},
    validate::{ValidateOptions, validate, validate_owned},
};

/// What the source of a configuration says changed in its Services since the
/// configuration the last plan was made of ([`crate::plan::Standing::replan`]): at
/// place `at` of the Services, the `was` Services of the last configuration were
/// replaced by the `now` Services there now; every other Service, with its
/// EndpointSlices, is the last configuration's, in the same order. It names places,
/// not Services: the replan looks at the `now` Services and the last plan's `was`
/// ones alone, and at a sample of the others (places before and after the change,
/// and up to [`crate::plan::SAMPLED`] spread over the rest) to check their digests:
/// a word found wrong there is not used (every Service is looked at then).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub at: usize,
    pub was: usize,
    pub now: usize,
}

/// The namespace MetalLB runs in unless told otherwise: where its objects must be.
pub const DEFAULT_NAMESPACE: &str = "metallb-system";

/// A problem with the configuration, naming the object, the field and the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// `Kind namespace/name`, or where in the file for what has no name.
    pub object: String,
    /// Path of the field, e.g. `spec.addresses[1]`; empty for the whole object.
    pub field: String,
    /// The offending value, when there is one.
    pub value: String,
    pub message: String,
}

impl Issue {
    /// Object, field and value are shortened when very long (see [`names::shorten`]):
    /// a message about a 65,000-character name shows its beginning and its length.
    pub fn new(object: &str, field: &str, value: &str, message: impl Into<String>) -> Self {
        Self {
            object: names::shorten(object),
            field: names::shorten(field),
            value: names::shorten(value),
            message: message.into(),
        }
    }
}

/// Names and values come from the file: what they hold is escaped, never printed raw.
impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", printable(&self.object))?;
        if !self.field.is_empty() {
            write!(f, ": {}", printable(&self.field))?;
        }
        if !self.value.is_empty() {
            write!(f, " {:?}", self.value)?;
        }
        write!(f, ": {}", printable(&self.message))
    }
}

/// The namespace of a Service: `default` when the object has none (or an empty one),
/// as the API server would set it.
pub fn service_namespace(service: &impl ServiceName) -> &str {
    service
        .service_namespace()
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default")
}

/// A validated address pool.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub name: String,
    pub labels: Labels,
    /// The addresses it may hand out, in listed order (addresses are handed out from
    /// the first range with room). An IPv6 CIDR's subnet-router anycast address is left
    /// out ([`addresses::PoolEntry::usable`]), so that no part of the allocator can hand
    /// it out, or count it.
    pub ranges: Vec<AddrRange>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
    /// `None`: the pool serves any service. `Some`: only what it selects.
    pub allocation: Option<PoolAllocation>,
}

/// A pool's `serviceAllocation`, with namespace selectors resolved against the
/// namespaces of the configuration (as MetalLB resolves them against the cluster's).
#[derive(Clone, Debug, PartialEq)]
pub struct PoolAllocation {
    /// Lower wins; `None` (unset or 0) ranks after every set priority.
    pub priority: Option<i64>,
    /// Namespaces listed or selected.
    pub namespaces: BTreeSet<String>,
    /// A service matching any of these may use the pool. A pool with only a priority
    /// gets one selector matching everything (MetalLB's rule).
    pub service_selectors: Vec<Selector>,
}

/// A validated L2Advertisement.
#[derive(Clone, Debug, PartialEq)]
pub struct L2Advertisement {
    pub name: String,
    /// Names of the pools it announces (existing pools only).
    pub pools: BTreeSet<String>,
    /// Nodes that may announce; empty: every node.
    pub node_selectors: Vec<Selector>,
    /// Interfaces to announce on; empty: every interface.
    pub interfaces: Vec<String>,
    /// Services it announces; empty: every service of its pools.
    pub service_selectors: Vec<Selector>,
    /// (weight, selector): soft preferences in the election.
    pub preferred_nodes: Vec<(i32, Selector)>,
}

/// The configuration the core works on.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Sorted by name.
    pub pools: Vec<Pool>,
    /// Sorted by name.
    pub l2_advertisements: Vec<L2Advertisement>,
    pub services: Vec<Service>,
    pub nodes: Vec<Node>,
    /// Labels of every namespace the configuration declares.
    pub namespaces: BTreeMap<String, Labels>,
    /// The Services' endpoints, for the election (see `election::EndpointRule`).
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Interfaces left alone when an L2Advertisement names none: the
    /// `metallb-excludel2` ConfigMap's patterns, or MetalLB's defaults without one.
    pub interface_exclusions: InterfaceExclusions,
    /// Peers, BGP advertisements and BFD profiles (boxed: most configurations have none).
    pub bgp: Box<bgp_config::BgpConfig>,
}

impl Config {
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }
}
