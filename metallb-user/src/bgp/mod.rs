//! BGP mode, as MetalLB's FRR mode does it: the pure plan (which node announces which
//! prefix to which peer, with which attributes: [`plan`]).

pub mod plan;
