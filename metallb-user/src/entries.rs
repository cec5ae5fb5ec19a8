//! What a plan hands the datapath, as plain data: the VIP entries (key and value) and
//! the interfaces they are on. The pure core (plan, election) makes them and the
//! datapath writes them; neither the types nor this module touch the kernel.

use std::net::IpAddr;

use metallb_common::VipAction;

/// An interface of this host as the datapath uses it (read by `datapath::iface::list`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub up: bool,
    pub loopback: bool,
    /// Whether the interface filters multicast at all (lo, tun and the like do not,
    /// and refuse multicast addresses).
    pub multicast: bool,
}

/// A MAC address that prints as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts
                .next()
                .ok_or_else(|| format!("MAC address {s:?} is too short"))?;
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| format!("MAC address {s:?} has an invalid byte {part:?}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("MAC address {s:?} is too long"));
        }
        Ok(MacAddr(out))
    }
}

/// One VIP on one interface and VLAN, either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    pub addr: IpAddr,
    pub ifindex: u32,
    pub vlan_id: u16,
}

/// What the agent tells the program about one [`VipKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipConfig {
    /// The interface's MAC, sent in every reply.
    pub mac: MacAddr,
    pub action: VipAction,
}
