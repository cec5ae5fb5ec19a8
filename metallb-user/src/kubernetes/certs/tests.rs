use serde_json::{Value, json};

use super::*;

const DAY: i64 = 24 * 3600;
const HOST: &str = "metallb-webhook-service.metallb-system.svc";

fn validity(not_before: i64, not_after: i64) -> Validity {
    Validity {
        not_before,
        not_after,
    }
}

fn serving(not_before: i64, not_after: i64, issuer: Option<usize>) -> Option<ServingInfo> {
    Some(ServingInfo {
        validity: validity(not_before, not_after),
        issuer,
        usable: true,
    })
}

/// No backdating, 5 minutes of propagation: days and minutes are easy to read.
fn policy() -> Policy {
    Policy {
        backdate: Duration::ZERO,
        ..Policy::default()
    }
}

#[test]
fn next_step_table() {
    let ca = validity(0, 365 * DAY);
    let fresh_serving = serving(0, 90 * DAY, Some(0));
    let good = Inspected {
        cas: vec![ca],
        ca_key_usable: true,
        serving: fresh_serving.clone(),
    };
    let with = |change: &dyn Fn(&mut Inspected)| {
        let mut inspected = good.clone();
        change(&mut inspected);
        inspected
    };
    // A CA rotated at day 250: the new one first, the old one after it.
    let rotated = Inspected {
        cas: vec![validity(250 * DAY, 615 * DAY), ca],
        ca_key_usable: true,
        serving: serving(200 * DAY, 290 * DAY, Some(1)),
    };
    let cases: Vec<(&str, Inspected, i64, Step)> = vec![
        ("an empty Secret", Inspected::default(), 0, Step::Fresh),
        ("all good", good.clone(), DAY, Step::Keep),
        (
            "the CA key is not the CA's",
            with(&|i| i.ca_key_usable = false),
            DAY,
            Step::Fresh,
        ),
        ("the CA expired", good.clone(), 365 * DAY, Step::Fresh),
        (
            "the CA is not valid yet (a clock behind)",
            good.clone(),
            -1,
            Step::Fresh,
        ),
        (
            "no serving certificate",
            with(&|i| i.serving = None),
            DAY,
            Step::NewServing,
        ),
        (
            "a serving certificate for another name or key",
            with(&|i| i.serving.as_mut().unwrap().usable = false),
            DAY,
            Step::NewServing,
        ),
        (
            "a serving certificate no CA of the bundle signed",
            with(&|i| i.serving.as_mut().unwrap().issuer = None),
            DAY,
            Step::NewServing,
        ),
        (
            "the serving certificate before 2/3 of its life",
            good.clone(),
            59 * DAY,
            Step::Keep,
        ),
        (
            "the serving certificate at 2/3 of its life",
            good.clone(),
            60 * DAY,
            Step::NewServing,
        ),
        (
            "the serving certificate expired",
            good.clone(),
            90 * DAY,
            Step::NewServing,
        ),
        (
            "the CA at 2/3 of its life",
            with(&|i| i.serving = serving(200 * DAY, 290 * DAY, Some(0))),
            243 * DAY + DAY / 3,
            Step::NewCa,
        ),
        (
            "a new CA, not yet propagated",
            rotated.clone(),
            250 * DAY + 299,
            Step::Keep,
        ),
        (
            "a new CA, propagated",
            rotated.clone(),
            250 * DAY + 300,
            Step::NewServing,
        ),
        (
            "the new CA's certificate, not yet served long enough",
            Inspected {
                serving: serving(250 * DAY + 300, 340 * DAY, Some(0)),
                ..rotated.clone()
            },
            250 * DAY + 599,
            Step::Keep,
        ),
        (
            "the new CA's certificate, served long enough: the old CA goes",
            Inspected {
                serving: serving(250 * DAY + 300, 340 * DAY, Some(0)),
                ..rotated.clone()
            },
            250 * DAY + 600,
            Step::DropOldCas,
        ),
    ];
    for (case, inspected, now, want) in cases {
        assert_eq!(next_step(&inspected, now, &policy()), want, "{case}");
    }
}

#[test]
fn what_is_made_is_read_back_and_served() {
    let now = 1_000_000_000;
    let policy = Policy::default();
    let material = apply(Step::Fresh, &Material::default(), HOST, now, &policy).unwrap();
    let inspected = inspect(&material, HOST);
    assert_eq!(
        inspected,
        Inspected {
            cas: vec![validity(now - 3600, now + 365 * DAY)],
            ca_key_usable: true,
            serving: serving(now - 3600, now + 90 * DAY, Some(0)),
        }
    );
    assert_eq!(next_step(&inspected, now, &policy), Step::Keep);
    // For another Service name, the serving certificate is no good.
    assert!(
        !inspect(&material, "other.metallb-system.svc")
            .serving
            .unwrap()
            .usable
    );
    // Keys swapped, or text that is no certificate: nothing usable.
    let swapped = Material {
        key: material.ca_key.clone(),
        ..material.clone()
    };
    assert!(!inspect(&swapped, HOST).serving.unwrap().usable);
    let broken = Material {
        ca_certs: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        ..material.clone()
    };
    assert_eq!(inspect(&broken, HOST), Inspected::default());
    // What rustls serves is the certificate of the Secret.
    let serving_cert = ServingCert::default();
    assert!(serving_cert.set_pem(&material.cert, &material.key).unwrap());
    assert!(!serving_cert.set_pem(&material.cert, &material.key).unwrap());
    assert_eq!(
        serving_cert.current(),
        ders(&material.cert).into_iter().next()
    );
    assert!(
        serving_cert
            .set_pem(&material.cert, &material.ca_key)
            .is_err()
    );
}

/// For a certificate (PEM) and a bundle (PEM): its validity, and those of the CAs of
/// the bundle whose signature it carries. Signatures are checked once per pair.
#[derive(Default)]
struct Trust(std::collections::HashMap<(String, String), (Validity, Vec<Validity>)>);

impl Trust {
    /// Whether `cert` verifies against a CA of `bundle` at `now`.
    fn trusted(&mut self, cert: &str, bundle: &str, now: i64) -> bool {
        let (leaf, signers) = self
            .0
            .entry((cert.to_owned(), bundle.to_owned()))
            .or_insert_with(|| {
                let der = ders(cert).into_iter().next().unwrap();
                let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
                let signers = ders(bundle)
                    .iter()
                    .filter_map(|ca_der| {
                        let (_, ca) = x509_parser::parse_x509_certificate(ca_der).unwrap();
                        leaf.verify_signature(Some(ca.public_key()))
                            .is_ok()
                            .then(|| validity_of(&ca))
                    })
                    .collect();
                (validity_of(&leaf), signers)
            });
        leaf.valid_at(now) && signers.iter().any(|ca| ca.valid_at(now))
    }
}

/// Three years with the default policy, checked every 10 minutes: what is served is
/// always trusted by the bundle the API server had one propagation delay earlier (and
/// by the bundle now), nothing expires, the CA rotates at 2/3 of its life (a year and an
/// hour of backdating: day 243), the serving certificate at 2/3 of its 90 days and
/// after each new CA, and the bundle holds two CAs only during a rotation.
#[test]
fn three_years_of_rotation_never_serve_what_the_api_server_does_not_trust() {
    let policy = Policy::default();
    let start = 1_700_000_000;
    let mut material = Material::default();
    let mut inspected = inspect(&material, HOST);
    let mut trust = Trust::default();
    // (time, bundle) as written, so that the bundle the API server has can be found.
    let mut bundles: Vec<(i64, String)> = Vec::new();
    let mut steps: Vec<(i64, Step)> = Vec::new();
    let mut now = start;
    while now < start + 3 * 365 * DAY {
        loop {
            let step = next_step(&inspected, now, &policy);
            if step == Step::Keep {
                break;
            }
            material = apply(step, &material, HOST, now, &policy).unwrap();
            inspected = inspect(&material, HOST);
            steps.push(((now - start) / DAY, step));
        }
        if bundles.last().map(|(_, b)| b) != Some(&material.ca_certs) {
            bundles.push((now, material.ca_certs.clone()));
        }
        if now > start {
            let seen_by_api_server = bundles
                .iter()
                .rev()
                .find(|(at, _)| *at <= now - seconds(policy.propagation))
                .map(|(_, b)| b.as_str())
                .unwrap_or(&bundles[0].1);
            assert!(
                trust.trusted(&material.cert, seen_by_api_server, now),
                "day {}: the served certificate is not trusted by the bundle the API server has",
                (now - start) / DAY,
            );
        }
        assert!(trust.trusted(&material.cert, &material.ca_certs, now));
        assert!(inspected.cas.len() <= 2);
        now += 600;
    }
    let on = |kind: Step| -> Vec<i64> {
        steps
            .iter()
            .filter(|(_, s)| *s == kind)
            .map(|(day, _)| *day)
            .collect()
    };
    assert_eq!(on(Step::Fresh), [0], "{steps:?}");
    assert_eq!(on(Step::NewCa), [243, 486, 729, 973], "{steps:?}");
    assert_eq!(on(Step::DropOldCas), on(Step::NewCa), "{steps:?}");
    assert_eq!(
        on(Step::NewServing),
        [
            59, 119, 179, 239, 243, 303, 363, 423, 483, 486, 546, 606, 666, 726, 729, 789, 849,
            909, 969, 973, 1033, 1093
        ],
        "{steps:?}"
    );
}

fn webhook_configuration(bundles: &[Option<&str>]) -> Value {
    let webhooks: Vec<Value> = bundles
        .iter()
        .enumerate()
        .map(|(i, bundle)| {
            let mut client_config = json!({"service": {"name": "metallb-webhook-service", "namespace": "metallb-system", "path": format!("/p{i}")}});
            if let Some(bundle) = bundle {
                client_config["caBundle"] = json!(bundle);
            }
            json!({"name": format!("w{i}.metallb.io"), "clientConfig": client_config, "sideEffects": "None", "futureField": {"kept": true}})
        })
        .collect();
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIGURATION, "resourceVersion": "12"},
        "webhooks": webhooks,
    })
}

#[test]
fn the_bundle_is_written_where_it_is_missing_and_nothing_else_changes() {
    // Every webhook gets it; every other field is sent back as read.
    let patch =
        webhook_configuration_patch(&webhook_configuration(&[None, Some("old")]), "new").unwrap();
    let mut expected = webhook_configuration(&[Some("new"), Some("new")]);
    expected.as_object_mut().unwrap().remove("apiVersion");
    expected.as_object_mut().unwrap().remove("kind");
    expected["metadata"] = json!({"resourceVersion": "12"});
    assert_eq!(patch, expected);
    assert_eq!(
        webhook_configuration_patch(&webhook_configuration(&[Some("new"), Some("new")]), "new"),
        None
    );
    assert_eq!(
        webhook_configuration_patch(&json!({"metadata": {}}), "new"),
        None
    );

    let crd = |conversion: Value| json!({"metadata": {"name": CONVERSION_CRD, "resourceVersion": "3"}, "spec": {"group": "metallb.io", "conversion": conversion}});
    let webhook = json!({"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"], "clientConfig": {"service": {"name": "metallb-webhook-service", "namespace": "metallb-system", "path": "/convert"}}}});
    assert_eq!(
        crd_patch(&crd(webhook.clone()), "new"),
        Some(json!({
            "metadata": {"resourceVersion": "3"},
            "spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": "new"}}}},
        }))
    );
    let mut has = webhook.clone();
    has["webhook"]["clientConfig"]["caBundle"] = json!("new");
    assert_eq!(crd_patch(&crd(has), "new"), None);
    // No conversion webhook (the CRD as `metallb crds` prints it): nothing to write.
    assert_eq!(crd_patch(&crd(json!({"strategy": "None"})), "new"), None);
    assert_eq!(crd_patch(&crd(Value::Null), "new"), None);
}

#[test]
fn the_bundle_is_the_pem_in_base64() {
    let material = Material {
        ca_certs: "-----BEGIN CERTIFICATE-----\n".into(),
        ..Material::default()
    };
    assert_eq!(
        material.ca_bundle(),
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
    );
}
