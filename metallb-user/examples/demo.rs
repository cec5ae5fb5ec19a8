//! The README's demo (`cargo xtask demo`): the `metallb` speaker in a two-namespace lab,
//! on the example configuration shipped in the repository. Shows the plan, the answers
//! `arping` and `ndisc6` get from the client, the gratuitous ARP captured on the client
//! side, `metallb inspect`, and the metrics; then removes everything. Exits non-zero if
//! an answer is missing.

mod common;

use std::{
    io::Read as _,
    net::IpAddr,
    path::Path,
    process::Stdio,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use common::{Running, ask_every_vip, metallb_binary, say, stdout};
use metallb_testkit::lab::{Lab, command_in, exec_in};
use metallb_user::datapath::XdpMode;

const NODE_NAME: &str = "node-1";
const PIN_DIR: &str = "/sys/fs/bpf/metallb-demo";

fn main() -> anyhow::Result<()> {
    let binary = metallb_binary()?;
    let config = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/standalone.yaml")
        .canonicalize()?;
    let mut lab = Lab::new("demo")?;
    lab.prepare_client_for(XdpMode::Native)?;
    println!(
        "lab: namespace {} ({} {}) <-veth-> namespace {} ({} {})\nconfiguration: {}",
        lab.node_ns,
        lab.node_if,
        lab.node_mac,
        lab.client_ns,
        lab.client_if,
        lab.client_mac,
        config.display()
    );
    let config_arg = config.to_string_lossy().into_owned();
    // No --interface: the speaker chooses as MetalLB does (the advertisement names no
    // interface, so every one that no exclusion pattern matches: the lab's, not lo),
    // and the plan says so.
    let common = ["--config", &config_arg, "--node-name", NODE_NAME];

    // 1. The plan: what each service gets, touching nothing.
    let plan = command_in(&lab.node_ns, &binary.to_string_lossy())
        .arg("plan")
        .args(common)
        .output()?;
    ensure!(
        plan.status.success(),
        "metallb plan failed: {}",
        String::from_utf8_lossy(&plan.stderr)
    );
    say(
        "metallb plan --config examples/standalone.yaml",
        &stdout(plan),
    );
    let plan_json = command_in(&lab.node_ns, &binary.to_string_lossy())
        .arg("plan")
        .args(common)
        .args(["--output", "json"])
        .output()?;
    let plan_json: serde_json::Value =
        serde_json::from_slice(&plan_json.stdout).context("plan JSON")?;
    let vips: Vec<IpAddr> = plan_json["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["ips"].as_array().into_iter().flatten())
        .filter_map(|ip| ip.as_str()?.parse().ok())
        .collect();
    ensure!(
        vips.len() >= 4,
        "the plan gives fewer addresses than the example asks: {vips:?}"
    );

    // 2. Capture on the client side, then start the speaker.
    let capture = Running(
        lab.client_tcpdump(None)
            .arg("arp and arp[14:4] == arp[24:4]")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tcpdump")?,
    );
    sleep(Duration::from_millis(500));
    let log_path = std::env::temp_dir().join(format!("metallb-demo-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).context("creating the speaker's log file")?;
    let speaker = Running(
        command_in(&lab.node_ns, &binary.to_string_lossy())
            .arg("speaker")
            .args(common)
            .args(["--pin-dir", PIN_DIR])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the speaker")?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = exec_in(
            &lab.node_ns,
            "curl",
            &["-sf", "http://127.0.0.1:7472/readyz"],
        )?;
        if ready.status.success() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the speaker did not become ready within 10 s"
        );
        sleep(Duration::from_millis(100));
    }
    println!("\nspeaker ready (pid {})", speaker.0.id());

    // 3. The client asks.
    let missing = ask_every_vip(&lab, &vips)?;
    let node_mac = lab.node_mac.to_string();

    // 4. What the client heard without asking: gratuitous ARP at start-up.
    sleep(Duration::from_millis(300));
    let pid = nix::unistd::Pid::from_raw(capture.0.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let mut capture = capture;
    let mut garp = String::new();
    if let Some(mut out) = capture.0.stdout.take() {
        let _ = out.read_to_string(&mut garp);
    }
    say("ip netns exec client tcpdump -e 'gratuitous ARP'", &garp);
    let garp_lines = garp.lines().filter(|l| l.contains(&node_mac)).count();

    // 5. The datapath as the kernel holds it, and the metrics.
    let inspect = command_in(&lab.node_ns, &binary.to_string_lossy())
        .args(["inspect", "--pin-dir", PIN_DIR])
        .output()?;
    say(
        &format!("metallb inspect --pin-dir {PIN_DIR}"),
        &stdout(inspect),
    );
    sleep(Duration::from_millis(1100));
    let metrics = stdout(exec_in(
        &lab.node_ns,
        "curl",
        &["-s", "http://127.0.0.1:7472/metrics"],
    )?);
    let shown: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("metallb_layer2")
                || l.starts_with("metallb_allocator")
                || l.starts_with("metallb_k8s")
        })
        .collect();
    say(
        "curl http://127.0.0.1:7472/metrics | grep metallb_",
        &shown.join("\n"),
    );

    drop(speaker);
    drop(capture);
    drop(lab);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    say("the speaker's log (metallb speaker ... 2> log)", &log);
    if !missing.is_empty() {
        bail!("no answer for {missing:?}");
    }
    ensure!(
        garp_lines > 0,
        "no gratuitous ARP from {node_mac} was captured"
    );
    println!(
        "\ndemo passed: every VIP answered by XDP, gratuitous ARP seen; speaker stopped, lab removed"
    );
    Ok(())
}
