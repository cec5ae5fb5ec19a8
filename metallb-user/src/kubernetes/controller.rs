//! `metallb controller`: MetalLB's allocating controller on the Kubernetes API.
//!
//! Source (watchers of Services, IPAddressPools, Namespaces) -> pure core (the same
//! [`Allocator`] that `metallb plan` drives) -> writes (Service status and annotation,
//! IPAddressPool status, Events). Only the leader writes; a replica that is not the
//! leader, or stops being it, runs nothing of this.
//!
//! Order: the first reconcile, once the caches are filled, decides every Service as
//! `metallb plan` does ([`Allocator::assign_all`]: statuses first, then by creation
//! time, then namespace/name); later changes are decided one Service at a time, in the
//! order the controller sees them. A deleted Service's addresses are released, and the
//! Services that could not be served are tried again.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use futures::{StreamExt as _, TryStreamExt as _, future};
use k8s_openapi::api::{
    core::v1::{Namespace, ObjectReference, Service},
    events::v1::Event as EventsV1,
};
use kube::{
    Api, Client, Resource as _, ResourceExt as _,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt as _,
        controller::Action,
        events::{Event as KubeEvent, EventType, Recorder, Reporter},
        reflector::{self, ObjectRef, Store},
        watcher::{self, Event as WatchEvent},
    },
};
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use super::{
    cluster_config::{self, ClusterConfig},
    leader::{Elector, Leadership, LeaseConfig},
    service_status::{POOL_ANNOTATION, ServiceEvent, ServiceUpdate, update_for},
};
use crate::{
    allocator::{
        Allocator, AllocatorOptions, Decision, PoolUsage, ServiceKey, has_status_address,
        status_with,
    },
    config::{ValidateOptions, crd::IPAddressPool, file::ConfigFile},
    metrics,
};

#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// Where MetalLB's objects are (`metallb-system`).
    pub namespace: String,
    pub allocator: AllocatorOptions,
    /// Names this replica in Events (`reportingInstance`), e.g. the Pod name.
    pub instance: String,
    /// Where the allocator metrics go (pool usage, configuration loaded or stale).
    pub metrics: Option<Arc<metrics::Shared>>,
}

/// The field manager of every write.
const MANAGER: &str = "metallb-controller";

/// Reconciles running at once.
const RECONCILES_IN_FLIGHT: u16 = 32;

/// Events published at once.
const EVENTS_IN_FLIGHT: usize = 8;

/// Failed reconciles are retried after this, doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("writing Service {service}: {source}")]
    Write {
        service: ServiceKey,
        #[source]
        source: kube::Error,
    },
    #[error("this replica is not the leader")]
    NotLeader,
}

/// What the controller knows between reconciles.
#[derive(Default)]
struct State {
    /// `None` until the first reconcile has decided every Service.
    allocator: Option<Allocator>,
    cluster: ClusterConfig,
    /// Services whose request could not be met: tried again when addresses free up
    /// or the pools change.
    failed: BTreeSet<ServiceKey>,
    /// Failed reconciles in a row, for the backoff.
    retries: BTreeMap<ServiceKey, u32>,
    /// Pools left out of the configuration, with the problems last reported.
    rejected: BTreeMap<String, String>,
    /// `AllocationFailed` Events a controller published before this one started, by
    /// Service: not published again while the Service still fails the same way.
    known_failures: BTreeMap<ServiceKey, BTreeSet<KnownEvent>>,
}

/// An Event already in the API, as far as publishing it again would repeat it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct KnownEvent {
    uid: Option<String>,
    reason: String,
    note: String,
}

/// The reason whose Events a restart must not repeat.
const ALLOCATION_FAILED: &str = "AllocationFailed";

/// Shared by the reconciles and the tasks around them.
struct Context {
    client: Client,
    options: ControllerOptions,
    leadership: Leadership,
    /// Events to publish, in the background.
    events: mpsc::UnboundedSender<(ObjectReference, KubeEvent)>,
    state: Mutex<State>,
    services: Store<Service>,
    pools: Store<IPAddressPool>,
    namespaces: Store<Namespace>,
    /// Services to reconcile again (released addresses, changed pools).
    again: mpsc::UnboundedSender<ObjectRef<Service>>,
    /// Set when allocations changed: the pool statuses are brought up to date.
    pools_dirty: Notify,
    /// Set once the Events of earlier runs are loaded (at the first decision).
    known_failures_loaded: tokio::sync::OnceCell<()>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn service_ref(key: &ServiceKey) -> ObjectRef<Service> {
    ObjectRef::new(&key.name).within(&key.namespace)
}

impl Context {
    fn validate_options(&self) -> ValidateOptions {
        ValidateOptions {
            namespace: self.options.namespace.clone(),
        }
    }

    /// The pools and namespaces as cached now, validated leniently.
    fn cluster_config(&self) -> ClusterConfig {
        let pools = self.pools.state().iter().map(|p| (**p).clone()).collect();
        let namespaces = self
            .namespaces
            .state()
            .iter()
            .map(|n| (**n).clone())
            .collect();
        let objects = ConfigFile {
            pools,
            namespaces,
            ..ConfigFile::default()
        };
        cluster_config::from_objects(objects, &[], &self.validate_options())
    }

    /// Asks for `keys` to be reconciled again.
    fn retry(&self, keys: impl IntoIterator<Item = ServiceKey>) {
        for key in keys {
            let _ = self.again.send(service_ref(&key));
        }
    }

    /// Decides every cached Service as `metallb plan` decides a file's, once.
    fn bootstrap(&self, state: &mut State) {
        if state.allocator.is_some() {
            return;
        }
        state.cluster = self.cluster_config();
        let fresh = report_config(
            &state.cluster,
            &mut state.rejected,
            self.options.metrics.as_deref(),
        );
        self.publish_rejections(fresh);
        let mut services: Vec<crate::config::Service> = self
            .services
            .state()
            .iter()
            .map(|s| crate::config::Service::from(&**s))
            .collect();
        // The given order, after status and creation time: namespace/name.
        services.sort_by_key(ServiceKey::of_service);
        let mut allocator = Allocator::new(&state.cluster.config, self.options.allocator.clone());
        let decided = allocator.assign_all(&services);
        state.failed = decided
            .decisions
            .iter()
            .filter(|(_, d)| matches!(d, Decision::Failed { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        info!(
            services = services.len(),
            pools = state.cluster.config.pools.len(),
            failed = state.failed.len(),
            "every service decided"
        );
        state.allocator = Some(allocator);
        self.pools_dirty.notify_one();
    }

    /// The pools or namespaces changed: services that lost their addresses, and those
    /// that could not be served, are decided again.
    fn reload_config(&self) {
        let mut state = lock(&self.state);
        if state.allocator.is_none() {
            // The first decision reads the configuration itself, once it is complete.
            return;
        }
        let cluster = self.cluster_config();
        let same = cluster.config.pools == state.cluster.config.pools
            && cluster.config.namespaces == state.cluster.config.namespaces;
        if same {
            return;
        }
        let fresh = report_config(
            &cluster,
            &mut state.rejected,
            self.options.metrics.as_deref(),
        );
        self.publish_rejections(fresh);
        let Some(allocator) = state.allocator.as_mut() else {
            return;
        };
        let released = allocator.set_config(&cluster.config);
        state.cluster = cluster;
        let mut again: BTreeSet<ServiceKey> = released.into_iter().collect();
        again.extend(state.failed.iter().cloned());
        drop(state);
        info!(
            services = again.len(),
            "pools changed: deciding affected services again"
        );
        self.retry(again);
        self.pools_dirty.notify_one();
    }

    /// A Service is gone: its addresses are free for the ones that waited.
    fn release(&self, key: &ServiceKey) {
        let mut state = lock(&self.state);
        state.retries.remove(key);
        state.failed.remove(key);
        state.known_failures.remove(key);
        let released = state
            .allocator
            .as_mut()
            .and_then(|allocator| allocator.release(key));
        if released.is_some() {
            let waiting: Vec<ServiceKey> = state.failed.iter().cloned().collect();
            drop(state);
            debug!(service = %key, "service deleted: its addresses are free");
            self.retry(waiting);
            self.pools_dirty.notify_one();
        }
    }

    /// Releases what the allocator holds for Services no longer in the cache (deleted
    /// while a watch was down: a re-list does not report deletions).
    fn release_missing(&self) {
        let present: BTreeSet<ServiceKey> = self
            .services
            .state()
            .iter()
            .map(|s| ServiceKey::of_service(&**s))
            .collect();
        let held: Vec<ServiceKey> = {
            let state = lock(&self.state);
            let failed = state.failed.iter();
            state
                .allocator
                .as_ref()
                .map(|a| a.held_keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .chain(failed.cloned())
                .filter(|k| !present.contains(k))
                .collect()
        };
        for key in held {
            self.release(&key);
        }
    }

    /// A warning Event on each pool left out, in the background.
    fn publish_rejections(&self, rejected: Vec<(String, String)>) {
        for (name, problems) in rejected {
            let Some(pool) = self
                .pools
                .state()
                .into_iter()
                .find(|p| p.name_any() == name)
            else {
                continue;
            };
            let event = KubeEvent {
                type_: EventType::Warning,
                reason: "InvalidConfiguration".into(),
                note: Some(format!(
                    "this pool serves no Service until fixed: {problems}"
                )),
                action: "Validate".into(),
                secondary: None,
            };
            let _ = self.events.send((pool.object_ref(&()), event));
        }
    }

    /// Loads, once, the `AllocationFailed` Events that a controller (this one before a
    /// restart, or the previous leader) published: one list of every Event, filtered
    /// here, since field selectors on Events differ between API versions. If the list
    /// fails, Events are published as if there were none.
    async fn load_known_failures(&self) {
        self.known_failures_loaded
            .get_or_init(|| async {
                let api: Api<EventsV1> = Api::all(self.client.clone());
                let events = match api.list(&ListParams::default()).await {
                    Ok(list) => list.items,
                    Err(error) => {
                        warn!(%error, "cannot list the Events of earlier runs: failures will be reported again");
                        return;
                    }
                };
                let known = known_failures(&events);
                debug!(services = known.len(), "AllocationFailed events of earlier runs");
                lock(&self.state).known_failures = known;
            })
            .await;
    }

    /// Queues an Event about `service` (published in the background, a few at a time,
    /// so that Events never hold up allocation).
    fn publish(&self, service: &Service, event: &ServiceEvent) {
        if event.reason == ALLOCATION_FAILED {
            let known = KnownEvent {
                uid: service.metadata.uid.clone(),
                reason: event.reason.into(),
                note: event.note.clone(),
            };
            let state = lock(&self.state);
            if state
                .known_failures
                .get(&ServiceKey::of_service(service))
                .is_some_and(|events| events.contains(&known))
            {
                debug!(service = %ServiceKey::of_service(service), "AllocationFailed already reported: not again");
                return;
            }
        }
        let event = KubeEvent {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.into(),
            note: Some(event.note.clone()),
            action: event.reason.into(),
            secondary: None,
        };
        let _ = self.events.send((service.object_ref(&()), event));
    }

    /// Writes `update` on `service` (the version read): annotation first, then status,
    /// each carrying the resourceVersion it is based on.
    async fn write(&self, service: &Service, update: &ServiceUpdate) -> Result<(), kube::Error> {
        let key = ServiceKey::of_service(service);
        let api: Api<Service> = Api::namespaced(self.client.clone(), &key.namespace);
        let params = PatchParams::apply(MANAGER);
        let params = PatchParams {
            field_manager: params.field_manager,
            ..PatchParams::default()
        };
        let mut version = service.resource_version();
        if let Some(pool) = &update.annotation {
            let patch = json!({"metadata": {
                "resourceVersion": version,
                "annotations": {POOL_ANNOTATION: pool},
            }});
            let written = api.patch(&key.name, &params, &Patch::Merge(&patch)).await?;
            version = written.resource_version();
        }
        if let Some(ips) = &update.ingress {
            let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
            let load_balancer = if ingress.is_empty() {
                json!({"ingress": null})
            } else {
                json!({"ingress": ingress})
            };
            let patch = json!({
                "metadata": {"resourceVersion": version},
                "status": {"loadBalancer": load_balancer},
            });
            api.patch_status(&key.name, &params, &Patch::Merge(&patch))
                .await?;
        }
        Ok(())
    }
}

/// Logs what was left out of the configuration; returns the pools whose problems are
/// new (for Events), and sets the configuration metrics.
fn report_config(
    cluster: &ClusterConfig,
    reported: &mut BTreeMap<String, String>,
    metrics: Option<&metrics::Shared>,
) -> Vec<(String, String)> {
    let mut fresh = Vec::new();
    let mut now = BTreeMap::new();
    for (pool, issues) in &cluster.rejected {
        let text = issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if reported.get(pool) != Some(&text) {
            warn!(%pool, "IPAddressPool left out of the configuration: {text}");
            fresh.push((pool.clone(), text.clone()));
        }
        now.insert(pool.clone(), text);
    }
    for issue in &cluster.errors {
        warn!("{issue}");
    }
    *reported = now;
    if let Some(metrics) = metrics {
        let mut state = metrics.state.lock().unwrap_or_else(|p| p.into_inner());
        state.config_loaded = true;
        state.config_stale = !cluster.rejected.is_empty() || !cluster.errors.is_empty();
    }
    fresh
}

/// The `AllocationFailed` Events about Services that this controller published, by
/// Service.
fn known_failures(events: &[EventsV1]) -> BTreeMap<ServiceKey, BTreeSet<KnownEvent>> {
    let mut known: BTreeMap<ServiceKey, BTreeSet<KnownEvent>> = BTreeMap::new();
    for event in events {
        let Some(regarding) = &event.regarding else {
            continue;
        };
        if event.reporting_controller.as_deref() != Some(MANAGER)
            || event.reason.as_deref() != Some(ALLOCATION_FAILED)
            || regarding.kind.as_deref() != Some("Service")
        {
            continue;
        }
        let (Some(namespace), Some(name)) = (&regarding.namespace, &regarding.name) else {
            continue;
        };
        known
            .entry(ServiceKey {
                namespace: namespace.clone(),
                name: name.clone(),
            })
            .or_default()
            .insert(KnownEvent {
                uid: regarding.uid.clone(),
                reason: ALLOCATION_FAILED.into(),
                note: event.note.clone().unwrap_or_default(),
            });
    }
    known
}

/// Decides `service` under the lock; what to write comes back.
fn decide(ctx: &Context, service: &Service) -> (ServiceUpdate, Vec<String>) {
    let key = ServiceKey::of_service(service);
    let mut state = lock(&ctx.state);
    ctx.bootstrap(&mut state);
    let Some(allocator) = state.allocator.as_mut() else {
        return (ServiceUpdate::default(), Vec::new());
    };
    let had = allocator.allocation(&key).cloned();
    // The Service object is the truth, but what was decided for it may not be written
    // yet (or not seen back through the watch): decide on the status it will carry.
    let mut read = crate::config::Service::from(service);
    if let Some(held) = &had
        && !has_status_address(&read)
    {
        read.status = Some(status_with(&held.ips));
    }
    let assigned = allocator.assign(&read);
    let freed = had.is_some() && !matches!(assigned.decision, Decision::Allocated(_));
    if matches!(assigned.decision, Decision::Failed { .. }) {
        state.failed.insert(key.clone());
    } else {
        state.failed.remove(&key);
        // Served now: a later failure is news again.
        state.known_failures.remove(&key);
    }
    let update = update_for(service, &assigned.decision);
    if freed || update.ingress.is_some() {
        ctx.pools_dirty.notify_one();
    }
    if freed {
        let waiting: Vec<ServiceKey> = state
            .failed
            .iter()
            .filter(|k| **k != key)
            .cloned()
            .collect();
        drop(state);
        ctx.retry(waiting);
    }
    (update, assigned.warnings)
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    if !ctx.leadership.is_leader() {
        return Err(ReconcileError::NotLeader);
    }
    let key = ServiceKey::of_service(&*service);
    let mut current = (*service).clone();
    ctx.load_known_failures().await;
    // A 409 means the Service changed since it was read: read it again and decide
    // again, never overwrite.
    for attempt in 0..3 {
        let (update, warnings) = decide(&ctx, &current);
        if !update.writes() && update.events.is_empty() {
            lock(&ctx.state).retries.remove(&key);
            return Ok(Action::await_change());
        }
        for warning in &warnings {
            warn!(service = %key, "{warning}");
        }
        if !ctx.leadership.is_leader() {
            return Err(ReconcileError::NotLeader);
        }
        match ctx.write(&current, &update).await {
            Ok(()) => {
                if update.writes() {
                    info!(service = %key, ingress = ?update.ingress, pool = ?update.annotation, "service updated");
                }
                for event in &update.events {
                    ctx.publish(&current, event);
                }
                lock(&ctx.state).retries.remove(&key);
                return Ok(Action::await_change());
            }
            Err(kube::Error::Api(status)) if status.code == 409 && attempt < 2 => {
                debug!(service = %key, "conflict: reading the service again");
                let api: Api<Service> = Api::namespaced(ctx.client.clone(), &key.namespace);
                match api.get_opt(&key.name).await {
                    Ok(Some(fresh)) => current = fresh,
                    Ok(None) => {
                        ctx.release(&key);
                        return Ok(Action::await_change());
                    }
                    Err(source) => {
                        return Err(ReconcileError::Write {
                            service: key,
                            source,
                        });
                    }
                }
            }
            Err(source) => {
                return Err(ReconcileError::Write {
                    service: key,
                    source,
                });
            }
        }
    }
    Ok(Action::requeue(FIRST_BACKOFF))
}

fn error_policy(service: Arc<Service>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let key = ServiceKey::of_service(&*service);
    if matches!(error, ReconcileError::NotLeader) {
        return Action::await_change();
    }
    let retries = {
        let mut state = lock(&ctx.state);
        let retries = state.retries.entry(key.clone()).or_default();
        *retries = retries.saturating_add(1);
        *retries
    };
    let delay = FIRST_BACKOFF
        .saturating_mul(1 << retries.min(8).saturating_sub(1))
        .min(MAX_BACKOFF);
    warn!(service = %key, %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The IPAddressPool status MetalLB keeps: assigned and available addresses by family.
fn pool_status(usage: &PoolUsage) -> serde_json::Value {
    let count = |n: u128| i64::try_from(n).unwrap_or(i64::MAX);
    json!({
        "assignedIPv4": count(u128::from(usage.ipv4.in_use)),
        "assignedIPv6": count(u128::from(usage.ipv6.in_use)),
        "availableIPv4": count(usage.ipv4.available()),
        "availableIPv6": count(usage.ipv6.available()),
    })
}

/// Keeps every pool's status equal to its usage, writing only what differs.
async fn pool_statuses(ctx: Arc<Context>) {
    loop {
        ctx.pools_dirty.notified().await;
        // Let a burst of reconciles settle into one write per pool.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let usage = {
            let state = lock(&ctx.state);
            match &state.allocator {
                Some(allocator) => allocator.usage(),
                None => continue,
            }
        };
        if let Some(metrics) = &ctx.options.metrics {
            metrics
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pools = usage.clone();
        }
        for pool in ctx.pools.state() {
            let name = pool.name_any();
            let Some(usage) = usage.get(&name) else {
                continue;
            };
            let wanted = pool_status(usage);
            let current = serde_json::to_value(&pool.status).unwrap_or_default();
            if current == wanted || !ctx.leadership.is_leader() {
                continue;
            }
            let api: Api<IPAddressPool> =
                Api::namespaced(ctx.client.clone(), &ctx.options.namespace);
            let patch = json!({"status": wanted});
            let params = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            };
            if let Err(error) = api
                .patch_status(&name, &params, &Patch::Merge(&patch))
                .await
            {
                warn!(pool = %name, %error, "cannot write the pool's status");
                ctx.pools_dirty.notify_one();
            }
        }
    }
}

/// Runs the controller while this replica leads; returns when it stops leading.
pub async fn run_while_leading(client: Client, options: ControllerOptions, leadership: Leadership) {
    let services_api: Api<Service> = Api::all(client.clone());
    let pools_api: Api<IPAddressPool> = Api::namespaced(client.clone(), &options.namespace);
    let namespaces_api: Api<Namespace> = Api::all(client.clone());

    let (services, services_writer) = reflector::store();
    let (pools, pools_writer) = reflector::store();
    let (namespaces, namespaces_writer) = reflector::store();
    let (again, again_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: Some(options.instance.clone()),
    };
    let ctx = Arc::new(Context {
        events: events_tx,
        client,
        options,
        leadership: leadership.clone(),
        state: Mutex::new(State::default()),
        services,
        pools,
        namespaces,
        again,
        pools_dirty: Notify::new(),
        known_failures_loaded: tokio::sync::OnceCell::new(),
    });

    // Pools and namespaces: each change reloads the configuration.
    let config_ctx = ctx.clone();
    let pool_events = reflector::reflector(
        pools_writer,
        watcher::watcher(pools_api, watcher::Config::default()),
    )
    .map_ok(|_| ())
    .boxed();
    let namespace_events = reflector::reflector(
        namespaces_writer,
        watcher::watcher(namespaces_api, watcher::Config::default()),
    )
    .map_ok(|_| ())
    .boxed();
    let config_task =
        futures::stream::select(pool_events, namespace_events).for_each(move |event| {
            let ctx = config_ctx.clone();
            async move {
                match event {
                    Ok(()) => ctx.reload_config(),
                    Err(error) => warn!(%error, "watching pools or namespaces"),
                }
            }
        });

    // Services: deletions release addresses as they are seen.
    let delete_ctx = ctx.clone();
    let service_events = reflector::reflector(
        services_writer,
        watcher::watcher(services_api, watcher::Config::default()),
    )
    .inspect_ok(move |event| match event {
        WatchEvent::Delete(service) => delete_ctx.release(&ServiceKey::of_service(service)),
        WatchEvent::InitDone => delete_ctx.release_missing(),
        _ => {}
    })
    .touched_objects();

    // One task waits for the caches the first decision needs and tells every
    // reconcile (kube's Store::wait_until_ready wakes only one of several waiters).
    let (caches_ready, caches) = tokio::sync::watch::channel(false);
    let (pools_store, namespaces_store) = (ctx.pools.clone(), ctx.namespaces.clone());
    let _caches = super::AbortOnDrop(tokio::spawn(async move {
        let _ = pools_store.wait_until_ready().await;
        let _ = namespaces_store.wait_until_ready().await;
        let _ = caches_ready.send(true);
    }));
    let controller = Controller::for_stream(service_events, ctx.services.clone())
        // A bounded number of reconciles (and so of requests) in flight: 10,000
        // Services at start must not open 10,000 connections at once.
        .with_config(kube::runtime::controller::Config::default().concurrency(RECONCILES_IN_FLIGHT))
        .reconcile_on(tokio_stream::wrappers::UnboundedReceiverStream::new(
            again_rx,
        ))
        .run(
            move |service, ctx| {
                let mut caches = caches.clone();
                async move {
                    // The first decision needs every pool and namespace.
                    let _ = caches.wait_for(|ready| *ready).await;
                    reconcile(service, ctx).await
                }
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|result| {
            if let Err(error) = result {
                debug!(%error, "controller");
            }
            future::ready(())
        });

    let recorder = Recorder::new(ctx.client.clone(), reporter);
    let events = tokio_stream::wrappers::UnboundedReceiverStream::new(events_rx)
        .for_each_concurrent(
            EVENTS_IN_FLIGHT,
            |(regarding, event): (ObjectReference, KubeEvent)| {
                let recorder = recorder.clone();
                async move {
                    if let Err(error) = recorder.publish(&event, &regarding).await {
                        warn!(%error, reason = %event.reason, "cannot publish an event");
                    }
                }
            },
        );
    let mut lost = leadership;
    tokio::select! {
        () = events => {}
        () = controller => warn!("the service controller stopped"),
        () = config_task => warn!("the pool watch stopped"),
        () = pool_statuses(ctx.clone()) => {}
        () = async { while lost.changed().await {} } => info!("not the leader any more: stopped allocating"),
    }
}

/// Runs the controller until `shutdown` resolves: with `election`, only while this
/// replica holds the Lease (the Lease is released on shutdown); without, always.
pub async fn run(
    client: Client,
    options: ControllerOptions,
    election: Option<LeaseConfig>,
    shutdown: impl Future<Output = ()>,
) {
    if let Some(metrics) = &options.metrics {
        // Every replica serves (the webhook, and leadership when it comes).
        metrics
            .ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (mut leadership, elector) = match election {
        Some(lease) => {
            let (elector, leadership) = Elector::new(client.clone(), lease);
            let mut stopped = stopped.clone();
            let task = tokio::spawn(elector.run(async move {
                if stopped.wait_for(|stop| *stop).await.is_err() {
                    // Dropped without a stop, like a crash: keep the Lease until aborted.
                    std::future::pending::<()>().await;
                }
            }));
            (leadership, Some(super::AbortOnDrop(task)))
        }
        None => (Leadership::always(), None),
    };
    let serve = async {
        loop {
            leadership.acquired().await;
            run_while_leading(client.clone(), options.clone(), leadership.clone()).await;
        }
    };
    tokio::select! {
        () = serve => {}
        () = shutdown => info!("stopping"),
    }
    let _ = stop.send(true);
    if let Some(mut elector) = elector {
        // The elector releases the Lease, so that another replica takes over at once.
        let _ = (&mut elector.0).await;
    }
}
