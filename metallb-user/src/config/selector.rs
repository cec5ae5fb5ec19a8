//! Kubernetes label selectors (`matchLabels`, `matchExpressions`): validation with the
//! API server's rules, and matching.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::names::{self, shorten};

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

    /// Validates and compiles `selector`, or says what is wrong with it. Besides the
    /// API server's rules, MetalLB's: an expression may not list a value twice, and a
    /// selector may not hold the same expression twice (values in any order). MetalLB
    /// checks these on its selector lists only; we check every selector, the
    /// `preferredNodeSelectors` preferences too (a repeat there is as much a mistake).
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
        let expressions = selector.match_expressions.as_deref().unwrap_or_default();
        for (i, expr) in expressions.iter().enumerate() {
            check_key(&expr.key)?;
            let listed = expr.values.as_deref().unwrap_or_default();
            let mut values = BTreeSet::new();
            for value in listed {
                check_value(value)?;
                if !values.insert(value.clone()) {
                    return Err(format!(
                        "matchExpressions[{i}] (key {:?}) lists value {:?} twice: duplicate definition of match expression value",
                        expr.key,
                        shorten(value)
                    ));
                }
            }
            if let Some(first) = expressions[..i]
                .iter()
                .position(|earlier| same_expression(earlier, expr))
            {
                return Err(format!(
                    "matchExpressions[{i}] repeats matchExpressions[{first}] (key {:?}): duplicate definition of match expressions",
                    expr.key
                ));
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
                        "operator {:?} is not one of In, NotIn, Exists, DoesNotExist",
                        shorten(other)
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

/// Whether two selectors are the same once the values of their expressions are
/// sorted: MetalLB's rule for duplicate selectors in one list.
pub fn same_selector(a: &LabelSelector, b: &LabelSelector) -> bool {
    let expressions = |s: &LabelSelector| s.match_expressions.clone().unwrap_or_default();
    let (a_expressions, b_expressions) = (expressions(a), expressions(b));
    a.match_labels.clone().unwrap_or_default() == b.match_labels.clone().unwrap_or_default()
        && a_expressions.len() == b_expressions.len()
        && a_expressions
            .iter()
            .zip(&b_expressions)
            .all(|(x, y)| same_expression(x, y))
}

/// Same key, operator and values, the values in any order.
fn same_expression(a: &LabelSelectorRequirement, b: &LabelSelectorRequirement) -> bool {
    let sorted = |r: &LabelSelectorRequirement| {
        let mut values = r.values.clone().unwrap_or_default();
        values.sort();
        values
    };
    a.key == b.key && a.operator == b.operator && sorted(a) == sorted(b)
}

fn check_key(key: &str) -> Result<(), String> {
    names::qualified_name(key).map_err(|why| format!("label key {:?} {why}", shorten(key)))
}

fn check_value(value: &str) -> Result<(), String> {
    names::label_value(value).map_err(|why| format!("label value {:?} {why}", shorten(value)))
}

#[cfg(test)]
mod tests {
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
            // MetalLB's config_test.go "duplicate values node selector match expression",
            // "ip address pool with duplicate service selection".
            (
                selector(&[], vec![expr("tier", "In", &["gold", "gold"])]),
                "matchExpressions[0] (key \"tier\") lists value \"gold\" twice: duplicate definition of match expression value",
            ),
            (
                selector(
                    &[],
                    vec![expr("tier", "NotIn", &["a", "gold", "b", "gold"])],
                ),
                "lists value \"gold\" twice",
            ),
            // "use duplicate match expression values in node selector": equal once sorted.
            (
                selector(
                    &[],
                    vec![
                        expr("kubernetes.io/hostname", "In", &["first", "second"]),
                        expr("kubernetes.io/hostname", "In", &["second", "first"]),
                    ],
                ),
                "matchExpressions[1] repeats matchExpressions[0] (key \"kubernetes.io/hostname\"): duplicate definition of match expressions",
            ),
            (
                selector(
                    &[],
                    vec![
                        expr("a", "Exists", &[]),
                        expr("b", "Exists", &[]),
                        expr("a", "Exists", &[]),
                    ],
                ),
                "matchExpressions[2] repeats matchExpressions[0]",
            ),
            // "invalid expression node selector (missing key / missing operator)".
            (
                selector(&[("foo", "bar")], vec![expr("", "In", &["quux"])]),
                "label key \"\" has an empty name",
            ),
            (
                selector(&[("foo", "bar")], vec![expr("bar", "", &["quux"])]),
                "operator \"\" is not one of",
            ),
            // "invalid expression node selector (invalid operator)".
            (
                selector(&[], vec![expr("bar", "surrounds", &["quux"])]),
                "operator \"surrounds\" is not one of",
            ),
            (
                selector(&[(&"k".repeat(65_000), "v")], vec![]),
                "(65000 characters)\" name part must be no more than 63 characters",
            ),
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
        // Not duplicates: another operator, another value set, one expression per key.
        let distinct = selector(
            &[],
            vec![
                expr("env", "In", &["a"]),
                expr("env", "NotIn", &["a"]),
                expr("env", "In", &["a", "b"]),
            ],
        );
        assert!(Selector::compile(&distinct).is_ok());
    }

    #[test]
    fn duplicate_selectors_compare_values_in_any_order() {
        let a = selector(&[("x", "1")], vec![expr("k", "In", &["p", "q"])]);
        let same = selector(&[("x", "1")], vec![expr("k", "In", &["q", "p"])]);
        let other_value = selector(&[("x", "1")], vec![expr("k", "In", &["p"])]);
        let other_label = selector(&[("x", "2")], vec![expr("k", "In", &["p", "q"])]);
        let two = selector(
            &[],
            vec![expr("a", "Exists", &[]), expr("b", "Exists", &[])],
        );
        // As MetalLB: expressions in another order are another selector.
        let swapped = selector(
            &[],
            vec![expr("b", "Exists", &[]), expr("a", "Exists", &[])],
        );
        assert!(same_selector(&a, &same));
        assert!(same_selector(&a, &a));
        assert!(!same_selector(&a, &other_value));
        assert!(!same_selector(&a, &other_label));
        assert!(!same_selector(&two, &swapped));
        assert!(same_selector(
            &selector(&[], vec![]),
            &LabelSelector::default()
        ));
    }
}
