//! The configuration as the cluster holds it, validated leniently: a file is all or
//! nothing (the last good one keeps serving), but in a cluster one bad object must not
//! stop the others. Pools and BGP objects (BGPPeer, BGPAdvertisement, BFDProfile,
//! Community) that fail validation are left out, each with its problems, and the rest
//! is validated again. BGPPeers' `passwordSecret`s are read from the Secrets given
//! (MetalLB's `passwordFromSecretForPeer`); a peer whose Secret is missing or unusable
//! is left out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;

use crate::config::{
    Config, Issue, ValidateOptions, crd::bgppeer::v1beta2::BGPPeer, file::ConfigFile, validate,
};

/// The type a BGPPeer's password Secret must have, and its key.
pub const PASSWORD_SECRET_TYPE: &str = "kubernetes.io/basic-auth";
pub const PASSWORD_SECRET_KEY: &str = "password";

/// The usable configuration and what was left out of it.
#[derive(Debug, Default)]
pub struct ClusterConfig {
    pub config: Config,
    /// Pools left out, by name, with why.
    pub rejected: BTreeMap<String, Vec<Issue>>,
    /// BGP objects left out, as `Kind name`, with why.
    pub left_out: BTreeMap<String, Vec<Issue>>,
    /// Problems that name no object that could be left out.
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

/// The kinds an object may be left out of, and the name, of the object an issue is
/// about.
fn culprit(issue: &Issue) -> Option<(&str, &str)> {
    let (kind, rest) = issue.object.split_once(' ')?;
    let name = rest.split_once('/').map_or(rest, |(_, name)| name);
    [
        "IPAddressPool",
        "BGPPeer",
        "BGPAdvertisement",
        "BFDProfile",
        "Community",
    ]
    .contains(&kind)
    .then_some((kind, name))
}

/// Removes the objects named `name` from `list`; whether there was one.
fn drop_named<K: Resource>(list: &mut Vec<K>, name: &str) -> bool {
    let before = list.len();
    list.retain(|o| o.meta().name.as_deref() != Some(name));
    list.len() != before
}

fn leave_out(file: &mut ConfigFile, kind: &str, name: &str) -> bool {
    match kind {
        "IPAddressPool" => drop_named(&mut file.pools, name),
        "BGPPeer" => drop_named(&mut file.bgp_peers, name),
        "BGPAdvertisement" => drop_named(&mut file.bgp_advertisements, name),
        "BFDProfile" => drop_named(&mut file.bfd_profiles, name),
        "Community" => drop_named(&mut file.communities, name),
        _ => false,
    }
}

/// The password of `peer`'s `passwordSecret` (`None`: it names none), looked up by name
/// among `secrets` (the speaker's namespace), with MetalLB's reasons when unusable.
pub fn secret_password(peer: &BGPPeer, secrets: &[Secret]) -> Result<Option<String>, String> {
    let Some(name) = peer
        .spec
        .password_secret
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
    else {
        return Ok(None);
    };
    let peer_name = format!(
        "{:?}/{:?}",
        peer.metadata.namespace.as_deref().unwrap_or_default(),
        peer.metadata.name.as_deref().unwrap_or_default()
    );
    let secret = secrets
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some(name))
        .ok_or_else(|| format!("secret ref not found for peer config {peer_name}"))?;
    let secret_name = format!(
        "{:?}/{:?}",
        secret.metadata.namespace.as_deref().unwrap_or_default(),
        name
    );
    if secret.type_.as_deref() != Some(PASSWORD_SECRET_TYPE) {
        return Err(format!(
            "secret type mismatch on {secret_name}, type {PASSWORD_SECRET_TYPE:?} is expected"
        ));
    }
    let password = secret
        .data
        .as_ref()
        .and_then(|d| d.get(PASSWORD_SECRET_KEY))
        .ok_or_else(|| format!("password not specified in the secret {secret_name}"))?;
    String::from_utf8(password.0.clone())
        .map(Some)
        .map_err(|_| format!("the password in the secret {secret_name} is not UTF-8 text"))
}

/// Validates `file`'s pools, L2 and BGP objects (with the cluster's namespaces, for
/// namespace selectors) leaving out the objects that fail, and fills the BGPPeers'
/// passwords from `secrets`. Pools are taken oldest first, so that of two overlapping
/// pools the one created later is left out.
pub fn from_objects(
    mut file: ConfigFile,
    secrets: &[Secret],
    options: &ValidateOptions,
) -> ClusterConfig {
    file.pools.sort_by(|a, b| {
        let created = |p: &crate::config::crd::IPAddressPool| p.metadata.creation_timestamp.clone();
        (created(a).is_none(), created(a), &a.metadata.name).cmp(&(
            created(b).is_none(),
            created(b),
            &b.metadata.name,
        ))
    });
    let mut rejected: BTreeMap<String, Vec<Issue>> = BTreeMap::new();
    let mut left_out: BTreeMap<String, Vec<Issue>> = BTreeMap::new();
    let mut passwords: BTreeMap<String, String> = BTreeMap::new();
    file.bgp_peers.retain(|peer| {
        let name = peer.metadata.name.clone().unwrap_or_default();
        match secret_password(peer, secrets) {
            Ok(password) => {
                passwords.extend(password.map(|p| (name, p)));
                true
            }
            Err(message) => {
                let object = format!("BGPPeer {}/{name}", options.namespace);
                let secret = peer.spec.password_secret.name.clone().unwrap_or_default();
                let issue = Issue::new(&object, "spec.passwordSecret", &secret, message);
                left_out
                    .entry(format!("BGPPeer {name}"))
                    .or_default()
                    .push(issue);
                false
            }
        }
    });
    loop {
        let validation = validate(&file, options);
        if let Some(mut config) = validation.config {
            for peer in &mut config.bgp.peers {
                if let Some(password) = passwords.get(&peer.name) {
                    peer.password = password.clone();
                }
            }
            // Read here: the standalone file's warning about it does not apply.
            let warnings = validation
                .warnings
                .into_iter()
                .filter(|w| w.field != "spec.passwordSecret")
                .collect();
            return ClusterConfig {
                config,
                rejected,
                left_out,
                errors: Vec::new(),
                warnings,
            };
        }
        let mut removed = false;
        let mut unattributed = Vec::new();
        for issue in validation.errors {
            match culprit(&issue) {
                Some((kind, name)) => {
                    let (kind, name) = (kind.to_owned(), name.to_owned());
                    removed |= leave_out(&mut file, &kind, &name);
                    let entry = if kind == "IPAddressPool" {
                        rejected.entry(name)
                    } else {
                        left_out.entry(format!("{kind} {name}"))
                    };
                    entry.or_default().push(issue);
                }
                None => unattributed.push(issue),
            }
        }
        if !removed {
            // Nothing more can be left out: serve nothing rather than something wrong.
            return ClusterConfig {
                config: Config::default(),
                rejected,
                left_out,
                errors: unattributed,
                warnings: validation.warnings,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::crd::IPAddressPool;

    fn pool(name: &str, created: Option<&str>, addresses: &[&str]) -> IPAddressPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": name, "namespace": "metallb-system", "creationTimestamp": created},
            "spec": {"addresses": addresses},
        }))
        .unwrap()
    }

    fn pools(pools: Vec<IPAddressPool>) -> ConfigFile {
        ConfigFile {
            pools,
            ..ConfigFile::default()
        }
    }

    fn names(config: &ClusterConfig) -> Vec<&str> {
        config
            .config
            .pools
            .iter()
            .map(|p| p.name.as_str())
            .collect()
    }

    #[test]
    fn a_bad_pool_is_left_out_and_the_others_serve() {
        let result = from_objects(
            pools(vec![
                pool("good", None, &["192.0.2.0/24"]),
                pool("broken", None, &["not-a-cidr"]),
            ]),
            &[],
            &ValidateOptions::default(),
        );
        assert_eq!(names(&result), ["good"]);
        assert_eq!(result.rejected.keys().collect::<Vec<_>>(), ["broken"]);
        assert!(
            result.rejected["broken"][0]
                .to_string()
                .contains("not-a-cidr")
        );
    }

    #[test]
    fn of_two_overlapping_pools_the_newer_is_left_out() {
        let result = from_objects(
            pools(vec![
                pool("a-new", Some("2026-01-02T00:00:00Z"), &["192.0.2.0/25"]),
                pool("z-old", Some("2026-01-01T00:00:00Z"), &["192.0.2.0/24"]),
            ]),
            &[],
            &ValidateOptions::default(),
        );
        assert_eq!(names(&result), ["z-old"]);
        assert!(result.rejected.contains_key("a-new"));
    }

    fn peer(name: &str, spec: serde_json::Value) -> BGPPeer {
        let mut full =
            serde_json::json!({"myASN": 64500, "peerASN": 64500, "peerAddress": "192.0.2.1"});
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        serde_json::from_value(serde_json::json!({
            "apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
            "metadata": {"name": name, "namespace": "metallb-system"}, "spec": full,
        }))
        .unwrap()
    }

    fn secret(name: &str, type_: &str, data: serde_json::Value) -> Secret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "metallb-system"}, "type": type_, "data": data,
        }))
        .unwrap()
    }

    #[test]
    fn a_bad_bgp_object_is_left_out_and_the_others_serve() {
        let file = ConfigFile {
            pools: vec![pool("good", None, &["192.0.2.0/24"])],
            bgp_peers: vec![
                peer("fine", serde_json::json!({})),
                peer("no-profile", serde_json::json!({"bfdProfile": "missing"})),
            ],
            ..ConfigFile::default()
        };
        let result = from_objects(file, &[], &ValidateOptions::default());
        assert_eq!(names(&result), ["good"]);
        let peers: Vec<&str> = result
            .config
            .bgp
            .peers
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(peers, ["fine"]);
        assert_eq!(
            result.left_out.keys().collect::<Vec<_>>(),
            ["BGPPeer no-profile"]
        );
        assert!(result.rejected.is_empty());
    }

    /// MetalLB's `passwordFromSecretForPeer`, with its reasons.
    #[test]
    fn passwords_come_from_basic_auth_secrets_of_the_namespace() {
        let with_secret =
            |name: &str| peer(name, serde_json::json!({"passwordSecret": {"name": "s"}}));
        // "hunter2", base64.
        let good = secret(
            "s",
            PASSWORD_SECRET_TYPE,
            serde_json::json!({"password": "aHVudGVyMg=="}),
        );
        type Case<'a> = (&'a str, Vec<Secret>, Result<Option<&'a str>, &'a str>);
        let cases: [Case; 5] = [
            ("the password", vec![good.clone()], Ok(Some("hunter2"))),
            (
                "missing",
                vec![],
                Err(r#"secret ref not found for peer config "metallb-system"/"p""#),
            ),
            (
                "wrong type",
                vec![secret(
                    "s",
                    "Opaque",
                    serde_json::json!({"password": "aHVudGVyMg=="}),
                )],
                Err(
                    r#"secret type mismatch on "metallb-system"/"s", type "kubernetes.io/basic-auth" is expected"#,
                ),
            ),
            (
                "no password key",
                vec![secret(
                    "s",
                    PASSWORD_SECRET_TYPE,
                    serde_json::json!({"username": "aGk="}),
                )],
                Err(r#"password not specified in the secret "metallb-system"/"s""#),
            ),
            (
                "another secret's name",
                vec![secret(
                    "t",
                    PASSWORD_SECRET_TYPE,
                    serde_json::json!({"password": "aGk="}),
                )],
                Err(r#"secret ref not found for peer config "metallb-system"/"p""#),
            ),
        ];
        for (what, secrets, want) in cases {
            let got = secret_password(&with_secret("p"), &secrets);
            assert_eq!(
                got.as_ref().map(|p| p.as_deref()).map_err(String::as_str),
                want,
                "{what}"
            );
        }
        assert_eq!(
            secret_password(&peer("p", serde_json::json!({})), &[]),
            Ok(None)
        );

        // Through the configuration: the password is the Secret's; a peer whose Secret
        // is unusable is left out, naming why.
        let file = ConfigFile {
            bgp_peers: vec![
                with_secret("a"),
                peer("b", serde_json::json!({"passwordSecret": {"name": "nope"}})),
            ],
            ..ConfigFile::default()
        };
        let result = from_objects(file, &[good], &ValidateOptions::default());
        let peers: Vec<(&str, &str)> = result
            .config
            .bgp
            .peers
            .iter()
            .map(|p| (p.name.as_str(), p.password.as_str()))
            .collect();
        assert_eq!(peers, [("a", "hunter2")]);
        assert_eq!(
            result.left_out["BGPPeer b"][0].to_string(),
            r#"BGPPeer metallb-system/b: spec.passwordSecret "nope": secret ref not found for peer config "metallb-system"/"b""#
        );
        assert!(
            result
                .warnings
                .iter()
                .all(|w| w.field != "spec.passwordSecret"),
            "{:?}",
            result.warnings
        );
    }
}
