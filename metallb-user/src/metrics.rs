//! Prometheus metrics with MetalLB's names, so that existing dashboards work, plus the
//! XDP program's own counters; and `/healthz`, `/readyz`.
//!
//! MetalLB's layer-2 counters have no `_total` suffix (its Go client exposes them in
//! the classic text format). OpenMetrics would add one to anything typed "counter", so
//! these are exposed with type "unknown" to keep their names exactly; `rate()` works
//! on them all the same.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use metallb_common::{Outcome, XdpStats};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use tracing::{info, warn};

use crate::{
    allocator::PoolUsage,
    announce::GratuitousCounts,
    datapath::{FenceState, maps::VipRecord},
};

/// What the collector reports, refreshed by the speaker.
#[derive(Debug, Default)]
pub struct MetricsState {
    /// Per-VIP counters summed over interfaces and CPUs, and the global outcomes.
    pub vips: Vec<VipRecord>,
    pub outcomes: XdpStats,
    /// The datapath's fence timer.
    pub fence: FenceState,
    /// Episodes of claims by another host, per VIP, and the VIPs in one now.
    pub conflict_episodes: BTreeMap<IpAddr, u64>,
    pub conflicts_ongoing: BTreeSet<IpAddr>,
    pub pools: BTreeMap<String, PoolUsage>,
    pub config_loaded: bool,
    pub config_stale: bool,
}

/// Shared between the speaker (writer) and the HTTP server (reader).
#[derive(Debug, Default)]
pub struct Shared {
    pub state: Mutex<MetricsState>,
    pub gratuitous: GratuitousCounts,
    pub ready: AtomicBool,
    /// BGP mode: the sessions as FRR reports them, and the configuration applies.
    pub bgp: Mutex<crate::bgp::status::BgpMetrics>,
    /// When the speaker's main loop last turned ([`Shared::beat`]).
    pub heartbeat: Heartbeat,
}

/// The main loop's last turn, in milliseconds on a monotonic clock (0: it has not
/// started; `/healthz` then says ok: starting up is what readiness tells).
#[derive(Debug, Default)]
pub struct Heartbeat(AtomicU64);

/// `/healthz` fails when the main loop has not turned for this long: it turns at least
/// once a second (the metrics refresh).
pub const STALL: Duration = Duration::from_secs(10);

fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    // +1: never 0, which means "never".
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Heartbeat {
    /// Called by the main loop at every turn.
    pub fn beat(&self) {
        self.0.store(monotonic_ms(), Ordering::Relaxed);
    }
}

/// `/healthz`'s answer for a loop that last turned at `last_ms` (0: not started), at
/// `now_ms`.
pub fn health(last_ms: u64, now_ms: u64) -> Result<String, String> {
    if last_ms == 0 {
        return Ok("ok: starting\n".into());
    }
    let since = Duration::from_millis(now_ms.saturating_sub(last_ms));
    if since >= STALL {
        Err(format!(
            "unhealthy: the main loop has not turned for {}s\n",
            since.as_secs()
        ))
    } else {
        Ok(format!(
            "ok: the main loop turned {}ms ago\n",
            since.as_millis()
        ))
    }
}

#[derive(Debug)]
struct SpeakerCollector(Arc<Shared>);

fn per_ip(records: &[VipRecord], value: impl Fn(&VipRecord) -> u64) -> BTreeMap<IpAddr, u64> {
    let mut out = BTreeMap::new();
    for record in records {
        *out.entry(record.key.addr).or_default() += value(record);
    }
    out
}

fn encode_by_ip(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &BTreeMap<IpAddr, u64>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Unknown)?;
    for (ip, value) in values {
        let labels = [("ip", ip.to_string())];
        ConstGauge::new(*value as i64).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for SpeakerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        let gratuitous = self
            .0
            .gratuitous
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        encode_by_ip(
            &mut encoder,
            "metallb_layer2_requests_received",
            "Number of layer2 requests received for owned IPs",
            &per_ip(&state.vips, |r| r.counters.requests),
        )?;
        encode_by_ip(
            &mut encoder,
            "metallb_layer2_responses_sent",
            "Number of layer2 responses sent for owned IPs",
            &per_ip(&state.vips, |r| r.counters.replies),
        )?;
        encode_by_ip(
            &mut encoder,
            "metallb_layer2_gratuitous_sent",
            "Number of gratuitous layer2 packets sent for owned IPs",
            &gratuitous,
        )?;
        encode_by_ip(
            &mut encoder,
            "metallb_layer2_conflicts_received",
            "Claims by other hosts for IPs this node answers (gratuitous ARP, ARP replies, neighbor advertisements)",
            &per_ip(&state.vips, |r| r.counters.conflicts),
        )?;
        encode_by_ip(
            &mut encoder,
            "metallb_layer2_conflict_episodes",
            "Episodes of claims by another host for IPs this node answers (one per burst, over after 30 s without a claim)",
            &state.conflict_episodes,
        )?;
        encode_by_ip(
            &mut encoder,
            "metallb_layer2_conflict",
            "1 while another host claims an IP this node answers (an episode is ongoing)",
            &state
                .conflict_episodes
                .keys()
                .map(|ip| (*ip, u64::from(state.conflicts_ongoing.contains(ip))))
                .collect(),
        )?;
        encode_by_ip(
            &mut encoder,
            "metallb_layer2_requests_suppressed",
            "Requests dropped for IPs another node announces",
            &per_ip(&state.vips, |r| r.counters.suppressed),
        )?;
        for (name, help, value) in [
            (
                "metallb_layer2_requests_fenced",
                "Requests dropped for IPs this node announces while its datapath was fenced (the agent missed its heartbeat deadline)",
                state.outcomes.drop_fenced as i64,
            ),
            (
                "metallb_layer2_fenced",
                "1 while the datapath is fenced and answers nothing, 0 otherwise",
                i64::from(state.fence.fenced),
            ),
            (
                "metallb_layer2_fence_episodes",
                "Times the datapath fenced itself",
                state.fence.episodes as i64,
            ),
        ] {
            let family = encoder.encode_descriptor(name, help, None, MetricType::Unknown)?;
            ConstGauge::new(value).encode(family)?;
        }
        {
            let mut family = encoder.encode_descriptor(
                "metallb_xdp_frames",
                "Frames seen by the XDP responder, by what it did with them",
                None,
                MetricType::Counter,
            )?;
            for outcome in Outcome::ALL {
                let labels = [("outcome", outcome.name())];
                ConstCounter::new(state.outcomes.get(outcome))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let bgp = self.0.bgp.lock().unwrap_or_else(|p| p.into_inner());
            crate::bgp::status::encode(&mut encoder, &bgp)?;
        }
        encode_allocator(&mut encoder, &state)
    }
}

/// The controller's metrics (the standalone speaker, which allocates too, has them):
/// pool usage and whether the configuration loaded.
fn encode_allocator(
    encoder: &mut DescriptorEncoder,
    state: &MetricsState,
) -> Result<(), std::fmt::Error> {
    for (name, help, value) in [
        (
            "metallb_allocator_addresses_in_use_total",
            "Number of IP addresses in use, per pool",
            (|u: &PoolUsage| u.in_use as f64) as fn(&PoolUsage) -> f64,
        ),
        (
            "metallb_allocator_addresses_total",
            "Number of usable IP addresses, per pool",
            |u: &PoolUsage| u.total as f64,
        ),
    ] {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (pool, usage) in &state.pools {
            let labels = [("pool", pool.as_str())];
            ConstGauge::new(value(usage)).encode(family.encode_family(&labels)?)?;
        }
    }
    for (name, help, value) in [
        (
            "metallb_k8s_client_config_loaded_bool",
            "1 if a configuration was loaded successfully",
            state.config_loaded,
        ),
        (
            "metallb_k8s_client_config_stale_bool",
            "1 if the last configuration change was refused",
            state.config_stale,
        ),
    ] {
        ConstGauge::new(i64::from(value)).encode(encoder.encode_descriptor(
            name,
            help,
            None,
            MetricType::Gauge,
        )?)?;
    }
    Ok(())
}

#[derive(Debug)]
struct ControllerCollector(Arc<Shared>);

impl Collector for ControllerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        encode_allocator(&mut encoder, &state)
    }
}

/// Which metrics a process serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Speaker,
    Controller,
}

/// The registry with the speaker's collector.
pub fn registry(shared: Arc<Shared>) -> Registry {
    registry_for(shared, Role::Speaker)
}

/// The registry with the collector of `role`.
pub fn registry_for(shared: Arc<Shared>, role: Role) -> Registry {
    let mut registry = Registry::default();
    match role {
        Role::Speaker => registry.register_collector(Box::new(SpeakerCollector(shared))),
        Role::Controller => registry.register_collector(Box::new(ControllerCollector(shared))),
    }
    registry
}

#[derive(Clone)]
struct ServerState {
    registry: Arc<Registry>,
    shared: Arc<Shared>,
}

async fn metrics(State(state): State<ServerState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            "encoding failed".into(),
        ),
    }
}

async fn healthz(State(state): State<ServerState>) -> impl IntoResponse {
    match health(
        state.shared.heartbeat.0.load(Ordering::Relaxed),
        monotonic_ms(),
    ) {
        Ok(text) => (StatusCode::OK, text),
        Err(text) => (StatusCode::SERVICE_UNAVAILABLE, text),
    }
}

async fn ready(State(state): State<ServerState>) -> impl IntoResponse {
    if state.shared.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no configuration applied yet\n",
        )
    }
}

/// Binds `addr` (the error names it) and serves `/metrics`, `/healthz`, `/readyz`.
pub async fn serve(addr: SocketAddr, shared: Arc<Shared>) -> anyhow::Result<()> {
    serve_role(addr, shared, Role::Speaker).await
}

/// [`serve`], with the metrics of `role`.
pub async fn serve_role(addr: SocketAddr, shared: Arc<Shared>, role: Role) -> anyhow::Result<()> {
    let state = ServerState {
        registry: Arc::new(registry_for(shared.clone(), role)),
        shared,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics address {addr}: {e}"))?;
    info!(%addr, "serving /metrics, /healthz, /readyz");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            warn!(%error, "metrics server stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use metallb_common::{VipAction, VipCounters};

    use super::*;
    use crate::datapath::{iface::MacAddr, maps::VipKey};

    #[test]
    fn healthz_fails_when_the_main_loop_stops_turning() {
        let cases = [
            ("not started", 0, 50_000, Ok("ok: starting\n".to_string())),
            (
                "turned just now",
                1_000,
                1_250,
                Ok("ok: the main loop turned 250ms ago\n".to_string()),
            ),
            (
                "just under the limit",
                1_000,
                10_999,
                Ok("ok: the main loop turned 9999ms ago\n".to_string()),
            ),
            (
                "stalled",
                1_000,
                11_000,
                Err("unhealthy: the main loop has not turned for 10s\n".to_string()),
            ),
            (
                "stalled long",
                1_000,
                3_601_000,
                Err("unhealthy: the main loop has not turned for 3600s\n".to_string()),
            ),
        ];
        for (name, last, now, want) in cases {
            assert_eq!(health(last, now), want, "{name}");
        }
        let beat = Heartbeat::default();
        beat.beat();
        assert!(health(beat.0.load(Ordering::Relaxed), monotonic_ms()).is_ok());
    }

    fn record(ip: &str, ifindex: u32, requests: u64, replies: u64) -> VipRecord {
        VipRecord {
            key: VipKey {
                addr: ip.parse().unwrap(),
                ifindex,
                vlan_id: 0,
            },
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            action: Some(VipAction::Answer),
            counters: VipCounters {
                requests,
                replies,
                conflicts: 0,
                suppressed: 0,
            },
        }
    }

    #[test]
    fn metallb_names_and_values() {
        let shared = Arc::new(Shared::default());
        {
            let mut state = shared.state.lock().unwrap();
            state.vips = vec![
                record("192.0.2.1", 2, 3, 3),
                record("192.0.2.1", 3, 2, 1),
                record("2001:db8::1", 2, 1, 1),
            ];
            state.outcomes.tx_arp_reply = 4;
            state.outcomes.drop_fenced = 6;
            state
                .conflict_episodes
                .insert("192.0.2.1".parse().unwrap(), 3);
            state.conflicts_ongoing.insert("192.0.2.1".parse().unwrap());
            state.fence = FenceState {
                fenced: true,
                episodes: 2,
                ..FenceState::default()
            };
            state.pools.insert(
                "pool-a".into(),
                PoolUsage {
                    total: 254,
                    in_use: 2,
                    ..PoolUsage::default()
                },
            );
            state.config_loaded = true;
        }
        shared
            .gratuitous
            .lock()
            .unwrap()
            .insert("192.0.2.1".parse().unwrap(), 10);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry(shared)).unwrap();
        for line in [
            "metallb_layer2_requests_received{ip=\"192.0.2.1\"} 5",
            "metallb_layer2_requests_received{ip=\"2001:db8::1\"} 1",
            "metallb_layer2_responses_sent{ip=\"192.0.2.1\"} 4",
            "metallb_layer2_gratuitous_sent{ip=\"192.0.2.1\"} 10",
            "metallb_xdp_frames_total{outcome=\"tx_arp_reply\"} 4",
            "metallb_layer2_requests_fenced 6",
            "metallb_layer2_conflict_episodes{ip=\"192.0.2.1\"} 3",
            "metallb_layer2_conflict{ip=\"192.0.2.1\"} 1",
            "metallb_layer2_fenced 1",
            "metallb_layer2_fence_episodes 2",
            "metallb_allocator_addresses_in_use_total{pool=\"pool-a\"} 2.0",
            "metallb_allocator_addresses_total{pool=\"pool-a\"} 254.0",
            "metallb_k8s_client_config_loaded_bool 1",
            "metallb_k8s_client_config_stale_bool 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
