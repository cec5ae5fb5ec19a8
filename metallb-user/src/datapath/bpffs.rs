//! The bpf filesystem the maps are pinned on.
//!
//! As Cilium's agent does, the speaker mounts one when the pin directory is on none:
//! at [`BPFFS_ROOT`], the place every BPF tool looks, and only for a pin directory
//! under it (a bpffs mounted over a directory of the user's choosing would hide what
//! it holds). That happens on a machine where nothing mounted it yet, and under `ip
//! netns exec`, which gives its command a mount namespace of its own with a fresh
//! `/sys`. A bpffs mounted in such a namespace dies with it, and the pins with it.

use std::{
    io,
    path::{Path, PathBuf},
};

use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, statfs},
};
use tracing::{info, warn};

use super::DatapathError;

/// Where the speaker mounts a bpf filesystem when the pin directory is under it and
/// on none.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Makes sure `dir` (which may not exist yet) is on a bpf filesystem, mounting one at
/// [`BPFFS_ROOT`] if `dir` is under it: pinning anywhere else fails with an error that
/// does not say why.
pub(super) fn ensure_bpffs(dir: &Path) -> Result<(), DatapathError> {
    if on_bpffs(dir) {
        return Ok(());
    }
    let root = Path::new(BPFFS_ROOT);
    // `..` could lead out of the root after all.
    let under_root = dir.starts_with(root)
        && !dir
            .components()
            .any(|part| part == std::path::Component::ParentDir);
    if !under_root {
        return Err(DatapathError::NotBpffs {
            dir: dir.to_owned(),
        });
    }
    mount(
        Some("bpf"),
        root,
        Some("bpf"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .map_err(|errno| {
        super::or_denied(
            super::Step::MountBpffs,
            || {
                format!(
                    "mounting a bpf filesystem on {BPFFS_ROOT} (pin directory {} is on none)",
                    dir.display()
                )
            },
            errno,
            |errno| DatapathError::MountBpffs {
                dir: dir.to_owned(),
                root: root.to_owned(),
                errno,
            },
        )
    })?;
    info!(
        path = %BPFFS_ROOT,
        pin_dir = %dir.display(),
        "mounted a bpf filesystem: the pin directory was on none"
    );
    if mount_namespace(own_mount_namespace(), &ancestor_mount_namespaces())
        == MountNamespace::Private
    {
        warn!(
            "this process runs in a mount namespace of its own (as under `ip netns exec`): \
             the bpf filesystem it mounted, and the pins, vanish when it exits, so \
             --keep-datapath cannot hand the datapath over, and `metallb inspect` run \
             outside this namespace cannot see it; `nsenter --net=/run/netns/NAME` enters \
             only the network namespace and keeps the host's /sys/fs/bpf"
        );
    }
    if on_bpffs(dir) {
        Ok(())
    } else {
        Err(DatapathError::NotBpffs {
            dir: dir.to_owned(),
        })
    }
}

/// Whether `dir`, or its closest existing ancestor, is on a bpf filesystem.
fn on_bpffs(dir: &Path) -> bool {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    statfs(existing).is_ok_and(|fs| fs.filesystem_type() == BPF_FS_MAGIC)
}

/// The mount namespace a process runs in, compared with those of its ancestors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountNamespace {
    /// PID 1's, as every ancestor's (the host's, or a container's when the process
    /// does not share the host's PID namespace): what is mounted here outlives the
    /// process.
    Initial,
    /// Not an ancestor's: one made for this process (or for one of its ancestors below
    /// PID 1, such as the shell `ip netns exec` started); what it mounts there vanishes
    /// with the namespace.
    Private,
    /// A link could not be read, and none that was read differs.
    Unknown,
}

/// A `/proc/PID/ns/mnt` link's target (`mnt:[4026531841]`): equal for the same
/// namespace.
pub type NamespaceLink = io::Result<PathBuf>;

/// Tells this process's mount namespace (`own`) from those of its ancestors, parent
/// first, up to PID 1 (`(pid, link)`; empty for PID 1 itself). PID 1's link alone
/// decides where it can be read; where it cannot (it needs privileges that a
/// container's root may lack), an ancestor in another namespace still shows that
/// this one is private.
pub fn mount_namespace(own: NamespaceLink, ancestors: &[(u32, NamespaceLink)]) -> MountNamespace {
    let Ok(own) = own else {
        return MountNamespace::Unknown;
    };
    if ancestors
        .iter()
        .any(|(_, link)| link.as_ref().is_ok_and(|link| *link != own))
    {
        return MountNamespace::Private;
    }
    let init_read = ancestors
        .iter()
        .any(|(pid, link)| *pid == 1 && link.is_ok());
    if ancestors.is_empty() || init_read {
        MountNamespace::Initial
    } else {
        MountNamespace::Unknown
    }
}

fn own_mount_namespace() -> NamespaceLink {
    std::fs::read_link("/proc/self/ns/mnt")
}

/// The mount namespace links of this process's ancestors, parent first, up to PID 1.
fn ancestor_mount_namespaces() -> Vec<(u32, NamespaceLink)> {
    let mut ancestors = Vec::new();
    let mut pid = std::process::id();
    // Bounded: a process tree is not deeper than this in practice.
    for _ in 0..64 {
        if pid <= 1 {
            break;
        }
        let Some(parent) = parent_of(pid) else {
            break;
        };
        ancestors.push((parent, std::fs::read_link(format!("/proc/{parent}/ns/mnt"))));
        pid = parent;
    }
    ancestors
}

/// The parent of `pid`, from `/proc/PID/stat`: "PID (COMM) STATE PPID ...", where
/// COMM may hold spaces and parentheses.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_comm) = stat.rsplit_once(')')?;
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_namespace_is_private_when_an_ancestor_is_in_another() {
        const HOST: &str = "mnt:[4026531841]";
        const OWN: &str = "mnt:[4026532301]";
        let link = |target: &str| Ok(PathBuf::from(target));
        let denied = || Err(io::Error::from(io::ErrorKind::PermissionDenied));
        /// (case, own link, ancestors' links, answer)
        type Case = (
            &'static str,
            NamespaceLink,
            Vec<(u32, NamespaceLink)>,
            MountNamespace,
        );
        let cases: Vec<Case> = vec![
            (
                "the host's, as PID 1's",
                link(HOST),
                vec![(700, link(HOST)), (1, link(HOST))],
                MountNamespace::Initial,
            ),
            (
                "PID 1 itself (a container's init)",
                link(OWN),
                vec![],
                MountNamespace::Initial,
            ),
            (
                "ip netns exec: the parent is in the host's",
                link(OWN),
                vec![(700, link(HOST)), (1, link(HOST))],
                MountNamespace::Private,
            ),
            (
                "ip netns exec sh -c: the grandparent is in the host's",
                link(OWN),
                vec![(800, link(OWN)), (700, link(HOST)), (1, link(HOST))],
                MountNamespace::Private,
            ),
            (
                "PID 1 unreadable, the parent in the host's",
                link(OWN),
                vec![(700, link(HOST)), (1, denied())],
                MountNamespace::Private,
            ),
            (
                "PID 1 unreadable, every other ancestor in this one",
                link(HOST),
                vec![(700, link(HOST)), (1, denied())],
                MountNamespace::Unknown,
            ),
            (
                "the tree stops below PID 1",
                link(HOST),
                vec![(700, link(HOST))],
                MountNamespace::Unknown,
            ),
            (
                "its own link unreadable",
                Err(io::Error::from(io::ErrorKind::NotFound)),
                vec![(700, link(HOST)), (1, link(HOST))],
                MountNamespace::Unknown,
            ),
        ];
        for (name, own, ancestors, want) in cases {
            assert_eq!(mount_namespace(own, &ancestors), want, "{name}");
        }
    }

    /// The ancestors of this test process are read from /proc, up to PID 1.
    #[test]
    fn the_ancestors_are_read_up_to_pid_1() {
        let ancestors = ancestor_mount_namespaces();
        assert_eq!(
            ancestors.first().map(|(pid, _)| *pid),
            Some(std::os::unix::process::parent_id())
        );
        assert_eq!(ancestors.last().map(|(pid, _)| *pid), Some(1));
    }
}
