//! Scrubbing secret values out of text before it is written or printed.
//!
//! A [`Redactor`] knows the forms a real leak of a value would take (see
//! [`Redactor::new`]) and finds all of them in one pass (Aho-Corasick,
//! leftmost-longest, so a value that contains another is scrubbed whole).
//! What it cannot catch is any other transformation (a value reversed,
//! split, hashed, encrypted, encoded twice, or hex in mixed case): redaction is
//! the last line of defence. The real ones are that a connector holds a
//! placeholder, not the value, and that responses are scrubbed of the values
//! before the connector reads them (`sandbox::caps::secrets`).

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Values shorter than this are not scrubbed: replacing every "abc" would
/// mangle logs while protecting nothing a guess would not find.
pub const MIN_SECRET_LEN: usize = 6;

/// The shortest piece of a base64 encoding searched for inside a longer
/// encoding (`base64("user:" + value)`): shorter pieces would match
/// ordinary base64 text by chance.
const MIN_BASE64_CORE: usize = 8;

/// RFC 3986 percent-encoding of a component: everything but the unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`).
const RFC3986_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// RFC 3986 path segment: unreserved plus sub-delims, `:` and `@` kept.
const RFC3986_SEGMENT: &AsciiSet = &RFC3986_COMPONENT
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

/// Every byte escaped (even letters and digits).
fn percent_all(value: &str) -> String {
    value.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// `%XX` escapes in lowercase hex (`%2f` rather than `%2F`).
fn lower_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut after = 0;
    for c in s.chars() {
        if c == '%' {
            after = 2;
            out.push(c);
        } else if after > 0 {
            after -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Every UTF-16 unit as a `\uXXXX` JSON escape.
fn json_u_escapes(value: &str, upper: bool) -> String {
    value
        .encode_utf16()
        .map(|u| {
            if upper {
                format!("\\u{u:04X}")
            } else {
                format!("\\u{u:04x}")
            }
        })
        .collect()
}

/// The pieces of `value`'s base64 that appear whatever precedes it: for each
/// of the three alignments, the encoding of the whole 3-byte groups of the
/// value. This catches `base64("user:" + value)` (HTTP Basic) and a value
/// inside any longer base64 text.
fn base64_cores(value: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for skip in 0..3 {
        if value.len() <= skip {
            break;
        }
        let rest = &value[skip..];
        let whole = rest.len() / 3 * 3;
        if whole == 0 {
            continue;
        }
        let core = &rest[..whole];
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let enc = engine.encode(core);
            if enc.len() >= MIN_BASE64_CORE {
                out.push(enc);
            }
        }
    }
    out
}

/// Every form of `value` the redactor looks for.
fn forms(value: &str) -> Vec<String> {
    let json = serde_json::to_string(value).expect("strings serialize");
    let bytes = value.as_bytes();
    let mut out = vec![
        value.to_owned(),
        json[1..json.len() - 1].to_owned(),
        json_u_escapes(value, false),
        json_u_escapes(value, true),
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
        bytes.iter().map(|b| format!("{b:02X}")).collect(),
        STANDARD.encode(value),
        STANDARD_NO_PAD.encode(value),
        URL_SAFE.encode(value),
        URL_SAFE_NO_PAD.encode(value),
        url::form_urlencoded::byte_serialize(bytes).collect(),
    ];
    for set in [NON_ALPHANUMERIC, RFC3986_COMPONENT, RFC3986_SEGMENT] {
        let upper = percent_encoding::utf8_percent_encode(value, set).to_string();
        out.push(lower_escapes(&upper));
        out.push(upper);
    }
    let all = percent_all(value);
    out.push(lower_escapes(&all));
    out.push(all);
    out.extend(base64_cores(bytes));
    out
}

struct Compiled {
    matcher: AhoCorasick,
    /// The field of each pattern.
    field_of: Vec<usize>,
    fields: Vec<String>,
    markers: Vec<String>,
}

/// Replaces every known form of a run's secret values with `[REDACTED:<field>]`.
///
/// Forms of each value: raw; JSON-escaped, and every character as a `\u`
/// escape (lowercase and uppercase hex); hex (both cases); base64 and
/// base64url, padded or not, and the alignment-independent pieces of its
/// base64 (so `base64("user:" + value)`, the HTTP Basic form, is caught);
/// percent-encoding with every non-alphanumeric escaped, RFC 3986 component
/// (unreserved `-._~` kept), RFC 3986 path segment, every byte escaped, each
/// with uppercase and lowercase escapes, and form encoding (space as `+`).
#[derive(Clone, Default)]
pub struct Redactor {
    compiled: Option<Arc<Compiled>>,
    /// Kept so the patterns' text is zeroed when the last clone goes.
    _patterns: Arc<Vec<Zeroizing<String>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self._patterns.len())
    }
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut patterns: Vec<Zeroizing<String>> = Vec::new();
        let mut field_of = Vec::new();
        let mut fields = Vec::new();
        for (field, value) in secrets {
            if value.len() < MIN_SECRET_LEN {
                continue;
            }
            let index = fields.len();
            fields.push(field.to_owned());
            for form in forms(value) {
                if form.len() >= MIN_SECRET_LEN && !patterns.iter().any(|p| **p == form) {
                    patterns.push(Zeroizing::new(form));
                    field_of.push(index);
                }
            }
        }
        if patterns.is_empty() {
            return Redactor::default();
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(|p| p.as_bytes()))
            .expect("secret patterns build a matcher");
        let markers = fields.iter().map(|f| format!("[REDACTED:{f}]")).collect();
        Redactor {
            compiled: Some(Arc::new(Compiled {
                matcher,
                field_of,
                fields,
                markers,
            })),
            _patterns: Arc::new(patterns),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.compiled.is_none()
    }

    /// `text` with every form of every value replaced by its field's marker.
    pub fn redact(&self, text: &str) -> String {
        match &self.compiled {
            Some(c) if c.matcher.is_match(text) => {
                let mut out = String::with_capacity(text.len());
                c.matcher.replace_all_with(text, &mut out, |m, _, dst| {
                    dst.push_str(&c.markers[c.field_of[m.pattern().as_usize()]]);
                    true
                });
                out
            }
            _ => text.to_owned(),
        }
    }

    /// Whether `text` holds a form of a value.
    pub fn finds(&self, text: &[u8]) -> bool {
        self.compiled.as_ref().is_some_and(|c| c.matcher.is_match(text))
    }

    /// `bytes` with every form of every value replaced by `with(field)`, or
    /// `None` when there is none.
    pub fn replace_bytes(&self, bytes: &[u8], with: impl Fn(&str) -> String) -> Option<Vec<u8>> {
        let c = self.compiled.as_ref()?;
        if !c.matcher.is_match(bytes) {
            return None;
        }
        let replacement: Vec<String> = c.fields.iter().map(|f| with(f)).collect();
        let mut out = Vec::with_capacity(bytes.len());
        c.matcher.replace_all_with_bytes(bytes, &mut out, |m, _, dst| {
            dst.extend_from_slice(replacement[c.field_of[m.pattern().as_usize()]].as_bytes());
            true
        });
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_raw_base64_url_and_json_forms_longest_first() {
        let secret = "p@ss w\"ord/42";
        let r = Redactor::new([("password", secret), ("pin", "1234"), ("inner", "ss w\"ord")]);
        let text = format!(
            "raw={secret} b64={} url={} json={} pin=1234",
            STANDARD.encode(secret),
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC),
            serde_json::to_string(secret).unwrap()
        );
        let out = r.redact(&text);
        assert!(!out.contains("ss w"), "{out}");
        assert!(!out.contains(&STANDARD.encode(secret)));
        assert_eq!(out.matches("[REDACTED:password]").count(), 4, "{out}");
        assert!(
            out.contains("pin=1234"),
            "values under the minimum length are left alone"
        );
    }

    /// Every encoding the redactor claims, each in its own text.
    #[test]
    fn redaction_covers_percent_basic_unicode_escape_hex_and_base64_variants() {
        let secret = "s3cr3t-v.a_l~ue/+=?&é";
        let r = Redactor::new([("token", secret)]);
        let rfc3986 = percent_encoding::utf8_percent_encode(secret, RFC3986_COMPONENT).to_string();
        assert!(rfc3986.contains("-") && rfc3986.contains("~"), "{rfc3986}");
        let leaks = [
            rfc3986.clone(),
            lower_escapes(&rfc3986),
            percent_encoding::utf8_percent_encode(secret, NON_ALPHANUMERIC)
                .to_string()
                .to_lowercase(),
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            percent_all(secret).to_lowercase(),
            format!("Basic {}", STANDARD.encode(format!("alice:{secret}"))),
            format!("Basic {}", STANDARD.encode(format!("bob:{secret}"))),
            format!("Basic {}", STANDARD.encode(format!("carl:{secret}"))),
            json_u_escapes(secret, false),
            json_u_escapes(secret, true),
            secret.bytes().map(|b| format!("{b:02x}")).collect(),
            secret.bytes().map(|b| format!("{b:02X}")).collect(),
            STANDARD.encode(secret),
            STANDARD_NO_PAD.encode(secret),
            URL_SAFE.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            format!("token={}", URL_SAFE_NO_PAD.encode(format!("xx{secret}yy"))),
        ];
        for leak in leaks {
            let out = r.redact(&format!("before {leak} after"));
            assert!(out.contains("[REDACTED:token]"), "not caught: {leak} -> {out}");
            assert!(!out.contains(&leak), "{leak} -> {out}");
        }
        assert_eq!(r.redact("nothing to see"), "nothing to see");
    }

    #[test]
    fn bytes_are_replaced_with_the_given_text() {
        let r = Redactor::new([("token", "tok-value-123")]);
        let out = r.replace_bytes(b"a tok-value-123 b", |f| format!("<{f}>")).unwrap();
        assert_eq!(out, b"a <token> b");
        assert!(r.replace_bytes(b"clean", |f| f.to_owned()).is_none());
    }
}
