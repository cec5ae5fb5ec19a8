//! The free addresses of one range, as a set of disjoint intervals, so that the lowest
//! free address is found, taken or given back in O(log n) whatever the range's size
//! and however many addresses are in use (walking the range instead is quadratic over
//! a pool's services).

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::config::AddrRange;

/// An address as a number, IPv4 and IPv6 alike.
pub(super) fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(ip) => u128::from(u32::from(ip)),
        IpAddr::V6(ip) => u128::from(ip),
    }
}

/// The address of `family_of`'s family numbered `n`.
fn address(n: u128, v4: bool) -> IpAddr {
    if v4 {
        // Only numbers taken from an IPv4 range come here.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// Free addresses of one range. An interval never starts with an address the pool
/// skips (`skip`), so the first interval's start is the lowest usable free address;
/// skipped addresses inside an interval are never reached, as only starts are
/// handed out or asked for by number.
#[derive(Clone, Debug)]
pub(super) struct FreeSet {
    v4: bool,
    /// Start -> end, inclusive, disjoint, not adjacent.
    intervals: BTreeMap<u128, u128>,
}

impl FreeSet {
    /// Every usable address of `range` free.
    pub fn new(range: &AddrRange, skip: &impl Fn(IpAddr) -> bool) -> Self {
        let mut set = Self {
            v4: range.is_ipv4(),
            intervals: BTreeMap::new(),
        };
        set.insert_trimmed(number(range.first), number(range.last), skip);
        set
    }

    /// The lowest free usable address.
    pub fn first(&self) -> Option<IpAddr> {
        self.intervals
            .first_key_value()
            .map(|(start, _)| address(*start, self.v4))
    }

    /// Marks `ip` used; false when it was not free.
    pub fn take(&mut self, ip: IpAddr, skip: &impl Fn(IpAddr) -> bool) -> bool {
        let n = number(ip);
        let Some((&start, &end)) = self.intervals.range(..=n).next_back() else {
            return false;
        };
        if end < n {
            return false;
        }
        self.intervals.remove(&start);
        if start < n {
            self.intervals.insert(start, n - 1);
        }
        if n < end {
            self.insert_trimmed(n + 1, end, skip);
        }
        true
    }

    /// Marks `ip` (a usable address of this range) free again; false when it was.
    pub fn give_back(&mut self, ip: IpAddr) -> bool {
        let n = number(ip);
        let (mut start, mut end) = (n, n);
        if let Some((&before, &before_end)) = self.intervals.range(..=n).next_back() {
            if before_end >= n {
                return false;
            }
            if n.checked_sub(1) == Some(before_end) {
                self.intervals.remove(&before);
                start = before;
            }
        }
        if let Some(after) = n.checked_add(1)
            && let Some(after_end) = self.intervals.remove(&after)
        {
            end = after_end;
        }
        self.intervals.insert(start, end);
        true
    }

    /// Adds `start..=end` without the skipped addresses at its start.
    fn insert_trimmed(&mut self, mut start: u128, end: u128, skip: &impl Fn(IpAddr) -> bool) {
        while start <= end && skip(address(start, self.v4)) {
            match start.checked_add(1) {
                Some(next) => start = next,
                None => return,
            }
        }
        if start <= end {
            self.intervals.insert(start, end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::addresses::is_buggy;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn set(range: &str, avoid_buggy: bool) -> FreeSet {
        FreeSet::new(&AddrRange::parse(range).unwrap(), &|ip| {
            avoid_buggy && is_buggy(ip)
        })
    }

    /// Takes the first free address `n` times.
    fn take_firsts(set: &mut FreeSet, n: usize, avoid_buggy: bool) -> Vec<String> {
        (0..n)
            .map_while(|_| {
                let first = set.first()?;
                assert!(set.take(first, &|ip| avoid_buggy && is_buggy(ip)));
                Some(first.to_string())
            })
            .collect()
    }

    #[test]
    fn hands_out_in_order_and_lowest_given_back_first() {
        let mut free = set("10.0.0.0/30", false);
        assert_eq!(
            take_firsts(&mut free, 5, false),
            ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(free.first(), None);
        free.give_back(ip("10.0.0.2"));
        free.give_back(ip("10.0.0.1"));
        assert_eq!(take_firsts(&mut free, 3, false), ["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn skipped_addresses_are_never_first() {
        let mut free = set("10.0.0.254-10.0.1.2", true);
        assert_eq!(
            take_firsts(&mut free, 5, true),
            ["10.0.0.254", "10.0.1.1", "10.0.1.2"]
        );
        free.give_back(ip("10.0.0.254"));
        free.give_back(ip("10.0.1.1"));
        assert_eq!(take_firsts(&mut free, 5, true), ["10.0.0.254", "10.0.1.1"]);
        // Taking an address in the middle leaves the buggy one after it out.
        let mut free = set("10.0.0.250-10.0.1.5", true);
        assert!(free.take(ip("10.0.0.254"), &|ip| is_buggy(ip)));
        assert!(!free.take(ip("10.0.0.254"), &|ip| is_buggy(ip)));
        assert_eq!(
            take_firsts(&mut free, 6, true),
            [
                "10.0.0.250",
                "10.0.0.251",
                "10.0.0.252",
                "10.0.0.253",
                "10.0.1.1",
                "10.0.1.2"
            ]
        );
    }

    #[test]
    fn merges_what_is_given_back() {
        let mut free = set("10.0.0.0/29", false);
        take_firsts(&mut free, 8, false);
        for last in [0, 2, 1, 7, 5, 6, 3, 4] {
            assert!(free.give_back(ip(&format!("10.0.0.{last}"))));
            assert!(!free.give_back(ip(&format!("10.0.0.{last}"))));
        }
        assert_eq!(free.intervals.len(), 1, "{:?}", free.intervals);
        assert_eq!(take_firsts(&mut free, 1, false), ["10.0.0.0"]);
    }

    /// Against a walk over the range: after every take or give-back of a
    /// pseudo-random churn, the first free address is the lowest usable one not
    /// taken.
    #[test]
    fn agrees_with_a_walk_under_churn() {
        for avoid_buggy in [false, true] {
            let range = AddrRange::parse("10.0.0.250-10.0.2.5").unwrap();
            let skip = |ip| avoid_buggy && is_buggy(ip);
            let usable: Vec<IpAddr> = range.iter().filter(|ip| !skip(*ip)).collect();
            let mut free = FreeSet::new(&range, &skip);
            let mut taken = std::collections::BTreeSet::new();
            let mut seed = 0x2545_f491_4f6c_dd1d_u64;
            let mut next = |bound: usize| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                usize::try_from(seed >> 33).unwrap() % bound
            };
            for _ in 0..5_000 {
                match next(3) {
                    0 => {
                        if let Some(first) = free.first() {
                            assert!(free.take(first, &skip));
                            taken.insert(first);
                        }
                    }
                    1 => {
                        let ip = usable[next(usable.len())];
                        assert_eq!(free.take(ip, &skip), taken.insert(ip), "take {ip}");
                    }
                    _ => {
                        let ip = usable[next(usable.len())];
                        assert_eq!(free.give_back(ip), taken.remove(&ip), "give back {ip}");
                    }
                }
                let walked = usable.iter().find(|ip| !taken.contains(*ip)).copied();
                assert_eq!(free.first(), walked);
            }
        }
    }

    #[test]
    fn whole_address_spaces() {
        let mut free = set("::/0", false);
        assert!(free.take(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), &|_| false));
        assert_eq!(take_firsts(&mut free, 2, false), ["::", "::1"]);
        free.give_back(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        free.give_back(ip("::"));
        assert_eq!(free.first(), Some(ip("::")));
        let mut free = set("0.0.0.0/0", true);
        assert!(free.take(ip("255.255.255.254"), &|ip| is_buggy(ip)));
        assert_eq!(take_firsts(&mut free, 1, true), ["0.0.0.1"]);
        let only_buggy = set("10.0.0.255-10.0.1.0", true);
        assert_eq!(only_buggy.first(), None);
    }
}
