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
//!
//! What is measured is the network, not this process's scheduling: every thread here
//! runs `SCHED_FIFO` (where allowed: root), above every ordinary thread (builds, a CPU
//! hog) and below the speaker's own real-time threads, so that a loaded machine delays
//! neither a datagram on its way out nor an echo; and answers and echoes are stamped
//! with their arrival by the kernel (`SO_TIMESTAMPNS`), not when a thread gets to read
//! them. Seen without both on a loaded machine: an 84 ms "outage" in which no
//! datagram was lost, the echoes read late.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::RawFd,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
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
/// The real-time priority (`SCHED_FIFO`) of every thread here: above every ordinary
/// thread, below the speaker's membership (9) and fence heartbeat (10) threads, which
/// the client must not hold back. Each thread sleeps or blocks between packets.
const TRAFFIC_PRIORITY: i32 = 5;

static REALTIME_REFUSED: AtomicBool = AtomicBool::new(false);

/// Whether every thread started here so far runs `SCHED_FIFO` (it needs
/// CAP_SYS_NICE); if not, a loaded machine delays sends and echoes, and the figures
/// show it.
pub fn realtime() -> bool {
    !REALTIME_REFUSED.load(Ordering::Relaxed)
}

/// The calling thread to `SCHED_FIFO` at [`TRAFFIC_PRIORITY`] (recorded if refused).
fn enter_realtime() {
    let param = libc::sched_param {
        sched_priority: TRAFFIC_PRIORITY,
    };
    // SAFETY: 0 is the calling thread; a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
        REALTIME_REFUSED.store(true, Ordering::Relaxed);
    }
}

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

    /// A thread at [`TRAFFIC_PRIORITY`].
    fn spawn(&mut self, body: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = self.stop.clone();
        self.threads.push(std::thread::spawn(move || {
            enter_realtime();
            body(stop)
        }));
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

fn set_int_option(fd: RawFd, level: i32, name: i32, value: libc::c_int) -> std::io::Result<()> {
    // SAFETY: a socket and an int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the kernel to stamp every packet `fd` receives with its arrival
/// (`SO_TIMESTAMPNS`, read by [`recv_stamped`]).
fn stamp_arrivals(fd: RawFd) -> std::io::Result<()> {
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// Receives one packet into `buf`: its length and its arrival, by the kernel's stamp
/// (when it reached this namespace, however late this thread reads it), or now
/// without one. `None` on a timeout or an error.
fn recv_stamped(fd: RawFd, buf: &mut [u8]) -> Option<(usize, Instant)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for a few control messages, aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; all-zero is a valid start.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &raw mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = size_of_val(&control);
    // SAFETY: a socket, and a msghdr whose buffers outlive the call.
    let n = unsafe { libc::recvmsg(fd, &raw mut message, 0) };
    let n = usize::try_from(n).ok()?;
    let (now, wall_now) = (Instant::now(), std::time::SystemTime::now());
    let mut at = now;
    // SAFETY: walking the control messages that recvmsg wrote into `control`.
    let mut header = unsafe { libc::CMSG_FIRSTHDR(&raw const message) };
    while !header.is_null() {
        // SAFETY: a header inside `control`, as CMSG_FIRSTHDR / CMSG_NXTHDR give.
        let (level, kind) = unsafe { ((*header).cmsg_level, (*header).cmsg_type) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS {
            // SAFETY: SCM_TIMESTAMPNS carries a timespec (CLOCK_REALTIME).
            let stamp: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(header).cast()) };
            let arrived =
                std::time::UNIX_EPOCH + Duration::new(stamp.tv_sec as u64, stamp.tv_nsec as u32);
            // Its age, on the monotonic clock of `Instant`.
            let age = wall_now.duration_since(arrived).unwrap_or_default();
            at = now.checked_sub(age).unwrap_or(now);
        }
        // SAFETY: as above.
        header = unsafe { libc::CMSG_NXTHDR(&raw const message, header) };
    }
    Some((n, at))
}

/// What a thread records, in order, handed over through a channel: the recording
/// thread (real-time) never waits for a lock that a reader (an ordinary thread,
/// preempted on a loaded machine) holds. With a shared lock it did: the sender stalled
/// for 62 ms once, a gap without echoes in which nothing was sent, so nothing lost.
struct Record<T> {
    writer: mpsc::Sender<T>,
    kept: Mutex<(mpsc::Receiver<T>, Vec<T>)>,
}

impl<T: Clone> Record<T> {
    fn new() -> Self {
        let (writer, reader) = mpsc::channel();
        Self {
            writer,
            kept: Mutex::new((reader, Vec::new())),
        }
    }

    /// For the recording thread.
    fn writer(&self) -> mpsc::Sender<T> {
        self.writer.clone()
    }

    /// What was recorded from the first item whose `at` is `from` or later on, and
    /// that item's index among all.
    fn since(&self, from: Instant, at: impl Fn(&T) -> Instant) -> (usize, Vec<T>) {
        let Ok(mut kept) = self.kept.lock() else {
            return (0, Vec::new());
        };
        let (reader, items) = &mut *kept;
        items.extend(reader.try_iter());
        let first = items.partition_point(|x| at(x) < from);
        (first, items[first..].to_vec())
    }
}

/// When each datagram was sent, written by the sending thread without a lock, an
/// allocation or a system call: a ring of preallocated, already written slots (the
/// time since `base`, in ns, of datagram `n` in slot `n % len`). The channel of
/// [`Record`] allocates a block every 31 items; an allocation may grow the thread's
/// heap (`mprotect`) or fault a page in, and both wait for the process's memory map
/// lock, which an ordinary thread (the bench's own, spawning `ip` or freeing a large
/// copy) may hold while preempted on a loaded machine: a priority inversion, as the
/// shared lock was.
struct SendLog {
    base: Instant,
    stamps: Box<[AtomicU64]>,
    /// Datagrams recorded so far.
    count: AtomicU64,
}

/// Slots of a [`SendLog`]: 2^20, 17 minutes at 1 ms, 8 MiB.
const SEND_LOG_SLOTS: usize = 1 << 20;

impl SendLog {
    fn new(slots: usize) -> Self {
        let stamps: Box<[AtomicU64]> = (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect();
        // Written once now, so that no page of it faults in later in the sender.
        for stamp in stamps.iter() {
            stamp.store(u64::MAX, Ordering::Relaxed);
        }
        Self {
            base: Instant::now(),
            stamps,
            count: AtomicU64::new(0),
        }
    }

    /// For the one writing thread.
    fn push(&self, at: Instant) {
        let n = self.count.load(Ordering::Relaxed);
        let ns =
            u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        self.stamps[(n % self.stamps.len() as u64) as usize].store(ns, Ordering::Relaxed);
        self.count.store(n + 1, Ordering::Release);
    }

    /// The number of the first datagram sent at `from` or later, and when each from it
    /// on was sent (among the last `slots` recorded).
    fn since(&self, from: Instant) -> (u64, Vec<Instant>) {
        let count = self.count.load(Ordering::Acquire);
        let slots = self.stamps.len() as u64;
        let oldest = count.saturating_sub(slots);
        let at = |n: u64| {
            self.base
                + Duration::from_nanos(self.stamps[(n % slots) as usize].load(Ordering::Relaxed))
        };
        // Sends are in order: the first at `from` or later, by bisection.
        let (mut low, mut high) = (oldest, count);
        while low < high {
            let middle = low + (high - low) / 2;
            if at(middle) < from {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        (low, (low..count).map(at).collect())
    }
}

/// Locks every page of this process in memory, now and to come (`mlockall`), so that
/// the client's real-time threads never wait for a page to be read back (its code, on
/// a machine short of page cache while others build) nor fault one in. Whether it
/// did (it needs CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK).
pub fn lock_memory() -> bool {
    // SAFETY: no pointers; flags only.
    unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) == 0 }
}

/// Records in order of arrival (a stamp converted from the wall clock may come out a
/// few ns before the last one).
fn record_at<T>(
    record: &mpsc::Sender<T>,
    at: Instant,
    last: &mut Instant,
    make: impl FnOnce(Instant) -> T,
) {
    let at = at.max(*last);
    *last = at;
    let _ = record.send(make(at));
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
    answers: Record<ArpAnswer>,
    _threads: Stopper,
}

impl ArpProber {
    pub fn start(ns: &str, ifname: &str, vip: Ipv4Addr, every: Duration) -> anyhow::Result<Self> {
        let socket = {
            let _netns = NetnsGuard::enter(ns).with_context(|| format!("entering {ns}"))?;
            arp_packet_socket(ifname)?
        };
        set_receive_timeout(&socket, POLL).context("SO_RCVTIMEO")?;
        stamp_arrivals(socket.as_raw_fd()).context("SO_TIMESTAMPNS")?;
        let socket = Arc::new(socket);
        let answers = Record::new();
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
        let record = answers.writer();
        threads.spawn(move |stop| {
            let mut buf = [0u8; 128];
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let Some((n, at)) = recv_stamped(socket.as_raw_fd(), &mut buf) else {
                    continue;
                };
                if let Some(mac) = arp_answer_from(&buf[..n], vip) {
                    record_at(&record, at, &mut last, |at| ArpAnswer { at, mac });
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
        self.answers.since(from, |a| a.at).1
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
    sent: Arc<SendLog>,
    echoes: Record<Echo>,
    _threads: Stopper,
}

impl UdpPinger {
    pub fn start(ns: &str, vip: Ipv4Addr, port: u16, every: Duration) -> anyhow::Result<Self> {
        let socket = {
            let _netns = NetnsGuard::enter(ns).with_context(|| format!("entering {ns}"))?;
            UdpSocket::bind("0.0.0.0:0").context("binding the client's socket")?
        };
        socket.set_read_timeout(Some(POLL))?;
        stamp_arrivals(socket.as_raw_fd()).context("SO_TIMESTAMPNS")?;
        let receiver = socket.try_clone()?;
        let sent = Arc::new(SendLog::new(SEND_LOG_SLOTS));
        let echoes = Record::new();
        let mut threads = Stopper::new();
        let record = sent.clone();
        threads.spawn(move |stop| {
            let mut next = Instant::now();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                record.push(Instant::now());
                // A send fails while the neighbour entry is unresolved and its queue
                // full: that datagram is lost, as a real client's would be.
                let _ = socket.send_to(&seq.to_be_bytes(), SocketAddrV4::new(vip, port));
                seq += 1;
                next += every;
                sleep_until(next);
            }
        });
        let record = echoes.writer();
        threads.spawn(move |stop| {
            let mut buf = [0u8; 64];
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Some((n, at)) = recv_stamped(receiver.as_raw_fd(), &mut buf)
                    && n >= 9
                {
                    let mut seq = [0u8; 8];
                    seq.copy_from_slice(&buf[..8]);
                    record_at(&record, at, &mut last, |at| Echo {
                        at,
                        seq: u64::from_be_bytes(seq),
                        node: buf[8],
                    });
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
        self.sent.since(from)
    }

    /// The echoes received at `from` or later, in order of arrival.
    pub fn echoes_since(&self, from: Instant) -> Vec<Echo> {
        self.echoes.since(from, |e| e.at).1
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
        self.longest_gap().1
    }

    /// The longest time without an echo, from `from` to `to`: when it started (the
    /// last echo before it, or `from`) and how long it lasted.
    pub fn longest_gap(&self) -> (Instant, Duration) {
        let mut last = self.from;
        let mut longest = (self.from, Duration::ZERO);
        for echo in self
            .echoes
            .iter()
            .filter(|e| e.at > self.from && e.at <= self.to)
        {
            if echo.at - last > longest.1 {
                longest = (last, echo.at - last);
            }
            last = echo.at;
        }
        let tail = self.to.saturating_duration_since(last);
        if tail > longest.1 {
            longest = (last, tail);
        }
        longest
    }

    /// The datagrams sent during the longest gap, and those of them that no node ever
    /// echoed: none lost means that the echoes came late (a queue, a slow path), not
    /// that they went missing; none sent, that the client itself stalled.
    pub fn sent_and_lost_in_longest_gap(&self) -> (usize, usize) {
        let (start, length) = self.longest_gap();
        let gap = Window {
            from: start,
            to: start + length,
            ..*self
        };
        let sent = self
            .sent
            .iter()
            .filter(|at| **at >= gap.from && **at <= gap.to)
            .count();
        (sent, gap.lost(Duration::ZERO))
    }

    /// The longest time between two datagrams sent in the window (the sender sends
    /// every millisecond): more means that the client itself stalled.
    pub fn longest_send_pause(&self) -> Duration {
        let sent: Vec<&Instant> = self
            .sent
            .iter()
            .filter(|at| **at >= self.from && **at <= self.to)
            .collect();
        sent.windows(2)
            .map(|w| w[1].saturating_duration_since(*w[0]))
            .max()
            .unwrap_or_default()
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
    fn an_arrival_is_the_kernels_stamp_not_the_time_of_the_read() {
        let mut fds = [0; 2];
        // SAFETY: socketpair(2) into an array of two.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        // SAFETY: two descriptors just made, owned by nobody else.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        stamp_arrivals(b.as_raw_fd()).expect("SO_TIMESTAMPNS");
        let before = Instant::now();
        // SAFETY: a socket and a buffer of the length given.
        let sent = unsafe { libc::send(a.as_raw_fd(), b"ping".as_ptr().cast(), 4, 0) };
        assert_eq!(sent, 4);
        let after = Instant::now();
        // Read late, as a thread held back by a loaded machine would.
        std::thread::sleep(Duration::from_millis(50));
        let read = Instant::now();
        let mut buf = [0u8; 16];
        let (n, at) = recv_stamped(b.as_raw_fd(), &mut buf).expect("a datagram");
        assert_eq!(&buf[..n], b"ping");
        // The clocks are read one after the other: a few ms of slack for a preemption
        // in between, far less than the 50 ms the read came late.
        let slack = Duration::from_millis(10);
        assert!(
            at + slack >= before && at <= after + slack,
            "arrival {:?} after the send began, read {:?} after",
            at.saturating_duration_since(before),
            read.saturating_duration_since(before)
        );
    }

    /// The sender's ring: numbered from the first datagram ever, found from an instant
    /// by bisection, the oldest overwritten once it is full.
    #[test]
    fn the_send_log_numbers_the_datagrams_and_keeps_the_last_ones() {
        let log = SendLog::new(8);
        let t0 = log.base;
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert_eq!(log.since(t0), (0, vec![]));
        // Datagram n sent at 10 n ms, 0..=11: 0..=3 overwritten.
        for n in 0..12 {
            log.push(ms(10 * n));
        }
        assert_eq!(
            log.since(ms(55)),
            (6, (6..12).map(|n| ms(10 * n)).collect())
        );
        assert_eq!(log.since(ms(60)).0, 6);
        assert_eq!(log.since(ms(111)), (12, vec![]));
        // From before the oldest kept: the oldest kept, 4.
        assert_eq!(log.since(t0), (4, (4..12).map(|n| ms(10 * n)).collect()));
    }

    #[test]
    fn a_window_tells_late_echoes_from_missing_ones() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Datagram n sent at n ms; echoed 1 ms later.
        let sent: Vec<Instant> = (0..100).map(ms).collect();
        let echo = |seq: u64, at: u64| Echo {
            at: ms(at),
            seq,
            node: 0,
        };
        // Late: 40..100 all echoed at once at 120 (they waited in a queue): an 80 ms
        // gap from the echo of 39 at 40, nothing lost.
        let late: Vec<Echo> = (0..100)
            .map(|seq| echo(seq, if seq < 40 { seq + 1 } else { 120 }))
            .collect();
        let window = Window {
            from: ms(0),
            to: ms(130),
            answers: &[],
            sent: &sent,
            first_sent: 0,
            echoes: &late,
        };
        assert_eq!(window.longest_gap(), (ms(40), Duration::from_millis(80)));
        assert_eq!(window.sent_and_lost_in_longest_gap(), (60, 0));
        assert_eq!(window.longest_send_pause(), Duration::from_millis(1));
        // Missing: 40..60 never echoed: a 21 ms gap, from the echo of 39 to that of 60.
        let missing: Vec<Echo> = (0..100)
            .filter(|seq| !(40..60).contains(seq))
            .map(|seq| echo(seq, seq + 1))
            .collect();
        let window = Window {
            to: ms(100),
            echoes: &missing,
            ..window
        };
        assert_eq!(window.longest_gap(), (ms(40), Duration::from_millis(21)));
        assert_eq!(window.sent_and_lost_in_longest_gap(), (22, 20));
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
        assert_eq!(window.longest_gap(), (ms(11), Duration::from_millis(60)));
        // 2..=6 sent at 20..=60, inside it, and never echoed; 7 at 70 echoed.
        assert_eq!(window.sent_and_lost_in_longest_gap(), (6, 5));
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
