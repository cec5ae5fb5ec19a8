//! `metallb cleanup`: removes, by hand, a datapath a speaker left (with
//! `--keep-datapath`, or killed): the XDP links pinned under `<pin-dir>/links/`, the
//! responder attached by name in this network namespace wherever its link is, the
//! solicited-node multicast MACs of its IPv6 VIPs, the map pins and the directories.
//!
//! It touches nothing a running process holds (a speaker, or `metallb inspect`): the
//! holders are found in `/proc`. With `--older-than` it keeps a datapath left more
//! recently than that, which a restarting speaker may be about to adopt. It can run
//! again: a second run finds nothing to do.

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use metallb_common::{PROGRAM_NAME, map_names};

use super::{
    XdpMode, iface,
    kernel::{self, BpfObject, XdpAttachment, XdpLinkInfo},
    maps::Maps,
};

#[derive(Clone, Debug)]
pub struct CleanupOptions {
    pub pin_dir: PathBuf,
    /// Keep a datapath left less than this long ago.
    pub older_than: Option<Duration>,
}

/// What a cleanup did, kept, and could not do; one sentence each.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub removed: Vec<String>,
    /// Left on purpose: in use, too recent, or not this project's.
    pub kept: Vec<String>,
    pub errors: Vec<String>,
}

impl CleanupReport {
    /// Nothing of a left-over datapath remains.
    pub fn nothing_left(&self) -> bool {
        self.kept.is_empty() && self.errors.is_empty()
    }
}

/// A link pinned under `links/MODE/IF`.
struct PinnedLink {
    path: PathBuf,
    fd: std::os::fd::OwnedFd,
    info: XdpLinkInfo,
}

/// What the pin directory holds.
#[derive(Default)]
struct Pinned {
    maps: Vec<(PathBuf, u32)>,
    links: Vec<PinnedLink>,
    /// Files that are none of the above: left alone.
    others: Vec<PathBuf>,
}

impl Pinned {
    fn read(pin_dir: &Path, report: &mut CleanupReport) -> Self {
        let mut pinned = Pinned::default();
        let known: BTreeSet<PathBuf> = map_names::ALL.iter().map(|n| pin_dir.join(n)).collect();
        for path in files_under(pin_dir) {
            let in_links = path
                .strip_prefix(pin_dir.join("links"))
                .is_ok_and(|rest| rest.components().count() == 2);
            if !known.contains(&path) && !in_links {
                pinned.others.push(path);
                continue;
            }
            let read = if in_links {
                kernel::open_pin(&path).and_then(|fd| {
                    match kernel::xdp_link_info(&fd)? {
                        Some(info) => pinned.links.push(PinnedLink {
                            path: path.clone(),
                            fd,
                            info,
                        }),
                        None => pinned.others.push(path.clone()),
                    }
                    Ok(())
                })
            } else {
                kernel::open_pin(&path)
                    .and_then(|fd| kernel::object_id(&fd))
                    .map(|id| pinned.maps.push((path.clone(), id)))
            };
            if let Err(error) = read {
                report
                    .errors
                    .push(format!("opening {}: {error}", path.display()));
            }
        }
        pinned
    }

    fn is_empty(&self) -> bool {
        self.maps.is_empty() && self.links.is_empty()
    }

    fn objects(&self) -> Vec<BpfObject> {
        self.maps
            .iter()
            .map(|(_, id)| BpfObject::Map(*id))
            .chain(self.links.iter().flat_map(|link| {
                [
                    BpfObject::Link(link.info.id),
                    BpfObject::Program(link.info.prog_id),
                ]
            }))
            .collect()
    }

    /// When the datapath was left: its links were pinned then (maps are pinned when
    /// they are made, long before).
    fn left_at(&self) -> Option<SystemTime> {
        let times = |paths: &mut dyn Iterator<Item = &PathBuf>| {
            paths
                .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
                .max()
        };
        times(&mut self.links.iter().map(|l| &l.path))
            .or_else(|| times(&mut self.maps.iter().map(|(p, _)| p)))
    }
}

/// Every file below `dir`, depth first.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn holders_sentence(holders: &[kernel::Holder]) -> String {
    holders
        .iter()
        .map(|h| format!("{} (pid {})", h.command, h.pid))
        .collect::<Vec<_>>()
        .join(", ")
}

fn shown(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

/// Removes the datapath pinned at `options.pin_dir` and every responder left attached
/// in this thread's network namespace.
pub fn cleanup(options: &CleanupOptions) -> CleanupReport {
    let mut report = CleanupReport::default();
    let pin_dir = &options.pin_dir;
    let attached: Vec<XdpAttachment> = match kernel::xdp_attachments() {
        Ok(all) => all
            .into_iter()
            .filter(|a| kernel::program_name(a.prog_id).is_ok_and(|name| name == PROGRAM_NAME))
            .collect(),
        Err(error) => {
            report.errors.push(format!(
                "listing the XDP programs of this network namespace: {error}"
            ));
            Vec::new()
        }
    };
    let pinned = Pinned::read(pin_dir, &mut report);
    // Programs attached through the pin directory's links are its own: dealt with
    // (or kept) with it.
    let through_pins: BTreeSet<(u32, u32)> = pinned
        .links
        .iter()
        .map(|link| (link.info.ifindex, link.info.prog_id))
        .collect();
    if !pinned.is_empty() {
        let holders = kernel::holders(&pinned.objects());
        let age = pinned
            .left_at()
            .and_then(|at| SystemTime::now().duration_since(at).ok());
        if !holders.is_empty() {
            report.kept.push(format!(
                "{} is in use by {}: stop it first; nothing of it was removed",
                pin_dir.display(),
                holders_sentence(&holders)
            ));
        } else if let (Some(limit), Some(age)) = (options.older_than, age)
            && age < limit
        {
            report.kept.push(format!(
                "{} was left {} ago, less than --older-than {}: a restarting speaker may still adopt it",
                pin_dir.display(),
                shown(age),
                shown(limit)
            ));
        } else {
            remove_multicast(pin_dir, &mut report);
            for link in &pinned.links {
                let found = attached
                    .iter()
                    .find(|a| a.ifindex == link.info.ifindex && a.prog_id == link.info.prog_id);
                let place = match found {
                    Some(a) => format!("{} ({})", a.ifname, a.hook),
                    None => format!(
                        "ifindex {} (in another network namespace)",
                        link.info.ifindex
                    ),
                };
                match kernel::detach_link(&link.fd) {
                    Ok(()) => {
                        report.removed.push(format!(
                            "detached {PROGRAM_NAME} from {place}: the link pinned at {}",
                            link.path.display()
                        ));
                    }
                    Err(error) => report.errors.push(format!(
                        "detaching the link pinned at {} from {place}: {error}",
                        link.path.display()
                    )),
                }
            }
            let pins = pinned
                .links
                .iter()
                .map(|l| &l.path)
                .chain(pinned.maps.iter().map(|(p, _)| p));
            for path in pins {
                match std::fs::remove_file(path) {
                    Ok(()) => report.removed.push(format!("removed {}", path.display())),
                    Err(error) => report
                        .errors
                        .push(format!("removing {}: {error}", path.display())),
                }
            }
            remove_directories(pin_dir, &pinned, &mut report);
        }
    } else if pin_dir.is_dir() && pinned.others.is_empty() {
        // An empty directory a speaker (or a partial cleanup) left.
        remove_directories(pin_dir, &pinned, &mut report);
    }
    for other in &pinned.others {
        report.kept.push(format!(
            "{} is not this project's: left, with its directory",
            other.display()
        ));
    }

    for attachment in attached
        .iter()
        .filter(|a| !through_pins.contains(&(a.ifindex, a.prog_id)))
    {
        detach_stray(attachment, options, &mut report);
    }
    report
}

/// The responder attached in this namespace, not through a link of the pin directory:
/// its link is pinned elsewhere, or it was attached through netlink.
fn detach_stray(attachment: &XdpAttachment, options: &CleanupOptions, report: &mut CleanupReport) {
    let place = format!("{} ({})", attachment.ifname, attachment.hook);
    let holders = kernel::holders(&[BpfObject::Program(attachment.prog_id)]);
    if !holders.is_empty() {
        report.kept.push(format!(
            "{PROGRAM_NAME} on {place} belongs to the running {}: left alone",
            holders_sentence(&holders)
        ));
        return;
    }
    if options.older_than.is_some() {
        report.kept.push(format!(
            "{PROGRAM_NAME} on {place} is pinned outside {}, where its age cannot be told: not removed with --older-than",
            options.pin_dir.display()
        ));
        return;
    }
    let links = match kernel::xdp_links() {
        Ok(links) => links,
        Err(error) => {
            report.errors.push(format!(
                "listing the kernel's XDP links to detach {PROGRAM_NAME} from {place}: {error}{}",
                if error.raw_os_error() == Some(libc::EPERM) {
                    " (walking BPF objects by id needs CAP_SYS_ADMIN: run metallb cleanup as root)"
                } else {
                    ""
                }
            ));
            return;
        }
    };
    let link = links
        .iter()
        .find(|(info, _)| info.ifindex == attachment.ifindex && info.prog_id == attachment.prog_id);
    let result = match link {
        Some((_, fd)) => kernel::detach_link(fd).map(|()| {
            "its link is pinned outside the pin directory, and that pin now holds a detached link"
        }),
        None => kernel::netlink_detach(attachment.ifindex, attachment.hook)
            .map(|()| "it was attached without a link"),
    };
    match result {
        Ok(how) => report
            .removed
            .push(format!("detached {PROGRAM_NAME} from {place}: {how}")),
        Err(error) => report
            .errors
            .push(format!("detaching {PROGRAM_NAME} from {place}: {error}")),
    }
}

/// Removes the solicited-node multicast MACs the datapath added for its IPv6 VIPs, on
/// those of their interfaces that are in this namespace.
fn remove_multicast(pin_dir: &Path, report: &mut CleanupReport) {
    let vips = match Maps::open_pinned(pin_dir).and_then(|maps| maps.vips()) {
        Ok(vips) => vips,
        Err(error) => {
            report.kept.push(format!(
                "the VIP entries could not be read ({error}): the multicast MACs of IPv6 VIPs, if any, stay on their interfaces"
            ));
            return;
        }
    };
    let groups: BTreeSet<(u32, iface::MacAddr)> = vips
        .iter()
        .filter_map(|record| match record.key.addr {
            IpAddr::V6(addr) => Some((record.key.ifindex, iface::solicited_node_mac(addr))),
            IpAddr::V4(_) => None,
        })
        .collect();
    for (ifindex, mac) in groups {
        let Ok(name) = nix::net::if_::if_indextoname(ifindex) else {
            continue;
        };
        let name = name.to_string_lossy().into_owned();
        match iface::del_multicast(&name, mac) {
            Ok(()) => report
                .removed
                .push(format!("removed multicast address {mac} from {name}")),
            // Not there (any more): nothing to remove.
            Err(iface::InterfaceError::Multicast { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) => {}
            Err(error) => report.errors.push(error.to_string()),
        }
    }
}

/// Removes `links/MODE`, `links` and the pin directory itself when they are empty.
fn remove_directories(pin_dir: &Path, pinned: &Pinned, report: &mut CleanupReport) {
    let links = pin_dir.join("links");
    let mut dirs: Vec<PathBuf> = [XdpMode::Native, XdpMode::Generic]
        .iter()
        .map(|mode| links.join(mode.to_string()))
        .collect();
    dirs.push(links);
    if pinned.others.is_empty() {
        dirs.push(pin_dir.to_owned());
    }
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        match std::fs::remove_dir(dir) {
            Ok(()) => report.removed.push(format!("removed {}", dir.display())),
            // A mount point (the pod's hostPath) stays; it is empty, which is what counts.
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {}
            Err(error) => report
                .errors
                .push(format!("removing {}: {error}", dir.display())),
        }
    }
}
