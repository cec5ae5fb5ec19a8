//! One object, from a YAML value into its type, with every type error found, not just
//! the first. serde stops at the first error; to find the next one, the faulty node is
//! replaced with a value of some type (tried in turn: null, false, 0, "", [], {}), or a
//! missing field is filled in, and the object is read again. Errors inside what was
//! filled in follow from the replacement and are not reported.

use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

use super::yaml::{Step, node_mut};

/// A type error, and the field it is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: Vec<Step>,
    /// False when serde could not name every step of the path (then `path` is where
    /// it stopped, and the error cannot be stepped past).
    exact: bool,
    pub message: String,
}

/// What reading one object found.
#[derive(Debug)]
pub struct Read<T> {
    /// The object, when it has no type error.
    pub object: Option<T>,
    pub errors: Vec<FieldError>,
    /// More errors were left unreported than `max_errors` allows.
    pub stopped_early: bool,
    /// Fields the type does not have, in the order met.
    pub unknown_fields: Vec<Vec<Step>>,
}

/// Reads `value` as a `T`, finding up to `max_errors` type errors.
pub fn read<T: DeserializeOwned>(mut value: Value, max_errors: usize) -> Read<T> {
    let mut read = Read {
        object: None,
        errors: Vec::new(),
        stopped_early: false,
        unknown_fields: Vec::new(),
    };
    // Nodes replaced or filled in so far.
    let mut filled: Vec<Vec<Step>> = Vec::new();
    let mut current = attempt::<T>(&value);
    // Each step fills one node; stepping past an error takes a few.
    for _ in 0..max_errors.saturating_mul(4).max(1) {
        for field in current.unknown.drain(..) {
            if !read.unknown_fields.contains(&field) {
                read.unknown_fields.push(field);
            }
        }
        let error = match current.result {
            Ok(object) => {
                if read.errors.is_empty() {
                    read.object = Some(object);
                }
                return read;
            }
            Err(error) => error,
        };
        if !follows_from(&error, &filled) {
            if read.errors.len() == max_errors {
                read.stopped_early = true;
                return read;
            }
            read.errors.push(error.clone());
        }
        match step_past::<T>(&mut value, &error) {
            Some((node, next)) => {
                filled.push(node);
                current = next;
            }
            None => return read,
        }
    }
    read.stopped_early = true;
    read
}

struct Attempt<T> {
    result: Result<T, FieldError>,
    unknown: Vec<Vec<Step>>,
}

fn attempt<T: DeserializeOwned>(value: &Value) -> Attempt<T> {
    let mut unknown = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(ignored_path(&path));
    let result: Result<T, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut on_unknown));
    let result = result.map_err(|error| {
        let mut path = Vec::new();
        let mut exact = true;
        for segment in error.path() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => path.push(Step::Index(*index)),
                serde_path_to_error::Segment::Map { key } => path.push(Step::Key(key.clone())),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {
                    exact = false;
                    break;
                }
            }
        }
        FieldError {
            path,
            exact,
            message: error.into_inner().to_string(),
        }
    });
    Attempt { result, unknown }
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> Vec<Step> {
    match path {
        serde_ignored::Path::Root => Vec::new(),
        serde_ignored::Path::Seq { parent, index } => {
            let mut steps = ignored_path(parent);
            steps.push(Step::Index(*index));
            steps
        }
        serde_ignored::Path::Map { parent, key } => {
            let mut steps = ignored_path(parent);
            steps.push(Step::Key(key.clone()));
            steps
        }
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

/// The field named by serde's "missing field `name`" error.
pub(super) fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split_once('`')
        .map(|(name, _)| name)
}

/// Whether `error` is in, or about, a node that was filled in.
fn follows_from(error: &FieldError, filled: &[Vec<Step>]) -> bool {
    filled.iter().any(|node| {
        error.path.starts_with(node)
            || missing_field(&error.message).is_some_and(|name| {
                node.len() == error.path.len() + 1
                    && node.starts_with(&error.path)
                    && node.last() == Some(&Step::Key(name.to_owned()))
            })
    })
}

/// Fills the node of `error` with the first candidate that gets the reading past it;
/// returns that node's path and the new reading.
fn step_past<T: DeserializeOwned>(
    value: &mut Value,
    error: &FieldError,
) -> Option<(Vec<Step>, Attempt<T>)> {
    if !error.exact {
        return None;
    }
    let missing = missing_field(&error.message);
    let mut node = error.path.clone();
    if let Some(name) = missing {
        node.push(Step::Key(name.to_owned()));
    }
    let candidates = [
        Value::Null,
        Value::Bool(false),
        Value::Number(0.into()),
        Value::String(String::new()),
        Value::Sequence(Vec::new()),
        Value::Mapping(Mapping::new()),
    ];
    for candidate in candidates {
        let mut patched = value.clone();
        match missing {
            Some(name) => {
                node_mut(&mut patched, &error.path)?
                    .as_mapping_mut()?
                    .insert(Value::String(name.to_owned()), candidate);
            }
            None => *node_mut(&mut patched, &node)? = candidate,
        }
        let next = attempt::<T>(&patched);
        // Stuck: the node still has the wrong type, or nothing changed.
        let stuck =
            next.result.as_ref().err().is_some_and(|e| {
                (e.path == node && missing_field(&e.message).is_none()) || e == error
            });
        if !stuck {
            *value = patched;
            return Some((node, next));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Object {
        name: String,
        #[serde(default)]
        enabled: bool,
        #[serde(default)]
        ports: Vec<Port>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Port {
        port: u16,
        protocol: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        required: Vec<String>,
        count: Option<i32>,
    }

    fn errors(yaml: &str) -> Vec<(String, String)> {
        let value: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let read = read::<Object>(value, 10);
        read.errors
            .iter()
            .map(|e| (super::super::yaml::path_text(&e.path), e.message.clone()))
            .collect()
    }

    #[test]
    fn every_type_error_of_an_object_is_found() {
        let found = errors(
            "name: [a]\nenabled: \"yes\"\nports: [{port: 70000}, {port: 80, protocol: 6}, {port: x}]\ninner: {count: z}\n",
        );
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "enabled",
                "ports[0].port",
                "ports[1].protocol",
                "ports[2].port",
                "inner.count",
                "inner",
            ],
            "{found:#?}"
        );
        assert!(found[1].1.contains("expected a boolean"), "{found:#?}");
        assert_eq!(found[6].1, "missing field `required`");
    }

    #[test]
    fn what_follows_from_a_replacement_is_not_reported() {
        // `inner` has the wrong type: its required field, missing from what replaces
        // it, is no second error; the error after it still is.
        let found = errors("inner: 5\nname: 7\n");
        assert_eq!(
            found.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
            ["inner", "name"],
            "{found:#?}"
        );
        assert_eq!(
            errors("enabled: true\n"),
            [(String::new(), "missing field `name`".to_string())]
        );
    }

    #[test]
    fn a_valid_object_reads_and_unknown_fields_are_listed_once() {
        let value: Value =
            serde_yaml_ng::from_str("name: a\nnmae: b\nports: [{port: 80, x: 1}]\n").unwrap();
        let read = read::<Object>(value, 10);
        assert!(read.errors.is_empty());
        assert_eq!(read.object.unwrap().ports[0].port, 80);
        assert_eq!(
            read.unknown_fields,
            [
                vec![Step::Key("nmae".into())],
                vec![
                    Step::Key("ports".into()),
                    Step::Index(0),
                    Step::Key("x".into())
                ]
            ]
        );
    }

    #[test]
    fn errors_beyond_the_limit_are_counted_not_listed() {
        let value: Value = serde_yaml_ng::from_str(
            "name: a\nports: [{port: a}, {port: b}, {port: c}, {port: d}]\n",
        )
        .unwrap();
        let read = read::<Object>(value, 3);
        assert_eq!(read.errors.len(), 3);
        assert!(read.stopped_early);
        assert!(read.object.is_none());
    }
}
