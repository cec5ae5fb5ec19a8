//! The speaker: keeps this node's datapath equal to its plan. Source -> pure core
//! (`plan`) -> datapath (maps, attachments) and announcer (gratuitous ARP/NA), with
//! metrics on the side. One loop for both sources, so the modes cannot drift: a file
//! (standalone mode: followed on changes and SIGHUP; this module) or the Kubernetes API
//! (`kubernetes::speaker`). A source hands over complete [`Snapshot`]s.
//!
//! An invalid configuration is reported and the last good one keeps serving. Changes
//! are applied as a diff: addresses that stay are answered throughout.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    net::{IpAddr, SocketAddr},
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use metallb_common::VipAction;
use notify::Watcher as _;
use sha2::Digest as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::{debug, error, info, warn};

use crate::{
    allocator::{
        Allocation, AllocatorOptions, Decision, ServiceKey, has_status_address, status_with,
    },
    announce::{Announcer, Pacing},
    config::{Config, Issue, Service, ValidateOptions, file},
    conflicts::{ConflictEvent, ConflictWatch, answered_claims},
    datapath::{
        Datapath, DatapathKind, DatapathOptions, FenceState, InterfaceChange, SyncReport, XdpMode,
        iface,
        links::{LinkEvent, LinkEvents},
        maps::{CounterView, VipConfig, VipKey},
    },
    election::{Election, ElectionContext, Interfaces},
    fencing::Heartbeat,
    interface_report,
    kubernetes::lifecycle::{self, StopAction, StopDecision},
    membership::{
        FenceTimings, SharedKey, Timings,
        peers::{self, SpeakerAddress},
        udp::{self as membership_udp, Live},
    },
    metrics::{self, Shared},
    plan::{
        AddressSource, Changes, InterfaceChoice, Moved, PlanOptions, Reelection, Replan, Role,
        ServicePlan, Standing, interfaces_to_attach, plan_keeping_releasing, vip_delta,
    },
    printable::printable,
    thread_clock::ThreadClock,
};

/// Where the speaker's configuration comes from.
#[derive(Clone, Debug)]
pub enum SourceOptions {
    /// A YAML file (standalone mode), followed on changes and SIGHUP.
    File {
        path: PathBuf,
        /// The largest configuration file read (`--max-config-bytes`).
        max_bytes: u64,
    },
    /// The Kubernetes API (in-cluster, or KUBECONFIG).
    Kubernetes(crate::kubernetes::speaker::KubernetesOptions),
}

/// One complete input of the pure core, from either source.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub config: Config,
    pub addresses: AddressSource,
    pub election: ElectionContext,
    /// Kubernetes mode: the speaker Pods, the peers of the membership gossip
    /// (standalone mode: `None`, the peers are `--peer` or the file's Nodes).
    pub speakers: Option<Vec<SpeakerAddress>>,
    /// What the source says changed since its last snapshot.
    pub read: SourceRead,
}

/// Which read of its source a snapshot is, and what the source says changed in its
/// Services since the read before (standalone mode: from the file's documents, see
/// [`file::Documents`]); the speaker gives that to the replan ([`Standing::replan`])
/// when the last plan was made of that read.
#[derive(Clone, Debug, Default)]
pub struct SourceRead {
    /// From 1; 0: not numbered (then nothing is said).
    pub number: u64,
    /// Since read N: the Services that changed.
    pub changes: Option<(u64, Changes)>,
}

/// What a source hands the speaker.
#[derive(Clone, Debug)]
pub enum Update {
    /// Boxed: a snapshot is large, `Stale` nothing.
    Apply(Box<Snapshot>),
    /// No good configuration could be had: the last good one keeps serving.
    Stale,
}

/// The services this node announces now, and on which interfaces (empty: every
/// interface of the datapath), as the Kubernetes source reports them
/// (ServiceL2Status, `nodeAssigned` Events).
pub type Announced = BTreeMap<ServiceKey, Vec<String>>;

#[derive(Clone, Debug)]
pub struct SpeakerOptions {
    pub source: SourceOptions,
    /// Interfaces named on the command line (empty: those the L2Advertisements select).
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// XDP, userspace, or XDP with the userspace datapath where XDP is unsupported.
    pub datapath_kind: DatapathKind,
    pub metrics_addr: SocketAddr,
    pub node_name: String,
    pub namespace: String,
    pub load_balancer_class: Option<String>,
    pub datapath: DatapathOptions,
    /// How long to wait for another agent to let go of the pin directory (zero: fail
    /// at once, naming it).
    pub pin_dir_wait: Duration,
    /// On exit, leave the program attached and the maps pinned for the next agent.
    pub keep_datapath: bool,
    pub garp_interval: Duration,
    pub garp_duration: Duration,
    /// Gratuitous frames per second per interface (`--garp-rate`).
    pub garp_rate: u32,
    /// The live nodes of the election come from gossip between the speakers
    /// (`membership`) instead of every node of the file (standalone mode) or the
    /// Ready speaker Pods (Kubernetes mode).
    pub membership: Option<MembershipOptions>,
    /// BGP mode: this speaker's FRR instance.
    pub frr: crate::bgp::frr_daemon::FrrOptions,
}

/// The speakers' gossip.
#[derive(Clone, Debug)]
pub struct MembershipOptions {
    pub key: SharedKey,
    /// UDP port, the same on every node (`--membership-port`).
    pub port: u16,
    /// The address the other speakers reach this one at (`--membership-bind-addr`,
    /// MetalLB's METALLB_ML_BIND_ADDR, the Pod's status.podIP). `None`: this node's
    /// speaker Pod's IP (Kubernetes mode), this node's InternalIP in the file, or the
    /// local address towards the first `--peer`.
    pub advertise: Option<IpAddr>,
    /// Where other speakers listen (`--peer`). Standalone mode, empty: the InternalIP
    /// of every Node of the file. Kubernetes mode: added to the speaker Pods.
    pub peers: Vec<SocketAddr>,
    pub timings: Timings,
    /// The datapath's self-fencing (only with peers: a single node never fences).
    pub fence: FenceTimings,
}

/// A speaker with peers that has heard from none yet applies no configuration for this
/// long (a datapath it adopted keeps answering as it did), so that a restarted speaker
/// does not claim every VIP before it hears the cluster; past it, the peers are taken
/// as gone (a whole cluster restarting one node at a time).
const JOIN_GRACE: Duration = Duration::from_secs(2);

/// How often the counters the metrics show are read from the kernel.
const METRICS_REFRESH: Duration = Duration::from_secs(1);
/// Editors write a file in several steps: wait for the last one.
const SETTLE: Duration = Duration::from_millis(100);

/// What a configuration file may hold unless `--max-config-bytes` says otherwise: far
/// more than a real configuration, and a bound on what a device or a runaway file can
/// make the process read.
pub const DEFAULT_MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
/// The most `--max-config-bytes` may allow: what is read is held in memory, parsed
/// and kept as text.
pub const MAX_CONFIG_BYTES_LIMIT: u64 = 1024 * 1024 * 1024;

/// The path that means standard input (`metallb validate -`, `metallb plan --config -`).
pub const STDIN_PATH: &str = "-";

/// Why a configuration file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error(
        "reading {path}: it is {kind}, not a regular file (to read from a pipe, give `-` and pipe it into standard input)"
    )]
    NotAFile { path: String, kind: &'static str },
    #[error(
        "reading {path}: larger than {limit} bytes, the limit for a configuration (raise it with --max-config-bytes)"
    )]
    TooLarge { path: String, limit: u64 },
    #[error("reading {path}: not UTF-8 text (invalid byte at line {line} column {column})")]
    NotUtf8 {
        path: String,
        line: usize,
        column: usize,
    },
}

/// Why no configuration came out of a file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path} is not a valid configuration: {} error(s)", issues.len())]
    Invalid { path: String, issues: Vec<Issue> },
}

/// How `path` is named in messages: escaped, and `-` as standard input.
pub fn shown_path(path: &Path) -> String {
    if path == Path::new(STDIN_PATH) {
        "standard input".into()
    } else {
        printable(&path.display().to_string()).into_owned()
    }
}

/// Reads a configuration file, or standard input for `-`, of at most `max_bytes`.
/// Only a regular file is read: a FIFO, a device or a directory is refused by its type,
/// checked on the opened file. The file is opened non-blocking, so that a FIFO with no
/// writer cannot hold the caller at `open`.
pub fn read_config(path: &Path, max_bytes: u64) -> Result<String, ReadError> {
    let shown = shown_path(path);
    let io_error = |error| ReadError::Io {
        path: shown.clone(),
        error,
    };
    let bytes = if path == Path::new(STDIN_PATH) {
        read_at_most(std::io::stdin().lock(), max_bytes, 0).map_err(io_error)?
    } else {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(io_error)?;
        let metadata = file.metadata().map_err(io_error)?;
        if !metadata.file_type().is_file() {
            return Err(ReadError::NotAFile {
                path: shown,
                kind: file_kind(metadata.file_type()),
            });
        }
        if metadata.len() > max_bytes {
            None
        } else {
            read_at_most(file, max_bytes, metadata.len()).map_err(io_error)?
        }
    };
    let Some(bytes) = bytes else {
        return Err(ReadError::TooLarge {
            path: shown,
            limit: max_bytes,
        });
    };
    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        ReadError::NotUtf8 {
            path: shown,
            line: valid.iter().filter(|b| **b == b'\n').count() + 1,
            column: String::from_utf8_lossy(&valid[line_start..])
                .chars()
                .count()
                + 1,
        }
    })
}

/// Everything `reader` holds, or `None` when that is more than `max_bytes`. `expected`:
/// the size it probably has (the buffer is made that large at once, not doubled up
/// to twice the size of a large file).
fn read_at_most(
    reader: impl Read,
    max_bytes: u64,
    expected: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    // One more byte: read_to_end sees the end without growing the buffer.
    let capacity = usize::try_from(expected.min(max_bytes).saturating_add(1)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    reader
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max_bytes).then_some(bytes))
}

fn file_kind(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "of an unknown type"
    }
}

/// Reads, parses and validates the configuration file. Warnings are logged; errors
/// are returned, for the caller to print or log.
pub fn load_config(path: &Path, namespace: &str, max_bytes: u64) -> Result<Config, LoadError> {
    let text = read_config(path, max_bytes)?;
    check_config(text, path, namespace, None, false)
        .map(|checked| checked.config)
        .map_err(|issues| LoadError::Invalid {
            path: shown_path(path),
            issues,
        })
}

/// Parses and validates `text`, read from `path`: the configuration, or every error.
/// Warnings are logged. The text goes once parsed, and the parsed objects move into
/// the configuration: at 100,000 Services, each copy would be 21 MiB and 150 MiB more.
/// With `before`, what the last valid read kept, only the documents that changed since
/// are parsed when that gives the whole read's result ([`file::check`]); `keep`: keep
/// what the next read needs.
fn check_config(
    text: String,
    path: &Path,
    namespace: &str,
    before: Option<&file::Kept>,
    keep: bool,
) -> Result<Checked, Vec<Issue>> {
    let options = ValidateOptions {
        namespace: namespace.into(),
    };
    let check = file::check(text, &options, before, keep);
    for issue in &check.warnings {
        warn!(file = %shown_path(path), "{issue}");
    }
    let (changes, kept, parsed) = (check.changes, check.kept, check.parsed);
    check.outcome.map(|config| Checked {
        config,
        kept,
        changes,
        parsed,
    })
}

/// Runs `work`, which blocks (a file of 100,000 Services takes seconds to read and
/// check), with the runtime told: on the multi-threaded runtime the worker's other
/// duties, the timers and I/O among them (the metrics refresh, scrapes, link events),
/// go to another thread meanwhile. Elsewhere (a test's single-threaded runtime) it
/// just runs.
fn off_the_worker<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|runtime| runtime.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// The calling thread's time on and waiting for a CPU since `earlier`, a clock of the
/// same thread.
fn waited_since(earlier: Option<ThreadClock>) -> Option<ThreadClock> {
    Some(ThreadClock::now()?.since(&earlier?))
}

/// A configuration checked ([`check_config`]): what the next read can start from,
/// the Services that changed since the read before, and how many documents were
/// parsed (`None`: all).
struct Checked {
    config: Config,
    kept: Option<file::Kept>,
    changes: Option<Changes>,
    parsed: Option<usize>,
}

/// Gives services without a status the addresses they had in the last plan, so that an
/// edit of the file (a new service listed first, say) moves nobody's address: the
/// allocator keeps valid status addresses. In place: the configuration is large (a
/// copy of 100,000 Services is about 150 MiB).
/// Returns how many services it gave a status.
pub fn with_previous_status(
    config: &mut Config,
    previous: &BTreeMap<ServiceKey, Vec<IpAddr>>,
) -> usize {
    let mut given = 0;
    for service in &mut config.services {
        if has_status_address(service) {
            continue;
        }
        if let Some(ips) = previous.get(&ServiceKey::of_service(service)) {
            service.status = Some(status_with(ips));
            given += 1;
        }
    }
    given
}

/// What the last plan kept ([`Standing`]), as [`Speaker::apply`] plans from it.
enum Last<'a> {
    /// Nothing (BGP, or no plan yet): plan whole.
    Nothing,
    /// The same snapshot, for other live nodes or interfaces: elected again.
    Elect(&'a mut Standing),
    /// A new snapshot: maybe some Services changed only; with what its source says
    /// changed since the snapshot the standing was planned from.
    Changed(Box<Standing>, Option<Changes>),
}

struct Speaker {
    options: SpeakerOptions,
    datapath: Datapath,
    announcer: Announcer,
    shared: Arc<Shared>,
    previous: BTreeMap<ServiceKey, Vec<IpAddr>>,
    last_roles: BTreeMap<ServiceKey, Role>,
    announced: tokio::sync::watch::Sender<Announced>,
    /// BGP mode: the task that applies this node's BGP plan.
    bgp: crate::bgp::speaker::BgpHandle,
    /// The interfaces as the last plan saw them: a link event that changes none of
    /// them changes no plan.
    last_host: BTreeMap<String, iface::Interface>,
    /// The interface report as last written for `metallb inspect`.
    interface_report: Option<crate::plan::InterfaceReport>,
    /// Ifindexes that link events said were deleted since the last plan.
    deleted_links: BTreeSet<u32>,
    /// Claims by other hosts for our VIPs, in episodes; against `started`'s clock.
    conflicts: ConflictWatch,
    /// The entries' counters as last handed to the metrics.
    counters: CounterView,
    started: std::time::Instant,
    /// Re-announcement of what this node answers (see [`Reannounce`]).
    reannounce: Reannounce,
    /// The interfaces the last plan's entries were made for, if the tables hold
    /// exactly those entries: then the next plan on the same interfaces hands the
    /// datapath only what it changes ([`vip_delta`], from `last_roles` and
    /// `previous`); otherwise it syncs the whole set.
    synced_on: Option<Vec<iface::Interface>>,
}

/// When this node announces again every VIP it answers, not only those it starts
/// answering: whenever clients may have moved to another MAC while this node's
/// entries did not change.
/// - At the first plan: a datapath adopted from an earlier agent (`--keep-datapath`,
///   after a crash or a restart) already holds the VIPs, so none of them is "now
///   answering", yet a peer may have answered them meanwhile.
/// - When the live set gains a node (a partition heals, a member rejoins): the other
///   side may have answered this node's VIPs and moved the clients.
/// - When the datapath is back from a fence (this agent was paused): a peer may have
///   taken over meanwhile.
struct Reannounce {
    first: bool,
    live: Option<BTreeSet<String>>,
    fence_episodes: Option<u64>,
    /// What this node answered at the last plan, with its MAC.
    answering: BTreeMap<VipKey, iface::MacAddr>,
}

impl Default for Reannounce {
    fn default() -> Self {
        Self {
            first: true,
            live: None,
            fence_episodes: None,
            answering: BTreeMap::new(),
        }
    }
}

impl Reannounce {
    /// Whether the plan with this live set announces everything again.
    fn at_plan(&mut self, live: Option<&BTreeSet<String>>) -> bool {
        let gained = matches!((&self.live, live), (Some(old), Some(new)) if new.iter().any(|n| !old.contains(n)));
        self.live = live.cloned();
        std::mem::take(&mut self.first) || gained
    }

    /// Whether the datapath, in `fence` now, came back from a fence since the last
    /// look.
    fn after_fence(&mut self, fence: &FenceState) -> bool {
        let before = self.fence_episodes.replace(fence.episodes);
        !fence.fenced && before.is_some_and(|b| fence.episodes > b)
    }
}

impl Speaker {
    /// Plans `snapshot` and applies the plan. The snapshot is kept by the caller (to
    /// plan again when the live nodes or the interfaces change) and is not copied:
    /// with the allocator, its services without a status get the addresses of the last
    /// plan as one, in place (planning it again then gives the same addresses), before
    /// the plan and again after it ([`Speaker::with_own_status`]). Returns whether
    /// that changed the snapshot's Services, and what the plan keeps to be made again
    /// without them ([`Standing`]; none with BGP).
    ///
    /// With `again`, what an earlier plan of this snapshot kept, the snapshot's
    /// Services are not looked at (it may hold none): only the live nodes or the
    /// interfaces changed, so the allocation stands and only the election is run
    /// again ([`Standing::plan`]); when only the live nodes changed and the tables
    /// hold the last plan's entries, only for the services that move
    /// ([`Standing::reelect`], [`Speaker::apply_moves`]).
    ///
    /// With `changed`, what the last plan kept when a new snapshot came: if it differs
    /// from the last only in some Services and the tables hold the last plan's
    /// entries, only those are planned again ([`Standing::replan`],
    /// [`Speaker::apply_replan`]); then the statuses are not given (the replan gives
    /// the changed ones theirs) and the standing is returned, updated.
    fn apply(&mut self, snapshot: &mut Snapshot, last: Last<'_>) -> (bool, Option<Standing>) {
        let began = std::time::Instant::now();
        let elected_again = matches!(last, Last::Elect(_));
        let addresses = snapshot.addresses;
        let election = snapshot.election.clone();
        let everything = self.reannounce.at_plan(election.live_nodes.as_ref());
        // Addresses allocated here stay where the last plan put them; those of the
        // controller are the status itself.
        let mut statuses = !matches!(last, Last::Changed(..)) && self.with_own_status(snapshot);
        let config = &snapshot.config;
        let host = match iface::list() {
            Ok(host) => host,
            Err(e) => {
                error!(error = %e, "cannot list interfaces; configuration not applied");
                return (statuses, None);
            }
        };
        let deleted = std::mem::take(&mut self.deleted_links);
        for change in self.datapath.follow_interfaces(&host, &deleted) {
            log_interface_change(&change);
        }
        self.last_host = host.clone();
        let mut choice = interfaces_to_attach(
            config,
            &self.options.node_name,
            &self.options.interfaces,
            &host,
        );
        self.attach_interfaces(&mut choice);
        let wanted_names: BTreeSet<&str> = choice.attach.iter().map(|i| i.name.as_str()).collect();
        let attached: Vec<iface::Interface> = self
            .datapath
            .attachments()
            .filter(|a| wanted_names.contains(a.iface.name.as_str()))
            .map(|a| a.iface.clone())
            .collect();

        let plan_options = PlanOptions {
            node_name: self.options.node_name.clone(),
            allocator: AllocatorOptions {
                load_balancer_class: self.options.load_balancer_class.clone(),
            },
            addresses,
            election,
            named_despite_exclusion: choice.report.named_despite_exclusion(),
        };
        let planning = std::time::Instant::now();
        let before_plan_took = planning - began;
        let (mut plan, standing) = match last {
            Last::Elect(standing) => {
                if self.synced_on.as_ref() == Some(&attached)
                    && let Some(reelection) = standing.reelect(&plan_options, &attached)
                {
                    let plan_took = planning.elapsed();
                    let took = (before_plan_took, plan_took);
                    self.apply_moves(reelection, &plan_options, attached, took, everything);
                    return (statuses, None);
                }
                (standing.plan(&plan_options, &attached), None)
            }
            // Kept as the Standing, the snapshot's Services go as soon as the
            // allocation has them (`Kept::keep` would drop them after the apply, and
            // the statuses written at its end with them).
            Last::Changed(mut standing, changes) => {
                if self.synced_on.as_ref() == Some(&attached)
                    && let Some(replan) =
                        standing.replan(config, &plan_options, &attached, changes.as_ref())
                {
                    let took = (before_plan_took, planning.elapsed());
                    self.apply_replan(replan, attached, took, everything);
                    return (statuses, Some(*standing));
                }
                // Planned whole: what it kept goes first.
                drop(standing);
                statuses = self.with_own_status(snapshot);
                plan_keeping_releasing(&mut snapshot.config, &plan_options, &attached)
            }
            Last::Nothing => plan_keeping_releasing(&mut snapshot.config, &plan_options, &attached),
        };
        let plan_took = planning.elapsed();
        // The moment the plan exists: `cargo xtask bench scale` measures from here to
        // every entry answerable.
        debug!(vips = plan.vips.len(), took = ?plan_took, elected_again, "plan computed");
        self.bgp.update(plan.bgp.this_node.clone());
        // Only what changed, when the tables hold the last plan's entries for these
        // interfaces; everything otherwise (start-up, recovery).
        let delta = std::time::Instant::now();
        let changed = (self.synced_on.as_ref() == Some(&attached))
            .then(|| vip_delta(&plan, &attached, &self.last_roles, &self.previous));
        let delta_took = delta.elapsed();
        // The metrics' view of the last change, if the refresh has not taken it yet:
        // this sync may reuse the counter ids that change retired (see
        // `publish_counters`). A change a second or more after the last costs nothing
        // here.
        self.publish_counters();
        let syncing = std::time::Instant::now();
        let report = match &changed {
            Some(changed) => self.datapath.update(changed),
            None => self.datapath.sync(&plan.vips),
        };
        let synced = std::time::Instant::now();
        let sync_took = synced - syncing;
        self.synced_on = report.complete.then_some(attached);
        for e in &report.errors {
            error!(error = %e, "datapath change not applied");
        }
        // Interfaces no longer wanted have no entries left: detach them.
        let stale: Vec<String> = self
            .datapath
            .attachments()
            .filter(|a| !wanted_names.contains(a.iface.name.as_str()))
            .map(|a| a.iface.name.clone())
            .collect();
        for name in stale {
            if let Err(e) = self.datapath.detach(&name) {
                error!(iface = %name, error = %e, "cannot detach the XDP responder");
            }
        }

        self.reannounce.answering = plan
            .vips
            .iter()
            .filter(|(_, c)| c.action == VipAction::Answer)
            .map(|(key, c)| (*key, c.mac))
            .collect();
        self.announce_changes(everything, &report, |key| plan.vips.get(key).copied());

        // The plan's parts go as soon as they are used: at 100,000 Services they are
        // tens of MiB each, and the peak of an apply is the Services, the plan and
        // what is kept of it, at once.
        let (services, vips) = (plan.services.len(), plan.vips.len());
        drop(std::mem::take(&mut plan.vips));
        self.log_changes(&plan.services);
        self.report_announced(&plan.services);
        // Elected again only: the allocation, so the addresses, stand.
        if !elected_again {
            self.previous = plan.allocated_addresses();
        }
        {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            state.pools = std::mem::take(&mut plan.pools);
            state.config_loaded = true;
            state.config_stale = false;
        }
        drop(plan);
        self.shared.ready.store(true, Ordering::Relaxed);
        // The addresses this plan allocated become statuses too: planning the
        // snapshot again (a failover) then changes none of its Services, and the kept
        // form of them stays as it is.
        statuses |= self.with_own_status(snapshot);
        info!(
            services,
            vips,
            added = report.added.len(),
            changed = report.changed.len(),
            removed = report.removed.len(),
            plan_took = ?plan_took,
            delta = changed.as_ref().map(BTreeMap::len),
            delta_took = ?delta_took,
            datapath_took = ?sync_took,
            before_plan_took = ?before_plan_took,
            after_sync_took = ?synced.elapsed(),
            elected_again,
            "configuration applied"
        );
        (statuses, standing)
    }

    /// The rest of [`Speaker::apply`] for a change of the live nodes alone, elected
    /// again in the services it moves (`reelection`), whose entries the tables hold
    /// for `attached`: the datapath is handed their entries first, then what this node
    /// announces, the logs, the last roles and the report change for those services
    /// only (at 100,000 Services a failover moves tens of thousands: nothing walks the
    /// others).
    fn apply_moves(
        &mut self,
        mut reelection: Reelection<'_>,
        options: &PlanOptions,
        attached: Vec<iface::Interface>,
        (before_plan_took, plan_took): (Duration, Duration),
        everything: bool,
    ) {
        debug!(vips = reelection.vips.len(), moved = reelection.services(), took = ?plan_took, elected_again = true, "plan computed");
        let vips = std::mem::take(&mut reelection.vips);
        let (report, sync_took, synced) = self.sync_changes(&vips, everything);
        let moved = reelection.moved(options, &attached);
        self.synced_on = report.complete.then_some(attached);
        self.report_some(moved.iter().map(|m| {
            let announced = matches!(m.role, Role::Announce { .. }).then(|| m.named.clone());
            (m.key, announced)
        }));
        let services = moved.len();
        self.log_moves(moved);
        let took = [before_plan_took, plan_took, sync_took];
        self.applied_in_part(None, &report, vips.len(), took, synced, (services, None));
    }

    /// The end of an apply made in part (a re-election's, a replan's): the pools'
    /// usage if it changed, the configuration loaded and the speaker ready, and the
    /// line `cargo xtask bench scale` reads (`services`: those the apply looked at;
    /// `replanned`: those a replan planned again or found gone, and the Services of
    /// the configuration whose digests it computed, [`Replan::looked`]).
    fn applied_in_part(
        &self,
        pools: Option<BTreeMap<String, crate::allocator::PoolUsage>>,
        report: &SyncReport,
        delta: usize,
        [before_plan_took, plan_took, sync_took]: [Duration; 3],
        synced: std::time::Instant,
        (services, replanned): (usize, Option<(usize, usize)>),
    ) {
        {
            let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(pools) = pools {
                state.pools = pools;
            }
            state.config_loaded = true;
            state.config_stale = false;
        }
        self.shared.ready.store(true, Ordering::Relaxed);
        info!(
            services,
            vips = self.reannounce.answering.len(),
            added = report.added.len(),
            changed = report.changed.len(),
            removed = report.removed.len(),
            plan_took = ?plan_took,
            delta,
            delta_took = ?Duration::ZERO,
            datapath_took = ?sync_took,
            before_plan_took = ?before_plan_took,
            after_sync_took = ?synced.elapsed(),
            elected_again = replanned.is_none(),
            replanned = replanned.map(|(replanned, _)| replanned),
            looked = replanned.map(|(_, looked)| looked),
            "configuration applied"
        );
    }

    /// Hands the datapath the entries that may have changed (`vips`, in key order, each
    /// with its value now), then the announcer what changed of them
    /// ([`Speaker::announce_changes`]); the report, the sync's time and its end.
    fn sync_changes(
        &mut self,
        vips: &[(VipKey, Option<VipConfig>)],
        everything: bool,
    ) -> (SyncReport, Duration, std::time::Instant) {
        self.publish_counters();
        let syncing = std::time::Instant::now();
        let report = self
            .datapath
            .update(vips.iter().map(|(key, value)| (key, value)));
        let synced = std::time::Instant::now();
        for e in &report.errors {
            error!(error = %e, "datapath change not applied");
        }
        let now = |key: &VipKey| {
            let at = vips.binary_search_by_key(key, |(key, _)| *key).ok()?;
            vips[at].1
        };
        for (key, value) in vips {
            match value {
                Some(c) if c.action == VipAction::Answer => {
                    self.reannounce.answering.insert(*key, c.mac);
                }
                _ => {
                    self.reannounce.answering.remove(key);
                }
            }
        }
        self.announce_changes(everything, &report, now);
        (report, synced - syncing, synced)
    }

    /// The rest of [`Speaker::apply`] for a change of some Services alone, planned
    /// again in those (`replan`), whose entries the tables hold for `attached`: the
    /// datapath is handed the entries that may differ, then what this node
    /// announces, the logs (their warnings, and MetalLB's events where the role
    /// changed), the last roles and addresses, the report and the pools' usage
    /// change for those services only.
    fn apply_replan(
        &mut self,
        replan: Replan,
        attached: Vec<iface::Interface>,
        (before_plan_took, plan_took): (Duration, Duration),
        everything: bool,
    ) {
        let Replan {
            vips,
            services,
            removed,
            pools,
            looked,
        } = replan;
        debug!(vips = vips.len(), services = services.len(), removed = removed.len(), looked, took = ?plan_took, replanned = true, "plan computed");
        let (report, sync_took, synced) = self.sync_changes(&vips, everything);
        self.synced_on = report.complete.then_some(attached);
        let mut lines = RoleLines::default();
        for (key, service) in &services {
            for warning in &service.warnings {
                warn!(service = %printable(&key.to_string()), "{}", printable(warning));
            }
            if self.last_roles.get(key) != Some(&service.role) {
                lines.changed(key, &service.decision, &service.role);
                self.last_roles.insert(key.clone(), service.role.clone());
            }
            match &service.decision {
                Decision::Allocated(a) => {
                    self.previous.insert(key.clone(), a.ips.clone());
                }
                _ => {
                    self.previous.remove(key);
                }
            }
        }
        lines.end();
        for key in &removed {
            self.last_roles.remove(key);
            self.previous.remove(key);
        }
        self.report_some(
            (services.iter().map(|(key, plan)| (key, announced_on(plan))))
                .chain(removed.iter().map(|key| (key, None))),
        );
        let took = [before_plan_took, plan_took, sync_took];
        let replanned = services.len() + removed.len();
        let services = (self.last_roles.len(), Some((replanned, looked)));
        self.applied_in_part(Some(pools), &report, vips.len(), took, synced, services);
    }

    /// [`Speaker::report_announced`] for some services only (those an apply made in
    /// part moved, planned again or found gone): each with the interfaces its
    /// announcement names if this node announces it now ([`announced_on`]), `None`
    /// if not.
    fn report_some<'k>(
        &self,
        services: impl IntoIterator<Item = (&'k ServiceKey, Option<Vec<String>>)>,
    ) {
        if self.announced.is_closed() {
            return;
        }
        self.announced.send_if_modified(|current| {
            let mut changed = false;
            for (key, announced) in services {
                match announced {
                    Some(named) => {
                        changed |= current.get(key) != Some(&named);
                        current.insert(key.clone(), named);
                    }
                    None => changed |= current.remove(key).is_some(),
                }
            }
            changed
        });
    }

    /// What the announcer does after a sync (`report`), with each VIP's entry as
    /// `entry` gives it now and [`Reannounce::answering`] already up to date: it
    /// stops announcing what this node no longer answers, then sends the gratuitous
    /// burst of every VIP this node answers if `everything`, else of those it answers
    /// now and did not before.
    fn announce_changes(
        &mut self,
        everything: bool,
        report: &SyncReport,
        entry: impl Fn(&VipKey) -> Option<VipConfig>,
    ) {
        for key in report.removed.iter().chain(&report.changed) {
            if entry(key).is_none_or(|c| c.action != VipAction::Answer) {
                self.announcer.stop(key);
            }
        }
        if everything {
            self.announce_everything("every VIP this node answers announced again");
        } else {
            self.announcer.start(
                (report.now_answering.iter())
                    .filter_map(|key| Some((*key, entry(key)?.mac)))
                    .collect(),
            );
        }
    }

    /// [`Speaker::log_changes`] for the services a re-election moved; their roles
    /// become the last roles.
    fn log_moves(&mut self, moved: Vec<Moved<'_>>) {
        let mut lines = RoleLines::default();
        for m in moved {
            lines.allocated(m.key, m.allocation, &m.role);
            match self.last_roles.get_mut(m.key) {
                Some(role) => *role = m.role,
                None => {
                    self.last_roles.insert(m.key.clone(), m.role);
                }
            }
        }
        lines.end();
    }

    /// With the allocator, gives the snapshot's services without a status the
    /// addresses of the last plan as one; whether it gave any.
    fn with_own_status(&self, snapshot: &mut Snapshot) -> bool {
        snapshot.addresses == AddressSource::Allocate
            && with_previous_status(&mut snapshot.config, &self.previous) > 0
    }

    /// The services this node announces, for the Kubernetes source (ServiceL2Status,
    /// Events). Nobody listens in standalone mode: nothing is kept then (100,000
    /// entries).
    fn report_announced(&self, services: &BTreeMap<ServiceKey, ServicePlan>) {
        if self.announced.is_closed() {
            return;
        }
        let announced: Announced = services
            .iter()
            .filter_map(|(key, p)| Some((key.clone(), announced_on(p)?)))
            .collect();
        self.announced.send_if_modified(|current| {
            let changed = *current != announced;
            *current = announced;
            changed
        });
    }

    /// Attaches the responder to the chosen interfaces, logs what is skipped and why,
    /// and records the choice (with the attachments the kernel refused) for `metallb
    /// inspect`.
    fn attach_interfaces(&mut self, choice: &mut InterfaceChoice) {
        for missing in &choice.report.missing {
            warn!(iface = %printable(&missing.interface), "interface named in the configuration does not exist on this node");
        }
        for skipped in &choice.report.skipped {
            debug!(iface = %printable(&skipped.interface), reason = ?skipped.reason, "interface left alone");
        }
        for attached in &mut choice.report.attached {
            if let Err(e) = self.datapath.attach_with(
                &attached.interface,
                self.options.xdp_mode,
                self.options.datapath_kind,
            ) {
                error!(iface = %printable(&attached.interface), error = %e, "cannot attach the XDP responder");
                attached.error = Some(e.to_string());
            }
        }
        let pin_dir = &self.options.datapath.pin_dir;
        let written = &mut self.interface_report;
        if let Err(e) = interface_report::write_changed(pin_dir, &choice.report, written) {
            warn!(error = %e, "cannot record the interfaces for metallb inspect");
        }
    }

    /// MetalLB's events, as log lines, for services whose situation changed; the
    /// allocator's warnings on every application of the file.
    fn log_changes(&mut self, services: &BTreeMap<ServiceKey, ServicePlan>) {
        // Both sorted by key: one walk, no lookup; a name formatted only for a line.
        let mut last = self.last_roles.iter().peekable();
        let mut lines = RoleLines::default();
        for (key, service) in services {
            while last.next_if(|(before, _)| *before < key).is_some() {}
            let role_changed = last
                .next_if(|(before, _)| *before == key)
                .is_none_or(|(_, role)| *role != service.role);
            if service.warnings.is_empty() && !role_changed {
                continue;
            }
            // Names and reasons come from the file: no raw line breaks in the log.
            for warning in &service.warnings {
                warn!(service = %printable(&key.to_string()), "{}", printable(warning));
            }
            if role_changed {
                lines.changed(key, &service.decision, &service.role);
            }
        }
        lines.end();
        self.last_roles = services
            .iter()
            .map(|(key, service)| (key.clone(), service.role.clone()))
            .collect();
    }

    /// Takes in link events; whether the interfaces differ from those of the last plan
    /// (then the plan is made again).
    fn links_changed(&mut self, events: &[LinkEvent]) -> bool {
        for event in events {
            debug!(?event, "link event");
            if !event.exists {
                self.deleted_links.insert(event.ifindex);
            }
        }
        let attached_deleted = self
            .datapath
            .attachments()
            .any(|a| self.deleted_links.contains(&a.iface.ifindex));
        match iface::list() {
            Ok(host) => attached_deleted || host != self.last_host,
            Err(e) => {
                warn!(error = %e, "cannot list interfaces after a link event");
                attached_deleted
            }
        }
    }

    /// The file could not be applied: what serves is older than it.
    fn mark_stale(&self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .config_stale = true;
    }

    /// Starts a gratuitous burst for every VIP this node answers.
    fn announce_everything(&mut self, why: &str) {
        if self.reannounce.answering.is_empty() {
            return;
        }
        // One change: the first round at once up to --garp-rate frames, the rest
        // paced (ahead of any older backlog).
        self.announcer.start(
            self.reannounce
                .answering
                .iter()
                .map(|(key, mac)| (*key, *mac))
                .collect(),
        );
        info!(vips = self.reannounce.answering.len(), "{why}");
    }

    /// Every second: the fence state, the global counters, and the claims of other
    /// hosts. The per-VIP counters are read only when `/metrics` is scraped (through
    /// the [`CounterView`] published after each change) and, for the claims, only
    /// when the program counted one or the entries changed.
    fn refresh_metrics(&mut self) {
        // An idle moment: the next change of the tables then writes only its own
        // entries.
        for e in self.datapath.tidy() {
            warn!(error = %e, "cannot bring the idle half of the VIP tables up to date");
        }
        self.publish_counters();
        let reading = std::time::Instant::now();
        // One syscall (and the userspace datapath's counts flushed into the maps).
        let stats = self.datapath.stats();
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        match stats {
            Ok(stats) => {
                let now = self.started.elapsed();
                // The program counts every claim in `pass_conflict` too, after the
                // VIP's own counter: unchanged, with the same entries, no VIP's claims
                // moved.
                let view = &self.counters;
                let events = self.conflicts.observe_changes(
                    now,
                    (stats.pass_conflict, view.revision()),
                    || answered_claims(view.conflicts()),
                );
                for event in &events {
                    match event {
                        ConflictEvent::Started { ip, claims } => warn!(
                            %ip, claims,
                            "another host claims a VIP this node answers (gratuitous ARP, ARP reply or neighbor advertisement from another MAC): two nodes may answer for it"
                        ),
                        ConflictEvent::Ended { ip, claims } => info!(
                            %ip, claims,
                            "no more claims by another host for 30 s"
                        ),
                    }
                }
                if !events.is_empty() {
                    state.conflict_episodes = self.conflicts.episodes().clone();
                    state.conflicts_ongoing = self.conflicts.ongoing().copied().collect();
                }
                state.outcomes = stats;
            }
            Err(e) => warn!(error = %e, "cannot read the datapath counters"),
        }
        state.fence = self.datapath.fence();
        let unfenced = self.reannounce.after_fence(&state.fence);
        drop(state);
        debug!(took = ?reading.elapsed(), "datapath counters read");
        if unfenced {
            self.announce_everything(
                "the datapath answers again after a fence: every VIP this node answers announced again",
            );
        }
    }

    /// Hands the metrics a [`CounterView`] of the entries as they are now, if they
    /// changed since the last one (a copy of the live keys: about 30 ms at 100,000
    /// VIPs on a loaded machine). At the refresh after a change and, if none came
    /// between, before the next sync: a sync frees only the ids an earlier sync
    /// retired, so the view's ids stay those of its entries while it is used.
    fn publish_counters(&mut self) {
        if self.counters.revision() == self.datapath.revision() {
            return;
        }
        let publishing = std::time::Instant::now();
        match self.datapath.counter_view() {
            Ok(view) => {
                self.counters = view.clone();
                let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
                state.vips = Some(Arc::new(view));
                drop(state);
                debug!(took = ?publishing.elapsed(), "counters view published");
            }
            Err(e) => warn!(error = %e, "cannot read the datapath counters"),
        }
    }
}

/// If this node announces the service of `plan`, the interfaces its announcement
/// names (none: every interface of the datapath), as [`Announced`] lists them.
fn announced_on(plan: &ServicePlan) -> Option<Vec<String>> {
    if !matches!(plan.role, Role::Announce { .. }) {
        return None;
    }
    Some(match &plan.election {
        Some(Election::Announced {
            interfaces: Interfaces::Only(names),
            ..
        }) => names.iter().cloned().collect(),
        _ => Vec::new(),
    })
}

/// How many services' changes of role one apply logs at info level; the others at
/// debug level, counted in one info line. A failover at 100,000 Services moves tens
/// of thousands of them: a line each (MetalLB's `nodeAssigned`) would take the log
/// and the main loop for a second. The Kubernetes side's Events and statuses are
/// written for every one of them.
const ROLE_LINES: usize = 20;

/// The target of the services' lines past the first [`ROLE_LINES`] of an apply
/// (`--log-level info,metallb_user::services=debug` shows them).
const SERVICE_LINES: &str = "metallb_user::services";

/// The log lines of the services whose role changed in one apply (MetalLB's events):
/// the first [`ROLE_LINES`] at info level, the rest at debug level and counted.
#[derive(Default)]
struct RoleLines {
    logged: usize,
    announcing: usize,
    not_announcing: usize,
}

impl RoleLines {
    fn changed(&mut self, key: &ServiceKey, decision: &Decision, role: &Role) {
        match decision {
            // Names and reasons come from the file: no raw line breaks in the log.
            Decision::Failed { reason } => {
                warn!(service = %printable(&key.to_string()), event = "AllocationFailed", "{}", printable(reason))
            }
            Decision::Allocated(allocation) => self.allocated(key, allocation, role),
            Decision::Ignored { .. } => {}
        }
    }

    fn allocated(&mut self, key: &ServiceKey, a: &Allocation, role: &Role) {
        let info = self.logged < ROLE_LINES;
        if info {
            self.logged += 1;
        } else {
            match role {
                Role::Announce { .. } => self.announcing += 1,
                _ => self.not_announcing += 1,
            }
            if !tracing::enabled!(target: SERVICE_LINES, tracing::Level::DEBUG) {
                return;
            }
        }
        let service_name = printable(&key.to_string()).into_owned();
        match role {
            Role::Announce { interfaces } if info => info!(
                service = %service_name, event = "nodeAssigned", pool = %printable(&a.pool), ips = ?a.ips, interfaces = ?interfaces,
                "announcing from this node"
            ),
            Role::Announce { interfaces } => debug!(
                target: SERVICE_LINES,
                service = %service_name, event = "nodeAssigned", pool = %printable(&a.pool), ips = ?a.ips, interfaces = ?interfaces,
                "announcing from this node"
            ),
            role if info => {
                info!(service = %service_name, event = "IPAllocated", pool = %printable(&a.pool), ips = ?a.ips, role = ?role, "allocated")
            }
            role => {
                debug!(target: SERVICE_LINES, service = %service_name, event = "IPAllocated", pool = %printable(&a.pool), ips = ?a.ips, role = ?role, "allocated")
            }
        }
    }

    /// The count of the changes not logged at info level.
    fn end(self) {
        if self.announcing + self.not_announcing > 0 {
            info!(
                now_announcing = self.announcing,
                not_announcing = self.not_announcing,
                "and more services changed role (a line each at debug level, target metallb_user::services)"
            );
        }
    }
}

/// A change of an attached interface, as a log line: what the speaker does about it.
fn log_interface_change(change: &InterfaceChange) {
    match change {
        InterfaceChange::Gone { old } => warn!(
            iface = %printable(&old.name), ifindex = old.ifindex,
            "interface deleted: its XDP attachment went with it; attaching again if it comes back"
        ),
        InterfaceChange::Changed { old, new } => {
            let (old_mac, new_mac) = (iface::MacAddr(old.mac), iface::MacAddr(new.mac));
            info!(
                iface = %printable(&new.name), ifindex = new.ifindex,
                old_name = %printable(&old.name), %old_mac, %new_mac, old_up = old.up, up = new.up,
                "attached interface changed: programming its VIPs again"
            );
        }
    }
}

/// Follows link events in a task of its own (the socket belongs to this thread's
/// network namespace), handing each datagram's events to the main loop. Without
/// rtnetlink the interfaces are read at each configuration change only.
fn follow_links() -> mpsc::Receiver<Vec<LinkEvent>> {
    let (sender, receiver) = mpsc::channel(64);
    match LinkEvents::open() {
        Ok(mut events) => {
            tokio::spawn(async move {
                loop {
                    let batch = match events.next().await {
                        Ok(batch) => batch,
                        // Events lost: an empty batch still makes the loop look.
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            warn!("link events were lost (ENOBUFS): reading the interfaces again");
                            Vec::new()
                        }
                        Err(e) => {
                            error!(error = %e, "reading link events failed: interfaces are read again only on configuration changes");
                            return;
                        }
                    };
                    if sender.send(batch).await.is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => {
            error!(error = %e, "cannot follow link events (rtnetlink): interfaces are read again only on configuration changes");
        }
    }
    receiver
}

/// Watches the directory of `path`: editors replace files by renaming, Kubernetes
/// volumes swap symlinks. (A file that `path` links to elsewhere is not watched:
/// SIGHUP reloads it.)
fn watch(path: &Path, reload: mpsc::Sender<()>) -> anyhow::Result<notify::RecommendedWatcher> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Trace, not debug: a log file in the watched directory would make every line
        // of it an event, and each event a line.
        if let Ok(event) = &event {
            tracing::trace!(kind = ?event.kind, paths = ?event.paths, "file event");
        }
        // Any change in the directory: editors rename over the file, Kubernetes
        // volumes swap a symlink. Not accesses: reading the file raises those.
        if let Ok(event) = event
            && (event.kind.is_create() || event.kind.is_modify() || event.kind.is_remove())
        {
            let _ = reload.try_send(());
        }
    })
    .context("creating the file watcher")?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    Ok(watcher)
}

pub async fn run(options: SpeakerOptions) -> anyhow::Result<()> {
    let (updates, mut updates_rx) = mpsc::channel::<Update>(4);
    let (announced, announced_rx) = tokio::sync::watch::channel(Announced::new());
    let (bgp_reports, bgp_reports_rx) =
        tokio::sync::watch::channel(crate::bgp::speaker::BgpReport::default());
    // The source first: a file that cannot be followed, or no API to talk to, fails
    // before anything is attached.
    // In Kubernetes mode, what tells a rolling update from an uninstall on stop.
    let mut stop_lookup: Option<(kube::Client, Option<String>)> = None;
    let source = match &options.source {
        SourceOptions::File { path, max_bytes } => {
            // Only the Kubernetes source reports what this node announces.
            drop(announced_rx);
            anyhow::ensure!(
                path != Path::new(STDIN_PATH),
                "the speaker follows its configuration file and reads it again when it changes: \
                 standard input (`-`) cannot be followed, give a file"
            );
            let path = std::path::absolute(path)
                .with_context(|| format!("resolving {}", path.display()))?;
            let file = FileSource::new(path, *max_bytes, options.namespace.clone(), updates)?;
            tokio::spawn(file.follow())
        }
        SourceOptions::Kubernetes(kubernetes) => {
            let source = crate::kubernetes::speaker::Source::connect(
                kubernetes.clone(),
                &options.namespace,
                &options.node_name,
            )
            .await?;
            stop_lookup = Some((source.client(), kubernetes.pod_name.clone()));
            tokio::spawn(source.run(updates, announced_rx, bgp_reports_rx))
        }
    };
    let source = crate::kubernetes::AbortOnDrop(source);

    let shared = Arc::new(Shared::default());
    metrics::serve(options.metrics_addr, shared.clone()).await?;
    // The packet socket first: refused (no CAP_NET_RAW), nothing is pinned yet.
    let announcer = Announcer::new(
        Pacing {
            interval: options.garp_interval,
            duration: options.garp_duration,
            rate: options.garp_rate,
        },
        shared.gratuitous.clone(),
    )
    .context("opening a packet socket for gratuitous announcements")?;
    // Waiting for the pin directory blocks: this thread only, not the metrics server.
    let mut datapath = tokio::task::block_in_place(|| {
        Datapath::load_waiting(&options.datapath, options.pin_dir_wait)
    })
    .context("loading the XDP datapath")?;
    // A planned restart must lose no answer, whatever ends this process: the links
    // are pinned from the start, so that even `kill -9` leaves the program attached.
    if options.keep_datapath {
        for e in datapath.pin_links_at_attach() {
            error!(error = %e, "cannot pin an XDP link");
        }
    }
    let mut speaker = Speaker {
        options: options.clone(),
        datapath,
        announcer,
        shared: shared.clone(),
        previous: BTreeMap::new(),
        last_roles: BTreeMap::new(),
        announced,
        bgp: crate::bgp::speaker::BgpHandle::spawn(
            Box::new(crate::bgp::frr_daemon::FrrBackend::new(options.frr.clone())),
            shared.clone(),
            bgp_reports,
        ),
        last_host: BTreeMap::new(),
        interface_report: None,
        deleted_links: BTreeSet::new(),
        conflicts: ConflictWatch::default(),
        counters: CounterView::default(),
        started: std::time::Instant::now(),
        reannounce: Reannounce::default(),
        synced_on: None,
    };
    let mut links = follow_links();

    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut tick = tokio::time::interval(METRICS_REFRESH);
    info!(node = %printable(&options.node_name), "speaker running");

    let mut gossip = Gossip::new(&options)?;
    let mut fencing = Fencing::default();
    fencing.update(&speaker.datapath, &gossip, false);
    let mut last: Option<Kept> = None;
    let mut gossip_ended = false;
    loop {
        shared.heartbeat.beat();
        // Where the main loop waits: from here, its time on the run queue is the
        // machine's doing (other work on the CPUs), logged apart with each apply.
        let parked = ThreadClock::now();
        tokio::select! {
            update = updates_rx.recv() => match update {
                Some(Update::Apply(snapshot)) => {
                    let read = snapshot.read.number;
                    let received = ThreadClock::now();
                    debug!(read, "configuration received");
                    // The previous snapshot goes first: two configurations of 100,000
                    // Services are not held at once. What its plan kept stays: if only
                    // some Services changed, only those are planned again.
                    let (standing, planned) = last
                        .take()
                        .map_or((None, 0), |kept| (kept.standing, kept.snapshot.read.number));
                    let mut snapshot = *snapshot;
                    // What the source says changed, if it says it of the snapshot
                    // the standing was planned from.
                    let changes = (snapshot.read.changes.take())
                        .filter(|(since, _)| planned != 0 && *since == planned)
                        .map(|(_, changes)| changes);
                    gossip.follow(&snapshot, &options.node_name);
                    fencing.update(&speaker.datapath, &gossip, true);
                    let standing = if gossip.with_live(&mut snapshot) {
                        let last = standing
                            .map_or(Last::Nothing, |s| Last::Changed(Box::new(s), changes));
                        speaker.apply(&mut snapshot, last).1
                    } else {
                        None
                    };
                    // Woken by the snapshot, then applying it: the wait for a CPU before
                    // the receipt (the loop slept until the snapshot came), and from the
                    // receipt to applied the time on and waiting for a CPU.
                    if let (Some(before), Some(applying)) =
                        (received.zip(parked).map(|(r, p)| r.since(&p)), waited_since(received))
                    {
                        debug!(
                            read,
                            waited_for_cpu_to_receive = ?before.waited_for_cpu,
                            on_cpu = ?applying.on_cpu,
                            waited_for_cpu = ?applying.waited_for_cpu,
                            "main loop's time for the configuration"
                        );
                    }
                    last = Some(Kept::keep(snapshot, standing));
                }
                Some(Update::Stale) => speaker.mark_stale(),
                None => {
                    error!("the configuration source stopped");
                    break;
                }
            },
            changed = gossip.changed() => match changed {
                Ok(()) => {
                    if let Some(kept) = last.take() {
                        last = Some(apply_again(&mut speaker, &gossip, kept));
                    }
                }
                Err(GossipEnded) => {
                    error!("membership: its thread ended (see the panic above): the peers no longer hear this node and take its VIPs, so it stops, its datapath fenced at once");
                    gossip_ended = true;
                    break;
                }
            },
            Some(mut events) = links.recv() => {
                // A burst (a veth pair made, addressed, brought up) is taken in whole.
                while let Ok(more) = links.try_recv() {
                    events.extend(more);
                }
                if last.is_some() && speaker.links_changed(&events) {
                    info!("interfaces changed: applying the configuration again");
                    if let Some(kept) = last.take() {
                        last = Some(apply_again(&mut speaker, &gossip, kept));
                    }
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = tick.tick() => speaker.refresh_metrics(),
        }
    }
    drop(source);

    let Speaker {
        datapath,
        options,
        bgp,
        ..
    } = speaker;
    // FRR stops with the speaker: its routes are withdrawn (BFD and BGP notice).
    bgp.stop().await;
    let decision = stop_decision(options.keep_datapath, stop_lookup, &options.namespace).await;
    match decision.action {
        StopAction::Keep => {
            info!(reason = %decision.reason, "stopping: the XDP program and its maps stay for the next speaker")
        }
        StopAction::Remove => info!(reason = %decision.reason, "stopping: detaching and unpinning"),
    }
    let farewell = Farewell::of(
        decision.action,
        options.membership.as_ref().map(|m| m.fence.restart_grace),
        gossip_ended,
    );
    if let Some(grace) = farewell.announce_restart {
        gossip.announce_restart(grace).await;
    }
    fencing.stop(farewell.fence_in);
    let errors = decision.action.apply(datapath);
    // The record of the interfaces describes the datapath: it goes with it.
    if decision.action == StopAction::Remove
        && let Err(e) = interface_report::remove(&options.datapath.pin_dir)
    {
        error!(error = %e, "cannot remove the record of the interfaces");
    }
    for e in &errors {
        error!(error = %e, "during shutdown");
    }
    if farewell.leave {
        gossip.leave().await;
    }
    anyhow::ensure!(
        errors.is_empty(),
        "{} error(s) while stopping",
        errors.len()
    );
    anyhow::ensure!(!farewell.failed, "the membership thread ended");
    Ok(())
}

/// What a stopping speaker tells its peers and leaves its datapath, in this order:
/// the restart announce, the last heartbeat, the datapath kept or removed, the leave.
#[derive(Debug, PartialEq, Eq)]
struct Farewell {
    /// The peers hear that this node restarts within this grace (they keep its VIPs
    /// where they are) before its datapath gets the grace: the other way round, a peer
    /// could take over while this datapath still answers.
    announce_restart: Option<Duration>,
    /// The last heartbeat leaves the fence deadline this far ahead (`None`: never).
    fence_in: Option<Duration>,
    /// Once answers have stopped (the datapath removed), the peers hear that this
    /// node leaves, and the next owner takes over at once.
    leave: bool,
    /// The speaker exits with an error.
    failed: bool,
}

impl Farewell {
    /// `restart_grace`: with membership. `gossip_ended`: the membership thread ended
    /// on its own, so the peers, which no longer hear this node, take its VIPs; it
    /// tells them nothing (it cannot), a kept datapath fences at once rather than
    /// after a grace nobody granted (the next speaker that adopts it answers again
    /// once its own gossip runs), and the speaker exits with an error.
    fn of(action: StopAction, restart_grace: Option<Duration>, gossip_ended: bool) -> Self {
        match action {
            StopAction::Keep if gossip_ended => Self {
                announce_restart: None,
                fence_in: Some(Duration::ZERO),
                leave: false,
                failed: true,
            },
            StopAction::Keep => Self {
                announce_restart: restart_grace,
                fence_in: restart_grace,
                leave: false,
                failed: false,
            },
            // A datapath that goes needs no fence. The leave reaches nobody if the
            // thread ended (the peers find this node gone by themselves).
            StopAction::Remove => Self {
                announce_restart: None,
                fence_in: None,
                leave: !gossip_ended,
                failed: gossip_ended,
            },
        }
    }
}

/// Plans the kept snapshot again (the live nodes or the interfaces changed); returns
/// it kept again. With what its last plan kept ([`Standing`]), only the election is
/// run again; otherwise (BGP, or no plan yet) the Services are decoded and planned
/// whole, and kept again with the statuses the plan gave them.
fn apply_again(speaker: &mut Speaker, gossip: &Gossip, kept: Kept) -> Kept {
    let kept = plan_kept_again(speaker, gossip, kept);
    // `cargo xtask bench scale` measures to here: the main loop free again.
    debug!("kept snapshot planned again");
    kept
}

fn plan_kept_again(speaker: &mut Speaker, gossip: &Gossip, mut kept: Kept) -> Kept {
    if let Some(standing) = &mut kept.standing {
        if gossip.with_live(&mut kept.snapshot) {
            speaker.apply(&mut kept.snapshot, Last::Elect(standing));
        }
        return kept;
    }
    let mut snapshot = match kept.restore() {
        Ok(snapshot) => snapshot,
        Err(error) => {
            error!(error = %error, "the kept configuration cannot be decoded: not applied again");
            return kept;
        }
    };
    let (changed, standing) = if gossip.with_live(&mut snapshot) {
        speaker.apply(&mut snapshot, Last::Nothing)
    } else {
        (false, None)
    };
    kept.keep_again(snapshot, changed, standing)
}

/// The last snapshot, kept to plan again when the live nodes or the interfaces change
/// (a source sends a new one only when the configuration changes).
///
/// When its last plan kept what the election needs ([`Standing`]: the decisions and
/// each service's ballot), its Services and EndpointSlices, which grow with the
/// cluster, are dropped: planning again needs only the rest of the configuration
/// (nodes, advertisements, interface exclusions). Otherwise (BGP, whose plan needs the
/// Services, or a snapshot not planned yet) they are kept as JSON text: about 250
/// bytes a Service instead of about 600 in the core's form ([`Service`]; 1.5 KiB as
/// API objects).
/// Planning it again decodes them first; they are encoded again only if that plan
/// changed them (a failover does not: the statuses are written when the snapshot
/// comes, see [`Speaker::apply`]).
struct Kept {
    /// Without its Services and EndpointSlices when `encoded` or `standing` holds
    /// what is needed of them.
    snapshot: Snapshot,
    encoded: Option<Vec<u8>>,
    standing: Option<Standing>,
}

impl Kept {
    fn keep(mut snapshot: Snapshot, standing: Option<Standing>) -> Self {
        let config = &mut snapshot.config;
        if standing.is_some() {
            config.services = Vec::new();
            config.endpoint_slices = Vec::new();
            debug!("configuration kept as the plan's decisions and ballots");
            return Self {
                snapshot,
                encoded: None,
                standing,
            };
        }
        let encoding = std::time::Instant::now();
        match serde_json::to_vec(&(&config.services, &config.endpoint_slices)) {
            Ok(mut encoded) => {
                encoded.shrink_to_fit();
                config.services = Vec::new();
                config.endpoint_slices = Vec::new();
                debug!(bytes = encoded.len(), took = ?encoding.elapsed(), "configuration kept");
                Self {
                    snapshot,
                    encoded: Some(encoded),
                    standing: None,
                }
            }
            Err(error) => {
                warn!(%error, "the configuration's Services cannot be encoded: kept as they are");
                Self {
                    snapshot,
                    encoded: None,
                    standing: None,
                }
            }
        }
    }

    /// The snapshot as it was given to [`Kept::keep`] without a [`Standing`].
    fn restore(&self) -> Result<Snapshot, serde_json::Error> {
        let Some(encoded) = &self.encoded else {
            return Ok(self.snapshot.clone());
        };
        let decoding = std::time::Instant::now();
        let (services, endpoint_slices) =
            serde_json::from_slice::<(Vec<Service>, Vec<EndpointSlice>)>(encoded)?;
        debug!(took = ?decoding.elapsed(), "kept configuration decoded");
        let mut snapshot = self.snapshot.clone();
        snapshot.config.services = services;
        snapshot.config.endpoint_slices = endpoint_slices;
        Ok(snapshot)
    }

    /// Keeps `snapshot`, [restored](Kept::restore) from this one and planned again:
    /// its Services and EndpointSlices are encoded again only if `changed` (and not
    /// at all if the plan kept a [`Standing`]).
    fn keep_again(self, mut snapshot: Snapshot, changed: bool, standing: Option<Standing>) -> Self {
        match self.encoded {
            Some(encoded) if !changed && standing.is_none() => {
                snapshot.config.services = Vec::new();
                snapshot.config.endpoint_slices = Vec::new();
                debug!("configuration kept as it was");
                Self {
                    snapshot,
                    encoded: Some(encoded),
                    standing: None,
                }
            }
            _ => Self::keep(snapshot, standing),
        }
    }
}

/// The heartbeat of the datapath's fence, on while this node has peers to hand its
/// VIPs to: alone, it never fences.
#[derive(Default)]
struct Fencing {
    heartbeat: Option<Heartbeat>,
}

impl Fencing {
    /// Starts the heartbeat once the gossip runs with peers. Without membership the
    /// datapath never fences (also one adopted with a deadline). With membership but
    /// no gossip yet, an adopted deadline stays until the first configuration
    /// (`configured`) says whether there are peers.
    fn update(&mut self, datapath: &Datapath, gossip: &Gossip, configured: bool) {
        if self.heartbeat.is_some() {
            return;
        }
        match (&gossip.options, gossip.has_peers()) {
            (Some(membership), true) => {
                let started = datapath
                    .fence_control()
                    .map_err(anyhow::Error::from)
                    .and_then(|control| {
                        Ok(Heartbeat::start(
                            control,
                            membership.fence,
                            membership.fence.rejoin_hold(&membership.timings),
                        )?)
                    });
                match started {
                    Ok(heartbeat) => self.heartbeat = Some(heartbeat),
                    Err(e) => {
                        error!(
                            error = format!("{e:#}"),
                            "fencing not started: this datapath never fences"
                        );
                        Self::never(datapath);
                    }
                }
            }
            (Some(_), false) if !configured => {}
            _ => Self::never(datapath),
        }
    }

    fn never(datapath: &Datapath) {
        if let Err(e) = datapath.set_fence_deadline(None) {
            error!(error = %e, "cannot clear the fence deadline");
        }
    }

    /// Stops the heartbeat, leaving the deadline at `last` from now (`None`: never).
    fn stop(&mut self, last: Option<std::time::Duration>) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.stop(last);
        }
    }
}

/// The live set from the speakers' gossip, when membership is on.
struct Gossip {
    options: Option<MembershipOptions>,
    running: Option<membership_udp::Running>,
    /// This node's name and the address it gossips from, once started.
    me: Option<(String, SocketAddr)>,
    /// Whether the live set counts yet: the cluster was heard from, the join grace
    /// has passed, or there is nobody to hear from.
    counts: bool,
    grace_until: Option<tokio::time::Instant>,
    /// Whether it runs with a peer other than this node.
    peers: bool,
    /// Kubernetes mode: this node's speaker Pod has no IP yet (said once).
    said_waiting: bool,
}

impl Gossip {
    fn new(options: &SpeakerOptions) -> anyhow::Result<Self> {
        let mut gossip = Self {
            options: options.membership.clone(),
            running: None,
            me: None,
            counts: false,
            grace_until: None,
            peers: false,
            said_waiting: false,
        };
        // Standalone mode with --peer: started at once. Otherwise the peers come
        // with the first configuration (the file's Nodes, the speaker Pods).
        if let (Some(membership), SourceOptions::File { .. }) =
            (&options.membership, &options.source)
            && let Some(first) = membership.peers.first()
        {
            let ip = match membership.advertise {
                Some(ip) => ip,
                None => membership_udp::local_address_towards(*first)
                    .with_context(|| format!("finding this node's address towards {first}"))?,
            };
            gossip.start(
                &options.node_name,
                SocketAddr::new(ip, membership.port),
                membership.peers.clone(),
            )?;
        }
        Ok(gossip)
    }

    fn start(
        &mut self,
        node: &str,
        advertise: SocketAddr,
        peers: Vec<SocketAddr>,
    ) -> anyhow::Result<()> {
        let Some(options) = &self.options else {
            return Ok(());
        };
        let has_peers = peers_besides(&peers, advertise);
        let running = membership_udp::start(membership_udp::UdpOptions {
            node_name: node.into(),
            advertise,
            peers,
            timings: options.timings,
            key: options.key.clone(),
        })
        .with_context(|| format!("membership: binding UDP port {}", options.port))?;
        self.running = Some(running);
        self.me = Some((node.into(), advertise));
        self.grace_until = Some(tokio::time::Instant::now() + JOIN_GRACE);
        self.peers = has_peers;
        // Alone, there is nobody to wait for.
        self.counts = !has_peers;
        Ok(())
    }

    /// Whether the gossip runs with somebody to hand VIPs over to.
    fn has_peers(&self) -> bool {
        self.running.is_some() && self.peers
    }

    /// Takes the peers a snapshot brings: the speaker Pods (Kubernetes mode), or the
    /// file's Nodes (standalone mode without --peer, once).
    fn follow(&mut self, snapshot: &Snapshot, node: &str) {
        match &snapshot.speakers {
            None => self.start_from(&snapshot.config, node),
            Some(speakers) => self.follow_speakers(speakers, node),
        }
    }

    /// Kubernetes mode: the speaker Pods are the peers, and follow them as they come
    /// and go; this node's Pod IP is its address unless --membership-bind-addr says.
    fn follow_speakers(&mut self, speakers: &[SpeakerAddress], node: &str) {
        let Some(options) = &self.options else {
            return;
        };
        let port = options.port;
        let mut peers = peers::addresses(speakers, port);
        peers.extend(options.peers.iter().copied());
        if let (Some(running), Some((_, me))) = (&self.running, &self.me) {
            self.peers = peers_besides(&peers, *me);
            running.set_peers(peers);
            return;
        }
        let Some(ip) = options
            .advertise
            .or_else(|| peers::address_of(speakers, node))
        else {
            if !self.said_waiting {
                warn!(node = %printable(node), "membership: no --membership-bind-addr (METALLB_ML_BIND_ADDR), and no speaker Pod of this node with an IP yet: not started; the Ready speaker Pods are the live nodes meanwhile");
                self.said_waiting = true;
            }
            return;
        };
        if let Err(e) = self.start(node, SocketAddr::new(ip, port), peers) {
            error!(error = format!("{e:#}"), "membership not started");
        }
    }

    /// Without --peer, the peers are the file's Nodes: started at the first
    /// configuration that names this node with an InternalIP.
    fn start_from(&mut self, config: &Config, node: &str) {
        let Some(options) = &self.options else {
            return;
        };
        if self.running.is_some() {
            return;
        }
        let speakers = peers::from_nodes(&config.nodes);
        let Some(me) = options
            .advertise
            .or_else(|| peers::address_of(&speakers, node))
        else {
            warn!(node = %printable(node), "membership: no --peer, and the file has no Node of this name with an InternalIP: not started");
            return;
        };
        let port = options.port;
        let peers = peers::addresses(&speakers, port);
        if let Err(e) = self.start(node, SocketAddr::new(me, port), peers) {
            error!(error = format!("{e:#}"), "membership not started");
        }
    }

    /// Waits for a change that moves the election: the live set, or the end of the
    /// join grace. An error when the membership thread ended on its own (it
    /// panicked): this node no longer answers its peers' probes, so they take its
    /// VIPs, and it must stop answering them.
    async fn changed(&mut self) -> Result<(), GossipEnded> {
        let Some(running) = &mut self.running else {
            return std::future::pending().await;
        };
        live_changed(&mut running.live, &mut self.counts, self.grace_until).await
    }

    /// Gives `snapshot` the live nodes of the gossip; false while they do not count
    /// yet (a speaker that has not heard the cluster takes nothing, and one that
    /// adopted a datapath leaves it as it is: nothing is to be applied). Without the
    /// gossip, the snapshot keeps its own (every Node of the file, or the Ready
    /// speaker Pods).
    fn with_live(&self, snapshot: &mut Snapshot) -> bool {
        let Some(running) = &self.running else {
            return true;
        };
        if !self.counts {
            return false;
        }
        let live: Live = running.live.borrow().clone();
        let mut nodes = live.nodes;
        if live.outvoted
            && let Some((me, _)) = &self.me
        {
            nodes.remove(me);
        }
        snapshot.election.live_nodes = Some(nodes);
        true
    }

    async fn leave(&mut self) {
        if let Some(running) = self.running.take() {
            running.leave().await;
        }
    }

    async fn announce_restart(&mut self, grace: std::time::Duration) {
        if let Some(running) = self.running.take() {
            running.announce_restart(grace).await;
        }
    }
}

/// Waits for a change of the live set, or, while it does not count yet (`counts`
/// false), for the end of the join grace; `counts` turns true at that end, or once
/// the cluster was heard from (or outvoted this node). An error when the live set
/// closed: the membership thread ended (it keeps the sender until it returns or
/// unwinds), in the grace or after it.
async fn live_changed(
    live: &mut tokio::sync::watch::Receiver<Live>,
    counts: &mut bool,
    grace_until: Option<tokio::time::Instant>,
) -> Result<(), GossipEnded> {
    if !*counts {
        let grace = grace_until.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            changed = live.changed() => {
                changed.map_err(|_| GossipEnded)?;
            }
            () = tokio::time::sleep_until(grace) => {
                warn!("membership: no peer heard from; the peers are taken as gone");
                *counts = true;
            }
        }
        let live = live.borrow();
        if live.joined || live.outvoted {
            *counts = true;
        }
        return Ok(());
    }
    live.changed().await.map_err(|_| GossipEnded)
}

/// The membership thread ended without being asked to.
#[derive(Debug, PartialEq, Eq)]
struct GossipEnded;

/// Whether `peers` names a speaker other than the one at `me`.
fn peers_besides(peers: &[SocketAddr], me: SocketAddr) -> bool {
    peers.iter().any(|p| *p != me)
}

/// What to do with the datapath on stop. Without --keep-datapath it goes; with it, a
/// standalone speaker leaves it for the next one, and a Kubernetes speaker asks the API
/// whether it is being replaced (keep) or uninstalled (remove).
async fn stop_decision(
    keep_datapath: bool,
    lookup: Option<(kube::Client, Option<String>)>,
    namespace: &str,
) -> StopDecision {
    let decided = |action, reason: &str| StopDecision {
        action,
        reason: reason.into(),
    };
    match (keep_datapath, lookup) {
        (false, _) => decided(StopAction::Remove, "no --keep-datapath"),
        (true, None) => decided(StopAction::Keep, "--keep-datapath"),
        (true, Some((_, None))) => decided(
            StopAction::Keep,
            "--keep-datapath; without --pod-name an uninstall cannot be told from an update",
        ),
        (true, Some((client, Some(pod)))) => lifecycle::on_stop(&client, namespace, &pod).await,
    }
}

/// The standalone source: a configuration file, read again when it changes (directory
/// watch) and on SIGHUP.
struct FileSource {
    path: PathBuf,
    max_bytes: u64,
    namespace: String,
    updates: mpsc::Sender<Update>,
    changes: mpsc::Receiver<()>,
    _watcher: notify::RecommendedWatcher,
    /// The SHA-256 of the file as last read: unchanged content is not applied again
    /// (the text itself is not kept: 21 MiB for 100,000 Services).
    last_digest: Option<[u8; 32]>,
    /// The last read handed over: its number, and what it kept (each document's
    /// digest and what it gave, its Services packed: about 75 bytes a document), to
    /// tell the next one which Services changed and to parse only the documents that
    /// changed.
    handed: (u64, Option<file::Kept>),
}

impl FileSource {
    fn new(
        path: PathBuf,
        max_bytes: u64,
        namespace: String,
        updates: mpsc::Sender<Update>,
    ) -> anyhow::Result<Self> {
        let (changed, changes) = mpsc::channel(16);
        let watcher = watch(&path, changed)?;
        Ok(Self {
            path,
            max_bytes,
            namespace,
            updates,
            changes,
            _watcher: watcher,
            last_digest: None,
            handed: (0, None),
        })
    }

    async fn follow(mut self) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                warn!(%error, "no SIGHUP handler: only file changes reload");
                None
            }
        };
        if !self.reload(true).await {
            error!(file = %shown_path(&self.path), "no valid configuration yet: waiting for the file to be fixed");
        }
        info!(file = %shown_path(&self.path), "following the configuration file; SIGHUP or a file change reloads");
        loop {
            let hangup_signal = async {
                match hangup.as_mut() {
                    Some(hangup) => hangup.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(()) = self.changes.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    while self.changes.try_recv().is_ok() {}
                    self.reload(false).await;
                }
                _ = hangup_signal => {
                    info!("SIGHUP: reloading");
                    self.reload(true).await;
                }
                () = self.updates.closed() => return,
            }
        }
    }

    /// Reads the file and hands it over, unless it is what was read last time and
    /// `force` is false (directory events also come from other files, and from renames
    /// around ours). Returns whether a valid configuration serves.
    async fn reload(&mut self, force: bool) -> bool {
        let reading = std::time::Instant::now();
        let text = match off_the_worker(|| read_config(&self.path, self.max_bytes)) {
            Ok(text) => text,
            Err(e) => {
                error!("{e}; the last good configuration keeps serving");
                // Read again in full next time, even if the text is what it was.
                self.last_digest = None;
                let _ = self.updates.send(Update::Stale).await;
                return false;
            }
        };
        let digest: [u8; 32] = off_the_worker(|| sha2::Sha256::digest(text.as_bytes()).into());
        if !force && self.last_digest == Some(digest) {
            return true;
        }
        let bytes = text.len();
        let checked = off_the_worker(|| {
            check_config(
                text,
                &self.path,
                &self.namespace,
                self.handed.1.as_ref(),
                true,
            )
        });
        let parsed = checked.as_ref().ok().and_then(|checked| checked.parsed);
        debug!(bytes, took = ?reading.elapsed(), documents_parsed = ?parsed, "configuration file read and checked");
        let checked_at = std::time::Instant::now();
        let checked_clock = (std::thread::current().id(), ThreadClock::now());
        self.last_digest = Some(digest);
        match checked {
            Ok(Checked {
                config,
                kept,
                changes,
                ..
            }) => {
                let last = self.handed.0;
                let changes = changes.map(|changes| (last, changes));
                self.handed = (last + 1, kept);
                let snapshot = Snapshot {
                    config,
                    addresses: AddressSource::Allocate,
                    election: ElectionContext::default(),
                    speakers: None,
                    read: SourceRead {
                        number: last + 1,
                        changes,
                    },
                };
                let _ = self.updates.send(Update::Apply(Box::new(snapshot))).await;
                // The task may have moved to another worker thread at the send: a
                // thread's clock is only compared with its own.
                let waited_for_cpu = (checked_clock.0 == std::thread::current().id())
                    .then(|| waited_since(checked_clock.1))
                    .flatten()
                    .map(|t| t.waited_for_cpu);
                match waited_for_cpu {
                    Some(waited) => {
                        debug!(took = ?checked_at.elapsed(), waited_for_cpu = ?waited, "configuration sent")
                    }
                    None => debug!(took = ?checked_at.elapsed(), "configuration sent"),
                }
                true
            }
            Err(issues) => {
                for issue in issues {
                    error!(file = %shown_path(&self.path), "{issue}");
                }
                error!(file = %shown_path(&self.path), "configuration refused: the last good one keeps serving");
                let _ = self.updates.send(Update::Stale).await;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{file::parse, validate};

    /// The file source's read and check of a large file blocks for seconds: the
    /// runtime's timers and its other tasks must go on meanwhile. On one worker, the
    /// blocking work waits for a task that needs a timer: it would wait forever (here
    /// until the deadline) if the worker were not handed over.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn blocking_work_off_the_worker_leaves_timers_and_tasks_running() {
        let (tx, rx) = std::sync::mpsc::channel();
        let blocked =
            tokio::spawn(
                async move { off_the_worker(|| rx.recv_timeout(Duration::from_secs(30))) },
            );
        // Spawned after: the worker is taken by the blocking task by then or soon.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = tx.send("the timer fired");
        });
        let got = blocked.await.expect("the blocking task ends");
        assert_eq!(got, Ok("the timer fired"));
    }

    #[test]
    fn blocking_work_outside_a_multi_threaded_runtime_just_runs() {
        assert_eq!(off_the_worker(|| 7), 7);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        assert_eq!(runtime.block_on(async { off_the_worker(|| 8) }), 8);
    }

    #[test]
    fn a_speaker_whose_membership_thread_ended_fences_at_once_tells_nobody_and_fails() {
        let grace = Some(Duration::from_secs(10));
        let farewell = |announce_restart, fence_in, leave, failed| Farewell {
            announce_restart,
            fence_in,
            leave,
            failed,
        };
        // A planned restart: the peers hear of it, the datapath answers through the
        // grace.
        assert_eq!(
            Farewell::of(StopAction::Keep, grace, false),
            farewell(grace, grace, false, false)
        );
        // The thread ended: its peers take its VIPs; the kept datapath stops answering
        // now, nothing is announced (a restart notice would keep its VIPs with a node
        // that no longer answers probes), and the speaker fails.
        assert_eq!(
            Farewell::of(StopAction::Keep, grace, true),
            farewell(None, Some(Duration::ZERO), false, true)
        );
        // A removed datapath needs no fence; the leave goes out once it is removed.
        assert_eq!(
            Farewell::of(StopAction::Remove, grace, false),
            farewell(None, None, true, false)
        );
        assert_eq!(
            Farewell::of(StopAction::Remove, grace, true),
            farewell(None, None, false, true)
        );
        // Without membership a kept datapath never fences.
        assert_eq!(
            Farewell::of(StopAction::Keep, None, false),
            farewell(None, None, false, false)
        );
    }

    /// The seam under the speaker's loop: a closed live set (the membership thread
    /// ended) is an error at once, in the join grace or after it, where a change or
    /// the grace's end is not.
    #[tokio::test]
    async fn the_end_of_the_membership_thread_is_an_error_in_the_grace_and_after() {
        let far = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
        let within = Duration::from_secs(10);
        let (sender, mut live) = tokio::sync::watch::channel(Live::default());
        let mut counts = false;
        // A change in the grace: the cluster was heard from, the live set counts.
        sender.send_replace(Live {
            nodes: BTreeSet::from(["node-a".to_owned(), "node-b".to_owned()]),
            joined: true,
            outvoted: false,
        });
        let changed = tokio::time::timeout(within, live_changed(&mut live, &mut counts, far));
        assert_eq!(changed.await.expect("at once"), Ok(()));
        assert!(counts);
        // The grace's end, with nobody heard from: Ok, and the live set counts.
        let (sender, mut live) = tokio::sync::watch::channel(Live::default());
        let mut counts = false;
        let now = Some(tokio::time::Instant::now());
        let ended = tokio::time::timeout(within, live_changed(&mut live, &mut counts, now));
        assert_eq!(ended.await.expect("at once"), Ok(()));
        assert!(counts);
        // The thread ends after the grace: an error.
        drop(sender);
        let closed = tokio::time::timeout(within, live_changed(&mut live, &mut counts, now));
        assert_eq!(closed.await.expect("at once"), Err(GossipEnded));
        // It ends in the grace (an hour ahead): an error at once, not at its end.
        let (sender, mut live) = tokio::sync::watch::channel(Live::default());
        let mut counts = false;
        drop(sender);
        let closed = tokio::time::timeout(within, live_changed(&mut live, &mut counts, far));
        assert_eq!(closed.await.expect("at once"), Err(GossipEnded));
        assert!(!counts);
    }

    #[test]
    fn previous_addresses_become_the_status_of_services_without_one() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: LoadBalancer}\n\
                    ---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {type: LoadBalancer}\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.9}]}}\n";
        let mut config = validate(&parse(text).expect("parses"), &ValidateOptions::default())
            .config
            .expect("valid");
        let key = |name: &str| ServiceKey {
            namespace: "default".into(),
            name: name.into(),
        };
        let previous = BTreeMap::from([
            (
                key("a"),
                vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            ),
            (key("b"), vec!["192.0.2.2".parse().unwrap()]),
        ]);
        // Only `a` had no status.
        assert_eq!(with_previous_status(&mut config, &previous), 1);
        assert_eq!(with_previous_status(&mut config, &previous), 0);
        let ingress = |i: usize| {
            config.services[i]
                .status
                .as_ref()
                .unwrap()
                .load_balancer
                .as_ref()
                .unwrap()
                .ingress
                .clone()
                .unwrap()
        };
        let ips = |i: usize| {
            ingress(i)
                .iter()
                .map(|x| x.ip.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(ips(0), ["192.0.2.1", "2001:db8::1"]);
        // A status in the file wins over memory.
        assert_eq!(ips(1), ["192.0.2.9"]);
    }

    /// The kept snapshot holds its Services and EndpointSlices as text, and gives back
    /// exactly what it was given (the statuses a plan wrote too).
    #[test]
    fn a_kept_snapshot_is_restored_as_it_was() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a, labels: {app: x}, annotations: {metallb.io/loadBalancerIPs: 192.0.2.1}}\n\
                    spec: {type: LoadBalancer, externalTrafficPolicy: Local, selector: {app: x}, ports: [{port: 80, targetPort: http, protocol: TCP}]}\n\
                    ---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {type: LoadBalancer}\n\
                    ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: a-1, labels: {kubernetes.io/service-name: a}}\n\
                    addressType: IPv4\nendpoints: [{addresses: [10.1.0.1], nodeName: node-1, conditions: {ready: true}}]\n";
        let mut config = validate(&parse(text).expect("parses"), &ValidateOptions::default())
            .config
            .expect("valid");
        let previous = BTreeMap::from([(
            ServiceKey {
                namespace: "default".into(),
                name: "b".into(),
            },
            vec!["192.0.2.2".parse().unwrap()],
        )]);
        with_previous_status(&mut config, &previous);
        let (services, slices) = (config.services.clone(), config.endpoint_slices.clone());
        assert_eq!((services.len(), slices.len()), (2, 1));
        let kept = Kept::keep(
            Snapshot {
                config,
                addresses: AddressSource::Allocate,
                election: ElectionContext::default(),
                speakers: None,
                read: SourceRead::default(),
            },
            None,
        );
        assert!(kept.snapshot.config.services.is_empty());
        assert!(kept.snapshot.config.endpoint_slices.is_empty());
        let restored = kept.restore().expect("decodes");
        assert_eq!(restored.config.services, services);
        assert_eq!(restored.config.endpoint_slices, slices);
        assert_eq!(restored.addresses, AddressSource::Allocate);
        // Planned again without a change: the same text is kept, not encoded again.
        let encoded = kept.encoded.clone();
        let kept = kept.keep_again(restored, false, None);
        assert_eq!(kept.encoded, encoded);
        assert!(kept.snapshot.config.services.is_empty());
        // Changed: encoded again, and restored with the change.
        let mut changed = kept.restore().expect("decodes");
        changed.config.services[1].status = None;
        let kept = kept.keep_again(changed, true, None);
        assert_ne!(kept.encoded, encoded);
        let restored = kept.restore().expect("decodes");
        assert_eq!(restored.config.services[0], services[0]);
        assert_eq!(restored.config.services[1].status, None);
    }

    /// With what its plan kept for the election ([`Standing`]), a snapshot keeps
    /// neither its Services nor their text; without (BGP), it keeps their text.
    #[test]
    fn a_snapshot_kept_with_its_standing_keeps_no_services() {
        let text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/29]}\n\
                    ---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: LoadBalancer}\n";
        let config = validate(&parse(text).expect("parses"), &ValidateOptions::default())
            .config
            .expect("valid");
        let (planned, standing) = crate::plan::plan_keeping(&config, &PlanOptions::default(), &[]);
        assert_eq!(planned.services.len(), 1);
        let snapshot = Snapshot {
            config,
            addresses: AddressSource::Allocate,
            election: ElectionContext::default(),
            speakers: None,
            read: SourceRead::default(),
        };
        let mut kept = Kept::keep(snapshot.clone(), standing);
        assert!(kept.snapshot.config.services.is_empty());
        assert!(kept.encoded.is_none());
        let again = kept
            .standing
            .as_mut()
            .expect("kept")
            .plan(&PlanOptions::default(), &[]);
        assert_eq!(again.services, planned.services);
        let kept = Kept::keep(snapshot, None);
        assert!(kept.snapshot.config.services.is_empty());
        assert!(kept.encoded.is_some());
    }

    /// Services are allocated in the file's order, but with the last plan's
    /// addresses as their status they come first and keep them: a service added at
    /// the top of the file takes nobody's address, nor does one asking for a taken
    /// address.
    #[test]
    fn an_edit_of_the_file_moves_nobody() {
        let pool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/29]}\n";
        let service = |name: &str, extra: &str| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}{extra}}}\nspec: {{type: LoadBalancer}}\n"
            )
        };
        let config = |text: &str| {
            validate(&parse(text).expect("parses"), &ValidateOptions::default())
                .config
                .expect("valid")
        };
        let ips = |decisions: &BTreeMap<ServiceKey, Decision>| -> BTreeMap<String, String> {
            decisions
                .iter()
                .map(|(key, decision)| {
                    let shown = match decision {
                        Decision::Allocated(a) => format!("{:?}", a.ips),
                        other => format!("{other:?}"),
                    };
                    (key.name.clone(), shown)
                })
                .collect()
        };
        let before = crate::allocator::allocate(
            &config(&(pool.to_owned() + &service("b", "") + &service("a", ""))),
            &AllocatorOptions::default(),
        )
        .decisions;
        assert_eq!(
            ips(&before),
            BTreeMap::from([
                ("a".into(), "[192.0.2.1]".into()),
                ("b".into(), "[192.0.2.0]".into()),
            ])
        );
        let previous: BTreeMap<ServiceKey, Vec<IpAddr>> = before
            .iter()
            .filter_map(|(key, decision)| match decision {
                Decision::Allocated(a) => Some((key.clone(), a.ips.clone())),
                _ => None,
            })
            .collect();
        let edited = pool.to_owned()
            + &service("new", "")
            + &service(
                "named",
                ", annotations: {metallb.io/loadBalancerIPs: 192.0.2.0}",
            )
            + &service("b", "")
            + &service("a", "");
        let mut edited = config(&edited);
        with_previous_status(&mut edited, &previous);
        let after = crate::allocator::allocate(&edited, &AllocatorOptions::default()).decisions;
        let after = ips(&after);
        assert_eq!(after["a"], "[192.0.2.1]");
        assert_eq!(after["b"], "[192.0.2.0]");
        assert_eq!(after["new"], "[192.0.2.2]");
        assert!(
            after["named"].contains("192.0.2.0 is in use by default/b"),
            "{after:?}"
        );
    }
}
