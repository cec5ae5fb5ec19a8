//! The Linux capabilities `metallb speaker` needs, and errors that name the one missing
//! when the kernel refuses a step.
//!
//! The list was found by test (`tests/capabilities.rs`): the speaker runs as a non-root
//! user (uid 65532) with exactly [`SPEAKER_CAPABILITIES`], loads, pins, attaches and
//! answers; with any one of them dropped it stops at start with an error naming it.
//! RLIMIT_MEMLOCK plays no part: since Linux 5.11 BPF memory is charged to the memory
//! cgroup (the tests run the speaker with a memlock limit of 0), so CAP_SYS_RESOURCE is
//! not needed either.

use std::{fmt, io};

use nix::errno::Errno;

/// A Linux capability the datapath may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    NetAdmin,
    NetRaw,
    SysAdmin,
    Perfmon,
    Bpf,
    SysNice,
}

impl Capability {
    /// Its number in the kernel's capability sets (`linux/capability.h`).
    pub const fn number(self) -> u32 {
        match self {
            Capability::NetAdmin => 12,
            Capability::NetRaw => 13,
            Capability::SysAdmin => 21,
            Capability::Perfmon => 38,
            Capability::Bpf => 39,
            Capability::SysNice => 23,
        }
    }

    /// As the kernel and man pages name it: `CAP_NET_ADMIN`.
    pub const fn name(self) -> &'static str {
        match self {
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::NetRaw => "CAP_NET_RAW",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::Bpf => "CAP_BPF",
            Capability::SysNice => "CAP_SYS_NICE",
        }
    }

    /// As a Kubernetes `securityContext.capabilities.add` list writes it: `NET_ADMIN`.
    pub const fn kubernetes_name(self) -> &'static str {
        match self {
            Capability::NetAdmin => "NET_ADMIN",
            Capability::NetRaw => "NET_RAW",
            Capability::SysAdmin => "SYS_ADMIN",
            Capability::Perfmon => "PERFMON",
            Capability::Bpf => "BPF",
            Capability::SysNice => "SYS_NICE",
        }
    }

    /// As `setpriv --ambient-caps` and `capsh` write it: `net_admin`.
    pub fn setpriv_name(self) -> String {
        self.kubernetes_name().to_ascii_lowercase()
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One capability of the speaker's list, and what it is needed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub capability: Capability,
    pub why: &'static str,
}

/// Everything `metallb speaker` needs, as a non-root user, and nothing more. The
/// DaemonSet adds exactly these (and drops all others); a test compares the two.
///
/// Not in the list, on purpose:
/// - CAP_SYS_ADMIN: only to mount a bpf filesystem where none is mounted; in a pod the
///   host's is mounted in (systemd mounts one on every modern distribution), and a
///   refused mount names CAP_SYS_ADMIN.
/// - CAP_DAC_OVERRIDE: the speaker runs as the owner of its pin directory instead (in
///   the DaemonSet, uid 0, which owns the host's /sys/fs/bpf: Kubernetes gives a
///   non-root container no ambient capabilities; elsewhere, a directory made for its
///   user); without the capability, the speaker reaches no pin it does not own.
/// - CAP_SYS_RESOURCE: RLIMIT_MEMLOCK does not apply to BPF memory on this kernel.
/// - CAP_NET_BIND_SERVICE: the metrics port (7472) is above 1023.
pub const SPEAKER_CAPABILITIES: &[Requirement] = &[
    Requirement {
        capability: Capability::Bpf,
        why: "bpf() itself: creating the maps and loading BTF and the program \
              (kernel.unprivileged_bpf_disabled refuses every bpf() call without it), \
              pinning them and opening pins left by an earlier speaker",
    },
    Requirement {
        capability: Capability::NetAdmin,
        why: "loading an XDP program (a networking program type), attaching it to \
              interfaces, and adding the IPv6 solicited-node multicast MACs to them \
              (SIOCADDMULTI)",
    },
    Requirement {
        capability: Capability::NetRaw,
        why: "sending gratuitous ARP and unsolicited Neighbor Advertisements on an \
              AF_PACKET socket",
    },
    Requirement {
        capability: Capability::Perfmon,
        why: "the verifier accepts the program's pointer arithmetic on map values (a \
              counter slot chosen per frame) only from a process with CAP_PERFMON; \
              without it, its Spectre v1 hardening refuses the program with EACCES \
              (\"pointer arithmetic with it prohibited for !root\")",
    },
];

/// What the speaker uses when it has it, and does without otherwise (logged): the
/// DaemonSet adds these after [`SPEAKER_CAPABILITIES`].
pub const SPEAKER_OPTIONAL_CAPABILITIES: &[Requirement] = &[Requirement {
    capability: Capability::SysNice,
    why: "running the fence heartbeat and membership threads SCHED_FIFO, so that a \
          saturated CPU delays neither a beat past --fence-deadline (the datapath would \
          fence for a moment) nor a probe or its answer (peers would declare the node \
          down); without it, both run at normal priority",
}];

/// A step of the datapath the kernel may refuse for want of a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Creating maps, loading BTF.
    CreateMaps,
    /// BPF_PROG_LOAD of the XDP program.
    LoadProgram,
    /// BPF_OBJ_GET / BPF_OBJ_PIN on the bpf filesystem.
    Pins,
    /// Attaching XDP to an interface, or updating a pinned link.
    AttachXdp,
    /// SIOCADDMULTI / SIOCDELMULTI.
    Multicast,
    /// socket(AF_PACKET, SOCK_RAW).
    PacketSocket,
    /// mount -t bpf.
    MountBpffs,
}

impl Step {
    /// The capabilities whose absence makes the kernel answer `errno` at this step;
    /// `None` when that errno is not a matter of capabilities here (EACCES on a pin is
    /// a file's permissions; EACCES from the verifier with CAP_PERFMON held is a
    /// genuine refusal of the program).
    fn needs(self, errno: Errno, held: Option<u64>) -> Option<&'static [Capability]> {
        use Capability::*;
        match (self, errno) {
            (Step::CreateMaps | Step::Pins, Errno::EPERM) => Some(&[Bpf]),
            (Step::LoadProgram, Errno::EPERM) => Some(&[Bpf, NetAdmin]),
            (Step::LoadProgram, Errno::EACCES) if !has(held, Perfmon) => Some(&[Perfmon]),
            (Step::AttachXdp, Errno::EPERM) => Some(&[Bpf, NetAdmin]),
            (Step::Multicast, Errno::EPERM) => Some(&[NetAdmin]),
            (Step::PacketSocket, Errno::EPERM) => Some(&[NetRaw]),
            (Step::MountBpffs, Errno::EPERM) => Some(&[SysAdmin]),
            _ => None,
        }
    }

    /// Said after the missing capabilities, where the refusal alone would puzzle.
    fn hint(self, missing: &[Capability]) -> &'static str {
        match self {
            Step::LoadProgram if missing.contains(&Capability::Perfmon) => {
                " (without it the verifier's Spectre v1 hardening refuses the program's pointer arithmetic on map values)"
            }
            Step::MountBpffs => {
                " (in a pod, mount the host's bpf filesystem into the container instead of granting it)"
            }
            _ => "",
        }
    }
}

fn has(held: Option<u64>, capability: Capability) -> bool {
    held.is_none_or(|set| set & (1 << capability.number()) != 0)
}

/// The kernel refused a step for want of a capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// What was refused, in words: "loading the XDP program".
    pub action: String,
    pub errno: Errno,
    pub step: Step,
    /// The capabilities this step needs that the process lacks; all those it needs
    /// when its own set could not be read (`held_unknown`).
    pub missing: Vec<Capability>,
    /// What the step needs (for the message when nothing is missing).
    pub needs: &'static [Capability],
    pub held_unknown: bool,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} was refused ({:?}): ", self.action, self.errno)?;
        if self.held_unknown {
            write!(f, "the speaker needs {}", and_list(self.needs))?;
        } else if self.missing.is_empty() {
            write!(
                f,
                "this process has {}, so something else refused it: capabilities held inside a user namespace do not count for bpf() and XDP, or seccomp, a security module (AppArmor, SELinux) or kernel lockdown forbids it",
                and_list(self.needs)
            )?;
            return Ok(());
        } else {
            write!(
                f,
                "the speaker needs {}, which this process does not have",
                and_list(&self.missing)
            )?;
        }
        f.write_str(self.step.hint(&self.missing))
    }
}

impl std::error::Error for Denied {}

fn and_list(capabilities: &[Capability]) -> String {
    let names: Vec<&str> = capabilities.iter().map(|c| c.name()).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The capabilities in effect for the calling thread (`CapEff`), as a bit set.
pub fn effective() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status")?;
    parse_effective(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no CapEff line"))
}

fn parse_effective(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// The first OS error in `error`'s chain of sources.
pub fn errno_in(error: &(dyn std::error::Error + 'static)) -> Option<Errno> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            return Some(Errno::from_raw(code));
        }
        if let Some(errno) = error.downcast_ref::<Errno>() {
            return Some(*errno);
        }
        current = error.source();
    }
    None
}

/// When `error` is the kernel refusing `step` for want of a capability: which one, in
/// an error naming `action`. `None` for any other failure.
pub fn denied(
    step: Step,
    action: impl FnOnce() -> String,
    error: &(dyn std::error::Error + 'static),
) -> Option<Denied> {
    denied_with(step, action, errno_in(error)?, effective().ok())
}

/// [`denied`] for a known errno and capability set (`None`: unreadable).
pub fn denied_with(
    step: Step,
    action: impl FnOnce() -> String,
    errno: Errno,
    held: Option<u64>,
) -> Option<Denied> {
    let needs = step.needs(errno, held)?;
    Some(Denied {
        action: action(),
        errno,
        step,
        missing: needs
            .iter()
            .copied()
            .filter(|c| held.is_some() && !has(held, *c))
            .collect(),
        needs,
        held_unknown: held.is_none(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = u64::MAX;

    fn without(capabilities: &[Capability]) -> u64 {
        capabilities
            .iter()
            .fold(ALL, |set, c| set & !(1 << c.number()))
    }

    #[test]
    fn a_refusal_names_the_capability_the_step_lacks() {
        use Capability::*;
        // (step, errno, capabilities held, message or None when not a capability matter)
        let cases: &[(Step, Errno, Option<u64>, Option<&str>)] = &[
            (
                Step::CreateMaps,
                Errno::EPERM,
                Some(without(&[Bpf])),
                Some(
                    "the step was refused (EPERM): the speaker needs CAP_BPF, which this process does not have",
                ),
            ),
            (
                Step::LoadProgram,
                Errno::EPERM,
                Some(without(&[NetAdmin])),
                Some(
                    "the step was refused (EPERM): the speaker needs CAP_NET_ADMIN, which this process does not have",
                ),
            ),
            (
                Step::LoadProgram,
                Errno::EPERM,
                Some(without(&[NetAdmin, Bpf])),
                Some(
                    "the step was refused (EPERM): the speaker needs CAP_BPF and CAP_NET_ADMIN, which this process does not have",
                ),
            ),
            (
                Step::LoadProgram,
                Errno::EACCES,
                Some(without(&[Perfmon])),
                Some(
                    "the step was refused (EACCES): the speaker needs CAP_PERFMON, which this process does not have (without it the verifier's Spectre v1 hardening refuses the program's pointer arithmetic on map values)",
                ),
            ),
            // The verifier refusing a program for its own reasons is no capability matter.
            (Step::LoadProgram, Errno::EACCES, Some(ALL), None),
            (
                Step::LoadProgram,
                Errno::EINVAL,
                Some(without(&[Bpf])),
                None,
            ),
            // A pin's file permissions are no capability matter either.
            (Step::Pins, Errno::EACCES, Some(without(&[Bpf])), None),
            (
                Step::Multicast,
                Errno::EPERM,
                Some(without(&[NetAdmin])),
                Some(
                    "the step was refused (EPERM): the speaker needs CAP_NET_ADMIN, which this process does not have",
                ),
            ),
            (
                Step::PacketSocket,
                Errno::EPERM,
                Some(without(&[NetRaw])),
                Some(
                    "the step was refused (EPERM): the speaker needs CAP_NET_RAW, which this process does not have",
                ),
            ),
            (
                Step::MountBpffs,
                Errno::EPERM,
                Some(without(&[SysAdmin])),
                Some(
                    "the step was refused (EPERM): the speaker needs CAP_SYS_ADMIN, which this process does not have (in a pod, mount the host's bpf filesystem into the container instead of granting it)",
                ),
            ),
            (
                Step::AttachXdp,
                Errno::EPERM,
                None,
                Some("the step was refused (EPERM): the speaker needs CAP_BPF and CAP_NET_ADMIN"),
            ),
            (
                Step::PacketSocket,
                Errno::EPERM,
                Some(ALL),
                Some(
                    "the step was refused (EPERM): this process has CAP_NET_RAW, so something else refused it: capabilities held inside a user namespace do not count for bpf() and XDP, or seccomp, a security module (AppArmor, SELinux) or kernel lockdown forbids it",
                ),
            ),
        ];
        for (step, errno, held, want) in cases {
            let got =
                denied_with(*step, || "the step".into(), *errno, *held).map(|d| d.to_string());
            assert_eq!(got.as_deref(), *want, "{step:?} {errno:?}");
        }
    }

    #[test]
    fn the_errno_is_found_down_the_chain_of_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] io::Error);
        let error = Outer(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(errno_in(&error), Some(Errno::EPERM));
        assert_eq!(errno_in(&Errno::EACCES), Some(Errno::EACCES));
        assert_eq!(errno_in(&io::Error::other("no errno")), None);
    }

    #[test]
    fn the_effective_set_is_read_from_proc() {
        let status = "Name:\tmetallb\nCapInh:\t0000000000000000\nCapEff:\t000000c000003000\n";
        let set = parse_effective(status).expect("CapEff");
        for capability in [
            Capability::NetAdmin,
            Capability::NetRaw,
            Capability::Perfmon,
            Capability::Bpf,
        ] {
            assert!(has(Some(set), capability), "{capability}");
        }
        assert!(!has(Some(set), Capability::SysAdmin));
        assert_eq!(parse_effective("Name:\tx\n"), None);
        // This test process reads its own.
        assert!(effective().is_ok());
    }

    #[test]
    fn the_speaker_list_is_bpf_net_admin_net_raw_perfmon() {
        let names: Vec<&str> = SPEAKER_CAPABILITIES
            .iter()
            .map(|r| r.capability.kubernetes_name())
            .collect();
        assert_eq!(names, ["BPF", "NET_ADMIN", "NET_RAW", "PERFMON"]);
        assert_eq!(Capability::NetAdmin.setpriv_name(), "net_admin");
    }
}
