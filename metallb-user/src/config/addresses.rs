//! Address ranges of pools: CIDRs (host bits masked, as MetalLB does) and explicit
//! `first-last` ranges.

use std::net::IpAddr;

use ipnet::IpNet;

/// An inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

impl AddrRange {
    /// Parses `a.b.c.d/n`, `x::/n` or `first-last`. A bare address is refused, like
    /// MetalLB does.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some((first, last)) = text.split_once('-') {
            let (first_text, last_text) = (first.trim(), last.trim());
            let first: IpAddr = first_text
                .parse()
                .map_err(|_| format!("invalid start address {first_text:?}"))?;
            let last: IpAddr = last_text
                .parse()
                .map_err(|_| format!("invalid end address {last_text:?}"))?;
            if first.is_ipv4() != last.is_ipv4() {
                return Err("start and end are of different address families".into());
            }
            if to_u128(first) > to_u128(last) {
                return Err(format!("start {first} is after end {last}"));
            }
            return Ok(Self { first, last });
        }
        if !text.contains('/') {
            return Err("neither a CIDR (address/prefix length) nor a range (first-last)".into());
        }
        let net: IpNet = text
            .trim()
            .parse()
            .map_err(|_| "invalid CIDR".to_string())?;
        // Host bits are masked, not refused: 192.0.2.5/30 is 192.0.2.4/30.
        let net = net.trunc();
        Ok(Self {
            first: net.network(),
            last: net.broadcast(),
        })
    }

    pub fn is_ipv4(&self) -> bool {
        self.first.is_ipv4()
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.is_ipv4()
            && to_u128(self.first) <= to_u128(addr)
            && to_u128(addr) <= to_u128(self.last)
    }

    pub fn overlaps(&self, other: &AddrRange) -> bool {
        self.is_ipv4() == other.is_ipv4()
            && to_u128(self.first) <= to_u128(other.last)
            && to_u128(other.first) <= to_u128(self.last)
    }

    /// Number of addresses (saturating at u128::MAX for ::/0).
    pub fn size(&self) -> u128 {
        (to_u128(self.last) - to_u128(self.first)).saturating_add(1)
    }

    /// Addresses in order, from `first`.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (first, last, v4) = (to_u128(self.first), to_u128(self.last), self.is_ipv4());
        (first..=last).map(move |n| {
            if v4 {
                IpAddr::from(std::net::Ipv4Addr::from(n as u32))
            } else {
                IpAddr::from(std::net::Ipv6Addr::from(n))
            }
        })
    }
}

impl std::fmt::Display for AddrRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// IPv4 addresses ending in .0 or .255, which some old equipment mishandles.
pub fn is_buggy(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(a) if matches!(a.octets()[3], 0 | 255))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_table() {
        let ok = [
            ("192.0.2.0/24", "192.0.2.0", "192.0.2.255"),
            ("192.0.2.5/30", "192.0.2.4", "192.0.2.7"),
            ("192.0.2.7/32", "192.0.2.7", "192.0.2.7"),
            ("192.0.2.1-192.0.2.5", "192.0.2.1", "192.0.2.5"),
            ("192.0.2.1 - 192.0.2.1", "192.0.2.1", "192.0.2.1"),
            ("fc00:f853::/120", "fc00:f853::", "fc00:f853::ff"),
            ("2001:db8::10-2001:db8::20", "2001:db8::10", "2001:db8::20"),
        ];
        for (text, first, last) in ok {
            let range = AddrRange::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((range.first, range.last), (ip(first), ip(last)), "{text}");
        }
        let bad = [
            ("192.0.2.1", "neither a CIDR"),
            ("192.0.2.0/33", "invalid CIDR"),
            ("192.0.2.300/24", "invalid CIDR"),
            ("192.0.2.9-192.0.2.1", "is after end"),
            ("192.0.2.1-2001:db8::1", "different address families"),
            ("foo-192.0.2.1", "invalid start address"),
            ("192.0.2.1-bar", "invalid end address"),
            ("", "neither a CIDR"),
        ];
        for (text, want) in bad {
            let err = AddrRange::parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn overlap_contains_size() {
        let a = AddrRange::parse("192.0.2.0/28").unwrap();
        let b = AddrRange::parse("192.0.2.15-192.0.2.20").unwrap();
        let c = AddrRange::parse("192.0.2.16/28").unwrap();
        let v6 = AddrRange::parse("::/0").unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a) && b.overlaps(&c));
        assert!(!a.overlaps(&c) && !a.overlaps(&v6));
        assert!(a.contains(ip("192.0.2.15")) && !a.contains(ip("192.0.2.16")));
        assert!(!a.contains(ip("::1")));
        assert_eq!(a.size(), 16);
        assert_eq!(v6.size(), u128::MAX);
        assert_eq!(b.iter().count(), 6);
        assert!(is_buggy(ip("10.0.0.0")) && is_buggy(ip("10.0.0.255")));
        assert!(!is_buggy(ip("10.0.1.1")) && !is_buggy(ip("2001:db8::ff")));
    }
}
