//! Code generation options for the BPF objects, passed to bpf-linker (which does the
//! final code generation from LLVM bitcode).
fn main() {
    // Packet headers sit at 2-byte aligned addresses (14-byte Ethernet header): let
    // LLVM load 4 and 8 bytes at once instead of splitting every load into bytes. The
    // kernel allows it wherever unaligned access is cheap (x86-64, arm64).
    println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
}
