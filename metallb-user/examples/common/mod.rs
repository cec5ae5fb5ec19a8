//! What both demos share: the `metallb` binary next to them, a child process stopped
//! on drop, and how a step is shown.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    process::Child,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use metallb_testkit::lab::Lab;

/// Kills (SIGTERM, then SIGKILL) and reaps a child on drop.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn say(title: &str, text: &str) {
    println!("\n$ {title}\n{}", text.trim_end());
}

pub fn stdout(output: std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn metallb_binary() -> anyhow::Result<PathBuf> {
    // target/<profile>/examples/demo -> target/<profile>/metallb
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .context("no target directory")?
        .join("metallb");
    ensure!(
        binary.exists(),
        "{} is missing: build it first (cargo xtask demo does)",
        binary.display()
    );
    Ok(binary)
}

/// Asks for each VIP from the lab's client (arping, ndisc6), shows each answer, and
/// returns the VIPs the node's MAC did not answer.
pub fn ask_every_vip(lab: &Lab, vips: &[IpAddr]) -> anyhow::Result<Vec<IpAddr>> {
    let node_mac = lab.node_mac.to_string();
    let mut missing = Vec::new();
    for vip in vips {
        let (title, output, answered) = match vip {
            IpAddr::V4(v4) => {
                let out = stdout(lab.arping(*v4, 2, 3)?);
                let ok = out.to_lowercase().contains(&format!("[{node_mac}]"));
                (format!("ip netns exec client arping -c 2 {v4}"), out, ok)
            }
            IpAddr::V6(v6) => {
                let out = stdout(lab.ndisc6(*v6)?);
                let ok = out
                    .to_lowercase()
                    .contains(&format!("target link-layer address: {node_mac}"));
                (
                    format!("ip netns exec client ndisc6 {v6} {}", lab.client_if),
                    out,
                    ok,
                )
            }
        };
        say(&title, &output);
        if !answered {
            missing.push(*vip);
        }
    }
    Ok(missing)
}
