//! The edge that runs FRR: this speaker's own FRR instance (zebra, bfdd, bgpd) in its
//! own work directory, sockets and pid files there and nowhere else (never the host's
//! `/etc/frr` or `/var/run/frr`), in the network namespace of the speaker; the
//! configuration applied with FRR's `frr-reload.py`, state read with `vtysh ... json`.
//!
//! In a Pod, FRR runs in a container of its own (`metallb frr`, [`FrrInstance::start_sidecar`])
//! that shares the work directory with the speaker's container through a volume: the
//! speaker (`--frr-external`) writes the configuration there and reloads FRR through
//! the vty sockets there, but neither starts nor stops the daemons.

use std::{
    io::Write as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{
    Backend, BackendError,
    frr::{RenderOptions, render},
    plan::NodeBgp,
    status::{BgpStatus, parse_bfd_peers, parse_neighbors},
};

/// Where Debian's `frr` and `frr-pythontools` put things.
pub const DEFAULT_FRR_DIR: &str = "/usr/lib/frr";
pub const DEFAULT_VTYSH: &str = "/usr/bin/vtysh";
/// The speaker's own FRR instance, apart from any FRR of the host (/etc/frr, /var/run/frr).
pub const DEFAULT_WORK_DIR: &str = "/run/metallb/frr";

/// The capabilities of FRR's container in the speaker's Pod (`metallb frr`, daemons as
/// root): what FRR's daemons ask for, as MetalLB's frr container has them.
pub const FRR_CONTAINER_CAPABILITIES: [&str; 4] =
    ["NET_ADMIN", "NET_RAW", "SYS_ADMIN", "NET_BIND_SERVICE"];

/// The daemons BGP mode needs, started in this order.
const DAEMONS: [&str; 3] = ["zebra", "bfdd", "bgpd"];

/// Where FRR is and where this instance keeps its files.
#[derive(Clone, Debug)]
pub struct FrrOptions {
    /// FRR's daemons and `frr-reload.py`.
    pub frr_dir: PathBuf,
    pub vtysh: PathBuf,
    /// This instance's configuration, sockets, pid files and logs.
    pub work_dir: PathBuf,
    pub render: RenderOptions,
    /// FRR's daemons are another process's (`metallb frr`), found by their sockets in
    /// `work_dir`: never started or stopped here.
    pub external: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FrrError {
    #[error(
        "FRR not found: {path} does not exist (BGP mode runs FRR: install Debian's frr and frr-pythontools, or give --frr-dir / --vtysh)"
    )]
    Missing { path: String },
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error(
        "FRR is not running: no socket of its {daemon} in {work_dir} (--frr-external: FRR's daemons are another container's, `metallb frr --frr-work-dir {work_dir}`)"
    )]
    NotRunning {
        daemon: &'static str,
        work_dir: String,
    },
    #[error("FRR's {daemon} did not start within {seconds} s (see {log})")]
    NotStarted {
        daemon: &'static str,
        seconds: u64,
        log: String,
    },
    #[error("frr-reload.py failed ({status}): {output}")]
    Reload { status: String, output: String },
    #[error("vtysh -c {command:?} failed ({status}): {output}")]
    Vtysh {
        command: String,
        status: String,
        output: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FrrError {
    let what = what.into();
    move |error| FrrError::Io { what, error }
}

impl FrrOptions {
    fn daemon(&self, name: &str) -> PathBuf {
        self.frr_dir.join(name)
    }

    fn reload_script(&self) -> PathBuf {
        self.frr_dir.join("frr-reload.py")
    }

    /// Every program this instance needs exists.
    pub fn check(&self) -> Result<(), FrrError> {
        let mut needed: Vec<PathBuf> = DAEMONS.iter().map(|d| self.daemon(d)).collect();
        needed.push(self.reload_script());
        needed.push(self.vtysh.clone());
        match needed.into_iter().find(|p| !p.exists()) {
            Some(path) => Err(FrrError::Missing {
                path: path.display().to_string(),
            }),
            None => Ok(()),
        }
    }
}

/// The uid and gid of the `frr` user, which FRR's daemons switch to; `None` when the
/// system has none (the daemons then need `-u`/`-g` of a user that exists).
fn frr_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"frr") && fields.len() > 3)
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
            .flatten()
    })
}

/// Daemons a speaker killed without a chance to stop them left running in `work` (their
/// pid files there, their command lines naming `work`): stopped, so that this instance
/// can take the sockets. Nothing of any other FRR is touched.
fn stop_leftovers(work: &Path) {
    let work_text = work.display().to_string();
    for daemon in DAEMONS.iter().rev() {
        let Ok(text) = std::fs::read_to_string(work.join(format!("{daemon}.pid"))) else {
            continue;
        };
        let Ok(pid) = text.trim().parse::<i32>() else {
            continue;
        };
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&work_text))
            .unwrap_or(false);
        if !ours {
            continue;
        }
        warn!(
            daemon = *daemon,
            pid, "stopping an FRR daemon a previous speaker left running"
        );
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    for entry in std::fs::read_dir(work).into_iter().flatten().flatten() {
        let path = entry.path();
        if path
            .extension()
            .is_some_and(|e| e == "vty" || e == "api" || e == "sock")
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A running FRR instance; its daemons are stopped when it is dropped.
pub struct FrrInstance {
    options: FrrOptions,
    children: Vec<(&'static str, Child)>,
}

impl FrrInstance {
    /// Starts zebra, bfdd and bgpd with empty configurations in `options.work_dir`,
    /// waiting until each answers on its socket.
    pub fn start(options: &FrrOptions) -> Result<Self, FrrError> {
        Self::start_as(options, frr_user())
    }

    /// FRR's container in a speaker Pod (`metallb frr`): the daemons run as root, so
    /// that the speaker's container (UID 0, without CAP_DAC_OVERRIDE) reaches their
    /// sockets and no CAP_SETUID is needed; a configuration the speaker wrote before
    /// (this container restarted) is applied again at once.
    pub fn start_sidecar(options: &FrrOptions) -> Result<Self, FrrError> {
        let last = std::fs::read_to_string(options.work_dir.join("frr.conf")).unwrap_or_default();
        let instance = Self::start_as(options, None)?;
        if !last.trim().is_empty() {
            instance.reload(&last)?;
            info!("the speaker's last configuration applied again");
        }
        Ok(instance)
    }

    /// The daemons another process runs in `options.work_dir` (`--frr-external`): they
    /// answer on their sockets there, or [`FrrError::NotRunning`].
    pub fn attach(options: &FrrOptions) -> Result<Self, FrrError> {
        for daemon in DAEMONS {
            if !options.work_dir.join(format!("{daemon}.vty")).exists() {
                return Err(FrrError::NotRunning {
                    daemon,
                    work_dir: options.work_dir.display().to_string(),
                });
            }
        }
        info!(work_dir = %options.work_dir.display(), "using the FRR of another container");
        Ok(Self {
            options: options.clone(),
            children: Vec::new(),
        })
    }

    /// A daemon of this instance that exited, and how.
    pub fn exited(&mut self) -> Option<(&'static str, std::process::ExitStatus)> {
        self.children
            .iter_mut()
            .find_map(|(daemon, child)| Some((*daemon, child.try_wait().ok()??)))
    }

    /// Starts the daemons as the user `user` (uid, gid), or as root.
    fn start_as(options: &FrrOptions, user: Option<(u32, u32)>) -> Result<Self, FrrError> {
        options.check()?;
        let work = &options.work_dir;
        std::fs::create_dir_all(work).map_err(io(format!("creating {}", work.display())))?;
        std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o750))
            .map_err(io(format!("setting the mode of {}", work.display())))?;
        for file in [
            "zebra.conf",
            "bfdd.conf",
            "bgpd.conf",
            "vtysh.conf",
            "frr.conf",
        ] {
            let path = work.join(file);
            std::fs::write(&path, "").map_err(io(format!("writing {}", path.display())))?;
        }
        if let Some((uid, gid)) = user {
            for entry in std::fs::read_dir(work)
                .map_err(io(format!("reading {}", work.display())))?
                .flatten()
            {
                let _ = std::os::unix::fs::chown(entry.path(), Some(uid), Some(gid));
            }
            std::os::unix::fs::chown(work, Some(uid), Some(gid))
                .map_err(io(format!("giving {} to user frr", work.display())))?;
        }
        stop_leftovers(work);
        let mut instance = Self {
            options: options.clone(),
            children: Vec::new(),
        };
        for daemon in DAEMONS {
            instance.spawn(daemon, user.is_none())?;
        }
        info!(work_dir = %work.display(), "FRR started (zebra, bfdd, bgpd)");
        Ok(instance)
    }

    fn spawn(&mut self, daemon: &'static str, as_root: bool) -> Result<(), FrrError> {
        let work = &self.options.work_dir;
        let at = |name: &str| work.join(name).display().to_string();
        let log_path = work.join(format!("{daemon}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(io(format!("creating {}", log_path.display())))?;
        let err_log = log
            .try_clone()
            .map_err(io(format!("opening {}", log_path.display())))?;
        let mut command = Command::new(self.options.daemon(daemon));
        command
            .args(["-f", &at(&format!("{daemon}.conf"))])
            .args(["-i", &at(&format!("{daemon}.pid"))])
            .args(["-z", &at("zserv.api")])
            .args(["--vty_socket", &work.display().to_string()])
            .args(["-P", "0"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log);
        if daemon == "bfdd" {
            command.args(["--bfdctl", &at("bfdd.sock")]);
        }
        if as_root {
            command.args(["-u", "root", "-g", "root"]);
        }
        let child = command.spawn().map_err(io(format!(
            "starting {}",
            self.options.daemon(daemon).display()
        )))?;
        self.children.push((daemon, child));
        // Ready when its vty socket answers (zebra's zserv socket lets the others in).
        let deadline = Instant::now() + Duration::from_secs(10);
        let socket = work.join(format!("{daemon}.vty"));
        while !socket.exists() {
            if Instant::now() > deadline {
                return Err(FrrError::NotStarted {
                    daemon,
                    seconds: 10,
                    log: log_path.display().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Applies `config` whole with `frr-reload.py`: only what differs from the running
    /// configuration changes, so untouched sessions stay up.
    ///
    /// FRR 8.4's frr-reload.py fails when it sets a neighbor's graceful-restart mode:
    /// its second pass sends the command again and bgpd refuses it ("not valid at this
    /// moment") though the first pass applied it. So a failed reload is run once more:
    /// one that then finds nothing left to change has applied the configuration.
    pub fn reload(&self, config: &str) -> Result<(), FrrError> {
        let work = &self.options.work_dir;
        let target = work.join("frr.conf");
        let staged = work.join("frr.conf.new");
        {
            let mut file = std::fs::File::create(&staged)
                .map_err(io(format!("writing {}", staged.display())))?;
            file.write_all(config.as_bytes())
                .map_err(io(format!("writing {}", staged.display())))?;
        }
        std::fs::rename(&staged, &target).map_err(io(format!("writing {}", target.display())))?;
        if let Err(first) = self.run_reload(&target) {
            self.run_reload(&target).map_err(|_| first)?;
        }
        Ok(())
    }

    fn run_reload(&self, target: &Path) -> Result<(), FrrError> {
        let work = &self.options.work_dir;
        let work_text = work.display().to_string();
        // --stdout: its log in what is shown on failure, not in /var/log/frr.
        let output = Command::new(self.options.reload_script())
            .args(["--reload", "--stdout", "--vty_socket", &work_text])
            .args(["--confdir", &work_text, "--rundir", &work_text])
            .args(["--bindir", &self.vtysh_dir()])
            .arg(target)
            .stdin(Stdio::null())
            .output()
            .map_err(io("running frr-reload.py"))?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text += &String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            return Err(FrrError::Reload {
                status: output.status.to_string(),
                output: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            });
        }
        Ok(())
    }

    fn vtysh_dir(&self) -> String {
        self.options
            .vtysh
            .parent()
            .unwrap_or(Path::new("/usr/bin"))
            .display()
            .to_string()
    }

    /// One `vtysh` command's output.
    pub fn vtysh(&self, command: &str) -> Result<String, FrrError> {
        let output = Command::new(&self.options.vtysh)
            .args(["--vty_socket", &self.options.work_dir.display().to_string()])
            .args(["-c", command])
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!("running {}", self.options.vtysh.display())))?;
        if !output.status.success() {
            return Err(FrrError::Vtysh {
                command: command.into(),
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).trim().into(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn status(&self) -> Result<BgpStatus, BackendError> {
        let sessions = parse_neighbors(&self.vtysh("show bgp vrf all neighbors json")?)?;
        let bfd = parse_bfd_peers(&self.vtysh("show bfd peers json")?)?;
        Ok(BgpStatus { sessions, bfd })
    }
}

impl Drop for FrrInstance {
    fn drop(&mut self) {
        // The reverse of the start order; SIGTERM, then SIGKILL what stays.
        for (daemon, child) in self.children.iter_mut().rev() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        warn!(
                            daemon = *daemon,
                            "FRR daemon did not stop on SIGTERM: killed"
                        );
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

/// The FRR backend: starts its instance when there is a first session to open, renders
/// the plan, and reloads only when the rendered configuration changes.
pub struct FrrBackend {
    options: FrrOptions,
    instance: Option<FrrInstance>,
    applied: Option<String>,
}

impl FrrBackend {
    pub fn new(options: FrrOptions) -> Self {
        Self {
            options,
            instance: None,
            applied: None,
        }
    }
}

impl Backend for FrrBackend {
    fn apply(&mut self, node: &NodeBgp) -> Result<bool, BackendError> {
        if self.instance.is_none() && node.sessions.is_empty() {
            // No BGP here: FRR is neither needed nor started.
            return Ok(false);
        }
        let config = render(node, &self.options.render);
        if self.applied.as_deref() == Some(config.as_str()) {
            return Ok(false);
        }
        if self.instance.is_none() {
            self.instance = Some(if self.options.external {
                FrrInstance::attach(&self.options)?
            } else {
                FrrInstance::start(&self.options)?
            });
        }
        if let Some(instance) = &self.instance {
            instance.reload(&config)?;
        }
        self.applied = Some(config);
        Ok(true)
    }

    fn status(&mut self) -> Result<BgpStatus, BackendError> {
        match &self.instance {
            Some(instance) => instance.status(),
            None => Ok(BgpStatus::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_frr_is_named_with_what_to_install() {
        let options = FrrOptions {
            frr_dir: "/nonexistent/frr".into(),
            vtysh: DEFAULT_VTYSH.into(),
            work_dir: "/nonexistent/work".into(),
            render: RenderOptions::default(),
            external: false,
        };
        assert_eq!(
            options.check().unwrap_err().to_string(),
            "FRR not found: /nonexistent/frr/zebra does not exist (BGP mode runs FRR: install Debian's frr and frr-pythontools, or give --frr-dir / --vtysh)"
        );
        // Nothing is started, nothing is written, when FRR is missing.
        assert!(FrrInstance::start(&options).is_err());
        assert!(!Path::new("/nonexistent/work").exists());
        // No session to open: FRR is neither needed nor looked for.
        let mut backend = FrrBackend::new(options);
        assert!(!backend.apply(&NodeBgp::default()).unwrap());
        assert_eq!(backend.status().unwrap(), BgpStatus::default());
    }

    #[test]
    fn an_external_frr_that_is_not_running_is_named_and_nothing_is_started() {
        let work = std::env::temp_dir().join(format!("mlb-frr-external-{}", std::process::id()));
        std::fs::create_dir_all(&work).unwrap();
        let options = FrrOptions {
            frr_dir: "/nonexistent/frr".into(),
            vtysh: DEFAULT_VTYSH.into(),
            work_dir: work.clone(),
            render: RenderOptions::default(),
            external: true,
        };
        let error = FrrInstance::attach(&options).err().unwrap().to_string();
        assert_eq!(
            error,
            format!(
                "FRR is not running: no socket of its zebra in {0} (--frr-external: FRR's daemons are another container's, `metallb frr --frr-work-dir {0}`)",
                work.display()
            )
        );
        // Its sockets there: attached, with no process of its own to stop.
        for daemon in DAEMONS {
            std::fs::write(work.join(format!("{daemon}.vty")), "").unwrap();
        }
        let mut attached = FrrInstance::attach(&options).unwrap();
        assert!(attached.children.is_empty());
        assert!(attached.exited().is_none());
        drop(attached);
        std::fs::remove_dir_all(&work).unwrap();
    }
}
