//! `metallb cleanup` in a namespace lab (needs root): what a speaker left with
//! --keep-datapath (pins, an attached program, a multicast MAC) is removed and said,
//! a second run has nothing to do; a running speaker is left alone; --older-than
//! keeps a datapath just left; a program whose link is pinned elsewhere is found by
//! its name.

mod speaker_process;

use std::process::{Command, Output};

use metallb_testkit::lab::{Lab, ScratchPinDir, command_in};
use speaker_process::{
    BINARY, ConfigDir, Speaker, VIP6_GROUP_MAC, answers_arp, answers_ndp, lab, run_to_end,
    vip6_group, xdp_attached,
};

/// A root speaker in the node namespace only (the host's /sys/fs/bpf stays visible).
fn speaker(lab: &Lab, config: &ConfigDir, pins: &ScratchPinDir, extra: &[&str]) -> Speaker {
    let on_its_interface = [&["--interface", lab.node_if], extra].concat();
    speaker_process::root_speaker(lab, config, pins, &on_its_interface)
}

/// A speaker that answered and stopped with --keep-datapath.
fn left_datapath(lab: &Lab, config: &ConfigDir, pins: &ScratchPinDir) {
    let left = speaker(lab, config, pins, &["--keep-datapath"]);
    assert!(answers_arp(lab) && answers_ndp(lab));
    assert!(left.stop());
    assert!(xdp_attached(lab).is_some(), "left attached");
    assert!(answers_arp(lab), "and answering");
}

/// `metallb cleanup --pin-dir PINS ARGS...` in the node namespace.
fn cleanup(lab: &Lab, pins: &ScratchPinDir, args: &[&str]) -> Output {
    let mut command: Command = command_in(&lab.node_ns, BINARY);
    command
        .arg("cleanup")
        .arg("--pin-dir")
        .arg(&pins.path)
        .args(args);
    run_to_end(&mut command)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn netns_cleanup_removes_what_a_speaker_left_then_has_nothing_to_do() {
    let lab = lab("cleanup");
    let (config, pins) = (ConfigDir::new(), ScratchPinDir::new("cleanup"));
    left_datapath(&lab, &config, &pins);
    let group = vip6_group(&lab).expect("the multicast MAC stays with the datapath");
    assert!(group.ends_with("static"), "{group}");
    let record = metallb_user::interface_report::path_for(&pins.path);
    assert!(record.exists(), "the record of the interfaces stays too");

    let output = cleanup(&lab, &pins, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    let dir = pins.path.display();
    let node_if = lab.node_if;
    let mut expected = vec![
        format!("removed multicast address {VIP6_GROUP_MAC} from {node_if}"),
        format!(
            "detached metallb_xdp from {node_if} (native): the link pinned at {dir}/links/native/{node_if}"
        ),
        format!("removed {dir}/links/native/{node_if}"),
    ];
    for map in [
        "fence_timer",
        "vip_ctl",
        "vip_stats_v4",
        "vip_stats_v6",
        "vips",
        "vips_v4",
        "vips_v6",
        "xdp_stats",
    ] {
        expected.push(format!("removed {dir}/{map}"));
    }
    expected.push(format!("removed {dir}/links/native"));
    expected.push(format!("removed {dir}/links"));
    expected.push(format!("removed {dir}"));
    assert_eq!(text(&output.stdout), expected.join("\n") + "\n");
    assert_eq!(xdp_attached(&lab), None, "nothing attached");
    assert!(!pins.path.exists(), "nothing pinned");
    assert!(!record.exists(), "no record of the interfaces");
    assert_eq!(vip6_group(&lab), None, "no multicast MAC of ours");
    assert!(!answers_arp(&lab), "nobody answers the VIP any more");

    let again = cleanup(&lab, &pins, &[]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(
        text(&again.stdout),
        format!(
            "nothing to clean up: no datapath pinned at {dir}, and no metallb_xdp attached in this network namespace\n"
        )
    );
    assert_eq!(text(&again.stderr), "");
}

#[test]
fn netns_cleanup_leaves_a_running_speaker_alone() {
    let lab = lab("cleanbusy");
    let (config, pins) = (ConfigDir::new(), ScratchPinDir::new("cleanbusy"));
    let mut running = speaker(&lab, &config, &pins, &[]);
    let pid = running.pid();
    let output = cleanup(&lab, &pins, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        format!(
            "kept: {} is in use by metallb (pid {pid}): stop it first; nothing of it was removed\n\
             kept: metallb_xdp on {} (native) belongs to the running metallb (pid {pid}): left alone\n",
            pins.path.display(),
            lab.node_if
        )
    );
    assert!(answers_arp(&lab), "still answering");
    assert!(running.stop());
    assert!(!pins.path.exists());
}

#[test]
fn netns_older_than_keeps_a_datapath_just_left_and_a_stray_program_is_found_by_name() {
    let lab = lab("cleanold");
    let (config, pins) = (ConfigDir::new(), ScratchPinDir::new("cleanold"));
    left_datapath(&lab, &config, &pins);

    let recent = cleanup(&lab, &pins, &["--older-than", "1h"]);
    assert_eq!(recent.status.code(), Some(1));
    let stderr = text(&recent.stderr);
    assert!(
        stderr.starts_with(&format!("kept: {} was left ", pins.path.display()))
            && stderr.ends_with(
                " ago, less than --older-than 1h: a restarting speaker may still adopt it\n"
            ),
        "{stderr}"
    );
    assert!(answers_arp(&lab), "kept answering");

    // The link's pin moves out of the pin directory (as a speaker with another
    // --pin-dir would have left it): the pin directory no longer leads to it.
    let elsewhere = ScratchPinDir::new("stray");
    std::fs::create_dir(&elsewhere.path).expect("another pin directory");
    let stray = elsewhere.path.join("stray-link");
    std::fs::rename(pins.path.join("links/native").join(lab.node_if), &stray)
        .expect("move the link's pin");
    // With --older-than, the pin directory goes; a program whose age cannot be told
    // stays.
    let old_enough = cleanup(&lab, &pins, &["--older-than", "0s"]);
    assert_eq!(old_enough.status.code(), Some(1));
    assert!(!pins.path.exists());
    assert_eq!(
        text(&old_enough.stderr),
        format!(
            "kept: metallb_xdp on {} (native) is pinned outside {}, where its age cannot be told: not removed with --older-than\n",
            lab.node_if,
            pins.path.display()
        )
    );
    assert!(xdp_attached(&lab).is_some());

    let output = cleanup(&lab, &pins, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        format!(
            "detached metallb_xdp from {} (native): its link is pinned outside the pin directory, and that pin now holds a detached link\n",
            lab.node_if
        )
    );
    assert_eq!(xdp_attached(&lab), None);
    assert!(!answers_arp(&lab));
    assert!(
        stray.exists(),
        "a pin outside the pin directory is not removed"
    );
}

/// The responder attached through netlink (no link), as `ip link set ... xdpgeneric
/// pinned` does, is detached through netlink.
#[test]
fn netns_a_program_attached_without_a_link_is_detached_through_netlink() {
    let lab = lab("cleannl");
    let (config, pins) = (ConfigDir::new(), ScratchPinDir::new("cleannl"));
    left_datapath(&lab, &config, &pins);
    let attached: serde_json::Value = serde_json::from_str(&xdp_attached(&lab).unwrap()).unwrap();
    let prog_id = attached["prog"]["id"]
        .as_u64()
        .expect("program id")
        .to_string();
    let elsewhere = ScratchPinDir::new("cleannl-prog");
    std::fs::create_dir(&elsewhere.path).expect("another pin directory");
    let program = elsewhere.path.join("prog");
    let program = program.to_str().unwrap();
    metallb_testkit::lab::run("bpftool", &["prog", "pin", "id", &prog_id, program]).expect("pin");
    lab.ip(
        &lab.node_ns,
        &[
            "link", "add", "extra0", "type", "veth", "peer", "name", "extra1",
        ],
    )
    .expect("another interface");
    // `ip -n` would see a fresh /sys without the pin: enter the network namespace only.
    let attach = command_in(&lab.node_ns, "ip")
        .args([
            "link",
            "set",
            "dev",
            "extra0",
            "xdpgeneric",
            "pinned",
            program,
        ])
        .output()
        .expect("ip");
    assert!(attach.status.success(), "{}", text(&attach.stderr));

    let output = cleanup(&lab, &pins, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.ends_with(&format!(
            "removed {}\ndetached metallb_xdp from extra0 (generic): it was attached without a link\n",
            pins.path.display()
        )),
        "{stdout}"
    );
    let extra = lab
        .ip(&lab.node_ns, &["-d", "-j", "link", "show", "extra0"])
        .expect("ip link");
    let extra: serde_json::Value = serde_json::from_slice(&extra.stdout).unwrap();
    assert!(extra[0]["xdp"].is_null(), "{extra}");
    assert_eq!(xdp_attached(&lab), None);
}
