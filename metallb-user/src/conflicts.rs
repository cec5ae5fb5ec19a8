//! Claims by other hosts for the VIPs this node answers: the datapath counts each one
//! (a gratuitous ARP, an ARP reply or a Neighbor Advertisement for our VIP from
//! another MAC, `VipCounters::conflicts`); this turns the counts into episodes, so
//! that a split brain is logged once when it starts and once when it ends, not at
//! every claim, and counted as a metric. Pure: fed the counters and the time.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

/// An episode ends when no claim has come for this long.
pub const QUIET: Duration = Duration::from_secs(30);

/// One VIP's claim count on one interface, as the datapath reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claims {
    pub ip: IpAddr,
    pub conflicts: u64,
}

/// What is worth a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConflictEvent {
    /// Another host started claiming `ip`: `claims` so far.
    Started { ip: IpAddr, claims: u64 },
    /// No claim for [`QUIET`]: `claims` in the whole episode.
    Ended { ip: IpAddr, claims: u64 },
}

#[derive(Clone, Copy, Debug)]
struct Episode {
    claims: u64,
    last_claim: Duration,
}

/// Episodes per VIP.
#[derive(Debug, Default)]
pub struct ConflictWatch {
    /// The count last seen, per VIP, sorted by VIP: what is new is the difference.
    seen: Vec<(IpAddr, u64)>,
    ongoing: BTreeMap<IpAddr, Episode>,
    /// Episodes so far, per VIP (the metric).
    episodes: BTreeMap<IpAddr, u64>,
    /// The stamp of the last [`ConflictWatch::observe_changes`].
    stamp: Option<(u64, u64)>,
}

impl ConflictWatch {
    /// Takes the counters read at `now`. A VIP seen for the first time is only
    /// noted: its count may be an earlier agent's (an adopted datapath). Counts in
    /// the order of their VIPs cost no sort.
    pub fn observe(
        &mut self,
        now: Duration,
        counts: impl IntoIterator<Item = Claims>,
    ) -> Vec<ConflictEvent> {
        let mut events = Vec::new();
        let mut seen: Vec<(IpAddr, u64)> =
            counts.into_iter().map(|c| (c.ip, c.conflicts)).collect();
        if !seen.is_sorted_by_key(|(ip, _)| *ip) {
            seen.sort_by_key(|(ip, _)| *ip);
        }
        // One VIP on several interfaces: summed.
        seen.dedup_by(|(ip, count), (kept_ip, kept)| {
            let same = ip == kept_ip;
            if same {
                *kept += *count;
            }
            same
        });
        let mut before = self.seen.iter().peekable();
        for (ip, count) in &seen {
            while before.next_if(|(old, _)| old < ip).is_some() {}
            let new = match before.next_if(|(old, _)| old == ip) {
                // A smaller count: entries were removed and added again.
                Some((_, before)) => count.saturating_sub(*before),
                None => 0,
            };
            if new == 0 {
                continue;
            }
            match self.ongoing.get_mut(ip) {
                Some(episode) => {
                    episode.claims += new;
                    episode.last_claim = now;
                }
                None => {
                    self.ongoing.insert(
                        *ip,
                        Episode {
                            claims: new,
                            last_claim: now,
                        },
                    );
                    *self.episodes.entry(*ip).or_insert(0) += 1;
                    events.push(ConflictEvent::Started {
                        ip: *ip,
                        claims: new,
                    });
                }
            }
        }
        // A VIP no longer counted (no longer answered) ends its episode too.
        self.end_episodes(now, &mut events, |ip| {
            seen.binary_search_by_key(ip, |(seen, _)| *seen).is_err()
        });
        self.seen = seen;
        events
    }

    /// What [`ConflictWatch::observe`] returns at `now` when the counts are those it
    /// was given last time (no claim since, the same VIPs): the episodes that have
    /// been quiet for [`QUIET`] end. Costs the ongoing episodes, not the VIPs.
    pub fn quiet(&mut self, now: Duration) -> Vec<ConflictEvent> {
        let mut events = Vec::new();
        self.end_episodes(now, &mut events, |_| false);
        events
    }

    /// Ends the episodes quiet for [`QUIET`] at `now`, and those of the VIPs `gone`.
    fn end_episodes(
        &mut self,
        now: Duration,
        events: &mut Vec<ConflictEvent>,
        gone: impl Fn(&IpAddr) -> bool,
    ) {
        self.ongoing.retain(|ip, episode| {
            let over = now.saturating_sub(episode.last_claim) >= QUIET || gone(ip);
            if over {
                events.push(ConflictEvent::Ended {
                    ip: *ip,
                    claims: episode.claims,
                });
            }
            !over
        });
    }

    /// [`ConflictWatch::observe`] when `stamp` differs from the last call's, else
    /// [`ConflictWatch::quiet`]. `stamp` must change whenever a count or the set of
    /// VIPs may have (the datapath's count of all claims, the revision of its
    /// entries): then `counts` is read only when a claim came or the VIPs changed.
    pub fn observe_changes<I: IntoIterator<Item = Claims>>(
        &mut self,
        now: Duration,
        stamp: (u64, u64),
        counts: impl FnOnce() -> I,
    ) -> Vec<ConflictEvent> {
        if self.stamp == Some(stamp) {
            return self.quiet(now);
        }
        self.stamp = Some(stamp);
        self.observe(now, counts())
    }

    /// Episodes so far, per VIP.
    pub fn episodes(&self) -> &BTreeMap<IpAddr, u64> {
        &self.episodes
    }

    /// VIPs in an episode now.
    pub fn ongoing(&self) -> impl Iterator<Item = &IpAddr> {
        self.ongoing.keys()
    }
}

/// The claims of the VIPs this node answers (`answered`: the datapath counts none
/// for the others), for [`ConflictWatch::observe`].
pub fn answered_claims(
    records: impl IntoIterator<Item = (IpAddr, bool, u64)>,
) -> impl Iterator<Item = Claims> {
    records
        .into_iter()
        .filter(|(_, answered, _)| *answered)
        .map(|(ip, _, conflicts)| Claims { ip, conflicts })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn claims(ip: &str, conflicts: u64) -> Claims {
        Claims {
            ip: ip.parse().unwrap(),
            conflicts,
        }
    }

    /// One line when claims start, none while they go on, one when they have been
    /// quiet for 30 s; a new burst is a new episode. Counts already there when a VIP
    /// is first seen (an adopted datapath) start nothing.
    #[test]
    fn claims_make_one_episode_until_they_stop() {
        let mut watch = ConflictWatch::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(watch.observe(Duration::ZERO, [claims("192.0.2.1", 7)]), []);
        assert_eq!(
            watch.observe(S, [claims("192.0.2.1", 9)]),
            [ConflictEvent::Started { ip, claims: 2 }]
        );
        for t in 2..20 {
            assert_eq!(
                watch.observe(t * S, [claims("192.0.2.1", 9 + u64::from(t))]),
                []
            );
        }
        assert_eq!(watch.ongoing().collect::<Vec<_>>(), [&ip]);
        // The last claim at 19 s: over at 49 s, not before.
        assert_eq!(watch.observe(48 * S, [claims("192.0.2.1", 28)]), []);
        assert_eq!(
            watch.observe(49 * S, [claims("192.0.2.1", 28)]),
            [ConflictEvent::Ended { ip, claims: 21 }]
        );
        assert_eq!(watch.ongoing().count(), 0);
        assert_eq!(
            watch.observe(50 * S, [claims("192.0.2.1", 29)]),
            [ConflictEvent::Started { ip, claims: 1 }]
        );
        assert_eq!(watch.episodes()[&ip], 2);
    }

    /// A VIP on two interfaces is one VIP; a VIP this node stops answering ends its
    /// episode; suppressed VIPs are left out.
    #[test]
    fn interfaces_are_summed_and_a_vip_that_goes_ends_its_episode() {
        let mut watch = ConflictWatch::default();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        watch.observe(
            Duration::ZERO,
            [claims("2001:db8::1", 1), claims("2001:db8::1", 1)],
        );
        assert_eq!(
            watch.observe(S, [claims("2001:db8::1", 1), claims("2001:db8::1", 4)]),
            [ConflictEvent::Started { ip, claims: 3 }]
        );
        assert_eq!(
            watch.observe(2 * S, []),
            [ConflictEvent::Ended { ip, claims: 3 }]
        );
        let suppressed = [(ip, false, 10)];
        assert_eq!(answered_claims(suppressed).count(), 0);
    }

    /// With the same stamp the counts are not read and only quiet episodes end, as
    /// `observe` with the same counts would end them: still one line when claims
    /// start and one when they stop. A new stamp reads the counts again.
    #[test]
    fn the_counts_are_read_only_when_the_stamp_moves() {
        let mut watch = ConflictWatch::default();
        let mut twin = ConflictWatch::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let unread = || -> Vec<Claims> { panic!("counts read with an unchanged stamp") };
        let count = |n| vec![claims("192.0.2.1", n)];
        let steps = [
            (0u32, (0u64, 1u64), 4u64, vec![]),
            (1, (0, 1), 4, vec![]),
            (2, (1, 1), 5, vec![ConflictEvent::Started { ip, claims: 1 }]),
            (3, (1, 1), 5, vec![]),
            (10, (2, 1), 6, vec![]),
            (39, (2, 1), 6, vec![]),
            (40, (2, 1), 6, vec![ConflictEvent::Ended { ip, claims: 2 }]),
            (41, (2, 1), 6, vec![]),
        ];
        let mut last = None;
        for (t, stamp, n, want) in steps {
            let events = if last == Some(stamp) {
                watch.observe_changes(t * S, stamp, unread)
            } else {
                watch.observe_changes(t * S, stamp, || count(n))
            };
            last = Some(stamp);
            assert_eq!(events, want, "at {t} s");
            assert_eq!(twin.observe(t * S, count(n)), want, "observe at {t} s");
        }
        // The VIPs changed (another revision): a burst is a new episode.
        assert_eq!(
            watch.observe_changes(42 * S, (2, 2), || count(9)),
            [ConflictEvent::Started { ip, claims: 3 }]
        );
        assert_eq!(watch.episodes()[&ip], 2);
        assert_eq!(
            watch.observe_changes(43 * S, (2, 3), Vec::new),
            [ConflictEvent::Ended { ip, claims: 3 }]
        );
    }
}
