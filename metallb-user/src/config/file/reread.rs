//! A file read again after some of its documents changed: only those are parsed and
//! checked, the others' Services unpacked from what the last read kept ([`Kept`]).
//! The result is the whole read's ([`check`] falls back to it wherever the two could
//! differ): the same configuration, the same warnings in the same order, the same
//! word of what changed.

use std::collections::{BTreeMap, HashSet};

use super::{
    ConfigFile, DocumentShape, Documents, SLICES, Split, digest, others, parse, with_slices,
};
use crate::config::{
    Changes, Config, Issue, Service, ServiceName as _, ValidateOptions,
    service_model::packed,
    service_namespace,
    validate::{Objects, Validation},
};

/// Objects other than Services beyond which a read keeps nothing for the next (they
/// are kept as objects: a file of many Nodes or EndpointSlices is read whole).
const MAX_KEPT_OTHERS: usize = 5_000;

/// What a valid read of a file keeps for the next one: each document's digest and
/// what it gave, its Services packed (about 50 bytes a Service), the warnings of the
/// documents that gave some, and the objects other than Services (few, checked
/// whole each time). About 75 bytes a document of one Service: 7.5 MB at 100,000.
#[derive(Clone, Debug)]
pub struct Kept {
    documents: Documents,
    shapes: Vec<DocumentShape>,
    /// The line breaks in each document, and before the first.
    lines: Vec<u32>,
    preamble: u32,
    /// Where each document's Services end in `packed` (they begin where the last
    /// document's end).
    ends: Vec<usize>,
    packed: Vec<u8>,
    /// By document, only those that gave any.
    warnings: BTreeMap<usize, DocumentWarnings>,
    /// The file without its Services, warnings and Services' issues.
    others: ConfigFile,
    namespace: String,
    /// Only the documents' digests and shapes were kept (for [`Documents::changes`]):
    /// the next read is whole.
    whole_next: bool,
}

/// The warnings one document gave: when it was read (with its place in the file),
/// its Services' own (the API server's rules), and what its Services ask for.
#[derive(Clone, Debug, Default)]
struct DocumentWarnings {
    read: Vec<Issue>,
    services: Vec<Issue>,
    requests: Vec<Issue>,
}

impl Kept {
    /// The Services of document `index`, packed.
    fn packed_of(&self, index: usize) -> &[u8] {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.packed[start..self.ends[index]]
    }
}

/// What a check of a file's text found.
#[derive(Debug)]
pub struct Check {
    /// The configuration, or every error.
    pub outcome: Result<Config, Vec<Issue>>,
    /// The warnings (also with errors, unless the text could not be parsed).
    pub warnings: Vec<Issue>,
    /// The Services that changed since the read `before` ([`Documents::changes`]).
    pub changes: Option<Changes>,
    /// What the next read can start from (with a configuration, when asked for).
    pub kept: Option<Kept>,
    /// `Some(n)`: only the `n` documents that changed were parsed; `None`: the
    /// whole text was.
    pub parsed: Option<usize>,
}

/// Parses and validates `text`, a whole file: what `parse` and `validate` give,
/// and what changed since the read that kept `before`. With `before`, only the
/// documents that changed since are parsed and checked when that gives what the
/// whole read gives: when they held only Services (before and now), gave no
/// problem and no warning of their own, no Service of them has the name of
/// another, and no warning of another document would move to another line. Else,
/// and for every error, the whole text is read. `keep`: keep what the next read
/// needs (only with a configuration).
pub fn check(text: String, options: &ValidateOptions, before: Option<&Kept>, keep: bool) -> Check {
    if let Some(before) = before
        && !before.whole_next
        && before.namespace == options.namespace
        && let Some(check) = again(&text, options, before)
    {
        return check;
    }
    whole(text, options, before, keep)
}

fn whole(text: String, options: &ValidateOptions, before: Option<&Kept>, keep: bool) -> Check {
    let failed = |issues| Check {
        outcome: Err(issues),
        warnings: Vec::new(),
        changes: None,
        kept: None,
        parsed: None,
    };
    let mut file = match parse(&text) {
        Ok(file) => file,
        Err(issues) => return failed(issues),
    };
    let stripped = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let split = Split::of(stripped).filter(|split| split.spans.len() == file.documents.len());
    let documents = split.as_ref().map(|split| Documents {
        digests: (split.spans.iter().zip(&file.documents))
            .map(|(span, shape)| with_slices(digest(&stripped[span.clone()]), shape))
            .collect(),
        services: file.services.len(),
    });
    // 21 MiB at 100,000 Services: gone before the checks.
    drop(text);
    let changes = (documents.as_ref().zip(before))
        .and_then(|(now, before)| now.changes_of(&file.documents, &before.documents));

    // What `validate` does, with the requests' warnings counted by document.
    let mut objects = Objects::check(&file, options);
    let refused = &file.service_issues.refused;
    let mut requests = Vec::with_capacity(file.documents.len());
    let mut services = file.services.iter().enumerate();
    let request = |objects: &mut Objects, (i, service): (usize, &Service)| {
        if refused.binary_search(&i).is_err() {
            objects.request(service);
        }
    };
    for shape in &file.documents {
        let before = objects.warnings().len();
        for service in services.by_ref().take(shape.services as usize) {
            request(&mut objects, service);
        }
        requests.push(objects.warnings().len() - before);
    }
    for service in services {
        request(&mut objects, service);
    }
    let Validation {
        config,
        errors,
        warnings,
    } = objects.finish();
    let Some(mut config) = config else {
        return Check {
            warnings,
            ..failed(errors)
        };
    };
    let kept = (split.zip(documents))
        .filter(|_| keep)
        .map(
            |(split, documents)| match others(&file) <= MAX_KEPT_OTHERS {
                true => kept_of(
                    &mut file,
                    &warnings,
                    &requests,
                    split,
                    documents,
                    &options.namespace,
                ),
                false => Kept {
                    documents,
                    shapes: std::mem::take(&mut file.documents),
                    lines: Vec::new(),
                    preamble: 0,
                    ends: Vec::new(),
                    packed: Vec::new(),
                    warnings: BTreeMap::new(),
                    others: ConfigFile::default(),
                    namespace: options.namespace.clone(),
                    whole_next: true,
                },
            },
        );
    config.services = file.services;
    config.nodes = file.nodes;
    config.endpoint_slices = file.endpoint_slices;
    Check {
        outcome: Ok(config),
        warnings,
        changes,
        kept,
        parsed: None,
    }
}

/// What a whole read keeps: `warnings` are the validation's, whose last ones are
/// the requests' (`requests` of them by document).
fn kept_of(
    file: &mut ConfigFile,
    warnings: &[Issue],
    requests: &[usize],
    split: Split,
    documents: Documents,
    namespace: &str,
) -> Kept {
    let mut packed = Vec::new();
    let mut ends = Vec::with_capacity(file.documents.len());
    let mut kept_warnings = BTreeMap::new();
    let total: usize = requests.iter().sum();
    let (mut read, mut own, mut asked) = (
        &file.warnings[..],
        &file.service_issues.warnings[..],
        &warnings[warnings.len() - total..],
    );
    let mut services = file.services.iter();
    for (index, (shape, requests)) in file.documents.iter().zip(requests).enumerate() {
        for service in services.by_ref().take(shape.services as usize) {
            packed::pack(&mut packed, service);
        }
        ends.push(packed.len());
        let take = |from: &mut &[Issue], n: usize| {
            let (taken, rest) = from.split_at(n);
            *from = rest;
            taken.to_vec()
        };
        let document = DocumentWarnings {
            read: take(&mut read, shape.warnings as usize),
            services: take(&mut own, shape.service_warnings as usize),
            requests: take(&mut asked, *requests),
        };
        if !(document.read.is_empty()
            && document.services.is_empty()
            && document.requests.is_empty())
        {
            kept_warnings.insert(index, document);
        }
    }
    packed.shrink_to_fit();
    Kept {
        documents,
        shapes: std::mem::take(&mut file.documents),
        lines: split.lines,
        preamble: split.preamble,
        ends,
        packed,
        warnings: kept_warnings,
        others: others_of(file),
        namespace: namespace.to_owned(),
        whole_next: false,
    }
}

/// A copy of `file` without its Services, warnings and Services' issues.
fn others_of(file: &ConfigFile) -> ConfigFile {
    ConfigFile {
        pools: file.pools.clone(),
        l2_advertisements: file.l2_advertisements.clone(),
        nodes: file.nodes.clone(),
        namespaces: file.namespaces.clone(),
        endpoint_slices: file.endpoint_slices.clone(),
        exclude_l2: file.exclude_l2.clone(),
        bgp_peers: file.bgp_peers.clone(),
        bgp_advertisements: file.bgp_advertisements.clone(),
        bfd_profiles: file.bfd_profiles.clone(),
        communities: file.communities.clone(),
        ..ConfigFile::default()
    }
}

/// The read of only the documents that changed since `before`, or `None` where it
/// could differ from the whole read's.
fn again(text: &str, options: &ValidateOptions, before: &Kept) -> Option<Check> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let split = Split::of(text)?;
    let (n, m) = (split.spans.len(), before.shapes.len());
    let digests: Vec<u64> = (split.spans.iter())
        .map(|span| digest(&text[span.clone()]))
        .collect();
    let old = &before.documents.digests;
    let same = |(now, was): (&u64, &u64)| now & !SLICES == was & !SLICES;
    let start = digests.iter().zip(old).take_while(|&d| same(d)).count();
    let end = (digests[start..].iter().rev())
        .zip(old[start..].iter().rev())
        .take_while(|&d| same(d))
        .count();
    let (now, was) = (start..n - end, start..m - end);
    // The documents replaced gave only Services.
    if before.shapes[was.clone()].iter().any(|shape| shape.other) {
        return None;
    }
    // A warning given when a document was read names its place: not moved here.
    let with_place = |documents: std::ops::Range<usize>| {
        (before.warnings.range(documents)).any(|(_, warnings)| !warnings.read.is_empty())
    };
    let lines = |lines: &[u32]| lines.iter().map(|&l| u64::from(l)).sum::<u64>();
    let preamble_moved = split.preamble != before.preamble;
    let after_moved = preamble_moved
        || n != m
        || lines(&split.lines[now.clone()]) != lines(&before.lines[was.clone()]);
    if (preamble_moved && with_place(0..start)) || (after_moved && with_place(m - end..m)) {
        return None;
    }
    let parsed = match now.is_empty() {
        true => ConfigFile::default(),
        false => parse(&text[split.spans[now.start].start..split.spans[now.end - 1].end]).ok()?,
    };
    if parsed.documents.len() != now.len()
        || others(&parsed) != 0
        || !parsed.warnings.is_empty()
        || !parsed.service_issues.errors.is_empty()
    {
        return None;
    }
    // No Service kept has the name of one read now (those read now were checked
    // against each other as they were read).
    let names: HashSet<(&str, &str)> = (parsed.services.iter())
        .filter_map(|s| {
            Some((
                service_namespace(s),
                s.service_name().filter(|n| !n.is_empty())?,
            ))
        })
        .collect();

    let total = before.documents.services
        - (was.clone())
            .map(|i| before.shapes[i].services as usize)
            .sum::<usize>()
        + parsed.services.len();
    let mut services: Vec<Service> = Vec::with_capacity(total);
    let mut packed = Vec::with_capacity(before.packed.len());
    let mut ends = Vec::with_capacity(n);
    let mut shapes = Vec::with_capacity(n);
    let mut kept_digests = Vec::with_capacity(n);
    let mut warnings: BTreeMap<usize, DocumentWarnings> = BTreeMap::new();
    let mut new_services = parsed.services.iter();
    let mut new_warnings = &parsed.service_issues.warnings[..];
    // Per document: kept (its index in `before`) or read now.
    for (i, &digest) in digests.iter().enumerate() {
        if now.contains(&i) {
            let shape = parsed.documents[i - start];
            for service in new_services.by_ref().take(shape.services as usize) {
                packed::pack(&mut packed, service);
                services.push(service.clone());
            }
            let (own, rest) = new_warnings.split_at_checked(shape.service_warnings as usize)?;
            new_warnings = rest;
            if !own.is_empty() {
                warnings.entry(i).or_default().services = own.to_vec();
            }
            shapes.push(shape);
            kept_digests.push(with_slices(digest, &shape));
        } else {
            let j = if i < start { i } else { i + m - n };
            let bytes = before.packed_of(j);
            let mut reader = packed::Reader(bytes);
            for _ in 0..before.shapes[j].services {
                let service = reader.service()?;
                if !names.is_empty()
                    && let Some(name) = service.service_name().filter(|n| !n.is_empty())
                    && names.contains(&(service_namespace(&service), name))
                {
                    return None;
                }
                services.push(service);
            }
            if !reader.0.is_empty() {
                return None;
            }
            packed.extend_from_slice(bytes);
            if let Some(kept) = before.warnings.get(&j) {
                warnings.insert(i, kept.clone());
            }
            shapes.push(before.shapes[j]);
            kept_digests.push(old[j]);
        }
        ends.push(packed.len());
    }
    if services.len() != total {
        return None;
    }

    // The checks: every object but the Services (the same as last time, but for the
    // warnings they carry), then the requests of the Services read now.
    let mut file = before.others.clone();
    for document in warnings.values() {
        file.warnings.extend_from_slice(&document.read);
        file.service_issues
            .warnings
            .extend_from_slice(&document.services);
    }
    let mut objects = Objects::check(&file, options);
    if objects.failed() {
        return None;
    }
    let mut at = 0;
    for (i, shape) in shapes.iter().enumerate() {
        let these = &services[at..at + shape.services as usize];
        at += these.len();
        if now.contains(&i) {
            let before = objects.warnings().len();
            for service in these {
                objects.request(service);
            }
            let requests = &objects.warnings()[before..];
            if !requests.is_empty() {
                warnings.entry(i).or_default().requests = requests.to_vec();
            }
        } else if let Some(kept) = warnings.get(&i) {
            objects.requested_before(&kept.requests);
        }
    }
    let Validation {
        config,
        warnings: all_warnings,
        ..
    } = objects.finish();
    let mut config = config?;
    config.services = services;
    config.nodes = std::mem::take(&mut file.nodes);
    config.endpoint_slices = std::mem::take(&mut file.endpoint_slices);
    let documents = Documents {
        digests: kept_digests,
        services: total,
    };
    let changes = documents.changes_of(&shapes, &before.documents);
    packed.shrink_to_fit();
    let kept = Kept {
        documents,
        shapes,
        lines: split.lines,
        preamble: split.preamble,
        ends,
        packed,
        warnings,
        others: before.others.clone(),
        namespace: before.namespace.clone(),
        whole_next: false,
    };
    Some(Check {
        outcome: Ok(config),
        warnings: all_warnings,
        changes,
        kept: Some(kept),
        parsed: Some(now.len()),
    })
}

#[cfg(test)]
mod tests {
    use rand::{RngExt as _, rngs::StdRng};

    use super::*;
    use crate::property::{case_rng, pick, settings};

    fn options() -> ValidateOptions {
        ValidateOptions::default()
    }

    fn pool(name: &str, addresses: &str) -> String {
        format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {{addresses: [{addresses}]}}\n"
        )
    }

    /// A Service named `name` asking for something at random: an address in a
    /// pool or in none, a pool that exists or not, nothing; now and then an unknown
    /// field (a warning with its line) or another type.
    fn service(rng: &mut StdRng, name: &str) -> String {
        let annotation = match rng.random_range(0..8) {
            0 => "  annotations: {metallb.io/loadBalancerIPs: 203.0.113.5}\n".to_owned(),
            1 => "  annotations: {metallb.io/address-pool: p3}\n".to_owned(),
            2 => "  annotations: {metallb.io/address-pool: p2}\n".to_owned(),
            3 | 4 => format!(
                "  annotations: {{metallb.io/loadBalancerIPs: 192.0.2.{}}}\n",
                rng.random_range(1..250)
            ),
            5 => format!(
                "  annotations: {{metallb.universe.tf/loadBalancerIPs: 198.51.100.{}}}\n",
                rng.random_range(1..250)
            ),
            _ => String::new(),
        };
        let kind = if rng.random_ratio(1, 8) {
            "ClusterIP"
        } else {
            "LoadBalancer"
        };
        let extra = if rng.random_ratio(1, 20) {
            "  bogus: 1\n"
        } else {
            ""
        };
        let namespace = pick(rng, &["default", "team-a", ""]);
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: '{namespace}'\n{annotation}spec:\n  type: {kind}\n  ports: [{{port: {}, protocol: TCP}}]\n{extra}",
            rng.random_range(1..100)
        )
    }

    fn list(rng: &mut StdRng, names: [&str; 2]) -> String {
        let mut text = "apiVersion: v1\nkind: List\nitems:\n".to_owned();
        for name in names {
            for line in service(rng, name).lines() {
                let prefix = if line.starts_with("apiVersion") {
                    "- "
                } else {
                    "  "
                };
                text += &format!("{prefix}{line}\n");
            }
        }
        text
    }

    /// The file of `documents`: each after a `---` line, the first now and then
    /// without one, comments before now and then.
    fn text(documents: &[String], first_bare: bool, preamble: usize) -> String {
        let mut text = "# a comment\n".repeat(preamble);
        for (i, document) in documents.iter().enumerate() {
            if !(i == 0 && first_bare && preamble == 0 && !document.is_empty()) {
                text += "---\n";
            }
            text += document;
        }
        text
    }

    /// What a check gave, to compare: the configuration's Debug or the errors, the
    /// warnings, the word of what changed, what it kept (its Debug).
    fn seen(
        check: &Check,
    ) -> (
        Result<String, Vec<String>>,
        Vec<String>,
        Option<Changes>,
        String,
    ) {
        let messages = |issues: &[Issue]| issues.iter().map(Issue::to_string).collect();
        (
            match &check.outcome {
                Ok(config) => Ok(format!("{config:?}")),
                Err(errors) => Err(messages(errors)),
            },
            messages(&check.warnings),
            check.changes.clone(),
            format!("{:?}", check.kept),
        )
    }

    #[test]
    fn a_read_of_the_changed_documents_alone_gives_what_the_whole_read_gives() {
        let (seed, cases) = settings("reread", 40);
        let (mut again_used, mut steps) = (0, 0);
        for case in 0..cases {
            let rng = &mut case_rng(seed, case);
            let mut fresh = 0;
            let mut name = |rng: &mut StdRng| {
                fresh += 1;
                format!("s{fresh}-{}", rng.random_range(0..1000))
            };
            let mut documents = vec![
                pool("p1", "192.0.2.0/24"),
                pool("p2", "198.51.100.0/24"),
                "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: metallb-system}\nspec: {ipAddressPools: [p1]}\n".to_owned(),
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n".to_owned(),
            ];
            for _ in 0..rng.random_range(5..25) {
                let name = name(rng);
                documents.push(service(rng, &name));
            }
            let (mut first_bare, mut preamble) = (rng.random_bool(0.5), 0);
            let (mut whole_before, mut again_before): (Option<Kept>, Option<Kept>) = (None, None);
            for _step in 0..12 {
                let mut next = documents.clone();
                for _ in 0..rng.random_range(1..=2) {
                    let services: Vec<usize> = (0..next.len())
                        .filter(|&i| next[i].contains("kind: Service"))
                        .collect();
                    // Mostly after the pools (the documents a change of a Service
                    // leaves alone), now and then anywhere.
                    let at = match rng.random_ratio(4, 5) && next.len() > 4 {
                        true => rng.random_range(4..=next.len()),
                        false => rng.random_range(0..=next.len()),
                    };
                    match rng.random_range(0..21) {
                        0..=7 if !services.is_empty() => {
                            let i = *pick(rng, &services);
                            let keep_name = rng.random_bool(0.7);
                            let old_name = next[i]
                                .lines()
                                .find_map(|l| l.strip_prefix("  name: "))
                                .map(str::to_owned);
                            let name = match old_name {
                                Some(old) if keep_name => old,
                                _ => name(rng),
                            };
                            next[i] = service(rng, &name);
                        }
                        8 | 9 => {
                            let name = name(rng);
                            next.insert(at, service(rng, &name));
                        }
                        10 | 11 if !next.is_empty() => {
                            next.remove(at.min(next.len() - 1));
                        }
                        12 => next.insert(
                            at,
                            "apiVersion: v1\nkind: Service\nmetadata: {name: broken}\nspec: [not, a, map\n".into(),
                        ),
                        13 if !services.is_empty() => {
                            // A Service of the name of another.
                            let i = *pick(rng, &services);
                            let copy = next[i].clone();
                            next.insert(at, copy.replace("port: ", "port: 1"));
                        }
                        14 => {
                            let names = [name(rng), name(rng)];
                            next.insert(at, list(rng, [&names[0], &names[1]]));
                        }
                        15 => {
                            // A pool the Services depend on.
                            let i = next.iter().position(|d| d.contains("name: p1")).unwrap_or(0);
                            let replacement = match rng.random_range(0..3) {
                                0 => pool("p1", "192.0.2.0/25"),
                                1 => pool("p3", "192.0.2.0/24"),
                                _ => pool("p1", "192.0.2.0/24, 203.0.113.0/24"),
                            };
                            if i < next.len() {
                                next[i] = replacement;
                            }
                        }
                        16 => next.insert(at, String::new()),
                        17 if !next.is_empty() => {
                            // A comment line in a document (its text changes, later lines move).
                            let i = rng.random_range(0..next.len());
                            next[i] = format!("# moved\n{}", next[i]);
                        }
                        18 => preamble = rng.random_range(0..3),
                        19 => next.insert(
                            at,
                            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, labels: {kubernetes.io/service-name: s1}}\naddressType: IPv4\nendpoints: []\n".into(),
                        ),
                        _ => first_bare = !first_bare,
                    }
                }
                let text = text(&next, first_bare, preamble);
                let text = if rng.random_ratio(1, 20) {
                    format!("\u{feff}{text}")
                } else {
                    text
                };
                let whole = whole(text.clone(), &options(), whole_before.as_ref(), true);
                let again = check(text.clone(), &options(), again_before.as_ref(), true);
                steps += 1;
                again_used += usize::from(again.parsed.is_some());
                assert_eq!(
                    seen(&again),
                    seen(&whole),
                    "case {case} (PROPERTY_SEED={seed}), text:\n{text}"
                );
                if whole.outcome.is_ok() {
                    whole_before = whole.kept;
                    again_before = again.kept;
                    documents = next;
                } else if rng.random_bool(0.3) {
                    documents = next;
                }
            }
        }
        // Many steps are read in part (a quarter at least): the test must not pass
        // by falling back.
        assert!(
            again_used * 4 > steps,
            "{again_used} of {steps} read in part"
        );
    }

    #[test]
    fn one_service_changed_is_the_only_document_parsed() {
        let service = |i: usize, ip: usize| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default, annotations: {{metallb.io/loadBalancerIPs: '192.0.2.{ip}'}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80, protocol: TCP}}]}}\n"
            )
        };
        let file = |moved: usize| {
            let mut text = pool("p", "192.0.2.0/24");
            for i in 0..50 {
                text += &service(i, if i == 7 { moved } else { i + 1 });
            }
            text
        };
        let first = check(file(8), &options(), None, true);
        assert_eq!(first.parsed, None);
        let kept = first.kept.expect("kept");
        let second = check(file(200), &options(), Some(&kept), true);
        assert_eq!(second.parsed, Some(1));
        assert_eq!(
            second.changes,
            Some(Changes {
                at: 7,
                was: 1,
                now: 1
            })
        );
        let config = second.outcome.expect("valid");
        assert_eq!(config.services.len(), 50);
        assert_eq!(
            config.services[7]
                .metadata
                .annotations
                .get("metallb.io/loadBalancerIPs"),
            Some("192.0.2.200")
        );
        let whole = whole(file(200), &options(), Some(&kept), true);
        assert_eq!(
            format!("{:?}", whole.outcome.expect("valid")),
            format!("{config:?}")
        );
        // Without a word to keep, nothing is kept.
        assert!(check(file(8), &options(), None, false).kept.is_none());
    }
}
