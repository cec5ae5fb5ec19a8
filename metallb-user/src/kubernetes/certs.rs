//! The webhook's certificates, bootstrapped by the controller itself, as MetalLB's
//! controller does with cert-controller: a self-signed CA and a serving certificate for
//! `<service>.<namespace>.svc`, kept in a Secret (`ca.crt`, `ca.key`, `tls.crt`,
//! `tls.key`: cert-controller's keys), served by every replica, and the CA written into
//! the `caBundle` of the ValidatingWebhookConfiguration and of the BGPPeer CRD's
//! conversion webhook, so that the API server trusts what it calls.
//!
//! Every replica runs this. They agree through the Secret: each write carries the
//! `resourceVersion` read, so a 409 means another replica wrote first, and the Secret
//! is read again and used as it is.
//!
//! Rotation, before anything expires (defaults: a 1-year CA, 90-day serving
//! certificates, each renewed at 2/3 of its life):
//! - a new serving certificate from the same CA changes nothing the API server holds;
//! - a new CA is added to the bundle first, next to the old one, while the old
//!   serving certificate is still served; the serving certificate it signs comes once
//!   the bundle has had time to reach the API server ([`Policy::propagation`]); the old
//!   CA leaves the bundle once that certificate has had as long to be served by every
//!   replica.
//!
//! What to do next is a pure function of what the Secret holds and the time
//! ([`inspect`], [`next_step`]); what to write in the webhook configuration and the CRD
//! too ([`webhook_configuration_patch`], [`crd_patch`]).

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use base64::Engine as _;
use k8s_openapi::{
    ByteString,
    api::{admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// MetalLB's names: the Secret, the webhook Service, the ValidatingWebhookConfiguration
/// and the CRD whose conversion webhook is served here.
pub const DEFAULT_SECRET: &str = "metallb-webhook-cert";
pub const DEFAULT_SERVICE: &str = "metallb-webhook-service";
pub const WEBHOOK_CONFIGURATION: &str = "metallb-webhook-configuration";
pub const CONVERSION_CRD: &str = "bgppeers.metallb.io";

/// The Secret's keys, as cert-controller (MetalLB) writes them.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// The field manager of every write.
const MANAGER: &str = "metallb-controller";

/// Reads and writes of the Secret in one pass before giving up (each 409 is one).
const MAX_ATTEMPTS: usize = 5;

/// Lifetimes and delays of the bootstrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub ca_life: Duration,
    pub cert_life: Duration,
    /// How long the API server may take to use a new `caBundle` (and every replica to
    /// serve a new certificate): the wait between the steps of a CA rotation.
    pub propagation: Duration,
    /// Certificates are valid from this long before they are made: clocks differ.
    pub backdate: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            ca_life: Duration::from_secs(365 * 24 * 3600),
            cert_life: Duration::from_secs(90 * 24 * 3600),
            propagation: Duration::from_secs(5 * 60),
            backdate: Duration::from_secs(3600),
        }
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// A certificate's validity, in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// When it was made (its start, less the backdating).
    fn issued_at(self, policy: &Policy) -> i64 {
        self.not_before.saturating_add(seconds(policy.backdate))
    }

    /// When 2/3 of its life have passed: time to replace it.
    fn renew_at(self) -> i64 {
        let life = self.not_after.saturating_sub(self.not_before).max(0);
        self.not_before.saturating_add(life / 3 * 2)
    }

    fn valid_at(self, now: i64) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// The serving certificate, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingInfo {
    pub validity: Validity,
    /// Which CA of the bundle signed it.
    pub issuer: Option<usize>,
    /// Names the webhook Service, and goes with `tls.key`.
    pub usable: bool,
}

/// What the Secret holds, as far as the decision needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspected {
    /// The certificates of `ca.crt`, in order: the first is the CA that signs.
    pub cas: Vec<Validity>,
    /// `ca.key` is the key of the first CA (and one this program can sign with).
    pub ca_key_usable: bool,
    pub serving: Option<ServingInfo>,
}

/// What to change in the Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing: it is good as it is.
    Keep,
    /// No usable CA: a new CA and serving certificate (the bundle is the new CA).
    Fresh,
    /// The CA is due: a new CA, first in the bundle, the old ones kept after it; the
    /// serving certificate stays until the bundle has reached the API server.
    NewCa,
    /// A serving certificate from the first CA.
    NewServing,
    /// The serving certificate comes from the first CA and has been served long
    /// enough: the other CAs leave the bundle.
    DropOldCas,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Keep => "nothing to do",
            Self::Fresh => "a new CA and serving certificate",
            Self::NewCa => "a new CA, added to the bundle",
            Self::NewServing => "a new serving certificate",
            Self::DropOldCas => "the previous CA leaves the bundle",
        })
    }
}

/// The next change the Secret needs at `now`.
pub fn next_step(inspected: &Inspected, now: i64, policy: &Policy) -> Step {
    let Some(ca) = inspected.cas.first() else {
        return Step::Fresh;
    };
    if !inspected.ca_key_usable || !ca.valid_at(now) {
        return Step::Fresh;
    }
    let propagated = |since: i64| now >= since.saturating_add(seconds(policy.propagation));
    let Some(serving) = inspected
        .serving
        .as_ref()
        .filter(|s| s.usable && s.validity.valid_at(now) && s.issuer.is_some())
    else {
        return Step::NewServing;
    };
    if now >= ca.renew_at() {
        return Step::NewCa;
    }
    if serving.issuer != Some(0) {
        // Issued by a CA that a rotation put second: replace it once the new CA has
        // reached the API server.
        return if propagated(ca.issued_at(policy)) {
            Step::NewServing
        } else {
            Step::Keep
        };
    }
    if now >= serving.validity.renew_at() {
        return Step::NewServing;
    }
    let old_expired = inspected.cas[1..].iter().any(|old| now >= old.not_after);
    if inspected.cas.len() > 1 && (old_expired || propagated(serving.validity.issued_at(policy))) {
        return Step::DropOldCas;
    }
    Step::Keep
}

/// The PEM texts of the Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Material {
    /// One or more CA certificates: the first signs.
    pub ca_certs: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

impl Material {
    pub fn from_secret(secret: &Secret) -> Self {
        let data = secret.data.as_ref();
        let text = |key: &str| {
            data.and_then(|d| d.get(key))
                .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
                .unwrap_or_default()
        };
        Self {
            ca_certs: text(CA_CERT),
            ca_key: text(CA_KEY),
            cert: text(TLS_CERT),
            key: text(TLS_KEY),
        }
    }

    fn data(&self) -> BTreeMap<String, ByteString> {
        [
            (CA_CERT, &self.ca_certs),
            (CA_KEY, &self.ca_key),
            (TLS_CERT, &self.cert),
            (TLS_KEY, &self.key),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), ByteString(value.clone().into_bytes())))
        .collect()
    }

    /// The CA bundle, base64 as `caBundle` carries it.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_certs.as_bytes())
    }
}

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

fn validity_of(certificate: &x509_parser::certificate::X509Certificate<'_>) -> Validity {
    let validity = certificate.validity();
    Validity {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    }
}

fn names_host(certificate: &x509_parser::certificate::X509Certificate<'_>, host: &str) -> bool {
    use x509_parser::extensions::GeneralName;
    certificate
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|san| {
            san.value.general_names.iter().any(
                |name| matches!(name, GeneralName::DNSName(dns) if dns.eq_ignore_ascii_case(host)),
            )
        })
}

/// Reads what `material` holds, for a serving certificate naming `host`.
pub fn inspect(material: &Material, host: &str) -> Inspected {
    let ca_ders = ders(&material.ca_certs);
    let parsed: Vec<_> = ca_ders
        .iter()
        .map(|der| x509_parser::parse_x509_certificate(der).map(|(_, c)| c))
        .collect();
    // A bundle with a certificate that cannot be read is no bundle to build on.
    let Ok(cas) = parsed.into_iter().collect::<Result<Vec<_>, _>>() else {
        return Inspected::default();
    };
    let ca_key_usable = match (cas.first(), rcgen::KeyPair::from_pem(&material.ca_key)) {
        (Some(ca), Ok(key)) => {
            ca.is_ca() && key.public_key_raw() == ca.public_key().subject_public_key.data.as_ref()
        }
        _ => false,
    };
    let serving_der = ders(&material.cert).into_iter().next();
    let serving = serving_der.as_ref().and_then(|der| {
        let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
        let issuer = cas
            .iter()
            .position(|ca| certificate.verify_signature(Some(ca.public_key())).is_ok());
        Some(ServingInfo {
            validity: validity_of(&certificate),
            issuer,
            usable: names_host(&certificate, host)
                && certified_key(&material.cert, &material.key).is_ok(),
        })
    });
    Inspected {
        cas: cas.iter().map(validity_of).collect(),
        ca_key_usable,
        serving,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key do not make a TLS identity: {0}")]
    Identity(String),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} Secret {name}: {source}")]
    Secret {
        action: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {0}: other writers kept changing it; trying again later")]
    Contended(String),
    #[error("writing the caBundle of {what}: {source}")]
    Bundle {
        what: String,
        #[source]
        source: kube::Error,
    },
}

fn timestamp(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// A new self-signed CA: (certificate, key), PEM.
fn new_ca(now: i64, policy: &Policy) -> Result<(String, String), rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("metallb-webhook-ca-{now}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "metallb");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = timestamp(now.saturating_sub(seconds(policy.backdate)));
    params.not_after = timestamp(now.saturating_add(seconds(policy.ca_life)));
    let certificate = params.self_signed(&key)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

/// A serving certificate for `host` signed by the first CA of `material`, never valid
/// past that CA: (certificate, key), PEM.
fn new_serving(
    material: &Material,
    host: &str,
    now: i64,
    policy: &Policy,
) -> Result<(String, String), rcgen::Error> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
    let ca_der = ders(&material.ca_certs)
        .into_iter()
        .next()
        .ok_or(rcgen::Error::CouldNotParseCertificate)?;
    let ca_end = x509_parser::parse_x509_certificate(&ca_der)
        .map(|(_, ca)| validity_of(&ca).not_after)
        .map_err(|_| rcgen::Error::CouldNotParseCertificate)?;
    let issuer = rcgen::Issuer::from_ca_cert_der(&ca_der, KeyPair::from_pem(&material.ca_key)?)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![host.to_owned()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, host);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = timestamp(now.saturating_sub(seconds(policy.backdate)));
    params.not_after = timestamp(now.saturating_add(seconds(policy.cert_life)).min(ca_end));
    let certificate = params.signed_by(&key, &issuer)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

/// `material` after `step` (new keys are random: not a pure function, but no I/O).
pub fn apply(
    step: Step,
    material: &Material,
    host: &str,
    now: i64,
    policy: &Policy,
) -> Result<Material, rcgen::Error> {
    let mut next = material.clone();
    match step {
        Step::Keep => {}
        Step::Fresh => {
            (next.ca_certs, next.ca_key) = new_ca(now, policy)?;
            (next.cert, next.key) = new_serving(&next, host, now, policy)?;
        }
        Step::NewCa => {
            let (ca, key) = new_ca(now, policy)?;
            // The old CAs still valid stay, after the new one.
            let kept: Vec<String> = ders(&material.ca_certs)
                .iter()
                .filter(|der| {
                    x509_parser::parse_x509_certificate(der)
                        .is_ok_and(|(_, c)| validity_of(&c).not_after > now)
                })
                .map(|der| pem_of(der))
                .collect();
            next.ca_certs = std::iter::once(ca).chain(kept).collect();
            next.ca_key = key;
        }
        Step::NewServing => (next.cert, next.key) = new_serving(material, host, now, policy)?,
        Step::DropOldCas => {
            next.ca_certs = ders(&material.ca_certs)
                .first()
                .map(|der| pem_of(der))
                .unwrap_or_default();
        }
    }
    Ok(next)
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .filter_map(|chunk| std::str::from_utf8(chunk).ok())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The merge patch that puts `bundle` in every webhook of a ValidatingWebhookConfiguration
/// (as read, JSON), carrying the version read; `None` when each has it already.
pub fn webhook_configuration_patch(configuration: &Value, bundle: &str) -> Option<Value> {
    let webhooks = configuration["webhooks"].as_array()?;
    if webhooks
        .iter()
        .all(|w| w["clientConfig"]["caBundle"].as_str() == Some(bundle))
    {
        return None;
    }
    // A merge patch replaces a list whole: every webhook is sent back as read, with
    // only its caBundle changed, so that no field is lost.
    let webhooks: Vec<Value> = webhooks
        .iter()
        .map(|webhook| {
            let mut webhook = webhook.clone();
            if let Some(client_config) = webhook
                .as_object_mut()
                .map(|w| w.entry("clientConfig").or_insert_with(|| json!({})))
                .and_then(Value::as_object_mut)
            {
                client_config.insert("caBundle".into(), bundle.into());
            }
            webhook
        })
        .collect();
    Some(json!({
        "metadata": {"resourceVersion": configuration["metadata"]["resourceVersion"]},
        "webhooks": webhooks,
    }))
}

/// The merge patch that puts `bundle` in a CRD's conversion webhook (as read, JSON),
/// carrying the version read; `None` when the CRD converts without a webhook, or has it.
pub fn crd_patch(crd: &Value, bundle: &str) -> Option<Value> {
    let conversion = &crd["spec"]["conversion"];
    if conversion["strategy"] != "Webhook"
        || conversion["webhook"]["clientConfig"]["caBundle"].as_str() == Some(bundle)
    {
        return None;
    }
    Some(json!({
        "metadata": {"resourceVersion": crd["metadata"]["resourceVersion"]},
        "spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": bundle}}}},
    }))
}

/// The certificate the webhook serves, replaced in place when it changes: connections
/// made after a change get the new one.
pub struct ServingCert {
    current: watch::Sender<Option<Arc<CertifiedKey>>>,
}

impl fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCert")
            .field("ready", &self.current.borrow().is_some())
            .finish()
    }
}

impl Default for ServingCert {
    fn default() -> Self {
        Self {
            current: watch::Sender::new(None),
        }
    }
}

fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|error| CertError::Identity(format!("the certificate: {error}")))?;
    if chain.is_empty() {
        return Err(CertError::Identity("no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|error| CertError::Identity(format!("the private key: {error}")))?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider())
        .map_err(|error| CertError::Identity(error.to_string()))
}

impl ServingCert {
    /// Serves `cert_pem` (the certificate, then any chain) with `key_pem` from now on;
    /// true when that is a change.
    pub fn set_pem(&self, cert_pem: &str, key_pem: &str) -> Result<bool, CertError> {
        let identity = certified_key(cert_pem, key_pem)?;
        let same = self
            .current
            .borrow()
            .as_ref()
            .is_some_and(|current| current.cert == identity.cert);
        if !same {
            self.current.send_replace(Some(Arc::new(identity)));
        }
        Ok(!same)
    }

    /// The certificate served now (DER), if any.
    pub fn current(&self) -> Option<CertificateDer<'static>> {
        self.current
            .borrow()
            .as_ref()
            .and_then(|c| c.cert.first().cloned())
    }

    /// Returns once there is a certificate to serve.
    pub async fn ready(&self) {
        let mut changes = self.current.subscribe();
        let _ = changes.wait_for(Option::is_some).await;
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.borrow().clone()
    }
}

/// Where and how the controller keeps its webhook certificates.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// The controller's namespace: the Secret's and the Service's.
    pub namespace: String,
    pub secret: String,
    /// The webhook Service: the certificate names `<service>.<namespace>.svc`.
    pub service: String,
    pub webhook_configuration: String,
    pub conversion_crd: String,
    pub policy: Policy,
    /// How often the Secret is read again (for rotation, and another replica's writes).
    pub check_every: Duration,
}

impl Bootstrap {
    /// MetalLB's names in `namespace`, with the Secret `secret`.
    pub fn new(namespace: &str, secret: &str) -> Self {
        Self {
            namespace: namespace.into(),
            secret: secret.into(),
            service: DEFAULT_SERVICE.into(),
            webhook_configuration: WEBHOOK_CONFIGURATION.into(),
            conversion_crd: CONVERSION_CRD.into(),
            policy: Policy::default(),
            check_every: Duration::from_secs(60),
        }
    }

    /// The name the serving certificate is for.
    pub fn host(&self) -> String {
        format!("{}.{}.svc", self.service, self.namespace)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(seconds)
        .unwrap_or_default()
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// Brings the Secret up to date at `now` (writing only what must change) and returns
/// what it holds.
pub async fn reconcile_secret(
    client: &Client,
    config: &Bootstrap,
    now: i64,
) -> Result<Material, CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let host = config.host();
    let failed = |action, source| CertError::Secret {
        action,
        name: format!("{}/{}", config.namespace, config.secret),
        source,
    };
    let mut current = api
        .get_opt(&config.secret)
        .await
        .map_err(|e| failed("reading", e))?;
    for _ in 0..MAX_ATTEMPTS {
        let material = current
            .as_ref()
            .map(Material::from_secret)
            .unwrap_or_default();
        let step = next_step(&inspect(&material, &host), now, &config.policy);
        if step == Step::Keep {
            return Ok(material);
        }
        let next = apply(step, &material, &host, now, &config.policy)?;
        let written = match &current {
            None => {
                let secret = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(config.secret.clone()),
                        namespace: Some(config.namespace.clone()),
                        ..Default::default()
                    },
                    data: Some(next.data()),
                    ..Default::default()
                };
                let params = PostParams {
                    field_manager: Some(MANAGER.into()),
                    ..PostParams::default()
                };
                api.create(&params, &secret).await
            }
            Some(secret) => {
                let patch = json!({
                    "metadata": {"resourceVersion": secret.resource_version()},
                    "data": next.data(),
                });
                let params = PatchParams {
                    field_manager: Some(MANAGER.into()),
                    ..PatchParams::default()
                };
                api.patch(&config.secret, &params, &Patch::Merge(&patch))
                    .await
            }
        };
        current = match written {
            Ok(secret) => {
                info!(secret = %config.secret, "webhook certificates: {step}");
                Some(secret)
            }
            Err(error) if is_conflict(&error) => {
                debug!(secret = %config.secret, "another replica wrote the webhook certificates: reading them again");
                api.get_opt(&config.secret)
                    .await
                    .map_err(|e| failed("reading", e))?
            }
            Err(error) => return Err(failed("writing", error)),
        };
    }
    Err(CertError::Contended(config.secret.clone()))
}

/// Writes `bundle` (base64) into the webhook configuration and the conversion CRD where
/// it is missing. An object that does not exist is skipped (not deployed, or managed by
/// cert-manager's injector instead).
pub async fn publish_bundle(
    client: &Client,
    config: &Bootstrap,
    bundle: &str,
) -> Result<(), CertError> {
    let targets = [
        (
            ApiResource::erase::<ValidatingWebhookConfiguration>(&()),
            &config.webhook_configuration,
            webhook_configuration_patch as fn(&Value, &str) -> Option<Value>,
        ),
        (
            ApiResource::erase::<CustomResourceDefinition>(&()),
            &config.conversion_crd,
            crd_patch,
        ),
    ];
    for (resource, name, patch_for) in targets {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let failed = |source| CertError::Bundle {
            what: format!("{} {name}", resource.kind),
            source,
        };
        for attempt in 0..MAX_ATTEMPTS {
            let Some(object) = api.get_opt(name).await.map_err(failed)? else {
                debug!(kind = %resource.kind, %name, "not found: no caBundle to write");
                break;
            };
            let value = serde_json::to_value(&object).unwrap_or_default();
            let Some(patch) = patch_for(&value, bundle) else {
                break;
            };
            let params = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            };
            match api.patch(name, &params, &Patch::Merge(&patch)).await {
                Ok(_) => {
                    info!(kind = %resource.kind, %name, "caBundle written");
                    break;
                }
                Err(error) if is_conflict(&error) && attempt + 1 < MAX_ATTEMPTS => continue,
                Err(error) => return Err(failed(error)),
            }
        }
    }
    Ok(())
}

/// One pass: the Secret, what is served, the bundles.
pub async fn reconcile(
    client: &Client,
    config: &Bootstrap,
    serving: &ServingCert,
    now: i64,
) -> Result<(), CertError> {
    let material = reconcile_secret(client, config, now).await?;
    if serving.set_pem(&material.cert, &material.key)? {
        info!(secret = %config.secret, "serving the webhook certificate from the Secret");
    }
    publish_bundle(client, config, &material.ca_bundle()).await
}

/// Keeps the certificates made, served, trusted and rotated, forever.
pub async fn maintain(client: Client, config: Bootstrap, serving: Arc<ServingCert>) {
    loop {
        let wait = match reconcile(&client, &config, &serving, unix_now()).await {
            Ok(()) => config.check_every,
            Err(error) => {
                warn!("webhook certificates: {error}");
                config.check_every.min(Duration::from_secs(5))
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Serves the certificate and key of these files (PEM) from now on; true when that is a
/// change.
pub fn load_files(
    cert: &std::path::Path,
    key: &std::path::Path,
    serving: &ServingCert,
) -> Result<bool, CertError> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|source| CertError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    serving.set_pem(&read(cert)?, &read(key)?)
}

/// Serves the certificate and key files given (e.g. a Secret that cert-manager writes
/// and the kubelet updates), reading them again every `every`: a renewed certificate is
/// served without a restart. Files that cannot be used keep the last good ones served.
pub async fn follow_files(
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    serving: Arc<ServingCert>,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        match load_files(&cert, &key, &serving) {
            Ok(true) => info!(cert = %cert.display(), "serving the renewed webhook certificate"),
            Ok(false) => {}
            Err(error) => {
                warn!(cert = %cert.display(), "keeping the webhook certificate served: {error}")
            }
        }
    }
}

#[cfg(test)]
mod tests;
