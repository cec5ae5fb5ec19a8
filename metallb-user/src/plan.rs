//! The whole pure core in one call: configuration -> allocation -> election -> the VIP
//! entries this node's datapath must hold. `metallb plan` prints it; the speaker applies
//! it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use metallb_common::VipAction;
use serde::{Deserialize, Serialize};

mod replan;

pub use crate::config::Changes;
pub use replan::{Replan, SAMPLED};

use crate::{
    allocator::{
        Allocation, Allocations, AllocatorOptions, Decision, PoolUsage, ServiceKey, allocate,
        from_status, pool_usage,
    },
    bgp::plan::{BgpPlan, plan_bgp},
    config::{Config, interfaces::PatternSource, selector::any_matches},
    election::{
        Ballot, Counted, Election, ElectionContext, Electorate, Interfaces, NO_CANDIDATE, Polls,
        Threads, Workers, ballots, slices_by_service,
    },
    entries::{Interface, MacAddr, VipConfig, VipKey},
};

/// Where the services' addresses come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AddressSource {
    /// Allocated here (standalone mode: nobody else does).
    #[default]
    Allocate,
    /// The services' status, written by the controller (Kubernetes mode).
    Status,
}

#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// This node's name (the election's identity; matched against Node objects).
    pub node_name: String,
    pub allocator: AllocatorOptions,
    pub addresses: AddressSource,
    pub election: ElectionContext,
    /// Attached interfaces that an exclusion pattern matches, attached because an
    /// L2Advertisement names them ([`InterfaceReport::named_despite_exclusion`]): only
    /// the advertisements naming them announce there, not those naming no interface.
    pub named_despite_exclusion: BTreeSet<String>,
}

/// What this node does for one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Answers ARP/NDP for the service's addresses on these interfaces.
    Announce { interfaces: Vec<String> },
    /// Another node announces: requests reaching this node are dropped.
    Suppress { owner: String },
    /// Nothing on this node: not allocated, not announced, or no interface of this
    /// node is in the announcement.
    None { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePlan {
    pub decision: Decision,
    /// What is odd about the service's request without making it fail (both
    /// annotation prefixes with different values, say).
    pub warnings: Vec<String>,
    pub election: Option<Election>,
    pub role: Role,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub services: BTreeMap<ServiceKey, ServicePlan>,
    /// The entries the datapath must hold.
    pub vips: BTreeMap<VipKey, VipConfig>,
    pub pools: BTreeMap<String, PoolUsage>,
    /// BGP mode: what every node announces to its peers, and this node's sessions.
    pub bgp: BgpPlan,
}

impl Plan {
    /// The addresses of each allocated service: what the speaker keeps of a plan,
    /// beside the roles, to give them again as status and for [`vip_delta`].
    pub fn allocated_addresses(&self) -> BTreeMap<ServiceKey, Vec<IpAddr>> {
        self.services
            .iter()
            .filter_map(|(key, service)| match &service.decision {
                Decision::Allocated(a) => Some((key.clone(), a.ips.clone())),
                _ => None,
            })
            .collect()
    }
}

/// Plans every service of `config` for this node, whose datapath runs on `interfaces`.
pub fn plan(config: &Config, options: &PlanOptions, interfaces: &[Interface]) -> Plan {
    let (standing, bgp) = Standing::new(config, options);
    Plan {
        bgp,
        ..standing.into_plan(options, interfaces)
    }
}

/// [`plan`], and what the speaker keeps to plan again when only the live nodes or the
/// interfaces change ([`Standing::plan`]). `None` with BGP: its plan depends on the
/// Services and the live nodes, so the configuration is planned whole again.
pub fn plan_keeping(
    config: &Config,
    options: &PlanOptions,
    interfaces: &[Interface],
) -> (Plan, Option<Standing>) {
    let (standing, bgp) = Standing::new(config, options);
    kept(standing, bgp, !config.bgp.is_empty(), options, interfaces)
}

/// [`plan_keeping`] for a caller that keeps the [`Standing`] instead of the
/// configuration's Services: when it keeps one, it takes the Services and
/// EndpointSlices out of `config` as soon as the allocation and the ballots have them,
/// before the election and the entries are made. At 100,000 Services they are the
/// largest part of the configuration (about 70 MiB), and the plan's election and
/// entries the largest part of the apply: they are then never alive at once. With BGP
/// (no Standing) `config` is left whole.
pub fn plan_keeping_releasing(
    config: &mut Config,
    options: &PlanOptions,
    interfaces: &[Interface],
) -> (Plan, Option<Standing>) {
    let (standing, bgp) = Standing::new(config, options);
    let with_bgp = !config.bgp.is_empty();
    if !with_bgp {
        config.services = Vec::new();
        config.endpoint_slices = Vec::new();
    }
    kept(standing, bgp, with_bgp, options, interfaces)
}

/// The plan of `standing` (allocated), and the Standing itself unless `with_bgp`.
fn kept(
    mut standing: Standing,
    bgp: BgpPlan,
    with_bgp: bool,
    options: &PlanOptions,
    interfaces: &[Interface],
) -> (Plan, Option<Standing>) {
    if with_bgp {
        let plan = Plan {
            bgp,
            ..standing.into_plan(options, interfaces)
        };
        return (plan, None);
    }
    standing.rank(&options.node_name, options.election.threads);
    (standing.plan(options, interfaces), Some(standing))
}

/// What a plan of the layer-2 mode keeps to be made again for another live set or
/// other interfaces without the configuration's Services: the allocator's decisions
/// and warnings, the pools' usage, and what the election needs of each service (its
/// [`Ballot`]) and of the configuration (the [`Electorate`]). The allocation does not
/// depend on the live nodes or the interfaces, so it is not made again.
///
/// It also keeps each announced service's ranking (MetalLB's order over every usable
/// node, live or not: [`Polls::rank`]) and what its last plan was made for ([`Planned`]), so
/// that a change of the live nodes alone is elected again in the services it moves
/// ([`Standing::reelect`]).
#[derive(Clone, Debug)]
pub struct Standing {
    /// Sorted by key.
    services: Vec<StandingService>,
    electorate: Electorate,
    pools: BTreeMap<String, PoolUsage>,
    /// The addresses that more than one service holds (sharing), with the indices
    /// of those services: their entries merge.
    shared: BTreeMap<IpAddr, Vec<usize>>,
    /// What the last plan made of this was made for.
    last: Option<Planned>,
    /// Every service with candidates, in the order of `services`, and where its
    /// ranking is in `ranked`: a walk over them costs a few bytes a service.
    ranks: Vec<Ranked>,
    /// The rankings, one after another (node indices).
    ranked: Vec<u32>,
    /// What a change of some Services alone needs ([`Standing::replan`]).
    replan: replan::Kept,
}

/// A service's ranking ([`Polls::rank`]) and what its entries need besides.
#[derive(Clone, Copy, Debug)]
struct Ranked {
    /// Its index in the services.
    service: u32,
    ad_set: u32,
    /// Where its ranking is in [`Standing::ranked`].
    start: u32,
    len: u8,
    /// Every candidate is ranked.
    complete: bool,
}

impl Ranked {
    /// The first of the ranked nodes alive in `live`; `Err(())` when none of them is
    /// and there are more candidates than were ranked (then only the whole election
    /// knows).
    fn owner(&self, ranked: &[u32], live: &[bool]) -> Result<Option<u32>, ()> {
        let nodes = &ranked[self.start as usize..][..usize::from(self.len)];
        match nodes.iter().find(|&&node| live[node as usize]) {
            Some(&node) => Ok(Some(node)),
            None if self.complete => Ok(None),
            None => Err(()),
        }
    }
}

#[derive(Clone, Debug)]
struct StandingService {
    key: ServiceKey,
    decision: Decision,
    warnings: Vec<String>,
    /// Allocated services only.
    ballot: Option<Ballot>,
    /// The service (and its EndpointSlices) as planned ([`replan::digest`]).
    digest: u64,
    /// What else its decision depends on.
    wants: replan::Wants,
}

/// The options of the last plan of a [`Standing`] that a re-election must share, and
/// the live nodes it was made for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Planned {
    node_name: String,
    named_despite_exclusion: BTreeSet<String>,
    interfaces: Vec<Interface>,
    live: Option<BTreeSet<String>>,
}

impl Planned {
    fn of(options: &PlanOptions, interfaces: &[Interface]) -> Self {
        Self {
            node_name: options.node_name.clone(),
            named_despite_exclusion: options.named_despite_exclusion.clone(),
            interfaces: interfaces.to_vec(),
            live: options.election.live_nodes.clone(),
        }
    }
}

/// A service whose role a re-election changed ([`Standing::reelect`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moved<'a> {
    pub key: &'a ServiceKey,
    pub allocation: &'a Allocation,
    /// Its role now.
    pub role: Role,
    /// With [`Role::Announce`], the interfaces its announcement names (none: every
    /// interface), for the Kubernetes side's ServiceL2Status.
    pub named: Vec<String>,
}

/// What a change of the live nodes changes ([`Standing::reelect`]): the entries first,
/// for the datapath; the services' new roles after, when asked for ([`Reelection::moved`]).
pub struct Reelection<'a> {
    /// The entries that may differ from the last plan's, each with its value now
    /// (`None`: gone), as [`vip_delta`] gives them, each key once, in key order (the
    /// datapath's bookkeeping then walks its own in order).
    pub vips: Vec<(VipKey, Option<VipConfig>)>,
    /// (service index, advertisement set, owner now) of the services that move.
    owners: Vec<(usize, usize, Option<u32>)>,
    standing: &'a Standing,
    polls: Polls<'a>,
}

impl<'a> Reelection<'a> {
    /// How many services move.
    pub fn services(&self) -> usize {
        self.owners.len()
    }

    /// The services whose role changed, in key order, with their role now.
    pub fn moved(&mut self, options: &PlanOptions, interfaces: &[Interface]) -> Vec<Moved<'a>> {
        let standing = self.standing;
        let mut moved = Vec::with_capacity(self.owners.len());
        for &(index, ad_set, owner) in &self.owners {
            let service = &standing.services[index];
            let Decision::Allocated(allocation) = &service.decision else {
                continue;
            };
            let (role, named) = role_of(&mut self.polls, ad_set, owner, options, interfaces);
            moved.push(Moved {
                key: &service.key,
                allocation,
                role,
                named,
            });
        }
        moved
    }
}

/// The role on this node of a service of advertisement set `ad_set` announced by
/// node `owner` (none: nobody may), and the interfaces its announcement names if this
/// node announces it on named interfaces.
fn role_of(
    polls: &mut Polls<'_>,
    ad_set: usize,
    owner: Option<u32>,
    options: &PlanOptions,
    interfaces: &[Interface],
) -> (Role, Vec<String>) {
    let Some(owner) = owner else {
        let reason = NO_CANDIDATE.into();
        return (Role::None { reason }, Vec::new());
    };
    let wanted = polls.announcement(ad_set, owner as usize).clone();
    let role = role_for(polls.member(owner as usize), &wanted, options, interfaces);
    let named = match (&role, wanted) {
        (Role::Announce { .. }, Interfaces::Only(names)) => names.into_iter().collect(),
        _ => Vec::new(),
    };
    (role, named)
}

impl StandingService {
    /// The ranking of this service (index `index`), written into `ranked`, if it
    /// is allocated and has candidates ([`Polls::rank`]).
    fn ranking(
        &self,
        index: usize,
        polls: &mut Polls<'_>,
        ranked: &mut Vec<u32>,
    ) -> Option<Ranked> {
        let (Decision::Allocated(allocation), Some(ballot)) = (&self.decision, &self.ballot) else {
            return None;
        };
        let start = ranked.len();
        let (Some(complete), Ballot::Candidates { ad_set, .. }) =
            (polls.rank(&allocation.ips, ballot, ranked), ballot)
        else {
            return None;
        };
        Some(Ranked {
            service: index as u32,
            ad_set: *ad_set as u32,
            start: start as u32,
            len: (ranked.len() - start) as u8,
            complete,
        })
    }

    /// The service's election in `polls`; none unless it was allocated.
    fn elect(&self, polls: &mut Polls<'_>) -> Option<Election> {
        match (&self.decision, &self.ballot) {
            (Decision::Allocated(allocation), Some(ballot)) => {
                Some(polls.elect(&allocation.ips, ballot))
            }
            _ => None,
        }
    }
}

impl Standing {
    /// Allocates the services of `config` and takes their ballots; with them, the
    /// BGP plan (which needs the Services).
    fn new(config: &Config, options: &PlanOptions) -> (Self, BgpPlan) {
        let Allocations {
            decisions,
            mut warnings,
        } = match options.addresses {
            AddressSource::Allocate => allocate(config, &options.allocator),
            AddressSource::Status => from_status(config, &options.allocator),
        };
        let slices = slices_by_service(config);
        let (electorate, ballots) =
            ballots(config, &slices, &decisions, options.election.endpoints);
        let pools = pool_usage(config, &decisions);
        let bgp = plan_bgp(config, &decisions, &options.node_name, &options.election);
        let mut ballots = ballots.into_iter().peekable();
        let (mut digests, exact) = replan::digests(config, &slices, options, &decisions);
        drop(slices);
        let services = decisions
            .into_iter()
            .zip(digests.iter_mut())
            .map(|((key, decision), (digest, wants))| {
                while ballots.next_if(|(of, _)| *of < key).is_some() {}
                let ballot = ballots.next_if(|(of, _)| *of == key).map(|(_, b)| b);
                StandingService {
                    warnings: warnings.remove(&key).unwrap_or_default(),
                    key,
                    decision,
                    ballot,
                    digest: *digest,
                    wants: std::mem::take(wants),
                }
            })
            .collect();
        let mut standing = Self {
            services,
            electorate,
            pools,
            shared: BTreeMap::new(),
            last: None,
            ranks: Vec::new(),
            ranked: Vec::new(),
            replan: replan::Kept::default(),
        };
        standing.replan = replan::Kept::of(&mut standing.services, config, options, exact);
        (standing, bgp)
    }

    /// Ranks every service with candidates among every usable node, live or not (on
    /// `threads`), and finds the addresses several services share: what
    /// [`Standing::plan`] and [`Standing::reelect`] need.
    fn rank(&mut self, node_name: &str, threads: Threads) {
        let electorate = &self.electorate;
        let weight = electorate.voters(None);
        let mut workers = Workers::new(threads, || electorate.polls(node_name, None));
        let window = workers.window(weight);
        for (at, services) in self.services.chunks(window).enumerate() {
            let rankings = workers.map(services, weight, |polls, first, piece| {
                let (mut ranks, mut ranked) = (Vec::new(), Vec::new());
                for (i, service) in piece.iter().enumerate() {
                    let index = at * window + first + i;
                    ranks.extend(service.ranking(index, polls, &mut ranked));
                }
                (ranks, ranked)
            });
            for (ranks, ranked) in rankings {
                let base = self.ranked.len() as u32;
                let moved = |rank: Ranked| Ranked {
                    start: rank.start + base,
                    ..rank
                };
                self.ranks.extend(ranks.into_iter().map(moved));
                self.ranked.extend(ranked);
            }
        }
        let mut holders = Vec::new();
        for (index, service) in self.services.iter().enumerate() {
            if let (Decision::Allocated(allocation), Some(_)) = (&service.decision, &service.ballot)
            {
                holders.extend(allocation.ips.iter().map(|ip| (*ip, index as u32)));
            }
        }
        self.ranks.shrink_to_fit();
        self.ranked.shrink_to_fit();
        holders.sort_unstable();
        self.shared = replan::shared(&holders);
    }

    /// The plan for the live nodes of `options` on `interfaces`: the election run
    /// again on the kept decisions. Equal to [`plan`] of the configuration this was
    /// kept from, with these options (the endpoint rule, the allocator's options and
    /// the address source are those it was kept with), whose BGP plan is empty.
    ///
    /// A service's election is its ranking ([`Standing::rank`]) filtered by the live
    /// nodes ([`election::listed`](crate::election::listed)), with no hashing, unless
    /// the ranking holds too few live candidates: then it is run whole (on the
    /// election's threads).
    pub fn plan(&mut self, options: &PlanOptions, interfaces: &[Interface]) -> Plan {
        self.last = Some(Planned::of(options, interfaces));
        let live_set = options.election.live_nodes.as_ref();
        let (electorate, ranks, ranked) = (&self.electorate, &self.ranks, &self.ranked);
        let live = electorate.live_nodes(live_set);
        let mut polls = electorate.polls(&options.node_name, None);
        let weight = electorate.voters(live_set);
        let mut workers = Workers::new(options.election.threads, || {
            electorate.polls(&options.node_name, live_set)
        });
        let mut ranks = ranks.iter().peekable();
        let window = workers.window(weight);
        let count = self.services.len();
        let services = self
            .services
            .chunks(window)
            .enumerate()
            .flat_map(|(at, services)| {
                let mut elections = Vec::with_capacity(services.len());
                let mut whole = Vec::new();
                for (i, service) in services.iter().enumerate() {
                    let index = at * window + i;
                    while ranks.next_if(|r| (r.service as usize) < index).is_some() {}
                    let rank = ranks.next_if(|r| r.service as usize == index);
                    let election = match (rank, &service.decision) {
                        (Some(rank), Decision::Allocated(allocation)) => polls
                            .elect_ranked(
                                &allocation.ips,
                                rank.ad_set as usize,
                                &ranked[rank.start as usize..][..usize::from(rank.len)],
                                rank.complete,
                                live.as_deref(),
                            )
                            .map(Some),
                        // Not announced whoever lives, or not allocated: no hashing.
                        _ => Some(service.elect(workers.first())),
                    };
                    if election.is_none() {
                        whole.push(i);
                    }
                    elections.push(election.flatten());
                }
                let again = workers.map(&whole, weight, |polls, _, piece| {
                    let elect = |&i: &usize| services[i].elect(polls);
                    piece.iter().map(elect).collect::<Vec<_>>()
                });
                for (i, election) in whole.into_iter().zip(again.into_iter().flatten()) {
                    elections[i] = election;
                }
                services.iter().zip(elections).map(|(service, election)| {
                    (
                        service.key.clone(),
                        service.decision.clone(),
                        service.warnings.clone(),
                        election,
                    )
                })
            });
        let services = Counted::new(services, count);
        assemble(services, self.pools.clone(), options, interfaces)
    }

    /// What changes from the last plan made of this ([`Standing::plan`], or the last
    /// re-election) when only the live nodes change, to those of `options`: the
    /// services whose owner changes, and their entries. Costs a look at each
    /// service's ranking (no hashing, nothing allocated for a service that stays),
    /// then the entries of the services that move; their roles are made only when
    /// asked for ([`Reelection::moved`]), after the datapath has the entries. `None`
    /// when it cannot tell: another node name, other interfaces or other interfaces
    /// named despite an exclusion than the last plan's, no plan yet, or a service
    /// whose kept candidates all died (more than
    /// [`election::RANKED`](crate::election::RANKED) at once): then plan whole
    /// ([`Standing::plan`]). Applied to the last plan's entries, the entries equal
    /// those of [`Standing::plan`] (and of [`plan`]) for `options`.
    pub fn reelect(
        &mut self,
        options: &PlanOptions,
        interfaces: &[Interface],
    ) -> Option<Reelection<'_>> {
        let last = self.last.as_ref()?;
        if last.node_name != options.node_name
            || last.named_despite_exclusion != options.named_despite_exclusion
            || last.interfaces != interfaces
        {
            return None;
        }
        let live = options.election.live_nodes.as_ref();
        let owners = match (
            self.electorate.live_nodes(last.live.as_ref()),
            self.electorate.live_nodes(live),
        ) {
            (Some(before), Some(now)) if before != now => self.owners_moved(&before, &now)?,
            // The same live nodes, or no node listed (this node alone always
            // announces).
            _ => Vec::new(),
        };
        if let Some(last) = &mut self.last {
            last.live = live.cloned();
        }
        let standing: &Standing = self;
        let mut polls = standing.electorate.polls(&options.node_name, None);
        let vips = standing.entries_moved(&owners, &mut polls, options, interfaces);
        Some(Reelection {
            vips,
            owners: owners
                .into_iter()
                .map(|(index, ad_set, _, now)| (index, ad_set, now))
                .collect(),
            standing,
            polls,
        })
    }

    /// The services whose owner differs between the live nodes `before` and `now` (by
    /// node index): (service index, advertisement set, owner before, owner now).
    #[allow(clippy::type_complexity)]
    fn owners_moved(
        &self,
        before: &[bool],
        now: &[bool],
    ) -> Option<Vec<(usize, usize, Option<u32>, Option<u32>)>> {
        let mut moved = Vec::new();
        for rank in &self.ranks {
            let was = rank.owner(&self.ranked, before).ok()?;
            let is = rank.owner(&self.ranked, now).ok()?;
            if was != is {
                moved.push((rank.service as usize, rank.ad_set as usize, was, is));
            }
        }
        Some(moved)
    }

    /// The entries of the services whose owners moved as `owners` says
    /// ([`Standing::owners_moved`]), each key once with its value now. Nothing is
    /// allocated per service.
    fn entries_moved(
        &self,
        owners: &[(usize, usize, Option<u32>, Option<u32>)],
        polls: &mut Polls<'_>,
        options: &PlanOptions,
        interfaces: &[Interface],
    ) -> Vec<(VipKey, Option<VipConfig>)> {
        let parts = replan::Parts::new(polls, options, interfaces);
        let part = |ad_set: usize, owner: Option<u32>| parts.part(ad_set, owner);
        let mut vips = Vec::new();
        let mut shared = Vec::new();
        for &(index, ad_set, was, is) in owners {
            let Decision::Allocated(allocation) = &self.services[index].decision else {
                continue;
            };
            let (before, now) = (part(ad_set, was), part(ad_set, is));
            let ips = &allocation.ips;
            if ips.iter().any(|ip| self.shared.contains_key(ip)) {
                // Merged with the other holders' entries: found below.
                shared.extend(before.entries(ips, interfaces).map(|(key, _)| key));
                shared.extend(now.entries(ips, interfaces).map(|(key, _)| key));
                continue;
            }
            let set = vips.len();
            vips.extend(now.entries(ips, interfaces).map(|(key, c)| (key, Some(c))));
            for (key, _) in before.entries(ips, interfaces) {
                if !vips[set..].iter().any(|(k, _)| *k == key) {
                    vips.push((key, None));
                }
            }
        }
        if shared.is_empty() {
            vips.sort_unstable_by_key(|(key, _)| *key);
            return vips;
        }
        // An entry of a shared address: what every holder's role gives it now.
        let live = self
            .last
            .as_ref()
            .and_then(|last| self.electorate.live_nodes(last.live.as_ref()));
        shared.sort_unstable();
        shared.dedup();
        // Each address's holders once: an address shared by hundreds of services
        // has as many keys among the moved ones, and each key's walk over the same
        // holders was quadratic (collected before deduplication).
        let mut addresses: Vec<IpAddr> = shared.iter().map(|key| key.addr).collect();
        addresses.sort_unstable();
        addresses.dedup();
        let holders: BTreeSet<usize> = addresses
            .iter()
            .flat_map(|addr| self.shared.get(addr).into_iter().flatten().copied())
            .collect();
        let mut merged = Vec::new();
        for holder in holders {
            let Ok(at) = self
                .ranks
                .binary_search_by_key(&holder, |r| r.service as usize)
            else {
                continue;
            };
            let (rank, Decision::Allocated(allocation)) =
                (&self.ranks[at], &self.services[holder].decision)
            else {
                continue;
            };
            let owner = match &live {
                Some(live) => rank.owner(&self.ranked, live).ok().flatten(),
                None => self.ranked.get(rank.start as usize).copied(),
            };
            merged.extend(part(rank.ad_set as usize, owner).entries(&allocation.ips, interfaces));
        }
        let merged = merged_entries(merged);
        vips.extend(shared.into_iter().map(|key| {
            let value = merged.get(&key).copied();
            (key, value)
        }));
        vips.sort_unstable_by_key(|(key, _)| *key);
        vips
    }

    /// [`Standing::plan`], giving up what was kept.
    fn into_plan(self, options: &PlanOptions, interfaces: &[Interface]) -> Plan {
        let Standing {
            services,
            electorate,
            pools,
            ..
        } = self;
        let live = options.election.live_nodes.as_ref();
        let weight = electorate.voters(live);
        let mut workers = Workers::new(options.election.threads, || {
            electorate.polls(&options.node_name, live)
        });
        let window = workers.window(weight);
        let count = services.len();
        let mut services = services.into_iter();
        let services = std::iter::from_fn(|| {
            let services: Vec<StandingService> = services.by_ref().take(window).collect();
            let elections = workers.map(&services, weight, |polls, _, piece| {
                let elect = |service: &StandingService| service.elect(polls);
                piece.iter().map(elect).collect::<Vec<_>>()
            });
            let elections = elections.into_iter().flatten();
            let planned = services
                .into_iter()
                .zip(elections)
                .map(|(service, election)| {
                    (service.key, service.decision, service.warnings, election)
                });
            let planned: Vec<_> = planned.collect();
            (!planned.is_empty()).then_some(planned)
        })
        .flatten();
        assemble(Counted::new(services, count), pools, options, interfaces)
    }
}

/// The plan of services given in key order with their decision, warnings and
/// election: each one's role on this node and the entries that follow.
fn assemble(
    services: impl Iterator<Item = (ServiceKey, Decision, Vec<String>, Option<Election>)>,
    pools: BTreeMap<String, PoolUsage>,
    options: &PlanOptions,
    interfaces: &[Interface],
) -> Plan {
    // Gathered, then sorted: a map built from sorted entries at once costs less than
    // one search per entry.
    let mut vips = Vec::new();
    let services = services
        .map(|(key, decision, warnings, election)| {
            let role = service_role(&decision, election.as_ref(), options, interfaces);
            if let (Decision::Allocated(allocation), Some(Election::Announced { .. })) =
                (&decision, &election)
            {
                vips.extend(entries(&allocation.ips, &role, interfaces));
            }
            let plan = ServicePlan {
                decision,
                warnings,
                election,
                role,
            };
            (key, plan)
        })
        .collect();
    Plan {
        services,
        vips: merged_entries(vips),
        pools,
        bgp: BgpPlan::default(),
    }
}

/// The role on this node of a service with `decision` and `election`.
fn service_role(
    decision: &Decision,
    election: Option<&Election>,
    options: &PlanOptions,
    interfaces: &[Interface],
) -> Role {
    match (decision, election) {
        (Decision::Ignored { reason }, _) => Role::None {
            reason: format!("ignored: {reason}"),
        },
        (Decision::Failed { reason }, _) => Role::None {
            reason: format!("allocation failed: {reason}"),
        },
        (_, None) => Role::None {
            reason: "not elected".into(),
        },
        (_, Some(Election::NotAnnounced { reason, .. })) => Role::None {
            reason: reason.clone(),
        },
        (
            Decision::Allocated(_),
            Some(Election::Announced {
                owner,
                interfaces: wanted,
                ..
            }),
        ) => role_for(owner, wanted, options, interfaces),
    }
}

/// This node's part of an announcement by `owner` on `wanted`.
fn role_for(
    owner: &str,
    wanted: &Interfaces,
    options: &PlanOptions,
    interfaces: &[Interface],
) -> Role {
    let ours = owner == options.node_name;
    let announces_on = |name: &str| match wanted {
        Interfaces::All => !options.named_despite_exclusion.contains(name),
        Interfaces::Only(_) => wanted.includes(name),
    };
    let on: Vec<String> = interfaces
        .iter()
        .filter(|i| !ours || announces_on(&i.name))
        .map(|i| i.name.clone())
        .collect();
    if on.is_empty() {
        Role::None {
            reason: "none of this node's interfaces is in the announcement".into(),
        }
    } else if ours {
        Role::Announce { interfaces: on }
    } else {
        Role::Suppress {
            owner: owner.into(),
        }
    }
}

/// The VIP entries of a service with addresses `ips` and role `role` on this node,
/// whose datapath runs on `interfaces`: answering on the interfaces it announces on,
/// suppressing on every interface where another node announces. They follow from
/// these three alone, which is what lets [`vip_delta`] find what a plan changes.
pub fn entries<'a>(
    ips: &'a [IpAddr],
    role: &'a Role,
    interfaces: &'a [Interface],
) -> impl Iterator<Item = (VipKey, VipConfig)> + 'a {
    let action = match role {
        Role::Announce { .. } => VipAction::Answer,
        Role::Suppress { .. } | Role::None { .. } => VipAction::Suppress,
    };
    interfaces
        .iter()
        .filter(move |iface| match role {
            Role::Announce { interfaces } => interfaces.contains(&iface.name),
            Role::Suppress { .. } => true,
            Role::None { .. } => false,
        })
        .flat_map(move |iface| ips.iter().map(move |ip| entry(*ip, iface, action)))
}

/// The entry of address `ip` on `iface`.
fn entry(ip: IpAddr, iface: &Interface, action: VipAction) -> (VipKey, VipConfig) {
    let key = VipKey {
        addr: ip,
        ifindex: iface.ifindex,
        vlan_id: 0,
    };
    let config = VipConfig {
        mac: MacAddr(iface.mac),
        action,
    };
    (key, config)
}

/// A service's part on this node, as its entries see it ([`entries`] without the
/// role's names): answering on the interfaces marked (in the order of the attached
/// interfaces), suppressing on all of them, or nothing.
enum Part<'a> {
    Answer(&'a [bool]),
    Suppress,
    Nothing,
}

impl Part<'_> {
    /// The entries of a service with addresses `ips` on `interfaces`: those of
    /// [`entries`] for the role this part stands for.
    fn entries<'a>(
        &'a self,
        ips: &'a [IpAddr],
        interfaces: &'a [Interface],
    ) -> impl Iterator<Item = (VipKey, VipConfig)> + 'a {
        let action = match self {
            Part::Answer(_) => VipAction::Answer,
            Part::Suppress | Part::Nothing => VipAction::Suppress,
        };
        interfaces
            .iter()
            .enumerate()
            .filter(move |(index, _)| match self {
                Part::Answer(on) => on[*index],
                Part::Suppress => true,
                Part::Nothing => false,
            })
            .flat_map(move |(_, iface)| ips.iter().map(move |ip| entry(*ip, iface, action)))
    }
}

/// The services' entries as one map. Two services sharing an address elect alike;
/// should they not, answering wins over suppressing (so the result does not depend on
/// the order of the services: an entry's MAC is its interface's).
fn merged_entries(mut vips: Vec<(VipKey, VipConfig)>) -> BTreeMap<VipKey, VipConfig> {
    vips.sort_by_key(|(key, _)| *key);
    vips.dedup_by(|(key, config), (kept_key, kept)| {
        let same = key == kept_key;
        if same && config.action == VipAction::Answer {
            *kept = *config;
        }
        same
    });
    vips.into_iter().collect()
}

/// The entries of `plan.vips` that may differ from those of an earlier plan made on
/// the same `interfaces`, each with its value in `plan` (`None`: gone), given what each
/// service had in that plan: its role (`roles`, every service) and, if allocated, its
/// addresses (`addresses`). A service's entries follow from its addresses, role and
/// the interfaces alone ([`entries`]), so an entry can change only if a service that
/// had it or has it now changed its addresses or role. Costs one walk over the
/// services (both sorted by key, no lookup) and then the entries of the services that
/// changed: the datapath is handed these, not the whole set.
pub fn vip_delta(
    plan: &Plan,
    interfaces: &[Interface],
    roles: &BTreeMap<ServiceKey, Role>,
    addresses: &BTreeMap<ServiceKey, Vec<IpAddr>>,
) -> BTreeMap<VipKey, Option<VipConfig>> {
    use std::cmp::Ordering;
    let mut delta = BTreeMap::new();
    let mut touch = |ips: &[IpAddr], role: &Role| {
        for (key, _) in entries(ips, role, interfaces) {
            delta
                .entry(key)
                .or_insert_with(|| plan.vips.get(&key).copied());
        }
    };
    let (mut before, mut before_ips, mut after) = (
        roles.iter().peekable(),
        addresses.iter().peekable(),
        plan.services.iter().peekable(),
    );
    loop {
        let order = match (before.peek(), after.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((was, _)), Some((now, _))) => was.cmp(now),
        };
        let was = if order == Ordering::Greater {
            None
        } else {
            before.next()
        };
        let now = if order == Ordering::Less {
            None
        } else {
            after.next()
        };
        let Some(key) = was.map(|(key, _)| key).or(now.map(|(key, _)| key)) else {
            break;
        };
        while before_ips.next_if(|(ips_of, _)| *ips_of < key).is_some() {}
        let was_ips = match (was, before_ips.next_if(|(ips_of, _)| *ips_of == key)) {
            (Some(_), Some((_, ips))) => ips.as_slice(),
            _ => &[],
        };
        let now_ips = match now.map(|(_, service)| &service.decision) {
            Some(Decision::Allocated(allocation)) => allocation.ips.as_slice(),
            _ => &[],
        };
        let none = Role::None {
            reason: String::new(),
        };
        let was_role = was.map_or(&none, |(_, role)| role);
        let now_role = now.map_or(&none, |(_, service)| &service.role);
        if was_ips == now_ips && was_role == now_role {
            continue;
        }
        touch(was_ips, was_role);
        touch(now_ips, now_role);
    }
    delta
}

/// Why an interface gets the XDP responder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum AttachReason {
    /// Named by `--interface`: the configuration and the patterns are not consulted.
    CommandLine,
    /// Named in the `interfaces` of these L2Advertisements; used even when an
    /// exclusion pattern matches it (`excluded_by`), since it is named explicitly.
    Named {
        advertisements: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        excluded_by: Option<String>,
    },
    /// These L2Advertisements name no interface: every interface that is up, not a
    /// loopback, and matched by no exclusion pattern.
    EveryInterface { advertisements: Vec<String> },
}

/// Why an interface of this host is left alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// An exclusion pattern matches its name.
    Excluded {
        pattern: String,
    },
    Down,
    Loopback,
    /// The L2Advertisements for this node name interfaces, not this one.
    NotNamed,
    /// No L2Advertisement may select this node.
    NoAdvertisement,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedInterface {
    pub interface: String,
    #[serde(flatten)]
    pub reason: AttachReason,
    /// Set by the speaker when the kernel refused the attachment.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedInterface {
    pub interface: String,
    #[serde(flatten)]
    pub reason: SkipReason,
}

/// `L2Advertisement a` or `L2Advertisements a, b`.
fn advertisements_named(names: &[String]) -> String {
    let plural = if names.len() == 1 { "" } else { "s" };
    format!("L2Advertisement{plural} {}", names.join(", "))
}

/// In words, for `plan` and `inspect`.
impl std::fmt::Display for AttachReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachReason::CommandLine => write!(f, "named by --interface"),
            AttachReason::Named {
                advertisements,
                excluded_by: None,
            } => write!(f, "named by {}", advertisements_named(advertisements)),
            AttachReason::Named {
                advertisements,
                excluded_by: Some(pattern),
            } => write!(
                f,
                "named by {}, although {pattern} matches",
                advertisements_named(advertisements)
            ),
            AttachReason::EveryInterface { advertisements } => write!(
                f,
                "every interface not excluded ({} names none)",
                advertisements_named(advertisements)
            ),
        }
    }
}

/// In words, for `plan` and `inspect`.
impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Excluded { pattern } => write!(f, "excluded by {pattern}"),
            SkipReason::Down => write!(f, "down"),
            SkipReason::Loopback => write!(f, "loopback"),
            SkipReason::NotNamed => write!(f, "not named by the L2Advertisements for this node"),
            SkipReason::NoAdvertisement => write!(f, "no L2Advertisement selects this node"),
        }
    }
}

/// An interface named (by `--interface`, or by these L2Advertisements) that this host
/// does not have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingInterface {
    pub interface: String,
    /// Empty: named by `--interface`.
    pub advertisements: Vec<String>,
}

impl MissingInterface {
    /// Why it is listed, in words.
    pub fn why(&self) -> String {
        let by = if self.advertisements.is_empty() {
            "--interface".to_string()
        } else {
            advertisements_named(&self.advertisements)
        };
        format!("named by {by}, not on this node")
    }
}

/// The exclusion patterns consulted, and where they come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExclusionPatterns {
    pub source: PatternSource,
    pub patterns: Vec<String>,
}

/// Which interfaces of this host get the responder and why, which do not and why:
/// what `metallb plan` shows and the speaker records for `metallb inspect`. Sorted by
/// interface name. With `--interface`, only the named interfaces are listed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceReport {
    pub attached: Vec<AttachedInterface>,
    pub skipped: Vec<SkippedInterface>,
    pub missing: Vec<MissingInterface>,
    /// `None` when `--interface` decides (no pattern is consulted).
    pub exclusions: Option<ExclusionPatterns>,
}

impl InterfaceReport {
    /// Attached interfaces that an exclusion pattern matches, attached only because an
    /// L2Advertisement names them: an advertisement that names no interface does not
    /// announce there ([`PlanOptions::named_despite_exclusion`]).
    pub fn named_despite_exclusion(&self) -> BTreeSet<String> {
        self.attached
            .iter()
            .filter(|a| {
                matches!(
                    a.reason,
                    AttachReason::Named {
                        excluded_by: Some(_),
                        ..
                    }
                )
            })
            .map(|a| a.interface.clone())
            .collect()
    }
}

/// The interfaces to attach to, and the report of the choice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceChoice {
    /// Sorted by name.
    pub attach: Vec<Interface>,
    pub report: InterfaceReport,
}

/// The interfaces the speaker attaches to, as MetalLB chooses them, and why each
/// interface of `host` is or is not used:
/// - `--interface` (`explicit`): exactly those;
/// - else the interfaces named by the L2Advertisements that may select this node, up
///   or not, whatever the exclusion patterns say (named explicitly);
/// - and, when one of those advertisements names none, every other interface that is
///   up, not a loopback, and matched by none of `config.interface_exclusions` (MetalLB's
///   `metallb-excludel2`; MetalLB tests the patterns first).
///
/// Unlike MetalLB, where an excluded interface gets no responder even when an
/// L2Advertisement names it, a name written out wins over a pattern.
pub fn interfaces_to_attach(
    config: &Config,
    node_name: &str,
    explicit: &[String],
    host: &BTreeMap<String, Interface>,
) -> InterfaceChoice {
    let mut choice = InterfaceChoice::default();
    if !explicit.is_empty() {
        let named: BTreeSet<&String> = explicit.iter().collect();
        for name in named {
            match host.get(name) {
                Some(iface) => choice.attach(iface, AttachReason::CommandLine),
                None => choice.report.missing.push(MissingInterface {
                    interface: name.clone(),
                    advertisements: Vec::new(),
                }),
            }
        }
        return choice;
    }
    let labels = config
        .nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node_name))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    let mine: Vec<_> = config
        .l2_advertisements
        .iter()
        .filter(|a| a.node_selectors.is_empty() || any_matches(&a.node_selectors, &labels))
        .collect();
    let mut named: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for adv in &mine {
        for name in &adv.interfaces {
            named.entry(name).or_default().push(adv.name.clone());
        }
    }
    let naming_none: Vec<String> = mine
        .iter()
        .filter(|a| a.interfaces.is_empty())
        .map(|a| a.name.clone())
        .collect();
    let exclusions = &config.interface_exclusions;
    choice.report.exclusions = Some(ExclusionPatterns {
        source: exclusions.source().clone(),
        patterns: exclusions.patterns(),
    });
    for (name, iface) in host {
        let excluded_by = exclusions.matching(name).map(str::to_owned);
        if let Some(advertisements) = named.get(name.as_str()) {
            choice.attach(
                iface,
                AttachReason::Named {
                    advertisements: advertisements.clone(),
                    excluded_by,
                },
            );
            continue;
        }
        let skip = match excluded_by {
            _ if mine.is_empty() => SkipReason::NoAdvertisement,
            _ if naming_none.is_empty() => SkipReason::NotNamed,
            Some(pattern) => SkipReason::Excluded { pattern },
            None if !iface.up => SkipReason::Down,
            None if iface.loopback => SkipReason::Loopback,
            None => {
                choice.attach(
                    iface,
                    AttachReason::EveryInterface {
                        advertisements: naming_none.clone(),
                    },
                );
                continue;
            }
        };
        choice.report.skipped.push(SkippedInterface {
            interface: name.clone(),
            reason: skip,
        });
    }
    for (name, advertisements) in named {
        if !host.contains_key(name) {
            choice.report.missing.push(MissingInterface {
                interface: name.to_owned(),
                advertisements,
            });
        }
    }
    choice
}

impl InterfaceChoice {
    fn attach(&mut self, iface: &Interface, reason: AttachReason) {
        self.attach.push(iface.clone());
        self.report.attached.push(AttachedInterface {
            interface: iface.name.clone(),
            reason,
            error: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        allocator::from_status,
        config::{ValidateOptions, file::parse, validate},
    };

    fn config(text: &str) -> Config {
        validate(&parse(text).expect("parses"), &ValidateOptions::default())
            .config
            .expect("valid")
    }

    fn iface(name: &str, ifindex: u32, up: bool, loopback: bool) -> Interface {
        Interface {
            name: name.into(),
            ifindex,
            mac: [2, 0, 0, 0, 0, ifindex as u8],
            up,
            loopback,
            multicast: true,
        }
    }

    fn host() -> BTreeMap<String, Interface> {
        [
            iface("lo", 1, true, true),
            iface("eth0", 2, true, false),
            iface("eth1", 3, true, false),
            iface("eth2", 4, false, false),
            // What a Kubernetes node has besides: pod veths, kube-proxy's IPVS device,
            // a container bridge that is down.
            iface("vethabc123", 5, true, false),
            iface("cali1234", 6, true, false),
            iface("kube-ipvs0", 7, true, false),
            iface("docker0", 8, false, false),
        ]
        .into_iter()
        .map(|i| (i.name.clone(), i))
        .collect()
    }

    const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/24, '2001:db8::/120']}\n";

    fn names(interfaces: &[Interface]) -> Vec<&str> {
        interfaces.iter().map(|i| i.name.as_str()).collect()
    }

    /// Keeping a Standing, the releasing plan gives up the configuration's Services
    /// and EndpointSlices and plans as [`plan_keeping`] does; with BGP (no Standing)
    /// it leaves the configuration whole.
    #[test]
    fn the_releasing_plan_gives_up_the_services_only_when_it_keeps_a_standing() {
        let services = "---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: LoadBalancer}\n\
                        ---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {type: LoadBalancer, ipFamilies: [IPv6]}\n\
                        ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\n";
        let peer = "---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: peer}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254}\n";
        let eth0 = [host()["eth0"].clone()];
        let options = PlanOptions {
            node_name: "node-1".into(),
            ..PlanOptions::default()
        };
        let whole = config(&format!("{POOL}{services}"));
        let (kept, standing) = plan_keeping(&whole, &options, &eth0);
        let mut released = whole.clone();
        let (plan, released_standing) = plan_keeping_releasing(&mut released, &options, &eth0);
        assert!(released.services.is_empty());
        assert!(released.endpoint_slices.is_empty());
        assert_eq!(plan.services.len(), 2);
        assert_eq!(plan.services, kept.services);
        assert_eq!(plan.vips, kept.vips);
        assert_eq!(plan.vips.len(), 2);
        assert!(standing.is_some() && released_standing.is_some());

        let with_bgp = config(&format!("{POOL}{services}{peer}"));
        let mut released = with_bgp.clone();
        let (plan, standing) = plan_keeping_releasing(&mut released, &options, &eth0);
        assert!(standing.is_none());
        assert_eq!(released.services, with_bgp.services);
        assert_eq!(plan.services.len(), 2);
    }

    /// The Kubernetes speaker's plan (addresses from the status the controller wrote,
    /// endpoints as the API lists them, every node's speaker alive) equals the
    /// standalone plan of the same objects, when the file carries the EndpointSlices.
    #[test]
    fn standalone_and_kubernetes_mode_plan_the_same_objects_alike() {
        let ready = |service: &str, node: &str| {
            format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [10.1.0.1], conditions: {{ready: true}}, nodeName: {node}}}]\n"
            )
        };
        let service = |name: &str, spec: &str| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]{spec}}}\n"
            )
        };
        let text = POOL.to_string()
            + "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\n"
            + "---\napiVersion: v1\nkind: Node\nmetadata: {name: me}\n"
            + "---\napiVersion: v1\nkind: Node\nmetadata: {name: other}\n"
            + &service("web", "")
            + &ready("web", "other")
            + &service("local", ", externalTrafficPolicy: Local")
            + &ready("local", "me")
            + &service(
                "dual",
                ", ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]",
            )
            + &ready("dual", "other")
            + &service("idle", "")
            + "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: idle-1, labels: {kubernetes.io/service-name: idle}}\naddressType: IPv4\nendpoints: []\n";
        let host = host();
        let attached = [host["eth0"].clone()];
        for node in ["me", "other"] {
            let standalone = plan(
                &config(&text),
                &PlanOptions {
                    node_name: node.into(),
                    ..PlanOptions::default()
                },
                &attached,
            );
            // What the controller writes: the allocations, as status.
            let mut cluster = config(&text);
            for svc in &mut cluster.services {
                if let Some(ServicePlan {
                    decision: Decision::Allocated(a),
                    ..
                }) = standalone.services.get(&ServiceKey::of_service(svc))
                {
                    svc.status = Some(crate::allocator::status_with(&a.ips));
                }
            }
            let kubernetes = plan(
                &cluster,
                &PlanOptions {
                    node_name: node.into(),
                    addresses: AddressSource::Status,
                    election: ElectionContext {
                        live_nodes: Some(BTreeSet::from(["me".into(), "other".into()])),
                        endpoints: crate::election::EndpointRule::Observed,
                        ..ElectionContext::default()
                    },
                    ..PlanOptions::default()
                },
                &attached,
            );
            let roles = |p: &Plan| -> Vec<(String, Role)> {
                p.services
                    .iter()
                    .map(|(k, s)| (k.to_string(), s.role.clone()))
                    .collect()
            };
            assert_eq!(roles(&kubernetes), roles(&standalone), "{node}");
            assert_eq!(kubernetes.vips, standalone.vips, "{node}");
            // And the rules were exercised: the idle service is not announced, the
            // Local one only from its endpoint's node.
            let role = |name: &str| {
                standalone.services[&ServiceKey {
                    namespace: "default".into(),
                    name: name.into(),
                }]
                    .role
                    .clone()
            };
            assert!(
                matches!(role("idle"), Role::None { reason } if reason.contains("no endpoint"))
            );
            match (node, role("local")) {
                ("me", Role::Announce { .. }) | ("other", Role::Suppress { .. }) => {}
                (node, other) => panic!("{node}: local is {other:?}"),
            }
        }
    }

    /// Kubernetes mode takes the status as it is: never allocates.
    #[test]
    fn addresses_from_the_status_table() {
        let svc = |name: &str, spec: &str, status: &str| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]{spec}}}\nstatus: {{loadBalancer: {{ingress: [{status}]}}}}\n"
            )
        };
        let text = POOL.to_string()
            + &svc("kept", "", "{ip: 192.0.2.7}")
            + &svc(
                "dual",
                ", ipFamilyPolicy: PreferDualStack",
                "{ip: '2001:db8::5'}, {ip: 192.0.2.8}",
            )
            + &svc("none", "", "")
            + &svc("outside", "", "{ip: 198.51.100.1}")
            + &svc(
                "classy",
                ", loadBalancerClass: other.io/lb",
                "{ip: 192.0.2.9}",
            )
            + &svc("host", "", "{hostname: lb.example}");
        let decisions = from_status(&config(&text), &AllocatorOptions::default()).decisions;
        let shown = |name: &str| -> String {
            match &decisions[&ServiceKey {
                namespace: "default".into(),
                name: name.into(),
            }] {
                Decision::Allocated(a) => format!("{} {:?}", a.pool, a.ips),
                Decision::Failed { reason } => format!("failed: {reason}"),
                Decision::Ignored { reason } => format!("ignored: {reason}"),
            }
        };
        assert_eq!(shown("kept"), "p [192.0.2.7]");
        assert_eq!(shown("dual"), "p [192.0.2.8, 2001:db8::5]");
        assert_eq!(
            shown("none"),
            "ignored: no address in its status yet (the controller assigns it)"
        );
        assert_eq!(
            shown("host"),
            "ignored: no address in its status yet (the controller assigns it)"
        );
        assert_eq!(
            shown("outside"),
            "failed: its status address 198.51.100.1 is in no address pool (the controller will correct it)"
        );
        assert!(
            shown("classy").starts_with("ignored: spec.loadBalancerClass is \"other.io/lb\""),
            "{}",
            shown("classy")
        );
    }

    /// One line per interface: `name: why`, attached first, then skipped, then missing.
    fn summary(report: &InterfaceReport) -> Vec<String> {
        let attached = report
            .attached
            .iter()
            .map(|a| format!("attach {}: {}", a.interface, a.reason));
        let skipped = report
            .skipped
            .iter()
            .map(|s| format!("skip {}: {}", s.interface, s.reason));
        let missing = report
            .missing
            .iter()
            .map(|m| format!("missing {}: {}", m.interface, m.why()));
        attached.chain(skipped).chain(missing).collect()
    }

    fn adv(name: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        )
    }

    fn exclude_l2(patterns: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: metallb-excludel2, namespace: metallb-system}}\ndata:\n  excludel2.yaml: |\n    announcedInterfacesToExclude: {patterns}\n"
        )
    }

    #[test]
    fn interfaces_to_attach_table() {
        let node = "---\napiVersion: v1\nkind: Node\nmetadata: {name: me, labels: {zone: east}}\n";
        let skipped_by_default = [
            "skip cali1234: excluded by ^cali.*",
            "skip docker0: excluded by ^docker.*",
            "skip eth2: down",
            "skip kube-ipvs0: excluded by ^kube-ipvs.*",
            "skip lo: excluded by ^lo$",
            "skip vethabc123: excluded by ^veth.*",
        ];
        let not_named = |except: &[&str]| -> Vec<String> {
            host()
                .keys()
                .filter(|n| !except.contains(&n.as_str()))
                .map(|n| format!("skip {n}: not named by the L2Advertisements for this node"))
                .collect()
        };
        let no_advertisement: Vec<String> = host()
            .keys()
            .map(|n| format!("skip {n}: no L2Advertisement selects this node"))
            .collect();
        /// (what, config, --interface, attached, report)
        type Case = (
            &'static str,
            String,
            Vec<&'static str>,
            Vec<&'static str>,
            Vec<String>,
        );
        let lines = |l: &[&str]| -> Vec<String> { l.iter().map(|s| s.to_string()).collect() };
        let cases: Vec<Case> = vec![
            (
                "no interfaces named: every up, non-loopback interface the defaults leave",
                POOL.to_string() + &adv("a", "{}"),
                vec![],
                vec!["eth0", "eth1"],
                [
                    lines(&[
                        "attach eth0: every interface not excluded (L2Advertisement a names none)",
                        "attach eth1: every interface not excluded (L2Advertisement a names none)",
                    ]),
                    lines(&skipped_by_default),
                ]
                .concat(),
            ),
            (
                "named interfaces only; a missing one is reported",
                POOL.to_string() + &adv("a", "{interfaces: [eth1, eth9]}"),
                vec![],
                vec!["eth1"],
                [
                    lines(&["attach eth1: named by L2Advertisement a"]),
                    not_named(&["eth1"]),
                    lines(&["missing eth9: named by L2Advertisement a, not on this node"]),
                ]
                .concat(),
            ),
            (
                "one advertisement names eth1, another none",
                POOL.to_string() + &adv("a", "{interfaces: [eth1]}") + &adv("b", "{}"),
                vec![],
                vec!["eth0", "eth1"],
                [
                    lines(&[
                        "attach eth0: every interface not excluded (L2Advertisement b names none)",
                        "attach eth1: named by L2Advertisement a",
                    ]),
                    lines(&skipped_by_default),
                ]
                .concat(),
            ),
            (
                "named explicitly wins over a pattern, and over down",
                POOL.to_string()
                    + &adv("a", "{interfaces: [vethabc123, eth2]}")
                    + &adv("b", "{interfaces: [vethabc123]}"),
                vec![],
                vec!["eth2", "vethabc123"],
                [
                    lines(&[
                        "attach eth2: named by L2Advertisement a",
                        "attach vethabc123: named by L2Advertisements a, b, although ^veth.* matches",
                    ]),
                    not_named(&["eth2", "vethabc123"]),
                ]
                .concat(),
            ),
            (
                "--interface decides alone, loopback and patterns included",
                POOL.to_string() + &adv("a", "{interfaces: [eth1]}"),
                vec!["lo", "eth0", "kube-ipvs0", "eth0"],
                vec!["eth0", "kube-ipvs0", "lo"],
                lines(&[
                    "attach eth0: named by --interface",
                    "attach kube-ipvs0: named by --interface",
                    "attach lo: named by --interface",
                ]),
            ),
            (
                "--interface naming what is not there",
                POOL.to_string(),
                vec!["eth9"],
                vec![],
                lines(&["missing eth9: named by --interface, not on this node"]),
            ),
            (
                "the advertisement is not for this node",
                POOL.to_string()
                    + node
                    + &adv(
                        "a",
                        "{interfaces: [eth0], nodeSelectors: [{matchLabels: {zone: west}}]}",
                    ),
                vec![],
                vec![],
                no_advertisement.clone(),
            ),
            (
                "the advertisement is for this node",
                POOL.to_string()
                    + node
                    + &adv(
                        "a",
                        "{interfaces: [eth0], nodeSelectors: [{matchLabels: {zone: east}}]}",
                    ),
                vec![],
                vec!["eth0"],
                [lines(&["attach eth0: named by L2Advertisement a"]), not_named(&["eth0"])].concat(),
            ),
            (
                "no advertisement at all",
                POOL.to_string(),
                vec![],
                vec![],
                no_advertisement.clone(),
            ),
            (
                "the ConfigMap's patterns replace the defaults",
                POOL.to_string() + &adv("a", "{}") + &exclude_l2("['^eth1$', 'ipvs']"),
                vec![],
                vec!["cali1234", "eth0", "vethabc123"],
                lines(&[
                    "attach cali1234: every interface not excluded (L2Advertisement a names none)",
                    "attach eth0: every interface not excluded (L2Advertisement a names none)",
                    "attach vethabc123: every interface not excluded (L2Advertisement a names none)",
                    "skip docker0: down",
                    "skip eth1: excluded by ^eth1$",
                    "skip eth2: down",
                    "skip kube-ipvs0: excluded by ipvs",
                    "skip lo: loopback",
                ]),
            ),
            (
                "an empty list excludes nothing: down and loopback still count",
                POOL.to_string() + &adv("a", "{}") + &exclude_l2("[]"),
                vec![],
                vec!["cali1234", "eth0", "eth1", "kube-ipvs0", "vethabc123"],
                lines(&[
                    "attach cali1234: every interface not excluded (L2Advertisement a names none)",
                    "attach eth0: every interface not excluded (L2Advertisement a names none)",
                    "attach eth1: every interface not excluded (L2Advertisement a names none)",
                    "attach kube-ipvs0: every interface not excluded (L2Advertisement a names none)",
                    "attach vethabc123: every interface not excluded (L2Advertisement a names none)",
                    "skip docker0: down",
                    "skip eth2: down",
                    "skip lo: loopback",
                ]),
            ),
        ];
        for (what, text, explicit, attached, report) in cases {
            let explicit: Vec<String> = explicit.into_iter().map(String::from).collect();
            let choice = interfaces_to_attach(&config(&text), "me", &explicit, &host());
            assert_eq!(names(&choice.attach), attached, "{what}");
            assert_eq!(summary(&choice.report), report, "{what}");
            assert_eq!(
                choice.report.exclusions.is_none(),
                !explicit.is_empty(),
                "{what}: patterns are consulted unless --interface decides"
            );
        }
    }

    #[test]
    fn the_report_says_which_patterns_and_whence() {
        let choice = interfaces_to_attach(
            &config(&(POOL.to_string() + &adv("a", "{}"))),
            "me",
            &[],
            &host(),
        );
        assert_eq!(
            choice.report.exclusions,
            Some(ExclusionPatterns {
                source: PatternSource::Defaults,
                patterns: crate::config::interfaces::DEFAULT_EXCLUDED_INTERFACES
                    .map(String::from)
                    .to_vec(),
            })
        );
        let text = POOL.to_string() + &adv("a", "{}") + &exclude_l2("['^veth']");
        let choice = interfaces_to_attach(&config(&text), "me", &[], &host());
        assert_eq!(
            choice.report.exclusions,
            Some(ExclusionPatterns {
                source: PatternSource::ConfigMap("metallb-system/metallb-excludel2".into()),
                patterns: vec!["^veth".into()],
            })
        );
        // As JSON, for plan --output json and the speaker's record.
        let json = serde_json::to_value(&choice.report).unwrap();
        assert_eq!(
            json["attached"][0],
            serde_json::json!({"interface": "cali1234", "reason": "every_interface", "advertisements": ["a"]})
        );
        assert_eq!(
            json["skipped"],
            serde_json::json!([
                {"interface": "docker0", "reason": "down"},
                {"interface": "eth2", "reason": "down"},
                {"interface": "lo", "reason": "loopback"},
                {"interface": "vethabc123", "reason": "excluded", "pattern": "^veth"},
            ])
        );
        assert_eq!(
            json["exclusions"],
            serde_json::json!({"source": {"config_map": "metallb-system/metallb-excludel2"}, "patterns": ["^veth"]})
        );
        let back: InterfaceReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, choice.report);
    }

    /// An interface an exclusion pattern matches is attached when an advertisement
    /// names it; an advertisement naming no interface must not announce there.
    #[test]
    fn every_interface_leaves_out_those_attached_only_because_named() {
        let text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pods}\nspec: {addresses: [192.0.2.0/28]}\n\
                    ---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan}\nspec: {addresses: [192.0.2.16/28]}\n"
            .to_string()
            + &adv("to-pods", "{ipAddressPools: [pods], interfaces: [vethabc123]}")
            + &adv("everywhere", "{ipAddressPools: [lan]}")
            + "---\napiVersion: v1\nkind: Service\nmetadata: {name: a, annotations: {metallb.io/address-pool: pods}}\nspec: {type: LoadBalancer}\n"
            + "---\napiVersion: v1\nkind: Service\nmetadata: {name: b, annotations: {metallb.io/address-pool: lan}}\nspec: {type: LoadBalancer}\n";
        let cfg = config(&text);
        let choice = interfaces_to_attach(&cfg, "me", &[], &host());
        assert_eq!(names(&choice.attach), ["eth0", "eth1", "vethabc123"]);
        let options = PlanOptions {
            node_name: "me".into(),
            named_despite_exclusion: choice.report.named_despite_exclusion(),
            ..Default::default()
        };
        assert_eq!(
            options.named_despite_exclusion,
            BTreeSet::from(["vethabc123".to_string()])
        );
        let planned = plan(&cfg, &options, &choice.attach);
        let role = |name: &str| {
            planned.services[&ServiceKey {
                namespace: "default".into(),
                name: name.into(),
            }]
                .role
                .clone()
        };
        assert_eq!(
            role("a"),
            Role::Announce {
                interfaces: vec!["vethabc123".into()]
            }
        );
        assert_eq!(
            role("b"),
            Role::Announce {
                interfaces: vec!["eth0".into(), "eth1".into()]
            }
        );
    }

    #[test]
    fn plan_answers_on_the_owners_interfaces_and_suppresses_elsewhere() {
        // "me" is preferred, so it wins whatever the hash says; its advertisement names
        // eth1, the other node's names none: this node answers on eth1 only.
        let text = POOL.to_string()
            + "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: mine}\nspec: {interfaces: [eth1], nodeSelectors: [{matchLabels: {name: me}}], preferredNodeSelectors: [{weight: 50, preference: {matchLabels: {name: me}}}]}\n"
            + "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: theirs}\nspec: {nodeSelectors: [{matchLabels: {name: other}}]}\n"
            + "---\napiVersion: v1\nkind: Node\nmetadata: {name: me, labels: {name: me}}\n"
            + "---\napiVersion: v1\nkind: Node\nmetadata: {name: other, labels: {name: other}}\n"
            + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, annotations: {metallb.io/loadBalancerIPs: '192.0.2.7'}}\nspec: {type: LoadBalancer}\n";
        let cfg = config(&text);
        let host = host();
        let attached = [host["eth0"].clone(), host["eth1"].clone()];
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let web = ServiceKey {
            namespace: "default".into(),
            name: "web".into(),
        };

        let mine = plan(
            &cfg,
            &PlanOptions {
                node_name: "me".into(),
                ..Default::default()
            },
            &attached,
        );
        assert_eq!(
            mine.services[&web].role,
            Role::Announce {
                interfaces: vec!["eth1".into()]
            }
        );
        assert_eq!(
            mine.vips,
            BTreeMap::from([(
                VipKey {
                    addr: ip,
                    ifindex: 3,
                    vlan_id: 0
                },
                VipConfig {
                    mac: MacAddr([2, 0, 0, 0, 0, 3]),
                    action: VipAction::Answer
                }
            )])
        );

        let theirs = plan(
            &cfg,
            &PlanOptions {
                node_name: "other".into(),
                ..Default::default()
            },
            &attached,
        );
        assert_eq!(
            theirs.services[&web].role,
            Role::Suppress { owner: "me".into() }
        );
        let suppressed: Vec<(u32, VipAction)> = theirs
            .vips
            .iter()
            .map(|(k, c)| (k.ifindex, c.action))
            .collect();
        assert_eq!(
            suppressed,
            [(2, VipAction::Suppress), (3, VipAction::Suppress)],
            "every attached interface"
        );
    }

    /// What the speaker keeps of a plan to find what the next one changes: each
    /// service's role, and the addresses of those allocated.
    fn kept(
        plan: &Plan,
    ) -> (
        BTreeMap<ServiceKey, Role>,
        BTreeMap<ServiceKey, Vec<IpAddr>>,
    ) {
        let roles = plan
            .services
            .iter()
            .map(|(key, service)| (key.clone(), service.role.clone()))
            .collect();
        (roles, plan.allocated_addresses())
    }

    /// A random cluster: three nodes (some without a live speaker), two pools, an
    /// advertisement naming no interface and one naming eth1 for one node, services
    /// with given, shared or allocated addresses, Local ones with endpoints on a
    /// random node.
    #[derive(Clone, Debug)]
    struct Cluster {
        /// Per service: present, address choice, Local endpoint node.
        services: Vec<(bool, usize, Option<usize>)>,
        live: Vec<bool>,
        named_adv: bool,
        second_pool_advertised: bool,
    }

    const NODES: [&str; 3] = ["me", "other", "third"];
    const ADDRESSES: [&str; 6] = [
        "192.0.2.1",
        "192.0.2.2",
        "'2001:db8::1'",
        "'192.0.2.3,2001:db8::3'",
        "198.51.100.1",
        "",
    ];

    impl Cluster {
        fn random(rng: &mut rand::rngs::StdRng) -> Self {
            use rand::RngExt as _;
            let mut cluster = Self {
                services: Vec::new(),
                live: vec![true; NODES.len()],
                named_adv: rng.random(),
                second_pool_advertised: rng.random(),
            };
            for _ in 0..8 {
                cluster.services.push(Self::service(rng));
            }
            for live in &mut cluster.live[1..] {
                *live = rng.random_range(0..4) > 0;
            }
            cluster
        }

        fn service(rng: &mut rand::rngs::StdRng) -> (bool, usize, Option<usize>) {
            use rand::RngExt as _;
            (
                rng.random_range(0..5) > 0,
                rng.random_range(0..ADDRESSES.len()),
                rng.random::<bool>()
                    .then(|| rng.random_range(0..NODES.len())),
            )
        }

        /// One random change: a service (appears, goes, moves, its endpoint moves), a
        /// node's speaker, or an advertisement.
        fn change(&mut self, rng: &mut rand::rngs::StdRng) {
            use rand::RngExt as _;
            match rng.random_range(0..6) {
                0 => self.live[rng.random_range(1..NODES.len())] ^= true,
                1 => self.named_adv ^= true,
                2 => self.second_pool_advertised ^= true,
                _ => {
                    let i = rng.random_range(0..self.services.len());
                    self.services[i] = Self::service(rng);
                }
            }
        }

        fn text(&self) -> String {
            let mut text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/28, '2001:db8::/124']}\n\
                            ---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: q}\nspec: {addresses: [198.51.100.0/30]}\n".to_string();
            let pools = if self.second_pool_advertised {
                "[p, q]"
            } else {
                "[p]"
            };
            text += &adv("all", &format!("{{ipAddressPools: {pools}}}"));
            if self.named_adv {
                text += &adv(
                    "named",
                    "{interfaces: [eth1], nodeSelectors: [{matchLabels: {name: me}}]}",
                );
            }
            for node in NODES {
                text += &format!(
                    "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {node}, labels: {{name: {node}}}}}\n"
                );
            }
            for (i, (present, address, local)) in self.services.iter().enumerate() {
                if !present {
                    continue;
                }
                let annotations = match ADDRESSES[*address] {
                    "" => String::new(),
                    ip => format!(
                        "annotations: {{metallb.io/loadBalancerIPs: {ip}, metallb.io/allow-shared-ip: k}}, "
                    ),
                };
                let (policy, families) = match (local, ADDRESSES[*address]) {
                    (Some(_), _) => (", externalTrafficPolicy: Local", ""),
                    (None, ip) if ip.contains(',') => (
                        "",
                        ", ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]",
                    ),
                    (None, ip) if ip.contains(':') => ("", ", ipFamilies: [IPv6]"),
                    _ => ("", ""),
                };
                text += &format!(
                    "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, {annotations}}}\nspec: {{type: LoadBalancer, ports: [{{port: {}}}]{policy}{families}}}\n",
                    8000 + i
                );
                if let Some(node) = local {
                    text += &format!(
                        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-1, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [10.1.0.1], conditions: {{ready: true}}, nodeName: {}}}]\n",
                        NODES[*node]
                    );
                }
            }
            text
        }

        fn options(&self, node: &str) -> PlanOptions {
            PlanOptions {
                node_name: node.into(),
                election: ElectionContext {
                    live_nodes: Some(
                        NODES
                            .iter()
                            .zip(&self.live)
                            .filter(|(_, live)| **live)
                            .map(|(node, _)| node.to_string())
                            .collect(),
                    ),
                    ..ElectionContext::default()
                },
                ..PlanOptions::default()
            }
        }
    }

    /// The entries [`vip_delta`] hands over, applied to the last plan's, give exactly
    /// the entries of the new plan built whole: for random clusters changed one thing
    /// at a time, as seen by each node. And they are few: only entries of services
    /// whose addresses or role changed.
    #[test]
    fn the_delta_applied_to_the_last_entries_gives_the_whole_plans_entries() {
        use crate::property::{case_rng, settings};
        let (seed, cases) = settings("vip_delta", 60);
        let host = host();
        let attached = [host["eth0"].clone(), host["eth1"].clone()];
        let mut changed_entries = 0;
        for case in 0..cases {
            let mut rng = case_rng(seed, case);
            let mut cluster = Cluster::random(&mut rng);
            for node in NODES {
                let mut last = plan(&config(&cluster.text()), &cluster.options(node), &attached);
                for step in 0..8 {
                    let before = cluster.clone();
                    cluster.change(&mut rng);
                    let now = plan(&config(&cluster.text()), &cluster.options(node), &attached);
                    let (roles, addresses) = kept(&last);
                    let delta = vip_delta(&now, &attached, &roles, &addresses);
                    let mut vips = last.vips.clone();
                    for (key, value) in &delta {
                        match value {
                            Some(config) => vips.insert(*key, *config),
                            None => vips.remove(key),
                        };
                    }
                    assert_eq!(
                        vips, now.vips,
                        "case {case}, {node}, step {step}: {before:?} -> {cluster:?}"
                    );
                    // Every entry handed over belongs to a service that changed.
                    for key in delta.keys() {
                        let owners_changed = now
                            .services
                            .iter()
                            .chain(&last.services)
                            .filter(|(_, s)| {
                                matches!(&s.decision, Decision::Allocated(a) if a.ips.contains(&key.addr))
                            })
                            .any(|(k, _)| {
                                last.services.get(k).map(|s| (&s.decision, &s.role))
                                    != now.services.get(k).map(|s| (&s.decision, &s.role))
                            });
                        assert!(owners_changed, "case {case}, {node}, step {step}: {key:?}");
                    }
                    changed_entries += usize::from(last.vips != now.vips);
                    last = now;
                }
            }
        }
        // The changes did change entries (the property was exercised).
        assert!(
            changed_entries > cases,
            "{changed_entries} plans changed entries"
        );
    }

    /// Two plans alike in every part.
    fn same(a: &Plan, b: &Plan) -> bool {
        a.services == b.services && a.vips == b.vips && a.pools == b.pools && a.bgp == b.bgp
    }

    /// One case of a re-planning property: a random cluster, its configuration, its
    /// endpoint rule, and the interfaces a node's datapath may run on.
    struct Scenario {
        cluster: Cluster,
        cfg: Config,
        endpoints: crate::election::EndpointRule,
        choices: [Vec<Interface>; 4],
    }

    impl Scenario {
        /// Case `case` of a property run with `seed`, and the case's generator.
        fn of(seed: u64, case: usize) -> (rand::rngs::StdRng, Self) {
            use crate::election::EndpointRule;
            use rand::RngExt as _;
            let mut rng = crate::property::case_rng(seed, case);
            let cluster = Cluster::random(&mut rng);
            let cfg = config(&cluster.text());
            let endpoints = if rng.random() {
                EndpointRule::AssumeServing
            } else {
                EndpointRule::Observed
            };
            let host = host();
            let choices = [
                vec![host["eth0"].clone(), host["eth1"].clone()],
                vec![host["eth0"].clone()],
                vec![host["eth1"].clone()],
                vec![host["eth1"].clone(), host["kube-ipvs0"].clone()],
            ];
            let scenario = Self {
                cluster,
                cfg,
                endpoints,
                choices,
            };
            (rng, scenario)
        }

        /// `node`'s options with these speakers live, eth1 named despite an exclusion
        /// if `named`.
        fn options(&self, node: &str, live: &[bool], named: bool) -> PlanOptions {
            let mut options = Cluster {
                live: live.to_vec(),
                ..self.cluster.clone()
            }
            .options(node);
            options.election.endpoints = self.endpoints;
            if named {
                options.named_despite_exclusion = BTreeSet::from(["eth1".to_string()]);
            }
            options
        }

        /// Where a node starts: the cluster's live speakers, eth1 named or not, and
        /// random interfaces.
        fn start(&self, rng: &mut rand::rngs::StdRng) -> (Vec<bool>, bool, Vec<Interface>) {
            use rand::RngExt as _;
            let named = rng.random::<bool>();
            let attached = crate::property::pick(rng, &self.choices).clone();
            (self.cluster.live.clone(), named, attached)
        }
    }

    /// Plans a service keeps when made again by `replan` from what a plan kept
    /// ([`plan_keeping`]), for another live set or other interfaces, against the
    /// configuration planned whole with the same options: for random clusters whose
    /// speakers come and go and whose attached interfaces change, as each node sees
    /// them. Returns the first difference, and how many changes moved some service
    /// (the property exercised).
    fn first_difference(
        property: &str,
        replan: impl Fn(&mut Standing, &PlanOptions, &[Interface]) -> Plan,
    ) -> (Option<String>, usize) {
        use crate::property::{pick, settings};
        use rand::RngExt as _;
        let (seed, cases) = settings(property, 40);
        let mut moved = 0;
        for case in 0..cases {
            let (mut rng, scenario) = Scenario::of(seed, case);
            let (cfg, choices) = (&scenario.cfg, &scenario.choices);
            for node in NODES {
                let options = |live: &[bool], named: bool| scenario.options(node, live, named);
                let (mut live, mut named, mut attached) = scenario.start(&mut rng);
                let (first, standing) = plan_keeping(cfg, &options(&live, named), &attached);
                let whole = plan(cfg, &options(&live, named), &attached);
                assert!(same(&first, &whole), "case {case}, {node}: plan_keeping");
                let mut standing = standing.expect("kept without BGP");
                for step in 0..6 {
                    match rng.random_range(0..4) {
                        0 | 1 => live[rng.random_range(0..NODES.len())] ^= true,
                        2 => attached = pick(&mut rng, choices).clone(),
                        _ => named ^= true,
                    }
                    let options = options(&live, named);
                    let whole = plan(cfg, &options, &attached);
                    let again = replan(&mut standing, &options, &attached);
                    if !same(&whole, &again) {
                        let differ = whole
                            .services
                            .iter()
                            .find(|(key, service)| again.services.get(*key) != Some(*service));
                        return (
                            Some(format!(
                                "case {case}, {node}, step {step}, live {live:?}, attached {:?}: {differ:?} planned again as {:?}",
                                names(&attached),
                                differ.and_then(|(key, _)| again.services.get(key)),
                            )),
                            moved,
                        );
                    }
                    moved += usize::from(whole.services.iter().any(|(key, service)| {
                        first.services.get(key).map(|s| &s.role) != Some(&service.role)
                    }));
                }
            }
        }
        (None, moved)
    }

    /// The election run again on what a plan kept gives the plan made whole.
    #[test]
    fn planning_again_from_what_a_plan_kept_equals_planning_whole() {
        let (difference, moved) =
            first_difference("standing_plan", |standing, options, attached| {
                standing.plan(options, attached)
            });
        assert_eq!(difference, None);
        assert!(moved > 40, "{moved} changes moved a service");
    }

    /// The property catches a re-election that forgets the live nodes, or that
    /// forgets externalTrafficPolicy Local's nodes.
    #[test]
    fn planning_again_is_checked_against_a_sabotaged_re_election() {
        let (stale_live, _) =
            first_difference("standing_plan_stale_live", |standing, options, attached| {
                let every_node = PlanOptions {
                    election: ElectionContext::default(),
                    ..options.clone()
                };
                standing.plan(&every_node, attached)
            });
        assert!(stale_live.is_some());
        let (no_local, _) =
            first_difference("standing_plan_no_local", |standing, options, attached| {
                // Ballots and rankings without the nodes that serve Local services.
                let mut standing = standing.clone();
                for service in &mut standing.services {
                    if let Some(Ballot::Candidates { local, .. }) = &mut service.ballot {
                        *local = None;
                    }
                }
                standing.ranks.clear();
                standing.ranked.clear();
                standing.rank(&options.node_name, options.election.threads);
                standing.plan(options, attached)
            });
        assert!(no_local.is_some());
    }

    /// What [`Standing::reelect`] hands over for random clusters whose speakers come
    /// and go (and, now and then, whose attached interfaces change), as each node sees
    /// them, against the configuration planned whole: its entries applied to the last
    /// plan's give the whole plan's entries, the services it moves are exactly those
    /// whose role changed, with the whole plan's role (and its interfaces named); it
    /// declines (`None`) only when more than the live nodes changed. Returns the
    /// first difference, and how many re-elections moved a service, a shared
    /// address's service among them.
    fn first_reelection_difference(
        property: &str,
        sabotage: impl Fn(&mut Standing),
    ) -> (Option<String>, usize, usize) {
        use crate::property::{pick, settings};
        use rand::RngExt as _;
        let (seed, cases) = settings(property, 40);
        let (mut moved, mut moved_shared) = (0, 0);
        for case in 0..cases {
            let (mut rng, scenario) = Scenario::of(seed, case);
            let (cfg, choices) = (&scenario.cfg, &scenario.choices);
            for node in NODES {
                let options = |live: &[bool], named: bool| scenario.options(node, live, named);
                let (mut live, mut named, mut attached) = scenario.start(&mut rng);
                let (mut last, standing) = plan_keeping(cfg, &options(&live, named), &attached);
                let mut standing = standing.expect("kept without BGP");
                sabotage(&mut standing);
                let shared: BTreeSet<IpAddr> = standing.shared.keys().copied().collect();
                for step in 0..8 {
                    let (was_attached, was_named) = (attached.clone(), named);
                    match rng.random_range(0..8) {
                        0 => attached = pick(&mut rng, choices).clone(),
                        1 => named ^= true,
                        _ => live[rng.random_range(0..NODES.len())] ^= true,
                    }
                    let options = options(&live, named);
                    let whole = plan(cfg, &options, &attached);
                    let at = format!("case {case}, {node}, step {step}, live {live:?}");
                    let Some(mut re) = standing.reelect(&options, &attached) else {
                        if attached == was_attached && named == was_named {
                            return (Some(format!("{at}: declined")), moved, moved_shared);
                        }
                        last = standing.plan(&options, &attached);
                        continue;
                    };
                    if attached != was_attached || named != was_named {
                        return (Some(format!("{at}: not declined")), moved, moved_shared);
                    }
                    if !re.vips.is_sorted_by(|(a, _), (b, _)| a < b) {
                        return (Some(format!("{at}: not in order")), moved, moved_shared);
                    }
                    let mut vips = last.vips.clone();
                    for (key, value) in &re.vips {
                        match value {
                            Some(config) => vips.insert(*key, *config),
                            None => vips.remove(key),
                        };
                    }
                    if vips != whole.vips {
                        return (
                            Some(format!("{at}: entries {vips:?} != {:?}", whole.vips)),
                            moved,
                            moved_shared,
                        );
                    }
                    let changed: Vec<(&ServiceKey, &Role, Vec<String>)> = whole
                        .services
                        .iter()
                        .filter(|(key, service)| last.services[*key].role != service.role)
                        .map(|(key, service)| {
                            let named = match (&service.role, &service.election) {
                                (
                                    Role::Announce { .. },
                                    Some(Election::Announced {
                                        interfaces: Interfaces::Only(names),
                                        ..
                                    }),
                                ) => names.iter().cloned().collect(),
                                _ => Vec::new(),
                            };
                            (key, &service.role, named)
                        })
                        .collect();
                    let re_moved = re.moved(&options, &attached);
                    if re_moved.len() != re.services() {
                        return (Some(format!("{at}: count")), moved, moved_shared);
                    }
                    let handed: Vec<(&ServiceKey, &Role, Vec<String>)> = re_moved
                        .iter()
                        .map(|m| (m.key, &m.role, m.named.clone()))
                        .collect();
                    if handed != changed {
                        return (
                            Some(format!("{at}: moved {handed:?} != {changed:?}")),
                            moved,
                            moved_shared,
                        );
                    }
                    moved += usize::from(!re_moved.is_empty());
                    moved_shared += usize::from(
                        re_moved
                            .iter()
                            .any(|m| m.allocation.ips.iter().any(|ip| shared.contains(ip))),
                    );
                    last = whole;
                }
            }
        }
        (None, moved, moved_shared)
    }

    #[test]
    fn a_reelection_hands_over_what_planning_whole_changes() {
        let (difference, moved, moved_shared) =
            first_reelection_difference("standing_reelect", |_| {});
        assert_eq!(difference, None);
        assert!(moved > 40, "{moved} re-elections moved a service");
        assert!(moved_shared > 5, "{moved_shared} moved a shared address");
    }

    /// The property catches a re-election that forgets how a shared address's
    /// entries merge, or that looks past the first live candidate.
    #[test]
    fn the_reelection_property_catches_a_sabotaged_standing() {
        let (unshared, _, _) = first_reelection_difference("standing_reelect_unshared", |s| {
            s.shared.clear();
        });
        assert!(unshared.is_some());
        let (reversed, _, _) = first_reelection_difference("standing_reelect_reversed", |s| {
            for rank in &s.ranks {
                s.ranked[rank.start as usize..][..usize::from(rank.len)].reverse();
            }
        });
        assert!(reversed.is_some());
    }

    /// With the allocator, the speaker gives every service without a status address
    /// the addresses of the last plan as its status (`speaker::with_previous_status`).
    fn with_statuses(cfg: &mut Config, last: &Plan) {
        for service in &mut cfg.services {
            if crate::allocator::has_status_address(service) {
                continue;
            }
            if let Some(ServicePlan {
                decision: Decision::Allocated(a),
                ..
            }) = last.services.get(&ServiceKey::of_service(service))
            {
                service.status = Some(crate::allocator::status_with(&a.ips));
            }
        }
    }

    /// What [`Standing::replan`] hands over for random clusters whose Services change
    /// one to three at a time (added, removed, moved to another address or to
    /// automatic allocation, their Local endpoint moved), and now and then something
    /// else (an advertisement, which it must decline), as each node sees them,
    /// against the configuration planned whole: its entries applied to the last
    /// plan's give the whole plan's entries, the services it hands over have the
    /// whole plan's plan and every other service the last plan's, the services gone
    /// and the pools' usage are the whole plan's, and what it keeps plans again as
    /// the whole plan. Returns the first difference, how many changes it replanned,
    /// and how many of those changed a service that held or wanted an address.
    ///
    /// Three changes in four come with the source's word on the places that changed
    /// ([`Changes`]); with `lie`, a word that nothing changed instead, which the
    /// replan must not take (the sample it checks covers these small clusters).
    fn first_replan_difference(
        property: &str,
        sabotage: impl Fn(&mut Standing),
        lie: bool,
    ) -> (Option<String>, usize, usize) {
        use crate::property::{pick, settings};
        use rand::RngExt as _;
        let (seed, cases) = settings(property, 40);
        let (mut replanned, mut moved) = (0, 0);
        for case in 0..cases {
            let (mut rng, scenario) = Scenario::of(seed, case);
            for node in NODES {
                let mut cluster = scenario.cluster.clone();
                let named = rng.random::<bool>();
                let attached = pick(&mut rng, &scenario.choices).clone();
                let options = scenario.options(node, &cluster.live, named);
                let cfg = config(&cluster.text());
                let (mut last, standing) = plan_keeping(&cfg, &options, &attached);
                let mut standing = standing.expect("kept without BGP");
                sabotage(&mut standing);
                for step in 0..8 {
                    let before = cluster.clone();
                    let services_only = rng.random_range(0..8) > 0;
                    let mut replaced = Vec::new();
                    if services_only {
                        for _ in 0..rng.random_range(1..=3) {
                            let i = rng.random_range(0..cluster.services.len());
                            cluster.services[i] = Cluster::service(&mut rng);
                            replaced.push(i);
                        }
                    } else {
                        cluster.named_adv ^= true;
                    }
                    // The speaker hands the replan the configuration as it comes (the
                    // services without a status address get the last plan's addresses
                    // inside); given them already, it must plan the same.
                    let given = config(&cluster.text());
                    let mut cfg = given.clone();
                    with_statuses(&mut cfg, &last);
                    let whole = plan(&cfg, &options, &attached);
                    let at = format!("case {case}, {node}, step {step}: {before:?} -> {cluster:?}");
                    let given = if rng.random() { &given } else { &cfg };
                    // The places of the Services between the first and the last
                    // replaced, before and now (absent Services have none).
                    let places =
                        |c: &Cluster, end: usize| c.services[..end].iter().filter(|s| s.0).count();
                    let changes = match (replaced.iter().min(), replaced.iter().max()) {
                        _ if lie => Some(Changes::default()),
                        (Some(&lo), Some(&hi)) if rng.random_range(0..4) > 0 => Some(Changes {
                            at: places(&before, lo),
                            was: places(&before, hi + 1) - places(&before, lo),
                            now: places(&cluster, hi + 1) - places(&cluster, lo),
                        }),
                        _ => None,
                    };
                    let Some(re) = standing.replan(given, &options, &attached, changes.as_ref())
                    else {
                        let (planned, kept) = plan_keeping(&cfg, &options, &attached);
                        last = planned;
                        standing = kept.expect("kept without BGP");
                        sabotage(&mut standing);
                        continue;
                    };
                    if !services_only {
                        return (Some(format!("{at}: not declined")), replanned, moved);
                    }
                    if !re.vips.is_sorted_by(|(a, _), (b, _)| a < b) {
                        return (
                            Some(format!("{at}: entries not in order")),
                            replanned,
                            moved,
                        );
                    }
                    let mut vips = last.vips.clone();
                    for (key, value) in &re.vips {
                        match value {
                            Some(config) => vips.insert(*key, *config),
                            None => vips.remove(key),
                        };
                    }
                    if vips != whole.vips {
                        return (
                            Some(format!("{at}: entries {vips:?} != {:?}", whole.vips)),
                            replanned,
                            moved,
                        );
                    }
                    let handed: BTreeMap<&ServiceKey, &ServicePlan> =
                        re.services.iter().map(|(key, plan)| (key, plan)).collect();
                    for (key, service) in &whole.services {
                        let now = handed.get(key).copied().or(last.services.get(key));
                        if now != Some(service) {
                            return (
                                Some(format!("{at}: {key} is {service:?}, replanned as {now:?}")),
                                replanned,
                                moved,
                            );
                        }
                    }
                    let gone: Vec<&ServiceKey> = (last.services.keys())
                        .filter(|key| !whole.services.contains_key(*key))
                        .collect();
                    if re.removed.iter().collect::<Vec<_>>() != gone
                        || handed.keys().any(|key| !whole.services.contains_key(*key))
                    {
                        return (
                            Some(format!("{at}: services gone {:?}", re.removed)),
                            replanned,
                            moved,
                        );
                    }
                    if re.pools != whole.pools {
                        return (
                            Some(format!("{at}: pools {:?} != {:?}", re.pools, whole.pools)),
                            replanned,
                            moved,
                        );
                    }
                    if !same(&standing.clone().plan(&options, &attached), &whole) {
                        return (Some(format!("{at}: what it keeps")), replanned, moved);
                    }
                    replanned += 1;
                    moved += usize::from(re.services.iter().any(|(key, now)| {
                        matches!(now.decision, Decision::Allocated(_))
                            || matches!(
                                last.services.get(key).map(|s| &s.decision),
                                Some(Decision::Allocated(_))
                            )
                    }));
                    last = whole;
                }
            }
        }
        (None, replanned, moved)
    }

    #[test]
    fn a_replan_of_some_services_hands_over_what_planning_whole_changes() {
        let (difference, replanned, moved) =
            first_replan_difference("standing_replan", |_| {}, false);
        assert_eq!(difference, None);
        assert!(replanned > 100, "{replanned} changes replanned");
        assert!(moved > 50, "{moved} replanned an address");
    }

    /// A source's word that nothing changed, when Services did, is checked on a
    /// sample of the Services (all of them in these small clusters) and not taken.
    #[test]
    fn a_replan_does_not_take_a_word_the_sample_belies() {
        let (difference, replanned, _) =
            first_replan_difference("standing_replan_lie", |_| {}, true);
        assert_eq!(difference, None);
        assert!(replanned > 100, "{replanned} changes replanned");
    }

    /// The property catches a replan that forgets the services that failed asking for
    /// an address (a released address lets them succeed), or the services whose
    /// decision depends on others (an address picked from a pool).
    #[test]
    fn the_replan_property_catches_a_sabotaged_standing() {
        let (forgotten, _, _) = first_replan_difference(
            "standing_replan_no_wanted",
            |s| s.replan.forget_wanted(),
            false,
        );
        assert!(forgotten.is_some());
        let (unknown, _, _) = first_replan_difference(
            "standing_replan_no_unknown",
            |s| s.replan.forget_unknown(&mut s.services),
            false,
        );
        assert!(unknown.is_some());
    }

    /// A cluster of `nodes` nodes (in two zones, every third one preferred by a weight;
    /// an advertisement announces on eth1 from the east) and `services` Services:
    /// every seventh Local with endpoints on two nodes, every eleventh sharing an
    /// address, every thirteenth IPv6.
    fn many(nodes: usize, services: usize) -> String {
        let mut text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [10.0.0.0/16, '2001:db8::/112']}\n".to_string();
        text += &adv(
            "all",
            "{ipAddressPools: [p], preferredNodeSelectors: [{weight: 10, preference: {matchLabels: {disk: ssd}}}]}",
        );
        text += &adv(
            "east",
            "{ipAddressPools: [p], interfaces: [eth1], nodeSelectors: [{matchLabels: {zone: east}}]}",
        );
        for n in 0..nodes {
            let zone = if n % 2 == 0 { "east" } else { "west" };
            let disk = if n % 3 == 0 { ", disk: ssd" } else { "" };
            text += &format!(
                "---\napiVersion: v1\nkind: Node\nmetadata: {{name: node-{n:03}, labels: {{zone: {zone}{disk}}}}}\n"
            );
        }
        for i in 0..services {
            let annotations = if i % 11 == 0 {
                "annotations: {metallb.io/loadBalancerIPs: 10.0.255.1, metallb.io/allow-shared-ip: k}"
            } else {
                ""
            };
            let spec = match i {
                _ if i % 7 == 0 => ", externalTrafficPolicy: Local",
                _ if i % 13 == 0 => ", ipFamilies: [IPv6]",
                _ => "",
            };
            text += &format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, {annotations}}}\nspec: {{type: LoadBalancer, ports: [{{port: {}}}]{spec}}}\n",
                8000 + i
            );
            if i % 7 == 0 && nodes > 0 {
                let (a, b) = ((i * 13) % nodes, (i * 7 + 1) % nodes);
                text += &format!(
                    "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-1, labels: {{kubernetes.io/service-name: s{i}}}}}\naddressType: IPv4\nendpoints: [{{addresses: [10.1.0.1], conditions: {{ready: true}}, nodeName: node-{a:03}}}, {{addresses: [10.1.0.2], conditions: {{ready: true}}, nodeName: node-{b:03}}}]\n"
                );
            }
        }
        text
    }

    /// `node-000`'s options with the nodes of `many` alive where `live` says so (by
    /// index), the election on `threads`.
    fn many_options(live: &[bool], threads: Threads) -> PlanOptions {
        let live = live.iter().enumerate().filter(|(_, live)| **live);
        PlanOptions {
            node_name: "node-000".into(),
            election: ElectionContext {
                live_nodes: Some(live.map(|(n, _)| format!("node-{n:03}")).collect()),
                threads,
                ..ElectionContext::default()
            },
            ..PlanOptions::default()
        }
    }

    /// The plan is the same on one thread and on several, bit for bit: whole, kept,
    /// planned again for other live nodes from what was kept, and the election alone;
    /// on clusters small and large (more services than a window holds), with every
    /// part on the threads however small.
    #[test]
    fn the_plan_is_the_same_on_one_thread_and_on_several() {
        use crate::{
            allocator::{AllocatorOptions, allocate},
            election::elect,
        };
        let host = host();
        let attached = [host["eth0"].clone(), host["eth1"].clone()];
        let one = Threads::exactly(1);
        for (nodes, services) in [(0, 3), (3, 8), (40, 300), (45, 4500)] {
            let cfg = config(&many(nodes, services));
            let every = vec![true; nodes];
            let some: Vec<bool> = (0..nodes).map(|n| n % 4 != 1).collect();
            let decisions = allocate(&cfg, &AllocatorOptions::default()).decisions;
            let (first, standing) = plan_keeping(&cfg, &many_options(&every, one), &attached);
            let mut standing = standing.expect("kept without BGP");
            let again = standing.plan(&many_options(&some, one), &attached);
            let elected = elect(
                &cfg,
                &decisions,
                "node-000",
                &many_options(&some, one).election,
            );
            for threads in [2, 3] {
                let case = format!("{nodes} nodes, {services} services, {threads} threads");
                let threads = Threads::exactly(threads).from_hashes(0);
                let (every, some) = (many_options(&every, threads), many_options(&some, threads));
                assert!(same(&plan(&cfg, &every, &attached), &first), "{case}: plan");
                let (kept, on_threads) = plan_keeping(&cfg, &every, &attached);
                let mut on_threads = on_threads.expect("kept without BGP");
                assert!(same(&kept, &first), "{case}: plan_keeping");
                assert_eq!(on_threads.ranked, standing.ranked, "{case}: rankings");
                assert_eq!(
                    format!("{:?}", on_threads.ranks),
                    format!("{:?}", standing.ranks),
                    "{case}: rankings"
                );
                assert!(
                    same(&on_threads.plan(&some, &attached), &again),
                    "{case}: again"
                );
                let on_threads = elect(&cfg, &decisions, "node-000", &some.election);
                assert_eq!(on_threads, elected, "{case}: elect");
            }
        }
    }

    /// The election from the rankings (each service's ranking filtered by the live
    /// nodes) equals the whole plan's, with more nodes than a ranking holds: where
    /// every ranking holds enough live nodes, and where some do not (those services
    /// are elected whole).
    #[test]
    fn planning_again_from_the_rankings_equals_planning_whole_with_many_nodes() {
        let host = host();
        let attached = [host["eth0"].clone(), host["eth1"].clone()];
        let nodes = 60;
        let cfg = config(&many(nodes, 200));
        let threads = Threads::default();
        let every = vec![true; nodes];
        let (_, standing) = plan_keeping(&cfg, &many_options(&every, threads), &attached);
        let mut standing = standing.expect("kept without BGP");
        let dead =
            |dead: &dyn Fn(usize) -> bool| -> Vec<bool> { (0..nodes).map(|n| !dead(n)).collect() };
        // (case, live nodes, some services elected whole)
        let cases: Vec<(&str, Vec<bool>, bool)> = vec![
            ("every node alive", every.clone(), false),
            ("a few dead", dead(&|n| [1, 7, 30].contains(&n)), false),
            ("every other one dead", dead(&|n| n % 2 == 0), true),
            ("most dead", dead(&|n| n < 55), true),
            ("all dead", dead(&|_| true), true),
            ("alive again", every.clone(), false),
        ];
        for (name, live, some_whole) in cases {
            let options = many_options(&live, threads);
            let rankings_tell = |rank: &Ranked| {
                let ranked = &standing.ranked[rank.start as usize..][..usize::from(rank.len)];
                crate::election::listed(ranked, rank.complete, Some(&live)).is_some()
            };
            let told = standing.ranks.iter().filter(|r| rankings_tell(r)).count();
            assert!(told > 0, "{name}: {told} rankings tell");
            assert_eq!(
                told < standing.ranks.len(),
                some_whole,
                "{name}: {told} rankings tell"
            );
            let whole = plan(&cfg, &options, &attached);
            let again = standing.plan(&options, &attached);
            let differ = whole
                .services
                .iter()
                .find(|(key, service)| again.services.get(*key) != Some(*service));
            assert_eq!(differ, None, "{name}");
            assert!(same(&whole, &again), "{name}");
        }
    }
}
