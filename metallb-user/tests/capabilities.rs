//! `metallb speaker` with exactly the capabilities of `SPEAKER_CAPABILITIES`: as a
//! non-root user (uid 65532) given them with `setpriv` (ambient capabilities,
//! no_new_privs, everything else out of the bounding set), and as the DaemonSet runs it
//! (uid 0 with only those in its bounding set). With all of them it loads, pins,
//! attaches (native and generic) and answers; with one fewer it stops at start with an
//! error naming the missing one, and leaves nothing attached. Needs root (to make the
//! labs and drop privileges).

mod speaker_process;

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::Path,
    process::Command,
};

use metallb_testkit::lab::{Lab, ScratchPinDir};
use metallb_user::datapath::capabilities::{Capability, SPEAKER_CAPABILITIES};
use speaker_process::{
    BINARY, ConfigDir, Speaker, answers_arp, answers_ndp, lab, run_to_end, vip6_group, xdp_attached,
};

/// A non-root user (distroless's `nonroot`).
const SPEAKER_UID: u32 = 65532;

fn speaker_capabilities() -> Vec<Capability> {
    SPEAKER_CAPABILITIES.iter().map(|r| r.capability).collect()
}

/// A pin directory made for the speaker's user (`install -d -o 65532 -m 0700`); removed
/// with its contents on drop.
fn pin_dir_for_speaker(tag: &str) -> ScratchPinDir {
    let pins = ScratchPinDir::new(tag);
    pin_dir_for_speaker_at(&pins.path);
    pins
}

fn pin_dir_for_speaker_at(path: &Path) {
    std::fs::create_dir(path).expect("pin dir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::os::unix::fs::chown(path, Some(SPEAKER_UID), Some(SPEAKER_UID)).expect("chown");
}

/// `-all,+bpf,...`: exactly `capabilities`, as setpriv writes a set.
fn setpriv_set(capabilities: &[Capability]) -> String {
    std::iter::once("-all".to_owned())
        .chain(
            capabilities
                .iter()
                .map(|c| format!("+{}", c.setpriv_name())),
        )
        .collect::<Vec<_>>()
        .join(",")
}

/// `setpriv` arguments that run the next command as the speaker's user with exactly
/// `capabilities` (ambient, so that they survive the exec of a file without file
/// capabilities), nothing else in the bounding set, and no_new_privs (Kubernetes'
/// `allowPrivilegeEscalation: false`).
fn as_speaker_user(capabilities: &[Capability]) -> Vec<String> {
    let set = setpriv_set(capabilities);
    let uid = SPEAKER_UID.to_string();
    [
        "--reuid",
        &uid,
        "--regid",
        &uid,
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps",
        &set,
        "--ambient-caps",
        &set,
        "--bounding-set",
        &set,
        "--",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The speaker of `lab`'s node as its user with `capabilities`, entering only the
/// network namespace (`nsenter --net`: the host's /sys/fs/bpf stays visible), with a
/// locked-memory limit of 0: BPF memory is charged to the memory cgroup instead.
fn speaker_command(
    lab: &Lab,
    capabilities: &[Capability],
    config: &Path,
    pins: &Path,
    extra: &[&str],
) -> Command {
    speaker_command_as(lab, as_speaker_user(capabilities), config, pins, extra)
}

/// [`speaker_command`] with `setpriv`'s arguments given.
fn speaker_command_as(
    lab: &Lab,
    setpriv: Vec<String>,
    config: &Path,
    pins: &Path,
    extra: &[&str],
) -> Command {
    let mut command = Command::new("prlimit");
    command
        .args(["--memlock=0:0", "nsenter"])
        .arg(format!("--net=/run/netns/{}", lab.node_ns))
        .args(["--", "setpriv"])
        .args(setpriv)
        .args([BINARY, "speaker", "--config"])
        .arg(config)
        .arg("--pin-dir")
        .arg(pins)
        .args(["--interface", lab.node_if, "--node-name", "node-1"])
        .args(extra);
    command
}

/// Runs the speaker as its user with `capabilities`, expecting it to stop at start
/// with exit status 1; its standard error.
fn refused_start(lab: &Lab, capabilities: &[Capability], config: &Path, pins: &Path) -> String {
    let output = run_to_end(&mut speaker_command(lab, capabilities, config, pins, &[]));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

/// Every file under `dir` with its owner.
fn pinned(dir: &Path) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let metadata = entry.metadata().expect("metadata");
        if metadata.is_dir() {
            out.extend(pinned(&path));
        } else {
            out.push((path.display().to_string(), metadata.uid()));
        }
    }
    out.sort();
    out
}

/// With exactly its capabilities, as uid 65532, the speaker creates and pins its maps,
/// attaches natively, answers ARP and NDP (which needs the solicited-node multicast
/// MAC it adds), leaves the datapath with --keep-datapath and adopts it again; and in
/// generic mode too.
#[test]
fn netns_the_speaker_runs_as_a_non_root_user_with_exactly_its_capabilities() {
    let lab = lab("caps");
    let (config, pins) = (ConfigDir::new(), pin_dir_for_speaker("caps"));
    let capabilities = speaker_capabilities();
    let wanted_set = capabilities
        .iter()
        .fold(0u64, |set, c| set | 1 << c.number());

    let mut first = Speaker::start(
        &mut speaker_command(
            &lab,
            &capabilities,
            &config.file(),
            &pins.path,
            &["--keep-datapath"],
        ),
        &lab,
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", first.pid())).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(field("Name:"), "metallb");
    assert_eq!(field("Uid:"), "65532 65532 65532 65532");
    assert_eq!(field("Gid:"), "65532 65532 65532 65532");
    assert_eq!(field("Groups:"), "");
    assert_eq!(field("CapEff:"), format!("{wanted_set:016x}"));
    assert_eq!(field("CapBnd:"), format!("{wanted_set:016x}"));
    assert_eq!(field("NoNewPrivs:"), "1");
    assert!(answers_arp(&lab), "ARP answered");
    assert!(answers_ndp(&lab), "NDP answered");
    let group = vip6_group(&lab).expect("the multicast MAC of the VIP's group");
    assert!(group.ends_with("static"), "added by the speaker: {group}");
    let pins_now = pinned(&pins.path);
    // The maps, and (--keep-datapath) the link, pinned as soon as it is made.
    assert_eq!(
        pins_now.len(),
        metallb_common::map_names::ALL.len() + 1,
        "{pins_now:?}"
    );
    assert!(
        pins_now
            .iter()
            .any(|(path, _)| path.ends_with(&format!("links/native/{}", lab.node_if))),
        "{pins_now:?}"
    );
    assert!(
        pins_now.iter().all(|(_, uid)| *uid == SPEAKER_UID),
        "{pins_now:?}"
    );
    assert!(first.stop(), "stops cleanly, leaving the datapath");
    let link = pins.path.join("links/native").join(lab.node_if);
    assert_eq!(
        std::fs::metadata(&link).expect("the link is pinned").uid(),
        SPEAKER_UID
    );
    assert!(xdp_attached(&lab).is_some(), "still attached");

    let second = Speaker::start(
        &mut speaker_command(&lab, &capabilities, &config.file(), &pins.path, &[]),
        &lab,
    );
    assert!(!link.exists(), "the pinned link is taken over");
    assert!(answers_arp(&lab), "ARP answered by the adopted datapath");
    assert!(second.stop());
    assert_eq!(xdp_attached(&lab), None, "detached at the end");
    assert_eq!(
        vip6_group(&lab),
        None,
        "the multicast MAC removed at the end"
    );
    assert_eq!(pinned(&pins.path), [], "unpinned at the end");

    // Its stop removed the pin directory too (here it could): make it again.
    if !pins.path.exists() {
        pin_dir_for_speaker_at(&pins.path);
    }
    let generic = Speaker::start(
        &mut speaker_command(
            &lab,
            &capabilities,
            &config.file(),
            &pins.path,
            &["--xdp-mode", "generic"],
        ),
        &lab,
    );
    let attached = xdp_attached(&lab).expect("attached");
    assert!(
        attached.contains("\"mode\":2"),
        "generic (SKB) mode: {attached}"
    );
    assert!(answers_arp(&lab), "ARP answered in generic mode");
    assert!(generic.stop());
    assert_eq!(xdp_attached(&lab), None);
    assert_eq!(pinned(&pins.path), []);
}

/// As the DaemonSet runs it: uid 0 (Kubernetes gives a non-root container no ambient
/// capabilities, so those added would not be effective for another user), with only
/// the list in its bounding set, as the container runtime sets it for `drop: [ALL]`
/// and `add: [...]`, and no_new_privs. Root's own 0700 directory (as the host's
/// /sys/fs/bpf is) is its to write as its owner: CAP_DAC_OVERRIDE is not needed.
#[test]
fn netns_as_the_daemonset_runs_it_uid_0_with_only_its_capabilities() {
    let lab = lab("caproot");
    let config = ConfigDir::new();
    let host_bpffs = ScratchPinDir::new("caproot");
    std::fs::create_dir(&host_bpffs.path).expect("root's directory");
    std::fs::set_permissions(&host_bpffs.path, std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    let pins = host_bpffs.path.join("metallb");
    let capabilities = speaker_capabilities();
    let set = setpriv_set(&capabilities);
    let as_root = [
        "--no-new-privs",
        "--inh-caps",
        "-all",
        "--bounding-set",
        &set,
        "--",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut speaker = Speaker::start(
        &mut speaker_command_as(&lab, as_root, &config.file(), &pins, &[]),
        &lab,
    );
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", speaker.pid())).expect("status");
    let wanted_set = capabilities
        .iter()
        .fold(0u64, |set, c| set | 1 << c.number());
    for (field, want) in [
        ("Uid:", "0\t0\t0\t0".to_owned()),
        ("CapEff:", format!("{wanted_set:016x}")),
        ("CapPrm:", format!("{wanted_set:016x}")),
        ("CapBnd:", format!("{wanted_set:016x}")),
        ("NoNewPrivs:", "1".to_owned()),
    ] {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_default();
        assert_eq!(line.trim(), want, "{field}");
    }
    assert!(answers_arp(&lab), "ARP answered");
    assert_eq!(
        pinned(&pins).len(),
        metallb_common::map_names::ALL.len(),
        "pinned in the directory it made"
    );
    assert!(speaker.stop());
    assert_eq!(xdp_attached(&lab), None);
    assert!(!pins.exists());
}

/// With any one capability of the list missing, the speaker stops at start (exit 1)
/// with an error that names it, nothing attached; a refusal inside the datapath's
/// load leaves no pin behind either.
#[test]
fn netns_one_capability_fewer_fails_at_start_naming_it() {
    let lab = lab("capless");
    let config = ConfigDir::new();
    let all = speaker_capabilities();
    // (missing, the error's last line: its start and its end; the map created first
    // varies from run to run)
    let cases = [
        (
            Capability::Bpf,
            "error: loading the XDP datapath: creating map ",
            " was refused (EPERM): the speaker needs CAP_BPF, which this process does not have",
        ),
        (
            Capability::NetAdmin,
            "error: loading the XDP datapath: loading the XDP program metallb_xdp was refused (EPERM): ",
            "the speaker needs CAP_NET_ADMIN, which this process does not have",
        ),
        (
            Capability::NetRaw,
            "error: opening a packet socket for gratuitous announcements: opening an AF_PACKET socket was refused (EPERM): ",
            "the speaker needs CAP_NET_RAW, which this process does not have",
        ),
        (
            Capability::Perfmon,
            "error: loading the XDP datapath: loading the XDP program metallb_xdp was refused (EACCES): ",
            "the speaker needs CAP_PERFMON, which this process does not have (without it the verifier's Spectre v1 hardening refuses the program's pointer arithmetic on map values)",
        ),
    ];
    assert_eq!(
        cases.map(|(missing, ..)| missing).to_vec(),
        all,
        "one case per capability of the list"
    );
    for (missing, start, end) in cases {
        let pins = pin_dir_for_speaker(&format!("no-{}", missing.setpriv_name()));
        let held: Vec<Capability> = all.iter().copied().filter(|c| *c != missing).collect();
        let stderr = refused_start(&lab, &held, &config.file(), &pins.path);
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(start) && last.ends_with(end),
            "without {missing}, expected an error starting with\n{start}\nand ending with\n{end}\ngot:\n{stderr}"
        );
        assert_eq!(
            xdp_attached(&lab),
            None,
            "without {missing}: nothing attached"
        );
        assert_eq!(pinned(&pins.path), [], "without {missing}: nothing pinned");
    }
}

/// Where no bpf filesystem is mounted (`ip netns exec` gives the command a fresh
/// /sys), mounting one needs CAP_SYS_ADMIN, which the list leaves out: the error names
/// it and says what to do in a pod instead.
#[test]
fn netns_mounting_a_bpffs_names_cap_sys_admin() {
    let lab = lab("capmount");
    let config = ConfigDir::new();
    let pins = ScratchPinDir::new("capmount");
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &lab.node_ns, "setpriv"])
        .args(as_speaker_user(&speaker_capabilities()))
        .args([BINARY, "speaker", "--config"])
        .arg(config.file())
        .arg("--pin-dir")
        .arg(&pins.path)
        .args(["--interface", lab.node_if]);
    let output = run_to_end(&mut command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "error: loading the XDP datapath: mounting a bpf filesystem on /sys/fs/bpf (pin directory {} is on none) was refused (EPERM): the speaker needs CAP_SYS_ADMIN, which this process does not have (in a pod, mount the host's bpf filesystem into the container instead of granting it)\n",
        pins.path.display()
    );
    assert!(stderr.ends_with(&expected), "{stderr}");
}

/// Without CAP_DAC_OVERRIDE, the pin directory must be the speaker's: one owned by root
/// (as a kubelet-made hostPath directory is) is refused with its owner and mode and the
/// remedy; so are pins another user left.
#[test]
fn netns_a_pin_directory_not_the_speakers_is_refused_with_its_owner() {
    let lab = lab("capowner");
    let config = ConfigDir::new();
    let pins = ScratchPinDir::new("capowner");
    std::fs::create_dir(&pins.path).expect("pin dir");
    std::fs::set_permissions(&pins.path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let stderr = refused_start(&lab, &speaker_capabilities(), &config.file(), &pins.path);
    let dir = pins.path.display();
    let expected = format!(
        "was refused (EACCES): {dir} belongs to uid 0 (mode 0755) and this process runs as uid 65532; give the speaker a pin directory of its own (`install -d -o 65532 -m 0700 DIR`), or remove what a speaker of another user left there (`metallb cleanup --pin-dir DIR`)\n"
    );
    assert!(
        stderr.contains("error: loading the XDP datapath: pinning map ")
            && stderr.ends_with(&expected),
        "{stderr}"
    );
    assert_eq!(pinned(&pins.path), []);

    // Pins a root speaker left, in a directory that is the speaker's.
    let mut root_speaker = Command::new("nsenter");
    root_speaker
        .arg(format!("--net=/run/netns/{}", lab.node_ns))
        .args(["--", BINARY, "speaker", "--config"])
        .arg(config.file())
        .arg("--pin-dir")
        .arg(&pins.path)
        .args(["--interface", lab.node_if, "--keep-datapath"]);
    let root = Speaker::start(&mut root_speaker, &lab);
    assert!(root.stop());
    std::os::unix::fs::chown(&pins.path, Some(SPEAKER_UID), Some(SPEAKER_UID)).expect("chown");
    let stderr = refused_start(&lab, &speaker_capabilities(), &config.file(), &pins.path);
    let ctl = pins.path.join("vip_ctl");
    let expected = format!(
        "error: loading the XDP datapath: opening pinned map {ctl} was refused (EACCES): {ctl} belongs to uid 0 (mode 0600) and this process runs as uid 65532;",
        ctl = ctl.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(
        xdp_attached(&lab).is_some(),
        "the root speaker's datapath is untouched"
    );
}
