//! Test-only support for metallb, kept out of the `metallb` binary (metallb-user takes
//! this crate as a dev-dependency only).
//!
//! - [`apiserver`]: an in-process Kubernetes API server that the real `kube::Client`,
//!   and so kube's watchers, reflectors and controllers, talk to over HTTP.
//! - [`lab`]: hosts in network namespaces joined by veth pairs, for the datapath's
//!   tests, benchmarks and the demo.
pub mod apiserver;
pub mod lab;

pub use apiserver::TestApiServer;
