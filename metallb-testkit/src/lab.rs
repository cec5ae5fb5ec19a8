//! A two-host network lab in network namespaces, for tests, benchmarks and the demo:
//! a "node" namespace (where the datapath runs) and a "client" namespace (that asks),
//! joined by a veth pair. Everything is removed when the [`Lab`] is dropped, also when
//! a test panics. Addresses come from the documentation ranges (192.0.2.0/24,
//! 2001:db8::/64) and traffic never leaves the two namespaces.

use std::{
    fs::File,
    io,
    net::{Ipv4Addr, Ipv6Addr},
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};
use aya::{Ebpf, programs::Xdp};
use nix::sched::{CloneFlags, setns, unshare};

use metallb_user::datapath::{HELPERS_OBJECT, XdpMode, iface::MacAddr};

/// Moves the calling thread into another network namespace until dropped.
pub struct NetnsGuard {
    previous: File,
}

impl NetnsGuard {
    /// Enters the namespace that `ip netns add NAME` created.
    pub fn enter(name: &str) -> io::Result<Self> {
        let previous = File::open("/proc/thread-self/ns/net")?;
        let target = File::open(format!("/run/netns/{name}"))?;
        setns(&target, CloneFlags::CLONE_NEWNET)?;
        Ok(Self { previous })
    }

    /// Enters a new, anonymous namespace (with only `lo`, brought up). It disappears
    /// once this guard has returned the thread to where it was.
    pub fn enter_new() -> io::Result<Self> {
        let previous = File::open("/proc/thread-self/ns/net")?;
        unshare(CloneFlags::CLONE_NEWNET)?;
        let guard = Self { previous };
        // Children inherit the calling thread's namespace.
        let status = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()?;
        if !status.success() {
            return Err(io::Error::other("ip link set lo up failed"));
        }
        Ok(guard)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // Failing to return would leave the thread in a namespace about to vanish;
        // nothing sensible can be done about it here.
        let _ = setns(&self.previous, CloneFlags::CLONE_NEWNET);
    }
}

/// A name no other lab of any process uses right now.
pub fn unique_name(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "mlb-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pin directory of its own under /sys/fs/bpf, removed with everything in it on drop,
/// and with the speaker's record of its interfaces (under /run/metallb).
pub struct ScratchPinDir {
    pub path: std::path::PathBuf,
}

impl ScratchPinDir {
    pub fn new(tag: &str) -> Self {
        Self {
            path: std::path::Path::new("/sys/fs/bpf").join(unique_name(tag)),
        }
    }
}

impl Drop for ScratchPinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        let _ = metallb_user::interface_report::remove(&self.path);
    }
}

/// Runs a command and fails with its stderr if it does not succeed.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// The node and the client, one veth pair between them.
pub struct Lab {
    pub node_ns: String,
    pub client_ns: String,
    pub node_if: &'static str,
    pub client_if: &'static str,
    pub node_mac: MacAddr,
    pub client_mac: MacAddr,
    /// Keeps the client-side pass-through program attached (native mode on veth
    /// transmits XDP_TX frames only to a peer that runs XDP itself).
    client_program: Option<Ebpf>,
}

impl Lab {
    pub const NODE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    pub const NODE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    /// Creates both namespaces and the veth pair, with addresses, all up.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let base = unique_name(tag);
        let lab = Self {
            node_ns: format!("{base}-n"),
            client_ns: format!("{base}-c"),
            // Names no exclusion pattern matches (MetalLB's defaults exclude `^veth.*`),
            // so that a speaker choosing interfaces by itself takes the node's.
            node_if: "mlb-node",
            client_if: "mlb-client",
            node_mac: MacAddr([0x02, 0x00, 0x00, 0x00, 0x01, 0x01]),
            client_mac: MacAddr([0x02, 0x00, 0x00, 0x00, 0x02, 0x02]),
            client_program: None,
        };
        // From here on Drop removes whatever was created.
        run("ip", &["netns", "add", &lab.node_ns])?;
        run("ip", &["netns", "add", &lab.client_ns])?;
        lab.link_namespaces()?;
        for ns in [&lab.node_ns, &lab.client_ns] {
            lab.ip(ns, &["link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// Makes the veth pair between the namespaces, with the lab's MACs and addresses,
    /// up, and waits until IPv6 can be sent on it.
    fn link_namespaces(&self) -> anyhow::Result<()> {
        let (node_mac, client_mac) = (self.node_mac.to_string(), self.client_mac.to_string());
        run(
            "ip",
            &[
                "link",
                "add",
                self.node_if,
                "netns",
                &self.node_ns,
                "address",
                &node_mac,
                "type",
                "veth",
                "peer",
                "name",
                self.client_if,
                "netns",
                &self.client_ns,
                "address",
                &client_mac,
            ],
        )?;
        for (ns, ifname, v4, v6) in [
            (&self.node_ns, self.node_if, Self::NODE_V4, Self::NODE_V6),
            (
                &self.client_ns,
                self.client_if,
                Self::CLIENT_V4,
                Self::CLIENT_V6,
            ),
        ] {
            self.ip(ns, &["addr", "add", &format!("{v4}/24"), "dev", ifname])?;
            self.ip(
                ns,
                &["addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"],
            )?;
            self.ip(ns, &["link", "set", ifname, "up"])?;
        }
        self.wait_until_ipv6_ready()
    }

    /// Deletes the veth pair and makes it again, the node's end with `node_mac`: the
    /// same names under new ifindexes, as when a NIC's driver is reloaded. The client
    /// end's pass-through program, if it had one, is attached again.
    pub fn recreate_link(&mut self, node_mac: MacAddr) -> anyhow::Result<()> {
        let mode = self.client_program.take().map(|_| XdpMode::Native);
        self.ip(&self.node_ns, &["link", "del", self.node_if])?;
        self.node_mac = node_mac;
        self.link_namespaces()?;
        match mode {
            Some(mode) => self.prepare_client_for(mode),
            None => Ok(()),
        }
    }

    /// Right after a link comes up, IPv6 multicast sends fail with "Network is
    /// unreachable" until the kernel has added the interface's multicast route.
    fn wait_until_ipv6_ready(&self) -> anyhow::Result<()> {
        for (ns, ifname) in [
            (&self.node_ns, self.node_if),
            (&self.client_ns, self.client_if),
        ] {
            let ready = || -> anyhow::Result<bool> {
                let out = self.ip(
                    ns,
                    &[
                        "-6", "route", "show", "table", "local", "ff00::/8", "dev", ifname,
                    ],
                )?;
                Ok(!out.stdout.is_empty())
            };
            let mut tries = 0;
            while !ready()? {
                tries += 1;
                if tries > 300 {
                    bail!("IPv6 on {ifname} in {ns} did not come up within 3 s");
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// `ip -n NS ARGS...`
    pub fn ip(&self, ns: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut full = vec!["-n", ns];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs a command in the client namespace; its output whatever the exit status.
    pub fn in_client(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        exec_in(&self.client_ns, program, args)
    }

    /// `arping` from the client: `count` requests for `target`, giving up after
    /// `deadline_secs`.
    pub fn arping(
        &self,
        target: Ipv4Addr,
        count: u32,
        deadline_secs: u32,
    ) -> anyhow::Result<Output> {
        self.in_client(
            "arping",
            &[
                "-c",
                &count.to_string(),
                "-w",
                &deadline_secs.to_string(),
                "-I",
                self.client_if,
                &target.to_string(),
            ],
        )
    }

    /// `ndisc6` from the client: one solicitation for `target` (numeric output, two
    /// tries, 500 ms each).
    pub fn ndisc6(&self, target: Ipv6Addr) -> anyhow::Result<Output> {
        self.in_client(
            "ndisc6",
            &[
                "-1",
                "-n",
                "-r",
                "2",
                "-w",
                "500",
                &target.to_string(),
                self.client_if,
            ],
        )
    }

    /// `tcpdump` on the client end, printing link-level headers line by line; the
    /// caller adds its options and filter. With `timeout_secs`, it stops by then.
    pub fn client_tcpdump(&self, timeout_secs: Option<u32>) -> Command {
        let mut command = match timeout_secs {
            Some(secs) => {
                let mut command = command_in(&self.client_ns, "timeout");
                command.args([&secs.to_string(), "tcpdump"]);
                command
            }
            None => command_in(&self.client_ns, "tcpdump"),
        };
        command.args(["-i", self.client_if, "-n", "-e", "-l"]);
        command
    }

    /// Prepares the client end for `mode`: in native mode a pass-through XDP program
    /// must run there, or veth silently drops the frames the node sends with XDP_TX.
    pub fn prepare_client_for(&mut self, mode: XdpMode) -> anyhow::Result<()> {
        if mode != XdpMode::Native || self.client_program.is_some() {
            return Ok(());
        }
        let _netns = NetnsGuard::enter(&self.client_ns).context("entering the client namespace")?;
        let mut ebpf = Ebpf::load(HELPERS_OBJECT).context("loading the helper programs")?;
        let program: &mut Xdp = ebpf
            .program_mut("floor_pass")
            .context("no floor_pass program")?
            .try_into()?;
        program.load()?;
        program
            .attach(self.client_if, aya::programs::XdpMode::Driver)
            .with_context(|| format!("attaching floor_pass to {}", self.client_if))?;
        self.client_program = Some(ebpf);
        Ok(())
    }
}

/// A command that runs `program` in the network namespace `ns` only. Unlike `ip netns
/// exec`, `nsenter --net` keeps the mounts (bpffs at /sys/fs/bpf stays visible).
pub fn command_in(ns: &str, program: &str) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(program);
    command
}

/// `ip netns exec NS PROGRAM ARGS...`, returning the output whatever the exit status.
pub fn exec_in(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    Command::new("ip")
        .args(&full)
        .output()
        .with_context(|| format!("running {program} in namespace {ns}"))
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Detach the client program before its interface goes away.
        self.client_program = None;
        // Deleting a namespace deletes its veth end, which deletes the peer and
        // every XDP attachment on both.
        for ns in [&self.node_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
