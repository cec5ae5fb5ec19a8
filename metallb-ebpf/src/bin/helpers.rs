//! Minimal XDP programs: the floors of the datapath benchmark, and the pass-through
//! program a native-mode lab attaches to the client end of its veth pair.
#![no_std]
#![no_main]

#[path = "../runtime.rs"]
mod runtime;

use aya_ebpf::{
    bindings::xdp_action::{XDP_PASS, XDP_TX},
    macros::xdp,
    programs::XdpContext,
};

#[xdp]
pub fn floor_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

#[xdp]
pub fn floor_tx(_ctx: XdpContext) -> u32 {
    XDP_TX
}
