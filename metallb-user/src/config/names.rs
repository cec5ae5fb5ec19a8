//! The API server's rules for names, label keys and values, and annotation keys
//! (`k8s.io/apimachinery/pkg/util/validation`): in standalone mode nobody else checks
//! them, and an object the API server would refuse could never exist in a cluster.
//! Each check says what is wrong, to follow `field "value": `.

/// Longest DNS-1123 (and DNS-1035) label: Namespace and Service names, label values,
/// the name part of label keys.
pub const LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain: most object names, label key prefixes.
pub const SUBDOMAIN_MAX: usize = 253;
/// Longest text shown whole in a message; longer text is shortened by [`shorten`].
pub const SHOWN_MAX: usize = 300;
/// Most bytes the annotations of one object may hold (keys and values).
pub const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// `text` if it is at most [`SHOWN_MAX`] characters, else its beginning and its length:
/// a message about a 65,000-character name must not hold 65,000 characters.
pub fn shorten(text: &str) -> String {
    let length = text.chars().count();
    if length <= SHOWN_MAX {
        return text.to_owned();
    }
    let head: String = text.chars().take(60).collect();
    format!("{head}… ({length} characters)")
}

fn too_long(text: &str, max: usize) -> Option<String> {
    let length = text.chars().count();
    (length > max).then(|| format!("must be no more than {max} characters (has {length})"))
}

fn is_lower_alphanumeric(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, without the length limit.
fn is_dns_label_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.first().is_some_and(|b| is_lower_alphanumeric(*b))
        && bytes.last().is_some_and(|b| is_lower_alphanumeric(*b))
        && bytes
            .iter()
            .all(|b| is_lower_alphanumeric(*b) || *b == b'-')
}

/// RFC 1123 label: Namespace names (and Service port names).
pub fn dns1123_label(text: &str) -> Result<(), String> {
    if let Some(message) = too_long(text, LABEL_MAX) {
        return Err(message);
    }
    if !is_dns_label_text(text) {
        return Err("must be a lowercase RFC 1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit".into());
    }
    Ok(())
}

/// RFC 1123 subdomain: the names of IPAddressPools, L2Advertisements, Nodes; label key
/// prefixes. Dot-separated labels, 253 characters in all (no limit per label, as in
/// Kubernetes).
pub fn dns1123_subdomain(text: &str) -> Result<(), String> {
    if let Some(message) = too_long(text, SUBDOMAIN_MAX) {
        return Err(message);
    }
    if !text.split('.').all(is_dns_label_text) {
        return Err("must be a lowercase RFC 1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit".into());
    }
    Ok(())
}

/// RFC 1035 label: Service names (they become DNS names, which must start with a
/// letter).
pub fn dns1035_label(text: &str) -> Result<(), String> {
    if let Some(message) = too_long(text, LABEL_MAX) {
        return Err(message);
    }
    if !(is_dns_label_text(text) && text.as_bytes()[0].is_ascii_lowercase()) {
        return Err("must be a lowercase RFC 1035 label: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit".into());
    }
    Ok(())
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, without the length limit.
fn is_label_text(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A qualified name, `name` or `prefix/name`: label keys, annotation keys,
/// `spec.loadBalancerClass`. The prefix is a DNS subdomain; the name up to 63
/// alphanumerics, '-', '_' or '.', starting and ending alphanumeric.
pub fn qualified_name(text: &str) -> Result<(), String> {
    let (prefix, name) = match text.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, text),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            return Err("has an empty prefix before '/'".into());
        }
        if name.contains('/') {
            return Err("has more than one '/'".into());
        }
        if let Err(why) = dns1123_subdomain(prefix) {
            return Err(format!(
                "has an invalid prefix {:?}: {why}",
                shorten(prefix)
            ));
        }
    }
    if name.is_empty() {
        return Err("has an empty name".into());
    }
    if let Some(message) = too_long(name, LABEL_MAX) {
        return Err(format!("name part {message}"));
    }
    if !is_label_text(name) {
        return Err(
            "name part must be alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
                .into(),
        );
    }
    Ok(())
}

/// A label value: empty, or up to 63 alphanumerics, '-', '_' or '.', starting and
/// ending alphanumeric.
pub fn label_value(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    if let Some(message) = too_long(text, LABEL_MAX) {
        return Err(message);
    }
    if !is_label_text(text) {
        return Err(
            "must be alphanumerics, '-', '_' or '.', starting and ending alphanumeric".into(),
        );
    }
    Ok(())
}

/// An IANA service name, what a named `targetPort` is: up to 15 lowercase letters,
/// digits and '-', with at least one letter, no '-' at either end and no "--".
pub fn iana_service_name(text: &str) -> Result<(), String> {
    if let Some(message) = too_long(text, 15) {
        return Err(message);
    }
    let bytes = text.as_bytes();
    let valid = !text.is_empty()
        && bytes
            .iter()
            .all(|b| is_lower_alphanumeric(*b) || *b == b'-')
        && bytes.iter().any(u8::is_ascii_lowercase)
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--");
    if valid {
        Ok(())
    } else {
        Err("must be an IANA service name: lowercase letters, digits and '-', with at least one letter, no '-' at either end and no \"--\"".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Rule = fn(&str) -> Result<(), String>;

    /// (rule, text, expected error fragment; empty = valid)
    fn table() -> Vec<(&'static str, Rule, String, &'static str)> {
        let s = |text: &str| text.to_owned();
        vec![
            ("label", dns1123_label, s("a"), ""),
            ("label", dns1123_label, s("0abc-9"), ""),
            ("label", dns1123_label, "a".repeat(63), ""),
            (
                "label",
                dns1123_label,
                "a".repeat(64),
                "no more than 63 characters (has 64)",
            ),
            ("label", dns1123_label, s(""), "lowercase RFC 1123 label"),
            ("label", dns1123_label, s("Abc"), "lowercase RFC 1123 label"),
            ("label", dns1123_label, s("a-"), "lowercase RFC 1123 label"),
            ("label", dns1123_label, s("-a"), "lowercase RFC 1123 label"),
            ("label", dns1123_label, s("a.b"), "lowercase RFC 1123 label"),
            ("label", dns1123_label, s("a_b"), "lowercase RFC 1123 label"),
            ("subdomain", dns1123_subdomain, s("pool-1.example.com"), ""),
            ("subdomain", dns1123_subdomain, s("0"), ""),
            // No per-label limit in Kubernetes' subdomain rule.
            ("subdomain", dns1123_subdomain, "a".repeat(100), ""),
            ("subdomain", dns1123_subdomain, "a".repeat(253), ""),
            (
                "subdomain",
                dns1123_subdomain,
                "a".repeat(254),
                "no more than 253 characters (has 254)",
            ),
            (
                "subdomain",
                dns1123_subdomain,
                s("a..b"),
                "RFC 1123 subdomain",
            ),
            (
                "subdomain",
                dns1123_subdomain,
                s(".a"),
                "RFC 1123 subdomain",
            ),
            (
                "subdomain",
                dns1123_subdomain,
                s("a."),
                "RFC 1123 subdomain",
            ),
            ("subdomain", dns1123_subdomain, s("A"), "RFC 1123 subdomain"),
            (
                "subdomain",
                dns1123_subdomain,
                s("a b"),
                "RFC 1123 subdomain",
            ),
            (
                "subdomain",
                dns1123_subdomain,
                s("a\u{1b}[31m"),
                "RFC 1123 subdomain",
            ),
            ("subdomain", dns1123_subdomain, s("é"), "RFC 1123 subdomain"),
            ("1035", dns1035_label, s("web"), ""),
            ("1035", dns1035_label, s("web-1"), ""),
            ("1035", dns1035_label, s("1web"), "starting with a letter"),
            ("1035", dns1035_label, s("web.a"), "RFC 1035 label"),
            ("1035", dns1035_label, "w".repeat(64), "no more than 63"),
            ("1035", dns1035_label, s("web\r\n"), "RFC 1035 label"),
            ("qualified", qualified_name, s("app"), ""),
            ("qualified", qualified_name, s("App_1.x-Y"), ""),
            ("qualified", qualified_name, s("example.com/app"), ""),
            ("qualified", qualified_name, s("kubernetes.io/hostname"), ""),
            ("qualified", qualified_name, s("/app"), "empty prefix"),
            ("qualified", qualified_name, s("example.com/"), "empty name"),
            ("qualified", qualified_name, s(""), "empty name"),
            ("qualified", qualified_name, s("a/b/c"), "more than one '/'"),
            (
                "qualified",
                qualified_name,
                s("Example.com/app"),
                "invalid prefix \"Example.com\"",
            ),
            (
                "qualified",
                qualified_name,
                s("bad key"),
                "name part must be",
            ),
            ("qualified", qualified_name, s("-app"), "name part must be"),
            (
                "qualified",
                qualified_name,
                "k".repeat(64),
                "name part must be no more than 63",
            ),
            ("value", label_value, s(""), ""),
            ("value", label_value, s("web-1.a_b"), ""),
            ("value", label_value, "v".repeat(63), ""),
            (
                "value",
                label_value,
                "v".repeat(64),
                "no more than 63 characters",
            ),
            (
                "value",
                label_value,
                s("bad value"),
                "must be alphanumerics",
            ),
            ("value", label_value, s("_a"), "must be alphanumerics"),
            ("iana", iana_service_name, s("http"), ""),
            ("iana", iana_service_name, s("h2c-1"), ""),
            ("iana", iana_service_name, s("8080"), "at least one letter"),
            ("iana", iana_service_name, s("a--b"), "IANA service name"),
            ("iana", iana_service_name, s("-a"), "IANA service name"),
            ("iana", iana_service_name, s("HTTP"), "IANA service name"),
            (
                "iana",
                iana_service_name,
                s("abcdefghijklmnop"),
                "no more than 15",
            ),
        ]
    }

    #[test]
    fn name_rules_table() {
        for (rule, check, text, want) in table() {
            let got = check(&text);
            if want.is_empty() {
                assert_eq!(got, Ok(()), "{rule} {text:?}");
            } else {
                let err = got.expect_err(&format!("{rule} {text:?} must be refused"));
                assert!(
                    err.contains(want),
                    "{rule} {text:?}: {err:?} lacks {want:?}"
                );
            }
        }
    }

    #[test]
    fn long_text_is_shortened_with_its_length() {
        assert_eq!(shorten("pool"), "pool");
        assert_eq!(shorten(&"p".repeat(SHOWN_MAX)), "p".repeat(SHOWN_MAX));
        let long = "p".repeat(65_000);
        assert_eq!(
            shorten(&long),
            format!("{}… (65000 characters)", "p".repeat(60))
        );
        // Characters, not bytes: a multi-byte character is never cut.
        assert_eq!(
            shorten(&"é".repeat(400)),
            format!("{}… (400 characters)", "é".repeat(60))
        );
    }
}
