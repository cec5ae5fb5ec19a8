//! The Kubernetes mode's edges: what talks to the API server. The decisions stay in the
//! pure core (config, allocator, election); this module reads objects, writes results
//! and elects a leader among controller replicas.

pub mod certs;
pub mod cluster_config;
pub mod controller;
pub mod leader;
pub mod lifecycle;
pub mod memberlist_secret;
pub mod rbac;
pub mod service_status;
pub mod speaker;
pub mod webhook;

/// A spawned task that ends with its owner (a dropped controller is a crashed one: its
/// elector must not go on renewing the Lease).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
