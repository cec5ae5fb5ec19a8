//! A client's view of a VIP during a failover, for `cargo xtask bench failover`:
//! - [`ArpProber`] asks who has the VIP every few milliseconds from the client's
//!   namespace and records who answered, when. It asks with a MAC and an address of its
//!   own (not the client's), so that the answers, sent to that MAC, never update the
//!   client kernel's neighbour entry: only the speakers' gratuitous bursts and the
//!   client's own resolution do, as for a real client.
//! - [`UdpEcho`] answers datagrams sent to the VIP on every node, naming the node.
//! - [`UdpPinger`] sends a numbered datagram to the VIP every millisecond from the
//!   client and records each echo.
//!
//! Then [`Window`] reads what a client saw between two instants: the longest time
//! without an echo, the datagrams lost, when a new MAC first answered, and the 5 ms
//! windows in which two MACs answered.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::lab::NetnsGuard;
use metallb_user::datapath::iface::MacAddr;

/// The prober's own MAC and address (unused by the lab's hosts).
pub const PROBER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x03, 0x03];
pub const PROBER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

const ETH_P_ARP: u16 = 0x0806;
/// How long a blocked receive waits before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(20);

/// One answer to the prober.
#[derive(Clone, Copy, Debug)]
pub struct ArpAnswer {
    pub at: Instant,
    pub mac: MacAddr,
}

/// One echo of a datagram.
#[derive(Clone, Copy, Debug)]
pub struct Echo {
    pub at: Instant,
    pub seq: u64,
    /// The index of the node that echoed.
    pub node: u8,
}

/// Threads that run until [`Stopper::stop`] or drop.
struct Stopper {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Stopper {
    fn new() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    fn spawn(&mut self, body: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || body(stop)));
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sleeps until `at` (if it is still ahead).
fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

fn set_receive_timeout(fd: &OwnedFd, timeout: Duration) -> std::io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid socket and a timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The ARP request the prober sends: who has `vip`, tell PROBER_V4 at PROBER_MAC.
pub fn arp_request(vip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&PROBER_MAC);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    frame[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame[22..28].copy_from_slice(&PROBER_MAC);
    frame[28..32].copy_from_slice(&PROBER_V4.octets());
    frame[38..42].copy_from_slice(&vip.octets());
    frame
}

/// The answerer's MAC when `frame` is an ARP reply for `vip` sent to the prober.
pub fn arp_answer_from(frame: &[u8], vip: Ipv4Addr) -> Option<MacAddr> {
    let is_answer = frame.len() >= 42
        && frame[12..14] == ETH_P_ARP.to_be_bytes()
        && frame[20..22] == [0, 2]
        && frame[28..32] == vip.octets()
        && frame[32..38] == PROBER_MAC;
    is_answer.then(|| {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&frame[22..28]);
        MacAddr(mac)
    })
}

/// Asks for a VIP every `every` from an interface, and records the answers.
pub struct ArpProber {
    answers: Arc<Mutex<Vec<ArpAnswer>>>,
    _threads: Stopper,
}

impl ArpProber {
    pub fn start(ns: &str, ifname: &str, vip: Ipv4Addr, every: Duration) -> anyhow::Result<Self> {
        let socket = {
            let _netns = NetnsGuard::enter(ns).with_context(|| format!("entering {ns}"))?;
            arp_packet_socket(ifname)?
        };
        set_receive_timeout(&socket, POLL).context("SO_RCVTIMEO")?;
        let socket = Arc::new(socket);
        let answers = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Stopper::new();
        let sender = socket.clone();
        threads.spawn(move |stop| {
            let frame = arp_request(vip);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: a bound packet socket and a buffer of the length given.
                unsafe {
                    libc::send(sender.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0);
                }
                next += every;
                sleep_until(next);
            }
        });
        let record = answers.clone();
        threads.spawn(move |stop| {
            let mut buf = [0u8; 128];
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: a bound packet socket and a buffer of the length given.
                let n = unsafe {
                    libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                };
                let Ok(n) = usize::try_from(n) else { continue };
                if let Some(mac) = arp_answer_from(&buf[..n], vip) {
                    let at = Instant::now();
                    if let Ok(mut answers) = record.lock() {
                        answers.push(ArpAnswer { at, mac });
                    }
                }
            }
        });
        Ok(Self {
            answers,
            _threads: threads,
        })
    }

    /// The answers received at `from` or later, in order.
    pub fn answers_since(&self, from: Instant) -> Vec<ArpAnswer> {
        self.answers
            .lock()
            .map(|a| a[a.partition_point(|x| x.at < from)..].to_vec())
            .unwrap_or_default()
    }
}

/// An AF_PACKET socket for ARP frames, bound to `ifname` of the current namespace.
pub fn arp_packet_socket(ifname: &str) -> anyhow::Result<OwnedFd> {
    let protocol = ETH_P_ARP.to_be();
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(protocol),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("AF_PACKET socket");
    }
    // SAFETY: a descriptor just returned by socket(2), owned by nobody else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(ifname).context("interface name")?;
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    anyhow::ensure!(index != 0, "no interface {ifname}");
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol;
    address.sll_ifindex = index as i32;
    // SAFETY: a valid socket and a sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const address).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("binding the packet socket");
    }
    Ok(socket)
}

/// An echo of UDP datagrams sent to `vip:port` on each node, each reply being the
/// datagram's first 8 bytes and the node's index.
pub struct UdpEcho {
    _threads: Stopper,
}

impl UdpEcho {
    pub fn start(node_namespaces: &[String], vip: Ipv4Addr, port: u16) -> anyhow::Result<Self> {
        let mut threads = Stopper::new();
        for (i, ns) in node_namespaces.iter().enumerate() {
            let socket = {
                let _netns = NetnsGuard::enter(ns).with_context(|| format!("entering {ns}"))?;
                UdpSocket::bind(SocketAddrV4::new(vip, port))
                    .with_context(|| format!("binding {vip}:{port} in {ns}"))?
            };
            socket.set_read_timeout(Some(POLL))?;
            let node = u8::try_from(i).context("too many nodes for the echo")?;
            threads.spawn(move |stop| {
                let mut buf = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf)
                        && n >= 8
                    {
                        buf[8] = node;
                        let _ = socket.send_to(&buf[..9], from);
                    }
                }
            });
        }
        Ok(Self { _threads: threads })
    }
}

/// Sends a numbered datagram to `vip:port` every `every` from a namespace, and records
/// the echoes.
pub struct UdpPinger {
    sent: Arc<Mutex<Vec<Instant>>>,
    echoes: Arc<Mutex<Vec<Echo>>>,
    _threads: Stopper,
}

impl UdpPinger {
    pub fn start(ns: &str, vip: Ipv4Addr, port: u16, every: Duration) -> anyhow::Result<Self> {
        let socket = {
            let _netns = NetnsGuard::enter(ns).with_context(|| format!("entering {ns}"))?;
            UdpSocket::bind("0.0.0.0:0").context("binding the client's socket")?
        };
        socket.set_read_timeout(Some(POLL))?;
        let receiver = socket.try_clone()?;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let echoes = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Stopper::new();
        let record = sent.clone();
        threads.spawn(move |stop| {
            let mut next = Instant::now();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut sent) = record.lock() {
                    sent.push(Instant::now());
                }
                // A send fails while the neighbour entry is unresolved and its queue
                // full: that datagram is lost, as a real client's would be.
                let _ = socket.send_to(&seq.to_be_bytes(), SocketAddrV4::new(vip, port));
                seq += 1;
                next += every;
                sleep_until(next);
            }
        });
        let record = echoes.clone();
        threads.spawn(move |stop| {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = receiver.recv(&mut buf)
                    && n >= 9
                {
                    let at = Instant::now();
                    let mut seq = [0u8; 8];
                    seq.copy_from_slice(&buf[..8]);
                    if let Ok(mut echoes) = record.lock() {
                        echoes.push(Echo {
                            at,
                            seq: u64::from_be_bytes(seq),
                            node: buf[8],
                        });
                    }
                }
            }
        });
        Ok(Self {
            sent,
            echoes,
            _threads: threads,
        })
    }

    /// When each datagram from `from` on was sent, and the number of the first.
    pub fn sent_since(&self, from: Instant) -> (u64, Vec<Instant>) {
        self.sent
            .lock()
            .map(|s| {
                let first = s.partition_point(|at| *at < from);
                (first as u64, s[first..].to_vec())
            })
            .unwrap_or_default()
    }

    /// The echoes received at `from` or later, in order of arrival.
    pub fn echoes_since(&self, from: Instant) -> Vec<Echo> {
        self.echoes
            .lock()
            .map(|e| e[e.partition_point(|x| x.at < from)..].to_vec())
            .unwrap_or_default()
    }
}

/// What the client saw from `from` to `to`.
pub struct Window<'a> {
    pub from: Instant,
    pub to: Instant,
    pub answers: &'a [ArpAnswer],
    /// When datagrams were sent, the first being number `first_sent`.
    pub sent: &'a [Instant],
    pub first_sent: u64,
    pub echoes: &'a [Echo],
}

impl Window<'_> {
    /// The longest time without an echo, counted from `from` (the fault) to `to`.
    pub fn outage(&self) -> Duration {
        let mut last = self.from;
        let mut longest = Duration::ZERO;
        for echo in self
            .echoes
            .iter()
            .filter(|e| e.at > self.from && e.at <= self.to)
        {
            longest = longest.max(echo.at - last);
            last = echo.at;
        }
        longest.max(self.to.saturating_duration_since(last))
    }

    /// Datagrams sent in the window, up to `settle` before its end (their echo may
    /// still be on its way), that no node echoed.
    pub fn lost(&self, settle: Duration) -> usize {
        let echoed: BTreeSet<u64> = self.echoes.iter().map(|e| e.seq).collect();
        self.sent
            .iter()
            .enumerate()
            .filter(|(_, at)| **at >= self.from && **at + settle <= self.to)
            .filter(|(i, _)| !echoed.contains(&(self.first_sent + *i as u64)))
            .count()
    }

    /// How long after `from` a MAC other than `old` first answered.
    pub fn first_answer_not_from(&self, old: MacAddr) -> Option<Duration> {
        self.answers
            .iter()
            .find(|a| a.at >= self.from && a.at <= self.to && a.mac != old)
            .map(|a| a.at - self.from)
    }

    /// The `slot`-long windows (from `from` on) in which answers came from two MACs or
    /// more, leaving out those that start inside `skip` (after a heal, say).
    pub fn dual_answers(&self, slot: Duration, skip: Option<(Instant, Instant)>) -> usize {
        let mut slots: std::collections::BTreeMap<u128, BTreeSet<MacAddr>> = Default::default();
        for answer in self
            .answers
            .iter()
            .filter(|a| a.at >= self.from && a.at <= self.to)
            .filter(|a| !skip.is_some_and(|(s, e)| a.at >= s && a.at < e))
        {
            let index = (answer.at - self.from).as_nanos() / slot.as_nanos().max(1);
            slots.entry(index).or_default().insert(answer.mac);
        }
        slots.values().filter(|macs| macs.len() > 1).count()
    }

    /// The distinct MACs that answered, in order of their first answer.
    pub fn answerers(&self) -> Vec<MacAddr> {
        let mut seen = Vec::new();
        for a in self
            .answers
            .iter()
            .filter(|a| a.at >= self.from && a.at <= self.to)
        {
            if !seen.contains(&a.mac) {
                seen.push(a.mac);
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_an_arp_request_and_only_answers_to_it_are_read() {
        let vip = Ipv4Addr::new(192, 0, 2, 101);
        let request = arp_request(vip);
        assert_eq!(
            request[..],
            [
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 3, 3, 0x08, 0x06, 0, 1, 8, 0, 6, 4,
                0, 1, 2, 0, 0, 0, 3, 3, 192, 0, 2, 3, 0, 0, 0, 0, 0, 0, 192, 0, 2, 101
            ]
        );
        // The answer: the roles swapped, the answerer's MAC as sender.
        let owner = [2, 0, 0, 0, 1, 2];
        let mut answer = request;
        answer[0..6].copy_from_slice(&PROBER_MAC);
        answer[6..12].copy_from_slice(&owner);
        answer[21] = 2;
        answer[22..28].copy_from_slice(&owner);
        answer[28..32].copy_from_slice(&vip.octets());
        answer[32..38].copy_from_slice(&PROBER_MAC);
        answer[38..42].copy_from_slice(&PROBER_V4.octets());
        assert_eq!(arp_answer_from(&answer, vip), Some(MacAddr(owner)));
        // Not for this VIP, a request, a gratuitous reply (to broadcast), truncated.
        assert_eq!(
            arp_answer_from(&answer, Ipv4Addr::new(192, 0, 2, 102)),
            None
        );
        assert_eq!(arp_answer_from(&request, vip), None);
        let mut garp = answer;
        garp[32..38].copy_from_slice(&[0xff; 6]);
        assert_eq!(arp_answer_from(&garp, vip), None);
        assert_eq!(arp_answer_from(&answer[..41], vip), None);
    }

    #[test]
    fn a_window_reads_the_outage_the_losses_and_two_answering_macs() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let (a, b) = (MacAddr([2, 0, 0, 0, 1, 1]), MacAddr([2, 0, 0, 0, 1, 2]));
        // Datagram n sent at 10 n ms; the slice starts at 1.
        let sent: Vec<Instant> = (1..10).map(|i| ms(i * 10)).collect();
        // Echoes of 0, 1, then nothing until 7, 8, 9.
        let echoes: Vec<Echo> = [0u64, 1, 7, 8, 9]
            .iter()
            .map(|&seq| Echo {
                at: ms(seq * 10 + 1),
                seq,
                node: 0,
            })
            .collect();
        let answers = [
            ArpAnswer { at: ms(1), mac: a },
            ArpAnswer { at: ms(21), mac: a },
            ArpAnswer { at: ms(22), mac: b },
            ArpAnswer { at: ms(41), mac: b },
            ArpAnswer { at: ms(42), mac: a },
        ];
        let window = Window {
            from: ms(5),
            to: ms(100),
            answers: &answers,
            sent: &sent,
            first_sent: 1,
            echoes: &echoes,
        };
        // From the echo at 11 to the one at 71.
        assert_eq!(window.outage(), Duration::from_millis(60));
        // 1..=9 sent in the window, 2..=6 not echoed.
        assert_eq!(window.lost(Duration::from_millis(5)), 5);
        assert_eq!(
            window.first_answer_not_from(a),
            Some(Duration::from_millis(17))
        );
        // Slots of 5 ms from 5: [20, 25) holds a and b, [40, 45) too.
        assert_eq!(window.dual_answers(Duration::from_millis(5), None), 2);
        assert_eq!(
            window.dual_answers(Duration::from_millis(5), Some((ms(40), ms(50)))),
            1
        );
        assert_eq!(window.answerers(), vec![a, b]);
    }
}
