//! What both demos share: the `metallb` binary next to them, a child process stopped
//! on drop, and how a step is shown.

use std::{
    path::{Path, PathBuf},
    process::Child,
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

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
