//! `metallb`: a MetalLB-compatible load-balancer whose layer-2 answers come from XDP.
//! Standalone mode reads a YAML file of MetalLB objects; `metallb controller` runs on
//! the Kubernetes API.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use metallb_common::{DEFAULT_MAX_VIPS, DEFAULT_PIN_DIR, PROGRAM_NAME};
use metallb_user::{
    allocator::AllocatorOptions,
    cli::{
        Output, RecordedInterfaces, failed_services, inspect_report, parse_report, plan_report,
        validation_report,
    },
    config::{DEFAULT_NAMESPACE, ValidateOptions, crd, file, legacy, validate},
    datapath::{
        DatapathKind, DatapathOptions, MAX_VIPS_LIMIT, XdpMode,
        cleanup::{CleanupOptions, cleanup},
        iface,
        maps::Maps,
    },
    interface_report,
    kubernetes::speaker::KubernetesOptions,
    plan::{PlanOptions, interfaces_to_attach, plan},
    printable::printable,
    speaker::{
        DEFAULT_MAX_CONFIG_BYTES, LoadError, MAX_CONFIG_BYTES_LIMIT, SourceOptions, SpeakerOptions,
        load_config, read_config, run, shown_path,
    },
};

/// `metallb plan`'s exit status when a service cannot get what it asks for (1 is an
/// unreadable or invalid file, 2 a usage error).
const PLAN_ALLOCATION_FAILED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "metallb",
    version,
    about = "MetalLB-compatible load-balancer for bare metal, with an XDP layer-2 datapath",
    long_about = "MetalLB-compatible load-balancer for bare metal whose ARP and IPv6 neighbor \
answers come from an XDP program in the kernel.\n\nStandalone mode: the configuration is a \
multi-document YAML file of MetalLB objects (metallb.io/v1beta1 IPAddressPool, L2Advertisement) \
and the Services (and optionally Nodes, Namespaces, EndpointSlices) they serve, as you would \
`kubectl apply` them. Kubernetes mode: `metallb controller` allocates, `metallb speaker` \
without --config announces, both on the Kubernetes API."
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `metallb_user=debug` (RUST_LOG works too).
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where FRR is, and where the speaker's FRR instance keeps its files.
#[derive(Args)]
struct FrrPaths {
    /// BGP mode: the directory of FRR's daemons and frr-reload.py (Debian's frr and
    /// frr-pythontools). FRR is started only when a BGPPeer selects this node.
    #[arg(long, default_value = metallb_user::bgp::frr_daemon::DEFAULT_FRR_DIR)]
    frr_dir: PathBuf,
    /// BGP mode: FRR's vtysh.
    #[arg(long, default_value = metallb_user::bgp::frr_daemon::DEFAULT_VTYSH)]
    vtysh: PathBuf,
    /// BGP mode: the speaker's own FRR instance keeps its configuration, sockets, pid
    /// files and logs here (never the host's /etc/frr or /var/run/frr).
    #[arg(long, default_value = metallb_user::bgp::frr_daemon::DEFAULT_WORK_DIR)]
    frr_work_dir: PathBuf,
}

impl FrrPaths {
    fn options(
        self,
        hostname: String,
        external: bool,
    ) -> metallb_user::bgp::frr_daemon::FrrOptions {
        metallb_user::bgp::frr_daemon::FrrOptions {
            frr_dir: self.frr_dir,
            vtysh: self.vtysh,
            work_dir: self.frr_work_dir,
            render: metallb_user::bgp::frr::RenderOptions {
                hostname,
                ..Default::default()
            },
            external,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration file: exit 0 when valid, 1 with every error listed.
    Validate {
        /// The configuration file, or `-` for standard input.
        file: PathBuf,
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        limits: Limits,
    },
    /// Show what each service would get (addresses, pool, announcing node and
    /// interfaces) or why it gets nothing. Touches nothing.
    ///
    /// Services are allocated one after the other, as MetalLB's controller sees them:
    /// those carrying an address in status.loadBalancer.ingress first (keeping it when
    /// valid), then by metadata.creationTimestamp where set, then in the file's order
    /// (creation order). A service asking for an address an earlier one got fails.
    ///
    /// Exit status: 0 when every LoadBalancer service gets what it asks for; 3 when at
    /// least one cannot (MetalLB's AllocationFailed: the table still shows every
    /// service, and why), so that a script or CI job notices; 1 when the configuration
    /// cannot be read or is invalid; 2 on a usage error.
    Plan {
        /// The configuration file, or `-` for standard input.
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// Interfaces the speaker would attach to (default: as the speaker chooses,
        /// shown with the interfaces it leaves alone and why).
        #[arg(long = "interface", value_name = "IF")]
        interfaces: Vec<String>,
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        limits: Limits,
    },
    /// Run the speaker: attach the XDP responder, answer for the VIPs this node is
    /// elected for, announce gratuitously, serve metrics. With --config, standalone: it
    /// follows the file (changes apply within a second; SIGHUP reloads) and allocates
    /// itself. Without, on the Kubernetes API: addresses from the Services' status
    /// (the controller's), endpoints, nodes and live speakers from the API, and it
    /// writes ServiceL2Status objects. SIGTERM detaches and unpins (see
    /// --keep-datapath).
    Speaker(SpeakerArgs),
    /// Run MetalLB's controller on the Kubernetes API (in-cluster, or KUBECONFIG):
    /// allocate addresses to LoadBalancer Services from the IPAddressPools, write their
    /// status, the pools' status and Events, and serve the validating admission
    /// webhooks and the BGPPeer conversion webhook. Several replicas may run: one
    /// leads (a Lease), only it writes.
    Controller(ControllerArgs),
    /// Run FRR's daemons (zebra, bfdd, bgpd) for a speaker started with --frr-external,
    /// with every file in --frr-work-dir, shared with the speaker (the DaemonSet's frr
    /// container). They run as root. A configuration the speaker wrote there before is
    /// applied again at start (this container restarted). SIGTERM stops them; a daemon
    /// that exits ends this command with an error.
    Frr(FrrPaths),
    /// Print the CustomResourceDefinitions of group metallb.io (IPAddressPool,
    /// L2Advertisement, the status and BGP kinds), generated from this program's types,
    /// as one multi-document YAML for `kubectl apply -f -`.
    Crds,
    /// Print the ServiceAccounts, roles and bindings each component needs (the content
    /// of deploy/rbac.yaml), generated from the table in kubernetes/rbac.rs.
    #[command(hide = true)]
    Rbac {
        /// The namespace MetalLB runs in.
        #[arg(long, default_value = DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Convert MetalLB's legacy ConfigMap configuration (MetalLB v0.12 and older) into
    /// the equivalent metallb.io objects, printed as YAML for `kubectl apply -f -`.
    ///
    /// FILE is the ConfigMap (`kubectl get configmap -n metallb-system config -o yaml`) or
    /// the YAML of its data.config: address-pools, peers, bgp-communities, bfd-profiles.
    /// The objects are named and shaped as MetalLB's own converter (configmaptocrs) makes
    /// them: an IPAddressPool per pool, named as the pool; an L2Advertisement
    /// l2advertisementN per layer2 pool; a BGPAdvertisement bgpadvertisementN per
    /// bgp-advertisements entry (or one per bgp pool without any); a BGPPeer peerN
    /// (metallb.io/v1beta2) per peer; a BFDProfile per profile; one Community named
    /// communities. Names that are not Kubernetes names are renamed as MetalLB renames them
    /// (My_Pool becomes my-pool), with a warning. The BGP kinds are written for MetalLB
    /// compatibility; this version does not act on them.
    ///
    /// What MetalLB would have refused (an unknown protocol, a malformed CIDR, a peer
    /// without an AS number, ...) is an error naming the field and the value. Warnings
    /// and errors go to standard error, the YAML to standard output. Exit status: 0 when
    /// converted; 1 when not (nothing is printed on standard output); 2 on a usage error.
    MigrateConfig {
        /// The ConfigMap or its data.config, or `-` for standard input.
        file: PathBuf,
        /// Namespace of the objects written (default: the ConfigMap's, else
        /// metallb-system).
        #[arg(long)]
        namespace: Option<String>,
        #[command(flatten)]
        limits: Limits,
    },
    /// Remove a datapath a speaker left behind (with --keep-datapath, or when it was
    /// killed): detach the XDP links pinned under PIN_DIR/links and every metallb_xdp
    /// left attached in this network namespace, remove the multicast MACs of its IPv6
    /// VIPs, the pins and the directory. Touches nothing a running process holds.
    ///
    /// Exit status: 0 when nothing of a left-over datapath remains (also when there
    /// was nothing to do); 1 when something stays (in use, left more recently than
    /// --older-than, or an error), each said with its reason.
    Cleanup {
        /// The speaker's --pin-dir.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Keep a datapath left less than this long ago, which a restarting speaker
        /// may be about to adopt (for a periodic job): a duration such as 10m or 1h.
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        older_than: Option<Duration>,
    },
    /// Show the VIP entries and counters of the pinned datapath (while a speaker runs,
    /// or after one left it in place), and the interfaces the speaker attached to or
    /// left alone, and why (as it recorded them in /run/metallb).
    Inspect {
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Args)]
struct ControllerArgs {
    /// The namespace MetalLB runs in: its objects (pools) are read there, the Lease is
    /// kept there.
    #[arg(long, env = "METALLB_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Serve only services with this spec.loadBalancerClass (default: services without one).
    #[arg(long)]
    lb_class: Option<String>,
    /// This replica's name in the Lease and in Events (default: the host name).
    #[arg(long, env = "METALLB_POD_NAME")]
    pod_name: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:7472")]
    metrics_addr: SocketAddr,
    /// Elect a leader among replicas with a coordination.k8s.io Lease; only the leader
    /// writes. Turn off only when exactly one replica runs.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    leader_elect: bool,
    /// The Lease's name.
    #[arg(long, default_value = "metallb-controller")]
    lease_name: String,
    /// How long a leader's Lease stays valid without renewal (then another takes over).
    /// At least 1s, and more than --renew-deadline.
    #[arg(long, default_value = "15s", value_name = "DURATION", value_parser = positive_duration)]
    lease_duration: Duration,
    /// How long the leader keeps leading while its renewals fail. More than 1.2 x
    /// --retry-period.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = positive_duration)]
    renew_deadline: Duration,
    /// Time between attempts to take or renew the Lease.
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = positive_duration)]
    retry_period: Duration,
    /// Address of the webhooks (HTTPS: admission, and BGPPeer conversion on /convert),
    /// served with --webhook-cert-secret, or with --tls-cert-file and --tls-key-file.
    #[arg(long, default_value = "0.0.0.0:9443")]
    webhook_addr: SocketAddr,
    /// The webhook's serving certificate (PEM), e.g. cert-manager's Secret, mounted;
    /// read again every minute, so that a renewed one is served without a restart.
    #[arg(
        long,
        requires = "tls_key_file",
        conflicts_with = "webhook_cert_secret"
    )]
    tls_cert_file: Option<PathBuf>,
    /// The webhook's private key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// Make the webhook's certificates: a self-signed CA and a serving certificate for
    /// <--webhook-service>.<namespace>.svc, kept in this Secret of the namespace
    /// (MetalLB's is metallb-webhook-cert) and shared by every replica; the CA is
    /// written into the caBundle of --webhook-configuration and of the BGPPeer CRD's
    /// conversion webhook. Rotated before expiry (1-year CA, 90-day certificates).
    #[arg(long, value_name = "SECRET")]
    webhook_cert_secret: Option<String>,
    /// Make this Secret in --namespace, holding a random key under `secretkey`, when
    /// it is missing: the speakers' membership key, mounted into the speaker Pods
    /// (MetalLB's `memberlist` Secret and METALLB_ML_SECRET_NAME). An existing one is
    /// left as it is.
    #[arg(long, env = "METALLB_ML_SECRET_NAME", value_name = "SECRET")]
    ml_secret_name: Option<String>,
    /// The controller's own Deployment in --namespace (deploy/: controller), made the
    /// owner of the --ml-secret-name Secret, as MetalLB does, so that deleting MetalLB
    /// deletes the key too. Without it the Secret has no owner.
    #[arg(long, env = "METALLB_DEPLOYMENT", value_name = "DEPLOYMENT")]
    deployment: Option<String>,
    /// The Service in front of the webhooks (the name the certificate is for).
    #[arg(long, default_value = metallb_user::kubernetes::certs::DEFAULT_SERVICE)]
    webhook_service: String,
    /// The ValidatingWebhookConfiguration whose caBundle --webhook-cert-secret keeps.
    #[arg(long, default_value = metallb_user::kubernetes::certs::WEBHOOK_CONFIGURATION)]
    webhook_configuration: String,
}

#[derive(Args)]
struct Scope {
    /// The namespace MetalLB runs in: its objects must be there.
    #[arg(long, env = "METALLB_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    namespace: String,
}

#[derive(Args)]
struct Limits {
    /// Refuse a configuration file larger than this many bytes (a bound on what a
    /// device or a runaway file can make the process read).
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = DEFAULT_MAX_CONFIG_BYTES,
        value_parser = clap::value_parser!(u64).range(1..=MAX_CONFIG_BYTES_LIMIT)
    )]
    max_config_bytes: u64,
}

#[derive(Args)]
struct NodeArgs {
    /// This node's name in the election (default: the host name). In a DaemonSet, the
    /// downward API's spec.nodeName through NODE_NAME.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Serve only services with this spec.loadBalancerClass (default: services without one).
    #[arg(long)]
    lb_class: Option<String>,
}

#[derive(Args)]
struct SpeakerArgs {
    /// The configuration file (standalone mode). Without it, the speaker runs on the
    /// Kubernetes API (in-cluster, or KUBECONFIG): addresses from the Services' status,
    /// the configuration from the cluster's MetalLB objects.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Kubernetes mode: this speaker's Pod, owner of the ServiceL2Status objects it
    /// writes (the downward API's metadata.name).
    #[arg(long, env = "METALLB_POD_NAME")]
    pod_name: Option<String>,
    /// Kubernetes mode: the label selector of the speaker Pods (MetalLB's
    /// METALLB_ML_LABELS). Without membership the nodes where one is Ready are the
    /// live members of the election; with it, they are the gossip's peers.
    #[arg(
        long,
        alias = "ml-labels",
        env = "METALLB_ML_LABELS",
        default_value = metallb_user::kubernetes::speaker::DEFAULT_SPEAKER_SELECTOR
    )]
    speaker_selector: String,
    /// Attach to this interface (repeatable), whatever the configuration says. Default:
    /// the interfaces the L2Advertisements name, and, when one names none, every up,
    /// non-loopback interface that no exclusion pattern matches (the metallb-excludel2
    /// ConfigMap, or MetalLB's defaults without one: ^veth.*, ^cali.*,
    /// ^kube-ipvs.*, ...).
    #[arg(long = "interface", value_name = "IF")]
    interfaces: Vec<String>,
    /// native falls back to generic (with a warning) where the driver refuses.
    #[arg(long, value_enum, default_value_t = XdpMode::Native)]
    xdp_mode: XdpMode,
    /// What answers ARP and NDP: the XDP program; the userspace datapath (an AF_PACKET
    /// socket per interface, slower; it cannot drop what the kernel answers, so
    /// suppression needs arp_ignore=1 / kube-proxy strictARP); or auto: XDP, and the
    /// userspace datapath where the kernel or driver cannot run XDP, with a logged
    /// reason (a missing capability is an error, never a reason to fall back).
    #[arg(long, value_enum, default_value_t = DatapathKind::Auto)]
    datapath: DatapathKind,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:7472")]
    metrics_addr: SocketAddr,
    /// Directory on bpffs for the pinned maps (and links, with --keep-datapath). Under
    /// /sys/fs/bpf, a bpf filesystem is mounted there if there is none (as under `ip
    /// netns exec`).
    #[arg(long, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// VIP entries per address family (used when the maps are created), 1 to 1048576.
    #[arg(
        long,
        default_value_t = DEFAULT_MAX_VIPS,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_VIPS_LIMIT))
    )]
    max_vips: u32,
    /// One speaker per --pin-dir: when another holds it, wait this long for it to exit
    /// instead of failing at once (0s).
    #[arg(
        long,
        default_value = "0s",
        value_name = "DURATION",
        value_parser = bounded_duration,
        allow_hyphen_values = true
    )]
    pin_dir_wait: Duration,
    /// On exit, leave the XDP program attached and the maps pinned: the next speaker
    /// started with the same --pin-dir takes them over with no gap in answers.
    #[arg(long)]
    keep_datapath: bool,
    /// Time between gratuitous announcements of a VIP this node starts answering, at
    /// least 10ms. A duration as Go and Kubernetes tools write them (1.1s, 1100ms,
    /// 1m30s), or bare seconds (1.1).
    #[arg(
        long,
        default_value = "1.1s",
        value_name = "DURATION",
        value_parser = garp_interval,
        allow_hyphen_values = true
    )]
    garp_interval: Duration,
    /// How long they are repeated (0s: announce once). A duration (5s, 1m) or bare
    /// seconds.
    #[arg(
        long,
        default_value = "5s",
        value_name = "DURATION",
        value_parser = bounded_duration,
        allow_hyphen_values = true
    )]
    garp_duration: Duration,
    /// Gratuitous frames sent per second per interface, at most (one second's worth
    /// may go at once). The first announcement of the VIPs a change makes this node
    /// answer (a failover, a new Service) goes ahead of any backlog, at once up to that
    /// many frames; a start-up with thousands of VIPs is spread out (an IPv4 VIP takes
    /// two frames a round, an IPv6 VIP one).
    #[arg(
        long,
        default_value_t = metallb_user::announce::DEFAULT_RATE,
        value_name = "FRAMES",
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    garp_rate: u32,
    #[command(flatten)]
    frr: FrrPaths,
    /// BGP mode: FRR's daemons run in another container sharing --frr-work-dir (`metallb
    /// frr`, the DaemonSet's frr container): the speaker writes the configuration there
    /// and applies it with frr-reload.py through the sockets there, but neither starts
    /// nor stops FRR.
    #[arg(long)]
    frr_external: bool,
    #[command(flatten)]
    membership: MembershipArgs,
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    limits: Limits,
}

/// Failure detection between the speakers (SWIM gossip over UDP), in both modes.
#[derive(Args)]
struct MembershipArgs {
    /// Turns membership on: the file holding the key every speaker of the cluster
    /// shares (at least 16 bytes; a trailing line break is ignored), or the directory
    /// a Secret is mounted at, holding it as `secretkey` (MetalLB's `memberlist`
    /// Secret at METALLB_ML_SECRET_KEY_PATH). Datagrams not signed with it
    /// (HMAC-SHA256) are refused and logged. Without it, every Node of the file
    /// (standalone) or every node with a Ready speaker Pod (Kubernetes) counts as
    /// alive.
    #[arg(
        long,
        alias = "ml-secret-key-path",
        env = "METALLB_ML_SECRET_KEY_PATH",
        value_name = "FILE|DIR"
    )]
    membership_key_file: Option<PathBuf>,
    /// UDP port of the membership protocol, the same on every node (MetalLB's
    /// memberlist port, METALLB_ML_BIND_PORT).
    #[arg(
        long,
        alias = "ml-bindport",
        env = "METALLB_ML_BIND_PORT",
        default_value_t = metallb_user::membership::DEFAULT_PORT,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    membership_port: u16,
    /// The address the other speakers reach this one at (MetalLB's
    /// METALLB_ML_BIND_ADDR, the Pod's status.podIP). Default: this node's speaker
    /// Pod's IP (Kubernetes mode), this node's InternalIP in the file, or the local
    /// address towards the first --peer.
    #[arg(
        long,
        alias = "ml-bindaddr",
        env = "METALLB_ML_BIND_ADDR",
        value_name = "IP"
    )]
    membership_bind_addr: Option<std::net::IpAddr>,
    /// Another speaker: IP or IP:PORT (repeatable). Default: the InternalIP of every
    /// Node of the file (standalone), the IP of every speaker Pod as they come and go
    /// (Kubernetes; --peer adds to them).
    #[arg(long = "peer", value_name = "ADDR", value_parser = peer_address)]
    peers: Vec<PeerAddress>,
    /// How often each speaker probes another (10ms to 1m). With --suspicion-timeout
    /// it sets how soon a dead speaker's VIPs move: after --probe-interval +
    /// --suspicion-timeout at the soonest, about --probe-interval x nodes +
    /// --suspicion-timeout at the latest.
    #[arg(long, default_value = "30ms", value_name = "DURATION", value_parser = probe_interval)]
    probe_interval: Duration,
    /// How long a suspected speaker has to refute it before it is declared down and
    /// its VIPs move (10ms to 10m, more than --probe-interval).
    #[arg(long, default_value = "150ms", value_name = "DURATION", value_parser = suspicion_timeout)]
    suspicion_timeout: Duration,
    /// A pause of this speaker (SIGSTOP, a stalled VM, a saturated CPU) that must
    /// cause neither fencing nor a takeover. Must be below --fence-deadline.
    #[arg(long, default_value = "100ms", value_name = "DURATION", value_parser = duration)]
    tolerated_pause: Duration,
    /// With peers, the XDP program stops answering (fences) when this speaker has not
    /// renewed its heartbeat for this long. Must be below the peers' takeover
    /// (--probe-interval + --suspicion-timeout): a hung speaker stops answering
    /// before a peer starts. A node without peers never fences.
    #[arg(long, default_value = "125ms", value_name = "DURATION", value_parser = duration)]
    fence_deadline: Duration,
    /// On a planned restart (--keep-datapath), the peers keep this node's VIPs where
    /// they are, and its datapath keeps answering, for this long; a speaker that adopts
    /// the datapath within it renews the heartbeat, otherwise the datapath fences and
    /// the peers take over. From --fence-deadline to 5m.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = duration)]
    restart_grace: Duration,
}

/// `--peer`: an address, with the membership port unless it names one.
#[derive(Clone, Debug)]
struct PeerAddress {
    ip: std::net::IpAddr,
    port: Option<u16>,
}

fn peer_address(text: &str) -> Result<PeerAddress, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(PeerAddress {
            ip: addr.ip(),
            port: Some(addr.port()),
        });
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| PeerAddress { ip, port: None })
        .map_err(|_| format!("{text:?} is not an IP address or IP:PORT"))
}

impl MembershipArgs {
    fn options(self) -> anyhow::Result<Option<metallb_user::speaker::MembershipOptions>> {
        let Some(key_file) = self.membership_key_file else {
            anyhow::ensure!(
                self.peers.is_empty(),
                "--peer needs --membership-key-file: membership traffic is always authenticated"
            );
            return Ok(None);
        };
        anyhow::ensure!(
            !self.probe_interval.is_zero() && self.probe_interval < self.suspicion_timeout,
            "--probe-interval {} must be above zero and below --suspicion-timeout {}",
            humantime::format_duration(self.probe_interval),
            humantime::format_duration(self.suspicion_timeout)
        );
        let timings = metallb_user::membership::Timings {
            probe_interval: self.probe_interval,
            suspicion_timeout: self.suspicion_timeout,
            ..Default::default()
        };
        let fence = metallb_user::membership::FenceTimings {
            tolerated_pause: self.tolerated_pause,
            deadline: self.fence_deadline,
            restart_grace: self.restart_grace,
        };
        fence.check(&timings).map_err(anyhow::Error::msg)?;
        let key = metallb_user::membership::SharedKey::from_file(&key_file)?;
        let port = self.membership_port;
        Ok(Some(metallb_user::speaker::MembershipOptions {
            key,
            port,
            advertise: self.membership_bind_addr,
            peers: self
                .peers
                .iter()
                .map(|p| SocketAddr::new(p.ip, p.port.unwrap_or(port)))
                .collect(),
            timings,
            fence,
        }))
    }
}

fn node_name(arg: Option<String>) -> String {
    arg.unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    })
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only on a terminal: logs redirected to a file stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Parses a duration as Go's `time.ParseDuration` (MetalLB's flags, kubectl) writes
/// them: numbers with optional fractions, each with a unit, `1.5h2m3.5s`, `1100ms`,
/// `0s`; and bare seconds (`5`, `1.1`), as these flags took before. humantime reads
/// the units (it also knows longer spellings, such as `5sec`, and days).
fn duration(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str =
        "expected a duration such as 5s, 1100ms, 1.1s, 1m30s, or seconds such as 1.1";
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!("a duration cannot be negative; {EXPECTED}"));
    }
    let bare_seconds = !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.');
    let parsed = if bare_seconds {
        humantime::parse_duration(&format!("{text}s"))
    } else {
        humantime::parse_duration(text)
    };
    parsed.map_err(|error| format!("{error}; {EXPECTED}"))
}

/// Announcements are sent back to back for the whole duration: a floor keeps a typo
/// (`1ns`) from flooding the link.
const MIN_GARP_INTERVAL: Duration = Duration::from_millis(10);
/// The longest any duration flag takes: far beyond a sensible value, and far from
/// where adding it to a clock reading could overflow.
const MAX_DURATION_FLAG: Duration = Duration::from_secs(24 * 3600);

/// [`duration`], at most [`MAX_DURATION_FLAG`].
fn bounded_duration(text: &str) -> Result<Duration, String> {
    let parsed = duration(text)?;
    if parsed > MAX_DURATION_FLAG {
        return Err("more than 24h is not a sensible value".into());
    }
    Ok(parsed)
}

/// [`bounded_duration`], and not zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let parsed = bounded_duration(text)?;
    if parsed.is_zero() {
        return Err("must be more than 0s".into());
    }
    Ok(parsed)
}

/// Membership timings below this would flood the link with probes (one datagram each)
/// and outrun the scheduler of a loaded node.
const MIN_MEMBERSHIP_TIMING: Duration = Duration::from_millis(10);

/// [`duration`], from [`MIN_MEMBERSHIP_TIMING`] (`too_short` says why) to `max`, past
/// which a dead speaker's VIPs would stay silent that long.
fn membership_timing(text: &str, too_short: &str, max: Duration) -> Result<Duration, String> {
    let parsed = duration(text)?;
    let shown = |d| humantime::format_duration(d).to_string();
    if parsed < MIN_MEMBERSHIP_TIMING {
        return Err(format!(
            "less than {} {too_short}",
            shown(MIN_MEMBERSHIP_TIMING)
        ));
    }
    if parsed > max {
        return Err(format!(
            "more than {} would leave a dead speaker's VIPs unanswered that long",
            shown(max)
        ));
    }
    Ok(parsed)
}

fn probe_interval(text: &str) -> Result<Duration, String> {
    membership_timing(
        text,
        "would flood the link with probes",
        Duration::from_secs(60),
    )
}

fn suspicion_timeout(text: &str) -> Result<Duration, String> {
    membership_timing(
        text,
        "would declare speakers down at any scheduling delay",
        Duration::from_secs(600),
    )
}

impl ControllerArgs {
    /// The Lease timings hold together as client-go requires them: the Lease outlives
    /// the renew deadline, which outlasts the retries (with client-go's jitter of 1.2),
    /// and the Lease, which holds whole seconds, lasts at least one.
    fn check_leader_timings(&self) -> Result<(), String> {
        let shown = |d| humantime::format_duration(d).to_string();
        let (lease, renew, retry) = (self.lease_duration, self.renew_deadline, self.retry_period);
        if lease < Duration::from_secs(1) {
            return Err(format!(
                "--lease-duration {} must be at least 1s: the Lease holds whole seconds",
                shown(lease)
            ));
        }
        if lease <= renew {
            return Err(format!(
                "--lease-duration {} must be more than --renew-deadline {}",
                shown(lease),
                shown(renew)
            ));
        }
        if renew.as_secs_f64() <= retry.as_secs_f64() * 1.2 {
            return Err(format!(
                "--renew-deadline {} must be more than 1.2 x --retry-period {} (client-go's jitter)",
                shown(renew),
                shown(retry)
            ));
        }
        Ok(())
    }
}

fn garp_interval(text: &str) -> Result<Duration, String> {
    let interval = bounded_duration(text)?;
    if interval < MIN_GARP_INTERVAL {
        return Err(format!(
            "less than {} would flood the link; to announce only once, use --garp-duration 0s",
            humantime::format_duration(MIN_GARP_INTERVAL)
        ));
    }
    Ok(interval)
}

/// mimalloc instead of glibc's malloc. At 100,000 VIPs a plan allocates hundreds of MiB
/// for a moment; glibc keeps most of it once freed (the pages the long-lived maps
/// allocated meanwhile pin), so that the speaker stayed at 270-340 MiB for about
/// 90 MiB of live data. mimalloc gives freed pages back to the kernel (README, bench
/// scale).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's options by number (libmimalloc-sys names only some of them):
/// whether an arena is committed at once, and how long freed pages wait before they go
/// back to the kernel (ms). Checked against their defaults by a test.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Freed pages go back to the kernel at once, and arenas are committed as they are
/// used: with mimalloc's defaults the speaker kept 2 to 3 times its live data at
/// 1,000 VIPs (the bench measured 48 MiB steady against 22 MiB with glibc).
fn tune_allocator() {
    // SAFETY: mi_option_set only stores an option's value.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

/// [`tune_allocator`] as an ELF constructor: it runs before Rust's runtime, whose first
/// allocation makes mimalloc's first arena (set in `main`, the option would come too
/// late for it).
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = {
    extern "C" fn at_load() {
        tune_allocator();
    }
    at_load
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Controller(args) = &cli.command
        && let Err(message) = args.check_leader_timings()
    {
        use clap::CommandFactory as _;
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit();
    }
    init_logging(cli.log_format, &cli.log_level);
    match execute(cli.command) {
        Ok(code) => code,
        Err(error) => {
            // Paths and messages may hold what a file or the command line put there.
            eprintln!("error: {}", printable(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate {
            file: path,
            scope,
            limits,
        } => {
            let shown = shown_path(&path);
            let text = read_config(&path, limits.max_config_bytes)?;
            let parsed = match file::parse(&text) {
                Ok(parsed) => parsed,
                Err(errors) => {
                    print!("{}", parse_report(&shown, &errors));
                    return Ok(ExitCode::FAILURE);
                }
            };
            let validation = validate(
                &parsed,
                &ValidateOptions {
                    namespace: scope.namespace,
                },
            );
            let (report, valid) = validation_report(&shown, &validation);
            print!("{report}");
            Ok(if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Plan {
            config,
            output,
            interfaces,
            scope,
            node,
            limits,
        } => {
            let cfg = match load_config(&config, &scope.namespace, limits.max_config_bytes) {
                Ok(cfg) => cfg,
                Err(LoadError::Invalid { path, issues }) => {
                    // Printed, not logged: the reason must show with logs off.
                    for issue in &issues {
                        eprintln!("error: {issue}");
                    }
                    anyhow::bail!(
                        "{path} is not a valid configuration: {} error(s)",
                        issues.len()
                    );
                }
                Err(error) => return Err(error.into()),
            };
            let node_name = node_name(node.node_name);
            let host = iface::list()?;
            let choice = interfaces_to_attach(&cfg, &node_name, &interfaces, &host);
            let options = PlanOptions {
                node_name: node_name.clone(),
                allocator: AllocatorOptions {
                    load_balancer_class: node.lb_class,
                },
                named_despite_exclusion: choice.report.named_despite_exclusion(),
                ..PlanOptions::default()
            };
            let plan = plan(&cfg, &options, &choice.attach);
            print!("{}", plan_report(&plan, &node_name, &choice.report, output));
            let failed = failed_services(&plan);
            if failed > 0 {
                eprintln!(
                    "{failed} service(s) cannot get what they ask for (allocation failed): see the table"
                );
                return Ok(ExitCode::from(PLAN_ALLOCATION_FAILED));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Speaker(args) => {
            let source = match args.config {
                Some(path) => SourceOptions::File {
                    path,
                    max_bytes: args.limits.max_config_bytes,
                },
                None => SourceOptions::Kubernetes(KubernetesOptions {
                    pod_name: args.pod_name,
                    speaker_selector: args.speaker_selector,
                }),
            };
            let node_name = node_name(args.node.node_name);
            let options = SpeakerOptions {
                frr: args.frr.options(node_name.clone(), args.frr_external),
                source,
                interfaces: args.interfaces,
                xdp_mode: args.xdp_mode,
                datapath_kind: args.datapath,
                metrics_addr: args.metrics_addr,
                node_name,
                namespace: args.scope.namespace,
                load_balancer_class: args.node.lb_class,
                datapath: DatapathOptions {
                    pin_dir: args.pin_dir,
                    max_vips: args.max_vips,
                },
                pin_dir_wait: args.pin_dir_wait,
                keep_datapath: args.keep_datapath,
                garp_interval: args.garp_interval,
                garp_duration: args.garp_duration,
                garp_rate: args.garp_rate,
                membership: args.membership.options()?,
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(run(options))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Controller(args) => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(controller(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Frr(paths) => {
            let options = paths.options(String::new(), false);
            let mut instance = metallb_user::bgp::frr_daemon::FrrInstance::start_sidecar(&options)
                .context("starting FRR")?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let exited = runtime.block_on(async {
                let stop = shutdown_signal();
                tokio::pin!(stop);
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        () = &mut stop => return None,
                        _ = tick.tick() => if let Some(exited) = instance.exited() {
                            return Some(exited);
                        },
                    }
                }
            });
            // The daemons stop here (SIGTERM, then SIGKILL what stays).
            drop(instance);
            match exited {
                Some((daemon, status)) => anyhow::bail!("FRR's {daemon} exited ({status})"),
                None => Ok(ExitCode::SUCCESS),
            }
        }
        Command::MigrateConfig {
            file: path,
            namespace,
            limits,
        } => {
            let text = read_config(&path, limits.max_config_bytes)?;
            let migration = legacy::migrate(&text, &legacy::MigrateOptions { namespace });
            // Printed, not logged: they must show with logs off.
            for warning in &migration.warnings {
                eprintln!("warning: {warning}");
            }
            for error in &migration.errors {
                eprintln!("error: {error}");
            }
            let Some(objects) = migration.objects else {
                anyhow::bail!(
                    "{} cannot be converted: {} error(s)",
                    shown_path(&path),
                    migration.errors.len()
                );
            };
            print!("{}", objects.to_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Crds => {
            print!("{}", crd::definitions_yaml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Rbac { namespace } => {
            print!("{}", metallb_user::kubernetes::rbac::manifests(&namespace)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cleanup {
            pin_dir,
            older_than,
        } => {
            let report = cleanup(&CleanupOptions {
                pin_dir: pin_dir.clone(),
                older_than,
            });
            for line in &report.removed {
                println!("{}", printable(line));
            }
            if report.removed.is_empty() && report.nothing_left() {
                println!(
                    "nothing to clean up: no datapath pinned at {}, and no {PROGRAM_NAME} attached in this network namespace",
                    printable(&pin_dir.display().to_string())
                );
            }
            for line in &report.kept {
                eprintln!("kept: {}", printable(line));
            }
            for line in &report.errors {
                eprintln!("error: {}", printable(line));
            }
            // The speaker's record of its interfaces describes the datapath just removed.
            if report.nothing_left()
                && let Err(error) = interface_report::remove(&pin_dir)
            {
                eprintln!("error: {}", printable(&error.to_string()));
                return Ok(ExitCode::FAILURE);
            }
            Ok(if report.nothing_left() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Inspect { pin_dir, output } => {
            let maps = Maps::open_pinned(&pin_dir).with_context(|| {
                format!(
                    "no datapath pinned at {} (is a speaker running?)",
                    pin_dir.display()
                )
            })?;
            let name = |ifindex: u32| {
                nix::net::if_::if_indextoname(ifindex)
                    .ok()
                    .and_then(|n| n.into_string().ok())
                    .unwrap_or_else(|| "?".into())
            };
            let vips = maps.vips()?;
            let recorded = interface_report::read(&pin_dir)?;
            let record_path = interface_report::path_for(&pin_dir).display().to_string();
            let report = inspect_report(
                &pin_dir.display().to_string(),
                &maps.ctl(),
                &vips,
                &maps.frame_counts(&vips)?,
                name,
                &RecordedInterfaces {
                    path: &record_path,
                    report: recorded.as_ref(),
                },
                output,
            );
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    use metallb_user::{
        kubernetes::{AbortOnDrop, certs, controller, leader::LeaseConfig, webhook},
        metrics,
    };
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes API to talk to (in-cluster configuration, or KUBECONFIG)")?;
    let identity = node_name(args.pod_name);
    let shared = std::sync::Arc::new(metrics::Shared::default());
    metrics::serve_role(args.metrics_addr, shared.clone(), metrics::Role::Controller).await?;
    let options = ValidateOptions {
        namespace: args.namespace.clone(),
    };
    let tls = match (
        args.tls_cert_file,
        args.tls_key_file,
        args.webhook_cert_secret,
    ) {
        (Some(cert), Some(key), _) => Some(webhook::TlsSource::files(cert, key)),
        (_, _, Some(secret)) => Some(webhook::TlsSource::Bootstrap(certs::Bootstrap {
            service: args.webhook_service,
            webhook_configuration: args.webhook_configuration,
            ..certs::Bootstrap::new(&args.namespace, &secret)
        })),
        _ => None,
    };
    let _webhook = match tls {
        Some(tls) => {
            let client = client.clone();
            let addr = args.webhook_addr;
            Some(AbortOnDrop(tokio::spawn(async move {
                if let Err(error) = webhook::run(client, addr, tls, options).await {
                    tracing::error!("the webhooks stopped: {error:#}");
                }
            })))
        }
        None => {
            tracing::info!(
                "neither --webhook-cert-secret nor --tls-cert-file/--tls-key-file: the webhooks are not served"
            );
            None
        }
    };
    // The speakers' key, made once; retried while the API refuses.
    let _memberlist_secret = args.ml_secret_name.map(|name| {
        let client = client.clone();
        let namespace = args.namespace.clone();
        let owner = args.deployment.clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                match metallb_user::kubernetes::memberlist_secret::ensure(
                    &client,
                    &namespace,
                    &name,
                    owner.as_deref(),
                )
                .await
                {
                    Ok(_) => return,
                    Err(error) => {
                        tracing::error!("{error}; retrying in 10s");
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                }
            }
        }))
    });
    let election = args.leader_elect.then(|| LeaseConfig {
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline,
        retry_period: args.retry_period,
        ..LeaseConfig::with_defaults(&args.namespace, &args.lease_name, &identity)
    });
    let options = controller::ControllerOptions {
        namespace: args.namespace,
        allocator: AllocatorOptions {
            load_balancer_class: args.lb_class,
        },
        instance: identity,
        metrics: Some(shared),
    };
    controller::run(client, options, election, shutdown_signal()).await;
    Ok(())
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value for a container's environment variable, as the kubelet would set it.
    fn env_value(var: &serde_json::Value) -> String {
        if let Some(value) = var["value"].as_str() {
            return value.to_owned();
        }
        match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("spec.nodeName") => "node-a".into(),
            Some("metadata.namespace") => "metallb-system".into(),
            Some("metadata.name") => "pod-0".into(),
            Some("status.podIP") => "192.0.2.11".into(),
            other => panic!("no sample value for {other:?} ({var})"),
        }
    }

    /// The container's args with `$(VAR)` replaced as the kubelet does; every reference
    /// must name a variable of the container (the kubelet leaves others as written).
    fn expanded_args(container: &serde_json::Value) -> Vec<String> {
        let env: BTreeMap<String, String> = container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|var| (var["name"].as_str().unwrap().to_owned(), env_value(var)))
            .collect();
        let mut args = vec!["metallb".to_owned()];
        for arg in container["args"].as_array().into_iter().flatten() {
            let mut arg = arg.as_str().unwrap().to_owned();
            while let Some(start) = arg.find("$(") {
                let end = start + arg[start..].find(')').unwrap();
                let name = &arg[start + 2..end];
                let value = env.get(name).unwrap_or_else(|| {
                    panic!("$({name}) in {arg:?} is no variable of the container")
                });
                arg.replace_range(start..=end, value);
            }
            args.push(arg);
        }
        args
    }

    use std::collections::BTreeMap;

    #[test]
    fn the_deploy_manifests_run_metallb_with_arguments_it_accepts() {
        let deploy = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy"));
        let mut seen = Vec::new();
        let mut frr_work_dirs = Vec::new();
        for object in metallb_testkit::kustomize::render(deploy) {
            let workload = format!(
                "{} {}",
                object["kind"].as_str().unwrap(),
                object["metadata"]["name"].as_str().unwrap()
            );
            let containers = object["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for container in containers {
                assert!(
                    container["command"].is_null(),
                    "{workload}: the image's entrypoint is metallb"
                );
                let args = expanded_args(&container);
                match Cli::try_parse_from(&args) {
                    Ok(cli) => match (cli.command, workload.as_str()) {
                        (Command::Controller(controller), "Deployment controller") => {
                            assert_eq!(controller.namespace, "metallb-system");
                            assert_eq!(controller.metrics_addr, "0.0.0.0:7472".parse().unwrap());
                            assert!(controller.leader_elect, "two replicas need the election");
                        }
                        (Command::Speaker(speaker), "DaemonSet speaker") => {
                            assert_eq!(speaker.node.node_name.as_deref(), Some("node-a"));
                            assert!(speaker.keep_datapath);
                            assert_eq!(speaker.config, None, "Kubernetes mode: no --config");
                            assert!(speaker.frr_external, "FRR is the frr container's");
                            frr_work_dirs.push(speaker.frr.frr_work_dir);
                        }
                        (Command::Frr(frr), "DaemonSet speaker") => {
                            frr_work_dirs.push(frr.frr_work_dir);
                        }
                        (_, workload) => panic!("{workload} runs an unexpected command: {args:?}"),
                    },
                    Err(error) => panic!("{workload}: metallb refuses {args:?}:\n{error}"),
                }
                seen.push(workload.clone());
            }
        }
        assert_eq!(
            seen,
            [
                "Deployment controller",
                "DaemonSet speaker",
                "DaemonSet speaker"
            ]
        );
        // The speaker and FRR's container use one work directory (a shared volume).
        assert_eq!(frr_work_dirs.len(), 2);
        assert_eq!(frr_work_dirs[0], frr_work_dirs[1]);
    }

    #[test]
    fn durations_are_read_as_go_writes_them_and_as_bare_seconds() {
        let ms = Duration::from_millis;
        let cases: &[(&str, Result<Duration, &str>)] = &[
            ("5s", Ok(ms(5000))),
            ("1100ms", Ok(ms(1100))),
            ("1.1s", Ok(ms(1100))),
            ("0s", Ok(Duration::ZERO)),
            ("1m30s", Ok(ms(90_000))),
            ("1.5h2m3.5s", Ok(ms(5_400_000 + 120_000 + 3_500))),
            ("250us", Ok(Duration::from_micros(250))),
            ("250µs", Ok(Duration::from_micros(250))),
            ("10ns", Ok(Duration::from_nanos(10))),
            ("2h", Ok(ms(7_200_000))),
            // Bare seconds, as the flags took before.
            ("5", Ok(ms(5000))),
            ("1.1", Ok(ms(1100))),
            ("0", Ok(Duration::ZERO)),
            (" 5s ", Ok(ms(5000))),
            (
                "",
                Err(
                    "value was empty; expected a duration such as 5s, 1100ms, 1.1s, 1m30s, or seconds such as 1.1",
                ),
            ),
            (
                "-1s",
                Err(
                    "a duration cannot be negative; expected a duration such as 5s, 1100ms, 1.1s, 1m30s, or seconds such as 1.1",
                ),
            ),
            (
                "5x",
                Err(
                    "unknown time unit \"x\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations); expected a duration such as 5s, 1100ms, 1.1s, 1m30s, or seconds such as 1.1",
                ),
            ),
            (
                "1.1.1",
                Err(
                    "invalid character at 3; expected a duration such as 5s, 1100ms, 1.1s, 1m30s, or seconds such as 1.1",
                ),
            ),
            (
                "soon",
                Err(
                    "expected number at 0; expected a duration such as 5s, 1100ms, 1.1s, 1m30s, or seconds such as 1.1",
                ),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                duration(text),
                want.map_err(str::to_owned),
                "duration({text:?})"
            );
        }
    }

    #[test]
    fn the_webhook_certificate_comes_from_files_or_from_the_bootstrap_not_both() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from([&["metallb", "controller"], args].concat()).map(|cli| {
                let Command::Controller(args) = cli.command else {
                    unreachable!()
                };
                (
                    args.webhook_cert_secret,
                    args.tls_cert_file,
                    args.webhook_service,
                    args.webhook_configuration,
                )
            })
        };
        assert_eq!(
            parse(&["--webhook-cert-secret", "metallb-webhook-cert"]).unwrap(),
            (
                Some("metallb-webhook-cert".into()),
                None,
                "metallb-webhook-service".into(),
                "metallb-webhook-configuration".into()
            )
        );
        assert_eq!(
            parse(&["--tls-cert-file", "c", "--tls-key-file", "k"])
                .unwrap()
                .1,
            Some(PathBuf::from("c"))
        );
        let both = parse(&[
            "--webhook-cert-secret",
            "s",
            "--tls-cert-file",
            "c",
            "--tls-key-file",
            "k",
        ])
        .unwrap_err();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn a_garp_interval_below_the_floor_is_refused() {
        assert_eq!(garp_interval("10ms"), Ok(MIN_GARP_INTERVAL));
        assert_eq!(garp_interval("1.1"), Ok(Duration::from_millis(1100)));
        assert_eq!(
            garp_interval("0s"),
            Err("less than 10ms would flood the link; to announce only once, use --garp-duration 0s".into())
        );
        assert!(garp_interval("1x").is_err());
    }

    /// The option numbers are mimalloc v3's (beside options libmimalloc-sys names), and
    /// the constructor set them before this test's first allocation.
    #[test]
    fn the_allocator_options_are_those_meant() {
        assert_eq!(
            MI_OPTION_ARENA_EAGER_COMMIT,
            libmimalloc_sys::mi_option_large_os_pages - 2
        );
        assert_eq!(
            MI_OPTION_PURGE_DELAY,
            libmimalloc_sys::mi_option_use_numa_nodes - 1
        );
        // SAFETY: mi_option_get only reads an option's value.
        unsafe {
            assert_eq!(
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
                0
            );
            assert_eq!(libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY), 0);
            // Its neighbour keeps its default (purge by decommitting).
            assert_eq!(
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT + 1),
                1
            );
        }
    }
}
