//! The `metallb speaker` binary end to end (needs root): each test runs it in the node
//! namespace of a lab of its own, edits its configuration file, and asks from the client
//! namespace with arping, ndisc6 and a raw-socket ARP asker. Labs, pins and processes
//! are removed when a test ends, pass or fail.

mod support;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::sleep,
    time::{Duration, Instant},
};

use metallb_testkit::lab::{Lab, ScratchPinDir, command_in, exec_in, unique_name};
use metallb_user::datapath::XdpMode;
use support::ArpAsker;

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");
const FIRST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 101);
const SECOND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 120);

/// A configuration: one pool, one advertisement, services asking for given addresses.
fn config(services: &[(&str, Ipv4Addr)]) -> String {
    let mut text = String::from(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pool, namespace: metallb-system}\n\
         spec: {addresses: [192.0.2.100-192.0.2.150, '2001:db8::100-2001:db8::150']}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: metallb-system}\nspec: {}\n",
    );
    for (name, ip) in services {
        text += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, annotations: {{metallb.io/loadBalancerIPs: '{ip}'}}}}\n\
             spec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\n"
        );
    }
    text
}

/// Replaces the file the way editors do: write aside, then rename over it.
fn write_config(path: &Path, text: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).expect("write config");
    std::fs::rename(&aside, path).expect("rename config");
}

/// A scratch directory for the configuration file, removed on drop.
struct ConfigDir(PathBuf);

impl ConfigDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("cfg"));
        std::fs::create_dir_all(&dir).expect("config dir");
        Self(dir)
    }
    fn file(&self) -> PathBuf {
        self.0.join("metallb.yaml")
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The command line of a speaker of `lab`'s node.
fn speaker_args(lab: &Lab, config: &Path, pins: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["speaker".into(), "--config".into()];
    args.push(config.into());
    args.push("--pin-dir".into());
    args.push(pins.into());
    for arg in ["--interface", lab.node_if, "--node-name", "node-1"] {
        args.push(arg.into());
    }
    args
}

/// The speaker process, stopped (SIGTERM, then SIGKILL) on drop.
struct Speaker(Option<Child>);

impl Speaker {
    /// Starts the speaker in the node namespace only (`nsenter --net`): it shares this
    /// process's mounts, so its pins are visible here.
    fn start(lab: &Lab, config: &Path, pins: &Path, extra: &[&str]) -> Self {
        let command = command_in(&lab.node_ns, BINARY);
        Self::launch(lab, command, config, pins, extra, Stdio::inherit())
    }

    /// Starts the speaker as `command` (which runs the binary in the node namespace)
    /// runs it, with its log to `stderr`, and waits until it is ready.
    fn launch(
        lab: &Lab,
        mut command: Command,
        config: &Path,
        pins: &Path,
        extra: &[&str],
        stderr: Stdio,
    ) -> Self {
        let child = command
            .args(speaker_args(lab, config, pins))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the speaker");
        Self::ready(lab, child)
    }

    /// Starts the speaker without `--interface`: it chooses its interfaces itself.
    fn start_choosing_interfaces(lab: &Lab, config: &Path, pins: &Path) -> Self {
        let mut args = speaker_args(lab, config, pins);
        let at = args
            .iter()
            .position(|arg| arg == "--interface")
            .expect("--interface");
        args.drain(at..at + 2);
        let child = command_in(&lab.node_ns, BINARY)
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("start the speaker");
        Self::ready(lab, child)
    }

    /// Waits until the speaker that `child` runs is ready.
    fn ready(lab: &Lab, child: Child) -> Self {
        let speaker = Self(Some(child));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !exec_in(
            &lab.node_ns,
            "curl",
            &["-sf", "http://127.0.0.1:7472/readyz"],
        )
        .expect("curl")
        .status
        .success()
        {
            assert!(
                Instant::now() < deadline,
                "the speaker did not become ready"
            );
            sleep(Duration::from_millis(50));
        }
        speaker
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> ExitStatus {
        let mut child = self.0.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        child.wait().expect("wait")
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn lab(tag: &str) -> Lab {
    let mut lab = Lab::new(tag).expect("lab");
    lab.prepare_client_for(XdpMode::Native)
        .expect("client side");
    lab
}

fn answered(lab: &Lab, ip: Ipv4Addr) -> bool {
    let out = lab.arping(ip, 1, 1).expect("arping");
    String::from_utf8_lossy(&out.stdout)
        .to_lowercase()
        .contains(&format!("[{}]", lab.node_mac))
}

fn metrics(lab: &Lab) -> String {
    let out = exec_in(
        &lab.node_ns,
        "curl",
        &["-sf", "http://127.0.0.1:7472/metrics"],
    )
    .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn netns_a_vip_added_to_the_file_is_answered_within_a_second_and_announced() {
    a_vip_added_is_answered_within_a_second_and_announced("xdp", "add");
}

#[test]
fn netns_userspace_a_vip_added_to_the_file_is_answered_within_a_second_and_announced() {
    a_vip_added_is_answered_within_a_second_and_announced("userspace", "add-usr");
}

fn a_vip_added_is_answered_within_a_second_and_announced(datapath: &str, tag: &str) {
    let lab = lab(tag);
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new(tag));
    write_config(&dir.file(), &config(&[("first", FIRST)]));
    let speaker = Speaker::start(&lab, &dir.file(), &pins.path, &["--datapath", datapath]);
    assert!(answered(&lab, FIRST), "the first VIP is answered");
    assert!(
        !answered(&lab, SECOND),
        "the second VIP is not configured yet"
    );

    // Gratuitous ARP for the new VIP (sender = target = VIP), both forms.
    let filter = format!(
        "arp and arp[14:4] == arp[24:4] and arp[24:4] == 0x{:08x}",
        u32::from(SECOND)
    );
    let capture = lab
        .client_tcpdump(Some(8))
        .args(["-c", "2", &filter])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    sleep(Duration::from_millis(500));

    // Ask every 20 ms (arping waits a whole second between tries).
    let asker = ArpAsker::for_client(&lab).expect("asker");
    write_config(
        &dir.file(),
        &config(&[("first", FIRST), ("second", SECOND)]),
    );
    let written = Instant::now();
    let first_answered_attempt = loop {
        let attempt = Instant::now();
        if asker.ask(SECOND, Duration::from_millis(20)).expect("ask") {
            break attempt;
        }
        assert!(
            written.elapsed() < Duration::from_secs(5),
            "the added VIP was never answered"
        );
    };
    let delay = first_answered_attempt.duration_since(written);
    assert!(
        delay <= Duration::from_secs(1),
        "the added VIP was first answered {delay:?} after the write"
    );
    assert!(answered(&lab, FIRST), "the first VIP is still answered");

    let captured = capture.wait_with_output().expect("tcpdump output");
    let text = String::from_utf8_lossy(&captured.stdout).to_lowercase();
    let node_mac = lab.node_mac.to_string();
    assert!(
        text.lines().filter(|l| l.contains(&node_mac)).count() == 2
            && text.contains("request")
            && text.contains("reply"),
        "gratuitous ARP request and reply from {node_mac}, got:\n{text}"
    );
    assert!(speaker.stop().success());
}

#[test]
fn netns_a_removed_vip_stops_being_answered_and_an_invalid_edit_changes_nothing() {
    let lab = lab("edit");
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new("edit"));
    write_config(
        &dir.file(),
        &config(&[("first", FIRST), ("second", SECOND)]),
    );
    let speaker = Speaker::start(
        &lab,
        &dir.file(),
        &pins.path,
        &["--max-config-bytes", "4096"],
    );
    assert!(answered(&lab, FIRST) && answered(&lab, SECOND));

    write_config(&dir.file(), &config(&[("first", FIRST)]));
    let removed = Instant::now();
    while answered(&lab, SECOND) {
        assert!(
            removed.elapsed() < Duration::from_secs(3),
            "the removed VIP is still answered"
        );
    }
    assert!(answered(&lab, FIRST), "the VIP that stays is answered");

    // Broken YAML, an invalid pool, a file past --max-config-bytes: all refused, the
    // last good config serves.
    for broken in [
        "apiVersion: v1\nkind: Service\nspec: [unclosed\n",
        &config(&[("first", FIRST)]).replace("192.0.2.100-", "192.0.2.300-"),
        &format!("{}# {}\n", config(&[("first", FIRST)]), "x".repeat(4096)),
    ] {
        write_config(&dir.file(), broken);
        sleep(Duration::from_millis(1500));
        assert!(
            answered(&lab, FIRST),
            "the old VIP stays answered after an invalid edit"
        );
        assert!(!answered(&lab, SECOND));
        assert_eq!(
            metric(&metrics(&lab), "metallb_k8s_client_config_stale_bool"),
            Some(1.0)
        );
    }
    write_config(
        &dir.file(),
        &config(&[("first", FIRST), ("second", SECOND)]),
    );
    let fixed = Instant::now();
    while !answered(&lab, SECOND) {
        assert!(
            fixed.elapsed() < Duration::from_secs(3),
            "the fixed file was not applied"
        );
    }
    assert_eq!(
        metric(&metrics(&lab), "metallb_k8s_client_config_stale_bool"),
        Some(0.0)
    );
    assert!(speaker.stop().success());
}

/// The lines of the speaker's JSON log that carry `message`.
fn log_lines(path: &Path, message: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let wanted = format!("\"message\":\"{message}\"");
    text.lines()
        .filter(|l| l.contains(&wanted))
        .map(str::to_owned)
        .collect()
}

/// Waits (up to 5 s) for more than `before` applies in the log; the last one.
fn next_apply(path: &Path, before: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = log_lines(path, "configuration applied");
        if lines.len() > before {
            return lines.last().cloned().unwrap_or_default();
        }
        assert!(Instant::now() < deadline, "no new apply in the log");
        sleep(Duration::from_millis(20));
    }
}

/// A Service moved to another address in the file is planned alone (the apply says
/// it replanned one Service, and looked at it and a sample of the others only: the
/// file source said which document changed), and an address given back still goes
/// to the Service that failed asking for it (that change is planned whole).
#[test]
fn netns_a_moved_service_is_planned_alone_and_a_released_address_goes_to_who_wanted_it() {
    const THIRD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 130);
    // 60 more Services (IPv6), after these.
    let others: String = (0..60)
        .map(|i| format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: other{i}, annotations: {{metallb.io/loadBalancerIPs: '2001:db8::{:x}'}}}}\nspec: {{type: LoadBalancer, ipFamilies: [IPv6], ports: [{{port: 80, protocol: TCP}}]}}\n", 0x100 + i))
        .collect();
    let config = |services: &[(&str, Ipv4Addr)]| config(services) + &others;
    let lab = lab("replan");
    let (dir, logs, pins) = (
        ConfigDir::new(),
        ConfigDir::new(),
        ScratchPinDir::new("replan"),
    );
    let log = logs.0.join("speaker.log");
    write_config(
        &dir.file(),
        &config(&[("first", FIRST), ("second", SECOND)]),
    );
    let speaker = Speaker::launch(
        &lab,
        command_in(&lab.node_ns, BINARY),
        &dir.file(),
        &pins.path,
        &["--log-format", "json"],
        Stdio::from(std::fs::File::create(&log).expect("log file")),
    );
    assert!(answered(&lab, FIRST) && answered(&lab, SECOND));

    let applies = log_lines(&log, "configuration applied").len();
    write_config(&dir.file(), &config(&[("first", FIRST), ("second", THIRD)]));
    let applied = next_apply(&log, applies);
    assert!(applied.contains("\"replanned\":1"), "{applied}");
    // The moved one, the two next to it and a sample of 32 of the 61 others.
    assert!(applied.contains("\"looked\":35"), "{applied}");
    assert!(answered(&lab, THIRD), "the moved VIP is answered");
    assert!(!answered(&lab, SECOND), "its old address is not");
    assert!(answered(&lab, FIRST), "the other VIP still is");

    // `late` asks for the address `first` holds: it fails. When `first` goes, it
    // gets it: the address stays answered.
    let applies = log_lines(&log, "configuration applied").len();
    write_config(
        &dir.file(),
        &config(&[("first", FIRST), ("second", THIRD), ("late", FIRST)]),
    );
    next_apply(&log, applies);
    let applies = log_lines(&log, "configuration applied").len();
    write_config(&dir.file(), &config(&[("second", THIRD), ("late", FIRST)]));
    let applied = next_apply(&log, applies);
    assert!(!applied.contains("\"replanned\""), "{applied}");
    assert!(answered(&lab, FIRST), "the address given back is late's");
    assert!(speaker.stop().success());
}

#[test]
fn netns_a_restart_with_keep_datapath_loses_no_answer() {
    let lab = lab("keep");
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new("keep"));
    write_config(&dir.file(), &config(&[("first", FIRST)]));
    let first = Speaker::start(&lab, &dir.file(), &pins.path, &["--keep-datapath"]);

    let asker = ArpAsker::for_client(&lab).expect("asker");
    let stop = Arc::new(AtomicBool::new(false));
    let (asked, missed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let client = {
        let (stop, asked, missed) = (stop.clone(), asked.clone(), missed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let slot = Instant::now();
                let ok = asker.ask(FIRST, Duration::from_millis(50)).expect("ask");
                asked.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    missed.fetch_add(1, Ordering::Relaxed);
                }
                sleep(Duration::from_millis(10).saturating_sub(slot.elapsed()));
            }
        })
    };
    sleep(Duration::from_millis(500));
    assert!(
        first.stop().success(),
        "the first speaker exits cleanly, leaving the datapath"
    );
    assert!(
        pins.path.join("links/native").join(lab.node_if).exists(),
        "the link is left pinned"
    );
    // With no speaker running, `metallb inspect` reads the datapath left in place, and
    // its counters still move: XDP keeps answering.
    let inspect = || {
        let json = support::inspect_json(&lab.node_ns, &pins.path);
        assert_eq!(json["vips"][0]["vip"], FIRST.to_string());
        assert_eq!(json["vips"][0]["interface"], lab.node_if);
        assert_eq!(json["vips"][0]["action"], "answer");
        // And the interfaces as the speaker recorded them.
        assert_eq!(
            json["interfaces"]["attached"],
            serde_json::json!([{"interface": lab.node_if, "reason": "command_line"}])
        );
        json["vips"][0]["replies"].as_u64().expect("replies")
    };
    let before = inspect();
    sleep(Duration::from_millis(300));
    assert!(inspect() > before, "answers continue while no speaker runs");
    let second = Speaker::start(&lab, &dir.file(), &pins.path, &[]);
    sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    client.join().expect("asker thread");
    let (asked, missed) = (
        asked.load(Ordering::Relaxed),
        missed.load(Ordering::Relaxed),
    );
    assert!(asked > 100, "only {asked} requests were sent");
    assert_eq!(
        missed, 0,
        "{missed} of {asked} requests went unanswered through the restart"
    );
    assert!(answered(&lab, FIRST));
    assert!(second.stop().success());
    assert!(!pins.path.exists(), "a normal stop unpins everything");
    assert!(
        !metallb_user::interface_report::path_for(&pins.path).exists(),
        "and removes its record of the interfaces"
    );
}

#[test]
fn netns_metrics_count_exactly_the_requests_sent() {
    metrics_count_exactly_the_requests_sent("xdp", "metrics");
}

#[test]
fn netns_userspace_metrics_count_exactly_the_requests_sent() {
    metrics_count_exactly_the_requests_sent("userspace", "metrics-usr");
}

/// Metrics and `metallb inspect` count the same for either datapath.
fn metrics_count_exactly_the_requests_sent(datapath: &str, tag: &str) {
    let lab = lab(tag);
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new(tag));
    write_config(&dir.file(), &config(&[("first", FIRST)]));
    let speaker = Speaker::start(&lab, &dir.file(), &pins.path, &["--datapath", datapath]);
    let out = lab.arping(FIRST, 5, 7).expect("arping");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Received 5 response(s)"));
    // The speaker reads the kernel's counters every second.
    sleep(Duration::from_millis(1500));
    let text = metrics(&lab);
    let ip = format!("{{ip=\"{FIRST}\"}}");
    assert_eq!(
        metric(&text, &format!("metallb_layer2_requests_received{ip}")),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, &format!("metallb_layer2_responses_sent{ip}")),
        Some(5.0),
        "{text}"
    );
    let json = support::inspect_json(&lab.node_ns, &pins.path);
    assert_eq!(json["vips"][0]["vip"], FIRST.to_string());
    assert_eq!(json["vips"][0]["requests"], 5, "{json}");
    assert_eq!(json["vips"][0]["replies"], 5, "{json}");
    // At start: the request and reply forms, every 1.1 s for 5 s: 5 rounds.
    sleep(Duration::from_secs(5));
    assert_eq!(
        metric(
            &metrics(&lab),
            &format!("metallb_layer2_gratuitous_sent{ip}")
        ),
        Some(10.0)
    );
    assert_eq!(
        metric(
            &text,
            "metallb_allocator_addresses_in_use_total{pool=\"pool\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "metallb_allocator_addresses_total{pool=\"pool\"}"),
        // 192.0.2.100-150 and 2001:db8::100-150 (hexadecimal: 0x51 addresses).
        Some(51.0 + 81.0),
        "{text}"
    );
    assert!(speaker.stop().success());
}

#[test]
fn netns_sighup_reloads_what_the_watch_cannot_see() {
    let lab = lab("hup");
    let pins = ScratchPinDir::new("hup");
    // The speaker reads a symlink; the file it points to lives in another directory,
    // whose changes the watch (on the symlink's directory) does not see.
    let (links, files) = (ConfigDir::new(), ConfigDir::new());
    write_config(&files.file(), &config(&[("first", FIRST)]));
    std::os::unix::fs::symlink(files.file(), links.file()).expect("symlink");
    let speaker = Speaker::start(&lab, &links.file(), &pins.path, &[]);
    assert!(answered(&lab, FIRST));

    write_config(
        &files.file(),
        &config(&[("first", FIRST), ("second", SECOND)]),
    );
    sleep(Duration::from_millis(1500));
    assert!(!answered(&lab, SECOND), "not reloaded without SIGHUP");
    let pid = nix::unistd::Pid::from_raw(speaker.0.as_ref().expect("running").id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let sent = Instant::now();
    while !answered(&lab, SECOND) {
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "SIGHUP did not reload"
        );
    }
    assert!(speaker.stop().success());
}

/// `--garp-duration 0s` (a Go-style duration) announces once: one round, the request
/// and reply forms, and no more, even with a short interval.
#[test]
fn netns_garp_duration_0s_announces_once() {
    let lab = lab("garp0");
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new("garp0"));
    write_config(&dir.file(), &config(&[("first", FIRST)]));
    let speaker = Speaker::start(
        &lab,
        &dir.file(),
        &pins.path,
        &["--garp-duration", "0s", "--garp-interval", "100ms"],
    );
    let gratuitous = format!("metallb_layer2_gratuitous_sent{{ip=\"{FIRST}\"}}");
    let started = Instant::now();
    while metric(&metrics(&lab), &gratuitous) != Some(2.0) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no gratuitous round: {}",
            metrics(&lab)
        );
        sleep(Duration::from_millis(50));
    }
    // Ten intervals later, still one round.
    sleep(Duration::from_secs(1));
    assert_eq!(metric(&metrics(&lab), &gratuitous), Some(2.0));
    assert!(speaker.stop().success());
}

/// A start-up with many VIPs paces its gratuitous announcements per interface
/// (`--garp-rate`), and a VIP gained meanwhile is announced ahead of that backlog.
/// Frames are counted from the client's capture (kernel timestamps, by windows of a
/// second): the bound is the pacer's own arithmetic, not a timing.
#[test]
fn netns_gratuitous_announcements_are_paced_and_a_gained_vip_goes_first() {
    use std::io::BufRead as _;
    const VIPS: u32 = 400;
    const RATE: usize = 100;
    let lab = lab("garprate");
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new("garprate"));
    let vip = |i: u32| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 1)) + i);
    let gained = vip(VIPS + 100);
    let text = |with_gained: bool| {
        let mut text = String::from(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pool, namespace: metallb-system}\n\
             spec: {addresses: [10.1.0.0/16]}\n\
             ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: metallb-system}\nspec: {}\n",
        );
        let ips = (0..VIPS).map(vip).chain(with_gained.then_some(gained));
        for (i, ip) in ips.enumerate() {
            text += &format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, annotations: {{metallb.io/loadBalancerIPs: '{ip}'}}}}\n\
                 spec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\n"
            );
        }
        text
    };
    write_config(&dir.file(), &text(false));
    // Every gratuitous ARP (sender = target), with the kernel's timestamps.
    let mut capture = lab
        .client_tcpdump(Some(60))
        .args(["-tt", "-c", &(2 * (VIPS + 1)).to_string()])
        .arg("arp and arp[14:4] == arp[24:4]")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    // Kept open until tcpdump is done: it reports on stderr as it exits.
    let mut stderr = std::io::BufReader::new(capture.stderr.take().expect("stderr"));
    let mut said = String::new();
    while !said.contains("listening on") {
        let before = said.len();
        stderr.read_line(&mut said).expect("tcpdump's stderr");
        assert!(said.len() > before, "tcpdump exited: {said}");
    }

    let speaker = Speaker::start(
        &lab,
        &dir.file(),
        &pins.path,
        &["--garp-rate", &RATE.to_string(), "--garp-duration", "0s"],
    );
    // Gained while the start-up's 800 frames go out at 100 a second.
    write_config(&dir.file(), &text(true));
    let captured = capture.wait_with_output().expect("tcpdump output");
    let text = String::from_utf8_lossy(&captured.stdout).to_lowercase();
    let node_mac = lab.node_mac.to_string();
    // "TIME MAC > ff:ff:ff:ff:ff:ff, ... Request who-has VIP tell VIP" or "... Reply VIP is-at MAC".
    let frames: Vec<(f64, Ipv4Addr)> = text
        .lines()
        .filter(|l| l.contains(&format!(" {node_mac} > ")))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let after = |word: &str| words.iter().position(|w| *w == word).map(|i| words[i + 1]);
            let ip = after("who-has").or_else(|| after("reply"))?;
            Some((
                words[0].parse().ok()?,
                ip.trim_end_matches(',').parse().ok()?,
            ))
        })
        .collect();
    assert_eq!(
        frames.len(),
        2 * (VIPS as usize + 1),
        "every VIP announced in both forms, once:\n{text}"
    );
    for ip in (0..VIPS).map(vip).chain([gained]) {
        assert_eq!(frames.iter().filter(|f| f.1 == ip).count(), 2, "{ip}");
    }
    // Paced: at most a second's worth at once, a second's worth of refill and the
    // gained VIP's in any second (unpaced, all 802 come within milliseconds).
    let most_in_a_second = frames
        .iter()
        .map(|(start, _)| {
            frames
                .iter()
                .filter(|(t, _)| t >= start && *t < start + 1.0)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        most_in_a_second <= 3 * RATE + 2,
        "{most_in_a_second} frames within a second"
    );
    let startup: Vec<f64> = frames
        .iter()
        .filter(|f| f.1 != gained)
        .map(|f| f.0)
        .collect();
    let first_gained = frames
        .iter()
        .find(|f| f.1 == gained)
        .map(|f| f.0)
        .expect("gained VIP announced");
    let before = startup.iter().filter(|t| **t < first_gained).count();
    assert!(
        before < startup.len() - RATE,
        "the gained VIP waited behind the start-up backlog: {before} of {} frames before it",
        startup.len()
    );
    assert!(speaker.stop().success());
}

/// The bpf filesystems mounted in this process's (the host's) mount namespace.
fn bpf_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mounts")
        .expect("read /proc/self/mounts")
        .lines()
        .filter(|line| line.split(' ').nth(2) == Some("bpf"))
        .map(str::to_owned)
        .collect()
}

/// `ip netns exec` gives the speaker a mount namespace of its own with a fresh /sys,
/// where no bpf filesystem is mounted: the speaker mounts one on /sys/fs/bpf, says so,
/// warns that its pins vanish with that namespace, and answers. Neither the mount nor
/// the pins appear in this (the host's) mount namespace, during the run or after.
#[test]
fn netns_under_ip_netns_exec_the_speaker_mounts_a_bpffs_and_answers() {
    let lab = lab("ipexec");
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new("ipexec"));
    write_config(&dir.file(), &config(&[("first", FIRST)]));
    let mounts = bpf_mounts();
    let log_path = dir.0.join("speaker.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut command = Command::new("ip");
    command.args(["netns", "exec", &lab.node_ns, BINARY]);
    let speaker = Speaker::launch(&lab, command, &dir.file(), &pins.path, &[], log.into());
    assert!(
        answered(&lab, FIRST),
        "answered, from maps pinned on its own bpffs"
    );
    assert_eq!(bpf_mounts(), mounts, "no mount in the host's namespace");
    assert!(
        !pins.path.exists(),
        "the pins are in the speaker's mount namespace only"
    );
    assert!(speaker.stop().success());
    let log = std::fs::read_to_string(&log_path).expect("read the log");
    assert!(
        log.contains("mounted a bpf filesystem: the pin directory was on none path=/sys/fs/bpf"),
        "{log}"
    );
    assert!(
        log.contains(" WARN ") && log.contains("runs in a mount namespace of its own"),
        "{log}"
    );
    assert_eq!(bpf_mounts(), mounts, "nothing left in the host's namespace");
}

/// Where no bpf filesystem can be mounted (here: /sys is an empty tmpfs, without
/// /sys/fs/bpf), the speaker stops with an error that says what failed and what to do.
#[test]
fn netns_a_bpffs_that_cannot_be_mounted_is_a_clear_error() {
    let lab = lab("nobpffs");
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new("nobpffs"));
    write_config(&dir.file(), &config(&[("first", FIRST)]));
    let mounts = bpf_mounts();
    let output = Command::new("ip")
        .args(["netns", "exec", &lab.node_ns, "sh", "-c"])
        .arg("mount -t tmpfs tmpfs /sys && exec \"$0\" \"$@\"")
        .arg(BINARY)
        .args(speaker_args(&lab, &dir.file(), &pins.path))
        .output()
        .expect("run the speaker");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "error: loading the XDP datapath: pin directory {} is on no bpf filesystem, and mounting one on /sys/fs/bpf failed (ENOENT: No such file or directory); mount one there with `mount -t bpf bpf /sys/fs/bpf`\n",
        pins.path.display()
    );
    assert!(stderr.ends_with(&expected), "{stderr}");
    assert_eq!(bpf_mounts(), mounts);
}

/// The interfaces of namespace `ns` with an XDP program attached, as the kernel says,
/// by name.
fn with_xdp(lab: &Lab, ns: &str) -> Vec<String> {
    let out = lab.ip(ns, &["-j", "link", "show"]).expect("ip link");
    let links: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("ip -j");
    let mut names: Vec<String> = links
        .iter()
        .filter(|link| link.get("xdp").is_some())
        .filter_map(|link| link["ifname"].as_str().map(String::from))
        .collect();
    names.sort();
    names
}

/// A node as Kubernetes leaves it: pod veths (`vethabc123`, `cali1234`), kube-proxy's
/// `kube-ipvs0` (a veth stands in: this kernel has no dummy links), a LAN interface
/// `eth0`, and `eth1`, down. With an L2Advertisement naming no interface and no
/// `--interface`, the real speaker attaches only to `eth0` and the lab's own interface;
/// `plan` and `inspect` list the others as skipped, with the pattern that matched.
#[test]
fn netns_pod_veths_and_kube_ipvs0_are_left_alone() {
    let lab = lab("ifaces");
    let node = lab.node_ns.clone();
    // Their peers go to the client namespace, so that nothing else appears on the node.
    for (name, peer, up) in [
        ("vethabc123", "pod0", true),
        ("cali1234", "pod1", true),
        ("kube-ipvs0", "ipvs0", true),
        ("eth0", "lan0", true),
        ("eth1", "lan1", false),
    ] {
        lab.ip(
            &node,
            &[
                "link",
                "add",
                name,
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                &lab.client_ns,
            ],
        )
        .expect("add a veth");
        if up {
            lab.ip(&node, &["link", "set", name, "up"]).expect("up");
        }
    }
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new("ifaces"));
    write_config(&dir.file(), &config(&[("first", FIRST)]));
    let speaker = Speaker::start_choosing_interfaces(&lab, &dir.file(), &pins.path);

    let mut attached = vec!["eth0".to_string(), lab.node_if.to_string()];
    attached.sort();
    assert_eq!(with_xdp(&lab, &node), attached, "only these run XDP");
    assert!(
        answered(&lab, FIRST),
        "answered through the lab's interface"
    );

    let every = serde_json::json!({"reason": "every_interface", "advertisements": ["l2"]});
    let attached_json: Vec<serde_json::Value> = attached
        .iter()
        .map(|name| {
            let mut entry = every.clone();
            entry["interface"] = name.as_str().into();
            entry
        })
        .collect();
    let skipped = serde_json::json!([
        {"interface": "cali1234", "reason": "excluded", "pattern": "^cali.*"},
        {"interface": "eth1", "reason": "down"},
        {"interface": "kube-ipvs0", "reason": "excluded", "pattern": "^kube-ipvs.*"},
        {"interface": "lo", "reason": "excluded", "pattern": "^lo$"},
        {"interface": "vethabc123", "reason": "excluded", "pattern": "^veth.*"},
    ]);

    // inspect: the speaker's record, and VIP entries on the attached interfaces only.
    let json = support::inspect_json(&node, &pins.path);
    assert_eq!(
        json["interfaces"]["attached"],
        serde_json::json!(attached_json)
    );
    assert_eq!(json["interfaces"]["skipped"], skipped);
    let mut vip_interfaces: Vec<&str> = json["vips"]
        .as_array()
        .expect("vips")
        .iter()
        .filter_map(|vip| vip["interface"].as_str())
        .collect();
    vip_interfaces.sort();
    vip_interfaces.dedup();
    assert_eq!(vip_interfaces, attached);

    // plan, in the node's namespace with the same file: the same choice, in words too.
    let plan = |output: &str| {
        let out = command_in(&node, BINARY)
            .args([
                "plan",
                "--node-name",
                "node-1",
                "--output",
                output,
                "--config",
            ])
            .arg(dir.file())
            .env("RUST_LOG", "off")
            .output()
            .expect("plan");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let json: serde_json::Value = serde_json::from_str(&plan("json")).expect("JSON");
    assert_eq!(
        json["interfaces"]["attached"],
        serde_json::json!(attached_json)
    );
    assert_eq!(json["interfaces"]["skipped"], skipped);
    let table = plan("table");
    let rows: Vec<&str> = table
        .lines()
        .skip_while(|line| !line.starts_with("INTERFACE"))
        .collect();
    assert_eq!(
        rows,
        [
            "INTERFACE   XDP     WHY",
            "cali1234    skip    excluded by ^cali.*",
            "eth0        attach  every interface not excluded (L2Advertisement l2 names none)",
            "eth1        skip    down",
            "kube-ipvs0  skip    excluded by ^kube-ipvs.*",
            "lo          skip    excluded by ^lo$",
            "mlb-node    attach  every interface not excluded (L2Advertisement l2 names none)",
            "vethabc123  skip    excluded by ^veth.*",
            "exclusion patterns (MetalLB's defaults): ^docker.*, ^cbr.*, ^dummy.*, ^virbr.*, ^lxcbr.*, ^veth.*, ^lo$, ^cali.*, ^tunl.*, ^flannel.*, ^kube-ipvs.*, ^cni.*, ^nodelocaldns.*, ^lxc.*",
        ],
        "{table}"
    );

    assert!(speaker.stop().success());
    assert_eq!(with_xdp(&lab, &node), Vec::<String>::new(), "all detached");
    assert!(!metallb_user::interface_report::path_for(&pins.path).exists());
}

/// One speaker per pin directory: a second one started on the same --pin-dir exits at
/// once with an error naming the first one's pid (before, it adopted the maps and
/// synced its own plan over them); one with --pin-dir-wait waits, and takes the
/// datapath over, as --keep-datapath left it, once the first has exited.
#[test]
fn netns_a_second_speaker_on_the_same_pin_dir_is_refused_or_waits() {
    let lab = lab("lock");
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new("lock"));
    write_config(&dir.file(), &config(&[("first", FIRST)]));
    let first = Speaker::start(&lab, &dir.file(), &pins.path, &["--keep-datapath"]);
    let first_pid = first.0.as_ref().expect("running").id();
    // Its own metrics port: on the first one's, it would stop there, not at the lock.
    let second = |extra: &[&str]| {
        let mut command = command_in(&lab.node_ns, BINARY);
        command
            .args(speaker_args(&lab, &dir.file(), &pins.path))
            .args(["--metrics-addr", "127.0.0.1:17601"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };

    let started = Instant::now();
    let output = second(&[]).output().expect("run a second speaker");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once, not after {:?}",
        started.elapsed()
    );
    let expected = format!(
        "error: loading the XDP datapath: pin directory {} is in use by another agent (pid {first_pid}); one agent per pin directory: stop it, give this one another --pin-dir, or wait for it with --pin-dir-wait\n",
        pins.path.display()
    );
    assert!(stderr.ends_with(&expected), "{stderr}");
    assert!(answered(&lab, FIRST), "the first one still answers");

    let output = second(&["--pin-dir-wait", "300ms"])
        .output()
        .expect("run a waiting speaker");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.ends_with(&format!(
            "error: loading the XDP datapath: pin directory {} was still in use by another agent (pid {first_pid}) after waiting 300ms (--pin-dir-wait)\n",
            pins.path.display()
        )),
        "{stderr}"
    );

    let mut waiting = Speaker(Some(
        second(&["--pin-dir-wait", "30s"])
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a waiting speaker"),
    ));
    let ready = || {
        exec_in(
            &lab.node_ns,
            "curl",
            &["-sf", "http://127.0.0.1:17601/readyz"],
        )
        .expect("curl")
        .status
        .success()
    };
    sleep(Duration::from_millis(300));
    assert!(
        !ready(),
        "not ready while the first one holds the directory"
    );
    assert!(
        matches!(waiting.0.as_mut().expect("running").try_wait(), Ok(None)),
        "still waiting"
    );
    assert!(first.stop().success());
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "the waiting speaker never took over"
        );
        sleep(Duration::from_millis(50));
    }
    assert!(answered(&lab, FIRST), "answered after the takeover");
    // /healthz reports the main loop turning (at least once a second).
    let health = exec_in(
        &lab.node_ns,
        "curl",
        &["-sf", "http://127.0.0.1:17601/healthz"],
    )
    .expect("curl");
    let health = String::from_utf8_lossy(&health.stdout);
    assert!(
        health.starts_with("ok: the main loop turned ") && health.ends_with("ms ago\n"),
        "{health}"
    );
    assert!(waiting.stop().success());
    assert!(!pins.path.exists(), "a normal stop unpins everything");
}
