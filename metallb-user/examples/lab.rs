//! `cargo xtask lab`: N nodes, each running `metallb speaker` on one configuration
//! (examples/standalone.yaml with the nodes added) with membership among them, and a
//! client, on one bridge; left running, with how to reach it printed. `--down` removes
//! everything it made (recorded in /run/metallb-lab/state.json).

#[allow(dead_code)]
mod common;

use std::path::{Path, PathBuf};

use clap::Parser;
use metallb_testkit::kept_lab;

#[derive(Parser)]
struct Args {
    /// How many nodes (1 to 80).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Remove the lab that is up.
    #[arg(long)]
    down: bool,
    /// The configuration every node reads (the lab adds its Nodes).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = kept_lab::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.down {
        for what in kept_lab::down(&args.state_dir)? {
            println!("removed {what}");
        }
        return Ok(());
    }
    let base_config = match args.config {
        Some(path) => path,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/standalone.yaml"),
    };
    let state = kept_lab::up(&kept_lab::Options {
        nodes: args.nodes,
        binary: common::metallb_binary()?,
        base_config,
        state_dir: args.state_dir,
        name: kept_lab::DEFAULT_NAME.into(),
        membership_port: metallb_user::membership::DEFAULT_PORT,
        metrics_port: 7472,
    })?;
    print!("{}", kept_lab::describe(&state));
    Ok(())
}
