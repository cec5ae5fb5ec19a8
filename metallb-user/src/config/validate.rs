//! MetalLB's configuration rules, including those its admission webhooks enforce.
//! Every error names the object, the field and the value; what MetalLB accepts but
//! probably is a mistake (an advertisement naming a pool that does not exist) is a
//! warning.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::{
    AddrRange, Config, DEFAULT_NAMESPACE, Issue, L2Advertisement, Labels, Pool, PoolAllocation,
    Selector,
    addresses::{PoolEntry, special_blocks},
    file::ConfigFile,
    names::{self, shorten},
    selector::same_selector,
    service::{self, HeldBack},
};

#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// The namespace MetalLB runs in; its objects must be there (no namespace: there).
    pub namespace: String,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        Self {
            namespace: DEFAULT_NAMESPACE.into(),
        }
    }
}

/// What validation found. `config` is `Some` exactly when `errors` is empty.
#[derive(Debug, Default)]
pub struct Validation {
    pub config: Option<Config>,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

/// The API server's rule for the name of one kind of object.
type NameRule = fn(&str) -> Result<(), String>;

pub(super) struct Checker {
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
}

impl Checker {
    pub(super) fn error(
        &mut self,
        object: &str,
        field: &str,
        value: &str,
        message: impl Into<String>,
    ) {
        self.errors.push(Issue::new(object, field, value, message));
    }

    pub(super) fn warning(
        &mut self,
        object: &str,
        field: &str,
        value: &str,
        message: impl Into<String>,
    ) {
        self.warnings
            .push(Issue::new(object, field, value, message));
    }

    /// Compiles `selectors` (field `field[i]`), reporting invalid ones, and duplicates
    /// as MetalLB finds them (equal once each expression's values are sorted).
    fn selectors(
        &mut self,
        object: &str,
        field: &str,
        selectors: &[LabelSelector],
    ) -> Vec<Selector> {
        let mut out = Vec::new();
        for (i, selector) in selectors.iter().enumerate() {
            let shown = serde_json::to_string(selector).unwrap_or_default();
            if let Some(first) = selectors[..i]
                .iter()
                .position(|earlier| same_selector(earlier, selector))
            {
                self.error(
                    object,
                    &format!("{field}[{i}]"),
                    &shown,
                    format!("duplicate selector: the same as {field}[{first}]"),
                );
                continue;
            }
            match Selector::compile(selector) {
                Ok(compiled) => out.push(compiled),
                Err(message) => self.error(object, &format!("{field}[{i}]"), &shown, message),
            }
        }
        out
    }

    fn no_duplicates(&mut self, object: &str, field: &str, values: &[String]) {
        for (i, value) in values.iter().enumerate() {
            if values[..i].contains(value) {
                self.error(object, &format!("{field}[{i}]"), value, "duplicate entry");
            }
        }
    }

    /// The API server's rules for the metadata of any object: its name (by `rule`),
    /// label keys and values, annotation keys and their total size.
    fn metadata(&mut self, object: &str, meta: &ObjectMeta, rule: NameRule) {
        let name = meta.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            self.error(object, "metadata.name", "", "missing name");
        } else if let Err(why) = rule(name) {
            self.error(object, "metadata.name", name, why);
        }
        for (key, value) in meta.labels.iter().flatten() {
            if let Err(why) = names::qualified_name(key) {
                self.error(object, "metadata.labels", key, format!("label key {why}"));
            }
            if let Err(why) = names::label_value(value) {
                self.error(
                    object,
                    &format!("metadata.labels[{key}]"),
                    value,
                    format!("label value {why}"),
                );
            }
        }
        let mut size = 0;
        for (key, value) in meta.annotations.iter().flatten() {
            // The API server checks annotation keys in lower case.
            if let Err(why) = names::qualified_name(&key.to_ascii_lowercase()) {
                self.error(
                    object,
                    "metadata.annotations",
                    key,
                    format!("annotation key {why}"),
                );
            }
            size += key.len() + value.len();
        }
        if size > names::ANNOTATIONS_MAX_BYTES {
            self.error(
                object,
                "metadata.annotations",
                "",
                format!(
                    "hold {size} bytes; the API server takes at most {}",
                    names::ANNOTATIONS_MAX_BYTES
                ),
            );
        }
    }

    /// The object's display name; checks its metadata and namespace.
    fn metallb_object(
        &mut self,
        kind: &str,
        meta: &ObjectMeta,
        options: &ValidateOptions,
    ) -> String {
        let name = meta.name.clone().unwrap_or_default();
        let namespace = meta
            .namespace
            .clone()
            .unwrap_or_else(|| options.namespace.clone());
        let object = format!("{kind} {}/{}", shorten(&namespace), shorten(&name));
        self.metadata(&object, meta, names::dns1123_subdomain);
        if namespace != options.namespace {
            self.error(
                &object,
                "metadata.namespace",
                &namespace,
                format!(
                    "MetalLB reads its objects only from namespace {:?}",
                    options.namespace
                ),
            );
        }
        object
    }
}

fn labels(meta: &ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

pub fn validate(file: &ConfigFile, options: &ValidateOptions) -> Validation {
    let mut check = Checker {
        errors: Vec::new(),
        warnings: file.warnings.clone(),
    };

    // Namespaces, nodes and services: valid, and unique by name.
    let mut namespaces = BTreeMap::new();
    for ns in &file.namespaces {
        let name = ns.metadata.name.clone().unwrap_or_default();
        let object = format!("Namespace {}", shorten(&name));
        check.metadata(&object, &ns.metadata, names::dns1123_label);
        if !name.is_empty()
            && namespaces
                .insert(name.clone(), labels(&ns.metadata))
                .is_some()
        {
            check.error(&object, "metadata.name", &name, "duplicate Namespace");
        }
    }
    let mut node_names = BTreeSet::new();
    for node in &file.nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let object = format!("Node {}", shorten(&name));
        check.metadata(&object, &node.metadata, names::dns1123_subdomain);
        if !name.is_empty() && !node_names.insert(name.clone()) {
            check.error(&object, "metadata.name", &name, "duplicate Node");
        }
    }
    let mut service_names = BTreeSet::new();
    // Services the API server would admit, and their display names.
    let mut admitted_services = Vec::new();
    for service in &file.services {
        let errors_before = check.errors.len();
        let name = service.metadata.name.clone().unwrap_or_default();
        let namespace = super::service_namespace(service).to_owned();
        let object = format!("Service {}/{}", shorten(&namespace), shorten(&name));
        check.metadata(&object, &service.metadata, names::dns1035_label);
        if let Err(why) = names::dns1123_label(&namespace) {
            check.error(&object, "metadata.namespace", &namespace, why);
        }
        if !name.is_empty() && !service_names.insert((namespace, name.clone())) {
            check.error(&object, "metadata.name", &name, "duplicate Service");
        }
        service::check_spec(
            &mut check,
            &object,
            &service.spec.clone().unwrap_or_default(),
        );
        service::check_annotations(&mut check, &object, service);
        if check.errors.len() == errors_before {
            admitted_services.push((service, object));
        }
    }

    // Pools.
    let mut pools: Vec<Pool> = Vec::new();
    let mut all_ranges: Vec<(AddrRange, String, String)> = Vec::new();
    let mut held_back = Vec::new();
    for pool in &file.pools {
        let object = check.metallb_object("IPAddressPool", &pool.metadata, options);
        let name = pool.metadata.name.clone().unwrap_or_default();
        if !name.is_empty() && pools.iter().any(|p| p.name == name) {
            check.error(&object, "metadata.name", &name, "duplicate IPAddressPool");
        }
        let spec = &pool.spec;
        if spec.addresses.is_empty() {
            check.error(
                &object,
                "spec.addresses",
                "",
                "a pool needs at least one CIDR or range",
            );
        }
        let mut ranges = Vec::new();
        for (i, text) in spec.addresses.iter().enumerate() {
            let field = format!("spec.addresses[{i}]");
            let entry = match PoolEntry::parse(text) {
                Ok(entry) => entry,
                Err(message) => {
                    check.error(&object, &field, text, message);
                    continue;
                }
            };
            let range = entry.range;
            let special = special_blocks(&range);
            if !special.is_empty() {
                let blocks: Vec<String> = special
                    .iter()
                    .map(|block| format!("{} ({})", block.name, block.what))
                    .collect();
                check.error(
                    &object,
                    &field,
                    text,
                    format!(
                        "holds addresses that can never be a VIP on a LAN: it overlaps {}",
                        blocks.join("; ")
                    ),
                );
            }
            // Overlap is checked across pools and inside one pool, on every address
            // an entry names (a held-back anycast address too, as MetalLB would).
            if let Some((_, other_object, other_text)) =
                all_ranges.iter().find(|(other, ..)| other.overlaps(&range))
            {
                check.error(
                    &object,
                    &field,
                    text,
                    format!("overlaps {other_text:?} of {other_object}"),
                );
            }
            all_ranges.push((range, object.clone(), text.clone()));
            if let Some(anycast) = entry.anycast {
                check.warning(
                    &object,
                    &field,
                    text,
                    format!(
                        "{anycast} is its subnet-router anycast address (RFC 4291), which the routers of the link answer: it is never handed out"
                    ),
                );
                held_back.push(HeldBack {
                    ip: anycast,
                    pool: name.clone(),
                    entry: text.clone(),
                });
            }
            ranges.push(entry.usable());
        }
        let allocation = spec.service_allocation.as_ref().map(|allocation| {
            check.no_duplicates(
                &object,
                "spec.serviceAllocation.namespaces",
                &allocation.namespaces,
            );
            let namespace_selectors = check.selectors(
                &object,
                "spec.serviceAllocation.namespaceSelectors",
                &allocation.namespace_selectors,
            );
            let mut service_selectors = check.selectors(
                &object,
                "spec.serviceAllocation.serviceSelectors",
                &allocation.service_selectors,
            );
            let mut selected: BTreeSet<String> = allocation.namespaces.iter().cloned().collect();
            for (ns, ns_labels) in &namespaces {
                if namespace_selectors.iter().any(|s| s.matches(ns_labels)) {
                    selected.insert(ns.clone());
                }
            }
            let nothing_restricted = allocation.namespaces.is_empty()
                && allocation.namespace_selectors.is_empty()
                && allocation.service_selectors.is_empty();
            if nothing_restricted {
                // Only a priority: the pool matches every service (MetalLB's rule).
                service_selectors = vec![Selector::everything()];
            }
            PoolAllocation {
                priority: (allocation.priority != 0).then_some(allocation.priority),
                namespaces: selected,
                service_selectors,
            }
        });
        pools.push(Pool {
            name,
            labels: labels(&pool.metadata),
            ranges,
            auto_assign: spec.auto_assign.unwrap_or(true),
            avoid_buggy_ips: spec.avoid_buggy_ips,
            allocation,
        });
    }

    // L2 advertisements.
    let mut advertisements: Vec<L2Advertisement> = Vec::new();
    for adv in &file.l2_advertisements {
        let object = check.metallb_object("L2Advertisement", &adv.metadata, options);
        let name = adv.metadata.name.clone().unwrap_or_default();
        if !name.is_empty() && advertisements.iter().any(|a| a.name == name) {
            check.error(&object, "metadata.name", &name, "duplicate L2Advertisement");
        }
        let spec = &adv.spec;
        check.no_duplicates(&object, "spec.ipAddressPools", &spec.ip_address_pools);
        check.no_duplicates(&object, "spec.interfaces", &spec.interfaces);
        let pool_selectors = check.selectors(
            &object,
            "spec.ipAddressPoolSelectors",
            &spec.ip_address_pool_selectors,
        );
        let node_selectors = check.selectors(&object, "spec.nodeSelectors", &spec.node_selectors);
        let service_selectors =
            check.selectors(&object, "spec.serviceSelectors", &spec.service_selectors);
        let mut preferred_nodes = Vec::new();
        for (i, preferred) in spec.preferred_node_selectors.iter().enumerate() {
            let field = format!("spec.preferredNodeSelectors[{i}]");
            if !(1..=100).contains(&preferred.weight) {
                check.error(
                    &object,
                    &format!("{field}.weight"),
                    &preferred.weight.to_string(),
                    "must be 1 to 100",
                );
            }
            match Selector::compile(&preferred.preference) {
                Ok(selector) => preferred_nodes.push((preferred.weight, selector)),
                Err(message) => check.error(&object, &format!("{field}.preference"), "", message),
            }
        }
        let mut selected = BTreeSet::new();
        if spec.ip_address_pools.is_empty() && spec.ip_address_pool_selectors.is_empty() {
            // Neither named nor selected: every pool.
            selected.extend(pools.iter().map(|p| p.name.clone()));
        } else {
            for (i, pool_name) in spec.ip_address_pools.iter().enumerate() {
                if pools.iter().any(|p| &p.name == pool_name) {
                    selected.insert(pool_name.clone());
                } else {
                    // Valid in MetalLB: it selects nothing.
                    check.warnings.push(Issue::new(
                        &object,
                        &format!("spec.ipAddressPools[{i}]"),
                        pool_name,
                        "no IPAddressPool has this name: it announces nothing",
                    ));
                }
            }
            for pool in &pools {
                if pool_selectors.iter().any(|s| s.matches(&pool.labels)) {
                    selected.insert(pool.name.clone());
                }
            }
        }
        advertisements.push(L2Advertisement {
            name,
            pools: selected,
            node_selectors,
            interfaces: spec.interfaces.clone(),
            service_selectors,
            preferred_nodes,
        });
    }

    // What services ask for that these pools can never give: warnings (an error would
    // make the speaker drop the whole file).
    for (service, object) in &admitted_services {
        service::check_request(&mut check, object, service, &pools, &held_back);
    }

    if !check.errors.is_empty() {
        return Validation {
            config: None,
            errors: check.errors,
            warnings: check.warnings,
        };
    }
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    advertisements.sort_by(|a, b| a.name.cmp(&b.name));
    Validation {
        config: Some(Config {
            pools,
            l2_advertisements: advertisements,
            services: file.services.clone(),
            nodes: file.nodes.clone(),
            namespaces,
        }),
        errors: Vec::new(),
        warnings: check.warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse;

    fn run(text: &str) -> Validation {
        validate(&parse(text).expect("parses"), &ValidateOptions::default())
    }

    fn pool(name: &str, body: &str) -> String {
        format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec:\n{body}\n"
        )
    }

    fn adv(name: &str, body: &str) -> String {
        let spec = if body.starts_with(' ') {
            format!("spec:\n{body}")
        } else {
            format!("spec: {body}")
        };
        format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: {name}}}\n{spec}\n"
        )
    }

    /// (configuration, expected error fragments; empty = valid)
    fn error_table() -> Vec<(String, Vec<&'static str>)> {
        vec![
            (pool("a", "  addresses: [192.0.2.0/24]"), vec![]),
            (pool("a", "  addresses: []"), vec!["IPAddressPool metallb-system/a: spec.addresses: a pool needs at least one"]),
            (pool("a", "  addresses: [192.0.2.0/33]"), vec!["spec.addresses[0] \"192.0.2.0/33\": invalid CIDR"]),
            (pool("a", "  addresses: [192.0.2.1]"), vec!["spec.addresses[0] \"192.0.2.1\": neither a CIDR"]),
            (pool("a", "  addresses: [192.0.2.9-192.0.2.1]"), vec!["start 192.0.2.9 is after end 192.0.2.1"]),
            (
                pool("a", "  addresses: [192.0.2.0/24]") + &pool("b", "  addresses: [192.0.2.128/25]"),
                vec!["IPAddressPool metallb-system/b: spec.addresses[0] \"192.0.2.128/25\": overlaps \"192.0.2.0/24\" of IPAddressPool metallb-system/a"],
            ),
            (
                pool("a", "  addresses: [192.0.2.0/24, 192.0.2.10-192.0.2.20]"),
                vec!["spec.addresses[1] \"192.0.2.10-192.0.2.20\": overlaps \"192.0.2.0/24\" of IPAddressPool metallb-system/a"],
            ),
            (pool("a", "  addresses: [192.0.2.0/25, 192.0.2.128/25, 2001:db8::/64]"), vec![]),
            (
                pool("a", "  addresses: [192.0.2.0/24]") + &pool("a", "  addresses: [198.51.100.0/24]"),
                vec!["metadata.name \"a\": duplicate IPAddressPool"],
            ),
            (
                "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a, namespace: default}\nspec: {addresses: [192.0.2.0/24]}\n".into(),
                vec!["IPAddressPool default/a: metadata.namespace \"default\": MetalLB reads its objects only from namespace \"metallb-system\""],
            ),
            (
                "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {namespace: metallb-system}\nspec: {addresses: [192.0.2.0/24]}\n".into(),
                vec!["metadata.name: missing name"],
            ),
            (
                pool("a", "  addresses: [192.0.2.0/24]\n  serviceAllocation: {namespaces: [x, y, x]}"),
                vec!["spec.serviceAllocation.namespaces[2] \"x\": duplicate entry"],
            ),
            (
                pool("a", "  addresses: [192.0.2.0/24]\n  serviceAllocation:\n    serviceSelectors: [{matchLabels: {a: b}}, {matchLabels: {a: b}}]"),
                vec!["spec.serviceAllocation.serviceSelectors[1]", "duplicate selector"],
            ),
            (
                pool("a", "  addresses: [192.0.2.0/24]\n  serviceAllocation:\n    namespaceSelectors: [{matchExpressions: [{key: a, operator: Has}]}]"),
                vec!["spec.serviceAllocation.namespaceSelectors[0]", "operator \"Has\""],
            ),
            (
                pool("a", "  addresses: [192.0.2.0/24]") + &adv("l2", "  ipAddressPools: [a, a]"),
                vec!["L2Advertisement metallb-system/l2: spec.ipAddressPools[1] \"a\": duplicate entry"],
            ),
            (
                pool("a", "  addresses: [192.0.2.0/24]") + &adv("l2", "  interfaces: [eth0, eth0]"),
                vec!["spec.interfaces[1] \"eth0\": duplicate entry"],
            ),
            (
                adv("l2", "  nodeSelectors: [{matchLabels: {'bad key': x}}]"),
                vec!["spec.nodeSelectors[0]", "label key \"bad key\""],
            ),
            (
                adv("l2", "  nodeSelectors: [{matchLabels: {a: b}}, {matchLabels: {a: b}}]"),
                vec!["spec.nodeSelectors[1]", "duplicate selector"],
            ),
            (
                adv("l2", "  ipAddressPoolSelectors: [{matchLabels: {a: b}}, {matchLabels: {a: b}}]"),
                vec!["spec.ipAddressPoolSelectors[1]", "duplicate selector"],
            ),
            (
                adv("l2", "  preferredNodeSelectors: [{weight: 0, preference: {}}]"),
                vec!["spec.preferredNodeSelectors[0].weight \"0\": must be 1 to 100"],
            ),
            (adv("l2", "  serviceSelectors: [{matchLabels: {a: 'b c'}}]"), vec!["spec.serviceSelectors[0]"]),
            (adv("l2", "{}"), vec![]),
        ]
    }

    #[test]
    fn validation_table() {
        for (text, wanted) in error_table() {
            let result = run(&text);
            let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
            if wanted.is_empty() {
                assert!(
                    errors.is_empty() && result.config.is_some(),
                    "{text}\nunexpected errors: {errors:#?}"
                );
                continue;
            }
            assert!(result.config.is_none(), "{text}");
            for fragment in wanted {
                assert!(
                    errors.iter().any(|e| e.contains(fragment)),
                    "{text}\nno error contains {fragment:?}: {errors:#?}"
                );
            }
        }
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let text =
            pool("a", "  addresses: [bad, 192.0.2.0/33]") + &adv("l2", "  interfaces: [x, x]");
        assert_eq!(run(&text).errors.len(), 3);
    }

    #[test]
    fn an_advertisement_naming_a_missing_pool_is_a_warning() {
        let text =
            pool("a", "  addresses: [192.0.2.0/24]") + &adv("l2", "  ipAddressPools: [a, nope]");
        let result = run(&text);
        let config = result.config.expect("valid");
        assert_eq!(
            config.l2_advertisements[0].pools,
            BTreeSet::from(["a".to_string()])
        );
        let warnings: Vec<String> = result.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            warnings,
            [
                "L2Advertisement metallb-system/l2: spec.ipAddressPools[1] \"nope\": no IPAddressPool has this name: it announces nothing"
            ]
        );
    }

    #[test]
    fn model_defaults_and_resolution() {
        let text = pool("b", "  addresses: [192.0.2.5/30]\n  autoAssign: false")
            + &pool(
                "a",
                "  addresses: [198.51.100.0/24]\n  avoidBuggyIPs: true\n  serviceAllocation: {priority: 10}",
            )
            + &pool(
                "c",
                "  addresses: [203.0.113.0/24]\n  serviceAllocation:\n    namespaces: [web]\n    namespaceSelectors: [{matchLabels: {team: blue}}]",
            )
            + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ops, labels: {team: blue}}\n"
            + "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev, labels: {team: red}}\n"
            + &pool("z", "  addresses: [2001:db8::/120]")
            + &pool("labelled", "  addresses: [10.0.0.0/24]").replace(
                "metadata: {name: labelled,",
                "metadata: {labels: {zone: east}, name: labelled,",
            )
            + &adv("all", "{}")
            + &adv(
                "east",
                "  ipAddressPoolSelectors: [{matchLabels: {zone: east}}]\n  ipAddressPools: [b]",
            );
        let config = run(&text).config.expect("valid");
        let names: Vec<&str> = config.pools.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "labelled", "z"]);
        let b = config.pool("b").unwrap();
        assert!(!b.auto_assign && !b.avoid_buggy_ips && b.allocation.is_none());
        assert_eq!(b.ranges[0].to_string(), "192.0.2.4-192.0.2.7");
        let a = config.pool("a").unwrap();
        let alloc = a.allocation.as_ref().unwrap();
        assert_eq!(alloc.priority, Some(10));
        assert_eq!(alloc.service_selectors, vec![Selector::everything()]);
        let c = config.pool("c").unwrap().allocation.as_ref().unwrap();
        assert_eq!(c.priority, None);
        assert_eq!(
            c.namespaces,
            BTreeSet::from(["ops".to_string(), "web".to_string()])
        );
        assert!(c.service_selectors.is_empty());
        let all = &config.l2_advertisements[0];
        assert_eq!(all.pools.len(), 5);
        let east = &config.l2_advertisements[1];
        assert_eq!(
            east.pools,
            BTreeSet::from(["b".to_string(), "labelled".to_string()])
        );
    }
}
