//! The configuration as the cluster holds it, validated leniently: a file is all or
//! nothing (the last good one keeps serving), but in a cluster one bad IPAddressPool
//! must not stop the others. Pools that fail validation are left out, each with its
//! problems, and the rest is validated again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;

use crate::config::{
    Config, Issue, ValidateOptions,
    crd::{IPAddressPool, L2Advertisement},
    file::ConfigFile,
    validate,
};

/// The usable configuration and what was left out of it.
#[derive(Debug, Default)]
pub struct ClusterConfig {
    pub config: Config,
    /// Pools left out, by name, with why.
    pub rejected: BTreeMap<String, Vec<Issue>>,
    /// Problems that name no pool (nothing could be left out for them).
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

/// The name of the pool an issue is about, if it is about one.
fn pool_of(issue: &Issue) -> Option<&str> {
    let rest = issue.object.strip_prefix("IPAddressPool ")?;
    Some(rest.split_once('/').map_or(rest, |(_, name)| name))
}

/// Validates `pools` (with the cluster's namespaces, for namespace selectors) leaving
/// out the pools that fail. Pools are taken oldest first, so that of two overlapping
/// pools the one created later is left out.
pub fn from_objects(
    mut pools: Vec<IPAddressPool>,
    l2_advertisements: Vec<L2Advertisement>,
    namespaces: Vec<Namespace>,
    options: &ValidateOptions,
) -> ClusterConfig {
    pools.sort_by(|a, b| {
        let created = |p: &IPAddressPool| p.metadata.creation_timestamp.clone();
        (created(a).is_none(), created(a), &a.metadata.name).cmp(&(
            created(b).is_none(),
            created(b),
            &b.metadata.name,
        ))
    });
    let mut file = ConfigFile {
        pools,
        l2_advertisements,
        namespaces,
        ..ConfigFile::default()
    };
    let mut rejected: BTreeMap<String, Vec<Issue>> = BTreeMap::new();
    loop {
        let validation = validate(&file, options);
        if let Some(config) = validation.config {
            return ClusterConfig {
                config,
                rejected,
                errors: Vec::new(),
                warnings: validation.warnings,
            };
        }
        let mut leave_out = Vec::new();
        let mut unattributed = Vec::new();
        for issue in validation.errors {
            match pool_of(&issue) {
                Some(name) => {
                    leave_out.push(name.to_owned());
                    rejected.entry(name.to_owned()).or_default().push(issue);
                }
                None => unattributed.push(issue),
            }
        }
        let before = file.pools.len();
        file.pools
            .retain(|p| !leave_out.contains(&p.metadata.name.clone().unwrap_or_default()));
        if file.pools.len() == before {
            // Nothing more can be left out: serve no pool rather than a wrong one.
            return ClusterConfig {
                config: Config::default(),
                rejected,
                errors: unattributed,
                warnings: validation.warnings,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, created: Option<&str>, addresses: &[&str]) -> IPAddressPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": name, "namespace": "metallb-system", "creationTimestamp": created},
            "spec": {"addresses": addresses},
        }))
        .unwrap()
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
            vec![
                pool("good", None, &["192.0.2.0/24"]),
                pool("broken", None, &["not-a-cidr"]),
            ],
            Vec::new(),
            Vec::new(),
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
            vec![
                pool("a-new", Some("2026-01-02T00:00:00Z"), &["192.0.2.0/25"]),
                pool("z-old", Some("2026-01-01T00:00:00Z"), &["192.0.2.0/24"]),
            ],
            Vec::new(),
            Vec::new(),
            &ValidateOptions::default(),
        );
        assert_eq!(names(&result), ["z-old"]);
        assert!(result.rejected.contains_key("a-new"));
    }
}
