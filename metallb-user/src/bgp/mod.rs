//! BGP mode, as MetalLB's FRR mode does it: the pure plan (which node announces which
//! prefix to which peer, with which attributes: [`plan`]), and one FRR configuration
//! rendered from it ([`frr`]).

pub mod frr;
pub mod plan;
