//! `metallb controller` through the real kube::Client against the in-process test API
//! server: allocation, release, failures, restarts, pool edits, conflicts, leadership.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{core::v1::Service, events::v1::Event};
use kube::{
    Api, Client, CustomResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use metallb_testkit::{
    TestApiServer,
    apiserver::{Fault, Part, RecordedRequest, Verb},
    rbac,
};
use metallb_user::{
    allocator::AllocatorOptions,
    config::{
        ValidateOptions,
        crd::{Community, IPAddressPool, L2Advertisement, bgppeer},
    },
    kubernetes::{
        AbortOnDrop, certs,
        controller::{ControllerOptions, run},
        leader::LeaseConfig,
        memberlist_secret,
        rbac::CONTROLLER,
        service_status::POOL_ANNOTATION,
        webhook,
    },
};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle, time::Instant};

const DEADLINE: Duration = Duration::from_secs(15);
const NS: &str = "metallb-system";

struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops gracefully (the Lease, if any, is released) and waits for it.
    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        let _ = (&mut self.task).await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start_controller(
    server: &TestApiServer,
    instance: &str,
    election: Option<LeaseConfig>,
) -> Running {
    start_controller_with(server, instance, election, AllocatorOptions::default())
}

fn start_controller_with(
    server: &TestApiServer,
    instance: &str,
    election: Option<LeaseConfig>,
    allocator: AllocatorOptions,
) -> Running {
    // Recorded as the controller's ServiceAccount: its requests are checked against its
    // RBAC at the end of every test.
    let client = rbac::client(server, &CONTROLLER, NS);
    let options = ControllerOptions {
        namespace: NS.into(),
        allocator,
        instance: instance.into(),
        metrics: None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(client, options, election, async move {
        let _ = stopped.await;
    }));
    Running {
        stop: Some(stop),
        task,
    }
}

async fn server() -> (TestApiServer, Client) {
    let server = TestApiServer::start().await.unwrap();
    server.register_crd(&IPAddressPool::crd()).unwrap();
    server.register_crd(&L2Advertisement::crd()).unwrap();
    let client = server.client().unwrap();
    (server, client)
}

async fn create_pool(client: &Client, name: &str, spec: Value) {
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), NS);
    let pool: IPAddressPool = serde_json::from_value(json!({
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }))
    .unwrap();
    pools.create(&PostParams::default(), &pool).await.unwrap();
}

/// Edits a pool's addresses.
async fn set_addresses(client: &Client, pool: &str, addresses: &[&str]) {
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), NS);
    pools
        .patch(
            pool,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"addresses": addresses}})),
        )
        .await
        .unwrap();
}

/// A LoadBalancer Service; `extra` is merged into the object.
async fn create_service(client: &Client, ns: &str, name: &str, extra: Value) {
    let mut object = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]},
    });
    json_patch::merge(&mut object, &extra);
    let service: Service = serde_json::from_value(object).unwrap();
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &service).await.unwrap();
}

fn ingress(server: &TestApiServer, ns: &str, name: &str) -> Vec<String> {
    server
        .object("", "v1", "services", ns, name)
        .and_then(|s| s["status"]["loadBalancer"]["ingress"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect()
}

fn pool_annotation(server: &TestApiServer, ns: &str, name: &str) -> Option<String> {
    server.object("", "v1", "services", ns, name).and_then(|s| {
        s["metadata"]["annotations"][POOL_ANNOTATION]
            .as_str()
            .map(str::to_owned)
    })
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_ingress(server: &TestApiServer, ns: &str, name: &str, want: &[&str]) {
    until(&format!("{ns}/{name} to get {want:?}"), || {
        ingress(server, ns, name) == want
    })
    .await;
}

async fn events(client: &Client, ns: &str, service: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(service))
        .map(|e| {
            (
                e.reason.clone().unwrap_or_default(),
                e.note.clone().unwrap_or_default(),
            )
        })
        .collect()
}

async fn until_event(client: &Client, ns: &str, service: &str, reason: &str) -> String {
    let start = Instant::now();
    loop {
        if let Some((_, note)) = events(client, ns, service)
            .await
            .into_iter()
            .find(|(r, _)| r == reason)
        {
            return note;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no {reason} event for {ns}/{service}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Leader election with short times, so that tests see a takeover quickly.
fn quick_lease(identity: &str) -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_millis(1500),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(200),
        ..LeaseConfig::with_defaults(NS, "metallb-controller", identity)
    }
}

/// The next write of a Service object is answered 409 Conflict.
fn conflict_on_the_next_service_write(server: &TestApiServer) {
    server.fail_next(Fault {
        verb: Verb::Patch,
        resource: "services".into(),
        part: Part::Object,
        code: 409,
        times: 1,
    });
}

/// Writes to Services, pools and Events (Lease renewals are not counted).
fn writes(requests: &[RecordedRequest]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.verb.is_write() && r.resource() != "leases")
        .map(|r| format!("{:?} {}", r.verb, r.path))
        .collect()
}

/// What serving a Service `c/probe` from pool `pool` writes, sorted: the test's create,
/// the controller's annotation, status and Event, and the pool's status.
fn probe_writes(pool: &str) -> Vec<String> {
    vec![
        "Create /api/v1/namespaces/c/services".into(),
        "Create /apis/events.k8s.io/v1/namespaces/c/events".into(),
        "Patch /api/v1/namespaces/c/services/probe".into(),
        "Patch /api/v1/namespaces/c/services/probe/status".into(),
        format!(
            "Patch /apis/metallb.io/v1beta1/namespaces/metallb-system/ipaddresspools/{pool}/status"
        ),
    ]
}

#[tokio::test]
async fn allocates_writes_status_annotation_and_event_then_reuses_a_released_address() {
    let (server, client) = server().await;
    create_pool(
        &client,
        "default",
        json!({"addresses": ["192.0.2.10-192.0.2.11"]}),
    )
    .await;
    let _controller = start_controller(&server, "c1", None);
    create_service(&client, "web", "a", json!({})).await;
    until_ingress(&server, "web", "a", &["192.0.2.10"]).await;
    assert_eq!(
        pool_annotation(&server, "web", "a").as_deref(),
        Some("default")
    );
    let note = until_event(&client, "web", "a", "IPAllocated").await;
    assert_eq!(note, "Assigned IP [\"192.0.2.10\"]");

    create_service(&client, "web", "b", json!({})).await;
    until_ingress(&server, "web", "b", &["192.0.2.11"]).await;
    // The pool is full: c fails, with the reason.
    create_service(&client, "web", "c", json!({})).await;
    let note = until_event(&client, "web", "c", "AllocationFailed").await;
    assert!(
        note.starts_with("Failed to allocate IP for \"web/c\": "),
        "{note}"
    );
    assert!(ingress(&server, "web", "c").is_empty());

    // Deleting a frees its address for c, which waited.
    let services: Api<Service> = Api::namespaced(client.clone(), "web");
    services
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    until_ingress(&server, "web", "c", &["192.0.2.10"]).await;
    until("the pool's status", || {
        server
            .object("metallb.io", "v1beta1", "ipaddresspools", NS, "default")
            .is_some_and(|p| p["status"] == json!({"assignedIPv4": 2, "assignedIPv6": 0, "availableIPv4": 0, "availableIPv6": 0}))
    })
    .await;
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

#[tokio::test]
async fn a_load_balancer_ip_outside_every_pool_fails_with_the_reason_and_other_classes_are_untouched()
 {
    let (server, client) = server().await;
    create_pool(&client, "default", json!({"addresses": ["192.0.2.0/28"]})).await;
    let _controller = start_controller(&server, "c1", None);
    create_service(
        &client,
        "web",
        "outside",
        json!({"spec": {"loadBalancerIP": "198.51.100.7"}}),
    )
    .await;
    let note = until_event(&client, "web", "outside", "AllocationFailed").await;
    assert!(
        note.contains("198.51.100.7 is in no address pool"),
        "{note}"
    );

    let mark = server.mark();
    create_service(
        &client,
        "web",
        "theirs",
        json!({"spec": {"loadBalancerClass": "example.com/other"}}),
    )
    .await;
    // A service of ours created after it is served, so the other was seen and skipped.
    create_service(&client, "web", "ours", json!({})).await;
    until_ingress(&server, "web", "ours", &["192.0.2.0"]).await;
    let touched: Vec<String> = writes(&server.requests_since(mark))
        .into_iter()
        .filter(|w| w.contains("/theirs"))
        .collect();
    assert_eq!(
        touched,
        Vec::<String>::new(),
        "another class's service was written"
    );
    assert!(ingress(&server, "web", "theirs").is_empty());
    assert!(events(&client, "web", "theirs").await.is_empty());
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

#[tokio::test]
async fn a_restart_writes_nothing_and_keeps_every_assignment() {
    let (server, client) = server().await;
    create_pool(&client, "v4", json!({"addresses": ["192.0.2.0/24"]})).await;
    create_pool(
        &client,
        "v6",
        json!({"addresses": ["2001:db8::/120"], "autoAssign": false}),
    )
    .await;
    // Services exist before the controller starts: decided in namespace/name order.
    create_service(&client, "b", "one", json!({})).await;
    create_service(&client, "a", "two", json!({})).await;
    create_service(
        &client,
        "a",
        "dual",
        json!({"metadata": {"annotations": {"metallb.io/address-pool": "v6"}}, "spec": {"ipFamilies": ["IPv6"]}}),
    )
    .await;
    create_service(&client, "a", "shared-1", json!({"metadata": {"annotations": {"metallb.io/allow-shared-ip": "k", "metallb.io/loadBalancerIPs": "192.0.2.50"}}})).await;
    create_service(
        &client,
        "a",
        "shared-2",
        json!({"metadata": {"annotations": {"metallb.io/allow-shared-ip": "k", "metallb.io/loadBalancerIPs": "192.0.2.50"}}, "spec": {"ports": [{"port": 443}]}}),
    )
    .await;
    let first = start_controller(&server, "c1", None);
    until_ingress(&server, "b", "one", &["192.0.2.1"]).await;
    until_ingress(&server, "a", "two", &["192.0.2.0"]).await;
    // An IPv6 CIDR holds back its subnet-router anycast address (2001:db8::).
    until_ingress(&server, "a", "dual", &["2001:db8::1"]).await;
    until_ingress(&server, "a", "shared-1", &["192.0.2.50"]).await;
    until_ingress(&server, "a", "shared-2", &["192.0.2.50"]).await;
    // Both pools' statuses written before the stop (or the next controller writes them).
    until("pool statuses", || {
        let assigned = |pool: &str, family: &str| {
            server
                .object("metallb.io", "v1beta1", "ipaddresspools", NS, pool)
                .map(|p| p["status"][family].clone())
        };
        assigned("v4", "assignedIPv4") == Some(json!(3))
            && assigned("v6", "assignedIPv6") == Some(json!(1))
    })
    .await;
    first.stop().await;

    let before: BTreeMap<String, Vec<String>> =
        ["b/one", "a/two", "a/dual", "a/shared-1", "a/shared-2"]
            .iter()
            .map(|k| {
                let (ns, name) = k.split_once('/').unwrap();
                (k.to_string(), ingress(&server, ns, name))
            })
            .collect();
    let mark = server.mark();
    let second = start_controller(&server, "c2", None);
    // It has caught up once a new service gets the next address.
    create_service(&client, "c", "probe", json!({})).await;
    until_ingress(&server, "c", "probe", &["192.0.2.2"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    until("the pool's status to count the probe", || {
        server
            .object("metallb.io", "v1beta1", "ipaddresspools", NS, "v4")
            .is_some_and(|p| p["status"]["assignedIPv4"] == 4)
    })
    .await;
    // Exactly the probe's writes: nothing for what was already there.
    let mut written = writes(&server.requests_since(mark));
    written.sort();
    assert_eq!(
        written,
        probe_writes("v4"),
        "a restart wrote to unchanged objects"
    );
    for (key, ips) in before {
        let (ns, name) = key.split_once('/').unwrap();
        assert_eq!(ingress(&server, ns, name), ips, "{key}");
    }
    second.stop().await;
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

#[tokio::test]
async fn an_address_outside_an_edited_pool_moves_and_a_bad_pool_does_not_stop_the_others() {
    let (server, client) = server().await;
    create_pool(&client, "p", json!({"addresses": ["192.0.2.0/28"]})).await;
    let _controller = start_controller(&server, "c1", None);
    create_service(&client, "web", "a", json!({})).await;
    until_ingress(&server, "web", "a", &["192.0.2.0"]).await;

    // MetalLB's webhook allows this edit (it checks the pools, not the services), and
    // its controller then clears the address that no pool holds any more and
    // allocates again (controller/service.go: "current IP not allowed by config").
    set_addresses(&client, "p", &["198.51.100.0/28"]).await;
    until_ingress(&server, "web", "a", &["198.51.100.0"]).await;
    let note = until_event(&client, "web", "a", "ClearAssignment").await;
    assert!(note.contains("192.0.2.0"), "{note}");

    // A broken pool is left out; a good one created after it still serves.
    create_pool(&client, "broken", json!({"addresses": ["not-an-address"]})).await;
    create_pool(&client, "q", json!({"addresses": ["203.0.113.0/28"]})).await;
    create_service(
        &client,
        "web",
        "b",
        json!({"metadata": {"annotations": {"metallb.io/address-pool": "q"}}}),
    )
    .await;
    until_ingress(&server, "web", "b", &["203.0.113.0"]).await;
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

#[tokio::test]
async fn conflicts_are_read_again_and_transient_errors_retried() {
    let (server, client) = server().await;
    create_pool(&client, "p", json!({"addresses": ["192.0.2.0/28"]})).await;
    server.fail_next(Fault {
        verb: Verb::Patch,
        resource: "services".into(),
        part: Part::Status,
        code: 500,
        times: 2,
    });
    let _controller = start_controller(&server, "c1", None);
    create_service(&client, "web", "a", json!({})).await;
    until_ingress(&server, "web", "a", &["192.0.2.0"]).await;

    // The user edits the service between the controller's read and write: the write
    // carries the version read and gets 409; the controller reads again.
    conflict_on_the_next_service_write(&server);
    create_service(&client, "web", "b", json!({})).await;
    until_ingress(&server, "web", "b", &["192.0.2.1"]).await;
    let patches: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::Patch && r.path.ends_with("/services/b"))
        .map(|r| r.code)
        .collect();
    assert_eq!(patches, [409, 200]);
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

#[tokio::test]
async fn only_the_leader_writes_and_another_replica_takes_over() {
    let (server, client) = server().await;
    create_pool(&client, "p", json!({"addresses": ["192.0.2.0/28"]})).await;
    let one = start_controller(&server, "one", Some(quick_lease("one")));
    let two = start_controller(&server, "two", Some(quick_lease("two")));
    create_service(&client, "web", "a", json!({})).await;
    until_ingress(&server, "web", "a", &["192.0.2.0"]).await;
    let holder = || {
        server
            .object(
                "coordination.k8s.io",
                "v1",
                "leases",
                NS,
                "metallb-controller",
            )
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
    };
    let leader = holder().unwrap();
    let reporters: Vec<String> = {
        let api: Api<Event> = Api::namespaced(client.clone(), "web");
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter_map(|e| e.reporting_instance.clone())
            .collect()
    };
    assert_eq!(
        reporters,
        std::slice::from_ref(&leader),
        "only the leader wrote events"
    );

    // The leader dies without releasing: the other takes over after the lease.
    let (dead, survivor) = if leader == "one" {
        (one, two)
    } else {
        (two, one)
    };
    let killed = Instant::now();
    drop(dead);
    create_service(&client, "web", "b", json!({})).await;
    until_ingress(&server, "web", "b", &["192.0.2.1"]).await;
    let took = killed.elapsed();
    assert_ne!(holder().unwrap(), leader);
    eprintln!("takeover after a crash, lease 1.5 s, retry 0.2 s: {took:?}");
    survivor.stop().await;
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

#[tokio::test]
async fn services_of_a_named_class_are_served_by_a_controller_of_that_class() {
    let (server, client) = server().await;
    create_pool(&client, "p", json!({"addresses": ["192.0.2.0/28"]})).await;
    let _controller = start_controller_with(
        &server,
        "c1",
        None,
        AllocatorOptions {
            load_balancer_class: Some("metallb.io/metallb".into()),
        },
    );
    create_service(&client, "web", "classless", json!({})).await;
    create_service(
        &client,
        "web",
        "ours",
        json!({"spec": {"loadBalancerClass": "metallb.io/metallb"}}),
    )
    .await;
    until_ingress(&server, "web", "ours", &["192.0.2.0"]).await;
    assert!(ingress(&server, "web", "classless").is_empty());
    assert_eq!(pool_annotation(&server, "web", "classless"), None);
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

/// Starts the webhooks as the deployed `metallb controller` does, with the controller's
/// client and its own certificates (`--webhook-cert-secret`): with certificates that
/// live 3 seconds, so that one is renewed within the test. The cluster gets the
/// ValidatingWebhookConfiguration and a BGPPeer CRD with a conversion webhook, whose
/// caBundles it writes.
fn start_webhook(server: &TestApiServer) -> AbortOnDrop {
    server
        .register_crd(&bgppeer::definition().unwrap())
        .unwrap();
    server.register_crd(&Community::crd()).unwrap();
    server
        .seed(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            json!({"metadata": {"name": certs::WEBHOOK_CONFIGURATION}, "webhooks": [{"name": "ipaddresspoolvalidationwebhook.metallb.io", "clientConfig": {}}]}),
        )
        .unwrap();
    let mut crd = serde_json::to_value(bgppeer::definition().unwrap()).unwrap();
    crd["spec"]["conversion"] = json!({"strategy": "Webhook", "webhook": {"clientConfig": {}}});
    server
        .seed(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            crd,
        )
        .unwrap();
    let client = rbac::client(server, &CONTROLLER, NS);
    let options = ValidateOptions {
        namespace: NS.into(),
    };
    let tls = webhook::TlsSource::Bootstrap(certs::Bootstrap {
        policy: certs::Policy {
            cert_life: Duration::from_secs(3),
            propagation: Duration::ZERO,
            backdate: Duration::ZERO,
            ..certs::Policy::default()
        },
        check_every: Duration::from_millis(200),
        ..certs::Bootstrap::new(NS, certs::DEFAULT_SECRET)
    });
    AbortOnDrop(tokio::spawn(async move {
        let addr = "127.0.0.1:0".parse().unwrap();
        webhook::run(client, addr, tls, options).await.unwrap();
    }))
}

/// In one ordinary life (leader election, allocation, a conflict, a failure repeated,
/// pool edits, the webhook's watches, its certificates made and renewed and their CA
/// written where the API server reads it, the speakers' memberlist Secret made as
/// `--ml-secret-name` and `--deployment` do), the controller makes every call its RBAC grants
/// (metallb-user/src/kubernetes/rbac.rs), and no other: the table has nothing extra.
#[tokio::test]
async fn the_controller_uses_every_permission_its_rbac_grants_and_no_other() {
    let (server, client) = server().await;
    create_pool(&client, "p", json!({"addresses": ["192.0.2.0/30"]})).await;
    let _webhook = start_webhook(&server);
    server
        .seed(
            "apps",
            "v1",
            "deployments",
            json!({"metadata": {"name": memberlist_secret::DEFAULT_DEPLOYMENT, "namespace": NS}}),
        )
        .unwrap();
    let made = memberlist_secret::ensure(
        &rbac::client(&server, &CONTROLLER, NS),
        NS,
        memberlist_secret::DEFAULT_SECRET,
        Some(memberlist_secret::DEFAULT_DEPLOYMENT),
    )
    .await
    .unwrap();
    assert!(made, "the memberlist Secret did not exist before");
    let controller = start_controller(&server, "c1", Some(quick_lease("c1")));
    create_service(&client, "web", "a", json!({})).await;
    until_ingress(&server, "web", "a", &["192.0.2.0"]).await;
    // A conflict: the Service is read again.
    conflict_on_the_next_service_write(&server);
    create_service(&client, "web", "b", json!({})).await;
    until_ingress(&server, "web", "b", &["192.0.2.1"]).await;
    // A failure, repeated when the pools change: kube's Recorder patches the Event.
    create_service(
        &client,
        "web",
        "outside",
        json!({"spec": {"loadBalancerIP": "198.51.100.7"}}),
    )
    .await;
    until_event(&client, "web", "outside", "AllocationFailed").await;
    create_pool(&client, "q", json!({"addresses": ["203.0.113.0/28"]})).await;

    let start = Instant::now();
    while !rbac::unused(&server, &CONTROLLER, NS).is_empty() && start.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.stop().await;
    rbac::assert_every_rule_used(&server, &CONTROLLER, NS);
}

#[tokio::test]
async fn a_restart_does_not_report_a_failure_already_reported() {
    let (server, client) = server().await;
    create_pool(&client, "p", json!({"addresses": ["192.0.2.0/28"]})).await;
    create_service(
        &client,
        "web",
        "outside",
        json!({"spec": {"loadBalancerIP": "198.51.100.7"}}),
    )
    .await;
    let first = start_controller(&server, "c1", None);
    until_event(&client, "web", "outside", "AllocationFailed").await;
    first.stop().await;

    let mark = server.mark();
    let second = start_controller(&server, "c2", None);
    // It has caught up once a Service created after its start has its address and
    // its Event.
    create_service(&client, "c", "probe", json!({})).await;
    until_ingress(&server, "c", "probe", &["192.0.2.0"]).await;
    until_event(&client, "c", "probe", "IPAllocated").await;
    until("the pool's status to count the probe", || {
        server
            .object("metallb.io", "v1beta1", "ipaddresspools", NS, "p")
            .is_some_and(|p| p["status"]["assignedIPv4"] == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The failing Service still fails, for the same reason: nothing is written about
    // it (without the check, a second AllocationFailed Event would be created).
    let mut written = writes(&server.requests_since(mark));
    written.sort();
    assert_eq!(
        written,
        probe_writes("p"),
        "a restart wrote about an unchanged failure"
    );
    // The Events of earlier runs were read once, in one list.
    let lists: Vec<String> = server
        .requests_since(mark)
        .iter()
        .filter(|r| r.verb == Verb::List && r.path.starts_with("/apis/events.k8s.io/v1/events"))
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(lists, ["/apis/events.k8s.io/v1/events"]);

    // A new reason is news: the pool grows to hold the address, then shrinks again.
    set_addresses(&client, "p", &["192.0.2.0/28", "198.51.100.0/28"]).await;
    until_ingress(&server, "web", "outside", &["198.51.100.7"]).await;
    let mark = server.mark();
    set_addresses(&client, "p", &["192.0.2.0/28"]).await;
    until("the failure to be reported again", || {
        server.writes_since(mark).iter().any(|r| {
            r.path == "/apis/events.k8s.io/v1/namespaces/web/events"
                && r.body.contains("AllocationFailed")
        })
    })
    .await;
    second.stop().await;
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}
