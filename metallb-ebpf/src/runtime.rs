//! What every BPF object of this crate needs besides its programs: a panic handler
//! (no_std) and the license section the kernel checks (GPL-compatible, for the
//! helpers the programs call). Each binary includes this module once.

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
