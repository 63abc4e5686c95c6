//! Detached ed25519 signatures over plugin files.
//!
//! `<name>.wasm.sig` holds the signature of every byte of `<name>.wasm` (the
//! packed file, so an embedded manifest is covered too), as 64 raw bytes or as
//! 128 hex digits. Trusted public keys come from the deployment's
//! configuration, as hex.

use ed25519_dalek::{Signature, VerifyingKey};
use std::fmt;
use std::path::{Path, PathBuf};

/// What the host does with signatures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignaturePolicy {
    /// Signatures are not read.
    #[default]
    Off,
    /// Unsigned or badly signed plugins load, with a warning.
    Warn,
    /// Unsigned or badly signed plugins are refused.
    Require,
}

/// A trusted key that is not an ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an ed25519 public key: {0}")]
pub struct KeyError(String);

/// Public keys whose signatures the deployment accepts.
#[derive(Clone, Default)]
pub struct TrustedKeys(Vec<VerifyingKey>);

impl fmt::Debug for TrustedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|k| hex(k.as_bytes())))
            .finish()
    }
}

impl TrustedKeys {
    /// Parse hex public keys (64 hex digits each).
    pub fn from_hex<S: AsRef<str>>(keys: impl IntoIterator<Item = S>) -> Result<Self, KeyError> {
        let mut out = Vec::new();
        for k in keys {
            let k = k.as_ref().trim();
            if k.is_empty() {
                continue; // an empty list entry, e.g. an empty environment variable
            }
            let bytes: [u8; 32] = unhex(k)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| KeyError(format!("{k:?} is not 64 hex digits")))?;
            out.push(VerifyingKey::from_bytes(&bytes).map_err(|e| KeyError(format!("{k}: {e}")))?);
        }
        Ok(TrustedKeys(out))
    }

    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        TrustedKeys(keys.into_iter().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the signature of one file came to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SignatureStatus {
    /// The policy is off: the signature was not looked at.
    NotChecked,
    /// Signed by this trusted key (hex).
    Valid { key: String },
    /// No `<name>.wasm.sig`.
    Missing,
    /// A signature file exists, but it is malformed or no trusted key made it.
    Invalid { reason: String },
}

/// `<name>.wasm` → `<name>.wasm.sig`.
pub fn sig_path(wasm: &Path) -> PathBuf {
    let mut name = wasm.file_name().unwrap_or_default().to_os_string();
    name.push(".sig");
    wasm.with_file_name(name)
}

fn parse(sig: &[u8]) -> Result<Signature, String> {
    let raw: [u8; 64] = if sig.len() == 64 {
        sig.try_into().expect("64 bytes")
    } else {
        std::str::from_utf8(sig)
            .ok()
            .and_then(|s| unhex(s.trim()))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "the signature file is neither 64 raw bytes nor 128 hex digits".to_string())?
    };
    Ok(Signature::from_bytes(&raw))
}

/// Check `sig` (the signature file's bytes, if there is one) over `bytes`.
pub fn check(bytes: &[u8], sig: Option<&[u8]>, keys: &TrustedKeys) -> SignatureStatus {
    let Some(sig) = sig else {
        return SignatureStatus::Missing;
    };
    let sig = match parse(sig) {
        Ok(s) => s,
        Err(reason) => return SignatureStatus::Invalid { reason },
    };
    if keys.is_empty() {
        return SignatureStatus::Invalid {
            reason: "no trusted keys are configured".into(),
        };
    }
    match keys.0.iter().find(|k| k.verify_strict(bytes, &sig).is_ok()) {
        Some(k) => SignatureStatus::Valid { key: hex(k.as_bytes()) },
        None => SignatureStatus::Invalid {
            reason: "the signature does not verify with any trusted key".into(),
        },
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Hex (either case) → bytes; `None` for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn raw_and_hex_signatures_verify_and_a_stranger_key_does_not() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let trusted = TrustedKeys::from_hex([hex(key.verifying_key().as_bytes())]).unwrap();
        let sig = key.sign(b"plugin bytes").to_bytes();
        assert!(matches!(
            check(b"plugin bytes", Some(&sig), &trusted),
            SignatureStatus::Valid { .. }
        ));
        let as_hex = format!("{}\n", hex(&sig));
        assert!(matches!(
            check(b"plugin bytes", Some(as_hex.as_bytes()), &trusted),
            SignatureStatus::Valid { .. }
        ));
        assert!(matches!(
            check(b"other bytes", Some(&sig), &trusted),
            SignatureStatus::Invalid { .. }
        ));
        let stranger = TrustedKeys::from_keys([SigningKey::from_bytes(&[8; 32]).verifying_key()]);
        assert!(matches!(
            check(b"plugin bytes", Some(&sig), &stranger),
            SignatureStatus::Invalid { .. }
        ));
        assert!(matches!(
            check(b"plugin bytes", Some(b"junk"), &trusted),
            SignatureStatus::Invalid { .. }
        ));
        assert_eq!(check(b"plugin bytes", None, &trusted), SignatureStatus::Missing);
        assert!(TrustedKeys::from_hex(["abcd"]).is_err());
        assert_eq!(sig_path(Path::new("/p/x.wasm")), Path::new("/p/x.wasm.sig"));
    }
}
