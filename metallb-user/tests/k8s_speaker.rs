//! `metallb speaker` in Kubernetes mode, end to end (needs root): the in-process test
//! API server, `metallb controller` giving the Service its address, and two real
//! speaker processes, each in the node namespace of a lab of its own, reaching the API
//! through a listener made inside that namespace. ARP requests from each lab's client
//! show which node answers: the elected one, and never both.

mod support;

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use metallb_testkit::{
    TestApiServer,
    lab::{Lab, NetnsGuard, ScratchPinDir, command_in, exec_in, unique_name},
    rbac,
};
use metallb_user::{
    config::crd::ServiceL2Status,
    datapath::XdpMode,
    kubernetes::rbac::{CONTROLLER, SPEAKER},
};
use serde_json::{Value, json};
use support::{
    ArpAsker,
    kubernetes::{seed_pool_and_advertisement, service_with_address, start_server},
};

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");
const NS: &str = "metallb-system";
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const DEADLINE: Duration = Duration::from_secs(20);

/// A node: a lab, the API reachable from its namespace, and its speaker.
struct Node {
    name: &'static str,
    lab: Lab,
    asker: ArpAsker,
    pins: ScratchPinDir,
    kubeconfig: PathBuf,
    /// The speaker's log, shown when a wait fails.
    log: PathBuf,
    speaker: Option<Child>,
}

impl Node {
    fn new(rt: &tokio::runtime::Runtime, server: &TestApiServer, name: &'static str) -> Self {
        let mut lab = Lab::new(name).expect("lab");
        lab.prepare_client_for(XdpMode::Native)
            .expect("client side");
        // A socket belongs to the namespace it is made in: this listener is the node
        // namespace's 127.0.0.1.
        let listener = {
            let _inside = NetnsGuard::enter(&lab.node_ns).expect("enter the node namespace");
            std::net::TcpListener::bind("127.0.0.1:0").expect("listener in the node namespace")
        };
        listener.set_nonblocking(true).expect("non-blocking");
        let address = listener.local_addr().expect("address");
        let listener = rt.block_on(async { tokio::net::TcpListener::from_std(listener) });
        server.serve_on(listener.expect("tokio listener"));
        let kubeconfig = std::env::temp_dir().join(unique_name("kubeconfig"));
        let user = SPEAKER.user(NS);
        std::fs::write(&kubeconfig, server.kubeconfig(Some(address), Some(&user)))
            .expect("kubeconfig");
        let asker = ArpAsker::for_client(&lab).expect("ARP asker");
        Self {
            name,
            asker,
            pins: ScratchPinDir::new(name),
            kubeconfig,
            log: std::env::temp_dir().join(unique_name("speaker-log")),
            lab,
            speaker: None,
        }
    }

    /// Starts `metallb speaker` without --config (Kubernetes mode) and waits until it
    /// is ready (attached, first snapshot applied).
    fn start_speaker(&mut self) {
        self.start_speaker_with(&[]);
    }

    /// SIGTERM, and waits for the speaker to exit (its stop decision made).
    fn stop_speaker(&mut self) {
        let mut child = self.speaker.take().expect("a running speaker");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = child.wait().expect("wait");
        assert!(status.success(), "the speaker exited with {status}");
    }

    /// Starts the speaker on the lab's interface, named with `--interface`.
    fn start_speaker_with(&mut self, extra: &[&str]) {
        let mut args = vec!["--interface", self.lab.node_if];
        args.extend(extra);
        self.start_speaker_on_any_interface(&args);
    }

    /// Starts the speaker without `--interface`: it chooses, with the exclusion patterns.
    fn start_speaker_on_any_interface(&mut self, extra: &[&str]) {
        let pins = self.pins.path.to_string_lossy().into_owned();
        let pod = format!("speaker-{}", self.name);
        let child = command_in(&self.lab.node_ns, BINARY)
            .args([
                "speaker",
                "--node-name",
                self.name,
                "--pod-name",
                &pod,
                "--pin-dir",
                &pins,
            ])
            .args(extra)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,metallb_user::kubernetes=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.log).expect("log file"))
            .spawn()
            .expect("start the speaker");
        self.speaker = Some(child);
        let deadline = Instant::now() + DEADLINE;
        while !exec_in(
            &self.lab.node_ns,
            "curl",
            &["-sf", "http://127.0.0.1:7472/readyz"],
        )
        .expect("curl")
        .status
        .success()
        {
            assert!(Instant::now() < deadline, "speaker {} not ready", self.name);
            sleep(Duration::from_millis(50));
        }
    }

    fn answers(&self) -> bool {
        self.asker
            .ask(VIP, Duration::from_millis(200))
            .expect("ask")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.speaker.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.kubeconfig);
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- speaker {} (last lines) ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Which of `nodes` answer for the VIP, asked until `want` holds (each asked every
/// round: both answering at once fails at once).
fn until_answering(nodes: &[&Node], want: &[&str], what: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answering: Vec<&str> = nodes
            .iter()
            .filter(|n| n.answers())
            .map(|n| n.name)
            .collect();
        assert!(
            answering.len() <= 1,
            "two nodes answer for {VIP}: {answering:?} ({what})"
        );
        if answering == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: answering {answering:?}, wanted {want:?}"
        );
        sleep(Duration::from_millis(50));
    }
}

fn seed(server: &TestApiServer, group: &str, plural: &str, object: Value) {
    let version = if group.is_empty() { "v1" } else { "v1beta1" };
    server.seed(group, version, plural, object).expect("seed");
}

fn speaker_pod(node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("speaker-{node}"), "namespace": NS, "labels": {"app": "metallb", "component": "speaker"}},
        "spec": {"nodeName": node, "containers": [{"name": "speaker", "image": "metallb"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })
}

fn endpoints(node: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-x1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": ready}, "nodeName": node}],
    })
}

fn l2_statuses(rt: &tokio::runtime::Runtime, server: &TestApiServer) -> Vec<(String, String)> {
    let api: Api<ServiceL2Status> = Api::namespaced(server.client().unwrap(), NS);
    let list = rt.block_on(api.list(&ListParams::default())).expect("list");
    list.items
        .iter()
        .map(|s| {
            let status = s.status.clone().unwrap_or_default();
            (
                status.node,
                format!("{}/{}", status.service_namespace, status.service_name),
            )
        })
        .collect()
}

fn until_l2_statuses(rt: &tokio::runtime::Runtime, server: &TestApiServer, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = l2_statuses(rt, server);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ServiceL2Status: {got:?}, wanted {want:?}"
        );
        sleep(Duration::from_millis(50));
    }
}

#[test]
fn netns_kubernetes_speakers_answer_where_elected_and_follow_endpoints_and_nodes() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Spawns (the server's listeners, kube's client) need the runtime's context.
    let _context = rt.enter();
    let server = start_server(&rt);
    let client = rt.block_on(async { server.client() }).expect("client");

    seed_pool_and_advertisement(&server, NS, "192.0.2.100-192.0.2.110");
    for node in ["node-a", "node-b"] {
        seed(
            &server,
            "",
            "nodes",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}),
        );
        seed(&server, "", "pods", speaker_pod(node));
    }
    let _controller = metallb_testkit::controller::spawn(
        rt.handle(),
        rbac::client(&server, &CONTROLLER, NS),
        NS,
        "controller",
    );

    // Local traffic policy with the only endpoint on node-a: node-a must announce.
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "default");
    let service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "protocol": "TCP"}]},
    }))
    .unwrap();
    rt.block_on(services.create(&PostParams::default(), &service))
        .expect("service");
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(client.clone(), "default");
    rt.block_on(slices.create(
        &PostParams::default(),
        &serde_json::from_value(endpoints("node-a", true)).unwrap(),
    ))
    .expect("endpoints");

    let mut a = Node::new(&rt, &server, "node-a");
    let mut b = Node::new(&rt, &server, "node-b");
    a.start_speaker();
    b.start_speaker();
    until_answering(&[&a, &b], &["node-a"], "the endpoint is on node-a");
    until_l2_statuses(&rt, &server, &[("node-a", "default/web")]);
    let assigned = server.count("events.k8s.io", "v1", "events", |e| {
        e["reason"] == "nodeAssigned" && e["regarding"]["name"] == "web"
    });
    assert_eq!(assigned, 1, "one nodeAssigned Event");

    // The endpoint moves to node-b: the answering node follows.
    let patch = |value: Value| {
        rt.block_on(slices.patch("web-x1", &PatchParams::default(), &Patch::Merge(&value)))
            .expect("patch endpoints");
    };
    patch(
        json!({"endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "nodeName": "node-b"}]}),
    );
    until_answering(&[&a, &b], &["node-b"], "the endpoint moved to node-b");
    until_l2_statuses(&rt, &server, &[("node-b", "default/web")]);

    // No ready endpoint: nobody announces, no ServiceL2Status.
    patch(
        json!({"endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": false}, "nodeName": "node-b"}]}),
    );
    until_answering(&[&a, &b], &[], "no ready endpoint");
    until_l2_statuses(&rt, &server, &[]);

    // Cluster policy, endpoints ready, node-b without network: only node-a may.
    patch(
        json!({"endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "nodeName": "node-b"}]}),
    );
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    rt.block_on(services.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"externalTrafficPolicy": "Cluster"}})),
    ))
    .expect("cluster policy");
    rt.block_on(nodes.patch_status(
        "node-b",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"conditions": [{"type": "NetworkUnavailable", "status": "True"}]}}),
        ),
    ))
    .expect("node-b unavailable");
    until_answering(&[&a, &b], &["node-a"], "node-b has no network");

    // node-a excluded from load balancers, node-b back: node-b.
    rt.block_on(nodes.patch_status(
        "node-b",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]}}),
        ),
    ))
    .expect("node-b back");
    rt.block_on(nodes.patch(
        "node-a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"node.kubernetes.io/exclude-from-external-load-balancers": ""}}})),
    ))
    .expect("node-a excluded");
    until_answering(&[&a, &b], &["node-b"], "node-a is excluded");
    until_l2_statuses(&rt, &server, &[("node-b", "default/web")]);
    drop(a);
    drop(b);
    // Every request each component made is one its RBAC table grants.
    rbac::assert_authorized(&server, &SPEAKER, NS);
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

/// With --keep-datapath, a speaker told to stop asks the API: its DaemonSet still there
/// (a rolling update) keeps the datapath for the next Pod; the DaemonSet gone (an
/// uninstall) removes it, so that nothing stays attached or pinned.
#[test]
fn netns_a_kubernetes_speaker_keeps_its_datapath_for_an_update_and_removes_it_on_uninstall() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _context = rt.enter();
    let server = start_server(&rt);
    server.register(metallb_testkit::apiserver::ResourceType {
        group: "apps".into(),
        version: "v1".into(),
        kind: "DaemonSet".into(),
        plural: "daemonsets".into(),
        namespaced: true,
        status_subresource: true,
    });
    let daemonset = server
        .seed(
            "apps",
            "v1",
            "daemonsets",
            json!({
                "metadata": {"name": "speaker", "namespace": NS},
                "spec": {
                    "selector": {"matchLabels": {"app": "metallb", "component": "speaker"}},
                    "template": {"metadata": {"labels": {"app": "metallb", "component": "speaker"}},
                                 "spec": {"containers": [{"name": "speaker", "image": "metallb"}]}},
                },
            }),
        )
        .expect("daemonset");
    seed(
        &server,
        "",
        "namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    );
    let mut pod = speaker_pod("node-a");
    pod["metadata"]["labels"]["pod-template-generation"] = "1".into();
    pod["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "speaker",
        "uid": daemonset["metadata"]["uid"], "controller": true,
    }]);
    seed(&server, "", "pods", pod);
    seed(
        &server,
        "",
        "nodes",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}),
    );

    let mut a = Node::new(&rt, &server, "node-a");
    let pinned = |node: &Node| node.pins.path.join("vips_v4").exists();
    a.start_speaker_with(&["--keep-datapath"]);
    assert!(pinned(&a));
    a.stop_speaker();
    assert!(
        pinned(&a),
        "a rolling update keeps the datapath for the next Pod"
    );

    // Uninstall: the DaemonSet is gone (background deletion) when the Pod is stopped.
    let daemonsets: Api<k8s_openapi::api::apps::v1::DaemonSet> =
        Api::namespaced(server.client().unwrap(), NS);
    rt.block_on(daemonsets.delete("speaker", &kube::api::DeleteParams::default()))
        .expect("delete the DaemonSet");
    a.start_speaker_with(&["--keep-datapath"]);
    a.stop_speaker();
    assert!(!pinned(&a), "an uninstall removes the datapath");
    assert!(!a.pins.path.exists(), "no pin directory stays behind");
    rbac::assert_authorized(&server, &SPEAKER, NS);
}

/// Without `--interface`, the speaker leaves alone the interfaces the watched
/// `metallb-excludel2` ConfigMap excludes, follows its changes without a restart, and
/// keeps MetalLB's defaults (not "exclude nothing") while it has errors.
#[test]
fn netns_a_kubernetes_speaker_follows_the_metallb_excludel2_config_map() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _context = rt.enter();
    let server = start_server(&rt);
    seed_pool_and_advertisement(&server, NS, "192.0.2.100/32");
    seed(
        &server,
        "",
        "nodes",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}),
    );
    seed(&server, "", "pods", speaker_pod("node-a"));
    seed(&server, "", "services", service_with_address(VIP));
    server
        .seed(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            endpoints("node-a", true),
        )
        .expect("endpoints");

    let mut a = Node::new(&rt, &server, "node-a");
    a.start_speaker_on_any_interface(&[]);
    until_answering(
        &[&a],
        &["node-a"],
        "no ConfigMap: MetalLB's defaults spare the lab's interface",
    );

    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(server.client().unwrap(), NS);
    let exclude = |patterns: &str| -> k8s_openapi::api::core::v1::ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": "metallb-excludel2", "namespace": NS},
            "data": {"excludel2.yaml": format!("announcedInterfacesToExclude: {patterns}")},
        }))
        .unwrap()
    };
    rt.block_on(config_maps.create(&PostParams::default(), &exclude(r#"["^mlb-"]"#)))
        .expect("create the ConfigMap");
    until_answering(&[&a], &[], "the ConfigMap excludes the lab's interface");

    // A pattern that does not compile: logged, and MetalLB's defaults apply meanwhile.
    rt.block_on(config_maps.replace(
        "metallb-excludel2",
        &PostParams::default(),
        &exclude(r#"["^mlb-", "("]"#),
    ))
    .expect("replace the ConfigMap");
    until_answering(&[&a], &["node-a"], "a broken ConfigMap: the defaults");
    let log = std::fs::read_to_string(&a.log).expect("log");
    assert!(
        log.contains("ConfigMap metallb-system/metallb-excludel2"),
        "the error names the ConfigMap: {log}"
    );

    // Fixed again, then deleted (with another ConfigMap of the namespace, which is not
    // this one, saying the same): the defaults.
    rt.block_on(config_maps.replace(
        "metallb-excludel2",
        &PostParams::default(),
        &exclude(r#"["^mlb-"]"#),
    ))
    .expect("replace the ConfigMap");
    until_answering(
        &[&a],
        &[],
        "the ConfigMap excludes the lab's interface again",
    );
    let mut other = exclude(r#"["^mlb-"]"#);
    other.metadata.name = Some("something-else".into());
    rt.block_on(config_maps.create(&PostParams::default(), &other))
        .expect("another ConfigMap");
    rt.block_on(config_maps.delete("metallb-excludel2", &Default::default()))
        .expect("delete the ConfigMap");
    until_answering(&[&a], &["node-a"], "the ConfigMap is gone");
    drop(a);
    rbac::assert_authorized(&server, &SPEAKER, NS);
}

/// The lines of `node`'s JSON log that say a configuration was applied.
fn applies(node: &Node) -> Vec<String> {
    let text = std::fs::read_to_string(&node.log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("\"message\":\"configuration applied\""))
        .map(str::to_owned)
        .collect()
}

/// Waits for more than `before` applies in `node`'s log; the first after them.
fn next_apply(node: &Node, before: usize) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(line) = applies(node).get(before) {
            return line.clone();
        }
        assert!(Instant::now() < deadline, "no new apply in the log");
        sleep(Duration::from_millis(20));
    }
}

/// The entries of `node`'s datapath as `metallb inspect` lists them: (VIP, interface,
/// action), sorted.
fn entries(node: &Node) -> Vec<(String, String, String)> {
    let json = support::inspect_json(&node.lab.node_ns, &node.pins.path);
    let mut entries: Vec<(String, String, String)> = (json["vips"].as_array())
        .expect("vips")
        .iter()
        .map(|v| {
            let text = |field: &str| v[field].as_str().unwrap_or_default().to_owned();
            (text("vip"), text("interface"), text("action"))
        })
        .collect();
    entries.sort();
    entries
}

/// Waits until `node`'s datapath has `count` entries and `holds` says yes; them.
fn until_entries(
    node: &Node,
    count: usize,
    holds: impl Fn(&[(String, String, String)]) -> bool,
    what: &str,
) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = entries(node);
        if got.len() == count && holds(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "{what}: {got:?}");
        sleep(Duration::from_millis(50));
    }
}

/// In Kubernetes mode the source says which Services a burst of watch events
/// changed (numbered reads, Services sorted by key, the keys the events touched): one
/// Service changed among 60, or one's EndpointSlice, is planned alone, looking at it,
/// its neighbours and a sample of 32 of the others; a Node's status report (a
/// heartbeat) changes no plan at all. The datapath then holds what a speaker started
/// afresh (planning whole) makes of the same objects.
#[test]
fn netns_a_kubernetes_speaker_plans_alone_the_service_a_watch_event_changed() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _context = rt.enter();
    let server = start_server(&rt);
    let client = rt.block_on(async { server.client() }).expect("client");
    seed_pool_and_advertisement(&server, NS, "192.0.2.100-192.0.2.200");
    let heartbeat = |time: &str| json!({"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": time, "reason": "KubeletReady"}]});
    for node in ["node-a", "node-b"] {
        seed(
            &server,
            "",
            "nodes",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {"zone": node}}, "status": heartbeat("2026-01-01T00:00:00Z")}),
        );
        seed(&server, "", "pods", speaker_pod(node));
    }
    let vip = |i: u8| Ipv4Addr::new(192, 0, 2, 100 + i).to_string();
    for i in 0..60u8 {
        let name = format!("svc-{i:02}");
        seed(
            &server,
            "",
            "services",
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
                "status": {"loadBalancer": {"ingress": [{"ip": vip(i)}]}},
            }),
        );
        server
            .seed(
                "discovery.k8s.io",
                "v1",
                "endpointslices",
                json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": format!("{name}-x1"), "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "nodeName": "node-a"}],
                }),
            )
            .expect("endpoints");
    }

    let mut a = Node::new(&rt, &server, "node-a");
    a.start_speaker_with(&["--log-format", "json"]);
    // Each VIP answered by node-a or suppressed for node-b.
    until_entries(&a, 60, |_| true, "every Service's entry");
    let has = |entries: &[(String, String, String)], ip: &str| entries.iter().any(|e| e.0 == ip);

    // svc-07 gets another address (as the controller would write it).
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "default");
    let before = applies(&a).len();
    rt.block_on(services.patch_status(
        "svc-07",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.199"}]}}})),
    ))
    .expect("svc-07's new address");
    let applied = next_apply(&a, before);
    assert!(applied.contains("\"replanned\":1"), "{applied}");
    // The changed one, the two next to it and a sample of 32 of the 59 others.
    assert!(applied.contains("\"looked\":35"), "{applied}");
    until_entries(
        &a,
        60,
        |e| has(e, "192.0.2.199") && !has(e, &vip(7)),
        "svc-07 moved",
    );

    // A heartbeat of node-b: nothing planned changes, and nothing is planned again.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let before = applies(&a).len();
    rt.block_on(nodes.patch_status(
        "node-b",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": heartbeat("2026-01-01T00:00:10Z")})),
    ))
    .expect("node-b's heartbeat");
    let applied = next_apply(&a, before);
    assert!(applied.contains("\"replanned\":0"), "{applied}");
    // The sample alone.
    assert!(applied.contains("\"looked\":33"), "{applied}");

    // svc-20's only endpoint stops being ready: it is no longer announced.
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
        Api::namespaced(client.clone(), "default");
    let before = applies(&a).len();
    rt.block_on(slices.patch(
        "svc-20-x1",
        &PatchParams::default(),
        &Patch::Merge(json!({"endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": false}, "nodeName": "node-a"}]})),
    ))
    .expect("svc-20's endpoint not ready");
    let applied = next_apply(&a, before);
    assert!(applied.contains("\"replanned\":1"), "{applied}");
    assert!(applied.contains("\"looked\":35"), "{applied}");
    until_entries(&a, 59, |e| !has(e, &vip(20)), "svc-20 withdrawn");

    // Every watch ends with 410 Gone and lists again: that read says nothing, every
    // Service is looked at. The next change is said again.
    let before = applies(&a).len();
    server.expire_watches();
    let applied = next_apply(&a, before);
    assert!(applied.contains("\"looked\":60"), "{applied}");
    // The watches list again one after the other (a burst each): a change made
    // meanwhile falls in one of them, so it is made again until one is said.
    let deadline = Instant::now() + DEADLINE;
    for tier in 0.. {
        let before = applies(&a).len();
        rt.block_on(services.patch(
            "svc-59",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": tier.to_string()}}})),
        ))
        .expect("svc-59 labelled");
        let applied = next_apply(&a, before);
        // The last one, the one before it and a sample of 32 of the 59 others.
        if applied.contains("\"replanned\":1") && applied.contains("\"looked\":34") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no change said after the relist: {applied}"
        );
    }
    let replanned = until_entries(&a, 59, |e| !has(e, &vip(20)), "after the relist");

    // What a speaker started afresh plans whole from the same objects.
    a.stop_speaker();
    a.start_speaker_with(&["--log-format", "json"]);
    let whole = until_entries(&a, 59, |_| true, "planned whole");
    let first = applies(&a);
    assert!(
        first.iter().all(|l| !l.contains("\"replanned\"")),
        "{first:?}"
    );
    assert_eq!(replanned, whole);
    drop(a);
    rbac::assert_authorized(&server, &SPEAKER, NS);
}
