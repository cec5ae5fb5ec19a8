//! Which speakers are alive: SWIM (the `foca` crate) between the speakers, so that a
//! dead node's VIPs move to the next node of the election within a fraction of a
//! second. The core here has no socket and no clock: it is fed datagrams and the time
//! (a `Duration` since any fixed moment), and hands back datagrams to send and the live
//! set, so that tests and the simulation (`simulation`) run it with simulated time.
//! `udp` drives it on a real socket.
//!
//! Every datagram is authenticated with the cluster's [`SharedKey`]; one that does not
//! verify is counted and dropped before the protocol sees it.

pub mod key;
pub mod peers;
pub mod simulation;
pub mod udp;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    num::{NonZeroU32, NonZeroUsize},
    time::Duration,
};

use foca::{
    Foca, Identity, Incarnation, NoCustomBroadcast, OwnedNotification, PostcardCodec, Runtime,
    Timer,
};
use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};
use serde::{Deserialize, Serialize};

pub use key::SharedKey;

/// MetalLB's memberlist port.
pub const DEFAULT_PORT: u16 = 7946;
/// 30 ms: a dead node of three is declared down 180 to 240 ms after it stops
/// answering (`Timings::earliest_down` / `latest_down`), which leaves room under
/// the 300 ms outage target; 50 ms (210 to 300 ms) missed it at p99 in the failover
/// bench. A paused node still has 80 ms to refute after a 100 ms pause.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_millis(30);
pub const DEFAULT_SUSPICION_TIMEOUT: Duration = Duration::from_millis(150);
/// How often configured peers that are not members are asked to let us in: at start
/// (they may start later) and after a partition (each side declared the other down).
const REJOIN_INTERVAL: Duration = Duration::from_millis(500);
/// The fewest times a piece of news is sent: enough for a suspicion to reach every
/// other member of a small cluster in the first round of gossip after it (a probe
/// and one gossip to each of three members), with one round to spare.
const MIN_TRANSMISSIONS: std::num::NonZeroU8 = std::num::NonZeroU8::new(6).unwrap();
/// The largest datagram, our header included: fits an Ethernet MTU.
const MAX_DATAGRAM: usize = 1400;
/// A peer whose datagram did not verify counts as refusing this node's key for this
/// long (peers that are not members are asked to let us in every [`REJOIN_INTERVAL`]).
const KEY_MISMATCH_WINDOW: Duration = Duration::from_secs(5);

/// A speaker as the protocol knows it: its node name, where it listens, and a number
/// that grows with each start and each rejoin (the newer one wins its address).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId {
    pub name: String,
    pub addr: SocketAddr,
    pub generation: u64,
}

/// A [`NodeId`] as it is encoded, its name borrowed from the datagram: foca's header
/// read without allocating (the same fields in the same order, so it reads exactly
/// the headers a `NodeId` does).
#[derive(Deserialize)]
struct PeekedId<'a> {
    #[serde(rename = "name")]
    _name: &'a str,
    addr: SocketAddr,
    #[serde(rename = "generation")]
    _generation: u64,
}

impl Identity for NodeId {
    type Addr = SocketAddr;

    /// Declared down while alive (a partition, a long pause): rejoin as a newer self.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// How often each member asks one other for the members it declared down lately (see
/// [`Timings::sync_interval`]).
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(SYNC_INTERVAL_MS);
const SYNC_INTERVAL_MS: u64 = 500;
/// How many sync intervals a member keeps telling of a member it declared down.
const DOWN_NEWS_KEPT_FOR: u32 = 5;

/// The protocol's timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// Each member probes one other this often.
    pub probe_interval: Duration,
    /// A suspected member that has not refuted the suspicion within this is down.
    pub suspicion_timeout: Duration,
    /// Each member asks one other, that it heard from lately, for the members that
    /// one declared down lately, and tells it its own (push-pull): a member that missed
    /// every copy of a death's news (foca passes news on a bounded number of times,
    /// and the answer to its periodic announce lists only live members) catches up
    /// within [`Timings::missed_news_bound`]. `None`: never (foca alone).
    pub sync_interval: Option<Duration>,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            probe_interval: DEFAULT_PROBE_INTERVAL,
            suspicion_timeout: DEFAULT_SUSPICION_TIMEOUT,
            sync_interval: Some(DEFAULT_SYNC_INTERVAL),
        }
    }
}

impl Timings {
    /// The soonest a member can be declared down after it stops answering: foca
    /// gives up a probe (and suspects its member) only when it starts the next one,
    /// a probe interval after it sent the ping (the indirect probes after
    /// [`Self::probe_rtt`] do not suspect anyone), then the suspicion runs out. (Less
    /// one network delay: a ping sent just before the member stopped is not answered
    /// either.)
    pub fn earliest_down(&self) -> Duration {
        self.probe_interval + self.suspicion_timeout
    }

    /// The latest: a whole probe cycle of every other member may pass before one of
    /// them probes the dead one (round-robin), then that probe's interval, then the
    /// suspicion.
    pub fn latest_down(&self, members: usize) -> Duration {
        self.probe_interval * (members.max(2) as u32) + self.suspicion_timeout
    }

    /// The latest a member that missed every copy of the news that another is down
    /// drops it too, counted from the moment the others it hears from have all
    /// declared it down: its next sync (within an interval) asks one of them (one it
    /// heard from within the suspicion timeout: not the dead member, which nobody
    /// declares down sooner than [`Self::earliest_down`] after it stopped), the
    /// answer names the dead member, which it then suspects, and the suspicion runs
    /// out (a live member refutes it, as any suspicion). Plus the network's round
    /// trip. `None` without sync: then only its own probe of the dead member, within
    /// [`Self::latest_down`].
    pub fn missed_news_bound(&self) -> Option<Duration> {
        self.sync_interval
            .map(|interval| interval + self.suspicion_timeout)
    }

    /// How long a member that declared another down tells of it in its syncs.
    fn down_news_kept(&self) -> Duration {
        self.sync_interval.unwrap_or_default() * DOWN_NEWS_KEPT_FOR
    }

    fn probe_rtt(&self) -> Duration {
        // Direct probe first, indirect ones after this; both within the interval.
        self.probe_interval * 2 / 5
    }

    fn foca_config(&self, expected_members: usize) -> foca::Config {
        let size = NonZeroU32::new(expected_members.clamp(1, u32::MAX as usize) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let mut config = foca::Config::new_lan(size);
        config.probe_period = self.probe_interval;
        config.probe_rtt = self.probe_rtt();
        config.suspect_to_down_after = self.suspicion_timeout;
        config.max_packet_size =
            NonZeroUsize::new(MAX_DATAGRAM - key::OVERHEAD).unwrap_or(NonZeroUsize::MIN);
        // foca sends each piece of news (a suspicion, a refutation) this many times
        // in all, on whatever it sends next: 4 × log10(members + 1), 2 for three
        // members. A member that suspects another could then spend both on the
        // third member, and the suspected one, never told, could not refute before
        // the suspicion timeout: a false takeover (a speaker resuming from a 100 ms
        // pause suspected each peer whose answer still waited in its socket).
        config.max_transmissions = config.max_transmissions.max(MIN_TRANSMISSIONS);
        // Spread news (suspicion, down, refutation) at the probe rate, not memberlist's
        // 200 ms: detection is only as fast as the last member hears of it.
        config.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.probe_interval,
            num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        });
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: REJOIN_INTERVAL,
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        });
        config
    }
}

/// Defaults of the datapath's self-fencing, in the order they must keep (see
/// [`FenceTimings::check`]).
pub const DEFAULT_TOLERATED_PAUSE: Duration = Duration::from_millis(100);
pub const DEFAULT_FENCE_DEADLINE: Duration = Duration::from_millis(125);
pub const DEFAULT_RESTART_GRACE: Duration = Duration::from_secs(10);
/// The longest `--restart-grace`: the VIPs of an agent that never comes back are
/// unanswered for that long.
pub const MAX_RESTART_GRACE: Duration = Duration::from_secs(300);

/// When the datapath of a node with peers stops answering by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FenceTimings {
    /// A pause of the agent (SIGSTOP, a stalled VM, a busy CPU) that must cause
    /// neither fencing nor a takeover.
    pub tolerated_pause: Duration,
    /// The datapath fences this long after the agent's last heartbeat.
    pub deadline: Duration,
    /// A planned restart (`--keep-datapath`) extends the deadline by this much, for
    /// the next agent to adopt the datapath.
    pub restart_grace: Duration,
}

impl Default for FenceTimings {
    fn default() -> Self {
        Self {
            tolerated_pause: DEFAULT_TOLERATED_PAUSE,
            deadline: DEFAULT_FENCE_DEADLINE,
            restart_grace: DEFAULT_RESTART_GRACE,
        }
    }
}

impl FenceTimings {
    /// How often the agent renews the deadline: a third of the room between the
    /// tolerated pause and the deadline (8 ms by default), so that a pause of
    /// `tolerated_pause` that starts just before a renewal leaves two renewals of
    /// margin for a late wake-up.
    pub fn heartbeat_interval(&self) -> Duration {
        self.deadline.saturating_sub(self.tolerated_pause) / 3
    }

    /// An agent that finds its datapath fenced (it was paused past the deadline)
    /// answers again only after this, so that a peer that took over in the
    /// meantime hears it rejoin and lets go first: twice the peers' takeover time.
    pub fn rejoin_hold(&self, membership: &Timings) -> Duration {
        2 * membership.earliest_down()
    }

    /// The order the timings must keep: tolerated pause < fence deadline < the
    /// peers' takeover (the soonest a silent node is declared down), with room for
    /// a heartbeat between the first two; and a restart grace within bounds.
    pub fn check(&self, membership: &Timings) -> Result<(), String> {
        let show = |d: Duration| humantime::format_duration(d).to_string();
        let takeover = membership.earliest_down();
        if self.tolerated_pause.is_zero()
            || self.deadline < self.tolerated_pause + MIN_HEARTBEAT_ROOM
            || self.deadline >= takeover
        {
            return Err(format!(
                "the fencing timings must be in this order: --tolerated-pause {} < --fence-deadline {} < the peers' takeover {} (--probe-interval {} + --suspicion-timeout {}), with the pause above zero and at least {} between the pause and the deadline for the heartbeat: a paused agent must not be fenced, and a hung one must stop answering before a peer answers",
                show(self.tolerated_pause),
                show(self.deadline),
                show(takeover),
                show(membership.probe_interval),
                show(membership.suspicion_timeout),
                show(MIN_HEARTBEAT_ROOM),
            ));
        }
        if self.restart_grace < self.deadline || self.restart_grace > MAX_RESTART_GRACE {
            return Err(format!(
                "--restart-grace {}: must be from --fence-deadline {} to {}",
                show(self.restart_grace),
                show(self.deadline),
                show(MAX_RESTART_GRACE),
            ));
        }
        Ok(())
    }
}

/// The least room between the tolerated pause and the fence deadline: three
/// heartbeats of a millisecond.
const MIN_HEARTBEAT_ROOM: Duration = Duration::from_millis(3);

/// Something worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Up(String),
    Down(String),
    /// This node was declared down and rejoined as a newer self.
    Rejoined,
    /// A member came back as a newer self (a new process, or a rejoin) before it
    /// was declared down here: it stays live.
    Renewed(String),
    /// A member said it restarts (`--keep-datapath`): it stays in the live set for
    /// the grace it gave, or until its successor joins.
    Restarting {
        name: String,
        grace: Duration,
    },
    /// A member that said it restarts was not back within its grace.
    RestartExpired(String),
    /// A datagram that did not verify with our key.
    Refused {
        from: SocketAddr,
    },
    /// A datagram that verified but that the protocol could not take.
    Malformed {
        from: SocketAddr,
        error: String,
    },
}

/// The effects of one call into the protocol, collected and applied after it.
#[derive(Default)]
struct Effects {
    sends: Vec<(SocketAddr, Vec<u8>)>,
    timers: Vec<(Duration, Timer<NodeId>)>,
    notifications: Vec<OwnedNotification<NodeId>>,
}

impl Runtime<NodeId> for Effects {
    fn notify(&mut self, notification: foca::Notification<'_, NodeId>) {
        self.notifications.push(notification.to_owned());
    }

    fn send_to(&mut self, to: NodeId, data: &[u8]) {
        self.sends.push((to.addr, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<NodeId>, after: Duration) {
        self.timers.push((after, event));
    }
}

/// One speaker's membership, driven with explicit time.
pub struct Membership {
    foca: Foca<NodeId, PostcardCodec, StdRng, NoCustomBroadcast>,
    key: SharedKey,
    now: Duration,
    /// Timers by when they fire (ties in the order they were set).
    timers: BTreeMap<(Duration, u64), Timer<NodeId>>,
    timer_seq: u64,
    peers: Vec<SocketAddr>,
    next_rejoin: Duration,
    outgoing: Vec<(SocketAddr, Vec<u8>)>,
    events: Vec<Event>,
    refused: u64,
    /// When a datagram from each source address last failed to verify.
    refused_at: BTreeMap<IpAddr, Duration>,
    bytes_sent: u64,
    left: bool,
    /// Members restarting (`--keep-datapath`), by name: live until then, whatever
    /// the protocol says of their old identity.
    restarting: BTreeMap<String, Duration>,
    timings: Timings,
    /// Whom to sync with (see [`Timings::sync_interval`]).
    rng: StdRng,
    next_sync: Duration,
    /// When a datagram from each member (its address as a member) last came.
    heard_from: BTreeMap<SocketAddr, Duration>,
    /// The members this node saw declared down lately, and when: what its syncs tell.
    down_news: BTreeMap<NodeId, Duration>,
    /// Members a sync said were down while they were live here: suspected here at
    /// this incarnation, down at this moment unless they refute it.
    told_down: BTreeMap<NodeId, (Incarnation, Duration)>,
}

/// What starts a sync (after the key's own header), as [`RESTART_MAGIC`] does a
/// restart notice.
const SYNC_MAGIC: &[u8] = b"metallb-sync\0";

/// The members the sender declared down lately (the latest first), and whether it
/// wants the receiver's own in return.
#[derive(Serialize, Deserialize)]
struct SyncMessage {
    answer_me: bool,
    down: Vec<NodeId>,
}

/// What starts a restart notice (after the key's own header): no message of the
/// protocol starts so (its first bytes are an identity's name, never holding a NUL),
/// and a speaker without this code takes it for a malformed message, as it should.
const RESTART_MAGIC: &[u8] = b"metallb-restart\0";

/// A member's word that it restarts: its identity (a replay after the restart names
/// an old generation, which is no member any more) and the grace, in milliseconds.
#[derive(Serialize, Deserialize)]
struct RestartNotice {
    id: NodeId,
    grace_ms: u64,
}

impl Membership {
    /// `seed` feeds the protocol's choices (whom to probe): any value in production,
    /// a fixed one in simulations.
    pub fn new(
        me: NodeId,
        timings: Timings,
        expected_members: usize,
        key: SharedKey,
        seed: u64,
    ) -> Self {
        Self {
            foca: Foca::new(
                me,
                timings.foca_config(expected_members),
                StdRng::seed_from_u64(seed),
                PostcardCodec,
            ),
            key,
            now: Duration::ZERO,
            timers: BTreeMap::new(),
            timer_seq: 0,
            peers: Vec::new(),
            next_rejoin: Duration::ZERO,
            outgoing: Vec::new(),
            events: Vec::new(),
            refused: 0,
            refused_at: BTreeMap::new(),
            bytes_sent: 0,
            left: false,
            restarting: BTreeMap::new(),
            timings,
            rng: StdRng::seed_from_u64(seed ^ 0x5359_4e43),
            next_sync: timings.sync_interval.unwrap_or_default(),
            heard_from: BTreeMap::new(),
            down_news: BTreeMap::new(),
            told_down: BTreeMap::new(),
        }
    }

    pub fn me(&self) -> &NodeId {
        self.foca.identity()
    }

    /// Joins through `peers` (addresses; ours among them is skipped), asked again
    /// while they are not members.
    pub fn start(&mut self, now: Duration, peers: &[SocketAddr]) {
        self.now = now;
        self.next_sync = now + self.timings.sync_interval.unwrap_or_default();
        self.peers = self.others(peers);
        self.rejoin_through_peers();
    }

    /// The peers change (Kubernetes mode: speaker Pods come and go): new ones are
    /// asked to let us in at once. Members that are no peer any more stay members
    /// until the protocol finds them gone (or they leave).
    pub fn set_peers(&mut self, now: Duration, peers: &[SocketAddr]) {
        self.now = now;
        let peers = self.others(peers);
        if peers == self.peers {
            return;
        }
        let known: BTreeSet<SocketAddr> = self.peers.iter().copied().collect();
        let new = peers.iter().any(|p| !known.contains(p));
        self.peers = peers;
        if new && !self.left {
            self.rejoin_through_peers();
        }
    }

    /// The peers to ask to let us in: `peers` without this node, sorted, once each.
    pub fn peers(&self) -> &[SocketAddr] {
        &self.peers
    }

    fn others(&self, peers: &[SocketAddr]) -> Vec<SocketAddr> {
        let me = self.me().addr;
        let mut others: Vec<SocketAddr> = peers.iter().copied().filter(|p| *p != me).collect();
        others.sort();
        others.dedup();
        others
    }

    /// Takes these members as alive without asking (a simulation's warm start).
    pub fn assume_members(&mut self, members: impl IntoIterator<Item = NodeId>) {
        let mut effects = Effects::default();
        let updates = members.into_iter().map(foca::Member::alive);
        if let Err(error) = self.foca.apply_many(updates, false, &mut effects) {
            self.events.push(Event::Malformed {
                from: self.me().addr,
                error: error.to_string(),
            });
        }
        self.apply(effects);
    }

    /// A datagram from `from`.
    pub fn handle_datagram(&mut self, now: Duration, from: SocketAddr, datagram: &[u8]) {
        self.now = now;
        if self.left {
            return;
        }
        let Some(message) = self.key.open(datagram) else {
            self.refused += 1;
            self.refused_at.insert(from.ip(), now);
            self.events.push(Event::Refused { from });
            return;
        };
        if let Some(notice) = message.strip_prefix(RESTART_MAGIC) {
            self.take_restart_notice(from, notice);
            return;
        }
        if let Some(sync) = message.strip_prefix(SYNC_MAGIC) {
            self.take_sync(from, sync);
            return;
        }
        // Who sent it, by its identity (the source address of its datagram may not be
        // the one it advertises): foca's header read with borrowed names, so that
        // this costs no allocation per datagram (foca decodes it again, owned).
        if let Ok((header, _)) = postcard::take_from_bytes::<foca::Header<PeekedId<'_>>>(message)
            && header.src.addr != self.me().addr
        {
            self.heard_from.insert(header.src.addr, now);
        }
        let mut effects = Effects::default();
        if let Err(error) = self.foca.handle_data(message, &mut effects) {
            self.events.push(Event::Malformed {
                from,
                error: error.to_string(),
            });
        }
        self.apply(effects);
    }

    /// Fires every timer due by `now`.
    pub fn advance(&mut self, now: Duration) {
        self.now = now;
        if self.left {
            return;
        }
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            if self.refuted(&timer) {
                continue;
            }
            let mut effects = Effects::default();
            // An error here is the protocol's own bookkeeping (a stale probe): it
            // carries on by itself.
            let _ = self.foca.handle_timer(timer, &mut effects);
            self.apply(effects);
        }
        if now >= self.next_rejoin {
            self.rejoin_through_peers();
        }
        self.end_told_suspicions();
        if let Some(interval) = self.timings.sync_interval
            && now >= self.next_sync
        {
            self.next_sync = now + interval;
            self.sync();
        }
        let expired: Vec<String> = self
            .restarting
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            self.restarting.remove(&name);
            self.events.push(Event::RestartExpired(name));
        }
    }

    /// Whether `timer` would end a suspicion that the member has refuted since (it
    /// is no longer suspected in the incarnation the timer names, or it is no longer
    /// the member at its address). foca 2.0 then declares nobody down, as it should,
    /// but still sends the member a `TurnUndead` ("you were declared down"): the
    /// member renews its identity and rejoins, and each peer drops its old identity
    /// and admits the new one, so that its VIPs may move for a moment. Every 100 ms
    /// pause that got a speaker suspected ended so. Such a timer is dropped here,
    /// which is what foca would do without that message.
    fn refuted(&self, timer: &Timer<NodeId>) -> bool {
        let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = timer
        else {
            return false;
        };
        !self.suspected_in(member_id, *incarnation)
    }

    /// Tells every member and configured peer that this node restarts and will be
    /// back within `grace` (capped at [`MAX_RESTART_GRACE`]): they keep it in their
    /// live set meanwhile, so that its VIPs stay where they are. Sent twice: it is
    /// one datagram on a LAN, and its loss costs a takeover. Then stops, without
    /// leaving.
    pub fn announce_restart(&mut self, now: Duration, grace: Duration) {
        self.now = now;
        let notice = RestartNotice {
            id: self.me().clone(),
            grace_ms: grace.min(MAX_RESTART_GRACE).as_millis() as u64,
        };
        let Ok(body) = postcard::to_allocvec(&notice) else {
            return;
        };
        let message = [RESTART_MAGIC, &body].concat();
        let datagram = self.key.seal(&message);
        let mut to: Vec<SocketAddr> = self
            .foca
            .iter_members()
            .map(|m| m.id().addr)
            .chain(self.peers.iter().copied())
            .collect();
        to.sort();
        to.dedup();
        for addr in to {
            for _ in 0..2 {
                self.bytes_sent += datagram.len() as u64;
                self.outgoing.push((addr, datagram.clone()));
            }
        }
        self.left = true;
        self.timers.clear();
    }

    /// Asks one member heard from within the suspicion timeout (so not one that died
    /// before anybody could declare it down), at random, for the members it declared
    /// down lately, telling it ours. Nobody heard from lately: nobody asked.
    fn sync(&mut self) {
        let now = self.now;
        self.forget_old_down_news();
        let window = self.timings.suspicion_timeout;
        self.heard_from
            .retain(|_, at| now.saturating_sub(*at) <= window);
        if self.heard_from.is_empty() {
            return;
        }
        let pick = self.rng.random_range(0..self.heard_from.len());
        if let Some(to) = self.heard_from.keys().nth(pick).copied() {
            self.send_sync(to, true);
        }
    }

    fn forget_old_down_news(&mut self) {
        let now = self.now;
        let kept = self.timings.down_news_kept();
        self.down_news
            .retain(|_, at| now.saturating_sub(*at) <= kept);
    }

    fn send_sync(&mut self, to: SocketAddr, answer_me: bool) {
        // The latest first, as many as one datagram holds (postcard writes a list as
        // its length, then its items).
        let mut latest: Vec<(&NodeId, &Duration)> = self.down_news.iter().collect();
        latest.sort_by_key(|(_, at)| std::cmp::Reverse(**at));
        let mut room = MAX_DATAGRAM - key::OVERHEAD - SYNC_MAGIC.len() - 4;
        let mut down = Vec::new();
        for (id, _) in latest {
            let Ok(size) = postcard::to_allocvec(id).map(|item| item.len()) else {
                continue;
            };
            if size > room {
                break;
            }
            room -= size;
            down.push(id.clone());
        }
        let Ok(body) = postcard::to_allocvec(&SyncMessage { answer_me, down }) else {
            return;
        };
        let datagram = self.key.seal(&[SYNC_MAGIC, &body].concat());
        self.bytes_sent += datagram.len() as u64;
        self.outgoing.push((to, datagram));
    }

    /// A sync: what the sender declared down lately, suspected here if it is live
    /// here (a live member refutes, as it does any suspicion); the answer if asked.
    fn take_sync(&mut self, from: SocketAddr, body: &[u8]) {
        let Some(sync) = self.decode::<SyncMessage>(from, body, "sync") else {
            return;
        };
        for id in sync.down {
            if self.told_down.contains_key(&id) {
                continue;
            }
            let Some(incarnation) = self
                .foca
                .iter_members()
                .find(|m| *m.id() == id)
                .map(|m| m.incarnation())
            else {
                continue;
            };
            // foca starts a suspicion's timeout only for a member its own probe
            // failed; this one is kept here.
            self.apply_update(foca::Member::new(
                id.clone(),
                incarnation,
                foca::State::Suspect,
            ));
            self.told_down
                .insert(id, (incarnation, self.now + self.timings.suspicion_timeout));
        }
        // An answer without news would tell nothing: none (half the sync's traffic).
        self.forget_old_down_news();
        if sync.answer_me && !self.left && !self.down_news.is_empty() {
            self.send_sync(from, false);
        }
    }

    /// Members suspected on a sync's word whose suspicion ran out unrefuted: down.
    fn end_told_suspicions(&mut self) {
        let now = self.now;
        let due: Vec<(NodeId, Incarnation)> = self
            .told_down
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(id, (incarnation, _))| (id.clone(), *incarnation))
            .collect();
        for (id, incarnation) in due {
            self.told_down.remove(&id);
            if self.suspected_in(&id, incarnation) {
                self.apply_update(foca::Member::down(id));
            }
        }
    }

    /// Whether `id` is a member suspected in this incarnation.
    fn suspected_in(&self, id: &NodeId, incarnation: Incarnation) -> bool {
        self.foca.iter_members().any(|m| {
            m.id() == id && m.state() == foca::State::Suspect && m.incarnation() == incarnation
        })
    }

    /// What this node learnt of a member, told on to the others as foca's news.
    fn apply_update(&mut self, update: foca::Member<NodeId>) {
        let mut effects = Effects::default();
        // An error is about the update itself (our own identity): nothing changed.
        let _ = self
            .foca
            .apply_many(std::iter::once(update), true, &mut effects);
        self.apply(effects);
    }

    /// One of our own messages (after its magic), or a `Malformed` event.
    fn decode<T: serde::de::DeserializeOwned>(
        &mut self,
        from: SocketAddr,
        body: &[u8],
        what: &str,
    ) -> Option<T> {
        postcard::from_bytes(body)
            .map_err(|error| {
                self.events.push(Event::Malformed {
                    from,
                    error: format!("{what}: {error}"),
                })
            })
            .ok()
    }

    fn take_restart_notice(&mut self, from: SocketAddr, body: &[u8]) {
        let Some(notice) = self.decode::<RestartNotice>(from, body, "restart notice") else {
            return;
        };
        // Only from the member as it is now: not a replay of an earlier process's.
        if !self.foca.iter_members().any(|m| *m.id() == notice.id) {
            return;
        }
        let grace = Duration::from_millis(notice.grace_ms).min(MAX_RESTART_GRACE);
        self.restarting
            .insert(notice.id.name.clone(), self.now + grace);
        self.events.push(Event::Restarting {
            name: notice.id.name,
            grace,
        });
    }

    /// When [`Membership::advance`] has something to do next.
    pub fn next_deadline(&self) -> Option<Duration> {
        if self.left {
            return None;
        }
        let timer = self.timers.first_key_value().map(|((at, _), _)| *at);
        let rejoin = (!self.peers.is_empty()).then_some(self.next_rejoin);
        let restart = self.restarting.values().min().copied();
        let sync = self.timings.sync_interval.map(|_| self.next_sync);
        let told = self.told_down.values().map(|(_, at)| *at).min();
        timer
            .into_iter()
            .chain(rejoin)
            .chain(restart)
            .chain(sync)
            .chain(told)
            .min()
    }

    /// Tells some members that we leave, and stops.
    pub fn leave(&mut self, now: Duration) {
        self.now = now;
        let mut effects = Effects::default();
        let _ = self.foca.leave_cluster(&mut effects);
        self.apply(effects);
        self.left = true;
        self.timers.clear();
    }

    /// The datagrams to send, sealed.
    pub fn take_outgoing(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.outgoing)
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// This node, every member that is alive or only suspected (a suspected node
    /// keeps its VIPs until it is declared down), and every member restarting within
    /// its grace.
    pub fn live_nodes(&self) -> BTreeSet<String> {
        std::iter::once(self.me().name.clone())
            .chain(self.foca.iter_members().map(|m| m.id().name.clone()))
            .chain(self.restarting.keys().cloned())
            .collect()
    }

    /// Whether `name` is in [`Membership::live_nodes`], without building the set.
    pub fn is_live(&self, name: &str) -> bool {
        self.me().name == name
            || self.foca.iter_members().any(|m| m.id().name == name)
            || self.restarting.contains_key(name)
    }

    /// Whether any other member is alive: without one there is nobody to hand over to.
    pub fn has_peers(&self) -> bool {
        self.foca.num_members() > 0
    }

    /// Datagrams refused for a wrong key (or none).
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Whether this node is on the losing side of a key mismatch: more of its peers
    /// (addresses it was told of, not members) sent datagrams that do not verify with
    /// its key within the last few seconds than it has members. Such a node is never
    /// admitted by them, and alone it would take every VIP they also answer: it
    /// takes none. A stranger's datagrams (not a peer's address) do not count, nor
    /// do those claiming a member's address: nobody can silence a node that has
    /// members by sending garbage.
    pub fn outvoted(&self) -> bool {
        let members: BTreeSet<IpAddr> =
            self.foca.iter_members().map(|m| m.id().addr.ip()).collect();
        let peers: BTreeSet<IpAddr> = self.peers.iter().map(|p| p.ip()).collect();
        let refusing = self
            .refused_at
            .iter()
            .filter(|(ip, at)| {
                peers.contains(ip)
                    && !members.contains(ip)
                    && self.now.saturating_sub(**at) <= KEY_MISMATCH_WINDOW
            })
            .count();
        refusing > members.len()
    }

    /// Bytes of membership datagrams sent (UDP payload).
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    fn rejoin_through_peers(&mut self) {
        self.next_rejoin = self.now + REJOIN_INTERVAL;
        // Which peers are members, looked up in the (sorted) peers: one pass over the
        // members and no set of them every interval (it was most of a speaker's own
        // work at 1,000 members).
        let mut member = vec![false; self.peers.len()];
        if !self.peers.is_empty() {
            for m in self.foca.iter_members() {
                if let Ok(i) = self.peers.binary_search(&m.id().addr) {
                    member[i] = true;
                }
            }
        }
        let strangers: Vec<SocketAddr> = self
            .peers
            .iter()
            .zip(member)
            .filter(|(_, member)| !member)
            .map(|(peer, _)| *peer)
            .collect();
        for addr in strangers {
            // Only the address matters for sending; the peer's answer names it.
            let placeholder = NodeId {
                name: String::new(),
                addr,
                generation: 0,
            };
            let mut effects = Effects::default();
            let _ = self.foca.announce(placeholder, &mut effects);
            self.apply(effects);
        }
    }

    fn apply(&mut self, effects: Effects) {
        for (after, timer) in effects.timers {
            self.timer_seq += 1;
            self.timers
                .insert((self.now + after, self.timer_seq), timer);
        }
        for (to, message) in effects.sends {
            let datagram = self.key.seal(&message);
            self.bytes_sent += datagram.len() as u64;
            self.outgoing.push((to, datagram));
        }
        for notification in effects.notifications {
            let event = match notification {
                OwnedNotification::MemberUp(id) => {
                    // A restarting member's successor: the grace is over.
                    self.restarting.remove(&id.name);
                    Event::Up(id.name)
                }
                OwnedNotification::MemberDown(id) => {
                    self.told_down.remove(&id);
                    let name = id.name.clone();
                    self.down_news.insert(id, self.now);
                    Event::Down(name)
                }
                // A newer identity took the place of an older one at the same
                // address: a new process (a restart's successor that came before
                // its predecessor was found gone) or a rejoin. Its grace is over.
                OwnedNotification::Rename(_, id) => {
                    self.restarting.remove(&id.name);
                    Event::Renewed(id.name)
                }
                OwnedNotification::Rejoin(_) => Event::Rejoined,
                _ => continue,
            };
            self.events.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::simulation::{Network, node_addr};
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn three_members_join_through_one_peer_and_see_each_other() {
        let mut net = Network::new(3, Timings::default(), 1);
        net.start_through(&[node_addr(0)]);
        net.run_until(Duration::from_secs(2));
        for i in 0..3 {
            assert_eq!(net.live_nodes(i), names(&["node-0", "node-1", "node-2"]));
        }
    }

    /// A dead member is out of everyone's live set after the suspicion timeout, and
    /// never before the earliest moment the timings allow.
    #[test]
    fn a_dead_member_is_declared_down_within_the_bounds_of_the_timings() {
        let timings = Timings::default();
        let mut net = Network::new(3, timings, 7);
        net.start_through(&[node_addr(0)]);
        net.run_until(Duration::from_secs(2));
        let killed_at = net.now();
        net.kill(2);
        let mut first_without = None;
        while net.now() < killed_at + Duration::from_secs(2) {
            net.step(MS);
            if first_without.is_none() && !net.live_nodes(0).contains("node-2") {
                first_without = Some(net.now() - killed_at);
            }
            if first_without.is_some() && !net.live_nodes(1).contains("node-2") {
                break;
            }
        }
        let detected = first_without.expect("node-2 declared down");
        assert!(detected >= timings.earliest_down(), "{detected:?}");
        assert!(detected <= timings.latest_down(3) + 2 * MS, "{detected:?}");
        assert_eq!(net.live_nodes(0), names(&["node-0", "node-1"]));
        assert_eq!(net.live_nodes(1), names(&["node-0", "node-1"]));
    }

    /// A member that misses every copy of the news that another is down (a lossy
    /// link to it, for that news only) drops the dead member within
    /// `Timings::missed_news_bound` of the moment every other member has: its next
    /// sync asks one of them. Without sync (foca alone) it holds the dead member live
    /// until its own round-robin probe comes to it, here seconds later.
    #[test]
    fn a_member_that_missed_the_news_of_a_death_catches_up_within_the_bound() {
        let (members, victim, behind) = (100, 10, 60);
        let name = format!("node-{victim}");
        let caught_up_after_the_others = |timings: Timings| {
            let mut net = Network::new(members, timings, 47);
            net.start_formed();
            net.run_until(Duration::from_secs(2));
            net.lose_down_news(Some((behind, victim)));
            net.kill(victim);
            let killed_at = net.now();
            net.watch(victim);
            let mut others_done = None;
            while net.watched_gone_at(behind).is_none() {
                net.step(MS);
                let (live, _) = net.watched().expect("watched");
                let behind_live = usize::from(net.watched_gone_at(behind).is_none());
                if live == behind_live {
                    others_done.get_or_insert(net.now());
                }
                assert!(
                    net.now() < killed_at + 2 * timings.latest_down(members),
                    "never dropped"
                );
            }
            // Every copy was lost, none was missing: the others told it.
            assert!(net.lost_news() > 0);
            assert!(!net.live_nodes(behind).contains(&name));
            let caught_up = net.watched_gone_at(behind).expect("dropped");
            caught_up.saturating_sub(others_done.expect("the others dropped it"))
        };
        let timings = Timings::default();
        let bound = timings.missed_news_bound().expect("sync on by default");
        // A hop and a tick of the simulator each way, and the timer's tick.
        let late = caught_up_after_the_others(timings);
        assert!(late <= bound + 3 * MS, "{late:?} after the others");
        let foca_alone = caught_up_after_the_others(Timings {
            sync_interval: None,
            ..timings
        });
        assert!(foca_alone > bound + 3 * MS, "{foca_alone:?}");
    }

    /// A sync that names a live member as down (a member that declared it down
    /// before it rejoined, a replay) only gets it suspected here, and it refutes: it
    /// is never dropped. The same sync under another key changes nothing at all.
    #[test]
    fn a_sync_that_names_a_live_member_is_refuted() {
        let all = names(&["node-0", "node-1", "node-2"]);
        let mut net = Network::new(3, Timings::default(), 53);
        net.start_through(&[node_addr(0)]);
        net.run_until(Duration::from_secs(2));
        let state_of_1 = |net: &Network| {
            let member = net
                .membership(0)
                .foca
                .iter_members()
                .find(|m| m.id().name == "node-1")
                .expect("node-1 a member");
            (member.state(), member.incarnation())
        };
        let (state, incarnation) = state_of_1(&net);
        assert_eq!(state, foca::State::Alive);
        let sync = SyncMessage {
            answer_me: true,
            down: vec![net.id(1)],
        };
        let message = [SYNC_MAGIC, &postcard::to_allocvec(&sync).unwrap()].concat();
        let wrong = SharedKey::new(b"not the cluster's key!").seal(&message);
        net.deliver_raw(0, node_addr(2), &wrong);
        assert_eq!(state_of_1(&net), (foca::State::Alive, incarnation));
        let sealed = SharedKey::new(b"simulated cluster key").seal(&message);
        net.deliver_raw(0, node_addr(2), &sealed);
        assert_eq!(state_of_1(&net), (foca::State::Suspect, incarnation));
        for _ in 0..2000 {
            net.step(MS);
            for i in 0..3 {
                assert_eq!(net.live_nodes(i), all, "{:?}", net.events(i));
            }
        }
        // node-1 refuted: alive again, in a later incarnation, same identity.
        let (state, refuted) = state_of_1(&net);
        assert_eq!(state, foca::State::Alive);
        assert!(refuted > incarnation);
        for i in 0..3 {
            assert!(
                !net.events(i)
                    .iter()
                    .any(|e| matches!(e, Event::Down(_) | Event::Rejoined | Event::Renewed(_))),
                "node-{i}: {:?}",
                net.events(i)
            );
        }
    }

    /// A pause shorter than the suspicion timeout is survived: the paused member
    /// refutes the suspicion when it runs again, nobody ever drops it, and it keeps
    /// its identity (no "declared down; rejoined": its peers would drop its old
    /// identity and admit the new one, and its VIPs could move meanwhile). Both
    /// orders in which a resumed speaker may take what waited for it: the
    /// datagrams first, or its timers first (then it suspects the member whose
    /// answer still waits in its socket, which refutes in turn).
    #[test]
    fn a_paused_member_is_never_dropped() {
        let all = names(&["node-0", "node-1", "node-2"]);
        for (seed, timers_first) in [(3, false), (4, false), (3, true), (4, true), (5, true)] {
            let mut net = Network::new(3, Timings::default(), seed);
            net.start_through(&[node_addr(0), node_addr(1), node_addr(2)]);
            net.run_until(Duration::from_secs(2));
            let before: Vec<NodeId> = (0..3).map(|i| net.id(i)).collect();
            let events_before: Vec<usize> = (0..3).map(|i| net.events(i).len()).collect();
            for round in 0..30 {
                net.pause(1, true);
                for _ in 0..100 {
                    net.step(MS);
                    assert_eq!(net.live_nodes(0), all, "seed {seed} round {round}");
                    assert_eq!(net.live_nodes(2), all, "seed {seed} round {round}");
                }
                if timers_first {
                    net.resume_timers_first(1);
                } else {
                    net.pause(1, false);
                }
                // Every second, as `cargo xtask bench failover` pauses a speaker.
                for _ in 0..900 {
                    net.step(MS);
                    for i in 0..3 {
                        assert_eq!(
                            net.live_nodes(i),
                            all,
                            "seed {seed}, timers first {timers_first}, round {round}: {:?}",
                            net.events(i)
                        );
                    }
                }
            }
            for i in 0..3 {
                assert_eq!(
                    net.id(i),
                    before[i],
                    "seed {seed}, timers first {timers_first}"
                );
                let news = &net.events(i)[events_before[i]..];
                assert!(
                    news.is_empty(),
                    "seed {seed}, timers first {timers_first}: node-{i}: {news:?}"
                );
            }
        }
    }

    /// A sender with another key is refused: it never becomes a member, and what it
    /// says about others (here: that node-1 is down) changes nothing.
    #[test]
    fn a_wrong_key_is_refused_and_cannot_declare_anyone_down() {
        let mut net = Network::new(3, Timings::default(), 5);
        net.start_through(&[node_addr(0)]);
        net.run_until(Duration::from_secs(1));
        // An intruder with a different key, at a fourth address, that knows node-1
        // and says it is down.
        let intruder_addr = node_addr(3);
        let intruder = NodeId {
            name: "intruder".into(),
            addr: intruder_addr,
            generation: 1,
        };
        let mut forged = Effects::default();
        let down = foca::Member::down(net.id(1));
        let mut rogue = Foca::new(
            intruder,
            Timings::default().foca_config(4),
            StdRng::seed_from_u64(1),
            PostcardCodec,
        );
        rogue
            .apply_many(
                [
                    foca::Member::alive(net.id(0)),
                    foca::Member::alive(net.id(1)),
                    down,
                ]
                .into_iter(),
                true,
                &mut forged,
            )
            .unwrap();
        rogue.gossip(&mut forged).unwrap();
        assert!(!forged.sends.is_empty());
        let wrong_key = SharedKey::new(b"not the cluster's key!");
        for _ in 0..50 {
            for (_, message) in &forged.sends {
                net.deliver_raw(0, intruder_addr, &wrong_key.seal(message));
            }
            net.step(10 * MS);
        }
        // With the right key these datagrams would declare node-1 down (it would
        // rejoin at once) and admit the intruder: nothing of the sort happened.
        let news: Vec<&Event> = net
            .events(0)
            .iter()
            .filter(|e| !matches!(e, Event::Refused { .. }))
            .collect();
        assert_eq!(
            news,
            [&Event::Up("node-1".into()), &Event::Up("node-2".into())]
        );
        assert_eq!(net.live_nodes(0), names(&["node-0", "node-1", "node-2"]));
        assert_eq!(net.live_nodes(2), names(&["node-0", "node-1", "node-2"]));
        assert!(net.refused(0) >= 50, "{}", net.refused(0));
        assert!(net.events(0).contains(&Event::Refused {
            from: intruder_addr
        }));
    }

    /// The odd one out of a key mismatch knows it: its peers' datagrams do not
    /// verify and it has no member, so it takes no VIP; the two that agree are not
    /// troubled by it.
    #[test]
    fn a_speaker_refused_by_more_peers_than_it_has_members_is_outvoted() {
        let all = [node_addr(0), node_addr(1), node_addr(2)];
        let mut net = Network::new(3, Timings::default(), 23);
        net.rekey(2, SharedKey::new(b"not the cluster's key!"));
        net.start_through(&all);
        net.run_until(Duration::from_secs(2));
        assert_eq!(net.live_nodes(0), names(&["node-0", "node-1"]));
        assert_eq!(net.live_nodes(2), names(&["node-2"]));
        assert!(!net.outvoted(0) && !net.outvoted(1));
        assert!(net.outvoted(2));
        // Two speakers, two keys: neither can tell whose is right, neither answers.
        let mut pair = Network::new(2, Timings::default(), 29);
        pair.rekey(1, SharedKey::new(b"not the cluster's key!"));
        pair.start_through(&all[..2]);
        pair.run_until(Duration::from_secs(2));
        assert!(pair.outvoted(0) && pair.outvoted(1));
    }

    /// Datagrams that do not verify from an address that is no peer (a stranger),
    /// or from a member's own address (forged), outvote nobody.
    #[test]
    fn strangers_and_forged_members_outvote_nobody() {
        let mut net = Network::new(2, Timings::default(), 31);
        net.start_through(&[node_addr(0), node_addr(1)]);
        net.run_until(Duration::from_secs(1));
        let wrong = SharedKey::new(b"not the cluster's key!");
        for from in [node_addr(7), node_addr(1)] {
            for _ in 0..10 {
                net.deliver_raw(0, from, &wrong.seal(b"garbage"));
                net.step(10 * MS);
            }
        }
        assert!(net.refused(0) >= 20);
        assert!(!net.outvoted(0));
        assert_eq!(net.live_nodes(0), names(&["node-0", "node-1"]));
        // Once the refusals are old, even a lonely node is not outvoted: node-0
        // alone, its peer node-1 refused a while ago.
        let mut lonely = Network::new(2, Timings::default(), 37);
        lonely.kill(1);
        lonely.start_one(0, &[node_addr(0), node_addr(1)]);
        lonely.deliver_raw(0, node_addr(1), &wrong.seal(b"garbage"));
        lonely.step(MS);
        assert!(lonely.outvoted(0));
        lonely.run_until(lonely.now() + KEY_MISMATCH_WINDOW + Duration::from_secs(1));
        assert!(!lonely.outvoted(0));
    }

    /// Peers given later (a speaker Pod that appears) are asked to let us in at
    /// once: two members started without each other end up members.
    #[test]
    fn peers_that_appear_later_are_joined() {
        let mut net = Network::new(2, Timings::default(), 41);
        net.start_one(0, &[node_addr(0)]);
        net.start_one(1, &[node_addr(1)]);
        net.run_until(Duration::from_secs(1));
        assert_eq!(net.live_nodes(0), names(&["node-0"]));
        net.set_peers(0, &[node_addr(0), node_addr(1)]);
        net.run_until(net.now() + 100 * MS);
        assert_eq!(net.live_nodes(0), names(&["node-0", "node-1"]));
        assert_eq!(net.live_nodes(1), names(&["node-0", "node-1"]));
    }

    /// A graceful leave: the others drop the member at once, without waiting for the
    /// suspicion timeout.
    #[test]
    fn a_member_that_leaves_is_dropped_without_suspicion() {
        let timings = Timings::default();
        let mut net = Network::new(3, timings, 11);
        net.start_through(&[node_addr(0)]);
        net.run_until(Duration::from_secs(2));
        let left_at = net.now();
        net.leave(2);
        while net.live_nodes(0).contains("node-2") || net.live_nodes(1).contains("node-2") {
            net.step(MS);
            assert!(net.now() - left_at < timings.earliest_down(), "too slow");
        }
    }

    /// A member that says it restarts stays live for the others until its successor
    /// joins, long past the suspicion timeout: its VIPs never move.
    #[test]
    fn a_restarting_member_stays_live_until_its_successor_joins() {
        let mut net = Network::new(3, Timings::default(), 17);
        net.start_through(&[node_addr(0)]);
        net.run_until(Duration::from_secs(2));
        let all = names(&["node-0", "node-1", "node-2"]);
        net.announce_restart(2, Duration::from_secs(3));
        // Two seconds down: ten times the takeover time.
        for _ in 0..2000 {
            net.step(MS);
            assert_eq!(net.live_nodes(0), all);
            assert_eq!(net.live_nodes(1), all);
        }
        assert!(
            net.events(0)
                .iter()
                .any(|e| matches!(e, Event::Restarting { name, .. } if name == "node-2")),
            "{:?}",
            net.events(0)
        );
        net.restart(2);
        for _ in 0..3000 {
            net.step(MS);
            assert_eq!(net.live_nodes(0), all);
            assert_eq!(net.live_nodes(1), all);
        }
        assert_eq!(net.live_nodes(2), all);
        assert!(
            !net.events(0)
                .iter()
                .any(|e| matches!(e, Event::RestartExpired(_))),
            "{:?}",
            net.events(0)
        );
    }

    /// A successor that joins before its predecessor is found gone takes its place
    /// at once (foca renames the member): the restart is over, and nothing expires
    /// after the grace.
    #[test]
    fn a_successor_that_comes_at_once_ends_the_restart() {
        let mut net = Network::new(3, Timings::default(), 43);
        net.start_through(&[node_addr(0)]);
        net.run_until(Duration::from_secs(2));
        let all = names(&["node-0", "node-1", "node-2"]);
        net.announce_restart(2, Duration::from_secs(1));
        net.step(MS);
        net.restart(2);
        for _ in 0..2000 {
            net.step(MS);
            assert_eq!(net.live_nodes(0), all);
            assert_eq!(net.live_nodes(1), all);
        }
        for i in 0..2 {
            let events = net.events(i);
            assert!(
                events.contains(&Event::Renewed("node-2".into())),
                "node-{i}: {events:?}"
            );
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, Event::RestartExpired(_) | Event::Down(_))),
                "node-{i}: {events:?}"
            );
        }
    }

    /// A member that said it restarts and does not come back is dropped once its
    /// grace is over; a replay of its notice changes nothing.
    #[test]
    fn a_restart_that_never_comes_ends_with_the_grace() {
        let mut net = Network::new(3, Timings::default(), 19);
        net.start_through(&[node_addr(0)]);
        net.run_until(Duration::from_secs(2));
        let grace = Duration::from_secs(1);
        let announced = net.now();
        net.announce_restart(2, grace);
        while net.live_nodes(0).contains("node-2") {
            net.step(MS);
            assert!(net.now() - announced < grace + 50 * MS, "not dropped");
        }
        assert!(net.now() - announced >= grace - MS);
        net.run_until(net.now() + 10 * MS);
        assert_eq!(net.live_nodes(1), names(&["node-0", "node-1"]));
        assert!(
            net.events(0)
                .contains(&Event::RestartExpired("node-2".into())),
            "{:?}",
            net.events(0)
        );
        // The notice again, as a replay: node-2 in that generation is no member.
        let notice = RestartNotice {
            id: net.id(2),
            grace_ms: 60_000,
        };
        let message = [RESTART_MAGIC, &postcard::to_allocvec(&notice).unwrap()].concat();
        let sealed = SharedKey::new(b"simulated cluster key").seal(&message);
        net.deliver_raw(0, node_addr(2), &sealed);
        net.run_until(net.now() + 10 * MS);
        assert_eq!(net.live_nodes(0), names(&["node-0", "node-1"]));
    }

    /// The defaults keep the order; each way of breaking it is refused with the
    /// flags named.
    #[test]
    fn fence_timings_must_keep_their_order() {
        let membership = Timings::default();
        let fence = FenceTimings::default();
        assert_eq!(fence.check(&membership), Ok(()));
        assert_eq!(membership.earliest_down(), 180 * MS);
        assert_eq!(membership.latest_down(3), 240 * MS);
        assert_eq!(fence.rejoin_hold(&membership), 360 * MS);
        assert_eq!(fence.heartbeat_interval(), Duration::from_nanos(8_333_333));
        let refused = |fence: FenceTimings, membership: Timings, start: &str| {
            let error = fence.check(&membership).expect_err("refused");
            assert!(error.starts_with(start), "{error}");
        };
        let order = "the fencing timings must be in this order: --tolerated-pause";
        for (pause, deadline) in [
            (0, 125),   // no pause
            (125, 125), // pause = deadline
            (123, 125), // no room for the heartbeat
            (100, 180), // deadline = takeover
            (100, 250), // deadline after takeover
        ] {
            let timings = FenceTimings {
                tolerated_pause: pause * MS,
                deadline: deadline * MS,
                ..fence
            };
            refused(timings, membership, order);
        }
        // A shorter suspicion timeout brings the takeover before the deadline
        // (30 + 70 ms).
        let quick = Timings {
            suspicion_timeout: 70 * MS,
            ..membership
        };
        refused(fence, quick, order);
        for grace in [100 * MS, Duration::from_secs(301)] {
            let timings = FenceTimings {
                restart_grace: grace,
                ..fence
            };
            refused(timings, membership, "--restart-grace");
        }
        let message = FenceTimings {
            deadline: 250 * MS,
            ..fence
        }
        .check(&membership)
        .expect_err("refused");
        assert!(
            message.contains(
                "--fence-deadline 250ms < the peers' takeover 180ms (--probe-interval 30ms + --suspicion-timeout 150ms)"
            ),
            "{message}"
        );
    }

    /// Both sides of a partition drop each other; once it heals they rejoin, and every
    /// member sees all three again.
    #[test]
    fn a_partition_heals_into_one_cluster() {
        let mut net = Network::new(3, Timings::default(), 13);
        net.start_through(&[node_addr(0), node_addr(1), node_addr(2)]);
        net.run_until(Duration::from_secs(2));
        net.isolate(2, true);
        net.run_until(net.now() + Duration::from_secs(2));
        assert_eq!(net.live_nodes(0), names(&["node-0", "node-1"]));
        assert_eq!(net.live_nodes(2), names(&["node-2"]));
        net.isolate(2, false);
        net.run_until(net.now() + Duration::from_secs(3));
        for i in 0..3 {
            assert_eq!(net.live_nodes(i), names(&["node-0", "node-1", "node-2"]));
        }
    }
}
