//! The test API server as the Kubernetes-mode speaker tests seed it.

use std::net::Ipv4Addr;

use metallb_testkit::{
    TestApiServer,
    cluster::{ClusterLab, node_name, speaker_pod_name},
    daemonset::SpeakerDaemonSet,
};
use metallb_user::config::crd::definitions;
use serde_json::{Value, json};

/// The test API server, knowing every metallb.io kind (a speaker watches the BGP ones too).
pub fn start_server(rt: &tokio::runtime::Runtime) -> TestApiServer {
    let server = rt.block_on(TestApiServer::start()).expect("test server");
    for crd in definitions().expect("CRDs") {
        server.register_crd(&crd).expect("CRD");
    }
    server
}

/// A pool `pool` of `addresses` and an L2Advertisement `all` of every pool, in `namespace`.
pub fn seed_pool_and_advertisement(server: &TestApiServer, namespace: &str, addresses: &str) {
    server
        .seed(
            "metallb.io",
            "v1beta1",
            "ipaddresspools",
            json!({
                "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                "metadata": {"name": "pool", "namespace": namespace}, "spec": {"addresses": [addresses]},
            }),
        )
        .expect("pool");
    server
        .seed(
            "metallb.io",
            "v1beta1",
            "l2advertisements",
            json!({
                "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "all", "namespace": namespace},
            }),
        )
        .expect("advertisement");
}

/// The Service `default/web` with `vip` in its status, as the controller writes it: a
/// speaker takes its address from there.
pub fn service_with_address(vip: Ipv4Addr) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": vip.to_string()}]}},
    })
}

/// The EndpointSlice of `default/web` with one ready endpoint on `node`.
pub fn ready_endpoint_on(node: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-x1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "nodeName": node}],
    })
}

/// The lab's node `i`'s speaker Pod in `namespace`, labelled `labels`, Ready, its IP
/// the node's (as with hostNetwork).
pub fn speaker_pod(namespace: &str, i: usize, labels: Value) -> Value {
    metallb_testkit::daemonset::speaker_pod(
        namespace,
        &speaker_pod_name(i),
        &node_name(i),
        ClusterLab::node_v4(i).into(),
        labels,
    )
}

/// The speaker DaemonSet (labels `labels`) with a Pod on each of the lab's `nodes`
/// nodes, named [`speaker_pod_name`], Ready, their IPs the nodes'.
pub fn speaker_daemonset(
    server: &TestApiServer,
    namespace: &str,
    nodes: usize,
    labels: Value,
) -> anyhow::Result<SpeakerDaemonSet> {
    SpeakerDaemonSet::seed(
        server,
        namespace,
        labels,
        (0..nodes)
            .map(|i| (node_name(i), ClusterLab::node_v4(i).into()))
            .collect(),
        speaker_pod_name,
    )
}
