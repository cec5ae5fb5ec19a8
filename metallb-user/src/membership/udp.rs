//! The membership core on a real UDP socket and the tokio clock, on a thread of its
//! own with its own runtime (so that a slow datapath change in the speaker's loop
//! never delays a probe), at real-time priority where allowed (so that a saturated
//! CPU does not either). It publishes the live set on a watch channel and leaves the
//! cluster on request.

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use tokio::{
    net::UdpSocket,
    sync::{mpsc, oneshot, watch},
    time::Instant,
};
use tracing::{info, warn};

use super::{Event, Membership, NodeId, SharedKey, Timings};

/// The most datagrams taken in one go before the live set is published and the
/// timers are looked at.
const MAX_DRAIN: usize = 256;
/// The membership thread's real-time priority (SCHED_FIFO): above every ordinary
/// thread, so that a busy CPU delays neither a probe nor its answer (peers would take
/// the delay for a failure), and below the fence heartbeat's. The thread sleeps
/// between datagrams and timers; its work per datagram is small.
const MEMBERSHIP_PRIORITY: i32 = 9;
/// A source of refused datagrams is logged at most this often.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What the speaker sees of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// This node and the members alive or suspected.
    pub nodes: BTreeSet<String>,
    /// Whether the cluster has been heard from since the start: before, nobody is
    /// taken for dead (a speaker that just started knows nobody yet).
    pub joined: bool,
    /// More peers refuse this node's key than it has members
    /// ([`Membership::outvoted`]): it takes no VIP.
    pub outvoted: bool,
}

#[derive(Clone, Debug)]
pub struct UdpOptions {
    pub node_name: String,
    /// The address peers reach this node at (bound with the port, any local address).
    pub advertise: SocketAddr,
    pub peers: Vec<SocketAddr>,
    pub timings: Timings,
    pub key: SharedKey,
}

/// The running membership thread. Its end closes [`Running::live`]: if that happens
/// before a stop was asked for, the thread failed (it panicked).
pub struct Running {
    pub live: watch::Receiver<Live>,
    peers: watch::Sender<Vec<SocketAddr>>,
    /// Dropped (with `Running`) without a request: the thread ends at once, and
    /// says nothing to the cluster.
    stop: mpsc::Sender<(Stop, oneshot::Sender<()>)>,
}

/// How the thread stops.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// The cluster drops this node at once.
    Leave,
    /// The cluster keeps this node live for the grace (a planned restart).
    Restart(Duration),
}

impl Running {
    /// The peers change (speaker Pods come and go): new ones are joined at once.
    pub fn set_peers(&self, peers: Vec<SocketAddr>) {
        self.peers.send_if_modified(|current| {
            let changed = *current != peers;
            *current = peers;
            changed
        });
    }

    /// Tells the cluster that this node leaves, then stops.
    pub async fn leave(self) {
        self.stop(Stop::Leave).await
    }

    /// Tells the cluster that this node restarts within `grace`, then stops.
    pub async fn announce_restart(self, grace: Duration) {
        self.stop(Stop::Restart(grace)).await
    }

    async fn stop(self, how: Stop) {
        let (done, wait) = oneshot::channel();
        if self.stop.send((how, done)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
        }
    }
}

/// The local address this host would use towards `peer` (a route lookup; nothing is
/// sent).
pub fn local_address_towards(peer: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(peer)?;
    Ok(socket.local_addr()?.ip())
}

/// Binds the port (any address of the advertised family) and starts the thread.
pub fn start(options: UdpOptions) -> std::io::Result<Running> {
    let bind: SocketAddr = match options.advertise {
        SocketAddr::V4(a) => (Ipv4Addr::UNSPECIFIED, a.port()).into(),
        SocketAddr::V6(a) => (Ipv6Addr::UNSPECIFIED, a.port()).into(),
    };
    let socket = std::net::UdpSocket::bind(bind)?;
    socket.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let socket = {
        let _in_runtime = runtime.enter();
        UdpSocket::from_std(socket)?
    };
    // A new generation at every start: the cluster takes it over the last one.
    let generation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64);
    let me = NodeId {
        name: options.node_name.clone(),
        addr: options.advertise,
        generation,
    };
    let mut membership = Membership::new(
        me,
        options.timings,
        options.peers.len() + 1,
        options.key,
        generation ^ u64::from(std::process::id()),
    );
    let (live_tx, live) = watch::channel(Live {
        nodes: membership.live_nodes(),
        joined: false,
        outvoted: false,
    });
    let (peers, peers_rx) = watch::channel(options.peers.clone());
    let (stop, stop_rx) = mpsc::channel(1);
    let epoch = Instant::now();
    membership.start(Duration::ZERO, &options.peers);
    info!(
        node = %options.node_name,
        addr = %options.advertise,
        peers = ?options.peers,
        "membership: joining"
    );
    std::thread::Builder::new()
        .name("membership".into())
        .spawn(move || {
            crate::fencing::run_realtime(
                MEMBERSHIP_PRIORITY,
                "membership",
                "a busy CPU does not delay its probes and answers",
                "a saturated CPU may delay its probes and answers, and peers take the delay for a failure",
            );
            runtime.block_on(drive(membership, socket, epoch, live_tx, peers_rx, stop_rx));
        })?;
    Ok(Running { live, peers, stop })
}

async fn drive(
    mut membership: Membership,
    socket: UdpSocket,
    epoch: Instant,
    live: watch::Sender<Live>,
    mut peers: watch::Receiver<Vec<SocketAddr>>,
    mut stop: mpsc::Receiver<(Stop, oneshot::Sender<()>)>,
) {
    let mut buffer = vec![0u8; 65_536];
    let mut refusals_logged: HashMap<IpAddr, Instant> = HashMap::new();
    let mut peers_open = true;
    loop {
        send_all(&socket, &mut membership).await;
        for event in membership.take_events() {
            log_event(event, &mut refusals_logged);
        }
        live.send_if_modified(|current| {
            let next = Live {
                nodes: membership.live_nodes(),
                joined: current.joined || membership.has_peers(),
                outvoted: membership.outvoted(),
            };
            if next.outvoted != current.outvoted {
                log_outvoted(next.outvoted, membership.peers());
            }
            let changed = *current != next;
            *current = next;
            changed
        });
        let deadline = membership
            .next_deadline()
            .map_or_else(|| Instant::now() + Duration::from_secs(1), |d| epoch + d);
        // In this order: a stop, then datagrams before timers. After a pause
        // (SIGSTOP, a busy CPU) both are due at once, and a probe whose answer
        // waits in the socket must not be taken for failed (its member would be
        // suspected for nothing).
        tokio::select! {
            biased;
            request = stop.recv() => {
                // `Running` dropped without a request: the thread ends, and says
                // nothing to the cluster.
                let Some((how, done)) = request else {
                    return;
                };
                match how {
                    Stop::Leave => membership.leave(epoch.elapsed()),
                    Stop::Restart(grace) => membership.announce_restart(epoch.elapsed(), grace),
                }
                send_all(&socket, &mut membership).await;
                match how {
                    Stop::Leave => info!("membership: left the cluster"),
                    Stop::Restart(grace) => info!(grace = %humantime::format_duration(grace), "membership: told the cluster this node restarts"),
                }
                let _ = done.send(());
                return;
            }
            received = socket.recv_from(&mut buffer) => match received {
                Ok((len, from)) => {
                    membership.handle_datagram(epoch.elapsed(), from, &buffer[..len]);
                    // Whatever else waits, in one go: the live set is published
                    // once it is all taken, not in between.
                    for _ in 0..MAX_DRAIN {
                        match socket.try_recv_from(&mut buffer) {
                            Ok((len, from)) => {
                                membership.handle_datagram(epoch.elapsed(), from, &buffer[..len]);
                            }
                            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(error) => {
                                warn!(%error, "membership: receiving");
                                break;
                            }
                        }
                    }
                }
                Err(error) => warn!(%error, "membership: receiving"),
            },
            () = tokio::time::sleep_until(deadline) => {}
            changed = peers.changed(), if peers_open => match changed {
                Ok(()) => {
                    let now: Vec<SocketAddr> = peers.borrow_and_update().clone();
                    info!(peers = ?now, "membership: the peers changed");
                    membership.set_peers(epoch.elapsed(), &now);
                }
                Err(_) => peers_open = false,
            },
        }
        // Timers that are due, after the datagrams (a steady stream of datagrams
        // never holds them back).
        membership.advance(epoch.elapsed());
    }
}

async fn send_all(socket: &UdpSocket, membership: &mut Membership) {
    for (to, datagram) in membership.take_outgoing() {
        if let Err(error) = socket.send_to(&datagram, to).await {
            tracing::debug!(%to, %error, "membership: sending");
        }
    }
}

fn log_outvoted(outvoted: bool, peers: &[SocketAddr]) {
    if outvoted {
        tracing::error!(
            ?peers,
            "membership: more peers send datagrams that do not verify with this node's key than this node has members: its key is not the cluster's (--membership-key-file, the memberlist Secret); it is not admitted and takes no VIP"
        );
    } else {
        info!("membership: no longer outvoted on the key: this node takes its VIPs again");
    }
}

fn log_event(event: Event, refusals_logged: &mut HashMap<IpAddr, Instant>) {
    match event {
        Event::Up(name) => {
            info!(node = %crate::printable::printable(&name), "membership: member up")
        }
        Event::Down(name) => {
            info!(node = %crate::printable::printable(&name), "membership: member down")
        }
        Event::Rejoined => warn!("membership: this node was declared down; rejoined"),
        Event::Renewed(name) => info!(
            node = %crate::printable::printable(&name),
            "membership: member back as a new process"
        ),
        Event::Restarting { name, grace } => info!(
            node = %crate::printable::printable(&name),
            grace = %humantime::format_duration(grace),
            "membership: member restarts; its VIPs stay where they are meanwhile"
        ),
        Event::RestartExpired(name) => warn!(
            node = %crate::printable::printable(&name),
            "membership: member did not come back within its restart grace"
        ),
        Event::Refused { from } => {
            let now = Instant::now();
            let due = refusals_logged
                .get(&from.ip())
                .is_none_or(|last| now.duration_since(*last) >= REFUSAL_LOG_INTERVAL);
            if due {
                refusals_logged.insert(from.ip(), now);
                warn!(%from, "membership: datagram refused: not signed with this cluster's key (not admitted)");
            }
        }
        Event::Malformed { from, error } => {
            tracing::debug!(%from, %error, "membership: datagram not taken")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the speaker relies on to notice the end of the membership thread: the
    /// thread holds the live set's sender until it returns (or unwinds), so its end
    /// closes the channel. Here a real thread on a real socket (no peers: nothing is
    /// sent), ended by dropping `Running` (it returns without a word); a clone of the
    /// receiver outlives it.
    #[tokio::test]
    async fn the_live_set_closes_when_the_membership_thread_ends() {
        let running = start(UdpOptions {
            node_name: "node-a".into(),
            advertise: (Ipv4Addr::LOCALHOST, 0).into(),
            peers: Vec::new(),
            timings: Timings::default(),
            key: SharedKey::new(b"a test key of at least 16 bytes"),
        })
        .expect("started");
        let mut live = running.live.clone();
        assert_eq!(
            live.borrow().nodes,
            BTreeSet::from(["node-a".to_owned()]),
            "alone, this node is the live set"
        );
        drop(running);
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            // A last publication may come before the end.
            while live.changed().await.is_ok() {}
        });
        closed
            .await
            .expect("the live set closes when the thread ends");
    }
}
