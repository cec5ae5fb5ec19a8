//! `cargo xtask bench e2e`: the node under an ARP (and, as a second row, NS) flood,
//! end to end over a veth pair, with five responders one after another in the same
//! run, same generator, same VIP set:
//!
//! 1. XDP native, 2. XDP generic, 3. the kernel's own ARP/NDP (the VIPs added to the
//!    node's interface, as kube-vip does), 4. our userspace datapath, 5. none (what
//!    the node spends receiving requests nobody answers).
//!
//! The generator, written for this bench, sends prebuilt requests for the VIPs from
//! the client namespace, as fast as it can and at a few fixed offered rates, for a
//! fixed time: with `sendmmsg` on an AF_PACKET socket (qdisc bypassed), or as XDP
//! frames with BPF_PROG_TEST_RUN's live-frames mode.
//!
//! A bench-only BPF object (`metallb-ebpf/src/bin/e2e_probe.rs`, never in the agent)
//! takes the client's share out of the measurement: its XDP sink on the client's veth
//! counts the replies and drops them (the client's kernel never processes them; the
//! answered count is exact and independent of any socket), and raw tracepoints on
//! `softirq_entry`/`softirq_exit`/`napi_poll` time every NET_RX softirq with the clock,
//! the client veth's NAPI polls apart. Per point: offered (sent), received (the node's
//! veth) and answered rates, loss, and the node's CPU per answer ([`NodeCpu`]): the
//! NET_RX softirq time outside the client's polls, less the same time measured on the
//! idle machine just before (other work's traffic), plus the userspace responder's
//! threads' runtime (without the softirqs that ran on their stacks); for XDP also the
//! program's own run time per answer (bpf_stats). The generator's own time (its
//! sendmmsg calls) is not counted. Everything runs on one machine: the generator, both
//! namespaces' softirqs and the responder share its CPUs.
//!
//! Writes `target/bench-e2e.csv` and `target/bench-e2e.svg` (`BENCH_E2E_OUT` sets the
//! directory): answered rate and node CPU per answer against offered rate, one line per
//! responder, ARP and NS. `BENCH_E2E_SECONDS` (default 2) sets each point's duration,
//! `BENCH_E2E_RATES` the fixed rates (default `10000,30000,100000`; the maximum is
//! always run too). The whole run is done twice, on a fresh lab each: with the
//! requests sent as socket buffers, then as XDP frames ([`Ingress`];
//! `BENCH_E2E_INGRESS=socket` or `xdp-frames` runs one). The chart of the second is
//! `bench-e2e-xdp-frames.svg`; the CSV holds both. `BENCH_E2E_ROUNDS=N` (default 1)
//! adds N-1 rounds at the maximum rate only, the five responders again each time, and
//! prints each round's ratios to XDP native with their minimum, median and maximum:
//! one round's ratio moves with the machine's other work.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::{
    Ebpf, TestRun as _, include_bytes_aligned,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, ProgramArray},
    programs::{ProgramInfo, RawTracePoint, TestRunAttrs, TestRunOptions, Xdp},
    sys::{Stats, enable_stats},
};
use metallb_common::{
    VipAction,
    e2e::{self, E2eCounters},
    replay::{self, ReplayCursor, ReplayFrame},
};
use metallb_testkit::lab::{Lab, NetnsGuard, ScratchPinDir};
use metallb_user::datapath::{
    Datapath, DatapathKind, DatapathOptions, HELPERS_OBJECT, XdpMode, iface,
    maps::{VipConfig, VipKey},
    xdp_md,
};

/// The bench-only probe object (sink and softirq timing), built with the agent's.
static PROBE_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/e2e_probe"));

const VIPS: u8 = 64;
/// Frames per sendmmsg call.
const BATCH: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Responder {
    XdpNative,
    XdpGeneric,
    Kernel,
    Userspace,
    None,
}

impl Responder {
    const ALL: [Responder; 5] = [
        Responder::XdpNative,
        Responder::XdpGeneric,
        Responder::Kernel,
        Responder::Userspace,
        Responder::None,
    ];

    fn name(self) -> &'static str {
        match self {
            Responder::XdpNative => "XDP native",
            Responder::XdpGeneric => "XDP generic",
            Responder::Kernel => "kernel ARP/NDP",
            Responder::Userspace => "userspace",
            Responder::None => "none",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    Arp,
    Ns,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Arp => "ARP",
            Proto::Ns => "NS",
        }
    }
}

fn vip4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, i + 1)
}

fn vip6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0x100, u16::from(i) + 1)
}

/// One measured point.
#[derive(Clone, Debug)]
struct Point {
    ingress: Ingress,
    responder: Responder,
    proto: Proto,
    /// The fixed rate asked for; `None`: as fast as the generator can.
    asked: Option<u64>,
    seconds: f64,
    sent: u64,
    /// Frames the node's veth received (the rest the veth dropped on the way).
    received: u64,
    /// Replies of this point's kind that reached the client's sink.
    answered: u64,
    /// Machine-wide busy CPU time, ns (tick-sampled; mostly other work).
    busy_ns: u64,
    /// The node side's CPU time and the client's polls, ns.
    cpu: NodeCpu,
    /// bpf_stats of the responder program: run time (ns) and runs.
    bpf: Option<(u64, u64)>,
    /// 0: the run over every rate; 1..: a further round at the maximum rate only
    /// (`BENCH_E2E_ROUNDS`), each responder started afresh, to show how the ratios
    /// spread from one round to the next.
    round: u32,
}

impl Point {
    fn offered(&self) -> f64 {
        self.sent as f64 / self.seconds
    }
    fn answered_rate(&self) -> f64 {
        self.answered as f64 / self.seconds
    }
    fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - self.answered as f64 / self.sent as f64
    }
    /// The node's CPU per answer, ns (none for the no-responder run: whatever reaches
    /// its client is not an answer to the flood).
    fn node_per_answer(&self) -> Option<f64> {
        (self.answered > 0 && self.responder != Responder::None)
            .then(|| self.cpu.node_ns() / self.answered as f64)
    }
    /// The client veth's polls per answer, ns.
    fn client_per_answer(&self) -> Option<f64> {
        (self.answered > 0 && self.responder != Responder::None)
            .then(|| self.cpu.client_polls as f64 / self.answered as f64)
    }
}

/// CPU time of one point, ns, all clock-measured (not tick-sampled).
#[derive(Clone, Copy, Debug, Default)]
struct NodeCpu {
    /// NET_RX softirq time on all CPUs, client veth polls included.
    net_rx: u64,
    /// The client veth's NAPI polls: its receive of the replies and the sink's drop.
    client_polls: u64,
    /// NET_RX time outside the client's polls that the machine spent at the same
    /// pace on the idle window before the point (other work's traffic), scaled to
    /// the point's duration.
    background: u64,
    /// The userspace responder's threads' runtime (CLOCK_THREAD_CPUTIME_ID).
    responder_threads: u64,
    /// Softirq time that ran on those threads' stacks (already in `net_rx` when
    /// NET_RX, and charged to the threads' runtime by the kernel as well).
    responder_softirq: u64,
}

impl NodeCpu {
    /// The node's share: NET_RX outside the client's polls, less the background,
    /// plus the responder threads' own time.
    fn node_ns(&self) -> f64 {
        self.net_rx as f64 - self.client_polls as f64 - self.background as f64
            + self.responder_threads as f64
            - self.responder_softirq as f64
    }
}

/// How the generator's requests reach the node's veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ingress {
    /// `sendmmsg` on an AF_PACKET socket: socket buffers, which a veth with an XDP
    /// program first converts into XDP buffers (a page and a copy).
    Socket,
    /// BPF_PROG_TEST_RUN in live-frames mode on the client's veth (the replay program
    /// writes the next request of the cycle, floor_tx sends it): XDP frames, which the
    /// node's veth hands to its XDP program as they are (as a NIC driver hands it the
    /// page it received into) and otherwise turns into socket buffers in its NAPI poll
    /// (GRO on, as a NIC driver does). A call costs milliseconds of set-up, so the
    /// fixed rates come in bursts of a few hundred frames.
    XdpFrames,
}

impl Ingress {
    fn name(self) -> &'static str {
        match self {
            Ingress::Socket => "socket",
            Ingress::XdpFrames => "xdp-frames",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Ingress::Socket => "socket buffers (sendmmsg)",
            Ingress::XdpFrames => "XDP frames (as from a NIC)",
        }
    }
    fn describe(self) -> String {
        match self {
            Ingress::Socket => format!(
                "requests as socket buffers: sendmmsg on AF_PACKET, {BATCH} frames per call"
            ),
            Ingress::XdpFrames => format!(
                "requests as XDP frames: XDP_TX on live frames (BPF_PROG_TEST_RUN, the replay program cycling the requests), up to {LIVE_REPEAT} frames per call; GRO on the node's veth"
            ),
        }
    }
}

/// Frames per BPF_PROG_TEST_RUN call, and per batch inside it (the kernel's maximum),
/// in [`Ingress::XdpFrames`]. A call costs milliseconds of set-up (its page pool).
const LIVE_REPEAT: usize = 16_384;
const LIVE_BATCH: u32 = 256;

/// The bench's own replay program (`metallb-ebpf/src/bin/replay.rs`): restores the
/// next request of a cycle into each live frame, then tail-calls floor_tx.
static REPLAY_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/replay"));

/// The generator, in the client namespace: sends the prebuilt frames round robin.
enum Generator {
    /// An AF_PACKET socket bound to the client's veth.
    Socket(OwnedFd),
    /// The replay program (then floor_tx) run on live frames with the client's veth
    /// as ingress.
    XdpFrames(Box<LiveFrames>),
}

/// What [`Generator::XdpFrames`] holds: the programs, the replay maps, where to send.
struct LiveFrames {
    _helpers: Ebpf,
    replay: Ebpf,
    frames: Array<MapData, ReplayFrame>,
    cursor: Array<MapData, ReplayCursor>,
    _subject: ProgramArray<MapData>,
    ifindex: u32,
    client_ns: String,
}

impl Generator {
    fn open(lab: &Lab, ingress: Ingress) -> anyhow::Result<Self> {
        let _netns = NetnsGuard::enter(&lab.client_ns).context("entering the client namespace")?;
        if ingress == Ingress::XdpFrames {
            let mut helpers = Ebpf::load(HELPERS_OBJECT).context("loading the floor programs")?;
            let floor_tx: &mut Xdp = helpers
                .program_mut("floor_tx")
                .context("no floor_tx program")?
                .try_into()?;
            floor_tx.load()?;
            let mut replay = Ebpf::load(REPLAY_OBJECT).context("loading the replay program")?;
            let program: &mut Xdp = replay
                .program_mut(replay::PROGRAM_NAME)
                .context("no replay program")?
                .try_into()?;
            program.load()?;
            let mut take = |name: &str| replay.take_map(name).context(name.to_string());
            let (frames, cursor, subject) = (
                take(replay::FRAMES)?.try_into()?,
                take(replay::CURSOR)?.try_into()?,
                take(replay::SUBJECT)?,
            );
            let mut subject: ProgramArray<MapData> = subject.try_into()?;
            subject.set(0, floor_tx.fd()?, 0)?;
            return Ok(Self::XdpFrames(Box::new(LiveFrames {
                _helpers: helpers,
                replay,
                frames,
                cursor,
                _subject: subject,
                ifindex: iface::by_name(lab.client_if)?.ifindex,
                client_ns: lab.client_ns.clone(),
            })));
        }
        let ifindex = iface::by_name(lab.client_if)?.ifindex;
        // SAFETY: plain socket(2), checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("AF_PACKET socket");
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let on: libc::c_int = 1;
        // SAFETY: a valid int for the call. Straight to the driver: no qdisc.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        // SAFETY: zeroed sockaddr_ll is valid; bound with protocol 0: it receives nothing.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: a valid address for the call.
        if unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        } < 0
        {
            return Err(io::Error::last_os_error()).context("binding the generator");
        }
        Ok(Self::Socket(fd))
    }

    /// Sends `frames` round robin for `duration`, at `rate` frames per second or as
    /// fast as it can; returns how many the kernel took.
    fn run(
        &mut self,
        frames: &[Vec<u8>],
        rate: Option<u64>,
        duration: Duration,
    ) -> anyhow::Result<u64> {
        match self {
            Self::Socket(fd) => Ok(send_mmsg(fd, frames, rate, duration)),
            Self::XdpFrames(live) => {
                let LiveFrames {
                    replay: replay_object,
                    frames: frame_map,
                    cursor,
                    ifindex,
                    client_ns,
                    ..
                } = live.as_mut();
                let len = frames.first().map_or(0, Vec::len);
                anyhow::ensure!(
                    len <= replay::FRAME_BYTES && frames.iter().all(|f| f.len() == len),
                    "live frames: requests of one length, at most {} bytes",
                    replay::FRAME_BYTES
                );
                for (i, frame) in frames.iter().enumerate() {
                    let mut slot = ReplayFrame {
                        bytes: [0; replay::FRAME_BYTES],
                    };
                    slot.bytes[..len].copy_from_slice(frame);
                    frame_map.set(i as u32, slot, 0)?;
                }
                cursor.set(
                    0,
                    ReplayCursor {
                        next: 0,
                        count: frames.len() as u32,
                        // A generator: nothing reads the frames before they are sent.
                        ..ReplayCursor::default()
                    },
                    0,
                )?;
                // The ingress ifindex is looked up in the caller's namespace.
                let _netns =
                    NetnsGuard::enter(client_ns).context("entering the client namespace")?;
                let program: &Xdp = replay_object
                    .program(replay::PROGRAM_NAME)
                    .context("no replay program")?
                    .try_into()?;
                let context = xdp_md(len, *ifindex);
                let mut failure = None;
                let sent = paced(rate, duration, LIVE_REPEAT, |want| {
                    let mut options = TestRunOptions::new();
                    options.data_in = Some(&frames[0]);
                    options.ctx_in = Some(&context);
                    options.repeat = want as u32;
                    options.attrs = TestRunAttrs::new().xdp_live_frames(LIVE_BATCH);
                    match program.test_run(options) {
                        Ok(_) => want,
                        Err(error) => {
                            failure.get_or_insert(error);
                            0
                        }
                    }
                });
                if let Some(error) = failure {
                    anyhow::bail!("live frames: {error}");
                }
                Ok(sent)
            }
        }
    }
}

/// Calls `send(want)` (which returns how many frames went out, at most `want`, at
/// most `batch`) until `duration` is over, at `rate` frames per second or as fast as
/// it can; returns the frames sent.
fn paced(
    rate: Option<u64>,
    duration: Duration,
    batch: usize,
    mut send: impl FnMut(usize) -> usize,
) -> u64 {
    let started = Instant::now();
    let mut sent: u64 = 0;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        let mut want = batch;
        if let Some(rate) = rate {
            let due = (rate as f64 * elapsed.as_secs_f64()) as u64;
            if due <= sent {
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
            want = want.min((due - sent) as usize);
        }
        let n = send(want);
        if n > 0 {
            sent += n as u64;
        } else {
            std::thread::yield_now();
        }
    }
    sent
}

/// The AF_PACKET generator: `sendmmsg` of up to [`BATCH`] frames per call.
fn send_mmsg(fd: &OwnedFd, frames: &[Vec<u8>], rate: Option<u64>, duration: Duration) -> u64 {
    let mut iovecs: Vec<libc::iovec> = frames
        .iter()
        .cycle()
        .take(frames.len() * BATCH)
        .map(|f| libc::iovec {
            iov_base: f.as_ptr().cast_mut().cast(),
            iov_len: f.len(),
        })
        .collect();
    // SAFETY: zeroed mmsghdr is valid; each points at one iovec that outlives it.
    let mut messages: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let mut at = 0usize;
    paced(rate, duration, BATCH, |want| {
        // SAFETY: `want` messages from `at`, within the vector (it holds
        // `frames.len()` whole batches and `at` is below `frames.len()`).
        let n =
            unsafe { libc::sendmmsg(fd.as_raw_fd(), messages[at..].as_mut_ptr(), want as u32, 0) };
        if n <= 0 {
            return 0;
        }
        at = (at + n as usize) % frames.len();
        n as usize
    })
}

/// Turns GRO on (legacy ETHTOOL_SGRO) on `ifname` in the calling thread's namespace:
/// a veth with GRO on runs a NAPI poll even without an XDP program, and only then
/// takes XDP frames from its peer.
fn gro_on(ifname: &str) -> anyhow::Result<()> {
    const ETHTOOL_SGRO: u32 = 0x2c;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: 1,
    };
    // SAFETY: plain socket(2), checked.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error()).context("socket for ethtool");
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: zeroed ifreq is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: a valid ifreq pointing at a valid ethtool_value for the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &raw mut request) } < 0 {
        return Err(io::Error::last_os_error()).with_context(|| format!("GRO on {ifname}"));
    }
    Ok(())
}

/// Machine-wide busy time so far (all CPUs, all but idle and iowait), ns.
fn busy_ns() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| v)
        .sum();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(busy * 1_000_000_000 / hz)
}

/// The bench-only probe: the XDP sink on the client's veth (native mode, so that it
/// also lets native XDP_TX frames reach the client) and the softirq timing; detached
/// when dropped (the programs' links close with the object).
struct Probe {
    ebpf: Ebpf,
}

/// Counters summed over the CPUs at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct ProbeCounts {
    arp_replies: u64,
    neighbor_advertisements: u64,
    net_rx_ns: u64,
    client_poll_ns: u64,
    responder_softirq_ns: u64,
}

impl Probe {
    fn attach(lab: &Lab) -> anyhow::Result<Self> {
        let mut ebpf = Ebpf::load(PROBE_OBJECT).context("loading the e2e probe")?;
        {
            let _netns =
                NetnsGuard::enter(&lab.client_ns).context("entering the client namespace")?;
            let sink: &mut Xdp = ebpf
                .program_mut(e2e::SINK)
                .context("no sink program")?
                .try_into()?;
            sink.load()?;
            sink.attach(lab.client_if, aya::programs::XdpMode::Driver)
                .with_context(|| format!("attaching the sink to {}", lab.client_if))?;
        }
        for (program, tracepoint) in [
            (e2e::SOFTIRQ_ENTRY, "softirq_entry"),
            (e2e::SOFTIRQ_EXIT, "softirq_exit"),
            (e2e::NAPI_POLL, "napi_poll"),
        ] {
            let tp: &mut RawTracePoint = ebpf
                .program_mut(program)
                .with_context(|| format!("no {program} program"))?
                .try_into()?;
            tp.load()?;
            tp.attach(tracepoint)
                .with_context(|| format!("attaching to the {tracepoint} tracepoint"))?;
        }
        Ok(Self { ebpf })
    }

    /// Threads whose runtime the node's CPU counts: the softirqs on their stacks are
    /// counted apart so that they are not counted twice.
    fn set_responder_threads(&mut self, tids: &[u32]) -> anyhow::Result<()> {
        let mut map: BpfHashMap<_, u32, u8> = BpfHashMap::try_from(
            self.ebpf
                .map_mut(e2e::RESPONDER_TIDS)
                .context("no responder tids map")?,
        )?;
        let old: Vec<u32> = map.keys().flatten().collect();
        for tid in old {
            map.remove(&tid)?;
        }
        for tid in tids {
            map.insert(tid, 1, 0)?;
        }
        Ok(())
    }

    fn counts(&self) -> anyhow::Result<ProbeCounts> {
        let map: PerCpuArray<_, E2eCounters> =
            PerCpuArray::try_from(self.ebpf.map(e2e::COUNTERS).context("no counters map")?)?;
        let mut sum = ProbeCounts::default();
        for cpu in map.get(&0, 0)?.iter() {
            sum.arp_replies += cpu.arp_replies;
            sum.neighbor_advertisements += cpu.neighbor_advertisements;
            sum.net_rx_ns += cpu.net_rx_ns;
            sum.client_poll_ns += cpu.client_poll_ns;
            sum.responder_softirq_ns += cpu.responder_softirq_ns;
        }
        Ok(sum)
    }
}

/// A thread's CPU time so far, ns, from the scheduler's clock (the thread must be one
/// of this process's).
fn thread_cpu_ns(tid: u32) -> u64 {
    // MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED): the kernel's clock id for a thread.
    let clock = ((!(tid as libc::clockid_t)) << 3) | 4 | 2;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the call; a thread that is gone gives an error.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// This process's userspace responder threads (`arp-ndp-IFINDEX`).
fn responder_threads() -> Vec<u32> {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            comm.starts_with("arp-ndp-")
                .then(|| task.file_name().to_str()?.parse().ok())
                .flatten()
        })
        .collect()
}

/// Packets the interface received, as `ip -s` reports them.
fn rx_packets(ns: &str, ifname: &str) -> anyhow::Result<u64> {
    let out = metallb_testkit::lab::run("ip", &["-n", ns, "-j", "-s", "link", "show", ifname])?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    json[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .context("no rx packets in ip -s")
}

fn bpf_stats(dp: &Datapath) -> anyhow::Result<(u64, u64)> {
    let info: ProgramInfo = dp.program()?.info().context("program info")?;
    Ok((info.run_time().as_nanos() as u64, info.run_count()))
}

/// The node side for one responder: set up on creation, removed on drop.
struct Node<'a> {
    lab: &'a Lab,
    responder: Responder,
    /// The userspace responder's threads (empty for the others).
    threads: Vec<u32>,
    dp: Option<Datapath>,
    kernel_addrs: Vec<String>,
}

impl<'a> Node<'a> {
    fn start(lab: &'a Lab, responder: Responder, pins: &ScratchPinDir) -> anyhow::Result<Self> {
        let mut node = Node {
            lab,
            responder,
            threads: Vec::new(),
            dp: None,
            kernel_addrs: Vec::new(),
        };
        let kind_mode = match responder {
            Responder::XdpNative => Some((DatapathKind::Xdp, XdpMode::Native)),
            Responder::XdpGeneric => Some((DatapathKind::Xdp, XdpMode::Generic)),
            Responder::Userspace => Some((DatapathKind::Userspace, XdpMode::Generic)),
            Responder::Kernel => {
                for i in 0..VIPS {
                    let (v4, v6) = (format!("{}/32", vip4(i)), format!("{}/128", vip6(i)));
                    lab.ip(&lab.node_ns, &["addr", "add", &v4, "dev", lab.node_if])?;
                    node.kernel_addrs.push(v4);
                    lab.ip(
                        &lab.node_ns,
                        &["addr", "add", &v6, "dev", lab.node_if, "nodad"],
                    )?;
                    node.kernel_addrs.push(v6);
                }
                None
            }
            Responder::None => None,
        };
        if let Some((kind, mode)) = kind_mode {
            let _netns = NetnsGuard::enter(&lab.node_ns)?;
            let mut dp = Datapath::load(&DatapathOptions {
                pin_dir: pins.path.clone(),
                max_vips: 1024,
            })?;
            let used = dp.attach_with(lab.node_if, mode, kind)?;
            let ifindex = iface::by_name(lab.node_if)?.ifindex;
            let desired: BTreeMap<VipKey, VipConfig> = (0..VIPS)
                .flat_map(|i| [IpAddr::V4(vip4(i)), IpAddr::V6(vip6(i))])
                .map(|addr| {
                    (
                        VipKey {
                            addr,
                            ifindex,
                            vlan_id: 0,
                        },
                        VipConfig {
                            mac: lab.node_mac,
                            action: VipAction::Answer,
                        },
                    )
                })
                .collect();
            let report = dp.sync(&desired);
            anyhow::ensure!(report.errors.is_empty(), "sync: {:?}", report.errors);
            eprintln!("  {}: {used}", responder.name());
            node.threads = responder_threads();
            node.dp = Some(dp);
        }
        Ok(node)
    }
}

impl Drop for Node<'_> {
    fn drop(&mut self) {
        if let Some(dp) = self.dp.take()
            && let Ok(_netns) = NetnsGuard::enter(&self.lab.node_ns)
        {
            let _ = dp.shutdown();
        }
        for addr in &self.kernel_addrs {
            let _ = self.lab.ip(
                &self.lab.node_ns,
                &["addr", "del", addr, "dev", self.lab.node_if],
            );
        }
    }
}

/// Runs the generator for one point, with an idle window before it that measures
/// the machine's background NET_RX pace.
#[allow(clippy::too_many_arguments)]
fn measure(
    lab: &Lab,
    node: &Node,
    probe: &Probe,
    generator: &mut Generator,
    (proto, frames): (Proto, &[Vec<u8>]),
    asked: Option<u64>,
    duration: Duration,
    idle: Duration,
) -> anyhow::Result<Point> {
    let outside_client = |c: &ProbeCounts| c.net_rx_ns.saturating_sub(c.client_poll_ns);
    let idle_start = (Instant::now(), probe.counts()?);
    std::thread::sleep(idle);
    let idle_end = (Instant::now(), probe.counts()?);
    let background_per_s = outside_client(&idle_end.1).saturating_sub(outside_client(&idle_start.1))
        as f64
        / idle_end.0.duration_since(idle_start.0).as_secs_f64();

    let dp = node.dp.as_ref();
    let bpf_before = dp.map(bpf_stats).transpose()?;
    let node_rx_before = rx_packets(&lab.node_ns, lab.node_if)?;
    let busy_before = busy_ns()?;
    let threads_before: u64 = node.threads.iter().map(|t| thread_cpu_ns(*t)).sum();
    let (start, before) = (Instant::now(), probe.counts()?);
    let sent = generator.run(frames, asked, duration)?;
    // Let the queues drain before the counts are read.
    std::thread::sleep(Duration::from_millis(100));
    let (end, after) = (Instant::now(), probe.counts()?);
    // The responder threads' time ends with them: read while they run.
    let threads_after: u64 = node.threads.iter().map(|t| thread_cpu_ns(*t)).sum();
    let busy = busy_ns()? - busy_before;
    let received = rx_packets(&lab.node_ns, lab.node_if)? - node_rx_before;
    let bpf = match (dp, bpf_before) {
        (Some(dp), Some((t0, n0))) => {
            let (t1, n1) = bpf_stats(dp)?;
            Some((t1 - t0, n1 - n0))
        }
        _ => None,
    };
    let answered = match proto {
        Proto::Arp => after.arp_replies - before.arp_replies,
        Proto::Ns => after.neighbor_advertisements - before.neighbor_advertisements,
    };
    let cpu = NodeCpu {
        net_rx: after.net_rx_ns - before.net_rx_ns,
        client_polls: after.client_poll_ns - before.client_poll_ns,
        background: (background_per_s * end.duration_since(start).as_secs_f64()) as u64,
        responder_threads: threads_after.saturating_sub(threads_before),
        responder_softirq: after.responder_softirq_ns - before.responder_softirq_ns,
    };
    Ok(Point {
        ingress: Ingress::Socket,
        responder: node.responder,
        proto,
        asked,
        seconds: duration.as_secs_f64(),
        sent,
        received,
        answered,
        busy_ns: busy,
        cpu,
        bpf,
        round: 0,
    })
}

fn rates() -> Vec<Option<u64>> {
    let mut rates: Vec<Option<u64>> = std::env::var("BENCH_E2E_RATES")
        .unwrap_or_else(|_| "10000,30000,100000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .map(Some)
        .collect();
    rates.push(None);
    rates
}

/// The node's CPU per answer above what the no-responder run spent on the same
/// number of requests (receiving them and throwing them away). Not clamped: a
/// responder that spares the node the kernel's receive path can cost less than none.
fn above_none(point: &Point, baseline: Option<&Point>) -> Option<f64> {
    let base = baseline?;
    if point.answered == 0 || base.sent == 0 || point.responder == Responder::None {
        return None;
    }
    let base_ns = base.cpu.node_ns() * point.sent as f64 / base.sent as f64;
    Some((point.cpu.node_ns() - base_ns) / point.answered as f64)
}

fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::var("BENCH_E2E_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let duration = Duration::from_secs_f64(seconds);
    let idle = Duration::from_millis(500);
    let rounds: u32 = match std::env::var("BENCH_E2E_ROUNDS") {
        Err(_) => 1,
        Ok(text) => text
            .trim()
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .with_context(|| {
                format!("BENCH_E2E_ROUNDS: {text:?} is not a whole number of rounds, 1 or more")
            })?,
    };
    let ingresses = std::env::var("BENCH_E2E_INGRESS")
        .unwrap_or_else(|_| "socket,xdp-frames".into())
        .split(',')
        .map(|name| match name.trim() {
            "socket" => Ok(Ingress::Socket),
            "xdp-frames" => Ok(Ingress::XdpFrames),
            other => Err(anyhow::anyhow!(
                "BENCH_E2E_INGRESS: {other:?} is neither socket nor xdp-frames"
            )),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let out_dir = std::env::var_os("BENCH_E2E_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let load_average = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let machine = format!(
        "{}, {} CPUs, Linux {kernel}",
        metallb_testkit::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let load_at_start = load_average();
    println!("bench e2e: {machine}");
    println!("load average at start: {load_at_start} (other work on the machine shares its CPUs)");
    println!("{VIPS} IPv4 + {VIPS} IPv6 VIPs, {seconds} s per point");
    println!(
        "replies counted and dropped by an XDP sink on the client's veth; node CPU: NET_RX softirq time (clock, per softirq) outside the client veth's polls, less the idle pace measured {} ms before each point, plus the userspace responder's threads",
        idle.as_millis()
    );
    let _stats = enable_stats(Stats::RunTime).context("enabling bpf_stats")?;
    let mut points = Vec::new();
    for ingress in ingresses.iter().copied() {
        points.extend(run_ingress(ingress, duration, idle, rounds)?);
    }
    for ingress in ingresses.iter().copied() {
        let these: Vec<Point> = points
            .iter()
            .filter(|p| p.ingress == ingress && p.round == 0)
            .cloned()
            .collect();
        println!();
        println!("{}", ingress.describe());
        print!("{}", report(&these));
        if rounds > 1 {
            let all: Vec<Point> = points
                .iter()
                .filter(|p| p.ingress == ingress)
                .cloned()
                .collect();
            print!("{}", rounds_report(&all));
        }
    }
    println!("load average at end: {}", load_average());
    std::fs::create_dir_all(&out_dir)?;
    let csv = out_dir.join("bench-e2e.csv");
    std::fs::write(&csv, csv_of(&points))?;
    println!("wrote {}", csv.display());
    for ingress in ingresses {
        let these: Vec<Point> = points
            .iter()
            .filter(|p| p.ingress == ingress && p.round == 0)
            .cloned()
            .collect();
        let svg = out_dir.join(match ingress {
            Ingress::Socket => "bench-e2e.svg".to_owned(),
            other => format!("bench-e2e-{}.svg", other.name()),
        });
        chart(
            &these,
            &svg,
            &format!(
                "requests as {}, {machine}, load {load_at_start}",
                ingress.short()
            ),
        )?;
        println!("wrote {}", svg.display());
    }
    Ok(())
}

/// The five responders one after another, with requests coming in as `ingress` says,
/// on a lab of its own; then `rounds - 1` more rounds of them at the maximum rate.
fn run_ingress(
    ingress: Ingress,
    duration: Duration,
    idle: Duration,
    rounds: u32,
) -> anyhow::Result<Vec<Point>> {
    let lab = Lab::new("e2e")?;
    let client_mac = lab.client_mac.0;
    let arp: Vec<Vec<u8>> = (0..VIPS)
        .map(|i| metallb_testkit::frames::arp_request(client_mac, Lab::CLIENT_V4, vip4(i)))
        .collect();
    let ns: Vec<Vec<u8>> = (0..VIPS)
        .map(|i| {
            metallb_testkit::frames::neighbor_solicitation(client_mac, Lab::CLIENT_V6, vip6(i))
        })
        .collect();
    let mut probe = Probe::attach(&lab)?;
    if ingress == Ingress::XdpFrames {
        let _netns = NetnsGuard::enter(&lab.node_ns).context("entering the node namespace")?;
        gro_on(lab.node_if)?;
    }
    let mut generator = Generator::open(&lab, ingress)?;
    let pins = ScratchPinDir::new("e2e");
    let mut points = Vec::new();
    let sequence = (0..rounds).flat_map(|round| Responder::ALL.map(|r| (round, r)));
    for (round, responder) in sequence {
        let node = Node::start(&lab, responder, &pins)
            .with_context(|| format!("starting {}", responder.name()))?;
        probe.set_responder_threads(&node.threads)?;
        // Warm up: neighbour entries, page pools.
        measure(
            &lab,
            &node,
            &probe,
            &mut generator,
            (Proto::Arp, &arp),
            Some(10_000),
            Duration::from_millis(200),
            Duration::from_millis(10),
        )?;
        for proto in [Proto::Arp, Proto::Ns] {
            let frames = match proto {
                Proto::Arp => &arp,
                Proto::Ns => &ns,
            };
            let asked_rates = if round == 0 { rates() } else { vec![None] };
            for asked in asked_rates {
                let mut point = measure(
                    &lab,
                    &node,
                    &probe,
                    &mut generator,
                    (proto, frames),
                    asked,
                    duration,
                    idle,
                )?;
                point.ingress = ingress;
                point.round = round;
                points.push(point);
            }
        }
        drop(node);
        probe.set_responder_threads(&[])?;
    }
    Ok(points)
}

fn baseline_of<'p>(points: &'p [Point], point: &Point) -> Option<&'p Point> {
    points.iter().find(|b| {
        b.responder == Responder::None
            && b.ingress == point.ingress
            && b.proto == point.proto
            && b.asked == point.asked
            && b.round == point.round
    })
}

fn native_of<'p>(points: &'p [Point], point: &Point) -> Option<&'p Point> {
    points.iter().find(|b| {
        b.responder == Responder::XdpNative
            && b.ingress == point.ingress
            && b.proto == point.proto
            && b.asked == point.asked
            && b.round == point.round
    })
}

fn rate_name(asked: Option<u64>) -> String {
    asked.map_or_else(|| "max".into(), |r| r.to_string())
}

fn report(points: &[Point]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<15} {:>7} {:>11} {:>11} {:>11} {:>7} {:>11} {:>13} {:>8} {:>10} {:>12} {:>9} {:>13}",
        "proto",
        "responder",
        "asked",
        "offered/s",
        "received/s",
        "answered/s",
        "loss",
        "node ns/req",
        "node ns/answ",
        "x native",
        "above none",
        "client ns/rp",
        "bkg ms/s",
        "bpf ns/answer"
    );
    for point in points {
        let node = point.node_per_answer();
        let native = native_of(points, point).and_then(Point::node_per_answer);
        let ratio = match (node, native) {
            (Some(c), Some(n)) if n > 0.0 => format!("{:.1}x", c / n),
            _ => "-".into(),
        };
        let per_answer = match point.bpf {
            Some((t, n)) if n > 0 && point.answered > 0 => {
                format!("{:.0}", t as f64 / point.answered as f64)
            }
            _ => "-".into(),
        };
        let fmt = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0}"));
        let _ = writeln!(
            out,
            "{:<5} {:<15} {:>7} {:>11.0} {:>11.0} {:>11.0} {:>6.1}% {:>11.0} {:>13} {:>8} {:>10} {:>12} {:>9.1} {:>13}",
            point.proto.name(),
            point.responder.name(),
            rate_name(point.asked),
            point.offered(),
            point.received as f64 / point.seconds,
            point.answered_rate(),
            100.0 * point.loss(),
            point.cpu.node_ns() / point.received.max(1) as f64,
            fmt(node),
            ratio,
            fmt(above_none(point, baseline_of(points, point))),
            fmt(point.client_per_answer()),
            point.cpu.background as f64 / 1e6 / point.seconds,
            per_answer,
        );
    }
    out
}

/// The rounds at the maximum rate side by side: each responder's node CPU per answer
/// and the same above the no-responder run (the measure: busy time minus the
/// baseline), per round with minimum / median / maximum, then the ratios to XDP native.
/// XDP native's figure above none is a difference of two figures of ~500 ns and can
/// fall on either side of zero, so a per-round ratio is printed only where it is
/// positive, and the worst pairing (the responder's lowest round against XDP native's
/// highest) beside it: the ratio no choice of rounds can go under.
fn rounds_report(points: &[Point]) -> String {
    let mut out = String::new();
    let at_max: Vec<&Point> = points.iter().filter(|p| p.asked.is_none()).collect();
    let rounds = at_max.iter().map(|p| p.round).max().map_or(0, |r| r + 1);
    let _ = writeln!(
        out,
        "at the maximum rate, {rounds} rounds (each: the five responders one after another)"
    );
    let answered = [
        Responder::XdpNative,
        Responder::XdpGeneric,
        Responder::Kernel,
        Responder::Userspace,
    ];
    for proto in [Proto::Arp, Proto::Ns] {
        let of =
            |responder: Responder, figure: &dyn Fn(&Point) -> Option<f64>| -> Vec<Option<f64>> {
                at_max
                    .iter()
                    .filter(|p| p.proto == proto && p.responder == responder)
                    .map(|p| figure(p))
                    .collect()
            };
        let above = |p: &Point| above_none(p, baseline_of(points, p));
        for (what, figure) in [
            (
                "node ns/answer",
                &Point::node_per_answer as &dyn Fn(&Point) -> Option<f64>,
            ),
            ("above none", &above),
        ] {
            for responder in answered {
                let _ = writeln!(
                    out,
                    "{:<5} {:<15} {:<15} {}",
                    proto.name(),
                    responder.name(),
                    what,
                    spread(&of(responder, figure), "")
                );
            }
        }
        for responder in [Responder::Kernel, Responder::Userspace] {
            for (what, figure) in [
                (
                    "node ns/answer",
                    &Point::node_per_answer as &dyn Fn(&Point) -> Option<f64>,
                ),
                ("above none", &above),
            ] {
                let native = of(Responder::XdpNative, figure);
                let other = of(responder, figure);
                let per_round: Vec<Option<f64>> = other
                    .iter()
                    .zip(&native)
                    .map(|(o, n)| match (o, n) {
                        (Some(o), Some(n)) if *n > 0.0 => Some(o / n),
                        _ => None,
                    })
                    .collect();
                let highest_native = native.iter().flatten().copied().reduce(f64::max);
                let lowest_other = other.iter().flatten().copied().reduce(f64::min);
                let worst = match (lowest_other, highest_native) {
                    (Some(o), Some(n)) if n > 0.0 => format!("{:.1}x", o / n),
                    (Some(_), Some(_)) => "XDP native at or below none in every round".into(),
                    _ => "-".into(),
                };
                let _ = writeln!(
                    out,
                    "{:<5} {:<15} x native, {:<15} {}; worst pairing {worst}",
                    proto.name(),
                    responder.name(),
                    what,
                    spread(&per_round, "x")
                );
            }
        }
    }
    out
}

/// `a b c ...; min / median / max` of per-round figures (with `unit` after each); a
/// round without one (nothing answered, or no positive XDP native figure to divide
/// by) is `-` and left out of the three.
fn spread(values: &[Option<f64>], unit: &str) -> String {
    let digits = usize::from(!unit.is_empty());
    let each: Vec<String> = values
        .iter()
        .map(|v| v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}{unit}")))
        .collect();
    let mut known: Vec<f64> = values.iter().flatten().copied().collect();
    known.sort_by(f64::total_cmp);
    let summary = match (known.first(), known.last()) {
        (Some(min), Some(max)) => format!(
            "{min:.digits$}{unit} / {:.digits$}{unit} / {max:.digits$}{unit}",
            known[known.len() / 2]
        ),
        _ => "-".into(),
    };
    format!("{}; min / median / max {summary}", each.join(" "))
}

fn csv_of(points: &[Point]) -> String {
    let mut out = String::from(
        "ingress,proto,responder,asked_pps,seconds,sent,received,answered,offered_pps,answered_pps,loss,busy_ns,net_rx_ns,client_poll_ns,background_ns,responder_threads_ns,responder_softirq_ns,node_ns,node_ns_per_answer,node_ns_per_answer_above_none,bpf_run_ns,bpf_runs,round\n",
    );
    for point in points {
        let fmt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.0}"));
        let (bpf_ns, bpf_runs) = point.bpf.unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{:.0},{:.0},{:.4},{},{},{},{},{},{},{:.0},{},{},{},{},{}",
            point.ingress.name(),
            point.proto.name(),
            point.responder.name(),
            rate_name(point.asked),
            point.seconds,
            point.sent,
            point.received,
            point.answered,
            point.offered(),
            point.answered_rate(),
            point.loss(),
            point.busy_ns,
            point.cpu.net_rx,
            point.cpu.client_polls,
            point.cpu.background,
            point.cpu.responder_threads,
            point.cpu.responder_softirq,
            point.cpu.node_ns(),
            fmt(point.node_per_answer()),
            fmt(above_none(point, baseline_of(points, point))),
            bpf_ns,
            bpf_runs,
            point.round,
        );
    }
    out
}

/// Answered rate and the node's CPU per answer against offered rate, one line per
/// responder: ARP in the top row, NS in the bottom one.
fn chart(points: &[Point], path: &std::path::Path, machine: &str) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("ARP and NS flood over veth, {machine}"),
        ("sans-serif", 16),
    )?;
    let colors = [BLUE, CYAN, RED, MAGENTA, BLACK];
    for (row, proto) in root
        .split_evenly((2, 1))
        .iter()
        .zip([Proto::Arp, Proto::Ns])
    {
        let (left, right) = row.split_horizontally(500);
        let these: Vec<&Point> = points.iter().filter(|p| p.proto == proto).collect();
        let max_offered = these.iter().map(|p| p.offered()).fold(1.0, f64::max) * 1.05;
        let series = |responder: Responder, y: &dyn Fn(&Point) -> Option<f64>| {
            let mut line: Vec<(f64, f64)> = these
                .iter()
                .filter(|p| p.responder == responder)
                .filter_map(|p| Some((p.offered(), y(p)?)))
                .collect();
            line.sort_by(|a, b| a.0.total_cmp(&b.0));
            line
        };
        let max_answered = these.iter().map(|p| p.answered_rate()).fold(1.0, f64::max) * 1.05;
        let mut answered = ChartBuilder::on(&left)
            .caption(
                format!("{}: answered/s vs offered/s", proto.name()),
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_offered, 0.0..max_answered)?;
        answered
            .configure_mesh()
            .x_desc("offered (requests/s)")
            .y_desc("answered/s")
            .draw()?;
        for (responder, color) in Responder::ALL.into_iter().zip(colors) {
            answered
                .draw_series(LineSeries::new(
                    series(responder, &|p| Some(p.answered_rate())),
                    color.stroke_width(2),
                ))?
                .label(responder.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        answered
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        let cpu = |p: &Point| p.node_per_answer();
        let max_cpu = these.iter().filter_map(|p| cpu(p)).fold(1.0, f64::max) * 1.05;
        let min_cpu = these.iter().filter_map(|p| cpu(p)).fold(0.0, f64::min) * 1.05;
        let mut per_answer = ChartBuilder::on(&right)
            .caption(
                format!("{}: node CPU ns per answer vs offered/s", proto.name()),
                ("sans-serif", 14),
            )
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_offered, min_cpu..max_cpu)?;
        per_answer
            .configure_mesh()
            .x_desc("offered (requests/s)")
            .y_desc("CPU ns / answer")
            .draw()?;
        for (responder, color) in Responder::ALL.into_iter().zip(colors) {
            if responder == Responder::None {
                continue;
            }
            per_answer.draw_series(LineSeries::new(
                series(responder, &cpu),
                color.stroke_width(2),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}
