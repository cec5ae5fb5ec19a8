//! `cargo xtask bench e2e`: the node under an ARP (and, as a second row, NS) flood,
//! end to end over a veth pair, with five responders one after another in the same
//! run, same generator, same VIP set:
//!
//! 1. XDP native, 2. XDP generic, 3. the kernel's own ARP/NDP (the VIPs added to the
//!    node's interface, as kube-vip does), 4. our userspace datapath, 5. none (the
//!    generator's own cost, the baseline to subtract).
//!
//! The generator, written for this bench, sends prebuilt requests for the VIPs from
//! the client namespace with `sendmmsg` on an AF_PACKET socket (qdisc bypassed), as
//! fast as it can and at a few fixed offered rates, for a fixed time. Per point:
//! offered (sent), received (the node's veth) and answered rates (the client veth's
//! received packets), loss, and CPU per answer: the networking and responder CPU time
//! ([`net_cpu_ns`]: softirq and irq time, ksoftirqd, the userspace responder's
//! threads) minus the no-responder run's at the same rate (scaled to the frames sent),
//! divided by the answers; for XDP also the program's own run time per answer
//! (bpf_stats). The machine's /proc/stat busy time per request is printed too, but on
//! a shared machine it is mostly other work. Everything runs on one machine: the
//! generator, both namespaces' softirqs and the responder share its CPUs.
//!
//! Writes `target/bench-e2e.csv` and `target/bench-e2e.svg` (`BENCH_E2E_OUT` sets the
//! directory): answered rate and CPU per answer against offered rate, one line per
//! responder. `BENCH_E2E_SECONDS` (default 2) sets each point's duration,
//! `BENCH_E2E_RATES` the fixed rates (default `10000,30000,100000`; the maximum is
//! always run too).

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
    programs::ProgramInfo,
    sys::{Stats, enable_stats},
};
use metallb_common::VipAction;
use metallb_testkit::lab::{Lab, NetnsGuard, ScratchPinDir};
use metallb_user::datapath::{
    Datapath, DatapathKind, DatapathOptions, XdpMode, iface,
    maps::{VipConfig, VipKey},
};

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
    responder: Responder,
    proto: Proto,
    /// The fixed rate asked for; `None`: as fast as the generator can.
    asked: Option<u64>,
    seconds: f64,
    sent: u64,
    /// Frames the node's veth received (the rest the veth dropped on the way).
    received: u64,
    answered: u64,
    /// Machine-wide busy CPU time, ns.
    busy_ns: u64,
    /// Networking and responder CPU time, ns ([`net_cpu_ns`]).
    net_ns: u64,
    /// bpf_stats of the responder program: run time (ns) and runs.
    bpf: Option<(u64, u64)>,
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
}

/// The generator: an AF_PACKET socket in the client namespace, bound to its veth,
/// that sends the prebuilt frames round robin.
struct Generator {
    fd: OwnedFd,
}

impl Generator {
    fn open(lab: &Lab) -> anyhow::Result<Self> {
        let _netns = NetnsGuard::enter(&lab.client_ns).context("entering the client namespace")?;
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
        Ok(Self { fd })
    }

    /// Sends `frames` round robin for `duration`, at `rate` frames per second or as
    /// fast as it can; returns how many the kernel took.
    fn run(&self, frames: &[Vec<u8>], rate: Option<u64>, duration: Duration) -> u64 {
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
        let started = Instant::now();
        let mut sent: u64 = 0;
        let mut at = 0usize;
        loop {
            let elapsed = started.elapsed();
            if elapsed >= duration {
                break;
            }
            let mut want = BATCH;
            if let Some(rate) = rate {
                let due = (rate as f64 * elapsed.as_secs_f64()) as u64;
                if due <= sent {
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                want = want.min((due - sent) as usize);
            }
            // SAFETY: `want` messages from `at`, within the vector (it holds
            // `frames.len()` whole batches and `at` is a multiple of nothing larger).
            let n = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    messages[at..].as_mut_ptr(),
                    want as u32,
                    0,
                )
            };
            if n > 0 {
                sent += n as u64;
                at = (at + n as usize) % frames.len();
            } else {
                std::thread::yield_now();
            }
        }
        sent
    }
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

/// CPU time spent on networking and answering, ns: the softirq and irq time of
/// /proc/stat (sampled by the tick: this kernel has no IRQ time accounting), the
/// ksoftirqd threads' time (softirq work deferred to them), and this process's
/// userspace responder threads. Unlike the machine's busy time, it leaves out other
/// work on the machine (builds) and the generator's own loop; it keeps the veth
/// transmit and receive of both namespaces, for requests and replies alike.
fn net_cpu_ns(ksoftirqd: &[u32]) -> anyhow::Result<u64> {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let stat = std::fs::read_to_string("/proc/stat")?;
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .context("empty /proc/stat")?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let mut ticks = fields.get(5).copied().unwrap_or(0) + fields.get(6).copied().unwrap_or(0);
    // utime and stime: fields 14 and 15 of /proc/PID/stat, after the command's ")".
    let times = |path: String| -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| {
                let rest = text.rsplit_once(')')?.1.to_owned();
                let f: Vec<u64> = rest
                    .split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|v| v.parse().ok())
                    .collect();
                Some(f.iter().sum())
            })
            .unwrap_or(0)
    };
    for pid in ksoftirqd {
        ticks += times(format!("/proc/{pid}/stat"));
    }
    for task in std::fs::read_dir("/proc/self/task")?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("arp-ndp-") {
            ticks += times(task.path().join("stat").display().to_string());
        }
    }
    Ok(ticks * 1_000_000_000 / hz)
}

fn ksoftirqd_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            comm.starts_with("ksoftirqd/").then_some(pid)
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
    ksoftirqd: Vec<u32>,
    dp: Option<Datapath>,
    kernel_addrs: Vec<String>,
}

impl<'a> Node<'a> {
    fn start(lab: &'a Lab, responder: Responder, pins: &ScratchPinDir) -> anyhow::Result<Self> {
        let mut node = Node {
            lab,
            responder,
            ksoftirqd: ksoftirqd_pids(),
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

fn measure(
    lab: &Lab,
    node: &Node,
    generator: &Generator,
    (proto, frames): (Proto, &[Vec<u8>]),
    asked: Option<u64>,
    duration: Duration,
) -> anyhow::Result<Point> {
    let dp = node.dp.as_ref();
    let bpf_before = dp.map(bpf_stats).transpose()?;
    let rx_before = rx_packets(&lab.client_ns, lab.client_if)?;
    let node_rx_before = rx_packets(&lab.node_ns, lab.node_if)?;
    let busy_before = busy_ns()?;
    let net_before = net_cpu_ns(&node.ksoftirqd)?;
    let sent = generator.run(frames, asked, duration);
    // Let the queues drain before the counts are read.
    std::thread::sleep(Duration::from_millis(100));
    let busy = busy_ns()? - busy_before;
    // The responder threads' time ends with them: read while they run.
    let net = net_cpu_ns(&node.ksoftirqd)?.saturating_sub(net_before);
    let answered = rx_packets(&lab.client_ns, lab.client_if)? - rx_before;
    let received = rx_packets(&lab.node_ns, lab.node_if)? - node_rx_before;
    let bpf = match (dp, bpf_before) {
        (Some(dp), Some((t0, n0))) => {
            let (t1, n1) = bpf_stats(dp)?;
            Some((t1 - t0, n1 - n0))
        }
        _ => None,
    };
    Ok(Point {
        responder: node.responder,
        proto,
        asked,
        seconds: duration.as_secs_f64(),
        sent,
        received,
        answered,
        busy_ns: busy,
        net_ns: net,
        bpf,
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

/// CPU per answer, ns: networking and responder time ([`net_cpu_ns`]) above the
/// no-responder run's (scaled to the frames sent), per answer. Not clamped: a
/// responder that spares the node the kernel's receive path can cost less than no
/// responder.
fn cpu_per_answer(point: &Point, baseline: Option<&Point>) -> Option<f64> {
    let base = baseline?;
    if point.answered == 0 || base.sent == 0 {
        return None;
    }
    let base_net = base.net_ns as f64 * point.sent as f64 / base.sent as f64;
    Some((point.net_ns as f64 - base_net) / point.answered as f64)
}

fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::var("BENCH_E2E_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let duration = Duration::from_secs_f64(seconds);
    let out_dir = std::env::var_os("BENCH_E2E_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let machine = format!(
        "{}, {} CPUs, Linux {kernel}",
        metallb_testkit::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("bench e2e: {machine}");
    println!(
        "load average at start: {} (other work on the machine shares its CPUs)",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{VIPS} IPv4 + {VIPS} IPv6 VIPs, {seconds} s per point, generator: sendmmsg on AF_PACKET, {BATCH} frames per call"
    );

    let mut lab = Lab::new("e2e")?;
    lab.prepare_client_for(XdpMode::Native)?;
    let client_mac = lab.client_mac.0;
    let arp: Vec<Vec<u8>> = (0..VIPS)
        .map(|i| metallb_testkit::frames::arp_request(client_mac, Lab::CLIENT_V4, vip4(i)))
        .collect();
    let ns: Vec<Vec<u8>> = (0..VIPS)
        .map(|i| {
            metallb_testkit::frames::neighbor_solicitation(client_mac, Lab::CLIENT_V6, vip6(i))
        })
        .collect();
    let generator = Generator::open(&lab)?;
    let _stats = enable_stats(Stats::RunTime).context("enabling bpf_stats")?;
    let pins = ScratchPinDir::new("e2e");
    let mut points = Vec::new();
    for responder in Responder::ALL {
        let node = Node::start(&lab, responder, &pins)
            .with_context(|| format!("starting {}", responder.name()))?;
        // Warm up: neighbour entries, page pools.
        measure(
            &lab,
            &node,
            &generator,
            (Proto::Arp, &arp),
            Some(10_000),
            Duration::from_millis(200),
        )?;
        for proto in [Proto::Arp, Proto::Ns] {
            let frames = match proto {
                Proto::Arp => &arp,
                Proto::Ns => &ns,
            };
            for asked in rates() {
                points.push(measure(
                    &lab,
                    &node,
                    &generator,
                    (proto, frames),
                    asked,
                    duration,
                )?);
            }
        }
    }
    drop(generator);

    let report = report(&points);
    print!("{report}");
    std::fs::create_dir_all(&out_dir)?;
    let csv = out_dir.join("bench-e2e.csv");
    std::fs::write(&csv, csv_of(&points))?;
    let svg = out_dir.join("bench-e2e.svg");
    chart(&points, &svg, &machine)?;
    println!("wrote {} and {}", csv.display(), svg.display());
    Ok(())
}

fn baseline_of<'p>(points: &'p [Point], point: &Point) -> Option<&'p Point> {
    points.iter().find(|b| {
        b.responder == Responder::None && b.proto == point.proto && b.asked == point.asked
    })
}

fn native_of<'p>(points: &'p [Point], point: &Point) -> Option<&'p Point> {
    points.iter().find(|b| {
        b.responder == Responder::XdpNative && b.proto == point.proto && b.asked == point.asked
    })
}

fn rate_name(asked: Option<u64>) -> String {
    asked.map_or_else(|| "max".into(), |r| r.to_string())
}

fn report(points: &[Point]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<15} {:>7} {:>11} {:>11} {:>11} {:>7} {:>11} {:>13} {:>9} {:>10} {:>13}",
        "proto",
        "responder",
        "asked",
        "offered/s",
        "received/s",
        "answered/s",
        "loss",
        "busy ns/req",
        "CPU ns/answer",
        "x native",
        "bpf ns/run",
        "bpf ns/answer"
    );
    for point in points {
        let cpu = cpu_per_answer(point, baseline_of(points, point));
        let native =
            native_of(points, point).and_then(|n| cpu_per_answer(n, baseline_of(points, n)));
        let ratio = match (cpu, native) {
            (Some(c), Some(n)) if n > 0.0 => format!("{:.1}x", c / n),
            _ => "-".into(),
        };
        let (per_run, per_answer) = match point.bpf {
            Some((t, n)) if n > 0 => (
                format!("{:.0}", t as f64 / n as f64),
                if point.answered > 0 {
                    format!("{:.0}", t as f64 / point.answered as f64)
                } else {
                    "-".into()
                },
            ),
            _ => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            out,
            "{:<5} {:<15} {:>7} {:>11.0} {:>11.0} {:>11.0} {:>6.1}% {:>11.0} {:>13} {:>9} {:>10} {:>13}",
            point.proto.name(),
            point.responder.name(),
            rate_name(point.asked),
            point.offered(),
            point.received as f64 / point.seconds,
            point.answered_rate(),
            100.0 * point.loss(),
            point.busy_ns as f64 / point.sent.max(1) as f64,
            cpu.map_or_else(|| "-".into(), |c| format!("{c:.0}")),
            ratio,
            per_run,
            per_answer,
        );
    }
    out
}

fn csv_of(points: &[Point]) -> String {
    let mut out = String::from(
        "proto,responder,asked_pps,seconds,sent,received,answered,offered_pps,answered_pps,loss,busy_ns,net_cpu_ns,cpu_ns_per_answer,bpf_run_ns,bpf_runs\n",
    );
    for point in points {
        let cpu = cpu_per_answer(point, baseline_of(points, point));
        let (bpf_ns, bpf_runs) = point.bpf.unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{:.0},{:.0},{:.4},{},{},{},{},{}",
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
            point.net_ns,
            cpu.map_or_else(String::new, |c| format!("{c:.0}")),
            bpf_ns,
            bpf_runs,
        );
    }
    out
}

/// Answered rate and CPU per answer against offered rate, one line per responder, for
/// ARP (the NS row is in the CSV and the printed table).
fn chart(points: &[Point], path: &std::path::Path, machine: &str) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("ARP flood over veth, {machine}"),
        ("sans-serif", 16),
    )?;
    let (left, right) = root.split_horizontally(500);
    let arp: Vec<&Point> = points.iter().filter(|p| p.proto == Proto::Arp).collect();
    let max_offered = arp.iter().map(|p| p.offered()).fold(1.0, f64::max) * 1.05;
    let colors = [BLUE, CYAN, RED, MAGENTA, BLACK];
    let series = |responder: Responder, y: &dyn Fn(&Point) -> Option<f64>| {
        let mut line: Vec<(f64, f64)> = arp
            .iter()
            .filter(|p| p.responder == responder)
            .filter_map(|p| Some((p.offered(), y(p)?)))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        line
    };
    let max_answered = arp.iter().map(|p| p.answered_rate()).fold(1.0, f64::max) * 1.05;
    let mut answered = ChartBuilder::on(&left)
        .caption("answered/s vs offered/s", ("sans-serif", 14))
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
    let cpu = |p: &Point| cpu_per_answer(p, baseline_of(points, p));
    let max_cpu = arp.iter().filter_map(|p| cpu(p)).fold(1.0, f64::max) * 1.05;
    let min_cpu = arp.iter().filter_map(|p| cpu(p)).fold(0.0, f64::min) * 1.05;
    let mut per_answer = ChartBuilder::on(&right)
        .caption("node CPU ns per answer vs offered/s", ("sans-serif", 14))
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
    root.present()?;
    Ok(())
}
