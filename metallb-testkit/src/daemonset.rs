//! The speaker DaemonSet in a [`TestApiServer`], kept as the DaemonSet controller and
//! the kubelet keep it, for the Kubernetes-mode tests and bench (the test server runs
//! no controller): the DaemonSet `speaker`, and on every node a speaker Pod it owns
//! (`ownerReferences`, the `pod-template-generation` label), Running and Ready, its IP
//! the node's (`hostNetwork`).
//!
//! A rolling update (`maxUnavailable: 1`, `maxSurge: 0`, as `deploy/speaker.yaml`
//! has it) replaces one node's Pod in these steps, which the caller interleaves with
//! the speaker process it plays the container of:
//! 1. [`SpeakerDaemonSet::roll_out`]: a new Pod template; the DaemonSet's generation
//!    goes up, its Pods are of the older one until replaced;
//! 2. [`SpeakerDaemonSet::delete_pod`]: the controller deletes the node's Pod; it stays,
//!    marked for deletion (a finalizer stands for the kubelet's grace period), while
//!    the kubelet stops its container: the caller sends SIGTERM now and waits for the
//!    exit (the speaker asks the API whether it is being replaced);
//! 3. [`SpeakerDaemonSet::replace_pod`]: the kubelet saw the container exit, so the Pod
//!    goes, and the controller creates its successor on the node (a generated name, the
//!    current template generation), Pending, without an IP: the caller starts the next
//!    speaker as that Pod;
//! 4. [`SpeakerDaemonSet::pod_running`]: the kubelet started it: Running, the node's
//!    IP, Ready.
//!
//! Not modelled: the readiness probe's delay (Ready at once; with membership gossip the
//! live nodes come from the gossip, not from readiness), image pulls, the time the
//! controller and the kubelet take between the steps (the caller's).

use std::net::IpAddr;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::{TestApiServer, apiserver::Part};

/// The DaemonSet's name, as in `deploy/speaker.yaml`.
pub const DAEMONSET: &str = "speaker";

/// Holds a deleted Pod while "the kubelet" stops its container.
const KUBELET_FINALIZER: &str = "metallb-testkit/kubelet";

/// A speaker Pod on `node` named `name`, labelled `labels`, Running and Ready, its IP
/// `ip` (the node's, as with hostNetwork).
pub fn speaker_pod(namespace: &str, name: &str, node: &str, ip: IpAddr, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "speaker", "image": "metallb"}]},
        "status": running_status(ip),
    })
}

fn running_status(ip: IpAddr) -> Value {
    json!({
        "phase": "Running",
        "podIP": ip.to_string(),
        "conditions": [{"type": "Ready", "status": "True"}],
    })
}

/// The speaker DaemonSet and its Pods, one per node.
pub struct SpeakerDaemonSet {
    namespace: String,
    /// The template's labels (the speaker Pods' selector).
    labels: Value,
    uid: String,
    /// Each node's name and IP.
    nodes: Vec<(String, IpAddr)>,
    /// Each node's current Pod.
    pods: Vec<String>,
}

impl SpeakerDaemonSet {
    /// Seeds the namespace (unless there), the DaemonSet (template labelled `labels`) and, on each node of `nodes`
    /// (name, IP), a Running, Ready Pod of it named `pod_names(i)`.
    pub fn seed(
        server: &TestApiServer,
        namespace: &str,
        labels: Value,
        nodes: Vec<(String, IpAddr)>,
        pod_names: impl Fn(usize) -> String,
    ) -> anyhow::Result<Self> {
        // A speaker that finds no namespace takes it for deleted (an uninstall).
        if server
            .object("", "v1", "namespaces", "", namespace)
            .is_none()
        {
            server.seed(
                "",
                "v1",
                "namespaces",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            )?;
        }
        let daemonset = server.seed(
            "apps",
            "v1",
            "daemonsets",
            json!({
                "apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": DAEMONSET, "namespace": namespace},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"hostNetwork": true, "containers": [{"name": "speaker", "image": "metallb"}]},
                    },
                },
            }),
        )?;
        let uid = daemonset["metadata"]["uid"]
            .as_str()
            .context("the DaemonSet has no uid")?
            .to_owned();
        let mut model = Self {
            namespace: namespace.to_owned(),
            labels,
            uid,
            nodes,
            pods: Vec::new(),
        };
        let generation = model.generation(server)?;
        for i in 0..model.nodes.len() {
            let (node, ip) = model.nodes[i].clone();
            let mut pod = speaker_pod(
                namespace,
                &pod_names(i),
                &node,
                ip,
                model.pod_labels(generation),
            );
            model.owned(&mut pod);
            let pod = server.seed("", "v1", "pods", pod)?;
            model.pods.push(name_of(&pod)?);
        }
        Ok(model)
    }

    /// Node `i`'s current speaker Pod.
    pub fn pod(&self, i: usize) -> &str {
        &self.pods[i]
    }

    /// The DaemonSet's generation (that of its current Pod template).
    pub fn generation(&self, server: &TestApiServer) -> anyhow::Result<i64> {
        server
            .object("apps", "v1", "daemonsets", &self.namespace, DAEMONSET)
            .and_then(|d| d["metadata"]["generation"].as_i64())
            .context("no DaemonSet generation")
    }

    /// A new Pod template (as a new image would be): the DaemonSet's generation, which
    /// it returns, goes up.
    pub fn roll_out(&self, server: &TestApiServer) -> anyhow::Result<i64> {
        let mut daemonset = server
            .object("apps", "v1", "daemonsets", &self.namespace, DAEMONSET)
            .context("no DaemonSet")?;
        let next = self.generation(server)? + 1;
        daemonset["spec"]["template"]["metadata"]["annotations"] =
            json!({"metallb-testkit/rollout": next.to_string()});
        server.update(
            "apps",
            "v1",
            "daemonsets",
            &self.namespace,
            DAEMONSET,
            Part::Object,
            daemonset,
        )?;
        let generation = self.generation(server)?;
        anyhow::ensure!(
            generation == next,
            "the DaemonSet is at generation {generation}, not {next}"
        );
        Ok(generation)
    }

    /// The controller deletes node `i`'s Pod: marked for deletion until
    /// [`Self::replace_pod`] (the kubelet stops its container meanwhile).
    pub fn delete_pod(&self, server: &TestApiServer, i: usize) -> anyhow::Result<()> {
        let mut pod = self.current_pod(server, i)?;
        // The finalizer holds it in the store as the grace period holds it in a cluster.
        pod["metadata"]["finalizers"] = json!([KUBELET_FINALIZER]);
        self.write_pod(server, i, Part::Object, pod)?;
        server.delete("", "v1", "pods", &self.namespace, &self.pods[i])?;
        Ok(())
    }

    /// Node `i`'s old Pod goes (its container exited) and the controller creates its
    /// successor, of the current template generation, Pending, without an IP: its name.
    pub fn replace_pod(&mut self, server: &TestApiServer, i: usize) -> anyhow::Result<String> {
        let old = &self.pods[i];
        if let Some(mut pod) = server.object("", "v1", "pods", &self.namespace, old) {
            pod["metadata"]["finalizers"] = json!([]);
            server.update("", "v1", "pods", &self.namespace, old, Part::Object, pod)?;
        }
        anyhow::ensure!(
            server
                .object("", "v1", "pods", &self.namespace, old)
                .is_none(),
            "Pod {old} is still there: delete it first (delete_pod)"
        );
        let (node, _) = &self.nodes[i];
        let generation = self.generation(server)?;
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "generateName": format!("{DAEMONSET}-"),
                "namespace": self.namespace,
                "labels": self.pod_labels(generation),
            },
            "spec": {"nodeName": node, "containers": [{"name": "speaker", "image": "metallb"}]},
            "status": {"phase": "Pending"},
        });
        self.owned(&mut pod);
        let pod = server.seed("", "v1", "pods", pod)?;
        self.pods[i] = name_of(&pod)?;
        Ok(self.pods[i].clone())
    }

    /// The kubelet started node `i`'s Pod: Running, Ready, the node's IP.
    pub fn pod_running(&self, server: &TestApiServer, i: usize) -> anyhow::Result<()> {
        let (_, ip) = &self.nodes[i];
        let mut pod = self.current_pod(server, i)?;
        pod["status"] = running_status(*ip);
        self.write_pod(server, i, Part::Status, pod)
    }

    fn current_pod(&self, server: &TestApiServer, i: usize) -> anyhow::Result<Value> {
        server
            .object("", "v1", "pods", &self.namespace, &self.pods[i])
            .with_context(|| format!("no Pod {}", self.pods[i]))
    }

    fn write_pod(
        &self,
        server: &TestApiServer,
        i: usize,
        part: Part,
        pod: Value,
    ) -> anyhow::Result<()> {
        server.update("", "v1", "pods", &self.namespace, &self.pods[i], part, pod)?;
        Ok(())
    }

    fn pod_labels(&self, generation: i64) -> Value {
        let mut labels = self.labels.clone();
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(
                "pod-template-generation".into(),
                generation.to_string().into(),
            );
        }
        labels
    }

    /// Makes `pod` the DaemonSet's (its controller).
    fn owned(&self, pod: &mut Value) {
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "DaemonSet", "name": DAEMONSET,
            "uid": self.uid, "controller": true, "blockOwnerDeletion": true,
        }]);
    }
}

fn name_of(object: &Value) -> anyhow::Result<String> {
    object["metadata"]["name"]
        .as_str()
        .map(str::to_owned)
        .context("an object without a name")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The steps of a rolling update, as a stopping speaker's lookups see them.
    #[tokio::test]
    async fn a_rolling_update_replaces_a_pod_with_one_of_the_new_generation() {
        let server = TestApiServer::start().await.unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let labels = json!({"app": "metallb", "component": "speaker"});
        let mut daemonset =
            SpeakerDaemonSet::seed(&server, "ns", labels, vec![("node-0".into(), ip)], |i| {
                format!("speaker-node-{i}")
            })
            .unwrap();
        let pod = |name: &str| server.object("", "v1", "pods", "ns", name);
        let first = pod("speaker-node-0").unwrap();
        assert_eq!(first["metadata"]["labels"]["pod-template-generation"], "1");
        assert_eq!(
            first["metadata"]["ownerReferences"][0]["name"],
            json!(DAEMONSET)
        );
        assert_eq!(first["status"]["podIP"], "10.0.0.1");

        assert_eq!(daemonset.roll_out(&server).unwrap(), 2);
        daemonset.delete_pod(&server, 0).unwrap();
        let deleting = pod("speaker-node-0").unwrap();
        assert!(deleting["metadata"]["deletionTimestamp"].is_string());
        assert_eq!(
            deleting["metadata"]["labels"]["pod-template-generation"],
            "1"
        );

        let next = daemonset.replace_pod(&server, 0).unwrap();
        assert_ne!(next, "speaker-node-0");
        assert!(next.starts_with("speaker-"), "{next}");
        assert_eq!(daemonset.pod(0), next);
        assert_eq!(pod("speaker-node-0"), None);
        let pending = pod(&next).unwrap();
        assert_eq!(
            pending["metadata"]["labels"]["pod-template-generation"],
            "2"
        );
        assert_eq!(pending["spec"]["nodeName"], "node-0");
        assert_eq!(pending["status"], json!({"phase": "Pending"}));

        daemonset.pod_running(&server, 0).unwrap();
        let running = pod(&next).unwrap();
        assert_eq!(running["status"]["phase"], "Running");
        assert_eq!(running["status"]["podIP"], "10.0.0.1");
        assert_eq!(
            running["metadata"]["ownerReferences"][0]["uid"],
            server
                .object("apps", "v1", "daemonsets", "ns", DAEMONSET)
                .unwrap()["metadata"]["uid"]
        );
    }
}
