//! The webhooks MetalLB's controller serves, on MetalLB's paths, over HTTPS:
//! - validating admission: `kubectl apply` of an IPAddressPool or L2Advertisement that
//!   `metallb validate` would refuse is refused, with the same wording. An object is
//!   checked together with the objects of its kinds that the cluster already has
//!   (overlapping pools, duplicate names), and only its own problems refuse it: a broken
//!   object already stored does not block unrelated changes. The BGP kinds (BGPPeer,
//!   BGPAdvertisement, Community, BFDProfile) are checked on their schema and with the
//!   rules of MetalLB's webhooks that hold without a BGP implementation
//!   ([`crate::config::bgp`]); a BFDProfile a BGPPeer uses cannot be deleted;
//! - conversion of BGPPeer between v1beta1 and v1beta2 (`/convert`).
//!
//! The serving certificate comes from files (e.g. cert-manager's Secret, mounted) or
//! from the controller's own bootstrap ([`super::certs`]), and is replaced without a
//! restart when it is renewed.

use std::{collections::BTreeSet, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{Json, Router, routing::post};
use kube::{
    ResourceExt as _,
    core::{
        DynamicObject, Status,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
        conversion::{ConversionRequest, ConversionResponse, ConversionReview},
    },
    runtime::reflector::Store,
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{debug, info, warn};

use super::certs::{self, ServingCert};
use crate::config::{
    Issue, ValidateOptions,
    bgp::{self, Checked},
    crd::{
        BFDProfile, BGPAdvertisement, Community, IPAddressPool, L2Advertisement,
        bgppeer::{conversion, v1beta2::BGPPeer},
    },
    file::{self, ConfigFile},
    validate,
};

/// One webhook of MetalLB's ValidatingWebhookConfiguration (its
/// `config/webhook/manifests.yaml`): what `deploy/webhooks.yaml` declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub name: &'static str,
    pub path: &'static str,
    pub kind: &'static str,
    pub version: &'static str,
    /// The resource's plural name.
    pub resource: &'static str,
    pub operations: &'static [&'static str],
}

/// The kinds reviewed, in MetalLB's order, with its names, paths and operations (a
/// BFDProfile is reviewed when created and deleted, not when updated).
pub const WEBHOOKS: [Webhook; 6] = [
    Webhook {
        name: "bgppeersvalidationwebhook.metallb.io",
        path: "/validate-metallb-io-v1beta2-bgppeer",
        kind: "BGPPeer",
        version: "v1beta2",
        resource: "bgppeers",
        operations: &["CREATE", "UPDATE"],
    },
    Webhook {
        name: "bfdprofilevalidationwebhook.metallb.io",
        path: "/validate-metallb-io-v1beta1-bfdprofile",
        kind: "BFDProfile",
        version: "v1beta1",
        resource: "bfdprofiles",
        operations: &["CREATE", "DELETE"],
    },
    Webhook {
        name: "bgpadvertisementvalidationwebhook.metallb.io",
        path: "/validate-metallb-io-v1beta1-bgpadvertisement",
        kind: "BGPAdvertisement",
        version: "v1beta1",
        resource: "bgpadvertisements",
        operations: &["CREATE", "UPDATE"],
    },
    Webhook {
        name: "communityvalidationwebhook.metallb.io",
        path: "/validate-metallb-io-v1beta1-community",
        kind: "Community",
        version: "v1beta1",
        resource: "communities",
        operations: &["CREATE", "UPDATE"],
    },
    Webhook {
        name: "ipaddresspoolvalidationwebhook.metallb.io",
        path: "/validate-metallb-io-v1beta1-ipaddresspool",
        kind: "IPAddressPool",
        version: "v1beta1",
        resource: "ipaddresspools",
        operations: &["CREATE", "UPDATE"],
    },
    Webhook {
        name: "l2advertisementvalidationwebhook.metallb.io",
        path: "/validate-metallb-io-v1beta1-l2advertisement",
        kind: "L2Advertisement",
        version: "v1beta1",
        resource: "l2advertisements",
        operations: &["CREATE", "UPDATE"],
    },
];

/// Where the BGPPeer CRD's conversion webhook is served.
pub const CONVERT_PATH: &str = "/convert";

/// The objects the cluster has now, as JSON, to check a new one against.
#[derive(Clone, Debug, Default)]
pub struct Existing {
    pub pools: Vec<serde_json::Value>,
    pub l2_advertisements: Vec<serde_json::Value>,
    /// BGPPeers (v1beta2).
    pub peers: Vec<serde_json::Value>,
    pub communities: Vec<serde_json::Value>,
}

fn object_name(kind: &str, object: &serde_json::Value, options: &ValidateOptions) -> String {
    let meta = &object["metadata"];
    let namespace = meta["namespace"].as_str().unwrap_or(&options.namespace);
    format!(
        "{kind} {namespace}/{}",
        meta["name"].as_str().unwrap_or_default()
    )
}

/// Parses one object as `metallb validate` reads a file's, into `into`.
fn parse_into(into: &mut ConfigFile, object: &serde_json::Value) -> Result<(), Vec<Issue>> {
    let parsed = file::parse(&object.to_string())?;
    into.pools.extend(parsed.pools);
    into.l2_advertisements.extend(parsed.l2_advertisements);
    into.warnings.extend(parsed.warnings);
    Ok(())
}

fn shown(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The answer to one review of `kind` (one of [`WEBHOOKS`]).
pub fn review(
    kind: &str,
    request: &AdmissionRequest<DynamicObject>,
    existing: &Existing,
    options: &ValidateOptions,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    if kind == "BFDProfile" && request.operation == Operation::Delete {
        return review_bfd_profile_delete(response, request, existing);
    }
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return response;
    }
    let Some(object) = &request.object else {
        return response.deny("the request has no object");
    };
    let object = match serde_json::to_value(object) {
        Ok(object) => object,
        Err(error) => return response.deny(format!("the object cannot be read: {error}")),
    };
    match kind {
        "IPAddressPool" | "L2Advertisement" => {
            review_layer2(kind, response, &object, existing, options)
        }
        _ => review_bgp(kind, response, &object, existing, options),
    }
}

/// IPAddressPool and L2Advertisement: as `metallb validate` checks them in a file
/// holding the cluster's others.
fn review_layer2(
    kind: &str,
    response: AdmissionResponse,
    object: &serde_json::Value,
    existing: &Existing,
    options: &ValidateOptions,
) -> AdmissionResponse {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    // An update is checked against the others, not against its old self.
    let others = |objects: &[serde_json::Value], same_kind: bool| -> Vec<serde_json::Value> {
        if same_kind {
            except_named(objects, name)
        } else {
            objects.to_vec()
        }
    };
    let mut file = ConfigFile::default();
    // What is stored already and does not parse is left out: it is not this request's.
    for stored in others(&existing.pools, kind == "IPAddressPool")
        .iter()
        .chain(&others(
            &existing.l2_advertisements,
            kind == "L2Advertisement",
        ))
    {
        let _ = parse_into(&mut file, stored);
    }
    file.warnings.clear();
    // The reviewed object comes last, so that a check between two objects (overlap)
    // reports it on this one.
    if let Err(issues) = parse_into(&mut file, object) {
        return response.deny(shown(&issues));
    }
    let validation = validate(&file, options);
    let this = object_name(kind, object, options);
    let mine =
        |issue: &&Issue| issue.object == this || issue.object.contains(&format!("({kind} {name})"));
    let errors: Vec<Issue> = validation.errors.iter().filter(mine).cloned().collect();
    let warnings: Vec<Issue> = validation.warnings.iter().filter(mine).cloned().collect();
    answer(response, &this, &errors, &warnings)
}

fn answer(
    response: AdmissionResponse,
    object: &str,
    errors: &[Issue],
    warnings: &[Issue],
) -> AdmissionResponse {
    let mut response = if errors.is_empty() {
        response
    } else {
        debug!(%object, "refused: {}", shown(errors));
        response.deny(shown(errors))
    };
    if !warnings.is_empty() {
        response.warnings = Some(warnings.iter().map(ToString::to_string).collect());
    }
    response
}

/// Reads `object` as a `T`, or says which field is wrong and why.
fn typed<T: DeserializeOwned>(object: &serde_json::Value, name: &str) -> Result<T, Issue> {
    serde_path_to_error::deserialize(object).map_err(|error| {
        let field = error.path().to_string();
        let field = if field == "." { String::new() } else { field };
        Issue::new(name, &field, "", error.into_inner().to_string())
    })
}

/// The stored objects that parse as `T` (the others are not this request's concern).
fn stored<T: DeserializeOwned>(objects: &[serde_json::Value]) -> Vec<T> {
    objects
        .iter()
        .filter_map(|o| serde_json::from_value(o.clone()).ok())
        .collect()
}

/// The objects but the one named `name`.
fn except_named(objects: &[serde_json::Value], name: &str) -> Vec<serde_json::Value> {
    objects
        .iter()
        .filter(|o| o["metadata"]["name"].as_str() != Some(name))
        .cloned()
        .collect()
}

/// The BGP kinds: their schema (our types), then MetalLB's rules.
fn review_bgp(
    kind: &str,
    response: AdmissionResponse,
    object: &serde_json::Value,
    existing: &Existing,
    options: &ValidateOptions,
) -> AdmissionResponse {
    let this = object_name(kind, object, options);
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let checked: Result<Checked, Issue> = match kind {
        "BGPPeer" => typed::<BGPPeer>(object, &this).map(|peer| bgp::check_peer(&peer, options)),
        "BGPAdvertisement" => typed::<BGPAdvertisement>(object, &this).map(|advertisement| {
            let aliases: BTreeSet<String> = stored::<Community>(&existing.communities)
                .into_iter()
                .flat_map(|c| c.spec.communities.into_iter().map(|alias| alias.name))
                .collect();
            bgp::check_advertisement(&advertisement, &aliases, options)
        }),
        "Community" => typed::<Community>(object, &this).map(|community| {
            let others: Vec<Community> = stored(&except_named(&existing.communities, name));
            bgp::check_community(&community, &others, options)
        }),
        "BFDProfile" => typed::<BFDProfile>(object, &this)
            .map(|profile| bgp::check_bfd_profile(&profile, options)),
        _ => return response.deny(format!("{kind} is not a kind this webhook reviews")),
    };
    match checked {
        Ok(checked) => answer(response, &this, &checked.errors, &checked.warnings),
        Err(issue) => answer(response, &this, &[issue], &[]),
    }
}

/// MetalLB refuses to delete a BFDProfile that a BGPPeer names.
fn review_bfd_profile_delete(
    response: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    existing: &Existing,
) -> AdmissionResponse {
    let name = request
        .old_object
        .as_ref()
        .map(|o| o.name_any())
        .unwrap_or_else(|| request.name.clone());
    let peers: Vec<BGPPeer> = stored(&existing.peers);
    match bgp::bfd_profile_users(&name, &peers).as_slice() {
        [] => response,
        users => response.deny(format!(
            "failed to delete BFDProfile {name}, used by BGPPeer {}",
            users.join(", ")
        )),
    }
}

/// What the webhook reads the cluster's objects from.
#[derive(Clone)]
pub struct WebhookState {
    pub pools: Store<IPAddressPool>,
    pub l2_advertisements: Store<L2Advertisement>,
    pub peers: Store<BGPPeer>,
    pub communities: Store<Community>,
    pub options: ValidateOptions,
}

fn values<K>(store: &Store<K>) -> Vec<serde_json::Value>
where
    K: kube::Resource<DynamicType = ()> + Serialize + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter_map(|object| serde_json::to_value(&**object).ok())
        .collect()
}

async fn handle(
    kind: &'static str,
    state: Arc<WebhookState>,
    review_in: AdmissionReview<DynamicObject>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review_in.try_into() {
        Ok(request) => request,
        Err(error) => {
            warn!(%error, "an admission review without a request");
            return Json(AdmissionResponse::invalid(error.to_string()).into_review());
        }
    };
    let existing = Existing {
        pools: values(&state.pools),
        l2_advertisements: values(&state.l2_advertisements),
        peers: values(&state.peers),
        communities: values(&state.communities),
    };
    let response = review(kind, &request, &existing, &state.options);
    if !response.allowed {
        info!(kind, name = %request.name, reason = %response.result.message, "admission refused");
    }
    Json(response.into_review())
}

/// Answers a ConversionReview of BGPPeers.
async fn convert(Json(review_in): Json<ConversionReview>) -> Json<ConversionReview> {
    let response = match ConversionRequest::from_review(review_in) {
        Ok(request) => {
            let response = conversion::review(request);
            if response.result.status == Some(kube::core::response::StatusSummary::Failure) {
                info!(reason = %response.result.message, "conversion refused");
            }
            response
        }
        Err(error) => {
            warn!(%error, "a conversion review without a request");
            ConversionResponse::invalid(Status::failure(&error.to_string(), "BadRequest"))
        }
    };
    Json(response.into_review())
}

/// The webhook's routes: one per reviewed kind, and the conversion.
pub fn router(state: Arc<WebhookState>) -> Router {
    WEBHOOKS
        .iter()
        .fold(Router::new(), |router, webhook| {
            let state = state.clone();
            let kind = webhook.kind;
            router.route(
                webhook.path,
                post(move |Json(review): Json<AdmissionReview<DynamicObject>>| {
                    handle(kind, state.clone(), review)
                }),
            )
        })
        .route(CONVERT_PATH, post(convert))
}

/// The serving certificate and key (PEM), e.g. mounted from a Secret.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum TlsSource {
    /// Files (cert-manager's Secret, mounted), read again every `reload_every` so that
    /// a renewed certificate is served without a restart.
    Files {
        files: TlsFiles,
        reload_every: Duration,
    },
    /// The controller's own CA and certificate, kept in a Secret ([`certs`]).
    Bootstrap(certs::Bootstrap),
}

impl TlsSource {
    /// Files, read again every minute (the kubelet updates a mounted Secret within
    /// about as long).
    pub fn files(cert: PathBuf, key: PathBuf) -> Self {
        Self::Files {
            files: TlsFiles { cert, key },
            reload_every: Duration::from_secs(60),
        }
    }
}

fn tls_config(serving: Arc<ServingCert>) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_cert_resolver(serving);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves the webhooks over HTTPS on `addr`, with the certificate `serving` holds at
/// each handshake, until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    serving: Arc<ServingCert>,
    state: Arc<WebhookState>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(serving)?));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the webhook address {addr}"))?;
    info!(%addr, "serving the admission and conversion webhooks");
    let app = router(state);
    Ok(tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "webhook: accept failed");
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let service = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let stream = match acceptor.accept(stream).await {
                    Ok(stream) => stream,
                    Err(error) => {
                        debug!(%peer, %error, "webhook: TLS handshake failed");
                        return;
                    }
                };
                let builder = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                if let Err(error) = builder
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await
                {
                    debug!(%peer, %error, "webhook: connection ended");
                }
            });
        }
    }))
}

/// Keeps `serving` supplied from `source`: files read now (an error if they cannot
/// be), then followed; or the bootstrap, in the background.
fn supply(
    client: &kube::Client,
    source: TlsSource,
    serving: &Arc<ServingCert>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    Ok(match source {
        TlsSource::Files {
            files,
            reload_every,
        } => {
            certs::load_files(&files.cert, &files.key, serving)
                .context("the webhook's certificate and key files")?;
            tokio::spawn(certs::follow_files(
                files.cert,
                files.key,
                serving.clone(),
                reload_every,
            ))
        }
        TlsSource::Bootstrap(bootstrap) => {
            tokio::spawn(certs::maintain(client.clone(), bootstrap, serving.clone()))
        }
    })
}

/// Watches the cluster's MetalLB objects (in `options.namespace`) and serves the
/// webhooks on `addr`, once there is a certificate, until dropped.
pub async fn run(
    client: kube::Client,
    addr: SocketAddr,
    tls: TlsSource,
    options: ValidateOptions,
) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    use kube::{
        Api,
        runtime::{WatchStreamExt as _, reflector, watcher},
    };
    fn watched<K>(
        client: &kube::Client,
        namespace: &str,
    ) -> (Store<K>, futures::stream::BoxStream<'static, ()>)
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + DeserializeOwned
            + Clone
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let (store, writer) = reflector::store();
        let events = reflector::reflector(
            writer,
            watcher::watcher(
                Api::<K>::namespaced(client.clone(), namespace),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .map(|_| ())
        .boxed();
        (store, events)
    }
    let namespace = options.namespace.clone();
    let (pools, pool_events) = watched(&client, &namespace);
    let (l2_advertisements, l2_events) = watched(&client, &namespace);
    let (peers, peer_events) = watched(&client, &namespace);
    let (communities, community_events) = watched(&client, &namespace);
    let state = Arc::new(WebhookState {
        pools,
        l2_advertisements,
        peers,
        communities,
        options,
    });
    let serving = Arc::new(ServingCert::default());
    let _supplier = super::AbortOnDrop(supply(&client, tls, &serving)?);
    let watches =
        futures::stream::select_all([pool_events, l2_events, peer_events, community_events])
            .for_each(|()| async {});
    let serve_when_ready = async {
        serving.ready().await;
        let server = serve(addr, serving.clone(), state).await?;
        let _abort = super::AbortOnDrop(server);
        std::future::pending::<anyhow::Result<()>>().await
    };
    tokio::select! {
        () = watches => Ok(()),
        result = serve_when_ready => result,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn pool(name: &str, addresses: &[&str]) -> Value {
        json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": name, "namespace": "metallb-system"},
            "spec": {"addresses": addresses},
        })
    }

    fn advertisement(name: &str, spec: Value) -> Value {
        json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": name, "namespace": "metallb-system"},
            "spec": spec,
        })
    }

    fn bgp_object(kind: &str, name: &str, spec: Value) -> Value {
        let version = if kind == "BGPPeer" {
            "v1beta2"
        } else {
            "v1beta1"
        };
        json!({
            "apiVersion": format!("metallb.io/{version}"),
            "kind": kind,
            "metadata": {"name": name, "namespace": "metallb-system"},
            "spec": spec,
        })
    }

    fn request(kind: &str, operation: &str, object: Value) -> AdmissionRequest<DynamicObject> {
        let plural = format!("{}s", kind.to_lowercase());
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "metallb.io", "version": "v1beta1", "kind": kind},
                "resource": {"group": "metallb.io", "version": "v1beta1", "resource": plural},
                "name": object["metadata"]["name"],
                "namespace": object["metadata"]["namespace"],
                "operation": operation,
                "userInfo": {"username": "admin"},
                "object": if operation == "DELETE" { Value::Null } else { object.clone() },
                "oldObject": if operation == "CREATE" { Value::Null } else { object },
            },
        }))
        .unwrap();
        review.try_into().unwrap()
    }

    /// (kind, operation, object, objects the cluster has (any kind), refusal fragment
    /// or None when allowed)
    type Case = (
        &'static str,
        &'static str,
        Value,
        Vec<Value>,
        Option<&'static str>,
    );

    /// The cluster's objects, by kind.
    fn existing(objects: Vec<Value>) -> Existing {
        let mut existing = Existing::default();
        for object in objects {
            match object["kind"].as_str() {
                Some("IPAddressPool") => existing.pools.push(object),
                Some("L2Advertisement") => existing.l2_advertisements.push(object),
                Some("BGPPeer") => existing.peers.push(object),
                Some("Community") => existing.communities.push(object),
                other => panic!("no existing objects of kind {other:?}"),
            }
        }
        existing
    }

    #[test]
    fn review_table() {
        let aliases = bgp_object(
            "Community",
            "aliases",
            json!({"communities": [{"name": "no-advertise", "value": "65535:65282"}]}),
        );
        let cases: Vec<Case> = vec![
            (
                "IPAddressPool",
                "CREATE",
                pool("a", &["192.0.2.0/24"]),
                vec![],
                None,
            ),
            (
                "IPAddressPool",
                "CREATE",
                pool("b", &["192.0.2.128/25"]),
                vec![pool("a", &["192.0.2.0/24"])],
                Some(
                    "IPAddressPool metallb-system/b: spec.addresses[0] \"192.0.2.128/25\": overlaps \"192.0.2.0/24\" of IPAddressPool metallb-system/a",
                ),
            ),
            // An update is checked against the others, not against its old self.
            (
                "IPAddressPool",
                "UPDATE",
                pool("a", &["192.0.2.0/25"]),
                vec![pool("a", &["192.0.2.0/24"])],
                None,
            ),
            (
                "IPAddressPool",
                "CREATE",
                pool("a", &["192.0.2.9-192.0.2.1"]),
                vec![],
                Some("start 192.0.2.9 is after end 192.0.2.1"),
            ),
            (
                "IPAddressPool",
                "CREATE",
                pool("a", &["127.0.0.0/30"]),
                vec![],
                Some("127.0.0.0/30"),
            ),
            (
                "IPAddressPool",
                "CREATE",
                json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "a", "namespace": "default"}, "spec": {"addresses": ["192.0.2.0/24"]}}),
                vec![],
                Some("MetalLB reads its objects only from namespace \"metallb-system\""),
            ),
            // A broken pool already stored does not block an unrelated one.
            (
                "IPAddressPool",
                "CREATE",
                pool("b", &["198.51.100.0/24"]),
                vec![pool("a", &["bogus"])],
                None,
            ),
            (
                "IPAddressPool",
                "DELETE",
                pool("a", &["192.0.2.0/24"]),
                vec![],
                None,
            ),
            (
                "L2Advertisement",
                "CREATE",
                advertisement("l2", json!({})),
                vec![],
                None,
            ),
            (
                "L2Advertisement",
                "CREATE",
                advertisement("l2", json!({"interfaces": ["eth0", "eth0"]})),
                vec![],
                Some("spec.interfaces[1] \"eth0\": duplicate entry"),
            ),
            (
                "L2Advertisement",
                "CREATE",
                advertisement(
                    "l2",
                    json!({"nodeSelectors": [{"matchExpressions": [{"key": "a", "operator": "In", "values": ["x", "x"]}]}]}),
                ),
                vec![],
                Some("duplicate definition of match expression value"),
            ),
            (
                "L2Advertisement",
                "CREATE",
                advertisement("l2", json!({"ipAddressPools": "not-a-list"})),
                vec![],
                Some("spec.ipAddressPools"),
            ),
            // The BGP kinds: their schema first, as our types read it.
            (
                "BGPPeer",
                "CREATE",
                bgp_object(
                    "BGPPeer",
                    "p",
                    json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "holdTime": "90s"}),
                ),
                vec![],
                None,
            ),
            (
                "BGPPeer",
                "CREATE",
                bgp_object(
                    "BGPPeer",
                    "p",
                    json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "holdTime": "90 seconds"}),
                ),
                vec![],
                Some("BGPPeer metallb-system/p: spec.holdTime: "),
            ),
            (
                "BGPPeer",
                "CREATE",
                bgp_object(
                    "BGPPeer",
                    "p",
                    json!({"myASN": "64500", "peerASN": 64501, "peerAddress": "192.0.2.1"}),
                ),
                vec![],
                Some(
                    "BGPPeer metallb-system/p: spec.myASN: invalid type: string \"64500\", expected u32",
                ),
            ),
            (
                "BGPPeer",
                "UPDATE",
                bgp_object(
                    "BGPPeer",
                    "p",
                    json!({"myASN": 64500, "peerASN": 64501, "dynamicASN": "external", "peerAddress": "192.0.2.1"}),
                ),
                vec![],
                Some("spec.dynamicASN \"external\": both peer ASN and dynamicASN specified"),
            ),
            (
                "BGPPeer",
                "CREATE",
                json!({"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer", "metadata": {"name": "p", "namespace": "default"}, "spec": {"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1"}}),
                vec![],
                Some(
                    "BGPPeer default/p: metadata.namespace \"default\": MetalLB reads its objects only from namespace \"metallb-system\"",
                ),
            ),
            (
                "BGPAdvertisement",
                "CREATE",
                bgp_object(
                    "BGPAdvertisement",
                    "a",
                    json!({"communities": ["65535:65281", "no-advertise"]}),
                ),
                vec![aliases.clone()],
                None,
            ),
            (
                "BGPAdvertisement",
                "CREATE",
                bgp_object(
                    "BGPAdvertisement",
                    "a",
                    json!({"communities": ["65535:70000"]}),
                ),
                vec![],
                Some(
                    "spec.communities[0] \"65535:70000\": invalid community in BGP advertisement: invalid community value",
                ),
            ),
            (
                "BGPAdvertisement",
                "CREATE",
                bgp_object("BGPAdvertisement", "a", json!({"aggregationLength": "24"})),
                vec![],
                Some("spec.aggregationLength: invalid type: string \"24\", expected i32"),
            ),
            (
                "Community",
                "CREATE",
                bgp_object(
                    "Community",
                    "more",
                    json!({"communities": [{"name": "no-advertise", "value": "65535:65282"}]}),
                ),
                vec![aliases.clone()],
                Some(
                    "Community metallb-system/more: spec.communities[0].name \"no-advertise\": duplicate definition of community",
                ),
            ),
            // An update of a Community is not checked against its old self.
            (
                "Community",
                "UPDATE",
                aliases.clone(),
                vec![aliases.clone()],
                None,
            ),
            (
                "Community",
                "CREATE",
                bgp_object(
                    "Community",
                    "c",
                    json!({"communities": [{"name": "x", "value": "large:1:2"}]}),
                ),
                vec![],
                Some(
                    "spec.communities[0].value \"large:1:2\": parsing community \"x\": invalid community format: large:1:2",
                ),
            ),
            (
                "BFDProfile",
                "CREATE",
                bgp_object("BFDProfile", "fast", json!({"receiveInterval": 5})),
                vec![],
                Some(
                    "BFDProfile metallb-system/fast: spec.receiveInterval \"5\": invalid receive interval value: must be in 10-60000 range",
                ),
            ),
            (
                "BFDProfile",
                "DELETE",
                bgp_object("BFDProfile", "fast", json!({})),
                vec![bgp_object(
                    "BGPPeer",
                    "p",
                    json!({"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1", "bfdProfile": "fast"}),
                )],
                Some("failed to delete BFDProfile fast, used by BGPPeer p"),
            ),
            (
                "BFDProfile",
                "DELETE",
                bgp_object("BFDProfile", "unused", json!({})),
                vec![bgp_object(
                    "BGPPeer",
                    "p",
                    json!({"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1", "bfdProfile": "fast"}),
                )],
                None,
            ),
        ];
        let options = ValidateOptions::default();
        for (i, (kind, operation, object, cluster, refusal)) in cases.into_iter().enumerate() {
            let response = review(
                kind,
                &request(kind, operation, object),
                &existing(cluster),
                &options,
            );
            assert_eq!(response.uid, "u-1", "case {i}");
            match refusal {
                None => assert!(
                    response.allowed,
                    "case {i}: refused: {}",
                    response.result.message
                ),
                Some(fragment) => {
                    assert!(!response.allowed, "case {i}: allowed");
                    assert!(
                        response.result.message.contains(fragment),
                        "case {i}: {:?} does not contain {fragment:?}",
                        response.result.message
                    );
                }
            }
        }
    }

    #[test]
    fn bgp_objects_are_admitted_with_what_kubectl_should_know() {
        let response = review(
            "BGPPeer",
            &request(
                "BGPPeer",
                "CREATE",
                bgp_object(
                    "BGPPeer",
                    "p",
                    json!({"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1", "disableMP": true}),
                ),
            ),
            &Existing::default(),
            &ValidateOptions::default(),
        );
        assert!(response.allowed, "{}", response.result.message);
        assert_eq!(
            response.warnings.unwrap_or_default(),
            [
                "BGPPeer metallb-system/p: spec.disableMP: disable mp is deprecated and has no effect since it's the default behavior now",
            ]
        );
    }

    #[test]
    fn every_webhook_has_a_route_and_a_kind_the_review_knows() {
        for webhook in WEBHOOKS {
            let object = bgp_object(webhook.kind, "x", json!({}));
            let response = review(
                webhook.kind,
                &request(webhook.kind, "CREATE", object),
                &Existing::default(),
                &ValidateOptions::default(),
            );
            assert!(
                !response
                    .result
                    .message
                    .contains("not a kind this webhook reviews"),
                "{}",
                webhook.kind
            );
        }
        let paths: BTreeSet<&str> = WEBHOOKS.iter().map(|w| w.path).collect();
        assert_eq!(paths.len(), WEBHOOKS.len());
    }

    #[test]
    fn warnings_reach_kubectl() {
        let response = review(
            "L2Advertisement",
            &request(
                "L2Advertisement",
                "CREATE",
                advertisement("l2", json!({"ipAddressPools": ["nope"]})),
            ),
            &Existing::default(),
            &ValidateOptions::default(),
        );
        assert!(response.allowed);
        let warnings = response.warnings.unwrap_or_default();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("no IPAddressPool has this name"),
            "{warnings:?}"
        );
    }
}
