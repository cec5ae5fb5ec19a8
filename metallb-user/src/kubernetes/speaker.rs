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
    collections::{BTreeMap, BTreeSet, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
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
    election::{ElectionContext, EndpointRule, owner_of, planned_part},
    plan::AddressSource,
    speaker::{Announced, Snapshot, SourceRead, Update},
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
    /// The snapshot (its Services sorted by key), their keys, and the problems of the
    /// `metallb-excludel2` ConfigMap (MetalLB's defaults apply while it has errors).
    fn snapshot(
        &self,
        namespace: &str,
        this_node: &str,
    ) -> (Snapshot, Vec<ServiceKey>, Vec<String>) {
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
        // The core's form of each: the cache already holds the API objects. Sorted by
        // key (the caches' order changes from one read to the next): the places of
        // the Services are comparable between reads ([`crate::config::Changes`]), and
        // a Service's EndpointSlices come in the same order each time.
        let mut services: Vec<(ServiceKey, std::sync::Arc<Service>)> = (self.services.state())
            .into_iter()
            .map(|service| (ServiceKey::of_service(&*service), service))
            .collect();
        services.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        config.services = (services.iter())
            .map(|(_, service)| crate::config::Service::from(&**service))
            .collect();
        let keys = services.into_iter().map(|(key, _)| key).collect();
        // What a plan uses of each Node: a status report changes nothing else.
        config.nodes = (self.nodes.state().iter())
            .map(|node| planned_part(node))
            .collect();
        config
            .nodes
            .sort_unstable_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut slices = self.endpoint_slices.state();
        slices.sort_unstable_by(|a, b| {
            (a.metadata.namespace.as_deref(), a.metadata.name.as_deref())
                .cmp(&(b.metadata.namespace.as_deref(), b.metadata.name.as_deref()))
        });
        config.endpoint_slices = slices.iter().map(|slice| (**slice).clone()).collect();
        drop(slices);
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
        (snapshot, keys, exclusion_issues)
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

/// What a watch event changes of the next snapshot, for the word the source gives
/// the replan ([`crate::config::Changes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Touch {
    /// Nothing a plan of the configuration reads: a speaker Pod (the live nodes it
    /// gives are compared by the replan itself), a Node whose planned part
    /// ([`planned_part`]) is what it was.
    Nothing,
    /// These Services, or their EndpointSlices (by the Service they belong to).
    Services(Vec<ServiceKey>),
    /// Anything else, or a watch that lists again (a restart, 410 Gone): no word.
    Whole,
}

/// The most Services one burst collects before it gives up its word (the word then
/// would be refused anyway: [`crate::config::changes::between`]).
const MOST_TOUCHED: usize = 1 << 16;

/// What the events of a burst touched.
#[derive(Debug, Default)]
struct Burst {
    whole: bool,
    touched: BTreeSet<ServiceKey>,
}

impl Burst {
    fn add(&mut self, touch: Touch) {
        match touch {
            Touch::Nothing => {}
            Touch::Services(keys) if !self.whole => {
                self.touched.extend(keys);
                if self.touched.len() > MOST_TOUCHED {
                    self.add(Touch::Whole);
                }
            }
            Touch::Services(_) => {}
            Touch::Whole => {
                self.whole = true;
                self.touched = BTreeSet::new();
            }
        }
    }
}

/// A 64-bit digest (SipHash-1-3, fixed keys) of what serializes.
fn digest_of(value: &(impl Serialize + ?Sized)) -> u64 {
    struct Writer(DefaultHasher);
    impl std::io::Write for Writer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut writer = Writer(DefaultHasher::new());
    if serde_json::to_writer(&mut writer, value).is_err() {
        // Not reached (an API object serializes): a value that changes every time.
        return u64::MAX ^ writer.0.finish();
    }
    writer.0.finish()
}

/// An object's place in its cache, as a digest of its namespace and name.
fn id_of(metadata: &ObjectMeta) -> u64 {
    let mut hasher = DefaultHasher::new();
    (&metadata.namespace, &metadata.name).hash(&mut hasher);
    hasher.finish()
}

/// What an event of a Service touches.
fn service_touch(event: &watcher::Event<Service>) -> Touch {
    match event {
        watcher::Event::Apply(service) | watcher::Event::Delete(service) => {
            Touch::Services(vec![ServiceKey::of_service(service)])
        }
        watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::InitDone => {
            Touch::Whole
        }
    }
}

/// Whom each EndpointSlice belonged to (digests of its place and of its owner): a
/// slice that changes owner touches the one it leaves too, which its event does not
/// name, so then there is no word.
#[derive(Debug, Default)]
struct SliceOwners(HashMap<u64, u64>);

impl SliceOwners {
    fn touch(&mut self, event: &watcher::Event<EndpointSlice>) -> Touch {
        let owner = |slice: &EndpointSlice| {
            let owner = owner_of(slice);
            let digest = digest_of(&owner.as_ref().map(|o| (&o.namespace, &o.name)));
            (owner, digest)
        };
        match event {
            watcher::Event::Apply(slice) => {
                let (owner, digest) = owner(slice);
                match self.0.insert(id_of(&slice.metadata), digest) {
                    Some(was) if was != digest => Touch::Whole,
                    _ => Touch::Services(owner.into_iter().collect()),
                }
            }
            watcher::Event::Delete(slice) => {
                let (owner, digest) = owner(slice);
                match self.0.remove(&id_of(&slice.metadata)) {
                    Some(was) if was != digest => Touch::Whole,
                    _ => Touch::Services(owner.into_iter().collect()),
                }
            }
            watcher::Event::Init => {
                self.0.clear();
                Touch::Whole
            }
            watcher::Event::InitApply(slice) => {
                let (_, digest) = owner(slice);
                self.0.insert(id_of(&slice.metadata), digest);
                Touch::Whole
            }
            watcher::Event::InitDone => Touch::Whole,
        }
    }
}

/// The digest of each Node's planned part ([`planned_part`]): a status report that
/// changes nothing of it (a heartbeat, every few seconds on every Node) touches
/// nothing; any other change of a Node, no word.
#[derive(Debug, Default)]
struct PlannedNodes(HashMap<u64, u64>);

impl PlannedNodes {
    fn touch(&mut self, event: &watcher::Event<Node>) -> Touch {
        match event {
            watcher::Event::Apply(node) => {
                let digest = digest_of(&planned_part(node));
                match self.0.insert(id_of(&node.metadata), digest) {
                    Some(was) if was == digest => Touch::Nothing,
                    _ => Touch::Whole,
                }
            }
            watcher::Event::Delete(node) => {
                self.0.remove(&id_of(&node.metadata));
                Touch::Whole
            }
            watcher::Event::Init => {
                self.0.clear();
                Touch::Whole
            }
            watcher::Event::InitApply(node) => {
                self.0
                    .insert(id_of(&node.metadata), digest_of(&planned_part(node)));
                Touch::Whole
            }
            watcher::Event::InitDone => Touch::Whole,
        }
    }
}

/// A speaker Pod: it gives the live nodes and the peers, no configuration.
fn speaker_touch(event: &watcher::Event<Pod>) -> Touch {
    match event {
        watcher::Event::Apply(_) | watcher::Event::Delete(_) => Touch::Nothing,
        watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::InitDone => {
            Touch::Whole
        }
    }
}

/// A reflector on `api` whose events say what they touch (`touch`).
fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
    mut touch: impl FnMut(&watcher::Event<K>) -> Touch + Send + 'static,
) -> (Store<K>, BoxStream<'static, Touch>)
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
            // The store changes with events only: an error changes nothing (the
            // watch then lists again, and those events say so).
            let touched = match event {
                Ok(event) => Some(touch(&event)),
                Err(error) => {
                    warn!(%kind, %error, "watch failed; retrying");
                    None
                }
            };
            std::future::ready(touched)
        })
        .boxed();
    (store, events)
}

/// [`watched`] on every object of kind `K` in `namespace`; any change of them is one
/// of the rest of the configuration (no word).
fn watched_in<K>(client: &Client, namespace: &str) -> (Store<K>, BoxStream<'static, Touch>)
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
        |_| Touch::Whole,
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
        let (services, services_events) = watched(
            Api::<Service>::all(client.clone()),
            all.clone(),
            service_touch,
        );
        let mut slice_owners = SliceOwners::default();
        let (endpoint_slices, slices_events) = watched(
            Api::<EndpointSlice>::all(client.clone()),
            all.clone(),
            move |event| slice_owners.touch(event),
        );
        let mut planned_nodes = PlannedNodes::default();
        let (nodes, nodes_events) = watched(Api::<Node>::all(client.clone()), all.clone(), {
            move |event| planned_nodes.touch(event)
        });
        let (namespaces, namespaces_events) =
            watched(Api::<Namespace>::all(client.clone()), all.clone(), |_| {
                Touch::Whole
            });
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
            speaker_touch,
        );
        let (exclude_l2, exclude_l2_events) = watched(
            Api::<ConfigMap>::namespaced(client.clone(), &self.namespace),
            watcher::Config::default().fields(&format!("metadata.name={EXCLUDE_L2_CONFIG_MAP}")),
            |_| Touch::Whole,
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
        // The reads handed over are numbered; with the keys of the last one's Services
        // and what the events since touched, the next says which of its Services
        // changed ([`crate::config::changes::between`]).
        let mut handed: Option<(u64, Vec<ServiceKey>)> = None;
        let mut burst = Burst::default();
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
                    let Some(touch) = change else {
                        warn!("every watch ended");
                        break;
                    };
                    burst.add(touch);
                    if !ready {
                        continue;
                    }
                    // Let the rest of the burst arrive.
                    let settle = tokio::time::sleep(SETTLE);
                    tokio::pin!(settle);
                    loop {
                        tokio::select! {
                            () = &mut settle => break,
                            more = changes.next() => match more {
                                Some(touch) => burst.add(touch),
                                None => break,
                            },
                        }
                    }
                }
            }
            if !ready {
                continue;
            }
            let (mut snapshot, keys, issues) = stores.snapshot(&self.namespace, &self.node_name);
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
            let Burst { whole, touched } = std::mem::take(&mut burst);
            let (number, changes) = match &handed {
                Some((last, before)) => {
                    let changes = (!whole)
                        .then(|| crate::config::changes::between(before, &keys, &touched))
                        .flatten();
                    debug!(
                        read = last + 1,
                        touched = touched.len(),
                        whole,
                        changes = ?changes,
                        "the Services that changed since the last read"
                    );
                    (last + 1, changes.map(|changes| (*last, changes)))
                }
                None => (1, None),
            };
            drop(touched);
            snapshot.read = SourceRead { number, changes };
            handed = Some((number, keys));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(namespace: &str, name: &str) -> ServiceKey {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn slice(name: &str, namespace: Option<&str>, owner: Option<&str>) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": owner.map(|o| json!({"kubernetes.io/service-name": o})),
            },
            "addressType": "IPv4",
            "endpoints": [],
        }))
        .expect("slice")
    }

    fn node(labels: Value, heartbeat: &str, network_unavailable: &str) -> Node {
        let heartbeat = format!("2026-01-01T00:00:{heartbeat:0>2}Z");
        serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": labels, "resourceVersion": heartbeat},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat, "reason": "KubeletReady"},
                    {"type": "NetworkUnavailable", "status": network_unavailable, "lastHeartbeatTime": heartbeat},
                ],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "images": [{"names": [format!("image@{heartbeat}")]}],
            },
        }))
        .expect("node")
    }

    use serde_json::Value;

    #[test]
    fn a_service_event_touches_its_key_and_a_relist_touches_everything() {
        let service: Service =
            serde_json::from_value(json!({"metadata": {"name": "web"}})).expect("service");
        assert_eq!(
            service_touch(&watcher::Event::Apply(service.clone())),
            Touch::Services(vec![key("default", "web")])
        );
        assert_eq!(
            service_touch(&watcher::Event::Delete(service.clone())),
            Touch::Services(vec![key("default", "web")])
        );
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(service),
            watcher::Event::InitDone,
        ] {
            assert_eq!(service_touch(&event), Touch::Whole);
        }
    }

    #[test]
    fn an_endpoint_slice_touches_its_owner_and_one_that_changes_owner_everything() {
        let mut owners = SliceOwners::default();
        let apply = |owners: &mut SliceOwners, slice| owners.touch(&watcher::Event::Apply(slice));
        assert_eq!(
            apply(&mut owners, slice("web-1", Some("ns"), Some("web"))),
            Touch::Services(vec![key("ns", "web")])
        );
        // Changed, same owner.
        assert_eq!(
            apply(&mut owners, slice("web-1", Some("ns"), Some("web"))),
            Touch::Services(vec![key("ns", "web")])
        );
        // Another owner: the one it leaves is not named.
        assert_eq!(
            apply(&mut owners, slice("web-1", Some("ns"), Some("api"))),
            Touch::Whole
        );
        // No owner: nobody's (no Service's digest has it).
        assert_eq!(
            apply(&mut owners, slice("loose", None, None)),
            Touch::Services(vec![])
        );
        assert_eq!(
            apply(&mut owners, slice("loose", None, Some("web"))),
            Touch::Whole
        );
        assert_eq!(
            owners.touch(&watcher::Event::Delete(slice("loose", None, Some("web")))),
            Touch::Services(vec![key("default", "web")])
        );
        // A relist starts over: what it lists is known after it.
        assert_eq!(owners.touch(&watcher::Event::Init), Touch::Whole);
        assert_eq!(
            owners.touch(&watcher::Event::InitApply(slice(
                "web-1",
                Some("ns"),
                Some("api")
            ))),
            Touch::Whole
        );
        assert_eq!(owners.touch(&watcher::Event::InitDone), Touch::Whole);
        assert_eq!(
            apply(&mut owners, slice("web-1", Some("ns"), Some("api"))),
            Touch::Services(vec![key("ns", "api")])
        );
    }

    #[test]
    fn a_node_status_report_touches_nothing_and_a_change_of_what_is_planned_everything() {
        let mut nodes = PlannedNodes::default();
        let mut apply = |node| nodes.touch(&watcher::Event::Apply(node));
        assert_eq!(
            apply(node(json!({"zone": "a"}), "1", "False")),
            Touch::Whole
        );
        // A heartbeat: times, images, resource version.
        assert_eq!(
            apply(node(json!({"zone": "a"}), "2", "False")),
            Touch::Nothing
        );
        assert_eq!(
            apply(node(json!({"zone": "b"}), "3", "False")),
            Touch::Whole
        );
        assert_eq!(apply(node(json!({"zone": "b"}), "4", "True")), Touch::Whole);
        assert_eq!(
            apply(node(json!({"zone": "b"}), "5", "True")),
            Touch::Nothing
        );
        assert_eq!(
            nodes.touch(&watcher::Event::Delete(node(
                json!({"zone": "b"}),
                "5",
                "True"
            ))),
            Touch::Whole
        );
        // What is planned of it: the same plan, from what changes less.
        let planned = planned_part(&node(json!({"zone": "a"}), "7", "True"));
        assert_eq!(
            serde_json::to_value(&planned).expect("JSON"),
            json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "labels": {"zone": "a"}},
                "status": {
                    "conditions": [
                        {"type": "Ready", "status": "True"},
                        {"type": "NetworkUnavailable", "status": "True"},
                    ],
                    "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                },
            })
        );
    }

    #[test]
    fn a_burst_collects_what_its_events_touch_until_one_touches_everything() {
        let mut burst = Burst::default();
        burst.add(Touch::Services(vec![key("a", "1")]));
        burst.add(Touch::Nothing);
        burst.add(Touch::Services(vec![key("a", "2"), key("a", "1")]));
        assert!(!burst.whole);
        assert_eq!(burst.touched, [key("a", "1"), key("a", "2")].into());
        burst.add(Touch::Whole);
        burst.add(Touch::Services(vec![key("a", "3")]));
        assert!(burst.whole);
        assert!(burst.touched.is_empty());
    }
}
