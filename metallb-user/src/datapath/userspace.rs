//! The userspace datapath: for kernels and interfaces where XDP cannot attach, the
//! same answers ([`frames::respond`], the program's rules) from an AF_PACKET socket per
//! interface, as MetalLB answers.
//!
//! A classic BPF socket filter admits only what the program looks at (ARP, ICMPv6
//! Neighbor Solicitations and Advertisements), so the node does not copy all its
//! traffic into userspace. The kernel sees every frame too: this datapath cannot drop
//! one, so a suppressed VIP that the kernel answers for (kube-proxy IPVS puts VIPs on
//! `kube-ipvs0`) is still answered by the kernel unless `arp_ignore` / strictARP keeps
//! it quiet. Such requests are counted as suppressed all the same.
//!
//! The plan and the counters are the XDP datapath's: entries come from the same
//! tables, and the counts are added to the same per-CPU maps (CPU 0's slot), so
//! metrics and `metallb inspect` read them as they read the program's. They are
//! written when read ([`Userspace::flush`]) and before any table change, so a counter
//! id is never written after its entry is gone.

use std::{
    collections::{BTreeMap, HashMap},
    io,
    net::IpAddr,
    os::fd::{AsRawFd as _, OwnedFd},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use aya::maps::{Map, MapData, PerCpuArray, PerCpuValues};
use metallb_common::{Outcome, VipCounters, XdpStats, map_names};
use tracing::{debug, warn};

use super::{
    DatapathError,
    frames::{self, Response},
    maps::{CounterArray, FenceControl, VipConfig, VipKey},
};
use crate::announce::PacketSocket;

const ETH_P_ALL: u16 = 0x0003;
/// `PACKET_IGNORE_OUTGOING` (Linux 4.20): our own replies are not read back.
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
/// How often a worker looks whether it should stop.
const POLL: Duration = Duration::from_millis(200);

/// The socket filter: ARP (any operation: replies count as claims), and IPv6 with
/// ICMPv6 type 135 or 136 right after the fixed header. The kernel hands packet
/// sockets VLAN-tagged frames with the tag taken out (into the auxiliary data), so
/// the same offsets hold for them.
fn filter() -> [libc::sock_filter; 10] {
    const LDH: u16 = 0x28; // BPF_LD | BPF_H | BPF_ABS
    const LDB: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    // Jumps count the instructions skipped: from i, to i + 1 + jt (or jf).
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        op(LDH, 0, 0, 12),          // 0: EtherType
        op(JEQ, 7, 0, 0x0806),      // 1: ARP -> 9
        op(JEQ, 0, 5, 0x86dd),      // 2: not IPv6 -> 8
        op(LDB, 0, 0, 14 + 6),      // 3: next header
        op(JEQ, 0, 3, 58),          // 4: not ICMPv6 -> 8
        op(LDB, 0, 0, 14 + 40),     // 5: ICMPv6 type
        op(JEQ, 2, 0, 135),         // 6: solicitation -> 9
        op(JEQ, 1, 0, 136),         // 7: advertisement -> 9
        op(RET, 0, 0, 0),           // 8: reject
        op(RET, 0, 0, 0x0004_0000), // 9: accept, whole frame
    ]
}

/// One frame's effect, kept until it is written to the maps.
#[derive(Default)]
struct Pending {
    vips: HashMap<VipKey, VipCounters>,
    stats: XdpStats,
}

/// What the workers share with the agent: the entries and the counts not yet in the
/// maps.
struct State {
    /// Every live entry, with its counter id.
    table: HashMap<VipKey, (VipConfig, u32)>,
    pending: Pending,
    v4: CounterArray,
    v6: CounterArray,
    stats: PerCpuArray<MapData, XdpStats>,
    /// The control block, for the fence timer's word: fenced, this datapath answers
    /// nothing either (as after a pause, until the heartbeat's hold is over).
    fence: FenceControl,
}

impl State {
    /// Decides on `frame`, sends the reply with `send`, counts it.
    fn handle(
        &mut self,
        frame: &[u8],
        ifindex: u32,
        send: impl FnOnce(&[u8]) -> io::Result<()>,
    ) -> Response {
        let table = &self.table;
        let fenced = self.fence.ctl().fenced != 0;
        let mut response =
            frames::respond(frame, ifindex, fenced, |key| table.get(key).map(|e| e.0));
        if let Some(reply) = &response.reply
            && let Err(error) = send(reply)
        {
            debug!(%error, "sending a reply");
            response.outcome = Outcome::PassTxError;
            response.reply = None;
            if let Some((_, counters)) = &mut response.vip {
                counters.replies = 0;
            }
        }
        self.count(&response);
        response
    }

    fn count(&mut self, response: &Response) {
        // Answers are counted per VIP only, as the program does.
        if response.reply.is_none() {
            add_outcome(&mut self.pending.stats, response.outcome);
        }
        if let Some((key, delta)) = &response.vip {
            let total = self.pending.vips.entry(*key).or_default();
            total.requests += delta.requests;
            total.replies += delta.replies;
            total.conflicts += delta.conflicts;
            total.suppressed += delta.suppressed;
        }
    }

    /// Adds the pending counts to the maps.
    fn flush(&mut self) -> Result<(), DatapathError> {
        let pending = std::mem::take(&mut self.pending);
        for (key, delta) in pending.vips {
            let Some((_, id)) = self.table.get(&key) else {
                continue;
            };
            let counters = match key.addr {
                IpAddr::V4(_) => &self.v4,
                IpAddr::V6(_) => &self.v6,
            };
            counters.add_cpu0(*id, |c: &mut VipCounters| {
                c.requests += delta.requests;
                c.replies += delta.replies;
                c.conflicts += delta.conflicts;
                c.suppressed += delta.suppressed;
            });
        }
        if pending.stats != XdpStats::default() {
            add_to_cpu0(&mut self.stats, 0, map_names::XDP_STATS, |s| {
                s.add(&pending.stats)
            })?;
        }
        Ok(())
    }
}

fn add_outcome(stats: &mut XdpStats, outcome: Outcome) {
    let mut one = XdpStats::default();
    // SAFETY: XdpStats is a run of u64 counters that the Outcome discriminant
    // indexes (checked in metallb-common), as the program writes it.
    unsafe { *(&raw mut one).cast::<u64>().add(outcome as usize) = 1 };
    stats.add(&one);
}

/// Read, add, write back one element of a per-CPU array, in CPU 0's slot. The
/// program does not run for what this datapath counts (its VIPs are on interfaces
/// without XDP).
fn add_to_cpu0<V: aya::Pod>(
    map: &mut PerCpuArray<MapData, V>,
    index: u32,
    name: &'static str,
    add: impl FnOnce(&mut V),
) -> Result<(), DatapathError> {
    let error = |op, source| DatapathError::Map { name, op, source };
    let mut values = map.get(&index, 0).map_err(|e| error("read", e))?.to_vec();
    if let Some(cpu0) = values.first_mut() {
        add(cpu0);
    }
    let values = PerCpuValues::try_from(values)
        .map_err(|e| error("write", aya::maps::MapError::IoError(e)))?;
    map.set(index, values, 0).map_err(|e| error("write", e))
}

/// A family's counters, pinned by the agent, mapped writable.
fn counters(pin_dir: &Path, name: &'static str) -> Result<CounterArray, DatapathError> {
    let path = pin_dir.join(name);
    let data = MapData::from_pin(&path).map_err(|source| DatapathError::OpenPinned {
        path: path.clone(),
        source,
    })?;
    CounterArray::new(data, name, true)
}

fn per_cpu<V: aya::Pod>(
    pin_dir: &Path,
    name: &'static str,
) -> Result<PerCpuArray<MapData, V>, DatapathError> {
    let path = pin_dir.join(name);
    let data = MapData::from_pin(&path).map_err(|source| DatapathError::OpenPinned {
        path: path.clone(),
        source,
    })?;
    PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(|source| DatapathError::Map {
        name,
        op: "open",
        source,
    })
}

struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The userspace responder: its entries and its workers, one per interface.
pub struct Userspace {
    state: Arc<Mutex<State>>,
    workers: BTreeMap<u32, Worker>,
}

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("opening the AF_PACKET socket: {0}")]
    Open(#[source] io::Error),
    #[error("{what} on the AF_PACKET socket: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("starting the responder thread: {0}")]
    Thread(#[source] io::Error),
}

impl Userspace {
    /// Opens the counters pinned in `pin_dir`; `entries`: the live ones.
    pub fn new(
        pin_dir: &Path,
        entries: impl IntoIterator<Item = (VipKey, VipConfig, u32)>,
    ) -> Result<Self, DatapathError> {
        let state = State {
            table: entries
                .into_iter()
                .map(|(key, config, id)| (key, (config, id)))
                .collect(),
            pending: Pending::default(),
            v4: counters(pin_dir, map_names::VIP_STATS_V4)?,
            v6: counters(pin_dir, map_names::VIP_STATS_V6)?,
            stats: per_cpu(pin_dir, map_names::XDP_STATS)?,
            fence: FenceControl::open(pin_dir)?,
        };
        Ok(Self {
            state: Arc::new(Mutex::new(state)),
            workers: BTreeMap::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the counts not yet in the maps.
    pub fn flush(&self) -> Result<(), DatapathError> {
        self.state().flush()
    }

    /// Changes the entries: `update` runs with the counts flushed first (under the
    /// workers' lock, so none is counted against an id that `update` retires) and
    /// returns the entries to serve from then on (`None`: as they were).
    pub fn replace_entries<R>(
        &self,
        update: impl FnOnce() -> (R, Option<Vec<(VipKey, VipConfig, u32)>>),
    ) -> (R, Option<DatapathError>) {
        let mut state = self.state();
        let flushed = state.flush().err();
        let (result, entries) = update();
        if let Some(entries) = entries {
            state.table = entries
                .into_iter()
                .map(|(key, config, id)| (key, (config, id)))
                .collect();
        }
        (result, flushed)
    }

    /// What the userspace datapath does with `frame` arriving on `ifindex`, counted
    /// as a received one is; the reply is returned instead of sent. For tests: the
    /// same path as the sockets' but for the socket.
    pub fn test_run(&self, frame: &[u8], ifindex: u32) -> Result<Response, DatapathError> {
        let mut state = self.state();
        let response = state.handle(frame, ifindex, |_| Ok(()));
        state.flush()?;
        Ok(response)
    }

    pub fn is_serving(&self, ifindex: u32) -> bool {
        self.workers.contains_key(&ifindex)
    }

    /// Starts answering on `ifindex` (the socket is opened in the calling thread's
    /// network namespace).
    pub fn serve(&mut self, ifname: &str, ifindex: u32) -> Result<(), DatapathError> {
        if self.workers.contains_key(&ifindex) {
            return Ok(());
        }
        let socket = open(ifindex).map_err(|source| match source {
            // A refusal names the capability (CAP_NET_RAW): never a reason to go on.
            SocketError::Open(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                match error
                    .into_inner()
                    .map(|e| e.downcast::<super::capabilities::Denied>())
                {
                    Some(Ok(denied)) => DatapathError::Denied(*denied),
                    Some(Err(other)) => {
                        userspace_error(ifname, SocketError::Open(io::Error::other(other)))
                    }
                    None => userspace_error(
                        ifname,
                        SocketError::Open(io::ErrorKind::PermissionDenied.into()),
                    ),
                }
            }
            source => userspace_error(ifname, source),
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("arp-ndp-{ifindex}"))
            .spawn({
                let stop = stop.clone();
                let state = self.state.clone();
                let ifname = ifname.to_owned();
                move || run(socket, ifindex, &ifname, &state, &stop)
            })
            .map_err(|e| userspace_error(ifname, SocketError::Thread(e)))?;
        self.workers.insert(
            ifindex,
            Worker {
                stop,
                thread: Some(thread),
            },
        );
        Ok(())
    }

    /// Stops answering on `ifindex`.
    pub fn stop(&mut self, ifindex: u32) {
        self.workers.remove(&ifindex);
    }
}

impl Drop for Userspace {
    fn drop(&mut self) {
        self.workers.clear();
        let _ = self.flush();
    }
}

fn userspace_error(ifname: &str, source: SocketError) -> DatapathError {
    DatapathError::Userspace {
        iface: ifname.to_owned(),
        source,
    }
}

fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
    what: &'static str,
) -> Result<(), SocketError> {
    // SAFETY: `value` is valid for its size for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(SocketError::Setup {
            what,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// A packet socket on `ifindex` that receives what [`filter`] admits, with the
/// VLAN tags in the auxiliary data.
fn open(ifindex: u32) -> Result<PacketSocket, SocketError> {
    // Opened with protocol 0 (receives nothing), filtered, then bound: no frame gets in
    // unfiltered.
    let socket = PacketSocket::open().map_err(SocketError::Open)?;
    let fd = socket.fd();
    let program = filter();
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &fprog,
        "attaching the socket filter",
    )?;
    let on: libc::c_int = 1;
    setsockopt(
        fd,
        libc::SOL_PACKET,
        libc::PACKET_AUXDATA,
        &on,
        "PACKET_AUXDATA",
    )?;
    // Older kernels lack it; outgoing frames are then skipped by their packet type.
    let _ = setsockopt(
        fd,
        libc::SOL_PACKET,
        PACKET_IGNORE_OUTGOING,
        &on,
        "PACKET_IGNORE_OUTGOING",
    );
    // SAFETY: sockaddr_ll is plain data; zeroed is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = ifindex as i32;
    // SAFETY: a valid address for the duration of the call.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        return Err(SocketError::Setup {
            what: "binding to the interface",
            source: io::Error::last_os_error(),
        });
    }
    Ok(socket)
}

/// One received frame as it was on the wire: the tag the kernel took out put back.
fn receive(fd: &OwnedFd, buf: &mut [u8], frame: &mut Vec<u8>) -> io::Result<bool> {
    // SAFETY (the zeroed structures): plain data, zeroed is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut addr).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_ll>() as u32;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: every pointer in `msg` is valid for the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
            _ => Err(error),
        };
    }
    let n = (n as usize).min(buf.len());
    frame.clear();
    if addr.sll_pkttype == libc::PACKET_OUTGOING {
        return Ok(true);
    }
    let mut tag = None;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_PACKET && (*cmsg).cmsg_type == libc::PACKET_AUXDATA {
                let aux = libc::CMSG_DATA(cmsg)
                    .cast::<libc::tpacket_auxdata>()
                    .read_unaligned();
                if aux.tp_status & TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                    tag = Some((tpid, aux.tp_vlan_tci));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    match tag {
        Some((tpid, tci)) if n >= 12 => {
            frame.extend_from_slice(&buf[..12]);
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&tci.to_be_bytes());
            frame.extend_from_slice(&buf[12..n]);
        }
        _ => frame.extend_from_slice(&buf[..n]),
    }
    Ok(true)
}

fn run(socket: PacketSocket, ifindex: u32, ifname: &str, state: &Mutex<State>, stop: &AtomicBool) {
    let fd = socket.fd();
    let mut buf = vec![0u8; 2048];
    let mut frame = Vec::with_capacity(2048);
    while !stop.load(Ordering::Relaxed) {
        let mut pollfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&raw mut pollfd, 1, POLL.as_millis() as i32) };
        if ready <= 0 {
            continue;
        }
        loop {
            match receive(fd, &mut buf, &mut frame) {
                Ok(false) => break,
                Ok(true) if frame.is_empty() => {}
                Ok(true) => {
                    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                    state.handle(&frame, ifindex, |reply| socket.send(ifindex, reply));
                }
                Err(error) => {
                    warn!(iface = ifname, %error, "receiving on the AF_PACKET socket");
                    std::thread::sleep(POLL);
                    break;
                }
            }
        }
    }
}
