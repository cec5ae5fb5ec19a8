//! Membership gossip in Kubernetes mode (needs root): the in-process test API server
//! holds the speaker Pods (their `status.podIP` the nodes' addresses, as with
//! hostNetwork), the Nodes, a pool, an L2Advertisement and a Service with its address
//! in the status; three nodes and a client on one bridge (`metallb_testkit::cluster`),
//! one `metallb speaker` per node in Kubernetes mode with the key mounted as MetalLB
//! mounts its `memberlist` Secret (a directory holding `secretkey`). The speakers find
//! each other through the Pods. A killed owner whose Pod stays Ready loses its VIP to
//! another node; a speaker with another key is not admitted and takes no VIP; a Pod
//! that appears is joined without a restart; a rolling update of the speaker DaemonSet
//! with --keep-datapath loses no answer. Deadlines only: the figures are the benches'.

mod support;

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    thread::sleep,
    time::{Duration, Instant},
};

use kube::Api;
use metallb_testkit::{
    TestApiServer,
    cluster::{ClusterLab, NodeSpeaker, SpeakerSpec, node_name, speaker_pod_name},
    lab::{ScratchPinDir, unique_name},
    rbac,
};
use metallb_user::{datapath::FenceState, kubernetes::rbac::SPEAKER};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use support::kubernetes::{
    ready_endpoint_on, seed_pool_and_advertisement, service_with_address, speaker_daemonset,
    speaker_pod, start_server,
};

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");
const NS: &str = "metallb-system";
const MEMBERSHIP_PORT: u16 = 17546;
const METRICS_ADDR: &str = "127.0.0.1:17547";
/// As MetalLB's controller writes it: 16 random bytes in unpadded base64.
const KEY: &str = "q83vEjRWeJq83vEjRWeJqw";
const DEADLINE: Duration = Duration::from_secs(30);

/// A scratch directory (keys, kubeconfigs, logs), removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The VIP whose owner among the three nodes is `owner` by MetalLB's election
/// (lowest sha256(node + "#" + ip) first), from the pool's range.
fn vip_owned_by(owner: usize) -> Ipv4Addr {
    (100..=150)
        .map(|last| Ipv4Addr::new(192, 0, 2, last))
        .find(|vip| {
            let hash = |i: usize| Sha256::digest(format!("{}#{vip}", node_name(i)));
            (0..3)
                .filter(|i| *i != owner)
                .all(|i| hash(owner) < hash(i))
        })
        .expect("a VIP for every node in 51 addresses")
}

fn metallb_labels() -> Value {
    json!({"app": "metallb", "component": "speaker"})
}

/// Dropped in this order: the speakers stop, their pins go, the namespaces, the API.
struct Cluster {
    speakers: Vec<Option<NodeSpeaker>>,
    _pins: Vec<ScratchPinDir>,
    lab: ClusterLab,
    scratch: Scratch,
    server: TestApiServer,
    vip: Ipv4Addr,
    rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// The API with everything but the speaker Pods, and the lab; no speaker yet.
    fn new(tag: &str, nodes: usize, vip: Ipv4Addr) -> Self {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let server = {
            let _context = rt.enter();
            start_server(&rt)
        };
        seed_pool_and_advertisement(&server, NS, "192.0.2.100-192.0.2.150");
        let seed = |group: &str, version: &str, plural: &str, object: Value| {
            server.seed(group, version, plural, object).expect("seed");
        };
        seed("", "v1", "services", service_with_address(vip));
        seed(
            "discovery.k8s.io",
            "v1",
            "endpointslices",
            ready_endpoint_on(&node_name(0)),
        );
        for i in 0..nodes {
            seed(
                "",
                "v1",
                "nodes",
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name(i)}}),
            );
        }
        let lab = ClusterLab::new(tag, nodes).expect("lab");
        let scratch = Scratch(std::env::temp_dir().join(unique_name("k8sml")));
        std::fs::create_dir_all(&scratch.0).expect("scratch dir");
        Self {
            speakers: (0..nodes).map(|_| None).collect(),
            _pins: (0..nodes)
                .map(|i| ScratchPinDir::new(&format!("kml{i}")))
                .collect(),
            lab,
            scratch,
            server,
            vip,
            rt,
        }
    }

    fn add_pod(&self, i: usize, labels: Value) {
        self.server
            .seed("", "v1", "pods", speaker_pod(NS, i, labels))
            .expect("pod");
    }

    /// Starts node `i`'s speaker in Kubernetes mode with `key` in a mounted-Secret
    /// directory, and `extra` flags, as Pod `speaker-node-i`.
    fn start(&mut self, i: usize, key: &str, extra: &[&str]) {
        self.start_as(i, key, extra, None);
    }

    /// [`Self::start`], as Pod `pod` (`None`: `speaker-node-i`).
    fn start_as(&mut self, i: usize, key: &str, extra: &[&str], pod: Option<String>) {
        let dir = self.scratch.0.join(format!("ml_secret_key-{i}"));
        std::fs::create_dir_all(&dir).expect("key dir");
        std::fs::write(dir.join("secretkey"), key).expect("key");
        let address = {
            let _context = self.rt.enter();
            self.server
                .serve_in_netns(&self.lab.node_ns[i])
                .expect("the API in the node namespace")
        };
        let kubeconfig = self.scratch.0.join(format!("kubeconfig-{i}"));
        std::fs::write(
            &kubeconfig,
            self.server
                .kubeconfig(Some(address), Some(&SPEAKER.user(NS))),
        )
        .expect("kubeconfig");
        let spec = SpeakerSpec {
            binary: BINARY.into(),
            config: PathBuf::new(),
            kubeconfig: Some(kubeconfig),
            pod_name: pod,
            key_file: dir,
            membership_port: MEMBERSHIP_PORT,
            metrics_addr: METRICS_ADDR.parse().expect("metrics address"),
            pin_dir: self._pins[i].path.clone(),
            log: self.scratch.0.join(format!("node-{i}.log")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        self.speakers[i] = Some(NodeSpeaker::start(&self.lab, i, spec).expect("speaker"));
    }

    fn log(&self, i: usize) -> String {
        self.speakers[i]
            .as_ref()
            .map(NodeSpeaker::log)
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        (0..self.speakers.len())
            .map(|i| format!("--- node-{i}\n{}", self.log(i)))
            .collect()
    }

    fn until_one_owner(&self, among: &[usize], what: &str) -> usize {
        self.lab
            .wait_one_owner(self.vip, among, DEADLINE)
            .unwrap_or_else(|last| {
                panic!(
                    "{what}: no single owner among {among:?}; last answers {last:?}\n{}",
                    self.logs()
                )
            })
    }

    /// Waits until `check` holds for the speakers' logs.
    fn until_logs(&self, what: &str, check: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let logs: Vec<String> = (0..self.speakers.len()).map(|i| self.log(i)).collect();
            if check(&logs) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}\n{}", self.logs());
            sleep(Duration::from_millis(100));
        }
    }
}

/// Whether `log` says that `node` is up as a member.
fn member_up(log: &str, node: usize) -> bool {
    log.lines()
        .any(|l| l.contains("membership: member up") && l.contains(&node_name(node)))
}

fn member_down(log: &str, node: usize) -> bool {
    log.lines()
        .any(|l| l.contains("membership: member down") && l.contains(&node_name(node)))
}

/// The owner's speaker is killed (kill -9) while its Pod stays Ready in the API, as
/// when the kubelet has not noticed yet: the gossip declares it down and another node
/// answers for the VIP.
#[test]
fn netns_kubernetes_membership_a_killed_owner_with_a_ready_pod_loses_its_vip() {
    let mut cluster = Cluster::new("k8smlkill", 3, vip_owned_by(0));
    for i in 0..3 {
        cluster.add_pod(i, metallb_labels());
    }
    for i in 0..3 {
        cluster.start(i, KEY, &[]);
    }
    cluster.until_logs("the speakers did not see each other", |logs| {
        (0..3).all(|i| (0..3).filter(|j| *j != i).all(|j| member_up(&logs[i], j)))
    });
    let owner = cluster.until_one_owner(&[0, 1, 2], "at start");
    assert_eq!(owner, 0, "the election's owner of {}", cluster.vip);

    if let Some(speaker) = cluster.speakers[owner].as_mut() {
        speaker.kill();
    }
    let next = cluster.until_one_owner(&[1, 2], "after the owner's speaker was killed");
    // Its Pod is still there and Ready: the gossip, not the API, moved the VIP.
    let pods = cluster.server.objects("", "v1", "pods");
    assert!(
        pods.iter()
            .any(|p| p["metadata"]["name"] == speaker_pod_name(owner)),
        "{pods:?}"
    );
    assert!(member_down(&cluster.log(next), owner), "{}", cluster.logs());
    rbac::assert_authorized(&cluster.server, &SPEAKER, NS);
}

/// Self-fencing as in standalone mode: the owner, with peers from the speaker Pods,
/// runs its heartbeat; stopped (SIGSTOP), its program stops answering after the
/// deadline and another node answers; running again, one node answers.
#[test]
fn netns_kubernetes_membership_a_hung_owner_fences_itself() {
    let mut cluster = Cluster::new("k8smlstop", 3, vip_owned_by(1));
    for i in 0..3 {
        cluster.add_pod(i, metallb_labels());
    }
    for i in 0..3 {
        cluster.start(i, KEY, &[]);
    }
    let owner = cluster.until_one_owner(&[0, 1, 2], "at start");
    assert_eq!(owner, 1, "the election's owner of {}", cluster.vip);
    let hung = cluster.speakers[owner]
        .as_ref()
        .expect("the owner's speaker");
    let fence = |what: &str, check: &dyn Fn(&FenceState, u64) -> bool| {
        hung.wait_fence(what, check)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    };
    fence("the heartbeat runs", &|state, _| {
        state.deadline_in.is_some() && !state.fenced
    });
    hung.signal(Signal::SIGSTOP).expect("SIGSTOP");
    fence("fenced while stopped", &|state, _| state.fenced);
    let next = cluster.until_one_owner(&[0, 2], "while the owner is stopped");
    fence("requests counted as fenced", &|state, fenced| {
        state.fenced && fenced > 0
    });
    hung.signal(Signal::SIGCONT).expect("SIGCONT");
    fence("answering again", &|state, _| !state.fenced);
    let settled = cluster.until_one_owner(&[0, 1, 2], "after SIGCONT");
    assert!(settled == owner || settled == next, "{settled}");
}

/// A speaker whose key is not the cluster's is refused by the others and never
/// admitted: the two that agree keep the VIP between them, although the election
/// would give it to the third; the third, outvoted, takes no VIP (it would answer
/// alone otherwise), and declares nobody down.
#[test]
fn netns_kubernetes_membership_a_speaker_with_another_key_is_not_admitted() {
    let mut cluster = Cluster::new("k8smlkey", 3, vip_owned_by(2));
    for i in 0..3 {
        cluster.add_pod(i, metallb_labels());
    }
    cluster.start(0, KEY, &[]);
    cluster.start(1, KEY, &[]);
    cluster.start(2, "another key, not the cluster's one", &[]);
    cluster.until_logs("refusals not logged, or node-2 not outvoted", |logs| {
        logs.iter().all(|l| l.contains("datagram refused"))
            && logs[2].contains("takes no VIP")
            && member_up(&logs[0], 1)
            && member_up(&logs[1], 0)
    });
    let owner = cluster.until_one_owner(&[0, 1], "node-2 is not admitted");
    // A while longer: still that one, never node-2.
    for _ in 0..10 {
        let answers = cluster.lab.arp_answers(cluster.vip).expect("arping");
        let owners: Vec<Option<usize>> = answers.iter().map(|m| cluster.lab.node_of(m)).collect();
        assert!(
            !owners.is_empty() && owners.iter().all(|o| *o == Some(owner)),
            "answers {answers:?}\n{}",
            cluster.logs()
        );
    }
    for i in 0..3 {
        let log = cluster.log(i);
        for j in 0..3 {
            assert!(
                !(member_up(&log, j) && (i == 2 || j == 2)),
                "node-{i} says node-{j} is up\n{}",
                cluster.logs()
            );
            assert!(
                !member_down(&log, j),
                "node-{i} says node-{j} is down\n{}",
                cluster.logs()
            );
        }
    }
}

/// The peers follow the speaker Pods without a restart: node-0 selects only Pods
/// labelled for this test, node-1's selector matches nothing (it never asks anyone
/// in). Each alone answers for the VIP; once node-1's Pod appears with node-0's
/// labels, node-0 asks it in, they become members, and one answers.
#[test]
fn netns_kubernetes_membership_a_speaker_pod_that_appears_is_joined() {
    let mut cluster = Cluster::new("k8smlpod", 2, vip_owned_by(0));
    let label = unique_name("sel");
    let labels = json!({"app": "metallb", "component": "speaker", "lab": label});
    cluster.add_pod(0, labels.clone());
    let selector = format!("lab={label}");
    cluster.start(0, KEY, &["--speaker-selector", &selector]);
    // Without a Pod, its address is given (METALLB_ML_BIND_ADDR's flag).
    let node1 = ClusterLab::node_v4(1).to_string();
    cluster.start(
        1,
        KEY,
        &[
            "--speaker-selector",
            "lab=nothing-at-all",
            "--membership-bind-addr",
            &node1,
        ],
    );
    // Both alone, both answer.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answers = cluster.lab.arp_answers(cluster.vip).expect("arping");
        let mut owners: Vec<usize> = answers
            .iter()
            .filter_map(|m| cluster.lab.node_of(m))
            .collect();
        owners.sort();
        owners.dedup();
        if owners == [0, 1] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "each alone should answer: {answers:?}\n{}",
            cluster.logs()
        );
        sleep(Duration::from_millis(100));
    }
    assert!(!member_up(&cluster.log(0), 1));

    cluster.add_pod(1, labels);
    cluster.until_logs("node-0 did not join node-1's new Pod", |logs| {
        member_up(&logs[0], 1) && member_up(&logs[1], 0)
    });
    let owner = cluster.until_one_owner(&[0, 1], "members of one cluster");
    assert_eq!(owner, 0, "the election's owner of {}", cluster.vip);
    assert!(
        cluster.log(0).contains("membership: the peers changed"),
        "{}",
        cluster.logs()
    );

    // The Pod goes: node-0 no longer asks it in, but node-1 runs and stays a member
    // (the gossip, not the Pod list, says who is alive).
    {
        let _context = cluster.rt.enter();
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(cluster.server.client().expect("client"), NS);
        cluster
            .rt
            .block_on(pods.delete(&speaker_pod_name(1), &Default::default()))
            .expect("delete the Pod");
    }
    cluster.until_logs("node-0 did not see the Pod go", |logs| {
        logs[0]
            .lines()
            .filter(|l| l.contains("membership: the peers changed"))
            .count()
            >= 2
    });
    assert_eq!(cluster.until_one_owner(&[0, 1], "the Pod went"), 0);
    assert!(!member_down(&cluster.log(0), 1), "{}", cluster.logs());
}

/// A rolling update of the speaker DaemonSet on the owner's node, the speakers run
/// with --keep-datapath as `deploy/speaker.yaml` runs them, while the client asks
/// every 5 ms (`metallb_testkit::daemonset` plays the DaemonSet controller and the
/// kubelet): the stopping speaker asks the API, finds its Pod deleted for a newer
/// template and keeps its datapath; its peers hear that it restarts and keep the VIP
/// where it is; the old Pod goes and the successor Pod (another name, no IP until it
/// runs) starts a speaker that adopts the datapath and renews the heartbeat. Every
/// request is answered, by the owner. This is what Kubernetes mode adds to the
/// standalone restart (failover.rs): the stop decision looked up in the API, and the
/// peers following the speaker Pods as one goes and its successor comes.
#[test]
fn netns_kubernetes_membership_a_rolling_update_of_the_owner_loses_no_answer() {
    let mut cluster = Cluster::new("k8smlroll", 3, vip_owned_by(0));
    let mut daemonset =
        speaker_daemonset(&cluster.server, NS, 3, metallb_labels()).expect("the DaemonSet");
    for i in 0..3 {
        cluster.start(i, KEY, &["--keep-datapath"]);
    }
    cluster.until_logs("the speakers did not see each other", |logs| {
        (0..3).all(|i| (0..3).filter(|j| *j != i).all(|j| member_up(&logs[i], j)))
    });
    let owner = cluster.until_one_owner(&[0, 1, 2], "at start");
    assert_eq!(owner, 0, "the election's owner of {}", cluster.vip);
    let fence = |cluster: &Cluster, what: &str, check: &dyn Fn(&FenceState, u64) -> bool| {
        cluster.speakers[owner]
            .as_ref()
            .expect("the owner's speaker")
            .wait_fence(what, check)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.logs()));
    };
    fence(&cluster, "the heartbeat runs", &|state, _| {
        state.deadline_in.is_some() && !state.fenced
    });
    let asker = support::ArpAsker::for_cluster_client(&cluster.lab).expect("ARP socket");
    let vip = cluster.vip;
    let (answers, ()) = support::answers_while(&asker, vip, || {
        sleep(Duration::from_millis(200));
        daemonset.roll_out(&cluster.server).expect("a new template");
        daemonset
            .delete_pod(&cluster.server, owner)
            .expect("delete the owner's Pod");
        let stopped = cluster.speakers[owner]
            .as_mut()
            .expect("the owner's speaker")
            .stop(Duration::from_secs(10));
        assert!(stopped, "stopped\n{}", cluster.logs());
        let next = daemonset
            .replace_pod(&cluster.server, owner)
            .expect("the successor Pod");
        assert_ne!(next, speaker_pod_name(owner));
        cluster.start_as(owner, KEY, &["--keep-datapath"], Some(next));
        daemonset
            .pod_running(&cluster.server, owner)
            .expect("the successor Pod runs");
        // The new speaker renews the heartbeat: the deadline is the fence deadline
        // again, not the rest of the restart grace.
        fence(
            &cluster,
            "the successor renews the heartbeat",
            &|state, _| {
                state
                    .deadline_in
                    .is_some_and(|left| left < Duration::from_secs(1))
            },
        );
        sleep(Duration::from_millis(500));
    });
    support::assert_every_answer_from(&answers, cluster.lab.node_macs[owner].0, &cluster.logs());
    let log = cluster.log(owner);
    assert!(
        log.contains(&format!(
            "rolling update of DaemonSet {NS}/speaker (Pod of template generation 1, the DaemonSet is at 2): the next Pod adopts the datapath"
        )),
        "{log}"
    );
    assert!(log.contains("adopted pinned VIP entries"), "{log}");
    assert!(
        cluster.log(1).contains("member restarts"),
        "{}",
        cluster.logs()
    );
    assert_eq!(
        cluster.until_one_owner(&[0, 1, 2], "after the rolling update"),
        owner
    );
    rbac::assert_authorized(&cluster.server, &SPEAKER, NS);
}

/// The controller makes the `memberlist` Secret when it is missing (MetalLB's
/// `--ml-secret-name`): a random key under `secretkey` that a speaker takes from the
/// mounted directory, owned by the controller's Deployment (`--deployment`); an
/// existing Secret is left as it is. Its requests are what its RBAC grants.
#[test]
fn the_controller_makes_the_memberlist_secret_when_missing_and_keeps_it() {
    use metallb_user::{
        kubernetes::{memberlist_secret, rbac::CONTROLLER},
        membership::SharedKey,
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _context = rt.enter();
    let server = rt.block_on(TestApiServer::start()).expect("test server");
    let client = rbac::client(&server, &CONTROLLER, NS);
    let name = memberlist_secret::DEFAULT_SECRET;
    let owner = memberlist_secret::DEFAULT_DEPLOYMENT;
    // Its owner must exist: an error names it, and no Secret is made.
    let missing = rt
        .block_on(memberlist_secret::ensure(&client, NS, name, Some(owner)))
        .expect_err("no Deployment yet");
    assert!(
        missing
            .to_string()
            .contains(&format!("{NS}/{owner} (--deployment)")),
        "{missing}"
    );
    assert_eq!(
        server.objects("", "v1", "secrets"),
        Vec::<serde_json::Value>::new()
    );
    let deployment = server
        .seed(
            "apps",
            "v1",
            "deployments",
            serde_json::json!({"metadata": {"name": owner, "namespace": NS}, "spec": {}}),
        )
        .expect("the controller's Deployment");
    let made = rt
        .block_on(memberlist_secret::ensure(&client, NS, name, Some(owner)))
        .expect("ensure");
    assert!(made);
    let secrets = server.objects("", "v1", "secrets");
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    // Owned by the controller's Deployment, as MetalLB's: deleting MetalLB deletes it.
    assert_eq!(
        secrets[0]["metadata"]["ownerReferences"],
        serde_json::json!([{
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": owner,
            "uid": deployment["metadata"]["uid"],
        }])
    );
    let encoded = secrets[0]["data"]["secretkey"].as_str().expect("secretkey");
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64 data");
    // 16 random bytes in unpadded base64, as MetalLB's controller writes them.
    assert_eq!(key.len(), 22, "{key:?}");
    assert_eq!(secrets[0]["metadata"]["name"], name);

    // Mounted, it is a directory with `secretkey`: the speakers' key.
    let dir = std::env::temp_dir().join(unique_name("ml_secret_key"));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("secretkey"), &key).expect("file");
    let loaded = SharedKey::from_file(&dir);
    std::fs::remove_dir_all(&dir).expect("remove");
    let loaded = loaded.expect("the mounted key");
    assert_eq!(
        loaded.open(&SharedKey::new(&key).seal(b"ping")),
        Some(&b"ping"[..])
    );

    // Again (a restart, another replica): kept.
    let made = rt
        .block_on(memberlist_secret::ensure(&client, NS, name, Some(owner)))
        .expect("ensure");
    assert!(!made);
    assert_eq!(server.objects("", "v1", "secrets"), secrets);
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}
