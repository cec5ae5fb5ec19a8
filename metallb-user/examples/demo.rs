//! The README's demo (`cargo xtask demo`): the XDP responder in a two-namespace lab,
//! answering `arping` and `ndisc6` from the client for VIPs that the node's kernel does
//! not own, then the pinned maps as `bpftool` prints them. Exits non-zero if an answer
//! is missing. Everything it creates is removed at the end.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
};

use anyhow::{Context as _, bail, ensure};
use metallb_common::VipAction;
use metallb_user::{
    datapath::{
        Datapath, DatapathOptions, XdpMode, iface,
        maps::{VipConfig, VipKey},
    },
    lab::{Lab, NetnsGuard, run},
};

const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

fn show(title: &str, output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("\n$ {title}\n{}", text.trim_end());
    text
}

fn main() -> anyhow::Result<()> {
    let mut lab = Lab::new("demo")?;
    lab.prepare_client_for(XdpMode::Native)?;
    let pin_dir = PathBuf::from("/sys/fs/bpf/metallb-demo");
    println!(
        "lab: namespace {} ({} {}) <-veth-> namespace {} ({} {})",
        lab.node_ns, lab.node_if, lab.node_mac, lab.client_ns, lab.client_if, lab.client_mac
    );

    let dp = {
        let _netns = NetnsGuard::enter(&lab.node_ns)?;
        let mut dp = Datapath::load(&DatapathOptions {
            pin_dir: pin_dir.clone(),
            ..Default::default()
        })?;
        let mode = dp.attach(lab.node_if, XdpMode::Native)?;
        let node_if = iface::by_name(lab.node_if)?;
        let desired: BTreeMap<VipKey, VipConfig> = [IpAddr::from(VIP), IpAddr::from(VIP6)]
            .into_iter()
            .map(|addr| {
                (
                    VipKey {
                        addr,
                        ifindex: node_if.ifindex,
                        vlan_id: 0,
                    },
                    VipConfig {
                        mac: iface::MacAddr(node_if.mac),
                        action: VipAction::Answer,
                    },
                )
            })
            .collect();
        let report = dp.sync(&desired);
        ensure!(report.errors.is_empty(), "sync failed: {:?}", report.errors);
        println!(
            "responder attached to {} in {mode} mode; VIPs {VIP} and {VIP6}",
            lab.node_if
        );
        dp
    };

    let result = (|| {
        let node_addrs = show(
            "ip -n node -brief addr",
            &lab.ip(&lab.node_ns, &["-brief", "addr"])?,
        );
        ensure!(
            !node_addrs.contains(&VIP.to_string()),
            "the node's kernel must not own the VIP"
        );

        let arping = show(
            &format!(
                "ip netns exec client arping -c 2 -I {} {VIP}",
                lab.client_if
            ),
            &lab.in_client(
                "arping",
                &["-c", "2", "-w", "3", "-I", lab.client_if, &VIP.to_string()],
            )?,
        );
        let node_mac = lab.node_mac.to_string();
        ensure!(
            arping.to_lowercase().contains(&format!("[{node_mac}]")),
            "arping got no answer from {node_mac}"
        );
        let ndisc = show(
            &format!("ip netns exec client ndisc6 {VIP6} {}", lab.client_if),
            &lab.in_client(
                "ndisc6",
                &[
                    "-1",
                    "-n",
                    "-r",
                    "2",
                    "-w",
                    "500",
                    &VIP6.to_string(),
                    lab.client_if,
                ],
            )?,
        );
        ensure!(
            ndisc
                .to_lowercase()
                .contains(&format!("target link-layer address: {node_mac}")),
            "ndisc6 got no answer from {node_mac}"
        );
        // The VIP tables are arrays of cells, mostly empty: show the occupied ones, then
        // the counters they point to, as bpftool prints them (field names from BTF).
        let pinned = |map: &str| pin_dir.join(map).to_string_lossy().into_owned();
        for (table, stats) in [("vips_v4", "vip_stats_v4"), ("vips_v6", "vip_stats_v6")] {
            let dump = run("bpftool", &["-j", "map", "dump", "pinned", &pinned(table)])?;
            let cells: Vec<serde_json::Value> = serde_json::from_slice(&dump.stdout)?;
            // With -j, bpftool gives each cell raw and "formatted" (decoded with BTF).
            let occupied: Vec<&serde_json::Value> = cells
                .iter()
                .map(|c| &c["formatted"])
                .filter(|c| c["value"]["counter_id"].as_u64().unwrap_or(0) != 0)
                .collect();
            println!("\n$ bpftool -j map dump pinned {}   (occupied cells, decoded)", pinned(table));
            for cell in &occupied {
                println!("{cell}");
            }
            for cell in occupied {
                let id = cell["value"]["counter_id"].as_u64().context("counter id")?.to_le_bytes();
                let key: Vec<String> = id[..4].iter().map(|b| b.to_string()).collect();
                let mut args = vec!["map", "lookup", "pinned"];
                let path = pinned(stats);
                args.push(&path);
                args.push("key");
                args.extend(key.iter().map(String::as_str));
                show(&format!("bpftool {}", args.join(" ")), &run("bpftool", &args)?);
            }
        }
        show(
            &format!("bpftool map dump pinned {}", pinned("xdp_stats")),
            &run("bpftool", &["map", "dump", "pinned", &pinned("xdp_stats")])?,
        );
        println!("\nper VIP (summed over CPUs):");
        for record in dp.vips()? {
            println!(
                "  {:<16} ifindex {} {:?}: requests {} replies {}",
                record.key.addr,
                record.key.ifindex,
                record.action,
                record.counters.requests,
                record.counters.replies
            );
        }
        Ok(())
    })();

    let errors = {
        let _netns = NetnsGuard::enter(&lab.node_ns)?;
        dp.shutdown()
    };
    drop(lab);
    if !errors.is_empty() {
        bail!("cleanup: {errors:?}");
    }
    result?;
    println!("\ndemo passed: both VIPs answered by XDP; lab removed");
    Ok(())
}
