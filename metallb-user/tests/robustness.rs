//! The speaker under faults (needs root): interfaces that go down, come up, are
//! re-created or change their MAC. Each test runs the real binary in a lab of its own
//! and asks from the client namespace with a raw-socket ARP asker; labs, pins and
//! processes are removed when a test ends, pass or fail.

mod speaker_process;
mod support;

use std::{
    net::Ipv4Addr,
    process::Command,
    thread::sleep,
    time::{Duration, Instant},
};

use metallb_testkit::lab::{Lab, ScratchPinDir, command_in};
use metallb_user::datapath::{XdpMode, iface::MacAddr};
use speaker_process::{BINARY, ConfigDir, Speaker, VIP, answers_ndp, xdp_attached};
use support::ArpAsker;

/// How long a test waits for the speaker to follow a change (the target is a second:
/// each wait prints what it took).
const DEADLINE: Duration = Duration::from_secs(5);

fn lab(tag: &str) -> Lab {
    let mut lab = Lab::new(tag).expect("lab");
    lab.prepare_client_for(XdpMode::Native)
        .expect("client side");
    lab
}

/// The speaker of `lab`'s node on `config`, with `extra` arguments.
fn speaker(lab: &Lab, config: &ConfigDir, pins: &ScratchPinDir, extra: &[&str]) -> Speaker {
    let mut command: Command = command_in(&lab.node_ns, BINARY);
    command
        .arg("speaker")
        .arg("--config")
        .arg(config.file())
        .arg("--pin-dir")
        .arg(&pins.path)
        .args(["--node-name", "node-1"])
        .args(extra);
    Speaker::start(&mut command, lab)
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
fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        sleep(Duration::from_millis(20));
    }
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
