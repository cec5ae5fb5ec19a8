//! The admission webhook over HTTPS, as the API server calls it: AdmissionReview
//! documents posted to MetalLB's paths, checked against the pools the cluster has.

use std::{sync::Arc, time::Duration};

use http_body_util::{BodyExt as _, Full};
use hyper::{Request, body::Bytes};
use kube::{Api, CustomResourceExt as _, api::PostParams};
use metallb_testkit::{TestApiServer, rbac};
use metallb_user::{
    config::{
        ValidateOptions,
        crd::{IPAddressPool, L2Advertisement},
    },
    kubernetes::{
        rbac::CONTROLLER,
        webhook::{self, TlsFiles},
    },
};
use serde_json::{Value, json};

const NS: &str = "metallb-system";

/// A self-signed certificate for 127.0.0.1, written to a scratch directory.
struct Certificate {
    dir: std::path::PathBuf,
    pem: String,
}

impl Certificate {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = std::env::temp_dir().join(format!("metallb-webhook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
        Self {
            dir,
            pem: cert.pem(),
        }
    }

    fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.dir.join("tls.crt"),
            key: self.dir.join("tls.key"),
        }
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// POSTs `body` to `path` over TLS, trusting only `ca`.
async fn post(port: u16, ca: &str, path: &str, body: &Value) -> Value {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

fn review(kind: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7c1f",
            "kind": {"group": "metallb.io", "version": "v1beta1", "kind": kind},
            "resource": {"group": "metallb.io", "version": "v1beta1", "resource": format!("{}s", kind.to_lowercase())},
            "name": object["metadata"]["name"],
            "namespace": "metallb-system",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": object,
        },
    })
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
    let server = TestApiServer::start().await.unwrap();
    server.register_crd(&IPAddressPool::crd()).unwrap();
    server.register_crd(&L2Advertisement::crd()).unwrap();
    let client = server.client().unwrap();
    let pools: Api<IPAddressPool> = Api::namespaced(client.clone(), "metallb-system");
    pools
        .create(
            &PostParams::default(),
            &serde_json::from_value(pool("first", "192.0.2.0/24")).unwrap(),
        )
        .await
        .unwrap();

    let certificate = Certificate::new();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let address = format!("127.0.0.1:{port}").parse().unwrap();
    // The webhook's requests are recorded as the controller's, whose RBAC they need.
    let task = tokio::spawn(webhook::run(
        rbac::client(&server, &CONTROLLER, NS),
        address,
        certificate.files(),
        ValidateOptions::default(),
    ));

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
    task.abort();
    rbac::assert_authorized(&server, &CONTROLLER, NS);
}
