//! Kubernetes label selectors (`matchLabels`, `matchExpressions`): validation with the
//! API server's rules, and matching.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A validated selector. All requirements must hold (an empty selector matches all).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Matches every label set.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Validates and compiles `selector`, or says what is wrong with it.
    pub fn compile(selector: &LabelSelector) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            check_key(key)?;
            check_value(value)?;
            requirements.push(Requirement {
                key: key.clone(),
                op: Op::In(BTreeSet::from([value.clone()])),
            });
        }
        for expr in selector.match_expressions.iter().flatten() {
            check_key(&expr.key)?;
            let values: BTreeSet<String> = expr.values.iter().flatten().cloned().collect();
            for value in &values {
                check_value(value)?;
            }
            let op = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(format!(
                        "operator {} on key {:?} needs at least one value",
                        expr.operator, expr.key
                    ));
                }
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(format!(
                        "operator {} on key {:?} takes no values",
                        expr.operator, expr.key
                    ));
                }
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => {
                    return Err(format!(
                        "operator {other:?} is not one of In, NotIn, Exists, DoesNotExist"
                    ));
                }
            };
            requirements.push(Requirement {
                key: expr.key.clone(),
                op,
            });
        }
        Ok(Self { requirements })
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.get(&r.key);
            match &r.op {
                Op::In(values) => value.is_some_and(|v| values.contains(v)),
                Op::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
            }
        })
    }
}

/// Whether any of `selectors` matches (MetalLB's "any of the list" semantics).
pub fn any_matches(selectors: &[Selector], labels: &Labels) -> bool {
    selectors.iter().any(|s| s.matches(labels))
}

/// `name` or `prefix/name`: prefix a DNS subdomain, name up to 63 characters of
/// alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let valid = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !valid {
            return Err(format!(
                "label key {key:?} has an invalid prefix {prefix:?}"
            ));
        }
    }
    if name.is_empty() || !is_label_text(name) {
        return Err(format!(
            "label key {key:?} is invalid: a name is up to 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
        ));
    }
    Ok(())
}

fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_text(value) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} is invalid: up to 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
        ))
    }
}

fn is_label_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        exprs: Vec<LabelSelectorRequirement>,
    ) -> LabelSelector {
        LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }

    /// (selector, labels, matches)
    type MatchCase = (LabelSelector, &'static [(&'static str, &'static str)], bool);

    #[test]
    fn matching_table() {
        let cases: Vec<MatchCase> = vec![
            (selector(&[], vec![]), &[], true),
            (selector(&[], vec![]), &[("a", "b")], true),
            (selector(&[("app", "web")], vec![]), &[("app", "web")], true),
            (selector(&[("app", "web")], vec![]), &[("app", "db")], false),
            (selector(&[("app", "web")], vec![]), &[], false),
            (
                selector(&[("app", "web"), ("tier", "1")], vec![]),
                &[("app", "web")],
                false,
            ),
            (
                selector(&[], vec![expr("env", "In", &["prod", "stage"])]),
                &[("env", "stage")],
                true,
            ),
            (
                selector(&[], vec![expr("env", "In", &["prod"])]),
                &[("env", "dev")],
                false,
            ),
            (
                selector(&[], vec![expr("env", "NotIn", &["prod"])]),
                &[("env", "dev")],
                true,
            ),
            (
                selector(&[], vec![expr("env", "NotIn", &["prod"])]),
                &[],
                true,
            ),
            (
                selector(&[], vec![expr("env", "NotIn", &["prod"])]),
                &[("env", "prod")],
                false,
            ),
            (
                selector(&[], vec![expr("env", "Exists", &[])]),
                &[("env", "")],
                true,
            ),
            (selector(&[], vec![expr("env", "Exists", &[])]), &[], false),
            (
                selector(&[], vec![expr("env", "DoesNotExist", &[])]),
                &[],
                true,
            ),
            (
                selector(&[], vec![expr("env", "DoesNotExist", &[])]),
                &[("env", "x")],
                false,
            ),
            (
                selector(&[("app", "web")], vec![expr("env", "In", &["prod"])]),
                &[("app", "web"), ("env", "prod")],
                true,
            ),
        ];
        for (i, (sel, set, want)) in cases.into_iter().enumerate() {
            let compiled = Selector::compile(&sel).unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(
                compiled.matches(&labels(set)),
                want,
                "case {i}: {sel:?} on {set:?}"
            );
        }
    }

    #[test]
    fn invalid_selectors_say_why() {
        let cases: Vec<(LabelSelector, &str)> = vec![
            (
                selector(&[], vec![expr("env", "Equals", &["a"])]),
                "not one of In, NotIn",
            ),
            (
                selector(&[], vec![expr("env", "In", &[])]),
                "needs at least one value",
            ),
            (
                selector(&[], vec![expr("env", "Exists", &["a"])]),
                "takes no values",
            ),
            (
                selector(&[("bad key", "v")], vec![]),
                "label key \"bad key\"",
            ),
            (selector(&[("-app", "v")], vec![]), "label key \"-app\""),
            (
                selector(&[("Example.com/app", "v")], vec![]),
                "invalid prefix",
            ),
            (
                selector(&[("app", "bad value")], vec![]),
                "label value \"bad value\"",
            ),
            (selector(&[("app", &"x".repeat(64))], vec![]), "label value"),
        ];
        for (sel, want) in cases {
            let err = Selector::compile(&sel).expect_err("must be refused");
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
        let ok = selector(
            &[("example.com/app", "web-1.a_b")],
            vec![expr("k8s.io/x", "Exists", &[])],
        );
        assert!(Selector::compile(&ok).is_ok());
    }
}
