//! The test API server as the Kubernetes-mode speaker tests seed it.

use std::net::Ipv4Addr;

use metallb_testkit::TestApiServer;
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
