//! Network interfaces as the datapath needs them: index and MAC, the list of usable
//! interfaces, and link-layer multicast filters for IPv6 solicited-node groups.
//! Everything here acts in the network namespace of the calling thread.

use std::{collections::BTreeMap, ffi::CString, net::Ipv6Addr, os::fd::AsRawFd as _};

use nix::{
    ifaddrs::getifaddrs,
    net::if_::InterfaceFlags,
    sys::socket::{AddressFamily, SockFlag, SockType, socket},
};

pub use crate::entries::{Interface, MacAddr};

#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error("interface {name:?} does not exist")]
    NotFound { name: String },
    #[error("interface {name:?} has no Ethernet (6-byte) MAC address")]
    NoMac { name: String },
    #[error("listing interfaces: {0}")]
    List(#[source] nix::Error),
    #[error("interface {name:?}: {op} of multicast address {mac}: {source}")]
    Multicast {
        name: String,
        op: &'static str,
        mac: MacAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Every interface with a link-layer (Ethernet) address, by name.
pub fn list() -> Result<BTreeMap<String, Interface>, InterfaceError> {
    let mut out = BTreeMap::new();
    for entry in getifaddrs().map_err(InterfaceError::List)? {
        let Some(link) = entry.address.as_ref().and_then(|a| a.as_link_addr()) else {
            continue;
        };
        let Some(mac) = link.addr() else { continue };
        out.insert(
            entry.interface_name.clone(),
            Interface {
                name: entry.interface_name.clone(),
                ifindex: link.ifindex() as u32,
                mac,
                up: entry.flags.contains(InterfaceFlags::IFF_UP),
                loopback: entry.flags.contains(InterfaceFlags::IFF_LOOPBACK),
                multicast: entry.flags.contains(InterfaceFlags::IFF_MULTICAST),
            },
        );
    }
    Ok(out)
}

/// One interface by name.
pub fn by_name(name: &str) -> Result<Interface, InterfaceError> {
    if let Some(iface) = list()?.remove(name) {
        return Ok(iface);
    }
    if nix::net::if_::if_nametoindex(name).is_ok() {
        Err(InterfaceError::NoMac { name: name.into() })
    } else {
        Err(InterfaceError::NotFound { name: name.into() })
    }
}

/// The Ethernet multicast address of the solicited-node group of `addr`
/// (33:33:ff + the low 24 bits): where Neighbor Solicitations for `addr` are sent.
pub fn solicited_node_mac(addr: Ipv6Addr) -> MacAddr {
    let o = addr.octets();
    MacAddr([0x33, 0x33, 0xff, o[13], o[14], o[15]])
}

/// Makes `ifname` accept frames sent to `mac` (like `ip maddr add`). Real NICs filter
/// multicast in hardware: without this, solicitations for a VIP that the kernel does
/// not own never reach XDP. The kernel keeps one "global" use per address, so adding
/// twice is a no-op and one delete removes it: callers count users themselves.
pub fn add_multicast(ifname: &str, mac: MacAddr) -> Result<(), InterfaceError> {
    multicast_ioctl(ifname, mac, libc::SIOCADDMULTI, "add")
}

/// Undoes [`add_multicast`].
pub fn del_multicast(ifname: &str, mac: MacAddr) -> Result<(), InterfaceError> {
    multicast_ioctl(ifname, mac, libc::SIOCDELMULTI, "delete")
}

fn multicast_ioctl(
    ifname: &str,
    mac: MacAddr,
    request: libc::c_ulong,
    op: &'static str,
) -> Result<(), InterfaceError> {
    let err = |source| InterfaceError::Multicast {
        name: ifname.into(),
        op,
        mac,
        source,
    };
    let name = CString::new(ifname)
        .map_err(|_| err(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    if name.as_bytes_with_nul().len() > libc::IFNAMSIZ {
        return Err(err(std::io::Error::from(std::io::ErrorKind::InvalidInput)));
    }
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| err(e.into()))?;
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: writing the sockaddr member of the union that SIOC{ADD,DEL}MULTI read.
    unsafe {
        req.ifr_ifru.ifru_hwaddr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        for (dst, src) in req.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac.0) {
            *dst = src as libc::c_char;
        }
    }
    // SAFETY: a valid socket and a fully initialised ifreq that outlives the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, &req) };
    if rc < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solicited_node_mac_takes_low_24_bits() {
        let addr: Ipv6Addr = "fd00:10::1:2:abcd:ef12".parse().unwrap();
        assert_eq!(
            solicited_node_mac(addr),
            MacAddr([0x33, 0x33, 0xff, 0xcd, 0xef, 0x12])
        );
    }

    #[test]
    fn mac_parses_and_prints() {
        let mac: MacAddr = "02:00:5e:10:00:0A".parse().unwrap();
        assert_eq!(mac, MacAddr([2, 0, 0x5e, 0x10, 0, 0x0a]));
        assert_eq!(mac.to_string(), "02:00:5e:10:00:0a");
        assert!("02:00:5e:10:00".parse::<MacAddr>().is_err());
        assert!("02:00:5e:10:00:0a:01".parse::<MacAddr>().is_err());
        assert!("02:00:5e:10:00:zz".parse::<MacAddr>().is_err());
    }
}
