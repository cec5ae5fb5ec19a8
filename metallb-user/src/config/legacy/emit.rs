//! YAML as MetalLB's converter (Go, `sigs.k8s.io/yaml`) writes it: block style, keys
//! sorted, sequences at the indentation of their key, and every string that a YAML
//! reader could take for something else quoted. kubectl reads YAML 1.1 (`yes`, `on` and
//! `off` are booleans, `1_000` and `0b11` integers, `2024-01-02` a timestamp) and this
//! project's own reader YAML 1.2: a string is written plain only when both read it as
//! that same string. serde_yaml_ng writes for YAML 1.2 only (`on` unquoted), hence this.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One document, ending with a newline.
pub fn document(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0, false),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// `continues_line`: the first entry goes on the current line (after `- `).
fn mapping(out: &mut String, map: &Map<String, Value>, indent: usize, mut continues_line: bool) {
    for (key, value) in map {
        if !std::mem::take(&mut continues_line) {
            pad(out, indent);
        }
        out.push_str(&scalar(key));
        out.push(':');
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(out, inner, indent + 2, false);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                sequence(out, items, indent, false);
            }
            other => {
                out.push(' ');
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

fn sequence(out: &mut String, items: &[Value], indent: usize, mut continues_line: bool) {
    for item in items {
        if !std::mem::take(&mut continues_line) {
            pad(out, indent);
        }
        out.push_str("- ");
        match item {
            Value::Object(inner) if !inner.is_empty() => mapping(out, inner, indent + 2, true),
            Value::Array(inner) if !inner.is_empty() => sequence(out, inner, indent + 2, true),
            other => {
                out.push_str(&inline(other));
                out.push('\n');
            }
        }
    }
}

/// A value written on one line: scalars, `{}` and `[]`.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// `text` plain when every YAML reader takes it for that string, else double-quoted.
pub fn scalar(text: &str) -> String {
    if plain_is_a_string(text) {
        text.to_owned()
    } else {
        double_quoted(text)
    }
}

/// Letters, digits and `-._/:@+=` only, starting with a letter or digit, not ending
/// with `:` (a key), and not a word or number of YAML 1.1 or 1.2. Stricter than YAML
/// needs (a space is allowed there): quoting more is never wrong.
fn plain_is_a_string(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/:@+=".contains(c))
        && !text.ends_with(':')
        && !is_reserved_word(text)
        && !(first.is_ascii_digit() && is_number_or_time(text))
}

/// Null and boolean spellings of YAML 1.1 (kubectl) and 1.2.
fn is_reserved_word(text: &str) -> bool {
    const WORDS: [&str; 10] = [
        "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~",
    ];
    WORDS.iter().any(|word| {
        text == *word
            || text == word.to_ascii_uppercase()
            || text.get(..1).is_some_and(|head| {
                head == word[..1].to_ascii_uppercase() && text[1..] == word[1..]
            })
    })
}

/// Integers (decimal, octal `017`, `0o17`, `0x1f`, `0b11`, with `_`), floats (`1.5`,
/// `1e3`, `1.`), sexagesimal numbers (`64512:1`: YAML 1.1 reads 3,870,721; Go quotes
/// them) and timestamps (`2024-01-02...`).
fn is_number_or_time(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| *c != '_').collect();
    let integer = compact.bytes().all(|b| b.is_ascii_digit())
        || [
            ("0x", 16),
            ("0X", 16),
            ("0o", 8),
            ("0O", 8),
            ("0b", 2),
            ("0B", 2),
        ]
        .iter()
        .any(|(prefix, radix)| {
            compact.strip_prefix(prefix).is_some_and(|digits| {
                !digits.is_empty() && digits.chars().all(|c| c.is_digit(*radix))
            })
        });
    integer || is_float(&compact) || is_sexagesimal(text) || is_timestamp(text)
}

/// `[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?` (the text starts with a digit).
fn is_float(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    !whole.is_empty() && digits(whole) && digits(fraction) && exponent_ok
}

/// `[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?`.
fn is_sexagesimal(text: &str) -> bool {
    let (main, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut parts = main.split(':');
    let head = parts.next().unwrap_or_default();
    let mut rest = parts.peekable();
    rest.peek().is_some()
        && head.bytes().all(|b| b.is_ascii_digit() || b == b'_')
        && rest.all(|part| {
            let bytes = part.as_bytes();
            match bytes {
                [digit] => digit.is_ascii_digit(),
                [tens, digit] => (b'0'..=b'5').contains(tens) && digit.is_ascii_digit(),
                _ => false,
            }
        })
        && fraction.bytes().all(|b| b.is_ascii_digit() || b == b'_')
}

/// Starts with `YYYY-M-D`.
fn is_timestamp(text: &str) -> bool {
    let mut parts = text.splitn(3, '-');
    let numeric = |part: Option<&str>, lengths: std::ops::RangeInclusive<usize>| {
        part.is_some_and(|p| lengths.contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let year = numeric(parts.next(), 4..=4);
    let month = numeric(parts.next(), 1..=2);
    let day = parts.next().is_some_and(|rest| {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        (1..=2).contains(&digits)
    });
    year && month && day
}

/// A double-quoted scalar; control characters and Unicode line breaks escaped (YAML 1.1
/// folds U+0085, U+2028, U+2029 as line breaks).
fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_plain_only_when_every_reader_takes_them_for_strings() {
        let cases = [
            // Plain, as Go writes them in MetalLB's golden files.
            ("10.0.0.1", "10.0.0.1"),
            ("192.168.0.150-192.168.0.200", "192.168.0.150-192.168.0.200"),
            ("fc00:f853:0ccd:e799::/124", "fc00:f853:0ccd:e799::/124"),
            ("1m30s", "1m30s"),
            ("2m0s", "2m0s"),
            ("1234:5678", "1234:5678"),
            ("65535:65281", "65535:65281"),
            ("no-export", "no-export"),
            ("kubernetes.io/hostname", "kubernetes.io/hostname"),
            ("In", "In"),
            ("0ccd", "0ccd"),
            ("large:1:2:3", "large:1:2:3"),
            // Sexagesimal in YAML 1.1: quoted, as Go quotes "64512:1".
            ("64512:1", "\"64512:1\""),
            ("12:30", "\"12:30\""),
            ("1:2:3", "\"1:2:3\""),
            // Booleans and nulls of YAML 1.1 or 1.2.
            ("yes", "\"yes\""),
            ("Yes", "\"Yes\""),
            ("YES", "\"YES\""),
            ("on", "\"on\""),
            ("Off", "\"Off\""),
            ("y", "\"y\""),
            ("N", "\"N\""),
            ("true", "\"true\""),
            ("False", "\"False\""),
            ("null", "\"null\""),
            ("NULL", "\"NULL\""),
            ("~", "\"~\""),
            ("", "\"\""),
            ("yES", "yES"),
            ("only", "only"),
            // Numbers.
            ("64512", "\"64512\""),
            ("007", "\"007\""),
            ("1_000", "\"1_000\""),
            ("0x1f", "\"0x1f\""),
            ("0o17", "\"0o17\""),
            ("0b101", "\"0b101\""),
            ("1.5", "\"1.5\""),
            ("1.", "\"1.\""),
            ("1e3", "\"1e3\""),
            ("1.5E-3", "\"1.5E-3\""),
            ("2024-01-02", "\"2024-01-02\""),
            ("2024-1-2T10:00:00Z", "\"2024-1-2T10:00:00Z\""),
            // Syntax: indicators, spaces, a trailing colon, control characters.
            ("-x", "\"-x\""),
            ("*alias", "\"*alias\""),
            ("oh god how do I BGP", "\"oh god how do I BGP\""),
            ("fe80::", "\"fe80::\""),
            ("a\"b\\c", "\"a\\\"b\\\\c\""),
            ("line\nbreak", "\"line\\nbreak\""),
            ("bell\u{7}", "\"bell\\u0007\""),
            ("sep\u{2028}", "\"sep\\u2028\""),
            ("café", "\"café\""),
        ];
        for (text, want) in cases {
            assert_eq!(scalar(text), want, "scalar({text:?})");
            // Whatever the form, this project's reader gets the string back.
            let read: String = serde_yaml_ng::from_str(&scalar(text)).unwrap();
            assert_eq!(read, text);
        }
    }

    #[test]
    fn documents_are_written_as_go_writes_them() {
        let value = serde_json::json!({
            "kind": "BGPPeer",
            "spec": {
                "nodeSelectors": [
                    {
                        "matchLabels": {"kubernetes.io/hostname": "prod-01"},
                        "matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm"]}
                        ]
                    },
                    {}
                ],
                "myASN": 64512,
                "ebgpMultiHop": true,
                "nested": [["a", "b"], []],
                "empty": {},
            },
            "apiVersion": "metallb.io/v1beta2",
        });
        assert_eq!(
            document(&value),
            "apiVersion: metallb.io/v1beta2\n\
             kind: BGPPeer\n\
             spec:\n  \
               ebgpMultiHop: true\n  \
               empty: {}\n  \
               myASN: 64512\n  \
               nested:\n  \
               - - a\n    \
                 - b\n  \
               - []\n  \
               nodeSelectors:\n  \
               - matchExpressions:\n    \
                 - key: kubernetes.io/arch\n      \
                   operator: In\n      \
                   values:\n      \
                   - amd64\n      \
                   - arm\n    \
                 matchLabels:\n      \
                   kubernetes.io/hostname: prod-01\n  \
               - {}\n"
        );
        let read: serde_json::Value = serde_yaml_ng::from_str(&document(&value)).unwrap();
        assert_eq!(read, value);
    }
}
