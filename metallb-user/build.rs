//! Builds the XDP programs (`metallb-ebpf`) for the BPF target with aya-build, so that
//! `cargo build` and `cargo test` on the workspace produce and embed the object files.
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR is not set")?,
    );
    let ebpf_dir = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", manifest_dir.display()))?
        .join("metallb-ebpf");
    let root_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("{} is not valid UTF-8", ebpf_dir.display()))?;
    // Rebuild when the shared types change too (aya-build watches only the eBPF crate).
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../metallb-common").display()
    );
    aya_build::build_ebpf(
        [Package {
            name: "metallb-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
