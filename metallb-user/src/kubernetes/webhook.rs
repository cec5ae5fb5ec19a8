//! The validating admission webhook MetalLB's controller serves, on MetalLB's paths:
//! `kubectl apply` of an IPAddressPool or L2Advertisement that `metallb validate` would
//! refuse is refused, with the same wording. An object is checked together with the
//! objects of its kinds that the cluster already has (overlapping pools, duplicate
//! names), and only its own problems refuse it: a broken object already stored does
//! not block unrelated changes.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context as _;
use axum::{Json, Router, routing::post};
use kube::{
    ResourceExt as _,
    core::{
        DynamicObject,
        admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
    },
    runtime::reflector::Store,
};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::config::{
    Issue, ValidateOptions,
    crd::{IPAddressPool, L2Advertisement},
    file::{self, ConfigFile},
    validate,
};

/// The kinds reviewed, and their paths (as in MetalLB's ValidatingWebhookConfiguration).
pub const PATHS: [(&str, &str); 2] = [
    (
        "/validate-metallb-io-v1beta1-ipaddresspool",
        "IPAddressPool",
    ),
    (
        "/validate-metallb-io-v1beta1-l2advertisement",
        "L2Advertisement",
    ),
];

/// The objects the cluster has now, as JSON, to check a new one against.
#[derive(Clone, Debug, Default)]
pub struct Existing {
    pub pools: Vec<serde_json::Value>,
    pub l2_advertisements: Vec<serde_json::Value>,
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

/// The answer to one review of `kind` (IPAddressPool or L2Advertisement).
pub fn review(
    kind: &str,
    request: &AdmissionRequest<DynamicObject>,
    existing: &Existing,
    options: &ValidateOptions,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
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
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let others = |objects: &[serde_json::Value], same_kind: bool| -> Vec<serde_json::Value> {
        objects
            .iter()
            .filter(|o| !(same_kind && o["metadata"]["name"].as_str() == Some(name)))
            .cloned()
            .collect()
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
    if let Err(issues) = parse_into(&mut file, &object) {
        return response.deny(shown(&issues));
    }
    let validation = validate(&file, options);
    let this = object_name(kind, &object, options);
    let mine =
        |issue: &&Issue| issue.object == this || issue.object.contains(&format!("({kind} {name})"));
    let errors: Vec<Issue> = validation.errors.iter().filter(mine).cloned().collect();
    let warnings: Vec<String> = validation
        .warnings
        .iter()
        .filter(mine)
        .map(ToString::to_string)
        .collect();
    let mut response = if errors.is_empty() {
        response
    } else {
        debug!(object = %this, "refused: {}", shown(&errors));
        response.deny(shown(&errors))
    };
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

/// What the webhook reads the cluster's objects from.
#[derive(Clone)]
pub struct WebhookState {
    pub pools: Store<IPAddressPool>,
    pub l2_advertisements: Store<L2Advertisement>,
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
    };
    let response = review(kind, &request, &existing, &state.options);
    if !response.allowed {
        info!(kind, name = %request.object.as_ref().map(|o| o.name_any()).unwrap_or_default(), reason = %response.result.message, "admission refused");
    }
    Json(response.into_review())
}

/// The webhook's routes, one per reviewed kind.
pub fn router(state: Arc<WebhookState>) -> Router {
    PATHS.iter().fold(Router::new(), |router, &(path, kind)| {
        let state = state.clone();
        router.route(
            path,
            post(move |Json(review): Json<AdmissionReview<DynamicObject>>| {
                handle(kind, state.clone(), review)
            }),
        )
    })
}

/// The serving certificate and key (PEM), e.g. mounted from a Secret.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn tls_config(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading the certificate {}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading the certificate {}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not make a TLS identity")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves the webhook over HTTPS on `addr` until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    tls: &TlsFiles,
    state: Arc<WebhookState>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(tls)?));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the webhook address {addr}"))?;
    info!(%addr, "serving the admission webhook");
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

/// Watches the cluster's pools and advertisements (in `options.namespace`) and serves
/// the webhook on `addr` until dropped.
pub async fn run(
    client: kube::Client,
    addr: SocketAddr,
    tls: TlsFiles,
    options: ValidateOptions,
) -> anyhow::Result<()> {
    use futures::StreamExt as _;
    use kube::{
        Api,
        runtime::{WatchStreamExt as _, reflector, watcher},
    };
    let (pools, pools_writer) = reflector::store();
    let (l2_advertisements, l2_writer) = reflector::store();
    let pool_events = reflector::reflector(
        pools_writer,
        watcher::watcher(
            Api::<IPAddressPool>::namespaced(client.clone(), &options.namespace),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let l2_events = reflector::reflector(
        l2_writer,
        watcher::watcher(
            Api::<L2Advertisement>::namespaced(client, &options.namespace),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let state = Arc::new(WebhookState {
        pools,
        l2_advertisements,
        options,
    });
    let server = serve(addr, &tls, state).await?;
    let _abort = super::AbortOnDrop(server);
    futures::stream::select(pool_events, l2_events)
        .for_each(|()| async {})
        .await;
    Ok(())
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

    /// (kind, operation, object, existing pools, existing advertisements, refusal
    /// fragment or None when allowed)
    type Case = (
        &'static str,
        &'static str,
        Value,
        Vec<Value>,
        Vec<Value>,
        Option<&'static str>,
    );

    #[test]
    fn review_table() {
        let cases: Vec<Case> = vec![
            (
                "IPAddressPool",
                "CREATE",
                pool("a", &["192.0.2.0/24"]),
                vec![],
                vec![],
                None,
            ),
            (
                "IPAddressPool",
                "CREATE",
                pool("b", &["192.0.2.128/25"]),
                vec![pool("a", &["192.0.2.0/24"])],
                vec![],
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
                vec![],
                None,
            ),
            (
                "IPAddressPool",
                "CREATE",
                pool("a", &["192.0.2.9-192.0.2.1"]),
                vec![],
                vec![],
                Some("start 192.0.2.9 is after end 192.0.2.1"),
            ),
            (
                "IPAddressPool",
                "CREATE",
                pool("a", &["127.0.0.0/30"]),
                vec![],
                vec![],
                Some("127.0.0.0/30"),
            ),
            (
                "IPAddressPool",
                "CREATE",
                json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "a", "namespace": "default"}, "spec": {"addresses": ["192.0.2.0/24"]}}),
                vec![],
                vec![],
                Some("MetalLB reads its objects only from namespace \"metallb-system\""),
            ),
            // A broken pool already stored does not block an unrelated one.
            (
                "IPAddressPool",
                "CREATE",
                pool("b", &["198.51.100.0/24"]),
                vec![pool("a", &["bogus"])],
                vec![],
                None,
            ),
            (
                "IPAddressPool",
                "DELETE",
                pool("a", &["192.0.2.0/24"]),
                vec![],
                vec![],
                None,
            ),
            (
                "L2Advertisement",
                "CREATE",
                advertisement("l2", json!({})),
                vec![],
                vec![],
                None,
            ),
            (
                "L2Advertisement",
                "CREATE",
                advertisement("l2", json!({"interfaces": ["eth0", "eth0"]})),
                vec![],
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
                vec![],
                Some("duplicate definition of match expression value"),
            ),
            (
                "L2Advertisement",
                "CREATE",
                advertisement("l2", json!({"ipAddressPools": "not-a-list"})),
                vec![],
                vec![],
                Some("spec.ipAddressPools"),
            ),
        ];
        let options = ValidateOptions::default();
        for (i, (kind, operation, object, pools, ads, refusal)) in cases.into_iter().enumerate() {
            let existing = Existing {
                pools,
                l2_advertisements: ads,
            };
            let response = review(kind, &request(kind, operation, object), &existing, &options);
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
