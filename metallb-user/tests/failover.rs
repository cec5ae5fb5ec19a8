//! Failover between standalone speakers that gossip (needs root): three nodes and a
//! client on one bridge (`metallb_testkit::cluster`), one `metallb speaker` per node
//! on a shared configuration with the three Nodes, one VIP. A dead owner's VIP moves
//! and the client's neighbour entry follows; a speaker with another key is refused;
//! after a partition heals one node answers. Timings are not asserted beyond generous
//! deadlines: the figures are `cargo xtask bench membership`'s.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    thread::sleep,
    time::{Duration, Instant},
};

use metallb_testkit::{
    cluster::{CLIENT_IF, ClusterLab, NodeSpeaker, SpeakerSpec, config_with_nodes},
    lab::{ScratchPinDir, unique_name},
    traffic::ArpProber,
};
use metallb_user::datapath::FenceState;
use nix::sys::signal::Signal;

mod support;

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
/// This test's membership and metrics ports (each node has its own namespace).
const MEMBERSHIP_PORT: u16 = 17446;
const METRICS_ADDR: &str = "127.0.0.1:17447";
const KEY: &str = "failover test cluster key 0123456789\n";

/// The shared configuration: a pool, an advertisement, a Service on VIP, and the
/// `nodes` Nodes with their addresses.
fn config(nodes: usize) -> String {
    config_with_nodes(
        &format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: pool, namespace: metallb-system}}\n\
             spec: {{addresses: [192.0.2.100-192.0.2.150]}}\n\
             ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: l2, namespace: metallb-system}}\nspec: {{}}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, annotations: {{metallb.io/loadBalancerIPs: '{VIP}'}}}}\n\
             spec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\n"
        ),
        nodes,
    )
}

/// A scratch directory (configuration, keys, logs), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("failover"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Dropped in this order: the speakers stop, their pins go, then the namespaces.
struct Cluster {
    speakers: Vec<NodeSpeaker>,
    _pins: Vec<ScratchPinDir>,
    lab: ClusterLab,
    _scratch: Scratch,
}

impl Cluster {
    /// `keys[i]` is node i's key.
    fn start(tag: &str, keys: &[&str]) -> Self {
        Self::start_with(tag, keys, &[])
    }

    /// With `extra` flags for every speaker.
    fn start_with(tag: &str, keys: &[&str], extra: &[&str]) -> Self {
        let lab = ClusterLab::new(tag, keys.len()).expect("lab");
        let scratch = Scratch::new();
        let config_file = scratch.0.join("metallb.yaml");
        std::fs::write(&config_file, config(keys.len())).expect("config");
        let pins: Vec<ScratchPinDir> = (0..keys.len())
            .map(|i| ScratchPinDir::new(&format!("fo{i}")))
            .collect();
        let speakers = keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                let key_file = scratch.0.join(format!("key-{i}"));
                std::fs::write(&key_file, key).expect("key file");
                let spec = SpeakerSpec {
                    binary: BINARY.into(),
                    config: config_file.clone(),
                    kubeconfig: None,
                    pod_name: None,
                    key_file,
                    membership_port: MEMBERSHIP_PORT,
                    metrics_addr: METRICS_ADDR.parse().expect("metrics address"),
                    pin_dir: pins[i].path.clone(),
                    log: scratch.0.join(format!("node-{i}.log")),
                    extra: extra.iter().map(|s| s.to_string()).collect(),
                };
                NodeSpeaker::start(&lab, i, spec).expect("start the speaker")
            })
            .collect();
        Self {
            speakers,
            _pins: pins,
            lab,
            _scratch: scratch,
        }
    }

    /// Waits until exactly one node answers VIP in a row of requests, and says which.
    fn until_one_owner(&self, among: &[usize], what: &str) -> usize {
        self.lab
            .wait_one_owner(VIP, among, Duration::from_secs(30))
            .unwrap_or_else(|last| {
                panic!(
                    "{what}: no single owner among {among:?}; last answers {last:?}\n{}",
                    self.logs()
                )
            })
    }

    /// Waits until, for the last half second, every answer to `prober` came from one
    /// node (and at least ten did), and says which.
    fn until_one_answerer(&self, prober: &ArpProber, what: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Vec::new();
        while Instant::now() < deadline {
            sleep(Duration::from_millis(100));
            let answers = prober.answers_since(Instant::now() - Duration::from_millis(500));
            let owner = answers
                .first()
                .and_then(|a| self.lab.node_of(&a.mac.to_string()));
            if let Some(owner) = owner
                && answers.len() >= 10
                && answers.iter().all(|a| a.mac == self.lab.node_macs[owner])
            {
                return owner;
            }
            last = answers.iter().map(|a| a.mac.to_string()).collect();
        }
        panic!("{what}: no single answerer; last {last:?}\n{}", self.logs());
    }

    /// Waits until the client's neighbour entry for the VIP names node `node`'s MAC.
    fn until_client_entry(&self, node: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let want = Some(self.lab.node_macs[node].to_string());
        loop {
            let entry = self.lab.client_neighbour(VIP).expect("ip neigh");
            if entry == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the client's entry is {entry:?}, not node-{node}'s MAC\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        self.speakers
            .iter()
            .enumerate()
            .map(|(i, s)| format!("--- node-{i}\n{}", s.log()))
            .collect()
    }
}

#[test]
fn netns_failover_the_owner_dies_another_node_answers_and_the_client_follows() {
    let mut cluster = Cluster::start("fokill", &[KEY, KEY, KEY]);
    let owner = cluster.until_one_owner(&[0, 1, 2], "at start");
    // The client resolves the VIP: its neighbour entry names the owner.
    cluster.lab.client_resolves(VIP).expect("resolve");
    cluster.until_client_entry(owner, "at start");

    // Node death: off the LAN, its speaker killed.
    cluster.lab.isolate(owner, true).expect("isolate");
    cluster.speakers[owner].kill();
    let others: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let next = cluster.until_one_owner(&others, "after the owner died");

    // The gratuitous burst moved the client's entry to the new owner's MAC.
    cluster.until_client_entry(next, "after the owner died");
    let log = cluster.speakers[next].log();
    assert!(
        log.contains("membership: member down") && log.contains(&format!("node-{owner}")),
        "{log}"
    );
}

#[test]
fn netns_failover_a_speaker_with_another_key_is_not_admitted() {
    let cluster = Cluster::start("fokey", &[KEY, KEY, "another key, not the cluster's one\n"]);
    // The two with the right key see each other, and refuse the third.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs: Vec<String> = cluster.speakers.iter().map(NodeSpeaker::log).collect();
        let refused = |i: usize| logs[i].contains("datagram refused");
        let up = |i: usize, other: usize| {
            logs[i]
                .lines()
                .any(|l| l.contains("member up") && l.contains(&format!("node-{other}")))
        };
        for good in [0, 1] {
            assert!(
                !up(good, 2),
                "node-2 admitted by node-{good}\n{}",
                cluster.logs()
            );
        }
        assert!(
            !up(2, 0) && !up(2, 1),
            "node-2 admitted\n{}",
            cluster.logs()
        );
        if refused(0) && refused(1) && refused(2) && up(0, 1) && up(1, 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "refusals not logged\n{}",
            cluster.logs()
        );
        sleep(Duration::from_millis(100));
    }
    // Outvoted on the key, node-2 takes no VIP: one of the two others answers.
    cluster.until_one_owner(&[0, 1], "node-2 is not admitted");
    let log = cluster.speakers[2].log();
    assert!(log.contains("takes no VIP"), "{log}");
}

#[test]
fn netns_failover_after_a_partition_heals_one_node_answers() {
    let cluster = Cluster::start("fopart", &[KEY, KEY, KEY]);
    let owner = cluster.until_one_owner(&[0, 1, 2], "at start");
    cluster.lab.isolate(owner, true).expect("isolate");
    let others: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let next = cluster.until_one_owner(&others, "during the partition");
    // The client uses the VIP: its entry names the node that answers now.
    cluster.lab.client_resolves(VIP).expect("resolve");
    cluster.until_client_entry(next, "during the partition");
    // Let the isolated node give up on the others too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.speakers[owner].log().contains("member down") {
        assert!(Instant::now() < deadline, "{}", cluster.logs());
        sleep(Duration::from_millis(50));
    }
    // From here on the answers are read by a prober with a MAC and an address of its
    // own (arping's answers would update the client's entry themselves).
    let prober = ArpProber::start(
        &cluster.lab.client_ns,
        CLIENT_IF,
        VIP,
        Duration::from_millis(20),
    )
    .expect("prober");
    cluster.lab.isolate(owner, false).expect("heal");
    let settled = cluster.until_one_answerer(&prober, "after the heal");
    // The owner after the heal announced itself again, even though its own entry for
    // the VIP never changed: the client follows.
    cluster.until_client_entry(settled, "after the heal");
}

fn fence(speaker: &NodeSpeaker) -> (FenceState, u64) {
    speaker.fence().expect("the fence state")
}

/// The scheduling policy of the thread called `name` of process `pid`, if it has one.
fn thread_policy(pid: u32, name: &str) -> Option<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|task| {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        let tid: i32 = task.file_name().to_str()?.parse().ok()?;
        // SAFETY: a plain query by thread id.
        (comm.trim() == name).then(|| unsafe { libc::sched_getscheduler(tid) })
    })
}

/// Asserts that each `(thread, said)` of `threads` runs under `policy` in `speaker`,
/// and that its log has the line `said`.
fn assert_thread_policies(speaker: &NodeSpeaker, policy: i32, threads: &[(&str, &str)]) {
    let pid = speaker.pid().expect("running");
    for (thread, said) in threads {
        assert_eq!(
            thread_policy(pid, thread),
            Some(policy),
            "{thread}\n{}",
            speaker.log()
        );
        assert!(speaker.log().contains(said), "{}", speaker.log());
    }
}

/// Waits until `check` holds for the speaker's fence state, or panics with `what`.
fn until_fence(speaker: &NodeSpeaker, what: &str, check: impl Fn(&FenceState, u64) -> bool) {
    speaker
        .wait_fence(what, check)
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// A hung owner (SIGSTOP): its program stops answering once the fence deadline
/// passes, and counts what it drops; another node takes over. Running again, it
/// rejoins, and one node answers.
#[test]
fn netns_failover_a_hung_owner_fences_itself_and_another_node_answers() {
    let cluster = Cluster::start("fostop", &[KEY, KEY, KEY]);
    let owner = cluster.until_one_owner(&[0, 1, 2], "at start");
    let hung = &cluster.speakers[owner];
    until_fence(hung, "the heartbeat runs", |state, _| {
        state.deadline_in.is_some() && !state.fenced
    });
    // Run as root (CAP_SYS_NICE), the heartbeat thread is real-time: a busy CPU does
    // not delay it past the deadline. So is the membership thread: a busy CPU delays
    // neither its probes nor its answers, which peers would take for a failure.
    assert_thread_policies(
        hung,
        libc::SCHED_FIFO,
        &[
            ("fence-heartbeat", "fence heartbeat runs SCHED_FIFO"),
            ("membership", "membership runs SCHED_FIFO"),
        ],
    );
    hung.signal(Signal::SIGSTOP).expect("SIGSTOP");
    until_fence(hung, "fenced while stopped", |state, _| state.fenced);
    let others: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let next = cluster.until_one_owner(&others, "while the owner is stopped");
    // The requests arping broadcast reached the stopped owner's program too: dropped,
    // and counted as fenced.
    until_fence(hung, "requests counted as fenced", |state, fenced| {
        state.fenced && fenced > 0
    });
    assert_eq!(fence(hung).0.episodes, 1);

    hung.signal(Signal::SIGCONT).expect("SIGCONT");
    // Back, it holds off, rejoins, and the election settles on one node again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hung.log().contains("the fence deadline passed") {
        assert!(Instant::now() < deadline, "{}", cluster.logs());
        sleep(Duration::from_millis(50));
    }
    until_fence(hung, "answering again", |state, _| !state.fenced);
    let settled = cluster.until_one_owner(&[0, 1, 2], "after SIGCONT");
    assert!(settled == owner || settled == next, "{settled}");
}

/// Without CAP_SYS_NICE (the optional capability left out of the DaemonSet) the fence
/// heartbeat and the membership threads cannot run SCHED_FIFO: they say so, run at
/// normal priority, and work the same. The owner, restarted so, is a member again
/// everywhere and the owner again (its datapath unfenced: the heartbeat beats).
#[test]
fn netns_failover_without_cap_sys_nice_both_threads_run_at_normal_priority() {
    let mut cluster = Cluster::start("fonice", &[KEY, KEY, KEY]);
    let owner = cluster.until_one_owner(&[0, 1, 2], "at start");
    let spec = cluster.speakers[owner].spec.clone();
    assert!(
        cluster.speakers[owner].stop(Duration::from_secs(10)),
        "stopped"
    );
    let since: Vec<usize> = cluster.speakers.iter().map(|s| s.log().len()).collect();
    let lab = &cluster.lab;
    // Started from a thread whose bounding set lacks CAP_SYS_NICE (bounding sets are
    // per thread, and a child inherits its creator's): the speaker, uid 0, has every
    // capability but that one. With no RLIMIT_RTPRIO either (lowered for this
    // process, whose own threads never ask for real-time), SCHED_FIFO is refused.
    let restarted = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut old = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: plain calls on this process's limit and this thread's
                // bounding set (CAP_SYS_NICE is 23).
                unsafe {
                    assert_eq!(libc::getrlimit(libc::RLIMIT_RTPRIO, &mut old), 0);
                    let lowered = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: old.rlim_max,
                    };
                    assert_eq!(libc::setrlimit(libc::RLIMIT_RTPRIO, &lowered), 0);
                    assert_eq!(
                        libc::prctl(libc::PR_CAPBSET_DROP, 23, 0, 0, 0),
                        0,
                        "{}",
                        std::io::Error::last_os_error()
                    );
                }
                NodeSpeaker::start(lab, owner, spec).expect("restart")
            })
            .join()
            .expect("starting thread")
    });
    cluster.speakers[owner] = restarted;
    let restarted = &cluster.speakers[owner];
    let deadline = Instant::now() + Duration::from_secs(30);
    let member = |i: usize, of: usize| {
        let log = cluster.speakers[i].log();
        log.get(since[i]..)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("membership: member up") && l.contains(&format!("node=node-{of}")))
    };
    while !(0..3)
        .filter(|i| *i != owner)
        .all(|i| member(i, owner) && member(owner, i))
    {
        assert!(
            Instant::now() < deadline,
            "not a member again\n{}",
            cluster.logs()
        );
        sleep(Duration::from_millis(50));
    }
    assert_thread_policies(
        restarted,
        libc::SCHED_OTHER,
        &[
            ("membership", "membership at normal priority"),
            ("fence-heartbeat", "fence heartbeat at normal priority"),
        ],
    );
    assert_eq!(cluster.until_one_owner(&[0, 1, 2], "restarted"), owner);
    until_fence(restarted, "the heartbeat runs", |state, _| {
        state.deadline_in.is_some() && !state.fenced
    });
}

/// A node without peers never fences: stopped, its program keeps answering.
#[test]
fn netns_failover_a_node_without_peers_does_not_fence() {
    let cluster = Cluster::start("foalone", &[KEY]);
    cluster.until_one_owner(&[0], "at start");
    let alone = &cluster.speakers[0];
    // Started, with nothing to fence for.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !alone.log().contains("configuration applied") {
        assert!(Instant::now() < deadline, "{}", alone.log());
        sleep(Duration::from_millis(50));
    }
    alone.signal(Signal::SIGSTOP).expect("SIGSTOP");
    // Several times the default deadline, each arping taking up to a second.
    let mac = cluster.lab.node_macs[0].to_string();
    for _ in 0..3 {
        let answers = cluster.lab.arp_answers(VIP).expect("arping");
        assert!(
            !answers.is_empty() && answers.iter().all(|m| *m == mac),
            "{answers:?}\n{}",
            alone.log()
        );
    }
    let (state, fenced) = fence(alone);
    assert!(!state.fenced && state.deadline_in.is_none(), "{state:?}");
    assert!(state.ticks > 0, "the fence timer runs: {state:?}");
    assert_eq!(fenced, 0);
    alone.signal(Signal::SIGCONT).expect("SIGCONT");
}

/// A planned restart (`--keep-datapath`) of the owner while the client asks every
/// 5 ms: the peers hear that it restarts and keep the VIP where it is, its datapath
/// keeps answering through the restart, and the next speaker adopts it and renews the
/// heartbeat. Every request is answered, by the owner.
#[test]
fn netns_failover_a_restart_with_keep_datapath_loses_no_answer() {
    let mut cluster = Cluster::start_with("forest", &[KEY, KEY, KEY], &["--keep-datapath"]);
    let owner = cluster.until_one_owner(&[0, 1, 2], "at start");
    until_fence(
        &cluster.speakers[owner],
        "the heartbeat runs",
        |state, _| state.deadline_in.is_some() && !state.fenced,
    );
    let asker = support::ArpAsker::for_cluster_client(&cluster.lab).expect("ARP socket");
    let (answers, ()) = support::answers_while(&asker, VIP, || {
        sleep(Duration::from_millis(200));
        assert!(
            cluster.speakers[owner].stop(Duration::from_secs(10)),
            "stopped"
        );
        // Down for longer than the peers' takeover and the fence deadline together.
        sleep(Duration::from_millis(500));
        let spec = cluster.speakers[owner].spec.clone();
        cluster.speakers[owner] = NodeSpeaker::start(&cluster.lab, owner, spec).expect("restart");
        // The new speaker renews the heartbeat: the deadline is the fence deadline
        // again, not the rest of the restart grace.
        until_fence(
            &cluster.speakers[owner],
            "the successor renews the heartbeat",
            |state, _| {
                state
                    .deadline_in
                    .is_some_and(|left| left < Duration::from_secs(1))
            },
        );
        sleep(Duration::from_millis(500));
    });
    support::assert_every_answer_from(&answers, cluster.lab.node_macs[owner].0, &cluster.logs());
    let peer = (owner + 1) % 3;
    assert!(
        cluster.speakers[peer].log().contains("member restarts"),
        "{}",
        cluster.logs()
    );
    assert_eq!(
        cluster.until_one_owner(&[0, 1, 2], "after the restart"),
        owner
    );
}

/// A planned restart whose successor never comes: once the restart grace is over,
/// the datapath fences and a peer takes over.
#[test]
fn netns_failover_a_restart_without_successor_fences_after_the_grace() {
    let mut cluster = Cluster::start_with(
        "fonone",
        &[KEY, KEY, KEY],
        &["--keep-datapath", "--restart-grace", "1s"],
    );
    let owner = cluster.until_one_owner(&[0, 1, 2], "at start");
    until_fence(
        &cluster.speakers[owner],
        "the heartbeat runs",
        |state, _| state.deadline_in.is_some() && !state.fenced,
    );
    assert!(
        cluster.speakers[owner].stop(Duration::from_secs(10)),
        "stopped"
    );
    let (state, _) = fence(&cluster.speakers[owner]);
    assert!(
        !state.fenced
            && state
                .deadline_in
                .is_some_and(|left| left > Duration::from_millis(300)),
        "the grace: {state:?}"
    );
    until_fence(
        &cluster.speakers[owner],
        "fenced after the grace",
        |state, _| state.fenced,
    );
    let others: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    cluster.until_one_owner(&others, "after the grace");
    let peer = others[0];
    assert!(
        cluster.speakers[peer]
            .log()
            .contains("did not come back within its restart grace"),
        "{}",
        cluster.logs()
    );
}
