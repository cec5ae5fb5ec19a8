//! Gratuitous announcements when this node starts answering for a VIP, so that
//! neighbours update their caches at once instead of when their entries expire:
//! gratuitous ARP in both forms (request and reply, as MetalLB sends them) and an
//! unsolicited Neighbor Advertisement to ff02::1 with Override=1. Sent at once, then
//! every `interval` until `duration` has passed, paced per interface ([`Pacing`]): a
//! start-up with thousands of VIPs does not flood the segment, and a VIP gained later
//! (a failover) is announced ahead of any backlog.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashMap, VecDeque},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
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

/// `--garp-rate`'s default: gratuitous frames per second per interface. A speaker that
/// starts with 100,000 VIPs (about 150,000 frames a round) spreads its first round over
/// minutes instead of putting them on the segment in one burst; neighbours that need
/// an address meanwhile ask, and are answered.
pub const DEFAULT_RATE: u32 = 1000;

/// When and how the announcements go out.
#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    /// Between the rounds of one VIP.
    pub interval: Duration,
    /// Rounds are repeated until this long after the first.
    pub duration: Duration,
    /// Frames per second per interface (`--garp-rate`), and as many at once: the
    /// first round of each change's VIPs goes at once up to that many frames, ahead of
    /// any backlog; what is left of it, and every later round, waits its turn.
    pub rate: u32,
}

enum Command {
    /// Announce these (each restarting any announcement of it): one change.
    Start(Vec<(VipKey, MacAddr)>),
    Stop(VipKey),
}

/// Sends the announcement rounds, paced per interface.
pub struct Announcer {
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
    _task: AbortOnDrop,
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Announcer {
    /// Opens the packet socket and starts the pacer. Must be called within a tokio
    /// runtime.
    pub fn new(pacing: Pacing, sent: GratuitousCounts) -> io::Result<Self> {
        let socket = PacketSocket::open()?;
        let (commands, receiver) = tokio::sync::mpsc::unbounded_channel();
        let pacer = Pacer::new(pacing, sent, move |ifindex, frame| {
            socket.send(ifindex, frame)
        });
        let task = tokio::spawn(pacer.run(receiver));
        Ok(Self {
            commands,
            _task: AbortOnDrop(task.abort_handle()),
        })
    }

    /// Starts announcing `vips`, the VIPs one change made this node answer (each with
    /// its MAC), restarting any announcement of them.
    pub fn start(&self, vips: Vec<(VipKey, MacAddr)>) {
        if !vips.is_empty() {
            let _ = self.commands.send(Command::Start(vips));
        }
    }

    /// Stops announcing `key` (it moved away or is gone).
    pub fn stop(&self, key: &VipKey) {
        let _ = self.commands.send(Command::Stop(*key));
    }
}

/// A VIP being announced.
struct Announcing {
    mac: MacAddr,
    /// Which start this is: queued rounds of an earlier one are dropped.
    generation: u64,
    /// When its first round went out.
    first: Option<Instant>,
}

/// One interface's budget and queues.
struct Link {
    tokens: f64,
    refilled: Instant,
    /// First rounds not sent at once, the latest change first.
    first: VecDeque<(VipKey, u64)>,
    /// Later rounds that are due, oldest first.
    due: VecDeque<(VipKey, u64)>,
}

/// The announcements' state: which VIPs, their next rounds, each interface's budget.
/// `send` puts one frame on an interface.
struct Pacer<S> {
    pacing: Pacing,
    sent: GratuitousCounts,
    send: S,
    vips: HashMap<VipKey, Announcing>,
    links: BTreeMap<u32, Link>,
    /// Later rounds, by when they are due.
    timers: BinaryHeap<Reverse<(Instant, VipKey, u64)>>,
    generation: u64,
}

impl<S: FnMut(u32, &[u8]) -> io::Result<()>> Pacer<S> {
    fn new(pacing: Pacing, sent: GratuitousCounts, send: S) -> Self {
        Self {
            pacing,
            sent,
            send,
            vips: HashMap::new(),
            links: BTreeMap::new(),
            timers: BinaryHeap::new(),
            generation: 0,
        }
    }

    async fn run(mut self, mut commands: tokio::sync::mpsc::UnboundedReceiver<Command>) {
        loop {
            let wake = self.pump(Instant::now());
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command, Instant::now()),
                    None => return,
                },
                () = sleep => {}
            }
        }
    }

    fn rate(&self) -> f64 {
        f64::from(self.pacing.rate.max(1))
    }

    fn link(&mut self, ifindex: u32, now: Instant) -> &mut Link {
        let rate = self.rate();
        let link = self.links.entry(ifindex).or_insert_with(|| Link {
            tokens: rate,
            refilled: now,
            first: VecDeque::new(),
            due: VecDeque::new(),
        });
        link.tokens =
            (link.tokens + now.duration_since(link.refilled).as_secs_f64() * rate).min(rate);
        link.refilled = now;
        link
    }

    fn handle(&mut self, command: Command, now: Instant) {
        match command {
            Command::Stop(key) => {
                self.vips.remove(&key);
            }
            Command::Start(vips) => {
                self.generation += 1;
                let generation = self.generation;
                let mut by_link: BTreeMap<u32, Vec<VipKey>> = BTreeMap::new();
                for (key, mac) in vips {
                    self.vips.insert(
                        key,
                        Announcing {
                            mac,
                            generation,
                            first: None,
                        },
                    );
                    by_link.entry(key.ifindex).or_default().push(key);
                }
                let rate = self.rate();
                for (ifindex, keys) in by_link {
                    // At once, whatever the backlog, up to one second's worth: the
                    // backlog waits for the budget this takes.
                    let mut budget = rate;
                    let mut left = Vec::new();
                    for key in keys {
                        let frames = frame_count(&key) as f64;
                        if left.is_empty() && budget >= frames {
                            budget -= frames;
                            self.link(ifindex, now).tokens -= frames;
                            self.round(key, now);
                        } else {
                            left.push((key, generation));
                        }
                    }
                    let link = self.link(ifindex, now);
                    link.tokens = link.tokens.max(-rate);
                    for entry in left.into_iter().rev() {
                        link.first.push_front(entry);
                    }
                }
            }
        }
    }

    /// Sends one round for `key` and schedules the next, if any.
    fn round(&mut self, key: VipKey, now: Instant) {
        let Some(vip) = self.vips.get_mut(&key) else {
            return;
        };
        let first = *vip.first.get_or_insert(now);
        let (mac, generation) = (vip.mac, vip.generation);
        for frame in frames(mac, key.addr) {
            match (self.send)(key.ifindex, &frame) {
                Ok(()) => {
                    *self
                        .sent
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
        if now.duration_since(first) + self.pacing.interval > self.pacing.duration {
            self.vips.remove(&key);
        } else {
            self.timers
                .push(Reverse((now + self.pacing.interval, key, generation)));
        }
    }

    fn current(&self, (key, generation): &(VipKey, u64)) -> bool {
        self.vips
            .get(key)
            .is_some_and(|v| v.generation == *generation)
    }

    /// Sends what the budgets allow at `now`; returns when to come back.
    fn pump(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((at, key, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.current(&(key, generation)) {
                self.link(key.ifindex, now).due.push_back((key, generation));
            }
        }
        let mut wake: Option<Instant> = None;
        let ifindexes: Vec<u32> = self.links.keys().copied().collect();
        for ifindex in ifindexes {
            loop {
                let link = self.link(ifindex, now);
                let next = match link.first.front() {
                    Some(entry) => Some((true, *entry)),
                    None => link.due.front().map(|entry| (false, *entry)),
                };
                let Some((first, entry)) = next else {
                    break;
                };
                if !self.current(&entry) {
                    let link = self.link(ifindex, now);
                    if first {
                        link.first.pop_front();
                    } else {
                        link.due.pop_front();
                    }
                    continue;
                }
                let frames = frame_count(&entry.0) as f64;
                let rate = self.rate();
                let link = self.link(ifindex, now);
                // (A margin for rounding: refills are fractions of a frame.)
                if link.tokens + 1e-6 < frames {
                    let wait = Duration::from_secs_f64((frames - link.tokens) / rate);
                    wake = Some(wake.map_or(now + wait, |w| w.min(now + wait)));
                    break;
                }
                link.tokens -= frames;
                if first {
                    link.first.pop_front();
                } else {
                    link.due.pop_front();
                }
                self.round(entry.0, now);
            }
        }
        // The rounds just sent scheduled their next ones.
        if let Some(Reverse((at, ..))) = self.timers.peek() {
            wake = Some(wake.map_or(*at, |w| w.min(*at)));
        }
        // Links with nothing queued are forgotten once their budget is whole again.
        let rate = self.rate();
        self.links.retain(|_, link| {
            !(link.first.is_empty() && link.due.is_empty() && link.tokens >= rate)
        });
        // A backlog over, its tables go (at 100,000 VIPs, about 15 MiB of capacity
        // nothing would use until the next change of that size).
        if self.vips.is_empty() && self.vips.capacity() > 0 {
            self.vips = HashMap::new();
        }
        if self.timers.is_empty() && self.timers.capacity() > 0 {
            self.timers = BinaryHeap::new();
        }
        wake
    }
}

/// Frames in one round for `key`: ARP in both forms, or one NA.
fn frame_count(key: &VipKey) -> usize {
    match key.addr {
        IpAddr::V4(_) => 2,
        IpAddr::V6(_) => 1,
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

    /// Frames as sent: interface, source MAC, last byte (of the VIP).
    type Recorded = Arc<Mutex<Vec<(u32, [u8; 6], u8)>>>;

    /// A pacer whose frames are recorded instead of sent.
    type Recording = Pacer<Box<dyn FnMut(u32, &[u8]) -> io::Result<()>>>;

    fn recording(pacing: Pacing) -> (Recording, Recorded) {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let record = frames.clone();
        let pacer: Recording = Pacer::new(
            pacing,
            GratuitousCounts::default(),
            Box::new(move |ifindex, frame: &[u8]| {
                // Interface, the VIP's MAC (the frame's source) and the last address byte.
                let mac: [u8; 6] = frame[6..12].try_into().expect("a source MAC");
                record
                    .lock()
                    .unwrap()
                    .push((ifindex, mac, frame[frame.len() - 1]));
                Ok(())
            }),
        );
        (pacer, frames)
    }

    fn v4(i: u32, ifindex: u32) -> (VipKey, MacAddr) {
        let key = VipKey {
            addr: Ipv4Addr::from(0x0a00_0000 + i).into(),
            ifindex,
            vlan_id: 0,
        };
        (key, MAC)
    }

    const ONCE: Pacing = Pacing {
        interval: Duration::from_secs(1),
        duration: Duration::ZERO,
        rate: 100,
    };

    #[test]
    fn a_start_up_backlog_goes_out_at_the_rate_per_interface() {
        let (mut pacer, frames) = recording(ONCE);
        let t0 = Instant::now();
        // 500 IPv4 VIPs (1,000 frames) on interface 1, 10 on interface 2.
        let mut vips: Vec<_> = (0..500).map(|i| v4(i, 1)).collect();
        vips.extend((0..10).map(|i| v4(i, 2)));
        pacer.handle(Command::Start(vips), t0);
        let count = |ifindex| {
            frames
                .lock()
                .unwrap()
                .iter()
                .filter(|f| f.0 == ifindex)
                .count()
        };
        // One second's worth at once, per interface.
        assert_eq!((count(1), count(2)), (100, 20));
        let wake = pacer.pump(t0).expect("a backlog");
        assert_eq!(count(1), 100);
        assert!(wake > t0 && wake <= t0 + Duration::from_millis(20));
        for tenth in 1..=10 {
            pacer.pump(t0 + Duration::from_millis(100 * tenth));
            assert_eq!(count(1), 100 + 10 * tenth as usize, "after {tenth}/10 s");
        }
        // The rest, at 100 frames a second: nothing is lost, nothing repeated.
        let mut at = t0 + Duration::from_secs(1);
        while let Some(wake) = pacer.pump(at) {
            at = wake;
        }
        assert_eq!(count(1), 1000);
        assert_eq!(count(2), 20);
        assert!(
            at >= t0 + Duration::from_secs(9),
            "all sent by {:?}",
            at - t0
        );
        // Over: the backlog's tables are freed, not kept at their largest (the
        // interfaces once their budget is whole again).
        assert_eq!(pacer.pump(at + Duration::from_secs(2)), None);
        assert!(pacer.links.is_empty());
        assert_eq!((pacer.vips.capacity(), pacer.timers.capacity()), (0, 0));
    }

    #[test]
    fn a_vip_gained_during_a_backlog_is_announced_at_once() {
        let (mut pacer, frames) = recording(ONCE);
        let t0 = Instant::now();
        pacer.handle(Command::Start((0..500).map(|i| v4(i, 1)).collect()), t0);
        pacer.pump(t0 + Duration::from_secs(2));
        let before = frames.lock().unwrap().len();
        assert!(before < 400, "{before} frames: no backlog left");
        // A failover: one VIP, on the same interface, sent before the command returns.
        let failover = MacAddr([0x02, 0, 0, 0, 0, 0xbb]);
        let (key, _) = v4(999, 1);
        pacer.handle(
            Command::Start(vec![(key, failover)]),
            t0 + Duration::from_secs(2),
        );
        let sent = frames.lock().unwrap();
        assert_eq!(sent.len(), before + 2);
        assert!(sent[before..].iter().all(|f| f.1 == failover.0));
    }

    #[test]
    fn the_leftover_of_a_large_change_goes_before_the_older_backlog() {
        let (mut pacer, frames) = recording(ONCE);
        let t0 = Instant::now();
        pacer.handle(Command::Start((0..500).map(|i| v4(i, 1)).collect()), t0);
        // 100 VIPs gained at once: 50 go at once (100 frames), 50 wait, ahead of the
        // start-up's 450.
        let gained = MacAddr([0x02, 0, 0, 0, 0, 0xcc]);
        let change: Vec<_> = (1000..1100).map(|i| (v4(i, 1).0, gained)).collect();
        pacer.handle(Command::Start(change), t0);
        let mut at = t0;
        while let Some(wake) = pacer.pump(at) {
            at = wake;
        }
        let sent = frames.lock().unwrap();
        assert_eq!(sent.len(), 1200);
        let last_gained = sent.iter().rposition(|f| f.1 == gained.0).unwrap();
        // Start-up's first 100 frames, then all 200 of the change.
        assert_eq!(last_gained, 299);
    }

    #[test]
    fn rounds_repeat_every_interval_until_the_duration_and_a_stop_ends_them() {
        let pacing = Pacing {
            interval: Duration::from_millis(1100),
            duration: Duration::from_secs(5),
            rate: 1000,
        };
        let (mut pacer, frames) = recording(pacing);
        let t0 = Instant::now();
        pacer.handle(Command::Start(vec![v4(1, 1), v4(2, 1)]), t0);
        let mut at = t0;
        let mut stopped = false;
        while let Some(wake) = pacer.pump(at) {
            at = wake;
            if !stopped && at >= t0 + Duration::from_secs(2) {
                pacer.handle(Command::Stop(v4(2, 1).0), at);
                stopped = true;
            }
        }
        let sent = frames.lock().unwrap();
        // VIP 1: rounds at 0, 1.1, 2.2, 3.3, 4.4 s, two frames each; VIP 2: at 0 and
        // 1.1 s, then stopped.
        assert_eq!(sent.iter().filter(|f| f.2 == 1).count(), 10);
        assert_eq!(sent.iter().filter(|f| f.2 == 2).count(), 4);
        assert!(at >= t0 + Duration::from_millis(4400));
    }
}
