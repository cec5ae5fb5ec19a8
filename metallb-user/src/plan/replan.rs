//! Planning again when only some Services changed ([`Standing::replan`]): the
//! Services that changed are allocated, balloted and elected again, and nothing
//! else, when that provably gives what planning the configuration whole gives;
//! otherwise the caller plans whole.
//!
//! Why it is exact. The allocator ([`crate::allocator::allocate`]) decides the
//! services one after the other, and a service's decision depends on the others
//! only through the addresses they hold: at the addresses it asks for or carries in
//! its status, and, when it picks an address from a pool, at every address of the
//! pool. So the services that changed (`changed`) are decided again alone, in their
//! order, and every other service keeps its decision, when:
//! - every other service's decision depends on nobody ([`Wants::Nothing`]: ignored,
//!   failed whatever the others hold, or kept the address of its status, which with
//!   the allocator the speaker gives it from its last plan), or on the holders of the
//!   addresses it asks for ([`Wants::Addresses`]: it failed, asking for addresses
//!   with one holder at most), and none of these addresses is one that a changed
//!   service held, asks for or carries in its status (a released address can let it
//!   succeed; a new holder changes its reason);
//! - no other service holds an address that a changed service asks for or carries in
//!   its status (who wins would depend on the order);
//! - no changed service picked an address from a pool (checked on its decision:
//!   the addresses it asked for, or its status's, or it failed asking for addresses
//!   or for a malformed request).
//!
//! Then the decisions that other services see at these addresses are those of the
//! services that changed alone, whatever their places in the order, and those
//! services see nobody else there. With the addresses from the status (Kubernetes),
//! every decision depends on its service alone. The rest of the configuration (pools,
//! advertisements, nodes, namespaces, interface exclusions; no BGP), the options,
//! the live nodes and the interfaces must be those of the last plan.

use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::*;
use crate::{
    allocator::{
        Allocator, FamilyUsage, from_status_of, has_status_address, requested, status_addresses,
        status_with,
    },
    config::{
        Changes, Service, ServiceName,
        service_model::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus},
        service_namespace,
    },
    election::{EndpointRule, SlicesByService, slices_by_service, slices_of},
};

/// What else than its own Service (and the rest of the configuration) a service's
/// decision depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Wants {
    /// Nothing.
    #[default]
    Nothing,
    /// It failed asking for addresses ([`Kept::wanted`]), each held by one service at
    /// most: the holders of these.
    Addresses,
    /// Maybe anything (an address picked from a pool, a status not kept): a change
    /// of another service is planned whole.
    Unknown,
}

/// What a [`Standing`] keeps for [`Standing::replan`].
#[derive(Clone, Debug, Default)]
pub(super) struct Kept {
    /// False when it cannot be used (two Services with one key).
    usable: bool,
    /// The rest of the configuration ([`rest_digest`]).
    rest: u128,
    addresses: AddressSource,
    allocator: AllocatorOptions,
    endpoints: EndpointRule,
    /// (address, service index) of every allocated address, sorted.
    held: Vec<(IpAddr, u32)>,
    /// (address, service index) of the addresses asked for by the services that
    /// failed ([`Wants::Addresses`]), sorted.
    wanted: Vec<(IpAddr, u32)>,
    /// How many services are [`Wants::Unknown`].
    unknown: usize,
    /// The index of the service at each place of the last configuration's Services
    /// (u32::MAX: none): where the next one's are looked for first.
    positions: Vec<u32>,
}

/// The Services, besides those at the edges of the change, whose digests check a
/// source's [`Changes`].
pub const SAMPLED: usize = 32;

/// The place in the last configuration of the Service at place `i` now, if it is
/// not one of those `changes` says changed.
fn was_at(changes: &Changes, i: usize) -> Option<usize> {
    if i < changes.at {
        Some(i)
    } else if i >= changes.at + changes.now {
        Some(i - changes.now + changes.was)
    } else {
        None
    }
}

/// The places of the Services (of `len`) that check a source's word ([`Changes`]):
/// those next to the change, and up to [`SAMPLED`] spread over the others.
fn sampled(changes: &Changes, len: usize) -> impl Iterator<Item = usize> + '_ {
    let others = len.saturating_sub(changes.now);
    let edges = [changes.at.checked_sub(1), Some(changes.at + changes.now)];
    let spread = (0..SAMPLED.min(others)).map(move |k| {
        let j = k * others / SAMPLED.min(others);
        Some(if j < changes.at { j } else { j + changes.now })
    });
    edges
        .into_iter()
        .chain(spread)
        .flatten()
        .filter(move |&i| i < len)
}

/// A plan made again for a change of some Services ([`Standing::replan`]): what
/// differs from the last plan.
#[derive(Clone, Debug, Default)]
pub struct Replan {
    /// The entries that may differ from the last plan's, each with its value now
    /// (`None`: gone), each key once, in key order.
    pub vips: Vec<(VipKey, Option<VipConfig>)>,
    /// The services planned again (new, or changed), in key order: their plan now.
    /// Every other service's plan is the last one's.
    pub services: Vec<(ServiceKey, ServicePlan)>,
    /// The services gone, in key order.
    pub removed: Vec<ServiceKey>,
    /// Every pool's usage now.
    pub pools: BTreeMap<String, PoolUsage>,
    /// The Services of the configuration it looked at (computed the digest of):
    /// every one, or with the source's word ([`Changes`]) those it names and the
    /// sample that checked it.
    pub looked: usize,
}

/// A digest of what is written: SipHash-1-3, and with `wide` a second, salted run
/// (128 bits). Not for an adversary: a collision would take a Service edited to
/// collide. A Service's digest is compared only with its own last one, so 64 bits
/// leave a chance of 2^-64 that an edit goes unseen; the rest of the configuration
/// takes 128.
struct Digest(DefaultHasher, Option<DefaultHasher>);

impl Digest {
    fn new(wide: bool) -> Self {
        let salted = wide.then(|| {
            let mut salted = DefaultHasher::new();
            salted.write_u8(0xa5);
            salted
        });
        Self(DefaultHasher::new(), salted)
    }

    fn value(&self) -> u128 {
        let second = self.1.as_ref().map_or(0, Hasher::finish);
        (u128::from(self.0.finish()) << 64) | u128::from(second)
    }
}

impl Hasher for Digest {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        if let Some(salted) = &mut self.1 {
            salted.write(bytes);
        }
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl std::fmt::Write for Digest {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        Hasher::write(self, s.as_bytes());
        Ok(())
    }
}

impl std::io::Write for Digest {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        Hasher::write(self, bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The digest of the configuration without its Services and EndpointSlices.
fn rest_digest(config: &Config) -> u128 {
    use std::fmt::Write as _;
    let Config {
        pools,
        l2_advertisements,
        services: _,
        nodes,
        namespaces,
        endpoint_slices: _,
        interface_exclusions,
        bgp,
    } = config;
    let mut digest = Digest::new(true);
    // Debug output: every part is ordered (vectors, sorted maps).
    let _ = write!(
        digest,
        "{pools:?}\u{0}{l2_advertisements:?}\u{0}{nodes:?}\u{0}{namespaces:?}\u{0}{interface_exclusions:?}\u{0}{bgp:?}"
    );
    digest.value()
}

/// The digest of `service` with its EndpointSlices. With the allocator
/// (`allocation` given: the addresses it got in the last plan), a status that says
/// exactly these addresses, or none (the speaker gives it these as its status), counts
/// as the same whatever its text.
fn digest(
    service: &Service,
    slices: Option<&Vec<&EndpointSlice>>,
    allocation: Option<&[IpAddr]>,
) -> u64 {
    let mut d = Digest::new(false);
    let Service {
        metadata,
        spec,
        status,
    } = service;
    let crate::config::service_model::ServiceMeta {
        name,
        namespace,
        labels,
        annotations,
        creation_timestamp,
    } = metadata;
    (name, namespace, labels).hash(&mut d);
    for (key, value) in annotations.iter() {
        (1u8, key, value).hash(&mut d);
    }
    0u8.hash(&mut d);
    creation_timestamp.as_ref().map(|t| t.0).hash(&mut d);
    match spec {
        None => 0u8.hash(&mut d),
        Some(spec) => {
            let crate::config::service_model::ServiceSpec {
                type_,
                load_balancer_class,
                load_balancer_ip,
                ip_families,
                ip_family_policy,
                external_traffic_policy,
                selector,
                ports,
            } = spec;
            1u8.hash(&mut d);
            (type_, load_balancer_class, load_balancer_ip, ip_families).hash(&mut d);
            (ip_family_policy, external_traffic_policy, selector).hash(&mut d);
            ports.as_ref().map(Vec::len).hash(&mut d);
            for port in ports.iter().flatten() {
                (port.port, &port.protocol).hash(&mut d);
            }
        }
    }
    let as_allocated = allocation.is_some_and(|ips| {
        status_addresses(service).is_some_and(|status| status == ips)
            || !has_status_address(service)
    });
    if as_allocated {
        2u8.hash(&mut d);
    } else {
        let ingress = |status: &Option<ServiceStatus>| -> Option<Vec<Option<String>>> {
            let ServiceStatus { load_balancer } = status.as_ref()?;
            let LoadBalancerStatus { ingress } = load_balancer.as_ref()?;
            let ingress = ingress.as_ref()?;
            Some(
                ingress
                    .iter()
                    .map(|LoadBalancerIngress { ip }| ip.clone())
                    .collect(),
            )
        };
        (3u8, status.is_some(), ingress(status)).hash(&mut d);
    }
    for slice in slices.into_iter().flatten() {
        4u8.hash(&mut d);
        if serde_json::to_writer(&mut d, slice).is_err() {
            // Not reached (an API object always serializes); a digest of its debug
            // text then.
            let _ = std::fmt::Write::write_fmt(&mut d, format_args!("{slice:?}"));
        }
    }
    d.finish()
}

/// What `service`'s `decision` depends on, and the addresses it asks for if it
/// failed asking for them.
fn wants(service: &Service, decision: &Decision, allocate: bool) -> (Wants, Vec<IpAddr>) {
    if !allocate {
        return (Wants::Nothing, Vec::new());
    }
    match decision {
        Decision::Ignored { .. } => (Wants::Nothing, Vec::new()),
        Decision::Failed { .. } => match requested(service).0 {
            // Malformed: nothing else counts.
            Err(_) => (Wants::Nothing, Vec::new()),
            Ok(asked) => match asked.ips {
                Some(ips) if !has_status_address(service) => (Wants::Addresses, ips.value),
                _ => (Wants::Unknown, Vec::new()),
            },
        },
        Decision::Allocated(allocation) => {
            let kept = match status_addresses(service) {
                Some(status) => status == allocation.ips,
                None => !has_status_address(service),
            };
            // PreferDualStack with one address may get the other family later.
            let single = allocation.ips.len() == 1
                && service
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.ip_family_policy.as_deref())
                    .is_some_and(|policy| policy != "SingleStack");
            if kept && !single {
                (Wants::Nothing, Vec::new())
            } else {
                (Wants::Unknown, Vec::new())
            }
        }
    }
}

/// The indices of `services` sorted by key; `None` when two have one key.
fn by_key(services: &[Service]) -> Option<Vec<usize>> {
    let key = |i: &usize| {
        let service = &services[*i];
        (
            service_namespace(service),
            service.service_name().unwrap_or_default(),
        )
    };
    let mut order: Vec<usize> = (0..services.len()).collect();
    order.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
    order
        .windows(2)
        .all(|pair| key(&pair[0]) != key(&pair[1]))
        .then_some(order)
}

/// The addresses asked for by the services that failed asking for them ((address,
/// service index), sorted), and the index of the service at each place of the
/// configuration's Services.
pub(super) type Placed = (Vec<(IpAddr, u32)>, Vec<u32>);

/// Each service's digest and what it wants, in the order of `decisions` (by key),
/// and the addresses asked for by those that failed asking for them with the index
/// of the service at each place of `config.services`; `None` when the services do
/// not match the decisions one to one (two Services with one key).
pub(super) fn digests(
    config: &Config,
    slices: &SlicesByService<'_>,
    options: &PlanOptions,
    decisions: &BTreeMap<ServiceKey, Decision>,
) -> (Vec<(u64, Wants)>, Option<Placed>) {
    let allocate = options.addresses == AddressSource::Allocate;
    let mut slices = slices.iter().peekable();
    let Some(order) = by_key(&config.services).filter(|o| o.len() == decisions.len()) else {
        return (vec![(0, Wants::Unknown); decisions.len()], None);
    };
    let mut wanted = Vec::new();
    let digests = order
        .iter()
        .zip(decisions)
        .enumerate()
        .map(|(index, (&i, (key, decision)))| {
            let service = &config.services[i];
            while slices.next_if(|(of, _)| *of < key).is_some() {}
            let slices = slices.next_if(|(of, _)| *of == key).map(|(_, s)| s);
            let allocation = match decision {
                Decision::Allocated(a) if allocate => Some(a.ips.as_slice()),
                _ => None,
            };
            let (wants, asked) = wants(service, decision, allocate);
            wanted.extend(asked.into_iter().map(|ip| (ip, index as u32)));
            (digest(service, slices, allocation), wants)
        })
        .collect();
    let mut positions = vec![u32::MAX; order.len()];
    for (index, &i) in order.iter().enumerate() {
        positions[i] = index as u32;
    }
    (digests, Some((wanted, positions)))
}

impl Kept {
    /// What [`Standing::replan`] needs of `services` (the standing's, with their
    /// digests and wants), planned from `config` with `options`; `wanted`: the
    /// addresses asked for by those that failed asking for them (`None`: never
    /// replanned).
    pub(super) fn of(
        services: &mut [StandingService],
        config: &Config,
        options: &PlanOptions,
        wanted: Option<Placed>,
    ) -> Self {
        let Some((wanted, positions)) = wanted else {
            return Self::default();
        };
        let mut kept = Self {
            usable: true,
            rest: rest_digest(config),
            addresses: options.addresses,
            allocator: options.allocator.clone(),
            endpoints: options.election.endpoints,
            held: held(services.iter().enumerate()),
            wanted,
            unknown: 0,
            positions,
        };
        kept.settle_wants(services);
        kept.unknown = services
            .iter()
            .filter(|s| s.wants == Wants::Unknown)
            .count();
        kept
    }

    /// A service that failed asking for an address several services hold wants
    /// [`Wants::Unknown`] (its reason names the first holder, which depends on the
    /// order); returns how many it made so.
    fn settle_wants(&mut self, services: &mut [StandingService]) -> usize {
        self.wanted.sort_unstable();
        let shared: BTreeSet<u32> = self
            .wanted
            .iter()
            .filter(|(ip, _)| self.holders(*ip).nth(1).is_some())
            .map(|(_, index)| *index)
            .collect();
        let mut made = 0;
        for index in shared {
            let wants = &mut services[index as usize].wants;
            made += usize::from(*wants != Wants::Unknown);
            *wants = Wants::Unknown;
        }
        self.wanted
            .retain(|(_, index)| services[*index as usize].wants == Wants::Addresses);
        made
    }

    /// Sabotage, for the property's own test: the services that failed asking for
    /// addresses are forgotten.
    #[cfg(test)]
    pub(super) fn forget_wanted(&mut self) {
        self.wanted.clear();
    }

    /// Sabotage, for the property's own test: every service is taken to depend on
    /// nobody.
    #[cfg(test)]
    pub(super) fn forget_unknown(&mut self, services: &mut [StandingService]) {
        for service in services {
            service.wants = Wants::Nothing;
        }
        self.unknown = 0;
    }

    /// The services holding `ip`.
    fn holders(&self, ip: IpAddr) -> impl Iterator<Item = u32> + '_ {
        of_address(&self.held, ip)
    }
}

/// The services of `pairs` (sorted) at `ip`.
fn of_address(pairs: &[(IpAddr, u32)], ip: IpAddr) -> impl Iterator<Item = u32> + '_ {
    let from = pairs.partition_point(|(a, _)| *a < ip);
    pairs[from..]
        .iter()
        .take_while(move |(a, _)| *a == ip)
        .map(|(_, index)| *index)
}

/// (address, index) of every allocated address of `services`, sorted.
fn held<'a>(services: impl Iterator<Item = (usize, &'a StandingService)>) -> Vec<(IpAddr, u32)> {
    let mut held: Vec<(IpAddr, u32)> = services
        .filter_map(|(index, service)| match &service.decision {
            Decision::Allocated(a) => Some(a.ips.iter().map(move |ip| (*ip, index as u32))),
            _ => None,
        })
        .flatten()
        .collect();
    held.sort_unstable();
    held
}

/// This node's index among the electorate's members, and the interfaces it answers
/// on for a service of each advertisement set should it own it.
pub(super) struct Parts {
    me: Option<usize>,
    answers_on: Vec<Vec<bool>>,
}

impl Parts {
    pub(super) fn new(
        polls: &mut Polls<'_>,
        options: &PlanOptions,
        interfaces: &[Interface],
    ) -> Self {
        let me = (0..polls.members()).find(|&i| polls.member(i) == options.node_name);
        let answers_on = match me {
            Some(me) => (0..polls.ad_sets())
                .map(|ad_set| {
                    let wanted = polls.announcement(ad_set, me);
                    interfaces
                        .iter()
                        .map(|i| match wanted {
                            Interfaces::All => !options.named_despite_exclusion.contains(&i.name),
                            Interfaces::Only(_) => wanted.includes(&i.name),
                        })
                        .collect()
                })
                .collect(),
            None => Vec::new(),
        };
        Self { me, answers_on }
    }

    /// The part of a service of advertisement set `ad_set` that `owner` announces.
    pub(super) fn part(&self, ad_set: usize, owner: Option<u32>) -> Part<'_> {
        match owner {
            None => Part::Nothing,
            Some(owner) if Some(owner as usize) == self.me => {
                Part::Answer(&self.answers_on[ad_set])
            }
            Some(_) => Part::Suppress,
        }
    }
}

impl Standing {
    /// The owner of service `index` for the last plan's live nodes, by its ranking,
    /// with its advertisement set; `Ok(None)` when it has no ranking (nobody
    /// announces it), `Err(())` when its ranking cannot tell.
    fn ranked_owner(&self, index: usize) -> Result<Option<(usize, Option<u32>)>, ()> {
        let Ok(at) = self
            .ranks
            .binary_search_by_key(&index, |r| r.service as usize)
        else {
            return Ok(None);
        };
        let rank = &self.ranks[at];
        let live = self
            .last
            .as_ref()
            .and_then(|last| self.electorate.live_nodes(last.live.as_ref()));
        let owner = match &live {
            Some(live) => rank.owner(&self.ranked, live)?,
            None => self.ranked.get(rank.start as usize).copied(),
        };
        Ok(Some((rank.ad_set as usize, owner)))
    }

    /// The entries of service `index` by its ranking ([`Standing::ranked_owner`]).
    fn ranked_entries(
        &self,
        index: usize,
        parts: &Parts,
        interfaces: &[Interface],
    ) -> Result<Vec<(VipKey, VipConfig)>, ()> {
        let (Some((ad_set, owner)), Decision::Allocated(allocation)) =
            (self.ranked_owner(index)?, &self.services[index].decision)
        else {
            return Ok(Vec::new());
        };
        Ok(parts
            .part(ad_set, owner)
            .entries(&allocation.ips, interfaces)
            .collect())
    }

    /// The plan of `config` for `options` on `interfaces`, when it differs from the
    /// last plan made of this ([`Standing::plan`], a re-election or a replan) only in
    /// some Services (added, removed or changed, with their EndpointSlices): those
    /// are planned again, and what differs is handed over ([`Replan`]). Applied to the
    /// last plan, it gives [`plan`] of `config` (whose services without a status
    /// address carry, with the allocator, the addresses of the last plan as their
    /// status, as the speaker gives them). `None` when it cannot tell (see the
    /// module's documentation: a service that picks an address from a pool, another
    /// option or node or interface, more than an eighth of the services changed...):
    /// then plan whole, and drop this (it may be half updated).
    ///
    /// With `changes` (what the source says changed, see [`Changes`]), only the
    /// Services it names are looked at, once a sample of the others confirms it;
    /// without, every Service's digest is computed and compared.
    pub fn replan(
        &mut self,
        config: &Config,
        options: &PlanOptions,
        interfaces: &[Interface],
        changes: Option<&Changes>,
    ) -> Option<Replan> {
        let last = self.last.as_ref()?;
        let kept = &self.replan;
        if !kept.usable
            || !config.bgp.is_empty()
            || last.node_name != options.node_name
            || last.named_despite_exclusion != options.named_despite_exclusion
            || last.interfaces != interfaces
            || last.live != options.election.live_nodes
            || kept.addresses != options.addresses
            || kept.allocator != options.allocator
            || kept.endpoints != options.election.endpoints
            || kept.rest != rest_digest(config)
        {
            return None;
        }
        let allocate = options.addresses == AddressSource::Allocate;

        // What changed: a look at every Service (its digest), or at those the
        // source names; no allocation for those that did not change.
        // With the word, only the EndpointSlices of the Services it names and of the
        // sample are gathered (at 100,000 slices, gathering them all costs more than
        // the rest of the replan).
        let mut looked = 0;
        let (slices, changes) = match changes {
            Some(changes) => {
                let len = config.services.len();
                let keys: BTreeSet<(&str, &str)> = (changes.at..changes.at + changes.now)
                    .filter(|&i| i < len)
                    .chain(sampled(changes, len))
                    .map(|i| {
                        let service = &config.services[i];
                        (
                            service_namespace(service),
                            service.service_name().unwrap_or_default(),
                        )
                    })
                    .collect();
                let some = slices_of(config, &keys);
                if self.confirms(changes, config, &some, allocate, &mut looked) {
                    (some, Some(changes))
                } else {
                    (slices_by_service(config), None)
                }
            }
            None => (slices_by_service(config), None),
        };
        let places = match changes {
            Some(changes) => changes.at..changes.at + changes.now,
            None => 0..config.services.len(),
        };
        looked += places.len();
        // With the source's word, the services that were at the changed places (by
        // index, sorted): any other is unchanged, and still at its place.
        let was: Option<Vec<u32>> = changes.map(|changes| {
            let mut was = kept.positions[changes.at..changes.at + changes.was].to_vec();
            was.sort_unstable();
            was
        });
        let mut seen = vec![false; self.services.len()];
        // The index (as it was) of the service at each changed place (u32::MAX: none).
        let mut found: Vec<u32> = Vec::with_capacity(places.len());
        let mut changed: Vec<usize> = Vec::new();
        // (index in the configuration, addresses of the last plan)
        let mut now: Vec<(usize, Option<&[IpAddr]>)> = Vec::new();
        for i in places {
            let service = &config.services[i];
            let (old, allocation, digest) = Self::looked_at(
                &self.services,
                &kept.positions,
                (i, service),
                &slices,
                allocate,
            );
            found.push(old.map_or(u32::MAX, |o| o as u32));
            match old {
                Some(o) if std::mem::replace(&mut seen[o], true) => return None,
                // A Service the source says unchanged has this key: two have it now.
                Some(o)
                    if was
                        .as_ref()
                        .is_some_and(|was| was.binary_search(&(o as u32)).is_err()) =>
                {
                    return None;
                }
                Some(o) if self.services[o].digest == digest => {}
                Some(o) => {
                    changed.push(o);
                    now.push((i, allocation));
                }
                None => now.push((i, None)),
            }
        }
        match &was {
            Some(was) => changed.extend(
                (was.iter().map(|&o| o as usize))
                    .filter(|&o| !seen.get(o).copied().unwrap_or(true)),
            ),
            None => changed.extend(
                seen.iter()
                    .enumerate()
                    .filter(|(_, s)| !**s)
                    .map(|(o, _)| o),
            ),
        }
        changed.sort_unstable();
        changed.dedup();
        drop(seen);
        // The index (as it was) of the service at each place.
        let found = match changes {
            Some(changes) => {
                let positions = &kept.positions;
                let mut all = Vec::with_capacity(config.services.len());
                all.extend_from_slice(&positions[..changes.at]);
                all.extend_from_slice(&found);
                all.extend_from_slice(&positions[changes.at + changes.was..]);
                all
            }
            None => found,
        };
        if changed.is_empty() && now.is_empty() {
            self.replan.positions = found;
            return Some(Replan {
                pools: self.pools.clone(),
                looked,
                ..Replan::default()
            });
        }
        if changed.len() + now.len() > 16.max(self.services.len() / 8) {
            return None;
        }

        // Their decisions, alone, in their order; with the allocator, those without a
        // status address carry the addresses of the last plan as their status.
        let delta: Vec<Service> = now
            .iter()
            .map(|&(i, allocation)| {
                let mut service = config.services[i].clone();
                if let Some(ips) = allocation
                    && !has_status_address(&service)
                {
                    service.status = Some(status_with(ips));
                }
                service
            })
            .collect();
        let Allocations {
            decisions,
            mut warnings,
        } = if allocate {
            Allocator::new(config, options.allocator.clone()).assign_all(&delta)
        } else {
            from_status_of(config, &options.allocator, &delta)
        };
        if decisions.len() != delta.len() {
            return None;
        }
        if allocate && !self.alone(&changed, &delta, &decisions) {
            return None;
        }

        // What the changed services' entries were, by their rankings.
        let mut polls = self.electorate.polls(&options.node_name, None);
        let parts = Parts::new(&mut polls, options, interfaces);
        drop(polls);
        let mut touched: Vec<VipKey> = Vec::new();
        for &o in &changed {
            let entries = self.ranked_entries(o, &parts, interfaces).ok()?;
            touched.extend(entries.into_iter().map(|(key, _)| key));
        }
        let removed_ips = self.addresses_of(&changed);

        // Their ballots, in this electorate.
        let mut ballots = self.electorate.more_ballots(
            config,
            &slices,
            delta.iter(),
            &decisions,
            options.election.endpoints,
        );
        let mut fresh: Vec<StandingService> = delta
            .iter()
            .zip(&now)
            .map(|(given, &(i, _))| {
                // As in the configuration (a status given above is given again).
                let service = &config.services[i];
                let key = ServiceKey::of_service(given);
                let decision = decisions.get(&key).cloned().unwrap_or(Decision::Ignored {
                    reason: String::new(),
                });
                let allocation = match &decision {
                    Decision::Allocated(a) if allocate => Some(a.ips.as_slice()),
                    _ => None,
                };
                let slices = (!slices.is_empty()).then(|| slices.get(&key)).flatten();
                let digest = digest(service, slices, allocation);
                let (wants, _) = wants(service, &decision, allocate);
                StandingService {
                    warnings: warnings.remove(&key).unwrap_or_default(),
                    ballot: ballots.remove(&key),
                    key,
                    decision,
                    digest,
                    wants,
                }
            })
            .collect();
        fresh.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let asked: Vec<Vec<IpAddr>> = fresh
            .iter()
            .map(|s| match s.wants {
                Wants::Addresses => delta
                    .iter()
                    .find(|d| ServiceKey::of_service(*d) == s.key)
                    .and_then(|d| requested(d).0.ok()?.ips)
                    .map(|asked| asked.value)
                    .unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect();
        drop(slices);

        // The services, rankings and indexes with the change.
        let unknown = |services: &[StandingService], indices: &[usize]| {
            (indices.iter())
                .filter(|&&index| services[index].wants == Wants::Unknown)
                .count()
        };
        let unknown_before = self.replan.unknown - unknown(&self.services, &changed);
        let (added, removed, map) = self.splice(&changed, fresh);
        let in_place = map.is_none();
        self.replan.positions = match map {
            // In place: every service at its index.
            None => found,
            Some(map) => found
                .iter()
                .enumerate()
                .map(|(i, &o)| match map.get(o as usize) {
                    Some(&index) if index != u32::MAX => index,
                    _ => {
                        let service = &config.services[i];
                        let key = (
                            service_namespace(service),
                            service.service_name().unwrap_or_default(),
                        );
                        self.index_of(key).map_or(u32::MAX, |index| index as u32)
                    }
                })
                .collect(),
        };
        for (&index, asked) in added.iter().zip(asked) {
            self.replan
                .wanted
                .extend(asked.into_iter().map(|ip| (ip, index as u32)));
        }
        let made = self.replan.settle_wants(&mut self.services);
        self.replan.unknown = unknown_before + unknown(&self.services, &added) + made;
        debug_assert_eq!(
            self.replan.unknown,
            unknown(
                &self.services,
                &(0..self.services.len()).collect::<Vec<_>>()
            )
        );
        let added_ips = self.addresses_of(&added);
        if in_place {
            // Only the holders of the addresses these held or hold changed.
            let mut touched: Vec<IpAddr> = (removed_ips.iter().chain(&added_ips))
                .map(|(ip, _)| *ip)
                .collect();
            touched.sort_unstable();
            touched.dedup();
            for ip in touched {
                let mut holders: Vec<usize> = self
                    .replan
                    .holders(ip)
                    .map(|index| index as usize)
                    .collect();
                holders.dedup();
                if holders.len() > 1 {
                    self.shared.insert(ip, holders);
                } else {
                    self.shared.remove(&ip);
                }
            }
        } else {
            self.shared = shared(&self.replan.held);
        }
        let mut polls = self.electorate.polls(&options.node_name, None);
        for &index in &added {
            if let Some(rank) = self.services[index].ranking(index, &mut polls, &mut self.ranked) {
                let at = self.ranks.partition_point(|r| r.service < rank.service);
                self.ranks.insert(at, rank);
            }
        }
        drop(polls);
        self.compact_rankings();

        // The pools' usage.
        let mut counted: Vec<&(IpAddr, String)> = removed_ips.iter().chain(&added_ips).collect();
        counted.sort_unstable();
        counted.dedup_by_key(|(ip, _)| *ip);
        for (ip, pool) in counted {
            // An address counts once, whoever holds it.
            let now = self.replan.holders(*ip).count();
            let count = |of: &[(IpAddr, String)]| of.iter().filter(|(a, _)| a == ip).count();
            let before = now + count(&removed_ips) - count(&added_ips);
            let step = i64::from(now > 0) - i64::from(before > 0);
            if step != 0
                && let Some(usage) = self.pools.get_mut(pool)
            {
                usage.count(*ip, step);
            }
        }

        // The new plans of the services, and the entries that may differ.
        let mut polls = self
            .electorate
            .polls(&options.node_name, options.election.live_nodes.as_ref());
        let mut services = Vec::with_capacity(added.len());
        for &index in &added {
            let service = &self.services[index];
            let election = service.elect(&mut polls);
            let role = service_role(&service.decision, election.as_ref(), options, interfaces);
            if let Decision::Allocated(allocation) = &service.decision {
                touched.extend(entries(&allocation.ips, &role, interfaces).map(|(key, _)| key));
            }
            let plan = ServicePlan {
                decision: service.decision.clone(),
                warnings: service.warnings.clone(),
                election,
                role,
            };
            services.push((service.key.clone(), plan));
        }
        drop(polls);
        let mut polls = self.electorate.polls(&options.node_name, None);
        let parts = Parts::new(&mut polls, options, interfaces);
        drop(polls);
        touched.sort_unstable();
        touched.dedup();
        let mut addresses: Vec<IpAddr> = touched.iter().map(|key| key.addr).collect();
        addresses.dedup();
        let mut now_entries = Vec::new();
        for ip in addresses {
            let holders: Vec<u32> = self.replan.holders(ip).collect();
            for index in holders {
                let entries = self
                    .ranked_entries(index as usize, &parts, interfaces)
                    .ok()?;
                now_entries.extend(entries.into_iter().filter(|(key, _)| key.addr == ip));
            }
        }
        let now_entries = merged_entries(now_entries);
        let vips = touched
            .into_iter()
            .map(|key| (key, now_entries.get(&key).copied()))
            .collect();
        Some(Replan {
            vips,
            services,
            removed,
            pools: self.pools.clone(),
            looked,
        })
    }

    /// A service of the configuration: where it was in the last plan (looked for
    /// first at the index of the service at place `guess` last time, else
    /// searched), the addresses it got then (with the allocator), and its digest now.
    fn looked_at<'s>(
        services: &'s [StandingService],
        positions: &[u32],
        (guess, service): (usize, &Service),
        slices: &SlicesByService<'_>,
        allocate: bool,
    ) -> (Option<usize>, Option<&'s [IpAddr]>, u64) {
        let key = (
            service_namespace(service),
            service.service_name().unwrap_or_default(),
        );
        let hint = (positions.get(guess).copied())
            .filter(|&h| services.get(h as usize).is_some_and(|s| key_of(s) == key));
        let old = hint
            .map(|h| h as usize)
            .or_else(|| services.binary_search_by(|s| key_of(s).cmp(&key)).ok());
        let allocation = old.and_then(|o| match &services[o].decision {
            Decision::Allocated(a) if allocate => Some(a.ips.as_slice()),
            _ => None,
        });
        let slices = (!slices.is_empty())
            .then(|| slices.get(&ServiceKey::of_service(service)))
            .flatten();
        (old, allocation, digest(service, slices, allocation))
    }

    /// Whether the source's word (`changes`) holds as far as a sample shows: the
    /// counts agree, every place it says changed was a Service's, and the Services
    /// next to the change and [`SAMPLED`] spread over the others are those of the
    /// last plan at their places, unchanged.
    fn confirms(
        &self,
        changes: &Changes,
        config: &Config,
        slices: &SlicesByService<'_>,
        allocate: bool,
        looked: &mut usize,
    ) -> bool {
        let positions = &self.replan.positions;
        let (len, last) = (config.services.len(), positions.len());
        let fits = changes.at + changes.now <= len
            && changes.at + changes.was <= last
            && len - changes.now == last - changes.was;
        if !fits
            || positions[changes.at..changes.at + changes.was]
                .iter()
                .any(|&o| o as usize >= self.services.len())
        {
            return false;
        }
        sampled(changes, len).all(|i| {
            *looked += 1;
            let was = was_at(changes, i);
            let guess = was.unwrap_or(i);
            let service = (guess, &config.services[i]);
            let (old, _, digest) =
                Self::looked_at(&self.services, positions, service, slices, allocate);
            let was = was.and_then(|j| positions.get(j));
            old.is_some_and(|o| was == Some(&(o as u32)) && self.services[o].digest == digest)
        })
    }

    /// Puts `fresh` (sorted by key) in the place of the services at `changed` (sorted
    /// indices), in key order, with the rankings and the addresses held or asked
    /// for; returns the indices of `fresh` now, the keys of the services gone, and
    /// where each service went (`None`: each stayed at its index, the change was in
    /// place).
    fn splice(
        &mut self,
        changed: &[usize],
        fresh: Vec<StandingService>,
    ) -> (Vec<usize>, Vec<ServiceKey>, Option<Vec<u32>>) {
        let mut added = Vec::with_capacity(fresh.len());
        let mut removed = Vec::new();
        let in_place = changed.len() == fresh.len()
            && changed
                .iter()
                .zip(&fresh)
                .all(|(&o, f)| self.services[o].key == f.key);
        let map = if in_place {
            // Every other service keeps its index: only the changed ones' addresses,
            // wants and rankings go.
            for (&o, f) in changed.iter().zip(fresh) {
                if let Decision::Allocated(a) = &self.services[o].decision {
                    for ip in &a.ips {
                        if let Ok(at) = self.replan.held.binary_search(&(*ip, o as u32)) {
                            self.replan.held.remove(at);
                        }
                    }
                }
                if let Ok(at) = self.ranks.binary_search_by_key(&(o as u32), |r| r.service) {
                    self.ranks.remove(at);
                }
                self.services[o] = f;
                added.push(o);
            }
            self.replan
                .wanted
                .retain(|(_, index)| changed.binary_search(&(*index as usize)).is_err());
            None
        } else {
            // Where each service goes (u32::MAX: replaced, or gone).
            let mut map: Vec<u32> = (0..self.services.len() as u32).collect();
            let old = std::mem::take(&mut self.services);
            let mut services = Vec::with_capacity(old.len() + fresh.len() - changed.len());
            let mut fresh = fresh.into_iter().peekable();
            let mut changed = changed.iter().peekable();
            for (o, service) in old.into_iter().enumerate() {
                while let Some(f) = fresh.next_if(|f| f.key < service.key) {
                    added.push(services.len());
                    services.push(f);
                }
                if changed.next_if(|&&c| c == o).is_some() {
                    map[o] = u32::MAX;
                    match fresh.next_if(|f| f.key == service.key) {
                        Some(f) => {
                            added.push(services.len());
                            services.push(f);
                        }
                        None => removed.push(service.key),
                    }
                    continue;
                }
                map[o] = services.len() as u32;
                services.push(service);
            }
            for f in fresh {
                added.push(services.len());
                services.push(f);
            }
            self.services = services;
            // The maps keep the order: what was sorted stays sorted.
            let remap = |pairs: &mut Vec<(IpAddr, u32)>| {
                pairs.retain_mut(|(_, index)| {
                    *index = map[*index as usize];
                    *index != u32::MAX
                });
            };
            remap(&mut self.replan.held);
            remap(&mut self.replan.wanted);
            self.ranks.retain_mut(|rank| {
                rank.service = map[rank.service as usize];
                rank.service != u32::MAX
            });
            Some(map)
        };
        for &index in &added {
            if let Decision::Allocated(a) = &self.services[index].decision {
                for ip in &a.ips {
                    let pair = (*ip, index as u32);
                    let at = self.replan.held.partition_point(|p| *p < pair);
                    self.replan.held.insert(at, pair);
                }
            }
        }
        (added, removed, map)
    }

    /// The addresses the services at `indices` hold, with their pools.
    fn addresses_of(&self, indices: &[usize]) -> Vec<(IpAddr, String)> {
        (indices.iter())
            .filter_map(|&index| match &self.services[index].decision {
                Decision::Allocated(a) => Some(a.ips.iter().map(|ip| (*ip, a.pool.clone()))),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The index of the service with this key (namespace, name).
    fn index_of(&self, key: (&str, &str)) -> Option<usize> {
        self.services.binary_search_by(|s| key_of(s).cmp(&key)).ok()
    }

    /// Drops the rankings of services no longer ranked from [`Standing::ranked`] once
    /// they are half of it.
    fn compact_rankings(&mut self) {
        // A ranking names one node at least: not half unused yet (no walk).
        if self.ranked.len() <= 2 * self.ranks.len() + 1024 {
            return;
        }
        let used: usize = self.ranks.iter().map(|r| usize::from(r.len)).sum();
        if self.ranked.len() <= 2 * used + 1024 {
            return;
        }
        let mut ranked = Vec::with_capacity(used);
        for rank in &mut self.ranks {
            let start = ranked.len();
            ranked.extend_from_slice(&self.ranked[rank.start as usize..][..usize::from(rank.len)]);
            rank.start = start as u32;
        }
        self.ranked = ranked;
    }

    /// Whether the services that changed (`changed`: by index, as they were;
    /// `delta`, with `decisions`: as they are now) can be decided alone (see the
    /// module's documentation).
    fn alone(
        &self,
        changed: &[usize],
        delta: &[Service],
        decisions: &BTreeMap<ServiceKey, Decision>,
    ) -> bool {
        let kept = &self.replan;
        let unknown = changed
            .iter()
            .filter(|&&o| self.services[o].wants == Wants::Unknown)
            .count();
        if unknown != kept.unknown {
            return false;
        }
        let other = |index: u32| changed.binary_search(&(index as usize)).is_err();
        let mut looked: Vec<IpAddr> = Vec::new();
        for service in delta {
            let status = status_addresses(service);
            let asked = requested(service).0.ok().and_then(|r| r.ips);
            let decision = decisions.get(&ServiceKey::of_service(service));
            let alone = match decision {
                Some(Decision::Ignored { .. }) => true,
                Some(Decision::Allocated(a)) => {
                    asked
                        .as_ref()
                        .is_some_and(|asked| a.ips == ipv4_sorted(&asked.value))
                        || status.as_ref() == Some(&a.ips)
                }
                Some(Decision::Failed { .. }) => requested(service).0.is_err() || asked.is_some(),
                None => false,
            };
            if !alone {
                return false;
            }
            looked.extend(status.into_iter().flatten());
            looked.extend(asked.into_iter().flat_map(|asked| asked.value));
        }
        if looked.iter().any(|ip| kept.holders(*ip).any(other)) {
            return false;
        }
        let released = changed
            .iter()
            .filter_map(|&o| match &self.services[o].decision {
                Decision::Allocated(a) => Some(a.ips.iter()),
                _ => None,
            });
        !released
            .flatten()
            .chain(&looked)
            .any(|ip| of_address(&kept.wanted, *ip).any(other))
    }
}

/// The key of `service`, borrowed.
fn key_of(service: &StandingService) -> (&str, &str) {
    (service.key.namespace.as_str(), service.key.name.as_str())
}

/// `ips` with IPv4 first, as an allocation lists them.
fn ipv4_sorted(ips: &[IpAddr]) -> Vec<IpAddr> {
    let mut ips = ips.to_vec();
    ips.sort_by_key(IpAddr::is_ipv6);
    ips
}

/// The addresses that several of the services of `held` hold, with their indices.
pub(super) fn shared(held: &[(IpAddr, u32)]) -> BTreeMap<IpAddr, Vec<usize>> {
    let mut shared: BTreeMap<IpAddr, Vec<usize>> = BTreeMap::new();
    for pair in held.windows(2) {
        if pair[0].0 == pair[1].0 {
            let holders = shared.entry(pair[0].0).or_default();
            for (_, index) in pair {
                if !holders.contains(&(*index as usize)) {
                    holders.push(*index as usize);
                }
            }
        }
    }
    shared
}

impl PoolUsage {
    /// One address more (`step` 1) or less (-1) in use.
    fn count(&mut self, ip: IpAddr, step: i64) {
        let family: &mut FamilyUsage = if ip.is_ipv4() {
            &mut self.ipv4
        } else {
            &mut self.ipv6
        };
        family.in_use = family.in_use.saturating_add_signed(step);
        self.in_use = self.in_use.saturating_add_signed(step);
    }
}
