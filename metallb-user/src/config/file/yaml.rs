//! YAML below the objects: documents read into values as Kubernetes reads them, paths
//! into them, and where each node is written in the file (serde_yaml_ng's values carry
//! no position, so a second, event-level parser finds it when a message needs it).

use std::{collections::HashMap, fmt};

use serde::de::{self, Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess};
use serde_yaml_ng::{
    Mapping, Value,
    value::{Tag, TaggedValue},
};
use yaml_rust2::parser::{Event, Parser};

/// One step into a document: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// `spec.ports[0].port`, as serde_path_to_error writes paths.
pub fn path_text(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Key(key) if text.is_empty() => text.push_str(key),
            Step::Key(key) => {
                text.push('.');
                text.push_str(key);
            }
            Step::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

/// The node at `path`, if the value has one.
pub fn node_mut<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |node, step| {
        let node = untagged_mut(node);
        match step {
            Step::Key(key) => node.as_mapping_mut()?.get_mut(key.as_str()),
            Step::Index(index) => node.as_sequence_mut()?.get_mut(*index),
        }
    })
}

fn untagged_mut(mut value: &mut Value) -> &mut Value {
    while let Value::Tagged(tagged) = value {
        value = &mut tagged.value;
    }
    value
}

/// One YAML document as a value. Unlike `serde_yaml_ng::Value`'s own reading, an
/// integer beyond 64 bits does not stop the file: it becomes a float, as Go's YAML
/// decoder (kubectl's) makes it, and so a type error of the field that holds it.
pub struct Document(pub Value);

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocumentVisitor).map(Document)
    }
}

struct DocumentVisitor;

impl<'de> de::Visitor<'de> for DocumentVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any YAML value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_i128<E>(self, value: i128) -> Result<Value, E> {
        Ok(Value::Number((value as f64).into()))
    }

    fn visit_u128<E>(self, value: u128) -> Result<Value, E> {
        Ok(Value::Number((value as f64).into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut sequence = Vec::new();
        while let Some(Document(item)) = items.next_element()? {
            sequence.push(item);
        }
        Ok(Value::Sequence(sequence))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let mut mapping = Mapping::new();
        while let Some(Document(key)) = entries.next_key()? {
            let Document(value) = entries.next_value()?;
            if mapping.insert(key, value).is_some() {
                // Kubernetes refuses a key written twice; `Locations` says where.
                return Err(de::Error::custom(DUPLICATE_KEY));
            }
        }
        Ok(Value::Mapping(mapping))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, contents): (String, _) = data.variant()?;
        let Document(value) = contents.newtype_variant()?;
        if tag.is_empty() {
            return Ok(value);
        }
        Ok(Value::Tagged(Box::new(TaggedValue {
            tag: Tag::new(tag),
            value,
        })))
    }
}

/// The error a document with a key written twice gives.
pub const DUPLICATE_KEY: &str = "a mapping has a key written twice";

/// A place in the text: 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

/// A key written twice in one mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Duplicate {
    pub path: Vec<Step>,
    pub first: Position,
    pub again: Position,
}

/// Where the nodes of each document of a text are written.
#[derive(Debug, Default)]
pub struct Locations {
    documents: Vec<DocumentLocations>,
}

#[derive(Debug, Default)]
struct DocumentLocations {
    /// A mapping's value is where its key is written; other nodes, where they start.
    nodes: HashMap<Vec<Step>, Position>,
    /// Nodes that are aliases (`*name`), to the id of their anchor.
    aliases: HashMap<Vec<Step>, usize>,
    /// Anchors (`&name`), by id, to the node that defines them.
    anchors: HashMap<usize, Vec<Step>>,
    duplicates: Vec<Duplicate>,
}

/// Aliases followed in a row before giving up (a file can chain them).
const MAX_ALIAS_HOPS: usize = 32;

enum Frame {
    Mapping {
        path: Vec<Step>,
        key: KeyState,
        seen: HashMap<String, Position>,
        /// The parser marks the start of a block mapping after its first key: where
        /// that key is written stands for the mapping (unless a key of a parent does).
        placed_by_first_key: bool,
    },
    Sequence {
        path: Vec<Step>,
        next: usize,
    },
    /// Inside a key that is not a plain scalar, or the value of such a key: no path.
    Unnamed,
}

enum KeyState {
    Expected,
    Scalar(String, Position),
    Unnamed,
}

enum Node {
    Scalar(String),
    Alias(usize),
    Mapping,
    Sequence,
}

impl Locations {
    /// Reads `text` up to its end or its first syntax error (later documents are then
    /// not located).
    pub fn of(text: &str) -> Self {
        let mut locations = Locations::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(text);
        while let Ok((event, marker)) = parser.next_token() {
            let at = Position {
                line: marker.line(),
                column: marker.col() + 1,
            };
            let (node, anchor) = match event {
                Event::StreamEnd => break,
                Event::DocumentStart => {
                    locations.documents.push(DocumentLocations::default());
                    stack.clear();
                    continue;
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    continue;
                }
                Event::Scalar(text, _, anchor, _) => (Node::Scalar(text), anchor),
                Event::Alias(id) => (Node::Alias(id), 0),
                Event::MappingStart(anchor, _) => (Node::Mapping, anchor),
                Event::SequenceStart(anchor, _) => (Node::Sequence, anchor),
                _ => continue,
            };
            let Some(document) = locations.documents.last_mut() else {
                continue;
            };
            document.add(&mut stack, node, anchor, at);
        }
        locations
    }

    /// Where the node at `path` of document `document` (0-based) is written, or, when it
    /// is not found (merged from elsewhere, say), its nearest enclosing node that is.
    pub fn locate(&self, document: usize, path: &[Step]) -> Option<Position> {
        let document = self.documents.get(document)?;
        let mut at: Vec<Step> = Vec::new();
        let mut found = document.nodes.get(&at).copied();
        for step in path {
            let Some(next) = document
                .candidates(&at, step)
                .into_iter()
                .find(|candidate| document.nodes.contains_key(candidate))
            else {
                break;
            };
            found = document.nodes.get(&next).copied();
            at = next;
        }
        found
    }

    /// The keys written twice in document `document`.
    pub fn duplicates(&self, document: usize) -> &[Duplicate] {
        self.documents
            .get(document)
            .map_or(&[], |d| d.duplicates.as_slice())
    }
}

impl DocumentLocations {
    fn add(&mut self, stack: &mut Vec<Frame>, node: Node, anchor: usize, at: Position) {
        let placed = match stack.last_mut() {
            None => Some((Vec::new(), at, false)),
            Some(Frame::Unnamed) => None,
            Some(Frame::Sequence { path, next }) => {
                let mut item = path.clone();
                item.push(Step::Index(*next));
                *next += 1;
                Some((item, at, false))
            }
            Some(Frame::Mapping {
                path,
                key,
                seen,
                placed_by_first_key,
            }) => {
                match std::mem::replace(key, KeyState::Expected) {
                    // This node is a key: its value comes next.
                    KeyState::Expected => {
                        if std::mem::take(placed_by_first_key) {
                            self.nodes.insert(path.clone(), at);
                        }
                        *key = match &node {
                            Node::Scalar(text) => {
                                if let Some(first) = seen.get(text) {
                                    let mut duplicate = path.clone();
                                    duplicate.push(Step::Key(text.clone()));
                                    self.duplicates.push(Duplicate {
                                        path: duplicate,
                                        first: *first,
                                        again: at,
                                    });
                                } else {
                                    seen.insert(text.clone(), at);
                                }
                                KeyState::Scalar(text.clone(), at)
                            }
                            _ => KeyState::Unnamed,
                        };
                        None
                    }
                    KeyState::Scalar(name, key_at) => {
                        let mut value = path.clone();
                        value.push(Step::Key(name));
                        Some((value, key_at, true))
                    }
                    KeyState::Unnamed => None,
                }
            }
        };
        let Some((path, position, by_key)) = placed else {
            if matches!(node, Node::Mapping | Node::Sequence) {
                stack.push(Frame::Unnamed);
            }
            return;
        };
        self.nodes.entry(path.clone()).or_insert(position);
        if anchor != 0 {
            self.anchors.insert(anchor, path.clone());
        }
        match node {
            Node::Scalar(_) => {}
            Node::Alias(id) => {
                self.aliases.insert(path, id);
            }
            Node::Mapping => stack.push(Frame::Mapping {
                path,
                key: KeyState::Expected,
                seen: HashMap::new(),
                placed_by_first_key: !by_key,
            }),
            Node::Sequence => stack.push(Frame::Sequence { path, next: 0 }),
        }
    }

    /// The node an alias stands for (the node itself when it is no alias).
    fn resolve(&self, path: &[Step]) -> Vec<Step> {
        let mut path = path.to_vec();
        for _ in 0..MAX_ALIAS_HOPS {
            match self.aliases.get(&path).and_then(|id| self.anchors.get(id)) {
                Some(anchored) => path = anchored.clone(),
                None => break,
            }
        }
        path
    }

    /// Where `step` from the node at `at` can be written: in the node itself (or what
    /// it aliases), else in the mappings merged into it (`<<: *base`, `<<: [*a, *b]`).
    fn candidates(&self, at: &[Step], step: &Step) -> Vec<Vec<Step>> {
        let child = |base: Vec<Step>| {
            let mut path = base;
            path.push(step.clone());
            path
        };
        let base = self.resolve(at);
        let mut merge = base.clone();
        merge.push(Step::Key("<<".into()));
        let mut candidates = vec![child(base)];
        if self.nodes.contains_key(&merge) {
            candidates.push(child(self.resolve(&merge)));
            for index in 0.. {
                let mut source = merge.clone();
                source.push(Step::Index(index));
                if !self.nodes.contains_key(&source) {
                    break;
                }
                candidates.push(child(self.resolve(&source)));
            }
        }
        candidates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(text: &str) -> Vec<Step> {
        text.split('.')
            .filter(|s| !s.is_empty())
            .map(|s| match s.parse() {
                Ok(index) => Step::Index(index),
                Err(_) => Step::Key(s.into()),
            })
            .collect()
    }

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn nodes_are_located_in_block_and_flow_style_across_documents() {
        let text = "a: 1\nb:\n  c: [x, {d: 2}]\n  e:\n  - f\n---\nmetadata: {name: n}\n";
        let locations = Locations::of(text);
        assert_eq!(locations.locate(0, &[]), at(1, 1));
        assert_eq!(locations.locate(0, &steps("a")), at(1, 1));
        assert_eq!(locations.locate(0, &steps("b.c")), at(3, 3));
        assert_eq!(locations.locate(0, &steps("b.c.0")), at(3, 7));
        assert_eq!(locations.locate(0, &steps("b.c.1.d")), at(3, 11));
        assert_eq!(locations.locate(0, &steps("b.e.0")), at(5, 5));
        // Not written: the nearest enclosing node.
        assert_eq!(locations.locate(0, &steps("b.missing.deeper")), at(2, 1));
        assert_eq!(locations.locate(1, &steps("metadata.name")), at(7, 12));
        assert_eq!(locations.locate(2, &[]), None);
    }

    #[test]
    fn aliases_and_merge_keys_lead_to_where_the_value_is_written() {
        let text = "base: &base\n  name: a\n  labels: {x: y}\nfirst:\n  <<: *base\n  own: 1\nsecond:\n  <<: [*base, {extra: 2}]\nthird: *base\n";
        let locations = Locations::of(text);
        assert_eq!(locations.locate(0, &steps("first.own")), at(6, 3));
        assert_eq!(locations.locate(0, &steps("first.name")), at(2, 3));
        assert_eq!(locations.locate(0, &steps("second.labels.x")), at(3, 12));
        assert_eq!(locations.locate(0, &steps("second.extra")), at(8, 16));
        assert_eq!(locations.locate(0, &steps("third.name")), at(2, 3));
    }

    #[test]
    fn keys_written_twice_are_found_with_both_places() {
        let text = "a: 1\nb:\n  c: 1\n  c: 2\n? [complex]\n: 3\na: 4\n";
        let locations = Locations::of(text);
        assert_eq!(
            locations.duplicates(0),
            [
                Duplicate {
                    path: steps("b.c"),
                    first: Position { line: 3, column: 3 },
                    again: Position { line: 4, column: 3 },
                },
                Duplicate {
                    path: steps("a"),
                    first: Position { line: 1, column: 1 },
                    again: Position { line: 7, column: 1 },
                },
            ]
        );
    }

    #[test]
    fn a_syntax_error_keeps_what_came_before() {
        let locations = Locations::of("a: 1\n---\nb: [oops\n");
        assert_eq!(locations.locate(0, &steps("a")), at(1, 1));
    }

    #[test]
    fn integers_beyond_64_bits_are_numbers_not_errors() {
        let text = "small: 7\nbig: 99999999999999999999999\nnegative: -99999999999999999999999\ntagged: !x 1\n";
        let Document(value) =
            Document::deserialize(serde_yaml_ng::Deserializer::from_str(text)).unwrap();
        assert_eq!(value["small"].as_u64(), Some(7));
        assert_eq!(value["big"].as_f64(), Some(1e23));
        assert_eq!(value["negative"].as_f64(), Some(-1e23));
        assert!(matches!(&value["tagged"], Value::Tagged(t) if t.tag == "x"));
        let error = Document::deserialize(serde_yaml_ng::Deserializer::from_str("a: 1\na: 2\n"))
            .err()
            .unwrap();
        assert!(error.to_string().contains(DUPLICATE_KEY), "{error}");
    }
}
