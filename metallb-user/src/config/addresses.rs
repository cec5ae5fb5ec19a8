//! Address ranges of pools: CIDRs (host bits masked, as MetalLB does) and explicit
//! `first-last` ranges, read as strictly as Go's `net.ParseCIDR` / `net.ParseIP` read
//! them in MetalLB; the special blocks no pool may hold; the subnet-router anycast
//! address an IPv6 CIDR pool never hands out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// One entry of a pool's `spec.addresses`, as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolEntry {
    /// Every address the entry names.
    pub range: AddrRange,
    /// The subnet-router anycast address of an IPv6 CIDR of prefix length 126 or less
    /// (RFC 4291 2.6.1: the prefix with an all-zero interface identifier, which every
    /// router of the link answers): never handed out. /127 (RFC 6164) and /128 have
    /// none. A `first-last` range has no prefix to speak of, so it has none either: it
    /// is taken at its word, address by address (MetalLB skips no such address at all).
    pub anycast: Option<IpAddr>,
}

impl PoolEntry {
    /// Parses `a.b.c.d/n`, `x::/n` or `first-last`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let range = AddrRange::parse(text)?;
        let anycast = match text.trim().split_once('/') {
            Some((_, prefix))
                if range.first.is_ipv6()
                    && matches!(prefix_length(prefix), Some(length) if length <= 126) =>
            {
                Some(range.first)
            }
            _ => None,
        };
        Ok(Self { range, anycast })
    }

    /// The addresses that may be handed out: the range without its anycast address.
    pub fn usable(&self) -> AddrRange {
        match self.anycast {
            Some(anycast) if anycast == self.range.first && self.range.first != self.range.last => {
                AddrRange {
                    first: from_u128(to_u128(anycast) + 1, false),
                    last: self.range.last,
                }
            }
            _ => self.range,
        }
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::from(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::from(Ipv6Addr::from(n))
    }
}

/// Decimal digits only (no sign, no space; leading zeros allowed, as Go's `dtoi`).
fn prefix_length(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An address as Go's `net.ParseIP` reads it, which (like Rust's) refuses an IPv4
/// part with a leading zero: `010.0.0.1` could be octal to one reader and decimal to
/// another. Zones (`%eth0`) are refused too.
fn parse_address(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| {
        let dotted = text.rsplit(':').next().unwrap_or(text);
        let leading_zero = dotted.split('.').any(|part| {
            part.len() > 1 && part.starts_with('0') && part.bytes().all(|b| b.is_ascii_digit())
        });
        if leading_zero && dotted.contains('.') {
            format!(
                "{text:?} has an IPv4 part with a leading zero, which MetalLB (Go) refuses as ambiguous (octal or decimal?); write it without the zero"
            )
        } else {
            format!("{text:?} is not an IP address")
        }
    })
}

impl AddrRange {
    /// Parses `a.b.c.d/n`, `x::/n` or `first-last`. A bare address is refused, like
    /// MetalLB does. Leading and trailing blanks are ignored (Go's ParseCIDR would
    /// refuse them around a CIDR; YAML hardly produces them, and they mean nothing).
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some((first, last)) = text.split_once('-') {
            let (first_text, last_text) = (first.trim(), last.trim());
            let first =
                parse_address(first_text).map_err(|why| format!("invalid start address: {why}"))?;
            let last =
                parse_address(last_text).map_err(|why| format!("invalid end address: {why}"))?;
            if first.is_ipv4() != last.is_ipv4() {
                return Err("start and end are of different address families".into());
            }
            if to_u128(first) > to_u128(last) {
                return Err(format!("start {first} is after end {last}"));
            }
            return Ok(Self { first, last });
        }
        let Some((address, prefix)) = text.trim().split_once('/') else {
            return Err("neither a CIDR (address/prefix length) nor a range (first-last)".into());
        };
        let address = parse_address(address).map_err(|why| {
            if why.contains("leading zero") {
                format!("invalid CIDR: {why}")
            } else {
                "invalid CIDR".to_string()
            }
        })?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let length = match prefix_length(prefix) {
            Some(length) if length <= bits => length,
            Some(length) => {
                return Err(format!(
                    "invalid CIDR: prefix length {length} is more than {bits}"
                ));
            }
            None => return Err("invalid CIDR".into()),
        };
        // Host bits are masked, not refused: 192.0.2.5/30 is 192.0.2.4/30.
        let host_bits = bits - length;
        let host_mask = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let network = to_u128(address) & !host_mask;
        let v4 = address.is_ipv4();
        Ok(Self {
            first: from_u128(network, v4),
            last: from_u128(network | host_mask, v4),
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
        (first..=last).map(move |n| from_u128(n, v4))
    }
}

impl std::fmt::Display for AddrRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A block of addresses that can never be a VIP on a LAN: no pool may hold any of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialBlock {
    /// As written in messages.
    pub name: &'static str,
    /// Why no address of it can be a VIP.
    pub what: &'static str,
    pub range: AddrRange,
}

const fn v4_block(
    name: &'static str,
    what: &'static str,
    first: [u8; 4],
    last: [u8; 4],
) -> SpecialBlock {
    let [a, b, c, d] = first;
    let [w, x, y, z] = last;
    SpecialBlock {
        name,
        what,
        range: AddrRange {
            first: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            last: IpAddr::V4(Ipv4Addr::new(w, x, y, z)),
        },
    }
}

const fn v6_block(name: &'static str, what: &'static str, first: u128, last: u128) -> SpecialBlock {
    SpecialBlock {
        name,
        what,
        range: AddrRange {
            first: IpAddr::V6(Ipv6Addr::from_bits(first)),
            last: IpAddr::V6(Ipv6Addr::from_bits(last)),
        },
    }
}

/// The blocks no pool may overlap.
pub const SPECIAL_BLOCKS: [SpecialBlock; 8] = [
    v4_block(
        "0.0.0.0/8",
        "\"this network\": a source address only, never a destination",
        [0, 0, 0, 0],
        [0, 255, 255, 255],
    ),
    v4_block(
        "127.0.0.0/8",
        "loopback: never leaves a host",
        [127, 0, 0, 0],
        [127, 255, 255, 255],
    ),
    v4_block(
        "224.0.0.0/4",
        "multicast: a group, not a host",
        [224, 0, 0, 0],
        [239, 255, 255, 255],
    ),
    v4_block(
        "255.255.255.255",
        "the limited broadcast address",
        [255; 4],
        [255; 4],
    ),
    v6_block("::", "the unspecified address: a source address only", 0, 0),
    v6_block("::1", "loopback: never leaves a host", 1, 1),
    v6_block(
        "::ffff:0:0/96",
        "IPv4-mapped: an IPv4 address written as IPv6, never on the wire; use the IPv4 address",
        0xffff_0000_0000,
        0xffff_ffff_ffff,
    ),
    v6_block(
        "ff00::/8",
        "multicast: a group, not a host",
        0xff00 << 112,
        u128::MAX,
    ),
];

/// The special blocks `range` overlaps, in [`SPECIAL_BLOCKS`] order.
pub fn special_blocks(range: &AddrRange) -> Vec<&'static SpecialBlock> {
    SPECIAL_BLOCKS
        .iter()
        .filter(|block| block.range.overlaps(range))
        .collect()
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
            (
                "192.0.2.0/33",
                "invalid CIDR: prefix length 33 is more than 32",
            ),
            (
                "2001:db8::/129",
                "invalid CIDR: prefix length 129 is more than 128",
            ),
            ("192.0.2.300/24", "invalid CIDR"),
            ("192.0.2.0/", "invalid CIDR"),
            ("192.0.2.0/+24", "invalid CIDR"),
            ("192.0.2.0/ 24", "invalid CIDR"),
            ("192.0.2.0/24/24", "invalid CIDR"),
            ("fe80::1%eth0/64", "invalid CIDR"),
            ("192.0.2.9-192.0.2.1", "is after end"),
            ("192.0.2.1-2001:db8::1", "different address families"),
            (
                "foo-192.0.2.1",
                "invalid start address: \"foo\" is not an IP address",
            ),
            (
                "192.0.2.1-bar",
                "invalid end address: \"bar\" is not an IP address",
            ),
            ("", "neither a CIDR"),
            // Leading zeros: refused in CIDRs and in ranges alike, as Go's ParseCIDR and
            // ParseIP refuse them (ipnet's own parser would read 010 as 10).
            (
                "010.0.0.1/32",
                "invalid CIDR: \"010.0.0.1\" has an IPv4 part with a leading zero",
            ),
            (
                "10.0.0.01/32",
                "\"10.0.0.01\" has an IPv4 part with a leading zero",
            ),
            (
                "010.0.0.1-10.0.0.9",
                "invalid start address: \"010.0.0.1\" has an IPv4 part with a leading zero",
            ),
            (
                "10.0.0.1-10.0.0.09",
                "invalid end address: \"10.0.0.09\" has an IPv4 part with a leading zero",
            ),
            (
                "::ffff:010.0.0.1/128",
                "has an IPv4 part with a leading zero",
            ),
        ];
        for (text, want) in bad {
            let err = AddrRange::parse(text).expect_err(text);
            assert!(err.contains(want), "{text}: {err}");
        }
        // Zero itself and zeros inside a part are no leading zeros; a zero-padded prefix
        // length is read as Go reads it.
        for (text, first, last) in [
            ("0.10.100.0/24", "0.10.100.0", "0.10.100.255"),
            ("192.0.2.0/024", "192.0.2.0", "192.0.2.255"),
            ("2001:db8:0::0/120", "2001:db8::", "2001:db8::ff"),
        ] {
            let range = AddrRange::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((range.first, range.last), (ip(first), ip(last)), "{text}");
        }
    }

    #[test]
    fn ipv6_cidrs_hold_back_their_subnet_router_anycast_address() {
        // (entry, anycast address, first usable address, last usable address)
        let table = [
            (
                "2001:db8::/64",
                Some("2001:db8::"),
                "2001:db8::1",
                "2001:db8::ffff:ffff:ffff:ffff",
            ),
            (
                "2001:db8::5/120",
                Some("2001:db8::"),
                "2001:db8::1",
                "2001:db8::ff",
            ),
            (
                "2001:db8::/126",
                Some("2001:db8::"),
                "2001:db8::1",
                "2001:db8::3",
            ),
            // RFC 6164: no anycast address on a /127; a /128 is one host.
            ("2001:db8::/127", None, "2001:db8::", "2001:db8::1"),
            ("2001:db8::7/128", None, "2001:db8::7", "2001:db8::7"),
            // A range has no prefix: taken at its word.
            ("2001:db8::-2001:db8::3", None, "2001:db8::", "2001:db8::3"),
            // IPv4 has no anycast address (.0 is avoidBuggyIPs' business).
            ("192.0.2.0/24", None, "192.0.2.0", "192.0.2.255"),
        ];
        for (text, anycast, first, last) in table {
            let entry = PoolEntry::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(entry.anycast, anycast.map(ip), "{text}");
            let usable = entry.usable();
            assert_eq!((usable.first, usable.last), (ip(first), ip(last)), "{text}");
            assert_eq!(entry.range, AddrRange::parse(text).unwrap(), "{text}");
        }
    }

    #[test]
    fn special_blocks_table() {
        // (range, names of the special blocks it overlaps)
        let table: [(&str, &[&str]); 16] = [
            (
                "0.0.0.0/0",
                &["0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "255.255.255.255"],
            ),
            ("0.0.0.0/32", &["0.0.0.0/8"]),
            ("0.255.255.255-1.0.0.0", &["0.0.0.0/8"]),
            ("127.0.0.1/32", &["127.0.0.0/8"]),
            ("126.255.255.0/24", &[]),
            ("128.0.0.0/8", &[]),
            ("239.255.255.255/32", &["224.0.0.0/4"]),
            ("240.0.0.0/5", &[]),
            ("255.255.255.254/31", &["255.255.255.255"]),
            ("::/0", &["::", "::1", "::ffff:0:0/96", "ff00::/8"]),
            ("::/127", &["::", "::1"]),
            ("::2-::ffff", &[]),
            ("::ffff:192.0.2.0/120", &["::ffff:0:0/96"]),
            ("::ffff:0:0-::ffff:0:0", &["::ffff:0:0/96"]),
            ("fe80::/10", &[]),
            ("ff02::1/128", &["ff00::/8"]),
        ];
        for (text, want) in table {
            let range = AddrRange::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got: Vec<&str> = special_blocks(&range).iter().map(|b| b.name).collect();
            assert_eq!(got, want, "{text}");
        }
        // Each block is exactly what its name says.
        for block in SPECIAL_BLOCKS {
            let name = if block.name.contains('/') {
                block.name.to_string()
            } else if block.name.contains(':') {
                format!("{}/128", block.name)
            } else {
                format!("{}/32", block.name)
            };
            assert_eq!(AddrRange::parse(&name).unwrap(), block.range, "{name}");
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
