//! The two modes never disagree: every table case, and the repository's example, gives
//! the same addresses through `metallb plan`'s path (the file) and through `metallb
//! controller` starting against the test API server holding the same objects.
//!
//! A file has no creation times, and its order stands for creation order; the API
//! server stamps objects to the second. So that both see one order, Services without a
//! `creationTimestamp` get increasing ones in file order, after any a case sets
//! itself, which leaves the file's order unchanged.

use std::time::Duration;

use futures::StreamExt as _;
use kube::CustomResourceExt as _;
use metallb_testkit::TestApiServer;
use serde_json::Value;

use super::*;
use crate::{
    config::crd::{IPAddressPool, L2Advertisement},
    kubernetes::controller::{ControllerOptions, run as run_controller},
};

/// Generous: CI runs this beside the other tests on two cores.
const DEADLINE: Duration = Duration::from_secs(60);

/// Cases whose outcome rests on what only a file has. Services created in the same
/// second: a file takes them in its listed order, while the API gives no order finer
/// than `creationTimestamp`, so the controller takes them by namespace/name.
const FILE_ONLY: [&str; 1] = ["equal creationTimestamps keep the listed order"];

/// The file's objects, Services stamped in file order.
struct Objects {
    config: Config,
    pools: Vec<Value>,
    namespaces: Vec<Value>,
}

fn stamped(yaml: &str) -> Objects {
    let file = parse(yaml).unwrap_or_else(|e| panic!("{yaml}\ndoes not parse: {e:#?}"));
    let mut config = config_of(yaml);
    let latest = config
        .services
        .iter()
        .filter_map(|s| s.metadata.creation_timestamp.as_ref())
        .map(|t| t.0.as_second())
        .max()
        .unwrap_or(1_767_225_600);
    let mut next = latest + 1;
    for service in &mut config.services {
        if service.metadata.creation_timestamp.is_none() {
            let time = k8s_openapi::jiff::Timestamp::from_second(next).expect("a test time");
            service.metadata.creation_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(time));
            next += 1;
        }
        if service.metadata.namespace.is_none() {
            service.metadata.namespace = Some("default".into());
        }
    }
    Objects {
        config,
        pools: file.pools.iter().map(json).collect(),
        namespaces: file.namespaces.iter().map(json).collect(),
    }
}

fn json(object: &impl serde::Serialize) -> Value {
    serde_json::to_value(object).expect("serializable")
}

fn ingress_of(service: &Value) -> Vec<String> {
    service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_owned))
        .collect()
}

fn failure_reported(server: &TestApiServer, key: &ServiceKey) -> bool {
    server.count("events.k8s.io", "v1", "events", |e| {
        e["reason"] == "AllocationFailed"
            && e["regarding"]["name"] == key.name.as_str()
            && e["regarding"]["namespace"] == key.namespace.as_str()
    }) > 0
}

/// What the controller shows for `key` once it has decided as `plan` did, or `None`
/// while it has not.
fn shown(server: &TestApiServer, key: &ServiceKey, planned: &Decision) -> Option<Vec<String>> {
    let service = server.object("", "v1", "services", &key.namespace, &key.name)?;
    let ips = ingress_of(&service);
    match planned {
        Decision::Allocated(allocation) => {
            let want: Vec<String> = allocation.ips.iter().map(IpAddr::to_string).collect();
            let pool = service["metadata"]["annotations"]["metallb.io/ip-allocated-from-pool"]
                .as_str()
                .unwrap_or_default();
            (ips == want && pool == allocation.pool).then_some(ips)
        }
        Decision::Failed { .. } => (ips.is_empty() && failure_reported(server, key)).then_some(ips),
        Decision::Ignored { .. } => Some(ips),
    }
}

/// Runs one configuration both ways; returns a description of every disagreement.
async fn disagreements(name: &str, yaml: &str, class: Option<&str>) -> Vec<String> {
    let objects = stamped(yaml);
    let options = AllocatorOptions {
        load_balancer_class: class.map(Into::into),
    };
    let planned = allocate(&objects.config, &options).decisions;

    let server = TestApiServer::start().await.expect("test server");
    server.register_crd(&IPAddressPool::crd()).expect("CRD");
    server.register_crd(&L2Advertisement::crd()).expect("CRD");
    for namespace in &objects.namespaces {
        server
            .seed("", "v1", "namespaces", namespace.clone())
            .expect("seed");
    }
    for pool in &objects.pools {
        server
            .seed("metallb.io", "v1beta1", "ipaddresspools", pool.clone())
            .expect("seed");
    }
    for service in &objects.config.services {
        // The core's form as the API's object (with its apiVersion and kind).
        let object: k8s_openapi::api::core::v1::Service =
            serde_json::from_value(json(service)).expect("a Service");
        server
            .seed("", "v1", "services", json(&object))
            .expect("seed");
    }
    let controller = tokio::spawn(run_controller(
        server.client().expect("client"),
        ControllerOptions {
            namespace: "metallb-system".into(),
            allocator: options,
            instance: "parity".into(),
            metrics: None,
        },
        None,
        std::future::pending(),
    ));
    let start = tokio::time::Instant::now();
    let mut out = Vec::new();
    loop {
        let pending: Vec<&ServiceKey> = planned
            .iter()
            .filter(|(key, decision)| shown(&server, key, decision).is_none())
            .map(|(key, _)| key)
            .collect();
        if pending.is_empty() {
            break;
        }
        if start.elapsed() > DEADLINE {
            for key in pending {
                let service = server.object("", "v1", "services", &key.namespace, &key.name);
                out.push(format!(
                    "{name}: {key}: plan says {:?}, the controller shows {:?}",
                    planned[key],
                    service.as_ref().map(ingress_of)
                ));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.abort();
    out
}

#[tokio::test]
async fn plan_and_the_controller_agree_on_every_table_case_and_the_example() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/standalone.yaml"
    ))
    .expect("examples/standalone.yaml");
    let mut runs: Vec<(String, String, Option<&'static str>)> = all_cases()
        .into_iter()
        .filter(|case| !FILE_ONLY.contains(&case.name))
        .map(|case| (case.name.to_owned(), case.yaml, case.class))
        .collect();
    runs.push(("examples/standalone.yaml".into(), example, None));
    let total = runs.len();
    let found: Vec<String> = futures::stream::iter(runs)
        .map(|(name, yaml, class)| async move { disagreements(&name, &yaml, class).await })
        .buffer_unordered(4)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    assert!(
        found.is_empty(),
        "{} disagreement(s) over {total} configurations:\n{}",
        found.len(),
        found.join("\n")
    );
}
