//! Gratuitous announcements when this node starts answering for a VIP, so that
//! neighbours update their caches at once instead of when their entries expire:
//! gratuitous ARP in both forms (request and reply, as MetalLB sends them) and an
//! unsolicited Neighbor Advertisement to ff02::1 with Override=1. Sent at once, then
//! every `interval` until `duration` has passed.

use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{Arc, Mutex},
    time::Duration,
};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder,
    icmpv6::NeighborAdvertisementHeader,
};
use tokio::task::AbortHandle;
use tracing::{debug, warn};

use crate::datapath::{
    capabilities::{self, Step},
    iface::MacAddr,
    maps::VipKey,
};

const BROADCAST: [u8; 6] = [0xff; 6];
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A gratuitous ARP: sender and target are the VIP, to broadcast.
pub fn gratuitous_arp(mac: MacAddr, ip: Ipv4Addr, operation: ArpOperation) -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    // Sizes are fixed (6-byte MAC, 4-byte IPv4): construction cannot fail.
    if let Ok(packet) = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        operation,
        &mac.0,
        &ip.octets(),
        &BROADCAST,
        &ip.octets(),
    ) {
        let _ = PacketBuilder::ethernet2(mac.0, BROADCAST)
            .arp(packet)
            .write(&mut frame);
    }
    frame
}

/// An unsolicited Neighbor Advertisement for `ip` to all nodes: Solicited=0, Override=1,
/// with the target link-layer address option.
pub fn unsolicited_na(mac: MacAddr, ip: Ipv6Addr) -> Vec<u8> {
    let mut body = ip.octets().to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&mac.0);
    let mut frame = Vec::with_capacity(86);
    let header = NeighborAdvertisementHeader {
        router: false,
        solicited: false,
        r#override: true,
    };
    let _ = PacketBuilder::ethernet2(mac.0, ALL_NODES_MAC)
        .ipv6(ip.octets(), ALL_NODES.octets(), 255)
        .icmpv6(Icmpv6Type::NeighborAdvertisement(header))
        .write(&mut frame, &body);
    frame
}

/// The frames of one announcement round for `ip`.
pub fn frames(mac: MacAddr, ip: IpAddr) -> Vec<Vec<u8>> {
    match ip {
        IpAddr::V4(ip) => vec![
            gratuitous_arp(mac, ip, ArpOperation::REQUEST),
            gratuitous_arp(mac, ip, ArpOperation::REPLY),
        ],
        IpAddr::V6(ip) => vec![unsolicited_na(mac, ip)],
    }
}

/// An AF_PACKET socket that only sends, on any interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens the socket; a refusal for want of CAP_NET_RAW says so.
    pub fn open() -> io::Result<Self> {
        // Protocol 0: the socket receives nothing.
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            let error = io::Error::last_os_error();
            return Err(
                match capabilities::denied(
                    Step::PacketSocket,
                    || "opening an AF_PACKET socket".into(),
                    &error,
                ) {
                    Some(denied) => io::Error::new(io::ErrorKind::PermissionDenied, denied),
                    None => error,
                },
            );
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Sends one Ethernet frame out of interface `ifindex`.
    pub fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_ll is plain data; zeroed is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(frame.get(..6).unwrap_or(&[0; 6]));
        // SAFETY: valid socket, buffer and address for the duration of the call.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Gratuitous packets sent, per VIP (`metallb_layer2_gratuitous_sent`).
pub type GratuitousCounts = Arc<Mutex<BTreeMap<IpAddr, u64>>>;

/// Runs the announcement rounds, one task per VIP entry.
pub struct Announcer {
    socket: Arc<PacketSocket>,
    interval: Duration,
    duration: Duration,
    running: BTreeMap<VipKey, AbortHandle>,
    sent: GratuitousCounts,
}

impl Announcer {
    pub fn new(interval: Duration, duration: Duration, sent: GratuitousCounts) -> io::Result<Self> {
        Ok(Self {
            socket: Arc::new(PacketSocket::open()?),
            interval,
            duration,
            running: BTreeMap::new(),
            sent,
        })
    }

    /// Starts announcing `key` with `mac` (restarting any announcement of it). Must be
    /// called within a tokio runtime.
    pub fn start(&mut self, key: VipKey, mac: MacAddr) {
        self.stop(&key);
        let (socket, sent) = (self.socket.clone(), self.sent.clone());
        let (interval, duration) = (self.interval, self.duration);
        let task = tokio::spawn(async move {
            let frames = frames(mac, key.addr);
            let started = tokio::time::Instant::now();
            loop {
                for frame in &frames {
                    match socket.send(key.ifindex, frame) {
                        Ok(()) => {
                            *sent
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .entry(key.addr)
                                .or_default() += 1
                        }
                        Err(error) => {
                            warn!(vip = %key.addr, ifindex = key.ifindex, %error, "gratuitous announcement not sent")
                        }
                    }
                }
                debug!(vip = %key.addr, ifindex = key.ifindex, "gratuitous announcement sent");
                if started.elapsed() + interval > duration {
                    break;
                }
                tokio::time::sleep(interval).await;
            }
        });
        self.running.insert(key, task.abort_handle());
    }

    /// Stops announcing `key` (it moved away or is gone).
    pub fn stop(&mut self, key: &VipKey) {
        if let Some(task) = self.running.remove(key) {
            task.abort();
        }
    }

    /// Forgets finished tasks.
    pub fn reap(&mut self) {
        self.running.retain(|_, task| !task.is_finished());
    }
}

#[cfg(test)]
mod tests {
    use etherparse::{ArpEthIpv4Packet, NetSlice, SlicedPacket, TransportSlice};

    use super::*;

    const MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xaa]);

    #[test]
    fn gratuitous_arp_has_both_forms_to_broadcast() {
        let vip = Ipv4Addr::new(192, 0, 2, 100);
        let frames = frames(MAC, vip.into());
        assert_eq!(frames.len(), 2);
        for (frame, op) in frames.iter().zip([1u16, 2]) {
            let expected: Vec<u8> = [
                &BROADCAST[..],
                &MAC.0,
                &[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, op as u8],
                &MAC.0,
                &vip.octets(),
                &BROADCAST,
                &vip.octets(),
            ]
            .concat();
            assert_eq!(frame, &expected);
            let sliced = SlicedPacket::from_ethernet(frame).expect("parses");
            let Some(NetSlice::Arp(arp)) = sliced.net else {
                panic!("not ARP")
            };
            let arp: ArpEthIpv4Packet = arp.to_packet().try_into().expect("eth/ipv4");
            assert_eq!(arp.sender_ipv4_addr(), vip);
            assert_eq!(arp.target_ipv4_addr(), vip);
        }
    }

    #[test]
    fn unsolicited_na_overrides_and_checksums() {
        let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let frame = unsolicited_na(MAC, vip);
        assert_eq!(frame.len(), 14 + 40 + 32);
        assert_eq!(&frame[..6], &ALL_NODES_MAC);
        let sliced = SlicedPacket::from_ethernet(&frame).expect("parses");
        let Some(NetSlice::Ipv6(ip)) = sliced.net else {
            panic!("not IPv6")
        };
        assert_eq!(ip.header().source_addr(), vip);
        assert_eq!(ip.header().destination_addr(), ALL_NODES);
        assert_eq!(ip.header().hop_limit(), 255);
        let Some(TransportSlice::Icmpv6(icmp)) = sliced.transport else {
            panic!("not ICMPv6")
        };
        // Type 136, code 0, flags: Override only.
        assert_eq!(icmp.type_u8(), 136);
        assert_eq!(frame[14 + 40 + 4], 0x20);
        let want = icmp.icmp_type().calc_checksum(
            ip.header().source(),
            ip.header().destination(),
            icmp.payload(),
        );
        assert_eq!(icmp.checksum(), want.expect("checksum"));
        // Target, then the target link-layer address option with our MAC.
        assert_eq!(&frame[14 + 40 + 8..14 + 40 + 24], &vip.octets());
        assert_eq!(
            &frame[14 + 40 + 24..],
            &[&[2u8, 1][..], &MAC.0].concat()[..]
        );
    }
}
