//! Test-only support for metallb, kept out of the `metallb` binary (metallb-user takes
//! this crate as a dev-dependency only).
//!
//! - [`apiserver`]: an in-process Kubernetes API server that the real `kube::Client`,
//!   and so kube's watchers, reflectors and controllers, talk to over HTTP.
//! - [`lab`]: hosts in network namespaces joined by veth pairs, for the datapath's
//!   tests, benchmarks and the demo.
//! - [`bgp_lab`]: a BIRD router and two speaker nodes in namespaces, for BGP mode's
//!   test and demo.
//! - [`controller`]: `metallb controller` in a task of a test's runtime.
//! - [`rbac`]: the requests a component made, checked against its RBAC table.
//! - [`kustomize`]: `kubectl kustomize`, rendered into objects.
//! - [`cluster`]: several speaker nodes and a client on one bridge (failover).
//! - [`daemonset`]: the speaker DaemonSet and its Pods in the test API server, and a
//!   rolling update replacing a node's Pod, step by step.
//! - [`kept_lab`]: `cargo xtask lab`, a cluster lab left running, and its removal.
//! - [`traffic`]: a client's view of a VIP during a failover (ARP answers, UDP echoes).
//! - [`frame_oracle`]: what the XDP responder must do with any frame, decided
//!   independently of its code (etherparse and the RFCs).
pub mod apiserver;
pub mod bgp_lab;
pub mod cluster;
pub mod controller;
pub mod daemonset;
pub mod frame_oracle;
pub mod frames;
pub mod kept_lab;
pub mod kustomize;
pub mod lab;
pub mod rbac;
pub mod traffic;

pub use apiserver::TestApiServer;

/// The CPU model, for benchmark headers: figures differ between CPU kinds, so each says
/// which one it came from.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
