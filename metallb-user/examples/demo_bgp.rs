//! The README's BGP demo (`cargo xtask demo --bgp`): a router namespace running BIRD 2
//! and two node namespaces running `metallb speaker` (each with its own FRR) on
//! `examples/bgp.yaml`. Shows the plan, the sessions, the router's table and its ECMP
//! route, then a failover: node0's link goes down and BFD takes its next hop out.
//! Removes everything; exits non-zero when a step does not happen.

// The shared helpers; this demo's processes are the lab's (it stops them).
#[allow(dead_code)]
mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use common::{metallb_binary, say, stdout};
use metallb_testkit::{
    bgp_lab::{BgpLab, announcers, must, wait_for},
    lab::command_in,
};

const PASSWORD: &str = "lab-secret";

fn main() -> anyhow::Result<()> {
    let binary = metallb_binary()?;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/bgp.yaml");
    let mut lab = BgpLab::new("demo-bgp")?;
    let config = lab.dir.join("metallb.yaml");
    std::fs::write(
        &config,
        lab.config(&std::fs::read_to_string(&example).context("examples/bgp.yaml")?),
    )?;
    println!(
        "lab: router {} (BIRD, {v4}.1) with node0 {} ({v4}.2) and node1 {} ({v4}.3) on a bridge\n\
         configuration: examples/bgp.yaml (addresses 10.77.0.x become {v4}.x)",
        lab.router,
        lab.nodes[0],
        lab.nodes[1],
        v4 = lab.v4
    );

    let plan = command_in(&lab.nodes[1], &binary.to_string_lossy())
        .args(["plan", "--node-name", "node1", "--config"])
        .arg(&config)
        .output()?;
    ensure!(
        plan.status.success(),
        "metallb plan failed: {}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan = stdout(plan);
    let bgp_part = plan
        .split("\nBGP SERVICE")
        .nth(1)
        .map(|rest| format!("BGP SERVICE{rest}"))
        .unwrap_or(plan.clone());
    say(
        "metallb plan --config examples/bgp.yaml --node-name node1   (BGP part)",
        &bgp_part,
    );

    lab.start_bird(PASSWORD)?;
    for i in 0..2 {
        lab.start_speaker(&binary, i, &config)?;
    }
    wait_for("four BGP sessions", Duration::from_secs(30), || {
        let up = lab.established().map_err(|e| e.to_string())?;
        (up.len() == 4)
            .then_some(())
            .ok_or_else(|| format!("{up:?}"))
    })?;
    say("birdc show protocols", &lab.birdc("show protocols")?);
    wait_for(
        "198.51.100.10/32 from both nodes",
        Duration::from_secs(20),
        || {
            let routes = lab.routes("198.51.100.10/32").map_err(|e| e.to_string())?;
            (announcers(&routes) == ["node0v4", "node1v4"])
                .then_some(())
                .ok_or(routes)
        },
    )?;
    say(
        "birdc show route for 198.51.100.10/32 all",
        &lab.routes("198.51.100.10/32")?,
    );
    say(
        "ip route show 198.51.100.10   (the router's kernel: ECMP over both nodes)",
        &must("ip", &["-n", &lab.router, "route", "show", "198.51.100.10"])?,
    );

    // BFD comes up after BGP: only then does it, not the 9 s hold timer, notice a link.
    let node0 = lab.node_v4(0);
    wait_for("node0's BFD session up", Duration::from_secs(20), || {
        let up = lab.bfd_up().map_err(|e| e.to_string())?;
        up.contains(&node0)
            .then_some(())
            .ok_or_else(|| format!("{up:?}"))
    })?;
    say("birdc show bfd sessions", &lab.birdc("show bfd sessions")?);

    let started = Instant::now();
    must("ip", &["-n", &lab.nodes[0], "link", "set", "eth0", "down"])?;
    wait_for("node0's next hop out", Duration::from_secs(10), || {
        let routes = lab.routes("198.51.100.10/32").map_err(|e| e.to_string())?;
        (announcers(&routes) == ["node1v4"])
            .then_some(())
            .ok_or(routes)
    })?;
    let failover = started.elapsed();
    say(
        "ip link set eth0 down   (in node0), then ip route show 198.51.100.10",
        &must("ip", &["-n", &lab.router, "route", "show", "198.51.100.10"])?,
    );
    println!(
        "\nfailover: node0's route withdrawn {} ms after its link went down (BFD 300 ms x 3)",
        failover.as_millis()
    );
    Ok(())
}
