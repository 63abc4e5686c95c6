//! Small text helpers every provider needs: query encoding and record keys.

use pdpp_sdk::Value;

/// Percent-encode a query parameter value (everything but RFC 3986's
/// unreserved characters).
///
/// ```
/// assert_eq!(pdpp_provider::encode("updated:>=2026-01-01"), "updated%3A%3E%3D2026-01-01");
/// ```
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A JSON value as a record key: a non-empty string as it is, a number in
/// decimal; anything else is no key.
pub fn key_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdpp_sdk::json;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            encode("type:pr author:me updated:>=2026-01-01T00:00:00Z"),
            "type%3Apr%20author%3Ame%20updated%3A%3E%3D2026-01-01T00%3A00%3A00Z"
        );
        assert_eq!(encode("a-b.c_d~é"), "a-b.c_d~%C3%A9");
    }

    #[test]
    fn keys_are_non_empty_strings_or_numbers() {
        assert_eq!(key_of(&json!("abc")), Some("abc".into()));
        assert_eq!(key_of(&json!(42)), Some("42".into()));
        assert_eq!(key_of(&json!("")), None);
        assert_eq!(key_of(&json!(null)), None);
        assert_eq!(key_of(&json!({ "id": 1 })), None);
    }
}
