//! A standalone configuration file: a multi-document YAML of the objects a user would
//! `kubectl apply` (MetalLB's IPAddressPool and L2Advertisement, core/v1 Service, Node,
//! Namespace, and MetalLB's `metallb-excludel2` ConfigMap), parsed into typed objects
//! with every problem named.

mod reread;
pub(super) mod typed;
pub(super) mod yaml;

pub use self::reread::{Check, Kept, check};

use std::{cell::OnceCell, collections::BTreeSet};

use k8s_openapi::api::{
    core::v1::{self as api, ConfigMap, Namespace, Node},
    discovery::v1::EndpointSlice,
};
use kube::Resource;
use serde::{Deserialize, de::DeserializeOwned};

use self::yaml::{Document, Locations, Step};
use super::{
    Issue, Service,
    crd::{
        BFDProfile, BGPAdvertisement, Community, IPAddressPool, L2Advertisement, ServiceBGPStatus,
        ServiceL2Status, bgppeer,
    },
    interfaces::EXCLUDE_L2_CONFIG_MAP,
    validate::{ServiceIssues, admit_service},
};

/// Every object of a configuration file, by kind, in file order.
#[derive(Clone, Debug, Default)]
pub struct ConfigFile {
    pub pools: Vec<IPAddressPool>,
    pub l2_advertisements: Vec<L2Advertisement>,
    /// In the core's form: each was checked with the API server's rules as it was read
    /// (see `validate::admit_service`), what they found is in `service_issues`.
    pub services: Vec<Service>,
    pub service_issues: ServiceIssues,
    pub nodes: Vec<Node>,
    pub namespaces: Vec<Namespace>,
    /// The Services' endpoints (optional in a file: see `election::EndpointRule`).
    pub endpoint_slices: Vec<EndpointSlice>,
    /// ConfigMaps named `metallb-excludel2`: the interfaces to leave alone.
    pub exclude_l2: Vec<ConfigMap>,
    /// BGPPeers, v1beta1 ones converted to v1beta2 as MetalLB's webhook converts them.
    pub bgp_peers: Vec<bgppeer::v1beta2::BGPPeer>,
    pub bgp_advertisements: Vec<BGPAdvertisement>,
    pub bfd_profiles: Vec<BFDProfile>,
    pub communities: Vec<Community>,
    /// Objects kept but not used, unknown fields: reported, never fatal.
    pub warnings: Vec<Issue>,
    /// What each document of the text gave (empty ones too), in document order: the
    /// next read of the file tells by it which Services changed ([`Documents`]).
    pub documents: Vec<DocumentShape>,
}

/// What one document of a file gave that a change of it changes in the plan: its
/// Services (in file order, so the Services of the file are those of its documents
/// one after another), and whether it has EndpointSlices (which belong to Services
/// by a label, anywhere in the file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DocumentShape {
    pub services: u32,
    pub slices: bool,
    /// It gave objects other than Services (or a problem): a change of it is read
    /// with the whole file ([`Kept`]).
    pub other: bool,
    /// How many of the file's `warnings` it gave, and of its Services' warnings
    /// (`service_issues.warnings`).
    pub warnings: u32,
    pub service_warnings: u32,
}

/// The documents of a file as read: each one's digest (of its text, 63 bits, and
/// whether it has EndpointSlices), 8 bytes a document, and how many Services they
/// gave. Two reads of a file compared tell which of its Services changed
/// ([`Documents::changes`]) without a look at the Services themselves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Documents {
    digests: Vec<u64>,
    services: usize,
}

/// The bit of a document's digest that says it has EndpointSlices.
const SLICES: u64 = 1;

impl Documents {
    /// The documents of `text` read as `file`, when where each begins is known from
    /// the text alone: at every line that starts with `---` and a blank (a document
    /// start, which YAML allows nowhere else: inside a scalar it ends the document),
    /// and at the text's start when something other than blanks and comments comes
    /// before the first. `None` when the text has what could make that differ from
    /// the parser's documents (a directive (`%`), a document end (`...`), a line break
    /// other than `\n` and `\r\n`), or when the counts differ.
    pub fn of(text: &str, file: &ConfigFile) -> Option<Self> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let split = Split::of(text)?;
        if split.spans.len() != file.documents.len() {
            return None;
        }
        let digests = (split.spans.iter().zip(&file.documents))
            .map(|(span, shape)| with_slices(digest(&text[span.clone()]), shape))
            .collect();
        Some(Self {
            digests,
            services: file.services.len(),
        })
    }

    /// Which Services changed from the read `before` to this one (of `file`): the
    /// documents alike at the start and at the end of both are unchanged, and so
    /// are their Services; those of the documents between were replaced. `None`
    /// when one of the documents between has an EndpointSlice (its Service may be
    /// anywhere).
    pub fn changes(&self, file: &ConfigFile, before: &Documents) -> Option<super::Changes> {
        self.changes_of(&file.documents, before)
    }

    /// [`Documents::changes`], with the shapes of this read's documents.
    fn changes_of(&self, shapes: &[DocumentShape], before: &Documents) -> Option<super::Changes> {
        let (now, was) = (&self.digests, &before.digests);
        let start = now.iter().zip(was).take_while(|(a, b)| a == b).count();
        let end = (now[start..].iter().rev())
            .zip(was[start..].iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let (now_between, was_between) =
            (&now[start..now.len() - end], &was[start..was.len() - end]);
        if now_between
            .iter()
            .chain(was_between)
            .any(|d| d & SLICES != 0)
        {
            return None;
        }
        let services = |shapes: &[DocumentShape]| -> usize {
            shapes.iter().map(|shape| shape.services as usize).sum()
        };
        let shapes = shapes.get(..now.len())?;
        let at = services(&shapes[..start]);
        let changed = services(&shapes[start..now.len() - end]);
        let after = services(&shapes[now.len() - end..]);
        Some(super::Changes {
            at,
            was: before.services.checked_sub(at + after)?,
            now: changed,
        })
    }
}

/// A document's digest with the bit that says it has EndpointSlices.
fn with_slices(digest: u64, shape: &DocumentShape) -> u64 {
    (digest & !SLICES) | u64::from(shape.slices)
}

/// Where the documents of a text (its byte-order mark stripped) are, found in the
/// text alone: each begins at a line that starts with `---` and a blank (a document
/// start, which YAML allows nowhere else: inside a scalar it ends the document), and
/// the first at the text's start when something other than blanks and comments comes
/// before the first such line; each ends where the next begins. `None` when the text
/// has what could make that differ from the parser's documents (a directive (`%`), a
/// document end (`...`), a line break other than `\n` and `\r\n`).
struct Split {
    spans: Vec<std::ops::Range<usize>>,
    /// The line breaks in each.
    lines: Vec<u32>,
    /// The line breaks before the first (comments).
    preamble: u32,
}

impl Split {
    fn of(text: &str) -> Option<Self> {
        let other_break = |text: &str| {
            ['\u{85}', '\u{2028}', '\u{2029}']
                .iter()
                .any(|c| text.contains(*c))
                || text
                    .match_indices('\r')
                    .any(|(at, _)| !text[at + 1..].starts_with('\n'))
        };
        if other_break(text) {
            return None;
        }
        let starts = |line: &str, marker: &str| {
            line.strip_prefix(marker)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
        };
        let mut split = Split {
            spans: Vec::new(),
            lines: Vec::new(),
            preamble: 0,
        };
        let mut begin: Option<usize> = None;
        let mut content = false;
        let mut at = 0;
        // Line breaks since the current document's start (or the text's).
        let mut lines = 0u32;
        for line in text.split_inclusive('\n') {
            if line.starts_with('%') || starts(line, "...") {
                return None;
            }
            if starts(line, "---") {
                match begin {
                    Some(begin) => {
                        split.spans.push(begin..at);
                        split.lines.push(lines);
                    }
                    None if content => {
                        split.spans.push(0..at);
                        split.lines.push(lines);
                    }
                    None => split.preamble = lines,
                }
                begin = Some(at);
                lines = 0;
            } else if begin.is_none() {
                let line = line.trim_start();
                content |= !line.is_empty() && !line.starts_with('#');
            }
            lines += u32::from(line.ends_with('\n'));
            at += line.len();
        }
        match begin {
            Some(begin) => {
                split.spans.push(begin..text.len());
                split.lines.push(lines);
            }
            None if content => {
                split.spans.push(0..text.len());
                split.lines.push(lines);
            }
            None => split.preamble = lines,
        }
        Some(split)
    }
}

/// The digest of a document's text: SipHash-1-3, 64 bits (compared only with the
/// same place's last one; not for an adversary).
fn digest(text: &str) -> u64 {
    use std::hash::{DefaultHasher, Hasher as _};
    let mut hasher = DefaultHasher::new();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// Why MetalLB kinds that this version does not act on are ignored.
const STATUS_IGNORED: &str = "ignored: a status object, written by MetalLB, not configuration";

/// MetalLB kinds this version does not act on, whatever their version.
const IGNORED_KINDS: [(&str, &str); 3] = [
    ("ServiceBGPStatus", STATUS_IGNORED),
    ("ServiceL2Status", STATUS_IGNORED),
    ("ConfigurationState", STATUS_IGNORED),
];

fn ignored_because(kind: &str) -> Option<&'static str> {
    IGNORED_KINDS
        .iter()
        .find(|(ignored, _)| *ignored == kind)
        .map(|(_, why)| *why)
}

/// Parses `text`; on failure, every problem found, not just the first.
pub fn parse(text: &str) -> Result<ConfigFile, Vec<Issue>> {
    // Windows editors start a file with a byte-order mark, which is not YAML.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader {
        text,
        locations: OnceCell::new(),
        file: ConfigFile::default(),
        errors: Vec::new(),
        service_names: BTreeSet::new(),
    };
    let documents = read_documents(text, |read| match read {
        DocumentRead::Value { index, value } => {
            let at = Site {
                place: format!("document {}", index + 1),
                document: index,
                path: Vec::new(),
            };
            let counts = |reader: &Reader| {
                let file = &reader.file;
                [
                    file.services.len(),
                    file.endpoint_slices.len(),
                    others(file) + reader.errors.len(),
                    file.warnings.len(),
                    file.service_issues.warnings.len(),
                ]
            };
            let before = counts(&reader);
            reader.add_object(&at, value);
            let after = counts(&reader);
            let shape = DocumentShape {
                services: (after[0] - before[0]) as u32,
                slices: after[1] > before[1],
                other: after[2] > before[2] || after[1] > before[1],
                warnings: (after[3] - before[3]) as u32,
                service_warnings: (after[4] - before[4]) as u32,
            };
            let shapes = &mut reader.file.documents;
            shapes.resize(index, DocumentShape::default());
            shapes.push(shape);
        }
        DocumentRead::Problem(issue) => reader.errors.push(issue),
    });
    reader
        .file
        .documents
        .resize(documents, DocumentShape::default());
    if reader.errors.is_empty() {
        Ok(reader.file)
    } else {
        Err(reader.errors)
    }
}

/// How many objects other than Services `file` has.
fn others(file: &ConfigFile) -> usize {
    file.pools.len()
        + file.l2_advertisements.len()
        + file.nodes.len()
        + file.namespaces.len()
        + file.endpoint_slices.len()
        + file.exclude_l2.len()
        + file.bgp_peers.len()
        + file.bgp_advertisements.len()
        + file.bfd_profiles.len()
        + file.communities.len()
}

/// One document of a YAML text, or a problem with one, in document order.
pub(super) enum DocumentRead {
    /// A document that is not empty (`index` from 0), merge keys applied.
    Value {
        index: usize,
        value: serde_yaml_ng::Value,
    },
    /// About `document N`: a key written twice or a bad merge key (that document is
    /// skipped), or text that is not YAML (the documents after it are not read).
    Problem(Issue),
}

/// Reads the documents of `text` as kubectl reads them: a byte-order mark skipped,
/// merge keys (`<<: *base`) applied, a key written twice refused, an integer beyond
/// 64 bits a float (see [`yaml::Document`]). Returns how many documents were read
/// (empty ones too).
pub(super) fn read_documents(text: &str, mut each: impl FnMut(DocumentRead)) -> usize {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Read only when a key is written twice.
    let locations = OnceCell::new();
    let mut read = 0;
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        read = index + 1;
        let place = format!("document {}", index + 1);
        let problem = |message: String| DocumentRead::Problem(Issue::new(&place, "", "", message));
        match Document::deserialize(document) {
            Ok(Document(serde_yaml_ng::Value::Null)) => {}
            Ok(Document(mut value)) => match value.apply_merge() {
                Ok(()) => each(DocumentRead::Value { index, value }),
                Err(error) => each(problem(format!("merge key (<<): {error}"))),
            },
            Err(error) if error.to_string().contains(yaml::DUPLICATE_KEY) => {
                // A document with a key written twice is refused whole, as kubectl
                // does; the next document is still read.
                let duplicates = locations
                    .get_or_init(|| Locations::of(text))
                    .duplicates(index);
                if duplicates.is_empty() {
                    each(problem(error.to_string()));
                }
                for duplicate in duplicates {
                    each(DocumentRead::Problem(Issue::new(
                        &place,
                        &yaml::path_text(&duplicate.path),
                        "",
                        format!(
                            "key written twice, at {} and again at {}",
                            duplicate.first, duplicate.again
                        ),
                    )));
                }
            }
            Err(error) => {
                each(problem(format!("not valid YAML: {error}")));
                // The parser cannot resynchronise: later documents are not read.
                break;
            }
        }
    }
    read
}

/// An object's place: for messages, and to find where its fields are written.
struct Site {
    /// `document 2`, `document 2 (List l) items[0]`.
    place: String,
    /// 0-based index of its document.
    document: usize,
    /// Its path in the document (not empty for an item of a List).
    path: Vec<Step>,
}

struct Reader<'a> {
    text: &'a str,
    /// Read only when a message needs a line: most files have none.
    locations: OnceCell<Locations>,
    file: ConfigFile,
    errors: Vec<Issue>,
    /// (namespace, name) of the Services read so far: a name used twice is refused.
    service_names: BTreeSet<(String, String)>,
}

fn text_field<'a>(value: &'a serde_yaml_ng::Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_str()
}

/// Type errors reported for one object at most; past that, one line says so.
const MAX_TYPE_ERRORS: usize = 50;

impl Reader<'_> {
    fn locations(&self) -> &Locations {
        self.locations.get_or_init(|| Locations::of(self.text))
    }

    /// ` at line 7 column 14`, for the node at `path` of the object at `at`.
    fn where_written(&self, at: &Site, path: &[Step]) -> String {
        let full: Vec<Step> = at.path.iter().chain(path).cloned().collect();
        self.locations()
            .locate(at.document, &full)
            .map(|position| format!(" at {position}"))
            .unwrap_or_default()
    }

    fn add_object(&mut self, at: &Site, value: serde_yaml_ng::Value) {
        let api_version = text_field(&value, &["apiVersion"])
            .unwrap_or_default()
            .to_owned();
        let kind = text_field(&value, &["kind"]).unwrap_or_default().to_owned();
        let name = text_field(&value, &["metadata", "name"])
            .unwrap_or_default()
            .to_owned();
        let object = if name.is_empty() {
            format!("{} ({kind})", at.place)
        } else {
            format!("{} ({kind} {name})", at.place)
        };
        let group = api_version.split_once('/').map_or("", |(group, _)| group);
        match (api_version.as_str(), kind.as_str()) {
            ("", _) => self.errors.push(Issue::new(&object, "apiVersion", "", "missing apiVersion")),
            (_, "") => self.errors.push(Issue::new(&object, "kind", "", "missing kind")),
            ("metallb.io/v1beta1", "IPAddressPool") => self.typed(value, &object, at, |file| &mut file.pools),
            ("metallb.io/v1beta1", "L2Advertisement") => self.typed(value, &object, at, |file| &mut file.l2_advertisements),
            ("v1", "Service") => {
                if let Some(service) = self.read_object::<api::Service>(value, &object, at) {
                    let index = self.file.services.len();
                    let issues = &mut self.file.service_issues;
                    let service = admit_service(&mut self.service_names, issues, index, service);
                    self.file.services.push(service);
                }
            }
            ("v1", "Node") => self.typed(value, &object, at, |file| &mut file.nodes),
            ("v1", "Namespace") => self.typed(value, &object, at, |file| &mut file.namespaces),
            ("discovery.k8s.io/v1", "EndpointSlice") => self.typed(value, &object, at, |file| &mut file.endpoint_slices),
            ("v1", "List") => match value.get("items").and_then(|items| items.as_sequence()) {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let mut path = at.path.clone();
                        path.extend([Step::Key("items".into()), Step::Index(i)]);
                        let item_at = Site {
                            place: format!("{object} items[{i}]"),
                            document: at.document,
                            path,
                        };
                        self.add_object(&item_at, item.clone());
                    }
                }
                None => self.errors.push(Issue::new(&object, "items", "", "a List needs a sequence of items")),
            },
            ("v1", "ConfigMap") if name == EXCLUDE_L2_CONFIG_MAP => self.typed(value, &object, at, |file| &mut file.exclude_l2),
            ("v1", "ConfigMap") => self.file.warnings.push(Issue::new(
                &object,
                "kind",
                &kind,
                "ignored: the legacy ConfigMap configuration is not read; `metallb migrate-config` converts it to IPAddressPool and L2Advertisement objects",
            )),
            ("metallb.io/v1beta1", "BGPPeer") => {
                if let Some(peer) = self.read_object::<bgppeer::v1beta1::BGPPeer>(value, &object, at) {
                    self.file.bgp_peers.push(peer.into());
                }
            }
            ("metallb.io/v1beta2", "BGPPeer") => self.typed(value, &object, at, |file| &mut file.bgp_peers),
            ("metallb.io/v1beta1", "BGPAdvertisement") => self.typed(value, &object, at, |file| &mut file.bgp_advertisements),
            ("metallb.io/v1beta1", "BFDProfile") => self.typed(value, &object, at, |file| &mut file.bfd_profiles),
            ("metallb.io/v1beta1", "Community") => self.typed(value, &object, at, |file| &mut file.communities),
            ("metallb.io/v1beta1", "ServiceBGPStatus") => self.ignored::<ServiceBGPStatus>(value, &object, at, STATUS_IGNORED),
            ("metallb.io/v1beta1", "ServiceL2Status") => self.ignored::<ServiceL2Status>(value, &object, at, STATUS_IGNORED),
            (_, kind) if group == "metallb.io" && ignored_because(kind).is_some() => {
                let why = ignored_because(kind).unwrap_or(STATUS_IGNORED);
                self.file.warnings.push(Issue::new(&object, "kind", kind, why));
            }
            _ => self.errors.push(Issue::new(
                &object,
                "apiVersion/kind",
                &format!("{api_version} {kind}"),
                "not a kind this configuration reads (metallb.io/v1beta1 IPAddressPool, L2Advertisement, BGPAdvertisement, BFDProfile, Community; metallb.io/v1beta1 and v1beta2 BGPPeer; v1 Service, Node, Namespace, List, ConfigMap metallb-excludel2; discovery.k8s.io/v1 EndpointSlice)",
            )),
        }
    }

    /// Deserializes one object. Every type error is reported with its field and line
    /// (see [`typed::read`]), and fields the kind does not have are warned about (a
    /// typo would otherwise be silently ignored).
    fn typed<T: DeserializeOwned>(
        &mut self,
        value: serde_yaml_ng::Value,
        object: &str,
        at: &Site,
        into: impl FnOnce(&mut ConfigFile) -> &mut Vec<T>,
    ) {
        if let Some(object) = self.read_object(value, object, at) {
            into(&mut self.file).push(object);
        }
    }

    /// Reads an object of a kind this version does not act on, so that its problems are
    /// reported; they are warnings, since the object is not used.
    fn ignored<T: DeserializeOwned + Resource<DynamicType = ()>>(
        &mut self,
        value: serde_yaml_ng::Value,
        object: &str,
        at: &Site,
        why: &str,
    ) {
        let errors = std::mem::take(&mut self.errors);
        let read = self.read_object::<T>(value, object, at);
        let problems = std::mem::replace(&mut self.errors, errors);
        if read.is_some() {
            self.file
                .warnings
                .push(Issue::new(object, "kind", &T::kind(&()), why));
        }
        for problem in problems {
            self.file.warnings.push(Issue {
                message: format!("{why}, and malformed: {}", problem.message),
                ..problem
            });
        }
    }

    /// The object, or `None` with its problems in `self.errors`; its unknown fields are
    /// warnings.
    fn read_object<T: DeserializeOwned>(
        &mut self,
        value: serde_yaml_ng::Value,
        object: &str,
        at: &Site,
    ) -> Option<T> {
        // A top-level key that is not a string (`? {a: b}: c`), to name it.
        let odd_key = value.as_mapping().and_then(|map| {
            let key = map.keys().find(|key| !key.is_string())?;
            let text = serde_yaml_ng::to_string(key).unwrap_or_default();
            Some(format!(
                "key {}",
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            ))
        });
        let read = typed::read::<T>(value, MAX_TYPE_ERRORS);
        for error in &read.errors {
            let place = self.where_written(at, &error.path);
            // A required top-level field (metadata, spec), or a key that is not a
            // string, is named as the field.
            let mut field = error.path.clone();
            if field.is_empty() {
                let name = match typed::missing_field(&error.message) {
                    Some(name) => Some(name.to_owned()),
                    None if error.message.contains("expected field identifier") => odd_key.clone(),
                    None => None,
                };
                field.extend(name.map(Step::Key));
            }
            self.errors.push(Issue::new(
                object,
                &yaml::path_text(&field),
                "",
                format!("{}{place}", error.message),
            ));
        }
        if read.stopped_early {
            self.errors.push(Issue::new(
                object,
                "",
                "",
                format!("more type errors not shown (at most {MAX_TYPE_ERRORS} per object)"),
            ));
        }
        // kube's custom resources take apiVersion and kind as read already; anything
        // else unknown is a typo or a field of a newer version.
        for field in read.unknown_fields {
            if field == [Step::Key("apiVersion".into())] || field == [Step::Key("kind".into())] {
                continue;
            }
            let place = self.where_written(at, &field);
            self.file.warnings.push(Issue::new(
                object,
                &yaml::path_text(&field),
                "",
                format!("unknown field, ignored{place}"),
            ));
        }
        read.object
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documents(text: &str) -> Option<Documents> {
        Documents::of(text, &parse(text).expect("parses"))
    }

    fn service(name: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{type: LoadBalancer}}\n"
        )
    }

    #[test]
    fn the_documents_of_two_reads_tell_which_services_changed() {
        let pool = "# the pool\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/24]}\n";
        let item = |name| {
            format!(
                "- {{apiVersion: v1, kind: Service, metadata: {{name: {name}}}, spec: {{type: LoadBalancer}}}}\n"
            )
        };
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n{}{}",
            item("l1"),
            item("l2")
        );
        let text = |services: &[&str]| {
            let mut text = pool.to_string();
            for s in services {
                text += "---\n";
                text += &if *s == "list" {
                    list.clone()
                } else {
                    service(s)
                };
            }
            text
        };
        let before = documents(&text(&["a", "b", "list", "c"])).expect("documents");
        let file = parse(&text(&["a", "b", "list", "c"])).expect("parses");
        let names: Vec<_> = (file.services.iter())
            .map(|s| s.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["a", "b", "l1", "l2", "c"]);
        let changes = |services: &[&str]| {
            let text = text(services);
            let file = parse(&text).expect("parses");
            Documents::of(&text, &file)
                .expect("documents")
                .changes(&file, &before)
        };
        let c = |at, was, now| Some(crate::config::Changes { at, was, now });
        assert_eq!(changes(&["a", "b", "list", "c"]), c(5, 0, 0));
        assert_eq!(changes(&["a", "b2", "list", "c"]), c(1, 1, 1));
        assert_eq!(changes(&["a", "b", "c"]), c(2, 2, 0));
        assert_eq!(changes(&["a", "b", "list", "x", "c"]), c(4, 0, 1));
        assert_eq!(changes(&["a", "b", "list", "c", "d"]), c(5, 0, 1));
        assert_eq!(changes(&["x", "b", "list", "y"]), c(0, 5, 5));
        // An EndpointSlice belongs to a Service anywhere in the file: not said.
        let slice = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: e, labels: {kubernetes.io/service-name: a}}\naddressType: IPv4\nendpoints: []\n";
        let with_slice = format!("{}---\n{slice}", text(&["a", "b", "list", "c"]));
        let file = parse(&with_slice).expect("parses");
        let documents = Documents::of(&with_slice, &file).expect("documents");
        assert_eq!(documents.changes(&file, &before), None);
    }

    #[test]
    fn documents_are_found_where_the_parser_finds_them_or_not_at_all() {
        let count = |text: &str| documents(text).map(|d| d.digests.len());
        let a = service("a");
        // Comments before the first start are no document; empty ones count.
        assert_eq!(count(&format!("# c\n\n---\n{a}")), Some(1));
        assert_eq!(count(&a), Some(1));
        assert_eq!(count(&format!("{a}---\n---\n{a}---\n")), Some(4));
        assert_eq!(
            count(&format!("--- # first\n{a}--- \n{}", service("b"))),
            Some(2)
        );
        // `---` indented, or with more after it, is no start.
        let literal = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  annotations:\n    x: |\n      ---\n      text\n    y: ---z\n";
        assert_eq!(count(literal), Some(1));
        assert_eq!(
            count(&format!("{a}---\r\n{}", service("b").replace('\n', "\r\n"))),
            Some(2)
        );
        // Directives, document ends and other line breaks: not told.
        assert_eq!(count(&format!("%YAML 1.2\n---\n{a}")), None);
        assert_eq!(count(&format!("{a}...\n")), None);
        assert_eq!(count(&format!("{a}\r---\r{a}")), None);
    }

    #[test]
    fn documented_metallb_examples_parse_unchanged() {
        // From MetalLB's documentation (configuration, usage, advanced L2 pages).
        let text = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: first-pool
  namespace: metallb-system
spec:
  addresses:
  - 192.168.10.0/24
  - 192.168.9.1-192.168.9.5
  - fc00:f853:0ccd:e799::/124
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: expensive
  namespace: metallb-system
spec:
  addresses:
  - 42.176.25.64/30
  autoAssign: false
  avoidBuggyIPs: true
  serviceAllocation:
    priority: 50
    namespaces:
      - namespace-a
      - namespace-b
    namespaceSelectors:
      - matchLabels:
          foo: bar
    serviceSelectors:
      - matchExpressions:
          - {key: app, operator: In, values: [bar]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: example
  namespace: metallb-system
spec:
  ipAddressPools:
  - first-pool
  ipAddressPoolSelectors:
  - matchLabels:
      zone: east
  nodeSelectors:
  - matchLabels:
      kubernetes.io/hostname: NodeA
  interfaces:
  - eth0
  - eth1
---
apiVersion: v1
kind: Service
metadata:
  name: nginx
  annotations:
    metallb.io/address-pool: first-pool
    metallb.io/loadBalancerIPs: 192.168.10.100
spec:
  ports:
  - port: 80
    targetPort: 80
  selector:
    app: nginx
  type: LoadBalancer
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata:
  name: external
  namespace: metallb-system
"#;
        let file = parse(text).expect("parses");
        assert_eq!(file.pools.len(), 2);
        assert_eq!(file.pools[0].spec.addresses.len(), 3);
        let expensive = &file.pools[1].spec;
        assert_eq!(expensive.auto_assign, Some(false));
        assert!(expensive.avoid_buggy_ips);
        let allocation = expensive
            .service_allocation
            .as_ref()
            .expect("serviceAllocation");
        assert_eq!(allocation.priority, 50);
        assert_eq!(allocation.namespaces, ["namespace-a", "namespace-b"]);
        assert_eq!(allocation.namespace_selectors.len(), 1);
        assert_eq!(allocation.service_selectors.len(), 1);
        let adv = &file.l2_advertisements[0].spec;
        assert_eq!(adv.ip_address_pools, ["first-pool"]);
        assert_eq!(adv.interfaces, ["eth0", "eth1"]);
        assert_eq!(adv.node_selectors.len(), 1);
        assert_eq!(file.services.len(), 1);
        assert_eq!(file.bgp_advertisements.len(), 1);
        assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    }

    #[test]
    fn every_problem_is_named() {
        let text = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: a}
spec:
  addresses: [192.0.2.0/24]
  autoAssign: "yes"
---
kind: Service
metadata: {name: b}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: c}
---
apiVersion: v1
kind: Service
metadata: {name: d}
spec: [not, a, map
"#;
        let errors = parse(text).expect_err("must fail");
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 4, "{text:#?}");
        assert!(
            text[0].contains("IPAddressPool a") && text[0].contains("spec.autoAssign"),
            "{text:#?}"
        );
        assert!(text[1].contains("missing apiVersion"), "{text:#?}");
        assert!(text[2].contains("example.com/v1 Widget"), "{text:#?}");
        assert!(text[3].contains("not valid YAML"), "{text:#?}");
    }

    #[test]
    fn unknown_fields_are_warnings() {
        let text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec:\n  addresses: [192.0.2.0/24]\n  autoassign: false\n";
        let file = parse(text).expect("parses");
        assert_eq!(file.warnings.len(), 1);
        assert_eq!(
            file.warnings[0].to_string(),
            "document 1 (IPAddressPool a): spec.autoassign: unknown field, ignored at line 6 column 3"
        );
    }

    #[test]
    fn lists_and_empty_documents() {
        let text = "---\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a, labels: {team: x}}\n- apiVersion: v1\n  kind: Node\n  metadata: {name: n1}\n";
        let file = parse(text).expect("parses");
        assert_eq!(file.namespaces.len(), 1);
        assert_eq!(file.nodes.len(), 1);
    }

    fn messages(errors: &[Issue]) -> Vec<String> {
        errors.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let file = parse("\u{feff}apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n")
            .expect("parses");
        assert_eq!(file.namespaces.len(), 1);
    }

    #[test]
    fn merge_keys_are_read_as_kubectl_reads_them() {
        let text = "apiVersion: v1\nkind: List\nitems:\n\
                    - &pool\n  apiVersion: metallb.io/v1beta1\n  kind: IPAddressPool\n  metadata: {name: a}\n  spec: {addresses: [192.0.2.0/24], autoAssign: false}\n\
                    - <<: *pool\n  metadata: {name: b}\n";
        let file = parse(text).expect("parses");
        let names: Vec<_> = file.pools.iter().map(|p| p.metadata.name.clone()).collect();
        assert_eq!(names, [Some("a".into()), Some("b".into())]);
        assert_eq!(file.pools[1].spec.auto_assign, Some(false));
        assert!(file.warnings.is_empty(), "{:?}", file.warnings);
        // A merged field of the wrong type is found where it is written.
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  <<: &meta\n    name: a\n    labels: {x: 1}\n";
        assert_eq!(
            messages(&parse(text).expect_err("label value is a number")),
            [
                "document 1 (Service a): metadata.labels.x: invalid type: integer `1`, expected a string at line 6 column 14"
            ]
        );
    }

    #[test]
    fn an_integer_beyond_64_bits_is_a_type_error_of_its_field() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports:\n  - port: 99999999999999999999999\n\
                    ---\napiVersion: v1\nkind: Namespace\nmetadata: {name: 123456789012345678901234567890}\n";
        assert_eq!(
            messages(&parse(text).expect_err("numbers where strings and i32 are")),
            [
                "document 1 (Service a): spec.ports[0].port: invalid type: floating point `100000000000000000000000.0`, expected i32 at line 6 column 5",
                "document 2 (Namespace): metadata.name: invalid type: floating point `123456789012345680000000000000.0`, expected a string at line 10 column 12",
            ]
        );
    }

    #[test]
    fn a_key_written_twice_is_named_with_its_lines_and_later_documents_are_read() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nkind: Service\n---\n\
                    apiVersion: v1\nkind: Widget\n";
        assert_eq!(
            messages(&parse(text).expect_err("duplicate")),
            [
                "document 1: kind: key written twice, at line 2 column 1 and again at line 4 column 1",
                "document 2 (Widget): apiVersion/kind \"v1 Widget\": not a kind this configuration reads (metallb.io/v1beta1 IPAddressPool, L2Advertisement, BGPAdvertisement, BFDProfile, Community; metallb.io/v1beta1 and v1beta2 BGPPeer; v1 Service, Node, Namespace, List, ConfigMap metallb-excludel2; discovery.k8s.io/v1 EndpointSlice)",
            ]
        );
    }

    #[test]
    fn every_type_error_of_an_object_is_named_with_its_line() {
        let text = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec:\n  addresses: [192.0.2.0/24, 7]\n  autoAssign: \"yes\"\n  avoidBuggyIPs: 3\n  serviceAllocation: {priority: high}\n\
                    ---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata:\n    name: n\n    labels: [x]\n";
        assert_eq!(
            messages(&parse(text).expect_err("type errors")),
            [
                "document 1 (IPAddressPool a): spec.addresses[1]: invalid type: integer `7`, expected a string at line 5 column 29",
                "document 1 (IPAddressPool a): spec.autoAssign: invalid type: string \"yes\", expected a boolean at line 6 column 3",
                "document 1 (IPAddressPool a): spec.avoidBuggyIPs: invalid type: integer `3`, expected a boolean at line 7 column 3",
                "document 1 (IPAddressPool a): spec.serviceAllocation.priority: invalid type: string \"high\", expected i64 at line 8 column 23",
                "document 2 (List) items[0] (Node n): metadata.labels: invalid type: sequence, expected a map at line 17 column 5",
            ]
        );
    }
}
