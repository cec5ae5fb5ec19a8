//! Prometheus metrics with MetalLB's names, so that existing dashboards work, plus the
//! XDP program's own counters; and `/healthz`, `/readyz`.
//!
//! MetalLB's layer-2 counters have no `_total` suffix (its Go client exposes them in
//! the classic text format). OpenMetrics would add one to anything typed "counter", so
//! these are exposed with type "unknown" to keep their names exactly; `rate()` works
//! on them all the same.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use metallb_common::{Outcome, VipCounters, XdpStats};
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
    datapath::{FenceState, maps::CounterView},
};

/// The per-VIP counters, read when `/metrics` is scraped (from the datapath's mapped
/// counters: no syscall, nothing kept between scrapes).
pub trait VipCounts: std::fmt::Debug + Send + Sync {
    /// Every VIP's counters summed over its interfaces and CPUs, in address order,
    /// each VIP once.
    fn per_ip(&self) -> Vec<(IpAddr, VipCounters)>;
    /// Every answer so far: (ARP replies, Neighbor Advertisements).
    fn replies(&self) -> (u64, u64);
}

impl VipCounts for CounterView {
    fn per_ip(&self) -> Vec<(IpAddr, VipCounters)> {
        CounterView::per_ip(self)
    }

    fn replies(&self) -> (u64, u64) {
        CounterView::replies(self)
    }
}

/// What the collector reports, kept up to date by the speaker.
#[derive(Debug, Default)]
pub struct MetricsState {
    /// The per-VIP counters (none before the datapath's entries are known).
    pub vips: Option<Arc<dyn VipCounts>>,
    /// The global outcomes (answers are counted per VIP: taken from `vips`).
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

/// The per-VIP families, written straight into `out` as prometheus_client's text
/// encoder writes them (the golden test checks the whole text byte for byte): at
/// 100,000 VIPs that is 500,000 lines, each address formatted once, not once a line,
/// and no label set built per line.
fn encode_per_ip(shared: &Shared, out: &mut String) {
    let (vips, episodes, ongoing) = {
        let state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        (
            state.vips.clone(),
            state.conflict_episodes.clone(),
            state.conflicts_ongoing.clone(),
        )
    };
    let per_ip = vips.as_ref().map(|v| v.per_ip()).unwrap_or_default();
    let mut texts = String::with_capacity(per_ip.len() * 16);
    let mut ends = Vec::with_capacity(per_ip.len());
    for (ip, _) in &per_ip {
        let _ = write!(texts, "{ip}");
        ends.push(texts.len());
    }
    let labels = ends.iter().scan(0, |start, end| {
        Some(&texts[std::mem::replace(start, *end)..*end])
    });
    let gratuitous = shared.gratuitous.lock().unwrap_or_else(|p| p.into_inner());
    out.reserve((per_ip.len() * 5 + gratuitous.len() + episodes.len() * 2) * 72);
    let by_ip = |value: fn(&VipCounters) -> u64| {
        labels
            .clone()
            .zip(&per_ip)
            .map(move |(ip, (_, c))| (ip, value(c)))
    };
    family(
        out,
        "metallb_layer2_requests_received",
        "Number of layer2 requests received for owned IPs",
        by_ip(|c| c.requests),
    );
    family(
        out,
        "metallb_layer2_responses_sent",
        "Number of layer2 responses sent for owned IPs",
        by_ip(|c| c.replies),
    );
    family(
        out,
        "metallb_layer2_gratuitous_sent",
        "Number of gratuitous layer2 packets sent for owned IPs",
        gratuitous.iter().map(|(ip, n)| (*ip, *n)),
    );
    drop(gratuitous);
    family(
        out,
        "metallb_layer2_conflicts_received",
        "Claims by other hosts for IPs this node answers (gratuitous ARP, ARP replies, neighbor advertisements)",
        by_ip(|c| c.conflicts),
    );
    family(
        out,
        "metallb_layer2_conflict_episodes",
        "Episodes of claims by another host for IPs this node answers (one per burst, over after 30 s without a claim)",
        episodes.iter().map(|(ip, n)| (*ip, *n)),
    );
    family(
        out,
        "metallb_layer2_conflict",
        "1 while another host claims an IP this node answers (an episode is ongoing)",
        episodes
            .keys()
            .map(|ip| (*ip, u64::from(ongoing.contains(ip)))),
    );
    family(
        out,
        "metallb_layer2_requests_suppressed",
        "Requests dropped for IPs another node announces",
        by_ip(|c| c.suppressed),
    );
}

/// One family of MetalLB's per-IP gauges (type "unknown", see the module's comment).
fn family(
    out: &mut String,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (impl std::fmt::Display, u64)>,
) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} unknown\n");
    for (ip, value) in rows {
        out.push_str(name);
        out.push_str("{ip=\"");
        // As ConstGauge<i64> writes its value.
        let _ = writeln!(out, "{ip}\"}} {}", value as i64);
    }
}

impl Collector for SpeakerCollector {
    /// Everything but the per-VIP families ([`encode_per_ip`] writes those first).
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Taken under the lock and encoded after it, so that the speaker never waits
        // for a scrape.
        let (vips, mut outcomes, fence) = {
            let state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
            (state.vips.clone(), state.outcomes, state.fence)
        };
        if let Some(vips) = &vips {
            (outcomes.tx_arp_reply, outcomes.tx_neighbor_advert) = vips.replies();
        }
        for (name, help, value) in [
            (
                "metallb_layer2_requests_fenced",
                "Requests dropped for IPs this node announces while its datapath was fenced (the agent missed its heartbeat deadline)",
                outcomes.drop_fenced as i64,
            ),
            (
                "metallb_layer2_fenced",
                "1 while the datapath is fenced and answers nothing, 0 otherwise",
                i64::from(fence.fenced),
            ),
            (
                "metallb_layer2_fence_episodes",
                "Times the datapath fenced itself",
                fence.episodes as i64,
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
                ConstCounter::new(outcomes.get(outcome)).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let bgp = self.0.bgp.lock().unwrap_or_else(|p| p.into_inner());
            crate::bgp::status::encode(&mut encoder, &bgp)?;
        }
        let state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
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

/// The registry with the speaker's collector (all but the per-VIP families, which
/// `/metrics` writes first).
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
    role: Role,
}

/// The text `/metrics` serves: the speaker's per-VIP families, then the registry's
/// (built by [`registry_for`] with the same `role`).
fn encode_text(
    shared: &Shared,
    registry: &Registry,
    role: Role,
    out: &mut String,
) -> std::fmt::Result {
    if role == Role::Speaker {
        encode_per_ip(shared, out);
    }
    prometheus_client::encoding::text::encode(out, registry)
}

async fn metrics(State(state): State<ServerState>) -> impl IntoResponse {
    let mut body = String::new();
    match encode_text(&state.shared, &state.registry, state.role, &mut body) {
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
        role,
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
    use super::*;

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

    /// Per-VIP counters as a datapath's view would read them.
    #[derive(Debug)]
    struct Fixed(Vec<(IpAddr, VipCounters)>);

    impl VipCounts for Fixed {
        fn per_ip(&self) -> Vec<(IpAddr, VipCounters)> {
            self.0.clone()
        }

        fn replies(&self) -> (u64, u64) {
            self.0.iter().fold((0, 0), |(v4, v6), (ip, c)| match ip {
                IpAddr::V4(_) => (v4 + c.replies, v6),
                IpAddr::V6(_) => (v4, v6 + c.replies),
            })
        }
    }

    fn counters(requests: u64, replies: u64, conflicts: u64, suppressed: u64) -> VipCounters {
        VipCounters {
            requests,
            replies,
            conflicts,
            suppressed,
        }
    }

    /// The whole text, byte for byte: MetalLB's names, our own, values, order.
    #[test]
    fn metallb_names_and_values() {
        let shared = Arc::new(Shared::default());
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        {
            let mut state = shared.state.lock().unwrap();
            state.vips = Some(Arc::new(Fixed(vec![
                (ip("10.0.0.1"), counters(0, 0, 2, 0)),
                (ip("192.0.2.1"), counters(5, 4, 1, 0)),
                (ip("192.0.2.7"), counters(4, 0, 0, 4)),
                (ip("2001:db8::1"), counters(1, 1, 0, 0)),
            ])));
            // Answers come from the VIPs' counters, not from the global ones.
            state.outcomes.tx_arp_reply = 1_000;
            state.outcomes.drop_fenced = 6;
            state.outcomes.pass_conflict = 3;
            state.conflict_episodes.insert(ip("192.0.2.1"), 3);
            state.conflict_episodes.insert(ip("10.0.0.1"), 1);
            state.conflicts_ongoing.insert(ip("192.0.2.1"));
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
        {
            let mut gratuitous = shared.gratuitous.lock().unwrap();
            gratuitous.insert(ip("192.0.2.1"), 10);
            gratuitous.insert(ip("198.51.100.9"), 2);
        }
        let mut text = String::new();
        encode_text(&shared, &registry(shared.clone()), Role::Speaker, &mut text).unwrap();
        let want = include_str!("../tests/fixtures/metrics_speaker.txt");
        for (n, (got, want)) in text.lines().zip(want.lines()).enumerate() {
            assert_eq!(got, want, "line {}", n + 1);
        }
        assert_eq!(text, want);
    }
}
