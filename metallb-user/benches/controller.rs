//! `cargo xtask bench controller`: the `metallb controller` process against the
//! in-process test API server, with 10,000 Services and 20 pools (`BENCH_SERVICES`,
//! `BENCH_POOLS` change them). Prints the time until every Service has its address,
//! the controller's peak RSS, the writes per Service, and then the same for one
//! Service changed among them.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, stream};
use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, Client, CustomResourceExt as _,
    api::{Patch, PatchParams, PostParams},
};
use metallb_testkit::{TestApiServer, apiserver::RecordedRequest};
use metallb_user::config::crd::{IPAddressPool, L2Advertisement};
use serde_json::json;

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");
const NAMESPACES: usize = 20;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The peak resident set of a process, from /proc (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time (user + system) a process has used, from /proc (clock ticks of 10 ms).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold blanks.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Kills the controller when the bench ends, also on error.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ingress(service: &serde_json::Value) -> Vec<String> {
    service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect()
}

/// Writes by what they wrote: Service objects, Service statuses, Events, pool statuses.
fn writes_by_kind(requests: &[RecordedRequest]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for request in requests
        .iter()
        .filter(|r| r.verb.is_write() && r.code < 300)
    {
        let kind = match (request.resource(), request.path.ends_with("/status")) {
            ("services", false) => "service (annotation)",
            ("services", true) => "service status",
            ("events", _) => "event",
            ("ipaddresspools", true) => "pool status",
            _ => "other",
        };
        *counts.entry(kind).or_default() += 1;
    }
    counts
}

async fn create_all(client: &Client, services: usize, pools: usize) -> anyhow::Result<()> {
    let pool_api: Api<IPAddressPool> = Api::namespaced(client.clone(), "metallb-system");
    for p in 0..pools {
        let pool: IPAddressPool = serde_json::from_value(json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": format!("pool-{p:02}"), "namespace": "metallb-system"},
            "spec": {"addresses": [format!("10.{p}.0.0/18")]},
        }))?;
        pool_api.create(&PostParams::default(), &pool).await?;
    }
    let created = stream::iter(0..services)
        .map(|i| {
            let client = client.clone();
            async move {
                let namespace = format!("ns-{:02}", i % NAMESPACES);
                let service: Service = serde_json::from_value(json!({
                    "metadata": {"name": format!("svc-{i:05}"), "namespace": namespace},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
                }))?;
                Api::<Service>::namespaced(client, &namespace)
                    .create(&PostParams::default(), &service)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    created.into_iter().collect()
}

async fn run() -> anyhow::Result<()> {
    let services = setting("BENCH_SERVICES", 10_000);
    let pools = setting("BENCH_POOLS", 20);
    println!(
        "metallb controller against the in-process test API server: {services} Services, {pools} pools\nCPU: {}, {} CPUs",
        metallb_testkit::cpu_model(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let server = TestApiServer::start().await?;
    server.register_crd(&IPAddressPool::crd())?;
    server.register_crd(&L2Advertisement::crd())?;
    let client = server.client()?;
    let started = Instant::now();
    create_all(&client, services, pools).await?;
    println!("created in {:.2?}", started.elapsed());

    let dir = std::env::temp_dir().join(format!("metallb-bench-controller-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{}\"}}\nusers:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test}}\ncurrent-context: test\n",
            server.url()
        ),
    )?;

    let mark = server.mark();
    let started = Instant::now();
    let controller = Controller(
        Command::new(BINARY)
            .args([
                "controller",
                "--leader-elect=false",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("starting metallb controller")?,
    );
    let pid = controller.0.id();
    loop {
        let done = server.count("", "v1", "services", |s| {
            s["status"]["loadBalancer"]["ingress"][0]["ip"].is_string()
        });
        if done == services {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("only {done} of {services} services got an address in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sync = started.elapsed();
    let writes = writes_by_kind(&server.requests_since(mark));
    let total: usize = writes.values().sum();
    println!("\ninitial sync");
    println!(
        "  every Service has its address after {:.2?} (target: under 10 s)",
        sync
    );
    println!(
        "  writes: {total} = {:.2} per Service ({})",
        total as f64 / services as f64,
        writes
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Events are published in the background: the change is measured once they are
    // all out (one IPAllocated per Service).
    loop {
        let events = writes_by_kind(&server.requests_since(mark))
            .get("event")
            .copied()
            .unwrap_or(0);
        if events >= services {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("only {events} of {services} events were published in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  every IPAllocated Event published after {:.2?}",
        started.elapsed()
    );
    println!(
        "  controller peak RSS: {:.1} MiB (target: under 150 MiB), CPU time {:.2} s",
        peak_rss_mib(pid).unwrap_or(f64::NAN),
        cpu_seconds(pid).unwrap_or(f64::NAN)
    );

    // One Service changed among them: it asks for a given free address.
    let (namespace, name) = ("ns-00", "svc-00000");
    let wanted = format!("10.{}.63.200", 0);
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let mark = server.mark();
    let changed = Instant::now();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"metallb.io/loadBalancerIPs": wanted}}})),
    )
    .await?;
    loop {
        let now = server
            .object("", "v1", "services", namespace, name)
            .map(|s| ingress(&s))
            .unwrap_or_default();
        if now == [wanted.clone()] {
            break;
        }
        if changed.elapsed() > Duration::from_secs(30) {
            bail!("the change was not applied in 30 s");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let applied = changed.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes: Vec<RecordedRequest> = server
        .requests_since(mark)
        .into_iter()
        .filter(|r| !r.body.contains("loadBalancerIPs")) // the bench's own patch
        .collect();
    let writes = writes_by_kind(&writes);
    println!("\none Service changed (asks for {wanted})");
    println!("  applied after {:.2?} (target: under 50 ms)", applied);
    println!(
        "  writes: {} ({})",
        writes.values().sum::<usize>(),
        writes
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  controller peak RSS: {:.1} MiB",
        peak_rss_mib(pid).unwrap_or(f64::NAN)
    );
    drop(controller);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(run())
}
