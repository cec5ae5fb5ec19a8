//! Installs, once, what the build and the tests need on a machine of this kind
//! (Debian, root, rustup with a stable and a nightly toolchain).

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

/// bpf-linker 0.11+ needs an external LLVM 21-23; 0.10.4 links against the LLVM
/// inside the Rust toolchain.
const BPF_LINKER_VERSION: &str = "0.10.4";

/// (command that must exist, Debian package that provides it)
const DEBIAN_TOOLS: &[(&str, &str)] = &[
    ("bpftool", "bpftool"),
    ("arping", "iputils-arping"),
    ("ndisc6", "ndisc6"),
    ("tcpdump", "tcpdump"),
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    // The capability tests run the speaker as a non-root user with only its capabilities.
    ("setpriv", "util-linux"),
    ("prlimit", "util-linux"),
    ("curl", "curl"),
    // `kubectl kustomize deploy/` in the deploy tests (no cluster needed).
    ("kubectl", "kubernetes-client"),
    // BGP mode: the speaker runs FRR (and applies with frr-reload.py); the BGP lab's
    // router is BIRD.
    ("vtysh", "frr"),
    ("/usr/lib/frr/frr-reload.py", "frr-pythontools"),
    ("bird", "bird2"),
    ("birdc", "bird2"),
];

pub fn run() -> anyhow::Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_tools()?;
    bpffs()?;
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn status(program: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("setup: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn rust_src() -> anyhow::Result<()> {
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .context("rustup with a nightly toolchain is needed to build the eBPF program")?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        crate::step("adding rust-src to the nightly toolchain (seconds, once)");
        status(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        )?;
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let current = output("bpf-linker", &["--version"]).unwrap_or_default();
    if !current.contains(BPF_LINKER_VERSION) {
        let spec = format!("bpf-linker@{BPF_LINKER_VERSION}");
        crate::step(&format!(
            "installing {spec}, the linker of the XDP program (about 75 s on 2 cores, once)"
        ));
        status("cargo", &["install", &spec, "--locked"])?;
    }
    Ok(())
}

/// A command on PATH, or a file given by its absolute path.
fn on_path(command: &str) -> bool {
    if command.starts_with('/') {
        return Path::new(command).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(command).is_file()))
}

fn debian_tools() -> anyhow::Result<()> {
    install_missing(DEBIAN_TOOLS)
}

/// Installs the Debian package of each (command, package) whose command is missing.
pub fn install_missing(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|(command, _)| !on_path(command))
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    crate::step(&format!(
        "installing the Debian packages {} (about 30 s, once)",
        missing.join(", ")
    ));
    status("apt-get", &["update", "-q"])?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(&missing);
    status("apt-get", &args)
}

fn bpffs() -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        matches!(
            (fields.next(), fields.next(), fields.next()),
            (_, Some("/sys/fs/bpf"), Some("bpf"))
        )
    });
    if !mounted {
        if !Path::new("/sys/fs/bpf").exists() {
            bail!("/sys/fs/bpf does not exist: this kernel has no BPF filesystem");
        }
        status("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"])?;
    }
    Ok(())
}
