//! What FRR says about its sessions (`show bgp vrf all neighbors json`, `show bfd
//! peers json`), read into plain values, and those values as MetalLB's metrics
//! (`metallb_bgp_*`, `metallb_bfd_session_up`, as its frr-metrics exporter names them).
//! Pure.

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, gauge::ConstGauge},
};
use serde_json::Value;

/// One BGP session as FRR reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStatus {
    /// The neighbor's address (or interface).
    pub peer: String,
    pub port: u64,
    pub vrf: String,
    pub established: bool,
    /// Milliseconds since the session came up (while established).
    pub up_msec: u64,
    /// Times the session was established since FRR started.
    pub connections_established: u64,
    pub prefixes_sent: u64,
    pub opens_sent: u64,
    pub opens_received: u64,
    pub notifications_sent: u64,
    pub updates_sent: u64,
    pub updates_received: u64,
    pub keepalives_sent: u64,
    pub keepalives_received: u64,
    pub route_refresh_sent: u64,
    pub total_sent: u64,
    pub total_received: u64,
}

/// One BFD session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BfdStatus {
    pub peer: String,
    pub vrf: String,
    pub up: bool,
}

/// Everything read at one time; also what the metrics show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpStatus {
    pub sessions: Vec<SessionStatus>,
    pub bfd: Vec<BfdStatus>,
}

/// What the speaker's BGP task reports to the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BgpMetrics {
    pub status: BgpStatus,
    /// Configurations applied, and applies that failed (retried).
    pub reloads: u64,
    pub reload_failures: u64,
}

/// Why FRR's answer could not be read.
#[derive(Debug, thiserror::Error)]
#[error("unexpected JSON from vtysh ({what}): {detail}")]
pub struct StatusError {
    what: &'static str,
    detail: String,
}

fn number(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// `show bgp vrf all neighbors json`: `{vrf: {vrfId, vrfName, <neighbor>: {...}}}`.
pub fn parse_neighbors(text: &str) -> Result<Vec<SessionStatus>, StatusError> {
    let json: Value = serde_json::from_str(text).map_err(|e| StatusError {
        what: "show bgp vrf all neighbors json",
        detail: e.to_string(),
    })?;
    let vrfs = json.as_object().ok_or_else(|| StatusError {
        what: "show bgp vrf all neighbors json",
        detail: "not an object".into(),
    })?;
    let mut out = Vec::new();
    for (vrf, neighbors) in vrfs {
        let Some(neighbors) = neighbors.as_object() else {
            continue;
        };
        for (peer, n) in neighbors.iter().filter(|(_, n)| n.is_object()) {
            let stats = n.get("messageStats").cloned().unwrap_or(Value::Null);
            let established = n.get("bgpState").and_then(Value::as_str) == Some("Established");
            let prefixes_sent = n
                .get("addressFamilyInfo")
                .and_then(Value::as_object)
                .map(|families| {
                    families
                        .values()
                        .map(|f| number(f, "sentPrefixCounter"))
                        .sum()
                })
                .unwrap_or(0);
            out.push(SessionStatus {
                peer: peer.clone(),
                port: n.get("portForeign").and_then(Value::as_u64).unwrap_or(179),
                vrf: vrf.clone(),
                established,
                up_msec: if established {
                    number(n, "bgpTimerUpMsec")
                } else {
                    0
                },
                connections_established: number(n, "connectionsEstablished"),
                prefixes_sent,
                opens_sent: number(&stats, "opensSent"),
                opens_received: number(&stats, "opensRecv"),
                notifications_sent: number(&stats, "notificationsSent"),
                updates_sent: number(&stats, "updatesSent"),
                updates_received: number(&stats, "updatesRecv"),
                keepalives_sent: number(&stats, "keepalivesSent"),
                keepalives_received: number(&stats, "keepalivesRecv"),
                route_refresh_sent: number(&stats, "routeRefreshSent"),
                total_sent: number(&stats, "totalSent"),
                total_received: number(&stats, "totalRecv"),
            });
        }
    }
    Ok(out)
}

/// `show bfd peers json`: a list of sessions.
pub fn parse_bfd_peers(text: &str) -> Result<Vec<BfdStatus>, StatusError> {
    let json: Value = serde_json::from_str(text).map_err(|e| StatusError {
        what: "show bfd peers json",
        detail: e.to_string(),
    })?;
    let peers = json.as_array().ok_or_else(|| StatusError {
        what: "show bfd peers json",
        detail: "not a list".into(),
    })?;
    Ok(peers
        .iter()
        .map(|p| BfdStatus {
            peer: p
                .get("peer")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            vrf: p
                .get("vrf")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .into(),
            up: p.get("status").and_then(Value::as_str) == Some("up"),
        })
        .collect())
}

/// MetalLB's BGP and BFD metrics, and the applies of the configuration (ours).
pub fn encode(
    encoder: &mut DescriptorEncoder,
    metrics: &BgpMetrics,
) -> Result<(), std::fmt::Error> {
    let status = &metrics.status;
    type Field = fn(&SessionStatus) -> u64;
    let gauges: [(&str, &str, Field); 2] = [
        (
            "metallb_bgp_session_up",
            "BGP session state (1 is up, 0 is down)",
            |s| u64::from(s.established),
        ),
        (
            "metallb_bgp_announced_prefixes_total",
            "Number of prefixes currently being advertised on the BGP session",
            |s| s.prefixes_sent,
        ),
    ];
    let counters: [(&str, &str, Field); 10] = [
        (
            "metallb_bgp_opens_sent",
            "Number of BGP open messages sent",
            |s| s.opens_sent,
        ),
        (
            "metallb_bgp_opens_received",
            "Number of BGP open messages received",
            |s| s.opens_received,
        ),
        (
            "metallb_bgp_notifications_sent",
            "Number of BGP notification messages sent",
            |s| s.notifications_sent,
        ),
        (
            "metallb_bgp_updates_total",
            "Number of BGP UPDATE messages sent",
            |s| s.updates_sent,
        ),
        (
            "metallb_bgp_updates_total_received",
            "Number of BGP UPDATE messages received",
            |s| s.updates_received,
        ),
        (
            "metallb_bgp_keepalives_sent",
            "Number of BGP keepalive messages sent",
            |s| s.keepalives_sent,
        ),
        (
            "metallb_bgp_keepalives_received",
            "Number of BGP keepalive messages received",
            |s| s.keepalives_received,
        ),
        (
            "metallb_bgp_route_refresh_sent",
            "Number of BGP route refresh messages sent",
            |s| s.route_refresh_sent,
        ),
        (
            "metallb_bgp_total_sent",
            "Number of total BGP messages sent",
            |s| s.total_sent,
        ),
        (
            "metallb_bgp_total_received",
            "Number of total BGP messages received",
            |s| s.total_received,
        ),
    ];
    let labels = |s: &SessionStatus| {
        [
            ("peer", format!("{}:{}", s.peer, s.port)),
            ("vrf", s.vrf.clone()),
        ]
    };
    for (name, help, value) in gauges {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for s in &status.sessions {
            ConstGauge::new(value(s) as i64).encode(family.encode_family(&labels(s))?)?;
        }
    }
    // Counters, typed "unknown" so that OpenMetrics adds no `_total` (MetalLB's names
    // are kept as they are, as the layer-2 ones in `metrics`).
    for (name, help, value) in counters {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Unknown)?;
        for s in &status.sessions {
            ConstGauge::new(value(s) as i64).encode(family.encode_family(&labels(s))?)?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "metallb_bgp_config_applies",
        "BGP configurations applied to FRR (frr-reload.py), by outcome",
        None,
        MetricType::Unknown,
    )?;
    for (outcome, count) in [("ok", metrics.reloads), ("error", metrics.reload_failures)] {
        ConstGauge::new(count as i64).encode(family.encode_family(&[("outcome", outcome)])?)?;
    }
    let mut family = encoder.encode_descriptor(
        "metallb_bfd_session_up",
        "BFD session state (1 is up, 0 is down)",
        None,
        MetricType::Gauge,
    )?;
    for b in &status.bfd {
        let labels = [("peer", b.peer.clone()), ("vrf", b.vrf.clone())];
        ConstGauge::new(i64::from(b.up)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/frr-json/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn reads_frr_8_4_answers() {
        let sessions = parse_neighbors(&fixture("neighbors.json")).unwrap();
        assert_eq!(
            sessions,
            [SessionStatus {
                peer: "10.77.0.1".into(),
                port: 179,
                vrf: "default".into(),
                established: true,
                up_msec: 29000,
                connections_established: 2,
                prefixes_sent: 1,
                opens_sent: 2,
                opens_received: 2,
                notifications_sent: 0,
                updates_sent: 4,
                updates_received: 2,
                keepalives_sent: 44,
                keepalives_received: 49,
                route_refresh_sent: 0,
                total_sent: 50,
                total_received: 55,
            }]
        );
        let bfd = parse_bfd_peers(&fixture("bfd-peers.json")).unwrap();
        assert_eq!(
            bfd,
            [BfdStatus {
                peer: "10.77.0.1".into(),
                vrf: "default".into(),
                up: true
            }]
        );
        assert!(parse_neighbors("[]").is_err());
        assert!(parse_bfd_peers("{").is_err());
        assert_eq!(parse_neighbors("{}").unwrap(), []);
    }

    #[test]
    fn metrics_have_metallb_names_and_labels() {
        let status = BgpStatus {
            sessions: vec![SessionStatus {
                peer: "192.0.2.1".into(),
                port: 179,
                vrf: "default".into(),
                established: true,
                prefixes_sent: 3,
                updates_sent: 5,
                ..SessionStatus::default()
            }],
            bfd: vec![BfdStatus {
                peer: "192.0.2.1".into(),
                vrf: "default".into(),
                up: false,
            }],
        };
        #[derive(Debug)]
        struct One(BgpMetrics);
        impl prometheus_client::collector::Collector for One {
            fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                encode(&mut encoder, &self.0)
            }
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(One(BgpMetrics {
            status,
            reloads: 2,
            reload_failures: 1,
        })));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "metallb_bgp_session_up{peer=\"192.0.2.1:179\",vrf=\"default\"} 1",
            "metallb_bgp_announced_prefixes_total{peer=\"192.0.2.1:179\",vrf=\"default\"} 3",
            "metallb_bgp_updates_total{peer=\"192.0.2.1:179\",vrf=\"default\"} 5",
            "metallb_bfd_session_up{peer=\"192.0.2.1\",vrf=\"default\"} 0",
            "metallb_bgp_config_applies{outcome=\"error\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
    }
}
