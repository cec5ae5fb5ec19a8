//! The speaker's stop decision (keep the datapath for the next Pod, or remove it)
//! looked up through the real kube::Client against the in-process test API server:
//! a rolling update keeps, an uninstall (background or foreground deletion of the
//! DaemonSet, or of the namespace) removes, an unreachable or failing API keeps. The
//! lookups are made as the speaker's ServiceAccount, and its RBAC table allows them.

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Namespace, Pod},
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use metallb_testkit::{
    TestApiServer,
    apiserver::{Fault, Part, Verb},
    rbac,
};
use metallb_user::kubernetes::{
    lifecycle::{StopAction, on_stop, on_stop_within},
    rbac::SPEAKER,
};
use serde_json::json;

const NS: &str = "metallb-system";
const POD: &str = "speaker-abcde";

/// A server holding what a running speaker sees: its namespace, its DaemonSet
/// (selecting nodes labelled role=lb), its Pod (on node-1, of template generation 1,
/// with a finalizer so that a delete leaves it marked as deleting, as a Pod is during
/// its grace period) and node-1.
async fn cluster() -> TestApiServer {
    let server = TestApiServer::start().await.unwrap();
    server
        .seed(
            "",
            "v1",
            "namespaces",
            json!({"metadata": {"name": NS, "finalizers": ["test/hold"]}}),
        )
        .unwrap();
    let daemonset = server
        .seed(
            "apps",
            "v1",
            "daemonsets",
            json!({
                "metadata": {"name": "speaker", "namespace": NS, "finalizers": ["test/hold"]},
                "spec": {
                    "selector": {"matchLabels": {"app": "speaker"}},
                    "template": {
                        "metadata": {"labels": {"app": "speaker"}},
                        "spec": {"nodeSelector": {"role": "lb"}, "containers": [{"name": "speaker", "image": "metallb"}]}
                    }
                }
            }),
        )
        .unwrap();
    server
        .seed(
            "",
            "v1",
            "pods",
            json!({
                "metadata": {
                    "name": POD, "namespace": NS, "finalizers": ["test/hold"],
                    "labels": {"app": "speaker", "pod-template-generation": "1"},
                    "ownerReferences": [{
                        "apiVersion": "apps/v1", "kind": "DaemonSet", "name": "speaker",
                        "uid": daemonset["metadata"]["uid"], "controller": true
                    }]
                },
                "spec": {"nodeName": "node-1", "containers": [{"name": "speaker", "image": "metallb"}]}
            }),
        )
        .unwrap();
    server
        .seed(
            "",
            "v1",
            "nodes",
            json!({"metadata": {"name": "node-1", "labels": {"role": "lb"}}}),
        )
        .unwrap();
    server
}

/// The Pod is being deleted, as when the kubelet sends SIGTERM.
async fn delete_pod(server: &TestApiServer) {
    let pods: Api<Pod> = Api::namespaced(server.client().unwrap(), NS);
    pods.delete(POD, &DeleteParams::default()).await.unwrap();
}

/// A new Pod template: the DaemonSet's generation moves to 2, its Pod is of 1.
async fn roll_out_a_new_template(server: &TestApiServer) {
    Api::<DaemonSet>::namespaced(server.client().unwrap(), NS)
        .patch(
            "speaker",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"metadata": {"labels": {"version": "2"}}}}}),
            ),
        )
        .await
        .unwrap();
}

/// The decision, looked up as the speaker's ServiceAccount, whose RBAC must allow
/// every request.
async fn decide(server: &TestApiServer) -> (StopAction, String) {
    let decision = on_stop(&rbac::client(server, &SPEAKER, NS), NS, POD).await;
    rbac::assert_authorized(server, &SPEAKER, NS);
    (decision.action, decision.reason)
}

/// The requests since `mark`: "VERB PATH".
fn requests(server: &TestApiServer, mark: usize) -> Vec<String> {
    server
        .requests_since(mark)
        .iter()
        .map(|r| format!("{:?} {}", r.verb, r.path))
        .collect()
}

#[tokio::test]
async fn a_rolling_update_keeps_the_datapath() {
    let server = cluster().await;
    roll_out_a_new_template(&server).await;
    delete_pod(&server).await;
    let mark = server.mark();
    assert_eq!(
        decide(&server).await,
        (
            StopAction::Keep,
            format!(
                "rolling update of DaemonSet {NS}/speaker (Pod of template generation 1, the DaemonSet is at 2): the next Pod adopts the datapath"
            )
        )
    );
    assert_eq!(
        requests(&server, mark),
        [
            format!("Get /api/v1/namespaces/{NS}"),
            format!("Get /api/v1/namespaces/{NS}/pods/{POD}"),
            format!("Get /apis/apps/v1/namespaces/{NS}/daemonsets/speaker"),
            "Get /api/v1/nodes/node-1".to_owned(),
        ]
    );
}

#[tokio::test]
async fn a_restart_of_the_container_keeps_the_datapath() {
    let server = cluster().await;
    assert_eq!(
        decide(&server).await,
        (
            StopAction::Keep,
            format!(
                "Pod {POD} stays (its container restarts, or the node shuts down): the datapath is adopted when the speaker runs again"
            )
        )
    );
}

#[tokio::test]
async fn an_uninstall_removes_the_datapath() {
    // Background deletion (kubectl's default): the DaemonSet object goes first.
    let server = cluster().await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(server.client().unwrap(), NS);
    daemonsets
        .patch(
            "speaker",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    daemonsets
        .delete("speaker", &DeleteParams::background())
        .await
        .unwrap();
    delete_pod(&server).await;
    let mark = server.mark();
    assert_eq!(
        decide(&server).await,
        (
            StopAction::Remove,
            format!("DaemonSet {NS}/speaker is gone: MetalLB was uninstalled")
        )
    );
    assert_eq!(
        requests(&server, mark).len(),
        3,
        "no Node is read once the DaemonSet is gone"
    );

    // Foreground deletion: the DaemonSet stays, marked, until its Pods are gone.
    let server = cluster().await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(server.client().unwrap(), NS);
    daemonsets
        .delete("speaker", &DeleteParams::foreground())
        .await
        .unwrap();
    delete_pod(&server).await;
    assert_eq!(
        decide(&server).await,
        (
            StopAction::Remove,
            format!("DaemonSet {NS}/speaker is being deleted: MetalLB is being uninstalled")
        )
    );

    // The namespace is deleted (its Pods may go before its DaemonSet).
    let server = cluster().await;
    let namespaces: Api<Namespace> = Api::all(server.client().unwrap());
    namespaces
        .delete(NS, &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        decide(&server).await,
        (
            StopAction::Remove,
            format!("namespace {NS} is being deleted: MetalLB is being uninstalled")
        )
    );
}

#[tokio::test]
async fn a_node_the_daemonset_no_longer_selects_removes_the_datapath() {
    let server = cluster().await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(server.client().unwrap());
    nodes
        .patch(
            "node-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"role": "storage"}}})),
        )
        .await
        .unwrap();
    delete_pod(&server).await;
    assert_eq!(
        decide(&server).await,
        (
            StopAction::Remove,
            format!(
                "Node node-1 no longer matches the nodeSelector of DaemonSet {NS}/speaker (role=lb): no speaker comes back here"
            )
        )
    );
}

#[tokio::test]
async fn an_api_that_fails_or_does_not_answer_keeps_the_datapath() {
    let server = cluster().await;
    server.fail_next(Fault {
        verb: Verb::Get,
        resource: "pods".into(),
        part: Part::Object,
        code: 500,
        times: 1,
    });
    let (action, reason) = decide(&server).await;
    assert_eq!(action, StopAction::Keep);
    assert!(
        reason.starts_with(&format!(
            "the API server could not tell whether MetalLB is being uninstalled (reading Pod {NS}/{POD}: "
        )),
        "{reason}"
    );

    // Connections are accepted and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
    let started = tokio::time::Instant::now();
    let decision = on_stop_within(&client, NS, POD, Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(decision.action, StopAction::Keep);
    assert_eq!(
        decision.reason,
        "the API server could not tell whether MetalLB is being uninstalled (no answer within 300ms): a speaker that comes back adopts the datapath; `metallb cleanup` removes it"
    );
}

/// The decision applied to a real datapath in a namespace lab (needs root): kept for a
/// rolling update (the link pinned for the next speaker, still attached), removed
/// after an uninstall (nothing attached, nothing pinned).
#[tokio::test]
async fn netns_the_decision_applied_keeps_or_removes_the_datapath() {
    use metallb_testkit::lab::{Lab, NetnsGuard, ScratchPinDir};
    use metallb_user::datapath::{Datapath, DatapathOptions, XdpMode};

    let lab = Lab::new("stop").expect("lab");
    let pins = ScratchPinDir::new("stop");
    let load = || {
        // The thread enters the node's namespace only around the datapath's own calls:
        // the API server listens in this one.
        let _netns = NetnsGuard::enter(&lab.node_ns).expect("enter the node namespace");
        let mut datapath = Datapath::load(&DatapathOptions {
            pin_dir: pins.path.clone(),
            max_vips: 64,
        })
        .expect("load");
        datapath
            .attach(lab.node_if, XdpMode::Generic)
            .expect("attach");
        datapath
    };
    let attached = || {
        let out = lab
            .ip(&lab.node_ns, &["-d", "-j", "link", "show", lab.node_if])
            .expect("ip link");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        !json[0]["xdp"].is_null()
    };

    let rolling = cluster().await;
    roll_out_a_new_template(&rolling).await;
    delete_pod(&rolling).await;
    let decision = on_stop(&rbac::client(&rolling, &SPEAKER, NS), NS, POD).await;
    assert_eq!(decision.action, StopAction::Keep);
    let datapath = load();
    {
        let _netns = NetnsGuard::enter(&lab.node_ns).expect("enter");
        assert!(decision.action.apply(datapath).is_empty());
    }
    assert!(pins.path.join("links/generic").join(lab.node_if).exists());
    assert!(attached(), "left attached for the next speaker");

    let uninstalled = cluster().await;
    Api::<DaemonSet>::namespaced(uninstalled.client().unwrap(), NS)
        .delete("speaker", &DeleteParams::foreground())
        .await
        .unwrap();
    delete_pod(&uninstalled).await;
    let decision = on_stop(&rbac::client(&uninstalled, &SPEAKER, NS), NS, POD).await;
    assert_eq!(decision.action, StopAction::Remove);
    // The next speaker adopts what was left, then is uninstalled.
    let datapath = load();
    {
        let _netns = NetnsGuard::enter(&lab.node_ns).expect("enter");
        assert!(decision.action.apply(datapath).is_empty());
    }
    assert!(!attached(), "nothing attached after an uninstall");
    assert!(!pins.path.exists(), "nothing pinned after an uninstall");
}
