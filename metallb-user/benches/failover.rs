//! `cargo xtask bench failover`: real speakers (release build) in a namespace lab
//! (`metallb_testkit::cluster`: N nodes and a client on one bridge), one VIP, gossip
//! with the default timings. The client asks who has the VIP every 5 ms (from a MAC of
//! its own, so that the answers never touch its neighbour entry) and sends a numbered
//! UDP datagram to the VIP every 1 ms; every node echoes them (the VIP on its loopback,
//! as kube-proxy's IPVS mode has it). For each fault, applied to the VIP's owner
//! `FAILOVER_TRIALS` times (default 20):
//! - takeover: fault to the first ARP answer from another node's MAC;
//! - outage: the longest time without an echo from the fault on (this includes the
//!   client's neighbour entry, which only the gratuitous burst moves), by the arrival
//!   times the kernel stamped, with the client's and the echoes' threads `SCHED_FIFO`
//!   (see `metallb_testkit::traffic`): a loaded machine delays neither;
//! - lost: datagrams without an echo;
//! - two MACs: 5 ms windows in which two MACs answered (after a partition heals, the
//!   first second leaves out);
//! - sender: the longest time between two datagrams the client sent (its own stall;
//!   the bench locks its memory so that the client's threads never fault a page in).
//!
//! Then the false takeovers: `FAILOVER_FALSE_SECS` (default 60) with every CPU busy
//! (`stress-ng --cpu 0`), and as long with the owner's speaker stopped for 100 ms every
//! second: owner changes seen by the client, and members declared down in the logs.
//! `FAILOVER_NODES` (default 3), `FAILOVER_FAULTS` (a comma list of death, crash, hang,
//! graceful, restart, partition, cpu, pause; default all), `FAILOVER_VERBOSE=1` prints
//! each trial with the client's neighbour entry at its end and the datagrams lost in
//! its longest gap (none: the echoes came late, not missing), `FAILOVER_LOGS=DIR`
//! keeps the speakers' logs there, `FAILOVER_SPEAKER_ARGS="--probe-interval 30ms"`
//! gives every speaker more flags (other timings, say). `FAILOVER_MODE=kubernetes` runs
//! the speakers in Kubernetes mode against the in-process test API server of
//! metallb-testkit (a pool, an L2Advertisement, a Service with the VIP in its status and
//! a ready endpoint, the Nodes, the speaker DaemonSet with a Ready Pod per node whose IP
//! is the node's): the peers come from the speaker Pods, each speaker's address from
//! `--membership-bind-addr` (the DaemonSet's `METALLB_ML_BIND_ADDR`, the Pod's IP), the
//! key from a mounted-Secret directory, and a dead speaker's Pod stays Ready (the
//! kubelet has not noticed), so the gossip alone moves its VIPs. The restart there is
//! a rolling update of the DaemonSet (`metallb_testkit::daemonset`): a new template,
//! the owner's Pod deleted and its speaker stopped (it asks the API, finds its Pod
//! replaced by a newer template and keeps the datapath), then the Pod's successor
//! created and its speaker started as that Pod.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use metallb_testkit::{
    TestApiServer,
    cluster::{CLIENT_IF, ClusterLab, NodeSpeaker, SpeakerSpec, config_with_nodes, node_name},
    daemonset::SpeakerDaemonSet,
    lab::{ScratchPinDir, unique_name},
    traffic::{ArpAnswer, ArpProber, Echo, UdpEcho, UdpPinger, Window},
};
use metallb_user::{
    datapath::{maps::Maps, monotonic_ns},
    kubernetes::rbac::SPEAKER,
    membership::simulation::quantile,
};
use nix::sys::signal::Signal;

#[path = "../tests/support/kubernetes.rs"]
#[allow(dead_code)]
mod kubernetes_support;

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");
/// Kubernetes mode: MetalLB's namespace.
const NS: &str = "metallb-system";
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
const ECHO_PORT: u16 = 9000;
const MEMBERSHIP_PORT: u16 = 17646;
const METRICS_ADDR: &str = "127.0.0.1:17647";
const KEY: &str = "failover bench cluster key 0123456789\n";
const ASK_EVERY: Duration = Duration::from_millis(5);
const SEND_EVERY: Duration = Duration::from_millis(1);
/// How long each trial is watched after its fault.
const WINDOW: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    /// The owner's link down and its speaker killed.
    Death,
    /// kill -9 (the datapath stays: --keep-datapath pins it).
    Crash,
    /// SIGSTOP, SIGCONT after the window.
    Hang,
    /// SIGTERM without --keep-datapath.
    Graceful,
    /// SIGTERM with --keep-datapath, and a new speaker on the same pin directory.
    Restart,
    /// The owner's link down for a second, then up.
    Partition,
}

impl Fault {
    const ALL: [Fault; 6] = [
        Fault::Death,
        Fault::Crash,
        Fault::Hang,
        Fault::Graceful,
        Fault::Restart,
        Fault::Partition,
    ];

    fn name(self) -> &'static str {
        match self {
            Fault::Death => "death",
            Fault::Crash => "crash",
            Fault::Hang => "hang",
            Fault::Graceful => "graceful",
            Fault::Restart => "restart",
            Fault::Partition => "partition",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Fault::Death => "node death (link down + kill -9)",
            Fault::Crash => "agent crash (kill -9)",
            Fault::Hang => "agent hang (SIGSTOP)",
            Fault::Graceful => "graceful stop (SIGTERM)",
            Fault::Restart => "restart, --keep-datapath",
            Fault::Partition => "partition 1 s, then heal",
        }
    }

    fn keep_datapath(self) -> bool {
        self != Fault::Graceful
    }
}

/// A scratch directory (configuration, key, logs), removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Dropped in this order: the client and the echoes, the speakers, their pins, the
/// namespaces, the scratch directory.
struct Bench {
    prober: ArpProber,
    pinger: UdpPinger,
    _echo: UdpEcho,
    speakers: Vec<Option<NodeSpeaker>>,
    specs: Vec<SpeakerSpec>,
    _pins: Vec<ScratchPinDir>,
    api: Option<KubernetesApi>,
    lab: ClusterLab,
    _scratch: Scratch,
}

impl Bench {
    fn new(nodes: usize, kubernetes: bool) -> anyhow::Result<Self> {
        let lab = ClusterLab::new("fobench", nodes)?;
        lab.serve_vip_on_nodes(VIP)?;
        let scratch = Scratch(std::env::temp_dir().join(unique_name("fobench")));
        std::fs::create_dir_all(&scratch.0)?;
        let config = scratch.0.join("metallb.yaml");
        std::fs::write(
            &config,
            config_with_nodes(
                &format!(
                    "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: pool, namespace: metallb-system}}\n\
                     spec: {{addresses: [192.0.2.100-192.0.2.150]}}\n\
                     ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: l2, namespace: metallb-system}}\nspec: {{}}\n\
                     ---\napiVersion: v1\nkind: Service\nmetadata: {{name: echo, annotations: {{metallb.io/loadBalancerIPs: '{VIP}'}}}}\n\
                     spec: {{type: LoadBalancer, ports: [{{port: {ECHO_PORT}, protocol: UDP}}]}}\n"
                ),
                nodes,
            ),
        )?;
        let key_file = scratch.0.join("key");
        std::fs::write(&key_file, KEY)?;
        let pins: Vec<ScratchPinDir> = (0..nodes)
            .map(|i| ScratchPinDir::new(&format!("fob{i}")))
            .collect();
        let api = if kubernetes {
            Some(KubernetesApi::new(&lab, &scratch.0, VIP)?)
        } else {
            None
        };
        let specs = (0..nodes)
            .map(|i| SpeakerSpec {
                binary: BINARY.into(),
                config: config.clone(),
                kubeconfig: api.as_ref().map(|api| api.kubeconfigs[i].clone()),
                pod_name: api.as_ref().map(|api| api.daemonset.pod(i).to_owned()),
                key_file: api
                    .as_ref()
                    .map_or_else(|| key_file.clone(), |api| api.key_dir.clone()),
                membership_port: MEMBERSHIP_PORT,
                metrics_addr: METRICS_ADDR.parse().expect("metrics address"),
                pin_dir: pins[i].path.clone(),
                log: scratch.0.join(format!("node-{i}.log")),
                extra: Vec::new(),
            })
            .collect();
        let echo = UdpEcho::start(&lab.node_ns, VIP, ECHO_PORT)?;
        let prober = ArpProber::start(&lab.client_ns, CLIENT_IF, VIP, ASK_EVERY)?;
        let pinger = UdpPinger::start(&lab.client_ns, VIP, ECHO_PORT, SEND_EVERY)?;
        Ok(Self {
            prober,
            pinger,
            _echo: echo,
            speakers: (0..nodes).map(|_| None).collect(),
            specs,
            _pins: pins,
            api,
            lab,
            _scratch: scratch,
        })
    }

    fn start(&mut self, i: usize) -> anyhow::Result<()> {
        self.speakers[i] = Some(NodeSpeaker::start(&self.lab, i, self.specs[i].clone())?);
        Ok(())
    }

    /// Stops every speaker and starts them again, with or without --keep-datapath.
    fn restart_all(&mut self, keep_datapath: bool) -> anyhow::Result<()> {
        for speaker in self.speakers.iter_mut() {
            if let Some(mut s) = speaker.take() {
                s.stop(Duration::from_secs(5));
            }
        }
        let since = self.log_lengths();
        for i in 0..self.specs.len() {
            self.specs[i].extra = if keep_datapath {
                vec!["--keep-datapath".into()]
            } else {
                Vec::new()
            };
            if self.api.is_some() {
                // As the DaemonSet gives it (METALLB_ML_BIND_ADDR: the Pod's IP).
                self.specs[i].extra.extend([
                    "--membership-bind-addr".to_owned(),
                    ClusterLab::node_v4(i).to_string(),
                ]);
            }
            self.specs[i].extra.extend(speaker_args());
            self.start(i)?;
        }
        self.until_fencing_on(&since, Duration::from_secs(30))?;
        self.until_all_members(&since, Duration::from_secs(30))
    }

    /// Waits until every speaker's log, past `since`, says that every other node is a
    /// member: before, the VIP can still move (the last speaker to join may be its
    /// owner), and an owner found steady meanwhile was not the owner for long (seen:
    /// the pause row paused a node that lost the VIP 400 ms after the restart, and
    /// counted that as a false takeover).
    fn until_all_members(&self, since: &[usize], within: Duration) -> anyhow::Result<()> {
        let nodes = self.specs.len();
        for i in 0..nodes {
            for j in (0..nodes).filter(|j| *j != i) {
                let name = metallb_testkit::cluster::node_name(j);
                let lines = [
                    format!("membership: member up node={name}"),
                    format!("membership: member back as a new process node={name}"),
                ];
                self.until_logged(
                    std::iter::once(i),
                    since,
                    within,
                    &format!("node-{i} sees node-{j}"),
                    |l| lines.iter().any(|line| l.contains(line.as_str())),
                )?;
            }
        }
        Ok(())
    }

    /// Waits until every speaker's log, past `since`, says its fence heartbeat runs.
    /// Until then a speaker that adopted its datapath (--keep-datapath) leaves the
    /// deadline its predecessor set for the restart (the grace, 10 s), while its
    /// adopted program already answers: a hang trial started then would not fence
    /// within its window (seen once, in the first hang trial after a restart).
    fn until_fencing_on(&self, since: &[usize], within: Duration) -> anyhow::Result<()> {
        let line = "fencing on: the datapath stops answering";
        self.until_logged(
            0..self.specs.len(),
            since,
            within,
            "fencing on everywhere",
            |l| l.contains(line),
        )
    }

    /// Waits until each log of `nodes`, past `since`, has a line that `matches`.
    fn until_logged(
        &self,
        nodes: impl Iterator<Item = usize> + Clone,
        since: &[usize],
        within: Duration,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let logged = nodes.clone().all(|i| {
                std::fs::read(&self.specs[i].log).is_ok_and(|log| {
                    String::from_utf8_lossy(log.get(since[i]..).unwrap_or_default())
                        .lines()
                        .any(&matches)
                })
            });
            if logged {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{what}: not within {within:?}\n{}", self.logs());
            }
            sleep(Duration::from_millis(20));
        }
    }

    fn speaker(&mut self, i: usize) -> anyhow::Result<&mut NodeSpeaker> {
        self.speakers[i]
            .as_mut()
            .with_context(|| format!("node-{i} runs no speaker"))
    }

    /// Waits until, for the last 400 ms, one node answered every ARP request and
    /// echoed every datagram (so the client's neighbour entry names it too). A last
    /// answer older than 50 ms means that the client's thread lags in reading them
    /// (a loaded machine), and what it has is not the present.
    fn steady_owner(&self, within: Duration) -> anyhow::Result<usize> {
        let deadline = Instant::now() + within;
        let look = Duration::from_millis(400);
        let fresh = Duration::from_millis(50);
        let mut last = String::new();
        while Instant::now() < deadline {
            sleep(Duration::from_millis(100));
            let now = Instant::now();
            let from = now - look;
            let answers = self.prober.answers_since(from);
            let echoes = self.pinger.echoes_since(from);
            let owner = answers
                .first()
                .and_then(|a| self.lab.node_of(&a.mac.to_string()));
            let steady = owner.filter(|&o| {
                answers.last().is_some_and(|a| a.at + fresh >= now)
                    && answers.len() >= 40
                    && answers.iter().all(|a| a.mac == self.lab.node_macs[o])
                    && echoes.len() >= 300
                    && echoes.iter().all(|e| usize::from(e.node) == o)
            });
            if let Some(owner) = steady {
                return Ok(owner);
            }
            last = format!(
                "{} answers from {:?}, {} echoes",
                answers.len(),
                answerers(&answers),
                echoes.len()
            );
        }
        bail!(
            "no steady owner within {within:?}; last 400 ms: {last}\n{}",
            self.logs()
        )
    }

    fn logs(&self) -> String {
        self.specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let log = std::fs::read_to_string(&s.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "--- node-{i} (last lines)\n{}\n",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect()
    }

    /// The length of every speaker's log now.
    fn log_lengths(&self) -> Vec<usize> {
        self.specs
            .iter()
            .map(|s| std::fs::metadata(&s.log).map_or(0, |m| m.len() as usize))
            .collect()
    }

    /// Waits until every other node's log, past `since`, says that `node` is a member
    /// again: the next trial starts from a settled cluster, not in the middle of the
    /// last one's recovery (a restarted owner not yet a member everywhere made a
    /// third node take the VIP beside the next owner).
    fn until_member_again(
        &self,
        node: usize,
        since: &[usize],
        within: Duration,
    ) -> anyhow::Result<()> {
        let name = metallb_testkit::cluster::node_name(node);
        let lines = [
            format!("membership: member up node={name}"),
            format!("membership: member back as a new process node={name}"),
        ];
        self.until_logged(
            (0..self.specs.len()).filter(|i| *i != node),
            since,
            within,
            &format!("node-{node} a member again"),
            |l| lines.iter().any(|line| l.contains(line.as_str())),
        )
    }

    /// "member down" lines in every speaker's log.
    fn members_declared_down(&self) -> usize {
        self.specs
            .iter()
            .map(|s| {
                std::fs::read_to_string(&s.log)
                    .unwrap_or_default()
                    .matches("membership: member down")
                    .count()
            })
            .sum()
    }

    /// Applies `fault` to `owner`; the instants of the fault and of a heal.
    fn apply(&mut self, fault: Fault, owner: usize) -> anyhow::Result<(Instant, Option<Instant>)> {
        let at = Instant::now();
        match fault {
            Fault::Death => {
                self.lab.isolate(owner, true)?;
                self.speaker(owner)?.kill();
            }
            Fault::Crash => self.speaker(owner)?.kill(),
            Fault::Hang => self.speaker(owner)?.signal(Signal::SIGSTOP)?,
            Fault::Graceful => {
                self.speaker(owner)?.stop(Duration::from_secs(5));
            }
            Fault::Restart if self.api.is_none() => {
                self.speaker(owner)?.stop(Duration::from_secs(5));
                self.start(owner)?;
            }
            Fault::Restart => self.rolling_update(owner)?,
            Fault::Partition => {
                self.lab.isolate(owner, true)?;
                sleep(Duration::from_secs(1));
                let heal = Instant::now();
                self.lab.isolate(owner, false)?;
                return Ok((at, Some(heal)));
            }
        }
        Ok((at, None))
    }

    /// Kubernetes mode's restart: a rolling update of the DaemonSet on `node`. A new
    /// template, the node's Pod deleted and its speaker stopped (it must keep its
    /// datapath: its Pod is replaced by a newer template), then the Pod's successor
    /// created, its speaker started as that Pod, and the Pod Running.
    fn rolling_update(&mut self, node: usize) -> anyhow::Result<()> {
        let api = self.api.as_ref().context("Kubernetes mode")?;
        api.daemonset.roll_out(&api.server)?;
        api.daemonset.delete_pod(&api.server, node)?;
        let pod = api.daemonset.pod(node).to_owned();
        let since = self.log_lengths();
        self.speaker(node)?.stop(Duration::from_secs(5));
        let reason = format!("rolling update of DaemonSet {NS}/");
        self.until_logged(
            std::iter::once(node),
            &since,
            Duration::ZERO,
            &format!("the speaker of Pod {pod} keeping its datapath for a rolling update"),
            |l| l.contains("the XDP program and its maps stay") && l.contains(&reason),
        )?;
        let api = self.api.as_mut().context("Kubernetes mode")?;
        let next = api.daemonset.replace_pod(&api.server, node)?;
        self.specs[node].pod_name = Some(next);
        self.start(node)?;
        let api = self.api.as_ref().context("Kubernetes mode")?;
        api.daemonset.pod_running(&api.server, node)
    }

    /// Puts `owner` back as it was before `fault`.
    fn restore(&mut self, fault: Fault, owner: usize) -> anyhow::Result<()> {
        match fault {
            Fault::Death => {
                self.lab.isolate(owner, false)?;
                self.start(owner)
            }
            Fault::Crash | Fault::Graceful => self.start(owner),
            Fault::Hang => self.speaker(owner)?.signal(Signal::SIGCONT),
            Fault::Restart | Fault::Partition => Ok(()),
        }
    }
}

/// Kubernetes mode: the test API server, serving each node's speaker in its
/// namespace, and what the speakers are given to reach it.
struct KubernetesApi {
    kubeconfigs: Vec<PathBuf>,
    /// The key as MetalLB mounts its memberlist Secret: a directory with `secretkey`.
    key_dir: PathBuf,
    daemonset: SpeakerDaemonSet,
    server: TestApiServer,
    _runtime: tokio::runtime::Runtime,
}

impl KubernetesApi {
    fn new(lab: &ClusterLab, scratch: &std::path::Path, vip: Ipv4Addr) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Runtime::new()?;
        let server = {
            let _context = runtime.enter();
            kubernetes_support::start_server(&runtime)
        };
        kubernetes_support::seed_pool_and_advertisement(&server, NS, "192.0.2.100-192.0.2.150");
        let seed = |group: &str, version: &str, plural: &str, object: serde_json::Value| {
            server
                .seed(group, version, plural, object)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("seeding {plural}: {e:?}"))
        };
        seed(
            "",
            "v1",
            "services",
            kubernetes_support::service_with_address(vip),
        )?;
        seed(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            kubernetes_support::ready_endpoint_on(&node_name(0)),
        )?;
        let daemonset = kubernetes_support::speaker_daemonset(
            &server,
            NS,
            lab.node_ns.len(),
            serde_json::json!({"app": "metallb", "component": "speaker"}),
        )?;
        let mut kubeconfigs = Vec::new();
        for i in 0..lab.node_ns.len() {
            seed(
                "",
                "v1",
                "nodes",
                serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name(i)}}),
            )?;
            let address = {
                let _context = runtime.enter();
                server.serve_in_netns(&lab.node_ns[i])?
            };
            let kubeconfig = scratch.join(format!("kubeconfig-{i}"));
            std::fs::write(
                &kubeconfig,
                server.kubeconfig(Some(address), Some(&SPEAKER.user(NS))),
            )?;
            kubeconfigs.push(kubeconfig);
        }
        let key_dir = scratch.join("memberlist");
        std::fs::create_dir_all(&key_dir)?;
        std::fs::write(key_dir.join("secretkey"), KEY)?;
        Ok(Self {
            kubeconfigs,
            key_dir,
            daemonset,
            server,
            _runtime: runtime,
        })
    }
}

fn answerers(answers: &[ArpAnswer]) -> Vec<String> {
    let mut macs: Vec<String> = answers.iter().map(|a| a.mac.to_string()).collect();
    macs.sort();
    macs.dedup();
    macs
}

/// What the client recorded from an instant on.
struct Recorded {
    answers: Vec<ArpAnswer>,
    echoes: Vec<Echo>,
    sent: Vec<Instant>,
    first_sent: u64,
}

impl Recorded {
    fn since(bench: &Bench, at: Instant) -> Self {
        let (first_sent, sent) = bench.pinger.sent_since(at);
        Self {
            answers: bench.prober.answers_since(at),
            echoes: bench.pinger.echoes_since(at),
            sent,
            first_sent,
        }
    }

    fn window(&self, from: Instant, to: Instant) -> Window<'_> {
        Window {
            from,
            to,
            answers: &self.answers,
            sent: &self.sent,
            first_sent: self.first_sent,
            echoes: &self.echoes,
        }
    }
}

struct Trial {
    /// The longest time between two datagrams the client sent (every 1 ms): its own
    /// stall, if longer.
    send_pause: Duration,
    takeover: Option<Duration>,
    outage: Duration,
    lost: usize,
    dual: usize,
    /// Crash and hang: what happened once the old owner's datapath fenced itself.
    fence: Option<FenceSeen>,
}

/// A crash or hang trial seen from the moment the old owner's datapath fenced (its
/// `fence_at`, read from its pinned control block after the window): before that it
/// still answers, by design.
struct FenceSeen {
    /// From the fault to the fence.
    at: Duration,
    /// The longest time without an echo from the fence on.
    outage: Duration,
    /// From the fence to the new owner's first ARP answer: nobody answers ARP
    /// meanwhile (the client's own entry may still reach the old node's kernel).
    unanswered: Option<Duration>,
    /// The old owner's last ARP answer, in ms after the fence (negative: before):
    /// checks that the fence did stop it.
    old_last_ms: Option<f64>,
}

/// The instant of a `CLOCK_MONOTONIC` time in nanoseconds (`Instant`'s clock too).
fn instant_of_monotonic(ns: u64) -> Instant {
    let (now, now_ns) = (Instant::now(), monotonic_ns());
    if ns <= now_ns {
        now - Duration::from_nanos(now_ns - ns)
    } else {
        now + Duration::from_nanos(ns - now_ns)
    }
}

/// The fence deadline and episodes of the datapath pinned in `pin_dir`.
fn fence_of(pin_dir: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    let ctl = Maps::open_pinned(pin_dir)
        .with_context(|| {
            let held: Vec<String> = std::fs::read_dir(pin_dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "opening the maps pinned in {} (it holds {held:?})",
                pin_dir.display()
            )
        })?
        .ctl();
    Ok((ctl.fence_at, ctl.fence_episodes))
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn run_fault(bench: &mut Bench, fault: Fault, trials: usize) -> anyhow::Result<Vec<Trial>> {
    bench.restart_all(fault.keep_datapath())?;
    let mut results = Vec::new();
    for _ in 0..trials {
        let owner = bench.steady_owner(Duration::from_secs(30))?;
        let fences = matches!(fault, Fault::Crash | Fault::Hang);
        let pin_dir = bench.specs[owner].pin_dir.clone();
        let episodes_before = if fences { fence_of(&pin_dir)?.1 } else { 0 };
        let logs_before = bench.log_lengths();
        let (at, heal) = bench.apply(fault, owner)?;
        let to = heal.unwrap_or(at) + WINDOW;
        sleep(to.saturating_duration_since(Instant::now()));
        let recorded = Recorded::since(bench, at);
        let window = recorded.window(at, to);
        let skip = heal.map(|h| (h, h + Duration::from_secs(1)));
        let old_mac = bench.lab.node_macs[owner];
        let fence = if fences {
            let (fence_at, episodes) = fence_of(&pin_dir)?;
            let fenced = instant_of_monotonic(fence_at);
            if episodes > episodes_before && fence_at != 0 && fenced < to {
                let after = recorded.window(fenced.max(at), to);
                Some(FenceSeen {
                    at: fenced.saturating_duration_since(at),
                    outage: after.outage(),
                    unanswered: after.first_answer_not_from(old_mac),
                    old_last_ms: recorded
                        .answers
                        .iter()
                        .rev()
                        .find(|a| a.mac == old_mac)
                        .map(|a| {
                            if a.at >= fenced {
                                (a.at - fenced).as_secs_f64() * 1000.0
                            } else {
                                -(fenced - a.at).as_secs_f64() * 1000.0
                            }
                        }),
                })
            } else {
                println!(
                    "  {} owner node-{owner}: its datapath did not fence within the window (fence_at {fence_at}, episodes {episodes_before} -> {episodes})",
                    fault.name()
                );
                None
            }
        } else {
            None
        };
        let trial = Trial {
            send_pause: window.longest_send_pause(),
            takeover: window.first_answer_not_from(old_mac),
            outage: window.outage(),
            lost: window.lost(Duration::from_millis(50)),
            dual: window.dual_answers(ASK_EVERY, skip),
            fence,
        };
        if std::env::var_os("FAILOVER_VERBOSE").is_some() {
            // The client's neighbour entry at the end says where its traffic went.
            let neighbour = metallb_testkit::lab::exec_in(
                &bench.lab.client_ns,
                "ip",
                &["neigh", "show", &VIP.to_string()],
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
            let fenced = trial.fence.as_ref().map_or(String::new(), |f| {
                format!(
                    "; fenced at {} ms, then unanswered {:?}, outage {} ms, old owner's last answer {:?} ms after the fence",
                    ms(f.at),
                    f.unanswered,
                    ms(f.outage),
                    f.old_last_ms
                )
            });
            let (gap_from, _) = window.longest_gap();
            let (gap_sent, gap_lost) = window.sent_and_lost_in_longest_gap();
            println!(
                "  {} owner node-{owner}: takeover {:?} by {:?}, outage {} ms (from {} ms; {gap_sent} datagrams sent in it, {gap_lost} of them lost; the sender's longest pause {} ms), lost {}, two MACs {}, echoes from {:?}; client: {neighbour}{fenced}",
                fault.name(),
                trial.takeover,
                window.answerers(),
                ms(trial.outage),
                ms(gap_from.saturating_duration_since(at)),
                ms(trial.send_pause),
                trial.lost,
                trial.dual,
                recorded.echoes.last().map(|e| e.node),
            );
        }
        results.push(trial);
        bench.restore(fault, owner)?;
        bench.until_member_again(owner, &logs_before, Duration::from_secs(30))?;
    }
    Ok(results)
}

/// p50, p99 and max in ms, or dashes.
fn stats(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return format!("{:>6} {:>6} {:>6}", "-", "-", "-");
    }
    format!(
        "{:>6} {:>6} {:>6}",
        ms(quantile(samples, 0.5)),
        ms(quantile(samples, 0.99)),
        ms(*samples.iter().max().unwrap_or(&Duration::ZERO))
    )
}

fn print_row(title: &str, trials: &[Trial]) {
    let takeovers: Vec<Duration> = trials.iter().filter_map(|t| t.takeover).collect();
    let outages: Vec<Duration> = trials.iter().map(|t| t.outage).collect();
    println!(
        "{title:<34} {:>3}/{:<3} {} {} {:>7} {:>7} {:>6} {:>6}",
        takeovers.len(),
        trials.len(),
        stats(&takeovers),
        stats(&outages),
        trials.iter().map(|t| t.lost).sum::<usize>(),
        trials.iter().map(|t| t.lost).max().unwrap_or(0),
        trials.iter().map(|t| t.dual).sum::<usize>(),
        ms(trials
            .iter()
            .map(|t| t.send_pause)
            .max()
            .unwrap_or_default()),
    );
}

/// Crash and hang from the fence on: when it fired, how long nobody answered ARP,
/// the outage, and the old owner's last answer (it must not be after the fence).
fn print_fence_row(title: &str, trials: &[Trial]) {
    let fences: Vec<&FenceSeen> = trials.iter().filter_map(|t| t.fence.as_ref()).collect();
    if fences.is_empty() {
        return;
    }
    let at: Vec<Duration> = fences.iter().map(|f| f.at).collect();
    let unanswered: Vec<Duration> = fences.iter().filter_map(|f| f.unanswered).collect();
    let outages: Vec<Duration> = fences.iter().map(|f| f.outage).collect();
    let old_last = fences
        .iter()
        .filter_map(|f| f.old_last_ms)
        .fold(f64::NEG_INFINITY, f64::max);
    println!(
        "{title:<34} {:>3}/{:<3} {} {} {} {:>8.1}",
        unanswered.len(),
        fences.len(),
        stats(&at),
        stats(&unanswered),
        stats(&outages),
        old_last,
    );
}

/// `secs` of the cluster left alone while `disturb` runs: how often the answering MAC
/// changed, how many members were declared down, and windows with two MACs.
fn false_takeovers(
    bench: &mut Bench,
    title: &str,
    secs: u64,
    disturb: impl FnOnce(&mut Bench, usize, Duration) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    bench.restart_all(false)?;
    let owner = bench.steady_owner(Duration::from_secs(30))?;
    let down_before = bench.members_declared_down();
    let pin_dir = bench.specs[owner].pin_dir.clone();
    let fences_before = fence_of(&pin_dir)?.1;
    let at = Instant::now();
    let length = Duration::from_secs(secs);
    let note = disturb(bench, owner, length)?;
    let to = Instant::now();
    let fences = fence_of(&pin_dir)?.1 - fences_before;
    let recorded = Recorded::since(bench, at);
    let window = recorded.window(at, to);
    let changes = recorded
        .answers
        .windows(2)
        .filter(|w| w[0].mac != w[1].mac)
        .count();
    if std::env::var_os("FAILOVER_VERBOSE").is_some() {
        for w in recorded.answers.windows(2).filter(|w| w[0].mac != w[1].mac) {
            println!(
                "  owner node-{owner}: answers moved from {} to {} at {} ms",
                w[0].mac,
                w[1].mac,
                ms(w[1].at.saturating_duration_since(at))
            );
        }
    }
    println!(
        "{title:<42} {:>4} s {:>8} {:>9} {:>7} {:>8} {:>8} {:>7}",
        secs,
        changes,
        bench.members_declared_down() - down_before,
        fences,
        ms(window.outage()),
        window.lost(Duration::from_millis(50)),
        window.dual_answers(ASK_EVERY, None),
    );
    if !note.is_empty() {
        println!("  {note}");
    }
    Ok(())
}

/// The calling thread under SCHED_FIFO until dropped (SCHED_OTHER again).
struct Realtime(bool);

static REALTIME_REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn realtime_ok() -> bool {
    !REALTIME_REFUSED.load(std::sync::atomic::Ordering::Relaxed)
}

impl Realtime {
    fn enter() -> Self {
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: the calling thread (0) and a valid sched_param.
        let ok = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0;
        if !ok {
            REALTIME_REFUSED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Self(ok)
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        if self.0 {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: as above.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
        }
    }
}

/// `FAILOVER_SPEAKER_ARGS`: more flags for every speaker, split at white space.
fn speaker_args() -> Vec<String> {
    std::env::var("FAILOVER_SPEAKER_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let nodes: usize = env_or("FAILOVER_NODES", 3);
    let trials: usize = env_or("FAILOVER_TRIALS", 20);
    let secs: u64 = env_or("FAILOVER_FALSE_SECS", 60);
    let selected: Vec<String> = std::env::var("FAILOVER_FAULTS")
        .unwrap_or_else(|_| "death,crash,hang,graceful,restart,partition,cpu,pause".into())
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "failover: {nodes} nodes, {trials} trials per fault; CPU: {} x {cpus}; load average {}",
        metallb_testkit::cpu_model(),
        loadavg()
    );
    println!(
        "client asks every {} ms, sends every {} ms; times in ms from the fault; window {} s",
        ASK_EVERY.as_millis(),
        SEND_EVERY.as_millis(),
        WINDOW.as_secs()
    );
    let args = speaker_args();
    if !args.is_empty() {
        println!("speakers: the default timings and {}", args.join(" "));
    }
    let kubernetes = std::env::var("FAILOVER_MODE").is_ok_and(|m| m == "kubernetes");
    if kubernetes {
        println!(
            "speakers in Kubernetes mode: the in-process test API server, peers from the speaker Pods (which stay Ready), restart = a rolling update of the DaemonSet"
        );
    }
    // Before any thread starts: the client's threads never wait for a page.
    let locked = metallb_testkit::traffic::lock_memory();
    let mut bench = Bench::new(nodes, kubernetes)?;

    println!(
        "\n{:<34} {:>7} {:>20} {:>20} {:>7} {:>7} {:>6} {:>6}",
        "fault",
        "moved",
        "takeover p50/p99/max",
        "outage p50/p99/max",
        "lost",
        "max/tr",
        "2 MACs",
        "sender"
    );
    let mut fenced = Vec::new();
    for fault in Fault::ALL {
        if !selected.iter().any(|s| s == fault.name()) {
            continue;
        }
        match run_fault(&mut bench, fault, trials) {
            Ok(results) => {
                print_row(fault.title(), &results);
                fenced.push((fault, results));
            }
            Err(e) => println!("{:<34} failed: {e:#}", fault.title()),
        }
    }
    if fenced
        .iter()
        .any(|(_, r)| r.iter().any(|t| t.fence.is_some()))
    {
        println!(
            "\ncounted from the fence (the old owner's datapath stops answering; before it, it answers by design)\n{:<34} {:>7} {:>20} {:>20} {:>20} {:>8}",
            "fault",
            "moved",
            "fenced p50/p99/max",
            "unanswered p50/p99/max",
            "outage p50/p99/max",
            "old last"
        );
        for (fault, results) in &fenced {
            print_fence_row(fault.title(), results);
        }
        println!(
            "(fenced: ms from the fault; unanswered: from the fence to the new owner's first answer; outage: longest time without an echo from the fence on; old last: the old owner's last answer, ms after the fence, at most)"
        );
    }
    let wants = |name: &str| selected.iter().any(|s| s == name);
    if wants("cpu") || wants("pause") {
        println!(
            "\n{:<42} {:>6} {:>8} {:>9} {:>7} {:>8} {:>8} {:>7}",
            "false takeovers",
            "length",
            "changes",
            "declared",
            "fenced",
            "outage",
            "lost",
            "2 MACs"
        );
    }
    if wants("cpu") {
        let result = false_takeovers(
            &mut bench,
            &format!("every CPU busy (stress-ng --cpu {cpus})"),
            secs,
            |_, _, length| {
                let status = Command::new("stress-ng")
                    .args(["--cpu", "0", "--timeout", &format!("{}s", length.as_secs())])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .context("running stress-ng (cargo xtask bench failover installs it)")?;
                anyhow::ensure!(status.success(), "stress-ng failed: {status}");
                Ok(String::new())
            },
        );
        if let Err(e) = result {
            println!("every CPU busy: failed: {e:#}");
        }
    }
    if wants("pause") {
        let result = false_takeovers(
            &mut bench,
            "owner's speaker stopped 100 ms every 1 s",
            secs,
            |bench, owner, length| {
                // The pause is the fault: on a loaded machine a plain sleep of 100 ms
                // overshoots by tens of ms, so this thread runs SCHED_FIFO meanwhile
                // and every pause is measured (SIGSTOP sent to SIGCONT sent).
                let realtime = Realtime::enter();
                let until = Instant::now() + length;
                let mut pauses = Vec::new();
                while Instant::now() < until {
                    bench.speaker(owner)?.signal(Signal::SIGSTOP)?;
                    let stopped = Instant::now();
                    sleep(Duration::from_millis(100));
                    bench.speaker(owner)?.signal(Signal::SIGCONT)?;
                    pauses.push(stopped.elapsed());
                    sleep(Duration::from_millis(900));
                }
                drop(realtime);
                Ok(format!(
                    "{} pauses of {} ms (p50), {} ms at most{}",
                    pauses.len(),
                    ms(quantile(&pauses, 0.5)),
                    ms(pauses.iter().max().copied().unwrap_or_default()),
                    if realtime_ok() {
                        ""
                    } else {
                        " (SCHED_FIFO refused: plain sleeps)"
                    }
                ))
            },
        );
        if let Err(e) = result {
            println!("pauses: failed: {e:#}");
        }
    }
    println!(
        "\nclient and echo threads: {}; arrivals as the kernel stamped them; memory {}; sender: the longest pause between two datagrams sent (every 1 ms) in any trial",
        if metallb_testkit::traffic::realtime() {
            "SCHED_FIFO"
        } else {
            "normal priority (SCHED_FIFO refused: a loaded machine delays them)"
        },
        if locked {
            "locked (mlockall)"
        } else {
            "not locked (mlockall refused)"
        }
    );
    println!("load average at the end {}", loadavg());
    if let Some(dir) = std::env::var_os("FAILOVER_LOGS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)?;
        for (i, spec) in bench.specs.iter().enumerate() {
            std::fs::copy(&spec.log, dir.join(format!("node-{i}.log")))
                .with_context(|| format!("copying {}", spec.log.display()))?;
        }
        println!("the speakers' logs are in {}", dir.display());
    }
    Ok(())
}
