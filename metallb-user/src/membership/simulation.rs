//! Many members in one process, with simulated time and no sockets: a network that
//! delivers every datagram after a fixed latency, and faults (death, pause, isolation,
//! a graceful leave). The unit tests use it, and `cargo xtask bench membership`
//! measures with it how long a dead member takes to be declared down at 10, 100 and
//! 1,000 members, and what the protocol costs in bytes per second per node.
//!
//! Time moves in ticks of a millisecond: what arrives or falls due within a tick is
//! taken at its end (datagrams first, then the members' timers in member order).
//! Ticks in which nothing arrives and no timer falls due are skipped (they would
//! change nothing), and only the members that have something to do are called, so
//! that a run costs what the protocol does, not members × milliseconds.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap},
    net::SocketAddr,
    time::Duration,
};

use super::{Event, Membership, NodeId, RESTART_MAGIC, SYNC_MAGIC, SharedKey, Timings};

/// One way, between any two members.
pub const LATENCY: Duration = Duration::from_micros(200);
/// IPv4 and UDP headers, counted in the bytes per second.
const HEADERS: u64 = 28;
const TICK: Duration = Duration::from_millis(1);

/// Where simulated member `i` listens (the benchmarking range; nothing is sent).
pub fn node_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 18, (i >> 8) as u8, i as u8], super::DEFAULT_PORT))
}

fn index_of(addr: SocketAddr) -> Option<usize> {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            ((a, b) == (198, 18)).then_some(usize::from(c) << 8 | usize::from(d))
        }
        std::net::IpAddr::V6(_) => None,
    }
}

struct Member {
    membership: Membership,
    dead: bool,
    paused: bool,
    isolated: bool,
    /// What arrived while paused, taken when it runs again.
    backlog: Vec<(SocketAddr, Vec<u8>)>,
    events: Vec<Event>,
}

/// A datagram on its way: (arrival, sequence, to, from, bytes).
type InFlight = Reverse<(Duration, u64, usize, SocketAddr, Vec<u8>)>;

/// Who counts one member as live, followed through the others' events (see
/// [`Network::watch`]).
struct Watch {
    name: String,
    live: Vec<bool>,
    /// Since when each member no longer counts it as live.
    gone_at: Vec<Option<Duration>>,
    count: usize,
    /// When the count first fell.
    first_gone: Option<Duration>,
}

/// A link that loses every datagram to one member that carries foca's news that
/// another is down (see [`Network::lose_down_news`]).
struct LossyLink {
    to: usize,
    about: NodeId,
    lost: u64,
}

pub struct Network {
    members: Vec<Member>,
    timings: Timings,
    now: Duration,
    in_flight: BinaryHeap<InFlight>,
    seq: u64,
    key: SharedKey,
    seed: u64,
    /// The members' next deadlines ([`Membership::next_deadline`]). An entry may be
    /// stale (the deadline moved since), but each member's current deadline has one,
    /// pushed when the member was last called.
    deadlines: BinaryHeap<Reverse<(Duration, usize)>>,
    /// Members called since the last flush: their datagrams and events wait there.
    called: Vec<usize>,
    watch: Option<Watch>,
    lossy: Option<LossyLink>,
}

impl Watch {
    /// Member `i` had these events: if one names the watched member, whether it
    /// counts it as live now (every change of a live set comes with such an event).
    fn update(&mut self, i: usize, membership: &Membership, events: &[Event], now: Duration) {
        let names = |event: &Event| match event {
            Event::Up(name)
            | Event::Down(name)
            | Event::Renewed(name)
            | Event::RestartExpired(name)
            | Event::Restarting { name, .. } => *name == self.name,
            Event::Rejoined | Event::Refused { .. } | Event::Malformed { .. } => false,
        };
        if !events.iter().any(names) {
            return;
        }
        let live = membership.is_live(&self.name);
        if live == self.live[i] {
            return;
        }
        self.live[i] = live;
        if live {
            self.count += 1;
            self.gone_at[i] = None;
        } else {
            self.count -= 1;
            self.gone_at[i] = Some(now);
            self.first_gone.get_or_insert(now);
        }
    }
}

impl Network {
    pub fn new(size: usize, timings: Timings, seed: u64) -> Self {
        let key = SharedKey::new(b"simulated cluster key");
        let members = (0..size)
            .map(|i| Member {
                membership: Membership::new(
                    Self::identity(i, 1),
                    timings,
                    size,
                    key.clone(),
                    seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                ),
                dead: false,
                paused: false,
                isolated: false,
                backlog: Vec::new(),
                events: Vec::new(),
            })
            .collect();
        Self {
            members,
            timings,
            now: Duration::ZERO,
            in_flight: BinaryHeap::new(),
            seq: 0,
            key,
            seed,
            deadlines: BinaryHeap::new(),
            called: Vec::new(),
            watch: None,
            lossy: None,
        }
    }

    /// Member `i` was called (or replaced): its deadline may have moved, and it may
    /// have datagrams to send.
    fn called(&mut self, i: usize) {
        if let Some(deadline) = self.members[i].membership.next_deadline() {
            self.deadlines.push(Reverse((deadline, i)));
        }
        self.called.push(i);
    }

    fn identity(i: usize, generation: u64) -> NodeId {
        NodeId {
            name: format!("node-{i}"),
            addr: node_addr(i),
            generation,
        }
    }

    pub fn id(&self, i: usize) -> NodeId {
        self.members[i].membership.me().clone()
    }

    pub fn now(&self) -> Duration {
        self.now
    }

    /// Every member starts, joining through `peers`.
    pub fn start_through(&mut self, peers: &[SocketAddr]) {
        let now = self.now;
        for i in 0..self.members.len() {
            self.members[i].membership.start(now, peers);
            self.called(i);
        }
        self.flush();
    }

    /// Every member starts knowing every other as alive (a cluster already formed).
    /// The starts are spread over one probe interval (member `i` at `i / members`
    /// of it), so that the members probe out of step, as speakers started at
    /// different moments do: started at once, they would all probe in the same
    /// millisecond, and a death just before that round would be found sooner than
    /// one just after it.
    pub fn start_formed(&mut self) {
        let size = self.members.len();
        let ids: Vec<NodeId> = (0..size).map(|i| self.id(i)).collect();
        let first = self.now;
        for (i, id) in ids.iter().enumerate() {
            let at = first + self.timings.probe_interval * i as u32 / size as u32;
            if self.now < at {
                self.run_until(at);
            }
            let now = self.now;
            let membership = &mut self.members[i].membership;
            membership.start(now, &[node_addr(0)]);
            membership.assume_members(ids.iter().filter(|other| *other != id).cloned());
            self.called(i);
            self.flush();
        }
    }

    pub fn live_nodes(&self, i: usize) -> BTreeSet<String> {
        self.members[i].membership.live_nodes()
    }

    #[cfg(test)]
    pub(super) fn membership(&self, i: usize) -> &Membership {
        &self.members[i].membership
    }

    pub fn refused(&self, i: usize) -> u64 {
        self.members[i].membership.refused()
    }

    /// Gives member `i` another key (before it starts): a misconfigured speaker.
    pub fn rekey(&mut self, i: usize, key: SharedKey) {
        let size = self.members.len();
        self.members[i].membership = Membership::new(
            Self::identity(i, 1),
            self.timings,
            size,
            key,
            self.seed ^ (i as u64).rotate_left(29),
        );
        self.called(i);
    }

    /// Member `i`'s peers change (speaker Pods come and go).
    pub fn set_peers(&mut self, i: usize, peers: &[SocketAddr]) {
        let now = self.now;
        self.members[i].membership.set_peers(now, peers);
        self.called(i);
        self.flush();
    }

    /// Member `i` starts alone, joining through `peers`.
    pub fn start_one(&mut self, i: usize, peers: &[SocketAddr]) {
        let now = self.now;
        self.members[i].membership.start(now, peers);
        self.called(i);
        self.flush();
    }

    pub fn outvoted(&self, i: usize) -> bool {
        self.members[i].membership.outvoted()
    }

    pub fn events(&self, i: usize) -> &[Event] {
        &self.members[i].events
    }

    /// Stops member `i` for good (its datagrams in flight still arrive).
    pub fn kill(&mut self, i: usize) {
        self.members[i].dead = true;
    }

    /// Brings a killed member back as a new process (a newer generation).
    pub fn restart(&mut self, i: usize) {
        let generation = self.members[i].membership.me().generation + 1;
        let size = self.members.len();
        let mut membership = Membership::new(
            Self::identity(i, generation),
            self.timings,
            size,
            self.key.clone(),
            self.seed ^ generation.rotate_left(17) ^ i as u64,
        );
        membership.start(self.now, &[node_addr((i + 1) % size)]);
        let member = &mut self.members[i];
        member.membership = membership;
        member.dead = false;
        member.backlog.clear();
        self.called(i);
        self.flush();
    }

    /// Stops (true) or resumes (false) member `i`, as SIGSTOP and SIGCONT do: what
    /// arrives meanwhile waits in its socket.
    pub fn pause(&mut self, i: usize, paused: bool) {
        self.members[i].paused = paused;
        if !paused {
            let now = self.now;
            let member = &mut self.members[i];
            for (from, datagram) in std::mem::take(&mut member.backlog) {
                member.membership.handle_datagram(now, from, &datagram);
            }
            self.called(i);
            self.flush();
        }
    }

    /// Resumes member `i` (paused with [`Network::pause`]) its timers first: they
    /// are all due, and the speaker's task may fire them before it reads the
    /// datagrams that waited in its socket, which it takes next.
    pub fn resume_timers_first(&mut self, i: usize) {
        let now = self.now;
        let member = &mut self.members[i];
        member.paused = false;
        member.membership.advance(now);
        for (from, datagram) in std::mem::take(&mut member.backlog) {
            member.membership.handle_datagram(now, from, &datagram);
        }
        self.called(i);
        self.flush();
    }

    /// Cuts member `i` off the network (true) or back on (false).
    pub fn isolate(&mut self, i: usize, isolated: bool) {
        self.members[i].isolated = isolated;
    }

    pub fn leave(&mut self, i: usize) {
        let now = self.now;
        self.members[i].membership.leave(now);
        self.called(i);
        self.flush();
        self.members[i].dead = true;
    }

    /// Member `i` says it restarts within `grace`, then stops (as a speaker stopping
    /// with `--keep-datapath` does); [`Network::restart`] brings its successor.
    pub fn announce_restart(&mut self, i: usize, grace: Duration) {
        let now = self.now;
        self.members[i].membership.announce_restart(now, grace);
        self.called(i);
        self.flush();
        self.members[i].dead = true;
    }

    /// A datagram from outside the members (an intruder), delivered to `to` now.
    pub fn deliver_raw(&mut self, to: usize, from: SocketAddr, datagram: &[u8]) {
        let now = self.now;
        self.members[to]
            .membership
            .handle_datagram(now, from, datagram);
        self.called(to);
        self.flush();
    }

    pub fn run_until(&mut self, until: Duration) {
        while self.now < until {
            self.skip_idle(until);
            self.step(TICK);
        }
    }

    /// When something is next due: a datagram's arrival or a member's deadline (maybe
    /// earlier than anything, if a deadline moved since).
    fn next_due(&self) -> Option<Duration> {
        let arrival = self.in_flight.peek().map(|Reverse((at, ..))| *at);
        let deadline = self.deadlines.peek().map(|Reverse((at, _))| *at);
        arrival.into_iter().chain(deadline).min()
    }

    /// Moves time on over the ticks in which nothing is due (they would change
    /// nothing), to the tick before the next one with something due, or to the last
    /// tick before `until`, whichever comes first.
    fn skip_idle(&mut self, until: Duration) {
        let ticks_to = |at: Duration, now: Duration| {
            at.saturating_sub(now).as_nanos().div_ceil(TICK.as_nanos())
        };
        let to_until = ticks_to(until, self.now);
        let to_next = self
            .next_due()
            .map_or(to_until, |at| ticks_to(at, self.now));
        let skip = to_next.min(to_until).saturating_sub(1);
        self.now += TICK * u32::try_from(skip).unwrap_or(u32::MAX);
    }

    /// Advances time by `by`: delivers what arrives, fires what is due.
    pub fn step(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        while let Some(Reverse((at, _, _, _, _))) = self.in_flight.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, _, to, from, datagram))) = self.in_flight.pop() else {
                break;
            };
            let member = &mut self.members[to];
            if member.dead || member.isolated {
                continue;
            }
            if member.paused {
                member.backlog.push((from, datagram));
                continue;
            }
            member.membership.handle_datagram(now, from, &datagram);
            self.called(to);
        }
        let mut due = Vec::new();
        while let Some(Reverse((at, i))) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            due.push(*i);
            self.deadlines.pop();
        }
        // In member order, as if every member were asked in turn.
        due.sort_unstable();
        due.dedup();
        for i in due {
            let member = &mut self.members[i];
            // A dead or paused member's deadline is pushed again when it runs again.
            if member.dead || member.paused {
                continue;
            }
            // Or a stale entry: the member's current deadline has its own.
            if member
                .membership
                .next_deadline()
                .is_some_and(|deadline| deadline <= now)
            {
                member.membership.advance(now);
                self.called(i);
            }
        }
        self.flush();
    }

    /// Puts the outgoing datagrams of the members called since the last flush on the
    /// wire (in member order), and keeps their events.
    fn flush(&mut self) {
        let arrival = self.now + LATENCY;
        let mut called = std::mem::take(&mut self.called);
        called.sort_unstable();
        called.dedup();
        for &i in &called {
            let member = &mut self.members[i];
            let outgoing = member.membership.take_outgoing();
            let events = member.membership.take_events();
            if let Some(watch) = &mut self.watch {
                watch.update(i, &member.membership, &events, self.now);
            }
            member.events.extend(events);
            if member.isolated || member.dead {
                continue;
            }
            for (to, datagram) in outgoing {
                let Some(to) = index_of(to).filter(|to| *to < self.members.len()) else {
                    continue;
                };
                if self.members[to].isolated {
                    continue;
                }
                if let Some(link) = &mut self.lossy
                    && link.to == to
                    && tells_down(&self.key, &datagram, &link.about)
                {
                    link.lost += 1;
                    continue;
                }
                self.seq += 1;
                self.in_flight
                    .push(Reverse((arrival, self.seq, to, node_addr(i), datagram)));
            }
        }
        called.clear();
        self.called = called;
    }

    /// From now on every datagram to member `to` that carries foca's news that member
    /// `about` (as it is now) is down is lost, whatever else it carries: `to` misses
    /// every copy of that news. `None` mends the link.
    pub fn lose_down_news(&mut self, lossy: Option<(usize, usize)>) {
        self.lossy = lossy.map(|(to, about)| LossyLink {
            to,
            about: self.id(about),
            lost: 0,
        });
    }

    /// How many datagrams the lossy link lost.
    pub fn lost_news(&self) -> u64 {
        self.lossy.as_ref().map_or(0, |link| link.lost)
    }

    /// Starts following who counts member `i` as live (the others, not itself): see
    /// [`Network::watched`]. Ends the previous watch.
    pub fn watch(&mut self, i: usize) {
        let name = format!("node-{i}");
        let live: Vec<bool> = self
            .members
            .iter()
            .enumerate()
            .map(|(j, member)| j != i && member.membership.is_live(&name))
            .collect();
        self.watch = Some(Watch {
            count: live.iter().filter(|l| **l).count(),
            gone_at: vec![None; live.len()],
            name,
            live,
            first_gone: None,
        });
    }

    /// Of the watched member: how many others count it as live, and since the watch
    /// began, when the first of them stopped.
    pub fn watched(&self) -> Option<(usize, Option<Duration>)> {
        self.watch.as_ref().map(|w| (w.count, w.first_gone))
    }

    /// Of the watched member: since when member `i` no longer counts it as live.
    pub fn watched_gone_at(&self, i: usize) -> Option<Duration> {
        self.watch.as_ref().and_then(|w| w.gone_at[i])
    }

    fn bytes_sent(&self) -> u64 {
        self.members.iter().map(|m| m.membership.bytes_sent()).sum()
    }

    fn datagrams_sent(&self) -> u64 {
        self.seq
    }
}

/// Whether `datagram` (sealed with `key`) is a foca message that carries the news
/// that `about` is down.
fn tells_down(key: &SharedKey, datagram: &[u8], about: &NodeId) -> bool {
    let Some(message) = key.open(datagram) else {
        return false;
    };
    if message.starts_with(SYNC_MAGIC) || message.starts_with(RESTART_MAGIC) {
        return false;
    }
    let mut codec = foca::PostcardCodec;
    let mut rest = message;
    let Ok(header) = foca::Codec::<NodeId>::decode_header(&mut codec, &mut rest) else {
        return false;
    };
    // After the header: the number of updates (big-endian u16), then the updates
    // (none in a broadcast, which carries only custom data).
    let Some((count, mut rest)) = rest.split_first_chunk::<2>() else {
        return false;
    };
    if matches!(header.message, foca::Message::Broadcast) {
        return false;
    }
    (0..u16::from_be_bytes(*count)).any(|_| {
        foca::Codec::<NodeId>::decode_member(&mut codec, &mut rest)
            .is_ok_and(|m| m.id() == about && m.state() == foca::State::Down)
    })
}

/// What [`measure`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub members: usize,
    /// From a member's death to the first member that declares it down.
    pub first_detection: Vec<Duration>,
    /// From a member's death to the moment no member counts it as alive: the worst
    /// member's.
    pub full_detection: Vec<Duration>,
    /// From a member's death to the moment a member that missed every copy of the
    /// news that it is down (a lossy link) no longer counts it as alive.
    pub missed_news: Vec<Duration>,
    /// Membership bytes sent per second per node in a steady cluster, UDP and IPv4
    /// headers included.
    pub bytes_per_second_per_node: f64,
    /// The simulated time of the whole run (start, steady traffic, every kill).
    pub simulated: Duration,
}

/// The `q`-quantile (0..=1) of `samples` (nearest rank).
pub fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A formed cluster of `members`: its steady traffic for 5 s, then `trials` times a
/// member killed, the time until it is declared down by the first and by every other
/// member, and the member brought back; then `missed_trials` times the same with one
/// other member that misses every copy of the news (see [`Network::lose_down_news`]),
/// and the time until that member declares it down.
pub fn measure(
    members: usize,
    timings: Timings,
    trials: usize,
    missed_trials: usize,
    seed: u64,
) -> Figures {
    let mut net = Network::new(members, timings, seed);
    net.start_formed();
    net.run_until(Duration::from_secs(2));
    let (bytes_before, datagrams_before, from) =
        (net.bytes_sent(), net.datagrams_sent(), net.now());
    net.run_until(from + Duration::from_secs(5));
    let seconds = (net.now() - from).as_secs_f64();
    let bytes =
        (net.bytes_sent() - bytes_before) + (net.datagrams_sent() - datagrams_before) * HEADERS;
    let bytes_per_second_per_node = bytes as f64 / seconds / members as f64;

    let mut first_detection = Vec::new();
    let mut full_detection = Vec::new();
    let mut missed_news = Vec::new();
    let give_up = timings.latest_down(members) * 4 + Duration::from_secs(2);
    for trial in 0..trials + missed_trials {
        // Spread the victims; any member may be one.
        let victim = (trial * 7919 + seed as usize) % members;
        // And any other member may miss the news.
        let behind = (victim + 1 + trial * 31 % (members - 1).max(1)) % members;
        let missing = trial >= trials && behind != victim;
        if missing {
            net.lose_down_news(Some((behind, victim)));
        }
        net.kill(victim);
        let killed_at = net.now();
        net.watch(victim);
        // The first tick past `give_up`.
        let give_up_at = killed_at + give_up + TICK;
        loop {
            net.skip_idle(give_up_at);
            net.step(TICK);
            let (live, first_gone) = net.watched().unwrap_or_default();
            if live == 0 || net.now() >= give_up_at {
                if missing {
                    let gone = net.watched_gone_at(behind).unwrap_or(give_up_at);
                    missed_news.push(gone - killed_at);
                } else {
                    first_detection.push(first_gone.map_or(give_up, |at| at - killed_at));
                    full_detection.push(net.now() - killed_at);
                }
                break;
            }
        }
        net.lose_down_news(None);
        net.restart(victim);
        net.run_until(net.now() + Duration::from_secs(2));
    }
    Figures {
        members,
        first_detection,
        full_detection,
        missed_news,
        bytes_per_second_per_node,
        simulated: net.now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        let samples = ms(&[5, 1, 4, 2, 3]);
        assert_eq!(quantile(&samples, 0.5), Duration::from_millis(3));
        assert_eq!(quantile(&samples, 0.99), Duration::from_millis(5));
        assert_eq!(quantile(&samples, 0.0), Duration::from_millis(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    /// Skipping the ticks in which nothing is due changes nothing: a network run with
    /// `run_until` and one stepped every millisecond go through the same events and
    /// send the same bytes, across a death, a restart and a pause. And after every
    /// tick no running member has a timer left due, as when every member was asked
    /// at every tick.
    #[test]
    fn skipping_idle_ticks_changes_nothing() {
        fn step_checked(net: &mut Network) {
            net.step(TICK);
            for (i, member) in net.members.iter().enumerate() {
                let due = member.membership.next_deadline();
                assert!(
                    member.dead || member.paused || due.is_none_or(|due| due > net.now),
                    "node-{i} due at {due:?}, now {:?}",
                    net.now
                );
            }
        }
        let timings = Timings::default();
        let mut skipping = Network::new(10, timings, 3);
        let mut stepping = Network::new(10, timings, 3);
        for net in [&mut skipping, &mut stepping] {
            net.start_formed();
        }
        type Fault = fn(&mut Network);
        let phases: [(Duration, Fault); 4] = [
            (Duration::from_secs(1), |net| net.kill(4)),
            (Duration::from_secs(2), |net| net.restart(4)),
            (Duration::from_millis(2500), |net| net.pause(7, true)),
            (Duration::from_millis(2600), |net| net.pause(7, false)),
        ];
        for (at, fault) in phases {
            skipping.run_until(at);
            while stepping.now() < at {
                step_checked(&mut stepping);
            }
            fault(&mut skipping);
            fault(&mut stepping);
        }
        skipping.run_until(Duration::from_secs(4));
        while stepping.now() < Duration::from_secs(4) {
            step_checked(&mut stepping);
        }
        assert_eq!(skipping.now(), stepping.now());
        assert_eq!(skipping.bytes_sent(), stepping.bytes_sent());
        assert_eq!(skipping.datagrams_sent(), stepping.datagrams_sent());
        for i in 0..10 {
            assert_eq!(skipping.events(i), stepping.events(i), "node-{i}");
            assert_eq!(skipping.live_nodes(i), stepping.live_nodes(i), "node-{i}");
        }
        // node-4 was declared down and came back.
        assert!(skipping.events(0).contains(&Event::Down("node-4".into())));
    }

    /// The watch of a killed member counts, at every tick, the others whose live set
    /// holds it, and its first fall is when the first of them dropped it.
    #[test]
    fn the_watch_follows_the_live_sets() {
        let mut net = Network::new(10, Timings::default(), 9);
        net.start_formed();
        net.run_until(Duration::from_secs(2));
        for victim in [3, 8] {
            net.kill(victim);
            let name = format!("node-{victim}");
            net.watch(victim);
            assert_eq!(net.watched(), Some((9, None)));
            let mut first_gone = None;
            loop {
                net.step(TICK);
                let live = (0..10)
                    .filter(|i| *i != victim && net.live_nodes(*i).contains(&name))
                    .count();
                if live < 9 {
                    first_gone.get_or_insert(net.now());
                }
                assert_eq!(net.watched(), Some((live, first_gone)), "{:?}", net.now());
                if live == 0 {
                    break;
                }
                assert!(net.now() < Duration::from_secs(10), "never declared down");
            }
            net.restart(victim);
            net.run_until(net.now() + Duration::from_secs(2));
        }
    }

    /// Ten members: every death is detected by all within the timings' bound (plus
    /// the gossip that spreads it), and the steady traffic is what a few datagrams
    /// per probe interval make.
    #[test]
    fn ten_members() {
        let timings = Timings::default();
        let figures = measure(10, timings, 5, 0, 1);
        assert_eq!(figures.full_detection.len(), 5);
        for (first, full) in figures.first_detection.iter().zip(&figures.full_detection) {
            assert!(*first >= timings.earliest_down(), "{first:?}");
            assert!(
                *full <= timings.latest_down(10) + timings.probe_interval * 4,
                "{full:?}"
            );
        }
        // Per probe interval each node sends a probe, its ack and three gossips, well
        // under 1,400 bytes each.
        let per_interval = figures.bytes_per_second_per_node * timings.probe_interval.as_secs_f64();
        assert!((100.0..5.0 * 1400.0).contains(&per_interval), "{figures:?}");
    }
}
