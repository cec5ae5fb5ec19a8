//! Several nodes and a client on one LAN, in network namespaces: a bridge in a
//! namespace of its own, one veth port for each node and one for the client. For the
//! failover tests and benchmark (speakers gossiping between nodes, a VIP moving
//! between them). Everything is removed when the [`ClusterLab`] is dropped, also when a
//! test panics. Addresses come from 192.0.2.0/24 and traffic stays in the namespaces.

use std::{net::Ipv4Addr, process::Command};

use anyhow::Context as _;

use crate::lab::{run, unique_name};
use metallb_user::datapath::iface::MacAddr;

/// Node and client interface names inside their namespaces.
pub const NODE_IF: &str = "mlb-node";
pub const CLIENT_IF: &str = "mlb-client";
pub const BRIDGE: &str = "br0";

pub struct ClusterLab {
    pub bridge_ns: String,
    pub node_ns: Vec<String>,
    pub client_ns: String,
    pub node_macs: Vec<MacAddr>,
    pub client_mac: MacAddr,
}

impl ClusterLab {
    pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

    /// Node `i`'s address: 192.0.2.(11 + i).
    pub fn node_v4(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(192, 0, 2, 11 + i as u8)
    }

    /// The bridge port of node `i` (in the bridge namespace).
    pub fn node_port(i: usize) -> String {
        format!("p{i}")
    }

    pub fn new(tag: &str, nodes: usize) -> anyhow::Result<Self> {
        anyhow::ensure!((1..=200).contains(&nodes), "1 to 200 nodes, not {nodes}");
        let base = unique_name(tag);
        let lab = Self {
            bridge_ns: format!("{base}-b"),
            node_ns: (0..nodes).map(|i| format!("{base}-n{i}")).collect(),
            client_ns: format!("{base}-c"),
            node_macs: (0..nodes)
                .map(|i| MacAddr([0x02, 0x00, 0x00, 0x00, 0x01, 0x01 + i as u8]))
                .collect(),
            client_mac: MacAddr([0x02, 0x00, 0x00, 0x00, 0x02, 0x02]),
        };
        // From here on Drop removes whatever was created.
        run("ip", &["netns", "add", &lab.bridge_ns])?;
        let b = lab.bridge_ns.as_str();
        run(
            "ip",
            &[
                "-n",
                b,
                "link",
                "add",
                BRIDGE,
                "type",
                "bridge",
                "stp_state",
                "0",
            ],
        )?;
        run("ip", &["-n", b, "link", "set", BRIDGE, "up"])?;
        run("ip", &["-n", b, "link", "set", "lo", "up"])?;
        let mut hosts: Vec<(String, &str, String, MacAddr, Ipv4Addr)> = (0..nodes)
            .map(|i| {
                (
                    lab.node_ns[i].clone(),
                    NODE_IF,
                    Self::node_port(i),
                    lab.node_macs[i],
                    Self::node_v4(i),
                )
            })
            .collect();
        hosts.push((
            lab.client_ns.clone(),
            CLIENT_IF,
            "pc".into(),
            lab.client_mac,
            Self::CLIENT_V4,
        ));
        for (ns, ifname, port, mac, v4) in &hosts {
            run("ip", &["netns", "add", ns])?;
            run(
                "ip",
                &[
                    "link",
                    "add",
                    ifname,
                    "netns",
                    ns,
                    "address",
                    &mac.to_string(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    port,
                    "netns",
                    b,
                ],
            )?;
            run(
                "ip",
                &["-n", b, "link", "set", port, "master", BRIDGE, "up"],
            )?;
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", ifname],
            )?;
            run("ip", &["-n", ns, "link", "set", ifname, "up"])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// Cuts node `i` off the LAN (true) or back on (false), at its bridge port.
    pub fn isolate(&self, i: usize, isolated: bool) -> anyhow::Result<()> {
        let state = if isolated { "down" } else { "up" };
        run(
            "ip",
            &[
                "-n",
                &self.bridge_ns,
                "link",
                "set",
                &Self::node_port(i),
                state,
            ],
        )
        .map(|_| ())
    }

    /// The MAC address the client's neighbour table holds for `ip`, if any.
    pub fn client_neighbour(&self, ip: Ipv4Addr) -> anyhow::Result<Option<String>> {
        let out = run(
            "ip",
            &[
                "-n",
                &self.client_ns,
                "neigh",
                "show",
                &ip.to_string(),
                "dev",
                CLIENT_IF,
            ],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        Ok(words
            .by_ref()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_owned))
    }

    /// Which node owns `mac` (one of the lab's node MACs).
    pub fn node_of(&self, mac: &str) -> Option<usize> {
        self.node_macs
            .iter()
            .position(|m| m.to_string().eq_ignore_ascii_case(mac))
    }

    /// A command in namespace `ns` (network only: mounts are kept).
    pub fn command_in(ns: &str, program: &str) -> Command {
        crate::lab::command_in(ns, program)
    }

    /// The MACs that answer one broadcast ARP request for `target` from the client
    /// (arping waits up to a second for a second answer, so that two answering nodes
    /// are both seen).
    pub fn arp_answers(&self, target: Ipv4Addr) -> anyhow::Result<Vec<String>> {
        let out = crate::lab::exec_in(
            &self.client_ns,
            "arping",
            &["-c", "2", "-w", "1", "-I", CLIENT_IF, &target.to_string()],
        )
        .context("arping")?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .lines()
            .filter(|line| line.contains("reply from"))
            .filter_map(|line| {
                let start = line.find('[')?;
                let end = line[start..].find(']')?;
                Some(line[start + 1..start + end].to_ascii_lowercase())
            })
            .collect())
    }

    /// Sends one UDP datagram from the client to `target`, which makes the client's
    /// kernel resolve it (a neighbour entry).
    pub fn client_resolves(&self, target: Ipv4Addr) -> anyhow::Result<()> {
        crate::lab::exec_in(
            &self.client_ns,
            "bash",
            &["-c", &format!("echo x > /dev/udp/{target}/9")],
        )
        .map(|_| ())
    }
}

impl Drop for ClusterLab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends, their peers and every XDP
        // attachment on them.
        for ns in self
            .node_ns
            .iter()
            .chain([&self.client_ns, &self.bridge_ns])
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
