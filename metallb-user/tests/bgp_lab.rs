//! BGP mode end to end (needs root, FRR and BIRD 2: `cargo xtask setup` installs
//! them): `metallb_testkit::bgp_lab`'s router runs BIRD, two nodes run `metallb
//! speaker` (each with its own FRR) on `examples/bgp.yaml`. The router's table (`birdc
//! show route all`) and kernel routes (ECMP) show what the nodes announce.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use metallb_testkit::bgp_lab::{BgpLab, must, wait_for};
use metallb_user::bgp::frr_daemon::FRR_CONTAINER_CAPABILITIES;

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");
const EXAMPLE: &str = include_str!("../../examples/bgp.yaml");
const PASSWORD: &str = "lab-secret";

fn write_config(path: &Path, text: &str) {
    let aside = path.with_extension("tmp");
    std::fs::write(&aside, text).expect("write config");
    std::fs::rename(&aside, path).expect("rename config");
}

/// `birdc show route for PREFIX all` once its routes come from exactly `from`.
fn routes_from(lab: &BgpLab, prefix: &str, from: &[&str]) -> String {
    lab.routes_from(prefix, from).unwrap()
}

#[test]
fn bgp_mode_against_bird() {
    let mut lab = BgpLab::new("bgp").expect("lab");
    lab.start_bird(PASSWORD).expect("bird");
    let config_path = lab.dir.join("metallb.yaml");
    let config = lab.config(EXAMPLE);
    assert!(
        config.contains(&format!("password: {PASSWORD}")),
        "{config}"
    );
    write_config(&config_path, &config);
    for i in 0..2 {
        lab.start_speaker(Path::new(BINARY), i, &config_path)
            .expect("speaker");
    }

    // Sessions: IPv4 and IPv6 with both nodes, with MD5 passwords.
    wait_for(
        "four BGP sessions established",
        Duration::from_secs(30),
        || {
            let up = lab.established().map_err(|e| e.to_string())?;
            (up.len() == 4).then_some(()).ok_or_else(|| {
                format!(
                    "{up:?}\n{}",
                    lab.birdc("show protocols").unwrap_or_default()
                )
            })
        },
    )
    .unwrap();
    let (a, b) = (lab.node_v4(0), lab.node_v4(1));

    // Service web: from both nodes (ECMP), with local preference and communities.
    let web = routes_from(&lab, "198.51.100.10/32", &["node0v4", "node1v4"]);
    assert!(web.contains("BGP.local_pref: 150"), "{web}");
    assert!(
        web.contains("BGP.community: (64500,100) (65535,65281)"),
        "{web}"
    );
    assert!(web.contains("BGP.large_community: (64500, 1, 2)"), "{web}");
    assert_eq!(
        lab.kernel_next_hops("198.51.100.10").unwrap(),
        [a.clone(), b.clone()]
    );
    // Its IPv6 address, over the IPv6 sessions.
    let v6 = routes_from(&lab, "2001:db8:100::10/128", &["node0v6", "node1v6"]);
    assert!(v6.contains("BGP.local_pref: 150"), "{v6}");
    // externalTrafficPolicy Local: only node1 has a ready endpoint.
    let local = routes_from(&lab, "198.51.100.20/32", &["node1v4"]);
    assert!(local.contains(&format!("via {b} ")), "{local}");
    // Aggregation: the /28 of 198.51.100.70, not its /32.
    routes_from(&lab, "198.51.100.64/28", &["node0v4", "node1v4"]);
    let table = lab.birdc("show route").unwrap();
    assert!(!table.contains("198.51.100.70/32"), "{table}");

    // Metrics with MetalLB's names (read from FRR every second).
    let peer = format!("peer=\"{}.1:179\"", lab.v4);
    wait_for("node0's metrics", Duration::from_secs(10), || {
        let metrics = lab.metrics(0).map_err(|e| e.to_string())?;
        let has = |name: &str, value: &str| {
            metrics.lines().any(|l| {
                l.starts_with(&format!("{name}{{"))
                    && l.contains(&peer)
                    && l.ends_with(&format!(" {value}"))
            })
        };
        let updates_sent = metrics
            .lines()
            .find(|l| l.starts_with("metallb_bgp_updates_total{") && l.contains(&peer))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0);
        // web and the aggregate (web-local is node1's only).
        (has("metallb_bgp_session_up", "1")
            && has("metallb_bgp_announced_prefixes_total", "2")
            && updates_sent >= 1
            && metrics
                .lines()
                .any(|l| l.starts_with("metallb_bfd_session_up{") && l.ends_with(" 1")))
        .then_some(())
        .ok_or(metrics)
    })
    .unwrap();

    // Deleting a Service and changing one advertisement: the route goes, the attribute
    // changes, and no session is reset (BIRD's "since" of each stays).
    let sessions = lab.established().unwrap();
    assert_eq!(sessions.len(), 4, "{sessions:?}");
    let changed = config
        .replace(
            "communities: [64500:100, no-export, 'large:64500:1:2']",
            "communities: [64500:200]",
        )
        .split("---\n")
        .filter(|doc| !doc.contains("name: web-local\n"))
        .collect::<Vec<_>>()
        .join("---\n");
    assert!(
        !changed.contains("64500:100") && !changed.contains("name: web-local\n"),
        "the example changed: {changed}"
    );
    write_config(&config_path, &changed);
    routes_from(&lab, "198.51.100.20/32", &[]);
    wait_for(
        "the new community on 198.51.100.10/32",
        Duration::from_secs(20),
        || {
            let routes = lab.routes("198.51.100.10/32").map_err(|e| e.to_string())?;
            (routes.matches("BGP.community: (64500,200)\n").count() == 2)
                .then_some(())
                .ok_or(routes)
        },
    )
    .unwrap();
    // BIRD prints "since" from a relative clock: the same instant may read 1 ms
    // apart. A reset would move it by seconds (reconnect, connect delay 1 s).
    let millis = |time: &str| -> i64 {
        time.split([':', '.'])
            .map(|part| part.parse::<i64>().unwrap_or(0))
            .zip([3_600_000, 60_000, 1_000, 1])
            .map(|(value, unit)| value * unit)
            .sum()
    };
    let after = lab.established().unwrap();
    assert_eq!(after.len(), sessions.len(), "{after:?}");
    for ((name, since), (name_after, since_after)) in sessions.iter().zip(&after) {
        assert_eq!(name, name_after);
        assert!(
            (millis(since) - millis(since_after)).abs() < 100,
            "session {name} was reset by the change: up since {since}, now since {since_after}"
        );
    }

    // BFD failover: node0's link goes down; the router drops its next hop. The router's
    // side of node0's BFD session is up first (BGP comes up before BFD).
    let node0 = lab.node_v4(0);
    wait_for(
        "the router's BFD session with node0",
        Duration::from_secs(20),
        || {
            let up = lab.bfd_up().map_err(|e| e.to_string())?;
            up.contains(&node0)
                .then_some(())
                .ok_or_else(|| format!("{up:?}"))
        },
    )
    .unwrap();
    let started = Instant::now();
    must("ip", &["-n", &lab.nodes[0], "link", "set", "eth0", "down"]).unwrap();
    routes_from(&lab, "198.51.100.10/32", &["node1v4"]);
    let failover = started.elapsed();
    eprintln!("BFD failover (300 ms x 3): {} ms", failover.as_millis());
    assert_eq!(lab.kernel_next_hops("198.51.100.10").unwrap(), [b]);
    // Well under the 9 s hold time: BFD took it out, and BIRD, which honours graceful
    // restart, kept no stale route (the speaker disables it unless asked).
    assert!(failover < Duration::from_secs(3), "{failover:?}");
}

/// FRR in a process of its own, as in the speaker's Pod (`metallb frr`, the frr
/// container): node0's speaker runs with `--frr-external` and only writes and reloads
/// FRR's configuration in the shared work directory; node1's runs its own FRR. Both
/// announce; FRR restarted alone applies the speaker's last configuration again. FRR's
/// process has only the capabilities of FRR's container (`FRR_CONTAINER_CAPABILITIES`,
/// the DaemonSet's).
#[test]
fn bgp_mode_with_frr_in_a_sidecar() {
    let mut lab = BgpLab::new("bgpx").expect("lab");
    lab.start_bird(PASSWORD).expect("bird");
    let config_path = lab.dir.join("metallb.yaml");
    write_config(&config_path, &lab.config(EXAMPLE));
    let binary = Path::new(BINARY);
    lab.start_frr_sidecar(binary, 0, &FRR_CONTAINER_CAPABILITIES)
        .expect("metallb frr");
    lab.spawn_speaker(
        binary,
        0,
        &[
            "--config".as_ref(),
            config_path.as_os_str(),
            "--frr-external".as_ref(),
        ],
        &[],
    )
    .expect("speaker with --frr-external");
    lab.start_speaker(binary, 1, &config_path).expect("speaker");
    let web = routes_from(&lab, "198.51.100.10/32", &["node0v4", "node1v4"]);
    assert!(web.contains("BGP.local_pref: 150"), "{web}");

    // FRR's container restarts: its routes go, and come back from the configuration the
    // speaker left in the shared directory, with no change of the speaker.
    lab.stop_frr_sidecar(0).expect("stop metallb frr");
    routes_from(&lab, "198.51.100.10/32", &["node1v4"]);
    lab.start_frr_sidecar(binary, 0, &FRR_CONTAINER_CAPABILITIES)
        .expect("metallb frr again");
    routes_from(&lab, "198.51.100.10/32", &["node0v4", "node1v4"]);
}

/// The BGPPeers' hold time in the node-death tests (MetalLB's minimum; keepalive 1 s).
const SHORT_HOLD: Duration = Duration::from_secs(3);

/// Two nodes announce `web` on `examples/bgp.yaml` without BFD, with hold time 3 s and
/// `enableGracefulRestart: graceful_restart`; then node0 dies: its link goes down (so
/// that nothing it sends reaches the router), and its speaker and FRR stop. Returns the
/// lab and the instant of the death.
fn node0_dies(tag: &str, graceful_restart: bool) -> (BgpLab, Instant) {
    let mut lab = BgpLab::new(tag).expect("lab");
    lab.start_bird(PASSWORD).expect("bird");
    let config_path = lab.dir.join("metallb.yaml");
    let config = lab
        .config(EXAMPLE)
        .replace(
            "holdTime: 9s\n  keepaliveTime: 3s\n",
            "holdTime: 3s\n  keepaliveTime: 1s\n",
        )
        .replace(
            "  bfdProfile: fast\n",
            if graceful_restart {
                "  enableGracefulRestart: true\n"
            } else {
                ""
            },
        );
    assert!(
        config.matches("holdTime: 3s\n").count() == 2 && !config.contains("bfdProfile"),
        "the example changed: {config}"
    );
    write_config(&config_path, &config);
    for i in 0..2 {
        lab.start_speaker(Path::new(BINARY), i, &config_path)
            .expect("speaker");
    }
    routes_from(&lab, "198.51.100.10/32", &["node0v4", "node1v4"]);
    let died = Instant::now();
    must("ip", &["-n", &lab.nodes[0], "link", "set", "eth0", "down"]).unwrap();
    lab.stop_speaker(0).expect("stop node0's speaker");
    (lab, died)
}

/// Without graceful restart (the default), the router withdraws a dead node's route
/// when the hold timer expires: no BFD, no stale route kept for FRR's 120 s restart time.
#[test]
fn node_death_without_graceful_restart_withdraws_at_hold_expiry() {
    let (lab, died) = node0_dies("bgpn", false);
    routes_from(&lab, "198.51.100.10/32", &["node1v4"]);
    let withdrawn = died.elapsed();
    eprintln!(
        "node death, no graceful restart: node0's route withdrawn after {} ms (hold time {SHORT_HOLD:?})",
        withdrawn.as_millis()
    );
    // The hold timer took it out (nothing faster is configured; it runs from node0's
    // last keepalive, up to 1 s before the death), and far sooner than the 120 s a
    // graceful restart would keep it.
    assert!(withdrawn >= Duration::from_millis(1500), "{withdrawn:?}");
    assert!(withdrawn < Duration::from_secs(30), "{withdrawn:?}");
    assert_eq!(
        lab.kernel_next_hops("198.51.100.10").unwrap(),
        [lab.node_v4(1)]
    );
}

/// With `enableGracefulRestart: true`, FRR advertises the capability and BIRD (graceful
/// restart aware, its default) takes the dead node's hold-timer expiry for a restart: it
/// keeps node0's route as stale past the hold time. This is the black hole the default
/// avoids.
#[test]
fn node_death_with_graceful_restart_keeps_a_stale_route() {
    let (lab, died) = node0_dies("bgpg", true);
    wait_for(
        "BIRD's session with node0 down",
        Duration::from_secs(30),
        || {
            let up = lab.established().map_err(|e| e.to_string())?;
            (!up.iter().any(|(name, _)| name == "node0v4"))
                .then_some(())
                .ok_or_else(|| format!("{up:?}"))
        },
    )
    .unwrap();
    eprintln!(
        "node death, graceful restart: session down after {} ms",
        died.elapsed().as_millis()
    );
    // Past the hold time and then some, the route is still there, from both nodes.
    std::thread::sleep((SHORT_HOLD + Duration::from_secs(3)).saturating_sub(died.elapsed()));
    let routes = lab.routes("198.51.100.10/32").unwrap();
    let protocol = lab.birdc("show protocols all node0v4").unwrap();
    assert_eq!(
        metallb_testkit::bgp_lab::announcers(&routes),
        ["node0v4", "node1v4"],
        "{routes}\n{protocol}"
    );
    // BIRD 2 marks no route stale before the long-lived phase: its protocol says why
    // the route stays.
    assert!(
        protocol.contains("Neighbor graceful restart active")
            && protocol.contains("Restart timer:"),
        "{protocol}"
    );
    // And the router's kernel still sends half the traffic to the dead node.
    assert_eq!(
        lab.kernel_next_hops("198.51.100.10").unwrap(),
        [lab.node_v4(0), lab.node_v4(1)]
    );
}
