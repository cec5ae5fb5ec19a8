//! `cargo xtask lab`: a [`ClusterLab`] left running for a person to try things in, N
//! nodes each running `metallb speaker` on one configuration with membership among
//! them, and a client. [`up`] records everything it made in a state file, [`down`]
//! removes exactly that.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{sys::signal::Signal, unistd::Pid};
use serde::{Deserialize, Serialize};

use crate::cluster::{CLIENT_IF, ClusterLab, NodeSpeaker, SpeakerSpec, config_with_nodes};

/// Where `cargo xtask lab` keeps its state, configuration, key and logs.
pub const DEFAULT_STATE_DIR: &str = "/run/metallb-lab";
/// The namespaces' prefix: `mlb-lab-b` (bridge), `mlb-lab-n0`..., `mlb-lab-c` (client).
pub const DEFAULT_NAME: &str = "mlb-lab";
const STATE_FILE: &str = "state.json";

pub struct Options {
    pub nodes: usize,
    /// The `metallb` binary.
    pub binary: PathBuf,
    /// The configuration every node reads, without Nodes (the lab adds them).
    pub base_config: PathBuf,
    pub state_dir: PathBuf,
    pub name: String,
    pub membership_port: u16,
    /// The metrics port, on every address of each node.
    pub metrics_port: u16,
}

/// What a lab made: all that [`down`] removes.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    pub namespaces: Vec<String>,
    pub client_ns: String,
    pub speakers: Vec<KeptSpeaker>,
    pub binary: PathBuf,
    pub config: PathBuf,
    pub metrics_port: u16,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct KeptSpeaker {
    pub node: String,
    pub namespace: String,
    pub address: std::net::Ipv4Addr,
    pub pid: u32,
    pub pin_dir: PathBuf,
    pub log: PathBuf,
}

fn state_file(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

fn save(dir: &Path, state: &State) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    std::fs::write(state_file(dir), text).context("writing the lab's state file")
}

/// Builds the lab and starts the speakers; everything stays when this returns. On an
/// error, what was made is removed again.
pub fn up(options: &Options) -> anyhow::Result<State> {
    let dir = &options.state_dir;
    if state_file(dir).exists() {
        bail!(
            "a lab is up already ({}): remove it first (cargo xtask lab --down)",
            state_file(dir).display()
        );
    }
    let base = std::fs::read_to_string(&options.base_config)
        .with_context(|| format!("reading {}", options.base_config.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut lab = ClusterLab::named(&options.name, options.nodes)?;
    lab.keep();
    let mut state = State {
        namespaces: lab.namespaces(),
        client_ns: lab.client_ns.clone(),
        speakers: Vec::new(),
        binary: options.binary.clone(),
        config: dir.join("metallb.yaml"),
        metrics_port: options.metrics_port,
    };
    let started = save(dir, &state).and_then(|()| start_speakers(options, &base, &lab, &mut state));
    if let Err(e) = started {
        let _ = down(dir);
        return Err(e);
    }
    Ok(state)
}

fn start_speakers(
    options: &Options,
    base: &str,
    lab: &ClusterLab,
    state: &mut State,
) -> anyhow::Result<()> {
    let dir = &options.state_dir;
    std::fs::write(&state.config, config_with_nodes(base, options.nodes))
        .context("writing the configuration")?;
    let key_file = dir.join("membership.key");
    std::fs::write(&key_file, random_key()?).context("writing the membership key")?;
    for i in 0..options.nodes {
        let spec = SpeakerSpec {
            binary: options.binary.clone(),
            config: state.config.clone(),
            kubeconfig: None,
            pod_name: None,
            key_file: key_file.clone(),
            membership_port: options.membership_port,
            metrics_addr: ([0, 0, 0, 0], options.metrics_port).into(),
            pin_dir: Path::new("/sys/fs/bpf").join(&lab.node_ns[i]),
            log: dir.join(format!("{}.log", crate::cluster::node_name(i))),
            extra: Vec::new(),
        };
        let speaker = NodeSpeaker::start(lab, i, spec.clone())?;
        state.speakers.push(KeptSpeaker {
            node: crate::cluster::node_name(i),
            namespace: lab.node_ns[i].clone(),
            address: ClusterLab::node_v4(i),
            pid: speaker.detach().context("no speaker process")?,
            pin_dir: spec.pin_dir,
            log: spec.log,
        });
        save(dir, state)?;
    }
    // Up: every speaker serves and has heard from the others.
    let deadline = Instant::now() + Duration::from_secs(30);
    for speaker in &state.speakers {
        loop {
            let log = std::fs::read_to_string(&speaker.log).unwrap_or_default();
            let ups = log.matches("membership: member up").count();
            if log.contains("speaker running") && ups + 1 >= options.nodes {
                break;
            }
            // Not `process_is`: until nsenter has exec'd the speaker, /proc/PID/exe is
            // nsenter (seen under load).
            if !process_running(speaker.pid) {
                bail!("the speaker of {} exited:\n{log}", speaker.node);
            }
            if Instant::now() > deadline {
                bail!(
                    "the speaker of {} is not up after 30 s:\n{log}",
                    speaker.node
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// 32 random bytes, hex.
fn random_key() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
}

/// Whether `pid` runs `binary` (a pid the lab recorded may have been reused since).
/// Whether `pid` runs: it exists and is not a zombie (our exited, unreaped child).
fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name's closing parenthesis.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

fn process_is(pid: u32, binary: &Path) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|exe| exe == binary || binary.canonicalize().is_ok_and(|b| b == exe))
}

/// Removes what the lab in `dir` made: stops its speakers (which detach and unpin),
/// deletes its namespaces, pin directories and `dir`. What it removed, one per line.
pub fn down(dir: &Path) -> anyhow::Result<Vec<String>> {
    let path = state_file(dir);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no lab is up here: reading {}", path.display()))?;
    let state: State = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a lab's state", path.display()))?;
    let mut removed = Vec::new();
    for speaker in &state.speakers {
        if process_is(speaker.pid, &state.binary) {
            stop(speaker.pid, &state.binary);
            removed.push(format!("speaker of {} (pid {})", speaker.node, speaker.pid));
        }
    }
    for ns in &state.namespaces {
        if Path::new("/run/netns").join(ns).exists() {
            crate::lab::run("ip", &["netns", "del", ns])?;
            removed.push(format!("namespace {ns}"));
        }
    }
    for speaker in &state.speakers {
        if speaker.pin_dir.exists() {
            std::fs::remove_dir_all(&speaker.pin_dir)
                .with_context(|| format!("removing {}", speaker.pin_dir.display()))?;
            removed.push(format!("pin directory {}", speaker.pin_dir.display()));
        }
        let _ = metallb_user::interface_report::remove(&speaker.pin_dir);
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    removed.push(format!(
        "{} (state, configuration, key, logs)",
        dir.display()
    ));
    Ok(removed)
}

/// SIGTERM (after SIGCONT, should it be stopped), SIGKILL after 5 s.
fn stop(id: u32, binary: &Path) {
    let pid = Pid::from_raw(id as i32);
    let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    // Usually not our child, so not waited for: gone once /proc no longer shows it
    // running the binary (a zombie has no exe).
    while process_is(id, binary) {
        if Instant::now() > deadline {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How to reach the lab, for a person.
pub fn describe(state: &State) -> String {
    let mut text = String::new();
    let enter = |ns: &str| format!("nsenter --net=/run/netns/{ns}");
    text += &format!(
        "lab up: {} nodes and a client on one bridge (namespace {})\n",
        state.speakers.len(),
        state.namespaces[0]
    );
    text += &format!("configuration (every node): {}\n\n", state.config.display());
    for s in &state.speakers {
        text += &format!(
            "{}: namespace {}, {} {}, speaker pid {}, log {}\n    metrics: {} curl -s http://{}:{}/metrics\n",
            s.node,
            s.namespace,
            crate::cluster::NODE_IF,
            s.address,
            s.pid,
            s.log.display(),
            enter(&state.client_ns),
            s.address,
            state.metrics_port,
        );
    }
    let client = enter(&state.client_ns);
    text += &format!(
        "client: namespace {}, {CLIENT_IF} {}\n\n\
         ask for a VIP:     {client} arping -c 3 -I {CLIENT_IF} 192.0.2.100\n\
         IPv6:              {client} ndisc6 2001:db8::100 {CLIENT_IF}\n\
         the plan:          {} plan --config {} --node-name node-0\n\
         a node's datapath: nsenter --net=/run/netns/{} {} inspect --pin-dir {}\n\
         kill an owner:     kill -9 PID (the others take its VIPs over); or cut its link:\n\
         \x20                  ip -n {} link set p0 down\n\
         remove everything: cargo xtask lab --down\n",
        state.client_ns,
        ClusterLab::CLIENT_V4,
        state.binary.display(),
        state.config.display(),
        state
            .speakers
            .first()
            .map(|s| s.namespace.as_str())
            .unwrap_or_default(),
        state.binary.display(),
        state
            .speakers
            .first()
            .map(|s| s.pin_dir.display().to_string())
            .unwrap_or_default(),
        state.namespaces[0],
    );
    text
}
