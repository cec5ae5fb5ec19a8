//! The speaker's Kubernetes source: watches what MetalLB's speaker watches (Services,
//! EndpointSlices, Nodes, Namespaces, IPAddressPools, L2Advertisements, BGPPeers
//! (v1beta2), BGPAdvertisements, BFDProfiles, Communities, the Secrets of its namespace
//! (BGPPeers' `passwordSecret`), the speaker Pods, the `metallb-excludel2` ConfigMap)
//! and hands the speaker loop a complete [`Snapshot`] after every burst of changes: the
//! addresses are those of the Services' status (the controller writes them; a speaker
//! never allocates), the live members are the nodes whose speaker Pod is Ready (with
//! membership gossip, the speaker Pods are its peers and its members the live nodes),
//! endpoints are as the API lists them.
//!
//! It also reports what this node announces: a `ServiceL2Status` per Service announced
//! in layer 2 and a `ServiceBGPStatus` per Service announced over BGP (with the peers it
//! goes to), MetalLB's objects and labels, owned by the speaker Pod; a `nodeAssigned`
//! Event when this node starts announcing a Service; Warning Events when FRR does not
//! apply the BGP configuration.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use futures::{StreamExt as _, stream::BoxStream};
use k8s_openapi::{
    api::{
        core::v1::{ConfigMap, Namespace, Node, ObjectReference, Pod, Secret, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{
    Api, Client, Resource, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    core::NamespaceResourceScope,
    runtime::{
        WatchStreamExt as _,
        events::{Event as KubeEvent, EventType, Recorder, Reporter},
        reflector::{self, Store},
        watcher,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::cluster_config;
use crate::{
    allocator::ServiceKey,
    bgp::speaker::BgpReport,
    config::{
        ValidateOptions,
        crd::{
            BFDProfile, BGPAdvertisement, Community, IPAddressPool, InterfaceInfo, L2Advertisement,
            MetalLBServiceBGPStatus, MetalLBServiceL2Status, ServiceBGPStatus, ServiceL2Status,
            bgppeer::v1beta2::BGPPeer,
        },
        file::ConfigFile,
        interfaces::{self, EXCLUDE_L2_CONFIG_MAP},
    },
    election::{ElectionContext, EndpointRule},
    plan::AddressSource,
    speaker::{Announced, Snapshot, Update},
};

/// The labels MetalLB puts on a ServiceL2Status and a ServiceBGPStatus.
pub const NODE_LABEL: &str = "metallb.io/node";
pub const SERVICE_NAME_LABEL: &str = "metallb.io/service-name";
pub const SERVICE_NAMESPACE_LABEL: &str = "metallb.io/service-namespace";

/// The field manager of every write.
const MANAGER: &str = "metallb-speaker";

/// The longest a pass of ServiceL2Status writes may take before it is made again.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A burst of changes is applied once, this long after it started.
const SETTLE: Duration = Duration::from_millis(50);

#[derive(Clone, Debug)]
pub struct KubernetesOptions {
    /// This speaker's Pod (owner of its ServiceL2Status objects, and named in Events).
    pub pod_name: Option<String>,
    /// The label selector of the speaker Pods, whose Ready nodes are the live members.
    pub speaker_selector: String,
}

/// MetalLB's speaker Pods carry these labels.
pub const DEFAULT_SPEAKER_SELECTOR: &str = "app=metallb,component=speaker";

/// The caches the snapshots are built from.
#[derive(Clone)]
struct Stores {
    services: Store<Service>,
    endpoint_slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    namespaces: Store<Namespace>,
    pools: Store<IPAddressPool>,
    l2_advertisements: Store<L2Advertisement>,
    bgp_peers: Store<BGPPeer>,
    bgp_advertisements: Store<BGPAdvertisement>,
    bfd_profiles: Store<BFDProfile>,
    communities: Store<Community>,
    /// The Secrets of the speaker's namespace: BGPPeers' passwords.
    secrets: Store<Secret>,
    speakers: Store<Pod>,
    /// The `metallb-excludel2` ConfigMap (at most one: watched by name).
    exclude_l2: Store<ConfigMap>,
}

pub struct Source {
    client: Client,
    options: KubernetesOptions,
    namespace: String,
    node_name: String,
}

fn owned<K>(store: &Store<K>) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}

/// Whether a Pod's `Ready` condition is True.
fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The nodes whose speaker Pod is Ready: the live members without membership gossip
/// (with it, the gossip's members, as MetalLB's memberlist).
pub fn live_nodes(speakers: &[Pod]) -> BTreeSet<String> {
    speakers
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none() && pod_ready(pod))
        .filter_map(|pod| pod.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect()
}

impl Stores {
    /// The snapshot, and the problems of the `metallb-excludel2` ConfigMap (MetalLB's
    /// defaults apply while it has errors).
    fn snapshot(&self, namespace: &str, this_node: &str) -> (Snapshot, Vec<String>) {
        let options = ValidateOptions {
            namespace: namespace.into(),
        };
        let objects = ConfigFile {
            pools: owned(&self.pools),
            l2_advertisements: owned(&self.l2_advertisements),
            namespaces: owned(&self.namespaces),
            bgp_peers: owned(&self.bgp_peers),
            bgp_advertisements: owned(&self.bgp_advertisements),
            bfd_profiles: owned(&self.bfd_profiles),
            communities: owned(&self.communities),
            ..ConfigFile::default()
        };
        let cluster = cluster_config::from_objects(objects, &owned(&self.secrets), &options);
        for (pool, issues) in &cluster.rejected {
            for issue in issues {
                debug!(%pool, "IPAddressPool left out: {issue}");
            }
        }
        for (object, issues) in &cluster.left_out {
            for issue in issues {
                debug!(%object, "left out: {issue}");
            }
        }
        let mut config = cluster.config;
        // The core's form of each: the cache already holds the API objects.
        config.services = (self.services.state().iter())
            .map(|service| crate::config::Service::from(&**service))
            .collect();
        config.nodes = owned(&self.nodes);
        config.endpoint_slices = owned(&self.endpoint_slices);
        let exclude_l2 = interfaces::for_cluster(namespace, owned(&self.exclude_l2).first());
        if let Some(exclusions) = exclude_l2.exclusions {
            config.interface_exclusions = exclusions;
        }
        let exclusion_issues = (exclude_l2.errors.iter().map(|e| format!("error: {e}")))
            .chain(exclude_l2.warnings.iter().map(|w| format!("warning: {w}")))
            .collect();
        let speaker_pods = owned(&self.speakers);
        let mut live = live_nodes(&speaker_pods);
        // This speaker is running: until its Pod shows Ready (which waits for this very
        // sync) it counts itself, as MetalLB's memberlist does.
        live.insert(this_node.to_owned());
        let snapshot = Snapshot {
            config,
            addresses: AddressSource::Status,
            election: ElectionContext {
                live_nodes: Some(live),
                endpoints: EndpointRule::Observed,
                ..ElectionContext::default()
            },
            speakers: Some(crate::membership::peers::from_pods(&speaker_pods)),
            read: Default::default(),
        };
        (snapshot, exclusion_issues)
    }

    async fn ready(&self) {
        let _ = self.services.wait_until_ready().await;
        let _ = self.endpoint_slices.wait_until_ready().await;
        let _ = self.nodes.wait_until_ready().await;
        let _ = self.namespaces.wait_until_ready().await;
        let _ = self.pools.wait_until_ready().await;
        let _ = self.l2_advertisements.wait_until_ready().await;
        let _ = self.bgp_peers.wait_until_ready().await;
        let _ = self.bgp_advertisements.wait_until_ready().await;
        let _ = self.bfd_profiles.wait_until_ready().await;
        let _ = self.communities.wait_until_ready().await;
        let _ = self.secrets.wait_until_ready().await;
        let _ = self.speakers.wait_until_ready().await;
        let _ = self.exclude_l2.wait_until_ready().await;
    }
}

/// A reflector on `api` whose events are only "something changed".
fn watched<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, BoxStream<'static, ()>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&()).into_owned();
    let events = reflector::reflector(writer, watcher::watcher(api, config))
        .default_backoff()
        .filter_map(move |event| {
            let kind = kind.clone();
            async move {
                match event {
                    Ok(_) => Some(()),
                    Err(error) => {
                        warn!(%kind, %error, "watch failed; retrying");
                        None
                    }
                }
            }
        })
        .boxed();
    (store, events)
}

/// [`watched`] on every object of kind `K` in `namespace`.
fn watched_in<K>(client: &Client, namespace: &str) -> (Store<K>, BoxStream<'static, ()>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watched(
        Api::<K>::namespaced(client.clone(), namespace),
        watcher::Config::default(),
    )
}

impl Source {
    /// A client from the in-cluster configuration or KUBECONFIG.
    pub async fn connect(
        options: KubernetesOptions,
        namespace: &str,
        node_name: &str,
    ) -> anyhow::Result<Self> {
        let client = Client::try_default().await.map_err(|error| {
            anyhow::anyhow!(
                "no configuration file (--config) and no Kubernetes API to talk to (in-cluster configuration, or KUBECONFIG): {error}"
            )
        })?;
        Ok(Self::with_client(client, options, namespace, node_name))
    }

    pub fn with_client(
        client: Client,
        options: KubernetesOptions,
        namespace: &str,
        node_name: &str,
    ) -> Self {
        Self {
            client,
            options,
            namespace: namespace.into(),
            node_name: node_name.into(),
        }
    }

    /// The client it talks with (for the speaker's lookup on stop).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Watches, and sends a snapshot after every burst of changes; reports what this
    /// node announces (`announced` in layer 2, `bgp` over BGP) as ServiceL2Status and
    /// ServiceBGPStatus objects and Events.
    pub async fn run(
        self,
        updates: mpsc::Sender<Update>,
        announced: watch::Receiver<Announced>,
        bgp: watch::Receiver<BgpReport>,
    ) {
        let all = watcher::Config::default();
        let client = &self.client;
        let (services, services_events) = watched(Api::<Service>::all(client.clone()), all.clone());
        let (endpoint_slices, slices_events) =
            watched(Api::<EndpointSlice>::all(client.clone()), all.clone());
        let (nodes, nodes_events) = watched(Api::<Node>::all(client.clone()), all.clone());
        let (namespaces, namespaces_events) =
            watched(Api::<Namespace>::all(client.clone()), all.clone());
        let (pools, pools_events) = watched_in::<IPAddressPool>(client, &self.namespace);
        let (l2_advertisements, l2_events) = watched_in::<L2Advertisement>(client, &self.namespace);
        let (bgp_peers, bgp_peers_events) = watched_in::<BGPPeer>(client, &self.namespace);
        let (bgp_advertisements, bgp_advertisements_events) =
            watched_in::<BGPAdvertisement>(client, &self.namespace);
        let (bfd_profiles, bfd_profiles_events) = watched_in::<BFDProfile>(client, &self.namespace);
        let (communities, communities_events) = watched_in::<Community>(client, &self.namespace);
        let (secrets, secrets_events) = watched_in::<Secret>(client, &self.namespace);
        let (speakers, speakers_events) = watched(
            Api::<Pod>::namespaced(client.clone(), &self.namespace),
            watcher::Config::default().labels(&self.options.speaker_selector),
        );
        let (exclude_l2, exclude_l2_events) = watched(
            Api::<ConfigMap>::namespaced(client.clone(), &self.namespace),
            watcher::Config::default().fields(&format!("metadata.name={EXCLUDE_L2_CONFIG_MAP}")),
        );
        let stores = Stores {
            services,
            endpoint_slices,
            nodes,
            namespaces,
            pools,
            l2_advertisements,
            bgp_peers,
            bgp_advertisements,
            bfd_profiles,
            communities,
            secrets,
            speakers,
            exclude_l2,
        };
        let mut changes = futures::stream::select_all([
            services_events,
            slices_events,
            nodes_events,
            namespaces_events,
            pools_events,
            l2_events,
            bgp_peers_events,
            bgp_advertisements_events,
            bfd_profiles_events,
            communities_events,
            secrets_events,
            speakers_events,
            exclude_l2_events,
        ]);
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: self.options.pod_name.clone(),
        };
        let status = StatusWriter {
            client: client.clone(),
            namespace: self.namespace.clone(),
            node_name: self.node_name.clone(),
            recorder: Recorder::new(client.clone(), reporter),
            services: stores.services.clone(),
            speakers: stores.speakers.clone(),
            owner: None,
        };
        // Started once the caches are filled (it reads them), not before: kube's
        // Store::wait_until_ready wakes only one of several tasks waiting at once.
        let mut status = Some((status, announced, bgp));
        let mut status_task = None;

        // Changes are applied in bursts once every cache is filled.
        let mut ready = false;
        let stores_ready = stores.clone();
        let mut until_ready = Box::pin(async move { stores_ready.ready().await });
        // Said once each time they change, not at every snapshot.
        let mut exclusion_issues = Vec::new();
        loop {
            tokio::select! {
                () = &mut until_ready, if !ready => {
                    ready = true;
                    info!("every watch is synced: announcing");
                    if let Some((writer, announced, bgp)) = status.take() {
                        let pod_name = self.options.pod_name.clone();
                        status_task = Some(super::AbortOnDrop(tokio::spawn(
                            writer.run(announced, bgp, pod_name),
                        )));
                    }
                }
                change = changes.next() => {
                    if change.is_none() {
                        warn!("every watch ended");
                        break;
                    }
                    if !ready {
                        continue;
                    }
                    // Let the rest of the burst arrive.
                    let settle = tokio::time::sleep(SETTLE);
                    tokio::pin!(settle);
                    loop {
                        tokio::select! {
                            () = &mut settle => break,
                            more = changes.next() => if more.is_none() { break },
                        }
                    }
                }
            }
            if !ready {
                continue;
            }
            let (snapshot, issues) = stores.snapshot(&self.namespace, &self.node_name);
            if issues != exclusion_issues {
                for issue in &issues {
                    warn!(
                        "{issue} (the interfaces to leave alone: MetalLB's defaults apply while the ConfigMap has errors)"
                    );
                }
                if issues.is_empty() {
                    info!(
                        config_map = EXCLUDE_L2_CONFIG_MAP,
                        "the interfaces to leave alone are read without problems"
                    );
                }
                exclusion_issues = issues;
            }
            if updates
                .send(Update::Apply(Box::new(snapshot)))
                .await
                .is_err()
            {
                break;
            }
        }
        drop(status_task);
    }
}

/// A status object the speaker keeps per Service this node announces: MetalLB's
/// `ServiceL2Status` and `ServiceBGPStatus`, named by `generateName`, labelled with the
/// node and the Service, owned by the speaker Pod.
trait ServiceStatus:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    type Status: PartialEq + Serialize + Send + Sync;
    /// The `generateName` MetalLB gives these objects.
    const GENERATE_NAME: &'static str;
    fn current(&self) -> Option<&Self::Status>;
    fn with_metadata(metadata: ObjectMeta) -> Self;
}

/// Both status kinds are the same shape: metadata, an empty spec and a status.
macro_rules! service_status {
    ($kind:ty, $status:ty, $generate_name:literal) => {
        impl ServiceStatus for $kind {
            type Status = $status;
            const GENERATE_NAME: &'static str = $generate_name;
            fn current(&self) -> Option<&Self::Status> {
                self.status.as_ref()
            }
            fn with_metadata(metadata: ObjectMeta) -> Self {
                Self {
                    metadata,
                    spec: Default::default(),
                    status: None,
                }
            }
        }
    };
}
service_status!(ServiceL2Status, MetalLBServiceL2Status, "l2-");
service_status!(ServiceBGPStatus, MetalLBServiceBGPStatus, "bgp-");

/// Keeps the ServiceL2Status and ServiceBGPStatus objects of this node equal to what it
/// announces, emits `nodeAssigned` when it starts announcing a Service, and a Warning
/// when FRR does not apply the BGP configuration.
struct StatusWriter {
    client: Client,
    namespace: String,
    node_name: String,
    recorder: Recorder,
    services: Store<Service>,
    speakers: Store<Pod>,
    owner: Option<OwnerReference>,
}

impl StatusWriter {
    async fn run(
        mut self,
        mut announced: watch::Receiver<Announced>,
        mut bgp: watch::Receiver<BgpReport>,
        pod_name: Option<String>,
    ) {
        self.owner = match &pod_name {
            Some(name) => self.pod_owner(name),
            None => {
                warn!(
                    "no --pod-name (METALLB_POD_NAME): ServiceL2Status and ServiceBGPStatus objects get no owner, and outlive this speaker if it is killed"
                );
                None
            }
        };
        debug!(owner = ?self.owner.as_ref().map(|o| &o.name), "reporting what this node announces");
        let mut previous = Announced::new();
        let mut previous_bgp = BgpReport::default();
        loop {
            let now = announced.borrow_and_update().clone();
            let bgp_now = bgp.borrow_and_update().clone();
            debug!(
                layer2 = now.len(),
                bgp = bgp_now.announced.len(),
                "writing this node's ServiceL2Status and ServiceBGPStatus objects"
            );
            let l2_wanted: BTreeMap<ServiceKey, MetalLBServiceL2Status> = now
                .iter()
                .map(|(key, interfaces)| (key.clone(), self.l2_status(key, interfaces)))
                .collect();
            let bgp_wanted: BTreeMap<ServiceKey, MetalLBServiceBGPStatus> = bgp_now
                .announced
                .iter()
                .map(|(key, peers)| (key.clone(), self.bgp_status(key, peers)))
                .collect();
            // A call that hangs must not stop the reports for good: a pass that takes
            // too long counts as failed and is made again.
            let pass = async {
                self.publish_assignments(previous.keys(), now.keys(), "layer2")
                    .await;
                self.publish_assignments(
                    previous_bgp.announced.keys(),
                    bgp_now.announced.keys(),
                    "bgp",
                )
                .await;
                self.publish_bgp_outcome(&previous_bgp, &bgp_now).await;
                let l2 = self.sync::<ServiceL2Status>(&l2_wanted).await;
                let bgp = self.sync::<ServiceBGPStatus>(&bgp_wanted).await;
                l2 && bgp
            };
            let converged = match tokio::time::timeout(REPORT_TIMEOUT, pass).await {
                Ok(converged) => converged,
                Err(_) => {
                    warn!(
                        "writing ServiceL2Status and ServiceBGPStatus objects took longer than {REPORT_TIMEOUT:?}: trying again"
                    );
                    false
                }
            };
            debug!(converged, "status pass done");
            previous = now;
            previous_bgp = bgp_now;
            let retry = tokio::time::sleep(Duration::from_secs(if converged { 3600 } else { 1 }));
            tokio::select! {
                changed = announced.changed() => if changed.is_err() { return },
                changed = bgp.changed() => if changed.is_err() { return },
                () = retry => {}
            }
        }
    }

    /// This speaker's Pod, from the speaker Pods watched (no permission beyond it).
    fn pod(&self, name: &str) -> Option<std::sync::Arc<Pod>> {
        self.speakers
            .state()
            .into_iter()
            .find(|p| p.name_any() == name)
    }

    fn pod_owner(&self, name: &str) -> Option<OwnerReference> {
        let Some(pod) = self.pod(name) else {
            warn!(pod = %name, "this speaker's Pod is not among the speaker Pods (--speaker-selector): ServiceL2Status and ServiceBGPStatus objects get no owner");
            return None;
        };
        Some(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.name_any(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            ..OwnerReference::default()
        })
    }

    /// `nodeAssigned` on every Service this node newly announces with `protocol`.
    async fn publish_assignments<'a>(
        &self,
        previous: impl Iterator<Item = &'a ServiceKey>,
        now: impl Iterator<Item = &'a ServiceKey>,
        protocol: &str,
    ) {
        let previous: BTreeSet<&ServiceKey> = previous.collect();
        for key in now.filter(|k| !previous.contains(k)) {
            let Some(service) = self
                .services
                .state()
                .into_iter()
                .find(|s| ServiceKey::of_service(&**s) == *key)
            else {
                continue;
            };
            let event = KubeEvent {
                type_: EventType::Normal,
                reason: "nodeAssigned".into(),
                note: Some(format!(
                    "announcing from node \"{}\" with protocol \"{protocol}\"",
                    self.node_name
                )),
                action: "Announce".into(),
                secondary: None,
            };
            let reference: ObjectReference = service.object_ref(&());
            self.publish(&event, &reference, &key.to_string()).await;
        }
    }

    /// A Warning on this speaker's Pod (its Node without one) when an apply of the BGP
    /// configuration fails, and a Normal Event when one succeeds again.
    async fn publish_bgp_outcome(&self, previous: &BgpReport, now: &BgpReport) {
        let event = if now.failures > previous.failures {
            KubeEvent {
                type_: EventType::Warning,
                reason: "bgpConfigNotApplied".into(),
                note: Some(format!(
                    "FRR did not apply the BGP configuration of node \"{}\" ({} failed attempts; retrying): {}",
                    self.node_name,
                    now.failures,
                    now.last_error.as_deref().unwrap_or("unknown error")
                )),
                action: "ApplyBGPConfiguration".into(),
                secondary: None,
            }
        } else if now.failures == 0 && previous.failures > 0 {
            KubeEvent {
                type_: EventType::Normal,
                reason: "bgpConfigApplied".into(),
                note: Some(format!(
                    "FRR applied the BGP configuration of node \"{}\" after {} failed attempts",
                    self.node_name, previous.failures
                )),
                action: "ApplyBGPConfiguration".into(),
                secondary: None,
            }
        } else {
            return;
        };
        let reference = match self.owner.as_ref().and_then(|o| self.pod(&o.name)) {
            Some(pod) => pod.object_ref(&()),
            None => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(self.node_name.clone()),
                ..ObjectReference::default()
            },
        };
        self.publish(&event, &reference, "the BGP configuration")
            .await;
    }

    async fn publish(&self, event: &KubeEvent, reference: &ObjectReference, about: &str) {
        if let Err(error) = self.recorder.publish(event, reference).await {
            warn!(%error, about, "cannot publish an event");
        }
    }

    fn l2_status(&self, key: &ServiceKey, interfaces: &[String]) -> MetalLBServiceL2Status {
        MetalLBServiceL2Status {
            node: self.node_name.clone(),
            service_name: key.name.clone(),
            service_namespace: key.namespace.clone(),
            interfaces: interfaces
                .iter()
                .map(|name| InterfaceInfo { name: name.clone() })
                .collect(),
        }
    }

    fn bgp_status(&self, key: &ServiceKey, peers: &BTreeSet<String>) -> MetalLBServiceBGPStatus {
        MetalLBServiceBGPStatus {
            node: self.node_name.clone(),
            service_name: key.name.clone(),
            service_namespace: key.namespace.clone(),
            peers: peers.iter().cloned().collect(),
        }
    }

    /// One pass over this node's objects of kind `K`: one per Service of `wanted`, with
    /// its status; whether everything is as wanted now.
    async fn sync<K: ServiceStatus>(&self, wanted: &BTreeMap<ServiceKey, K::Status>) -> bool {
        let kind = K::kind(&());
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        let mine = format!("{NODE_LABEL}={}", self.node_name);
        let existing = match api.list(&ListParams::default().labels(&mine)).await {
            Ok(list) => list.items,
            Err(error) => {
                warn!(%error, "cannot list this node's {kind} objects");
                return false;
            }
        };
        let mut ok = true;
        let mut kept: BTreeMap<ServiceKey, K> = BTreeMap::new();
        for object in existing {
            let labels = object.labels();
            let key = ServiceKey {
                namespace: labels
                    .get(SERVICE_NAMESPACE_LABEL)
                    .cloned()
                    .unwrap_or_default(),
                name: labels.get(SERVICE_NAME_LABEL).cloned().unwrap_or_default(),
            };
            if wanted.contains_key(&key) && !kept.contains_key(&key) {
                kept.insert(key, object);
                continue;
            }
            // Not announced any more, or a duplicate.
            if let Err(error) = api
                .delete(&object.name_any(), &DeleteParams::default())
                .await
                && !matches!(&error, kube::Error::Api(s) if s.code == 404)
            {
                warn!(%error, name = %object.name_any(), "cannot delete a {kind}");
                ok = false;
            }
        }
        for (key, status) in wanted {
            let name = match kept.get(key) {
                Some(object) if object.current() == Some(status) => continue,
                Some(object) => object.name_any(),
                None => match self.create(&api, key).await {
                    Ok(name) => name,
                    Err(error) => {
                        warn!(%error, service = %key, "cannot create a {kind}");
                        ok = false;
                        continue;
                    }
                },
            };
            let patch = json!({ "status": status });
            let params = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            };
            if let Err(error) = api
                .patch_status(&name, &params, &Patch::Merge(&patch))
                .await
            {
                warn!(%error, service = %key, "cannot write a {kind}");
                ok = false;
            }
        }
        ok
    }

    async fn create<K: ServiceStatus>(
        &self,
        api: &Api<K>,
        key: &ServiceKey,
    ) -> Result<String, kube::Error> {
        let object = K::with_metadata(ObjectMeta {
            generate_name: Some(K::GENERATE_NAME.into()),
            namespace: Some(self.namespace.clone()),
            labels: Some(BTreeMap::from([
                (NODE_LABEL.to_owned(), self.node_name.clone()),
                (SERVICE_NAME_LABEL.to_owned(), key.name.clone()),
                (SERVICE_NAMESPACE_LABEL.to_owned(), key.namespace.clone()),
            ])),
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..ObjectMeta::default()
        });
        let created = api.create(&PostParams::default(), &object).await?;
        Ok(created.name_any())
    }
}
