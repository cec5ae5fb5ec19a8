//! Who holds which address, and whether another service may share it
//! (`metallb.io/allow-shared-ip`).

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
    sync::Arc,
};

use super::ServiceKey;

/// One port a service exposes, as `protocol/number` (protocol defaults to TCP, as the
/// API server defaults it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Port {
    pub protocol: String,
    pub number: i32,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol, self.number)
    }
}

/// Where a service's traffic may go, which decides with whom it can share an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Backend {
    /// `externalTrafficPolicy: Cluster` (the default): any node forwards.
    Cluster,
    /// `externalTrafficPolicy: Local`, with the service's pod selector: only nodes
    /// running these pods may answer, so sharers must select the same pods.
    Local(BTreeMap<String, String>),
}

/// What decides whether two services may share an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ShareProfile {
    /// The sharing key; `None`: the service does not share.
    pub key: Option<String>,
    pub backend: Backend,
    /// Sorted, each port once (a slice, not a set: one port is 32 bytes here and a
    /// few hundred in a set's node, for each of 100,000 services).
    pub ports: Box<[Port]>,
}

impl ShareProfile {
    /// `ports` sorted and each once, as [`ShareProfile::ports`] wants them.
    pub fn sorted_ports(ports: impl IntoIterator<Item = Port>) -> Box<[Port]> {
        let mut ports: Vec<Port> = ports.into_iter().collect();
        ports.sort();
        ports.dedup();
        ports.into_boxed_slice()
    }

    /// The lowest port both profiles expose (a merge of the two sorted lists).
    fn common_port<'a>(&'a self, other: &ShareProfile) -> Option<&'a Port> {
        let (mut mine, mut theirs) = (self.ports.iter().peekable(), other.ports.iter().peekable());
        while let (Some(a), Some(b)) = (mine.peek(), theirs.peek()) {
            match a.cmp(b) {
                Ordering::Less => {
                    mine.next();
                }
                Ordering::Greater => {
                    theirs.next();
                }
                Ordering::Equal => return Some(a),
            }
        }
        None
    }
}

/// A holder of an address: the profile is shared with its request (one copy per
/// service, whatever the number of its addresses).
#[derive(Clone, Debug)]
struct Holder {
    service: ServiceKey,
    profile: Arc<ShareProfile>,
}

/// Addresses handed out, with their holders.
#[derive(Clone, Debug, Default)]
pub(super) struct Ledger {
    holders: BTreeMap<IpAddr, Vec<Holder>>,
    /// The addresses held under each sharing key (all holders of an address have its
    /// key), to find a shareable address without looking at every held one.
    by_key: BTreeMap<String, BTreeSet<IpAddr>>,
}

impl Ledger {
    /// Why a service with `profile` may not use `ip`, phrased to follow the address
    /// ("10.0.0.1 is in use by ..."); `None` when it is free or shareable.
    pub fn conflict(&self, ip: IpAddr, profile: &ShareProfile) -> Option<String> {
        let holders = self.holders.get(&ip)?;
        // Every holder of an address has the same key and backend (that is what
        // sharing requires), so the first one speaks for all.
        let first = holders.first()?;
        let (theirs, name) = (&first.profile, &first.service);
        let (their_key, my_key) = match (&theirs.key, &profile.key) {
            (None, _) => {
                return Some(format!(
                    "in use by {name}, which does not allow sharing (no allow-shared-ip annotation)"
                ));
            }
            (Some(_), None) => {
                return Some(format!(
                    "in use by {name}, and this service has no allow-shared-ip annotation to share it"
                ));
            }
            (Some(theirs), Some(mine)) => (theirs, mine),
        };
        if their_key != my_key {
            return Some(format!(
                "in use by {name} under sharing key {their_key:?}, not this service's key {my_key:?}"
            ));
        }
        match (&theirs.backend, &profile.backend) {
            (Backend::Cluster, Backend::Local(_)) => {
                return Some(format!(
                    "in use by {name} with externalTrafficPolicy Cluster; a Local service shares only with Local services selecting the same pods"
                ));
            }
            (Backend::Local(_), Backend::Cluster) => {
                return Some(format!(
                    "in use by {name} with externalTrafficPolicy Local; a Cluster service cannot share with it"
                ));
            }
            (Backend::Local(a), Backend::Local(b)) if a != b => {
                return Some(format!(
                    "in use by {name} with externalTrafficPolicy Local and spec.selector {{{}}}, not this service's {{{}}}; Local services share only when they select the same pods",
                    show_selector(a),
                    show_selector(b)
                ));
            }
            _ => {}
        }
        holders.iter().find_map(|holder| {
            let port = holder.profile.common_port(profile)?;
            Some(format!(
                "shared, but port {port} is already used on it by {}",
                holder.service
            ))
        })
    }

    /// Records that `service` holds `ip`; true when nobody held it before. The caller
    /// has checked [`Ledger::conflict`].
    pub fn hold(&mut self, ip: IpAddr, service: &ServiceKey, profile: &Arc<ShareProfile>) -> bool {
        // Most addresses have one holder: room for one (a Vec grows to four at its
        // first push).
        let holders = self
            .holders
            .entry(ip)
            .or_insert_with(|| Vec::with_capacity(1));
        let first = holders.is_empty();
        holders.push(Holder {
            service: service.clone(),
            profile: Arc::clone(profile),
        });
        if let Some(key) = &profile.key {
            self.by_key.entry(key.clone()).or_default().insert(ip);
        }
        first
    }

    /// Records that `service` no longer holds `ip`; true when nobody holds it now.
    pub fn release(&mut self, ip: IpAddr, service: &ServiceKey) -> bool {
        let Some(holders) = self.holders.get_mut(&ip) else {
            return false;
        };
        // Every holder has the same key (that is what sharing requires).
        let key = holders
            .first()
            .and_then(|holder| holder.profile.key.clone());
        holders.retain(|holder| &holder.service != service);
        if !holders.is_empty() {
            return false;
        }
        self.holders.remove(&ip);
        if let Some(key) = key
            && let Some(ips) = self.by_key.get_mut(&key)
        {
            ips.remove(&ip);
            if ips.is_empty() {
                self.by_key.remove(&key);
            }
        }
        true
    }

    /// The lowest address of `first..=last` held under `profile`'s sharing key that a
    /// service with `profile` may share, looking only below `below` (the lowest free
    /// address, which wins over any higher shared one). Linear in the addresses held
    /// under that key below `below`: few, unless many services with one key clash
    /// on their ports.
    pub fn first_shareable(
        &self,
        first: IpAddr,
        last: IpAddr,
        below: Option<IpAddr>,
        profile: &ShareProfile,
    ) -> Option<IpAddr> {
        let held = self.by_key.get(profile.key.as_ref()?)?;
        held.range(first..=last)
            .take_while(|ip| below.is_none_or(|below| **ip < below))
            .find(|ip| self.conflict(**ip, profile).is_none())
            .copied()
    }
}

fn show_selector(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
