//! The test server against the real kube::Client, kube's watcher, reflector, Controller
//! and event Recorder: the API conventions the agent relies on.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{ConfigMap, Service},
    events::v1::Event as K8sEvent,
};
use kube::{
    Api, Client, CustomResource, CustomResourceExt as _, Resource as _, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        reflector, watcher,
        watcher::Event as WatcherEvent,
    },
};
use metallb_testkit::{
    TestApiServer,
    apiserver::{Fault, Part, Verb},
};
use serde::{Deserialize, Serialize};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `condition` until it holds, or fails the test after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !condition().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn service(name: &str, labels: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }))
    .unwrap()
}

async fn start() -> (TestApiServer, Client) {
    let server = TestApiServer::start_with(Duration::from_millis(200))
        .await
        .unwrap();
    let client = server.client().unwrap();
    (server, client)
}

#[tokio::test]
async fn crud_with_conflicts_and_the_status_subresource() {
    let (server, client) = start().await;
    let services: Api<Service> = Api::namespaced(client, "web");
    let created = services
        .create(&PostParams::default(), &service("a", json!({})))
        .await
        .unwrap();
    assert_eq!(created.namespace().as_deref(), Some("web"));
    assert!(created.uid().is_some() && created.creation_timestamp().is_some());
    let version = created.resource_version().unwrap();

    let again = services
        .create(&PostParams::default(), &service("a", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&again, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{again:?}"
    );

    // A replace with the version read succeeds; the same stale version then conflicts.
    let mut changed = created.clone();
    changed.labels_mut().insert("tier".into(), "front".into());
    let replaced = services
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(replaced.resource_version().unwrap(), version);
    let stale = services
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert!(
        matches!(&stale, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{stale:?}"
    );

    // Status goes through the subresource; an object write leaves it alone.
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
    let with_status = services
        .patch_status("a", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let ingress = |s: &Service| {
        s.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|i| i.iter().filter_map(|i| i.ip.clone()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(ingress(&with_status), ["192.0.2.1"]);
    let mut cleared = with_status.clone();
    cleared.status = None;
    let after_object_write = services
        .replace("a", &PostParams::default(), &cleared)
        .await
        .unwrap();
    assert_eq!(ingress(&after_object_write), ["192.0.2.1"]);
    let spec_in_status_write =
        json!({"spec": {"type": "ClusterIP"}, "status": {"loadBalancer": {}}});
    let only_status = services
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(&spec_in_status_write),
        )
        .await
        .unwrap();
    assert_eq!(
        only_status.spec.unwrap().type_.as_deref(),
        Some("LoadBalancer")
    );

    // JSON patch and server-side apply.
    let json_patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}}
    ]))
    .unwrap();
    let patched = services
        .patch("a", &PatchParams::default(), &Patch::Json::<()>(json_patch))
        .await
        .unwrap();
    assert_eq!(patched.annotations()["k"], "v");
    let applied = services
        .patch(
            "b",
            &PatchParams::apply("test").force(),
            &Patch::Apply(service("b", json!({"app": "x"}))),
        )
        .await
        .unwrap();
    assert_eq!(applied.labels()["app"], "x");

    // Lists by label, then deletion.
    let listed = services
        .list(&ListParams::default().labels("tier=front"))
        .await
        .unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(|s| s.name_any())
            .collect::<Vec<_>>(),
        ["a"]
    );
    services
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    let gone = services.get("a").await.unwrap_err();
    assert!(
        matches!(&gone, kube::Error::Api(s) if s.code == 404),
        "{gone:?}"
    );
    assert!(server.object("", "v1", "services", "web", "b").is_some());
}

#[tokio::test]
async fn no_op_writes_change_nothing_and_every_request_is_recorded() {
    let (server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let map: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "m"}, "data": {"a": "1"}})).unwrap();
    let created = maps.create(&PostParams::default(), &map).await.unwrap();
    let revision = server.revision();
    let mark = server.mark();
    let same = maps
        .replace("m", &PostParams::default(), &created)
        .await
        .unwrap();
    assert_eq!(same.resource_version(), created.resource_version());
    assert_eq!(
        server.revision(),
        revision,
        "a no-op write is not a new version"
    );
    maps.get("m").await.unwrap();
    let since: Vec<(Verb, String)> = server
        .requests_since(mark)
        .iter()
        .map(|r| (r.verb, r.resource().to_owned()))
        .collect();
    assert_eq!(
        since,
        [
            (Verb::Update, "configmaps".into()),
            (Verb::Get, "configmaps".into())
        ]
    );
    assert_eq!(server.writes_since(mark).len(), 1);
}

#[tokio::test]
async fn injected_faults_answer_instead_of_the_request() {
    let (server, client) = start().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    server.fail_next(Fault {
        verb: Verb::Create,
        resource: "configmaps".into(),
        part: Part::Object,
        code: 500,
        times: 1,
    });
    let map: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "m"}})).unwrap();
    let failed = maps.create(&PostParams::default(), &map).await.unwrap_err();
    assert!(
        matches!(&failed, kube::Error::Api(s) if s.code == 500),
        "{failed:?}"
    );
    maps.create(&PostParams::default(), &map).await.unwrap();
}

#[tokio::test]
async fn a_reflector_follows_creates_updates_deletes_and_relists_after_410() {
    let (server, client) = start().await;
    let services: Api<Service> = Api::all(client.clone());
    let (reader, writer) = reflector::store::<Service>();
    let relists = Arc::new(AtomicUsize::new(0));
    let counted = relists.clone();
    let stream = reflector(writer, watcher(services, watcher::Config::default()))
        .inspect_ok(move |event| {
            if matches!(event, WatcherEvent::Init) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .for_each(|_| async {});
    let task = tokio::spawn(stream);

    let api: Api<Service> = Api::namespaced(client.clone(), "ns1");
    api.create(&PostParams::default(), &service("a", json!({})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &service("b", json!({})))
        .await
        .unwrap();
    eventually("both services in the cache", || {
        let n = reader.state().len();
        async move { n == 2 }
    })
    .await;
    api.delete("a", &DeleteParams::default()).await.unwrap();
    eventually("a removed from the cache", || {
        let names: Vec<String> = reader.state().iter().map(|s| s.name_any()).collect();
        async move { names == ["b"] }
    })
    .await;
    assert_eq!(relists.load(Ordering::SeqCst), 1);

    // 410 Gone: the watcher lists again and keeps following.
    server.expire_watches();
    eventually("a second list after 410", || {
        let n = relists.load(Ordering::SeqCst);
        async move { n == 2 }
    })
    .await;
    api.create(&PostParams::default(), &service("c", json!({})))
        .await
        .unwrap();
    eventually("c in the cache", || {
        let found = reader.state().iter().any(|s| s.name_any() == "c");
        async move { found }
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn watches_report_selector_transitions_bookmarks_and_too_old_versions() {
    let (server, client) = start().await;
    let api: Api<Service> = Api::namespaced(client, "ns");
    let first = api
        .create(&PostParams::default(), &service("a", json!({"app": "x"})))
        .await
        .unwrap();
    let params = WatchParams::default().labels("app=x").disable_bookmarks();
    let version = first.resource_version().unwrap();
    let mut stream = api.watch(&params, &version).await.unwrap().boxed();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "y"}}})),
    )
    .await
    .unwrap();
    match tokio::time::timeout(DEADLINE, stream.try_next()).await {
        Ok(Ok(Some(WatchEvent::Deleted(s)))) => assert_eq!(s.labels()["app"], "y"),
        other => panic!("expected DELETED when the label stops matching: {other:?}"),
    }
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    match tokio::time::timeout(DEADLINE, stream.try_next()).await {
        Ok(Ok(Some(WatchEvent::Added(s)))) => assert_eq!(s.name_any(), "a"),
        other => panic!("expected ADDED when the label matches again: {other:?}"),
    }

    let mut bookmarks = api
        .watch(&WatchParams::default(), &server.revision().to_string())
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(DEADLINE, bookmarks.try_next()).await {
        Ok(Ok(Some(WatchEvent::Bookmark(b)))) => {
            assert_eq!(b.metadata.resource_version, server.revision().to_string())
        }
        other => panic!("expected a bookmark: {other:?}"),
    }

    server.expire_watches();
    let mut too_old = api
        .watch(&WatchParams::default().disable_bookmarks(), &version)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(DEADLINE, too_old.try_next()).await {
        Ok(Ok(Some(WatchEvent::Error(e)))) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone: {other:?}"),
    }
}

#[tokio::test]
async fn streaming_lists_end_their_initial_events_with_a_bookmark() {
    let (_server, client) = start().await;
    let api: Api<Service> = Api::namespaced(client, "ns");
    api.create(&PostParams::default(), &service("a", json!({})))
        .await
        .unwrap();
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher(api, config).boxed();
    let mut seen = Vec::new();
    while let Ok(Some(event)) = tokio::time::timeout(DEADLINE, events.try_next())
        .await
        .expect("a watcher event in time")
    {
        let done = matches!(event, WatcherEvent::InitDone);
        seen.push(match event {
            WatcherEvent::Init => "init".to_string(),
            WatcherEvent::InitApply(s) => format!("init-apply {}", s.name_any()),
            WatcherEvent::InitDone => "init-done".into(),
            other => format!("{other:?}"),
        });
        if done {
            break;
        }
    }
    assert_eq!(seen, ["init", "init-apply a", "init-done"]);
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, schemars::JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
struct WidgetSpec {
    size: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, schemars::JsonSchema)]
struct WidgetStatus {
    seen: u32,
}

/// kube's Controller runs on the server unmodified: it reconciles each object after a
/// change, and a status written by the reconciler is there to read.
#[tokio::test]
async fn a_kube_controller_reconciles_custom_resources() {
    let (server, client) = start().await;
    server.register_crd(&Widget::crd()).unwrap();
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "ns");
    widgets
        .create(
            &PostParams::default(),
            &Widget::new("w", WidgetSpec { size: 3 }),
        )
        .await
        .unwrap();

    async fn reconcile(widget: Arc<Widget>, api: Arc<Api<Widget>>) -> Result<Action, kube::Error> {
        let status = json!({"status": {"seen": widget.spec.size}});
        api.patch_status(
            &widget.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
        Ok(Action::await_change())
    }
    let api = Arc::new(widgets.clone());
    let controller = Controller::new(widgets.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_secs(1)),
            api,
        )
        .for_each(|_| async {});
    let task = tokio::spawn(controller);
    let seen = |n: u32| {
        let widgets = widgets.clone();
        move || {
            let widgets = widgets.clone();
            async move {
                widgets
                    .get("w")
                    .await
                    .ok()
                    .and_then(|w| w.status)
                    .is_some_and(|s| s.seen == n)
            }
        }
    };
    eventually("the first reconcile", seen(3)).await;
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}})),
        )
        .await
        .unwrap();
    eventually("a reconcile after the change", seen(5)).await;
    task.abort();
}

#[tokio::test]
async fn events_and_leases() {
    let (server, client) = start().await;
    let services: Api<Service> = Api::namespaced(client.clone(), "ns");
    let svc = services
        .create(&PostParams::default(), &service("a", json!({})))
        .await
        .unwrap();
    let recorder = Recorder::new(client.clone(), Reporter::from("metallb-controller"));
    recorder
        .publish(
            &Event {
                type_: EventType::Normal,
                reason: "IPAllocated".into(),
                note: Some("Assigned IP [\"192.0.2.1\"]".into()),
                action: "IPAllocated".into(),
                secondary: None,
            },
            &svc.object_ref(&()),
        )
        .await
        .unwrap();
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), "ns");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].reason.as_deref(), Some("IPAllocated"));
    assert_eq!(
        list.items[0]
            .regarding
            .as_ref()
            .and_then(|r| r.name.as_deref()),
        Some("a")
    );

    let leases: Api<Lease> = Api::namespaced(client, "metallb-system");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "metallb-controller"},
        "spec": {"holderIdentity": "one", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    let held = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut taken = held.clone();
    taken.spec.as_mut().unwrap().holder_identity = Some("two".into());
    leases
        .replace("metallb-controller", &PostParams::default(), &taken)
        .await
        .unwrap();
    let mut late = held;
    late.spec.as_mut().unwrap().holder_identity = Some("three".into());
    let conflict = leases
        .replace("metallb-controller", &PostParams::default(), &late)
        .await
        .unwrap_err();
    assert!(
        matches!(&conflict, kube::Error::Api(s) if s.code == 409),
        "{conflict:?}"
    );
    assert!(
        server
            .object(
                "coordination.k8s.io",
                "v1",
                "leases",
                "metallb-system",
                "metallb-controller"
            )
            .is_some()
    );
}
