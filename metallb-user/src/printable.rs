//! Text that came from a file or the system, made safe to print on a terminal: a name
//! must not be able to move the cursor, recolour, rewrite a line or hide text.

use std::{borrow::Cow, fmt::Write as _};

/// `text` with control characters (escapes, carriage returns, newlines, tabs, C1) and
/// the invisible bidirectional overrides escaped as Rust writes them (`\u{1b}`, `\r`,
/// `\n`); borrowed unchanged when there is none.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        // Bidirectional marks, embeddings, overrides and isolates ("Trojan Source").
        || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_is_kept() {
        let cases = [
            ("default/web", "default/web"),
            ("caf\u{e9} \u{1f680}", "caf\u{e9} \u{1f680}"),
            ("\x1b[31mred\x1b[0m", "\\u{1b}[31mred\\u{1b}[0m"),
            ("a\rb\nc\td", "a\\rb\\nc\\td"),
            ("\u{7f}\u{9b}", "\\u{7f}\\u{9b}"),
            ("x\u{202e}y", "x\\u{202e}y"),
        ];
        for (input, expected) in cases {
            assert_eq!(printable(input), expected, "{input:?}");
        }
        assert!(matches!(printable("plain"), Cow::Borrowed("plain")));
    }
}
