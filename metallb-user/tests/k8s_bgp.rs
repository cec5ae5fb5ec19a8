//! BGP mode in Kubernetes, end to end (needs root, FRR and BIRD 2: `cargo xtask setup`
//! installs them): the in-process test API server holds MetalLB's objects (a BGPPeer
//! v1beta2 whose password is in a basic-auth Secret, a BFDProfile, a Community alias,
//! a BGPAdvertisement), `metallb controller` gives the Service its address, and two
//! `metallb speaker` processes in Kubernetes mode, each in a node namespace of
//! `metallb_testkit::bgp_lab` with its own FRR, peer with the lab's BIRD router. The
//! router's table shows what they announce; the API shows their ServiceBGPStatus
//! objects and Events.

use std::{ffi::OsStr, path::Path, time::Duration};

use kube::{
    Api,
    api::{DeleteParams, ListParams},
};
use metallb_testkit::{
    TestApiServer,
    bgp_lab::{BgpLab, wait_for},
    lab::unique_name,
    rbac,
};
use metallb_user::{
    config::crd::{ServiceBGPStatus, definitions},
    kubernetes::rbac::{CONTROLLER, SPEAKER},
};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");
const NS: &str = "metallb-system";
const PASSWORD: &str = "lab-secret";
const DEADLINE: Duration = Duration::from_secs(30);

fn seed(server: &TestApiServer, group: &str, version: &str, plural: &str, object: Value) {
    server.seed(group, version, plural, object).expect("seed");
}

fn metallb(
    server: &TestApiServer,
    version: &str,
    plural: &str,
    kind: &str,
    name: &str,
    spec: Value,
) {
    seed(
        server,
        "metallb.io",
        version,
        plural,
        json!({"apiVersion": format!("metallb.io/{version}"), "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec}),
    );
}

/// (node, service, peers, owner) of every ServiceBGPStatus, sorted.
fn bgp_statuses(
    rt: &tokio::runtime::Runtime,
    server: &TestApiServer,
) -> Vec<(String, String, Vec<String>, String)> {
    let api: Api<ServiceBGPStatus> = Api::namespaced(server.client().unwrap(), NS);
    let list = rt.block_on(api.list(&ListParams::default())).expect("list");
    let mut out: Vec<_> = list
        .items
        .iter()
        .map(|s| {
            let status = s.status.clone().unwrap_or_default();
            let labels = s.metadata.labels.clone().unwrap_or_default();
            // MetalLB's labels agree with the status.
            assert_eq!(labels.get("metallb.io/node"), Some(&status.node), "{s:?}");
            assert_eq!(
                labels.get("metallb.io/service-name"),
                Some(&status.service_name),
                "{s:?}"
            );
            assert!(
                s.metadata
                    .name
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("bgp-"),
                "{s:?}"
            );
            let owner = s
                .metadata
                .owner_references
                .iter()
                .flatten()
                .map(|o| format!("{}/{}", o.kind, o.name))
                .collect();
            (
                status.node,
                format!("{}/{}", status.service_namespace, status.service_name),
                status.peers,
                owner,
            )
        })
        .collect();
    out.sort();
    out
}

fn until_bgp_statuses(
    rt: &tokio::runtime::Runtime,
    server: &TestApiServer,
    want: &[(&str, &str, &[&str], &str)],
) {
    let want: Vec<(String, String, Vec<String>, String)> = want
        .iter()
        .map(|(n, s, p, o)| {
            (
                n.to_string(),
                s.to_string(),
                p.iter().map(|p| p.to_string()).collect(),
                o.to_string(),
            )
        })
        .collect();
    wait_for("the ServiceBGPStatus objects", DEADLINE, || {
        let got = bgp_statuses(rt, server);
        (got == want).then_some(()).ok_or(format!("{got:?}"))
    })
    .unwrap();
}

/// Events of `reason` about the object named `name`, their notes.
fn events(server: &TestApiServer, reason: &str, name: &str) -> Vec<String> {
    server
        .objects("events.k8s.io", "v1", "events")
        .into_iter()
        .filter(|e| e["reason"] == reason && e["regarding"]["name"] == name)
        .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn netns_kubernetes_speakers_announce_over_bgp_with_the_password_of_a_secret() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Spawns (the server's listeners, kube's client) need the runtime's context.
    let _context = rt.enter();
    let server = rt.block_on(TestApiServer::start()).expect("test server");
    for crd in definitions().expect("CRDs") {
        server.register_crd(&crd).expect("CRD");
    }
    let mut lab = BgpLab::new("kbgp").expect("lab");
    lab.start_bird(PASSWORD).expect("bird");

    metallb(
        &server,
        "v1beta1",
        "ipaddresspools",
        "IPAddressPool",
        "bgp-pool",
        json!({"addresses": ["198.51.100.10-198.51.100.20"]}),
    );
    metallb(
        &server,
        "v1beta1",
        "bfdprofiles",
        "BFDProfile",
        "fast",
        json!({"receiveInterval": 300, "transmitInterval": 300}),
    );
    metallb(
        &server,
        "v1beta1",
        "communities",
        "Community",
        "communities",
        json!({"communities": [{"name": "no-export", "value": "65535:65281"}]}),
    );
    metallb(
        &server,
        "v1beta2",
        "bgppeers",
        "BGPPeer",
        "router",
        json!({
            "myASN": 64500, "peerASN": 64500, "peerAddress": format!("{}.1", lab.v4),
            "passwordSecret": {"name": "bgp-password", "namespace": NS},
            "holdTime": "9s", "keepaliveTime": "3s", "connectTime": "1s", "bfdProfile": "fast",
        }),
    );
    metallb(
        &server,
        "v1beta1",
        "bgpadvertisements",
        "BGPAdvertisement",
        "web",
        json!({"ipAddressPools": ["bgp-pool"], "localPref": 150, "communities": ["no-export", "large:64500:1:2"]}),
    );
    // MetalLB's kind of password Secret; "lab-secret" in base64.
    seed(
        &server,
        "",
        "v1",
        "secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bgp-password", "namespace": NS},
               "type": "kubernetes.io/basic-auth", "data": {"password": "bGFiLXNlY3JldA=="}}),
    );
    for node in ["node0", "node1"] {
        seed(
            &server,
            "",
            "v1",
            "nodes",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}),
        );
        seed(
            &server,
            "",
            "v1",
            "pods",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("speaker-{node}"), "namespace": NS, "labels": {"app": "metallb", "component": "speaker"}},
                "spec": {"nodeName": node, "containers": [{"name": "speaker", "image": "metallb"}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }),
        );
    }
    seed(
        &server,
        "",
        "v1",
        "services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}}),
    );
    seed(
        &server,
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "web-x1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "nodeName": "node1"}]}),
    );
    let _controller = metallb_testkit::controller::spawn(
        rt.handle(),
        rbac::client(&server, &CONTROLLER, NS),
        NS,
        "controller",
    );

    let kubeconfigs: Vec<_> = (0..2)
        .map(|i| {
            let address = server
                .serve_in_netns(&lab.nodes[i])
                .expect("the API in the node namespace");
            let path = lab.dir.join(unique_name("kubeconfig"));
            std::fs::write(
                &path,
                server.kubeconfig(Some(address), Some(&SPEAKER.user(NS))),
            )
            .expect("kubeconfig");
            path
        })
        .collect();
    let start = |lab: &mut BgpLab, i: usize, extra: &[&OsStr]| {
        let pod = format!("speaker-node{i}");
        let mut args: Vec<&OsStr> = vec!["--pod-name".as_ref(), pod.as_ref()];
        args.extend_from_slice(extra);
        lab.spawn_speaker(
            Path::new(BINARY),
            i,
            &args,
            &[
                ("KUBECONFIG", kubeconfigs[i].as_os_str()),
                ("RUST_LOG", "info".as_ref()),
            ],
        )
        .expect("speaker");
    };

    // FRR missing: node0's speaker says so on its Pod, with a Warning Event (and goes
    // on retrying).
    let no_frr = lab.dir.join("no-frr");
    start(&mut lab, 0, &["--frr-dir".as_ref(), no_frr.as_os_str()]);
    let warning = wait_for("a bgpConfigNotApplied Event", DEADLINE, || {
        events(&server, "bgpConfigNotApplied", "speaker-node0")
            .pop()
            .ok_or_else(|| "none yet".to_owned())
    })
    .unwrap();
    assert!(
        warning.starts_with("FRR did not apply the BGP configuration of node \"node0\" (")
            && warning.contains(&format!(
                "FRR not found: {}/zebra does not exist",
                no_frr.display()
            )),
        "{warning}"
    );
    lab.stop_speaker(0).expect("stop node0's speaker");

    start(&mut lab, 0, &[]);
    start(&mut lab, 1, &[]);
    // The sessions come up with the Secret's password (BIRD refuses any other).
    let web = lab
        .routes_from("198.51.100.10/32", &["node0v4", "node1v4"])
        .expect("the Service's route from both nodes");
    assert!(web.contains("BGP.local_pref: 150"), "{web}");
    assert!(web.contains("BGP.community: (65535,65281)"), "{web}");
    assert!(web.contains("BGP.large_community: (64500, 1, 2)"), "{web}");
    assert_eq!(
        lab.kernel_next_hops("198.51.100.10").unwrap(),
        [lab.node_v4(0), lab.node_v4(1)]
    );
    until_bgp_statuses(
        &rt,
        &server,
        &[
            ("node0", "default/web", &["router"], "Pod/speaker-node0"),
            ("node1", "default/web", &["router"], "Pod/speaker-node1"),
        ],
    );
    // nodeAssigned from each node (node0's first speaker, without FRR, said it too).
    let mut assigned = events(&server, "nodeAssigned", "web");
    assigned.sort();
    assigned.dedup();
    assert_eq!(
        assigned,
        [
            "announcing from node \"node0\" with protocol \"bgp\"",
            "announcing from node \"node1\" with protocol \"bgp\"",
        ]
    );

    // The Service deleted: its route is withdrawn, its ServiceBGPStatus objects go.
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(server.client().unwrap(), "default");
    rt.block_on(services.delete("web", &DeleteParams::default()))
        .expect("delete the Service");
    lab.routes_from("198.51.100.10/32", &[])
        .expect("the route withdrawn");
    until_bgp_statuses(&rt, &server, &[]);

    for i in 0..2 {
        lab.stop_speaker(i).expect("stop the speaker");
    }
    // Every request each component made is one its RBAC table grants.
    rbac::assert_authorized(&server, &SPEAKER, NS);
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}
