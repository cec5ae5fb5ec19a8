//! The Kubernetes mode's edges: what talks to the API server. The decisions stay in the
//! pure core (config, allocator, election); this module reads objects, writes results
//! and elects a leader among controller replicas.

pub mod cluster_config;
pub mod controller;
pub mod leader;
pub mod service_status;
pub mod webhook;
