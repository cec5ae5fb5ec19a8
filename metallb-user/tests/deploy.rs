//! The manifests under `deploy/`, as `kubectl kustomize deploy/` renders them (and so as
//! `kubectl apply -k deploy/` applies them): every object is a valid object of its
//! Kubernetes type, the RBAC is the table in kubernetes/rbac.rs, the workloads are
//! set up as the README says; and the Dockerfile builds what the manifests run.
//! (The containers' arguments are parsed by the binary's own parser: main.rs's tests.)

use std::{collections::BTreeSet, path::Path};

use k8s_openapi::{
    api::{
        admissionregistration::v1::ValidatingWebhookConfiguration,
        apps::v1::{DaemonSet, Deployment},
        core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use metallb_user::{
    config::crd::{IPAddressPool, L2Advertisement},
    datapath::capabilities::{SPEAKER_CAPABILITIES, SPEAKER_OPTIONAL_CAPABILITIES},
    kubernetes::rbac::{self, COMPONENTS},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

const NS: &str = "metallb-system";
const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The port of /metrics, /healthz and /readyz in both workloads.
const METRICS_PORT: i64 = 7472;

fn rendered() -> Vec<Value> {
    metallb_testkit::kustomize::render(Path::new(DEPLOY))
}

fn title(object: &Value) -> String {
    format!(
        "{} {}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("kubectl kustomize deploy/ has no {kind} {name}"))
}

/// `object` read as `T` and written back: equal only when every field is one `T` has
/// (a misspelt or misplaced field would be dropped, and the API server would too).
fn round_trip<T: DeserializeOwned + Serialize>(object: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if same(&back, object) {
        Ok(())
    } else {
        Err(format!(
            "fields are lost when read as its type:\n  given: {object}\n  read:  {back}"
        ))
    }
}

/// Equal, a number being the same whether written 2 or 2.0 (schema bounds are floats).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn every_object_is_a_valid_object_of_its_kubernetes_type() {
    let objects = rendered();
    assert!(!objects.is_empty());
    for object in &objects {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let checked = match (api_version, kind) {
            ("v1", "Namespace") => round_trip::<Namespace>(object),
            ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(object),
            ("v1", "Service") => round_trip::<Service>(object),
            ("v1", "ConfigMap") => round_trip::<ConfigMap>(object),
            ("v1", "Secret") => round_trip::<Secret>(object),
            ("apps/v1", "Deployment") => round_trip::<Deployment>(object),
            ("apps/v1", "DaemonSet") => round_trip::<DaemonSet>(object),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>(object),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                round_trip::<ClusterRoleBinding>(object)
            }
            ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<Role>(object),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>(object),
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                round_trip::<CustomResourceDefinition>(object)
            }
            ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
                round_trip::<ValidatingWebhookConfiguration>(object)
            }
            ("metallb.io/v1beta1", "IPAddressPool") => round_trip::<IPAddressPool>(object),
            ("metallb.io/v1beta1", "L2Advertisement") => round_trip::<L2Advertisement>(object),
            _ => Err(format!(
                "no type to check {api_version} {kind} against: add it to this test"
            )),
        };
        if let Err(problem) = checked {
            panic!("{}: {problem}", title(object));
        }
        // Every namespaced object is in MetalLB's namespace.
        let namespace = object["metadata"]["namespace"].as_str();
        assert!(
            namespace.is_none() || namespace == Some(NS),
            "{} is in {namespace:?}",
            title(object)
        );
    }
    // Apply order: kubectl sorts the namespace and the CRDs first.
    assert_eq!(title(&objects[0]), format!("Namespace {NS}"));
}

#[test]
fn every_manifest_of_deploy_is_in_the_kustomization() {
    let kustomization: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(Path::new(DEPLOY).join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let listed: BTreeSet<String> = ["resources", "patchesStrategicMerge"]
        .iter()
        .flat_map(|key| kustomization[*key].as_array().cloned().unwrap_or_default())
        .chain(
            kustomization["patchesJson6902"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|patch| patch["path"].clone()),
        )
        .filter_map(|entry| entry.as_str().map(str::to_owned))
        .collect();
    let mut on_disk = BTreeSet::new();
    for entry in std::fs::read_dir(DEPLOY).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".yaml") && name != "kustomization.yaml" {
            on_disk.insert(name);
        }
    }
    on_disk.insert("crds/metallb.io.yaml".into());
    assert_eq!(
        listed, on_disk,
        "deploy/kustomization.yaml and deploy/*.yaml"
    );
}

#[test]
fn the_committed_rbac_is_what_the_table_generates() {
    let generated = rbac::manifests(NS).unwrap();
    let path = Path::new(DEPLOY).join("rbac.yaml");
    if std::env::var_os("UPDATE_RBAC").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "deploy/rbac.yaml differs from the table in metallb-user/src/kubernetes/rbac.rs. \
         Regenerate it with `UPDATE_RBAC=1 cargo test -p metallb-user --test deploy` (or \
         `metallb rbac > deploy/rbac.yaml`) and review the diff."
    );
}

#[test]
fn the_accounts_roles_and_bindings_applied_are_exactly_the_table() {
    let objects = rendered();
    const RBAC_KINDS: &[&str] = &[
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let mut applied: Vec<Value> = objects
        .iter()
        .filter(|o| RBAC_KINDS.contains(&o["kind"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    let mut wanted: Vec<Value> = rbac::objects(NS)
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    let order = |o: &Value| title(o);
    applied.sort_by_key(order);
    wanted.sort_by_key(order);
    assert_eq!(applied, wanted);

    // Each workload runs as its component's account.
    let accounts: Vec<(String, String)> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "DaemonSet")
        .map(|o| {
            (
                title(o),
                o["spec"]["template"]["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        accounts,
        [
            ("Deployment controller".to_owned(), "controller".to_owned()),
            ("DaemonSet speaker".to_owned(), "speaker".to_owned()),
        ]
    );
    assert_eq!(
        COMPONENTS.iter().map(|c| c.name).collect::<Vec<_>>(),
        ["controller", "speaker"]
    );
}

/// The workload's own container: the one named as the workload (the speaker's Pod
/// runs FRR beside it).
fn container(workload: &Value) -> &Value {
    let containers = workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    containers
        .iter()
        .find(|c| c["name"] == workload["metadata"]["name"])
        .unwrap_or_else(|| panic!("no container named as {}", title(workload)))
}

fn args(container: &Value) -> Vec<&str> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

fn env_field(container: &Value, name: &str) -> Option<String> {
    container["env"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["valueFrom"]["fieldRef"]["fieldPath"].as_str())
        .map(str::to_owned)
}

/// Probes, metrics port and Prometheus annotations, alike in both workloads.
fn assert_observable(workload: &Value) {
    let name = title(workload);
    let template = &workload["spec"]["template"];
    let container = container(workload);
    let ports = container["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == METRICS_PORT),
        "{name}: {ports:?}"
    );
    assert!(
        args(container).contains(&format!("--metrics-addr=0.0.0.0:{METRICS_PORT}").as_str()),
        "{name}"
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(
            container[probe]["httpGet"],
            json!({"path": path, "port": "metrics"}),
            "{name}: {probe}"
        );
    }
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true", "{name}");
    assert_eq!(
        annotations["prometheus.io/port"],
        METRICS_PORT.to_string(),
        "{name}"
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics", "{name}");
    // Pods carry MetalLB's labels, and the workload selects exactly its own.
    let labels = &template["metadata"]["labels"];
    assert_eq!(labels["app"], "metallb", "{name}");
    assert_eq!(
        workload["spec"]["selector"]["matchLabels"], *labels,
        "{name}"
    );
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"], false,
        "{name}"
    );
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"], true,
        "{name}"
    );
}

#[test]
fn the_speaker_is_a_host_network_daemonset_with_the_bpffs_and_only_its_capabilities() {
    let objects = rendered();
    let speaker = find(&objects, "DaemonSet", "speaker");
    assert_observable(speaker);
    let pod = &speaker["spec"]["template"]["spec"];
    let container = container(speaker);
    assert_eq!(
        speaker["spec"]["template"]["metadata"]["labels"],
        json!({"app": "metallb", "component": "speaker"}),
        "MetalLB's labels: the speakers find their peers by them"
    );
    assert_eq!(pod["hostNetwork"], true);

    // The node's name from the downward API, passed as --node-name.
    assert_eq!(
        env_field(container, "NODE_NAME").as_deref(),
        Some("spec.nodeName")
    );
    assert_eq!(
        env_field(container, "METALLB_POD_NAME").as_deref(),
        Some("metadata.name")
    );
    assert_eq!(
        env_field(container, "METALLB_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    let args = args(container);
    assert_eq!(args[0], "speaker");
    assert!(!args.iter().any(|a| a.starts_with("--config")), "{args:?}");
    for wanted in ["--node-name=$(NODE_NAME)", "--keep-datapath"] {
        assert!(args.contains(&wanted), "{wanted} not in {args:?}");
    }

    // The host's bpffs, mounted where the pins go.
    let volumes = pod["volumes"].as_array().unwrap();
    let bpffs = volumes
        .iter()
        .find(|v| v["hostPath"]["path"] == "/sys/fs/bpf")
        .expect("a hostPath volume of /sys/fs/bpf");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == bpffs["name"])
        .expect("the bpffs volume mounted");
    assert_eq!(mount["mountPath"], "/sys/fs/bpf");
    assert_eq!(mount["mountPropagation"], "HostToContainer");
    // The root filesystem is read-only: the record of the interfaces needs a volume.
    let run = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == metallb_user::interface_report::RUN_DIR)
        .expect("a volume where the speaker records its interfaces");
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == run["name"] && v["emptyDir"].is_object())
    );
    assert!(
        args.contains(&"--pin-dir=/sys/fs/bpf/metallb"),
        "the pins on the host's bpffs: {args:?}"
    );

    // Not privileged: exactly the capabilities the datapath needs.
    let security = &container["securityContext"];
    assert_ne!(security["privileged"], true);
    assert_ne!(pod["securityContext"]["privileged"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    // Exactly the list tests/capabilities.rs proves enough, one by one, then the
    // optional ones (the fence heartbeat's real-time priority).
    let needed: Vec<&str> = SPEAKER_CAPABILITIES
        .iter()
        .chain(SPEAKER_OPTIONAL_CAPABILITIES)
        .map(|r| r.capability.kubernetes_name())
        .collect();
    assert_eq!(security["capabilities"]["add"], json!(needed));
    for sharing in ["hostPID", "hostIPC"] {
        assert_ne!(pod[sharing], true, "{sharing}");
    }

    // On control-plane nodes too.
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert!(tolerations.contains(&json!({
        "key": "node-role.kubernetes.io/control-plane",
        "operator": "Exists",
        "effect": "NoSchedule",
    })));

    // Rolling updates: one node at a time, never two speakers on a node; a short grace
    // (the handover keeps answering, see speaker.yaml).
    assert_eq!(
        speaker["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(pod["terminationGracePeriodSeconds"], 10);
    assert_eq!(container["lifecycle"], Value::Null, "no preStop hook");
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)?["value"]
        .as_str()
}

/// Membership as MetalLB's speaker has it: its variables, port 7946 (TCP and UDP),
/// and the `memberlist` Secret mounted where METALLB_ML_SECRET_KEY_PATH says; the
/// controller makes that Secret (--ml-secret-name), owned by its Deployment
/// (--deployment), with the permissions to.
#[test]
fn the_speakers_gossip_with_metallb_s_memberlist_variables_port_and_secret() {
    let objects = rendered();
    let speaker = find(&objects, "DaemonSet", "speaker");
    let pod = &speaker["spec"]["template"]["spec"];
    let controller = find(&objects, "Deployment", "controller");
    let controller_args = args(container(controller));
    let container = container(speaker);
    assert_eq!(
        env_field(container, "METALLB_ML_BIND_ADDR").as_deref(),
        Some("status.podIP")
    );
    assert_eq!(
        env_value(container, "METALLB_ML_LABELS"),
        Some(metallb_user::kubernetes::speaker::DEFAULT_SPEAKER_SELECTOR)
    );
    // The selector selects the DaemonSet's own Pods.
    let labels = &speaker["spec"]["template"]["metadata"]["labels"];
    for pair in metallb_user::kubernetes::speaker::DEFAULT_SPEAKER_SELECTOR.split(',') {
        let (key, value) = pair.split_once('=').unwrap();
        assert_eq!(labels[key], value, "{pair}");
    }
    let port = metallb_user::membership::DEFAULT_PORT;
    assert_eq!(
        env_value(container, "METALLB_ML_BIND_PORT"),
        Some(port.to_string().as_str())
    );
    let ports = container["ports"].as_array().unwrap();
    for (name, protocol) in [("memberlist-tcp", "TCP"), ("memberlist-udp", "UDP")] {
        assert!(
            ports.contains(&json!({"name": name, "containerPort": port, "protocol": protocol})),
            "{ports:?}"
        );
    }
    let key_path = env_value(container, "METALLB_ML_SECRET_KEY_PATH").expect("key path");
    assert_eq!(key_path, "/etc/ml_secret_key");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == key_path)
        .expect("the key mounted");
    assert_eq!(mount["readOnly"], true);
    let secret_name = metallb_user::kubernetes::memberlist_secret::DEFAULT_SECRET;
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("its volume");
    assert_eq!(volume["secret"]["secretName"], secret_name);
    // Not optional: a speaker never starts without the key.
    assert_ne!(volume["secret"]["optional"], true);

    assert!(
        controller_args.contains(&format!("--ml-secret-name={secret_name}").as_str()),
        "{controller_args:?}"
    );
    // Owned by the controller's own Deployment, whose name the RBAC grants reading.
    let deployment = metallb_user::kubernetes::memberlist_secret::DEFAULT_DEPLOYMENT;
    assert_eq!(controller["metadata"]["name"], deployment);
    assert!(
        controller_args.contains(&format!("--deployment={deployment}").as_str()),
        "{controller_args:?}"
    );
    // No Secret with a key in the manifests: each cluster gets its own.
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "Secret" && o["metadata"]["name"] == secret_name)
    );
}

/// BGP mode: FRR in a container of its own beside the speaker, as MetalLB's FRR mode
/// runs it, sharing one volume with the speaker for its configuration and sockets, with
/// the capabilities FRR's daemons ask for and no more.
#[test]
fn the_speaker_pod_runs_frr_beside_it_sharing_the_work_directory() {
    let objects = rendered();
    let speaker = find(&objects, "DaemonSet", "speaker");
    let pod = &speaker["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["speaker", "frr"]);
    let (speaker_container, frr) = (container(speaker), &containers[1]);
    assert_eq!(
        frr["image"], speaker_container["image"],
        "one image holds both"
    );
    let frr_args = args(frr);
    assert_eq!(frr_args[0], "frr");
    let work_dir = frr_args
        .iter()
        .find_map(|a| a.strip_prefix("--frr-work-dir="))
        .expect("frr --frr-work-dir");
    let speaker_args = args(speaker_container);
    for wanted in [
        "--frr-external".to_owned(),
        format!("--frr-work-dir={work_dir}"),
    ] {
        assert!(
            speaker_args.contains(&wanted.as_str()),
            "{wanted} not in {speaker_args:?}"
        );
    }
    // One emptyDir volume at the work directory in both containers.
    let mounted = |container: &Value| -> Value {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == work_dir)
            .map(|m| m["name"].clone())
            .unwrap_or_else(|| panic!("{work_dir} not mounted in {}", container["name"]))
    };
    let volume = mounted(frr);
    assert_eq!(mounted(speaker_container), volume);
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == volume && v["emptyDir"].is_object()),
        "{volume} is an emptyDir"
    );
    // Least privilege: FRR's capabilities only, not privileged, nothing written outside
    // its volumes; the speaker reloads FRR through the sockets, and signals no process
    // of the other container.
    let security = &frr["securityContext"];
    assert_ne!(security["privileged"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    // tests/bgp_lab.rs runs `metallb frr` with exactly these.
    assert_eq!(
        security["capabilities"]["add"],
        json!(metallb_user::bgp::frr_daemon::FRR_CONTAINER_CAPABILITIES)
    );
    assert_ne!(pod["shareProcessNamespace"], true);
}

#[test]
fn the_controller_runs_two_electing_replicas_behind_the_webhook_service() {
    let objects = rendered();
    let controller = find(&objects, "Deployment", "controller");
    assert_observable(controller);
    assert_eq!(controller["spec"]["replicas"], 2);
    let pod = &controller["spec"]["template"]["spec"];
    let container = container(controller);
    let args = args(container);
    assert_eq!(args[0], "controller");
    assert!(
        !args.iter().any(|a| a.starts_with("--leader-elect=false")),
        "{args:?}"
    );
    assert_eq!(
        env_field(container, "METALLB_POD_NAME").as_deref(),
        Some("metadata.name"),
        "each replica's identity in the Lease"
    );
    assert_eq!(
        env_field(container, "METALLB_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        container["securityContext"]["capabilities"],
        json!({"drop": ["ALL"]})
    );

    // The webhook Service reaches the replicas' webhook port.
    let service = find(&objects, "Service", "metallb-webhook-service");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}])
    );
    let webhook_port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "webhook")
        .expect("a port named webhook");
    assert_eq!(webhook_port["containerPort"], 9443);
    let labels = controller["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(labels.get(key), Some(value), "the Service selects {key}");
    }
}

/// The Dockerfile cannot be built here (no Docker engine): its stages, the files it
/// copies and what it runs are checked instead.
#[test]
fn the_dockerfile_builds_the_binary_the_manifests_run() {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    let instructions: Vec<(String, String)> = dockerfile
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (op, rest) = l.split_once(' ').unwrap_or((l, ""));
            (op.to_uppercase(), rest.trim().to_owned())
        })
        .collect();
    let stages: Vec<&str> = instructions
        .iter()
        .filter(|(op, _)| op == "FROM")
        .map(|(_, rest)| rest.as_str())
        .collect();
    assert_eq!(stages.len(), 2, "a builder and a runtime stage: {stages:?}");
    assert!(stages[0].ends_with(" AS builder"), "{stages:?}");
    assert!(
        stages[1].starts_with("debian:") && stages[1].contains("-slim"),
        "{stages:?}"
    );

    // The builder: nightly with rust-src and the bpf-linker that xtask installs.
    let setup = std::fs::read_to_string(Path::new(ROOT).join("xtask/src/setup.rs")).unwrap();
    let linker = setup
        .split("BPF_LINKER_VERSION: &str = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let runs: String = instructions
        .iter()
        .filter(|(op, _)| op == "RUN")
        .map(|(_, rest)| rest.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    for wanted in [
        "nightly".to_owned(),
        "rust-src".to_owned(),
        format!("bpf-linker@{linker}"),
        "cargo build --release --locked -p metallb-user".to_owned(),
    ] {
        assert!(runs.contains(&wanted), "no RUN does {wanted:?}:\n{runs}");
    }

    // What the builder copies from the context exists; target/ and .git stay out.
    for (op, rest) in &instructions {
        if op == "COPY" && !rest.starts_with("--from") {
            let sources: Vec<&str> = rest.split_whitespace().collect();
            for source in &sources[..sources.len() - 1] {
                assert!(
                    Path::new(ROOT).join(source).exists(),
                    "COPY {source}: not in the repository"
                );
            }
        }
    }
    let ignored = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap();
    for kept_out in ["target", ".git"] {
        assert!(
            ignored
                .lines()
                .any(|l| l.trim().trim_start_matches('/') == kept_out),
            ".dockerignore must leave out {kept_out}"
        );
    }

    // The runtime: the release binary as the entrypoint, a non-root user by default.
    let copied: Vec<&str> = instructions
        .iter()
        .filter(|(op, rest)| op == "COPY" && rest.starts_with("--from=builder"))
        .map(|(_, rest)| rest.as_str())
        .collect();
    assert_eq!(
        copied,
        ["--from=builder /src/target/release/metallb /usr/local/bin/metallb"]
    );
    let last = |wanted: &str| {
        instructions
            .iter()
            .rev()
            .find(|(op, _)| op == wanted)
            .map(|(_, rest)| rest.as_str())
    };
    assert_eq!(last("ENTRYPOINT"), Some("[\"/usr/local/bin/metallb\"]"));
    // FRR in the runtime image: the frr container's daemons, the speaker's
    // frr-reload.py and vtysh.
    let runtime_runs: Vec<&str> = instructions
        .iter()
        .skip_while(|(op, rest)| !(op == "FROM" && rest.starts_with("debian:")))
        .filter(|(op, _)| op == "RUN")
        .map(|(_, rest)| rest.as_str())
        .collect();
    assert!(
        runtime_runs.iter().any(|r| r.contains("apt-get install")
            && r.contains(" frr ")
            && r.contains("frr-pythontools")
            // FRR's daemons run as root (`metallb frr`): FRR wants root in its vty group.
            && r.contains("usermod -a -G frrvty root")),
        "{runtime_runs:?}"
    );
    assert_eq!(last("USER"), Some("65532:65532"));
    // The image the manifests name is this one (built under that name).
    let objects = rendered();
    for workload in ["Deployment controller", "DaemonSet speaker"] {
        let (kind, name) = workload.split_once(' ').unwrap();
        let image = container(find(&objects, kind, name))["image"]
            .as_str()
            .unwrap();
        assert!(image.starts_with("metallb-xdp:"), "{workload}: {image}");
    }
}

/// The optional PodMonitor (deploy/prometheus/) scrapes both workloads' metrics port.
#[test]
fn the_pod_monitor_scrapes_both_workloads() {
    let text =
        std::fs::read_to_string(Path::new(DEPLOY).join("prometheus/podmonitor.yaml")).unwrap();
    let monitor: Value = serde_yaml_ng::from_str(&text).unwrap();
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["kind"], "PodMonitor");
    assert_eq!(monitor["metadata"]["namespace"], NS);
    let endpoints = monitor["spec"]["podMetricsEndpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    let objects = rendered();
    for (kind, name) in [("Deployment", "controller"), ("DaemonSet", "speaker")] {
        let workload = find(&objects, kind, name);
        let labels = workload["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .unwrap();
        for (key, value) in monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap()
        {
            assert_eq!(labels.get(key), Some(value), "{kind} {name}: {key}");
        }
        let ports = container(workload)["ports"].as_array().unwrap();
        assert!(
            ports.iter().any(|p| p["name"] == endpoints[0]["port"]),
            "{kind} {name} has no port {}",
            endpoints[0]["port"]
        );
    }
    assert_eq!(endpoints[0]["path"], "/metrics");
}
