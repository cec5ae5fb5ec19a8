//! The `metallb` binary as a process in a lab's node namespace, for the tests that run
//! it as the DaemonSet would (capabilities, cleanup): its configuration, starting it
//! until ready, stopping it, and commands that must end by themselves.
#![allow(dead_code)]

use std::{
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use metallb_testkit::lab::{Lab, ScratchPinDir, exec_in, unique_name};

pub const BINARY: &str = env!("CARGO_BIN_EXE_metallb");
pub const VIP: &str = "192.0.2.101";
/// Its solicited-node group (33:33:ff:00:01:20) is no group the lab's own addresses
/// join, so the multicast MAC the speaker adds is told apart from the kernel's.
pub const VIP6: &str = "2001:db8::120";
pub const VIP6_GROUP_MAC: &str = "33:33:ff:00:01:20";

/// A configuration directory and file anyone may read (the speaker may run as another
/// user), announcing [`VIP`] and [`VIP6`]; removed on drop.
pub struct ConfigDir(PathBuf);

impl ConfigDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("spcfg"));
        std::fs::create_dir_all(&dir).expect("config dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let file = dir.join("metallb.yaml");
        std::fs::write(
            &file,
            format!(
                "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: pool, namespace: metallb-system}}\n\
                 spec: {{addresses: [192.0.2.100-192.0.2.150, '2001:db8::100-2001:db8::150']}}\n\
                 ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: l2, namespace: metallb-system}}\nspec: {{}}\n\
                 ---\napiVersion: v1\nkind: Service\nmetadata: {{name: first, annotations: {{metallb.io/loadBalancerIPs: '{VIP},{VIP6}'}}}}\n\
                 spec: {{type: LoadBalancer, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6], ports: [{{port: 80, protocol: TCP}}]}}\n"
            ),
        )
        .expect("write config");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        Self(dir)
    }

    pub fn file(&self) -> PathBuf {
        self.0.join("metallb.yaml")
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running speaker, killed on drop.
pub struct Speaker(Option<Child>);

impl Speaker {
    /// Starts `command` (the speaker in `lab`'s node namespace) and waits until it is
    /// ready.
    pub fn start(command: &mut Command, lab: &Lab) -> Self {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the speaker");
        let mut speaker = Self(Some(child));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !exec_in(
            &lab.node_ns,
            "curl",
            &["-sf", "http://127.0.0.1:7472/readyz"],
        )
        .expect("curl")
        .status
        .success()
        {
            if let Some(status) = speaker.child().try_wait().expect("wait") {
                panic!("the speaker exited before it was ready: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the speaker did not become ready"
            );
            sleep(Duration::from_millis(50));
        }
        speaker
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("running")
    }

    /// Its PID (the wrappers the tests put before it, nsenter, setpriv, prlimit, exec
    /// it in place).
    pub fn pid(&mut self) -> u32 {
        self.child().id()
    }

    /// SIGKILL (`kill -9`): no chance to clean up anything.
    pub fn kill(mut self) {
        let mut child = self.0.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }

    /// SIGTERM; whether it exited with success.
    pub fn stop(mut self) -> bool {
        let mut child = self.0.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        child.wait().expect("wait").success()
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A lab whose client end is ready for a speaker in native mode.
pub fn lab(tag: &str) -> Lab {
    let mut lab = Lab::new(tag).expect("lab");
    lab.prepare_client_for(metallb_user::datapath::XdpMode::Native)
        .expect("client side");
    lab
}

/// A root speaker in `lab`'s node namespace only (the host's /sys/fs/bpf stays
/// visible), on `config` and `pins`, with `extra` arguments; started until ready.
pub fn root_speaker(
    lab: &Lab,
    config: &ConfigDir,
    pins: &ScratchPinDir,
    extra: &[&str],
) -> Speaker {
    let mut command = metallb_testkit::lab::command_in(&lab.node_ns, BINARY);
    command
        .args(["speaker", "--config"])
        .arg(config.file())
        .arg("--pin-dir")
        .arg(&pins.path)
        .args(["--node-name", "node-1"])
        .args(extra);
    Speaker::start(&mut command, lab)
}

/// Runs a command that must end by itself within 15 s; its output.
pub fn run_to_end(command: &mut Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after 15 s: {command:?}");
        }
        sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

pub fn answers_arp(lab: &Lab) -> bool {
    let out = lab.arping(VIP.parse().unwrap(), 1, 2).expect("arping");
    String::from_utf8_lossy(&out.stdout)
        .to_lowercase()
        .contains(&format!("[{}]", lab.node_mac))
}

pub fn answers_ndp(lab: &Lab) -> bool {
    let out = lab.ndisc6(VIP6.parse().unwrap()).expect("ndisc6");
    String::from_utf8_lossy(&out.stdout)
        .to_lowercase()
        .contains(&lab.node_mac.to_string())
}

/// The XDP attachment of the node's interface, as `ip -d -j link` prints it.
pub fn xdp_attached(lab: &Lab) -> Option<String> {
    let out = lab
        .ip(&lab.node_ns, &["-d", "-j", "link", "show", lab.node_if])
        .expect("ip link");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let xdp = &json[0]["xdp"];
    (!xdp.is_null()).then(|| xdp.to_string())
}

/// The line of `ip maddr` for the multicast MAC of [`VIP6`]'s group on the node's
/// interface, if there is one (`... static` when added by a program).
pub fn vip6_group(lab: &Lab) -> Option<String> {
    let out = lab
        .ip(&lab.node_ns, &["maddr", "show", "dev", lab.node_if])
        .expect("ip maddr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(VIP6_GROUP_MAC))
        .map(|l| l.trim().to_owned())
}
