//! Which interfaces a speaker leaves alone when an L2Advertisement names none: the
//! patterns of MetalLB's `metallb-excludel2` ConfigMap (key `excludel2.yaml`, field
//! `announcedInterfacesToExclude`), or MetalLB's defaults when there is no such
//! ConfigMap. Pure: the caller hands in the ConfigMap, from a file or the API.
//!
//! As MetalLB's speaker (v0.16, `speaker/main.go` and `internal/layer2/announcer.go`)
//! reads them: the patterns are Go regular expressions (RE2 syntax, which the `regex`
//! crate shares), matched anywhere in the interface name unless anchored (`^lo$`); an
//! interface is excluded when any pattern matches it. A pattern that does not compile
//! is an error (MetalLB's speaker then refuses to start); a ConfigMap without the key
//! or without the field excludes nothing, as in MetalLB, with a warning here.
//!
//! Standalone mode takes the ConfigMap from the file ([`super::file::ConfigFile`]'s
//! `exclude_l2`), and [`super::validate`] fills [`super::Config`]'s
//! `interface_exclusions`: the ConfigMap's patterns, or MetalLB's defaults without one.
//! A speaker on the Kubernetes API sets `interface_exclusions` from the ConfigMap it
//! watches with [`for_cluster`].

use std::{
    fmt,
    sync::{Arc, LazyLock},
};

use k8s_openapi::api::core::v1::ConfigMap;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use super::{
    Issue,
    file::{typed, yaml},
};

/// The ConfigMap MetalLB's speaker reads its exclusion patterns from (in its namespace).
pub const EXCLUDE_L2_CONFIG_MAP: &str = "metallb-excludel2";
/// Its key, a YAML document.
pub const EXCLUDE_L2_KEY: &str = "excludel2.yaml";
/// The document's field: a list of patterns.
pub const EXCLUDE_L2_FIELD: &str = "announcedInterfacesToExclude";

/// What MetalLB v0.16 ships in `metallb-excludel2` (config/native/exclude-l2-config.yaml):
/// container bridges, pod veths and CNI devices (Calico, Cilium's `lxc*`, flannel),
/// tunnels, kube-proxy's `kube-ipvs0`, NodeLocal DNSCache, and `lo`. (`^lxc.*` came
/// in v0.15.3; it also covers `^lxcbr.*`, kept as MetalLB lists it.)
pub const DEFAULT_EXCLUDED_INTERFACES: [&str; 14] = [
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo$",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    "^nodelocaldns.*",
    "^lxc.*",
];

/// Where the patterns in force come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternSource {
    /// No `metallb-excludel2` ConfigMap: MetalLB's defaults.
    Defaults,
    /// The ConfigMap `namespace/name`.
    ConfigMap(String),
}

impl fmt::Display for PatternSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternSource::Defaults => write!(f, "MetalLB's defaults"),
            PatternSource::ConfigMap(name) => write!(f, "ConfigMap {name}"),
        }
    }
}

#[derive(Clone, Debug)]
struct Pattern {
    text: String,
    regex: Regex,
}

/// The exclusion patterns in force, compiled. Shared: a clone is a pointer's (the
/// configuration is cloned and moved around whole).
#[derive(Clone, Debug)]
pub struct InterfaceExclusions(Arc<Exclusions>);

#[derive(Debug)]
struct Exclusions {
    patterns: Vec<Pattern>,
    source: PatternSource,
}

/// A pattern that does not compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    /// Its index in the list.
    pub index: usize,
    pub pattern: String,
    pub message: String,
}

static DEFAULTS: LazyLock<InterfaceExclusions> = LazyLock::new(|| {
    let patterns = DEFAULT_EXCLUDED_INTERFACES.map(String::from);
    // Checked by a test; were one of them wrong, it would be left out, not fatal.
    InterfaceExclusions::compile(&patterns, PatternSource::Defaults)
        .unwrap_or_else(|_| InterfaceExclusions::none(PatternSource::Defaults))
});

impl Default for InterfaceExclusions {
    /// MetalLB's defaults: what applies when there is no `metallb-excludel2` ConfigMap.
    fn default() -> Self {
        DEFAULTS.clone()
    }
}

impl InterfaceExclusions {
    /// Excludes nothing.
    pub fn none(source: PatternSource) -> Self {
        Self(Arc::new(Exclusions {
            patterns: Vec::new(),
            source,
        }))
    }

    /// Compiles `patterns`, or says which do not compile, and why.
    pub fn compile(patterns: &[String], source: PatternSource) -> Result<Self, Vec<PatternError>> {
        let mut compiled = Vec::new();
        let mut errors = Vec::new();
        for (index, text) in patterns.iter().enumerate() {
            match Regex::new(text) {
                Ok(regex) => compiled.push(Pattern {
                    text: text.clone(),
                    regex,
                }),
                Err(error) => errors.push(PatternError {
                    index,
                    pattern: text.clone(),
                    message: regex_error_message(&error),
                }),
            }
        }
        if errors.is_empty() {
            Ok(Self(Arc::new(Exclusions {
                patterns: compiled,
                source,
            })))
        } else {
            Err(errors)
        }
    }

    /// The first pattern that matches `interface` (anywhere in the name, as Go's
    /// `MatchString`), if any.
    pub fn matching(&self, interface: &str) -> Option<&str> {
        self.0
            .patterns
            .iter()
            .find(|p| p.regex.is_match(interface))
            .map(|p| p.text.as_str())
    }

    /// The patterns, in listed order.
    pub fn patterns(&self) -> Vec<String> {
        self.0.patterns.iter().map(|p| p.text.clone()).collect()
    }

    pub fn source(&self) -> &PatternSource {
        &self.0.source
    }
}

/// The regex crate's syntax errors span lines (the pattern, a caret, the reason):
/// only the reason, for a one-line message.
fn regex_error_message(error: &regex::Error) -> String {
    let text = error.to_string();
    match text.rsplit_once("error: ") {
        Some((_, reason)) => reason.trim().to_owned(),
        None => text.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// The document under `excludel2.yaml`.
#[derive(Deserialize)]
struct ExcludeL2 {
    #[serde(rename = "announcedInterfacesToExclude", default)]
    announced_interfaces_to_exclude: Option<Vec<String>>,
}

/// What a `metallb-excludel2` ConfigMap says.
#[derive(Debug)]
pub struct ConfigMapRead {
    /// `Some` exactly when `errors` is empty.
    pub exclusions: Option<InterfaceExclusions>,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

/// Reads a `metallb-excludel2` ConfigMap (`namespace/name` in `source`) as MetalLB's
/// speaker reads the file its key is mounted as. `object` names it in messages
/// (`ConfigMap metallb-system/metallb-excludel2`). Its metadata is the caller's to
/// check.
pub fn read_config_map(object: &str, source: &str, config_map: &ConfigMap) -> ConfigMapRead {
    let source = PatternSource::ConfigMap(source.to_owned());
    let mut read = ConfigMapRead {
        exclusions: None,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let field = format!("data[{EXCLUDE_L2_KEY}]");
    let Some(text) = config_map
        .data
        .as_ref()
        .and_then(|data| data.get(EXCLUDE_L2_KEY))
    else {
        read.warnings.push(Issue::new(
            object,
            "data",
            "",
            format!(
                "no key {EXCLUDE_L2_KEY}: no interface is excluded (as in MetalLB, whose speaker then finds no file)"
            ),
        ));
        read.exclusions = Some(InterfaceExclusions::none(source));
        return read;
    };
    let mut value = match serde_yaml_ng::from_str::<yaml::Document>(text) {
        Ok(yaml::Document(value)) => value,
        Err(error) => {
            read.errors.push(Issue::new(
                object,
                &field,
                "",
                format!("not valid YAML: {error}"),
            ));
            return read;
        }
    };
    canonical_field_name(object, &field, &mut value, &mut read.warnings);
    let where_written = |path: &[yaml::Step]| {
        yaml::Locations::of(text)
            .locate(0, path)
            .map(|position| format!(" at {position} of {EXCLUDE_L2_KEY}"))
            .unwrap_or_default()
    };
    let inner = |path: &[yaml::Step]| {
        if path.is_empty() {
            field.clone()
        } else {
            format!("{field}.{}", yaml::path_text(path))
        }
    };
    let parsed = typed::read::<ExcludeL2>(value, 50);
    for error in &parsed.errors {
        read.errors.push(Issue::new(
            object,
            &inner(&error.path),
            "",
            format!("{}{}", error.message, where_written(&error.path)),
        ));
    }
    for unknown in &parsed.unknown_fields {
        read.warnings.push(Issue::new(
            object,
            &inner(unknown),
            "",
            format!(
                "unknown field, ignored{} (MetalLB reads only {EXCLUDE_L2_FIELD})",
                where_written(unknown)
            ),
        ));
    }
    let Some(parsed) = parsed.object else {
        return read;
    };
    let Some(patterns) = parsed.announced_interfaces_to_exclude else {
        read.warnings.push(Issue::new(
            object,
            &field,
            "",
            format!("no {EXCLUDE_L2_FIELD}: no interface is excluded (as in MetalLB)"),
        ));
        read.exclusions = Some(InterfaceExclusions::none(source));
        return read;
    };
    let list_field = format!("{field}.{EXCLUDE_L2_FIELD}");
    for (i, pattern) in patterns.iter().enumerate() {
        if pattern.is_empty() {
            read.warnings.push(Issue::new(
                object,
                &format!("{list_field}[{i}]"),
                "",
                "an empty pattern matches every interface: only interfaces named explicitly are used",
            ));
        }
    }
    match InterfaceExclusions::compile(&patterns, source) {
        Ok(exclusions) => read.exclusions = Some(exclusions),
        Err(errors) => {
            for error in errors {
                read.errors.push(Issue::new(
                    object,
                    &format!("{list_field}[{}]", error.index),
                    &error.pattern,
                    format!(
                        "not a valid regular expression (RE2 syntax, as Go's regexp): {}",
                        error.message
                    ),
                ));
            }
        }
    }
    read
}

/// The patterns a speaker on the Kubernetes API uses, from the `metallb-excludel2`
/// ConfigMap of `namespace` it watches (`None`: there is none). No ConfigMap: MetalLB's
/// defaults. A ConfigMap with errors (MetalLB's speaker would not start): its problems
/// are returned, and MetalLB's defaults apply meanwhile, rather than no exclusion at all
/// (which would put the responder on every pod's veth).
pub fn for_cluster(namespace: &str, config_map: Option<&ConfigMap>) -> ConfigMapRead {
    let Some(config_map) = config_map else {
        return ConfigMapRead {
            exclusions: Some(InterfaceExclusions::default()),
            errors: Vec::new(),
            warnings: Vec::new(),
        };
    };
    let source = format!("{namespace}/{EXCLUDE_L2_CONFIG_MAP}");
    let mut read = read_config_map(&format!("ConfigMap {source}"), &source, config_map);
    if read.exclusions.is_none() {
        read.exclusions = Some(InterfaceExclusions::default());
    }
    read
}

/// MetalLB's speaker decodes the document with Go's JSON rules, which match a key to a
/// field whatever its case: `AnnouncedInterfacesToExclude` works there, so it works
/// here, with a warning.
fn canonical_field_name(object: &str, field: &str, value: &mut Value, warnings: &mut Vec<Issue>) {
    let Some(mapping) = value.as_mapping_mut() else {
        return;
    };
    if mapping.contains_key(EXCLUDE_L2_FIELD) {
        return;
    }
    let written = mapping.keys().find_map(|key| {
        key.as_str()
            .filter(|k| k.eq_ignore_ascii_case(EXCLUDE_L2_FIELD))
            .map(str::to_owned)
    });
    if let Some(written) = written
        && let Some(patterns) = mapping.remove(written.as_str())
    {
        mapping.insert(Value::String(EXCLUDE_L2_FIELD.into()), patterns);
        warnings.push(Issue::new(
            object,
            &format!("{field}.{written}"),
            "",
            format!(
                "read as {EXCLUDE_L2_FIELD} (MetalLB ignores the case of the key); write it so"
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn metallb_defaults_compile_and_match_as_in_metallb() {
        let defaults = InterfaceExclusions::default();
        assert_eq!(defaults.patterns(), DEFAULT_EXCLUDED_INTERFACES);
        assert_eq!(defaults.source(), &PatternSource::Defaults);
        // (interface, the first default pattern matching it)
        let cases: &[(&str, Option<&str>)] = &[
            ("eth0", None),
            ("ens3", None),
            ("enp1s0f0", None),
            ("bond0", None),
            ("br0", None),
            ("eth0.100", None),
            ("mlb-node", None),
            ("lo", Some("^lo$")),
            ("lo0", None),
            ("vlo", None),
            ("docker0", Some("^docker.*")),
            ("cbr0", Some("^cbr.*")),
            ("dummy0", Some("^dummy.*")),
            ("virbr0", Some("^virbr.*")),
            ("lxcbr0", Some("^lxcbr.*")),
            ("lxc12ab34", Some("^lxc.*")),
            ("lxc_health", Some("^lxc.*")),
            ("vethabc123", Some("^veth.*")),
            ("veth", Some("^veth.*")),
            ("myveth0", None),
            ("cali1234", Some("^cali.*")),
            ("tunl0", Some("^tunl.*")),
            ("flannel.1", Some("^flannel.*")),
            ("kube-ipvs0", Some("^kube-ipvs.*")),
            ("cni0", Some("^cni.*")),
            ("nodelocaldns", Some("^nodelocaldns.*")),
            ("cilium_host", None),
            ("Veth0", None),
        ];
        for (interface, pattern) in cases {
            assert_eq!(defaults.matching(interface), *pattern, "{interface}");
        }
    }

    #[test]
    fn patterns_match_anywhere_unless_anchored_as_go_matchstring() {
        let compile = |patterns: &[&str]| {
            InterfaceExclusions::compile(
                &patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                PatternSource::Defaults,
            )
            .expect("compiles")
        };
        // (patterns, interface, first pattern matching)
        let cases: &[(&[&str], &str, Option<&str>)] = &[
            (&["eth"], "veth0", Some("eth")),
            (&["eth"], "eth0", Some("eth")),
            (&["^eth"], "veth0", None),
            (&["0$"], "eth0", Some("0$")),
            (&["0$"], "eth01", None),
            (&["^eth[0-9]+$"], "eth12", Some("^eth[0-9]+$")),
            (&["^eth[0-9]+$"], "eth1.5", None),
            (&["(?i)^ETH"], "eth0", Some("(?i)^ETH")),
            (&["^ETH"], "eth0", None),
            (&[r"^eth\d\.\d+$"], "eth0.100", Some(r"^eth\d\.\d+$")),
            (&["a", "^eth"], "eth0", Some("^eth")),
            (&["^e", "^eth"], "eth0", Some("^e")),
            (&[""], "anything", Some("")),
            (&[], "eth0", None),
        ];
        for (patterns, interface, want) in cases {
            assert_eq!(
                compile(patterns).matching(interface),
                *want,
                "{patterns:?} {interface}"
            );
        }
    }

    #[test]
    fn a_pattern_that_does_not_compile_is_named_with_its_index() {
        let errors = InterfaceExclusions::compile(
            &["^eth".into(), "^veth(".into(), "[z-a]".into()],
            PatternSource::Defaults,
        )
        .expect_err("two bad patterns");
        assert_eq!(
            errors,
            [
                PatternError {
                    index: 1,
                    pattern: "^veth(".into(),
                    message: "unclosed group".into()
                },
                PatternError {
                    index: 2,
                    pattern: "[z-a]".into(),
                    message: "invalid character class range, the start must be <= the end".into()
                },
            ]
        );
    }

    fn config_map(data: Option<&str>) -> ConfigMap {
        ConfigMap {
            data: data.map(|text| BTreeMap::from([(EXCLUDE_L2_KEY.to_owned(), text.to_owned())])),
            ..ConfigMap::default()
        }
    }

    const OBJECT: &str = "ConfigMap metallb-system/metallb-excludel2";
    const SOURCE: &str = "metallb-system/metallb-excludel2";

    fn shown(issues: &[Issue]) -> Vec<String> {
        issues.iter().map(Issue::to_string).collect()
    }

    #[test]
    fn config_map_table() {
        /// (excludel2.yaml, patterns in force or None, errors, warnings)
        type Case = (
            Option<&'static str>,
            Option<Vec<&'static str>>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                Some("announcedInterfacesToExclude: [\"^docker.*\", \"^veth.*\", \"^lo$\"]\n"),
                Some(vec!["^docker.*", "^veth.*", "^lo$"]),
                vec![],
                vec![],
            ),
            // The chart's block style.
            (
                Some("announcedInterfacesToExclude:\n- ^docker.*\n- ^cali.*\n"),
                Some(vec!["^docker.*", "^cali.*"]),
                vec![],
                vec![],
            ),
            // An empty list: nothing is excluded, on purpose.
            (
                Some("announcedInterfacesToExclude: []\n"),
                Some(vec![]),
                vec![],
                vec![],
            ),
            (
                None,
                Some(vec![]),
                vec![],
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: data: no key excludel2.yaml: no interface is excluded (as in MetalLB, whose speaker then finds no file)",
                ],
            ),
            (
                Some(""),
                Some(vec![]),
                vec![],
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml]: no announcedInterfacesToExclude: no interface is excluded (as in MetalLB)",
                ],
            ),
            (
                Some("announcedInterfacesToExclude: null\n"),
                Some(vec![]),
                vec![],
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml]: no announcedInterfacesToExclude: no interface is excluded (as in MetalLB)",
                ],
            ),
            (
                Some("announcedInterfaceToExclude: [\"^veth.*\"]\n"),
                Some(vec![]),
                vec![],
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml].announcedInterfaceToExclude: unknown field, ignored at line 1 column 1 of excludel2.yaml (MetalLB reads only announcedInterfacesToExclude)",
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml]: no announcedInterfacesToExclude: no interface is excluded (as in MetalLB)",
                ],
            ),
            (
                Some("AnnouncedInterfacesToExclude: [\"^veth.*\"]\n"),
                Some(vec!["^veth.*"]),
                vec![],
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml].AnnouncedInterfacesToExclude: read as announcedInterfacesToExclude (MetalLB ignores the case of the key); write it so",
                ],
            ),
            (
                Some("announcedInterfacesToExclude: [\"^veth.*\", \"\"]\n"),
                Some(vec!["^veth.*", ""]),
                vec![],
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml].announcedInterfacesToExclude[1]: an empty pattern matches every interface: only interfaces named explicitly are used",
                ],
            ),
            (
                Some("announcedInterfacesToExclude:\n- ^veth.*\n- ^cali(\n- '*'\n"),
                None,
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml].announcedInterfacesToExclude[1] \"^cali(\": not a valid regular expression (RE2 syntax, as Go's regexp): unclosed group",
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml].announcedInterfacesToExclude[2] \"*\": not a valid regular expression (RE2 syntax, as Go's regexp): repetition operator missing expression",
                ],
                vec![],
            ),
            (
                Some("announcedInterfacesToExclude: \"^veth.*\"\n"),
                None,
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml].announcedInterfacesToExclude: invalid type: string \"^veth.*\", expected a sequence at line 1 column 1 of excludel2.yaml",
                ],
                vec![],
            ),
            (
                Some("announcedInterfacesToExclude: [\"^veth.*\", 7]\n"),
                None,
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml].announcedInterfacesToExclude[1]: invalid type: integer `7`, expected a string at line 1 column 43 of excludel2.yaml",
                ],
                vec![],
            ),
            (
                Some("announcedInterfacesToExclude: [\"^veth.*\"\n"),
                None,
                vec![
                    "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml]: not valid YAML: did not find expected ',' or ']' at line 2 column 1, while parsing a flow sequence at line 1 column 31",
                ],
                vec![],
            ),
        ];
        for (text, patterns, errors, warnings) in cases {
            let read = read_config_map(OBJECT, SOURCE, &config_map(text));
            assert_eq!(shown(&read.errors), errors, "{text:?}");
            assert_eq!(shown(&read.warnings), warnings, "{text:?}");
            assert_eq!(
                read.exclusions.as_ref().map(InterfaceExclusions::patterns),
                patterns.map(|p| p.into_iter().map(String::from).collect::<Vec<_>>()),
                "{text:?}"
            );
            if let Some(exclusions) = read.exclusions {
                assert_eq!(
                    exclusions.source(),
                    &PatternSource::ConfigMap(SOURCE.into())
                );
            }
        }
    }

    /// `deploy/metallb-excludel2.yaml` is what the code takes for MetalLB's defaults, and
    /// the README shows the same list.
    #[test]
    fn the_shipped_config_map_holds_the_defaults() {
        use crate::config::{ValidateOptions, file::parse, validate};
        let text = include_str!("../../../deploy/metallb-excludel2.yaml");
        let validation = validate(&parse(text).expect("parses"), &ValidateOptions::default());
        assert!(validation.errors.is_empty(), "{:?}", validation.errors);
        assert!(validation.warnings.is_empty(), "{:?}", validation.warnings);
        let exclusions = validation.config.expect("valid").interface_exclusions;
        assert_eq!(exclusions.patterns(), DEFAULT_EXCLUDED_INTERFACES);
        assert_eq!(
            exclusions.source(),
            &PatternSource::ConfigMap(SOURCE.into())
        );
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(EXCLUDE_L2_FIELD))
            .expect("the list");
        assert!(
            include_str!("../../../README.md").contains(line),
            "the README shows {line}"
        );
    }

    #[test]
    fn in_a_cluster_a_missing_or_broken_config_map_leaves_the_defaults() {
        let defaults = InterfaceExclusions::default().patterns();
        let none = for_cluster("metallb-system", None);
        assert_eq!(
            none.exclusions.map(|e| e.patterns()),
            Some(defaults.clone())
        );
        assert!(none.errors.is_empty() && none.warnings.is_empty());

        let ours = for_cluster(
            "metallb-system",
            Some(&config_map(Some(
                "announcedInterfacesToExclude: ['^eth9$']",
            ))),
        );
        let exclusions = ours.exclusions.expect("patterns");
        assert_eq!(exclusions.patterns(), ["^eth9$"]);
        assert_eq!(
            exclusions.source(),
            &PatternSource::ConfigMap(SOURCE.into())
        );

        let broken = for_cluster(
            "metallb-system",
            Some(&config_map(Some("announcedInterfacesToExclude: ['^eth[']"))),
        );
        assert_eq!(
            shown(&broken.errors),
            [
                "ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml].announcedInterfacesToExclude[0] \"^eth[\": not a valid regular expression (RE2 syntax, as Go's regexp): unclosed character class"
            ]
        );
        assert_eq!(broken.exclusions.map(|e| e.patterns()), Some(defaults));
    }

    #[test]
    fn the_source_is_said_in_words() {
        assert_eq!(PatternSource::Defaults.to_string(), "MetalLB's defaults");
        assert_eq!(
            PatternSource::ConfigMap(SOURCE.into()).to_string(),
            "ConfigMap metallb-system/metallb-excludel2"
        );
    }
}
