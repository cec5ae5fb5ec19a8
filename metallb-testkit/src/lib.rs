//! Test-only support for metallb, kept out of the `metallb` binary (metallb-user takes
//! this crate as a dev-dependency only).
//!
//! - [`apiserver`]: an in-process Kubernetes API server that the real `kube::Client`,
//!   and so kube's watchers, reflectors and controllers, talk to over HTTP.
pub mod apiserver;

pub use apiserver::TestApiServer;
