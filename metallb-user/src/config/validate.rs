//! MetalLB's configuration rules, including those its admission webhooks enforce, and
//! the API server's rules for the objects of the file (names, labels, annotations:
//! [`names`]; Services: [`service`]), which nobody else
//! checks in standalone mode. Every error names the object, the field and the value;
//! what is accepted but probably a mistake (an advertisement naming a pool that does not
//! exist, a Service request no pool can meet) is a warning.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::core::v1::{self as api, ConfigMap},
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};

use super::{
    AddrRange, Config, DEFAULT_NAMESPACE, Issue, L2Advertisement, Labels, Pool, PoolAllocation,
    Selector, Service, ServiceName,
    addresses::{PoolEntry, special_blocks},
    file::ConfigFile,
    interfaces::{EXCLUDE_L2_CONFIG_MAP, InterfaceExclusions, read_config_map},
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
    pub(super) fn new() -> Self {
        Self {
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// (errors, warnings)
    pub(super) fn finish(self) -> (Vec<Issue>, Vec<Issue>) {
        (self.errors, self.warnings)
    }

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
    pub(super) fn selectors(
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

    pub(super) fn no_duplicates(&mut self, object: &str, field: &str, values: &[String]) {
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
    pub(super) fn metallb_object(
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

/// What the API server's rules found in a file's Services, in file order: found as
/// the file is read ([`admit_service`]), reported by [`validate`] in its turn.
#[derive(Clone, Debug, Default)]
pub struct ServiceIssues {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    /// Indexes (in the file's `services`, ascending) of the Services the API server
    /// would refuse.
    pub refused: Vec<usize>,
}

/// `Service namespace/name`, as messages name a Service.
fn service_object(service: &impl ServiceName) -> String {
    let name = service.service_name().unwrap_or_default();
    let namespace = super::service_namespace(service);
    format!("Service {}/{}", shorten(namespace), shorten(name))
}

/// The API server's rules for one Service, read from a file as the `index`-th Service
/// (from 0): its metadata, its spec, a name used before (`names` holds those read
/// before it), and MetalLB's annotations; what they find goes to `issues`. They need
/// the whole API object, and the core only a few of its fields: each Service is
/// checked as it is read and only the core's form of it kept, so that the API objects
/// of a large file are never all held at once (at 100,000 Services, about 160 MiB
/// against 60).
pub(super) fn admit_service(
    names: &mut BTreeSet<(String, String)>,
    issues: &mut ServiceIssues,
    index: usize,
    service: api::Service,
) -> Service {
    let mut check = Checker::new();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let namespace = super::service_namespace(&service);
    let object = service_object(&service);
    check.metadata(&object, &service.metadata, names::dns1035_label);
    if let Err(why) = names::dns1123_label(namespace) {
        check.error(&object, "metadata.namespace", namespace, why);
    }
    if !name.is_empty() && !names.insert((namespace.to_owned(), name.to_owned())) {
        check.error(&object, "metadata.name", name, "duplicate Service");
    }
    match &service.spec {
        Some(spec) => service::check_spec(&mut check, &object, spec),
        None => service::check_spec(&mut check, &object, &Default::default()),
    }
    service::check_annotations(&mut check, &object, &service);
    if !check.errors.is_empty() {
        issues.refused.push(index);
    }
    issues.errors.append(&mut check.errors);
    issues.warnings.append(&mut check.warnings);
    Service::from(service)
}

/// The interface exclusion patterns: the `metallb-excludel2` ConfigMap's, in MetalLB's
/// namespace, or MetalLB's defaults without one.
fn exclusions(
    check: &mut Checker,
    config_maps: &[ConfigMap],
    options: &ValidateOptions,
) -> InterfaceExclusions {
    let mut in_force = None;
    for (i, config_map) in config_maps.iter().enumerate() {
        let object = check.metallb_object("ConfigMap", &config_map.metadata, options);
        if i > 0 {
            check.error(
                &object,
                "metadata.name",
                EXCLUDE_L2_CONFIG_MAP,
                "duplicate ConfigMap",
            );
            continue;
        }
        let source = object.strip_prefix("ConfigMap ").unwrap_or(&object);
        let read = read_config_map(&object, source, config_map);
        check.errors.extend(read.errors);
        check.warnings.extend(read.warnings);
        in_force = read.exclusions;
    }
    in_force.unwrap_or_default()
}

fn labels(meta: &ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

pub fn validate(file: &ConfigFile, options: &ValidateOptions) -> Validation {
    let mut validation = checked(file, options);
    if let Some(config) = &mut validation.config {
        config.services = file.services.clone();
        config.nodes = file.nodes.clone();
        config.endpoint_slices = file.endpoint_slices.clone();
    }
    validation
}

/// [`validate`], taking the file: its Services, Nodes and EndpointSlices move into
/// the configuration instead of being copied (100,000 Services take about 60 MiB).
pub fn validate_owned(file: ConfigFile, options: &ValidateOptions) -> Validation {
    let mut validation = checked(&file, options);
    if let Some(config) = &mut validation.config {
        config.services = file.services;
        config.nodes = file.nodes;
        config.endpoint_slices = file.endpoint_slices;
    }
    validation
}

/// The checks of [`validate`]; the configuration without its Services, Nodes and
/// EndpointSlices (the caller copies or moves them in).
fn checked(file: &ConfigFile, options: &ValidateOptions) -> Validation {
    let mut objects = Objects::check(file, options);
    let refused = &file.service_issues.refused;
    for (i, service) in file.services.iter().enumerate() {
        if refused.binary_search(&i).is_err() {
            objects.request(service);
        }
    }
    objects.finish()
}

/// What [`validate`] found before it looks at what each Service asks for: the
/// checks of every object but the Services (whose own were made as they were read),
/// and what the Services' requests are checked against. The file reader that reads
/// only some documents again ([`super::file::Kept`]) checks only their Services'
/// requests with it.
pub(super) struct Objects {
    check: Checker,
    pools: Vec<Pool>,
    held_back: Vec<HeldBack>,
    advertisements: Vec<L2Advertisement>,
    namespaces: BTreeMap<String, Labels>,
    interface_exclusions: InterfaceExclusions,
    bgp: super::bgp_config::BgpConfig,
}

impl Objects {
    /// Every check of [`validate`] but the Services' requests: those of `file`'s
    /// objects, `file.warnings` and `file.service_issues` taken in; `file.services`
    /// is not looked at.
    pub(super) fn check(file: &ConfigFile, options: &ValidateOptions) -> Self {
        checked_objects(file, options)
    }

    /// What `service` (not refused) asks for that the pools can never give: warnings.
    pub(super) fn request(&mut self, service: &Service) {
        let object = service_object(service);
        service::check_request(
            &mut self.check,
            &object,
            service,
            &self.pools,
            &self.held_back,
        );
    }

    /// The warnings so far.
    pub(super) fn warnings(&self) -> &[Issue] {
        &self.check.warnings
    }

    /// Warnings that [`Objects::request`] gave for Services whose requests and these
    /// objects are those of an earlier check.
    pub(super) fn requested_before(&mut self, warnings: &[Issue]) {
        self.check.warnings.extend_from_slice(warnings);
    }

    /// Whether an error was found.
    pub(super) fn failed(&self) -> bool {
        !self.check.errors.is_empty()
    }

    /// The configuration (without its Services, Nodes and EndpointSlices), or the
    /// errors.
    pub(super) fn finish(self) -> Validation {
        let Self {
            check,
            mut pools,
            mut advertisements,
            namespaces,
            interface_exclusions,
            bgp,
            ..
        } = self;
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
                services: Vec::new(),
                nodes: Vec::new(),
                namespaces,
                endpoint_slices: Vec::new(),
                interface_exclusions,
                bgp: Box::new(bgp),
            }),
            errors: Vec::new(),
            warnings: check.warnings,
        }
    }
}

fn checked_objects(file: &ConfigFile, options: &ValidateOptions) -> Objects {
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
    for slice in &file.endpoint_slices {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let namespace = slice
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let object = format!("EndpointSlice {namespace}/{name}");
        check.metadata(&object, &slice.metadata, names::dns1123_subdomain);
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(crate::election::SERVICE_NAME_LABEL));
        if service.is_none() {
            check.warnings.push(Issue::new(
                &object,
                "metadata.labels",
                "",
                format!(
                    "no {} label: it belongs to no Service, and is not read",
                    crate::election::SERVICE_NAME_LABEL
                ),
            ));
        }
    }
    // The Services were checked as the file was read (see [`admit_service`]).
    check
        .errors
        .extend(file.service_issues.errors.iter().cloned());
    check
        .warnings
        .extend(file.service_issues.warnings.iter().cloned());

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

    let interface_exclusions = exclusions(&mut check, &file.exclude_l2, options);
    let bgp = super::bgp_config::resolve(file, &pools, options, &mut check);

    // What services ask for that these pools can never give: warnings (an error would
    // make the speaker drop the whole file), checked next ([`Objects::request`]).
    Objects {
        check,
        pools,
        held_back,
        advertisements,
        namespaces,
        interface_exclusions,
        bgp,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::file::parse;

    fn run(text: &str) -> Validation {
        validate(&parse(text).expect("parses"), &ValidateOptions::default())
    }

    pub(in crate::config) fn pool(name: &str, body: &str) -> String {
        format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec:\n{body}\n"
        )
    }

    pub(in crate::config) fn adv(name: &str, body: &str) -> String {
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

    fn config_map(name: &str, namespace: &str, data: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}{namespace}}}\ndata:\n{data}\n"
        )
    }

    #[test]
    fn the_excludel2_config_map_replaces_the_default_patterns() {
        let patterns = |text: &str| {
            let validation = run(text);
            let errors: Vec<String> = validation.errors.iter().map(Issue::to_string).collect();
            let warnings: Vec<String> = validation.warnings.iter().map(Issue::to_string).collect();
            (
                validation.config.map(|c| c.interface_exclusions.patterns()),
                errors,
                warnings,
            )
        };
        let defaults: Vec<String> = crate::config::interfaces::DEFAULT_EXCLUDED_INTERFACES
            .map(String::from)
            .to_vec();
        let ours = "  excludel2.yaml: |\n    announcedInterfacesToExclude: ['^veth.*', '^eth9$']";
        /// (what, file, patterns in force, errors, warnings)
        type Case = (
            &'static str,
            String,
            Option<Vec<String>>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "none: MetalLB's defaults",
                adv("l2", "{}"),
                Some(defaults.clone()),
                vec![],
                vec![],
            ),
            (
                "in MetalLB's namespace",
                config_map("metallb-excludel2", ", namespace: metallb-system", ours),
                Some(vec!["^veth.*".into(), "^eth9$".into()]),
                vec![],
                vec![],
            ),
            (
                "without a namespace: MetalLB's",
                config_map("metallb-excludel2", "", ours),
                Some(vec!["^veth.*".into(), "^eth9$".into()]),
                vec![],
                vec![],
            ),
            (
                "in another namespace",
                config_map("metallb-excludel2", ", namespace: default", ours),
                None,
                vec![
                    "ConfigMap default/metallb-excludel2: metadata.namespace \"default\": MetalLB reads its objects only from namespace \"metallb-system\"",
                ],
                vec![],
            ),
            (
                "twice",
                config_map("metallb-excludel2", "", ours)
                    + &config_map("metallb-excludel2", "", ours),
                None,
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: metadata.name \"metallb-excludel2\": duplicate ConfigMap",
                ],
                vec![],
            ),
            (
                "a bad pattern",
                config_map(
                    "metallb-excludel2",
                    "",
                    "  excludel2.yaml: |\n    announcedInterfacesToExclude: ['^veth.*', '^eth[9']",
                ),
                None,
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml].announcedInterfacesToExclude[1] \"^eth[9\": not a valid regular expression (RE2 syntax, as Go's regexp): unclosed character class",
                ],
                vec![],
            ),
            (
                "MetalLB's legacy configuration is still ignored",
                config_map("config", "", "  config: |\n    address-pools: []"),
                Some(defaults.clone()),
                vec![],
                vec![
                    "document 1 (ConfigMap config): kind \"ConfigMap\": ignored: the legacy ConfigMap configuration is not read; `metallb migrate-config` converts it to IPAddressPool and L2Advertisement objects",
                ],
            ),
        ];
        for (what, text, want, errors, warnings) in cases {
            let (got, got_errors, got_warnings) = patterns(&text);
            assert_eq!(got, want, "{what}");
            assert_eq!(got_errors, errors, "{what}");
            assert_eq!(got_warnings, warnings, "{what}");
        }
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

    /// What is expected of a configuration.
    #[derive(Clone, Copy, Debug)]
    pub(in crate::config) enum Want {
        /// Valid, without a warning.
        Valid,
        /// Valid, with exactly these warnings (one fragment each, in order).
        Warns(&'static [&'static str]),
        /// Refused, with errors containing each of these fragments (parse errors count).
        Refused(&'static [&'static str]),
    }
    pub(in crate::config) use Want::*;

    /// Errors (of parsing, then of validation) and warnings of `text`, as printed.
    pub(in crate::config) fn outcome(text: &str) -> (Vec<String>, Vec<String>) {
        let shown = |issues: &[Issue]| issues.iter().map(|i| i.to_string()).collect::<Vec<_>>();
        match parse(text) {
            Err(errors) => (shown(&errors), Vec::new()),
            Ok(file) => {
                let result = validate(&file, &ValidateOptions::default());
                assert_eq!(result.config.is_some(), result.errors.is_empty());
                (shown(&result.errors), shown(&result.warnings))
            }
        }
    }

    pub(in crate::config) fn check_table(table: &[(&str, String, Want)]) {
        for (desc, text, want) in table {
            let (errors, warnings) = outcome(text);
            match want {
                Valid => assert!(
                    errors.is_empty() && warnings.is_empty(),
                    "{desc}: {errors:#?} {warnings:#?}"
                ),
                Warns(fragments) => {
                    assert!(errors.is_empty(), "{desc}: {errors:#?}");
                    assert_eq!(warnings.len(), fragments.len(), "{desc}: {warnings:#?}");
                    for (warning, fragment) in warnings.iter().zip(fragments.iter()) {
                        assert!(
                            warning.contains(fragment),
                            "{desc}: {warning:?} lacks {fragment:?}"
                        );
                    }
                }
                Refused(fragments) => {
                    assert!(!errors.is_empty(), "{desc}: accepted");
                    for fragment in *fragments {
                        assert!(
                            errors.iter().any(|e| e.contains(fragment)),
                            "{desc}: no error contains {fragment:?}: {errors:#?}"
                        );
                    }
                }
            }
        }
    }

    fn namespace(name: &str, labels: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n"
        )
    }

    fn node(name: &str, labels: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n"
        )
    }

    /// The validation cases of MetalLB's `internal/config/config_test.go` (TestParse,
    /// TestServiceSelectors, preferred_node_test.go) and of its webhook tests
    /// (`internal/k8s/webhooks/webhookv1beta1/*_test.go`, `e2etest/webhookstests`) that
    /// concern IPAddressPool, L2Advertisement and selectors. Where MetalLB tests a rule
    /// on a BGP object that also holds for an L2Advertisement (selectors, duplicates),
    /// the case is ported onto the L2Advertisement.
    ///
    /// The BGP kinds' cases are in `config::bgp` (one object) and `config::bgp_config`
    /// (across objects).
    fn metallb_table() -> Vec<(&'static str, String, Want)> {
        vec![
            ("empty config", String::new(), Valid),
            (
                "ip address pool with namespace selection",
                pool("pool1", "  addresses: [10.20.0.0/16, 10.50.0.0/24]\n  avoidBuggyIPs: true\n  autoAssign: false\n  serviceAllocation: {priority: 1, namespaces: [test-ns1]}")
                    + &pool("pool2", "  addresses: [30.0.0.0/8]\n  serviceAllocation: {priority: 2, namespaceSelectors: [{matchLabels: {team: metallb}}]}")
                    + &pool("pool3", "  addresses: [40.0.0.0/8]\n  serviceAllocation: {priority: 3, namespaceSelectors: [{matchLabels: {team: red}}]}")
                    + &namespace("test-ns1", "")
                    + &namespace("test-ns2", "team: metallb"),
                Valid,
            ),
            (
                "ip address pool with duplicate namespace selection",
                pool("pool1", "  addresses: [10.20.0.0/16]\n  serviceAllocation: {priority: 1, namespaces: [test-ns1, test-ns1]}"),
                Refused(&["spec.serviceAllocation.namespaces[1] \"test-ns1\": duplicate entry"]),
            ),
            (
                "ip address pool with duplicate namespace selectors",
                pool("pool1", "  addresses: [10.20.0.0/16]\n  serviceAllocation: {priority: 1, namespaceSelectors: [{matchLabels: {foo: bar}}, {matchLabels: {foo: bar}}]}"),
                Refused(&["spec.serviceAllocation.namespaceSelectors[1]", "duplicate selector: the same as spec.serviceAllocation.namespaceSelectors[0]"]),
            ),
            (
                "ip address pool with service selection",
                pool("pool1", "  addresses: [30.0.0.0/8]\n  serviceAllocation: {priority: 2, serviceSelectors: [{matchLabels: {team: metallb}}]}")
                    + &pool("pool2", "  addresses: [40.0.0.0/8]\n  serviceAllocation: {priority: 3, serviceSelectors: [{matchLabels: {team: red}}]}"),
                Valid,
            ),
            (
                "ip address pool with duplicate service selection",
                pool("pool1", "  addresses: [30.0.0.0/8]\n  serviceAllocation: {priority: 2, serviceSelectors: [{matchExpressions: [{key: foo, operator: In, values: [bar, bar]}]}]}"),
                Refused(&["spec.serviceAllocation.serviceSelectors[0]", "lists value \"bar\" twice: duplicate definition of match expression value"]),
            ),
            (
                "ip address pool with namespace and service selection",
                pool("pool1", "  addresses: [30.0.0.0/8]\n  serviceAllocation: {priority: 2, namespaces: [test-ns1], serviceSelectors: [{matchLabels: {testsvc-1: '1'}}]}")
                    + &pool("pool2", "  addresses: [40.0.0.0/8]\n  serviceAllocation: {priority: 3, namespaceSelectors: [{matchLabels: {team: metallb}}], serviceSelectors: [{matchLabels: {testsvc-2: '2'}}]}")
                    + &namespace("test-ns1", "")
                    + &namespace("test-ns2", "team: metallb"),
                Valid,
            ),
            (
                "ip address pool with only priority",
                pool("pool1", "  addresses: [10.20.0.0/16, 10.50.0.0/24]\n  avoidBuggyIPs: true\n  autoAssign: false\n  serviceAllocation: {priority: 1}"),
                Valid,
            ),
            // MetalLB tests these on a BGPPeer's node selectors.
            (
                "invalid expression node selector (missing key)",
                adv("l2", "  nodeSelectors: [{matchLabels: {foo: bar}, matchExpressions: [{key: '', operator: In, values: [quux]}]}]"),
                Refused(&["spec.nodeSelectors[0]", "label key \"\" has an empty name"]),
            ),
            (
                // Refused as the file is read: a requirement without operator is malformed.
                "invalid expression node selector (missing operator)",
                adv("l2", "  nodeSelectors: [{matchLabels: {foo: bar}, matchExpressions: [{key: bar, values: [quux]}]}]"),
                Refused(&["operator"]),
            ),
            (
                "invalid expression node selector (invalid operator)",
                adv("l2", "  nodeSelectors: [{matchLabels: {foo: bar}, matchExpressions: [{key: bar, operator: surrounds, values: [quux]}]}]"),
                Refused(&["operator \"surrounds\" is not one of In, NotIn, Exists, DoesNotExist"]),
            ),
            (
                "duplicate values node selector match expression",
                adv("l2", "  nodeSelectors: [{matchLabels: {foo: bar}, matchExpressions: [{key: bar, operator: In, values: [quux, quux]}]}]"),
                Refused(&["duplicate definition of match expression value"]),
            ),
            (
                "no pool name",
                "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {namespace: metallb-system}\nspec: {addresses: [10.0.0.0/24]}\n".into(),
                Refused(&["metadata.name: missing name"]),
            ),
            (
                "address pool with no address",
                pool("pool1", "  addresses: []"),
                Refused(&["spec.addresses: a pool needs at least one CIDR or range"]),
            ),
            (
                // MetalLB's CRD requires spec.addresses.
                "address pool with an empty spec",
                "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pool1}\nspec: {}\n".into(),
                Refused(&["addresses"]),
            ),
            (
                "address pool with no protocol (no spec at all)",
                "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pool1}\n".into(),
                Refused(&["IPAddressPool"]),
            ),
            (
                "invalid pool CIDR",
                pool("pool1", "  addresses: [100.200.300.400/24]"),
                Refused(&["spec.addresses[0] \"100.200.300.400/24\": invalid CIDR"]),
            ),
            (
                "invalid pool CIDR prefix length",
                pool("pool1", "  addresses: [1.2.3.0/33]"),
                Refused(&["\"1.2.3.0/33\": invalid CIDR: prefix length 33 is more than 32"]),
            ),
            (
                "invalid pool CIDR, first address of the range is after the second",
                pool("pool1", "  addresses: [1.2.3.10-1.2.3.1]"),
                Refused(&["start 1.2.3.10 is after end 1.2.3.1"]),
            ),
            (
                "duplicate ip address pools - in L2 adv",
                pool("test-pool", "  addresses: [1.2.3.0/24]") + &adv("test-adv", "  ipAddressPools: [test-pool, test-pool]"),
                Refused(&["spec.ipAddressPools[1] \"test-pool\": duplicate entry"]),
            ),
            (
                "duplicate pool definition",
                pool("pool1", "  addresses: [10.0.0.0/24]") + &pool("pool2", "  addresses: [10.0.1.0/24]") + &pool("pool1", "  addresses: [10.0.2.0/24]"),
                Refused(&["metadata.name \"pool1\": duplicate IPAddressPool"]),
            ),
            (
                // Deliberately different: Go's ParseCIDR refuses " 10.0.0.0/8" (blank)
                // outright; we ignore blanks around an entry, and refuse the overlap.
                "duplicate CIDRs",
                pool("pool1", "  addresses: [' 10.0.0.0/8']") + &pool("pool2", "  addresses: [' 10.0.0.0/8']"),
                Refused(&["IPAddressPool metallb-system/pool2: spec.addresses[0] \" 10.0.0.0/8\": overlaps \" 10.0.0.0/8\" of IPAddressPool metallb-system/pool1"]),
            ),
            (
                "overlapping CIDRs",
                pool("pool1", "  addresses: [10.0.0.0/8]") + &pool("pool2", "  addresses: [10.0.0.0/16]"),
                Refused(&["\"10.0.0.0/16\": overlaps \"10.0.0.0/8\""]),
            ),
            (
                "use ip pool selectors",
                pool("pool1", "  addresses: [10.20.0.0/16]").replace("metadata: {name: pool1,", "metadata: {labels: {test: pool1}, name: pool1,")
                    + &pool("pool2", "  addresses: [30.0.0.0/16]").replace("metadata: {name: pool2,", "metadata: {labels: {test: pool2}, name: pool2,")
                    + &adv("l2adv1", "  ipAddressPoolSelectors: [{matchLabels: {test: pool1}}]"),
                Valid,
            ),
            (
                "specify interfaces",
                pool("pool1", "  addresses: [10.20.0.0/16]") + &adv("l2adv1", "  ipAddressPools: [pool1]\n  interfaces: [eth0]"),
                Valid,
            ),
            (
                "use duplicate ip pool selectors - in L2 adv",
                pool("pool1", "  addresses: [10.20.0.0/16]") + &adv("adv1", "  ipAddressPoolSelectors: [{matchLabels: {test: pool1}}, {matchLabels: {test: pool1}}]"),
                Refused(&["spec.ipAddressPoolSelectors[1]", "duplicate selector"]),
            ),
            (
                "use non existent label for ip pool selectors",
                pool("pool1", "  addresses: [10.20.0.0/16]") + &adv("l2adv1", "  ipAddressPoolSelectors: [{matchLabels: {test: do-not-select-pool}}]"),
                Valid,
            ),
            (
                "use node selectors",
                pool("pool1", "  addresses: [10.20.0.0/16]")
                    + &adv("l2adv1", "  ipAddressPools: [pool1]\n  nodeSelectors: [{matchLabels: {first: 'true'}}]")
                    + &node("first", "first: 'true'")
                    + &node("second", "second: 'true'"),
                Valid,
            ),
            (
                "use duplicate match labels in node selectors",
                pool("pool1", "  addresses: [10.20.0.0/16]") + &adv("l2adv1", "  ipAddressPools: [pool1]\n  nodeSelectors: [{matchLabels: {first: 'true'}}, {matchLabels: {first: 'true'}}]"),
                Refused(&["spec.nodeSelectors[1]", "duplicate selector: the same as spec.nodeSelectors[0]"]),
            ),
            (
                // On a BGPAdvertisement in MetalLB.
                "use duplicate match expression values in node selector",
                pool("pool1", "  addresses: [10.20.0.0/16]") + &adv("l2adv1", "  nodeSelectors: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [first, second]}, {key: kubernetes.io/hostname, operator: In, values: [second, first]}]}]"),
                Refused(&["spec.nodeSelectors[0]", "matchExpressions[1] repeats matchExpressions[0]", "duplicate definition of match expressions"]),
            ),
            (
                "duplicate selectors once their values are sorted",
                adv("l2adv1", "  nodeSelectors: [{matchExpressions: [{key: k, operator: In, values: [a, b]}]}, {matchExpressions: [{key: k, operator: In, values: [b, a]}]}]"),
                Refused(&["spec.nodeSelectors[1]", "duplicate selector: the same as spec.nodeSelectors[0]"]),
            ),
            (
                "no nodes means all nodes",
                pool("pool1", "  addresses: [10.20.0.0/16]") + &adv("l2adv1", "  ipAddressPools: [pool1]"),
                Valid,
            ),
            (
                "L2 advertisement with service selectors",
                pool("pool1", "  addresses: [1.2.3.0/24]") + &adv("adv1", "  serviceSelectors: [{matchLabels: {app: web}}]"),
                Valid,
            ),
            (
                // On a BGPAdvertisement in MetalLB.
                "duplicate service selectors",
                pool("pool1", "  addresses: [1.2.3.0/24]") + &adv("adv1", "  serviceSelectors: [{matchLabels: {app: nginx}}, {matchLabels: {app: nginx}}]"),
                Refused(&["spec.serviceSelectors[1]", "duplicate selector"]),
            ),
            (
                "preferred node selectors: empty preference matches every eligible node",
                adv("adv1", "  preferredNodeSelectors: [{weight: 10, preference: {}}]"),
                Valid,
            ),
            (
                "preferred node selectors: invalid label selector operator",
                adv("adv1", "  preferredNodeSelectors: [{weight: 10, preference: {matchExpressions: [{key: role, operator: Bogus, values: [edge]}]}}]"),
                Refused(&["spec.preferredNodeSelectors[0].preference", "operator \"Bogus\""]),
            ),
            (
                "webhook: IPAddressPool must be created in the MetalLB namespace",
                pool("pool1", "  addresses: [10.0.0.0/24]").replace("namespace: metallb-system", "namespace: default"),
                Refused(&["IPAddressPool default/pool1: metadata.namespace \"default\": MetalLB reads its objects only from namespace \"metallb-system\""]),
            ),
            (
                "webhook: L2Advertisement must be created in the MetalLB namespace",
                adv("adv1", "{}").replace("metadata: {name: adv1}", "metadata: {name: adv1, namespace: default}"),
                Refused(&["L2Advertisement default/adv1: metadata.namespace \"default\""]),
            ),
            (
                "webhook e2e: overlapping addresses in two pools, by range",
                pool("webhooks-test1", "  addresses: [1.1.1.1-1.1.1.100]") + &pool("webhooks-test2", "  addresses: [1.1.1.15-1.1.1.20]"),
                Refused(&["IPAddressPool metallb-system/webhooks-test2: spec.addresses[0] \"1.1.1.15-1.1.1.20\": overlaps \"1.1.1.1-1.1.1.100\""]),
            ),
            (
                "webhook e2e: adjacent ranges do not overlap",
                pool("webhooks-test1", "  addresses: [1.1.1.1-1.1.1.100]") + &pool("webhooks-test2", "  addresses: [1.1.1.101-1.1.1.200]"),
                Valid,
            ),
            (
                "webhook e2e: overlapping addresses in two pools, by prefix",
                pool("webhooks-test1", "  addresses: [1.1.1.1-1.1.1.100]") + &pool("webhooks-test2", "  addresses: [1.1.1.0/24]"),
                Refused(&["\"1.1.1.0/24\": overlaps \"1.1.1.1-1.1.1.100\""]),
            ),
        ]
    }

    #[test]
    fn metallb_validation_cases() {
        check_table(&metallb_table());
    }

    #[test]
    fn metallb_namespace_selection_resolves_as_metallb_does() {
        let (_, text, _) = metallb_table()
            .into_iter()
            .find(|(desc, ..)| *desc == "ip address pool with namespace selection")
            .unwrap();
        let config = run(&text).config.expect("valid");
        let namespaces = |name: &str| {
            let allocation = config.pool(name).unwrap().allocation.clone().unwrap();
            (
                allocation.priority,
                allocation.namespaces.into_iter().collect::<Vec<_>>(),
            )
        };
        assert_eq!(namespaces("pool1"), (Some(1), vec!["test-ns1".to_string()]));
        assert_eq!(namespaces("pool2"), (Some(2), vec!["test-ns2".to_string()]));
        assert_eq!(namespaces("pool3"), (Some(3), vec![]));
    }

    /// Names, labels and annotations as the API server checks them.
    fn names_table() -> Vec<(&'static str, String, Want)> {
        let pool_named = |name: &str| pool(name, "  addresses: [10.0.0.0/24]");
        vec![
            ("a subdomain pool name", pool_named("pool-1.example"), Valid),
            ("a 253-character pool name", pool_named(&"p".repeat(253)), Valid),
            (
                "a 254-character pool name",
                pool_named(&"p".repeat(254)),
                Refused(&["metadata.name", "must be no more than 253 characters (has 254)"]),
            ),
            (
                "an upper-case pool name",
                pool_named("Pool_A"),
                Refused(&["IPAddressPool metallb-system/Pool_A: metadata.name \"Pool_A\": must be a lowercase RFC 1123 subdomain"]),
            ),
            (
                "an L2Advertisement name with a blank",
                adv("'l2 a'", "{}"),
                Refused(&["L2Advertisement metallb-system/l2 a: metadata.name \"l2 a\": must be a lowercase RFC 1123 subdomain"]),
            ),
            ("a subdomain Node name", node("node-1.example.com", ""), Valid),
            ("a Node name with a blank", node("'node a'", ""), Refused(&["Node node a: metadata.name \"node a\": must be a lowercase RFC 1123 subdomain"])),
            ("a Namespace name with a dot", namespace("team.a", ""), Refused(&["Namespace team.a: metadata.name \"team.a\": must be a lowercase RFC 1123 label"])),
            (
                "a 64-character Namespace name",
                namespace(&"n".repeat(64), ""),
                Refused(&["must be no more than 63 characters (has 64)"]),
            ),
            (
                "a pool label value of 64 characters",
                pool("a", "  addresses: [10.0.0.0/24]").replace("metadata: {name: a,", &format!("metadata: {{labels: {{zone: {}}}, name: a,", "z".repeat(64))),
                Refused(&["IPAddressPool metallb-system/a: metadata.labels[zone]", "label value must be no more than 63 characters (has 64)"]),
            ),
            (
                "a Node label key with a blank",
                node("n1", "'bad key': x"),
                Refused(&["Node n1: metadata.labels \"bad key\": label key name part must be"]),
            ),
            (
                "a Namespace annotation key with two slashes",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, annotations: {'a/b/c': x}}\n".into(),
                Refused(&["Namespace a: metadata.annotations \"a/b/c\": annotation key has more than one '/'"]),
            ),
            (
                // The API server checks annotation keys in lower case.
                "an upper-case annotation key",
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, annotations: {Example.COM/Key: x}}\n".into(),
                Valid,
            ),
            (
                "annotations over 256 KiB",
                format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: a, annotations: {{big: {}}}}}\n", "x".repeat(256 * 1024)),
                Refused(&["Namespace a: metadata.annotations: hold 262147 bytes; the API server takes at most 262144"]),
            ),
        ]
    }

    #[test]
    fn names_labels_and_annotations() {
        check_table(&names_table());
    }

    #[test]
    fn a_huge_name_is_refused_in_a_short_message() {
        let name = "p".repeat(65_000);
        let (errors, warnings) = outcome(&pool(&name, "  addresses: [10.0.0.0/24]"));
        assert!(warnings.is_empty(), "{warnings:?}");
        let shown = format!("{}… (65000 characters)", "p".repeat(60));
        assert_eq!(
            errors,
            [format!(
                "IPAddressPool metallb-system/{shown}: metadata.name \"{shown}\": must be no more than 253 characters (has 65000)"
            )]
        );
    }

    /// Addresses no pool may hold, and how they are written.
    fn addresses_table() -> Vec<(&'static str, String, Want)> {
        let one = |entry: &str| pool("a", &format!("  addresses: ['{entry}']"));
        vec![
            (
                "0.0.0.0/0",
                one("0.0.0.0/0"),
                Refused(&[
                    "IPAddressPool metallb-system/a: spec.addresses[0] \"0.0.0.0/0\": holds addresses that can never be a VIP on a LAN: it overlaps 0.0.0.0/8 (\"this network\": a source address only, never a destination); 127.0.0.0/8 (loopback: never leaves a host); 224.0.0.0/4 (multicast: a group, not a host); 255.255.255.255 (the limited broadcast address)",
                ]),
            ),
            (
                "0.0.0.0/8",
                one("0.0.0.0/8"),
                Refused(&["it overlaps 0.0.0.0/8"]),
            ),
            (
                "a loopback address",
                one("127.0.0.1/32"),
                Refused(&["it overlaps 127.0.0.0/8 (loopback"]),
            ),
            (
                "a multicast range",
                one("239.1.1.1-239.1.1.9"),
                Refused(&["it overlaps 224.0.0.0/4 (multicast"]),
            ),
            (
                "the limited broadcast address",
                one("255.255.255.255/32"),
                Refused(&["it overlaps 255.255.255.255 (the limited broadcast address)"]),
            ),
            (
                "just below the broadcast address",
                one("255.255.255.254/32"),
                Valid,
            ),
            (
                "class E is no special block here",
                one("240.0.0.0/24"),
                Valid,
            ),
            (
                "::/0",
                one("::/0"),
                Refused(&[
                    "\"::/0\": holds addresses that can never be a VIP on a LAN: it overlaps :: (the unspecified address: a source address only); ::1 (loopback: never leaves a host); ::ffff:0:0/96 (IPv4-mapped: an IPv4 address written as IPv6, never on the wire; use the IPv4 address); ff00::/8 (multicast: a group, not a host)",
                ]),
            ),
            (
                "the unspecified IPv6 address",
                one("::/128"),
                Refused(&["it overlaps :: (the unspecified address"]),
            ),
            (
                "the IPv6 loopback address",
                one("::1/128"),
                Refused(&["it overlaps ::1 (loopback"]),
            ),
            (
                "an IPv6 multicast range",
                one("ff02::/16"),
                Refused(&["it overlaps ff00::/8 (multicast"]),
            ),
            (
                "an IPv4-mapped pool",
                one("::ffff:192.0.2.0/120"),
                Refused(&["it overlaps ::ffff:0:0/96 (IPv4-mapped"]),
            ),
            (
                // Refused for what it is, whether or not its IPv4 twin is a pool too.
                "an IPv4-mapped twin of another pool",
                pool("a", "  addresses: [192.0.2.0/24]")
                    + &pool("b", "  addresses: ['::ffff:192.0.2.0/120']"),
                Refused(&[
                    "IPAddressPool metallb-system/b: spec.addresses[0] \"::ffff:192.0.2.0/120\": holds addresses that can never be a VIP on a LAN: it overlaps ::ffff:0:0/96",
                ]),
            ),
            (
                "a leading zero in a CIDR",
                one("010.0.0.1/32"),
                Refused(&[
                    "spec.addresses[0] \"010.0.0.1/32\": invalid CIDR: \"010.0.0.1\" has an IPv4 part with a leading zero",
                ]),
            ),
            (
                "a leading zero in a range",
                one("10.0.0.1-10.0.0.010"),
                Refused(&[
                    "spec.addresses[0] \"10.0.0.1-10.0.0.010\": invalid end address: \"10.0.0.010\" has an IPv4 part with a leading zero",
                ]),
            ),
            (
                "an IPv6 CIDR holds back its subnet-router anycast address",
                one("2001:db8::/64"),
                Warns(&[
                    "IPAddressPool metallb-system/a: spec.addresses[0] \"2001:db8::/64\": 2001:db8:: is its subnet-router anycast address (RFC 4291), which the routers of the link answer: it is never handed out",
                ]),
            ),
            (
                "an IPv6 /127 has no anycast address",
                one("2001:db8::/127"),
                Valid,
            ),
            (
                "an IPv6 range is taken at its word",
                one("2001:db8::-2001:db8::ff"),
                Valid,
            ),
            (
                // Overlap is checked on every address an entry names.
                "a held-back anycast address still overlaps",
                pool("a", "  addresses: ['2001:db8::/120']")
                    + &pool("b", "  addresses: ['2001:db8::/128']"),
                Refused(&[
                    "IPAddressPool metallb-system/b: spec.addresses[0] \"2001:db8::/128\": overlaps \"2001:db8::/120\"",
                ]),
            ),
        ]
    }

    #[test]
    fn special_addresses_and_leading_zeros() {
        check_table(&addresses_table());
    }

    #[test]
    fn the_model_leaves_out_the_anycast_address() {
        let config = run(&pool(
            "a",
            "  addresses: ['2001:db8::/120', '2001:db8:1::-2001:db8:1::1']",
        ))
        .config
        .expect("valid");
        let ranges: Vec<String> = config
            .pool("a")
            .unwrap()
            .ranges
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            ranges,
            ["2001:db8::1-2001:db8::ff", "2001:db8:1::-2001:db8:1::1"]
        );
    }
}
