//! The XDP datapath: loads the responder, pins its maps, attaches it to interfaces and
//! keeps its VIP maps equal to a desired set, by diff.

pub mod bpffs;
pub mod capabilities;
pub mod cleanup;
pub mod frames;
pub mod iface;
pub mod kernel;
pub mod links;
pub mod maps;
pub mod pin_lock;
pub mod userspace;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader, include_bytes_aligned,
    programs::{
        ProgramError, TestRun as _, TestRunOptions, Xdp,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use metallb_common::{
    DEFAULT_MAX_VIPS, DEFAULT_PIN_DIR, FENCE_PROGRAM_NAME, PROGRAM_NAME, VipCounters, map_names,
};
use tracing::{debug, info, warn};

use self::{
    bpffs::{BPFFS_ROOT, ensure_bpffs},
    capabilities::{Denied, Step},
    iface::{Interface, InterfaceError, MacAddr},
    maps::{
        CounterView, FenceControl, Maps, SyncTimes, TableChanges, VipConfig, VipKey, VipRecord,
    },
    pin_lock::{PinDirLock, PinLockError},
    userspace::{SocketError, Userspace},
};

/// The responder object built from `metallb-ebpf` by this crate's build script.
pub static RESPONDER_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/metallb"));

/// Floor programs (`floor_pass`, `floor_tx`) for benchmarks and native-mode labs.
pub static HELPERS_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/helpers"));

/// How the program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum XdpMode {
    /// In the driver (fastest). Falls back to generic, with a warning, where the
    /// driver cannot run XDP.
    Native,
    /// On the generic (SKB) path: works on every interface, slower.
    Generic,
}

impl XdpMode {
    fn aya(self) -> aya::programs::XdpMode {
        match self {
            XdpMode::Native => aya::programs::XdpMode::Driver,
            XdpMode::Generic => aya::programs::XdpMode::Skb,
        }
    }
}

impl std::fmt::Display for XdpMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        })
    }
}

/// Which datapath answers on an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum DatapathKind {
    /// The XDP program; fails where it cannot attach.
    Xdp,
    /// An AF_PACKET socket per interface, in this process: slower, and it cannot
    /// drop what the kernel answers (suppression needs arp_ignore/strictARP).
    Userspace,
    /// XDP, and the userspace datapath where the kernel or driver cannot run XDP
    /// (never where it is refused for want of a capability).
    #[default]
    Auto,
}

impl std::fmt::Display for DatapathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DatapathKind::Xdp => "xdp",
            DatapathKind::Userspace => "userspace",
            DatapathKind::Auto => "auto",
        })
    }
}

/// What answers on an attached interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Responder {
    Xdp(XdpMode),
    Userspace,
}

impl std::fmt::Display for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Responder::Xdp(mode) => write!(f, "XDP ({mode})"),
            Responder::Userspace => f.write_str("userspace"),
        }
    }
}

/// Why `--datapath auto` may fall back from `error`: the kernel or driver cannot run
/// XDP there. `None` for anything else, refusals for want of a capability first:
/// the userspace datapath cannot suppress, so a silent fallback would let the
/// kernel answer for VIPs another node announces.
pub fn xdp_unsupported(error: &DatapathError) -> Option<String> {
    use nix::errno::Errno;
    let DatapathError::Attach { source, .. } = error else {
        return None;
    };
    match capabilities::errno_in(source)? {
        errno @ (Errno::EOPNOTSUPP | Errno::EINVAL | Errno::E2BIG) => Some(format!(
            "the kernel or driver cannot run XDP here ({errno:?}): {error}"
        )),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error(
        "{dir} is not on a bpf filesystem, and not under {BPFFS_ROOT}, where the speaker mounts one when there is none; mount one with `mount -t bpf bpf DIR`, or choose a pin directory under {BPFFS_ROOT}"
    )]
    NotBpffs { dir: PathBuf },
    #[error(
        "pin directory {dir} is on no bpf filesystem, and mounting one on {root} failed ({errno}); mount one there with `mount -t bpf bpf {root}`"
    )]
    MountBpffs {
        dir: PathBuf,
        root: PathBuf,
        errno: nix::Error,
    },
    /// The kernel refused a step for want of a capability: the error names it.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The pin directory or a pin is not this process's to use: file permissions,
    /// not capabilities (the speaker runs without CAP_DAC_OVERRIDE).
    #[error(
        "{action} was refused ({errno:?}): {path} belongs to uid {owner} (mode {mode:04o}) and this process runs as uid {uid}; give the speaker a pin directory of its own (`install -d -o {uid} -m 0700 DIR`), or remove what a speaker of another user left there (`metallb cleanup --pin-dir DIR`)"
    )]
    PinAccess {
        action: String,
        errno: nix::errno::Errno,
        path: PathBuf,
        owner: u32,
        mode: u32,
        uid: u32,
    },
    #[error(transparent)]
    PinLock(#[from] PinLockError),
    #[error("max_vips {0}: must be 1 to {MAX_VIPS_LIMIT}")]
    MaxVips(u32),
    #[error("{op} the grace-period map (an array of maps): {source}")]
    Barrier {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("pin directory {dir}: {source}")]
    PinDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}: {reason}")]
    Pin {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("loading the XDP object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("loading program {PROGRAM_NAME} into the kernel: {0}")]
    Program(#[source] ProgramError),
    #[error("the XDP object has no map {name}")]
    MapMissing { name: &'static str },
    #[error(
        "pinned map {path} does not fit this version ({detail}); stop the agent that uses it, or remove the pin"
    )]
    MapLayout { path: PathBuf, detail: String },
    #[error("opening pinned map {path}: {source}")]
    OpenPinned {
        path: PathBuf,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {name}: {op}: {source}")]
    Map {
        name: &'static str,
        op: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("counting CPUs: {0}")]
    Cpus(#[source] std::io::Error),
    #[error("mapping map {name} into memory: {source}")]
    Mmap {
        name: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error(
        "no room for VIP {} on ifindex {} (VLAN {}): the table holds {capacity} entries per address family; raise --max-vips",
        vip.addr, vip.ifindex, vip.vlan_id
    )]
    TableFull { vip: VipKey, capacity: u32 },
    #[error("the {family} index could not place every VIP within its probe limit")]
    IndexFull { family: &'static str },
    #[error("attaching XDP to {iface} in {mode} mode: {source}")]
    Attach {
        iface: String,
        mode: XdpMode,
        #[source]
        source: ProgramError,
    },
    #[error("userspace datapath on {iface}: {source}")]
    Userspace {
        iface: String,
        #[source]
        source: SocketError,
    },
    #[error("the userspace datapath is not running")]
    NoUserspace,
    #[error("detaching XDP from {iface}: {source}")]
    Detach {
        iface: String,
        #[source]
        source: ProgramError,
    },
    #[error(transparent)]
    Interface(#[from] InterfaceError),
    #[error("test run: {0}")]
    TestRun(#[source] ProgramError),
    #[error("the maps were opened for inspection only")]
    ReadOnly,
    #[error("arming the fence timer: {0}")]
    FenceTimer(String),
}

/// The most VIPs per address family a datapath may be made for: two halves of tables
/// of twice as many cells (64 bytes each for IPv6) are 256 MiB, and cell indexes stay
/// far from overflowing 32 bits (at 2^30 they overflowed).
pub const MAX_VIPS_LIMIT: u32 = 1 << 20;

/// Where the maps are pinned and how big they may grow.
#[derive(Clone, Debug)]
pub struct DatapathOptions {
    pub pin_dir: PathBuf,
    /// VIP entries per address family; only used when the maps are created (adopted
    /// maps keep their size).
    pub max_vips: u32,
}

impl Default for DatapathOptions {
    fn default() -> Self {
        Self {
            pin_dir: PathBuf::from(DEFAULT_PIN_DIR),
            max_vips: DEFAULT_MAX_VIPS,
        }
    }
}

/// An interface the datapath answers on.
#[derive(Debug)]
pub struct Attachment {
    pub iface: Interface,
    /// What answers there: XDP in the mode actually in use (native may have fallen
    /// back to generic), or the userspace datapath.
    pub responder: Responder,
    /// The XDP link; none for the userspace datapath.
    link: Option<XdpLinkId>,
}

/// How an interface the program was attached to changed ([`Datapath::follow_interfaces`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterfaceChange {
    /// Deleted (perhaps re-created since, under another ifindex): its attachment went
    /// with it.
    Gone { old: Interface },
    /// Still there, with another name, MAC or state.
    Changed { old: Interface, new: Interface },
}

/// What one [`Datapath::sync`] changed.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub added: Vec<VipKey>,
    pub changed: Vec<VipKey>,
    pub removed: Vec<VipKey>,
    /// Entries that answer now and did not before, or with another MAC: the agent
    /// sends gratuitous announcements for these.
    pub now_answering: Vec<VipKey>,
    /// What could not be done; every other change was applied.
    pub errors: Vec<DatapathError>,
    /// Whether the tables hold exactly what was asked for (see
    /// [`maps::TableChanges::complete`]): if not, the next change is a full sync.
    pub complete: bool,
    /// Where the time of the tables' part went.
    pub took: SyncTimes,
}

/// The loaded responder, its maps and its attachments.
pub struct Datapath {
    ebpf: Ebpf,
    maps: Maps,
    pin_dir: PathBuf,
    attachments: BTreeMap<u32, Attachment>,
    /// The solicited-node groups the installed IPv6 VIPs need.
    groups: Groups,
    /// The userspace datapath, once anything asked for it.
    userspace: Option<Userspace>,
    /// Pin every link as soon as it is made ([`Datapath::pin_links_at_attach`]).
    pin_links: bool,
    /// Dropped last: the next agent may take the directory only once this one is done
    /// with it.
    _lock: PinDirLock,
}

impl Datapath {
    /// Loads the program and creates its maps, pinned under `options.pin_dir`. Maps
    /// already pinned there (left by an earlier agent) are adopted with their entries.
    /// When loading fails, what this call created (pins, directories) is removed
    /// again; what it found is left as it was. Another agent on the same directory
    /// is refused ([`pin_lock`]).
    pub fn load(options: &DatapathOptions) -> Result<Self, DatapathError> {
        Self::load_waiting(options, Duration::ZERO)
    }

    /// [`Datapath::load`], waiting up to `lock_wait` for another agent to let go of
    /// the pin directory.
    pub fn load_waiting(
        options: &DatapathOptions,
        lock_wait: Duration,
    ) -> Result<Self, DatapathError> {
        if !(1..=MAX_VIPS_LIMIT).contains(&options.max_vips) {
            return Err(DatapathError::MaxVips(options.max_vips));
        }
        let pin_dir = options.pin_dir.clone();
        ensure_bpffs(&pin_dir)?;
        let new_dirs: Vec<PathBuf> = pin_dir
            .ancestors()
            .take_while(|dir| !dir.exists())
            .map(Path::to_owned)
            .collect();
        std::fs::create_dir_all(&pin_dir).map_err(|source| {
            pin_refusal(
                &pin_dir,
                || format!("creating pin directory {}", pin_dir.display()),
                source,
                |source| DatapathError::PinDir {
                    dir: pin_dir.clone(),
                    source,
                },
            )
        })?;
        let lock = match PinDirLock::acquire(&pin_dir, lock_wait) {
            Ok(lock) => lock,
            Err(error) => {
                // Children first; a directory that is not empty stays.
                for dir in &new_dirs {
                    let _ = std::fs::remove_dir(dir);
                }
                return Err(error.into());
            }
        };
        let found: Vec<&str> = map_names::ALL
            .iter()
            .copied()
            .filter(|name| pin_dir.join(name).exists())
            .collect();
        let loaded = Self::load_in(pin_dir.clone(), options.max_vips, lock);
        if loaded.is_err() {
            for name in map_names::ALL.iter().filter(|name| !found.contains(name)) {
                let _ = std::fs::remove_file(pin_dir.join(name));
            }
            // Children first; a directory that is not empty stays.
            for dir in &new_dirs {
                let _ = std::fs::remove_dir(dir);
            }
        }
        loaded
    }

    fn load_in(pin_dir: PathBuf, max_vips: u32, lock: PinDirLock) -> Result<Self, DatapathError> {
        // A pin left by an incompatible version would be reused as is: refuse it first.
        Maps::check_existing_pins(&pin_dir)?;
        let mut ebpf = load_object(RESPONDER_OBJECT, &pin_dir, max_vips, true)?;
        responder_mut(&mut ebpf)?.load().map_err(|error| {
            or_denied(
                Step::LoadProgram,
                || format!("loading the XDP program {PROGRAM_NAME}"),
                error,
                DatapathError::Program,
            )
        })?;
        let maps = Maps::from_ebpf(&mut ebpf, &pin_dir)?;
        arm_fence_timer(&mut ebpf)?;
        let adopted = maps.installed().len();
        if adopted > 0 {
            info!(entries = adopted, pin_dir = %pin_dir.display(), "adopted pinned VIP entries");
        }
        Ok(Self {
            groups: Groups::of(maps.installed().keys()),
            ebpf,
            maps,
            pin_dir,
            attachments: BTreeMap::new(),
            userspace: None,
            pin_links: false,
            _lock: lock,
        })
    }

    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Answers on `ifname` with the datapath `kind` asks for: XDP in `mode` (see
    /// [`Datapath::attach`]), the userspace datapath, or XDP and the userspace one
    /// where the kernel or driver cannot run XDP ([`xdp_unsupported`], logged with
    /// its reason). What answers is returned.
    pub fn attach_with(
        &mut self,
        ifname: &str,
        mode: XdpMode,
        kind: DatapathKind,
    ) -> Result<Responder, DatapathError> {
        match kind {
            DatapathKind::Xdp => self.attach(ifname, mode).map(Responder::Xdp),
            DatapathKind::Userspace => self.serve_userspace(ifname),
            DatapathKind::Auto => match self.attach(ifname, mode) {
                Ok(mode) => Ok(Responder::Xdp(mode)),
                Err(error) => match xdp_unsupported(&error) {
                    Some(reason) => {
                        warn!(iface = ifname, %reason, "XDP unsupported: falling back to the userspace datapath");
                        self.serve_userspace(ifname)
                    }
                    None => Err(error),
                },
            },
        }
    }

    /// Starts the userspace datapath (without any interface yet): for tests of its
    /// answers ([`Datapath::userspace_test_run`]).
    pub fn enable_userspace(&mut self) -> Result<&mut Userspace, DatapathError> {
        if self.userspace.is_none() {
            self.userspace = Some(Userspace::new(&self.pin_dir, self.maps.live_entries())?);
        }
        self.userspace.as_mut().ok_or(DatapathError::NoUserspace)
    }

    /// Answers on `ifname` from an AF_PACKET socket.
    fn serve_userspace(&mut self, ifname: &str) -> Result<Responder, DatapathError> {
        let iface = iface::by_name(ifname)?;
        if let Some(existing) = self.attachments.get(&iface.ifindex) {
            return Ok(existing.responder);
        }
        self.enable_userspace()?.serve(ifname, iface.ifindex)?;
        warn!(
            iface = ifname,
            "userspace datapath: it cannot drop what the kernel answers; for VIPs another node announces, keep the kernel quiet with net.ipv4.conf.all.arp_ignore=1 (kube-proxy IPVS: strictARP: true)"
        );
        info!(
            iface = ifname,
            ifindex = iface.ifindex,
            "userspace responder answering"
        );
        self.attachments.insert(
            iface.ifindex,
            Attachment {
                iface,
                responder: Responder::Userspace,
                link: None,
            },
        );
        Ok(Responder::Userspace)
    }

    /// What the userspace datapath does with `frame` arriving on `ifindex` (as
    /// [`Datapath::test_run`] for the program): the verdict the program would give,
    /// and the reply, else the frame untouched. Counted as a received frame is.
    pub fn userspace_test_run(
        &self,
        frame: &[u8],
        ifindex: u32,
    ) -> Result<(u32, Vec<u8>), DatapathError> {
        let userspace = self.userspace.as_ref().ok_or(DatapathError::NoUserspace)?;
        let response = userspace.test_run(frame, ifindex)?;
        let verdict = response.verdict();
        Ok((verdict, response.reply.unwrap_or_else(|| frame.to_vec())))
    }

    /// Writes the userspace datapath's counts into the maps, so that what reads them
    /// next sees them.
    fn flush_userspace(&self) -> Result<(), DatapathError> {
        self.userspace.as_ref().map_or(Ok(()), Userspace::flush)
    }

    /// From now on every XDP link is pinned under `links/` as soon as it is made (and
    /// links taken over stay pinned), so that the program stays attached however this
    /// process ends, `kill -9` included: the next agent takes them over. For
    /// `--keep-datapath`. [`Datapath::detach`] and [`Datapath::shutdown`] unpin.
    pub fn pin_links_at_attach(&mut self) -> Vec<DatapathError> {
        self.pin_links = true;
        let mut errors = Vec::new();
        let ifindexes: Vec<u32> = self.attachments.keys().copied().collect();
        for ifindex in ifindexes {
            let Some(Attachment {
                iface,
                responder: Responder::Xdp(mode),
                link: Some(link),
            }) = self.attachments.remove(&ifindex)
            else {
                continue;
            };
            match self.pin_link(&iface.name, mode, link) {
                Ok(link) => {
                    self.attachments.insert(
                        ifindex,
                        Attachment {
                            iface,
                            responder: Responder::Xdp(mode),
                            link: Some(link),
                        },
                    );
                }
                Err(error) => errors.push(error),
            }
        }
        errors
    }

    /// Pins the link `link` of `ifname` at its place under `links/`, and holds it
    /// again through the pin.
    fn pin_link(
        &mut self,
        ifname: &str,
        mode: XdpMode,
        link: XdpLinkId,
    ) -> Result<XdpLinkId, DatapathError> {
        let path = self.link_pin_path(ifname, mode);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| DatapathError::PinDir {
                dir: dir.to_owned(),
                source,
            })?;
        }
        let program = responder_mut(&mut self.ebpf)?;
        let link = program.take_link(link).map_err(DatapathError::Program)?;
        let fd_link = FdLink::try_from(link)
            .map_err(|e| pin_error(&path, "the XDP attachment is not a BPF link", e))?;
        let pinned = fd_link.pin(&path).map_err(|e| {
            pin_refusal(
                &path,
                || format!("pinning the XDP link {}", path.display()),
                e,
                |e| pin_error(&path, "pinning the XDP link", e),
            )
        })?;
        let link = XdpLink::try_from(FdLink::from(pinned))
            .map_err(|e| pin_error(&path, "not an XDP link", e))?;
        program.attach_to_link(link).map_err(|e| {
            or_denied(
                Step::AttachXdp,
                || format!("holding the pinned XDP link {}", path.display()),
                e,
                |e| pin_error(&path, "holding the pinned link", e),
            )
        })
    }

    /// Removes the pin of `ifname`'s link, if [`Datapath::pin_links_at_attach`] made
    /// one: without it, closing our handle detaches the program.
    fn unpin_link(&self, ifname: &str) {
        if self.pin_links {
            for mode in [XdpMode::Native, XdpMode::Generic] {
                let _ = std::fs::remove_file(self.link_pin_path(ifname, mode));
            }
        }
    }

    /// Attaches the responder to `ifname`. Native mode falls back to generic, with a
    /// warning, where the driver refuses; the mode in use is returned.
    pub fn attach(&mut self, ifname: &str, mode: XdpMode) -> Result<XdpMode, DatapathError> {
        let iface = iface::by_name(ifname)?;
        if let Some(existing) = self.attachments.get(&iface.ifindex) {
            return match existing.responder {
                Responder::Xdp(mode) => Ok(mode),
                Responder::Userspace => Err(DatapathError::Attach {
                    iface: ifname.to_owned(),
                    mode,
                    source: ProgramError::AlreadyAttached,
                }),
            };
        }
        if let Some((path, pinned_mode)) = self.pinned_link(ifname) {
            match self.take_over_link(&path) {
                Ok(link) => {
                    info!(iface = ifname, mode = %pinned_mode, "took over the XDP link left by an earlier agent: no gap in answers");
                    self.attachments.insert(
                        iface.ifindex,
                        Attachment {
                            iface,
                            responder: Responder::Xdp(pinned_mode),
                            link: Some(link),
                        },
                    );
                    return Ok(pinned_mode);
                }
                // Not ours to use: attaching anew would fail the same way, or detach a
                // program this process may not touch.
                Err(error @ (DatapathError::Denied(_) | DatapathError::PinAccess { .. })) => {
                    return Err(error);
                }
                Err(error) => {
                    warn!(iface = ifname, %error, "could not take over the pinned XDP link; attaching anew");
                    // Dropping the pin detaches the old program, so that ours can attach.
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let program = responder_mut(&mut self.ebpf)?;
        let attach_err = |mode, source| DatapathError::Attach {
            iface: ifname.to_owned(),
            mode,
            source,
        };
        let refused = |mode: XdpMode, error: &ProgramError| {
            capabilities::denied(
                Step::AttachXdp,
                || format!("attaching XDP to {ifname} in {mode} mode"),
                error,
            )
        };
        let (link, used) = match program.attach_to_if_index(iface.ifindex, mode.aya()) {
            Ok(link) => (link, mode),
            // A refusal is no driver's limit: generic mode would be refused too.
            Err(error) if let Some(denied) = refused(mode, &error) => return Err(denied.into()),
            Err(native_error) if mode == XdpMode::Native => {
                warn!(iface = ifname, error = %native_error, "native XDP refused, falling back to generic mode");
                let link = program
                    .attach_to_if_index(iface.ifindex, XdpMode::Generic.aya())
                    .map_err(|source| match refused(XdpMode::Generic, &source) {
                        Some(denied) => denied.into(),
                        None => attach_err(XdpMode::Generic, source),
                    })?;
                (link, XdpMode::Generic)
            }
            Err(source) => return Err(attach_err(mode, source)),
        };
        info!(iface = ifname, ifindex = iface.ifindex, mode = %used, "XDP responder attached");
        let link = if self.pin_links {
            self.pin_link(ifname, used, link)?
        } else {
            link
        };
        self.attachments.insert(
            iface.ifindex,
            Attachment {
                iface,
                responder: Responder::Xdp(used),
                link: Some(link),
            },
        );
        Ok(used)
    }

    fn links_dir(&self) -> PathBuf {
        self.pin_dir.join("links")
    }

    /// Where the link of `ifname` attached in `mode` is pinned: `links/MODE/IFNAME`.
    /// bpffs refuses dots in names, which interface names may have (`eth0.100`), and
    /// interface names never have a colon: dots become colons.
    fn link_pin_path(&self, ifname: &str, mode: XdpMode) -> PathBuf {
        self.links_dir()
            .join(mode.to_string())
            .join(ifname.replace('.', ":"))
    }

    /// A link pinned by an earlier agent for `ifname`, if any.
    fn pinned_link(&self, ifname: &str) -> Option<(PathBuf, XdpMode)> {
        [XdpMode::Native, XdpMode::Generic]
            .into_iter()
            .find_map(|mode| {
                let path = self.link_pin_path(ifname, mode);
                path.exists().then_some((path, mode))
            })
    }

    /// Points the pinned link at `path` to this agent's program (one atomic link update,
    /// so the interface is never without a responder), then removes the pin.
    fn take_over_link(&mut self, path: &Path) -> Result<XdpLinkId, DatapathError> {
        let pinned = PinnedLink::from_pin(path).map_err(|e| {
            pin_refusal(
                path,
                || format!("opening the pinned XDP link {}", path.display()),
                e,
                |e| pin_error(path, "opening the pinned link", e),
            )
        })?;
        let link = XdpLink::try_from(FdLink::from(pinned))
            .map_err(|e| pin_error(path, "not an XDP link", e))?;
        let id = responder_mut(&mut self.ebpf)?
            .attach_to_link(link)
            .map_err(|e| {
                or_denied(
                    Step::AttachXdp,
                    || format!("updating the pinned XDP link {}", path.display()),
                    e,
                    |e| pin_error(path, "updating the link", e),
                )
            })?;
        if !self.pin_links {
            std::fs::remove_file(path).map_err(|source| DatapathError::PinDir {
                dir: path.to_owned(),
                source,
            })?;
        }
        Ok(id)
    }

    /// Exits leaving the datapath serving: every attachment's link is pinned under
    /// `links/`, the maps stay pinned, the multicast filters stay. The next agent that
    /// loads with the same pin directory adopts all of it without a gap in answers.
    pub fn leave_in_place(mut self) -> Vec<DatapathError> {
        let mut errors = Vec::new();
        let attachments = std::mem::take(&mut self.attachments);
        for attachment in attachments.into_values() {
            let (Responder::Xdp(mode), Some(link)) = (attachment.responder, attachment.link) else {
                // A socket cannot outlive its process: the next agent starts anew.
                continue;
            };
            let path = self.link_pin_path(&attachment.iface.name, mode);
            if self.pin_links && path.exists() {
                info!(iface = %attachment.iface.name, pin = %path.display(), "XDP link left in place");
                continue;
            }
            if let Some(dir) = path.parent()
                && let Err(source) = std::fs::create_dir_all(dir)
            {
                errors.push(DatapathError::PinDir {
                    dir: dir.to_owned(),
                    source,
                });
                continue;
            }
            let pinned = responder_mut(&mut self.ebpf).and_then(|program| {
                let link = program.take_link(link).map_err(DatapathError::Program)?;
                let fd_link = FdLink::try_from(link)
                    .map_err(|e| pin_error(&path, "the XDP attachment is not a BPF link", e))?;
                fd_link.pin(&path).map_err(|e| {
                    pin_refusal(
                        &path,
                        || format!("pinning the XDP link {}", path.display()),
                        e,
                        |e| pin_error(&path, "pinning the XDP link", e),
                    )
                })
            });
            match pinned {
                Ok(_) => {
                    info!(iface = %attachment.iface.name, pin = %path.display(), "XDP link left in place")
                }
                Err(error) => errors.push(error),
            }
        }
        info!(pin_dir = %self.pin_dir.display(), "datapath left in place for the next agent");
        errors
    }

    /// Detaches the responder from `ifname` if it is attached there.
    pub fn detach(&mut self, ifname: &str) -> Result<(), DatapathError> {
        let Some(ifindex) = self
            .attachments
            .values()
            .find(|a| a.iface.name == ifname)
            .map(|a| a.iface.ifindex)
        else {
            return Ok(());
        };
        let Some(attachment) = self.attachments.remove(&ifindex) else {
            return Ok(());
        };
        self.unpin_link(ifname);
        if let Some(link) = attachment.link {
            responder_mut(&mut self.ebpf)?
                .detach(link)
                .map_err(|source| DatapathError::Detach {
                    iface: ifname.to_owned(),
                    source,
                })?;
            info!(iface = ifname, "XDP responder detached");
        } else if let Some(userspace) = &mut self.userspace {
            userspace.stop(ifindex);
            info!(iface = ifname, "userspace responder stopped");
        }
        Ok(())
    }

    /// Brings the attachments up to date with `host`, the interfaces as they are now:
    /// an attachment whose interface is gone, or was deleted (`deleted`: ifindexes a
    /// link event said were deleted, in case a new interface took the same index), is
    /// forgotten (the kernel detached the program with the device); one whose
    /// interface has another name, MAC or state takes it, so that the next plan puts
    /// the new MAC in the cells. What changed is returned.
    pub fn follow_interfaces(
        &mut self,
        host: &BTreeMap<String, Interface>,
        deleted: &BTreeSet<u32>,
    ) -> Vec<InterfaceChange> {
        let by_index: BTreeMap<u32, &Interface> = host.values().map(|i| (i.ifindex, i)).collect();
        let mut changes = Vec::new();
        let ifindexes: Vec<u32> = self.attachments.keys().copied().collect();
        for ifindex in ifindexes {
            match by_index.get(&ifindex) {
                Some(now) if !deleted.contains(&ifindex) => {
                    let Some(attachment) = self.attachments.get(&ifindex) else {
                        continue;
                    };
                    if attachment.iface == **now {
                        continue;
                    }
                    let (old_name, responder) =
                        (attachment.iface.name.clone(), attachment.responder);
                    if let (true, Responder::Xdp(mode)) =
                        (self.pin_links && old_name != now.name, responder)
                    {
                        // The pin is named after the interface: follow a rename.
                        let _ = std::fs::rename(
                            self.link_pin_path(&old_name, mode),
                            self.link_pin_path(&now.name, mode),
                        );
                    }
                    if let Some(attachment) = self.attachments.get_mut(&ifindex) {
                        let old = std::mem::replace(&mut attachment.iface, (*now).clone());
                        changes.push(InterfaceChange::Changed {
                            old,
                            new: (*now).clone(),
                        });
                    }
                }
                _ => {
                    if let Some(attachment) = self.attachments.remove(&ifindex) {
                        self.unpin_link(&attachment.iface.name);
                        // Only closes our handle: the device took the attachment along.
                        if let Some(link) = attachment.link {
                            if let Ok(program) = responder_mut(&mut self.ebpf) {
                                let _ = program.detach(link);
                            }
                        } else if let Some(userspace) = &mut self.userspace {
                            userspace.stop(ifindex);
                        }
                        changes.push(InterfaceChange::Gone {
                            old: attachment.iface,
                        });
                    }
                }
            }
        }
        changes
    }

    pub fn attachments(&self) -> impl Iterator<Item = &Attachment> {
        self.attachments.values()
    }

    /// What the maps hold.
    pub fn installed(&self) -> BTreeMap<VipKey, VipConfig> {
        self.maps.installed()
    }

    /// Test hook: the next rebuild of the VIP tables fails (see
    /// [`Maps::fail_next_rebuild`]).
    #[doc(hidden)]
    pub fn fail_next_rebuild(&mut self) {
        self.maps.fail_next_rebuild();
    }

    /// Makes the VIP maps hold exactly `desired`, atomically for the program: it sees
    /// the old set or the new one, never a mix, so an entry that stays is never
    /// missing. Also keeps the interfaces listening to the solicited-node group of
    /// every IPv6 VIP. Failures are collected in the report; everything else is still
    /// applied. Costs a walk over `desired`, then what changed (see [`Maps::sync`]):
    /// the full sync, for start-up and recovery; [`Datapath::update`] costs the
    /// changes only.
    pub fn sync(&mut self, desired: &BTreeMap<VipKey, VipConfig>) -> SyncReport {
        self.change("full", |maps| maps.sync(desired))
    }

    /// Sets each entry of `delta` to its value (`None`: removed) and leaves the others
    /// as they are, atomically for the program as [`Datapath::sync`] does. Costs the
    /// entries of `delta`, not the tables (see [`Maps::update`]).
    pub fn update<'a>(
        &mut self,
        delta: impl IntoIterator<Item = (&'a VipKey, &'a Option<VipConfig>)>,
    ) -> SyncReport {
        self.change("delta", |maps| maps.update(delta))
    }

    fn change(
        &mut self,
        kind: &'static str,
        change: impl FnOnce(&mut Maps) -> TableChanges,
    ) -> SyncReport {
        let started = std::time::Instant::now();
        let maps = &mut self.maps;
        let (changes, flush_error) = match &self.userspace {
            // Its counts go in first, against the ids they were counted for.
            Some(userspace) => userspace.replace_entries(|| {
                let changes = change(maps);
                (changes, Some(maps.live_entries()))
            }),
            None => (change(maps), None),
        };
        let mut report = SyncReport {
            added: changes.added,
            changed: changes.changed,
            removed: changes.removed,
            now_answering: changes.now_answering,
            errors: changes.errors,
            complete: changes.complete,
            took: changes.took,
        };
        report.errors.extend(flush_error);
        self.groups
            .update(&report.added, &report.removed, &mut report.errors);
        let took = report.took;
        debug!(
            kind,
            added = report.added.len(),
            changed = report.changed.len(),
            removed = report.removed.len(),
            errors = report.errors.len(),
            took = ?started.elapsed(),
            settle_took = ?took.settle,
            find_took = ?took.find,
            apply_took = ?took.apply,
            flip_took = ?took.flip,
            view_took = ?took.view,
            "datapath synced"
        );
        report
    }

    /// Brings the idle half of the VIP tables up to date once no program can read it
    /// any more (see [`Maps::tidy`]), so that the next change writes only its own
    /// entries. For idle moments; returns what failed (the next change then does it).
    pub fn tidy(&mut self) -> Vec<DatapathError> {
        let mut errors = Vec::new();
        self.maps.tidy(&mut errors);
        errors
    }

    /// Sets when the datapath fences: `Some(d)` in `d` from now, `None` never. The
    /// heartbeat: the agent moves it forward well before it passes.
    pub fn set_fence_deadline(&self, deadline: Option<Duration>) -> Result<(), DatapathError> {
        self.maps.set_fence_at(fence_at(deadline))
    }

    /// The fence state the timer keeps in the control block.
    pub fn fence(&self) -> FenceState {
        FenceState::of(&self.maps.ctl())
    }

    /// A handle on the control block for a heartbeat thread.
    pub fn fence_control(&self) -> Result<FenceControl, DatapathError> {
        FenceControl::open(&self.pin_dir)
    }

    /// Every entry with its counters, read from the kernel.
    pub fn vips(&self) -> Result<Vec<VipRecord>, DatapathError> {
        self.flush_userspace()?;
        self.maps.vips()
    }

    /// Changes at every change of the entries (see [`Maps::revision`]).
    pub fn revision(&self) -> u64 {
        self.maps.revision()
    }

    /// The live entries' counters, to read from another thread (see
    /// [`Maps::counter_view`]): take one after every [`Datapath::sync`].
    pub fn counter_view(&self) -> Result<CounterView, DatapathError> {
        self.maps.counter_view()
    }

    /// The program's global counters: frames passed or dropped, by reason.
    pub fn stats(&self) -> Result<metallb_common::XdpStats, DatapathError> {
        self.flush_userspace()?;
        self.maps.stats()
    }

    /// The counters of one entry, if it is installed.
    pub fn vip_counters(&self, key: &VipKey) -> Result<Option<VipCounters>, DatapathError> {
        self.flush_userspace()?;
        self.maps.vip_counters(key)
    }

    /// Every frame, by what was done with it: [`Datapath::stats`] and the answers,
    /// which the program counts per VIP (see [`Maps::frame_counts`]).
    pub fn frame_counts(
        &self,
        vips: &[VipRecord],
    ) -> Result<metallb_common::XdpStats, DatapathError> {
        self.flush_userspace()?;
        self.maps.frame_counts(vips)
    }

    /// Runs the program once on `frame` without any network (BPF_PROG_TEST_RUN), as
    /// if it arrived on interface `ifindex` (which must exist in this thread's network
    /// namespace). Returns the verdict and the frame as the program left it.
    pub fn test_run(&self, frame: &[u8], ifindex: u32) -> Result<(u32, Vec<u8>), DatapathError> {
        test_run(self.program()?, frame, ifindex)
    }

    /// Pins the responder program at `path`, so that another handle (another thread or
    /// process) can run or inspect the very same program.
    pub fn pin_program(&mut self, path: &Path) -> Result<(), DatapathError> {
        responder_mut(&mut self.ebpf)?
            .pin(path)
            .map_err(|e| pin_error(path, "pinning the program", e))
    }

    /// The loaded responder program (for test runs and its kernel statistics).
    pub fn program(&self) -> Result<&Xdp, DatapathError> {
        self.ebpf
            .program(PROGRAM_NAME)
            .ok_or(DatapathError::Program(ProgramError::NotLoaded))?
            .try_into()
            .map_err(DatapathError::Program)
    }

    /// Detaches from every interface, stops listening to the solicited-node groups,
    /// and removes the pinned maps: nothing of the datapath is left in the kernel.
    pub fn shutdown(mut self) -> Vec<DatapathError> {
        let mut errors = Vec::new();
        let names: Vec<String> = self
            .attachments
            .values()
            .map(|a| a.iface.name.clone())
            .collect();
        for name in names {
            if let Err(error) = self.detach(&name) {
                errors.push(error);
            }
        }
        let joined: BTreeSet<(u32, MacAddr)> = self.groups.0.keys().copied().collect();
        update_multicast(&joined, &BTreeSet::new(), &mut errors);
        for name in map_names::ALL {
            let path = self.pin_dir.join(name);
            if let Err(source) = std::fs::remove_file(&path)
                && source.kind() != std::io::ErrorKind::NotFound
            {
                errors.push(DatapathError::PinDir { dir: path, source });
            }
        }
        // Links an earlier agent left for interfaces we did not take over.
        for mode in [XdpMode::Native, XdpMode::Generic] {
            let dir = self.links_dir().join(mode.to_string());
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
        let _ = std::fs::remove_dir(self.links_dir());
        // Only removed when empty: the directory may hold other pins.
        let _ = std::fs::remove_dir(&self.pin_dir);
        info!(pin_dir = %self.pin_dir.display(), "datapath removed");
        errors
    }
}

/// What the fence timer says, from the control block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FenceState {
    /// The datapath answers nothing: the heartbeat deadline passed.
    pub fenced: bool,
    /// When it fences, as time left from now (zero: passed); `None`: never.
    pub deadline_in: Option<Duration>,
    /// Runs of the timer so far (it is alive when this grows).
    pub ticks: u64,
    /// Times it fenced.
    pub episodes: u64,
}

impl FenceState {
    pub fn of(ctl: &metallb_common::VipTableCtl) -> Self {
        Self {
            fenced: ctl.fenced != 0,
            deadline_in: (ctl.fence_at != 0)
                .then(|| Duration::from_nanos(ctl.fence_at.saturating_sub(monotonic_ns()))),
            ticks: ctl.fence_ticks,
            episodes: ctl.fence_episodes,
        }
    }
}

/// The `fence_at` of a deadline `d` from now (`None`: never, 0).
pub fn fence_at(deadline: Option<Duration>) -> u64 {
    match deadline {
        // Never 0, which means never.
        Some(d) => monotonic_ns().saturating_add(d.as_nanos() as u64).max(1),
        None => 0,
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`, which the fence
/// timer compares `fence_at` with.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the timespec it is given; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64) * 1_000_000_000 + now.tv_nsec as u64
}

/// Loads the program that arms the fence timer and runs it once: the timer then runs
/// by itself, with this object's callback, for as long as its map is pinned.
fn arm_fence_timer(ebpf: &mut Ebpf) -> Result<(), DatapathError> {
    let program: &mut Xdp = ebpf
        .program_mut(FENCE_PROGRAM_NAME)
        .ok_or(DatapathError::Program(ProgramError::NotLoaded))?
        .try_into()
        .map_err(DatapathError::Program)?;
    program.load().map_err(|error| {
        or_denied(
            Step::LoadProgram,
            || format!("loading the XDP program {FENCE_PROGRAM_NAME}"),
            error,
            DatapathError::Program,
        )
    })?;
    // Any frame will do: the program does not read it.
    let frame = [0u8; 64];
    let mut options = TestRunOptions::new();
    options.data_in = Some(&frame);
    let verdict = program
        .test_run(options)
        .map_err(DatapathError::TestRun)?
        .return_value;
    match verdict {
        2 => Ok(()),
        0 => Err(DatapathError::FenceTimer("bpf_timer_init failed".into())),
        1 => Err(DatapathError::FenceTimer(
            "bpf_timer_set_callback failed".into(),
        )),
        other => Err(DatapathError::FenceTimer(format!(
            "bpf_timer_start failed (verdict {other})"
        ))),
    }
}

/// Runs `program` once on `frame` with BPF_PROG_TEST_RUN, as received on `ifindex`;
/// verdict and output frame.
pub fn test_run(
    program: &Xdp,
    frame: &[u8],
    ifindex: u32,
) -> Result<(u32, Vec<u8>), DatapathError> {
    // Room for a reply that is longer than the request (NS without options -> NA).
    let mut out = vec![0u8; frame.len() + 256];
    let ctx = xdp_md(frame.len(), ifindex);
    let mut options = TestRunOptions::new();
    options.data_in = Some(frame);
    options.ctx_in = Some(&ctx);
    options.data_out = Some(&mut out);
    let result = program.test_run(options).map_err(DatapathError::TestRun)?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out))
}

/// The `struct xdp_md` context BPF_PROG_TEST_RUN takes: data 0, data_end = length,
/// data_meta 0, ingress_ifindex, rx_queue_index 0, egress_ifindex 0.
pub fn xdp_md(frame_len: usize, ifindex: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame_len as u32).to_ne_bytes());
    ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

fn pin_error(path: &Path, what: &'static str, reason: impl std::fmt::Display) -> DatapathError {
    DatapathError::Pin {
        path: path.to_owned(),
        what,
        reason: reason.to_string(),
    }
}

/// `error` as the kernel refusing `step` for want of a capability, naming it, when it
/// is that; `other(error)` when it is anything else.
pub(crate) fn or_denied<E: std::error::Error + 'static>(
    step: Step,
    action: impl FnOnce() -> String,
    error: E,
    other: impl FnOnce(E) -> DatapathError,
) -> DatapathError {
    match capabilities::denied(step, action, &error) {
        Some(denied) => denied.into(),
        None => other(error),
    }
}

/// `error` from using the pin (or pin directory) at `path`: EACCES is a matter of
/// file permissions, said with the owner and mode that refused; EPERM a capability.
pub(crate) fn pin_refusal<E: std::error::Error + 'static>(
    path: &Path,
    action: impl FnOnce() -> String,
    error: E,
    other: impl FnOnce(E) -> DatapathError,
) -> DatapathError {
    use std::os::unix::fs::MetadataExt as _;
    if capabilities::errno_in(&error) == Some(nix::errno::Errno::EACCES) {
        // The closest existing ancestor is the one whose permissions refused.
        let refusing = path
            .ancestors()
            .find_map(|p| std::fs::metadata(p).ok().map(|m| (p, m)));
        if let Some((refusing, metadata)) = refusing {
            return DatapathError::PinAccess {
                action: action(),
                errno: nix::errno::Errno::EACCES,
                path: refusing.to_owned(),
                owner: metadata.uid(),
                mode: metadata.mode() & 0o7777,
                // SAFETY: geteuid(2) cannot fail and touches no memory.
                uid: unsafe { libc::geteuid() },
            };
        }
    }
    or_denied(Step::Pins, action, error, other)
}

/// What loading the object failed at, with a refusal named.
fn load_error(error: aya::EbpfError, pin_dir: &Path) -> DatapathError {
    use aya::{EbpfError, maps::MapError};
    match &error {
        EbpfError::MapError(MapError::PinError { name, .. }) => {
            let name = name.clone().unwrap_or_default();
            pin_refusal(
                &pin_dir.join(&name),
                || format!("pinning map {name} in {}", pin_dir.display()),
                error,
                DatapathError::Load,
            )
        }
        EbpfError::MapError(MapError::CreateError { name, .. }) => {
            let name = name.clone();
            or_denied(
                Step::CreateMaps,
                || format!("creating map {name}"),
                error,
                DatapathError::Load,
            )
        }
        _ => or_denied(
            Step::CreateMaps,
            || "loading the XDP object".into(),
            error,
            DatapathError::Load,
        ),
    }
}

/// Loads a responder `object` (its programs not yet into the kernel) onto the maps
/// pinned in `pin_dir`, creating and pinning those missing, with tables for
/// `max_vips`. `strict`: the object must read the control block as global data (an
/// older build, which `cargo xtask bench` may compare, looks it up instead).
pub fn load_object(
    object: &[u8],
    pin_dir: &Path,
    max_vips: u32,
    strict: bool,
) -> Result<Ebpf, DatapathError> {
    let pin_paths: Vec<(&str, PathBuf)> = map_names::ALL
        .iter()
        .map(|name| (*name, pin_dir.join(name)))
        .collect();
    let mut loader = EbpfLoader::new();
    for (name, path) in &pin_paths {
        loader.map_pin_path(name, path.as_path());
    }
    for (name, size) in Maps::sizes(max_vips)? {
        loader.map_max_entries(name, size);
    }
    // The program reads vip_ctl's value as global data: its `.data.vip_ctl` section
    // is loaded onto the pinned vip_ctl map. That map must exist first, as its
    // declaration makes it (with BTF, mmapable): a first load creates and pins the
    // declared maps when there are none yet.
    let ctl_path = pin_dir.join(map_names::VIP_CTL);
    if !ctl_path.exists() {
        drop(
            loader
                .load(object)
                .map_err(|error| load_error(error, pin_dir))?,
        );
    }
    // Loading writes the section's contents into the map: make them what the map
    // holds, so that programs already running on it see no change. (Nothing else
    // writes it meanwhile: one agent per pin directory, and an earlier one has
    // stopped.)
    let ctl = Maps::read_pinned_ctl(&ctl_path)?;
    loader.map_pin_path(map_names::VIP_CTL_SECTION, ctl_path.as_path());
    loader.override_global(map_names::VIP_CTL_SYMBOL, &ctl, strict);
    loader
        .load(object)
        .map_err(|error| load_error(error, pin_dir))
}

fn responder_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, DatapathError> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or(DatapathError::Program(ProgramError::NotLoaded))?
        .try_into()
        .map_err(DatapathError::Program)
}

/// (ifindex, multicast MAC) of the solicited-node group of every IPv6 entry.
/// The solicited-node group (interface, MAC) an IPv6 VIP needs.
fn solicited_node_group(key: &VipKey) -> Option<(u32, MacAddr)> {
    match key.addr {
        IpAddr::V6(addr) => Some((key.ifindex, iface::solicited_node_mac(addr))),
        IpAddr::V4(_) => None,
    }
}

/// The solicited-node groups the installed IPv6 VIPs need, with how many need each:
/// kept up to date from what each sync added and removed, so that a sync costs its
/// changes, not every VIP.
#[derive(Debug, Default)]
struct Groups(BTreeMap<(u32, MacAddr), usize>);

impl Groups {
    fn of<'a>(keys: impl Iterator<Item = &'a VipKey>) -> Self {
        let mut groups = Self::default();
        for group in keys.filter_map(solicited_node_group) {
            *groups.0.entry(group).or_default() += 1;
        }
        groups
    }

    /// Counts `added` and `removed` in, and joins or leaves the groups whose need
    /// began or ended.
    fn update(&mut self, added: &[VipKey], removed: &[VipKey], errors: &mut Vec<DatapathError>) {
        let touched: BTreeSet<(u32, MacAddr)> = added
            .iter()
            .chain(removed)
            .filter_map(solicited_node_group)
            .collect();
        let before: BTreeSet<(u32, MacAddr)> = touched
            .iter()
            .filter(|group| self.0.contains_key(group))
            .copied()
            .collect();
        for group in added.iter().filter_map(solicited_node_group) {
            *self.0.entry(group).or_default() += 1;
        }
        for group in removed.iter().filter_map(solicited_node_group) {
            if let Some(count) = self.0.get_mut(&group) {
                *count -= 1;
                if *count == 0 {
                    self.0.remove(&group);
                }
            }
        }
        let after: BTreeSet<(u32, MacAddr)> = touched
            .iter()
            .filter(|group| self.0.contains_key(group))
            .copied()
            .collect();
        update_multicast(&before, &after, errors);
    }
}

fn update_multicast(
    before: &BTreeSet<(u32, MacAddr)>,
    after: &BTreeSet<(u32, MacAddr)>,
    errors: &mut Vec<DatapathError>,
) {
    if before == after {
        return;
    }
    let interfaces: BTreeMap<u32, Interface> = match iface::list() {
        Ok(all) => all.into_values().map(|i| (i.ifindex, i)).collect(),
        Err(error) => {
            errors.push(error.into());
            return;
        }
    };
    // Interfaces that are gone, or that do not filter multicast, need no filter.
    let filtering = |ifindex: &u32| interfaces.get(ifindex).filter(|i| i.multicast);
    for (ifindex, mac) in after.difference(before) {
        if let Some(iface) = filtering(ifindex)
            && let Err(error) = iface::add_multicast(&iface.name, *mac)
        {
            errors.push(or_denied(
                Step::Multicast,
                || format!("adding multicast address {mac} to {}", iface.name),
                error,
                Into::into,
            ));
        }
    }
    for (ifindex, mac) in before.difference(after) {
        if let Some(iface) = filtering(ifindex)
            && let Err(error) = iface::del_multicast(&iface.name, *mac)
        {
            errors.push(error.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach_failing_with(errno: i32) -> DatapathError {
        DatapathError::Attach {
            iface: "eth0".into(),
            mode: XdpMode::Native,
            source: ProgramError::SyscallError(aya::sys::SyscallError {
                call: "bpf_link_create",
                io_error: std::io::Error::from_raw_os_error(errno),
            }),
        }
    }

    #[test]
    fn auto_falls_back_only_where_xdp_is_unsupported() {
        for errno in [libc::EOPNOTSUPP, libc::EINVAL, libc::E2BIG] {
            let reason = xdp_unsupported(&attach_failing_with(errno));
            assert!(
                reason
                    .as_deref()
                    .is_some_and(|r| r.contains("cannot run XDP")),
                "{errno}: {reason:?}"
            );
        }
        // Busy, gone, or anything else: an error, as with --datapath xdp.
        for errno in [libc::EBUSY, libc::ENODEV, libc::EEXIST] {
            assert_eq!(xdp_unsupported(&attach_failing_with(errno)), None);
        }
        // A refusal for want of a capability is never a reason to fall back: the
        // userspace datapath cannot suppress.
        let denied = capabilities::denied_with(
            Step::AttachXdp,
            || "attaching XDP to eth0".into(),
            nix::errno::Errno::EPERM,
            Some(0),
        )
        .expect("EPERM at attach is a missing capability");
        let error = DatapathError::from(denied);
        assert_eq!(xdp_unsupported(&error), None);
        assert!(error.to_string().contains("CAP_NET_ADMIN"), "{error}");
    }
}
