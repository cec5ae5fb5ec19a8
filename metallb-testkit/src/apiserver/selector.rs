//! Label and field selectors in the query-string syntax of the API
//! (`labelSelector=a=b,c!=d,e in (x,y),f notin (z),g,!h`; `fieldSelector=metadata.name=x`).

use std::collections::BTreeSet;

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LabelRequirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelRequirement>);

/// Splits on commas that are not inside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn value_set(text: &str) -> Result<BTreeSet<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised value list, got {text:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            let requirement = if let Some((key, values)) = term.split_once(" notin ") {
                LabelRequirement::NotIn(key.trim().into(), value_set(values)?)
            } else if let Some((key, values)) = term.split_once(" in ") {
                LabelRequirement::In(key.trim().into(), value_set(values)?)
            } else if let Some((key, value)) = term.split_once("!=") {
                LabelRequirement::NotIn(key.trim().into(), BTreeSet::from([value.trim().into()]))
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                LabelRequirement::In(key.trim().into(), BTreeSet::from([value.trim().into()]))
            } else if let Some(key) = term.strip_prefix('!') {
                LabelRequirement::DoesNotExist(key.trim().into())
            } else if term.contains(char::is_whitespace) || term.contains(['(', ')']) {
                return Err(format!("unable to parse label requirement {term:?}"));
            } else {
                LabelRequirement::Exists(term.into())
            };
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }

    /// Whether `object`'s `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let label = |key: &str| {
            object["metadata"]["labels"][key]
                .as_str()
                .map(str::to_owned)
        };
        self.0.iter().all(|requirement| match requirement {
            LabelRequirement::In(key, values) => label(key).is_some_and(|v| values.contains(&v)),
            LabelRequirement::NotIn(key, values) => label(key).is_none_or(|v| !values.contains(&v)),
            LabelRequirement::Exists(key) => label(key).is_some(),
            LabelRequirement::DoesNotExist(key) => label(key).is_none(),
        })
    }
}

/// A parsed field selector: equalities and inequalities on dotted paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for term in split_terms(text) {
            let (path, equal, value) = if let Some((path, value)) = term.split_once("!=") {
                (path, false, value)
            } else if let Some((path, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                (path, true, value)
            } else {
                return Err(format!("invalid field selector term {term:?}"));
            };
            let path = path.trim().split('.').map(str::to_owned).collect();
            terms.push((path, equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// Missing fields compare as the empty string, as the API server does.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, wanted)| {
            let found = path.iter().try_fold(object, |v, key| v.get(key));
            let text = match found {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (text == *wanted) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn label_selector_table() {
        let object = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (db, web)", true),
            ("app notin (db,web)", false),
            ("app,tier", true),
            ("app,!tier", false),
            ("!missing", true),
            ("app=web,tier in (front)", true),
            ("app=web,tier in (back)", false),
        ];
        for (text, want) in cases {
            let selector = LabelSelector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(selector.matches(&object), want, "{text}");
        }
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selector_table() {
        let object =
            json!({"metadata": {"name": "x", "namespace": "ns"}, "spec": {"nodeName": "n1"}});
        let cases = [
            ("metadata.name=x", true),
            ("metadata.name=y", false),
            ("metadata.name!=y,metadata.namespace=ns", true),
            ("spec.nodeName=n1", true),
            ("spec.missing=", true),
        ];
        for (text, want) in cases {
            let selector = FieldSelector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(selector.matches(&object), want, "{text}");
        }
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
