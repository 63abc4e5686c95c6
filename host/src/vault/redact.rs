//! Scrubbing secret values out of text before it is written or printed.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

/// Values shorter than this are not scrubbed: replacing every "abc" would
/// mangle logs while protecting nothing a guess would not find.
pub const MIN_SECRET_LEN: usize = 6;

/// Replaces every known form of a run's secret values with `[REDACTED:<field>]`.
///
/// Forms: the raw value, base64 (standard and URL-safe, padded or not),
/// percent-encoded, and JSON-escaped; the longest form is replaced first, so
/// a value that contains another is scrubbed whole.
#[derive(Clone, Default)]
pub struct Redactor {
    forms: Vec<(Zeroizing<String>, String)>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.forms.len())
    }
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut forms = Vec::new();
        for (field, value) in secrets {
            if value.len() < MIN_SECRET_LEN {
                continue;
            }
            let marker = format!("[REDACTED:{field}]");
            let json = serde_json::to_string(value).expect("strings serialize");
            let candidates = [
                value.to_owned(),
                STANDARD.encode(value),
                STANDARD_NO_PAD.encode(value),
                URL_SAFE.encode(value),
                URL_SAFE_NO_PAD.encode(value),
                percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string(),
                json[1..json.len() - 1].to_owned(),
            ];
            for c in candidates {
                if c.len() >= MIN_SECRET_LEN && !forms.iter().any(|(f, _): &(Zeroizing<String>, String)| **f == c) {
                    forms.push((Zeroizing::new(c), marker.clone()));
                }
            }
        }
        forms.sort_by_key(|f| std::cmp::Reverse(f.0.len()));
        Redactor { forms }
    }

    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (form, marker) in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), marker);
            }
        }
        out
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
}
