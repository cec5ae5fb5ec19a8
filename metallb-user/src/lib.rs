//! The metallb agent: a MetalLB-compatible load-balancer whose Layer-2 answers come
//! from an XDP program.
pub mod datapath;
pub mod lab;
pub mod allocator;
pub mod config;
