//! What the speaker does with its datapath when it is told to stop (SIGTERM), in a
//! DaemonSet that runs it with `--keep-datapath`: keep it for the next Pod, so that a
//! rolling update or a restart loses no answer, or remove it, so that an uninstall
//! leaves no program attached and no pin behind.
//!
//! The speaker looks up its own Pod, its namespace, its DaemonSet and its Node, and
//! [`decide`]s (a pure table):
//! - the API cannot be asked: **keep** (a speaker that comes back adopts the datapath;
//!   `metallb cleanup` removes it by hand);
//! - the namespace is being deleted, the DaemonSet is gone (deleted in the background,
//!   kubectl's default: the DaemonSet object is removed first, its Pods after) or being
//!   deleted (foreground: it carries a deletionTimestamp until its Pods are gone), the
//!   Pod belongs to no DaemonSet, the Node is gone or being deleted, or the Node no
//!   longer matches the DaemonSet's nodeSelector: **remove** (no speaker comes back);
//! - otherwise, a rolling update (the Pod is of an older template generation), a Pod
//!   deleted by hand or evicted, a container restart, the node shutting down:
//!   **keep** (the DaemonSet starts another speaker here, which adopts it).
//!
//! A Node that stops matching the DaemonSet's node affinity or stops tolerating a
//! taint is not told apart from an eviction (kept): `metallb cleanup --older-than`
//! is the safety net for what no speaker comes back to adopt.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Namespace, Node, Pod},
};
use kube::{Api, Client};

use crate::datapath::{Datapath, DatapathError};

/// How long [`on_stop`] waits for the API server in all: the DaemonSet's
/// `terminationGracePeriodSeconds` must leave room for it and the datapath's exit.
pub const STOP_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The label the DaemonSet controller puts on its Pods: the template generation they
/// were made from.
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// What to do with the datapath on stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopAction {
    /// Leave the program attached and the maps pinned for the next speaker.
    Keep,
    /// Detach and unpin everything.
    Remove,
}

impl StopAction {
    /// Does it: [`Datapath::leave_in_place`] or [`Datapath::shutdown`].
    pub fn apply(self, datapath: Datapath) -> Vec<DatapathError> {
        match self {
            StopAction::Keep => datapath.leave_in_place(),
            StopAction::Remove => datapath.shutdown(),
        }
    }
}

/// The action and why, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopDecision {
    pub action: StopAction,
    pub reason: String,
}

/// The speaker's Pod, as the decision needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    pub name: String,
    pub deleting: bool,
    /// The DaemonSet that controls it, if one does.
    pub daemonset: Option<String>,
    pub node_name: Option<String>,
    /// Its `pod-template-generation` label.
    pub template_generation: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonSetFacts {
    pub deleting: bool,
    pub generation: Option<i64>,
    pub node_selector: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub deleting: bool,
    pub labels: BTreeMap<String, String>,
}

/// What the API said; `None` where an object does not exist (or was not needed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub namespace: String,
    pub namespace_deleting: bool,
    pub pod: Option<PodFacts>,
    pub daemonset: Option<DaemonSetFacts>,
    pub node: Option<NodeFacts>,
}

/// Keep or remove, from what was observed, or from why nothing could be.
pub fn decide(observed: &Result<Observed, String>) -> StopDecision {
    use StopAction::*;
    let decision = |action, reason: String| StopDecision { action, reason };
    let observed = match observed {
        Ok(observed) => observed,
        Err(error) => {
            return decision(
                Keep,
                format!(
                    "the API server could not tell whether MetalLB is being uninstalled ({error}): a speaker that comes back adopts the datapath; `metallb cleanup` removes it"
                ),
            );
        }
    };
    let namespace = &observed.namespace;
    if observed.namespace_deleting {
        return decision(
            Remove,
            format!("namespace {namespace} is being deleted: MetalLB is being uninstalled"),
        );
    }
    let Some(pod) = &observed.pod else {
        return decision(
            Keep,
            format!(
                "this speaker's Pod is no longer in namespace {namespace} (deleted with --force?), so its DaemonSet cannot be asked: a speaker that comes back adopts the datapath; `metallb cleanup` removes it"
            ),
        );
    };
    let Some(daemonset_name) = &pod.daemonset else {
        return decision(
            Remove,
            format!(
                "Pod {} belongs to no DaemonSet: no speaker will come to adopt the datapath",
                pod.name
            ),
        );
    };
    let Some(daemonset) = &observed.daemonset else {
        return decision(
            Remove,
            format!("DaemonSet {namespace}/{daemonset_name} is gone: MetalLB was uninstalled"),
        );
    };
    if daemonset.deleting {
        return decision(
            Remove,
            format!(
                "DaemonSet {namespace}/{daemonset_name} is being deleted: MetalLB is being uninstalled"
            ),
        );
    }
    let node_name = pod.node_name.as_deref().unwrap_or("?");
    match &observed.node {
        None => {
            return decision(
                Remove,
                format!("Node {node_name} is gone: it left the cluster"),
            );
        }
        Some(node) if node.deleting => {
            return decision(
                Remove,
                format!("Node {node_name} is being deleted: it leaves the cluster"),
            );
        }
        Some(node) => {
            let unmatched: Vec<String> = daemonset
                .node_selector
                .iter()
                .filter(|(key, value)| node.labels.get(*key) != Some(value))
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            if !unmatched.is_empty() {
                return decision(
                    Remove,
                    format!(
                        "Node {node_name} no longer matches the nodeSelector of DaemonSet {namespace}/{daemonset_name} ({}): no speaker comes back here",
                        unmatched.join(", ")
                    ),
                );
            }
        }
    }
    let older_template = matches!(
        (pod.template_generation, daemonset.generation),
        (Some(pod), Some(current)) if pod < current
    );
    let reason = if pod.deleting && older_template {
        format!(
            "rolling update of DaemonSet {namespace}/{daemonset_name} (Pod of template generation {}, the DaemonSet is at {}): the next Pod adopts the datapath",
            pod.template_generation.unwrap_or_default(),
            daemonset.generation.unwrap_or_default()
        )
    } else if pod.deleting {
        format!(
            "Pod {} is deleted (by hand or evicted) and DaemonSet {namespace}/{daemonset_name} starts another here, which adopts the datapath",
            pod.name
        )
    } else {
        format!(
            "Pod {} stays (its container restarts, or the node shuts down): the datapath is adopted when the speaker runs again",
            pod.name
        )
    };
    decision(Keep, reason)
}

fn api_error(what: &str, error: kube::Error) -> String {
    format!("reading {what}: {error}")
}

/// Reads what [`decide`] needs, stopping as soon as the answer is known: one `get` of
/// the namespace, the Pod, the DaemonSet and the Node, in this order (the speaker's
/// rules in `kubernetes/rbac.rs` grant them).
pub async fn observe(client: &Client, namespace: &str, pod_name: &str) -> Result<Observed, String> {
    let mut observed = Observed {
        namespace: namespace.to_owned(),
        ..Observed::default()
    };
    let namespace_object = Api::<Namespace>::all(client.clone())
        .get_opt(namespace)
        .await
        .map_err(|e| api_error(&format!("namespace {namespace}"), e))?;
    observed.namespace_deleting = namespace_object.is_none_or(|ns| {
        ns.metadata.deletion_timestamp.is_some()
            || ns
                .status
                .and_then(|s| s.phase)
                .is_some_and(|phase| phase == "Terminating")
    });
    if observed.namespace_deleting {
        return Ok(observed);
    }
    let Some(pod) = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt(pod_name)
        .await
        .map_err(|e| api_error(&format!("Pod {namespace}/{pod_name}"), e))?
    else {
        return Ok(observed);
    };
    let pod = pod_facts(&pod);
    let (Some(daemonset_name), node_name) = (pod.daemonset.clone(), pod.node_name.clone()) else {
        observed.pod = Some(pod);
        return Ok(observed);
    };
    observed.pod = Some(pod);
    let Some(daemonset) = Api::<DaemonSet>::namespaced(client.clone(), namespace)
        .get_opt(&daemonset_name)
        .await
        .map_err(|e| api_error(&format!("DaemonSet {namespace}/{daemonset_name}"), e))?
    else {
        return Ok(observed);
    };
    let daemonset = daemonset_facts(&daemonset);
    let deleting = daemonset.deleting;
    observed.daemonset = Some(daemonset);
    if deleting {
        return Ok(observed);
    }
    if let Some(node_name) = node_name {
        observed.node = Api::<Node>::all(client.clone())
            .get_opt(&node_name)
            .await
            .map_err(|e| api_error(&format!("Node {node_name}"), e))?
            .map(|node| NodeFacts {
                deleting: node.metadata.deletion_timestamp.is_some(),
                labels: node.metadata.labels.unwrap_or_default(),
            });
    }
    Ok(observed)
}

fn pod_facts(pod: &Pod) -> PodFacts {
    let metadata = &pod.metadata;
    PodFacts {
        name: metadata.name.clone().unwrap_or_default(),
        deleting: metadata.deletion_timestamp.is_some(),
        daemonset: metadata
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.kind == "DaemonSet" && owner.controller == Some(true))
            .map(|owner| owner.name.clone()),
        node_name: pod.spec.as_ref().and_then(|spec| spec.node_name.clone()),
        template_generation: metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(TEMPLATE_GENERATION_LABEL))
            .and_then(|generation| generation.parse().ok()),
    }
}

fn daemonset_facts(daemonset: &DaemonSet) -> DaemonSetFacts {
    DaemonSetFacts {
        deleting: daemonset.metadata.deletion_timestamp.is_some(),
        generation: daemonset.metadata.generation,
        node_selector: daemonset
            .spec
            .template
            .spec
            .as_ref()
            .and_then(|spec| spec.node_selector.clone())
            .unwrap_or_default(),
    }
}

/// What the speaker calls on SIGTERM: looks itself up (within
/// [`STOP_LOOKUP_TIMEOUT`]) and decides. Log the reason; apply the action with
/// [`StopAction::apply`].
pub async fn on_stop(client: &Client, namespace: &str, pod_name: &str) -> StopDecision {
    on_stop_within(client, namespace, pod_name, STOP_LOOKUP_TIMEOUT).await
}

/// [`on_stop`] with another time limit.
pub async fn on_stop_within(
    client: &Client,
    namespace: &str,
    pod_name: &str,
    timeout: Duration,
) -> StopDecision {
    let observed = tokio::time::timeout(timeout, observe(client, namespace, pod_name))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ))
        });
    decide(&observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A speaker Pod of DaemonSet `speaker` on node-1, deleted, of template generation 1;
    /// the DaemonSet at generation 1, selecting `role=lb`; the Node labelled so.
    fn rolling_base() -> Observed {
        Observed {
            namespace: "metallb-system".into(),
            namespace_deleting: false,
            pod: Some(PodFacts {
                name: "speaker-abcde".into(),
                deleting: true,
                daemonset: Some("speaker".into()),
                node_name: Some("node-1".into()),
                template_generation: Some(1),
            }),
            daemonset: Some(DaemonSetFacts {
                deleting: false,
                generation: Some(1),
                node_selector: labels(&[("role", "lb")]),
            }),
            node: Some(NodeFacts {
                deleting: false,
                labels: labels(&[("role", "lb"), ("kubernetes.io/hostname", "node-1")]),
            }),
        }
    }

    #[test]
    fn keep_for_a_restart_remove_for_an_uninstall() {
        use StopAction::*;
        type Edit = fn(&mut Observed);
        // (case, how the observation differs from `rolling_base`, action, reason)
        let cases: Vec<(&str, Edit, StopAction, &str)> = vec![
            (
                "rolling update",
                |o| o.daemonset.as_mut().unwrap().generation = Some(2),
                Keep,
                "rolling update of DaemonSet metallb-system/speaker (Pod of template generation 1, the DaemonSet is at 2): the next Pod adopts the datapath",
            ),
            (
                "a Pod deleted by hand or evicted",
                |_| {},
                Keep,
                "Pod speaker-abcde is deleted (by hand or evicted) and DaemonSet metallb-system/speaker starts another here, which adopts the datapath",
            ),
            (
                "a container restart, or the node shutting down",
                |o| o.pod.as_mut().unwrap().deleting = false,
                Keep,
                "Pod speaker-abcde stays (its container restarts, or the node shuts down): the datapath is adopted when the speaker runs again",
            ),
            (
                "background deletion: the DaemonSet is gone before its Pods",
                |o| o.daemonset = None,
                Remove,
                "DaemonSet metallb-system/speaker is gone: MetalLB was uninstalled",
            ),
            (
                "foreground deletion: the DaemonSet waits for its Pods",
                |o| o.daemonset.as_mut().unwrap().deleting = true,
                Remove,
                "DaemonSet metallb-system/speaker is being deleted: MetalLB is being uninstalled",
            ),
            (
                "the namespace is deleted (Pods may go before the DaemonSet)",
                |o| o.namespace_deleting = true,
                Remove,
                "namespace metallb-system is being deleted: MetalLB is being uninstalled",
            ),
            (
                "a Pod of no DaemonSet",
                |o| o.pod.as_mut().unwrap().daemonset = None,
                Remove,
                "Pod speaker-abcde belongs to no DaemonSet: no speaker will come to adopt the datapath",
            ),
            (
                "the Node was deleted",
                |o| o.node = None,
                Remove,
                "Node node-1 is gone: it left the cluster",
            ),
            (
                "the Node is being deleted",
                |o| o.node.as_mut().unwrap().deleting = true,
                Remove,
                "Node node-1 is being deleted: it leaves the cluster",
            ),
            (
                "the Node lost the label the DaemonSet selects",
                |o| {
                    o.node.as_mut().unwrap().labels.remove("role");
                },
                Remove,
                "Node node-1 no longer matches the nodeSelector of DaemonSet metallb-system/speaker (role=lb): no speaker comes back here",
            ),
            (
                "the Pod was force-deleted: nothing to ask",
                |o| o.pod = None,
                Keep,
                "this speaker's Pod is no longer in namespace metallb-system (deleted with --force?), so its DaemonSet cannot be asked: a speaker that comes back adopts the datapath; `metallb cleanup` removes it",
            ),
            (
                "a Pod without the template label is not taken for a rolling update",
                |o| {
                    o.pod.as_mut().unwrap().template_generation = None;
                    o.daemonset.as_mut().unwrap().generation = Some(5);
                },
                Keep,
                "Pod speaker-abcde is deleted (by hand or evicted) and DaemonSet metallb-system/speaker starts another here, which adopts the datapath",
            ),
        ];
        for (case, edit, action, reason) in cases {
            let mut observed = rolling_base();
            edit(&mut observed);
            let decision = decide(&Ok(observed));
            assert_eq!(
                decision,
                StopDecision {
                    action,
                    reason: reason.into()
                },
                "{case}"
            );
        }
        assert_eq!(
            decide(&Err("connection refused".into())),
            StopDecision {
                action: Keep,
                reason: "the API server could not tell whether MetalLB is being uninstalled (connection refused): a speaker that comes back adopts the datapath; `metallb cleanup` removes it".into()
            }
        );
    }
}
