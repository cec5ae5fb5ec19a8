//! `cargo xtask demo --kubernetes`: the Kubernetes mode on one machine. The API server is
//! NOT a real one: it is the in-process test API server of `metallb-testkit`, which the
//! real `kube::Client` talks to over HTTP. `examples/standalone.yaml` is applied to it as
//! API objects; `metallb controller` (in this process) gives the Services their
//! addresses; a real `metallb speaker` process in the lab's node namespace announces
//! them; the client namespace's `arping`/`ndisc6` get answers from its XDP program. Then
//! everything is removed. Exits non-zero if an answer is missing.

mod common;

use std::{
    net::IpAddr,
    path::Path,
    process::Stdio,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use common::{Running, ask_every_vip, metallb_binary, say};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams},
};
use metallb_testkit::{
    TestApiServer,
    lab::{Lab, NetnsGuard, command_in, exec_in, unique_name},
};
use metallb_user::{config::crd::ServiceL2Status, datapath::XdpMode};
use serde_json::{Value, json};

const NODE_NAME: &str = "node-1";
const SPEAKER_POD: &str = "speaker-node-1";
const NAMESPACE: &str = "metallb-system";
const PIN_DIR: &str = "/sys/fs/bpf/metallb-demo-kubernetes";
const DEADLINE: Duration = Duration::from_secs(20);

/// The API resource of an object of `examples/standalone.yaml`.
fn resource_of(object: &Value) -> anyhow::Result<ApiResource> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "IPAddressPool" => "ipaddresspools",
        "L2Advertisement" => "l2advertisements",
        "Service" => "services",
        other => bail!("the demo does not apply {other} objects"),
    };
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        plural,
    ))
}

/// The address `kubectl get svc` shows as EXTERNAL-IP.
fn external_ips(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| ingress.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let binary = metallb_binary()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let _context = runtime.enter();
    println!(
        "Kubernetes mode, on one machine. The API server here is the in-process TEST API server \
         of metallb-testkit (no cluster can run on this machine); the controller, the speaker \
         and kube::Client are the real ones."
    );

    let mut lab = Lab::new("k8s-demo")?;
    lab.prepare_client_for(XdpMode::Native)?;
    let server = runtime.block_on(TestApiServer::start())?;
    for crd in metallb_user::config::crd::definitions()? {
        server.register_crd(&crd)?;
    }
    // The speaker runs in the node namespace: the API is reached there through a
    // listener made inside it (a socket belongs to the namespace it is made in).
    let listener = {
        let _inside = NetnsGuard::enter(&lab.node_ns)?;
        std::net::TcpListener::bind("127.0.0.1:0")?
    };
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    server.serve_on(tokio::net::TcpListener::from_std(listener)?);
    let kubeconfig = std::env::temp_dir().join(unique_name("demo-kubeconfig"));
    std::fs::write(&kubeconfig, server.kubeconfig(Some(address), None))?;
    let client = server.client()?;

    // 1. Apply the example, as `kubectl apply -f examples/standalone.yaml` would.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/standalone.yaml");
    let text = std::fs::read_to_string(&path).context("examples/standalone.yaml")?;
    let mut applied = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let object: Value = serde::Deserialize::deserialize(document)?;
        if object.is_null() {
            continue;
        }
        let resource = resource_of(&object)?;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let object: DynamicObject = serde_json::from_value(object)?;
        let created = runtime.block_on(api.create(&PostParams::default(), &object))?;
        applied.push(format!(
            "{}/{} created",
            resource.plural,
            created.metadata.name.unwrap_or_default()
        ));
    }
    say(
        "kubectl apply -f examples/standalone.yaml   # to the test API server",
        &applied.join("\n"),
    );

    // What a cluster has besides: the node, and the endpoints of each Service (here
    // one ready endpoint on the node, as the EndpointSlice controller would write).
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    runtime.block_on(nodes.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": NODE_NAME}}))?,
    ))?;
    // The speaker's Pod (as the DaemonSet would run it): it owns the ServiceL2Status
    // objects, so that they go with it.
    server.seed("", "v1", "pods", json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": SPEAKER_POD, "namespace": NAMESPACE, "labels": {"app": "metallb", "component": "speaker"}},
        "spec": {"nodeName": NODE_NAME, "containers": [{"name": "speaker", "image": "metallb"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }))?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    for service in runtime
        .block_on(services.list(&ListParams::default()))?
        .items
    {
        let name = service.metadata.name.clone().unwrap_or_default();
        let slice = json!({
            "metadata": {"name": format!("{name}-demo"), "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.10"], "conditions": {"ready": true}, "nodeName": NODE_NAME}],
        });
        runtime.block_on(slices.create(&PostParams::default(), &serde_json::from_value(slice)?))?;
    }

    // 2. The controller allocates.
    let _controller = metallb_testkit::controller::spawn(
        runtime.handle(),
        client.clone(),
        NAMESPACE,
        "controller-demo",
    );
    let deadline = Instant::now() + DEADLINE;
    let listed = loop {
        let listed = runtime
            .block_on(services.list(&ListParams::default()))?
            .items;
        if listed.iter().all(|s| !external_ips(s).is_empty()) {
            break listed;
        }
        ensure!(
            Instant::now() < deadline,
            "the controller did not give every Service an address"
        );
        sleep(Duration::from_millis(50));
    };
    let mut table = vec!["NAME  TYPE  EXTERNAL-IP".to_string()];
    let mut vips: Vec<IpAddr> = Vec::new();
    for service in &listed {
        let ips = external_ips(service);
        vips.extend(ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()));
        table.push(format!(
            "{}  LoadBalancer  {}",
            service.metadata.name.clone().unwrap_or_default(),
            ips.join(",")
        ));
    }
    say(
        "kubectl get services   # status.loadBalancer.ingress, written by metallb controller",
        &table.join("\n"),
    );

    // 3. The speaker, in the node namespace, on the API.
    let log_path = std::env::temp_dir().join(unique_name("demo-speaker-log"));
    let speaker = Running(
        command_in(&lab.node_ns, &binary.to_string_lossy())
            .args([
                "speaker",
                "--node-name",
                NODE_NAME,
                "--pod-name",
                SPEAKER_POD,
                "--interface",
                lab.node_if,
                "--pin-dir",
                PIN_DIR,
            ])
            .env("KUBECONFIG", &kubeconfig)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()
            .context("starting the speaker")?,
    );
    let deadline = Instant::now() + DEADLINE;
    while !exec_in(
        &lab.node_ns,
        "curl",
        &["-sf", "http://127.0.0.1:7472/readyz"],
    )?
    .status
    .success()
    {
        ensure!(
            Instant::now() < deadline,
            "the speaker did not become ready"
        );
        sleep(Duration::from_millis(100));
    }
    println!(
        "\nmetallb speaker (no --config: Kubernetes mode) ready in the node namespace, pid {}",
        speaker.0.id()
    );

    // 4. The client asks.
    let missing = ask_every_vip(&lab, &vips)?;

    // 5. What the speaker reported to the API.
    let statuses: Api<ServiceL2Status> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + DEADLINE;
    let reported = loop {
        let items = runtime
            .block_on(statuses.list(&ListParams::default()))?
            .items;
        if items.len() == listed.len() || Instant::now() > deadline {
            break items;
        }
        sleep(Duration::from_millis(50));
    };
    let mut table = vec!["NAME  ALLOCATED NODE  SERVICE NAME  SERVICE NAMESPACE".to_string()];
    for status in &reported {
        let s = status.status.clone().unwrap_or_default();
        table.push(format!(
            "{}  {}  {}  {}",
            status.metadata.name.clone().unwrap_or_default(),
            s.node,
            s.service_name,
            s.service_namespace
        ));
    }
    say(
        "kubectl get servicel2statuses -n metallb-system",
        &table.join("\n"),
    );
    let events = server.objects("events.k8s.io", "v1", "events");
    let mut lines = vec!["REASON  OBJECT  MESSAGE".to_string()];
    for event in &events {
        lines.push(format!(
            "{}  service/{}  {}",
            event["reason"].as_str().unwrap_or_default(),
            event["regarding"]["name"].as_str().unwrap_or_default(),
            event["note"].as_str().unwrap_or_default()
        ));
    }
    say("kubectl get events -n default", &lines.join("\n"));

    drop(speaker);
    drop(lab);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    let _ = std::fs::remove_file(&kubeconfig);
    say("the speaker's log", &log);
    if !missing.is_empty() {
        bail!("no answer for {missing:?}");
    }
    ensure!(
        reported.len() == listed.len(),
        "{} ServiceL2Status object(s) for {} announced Services",
        reported.len(),
        listed.len()
    );
    println!(
        "\ndemo passed: the controller allocated on the (test) API server, the speaker answered every VIP from XDP and reported ServiceL2Status; speaker stopped, lab removed"
    );
    Ok(())
}
