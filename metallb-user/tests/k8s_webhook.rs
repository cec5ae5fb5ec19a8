//! The webhooks over HTTPS, as the API server calls them: AdmissionReview documents
//! posted to MetalLB's paths, checked against the objects the cluster has;
//! ConversionReviews of BGPPeers; and the certificates they are served with (files
//! followed as cert-manager renews them, or the controller's own bootstrap: the Secret,
//! the caBundles, a second replica, rotation), against the test API server.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, body::Bytes};
use kube::{Api, api::PostParams};
use metallb_testkit::{TestApiServer, apiserver::Verb, rbac};
use metallb_user::{
    config::{
        ValidateOptions,
        crd::{self, IPAddressPool},
    },
    kubernetes::{
        AbortOnDrop,
        certs::{self, Bootstrap, Policy},
        rbac::CONTROLLER,
        webhook::{self, TlsSource},
    },
};
use serde_json::{Value, json};
use tokio::time::Instant;

const NS: &str = "metallb-system";
const DEADLINE: Duration = Duration::from_secs(15);
const HOST: &str = "metallb-webhook-service.metallb-system.svc";

/// A self-signed certificate for 127.0.0.1, written to a scratch directory of its own.
struct Certificate {
    dir: std::path::PathBuf,
    pem: String,
}

impl Certificate {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "metallb-webhook-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let certificate = Self {
            dir,
            pem: String::new(),
        };
        certificate.renew()
    }

    /// A new key and certificate in the same files.
    fn renew(mut self) -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(self.dir.join("tls.key"), key.serialize_pem()).unwrap();
        std::fs::write(self.dir.join("tls.crt"), cert.pem()).unwrap();
        self.pem = cert.pem();
        self
    }

    fn der(&self) -> Vec<u8> {
        use rustls::pki_types::{CertificateDer, pem::PemObject as _};
        CertificateDer::from_pem_slice(self.pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    fn files(&self, reload_every: Duration) -> TlsSource {
        TlsSource::Files {
            files: webhook::TlsFiles {
                cert: self.dir.join("tls.crt"),
                key: self.dir.join("tls.key"),
            },
            reload_every,
        }
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// A test API server with every metallb.io CRD.
async fn server() -> (TestApiServer, kube::Client) {
    let server = TestApiServer::start().await.unwrap();
    for definition in crd::definitions().unwrap() {
        server.register_crd(&definition).unwrap();
    }
    let client = server.client().unwrap();
    (server, client)
}

/// The webhooks, served on a free port of 127.0.0.1 until the handle is dropped, as
/// `metallb controller` serves them: its requests are recorded as the controller's
/// ServiceAccount's, and checked against its RBAC at the end of each test.
fn start_webhook(server: &TestApiServer, tls: TlsSource) -> (u16, AbortOnDrop) {
    let port = free_port();
    let address = format!("127.0.0.1:{port}").parse().unwrap();
    let client = rbac::client(server, &CONTROLLER, NS);
    let task = tokio::spawn(async move {
        if let Err(error) = webhook::run(client, address, tls, ValidateOptions::default()).await {
            panic!("the webhooks stopped: {error:#}");
        }
    });
    (port, AbortOnDrop(task))
}

async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TLS connection to the webhook on `port`, trusting only the CAs of `ca` (PEM) and
/// expecting a certificate for `server_name`.
async fn connect(
    port: u16,
    ca: &str,
    server_name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    connector
        .connect(ServerName::try_from(server_name.to_owned()).unwrap(), tcp)
        .await
}

/// The certificate the webhook on `port` serves (DER), when it verifies against `ca`.
async fn served_certificate(port: u16, ca: &str, server_name: &str) -> Option<Vec<u8>> {
    let tls = connect(port, ca, server_name).await.ok()?;
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| der.to_vec())
}

/// POSTs `body` to `path` over TLS, trusting only `ca`, to a certificate for
/// `server_name`.
async fn post_to(port: u16, ca: &str, server_name: &str, path: &str, body: &Value) -> Value {
    let tls = connect(port, ca, server_name).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header("host", server_name)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// POSTs `body` to `path` over TLS, trusting only `ca` (a certificate for 127.0.0.1).
async fn post(port: u16, ca: &str, path: &str, body: &Value) -> Value {
    post_to(port, ca, "127.0.0.1", path, body).await
}

/// An AdmissionReview of `object` as the API server sends it to `kind`'s webhook.
fn admission(kind: &str, operation: &str, object: Value) -> Value {
    let webhook = webhook::WEBHOOKS.iter().find(|w| w.kind == kind).unwrap();
    let (object, old_object) = match operation {
        "DELETE" => (Value::Null, object),
        _ => (object, Value::Null),
    };
    let name = object["metadata"]["name"].clone();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7c1f",
            "kind": {"group": "metallb.io", "version": webhook.version, "kind": kind},
            "resource": {"group": "metallb.io", "version": webhook.version, "resource": webhook.resource},
            "name": if name.is_null() { old_object["metadata"]["name"].clone() } else { name },
            "namespace": NS,
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": old_object,
        },
    })
}

fn review(kind: &str, object: Value) -> Value {
    admission(kind, "CREATE", object)
}

fn pool(name: &str, cidr: &str) -> Value {
    json!({
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "metallb-system"},
        "spec": {"addresses": [cidr]},
    })
}

#[tokio::test]
async fn refuses_a_pool_overlapping_one_the_cluster_has_and_admits_a_good_one() {
    let (server, client) = server().await;
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), NS);
    pools
        .create(
            &PostParams::default(),
            &serde_json::from_value(pool("first", "192.0.2.0/24")).unwrap(),
        )
        .await
        .unwrap();

    let certificate = Certificate::new();
    let (port, _webhook) = start_webhook(&server, certificate.files(Duration::from_secs(60)));

    let path = "/validate-metallb-io-v1beta1-ipaddresspool";
    let overlapping = review("IPAddressPool", pool("second", "192.0.2.128/25"));
    // The webhook knows the stored pool once its watch has listed it: poll until the
    // overlap is seen (a connection refused before it listens is retried too).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let attempt = tokio::spawn({
            let ca = certificate.pem.clone();
            let body = overlapping.clone();
            async move { post(port, &ca, path, &body).await }
        })
        .await;
        if let Ok(answer) = attempt
            && answer["response"]["allowed"] == false
        {
            break answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the overlap was never refused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], "7c1f");
    assert_eq!(
        answer["response"]["status"]["message"],
        "IPAddressPool metallb-system/second: spec.addresses[0] \"192.0.2.128/25\": overlaps \"192.0.2.0/24\" of IPAddressPool metallb-system/first"
    );

    let good = post(
        port,
        &certificate.pem,
        path,
        &review("IPAddressPool", pool("second", "198.51.100.0/24")),
    )
    .await;
    assert_eq!(good["response"]["allowed"], true);
    let l2 = json!({"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "all", "namespace": "metallb-system"}});
    let answer = post(
        port,
        &certificate.pem,
        "/validate-metallb-io-v1beta1-l2advertisement",
        &review("L2Advertisement", l2),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

fn conversion_review(desired: &str, objects: Vec<Value>) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {"uid": "c0nv", "desiredAPIVersion": desired, "objects": objects},
    })
}

fn peer(api_version: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": "BGPPeer",
        "metadata": {"name": name, "namespace": NS, "uid": "u1", "resourceVersion": "4"},
        "spec": spec,
    })
}

#[tokio::test]
async fn converts_bgppeers_both_ways_and_refuses_an_object_it_cannot_read() {
    let (server, _) = server().await;
    let certificate = Certificate::new();
    let (port, _webhook) = start_webhook(&server, certificate.files(Duration::from_secs(60)));
    let ca = certificate.pem.clone();
    until("the webhook to serve", async || {
        served_certificate(port, &ca, "127.0.0.1").await
    })
    .await;

    let v1beta1 = peer(
        "metallb.io/v1beta1",
        "p",
        json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "holdTime": "90s",
               "nodeSelectors": [{"matchLabels": {"a": "b"}}]}),
    );
    let up = post(
        port,
        &ca,
        "/convert",
        &conversion_review("metallb.io/v1beta2", vec![v1beta1.clone()]),
    )
    .await;
    assert_eq!(up["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(up["kind"], "ConversionReview");
    assert_eq!(up["response"]["uid"], "c0nv");
    assert_eq!(up["response"]["result"]["status"], "Success", "{up}");
    let v1beta2 = peer(
        "metallb.io/v1beta2",
        "p",
        json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "holdTime": "1m30s",
               "keepaliveTime": "0s", "nodeSelectors": [{"matchLabels": {"a": "b"}}]}),
    );
    assert_eq!(up["response"]["convertedObjects"], json!([v1beta2]));

    let down = post(
        port,
        &ca,
        "/convert",
        &conversion_review("metallb.io/v1beta1", vec![v1beta2]),
    )
    .await;
    assert_eq!(down["response"]["result"]["status"], "Success", "{down}");
    assert_eq!(
        down["response"]["convertedObjects"],
        json!([peer(
            "metallb.io/v1beta1",
            "p",
            json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "holdTime": "1m30s",
                   "keepaliveTime": "0s", "nodeSelectors": [{"matchLabels": {"a": "b"}}]}),
        )])
    );

    // The second object cannot be read: nothing is converted, and the message names it.
    let bad = peer(
        "metallb.io/v1beta1",
        "bad",
        json!({"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1", "holdTime": "soon"}),
    );
    let refused = post(
        port,
        &ca,
        "/convert",
        &conversion_review("metallb.io/v1beta2", vec![v1beta1, bad]),
    )
    .await;
    assert_eq!(
        refused["response"]["result"]["status"], "Failure",
        "{refused}"
    );
    let message = refused["response"]["result"]["message"].as_str().unwrap();
    assert!(message.starts_with("object 1: BGPPeer bad: "), "{message}");
    assert!(message.contains("soon"), "{message}");
    assert_eq!(refused["response"]["convertedObjects"], json!([]));
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

#[tokio::test]
async fn bgp_kinds_are_checked_and_a_bfd_profile_in_use_is_not_deleted() {
    let (server, client) = server().await;
    let peers: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        NS,
        &kube::api::ApiResource::erase::<crd::bgppeer::v1beta2::BGPPeer>(&()),
    );
    peers
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
                "metadata": {"name": "router", "namespace": NS},
                "spec": {"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "bfdProfile": "fast"},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let certificate = Certificate::new();
    let (port, _webhook) = start_webhook(&server, certificate.files(Duration::from_secs(60)));
    let ca = certificate.pem.clone();

    let delete = admission(
        "BFDProfile",
        "DELETE",
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "BFDProfile", "metadata": {"name": "fast", "namespace": NS}}),
    );
    // Refused once the webhook's watch has listed the peer.
    let answer = until("the BFDProfile's deletion to be refused", async || {
        let ca = ca.clone();
        let delete = delete.clone();
        let answer = tokio::spawn(async move {
            post(
                port,
                &ca,
                "/validate-metallb-io-v1beta1-bfdprofile",
                &delete,
            )
            .await
        })
        .await
        .ok()?;
        (answer["response"]["allowed"] == false).then_some(answer)
    })
    .await;
    assert_eq!(
        answer["response"]["status"]["message"],
        "failed to delete BFDProfile fast, used by BGPPeer router"
    );

    let bad_peer = admission(
        "BGPPeer",
        "CREATE",
        peer(
            "metallb.io/v1beta2",
            "p2",
            json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.1", "holdTime": "2s"}),
        ),
    );
    let answer = post(port, &ca, "/validate-metallb-io-v1beta2-bgppeer", &bad_peer).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(
        answer["response"]["status"]["message"],
        "BGPPeer metallb-system/p2: spec.holdTime \"2s\": invalid hold time: must be 0 or >=3s"
    );
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

#[tokio::test]
async fn a_renewed_certificate_file_is_served_without_a_restart() {
    let (server, _) = server().await;
    let certificate = Certificate::new();
    let first = certificate.der();
    let (port, _webhook) = start_webhook(&server, certificate.files(Duration::from_millis(100)));
    let ca = certificate.pem.clone();
    let served = until("the webhook to serve", async || {
        served_certificate(port, &ca, "127.0.0.1").await
    })
    .await;
    assert_eq!(served, first);
    // cert-manager renews the Secret; the kubelet updates the mounted files.
    let certificate = certificate.renew();
    let ca = certificate.pem.clone();
    let served = until("the renewed certificate to be served", async || {
        served_certificate(port, &ca, "127.0.0.1").await
    })
    .await;
    assert_eq!(served, certificate.der());
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

/// The test server with what the bootstrap writes to: the webhook configuration of
/// deploy/webhooks.yaml and the BGPPeer CRD with deploy/bgppeer-conversion-patch.yaml.
async fn cluster_as_deployed() -> (TestApiServer, kube::Client) {
    let (server, client) = server().await;
    server
        .seed(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            deployed("webhooks.yaml"),
        )
        .unwrap();
    server
        .seed(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            patched_bgppeer_crd(),
        )
        .unwrap();
    (server, client)
}

fn deployed(file: &str) -> Value {
    let path = format!("{}/../deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// The BGPPeer CRD as `metallb crds` prints it, with the deploy patch merged in (a
/// strategic merge of maps, as kustomize does it: here a JSON merge).
fn patched_bgppeer_crd() -> Value {
    let mut crd = serde_json::to_value(crd::bgppeer::definition().unwrap()).unwrap();
    json_patch::merge(&mut crd, &deployed("bgppeer-conversion-patch.yaml"));
    crd
}

fn secret_data(server: &TestApiServer, key: &str) -> Option<String> {
    let secret = server.object("", "v1", "secrets", NS, certs::DEFAULT_SECRET)?;
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The caBundles of every webhook of the configuration and of the CRD's conversion.
fn bundles(server: &TestApiServer) -> Vec<Option<String>> {
    let configuration = server
        .object(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "",
            certs::WEBHOOK_CONFIGURATION,
        )
        .unwrap();
    let crd = server
        .object(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "",
            certs::CONVERSION_CRD,
        )
        .unwrap();
    configuration["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["clientConfig"]["caBundle"])
        .chain([&crd["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"]])
        .map(|bundle| bundle.as_str().map(str::to_owned))
        .collect()
}

fn bootstrap(check_every: Duration, policy: Policy) -> TlsSource {
    TlsSource::Bootstrap(Bootstrap {
        policy,
        check_every,
        ..Bootstrap::new(NS, certs::DEFAULT_SECRET)
    })
}

/// Writes to the Secret, the webhook configuration and the CRD since `mark`.
fn certificate_writes(server: &TestApiServer, mark: usize) -> Vec<String> {
    server
        .writes_since(mark)
        .iter()
        .filter(|r| {
            matches!(
                r.resource(),
                "secrets" | "validatingwebhookconfigurations" | "customresourcedefinitions"
            )
        })
        .map(|r| format!("{:?} {} {}", r.verb, r.path, r.code))
        .collect()
}

#[tokio::test]
async fn the_controller_makes_its_certificates_writes_the_ca_bundles_and_a_second_replica_reuses_them()
 {
    let (server, _) = cluster_as_deployed().await;
    let mark = server.mark();
    let (port, _first) = start_webhook(
        &server,
        bootstrap(Duration::from_millis(100), Policy::default()),
    );
    let ca = until("the CA in the Secret", async || {
        secret_data(&server, certs::CA_CERT)
    })
    .await;
    let expected = base64::engine::general_purpose::STANDARD.encode(&ca);
    until("every caBundle written", async || {
        bundles(&server)
            .iter()
            .all(|b| b.as_deref() == Some(&expected))
            .then_some(())
    })
    .await;
    assert_eq!(bundles(&server).len(), webhook::WEBHOOKS.len() + 1);
    assert!(
        secret_data(&server, certs::CA_KEY)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert!(
        secret_data(&server, certs::TLS_KEY)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    let mut writes = certificate_writes(&server, mark);
    writes.sort();
    assert_eq!(
        writes,
        [
            "Create /api/v1/namespaces/metallb-system/secrets 201",
            "Patch /apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/metallb-webhook-configuration 200",
            "Patch /apis/apiextensions.k8s.io/v1/customresourcedefinitions/bgppeers.metallb.io 200",
        ]
    );

    // The API server's view: it trusts the caBundle and calls the Service's name.
    let served = until(
        "the webhook to serve the Secret's certificate",
        async || served_certificate(port, &ca, HOST).await,
    )
    .await;
    let tls_crt = secret_data(&server, certs::TLS_CERT).unwrap();
    assert_eq!(served, pem_der(&tls_crt));
    let answer = post_to(
        port,
        &ca,
        HOST,
        "/validate-metallb-io-v1beta1-ipaddresspool",
        &review("IPAddressPool", pool("a", "192.0.2.0/24")),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    let converted = post_to(
        port,
        &ca,
        HOST,
        "/convert",
        &conversion_review(
            "metallb.io/v1beta2",
            vec![peer(
                "metallb.io/v1beta1",
                "p",
                json!({"myASN": 1, "peerASN": 2, "peerAddress": "192.0.2.1"}),
            )],
        ),
    )
    .await;
    assert_eq!(
        converted["response"]["result"]["status"], "Success",
        "{converted}"
    );

    // A second replica finds everything in place: it serves the same certificate and
    // writes nothing, however often it looks.
    let mark = server.mark();
    let secret_reads = |server: &TestApiServer| {
        server
            .requests_since(mark)
            .iter()
            .filter(|r| r.verb == Verb::Get && r.resource() == "secrets")
            .count()
    };
    let (second_port, _second) = start_webhook(
        &server,
        bootstrap(Duration::from_millis(100), Policy::default()),
    );
    let served = until("the second replica to serve", async || {
        served_certificate(second_port, &ca, HOST).await
    })
    .await;
    assert_eq!(served, pem_der(&tls_crt));
    // Both replicas have looked at least three more times each.
    until("several checks", async || {
        (secret_reads(&server) >= 6).then_some(())
    })
    .await;
    assert_eq!(certificate_writes(&server, mark), Vec::<String>::new());
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn replicas_starting_together_agree_through_the_secret_version() {
    let (server, _) = cluster_as_deployed().await;
    let config = Bootstrap::new(NS, certs::DEFAULT_SECRET);
    let client = rbac::client(&server, &CONTROLLER, NS);
    let now = 1_800_000_000;
    let (one, two) = tokio::join!(
        certs::reconcile_secret(&client, &config, now),
        certs::reconcile_secret(&client, &config, now),
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one, two, "the replicas ended with different certificates");
    assert_eq!(secret_data(&server, certs::TLS_CERT).unwrap(), one.cert);
    let creates: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::Create && r.resource() == "secrets")
        .map(|r| r.code)
        .collect();
    // Both found no Secret and made one; the second to write was told 409 and took the
    // first's.
    assert_eq!(creates, [201, 409]);
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

#[tokio::test]
async fn the_serving_certificate_is_rotated_and_served_before_it_expires() {
    let (server, _) = cluster_as_deployed().await;
    // A 3-second certificate, renewed at 2 s.
    let policy = Policy {
        cert_life: Duration::from_secs(3),
        propagation: Duration::ZERO,
        backdate: Duration::ZERO,
        ..Policy::default()
    };
    let (port, _webhook) = start_webhook(&server, bootstrap(Duration::from_millis(100), policy));
    let ca = until("the CA in the Secret", async || {
        secret_data(&server, certs::CA_CERT)
    })
    .await;
    let first = until("the first certificate", async || {
        served_certificate(port, &ca, HOST).await
    })
    .await;
    let bundles_before = until("the caBundles", async || {
        let b = bundles(&server);
        b.iter().all(Option::is_some).then_some(b)
    })
    .await;
    let renewed = until("a renewed certificate to be served", async || {
        served_certificate(port, &ca, HOST)
            .await
            .filter(|served| *served != first)
    })
    .await;
    assert_eq!(
        renewed,
        pem_der(&secret_data(&server, certs::TLS_CERT).unwrap())
    );
    // Same CA: the API server's caBundles did not have to change.
    assert_eq!(secret_data(&server, certs::CA_CERT).unwrap(), ca);
    assert_eq!(bundles(&server), bundles_before);
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}

#[test]
fn the_deployed_webhook_configuration_is_the_served_one() {
    let configuration = deployed("webhooks.yaml");
    assert_eq!(configuration["kind"], "ValidatingWebhookConfiguration");
    assert_eq!(
        configuration["metadata"]["name"],
        certs::WEBHOOK_CONFIGURATION
    );
    let declared = configuration["webhooks"].as_array().unwrap();
    let expected: Vec<Value> = webhook::WEBHOOKS
        .iter()
        .map(|w| {
            json!({
                "name": w.name,
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"service": {"name": certs::DEFAULT_SERVICE, "namespace": NS, "path": w.path, "port": 443}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "rules": [{"apiGroups": ["metallb.io"], "apiVersions": [w.version], "operations": w.operations, "resources": [w.resource]}],
            })
        })
        .collect();
    assert_eq!(declared, &expected);
}

#[test]
fn the_deploy_patch_gives_the_bgppeer_crd_the_served_conversion() {
    let crd = patched_bgppeer_crd();
    assert_eq!(
        crd["spec"]["conversion"],
        json!({
            "strategy": "Webhook",
            "webhook": {
                "conversionReviewVersions": ["v1"],
                "clientConfig": {"service": {"name": certs::DEFAULT_SERVICE, "namespace": NS, "path": webhook::CONVERT_PATH, "port": 443}},
            },
        })
    );
    let patch = deployed("bgppeer-conversion-patch.yaml");
    assert_eq!(patch["metadata"]["name"], certs::CONVERSION_CRD);
    // The patch changes nothing but the conversion.
    let mut unpatched = serde_json::to_value(crd::bgppeer::definition().unwrap()).unwrap();
    unpatched["spec"]["conversion"] = crd["spec"]["conversion"].clone();
    assert_eq!(unpatched, crd);
}
