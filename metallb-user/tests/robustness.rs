//! The speaker under faults (needs root): interfaces that go down, come up, are
//! re-created or change their MAC; VIPs churning under load; `kill -9` in the middle
//! of a large change; a file rewritten 100 times a second. Each test runs the real binary in a lab of its own
//! and asks from the client namespace with a raw-socket ARP asker; labs, pins and
//! processes are removed when a test ends, pass or fail.

mod speaker_process;
mod support;

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    net::Ipv4Addr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::sleep,
    time::{Duration, Instant},
};

use metallb_testkit::lab::{Lab, ScratchPinDir};
use metallb_user::datapath::iface::MacAddr;
use speaker_process::{ConfigDir, Speaker, VIP, answers_ndp, lab, xdp_attached};
use support::ArpAsker;

/// How long a test waits for the speaker to follow a change (the target is a second:
/// each wait prints what it took).
const DEADLINE: Duration = Duration::from_secs(5);

/// The speaker of `lab`'s node on `config`, with `extra` arguments.
fn speaker(lab: &Lab, config: &ConfigDir, pins: &ScratchPinDir, extra: &[&str]) -> Speaker {
    speaker_process::root_speaker(lab, config, pins, extra)
}

fn vip() -> Ipv4Addr {
    VIP.parse().expect("VIP")
}

/// Asks for the VIP every 20 ms until it is answered with `mac`; how long that took.
/// A new asker each time: the client's interface may be new.
fn until_answered_with(lab: &Lab, mac: MacAddr, what: &str) -> Duration {
    let asker = ArpAsker::for_client(lab).expect("asker");
    let start = Instant::now();
    loop {
        let answer = asker
            .ask_mac(vip(), Duration::from_millis(20))
            .expect("ask");
        if answer == Some(mac.0) {
            let took = start.elapsed();
            eprintln!("{what}: answered with {mac} after {took:?}");
            return took;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not answered with {mac} within {DEADLINE:?} (last answer: {answer:?})"
        );
    }
}

/// Polls `condition` every 20 ms until it holds, or fails after [`DEADLINE`].
fn until(what: &str, condition: impl FnMut() -> bool) {
    until_within(what, DEADLINE, condition);
}

/// Polls `condition` every 20 ms until it holds, or fails after `deadline`; how long
/// it took.
fn until_within(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// The ifindex of the node's interface.
fn ifindex(lab: &Lab) -> u64 {
    let out = lab
        .ip(&lab.node_ns, &["-j", "link", "show", lab.node_if])
        .expect("ip link");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    json[0]["ifindex"].as_u64().expect("ifindex")
}

const NEW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x01, 0x77]);

#[test]
fn netns_an_interface_deleted_and_re_created_is_attached_and_programmed_again() {
    let mut lab = lab("relink");
    let (config, pins) = (ConfigDir::new(), ScratchPinDir::new("relink"));
    let speaker = speaker(&lab, &config, &pins, &["--interface", lab.node_if]);
    until_answered_with(&lab, lab.node_mac, "at start");
    let before = ifindex(&lab);

    // Same name, new ifindex, new MAC: the old attachment went with the device.
    lab.recreate_link(NEW_MAC).expect("re-create the veth pair");
    let took = until_answered_with(&lab, NEW_MAC, "after re-creation");
    assert!(
        took <= Duration::from_secs(1),
        "the re-created interface was answered on only after {took:?}"
    );
    assert_ne!(before, ifindex(&lab), "a new device, under a new ifindex");
    assert!(xdp_attached(&lab).is_some(), "attached again");
    // IPv6 too: the solicited-node group was joined on the new device.
    until("an NA with the new MAC", || answers_ndp(&lab));
    assert!(speaker.stop());
}

#[test]
fn netns_a_new_mac_goes_into_the_answers() {
    let lab = lab("newmac");
    let (config, pins) = (ConfigDir::new(), ScratchPinDir::new("newmac"));
    let speaker = speaker(&lab, &config, &pins, &["--interface", lab.node_if]);
    until_answered_with(&lab, lab.node_mac, "at start");
    lab.ip(
        &lab.node_ns,
        &["link", "set", lab.node_if, "address", &NEW_MAC.to_string()],
    )
    .expect("ip link set address");
    let took = until_answered_with(&lab, NEW_MAC, "after the MAC change");
    assert!(
        took <= Duration::from_secs(1),
        "the new MAC was answered with only after {took:?}"
    );
    assert!(speaker.stop());
}

#[test]
fn netns_an_interface_down_is_left_and_up_again_is_answered_on() {
    let lab = lab("downup");
    let (config, pins) = (ConfigDir::new(), ScratchPinDir::new("downup"));
    // Choosing interfaces itself, the speaker leaves those that are down (as MetalLB).
    let speaker = speaker(&lab, &config, &pins, &[]);
    until_answered_with(&lab, lab.node_mac, "at start");
    lab.ip(&lab.node_ns, &["link", "set", lab.node_if, "down"])
        .expect("down");
    until("detached from the interface that went down", || {
        xdp_attached(&lab).is_none()
    });
    lab.ip(&lab.node_ns, &["link", "set", lab.node_if, "up"])
        .expect("up");
    let took = until_answered_with(&lab, lab.node_mac, "after up");
    assert!(
        took <= Duration::from_secs(1),
        "the interface back up was answered on only after {took:?}"
    );
    assert!(xdp_attached(&lab).is_some());
    assert!(speaker.stop());
}

// ---------------------------------------------------------------------------------------
// Churn, crash, racing edits: VIPs of many Services in the standalone file.

/// Services asking for the given addresses (198.18.0.0/15, RFC 2544's benchmarking
/// range: no lab address is in it), one L2Advertisement.
fn vips_config(vips: impl IntoIterator<Item = Ipv4Addr>) -> String {
    let mut text = String::from(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pool, namespace: metallb-system}\n\
         spec: {addresses: [198.18.0.0/15]}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: metallb-system}\nspec: {}\n",
    );
    for ip in vips {
        let name = ip.to_string().replace('.', "-");
        text += &format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s-{name}, annotations: {{metallb.io/loadBalancerIPs: '{ip}'}}}}\n\
             spec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\n"
        );
    }
    text
}

/// The `n`th address of the benchmarking range past its first `skip`.
fn bench_vip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + n)
}

/// Replaces the file the way editors do: write aside, then rename over it.
fn write_config(path: &std::path::Path, text: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).expect("write config");
    std::fs::rename(&aside, path).expect("rename config");
}

/// The IPv4 VIPs in the pinned tables, read without a flip in between: `None` when a
/// flip happened during the read.
fn installed_v4(pins: &std::path::Path) -> Option<BTreeSet<Ipv4Addr>> {
    use metallb_user::datapath::maps::Maps;
    let ctl = pins.join(metallb_common::map_names::VIP_CTL);
    let before = Maps::read_pinned_ctl(&ctl).ok()?.generation;
    let maps = Maps::open_pinned(pins).ok()?;
    let installed = maps.installed();
    (maps.ctl().generation == before).then(|| {
        installed
            .keys()
            .filter_map(|key| match key.addr {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            })
            .collect()
    })
}

/// When each VIP was first seen in the tables, and first seen gone after that: read
/// from the pins every few milliseconds in a thread, until stopped. Times are taken
/// after a read, so "gone at t" means gone from the live tables by t at the latest.
#[derive(Default)]
struct Observed {
    present_at: HashMap<Ipv4Addr, Instant>,
    removed_at: HashMap<Ipv4Addr, Instant>,
    last: BTreeSet<Ipv4Addr>,
    samples: u64,
}

fn observe(pins: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Observed> {
    std::thread::spawn(move || {
        let mut observed = Observed::default();
        while !stop.load(Ordering::Relaxed) {
            if let Some(now) = installed_v4(&pins) {
                let at = Instant::now();
                for ip in &now {
                    observed.present_at.entry(*ip).or_insert(at);
                }
                for ip in observed.last.difference(&now) {
                    observed.removed_at.entry(*ip).or_insert(at);
                }
                observed.last = now;
                observed.samples += 1;
            }
            sleep(Duration::from_millis(3));
        }
        observed
    })
}

/// The speaker's resident set, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The request with sequence number `seq` comes from this MAC (Ethernet source and
/// `ar$sha`), so that its reply, which goes there, names it.
fn seq_mac(seq: u32) -> [u8; 6] {
    let s = seq.to_be_bytes();
    [0x06, s[0], s[1], s[2], s[3], 0x5a]
}

fn mac_seq(mac: [u8; 6]) -> Option<u32> {
    (mac[0] == 0x06 && mac[5] == 0x5a).then(|| u32::from_be_bytes([mac[1], mac[2], mac[3], mac[4]]))
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Churn: VIPs added and removed at 100 changes a second (the file rewritten at each)
/// while the client asks for every VIP ever configured at a bounded rate. Afterwards:
/// no answer to a request sent after its VIP's removal was in the tables, an answer to
/// every request for a VIP present throughout, the speaker's RSS flat. CHURN_SECS
/// (default 4) and CHURN_RATE (requests/s, default 2000) make it longer or harder:
/// `CHURN_SECS=60 CHURN_RATE=20000` is the long variant.
#[test]
fn netns_churn_answers_exactly_what_is_installed() {
    let seconds: u64 = env_or("CHURN_SECS", 4);
    let rate: u64 = env_or("CHURN_RATE", 2000);
    const STABLE: u32 = 30;
    const CHURNING: u32 = 30;
    let lab = lab("churn");
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new("churn"));
    let stable: Vec<Ipv4Addr> = (0..STABLE).map(bench_vip).collect();
    let mut churning: VecDeque<Ipv4Addr> = (STABLE..STABLE + CHURNING).map(bench_vip).collect();
    let mut next_fresh = STABLE + CHURNING;
    let configured = |churning: &VecDeque<Ipv4Addr>| -> BTreeSet<Ipv4Addr> {
        stable.iter().chain(churning).copied().collect()
    };
    write_config(&dir.file(), &vips_config(configured(&churning)));
    let mut speaker = speaker(
        &lab,
        &dir,
        &pins,
        &[
            "--interface",
            lab.node_if,
            "--garp-duration",
            "0s",
            "--max-vips",
            "1024",
            "--log-level",
            "warn",
        ],
    );
    let pid = speaker.pid();
    until("the first VIPs installed", || {
        installed_v4(&pins.path) == Some(configured(&churning))
    });

    let stop_observer = Arc::new(AtomicBool::new(false));
    let observer = observe(pins.path.clone(), stop_observer.clone());
    let asker = Arc::new(ArpAsker::for_client(&lab).expect("asker"));
    asker.set_receive_buffer(16 << 20).expect("receive buffer");
    let known = Arc::new(Mutex::new(
        configured(&churning).into_iter().collect::<Vec<_>>(),
    ));
    let requests: Arc<Mutex<Vec<(Ipv4Addr, Instant)>>> = Arc::default();
    let (stop_sending, stop_receiving) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let sender = {
        let (asker, known, requests, stop) = (
            asker.clone(),
            known.clone(),
            requests.clone(),
            stop_sending.clone(),
        );
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut sent: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due {
                    let target = {
                        let known = known.lock().expect("known");
                        known[sent as usize % known.len()]
                    };
                    let seq = u32::try_from(sent).expect("fewer than 2^32 requests");
                    requests
                        .lock()
                        .expect("requests")
                        .push((target, Instant::now()));
                    asker.send_request(target, seq_mac(seq)).expect("send");
                    sent += 1;
                }
                sleep(Duration::from_millis(1));
            }
        })
    };
    let receiver = {
        let (asker, stop) = (asker.clone(), stop_receiving.clone());
        std::thread::spawn(move || {
            let mut replies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(reply) = asker
                    .next_reply(Duration::from_millis(50))
                    .expect("receive")
                {
                    replies.push(reply);
                }
            }
            replies
        })
    };

    // 100 changes a second: one VIP added, then the oldest one removed, each time
    // with the file rewritten.
    let start = Instant::now();
    let mut rss = vec![rss_kib(pid)];
    let mut tick: u32 = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        if tick.is_multiple_of(2) {
            let fresh = bench_vip(next_fresh);
            next_fresh += 1;
            churning.push_back(fresh);
            known.lock().expect("known").push(fresh);
        } else {
            churning.pop_front();
        }
        write_config(&dir.file(), &vips_config(configured(&churning)));
        tick += 1;
        if tick.is_multiple_of(50) {
            rss.push(rss_kib(pid));
        }
        sleep((start + Duration::from_millis(10) * tick).saturating_duration_since(Instant::now()));
    }
    stop_sending.store(true, Ordering::Relaxed);
    sender.join().expect("sender");
    // Late replies to the last requests.
    sleep(Duration::from_secs(1));
    stop_receiving.store(true, Ordering::Relaxed);
    let replies = receiver.join().expect("receiver");
    let last = configured(&churning);
    until("the last configuration installed", || {
        installed_v4(&pins.path).as_ref() == Some(&last)
    });
    stop_observer.store(true, Ordering::Relaxed);
    let observed = observer.join().expect("observer");
    rss.push(rss_kib(pid));

    let requests = requests.lock().expect("requests");
    let mut answered = vec![false; requests.len()];
    let mut wrong = Vec::new();
    for reply in &replies {
        let Some(seq) = mac_seq(reply.target_mac) else {
            continue;
        };
        let Some((asked, sent)) = requests.get(seq as usize) else {
            wrong.push(format!("a reply to request {seq}, never sent"));
            continue;
        };
        if reply.sender_ip != *asked || reply.sender_mac != lab.node_mac.0 {
            wrong.push(format!("request {seq} for {asked} answered as {reply:?}"));
        }
        if let Some(removed) = observed.removed_at.get(asked)
            && sent > removed
        {
            wrong.push(format!(
                "request {seq} for {asked}, sent {:?} after its removal was in the tables, answered",
                sent.duration_since(*removed)
            ));
        }
        if !observed.present_at.contains_key(asked) {
            wrong.push(format!(
                "request {seq} for {asked}, never installed, answered"
            ));
        }
        answered[seq as usize] = true;
    }
    let after_removal = requests
        .iter()
        .filter(|(ip, sent)| observed.removed_at.get(ip).is_some_and(|r| sent > r))
        .count();
    let stable_set: BTreeSet<Ipv4Addr> = stable.iter().copied().collect();
    let stable_asked: Vec<usize> = (0..requests.len())
        .filter(|i| stable_set.contains(&requests[*i].0))
        .collect();
    let stable_missed = stable_asked.iter().filter(|i| !answered[**i]).count();
    let removed = observed.removed_at.len();
    eprintln!(
        "churn: {seconds} s, {tick} changes, {} requests ({rate}/s), {} replies; {removed} removals seen in {} samples of the tables; {after_removal} requests after a removal; {} requests for stable VIPs, {stable_missed} unanswered; RSS KiB at the start {}, after 0.5 s {}, peak {}, at the end {}",
        requests.len(),
        replies.len(),
        observed.samples,
        stable_asked.len(),
        rss[0],
        rss[1.min(rss.len() - 1)],
        rss.iter().max().unwrap_or(&0),
        rss[rss.len() - 1],
    );
    assert!(
        wrong.is_empty(),
        "{} wrong answers, the first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert_eq!(
        stable_missed, 0,
        "requests for VIPs present throughout went unanswered"
    );
    assert!(
        removed as u32 >= tick / 4,
        "too few removals were seen for the test to mean anything"
    );
    assert!(
        after_removal > 100,
        "too few requests for removed VIPs: {after_removal}"
    );
    assert!(
        stable_asked.len() > 100,
        "too few requests for the stable VIPs"
    );
    // Flat: after the first half second of churn, the resident set grows by less than
    // 4 MiB (it holds one configuration at a time).
    let warm = rss[1.min(rss.len() - 1)];
    let peak = rss.iter().copied().max().unwrap_or(0);
    assert!(
        peak <= warm + 4096,
        "RSS grew from {warm} KiB to {peak} KiB under churn: {rss:?}"
    );
    assert!(speaker.stop());
}

/// The IPv4 VIPs of the pinned `vips` map, the view for people that the agent writes
/// beside the tables.
fn view_v4(pins: &std::path::Path) -> BTreeSet<Ipv4Addr> {
    use aya::maps::{HashMap as BpfHashMap, Map, MapData};
    use metallb_common::{VipViewKey, VipViewValue};
    let data = MapData::from_pin(pins.join(metallb_common::map_names::VIPS)).expect("open vips");
    let map: BpfHashMap<_, VipViewKey, VipViewValue> =
        BpfHashMap::try_from(Map::HashMap(data)).expect("a hash map");
    map.keys()
        .map(|key| key.expect("key"))
        .filter(|key| key.family == 4)
        .map(|key| Ipv4Addr::new(key.addr[0], key.addr[1], key.addr[2], key.addr[3]))
        .collect()
}

/// Asks for `vips` one after the other, 100 ms each, until stopped: (asked, missed,
/// with when it was asked).
fn ask_throughout(
    lab: &Lab,
    vips: Vec<Ipv4Addr>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, Vec<(Ipv4Addr, Instant)>)> {
    let asker = ArpAsker::for_client(lab).expect("asker");
    // Room for the gratuitous ARP of thousands of VIPs at once.
    asker.set_receive_buffer(16 << 20).expect("receive buffer");
    std::thread::spawn(move || {
        let (mut asked, mut missed) = (0, Vec::new());
        for vip in vips.iter().cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            asked += 1;
            let at = Instant::now();
            if !asker.ask(*vip, Duration::from_millis(100)).expect("ask") {
                missed.push((*vip, at));
            }
            sleep(Duration::from_millis(5));
        }
        (asked, missed)
    })
}

/// Crash: `kill -9` while the speaker applies a large change (2,000 VIPs, half of them
/// replaced; `CRASH_VIPS=10000` for the size, about 30 s), once just after the tables flipped (the rest of the change, the view map
/// among it, not done) and once half-way to the flip (the idle half being built).
/// With `--keep-datapath` the links are pinned from the start, so the program keeps
/// answering from the live tables while no speaker runs; the restarted speaker
/// converges to exactly the configured set, in the tables and in the view map, and
/// the VIPs that stay are answered throughout.
#[test]
fn netns_a_speaker_killed_mid_change_restarts_into_exactly_the_configured_set() {
    let size: u32 = env_or("CRASH_VIPS", 2_000);
    let lab = lab("crash");
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new("crash"));
    // Each set: the same first half, and a second half of its own (each change
    // removes size/2 VIPs and adds as many).
    let set = |round: u32| -> BTreeSet<Ipv4Addr> {
        (0..size / 2)
            .chain((1 + round) * size / 2..(2 + round) * size / 2)
            .map(bench_vip)
            .collect()
    };
    let args = [
        "--interface",
        lab.node_if,
        "--keep-datapath",
        "--garp-duration",
        "0s",
        "--max-vips",
        "32768",
        "--log-level",
        "warn",
    ];
    let slow = Duration::from_secs(60);
    let converged = |wanted: &BTreeSet<Ipv4Addr>| {
        let took = until_within("the configured set installed", slow, || {
            installed_v4(&pins.path).as_ref() == Some(wanted)
        });
        assert_eq!(
            &view_v4(&pins.path),
            wanted,
            "the view map holds exactly the set"
        );
        took
    };
    write_config(&dir.file(), &vips_config(set(0)));
    let mut speaker = speaker(&lab, &dir, &pins, &args);
    eprintln!(
        "crash: {size} VIPs installed after {:?}",
        converged(&set(0))
    );

    // Answered throughout: VIPs that every set keeps.
    let staying: Vec<Ipv4Addr> = (0..size / 2).step_by(100).map(bench_vip).collect();
    assert!(!staying.is_empty());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let client = ask_throughout(&lab, staying, stop.clone());
    let generation = || {
        metallb_user::datapath::maps::Maps::read_pinned_ctl(
            &pins.path.join(metallb_common::map_names::VIP_CTL),
        )
        .expect("vip_ctl")
        .generation
    };

    // Round 1: killed right after the flip.
    let before = generation();
    write_config(&dir.file(), &vips_config(set(1)));
    let to_flip = until_within("the flip to the new set", slow, || generation() != before);
    speaker.kill();
    eprintln!("crash: killed at {:?}", start.elapsed());
    let view = view_v4(&pins.path);
    eprintln!(
        "crash: killed {to_flip:?} after the write, right after the flip; the view map then held {} of the {size} new VIPs and {} others",
        view.intersection(&set(1)).count(),
        view.difference(&set(1)).count()
    );
    assert_eq!(
        installed_v4(&pins.path),
        Some(set(1)),
        "the live tables are the new set"
    );
    speaker = self::speaker(&lab, &dir, &pins, &args);
    eprintln!("crash: ready again at {:?}", start.elapsed());
    eprintln!("crash: restarted, converged after {:?}", converged(&set(1)));

    // Round 2: killed half-way to the flip.
    let before = generation();
    write_config(&dir.file(), &vips_config(set(2)));
    sleep(to_flip / 2);
    let flipped = generation() != before;
    speaker.kill();
    eprintln!("crash: killed at {:?}", start.elapsed());
    eprintln!(
        "crash: killed {:?} after the write, {} the flip",
        to_flip / 2,
        if flipped { "after" } else { "before" }
    );
    speaker = self::speaker(&lab, &dir, &pins, &args);
    eprintln!("crash: ready again at {:?}", start.elapsed());
    eprintln!("crash: restarted, converged after {:?}", converged(&set(2)));

    stop.store(true, Ordering::Relaxed);
    let (asked, missed) = client.join().expect("client");
    eprintln!(
        "crash: {asked} requests for VIPs that stayed, {} unanswered",
        missed.len()
    );
    assert!(asked > 20, "only {asked} requests were sent");
    let missed: Vec<(Ipv4Addr, Duration)> = missed
        .into_iter()
        .map(|(vip, at)| (vip, at.duration_since(start)))
        .collect();
    assert!(
        missed.is_empty(),
        "VIPs that stayed went unanswered (asked at): {missed:?}"
    );
    assert!(speaker.stop());
}

/// Config edits racing: the file rewritten 100 times in a second, each time by rename
/// as editors write, ends with its last content applied, and stays so.
#[test]
fn netns_a_file_rewritten_100_times_in_a_second_ends_in_its_last_content() {
    let lab = lab("race");
    let (dir, pins) = (ConfigDir::new(), ScratchPinDir::new("race"));
    // Every version different: the i-th asks for i % 5 + 1 VIPs from the i-th on.
    let version = |i: u32| -> BTreeSet<Ipv4Addr> { (i..i + i % 5 + 1).map(bench_vip).collect() };
    write_config(&dir.file(), &vips_config(version(0)));
    let speaker = speaker(&lab, &dir, &pins, &["--interface", lab.node_if]);
    until("the first version installed", || {
        installed_v4(&pins.path) == Some(version(0))
    });
    let start = Instant::now();
    for i in 1..=100 {
        write_config(&dir.file(), &vips_config(version(i)));
        sleep((start + Duration::from_millis(10) * i).saturating_duration_since(Instant::now()));
    }
    let written = start.elapsed();
    let last = version(100);
    let took = until_within("the last version installed", DEADLINE, || {
        installed_v4(&pins.path).as_ref() == Some(&last)
    });
    eprintln!("race: 100 versions written in {written:?}; the last installed {took:?} after");
    // And no older version comes after it.
    let settled = Instant::now();
    while settled.elapsed() < Duration::from_secs(1) {
        assert_eq!(installed_v4(&pins.path).as_ref(), Some(&last));
        sleep(Duration::from_millis(20));
    }
    let asker = ArpAsker::for_client(&lab).expect("asker");
    for vip in &last {
        assert!(
            asker.ask(*vip, Duration::from_millis(500)).expect("ask"),
            "{vip} answered"
        );
    }
    assert!(
        !asker
            .ask(bench_vip(99), Duration::from_millis(200))
            .expect("ask"),
        "a VIP of an older version only is not answered"
    );
    assert!(speaker.stop());
}
