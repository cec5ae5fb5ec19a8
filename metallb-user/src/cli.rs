//! What the `metallb` commands print: plain functions from results to text or JSON,
//! so that the output is tested without running anything.

use std::{borrow::Cow, collections::BTreeMap, fmt::Write as _};

use metallb_common::{Outcome, VipAction, VipTableCtl, XdpStats};
use serde::Serialize;

use crate::{
    allocator::Decision,
    bgp::plan::{Attributes, BgpPlan, ServiceBgp},
    config::{Issue, validate::Validation},
    datapath::{FenceState, maps::VipRecord},
    election::Election,
    plan::{InterfaceReport, Plan, Role},
    printable::printable,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// `metallb validate`: the text to print, and whether the file is valid.
pub fn validation_report(file: &str, validation: &Validation) -> (String, bool) {
    let file = printable(file);
    let mut out = String::new();
    for issue in &validation.errors {
        let _ = writeln!(out, "error: {issue}");
    }
    for issue in &validation.warnings {
        let _ = writeln!(out, "warning: {issue}");
    }
    match &validation.config {
        Some(config) => {
            let _ = writeln!(
                out,
                "{file} is valid: {} IPAddressPool(s), {} L2Advertisement(s), {}{} Service(s), {} Node(s), {} warning(s)",
                config.pools.len(),
                config.l2_advertisements.len(),
                if config.bgp.is_empty() {
                    String::new()
                } else {
                    format!(
                        "{} BGPAdvertisement(s), {} BGPPeer(s), ",
                        config.bgp.advertisements.len(),
                        config.bgp.peers.len()
                    )
                },
                config.services.len(),
                config.nodes.len(),
                validation.warnings.len()
            );
            (out, true)
        }
        None => {
            let _ = writeln!(
                out,
                "{file} is invalid: {} error(s)",
                validation.errors.len()
            );
            (out, false)
        }
    }
}

/// `metallb validate` when the file does not even parse.
pub fn parse_report(file: &str, errors: &[Issue]) -> String {
    let file = printable(file);
    let mut out = String::new();
    for issue in errors {
        let _ = writeln!(out, "error: {issue}");
    }
    let _ = writeln!(out, "{file} is invalid: {} error(s)", errors.len());
    out
}

#[derive(Serialize)]
struct ServiceRow {
    service: String,
    ips: Vec<String>,
    pool: Option<String>,
    announced_by: Option<String>,
    candidates: Vec<String>,
    this_node: Role,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct PoolRow {
    pool: String,
    in_use: u64,
    total: String,
}

#[derive(Serialize)]
struct PlanJson<'a> {
    node: String,
    services: Vec<ServiceRow>,
    pools: Vec<PoolRow>,
    interfaces: &'a InterfaceReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    bgp: Option<BgpJson>,
}

/// BGP mode in `metallb plan --output json`.
#[derive(Serialize)]
struct BgpJson {
    services: Vec<BgpServiceJson>,
    /// This node's sessions.
    sessions: Vec<BgpSessionJson>,
}

#[derive(Serialize)]
struct BgpServiceJson {
    service: String,
    #[serde(flatten)]
    plan: ServiceBgp,
}

#[derive(Serialize)]
struct BgpSessionJson {
    peer: String,
    address: String,
    my_asn: u32,
    peer_asn: String,
    bfd_profile: Option<String>,
    prefixes: Vec<BgpPrefixJson>,
}

#[derive(Serialize)]
struct BgpPrefixJson {
    prefix: String,
    #[serde(flatten)]
    attributes: Attributes,
}

fn peer_address(peer: &crate::config::bgp_config::BgpPeer) -> String {
    match (&peer.address, &peer.interface) {
        (Some(address), _) => address.to_string(),
        (None, Some(interface)) => format!("interface {interface}"),
        (None, None) => "-".into(),
    }
}

fn bgp_json(bgp: &BgpPlan) -> Option<BgpJson> {
    if bgp.services.is_empty() && bgp.this_node.sessions.is_empty() {
        return None;
    }
    Some(BgpJson {
        services: bgp
            .services
            .iter()
            .map(|(key, plan)| BgpServiceJson {
                service: key.to_string(),
                plan: plan.clone(),
            })
            .collect(),
        sessions: bgp
            .this_node
            .sessions
            .iter()
            .map(|s| BgpSessionJson {
                peer: s.peer.name.clone(),
                address: peer_address(&s.peer),
                my_asn: s.peer.my_asn,
                peer_asn: s.peer.peer_asn.to_string(),
                bfd_profile: s.peer.bfd_profile.clone(),
                prefixes: s
                    .prefixes
                    .iter()
                    .map(|(prefix, attributes)| BgpPrefixJson {
                        prefix: prefix.to_string(),
                        attributes: attributes.clone(),
                    })
                    .collect(),
            })
            .collect(),
    })
}

fn attributes_text(attributes: &Attributes) -> (String, String) {
    let local_pref = attributes
        .local_pref
        .map_or_else(|| "-".into(), |lp| lp.to_string());
    let communities: Vec<String> = attributes
        .communities
        .iter()
        .map(|c| c.to_string())
        .collect();
    let communities = if communities.is_empty() {
        "-".into()
    } else {
        communities.join(" ")
    };
    (local_pref, communities)
}

/// The BGP tables of `metallb plan`: what every node announces for each Service, then
/// this node's sessions.
fn bgp_tables(bgp: &BgpPlan, node: &str) -> String {
    if bgp.services.is_empty() && bgp.this_node.sessions.is_empty() {
        return String::new();
    }
    let mut table = vec![vec![
        "BGP SERVICE".to_string(),
        "NODE".into(),
        "PEER".into(),
        "PREFIX".into(),
        "LOCAL PREF".into(),
        "COMMUNITIES".into(),
    ]];
    for (key, plan) in &bgp.services {
        for a in &plan.announcements {
            let (local_pref, communities) = attributes_text(&a.attributes);
            table.push(vec![
                key.to_string(),
                a.node.clone(),
                a.peer.clone(),
                a.prefix.to_string(),
                local_pref,
                communities,
            ]);
        }
        for (node, reason) in &plan.not_announced {
            table.push(vec![
                key.to_string(),
                if node.is_empty() {
                    "*".into()
                } else {
                    node.clone()
                },
                "-".into(),
                "-".into(),
                "-".into(),
                format!("not announced: {reason}"),
            ]);
        }
    }
    let mut out = String::from("\n");
    out += &render(&table);
    let mut sessions = vec![vec![
        format!("BGP SESSION OF {node}"),
        "ADDRESS".into(),
        "ASN (MY/PEER)".into(),
        "BFD".into(),
        "PREFIXES".into(),
    ]];
    for s in &bgp.this_node.sessions {
        let prefixes: Vec<String> = s.prefixes.keys().map(|p| p.to_string()).collect();
        sessions.push(vec![
            s.peer.name.clone(),
            peer_address(&s.peer),
            format!("{}/{}", s.peer.my_asn, s.peer.peer_asn),
            s.peer.bfd_profile.clone().unwrap_or_else(|| "-".into()),
            if prefixes.is_empty() {
                "-".into()
            } else {
                prefixes.join(" ")
            },
        ]);
    }
    out.push('\n');
    out += &render(&sessions);
    out
}

fn rows(plan: &Plan) -> Vec<ServiceRow> {
    plan.services
        .iter()
        .map(|(key, p)| {
            let (ips, pool) = match &p.decision {
                Decision::Allocated(a) => (
                    a.ips.iter().map(|ip| ip.to_string()).collect(),
                    Some(a.pool.clone()),
                ),
                _ => (Vec::new(), None),
            };
            let (announced_by, candidates) = match &p.election {
                Some(Election::Announced {
                    owner, candidates, ..
                }) => (Some(owner.clone()), candidates.clone()),
                _ => (None, Vec::new()),
            };
            ServiceRow {
                service: key.to_string(),
                ips,
                pool,
                announced_by,
                candidates,
                this_node: p.role.clone(),
                warnings: p.warnings.clone(),
            }
        })
        .collect()
}

/// The services of `plan` that cannot get what they ask for (MetalLB's
/// `AllocationFailed`): `metallb plan` exits non-zero when there is any.
pub fn failed_services(plan: &Plan) -> usize {
    plan.services
        .values()
        .filter(|p| matches!(p.decision, Decision::Failed { .. }))
        .count()
}

/// The interfaces of `report` as a table (interface, XDP, why), sorted by name, and a
/// line saying which exclusion patterns were consulted.
fn interface_table(report: &InterfaceReport) -> String {
    let mut rows: Vec<[String; 3]> = Vec::new();
    for attached in &report.attached {
        rows.push(match &attached.error {
            None => [
                attached.interface.clone(),
                "attach".into(),
                attached.reason.to_string(),
            ],
            Some(error) => [
                attached.interface.clone(),
                "failed".into(),
                format!("{}; {error}", attached.reason),
            ],
        });
    }
    for skipped in &report.skipped {
        rows.push([
            skipped.interface.clone(),
            "skip".into(),
            skipped.reason.to_string(),
        ]);
    }
    for missing in &report.missing {
        rows.push([missing.interface.clone(), "missing".into(), missing.why()]);
    }
    rows.sort();
    let mut table = vec![vec!["INTERFACE".to_string(), "XDP".into(), "WHY".into()]];
    table.extend(rows.into_iter().map(Vec::from));
    let mut out = render(&table);
    if let Some(exclusions) = &report.exclusions {
        let patterns = if exclusions.patterns.is_empty() {
            "none".to_string()
        } else {
            exclusions.patterns.join(", ")
        };
        let line = format!("exclusion patterns ({}): {patterns}", exclusions.source);
        let _ = writeln!(out, "{}", printable(&line));
    }
    out
}

/// `metallb plan` output: the services, the pools, and the interfaces the speaker
/// would attach to.
pub fn plan_report(
    plan: &Plan,
    node: &str,
    interfaces: &InterfaceReport,
    output: Output,
) -> String {
    let services = rows(plan);
    let pools: Vec<PoolRow> = plan
        .pools
        .iter()
        .map(|(name, u)| PoolRow {
            pool: name.clone(),
            in_use: u.in_use,
            total: u.total.to_string(),
        })
        .collect();
    if output == Output::Json {
        let json = PlanJson {
            node: node.into(),
            services,
            pools,
            interfaces,
            bgp: bgp_json(&plan.bgp),
        };
        return serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
    }
    let mut table = vec![vec![
        "SERVICE".to_string(),
        "IPS".into(),
        "POOL".into(),
        "ANNOUNCED BY".into(),
        format!("ON THIS NODE ({node})"),
    ]];
    for row in &services {
        let this = match &row.this_node {
            Role::Announce { interfaces } => format!("answers on {}", interfaces.join(", ")),
            Role::Suppress { owner } => format!("suppresses (announced by {owner})"),
            Role::None { reason } => reason.clone(),
        };
        table.push(vec![
            row.service.clone(),
            if row.ips.is_empty() {
                "-".into()
            } else {
                row.ips.join(", ")
            },
            row.pool.clone().unwrap_or_else(|| "-".into()),
            row.announced_by.clone().unwrap_or_else(|| "-".into()),
            this,
        ]);
    }
    let mut out = render(&table);
    out.push('\n');
    let mut pool_table = vec![vec![
        "POOL".to_string(),
        "IN USE".into(),
        "ADDRESSES".into(),
    ]];
    for p in pools {
        pool_table.push(vec![p.pool, p.in_use.to_string(), p.total]);
    }
    out += &render(&pool_table);
    out.push('\n');
    out += &interface_table(interfaces);
    out += &bgp_tables(&plan.bgp, node);
    for row in &services {
        for warning in &row.warnings {
            let line = format!("warning: {}: {warning}", row.service);
            let _ = writeln!(out, "{}", printable(&line));
        }
    }
    out
}

/// Columns are aligned up to this many characters (Kubernetes names have at most 253);
/// a longer cell is printed whole and pushes the rest of its row, so that one long name
/// does not pad every row of the table to its length.
const MAX_ALIGNED_WIDTH: usize = 256;

/// Left-aligned columns, two spaces apart, every cell escaped ([`printable`]).
fn render(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<Cow<'_, str>>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| printable(cell)).collect())
        .collect();
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count().min(MAX_ALIGNED_WIDTH))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            // Padded by hand: `format!("{:<width$}")` panics on widths past u16::MAX.
            let padding = widths[c].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', padding));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[derive(Serialize)]
struct VipRow {
    vip: String,
    interface: String,
    ifindex: u32,
    vlan: u16,
    action: String,
    mac: String,
    requests: u64,
    replies: u64,
    conflicts: u64,
    suppressed: u64,
}

#[derive(Serialize)]
struct InspectJson<'a> {
    pin_dir: String,
    /// Flips of the VIP tables so far: each applied change of the VIP set is one.
    table_generation: u64,
    cells_per_half: u32,
    vips: Vec<VipRow>,
    frames: BTreeMap<&'static str, u64>,
    fence: FenceJson,
    /// As the speaker recorded them; `null` without a record.
    interfaces: Option<&'a InterfaceReport>,
}

/// The fence timer's state (see [`FenceState`]).
#[derive(Serialize)]
struct FenceJson {
    fenced: bool,
    /// Milliseconds until the datapath fences; `null`: never (no peers).
    deadline_in_ms: Option<u64>,
    ticks: u64,
    episodes: u64,
}

/// One line on the fence timer: whether the datapath answers, and until when.
fn fence_line(fence: &FenceState) -> String {
    let state = match (fence.fenced, fence.deadline_in) {
        (true, _) => "FENCED: the agent missed its heartbeat deadline; no VIP is answered".into(),
        (false, None) => "off (no deadline: a node without peers never fences)".into(),
        (false, Some(left)) => format!(
            "answering; fences in {} ms unless renewed",
            left.as_millis()
        ),
    };
    format!(
        "fence: {state} (timer runs {}, fenced {} times)",
        fence.ticks, fence.episodes
    )
}

/// The speaker's record of its interfaces, for `metallb inspect`.
pub struct RecordedInterfaces<'a> {
    /// Where the record is (or would be).
    pub path: &'a str,
    pub report: Option<&'a InterfaceReport>,
}

/// `metallb inspect` output. `ifname` names an interface index.
pub fn inspect_report(
    pin_dir: &str,
    ctl: &VipTableCtl,
    records: &[VipRecord],
    stats: &XdpStats,
    ifname: impl Fn(u32) -> String,
    interfaces: &RecordedInterfaces<'_>,
    output: Output,
) -> String {
    let vips: Vec<VipRow> = records
        .iter()
        .map(|r| VipRow {
            vip: r.key.addr.to_string(),
            interface: ifname(r.key.ifindex),
            ifindex: r.key.ifindex,
            vlan: r.key.vlan_id,
            action: match r.action {
                Some(VipAction::Answer) => "answer".into(),
                Some(VipAction::Suppress) => "suppress".into(),
                None => "unknown".into(),
            },
            mac: r.mac.to_string(),
            requests: r.counters.requests,
            replies: r.counters.replies,
            conflicts: r.counters.conflicts,
            suppressed: r.counters.suppressed,
        })
        .collect();
    let frames: BTreeMap<&'static str, u64> = Outcome::ALL
        .iter()
        .map(|o| (o.name(), stats.get(*o)))
        .collect();
    let fence = FenceState::of(ctl);
    if output == Output::Json {
        let json = InspectJson {
            pin_dir: pin_dir.into(),
            table_generation: ctl.generation,
            cells_per_half: ctl.cell_mask + 1,
            vips,
            frames,
            fence: FenceJson {
                fenced: fence.fenced,
                deadline_in_ms: fence.deadline_in.map(|d| d.as_millis() as u64),
                ticks: fence.ticks,
                episodes: fence.episodes,
            },
            interfaces: interfaces.report,
        };
        return serde_json::to_string_pretty(&json).unwrap_or_default() + "\n";
    }
    let mut table = vec![
        [
            "VIP",
            "INTERFACE",
            "VLAN",
            "ACTION",
            "MAC",
            "REQUESTS",
            "REPLIES",
            "CONFLICTS",
            "SUPPRESSED",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for v in &vips {
        table.push(vec![
            v.vip.clone(),
            format!("{} ({})", v.interface, v.ifindex),
            v.vlan.to_string(),
            v.action.clone(),
            v.mac.clone(),
            v.requests.to_string(),
            v.replies.to_string(),
            v.conflicts.to_string(),
            v.suppressed.to_string(),
        ]);
    }
    let mut out = format!(
        "datapath pinned at {}: {} VIP entries (table generation {}, {} cells per half)\n\n",
        printable(pin_dir),
        vips.len(),
        ctl.generation,
        ctl.cell_mask + 1
    );
    out += &render(&table);
    out.push('\n');
    let mut outcome_table = vec![vec!["FRAMES".to_string(), "COUNT".into()]];
    for (name, count) in &frames {
        outcome_table.push(vec![name.to_string(), count.to_string()]);
    }
    out += &render(&outcome_table);
    out.push('\n');
    out += &fence_line(&fence);
    out += "\n\n";
    let path = printable(interfaces.path);
    match interfaces.report {
        Some(report) => {
            let _ = writeln!(out, "interfaces, as the speaker chose them ({path}):");
            out += &interface_table(report);
        }
        None => {
            let _ = writeln!(
                out,
                "interfaces: no record at {path} (the speaker writes it when it applies a configuration)"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use metallb_common::VipCounters;

    use super::*;
    use crate::datapath::{iface::MacAddr, maps::VipKey};

    #[test]
    fn plan_report_shows_bgp_per_service_node_and_peer() {
        use crate::{
            config::{ValidateOptions, file::parse, validate},
            plan::{InterfaceReport, PlanOptions, plan},
        };
        let text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bgp}\nspec: {addresses: [198.51.100.0/24]}\n---\n\
            apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: router}\nspec: {myASN: 64500, peerASN: 64500, peerAddress: 192.0.2.1, bfdProfile: fast}\n---\n\
            apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast}\n---\n\
            apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: bgp}\nspec: {localPref: 150, communities: ['64500:1', 'large:64500:2:3']}\n---\n\
            apiVersion: v1\nkind: Node\nmetadata: {name: node-a}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-b}\n---\n\
            apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{port: 80}]}\n---\n\
            apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.9], nodeName: node-b}]\n";
        let config = validate(&parse(text).unwrap(), &ValidateOptions::default())
            .config
            .unwrap();
        let options = PlanOptions {
            node_name: "node-b".into(),
            ..PlanOptions::default()
        };
        let planned = plan(&config, &options, &[]);
        let report = plan_report(
            &planned,
            "node-b",
            &InterfaceReport::default(),
            Output::Table,
        );
        let bgp: Vec<&str> = report
            .lines()
            .skip_while(|l| !l.starts_with("BGP SERVICE"))
            .collect();
        assert_eq!(
            bgp,
            [
                "BGP SERVICE  NODE    PEER    PREFIX           LOCAL PREF  COMMUNITIES",
                "default/web  node-b  router  198.51.100.0/32  150         64500:1 large:64500:2:3",
                "default/web  node-a  -       -                -           not announced: externalTrafficPolicy Local: no ready endpoint on this node",
                "",
                "BGP SESSION OF node-b  ADDRESS    ASN (MY/PEER)  BFD   PREFIXES",
                "router                 192.0.2.1  64500/64500    fast  198.51.100.0/32",
            ],
            "{report}"
        );
        let json: serde_json::Value = serde_json::from_str(&plan_report(
            &planned,
            "node-b",
            &InterfaceReport::default(),
            Output::Json,
        ))
        .unwrap();
        let service = &json["bgp"]["services"][0];
        assert_eq!(service["service"], "default/web");
        assert_eq!(
            service["announcements"][0],
            serde_json::json!({
                "node": "node-b", "peer": "router", "prefix": "198.51.100.0/32",
                "local_pref": 150, "communities": ["64500:1", "large:64500:2:3"],
                "advertisements": ["bgp"]
            })
        );
        assert_eq!(
            service["not_announced"]["node-a"],
            "externalTrafficPolicy Local: no ready endpoint on this node"
        );
        assert_eq!(json["bgp"]["sessions"][0]["peer_asn"], "64500");
        assert_eq!(json["bgp"]["sessions"][0]["prefixes"][0]["local_pref"], 150);
    }

    #[test]
    fn inspect_table_names_interfaces_and_counts() {
        let record = |ip: &str, action, requests, suppressed| VipRecord {
            key: VipKey {
                addr: ip.parse().unwrap(),
                ifindex: 2,
                vlan_id: 0,
            },
            mac: MacAddr([2, 0, 0, 0, 1, 1]),
            action: Some(action),
            counters: VipCounters {
                requests,
                replies: requests - suppressed,
                conflicts: 0,
                suppressed,
            },
        };
        let records = [
            record("192.0.2.100", VipAction::Answer, 3, 0),
            record("2001:db8::1", VipAction::Suppress, 2, 2),
        ];
        let stats = XdpStats {
            tx_arp_reply: 3,
            drop_suppressed: 2,
            ..Default::default()
        };
        let ctl = VipTableCtl {
            cell_mask: 63,
            generation: 7,
            ..Default::default()
        };
        let text = inspect_report(
            "/sys/fs/bpf/x",
            &ctl,
            &records,
            &stats,
            |i| format!("eth{i}"),
            &RecordedInterfaces {
                path: "/run/metallb/x.json",
                report: None,
            },
            Output::Table,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "datapath pinned at /sys/fs/bpf/x: 2 VIP entries (table generation 7, 64 cells per half)"
        );
        assert_eq!(
            lines[2],
            "VIP          INTERFACE  VLAN  ACTION    MAC                REQUESTS  REPLIES  CONFLICTS  SUPPRESSED"
        );
        assert_eq!(
            lines[3],
            "192.0.2.100  eth2 (2)   0     answer    02:00:00:00:01:01  3         3        0          0"
        );
        assert_eq!(
            lines[4],
            "2001:db8::1  eth2 (2)   0     suppress  02:00:00:00:01:01  2         0        0          2"
        );
        assert!(
            lines.contains(&"drop_suppressed        2")
                && lines.contains(&"tx_arp_reply           3"),
            "{text}"
        );
        assert!(
            lines.contains(&"fence: off (no deadline: a node without peers never fences) (timer runs 0, fenced 0 times)"),
            "{text}"
        );
        assert_eq!(
            lines.last(),
            Some(
                &"interfaces: no record at /run/metallb/x.json (the speaker writes it when it applies a configuration)"
            )
        );
        let fenced = VipTableCtl {
            fenced: 1,
            fence_at: 1,
            fence_ticks: 40,
            fence_episodes: 2,
            ..ctl
        };
        assert_eq!(
            fence_line(&FenceState::of(&fenced)),
            "fence: FENCED: the agent missed its heartbeat deadline; no VIP is answered (timer runs 40, fenced 2 times)"
        );
        let json: serde_json::Value = serde_json::from_str(&inspect_report(
            "/p",
            &ctl,
            &records,
            &stats,
            |_| "lo".into(),
            &RecordedInterfaces {
                path: "/run/metallb/x.json",
                report: None,
            },
            Output::Json,
        ))
        .unwrap();
        assert_eq!(json["interfaces"], serde_json::Value::Null);
        assert_eq!(json["table_generation"], 7);
        assert_eq!(json["vips"][1]["action"], "suppress");
        assert_eq!(json["frames"]["tx_arp_reply"], 3);
        assert_eq!(json["frames"]["drop_fenced"], 0);
        assert_eq!(json["fence"]["fenced"], false);
        assert_eq!(json["fence"]["deadline_in_ms"], serde_json::Value::Null);
    }

    /// Every reason an interface is used or left alone, in words.
    fn report() -> InterfaceReport {
        use crate::{
            config::interfaces::PatternSource,
            plan::{
                AttachReason, AttachedInterface, ExclusionPatterns, MissingInterface, SkipReason,
                SkippedInterface,
            },
        };
        let attached = |name: &str, reason, error: Option<&str>| AttachedInterface {
            interface: name.into(),
            reason,
            error: error.map(String::from),
        };
        let skipped = |name: &str, reason| SkippedInterface {
            interface: name.into(),
            reason,
        };
        InterfaceReport {
            attached: vec![
                attached(
                    "eth0",
                    AttachReason::EveryInterface {
                        advertisements: vec!["l2".into()],
                    },
                    None,
                ),
                attached(
                    "eth1",
                    AttachReason::Named {
                        advertisements: vec!["a".into(), "b".into()],
                        excluded_by: None,
                    },
                    Some("attaching XDP: device busy"),
                ),
                attached(
                    "veth9",
                    AttachReason::Named {
                        advertisements: vec!["a".into()],
                        excluded_by: Some("^veth.*".into()),
                    },
                    None,
                ),
                attached("tap0", AttachReason::CommandLine, None),
            ],
            skipped: vec![
                skipped(
                    "cali1",
                    SkipReason::Excluded {
                        pattern: "^cali.*".into(),
                    },
                ),
                skipped("eth2", SkipReason::Down),
                skipped("lo", SkipReason::Loopback),
                skipped("eth3", SkipReason::NotNamed),
                skipped("eth4", SkipReason::NoAdvertisement),
            ],
            missing: vec![
                MissingInterface {
                    interface: "eth9".into(),
                    advertisements: vec!["a".into()],
                },
                MissingInterface {
                    interface: "wan0".into(),
                    advertisements: vec![],
                },
            ],
            exclusions: Some(ExclusionPatterns {
                source: PatternSource::ConfigMap("metallb-system/metallb-excludel2".into()),
                patterns: vec!["^veth.*".into(), "^cali.*".into()],
            }),
        }
    }

    const INTERFACE_TABLE: &str = "\
INTERFACE  XDP      WHY
cali1      skip     excluded by ^cali.*
eth0       attach   every interface not excluded (L2Advertisement l2 names none)
eth1       failed   named by L2Advertisements a, b; attaching XDP: device busy
eth2       skip     down
eth3       skip     not named by the L2Advertisements for this node
eth4       skip     no L2Advertisement selects this node
eth9       missing  named by L2Advertisement a, not on this node
lo         skip     loopback
tap0       attach   named by --interface
veth9      attach   named by L2Advertisement a, although ^veth.* matches
wan0       missing  named by --interface, not on this node
exclusion patterns (ConfigMap metallb-system/metallb-excludel2): ^veth.*, ^cali.*
";

    #[test]
    fn plan_and_inspect_say_which_interfaces_are_used_and_why() {
        let report = report();
        assert_eq!(
            plan_report(&Plan::default(), "n1", &report, Output::Table),
            format!(
                "SERVICE  IPS  POOL  ANNOUNCED BY  ON THIS NODE (n1)\n\nPOOL  IN USE  ADDRESSES\n\n{INTERFACE_TABLE}"
            )
        );
        let json: serde_json::Value =
            serde_json::from_str(&plan_report(&Plan::default(), "n1", &report, Output::Json))
                .unwrap();
        assert_eq!(json["interfaces"], serde_json::to_value(&report).unwrap());
        assert_eq!(
            json["interfaces"]["skipped"][0],
            serde_json::json!({"interface": "cali1", "reason": "excluded", "pattern": "^cali.*"})
        );
        assert_eq!(
            json["interfaces"]["attached"][1],
            serde_json::json!({"interface": "eth1", "reason": "named", "advertisements": ["a", "b"], "error": "attaching XDP: device busy"})
        );

        let recorded = RecordedInterfaces {
            path: "/run/metallb/sys_fs_bpf_x.interfaces.json",
            report: Some(&report),
        };
        let inspect = |output| {
            inspect_report(
                "/sys/fs/bpf/x",
                &VipTableCtl::default(),
                &[],
                &XdpStats::default(),
                |_| String::new(),
                &recorded,
                output,
            )
        };
        let text = inspect(Output::Table);
        let tail = format!(
            "interfaces, as the speaker chose them (/run/metallb/sys_fs_bpf_x.interfaces.json):\n{INTERFACE_TABLE}"
        );
        assert!(text.ends_with(&format!("\n\n{tail}")), "{text}");
        let json: serde_json::Value = serde_json::from_str(&inspect(Output::Json)).unwrap();
        assert_eq!(json["interfaces"], serde_json::to_value(&report).unwrap());
    }

    #[test]
    fn with_interface_no_pattern_line_and_an_empty_list_says_none() {
        let mut report = report();
        report.exclusions = None;
        let text = interface_table(&report);
        assert!(!text.contains("exclusion patterns"), "{text}");
        report.exclusions = Some(crate::plan::ExclusionPatterns {
            source: crate::config::interfaces::PatternSource::Defaults,
            patterns: vec![],
        });
        assert!(
            interface_table(&report).ends_with("\nexclusion patterns (MetalLB's defaults): none\n")
        );
    }

    #[test]
    fn no_cell_is_too_long_for_the_table() {
        // 70,000 characters: past the u16 width that `format!` padding can take.
        let long = "p".repeat(70_000);
        let text = render(&[
            vec!["POOL".into(), "IN USE".into()],
            vec![long.clone(), "1".into()],
            vec!["b".into(), "2".into()],
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], format!("POOL{}  IN USE", " ".repeat(252)));
        assert_eq!(lines[1], format!("{long}  1"));
        assert_eq!(lines[2], format!("b{}  2", " ".repeat(255)));
    }

    #[test]
    fn cells_and_names_are_escaped() {
        let text = render(&[
            vec!["NAME".into(), "X".into()],
            vec!["a\x1b[31m\rb\nc".into(), "x".into()],
        ]);
        assert_eq!(text, "NAME               X\na\\u{1b}[31m\\rb\\nc  x\n");
        let report = parse_report("evil\x1b]0;title\x07.yaml", &[]);
        assert_eq!(
            report,
            "evil\\u{1b}]0;title\\u{7}.yaml is invalid: 0 error(s)\n"
        );
    }
}
