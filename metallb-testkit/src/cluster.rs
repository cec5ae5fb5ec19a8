//! Several nodes and a client on one LAN, in network namespaces: a bridge in a
//! namespace of its own, one veth port for each node and one for the client. For the
//! failover tests and benchmark (speakers gossiping between nodes, a VIP moving
//! between them). Everything is removed when the [`ClusterLab`] is dropped, also when a
//! test panics. Addresses come from 192.0.2.0/24 and traffic stays in the namespaces.

use std::{
    net::{Ipv4Addr, SocketAddr},
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nix::{sys::signal::Signal, unistd::Pid};

use crate::lab::{run, unique_name};
use metallb_user::datapath::{FenceState, iface::MacAddr, maps::Maps};

/// Node and client interface names inside their namespaces.
pub const NODE_IF: &str = "mlb-node";
pub const CLIENT_IF: &str = "mlb-client";
pub const BRIDGE: &str = "br0";

pub struct ClusterLab {
    pub bridge_ns: String,
    pub node_ns: Vec<String>,
    pub client_ns: String,
    pub node_macs: Vec<MacAddr>,
    pub client_mac: MacAddr,
    /// Left in place on drop (`cargo xtask lab`, removed by `--down`).
    kept: bool,
}

impl ClusterLab {
    pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    /// Node `i`'s address: 192.0.2.(11 + i).
    pub fn node_v4(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, 11 + i as u8)
    }

    /// The bridge port of node `i` (in the bridge namespace).
    pub fn node_port(i: usize) -> String {
        format!("p{i}")
    }

    pub fn new(tag: &str, nodes: usize) -> anyhow::Result<Self> {
        Self::named(&unique_name(tag), nodes)
    }

    /// The namespaces are `BASE-b` (bridge), `BASE-n0`... (nodes) and `BASE-c` (client).
    pub fn named(base: &str, nodes: usize) -> anyhow::Result<Self> {
        // Node addresses stop below the pools of the examples (192.0.2.100 and up).
        anyhow::ensure!((1..=80).contains(&nodes), "1 to 80 nodes, not {nodes}");
        let lab = Self {
            bridge_ns: format!("{base}-b"),
            node_ns: (0..nodes).map(|i| format!("{base}-n{i}")).collect(),
            client_ns: format!("{base}-c"),
            node_macs: (0..nodes)
                .map(|i| MacAddr([0x02, 0x00, 0x00, 0x00, 0x01, 0x01 + i as u8]))
                .collect(),
            client_mac: MacAddr([0x02, 0x00, 0x00, 0x00, 0x02, 0x02]),
            kept: false,
        };
        // From here on Drop removes whatever was created.
        run("ip", &["netns", "add", &lab.bridge_ns])?;
        let b = lab.bridge_ns.as_str();
        run(
            "ip",
            &[
                "-n",
                b,
                "link",
                "add",
                BRIDGE,
                "type",
                "bridge",
                "stp_state",
                "0",
            ],
        )?;
        run("ip", &["-n", b, "link", "set", BRIDGE, "up"])?;
        run("ip", &["-n", b, "link", "set", "lo", "up"])?;
        let mut hosts: Vec<(String, &str, String, MacAddr, Ipv4Addr)> = (0..nodes)
            .map(|i| {
                (
                    lab.node_ns[i].clone(),
                    NODE_IF,
                    Self::node_port(i),
                    lab.node_macs[i],
                    Self::node_v4(i),
                )
            })
            .collect();
        hosts.push((
            lab.client_ns.clone(),
            CLIENT_IF,
            "pc".into(),
            lab.client_mac,
            Self::CLIENT_V4,
        ));
        for (ns, ifname, port, mac, v4) in &hosts {
            run("ip", &["netns", "add", ns])?;
            run(
                "ip",
                &[
                    "link",
                    "add",
                    ifname,
                    "netns",
                    ns,
                    "address",
                    &mac.to_string(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    port,
                    "netns",
                    b,
                ],
            )?;
            run(
                "ip",
                &["-n", b, "link", "set", port, "master", BRIDGE, "up"],
            )?;
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", ifname],
            )?;
            run("ip", &["-n", ns, "link", "set", ifname, "up"])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// Every namespace, the bridge's first (removing it first cuts every link).
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(&self.bridge_ns)
            .chain(&self.node_ns)
            .chain([&self.client_ns])
            .cloned()
            .collect()
    }

    /// Leaves everything in place when dropped: whoever calls this removes the
    /// [`namespaces`](Self::namespaces) (`ip netns del`).
    pub fn keep(&mut self) {
        self.kept = true;
    }

    /// Gives every node `vip` on its loopback, as kube-proxy's IPVS mode does on
    /// kube-ipvs0, so that a service on the node receives what is sent to the VIP. The
    /// node's kernel must then not answer ARP for it (arp_ignore=1: only for addresses
    /// of the interface asked on), nor use it as the source of its own ARP requests
    /// (arp_announce=2), or the client would learn the VIP from the kernel and not
    /// from the speakers.
    pub fn serve_vip_on_nodes(&self, vip: Ipv4Addr) -> anyhow::Result<()> {
        for ns in &self.node_ns {
            for (key, value) in [
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
            ] {
                let setting = format!("{key}={value}");
                run("ip", &["netns", "exec", ns, "sysctl", "-q", "-w", &setting])?;
            }
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{vip}/32"), "dev", "lo"],
            )?;
        }
        Ok(())
    }

    /// Cuts node `i` off the LAN (true) or back on (false), at its bridge port.
    pub fn isolate(&self, i: usize, isolated: bool) -> anyhow::Result<()> {
        let state = if isolated { "down" } else { "up" };
        run(
            "ip",
            &[
                "-n",
                &self.bridge_ns,
                "link",
                "set",
                &Self::node_port(i),
                state,
            ],
        )
        .map(|_| ())
    }

    /// The MAC address the client's neighbour table holds for `ip`, if any.
    pub fn client_neighbour(&self, ip: Ipv4Addr) -> anyhow::Result<Option<String>> {
        let out = run(
            "ip",
            &[
                "-n",
                &self.client_ns,
                "neigh",
                "show",
                &ip.to_string(),
                "dev",
                CLIENT_IF,
            ],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        Ok(words
            .by_ref()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_owned))
    }

    /// Which node owns `mac` (one of the lab's node MACs).
    pub fn node_of(&self, mac: &str) -> Option<usize> {
        self.node_macs
            .iter()
            .position(|m| m.to_string().eq_ignore_ascii_case(mac))
    }

    /// A command in namespace `ns` (network only: mounts are kept).
    pub fn command_in(ns: &str, program: &str) -> Command {
        crate::lab::command_in(ns, program)
    }

    /// The MACs that answer one broadcast ARP request for `target` from the client
    /// (arping waits up to a second for a second answer, so that two answering nodes
    /// are both seen).
    pub fn arp_answers(&self, target: Ipv4Addr) -> anyhow::Result<Vec<String>> {
        let out = crate::lab::exec_in(
            &self.client_ns,
            "arping",
            &["-c", "2", "-w", "1", "-I", CLIENT_IF, &target.to_string()],
        )
        .context("arping")?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter(|line| line.contains("reply from"))
            .filter_map(|line| {
                let start = line.find('[')?;
                let end = line[start..].find(']')?;
                Some(line[start + 1..start + end].to_ascii_lowercase())
            })
            .collect())
    }

    /// Waits until exactly one node of `among` answers `vip`, the same in three
    /// requests in a row, and says which; on the deadline, the last answers seen.
    pub fn wait_one_owner(
        &self,
        vip: Ipv4Addr,
        among: &[usize],
        deadline: Duration,
    ) -> Result<usize, Vec<String>> {
        let until = Instant::now() + deadline;
        let mut last = Vec::new();
        while Instant::now() < until {
            let answers: Vec<String> = (0..3)
                .flat_map(|_| self.arp_answers(vip).unwrap_or_default())
                .collect();
            let owners: Vec<Option<usize>> = answers.iter().map(|mac| self.node_of(mac)).collect();
            if owners.len() == 3
                && owners.iter().all(|o| *o == owners[0])
                && let Some(owner) = owners[0].filter(|o| among.contains(o))
            {
                return Ok(owner);
            }
            last = answers;
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last)
    }

    /// Sends one UDP datagram from the client to `target`, which makes the client's
    /// kernel resolve it (a neighbour entry).
    pub fn client_resolves(&self, target: Ipv4Addr) -> anyhow::Result<()> {
        crate::lab::exec_in(
            &self.client_ns,
            "bash",
            &["-c", &format!("echo x > /dev/udp/{target}/9")],
        )
        .map(|_| ())
    }
}

impl Drop for ClusterLab {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // Deleting a namespace deletes its veth ends, their peers and every XDP
        // attachment on them.
        for ns in self
            .node_ns
            .iter()
            .chain([&self.client_ns, &self.bridge_ns])
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// `base` (a multi-document configuration) with `nodes` Nodes appended, `node-0`... at
/// the lab's addresses: every speaker of the lab reads this one file, and its gossip
/// finds its peers in it.
pub fn config_with_nodes(base: &str, nodes: usize) -> String {
    let mut text = base.trim_end().to_owned();
    for i in 0..nodes {
        text += &format!(
            "\n---\napiVersion: v1\nkind: Node\nmetadata: {{name: {}}}\n\
             status: {{addresses: [{{type: InternalIP, address: {}}}]}}",
            node_name(i),
            ClusterLab::node_v4(i)
        );
    }
    text.push('\n');
    text
}

/// Node `i`'s name in the configuration and on its speaker's command line.
pub fn node_name(i: usize) -> String {
    format!("node-{i}")
}

/// Node `i`'s speaker Pod, in Kubernetes mode.
pub fn speaker_pod_name(i: usize) -> String {
    format!("speaker-{}", node_name(i))
}

/// How to run one node's speaker.
#[derive(Clone, Debug)]
pub struct SpeakerSpec {
    pub binary: PathBuf,
    /// The configuration file (standalone mode); ignored with `kubeconfig`.
    pub config: PathBuf,
    /// Kubernetes mode: the API through this kubeconfig, as Pod `pod_name` (no
    /// `--config`).
    pub kubeconfig: Option<PathBuf>,
    /// Kubernetes mode: this speaker's Pod; `None`: [`speaker_pod_name`].
    pub pod_name: Option<String>,
    pub key_file: PathBuf,
    pub membership_port: u16,
    /// In the node's namespace, so the same address on every node.
    pub metrics_addr: SocketAddr,
    pub pin_dir: PathBuf,
    pub log: PathBuf,
    /// More flags (`--keep-datapath`, timings...).
    pub extra: Vec<String>,
}

/// One `metallb speaker` in a node's namespace (generic XDP on the lab's interface,
/// membership on), stopped on drop (SIGTERM, then SIGKILL) unless detached.
pub struct NodeSpeaker {
    child: Option<Child>,
    pub spec: SpeakerSpec,
}

impl NodeSpeaker {
    pub fn start(lab: &ClusterLab, i: usize, spec: SpeakerSpec) -> anyhow::Result<Self> {
        // Appended to: a restarted speaker's log follows its predecessor's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .with_context(|| format!("opening {}", spec.log.display()))?;
        let mut command = ClusterLab::command_in(&lab.node_ns[i], &spec.binary.to_string_lossy());
        command.arg("speaker");
        match &spec.kubeconfig {
            Some(kubeconfig) => {
                let pod = spec.pod_name.clone().unwrap_or_else(|| speaker_pod_name(i));
                command
                    .args(["--pod-name", &pod])
                    .env("KUBECONFIG", kubeconfig);
            }
            None => {
                command.arg("--config").arg(&spec.config);
            }
        }
        command
            .arg("--pin-dir")
            .arg(&spec.pin_dir)
            .args(["--interface", NODE_IF, "--xdp-mode", "generic"])
            .args(["--node-name", &node_name(i)])
            .args(["--metrics-addr", &spec.metrics_addr.to_string()])
            .args(["--membership-port", &spec.membership_port.to_string()])
            .arg("--membership-key-file")
            .arg(&spec.key_file)
            .args(&spec.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: a Ctrl-C meant for whoever started it does not
            // reach it (a kept lab outlives the command that made it).
            .process_group(0);
        let child = command.spawn().context("starting the speaker")?;
        Ok(Self {
            child: Some(child),
            spec,
        })
    }

    /// The process id (nsenter execs the speaker: the same process).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }

    /// Sends `signal` to the speaker.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = self.pid().context("the speaker is not running")?;
        nix::sys::signal::kill(Pid::from_raw(pid as i32), signal)
            .with_context(|| format!("sending {signal} to {pid}"))
    }

    /// Kills the speaker at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `deadline` for it to exit (SIGKILL after that).
    /// Whether it exited by itself.
    pub fn stop(&mut self, deadline: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// The datapath's fence state and the requests it dropped while fenced, read
    /// from the speaker's pinned maps (as `metallb inspect` does).
    pub fn fence(&self) -> anyhow::Result<(FenceState, u64)> {
        let maps = Maps::open_pinned(&self.spec.pin_dir).context("open the pinned maps")?;
        let fenced = maps.stats().context("stats")?.drop_fenced;
        Ok((FenceState::of(&maps.ctl()), fenced))
    }

    /// Waits until `check` holds for the fence state (polled every 20 ms, for up to
    /// 20 s); otherwise an error saying `what`, the last state and the log.
    pub fn wait_fence(
        &self,
        what: &str,
        check: impl Fn(&FenceState, u64) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (state, fenced) = self.fence()?;
            if check(&state, fenced) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{what}: {state:?}, {fenced} requests fenced\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Leaves the speaker running after this value is gone; its process id.
    pub fn detach(mut self) -> Option<u32> {
        self.child.take().map(|c| c.id())
    }
}

impl Drop for NodeSpeaker {
    fn drop(&mut self) {
        // A stopped speaker cannot handle SIGTERM.
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
        }
        self.stop(Duration::from_secs(5));
    }
}
