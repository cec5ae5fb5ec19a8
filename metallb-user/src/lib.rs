//! The metallb agent: a MetalLB-compatible load-balancer whose Layer-2 answers come
//! from an XDP program.
pub mod allocator;
pub mod announce;
pub mod bgp;
pub mod cli;
pub mod config;
pub mod conflicts;
pub mod datapath;
pub mod election;
pub mod entries;
pub mod fencing;
pub mod interface_report;
pub mod kubernetes;
pub mod membership;
pub mod metrics;
pub mod plan;
pub mod printable;
#[cfg(test)]
mod property;
pub mod speaker;
pub mod thread_clock;
