//! An in-process Kubernetes API server for tests, spoken to by the real `kube::Client`
//! over HTTP on 127.0.0.1.
//!
//! It keeps objects as JSON, by resource, with the API conventions the agent relies on:
//! - list with `resourceVersion`, label and field selectors, `limit`/`continue`;
//! - `watch=true` streams: synthetic ADDED events from `resourceVersion` "" or "0",
//!   changes after a given version, selector transitions as ADDED/DELETED, bookmarks
//!   (`allowWatchBookmarks`), `sendInitialEvents` with the initial-events-end bookmark,
//!   `timeoutSeconds`, and 410 Gone for a version older than the last compaction
//!   ([`TestApiServer::expire_watches`] forces one);
//! - get, create (`generateName`, uid, creationTimestamp, generation), update with
//!   optimistic concurrency (409 on a stale `resourceVersion`), no-op writes that change
//!   nothing, delete (with preconditions and finalizers);
//! - merge, JSON and (approximated) strategic-merge and server-side-apply patches;
//! - the `status` subresource: object writes keep status, status writes keep the rest;
//! - any resource registered by [`ResourceType`] or from a CRD; the core kinds the agent
//!   uses are registered at start.
//!
//! Every request is recorded ([`TestApiServer::requests`]), so a test can assert that no
//! write happened; faults can be injected ([`TestApiServer::fail_next`]).
//!
//! Not modelled: authentication and RBAC, admission and schema validation, namespace
//! existence, field managers and conflicts of server-side apply, deletecollection,
//! protobuf.

mod http;
pub mod selector;
pub mod store;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use serde::Serialize;
use serde_json::Value;
use tokio::{sync::watch, task::JoinHandle};

pub use self::store::{ApiError, Part, ResourceType};
use self::store::{ApiResult, Store};

/// What a request asked, as Kubernetes audit logs name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    Other,
}

impl Verb {
    /// The verb as RBAC and audit logs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
            Self::Other => "",
        }
    }

    pub fn is_write(self) -> bool {
        matches!(
            self,
            Self::Create | Self::Update | Self::Patch | Self::Delete | Self::DeleteCollection
        )
    }
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub verb: Verb,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: String,
    /// The HTTP status answered (200 for a watch that started).
    pub code: u16,
    /// Who asked: the bearer token of the request (see [`TestApiServer::client_as`]).
    pub user: Option<String>,
}

/// What a request is about, as the API server's authorizer reads it from the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes<'a> {
    /// Empty for the core group.
    pub group: &'a str,
    pub resource: &'a str,
    /// `status`, or empty.
    pub subresource: &'a str,
    /// `None` for a cluster-scoped object or a list across every namespace.
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub verb: Verb,
}

impl RecordedRequest {
    /// The resource's plural name, from the path (`services`, `leases`, ...).
    pub fn resource(&self) -> &str {
        self.attributes().map_or("", |a| a.resource)
    }

    /// The group, resource, subresource, namespace and name of a resource request, as
    /// Kubernetes' request-info reader takes them from the path (`None` for another
    /// path, such as `/version`).
    pub fn attributes(&self) -> Option<Attributes<'_>> {
        let segments: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, mut rest) = match segments.as_slice() {
            ["api", _, rest @ ..] => ("", rest),
            ["apis", group, _, rest @ ..] => (*group, rest),
            _ => return None,
        };
        let mut namespace = None;
        if let ["namespaces", name, after @ ..] = rest {
            namespace = Some(*name);
            // A namespace's own subresources stay the namespace's.
            if !after.is_empty() && !matches!(after[0], "status" | "finalize") {
                rest = after;
            }
        }
        let (resource, name, subresource) = match rest {
            [resource] => (*resource, None, ""),
            [resource, name] => (*resource, Some(*name), ""),
            [resource, name, subresource] => (*resource, Some(*name), *subresource),
            _ => return None,
        };
        Some(Attributes {
            group,
            resource,
            subresource,
            namespace,
            name,
            verb: self.verb,
        })
    }
}

/// An error answered instead of running a request.
#[derive(Clone, Debug)]
pub struct Fault {
    pub verb: Verb,
    /// The resource's plural name; empty for any.
    pub resource: String,
    pub part: Part,
    pub code: u16,
    /// How many matching requests still fail.
    pub times: usize,
}

/// State shared by the handlers.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// (revision, expiry epoch): wakes watches on every write and on expiry.
    notify: watch::Sender<(u64, u64)>,
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<Vec<Fault>>,
    bookmark_interval: Duration,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge the server for the others.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn lock_store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    fn subscribe(&self) -> watch::Receiver<(u64, u64)> {
        self.notify.subscribe()
    }

    /// Runs a write and wakes the watches.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> ApiResult<T>) -> ApiResult<T> {
        let (result, revision) = {
            let mut store = self.lock_store();
            let result = f(&mut store);
            (result, store.revision())
        };
        self.notify.send_modify(|(r, _)| *r = revision);
        result
    }

    fn record(&self, request: RecordedRequest) {
        lock(&self.requests).push(request);
    }

    fn take_fault(&self, verb: Verb, resource: &str, part: Part) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let index = faults.iter().position(|f| {
            f.verb == verb && (f.resource.is_empty() || f.resource == resource) && f.part == part
        })?;
        let fault = faults[index].clone();
        faults[index].times -= 1;
        if faults[index].times == 0 {
            faults.remove(index);
        }
        Some(fault)
    }
}

/// The core resources registered at start: what the controller and speaker watch and
/// write.
fn core_resources() -> Vec<ResourceType> {
    let rt =
        |group: &str, version: &str, kind: &str, plural: &str, namespaced, status| ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            status_subresource: status,
        };
    vec![
        rt("", "v1", "Namespace", "namespaces", false, true),
        rt("", "v1", "Node", "nodes", false, true),
        rt("", "v1", "Service", "services", true, true),
        rt("", "v1", "Endpoints", "endpoints", true, false),
        rt("", "v1", "Pod", "pods", true, true),
        rt("", "v1", "ConfigMap", "configmaps", true, false),
        rt("", "v1", "Secret", "secrets", true, false),
        rt("", "v1", "Event", "events", true, false),
        rt("events.k8s.io", "v1", "Event", "events", true, false),
        rt(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
            false,
        ),
        rt("coordination.k8s.io", "v1", "Lease", "leases", true, false),
        // The controller's own Deployment owns the memberlist Secret.
        rt("apps", "v1", "Deployment", "deployments", true, true),
        // A stopping speaker asks its DaemonSet whether it is being replaced.
        rt("apps", "v1", "DaemonSet", "daemonsets", true, true),
        // The controller writes its webhooks' caBundle into these.
        rt(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            false,
            false,
        ),
        rt(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            false,
        ),
    ]
}

/// A running test server; stops when dropped.
pub struct TestApiServer {
    address: SocketAddr,
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl TestApiServer {
    /// Starts a server on a free port of 127.0.0.1 (inside a tokio runtime), with
    /// bookmarks every second.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(Duration::from_secs(1)).await
    }

    pub async fn start_with(bookmark_interval: Duration) -> std::io::Result<Self> {
        let mut store = Store::default();
        for rt in core_resources() {
            store.register(rt);
        }
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            notify: watch::channel((0, 0)).0,
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            bookmark_interval,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = Self {
            address,
            shared,
            tasks: Mutex::new(Vec::new()),
        };
        server.serve_on(listener);
        Ok(server)
    }

    /// Serves the same API on `listener` too: one bound inside a network namespace
    /// (sockets belong to the namespace they were made in) lets a process there, such
    /// as a speaker in a lab's node namespace, reach the server at 127.0.0.1.
    pub fn serve_on(&self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .fallback(http::handle)
            .with_state(self.shared.clone());
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "the test API server stopped");
            }
        });
        lock(&self.tasks).push(task);
    }

    /// Serves the API inside network namespace `netns` too (on 127.0.0.1 there), for
    /// a process running in it; the address to give it. Inside a tokio runtime.
    pub fn serve_in_netns(&self, netns: &str) -> anyhow::Result<SocketAddr> {
        let listener = {
            let _inside = crate::lab::NetnsGuard::enter(netns)?;
            std::net::TcpListener::bind("127.0.0.1:0")?
        };
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        self.serve_on(tokio::net::TcpListener::from_std(listener)?);
        Ok(address)
    }

    /// A kubeconfig for this server at `address` (default: its own), for a process; with
    /// `user`, its requests are recorded as that user's (see [`Self::client_as`]).
    pub fn kubeconfig(&self, address: Option<SocketAddr>, user: Option<&str>) -> String {
        let address = address.unwrap_or(self.address);
        let user = user
            .map(|u| format!("{{token: \"{u}\"}}"))
            .unwrap_or_else(|| "{}".into());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"http://{address}\"}}\nusers:\n- name: test\n  user: {user}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test}}\ncurrent-context: test\n"
        )
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A real `kube::Client` for this server (call inside a tokio runtime), with
    /// `default` as its default namespace.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        let url = self.url().parse()?;
        Ok(kube::Client::try_from(kube::Config::new(url))?)
    }

    /// A client whose requests are recorded as `user`'s (sent as its bearer token), so
    /// that a test can tell the code's requests from its own: see [`crate::rbac`].
    pub fn client_as(&self, user: &str) -> anyhow::Result<kube::Client> {
        let mut config = kube::Config::new(self.url().parse()?);
        config.headers.push((
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderValue::from_str(&format!("Bearer {user}"))?,
        ));
        Ok(kube::Client::try_from(config)?)
    }

    pub fn register(&self, rt: ResourceType) {
        self.shared.lock_store().register(rt);
    }

    /// Registers every served version of a CustomResourceDefinition (any serializable
    /// form: the k8s-openapi type, or its YAML read as a value).
    pub fn register_crd(&self, crd: &impl Serialize) -> anyhow::Result<()> {
        let crd = serde_json::to_value(crd)?;
        let spec = &crd["spec"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let versions = spec["versions"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("the CRD has no spec.versions"))?;
        for version in versions.iter().filter(|v| v["served"] != false) {
            self.register(ResourceType {
                group: text(&spec["group"]),
                version: text(&version["name"]),
                kind: text(&spec["names"]["kind"]),
                plural: text(&spec["names"]["plural"]),
                namespaced: spec["scope"] == "Namespaced",
                status_subresource: !version["subresources"]["status"].is_null(),
            });
        }
        Ok(())
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The number of requests so far: pass it to [`Self::requests_since`] later.
    pub fn mark(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    pub fn requests_since(&self, mark: usize) -> Vec<RecordedRequest> {
        lock(&self.shared.requests)
            .get(mark..)
            .unwrap_or_default()
            .to_vec()
    }

    /// Writes (create, update, patch, delete) since `mark`.
    pub fn writes_since(&self, mark: usize) -> Vec<RecordedRequest> {
        self.requests_since(mark)
            .into_iter()
            .filter(|r| r.verb.is_write())
            .collect()
    }

    /// Compacts the history and ends every running watch with 410 Gone, so that
    /// watchers must list again.
    pub fn expire_watches(&self) {
        self.shared.lock_store().compact();
        self.shared.notify.send_modify(|(_, epoch)| *epoch += 1);
    }

    /// The next `fault.times` requests matching it are answered with `fault.code`.
    pub fn fail_next(&self, fault: Fault) {
        if fault.times > 0 {
            lock(&self.shared.faults).push(fault);
        }
    }

    /// Stores an object as given, bypassing HTTP (its `creationTimestamp` and `status`
    /// kept, as after a restore): the state a controller finds when it starts.
    pub fn seed(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        object: Value,
    ) -> anyhow::Result<Value> {
        let rt = self.resource(group, version, plural)?;
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .filter(|_| rt.namespaced)
            .unwrap_or(if rt.namespaced { "default" } else { "" })
            .to_owned();
        Ok(self
            .shared
            .write(|store| store.seed(&rt, &namespace, object))?)
    }

    fn resource(&self, group: &str, version: &str, plural: &str) -> anyhow::Result<ResourceType> {
        self.shared
            .lock_store()
            .resource(group, version, plural)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{plural}.{group}/{version} is not registered"))
    }

    /// Replaces an object, or its status (`Part::Status`), as a PUT would, bypassing
    /// HTTP (what a controller or the kubelet the test plays writes): watches see it.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
        part: Part,
        object: Value,
    ) -> anyhow::Result<Value> {
        let rt = self.resource(group, version, plural)?;
        Ok(self
            .shared
            .write(|store| store.update(&rt, namespace, name, part, object))?)
    }

    /// Deletes an object as a DELETE would (marked for deletion while finalizers hold
    /// it), bypassing HTTP: watches see it.
    pub fn delete(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<Value> {
        let rt = self.resource(group, version, plural)?;
        Ok(self
            .shared
            .write(|store| store.delete(&rt, namespace, name, None))?)
    }

    /// The stored object (as JSON), bypassing HTTP: for assertions.
    pub fn object(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let store = self.shared.lock_store();
        let rt = store.resource(group, version, plural)?.clone();
        store.get(&rt, namespace, name).ok()
    }

    /// Every stored object of a resource (as JSON), bypassing HTTP: for assertions.
    pub fn objects(&self, group: &str, version: &str, plural: &str) -> Vec<Value> {
        let store = self.shared.lock_store();
        let Some(rt) = store.resource(group, version, plural).cloned() else {
            return Vec::new();
        };
        store
            .list(&rt, &store::Filter::default())
            .unwrap_or_default()
    }

    /// How many stored objects of a resource satisfy `predicate` (no copies: cheap
    /// enough to poll over many objects).
    pub fn count(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        predicate: impl Fn(&Value) -> bool,
    ) -> usize {
        let store = self.shared.lock_store();
        let Some(rt) = store.resource(group, version, plural).cloned() else {
            return 0;
        };
        store.count(&rt, predicate)
    }

    /// The current resourceVersion of the whole store.
    pub fn revision(&self) -> u64 {
        self.shared.lock_store().revision()
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        for task in lock(&self.tasks).iter() {
            task.abort();
        }
    }
}
