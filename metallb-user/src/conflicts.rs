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
    /// The count last seen, per VIP: what is new is the difference.
    seen: BTreeMap<IpAddr, u64>,
    ongoing: BTreeMap<IpAddr, Episode>,
    /// Episodes so far, per VIP (the metric).
    episodes: BTreeMap<IpAddr, u64>,
}

impl ConflictWatch {
    /// Takes the counters read at `now`. A VIP seen for the first time is only
    /// noted: its count may be an earlier agent's (an adopted datapath).
    pub fn observe(
        &mut self,
        now: Duration,
        counts: impl IntoIterator<Item = Claims>,
    ) -> Vec<ConflictEvent> {
        let mut events = Vec::new();
        let mut seen = BTreeMap::new();
        for claims in counts {
            let count = seen.entry(claims.ip).or_insert(0);
            *count += claims.conflicts;
        }
        for (ip, count) in &seen {
            let new = match self.seen.get(ip) {
                // A smaller count: entries were removed and added again.
                Some(before) => count.saturating_sub(*before),
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
        self.ongoing.retain(|ip, episode| {
            let over = now.saturating_sub(episode.last_claim) >= QUIET || !seen.contains_key(ip);
            if over {
                events.push(ConflictEvent::Ended {
                    ip: *ip,
                    claims: episode.claims,
                });
            }
            !over
        });
        self.seen = seen;
        events
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
}
