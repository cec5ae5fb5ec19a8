//! A BGP lab: a router namespace running BIRD 2 (an implementation independent of the
//! FRR the speaker drives) with a bridge, and two node namespaces on it, each running
//! `metallb speaker` in standalone mode (which runs its own FRR). Seeded from
//! `examples/bgp.yaml`. Namespaces, processes and files are removed on drop.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU8, Ordering},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::lab::{ScratchPinDir, command_in, exec_in, unique_name};

/// The speakers' metrics port in each node namespace (the 173xx range is BGP's).
pub const METRICS_PORT: u16 = 17301;

/// Runs a command; its stdout, or an error with its stderr ([`crate::lab::run`]).
pub fn must(program: &str, args: &[&str]) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&crate::lab::run(program, args)?.stdout).into_owned())
}

/// Polls `check` every 20 ms until it gives `Ok`, or fails with `what` and the last
/// `Err` after `deadline`.
pub fn wait_for<T>(
    what: &str,
    deadline: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> anyhow::Result<T> {
    let until = Instant::now() + deadline;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() > until => {
                bail!("{what}: not within {deadline:?}; last: {last}")
            }
            Err(_) => sleep(Duration::from_millis(20)),
        }
    }
}

/// One octet per lab, so that labs running at once (several processes, several
/// tests) use different subnets.
fn lab_octet() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    ((std::process::id() % 50) as u8) * 5 + NEXT.fetch_add(1, Ordering::Relaxed) % 5
}

pub struct BgpLab {
    pub router: String,
    pub nodes: [String; 2],
    pub dir: PathBuf,
    bird: Option<Child>,
    speakers: Vec<Option<Child>>,
    /// `metallb frr` of a node whose speaker runs with `--frr-external`.
    frr_sidecars: Vec<Option<Child>>,
    pins: Vec<ScratchPinDir>,
    /// This lab's `10.77.N` and `fd77:N:`, in place of the example's `10.77.0` and
    /// `fd77:0:`.
    pub v4: String,
    pub v6: String,
}

impl BgpLab {
    /// The router (bridge `br0`, `.1`) and two nodes on it (`.2`, `.3`), IPv4 and IPv6.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let octet = lab_octet();
        let lab = Self {
            router: unique_name(&format!("{tag}r")),
            nodes: [
                unique_name(&format!("{tag}a")),
                unique_name(&format!("{tag}b")),
            ],
            dir: std::env::temp_dir().join(unique_name(tag)),
            bird: None,
            speakers: Vec::new(),
            frr_sidecars: Vec::new(),
            pins: Vec::new(),
            v4: format!("10.77.{octet}"),
            v6: format!("fd77:{octet}:"),
        };
        std::fs::create_dir_all(&lab.dir).context("lab directory")?;
        must("ip", &["netns", "add", &lab.router])?;
        let r = |args: &[&str]| -> anyhow::Result<String> {
            let mut full = vec!["-n", lab.router.as_str()];
            full.extend_from_slice(args);
            must("ip", &full)
        };
        r(&["link", "set", "lo", "up"])?;
        r(&["link", "add", "br0", "type", "bridge"])?;
        r(&["addr", "add", &format!("{}.1/24", lab.v4), "dev", "br0"])?;
        r(&[
            "addr",
            "add",
            &format!("{}:1/64", lab.v6),
            "dev",
            "br0",
            "nodad",
        ])?;
        r(&["link", "set", "br0", "up"])?;
        for (i, node) in lab.nodes.iter().enumerate() {
            must("ip", &["netns", "add", node])?;
            let port = format!("p{i}");
            r(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", node,
            ])?;
            r(&["link", "set", &port, "master", "br0"])?;
            r(&["link", "set", &port, "up"])?;
            let n = |args: &[&str]| -> anyhow::Result<String> {
                let mut full = vec!["-n", node.as_str()];
                full.extend_from_slice(args);
                must("ip", &full)
            };
            n(&["link", "set", "lo", "up"])?;
            n(&[
                "addr",
                "add",
                &format!("{}.{}/24", lab.v4, i + 2),
                "dev",
                "eth0",
            ])?;
            n(&[
                "addr",
                "add",
                &format!("{}:{}/64", lab.v6, i + 2),
                "dev",
                "eth0",
                "nodad",
            ])?;
            n(&["link", "set", "eth0", "up"])?;
        }
        Ok(lab)
    }

    /// `examples/bgp.yaml`'s text with this lab's addresses.
    pub fn config(&self, example: &str) -> String {
        example
            .replace("10.77.0.", &format!("{}.", self.v4))
            .replace("fd77:0:", &self.v6)
    }

    pub fn node_v4(&self, i: usize) -> String {
        format!("{}.{}", self.v4, i + 2)
    }

    fn bird_socket(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    /// BIRD 2 as the router: iBGP (AS 64500) with both nodes over IPv4 and IPv6, MD5
    /// `password`, BFD at 300 ms x 3, graceful restart as BIRD does by default (it
    /// honours a peer's), routes merged into ECMP kernel routes.
    pub fn start_bird(&mut self, password: &str) -> anyhow::Result<()> {
        let mut conf = format!(
            "router id {v4}.1;\nlog \"{log}\" all;\nprotocol device {{}}\n\
             protocol kernel {{ ipv4 {{ export all; }}; merge paths on; }}\n\
             protocol kernel {{ ipv6 {{ export all; }}; merge paths on; }}\n\
             protocol bfd {{ interface \"*\" {{ min rx interval 300 ms; min tx interval 300 ms; multiplier 3; }}; }}\n\
             template bgp node {{ local as 64500; password \"{password}\"; bfd on; direct; hold time 9; \
             connect delay time 1; connect retry time 1; error wait time 1, 2; }}\n",
            v4 = self.v4,
            log = self.dir.join("bird.log").display(),
        );
        for i in 0..2 {
            conf += &format!(
                "protocol bgp node{i}v4 from node {{ neighbor {v4}.{n} as 64500; ipv4 {{ import all; export none; }}; }}\n\
                 protocol bgp node{i}v6 from node {{ neighbor {v6}:{n} as 64500; ipv6 {{ import all; export none; }}; }}\n",
                v4 = self.v4,
                v6 = self.v6,
                n = i + 2
            );
        }
        let path = self.dir.join("bird.conf");
        std::fs::write(&path, conf).context("writing bird.conf")?;
        let child = command_in(&self.router, "bird")
            .args(["-f", "-c"])
            .arg(&path)
            .arg("-s")
            .arg(self.bird_socket())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting bird (Debian's bird2; `cargo xtask setup` installs it)")?;
        self.bird = Some(child);
        let socket = self.bird_socket();
        wait_for("BIRD's control socket", Duration::from_secs(10), || {
            socket
                .exists()
                .then_some(())
                .ok_or_else(|| "no socket yet".into())
        })
    }

    /// `birdc` on the router.
    pub fn birdc(&self, command: &str) -> anyhow::Result<String> {
        let socket = self.bird_socket().display().to_string();
        let mut args = vec!["-s", socket.as_str()];
        args.extend(command.split(' '));
        must("birdc", &args)
    }

    /// Starts the speaker of node `i` on `config`, with its own FRR in the lab
    /// directory; `binary` is the `metallb` binary.
    pub fn start_speaker(&mut self, binary: &Path, i: usize, config: &Path) -> anyhow::Result<()> {
        self.spawn_speaker(binary, i, &["--config".as_ref(), config.as_os_str()], &[])
    }

    /// Starts `metallb speaker` as node `i` (`node0`, `node1`) with its own FRR in the
    /// lab directory, its metrics on [`METRICS_PORT`], then `args`, with `env`.
    pub fn spawn_speaker(
        &mut self,
        binary: &Path,
        i: usize,
        args: &[&OsStr],
        env: &[(&str, &OsStr)],
    ) -> anyhow::Result<()> {
        let pins = ScratchPinDir::new("bgp");
        let child = command_in(&self.nodes[i], &binary.to_string_lossy())
            .arg("speaker")
            .args(args)
            .arg("--pin-dir")
            .arg(&pins.path)
            .args(["--node-name", &format!("node{i}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{METRICS_PORT}")])
            .arg("--frr-work-dir")
            .arg(self.dir.join(format!("frr-{i}")))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the speaker")?;
        while self.speakers.len() <= i {
            self.speakers.push(None);
        }
        self.speakers[i] = Some(child);
        self.pins.push(pins);
        Ok(())
    }

    /// Stops node `i`'s speaker (SIGTERM, and its exit waited for: its FRR stops too,
    /// unless it is a sidecar's).
    pub fn stop_speaker(&mut self, i: usize) -> anyhow::Result<()> {
        stop(self.speakers.get_mut(i).and_then(Option::take), "speaker")
    }

    /// Starts `metallb frr` for node `i` as FRR's container in a Pod runs it: the FRR
    /// of a speaker started with `--frr-external`, in the same work directory, as root
    /// with only `capabilities` (Kubernetes names: `NET_ADMIN`, ...) in its bounding set.
    pub fn start_frr_sidecar(
        &mut self,
        binary: &Path,
        i: usize,
        capabilities: &[&str],
    ) -> anyhow::Result<()> {
        let set: Vec<String> = capabilities
            .iter()
            .map(|c| format!("+{}", c.to_lowercase()))
            .collect();
        // The image puts root in FRR's vty group (FRR refuses to run its daemons as a
        // user outside it): so does this /etc/group, bound over the host's in a mount
        // namespace of this process only.
        let group = self.dir.join("group");
        let host = std::fs::read_to_string("/etc/group").context("reading /etc/group")?;
        let with_root: Vec<String> = host
            .lines()
            .map(|line| match line.strip_prefix("frrvty:") {
                Some(rest) if rest.ends_with(':') => format!("{line}root"),
                Some(_) => format!("{line},root"),
                None => line.to_owned(),
            })
            .collect();
        std::fs::write(&group, with_root.join("\n") + "\n").context("writing the group file")?;
        let child = command_in(&self.nodes[i], "unshare")
            .args(["--mount", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/group && exec \"$@\"")
            .arg(&group)
            .arg("setpriv")
            .arg(format!("--bounding-set=-all,{}", set.join(",")))
            .arg("--inh-caps=-all")
            .arg("--")
            .arg(binary)
            .arg("frr")
            .arg("--frr-work-dir")
            .arg(self.dir.join(format!("frr-{i}")))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting metallb frr")?;
        while self.frr_sidecars.len() <= i {
            self.frr_sidecars.push(None);
        }
        self.frr_sidecars[i] = Some(child);
        Ok(())
    }

    /// Stops node `i`'s `metallb frr` (SIGTERM, its exit waited for).
    pub fn stop_frr_sidecar(&mut self, i: usize) -> anyhow::Result<()> {
        stop(
            self.frr_sidecars.get_mut(i).and_then(Option::take),
            "metallb frr",
        )
    }

    /// The metrics of node `i`'s speaker.
    pub fn metrics(&self, i: usize) -> anyhow::Result<String> {
        let out = exec_in(
            &self.nodes[i],
            "curl",
            &["-sf", &format!("http://127.0.0.1:{METRICS_PORT}/metrics")],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// BIRD's Established protocols, with the time each came up.
    pub fn established(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(self
            .birdc("show protocols")?
            .lines()
            .filter(|l| l.contains("Established"))
            .filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                (fields.len() > 4).then(|| (fields[0].to_owned(), fields[4].to_owned()))
            })
            .collect())
    }

    /// The peer addresses whose BFD session BIRD shows Up (`birdc show bfd sessions`:
    /// `ADDRESS  INTERFACE  STATE  SINCE  INTERVAL  TIMEOUT`). BGP sessions come up
    /// before BFD's: a link taken down before this shows a peer is noticed only by the
    /// hold timer.
    pub fn bfd_up(&self) -> anyhow::Result<Vec<String>> {
        let mut up: Vec<String> = self
            .birdc("show bfd sessions")?
            .lines()
            .filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                (fields.len() > 2 && fields[2] == "Up").then(|| fields[0].to_owned())
            })
            .collect();
        up.sort();
        Ok(up)
    }

    /// `birdc show route for PREFIX all`; empty when BIRD has no route for it (birdc
    /// then says "Network not found" and exits non-zero).
    pub fn routes(&self, prefix: &str) -> anyhow::Result<String> {
        let socket = self.bird_socket().display().to_string();
        let output = Command::new("birdc")
            .args(["-s", &socket, "show", "route", "for", prefix, "all"])
            .output()
            .context("running birdc")?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if text.contains("Network not found") {
            return Ok(String::new());
        }
        if !output.status.success() {
            bail!("birdc show route for {prefix} all: {text}");
        }
        Ok(text)
    }

    /// `birdc show route for PREFIX all` once its routes come from exactly `from`
    /// (BIRD's protocols, sorted: `node0v4`, ...; none: withdrawn), within 20 s.
    pub fn routes_from(&self, prefix: &str, from: &[&str]) -> anyhow::Result<String> {
        wait_for(
            &format!("{prefix} from {from:?}"),
            Duration::from_secs(20),
            || {
                let routes = self.routes(prefix).map_err(|e| e.to_string())?;
                (announcers(&routes) == from)
                    .then_some(routes.clone())
                    .ok_or(routes)
            },
        )
    }

    /// The next hops of the router's kernel route to `prefix` (several: ECMP).
    pub fn kernel_next_hops(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let text = must("ip", &["-n", &self.router, "route", "show", prefix])?;
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut hops: Vec<String> = words
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_owned())
            .collect();
        hops.sort();
        Ok(hops)
    }
}

/// SIGTERM to `child`, and its successful exit waited for.
fn stop(child: Option<Child>, what: &str) -> anyhow::Result<()> {
    let Some(mut child) = child else {
        bail!("no {what} running");
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).context("SIGTERM")?;
    let status = child
        .wait()
        .with_context(|| format!("waiting for {what}"))?;
    if !status.success() {
        bail!("{what} exited with {status}");
    }
    Ok(())
}

/// The BGP sessions (BIRD's protocols: `node0v4`, ...) that the routes of a `birdc show
/// route ... all` text came from: one per announcing node and family.
pub fn announcers(routes: &str) -> Vec<String> {
    let mut from: Vec<String> = routes
        .lines()
        // A route's first line: `PREFIX  unicast [PROTOCOL TIME] ...` (later routes of
        // the prefix leave the prefix out); attribute lines start with a tab.
        .filter(|l| !l.starts_with('\t'))
        .filter_map(|l| l.split_once(" [").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    from.sort();
    from
}

impl Drop for BgpLab {
    fn drop(&mut self) {
        for child in self
            .speakers
            .iter_mut()
            .chain(self.frr_sidecars.iter_mut())
            .flatten()
            .chain(self.bird.iter_mut())
        {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        for child in self
            .speakers
            .iter_mut()
            .chain(self.frr_sidecars.iter_mut())
            .flatten()
            .chain(self.bird.iter_mut())
        {
            for _ in 0..200 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.nodes.iter().chain([&self.router]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
