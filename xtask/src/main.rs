//! Developer tasks. `cargo xtask demo` and `cargo xtask test` are the two commands of
//! the README: both first install what this machine lacks (idempotently).
//!
//! This crate must build on a fresh machine before anything is installed, so it
//! depends on nothing of the workspace (whose build needs the eBPF toolchain).

#[cfg(test)]
mod readme;
mod setup;

use std::process::Command;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Developer tasks for metallb (XDP)")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need: nightly rust-src, bpf-linker,
    /// bpftool, arping, ndisc6, tcpdump, iproute2, and mount bpffs.
    Setup,
    /// Set up, then run the whole test suite (needs root), rustfmt and clippy.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Set up, build the `metallb` binary and the demo, and run the speaker on
    /// examples/standalone.yaml in a network-namespace lab: plan, answers, gratuitous
    /// ARP, inspect, metrics.
    Demo {
        /// The Kubernetes mode instead: examples/standalone.yaml applied to the
        /// in-process TEST API server, `metallb controller` allocating, a `metallb
        /// speaker` on the API answering in the lab, ServiceL2Status and Events.
        #[arg(long, conflicts_with = "bgp")]
        kubernetes: bool,
        /// BGP mode instead: a router namespace running BIRD and two nodes running
        /// `metallb speaker` (with FRR) on examples/bgp.yaml; the router's table, its
        /// ECMP route, then a BFD failover.
        #[arg(long)]
        bgp: bool,
    },
    /// Set up, build, and leave running a lab of N nodes, each running `metallb
    /// speaker` on one configuration (examples/standalone.yaml and the nodes) with
    /// membership among them, and a client, on one bridge; prints how to reach it.
    Lab {
        /// How many nodes (1 to 80).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Remove the lab (everything recorded in /run/metallb-lab/state.json).
        #[arg(long, conflicts_with = "nodes")]
        down: bool,
    },
    /// Set up, then run a benchmark and print its figures.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// ns per frame of the XDP program (pass-through, ARP/NS hit, miss) with 1, 1,000
    /// and 100,000 VIPs, next to XDP_PASS / XDP_TX floor programs.
    Datapath,
    /// The `metallb controller` process against the in-process test API server:
    /// 10,000 Services and 20 pools; time to give every Service its address, peak
    /// RSS, writes per Service, and the same for one Service changed among them.
    Controller,
    /// The pure core with many objects (release build): the allocator and the plan for
    /// 1,000 to 100,000 Services over 20 pools (IPv4 and IPv6), and the election for up
    /// to 5,000 Nodes x 10,000 Services; time and peak heap of each step. Then the
    /// agent: a real speaker in a namespace lab on 1,000, 10,000 and 100,000 VIPs
    /// (start-up to answerable, RSS, one changed VIP, /metrics).
    Scale,
    /// The allocator alone on 10,000 Services over 20 pools: one batch, a restart that
    /// keeps every address, and one Service at a time (the controller after its start).
    Allocator,
    /// The membership protocol (SWIM and the speakers' sync) simulated in one process
    /// at 10, 100 and 1,000 members: time to declare a killed member down (by the
    /// first and by all: p50/p99/worst), the time a member that missed the news takes
    /// to catch up, bytes/s per node, and CPU per member per simulated second
    /// (MEMBERSHIP_SYNC=off: foca alone).
    Membership,
    /// Failover between real speakers in a namespace lab: per fault (node death, kill
    /// -9, SIGSTOP, SIGTERM, restart with --keep-datapath, partition and heal), the
    /// time to the new owner's first ARP answer and the client's UDP outage; then
    /// false takeovers under a CPU hog and with a speaker paused 100 ms every second.
    Failover {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value_t = 20)]
        trials: usize,
    },
    /// The node under an ARP and NS flood over a veth pair: XDP native, XDP generic,
    /// the kernel's ARP/NDP, the userspace datapath and no responder, one after
    /// another, with the requests arriving as socket buffers and as XDP frames;
    /// offered and answered rates, loss, the node's CPU per answer (softirq time
    /// clocked by BPF, the client's share left out); CSV and SVG charts.
    E2e,
}

/// Printed before the first build of the workspace, which is silent for long stretches.
const BUILD_NOTE: &str = "building the agent and the XDP program (about 2-3 minutes on a first build \
     on 2 cores, seconds afterwards)";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => setup::run(),
        Task::Test { args } => {
            setup::run()?;
            cargo(&["fmt", "--all", "--", "--check"])?;
            step(BUILD_NOTE);
            cargo(&["clippy", "--all-targets", "--", "-D", "warnings"])?;
            step(
                "running the test suite (about a minute once built: unit tests, then network-namespace labs)",
            );
            let mut test = vec!["test".to_string()];
            test.extend(args);
            cargo(&test)
        }
        Task::Demo { kubernetes, bgp } => {
            setup::run()?;
            // The demo runs the `metallb` binary next to it in target/debug: build both
            // here, in the profile the demo runs in (`cargo run --example` alone does not
            // build the binary).
            let example = if kubernetes {
                "demo_kubernetes"
            } else if bgp {
                "demo_bgp"
            } else {
                "demo"
            };
            run_example(example, &[])
        }
        Task::Lab { nodes, down } => {
            setup::run()?;
            let nodes = nodes.to_string();
            if down {
                run_example("lab", &["--down"])
            } else {
                run_example("lab", &["--nodes", &nodes])
            }
        }
        Task::Bench { which } => {
            setup::run()?;
            step(BUILD_NOTE);
            let bench = match which {
                Bench::Datapath => "datapath",
                Bench::Controller => "controller",
                Bench::Scale => {
                    cargo(&["bench", "--package", "metallb-user", "--bench", "scale"])?;
                    "scale_agent"
                }
                Bench::Allocator => "allocator",
                Bench::Membership => "membership",
                Bench::Failover { nodes, trials } => {
                    // The CPU hog of the false-takeover run.
                    setup::install_missing(&[("stress-ng", "stress-ng")])?;
                    return cargo_env(
                        &["bench", "--package", "metallb-user", "--bench", "failover"],
                        &[
                            ("FAILOVER_NODES", nodes.to_string()),
                            ("FAILOVER_TRIALS", trials.to_string()),
                        ],
                    );
                }
                Bench::E2e => "e2e",
            };
            cargo(&["bench", "--package", "metallb-user", "--bench", bench])
        }
    }
}

/// Builds the `metallb` binary and an example of metallb-user (which runs the binary
/// next to it in target/debug), then runs the example with `args`.
fn run_example(example: &str, args: &[&str]) -> anyhow::Result<()> {
    step(BUILD_NOTE);
    cargo(&[
        "build",
        "--package",
        "metallb-user",
        "--bin",
        "metallb",
        "--example",
        example,
    ])?;
    let mut run = vec![
        "run",
        "--quiet",
        "--package",
        "metallb-user",
        "--example",
        example,
        "--",
    ];
    run.extend(args);
    cargo(&run)
}

/// One line before a long, mostly silent step, so that nobody thinks it hangs.
pub(crate) fn step(what: &str) {
    eprintln!("==> {what}");
}

/// Runs cargo (the one running us) with `args` in the workspace root.
fn cargo<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> anyhow::Result<()> {
    cargo_env(args, &[])
}

/// [`cargo`], with environment variables set for it.
fn cargo_env<S: AsRef<std::ffi::OsStr>>(args: &[S], envs: &[(&str, String)]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .current_dir(workspace_root()?)
        .status()
        .context("running cargo")?;
    if !status.success() {
        let shown: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        bail!("cargo {} failed ({status})", shown.join(" "));
    }
    Ok(())
}

fn workspace_root() -> anyhow::Result<&'static std::path::Path> {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")
}
