//! Sealed, connection-scoped credentials.
//!
//! One 256-bit deployment key (a file created with mode 0600 in the data
//! directory, or one the operator names) seals every credential bundle with
//! AES-256-GCM under a fresh 96-bit nonce. The associated data binds each
//! ciphertext to its connection id, credential kind, field names and format
//! version, so a bundle copied to another connection, or relabelled, does not
//! open. Sub-keys for sealing and for fingerprints are derived from the
//! deployment key with HMAC-SHA256; the key itself is never logged, printed
//! or stored anywhere else. Plaintext lives in zeroizing buffers.

mod redact;

pub use redact::Redactor;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

/// The format of the associated data and plaintext; part of every seal.
pub const FORMAT_VERSION: i64 = 1;

/// The name of the key file in the data directory.
pub const KEY_FILE: &str = "vault.key";

/// Credential kinds a connection can hold.
pub const SINGLE_SECRET_KINDS: &[&str] = &["personal_access_token", "api_key", "app_password", "access_token"];
pub const KINDS: &[&str] = &[
    "personal_access_token",
    "api_key",
    "app_password",
    "access_token",
    "username_password",
    "secret_bundle",
];

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the vault key file {0} does not exist")]
    KeyMissing(PathBuf),
    #[error("the vault key file {0} is not a 256-bit key (64 hex characters)")]
    KeyInvalid(PathBuf),
    #[error("cannot read or write the vault key file {path}: {source}")]
    KeyIo { path: PathBuf, source: std::io::Error },
    #[error("credential of connection {connection_id} was sealed under key {sealed_with}, not the loaded key {loaded}")]
    WrongKey {
        connection_id: String,
        sealed_with: String,
        loaded: String,
    },
    #[error(
        "credential of connection {0} does not open: it was altered, or belongs to another connection or field set"
    )]
    OpenFailed(String),
    #[error("unknown credential kind {0:?}")]
    UnknownKind(String),
    #[error("credential kind {kind} needs fields {expected}")]
    FieldsForKind { kind: String, expected: String },
    #[error("a credential field is empty: {0}")]
    EmptyField(String),
}

/// A 256-bit deployment key. Its bytes are zeroed when dropped.
pub struct VaultKey {
    bytes: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VaultKey({})", self.id())
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl VaultKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut()).expect("system randomness");
        VaultKey { bytes }
    }

    /// Read a key file (64 hex characters, surrounding whitespace ignored).
    pub fn read(path: &Path) -> Result<Self, VaultError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(VaultError::KeyMissing(path.into()));
            }
            Err(source) => {
                return Err(VaultError::KeyIo {
                    path: path.into(),
                    source,
                });
            }
        };
        let t = text.trim();
        if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(VaultError::KeyInvalid(path.into()));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        for (i, chunk) in t.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).expect("ascii");
            bytes[i] = u8::from_str_radix(s, 16).map_err(|_| VaultError::KeyInvalid(path.into()))?;
        }
        Ok(VaultKey { bytes })
    }

    /// Write the key to a new file readable by its owner only (0600). Fails
    /// if the file exists: a key is never overwritten.
    pub fn write_new(&self, path: &Path) -> Result<(), VaultError> {
        use std::io::Write;
        let io = |source| VaultError::KeyIo {
            path: path.into(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        let mut text = Zeroizing::new(hex(self.bytes.as_ref()));
        text.push('\n');
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(())
    }

    /// The key at `path`, created (0600) if the file does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, VaultError> {
        match VaultKey::read(path) {
            Err(VaultError::KeyMissing(_)) => {
                let key = VaultKey::generate();
                key.write_new(path)?;
                Ok(key)
            }
            other => other,
        }
    }

    /// A public identifier of the key (not the key): which key sealed a bundle.
    pub fn id(&self) -> String {
        hex(&hmac(self.bytes.as_ref(), &[b"pdpp vault key id v1"])[..8])
    }

    fn seal_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(hmac(self.bytes.as_ref(), &[b"pdpp vault seal key v1"]))
    }

    fn fingerprint_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(hmac(self.bytes.as_ref(), &[b"pdpp vault fingerprint key v1"]))
    }
}

/// The plaintext of one credential: field name → value.
pub struct Bundle {
    pub kind: String,
    pub fields: BTreeMap<String, Zeroizing<String>>,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("kind", &self.kind)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Bundle {
    pub fn new<K: Into<String>, V: Into<String>>(kind: &str, fields: impl IntoIterator<Item = (K, V)>) -> Self {
        Bundle {
            kind: kind.to_owned(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.into(), Zeroizing::new(v.into())))
                .collect(),
        }
    }

    /// The kind is known and the fields fit it; no field is empty.
    pub fn check(&self) -> Result<(), VaultError> {
        if !KINDS.contains(&self.kind.as_str()) {
            return Err(VaultError::UnknownKind(self.kind.clone()));
        }
        let names: Vec<&str> = self.fields.keys().map(String::as_str).collect();
        let fits = match self.kind.as_str() {
            k if SINGLE_SECRET_KINDS.contains(&k) => names.len() == 1,
            "username_password" => names == ["password", "username"],
            _ => !names.is_empty(),
        };
        if !fits {
            let expected = match self.kind.as_str() {
                "username_password" => "username and password",
                "secret_bundle" => "at least one field",
                _ => "exactly one field",
            };
            return Err(VaultError::FieldsForKind {
                kind: self.kind.clone(),
                expected: expected.into(),
            });
        }
        if let Some((name, _)) = self.fields.iter().find(|(_, v)| v.is_empty()) {
            return Err(VaultError::EmptyField(name.clone()));
        }
        Ok(())
    }

    fn plaintext(&self) -> Zeroizing<Vec<u8>> {
        let map: BTreeMap<&str, &str> = self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Zeroizing::new(serde_json::to_vec(&map).expect("strings serialize"))
    }

    pub fn field_names(&self) -> Vec<String> {
        self.fields.keys().cloned().collect()
    }
}

/// A sealed bundle as stored: everything but the plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub kind: String,
    /// Sorted.
    pub field_names: Vec<String>,
    pub format_version: i64,
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
    /// Keyed fingerprint of the plaintext: equal for the same credential.
    pub fingerprint: String,
}

fn associated_data(connection_id: &str, kind: &str, field_names: &[String], version: i64) -> Vec<u8> {
    let mut aad = Vec::new();
    for part in [
        b"pdpp-vault".as_slice(),
        &version.to_be_bytes(),
        connection_id.as_bytes(),
        kind.as_bytes(),
    ] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part);
    }
    for name in field_names {
        aad.extend_from_slice(&(name.len() as u64).to_be_bytes());
        aad.extend_from_slice(name.as_bytes());
    }
    aad
}

impl VaultKey {
    /// Seal a bundle for one connection.
    pub fn seal(&self, connection_id: &str, bundle: &Bundle) -> Result<Sealed, VaultError> {
        bundle.check()?;
        let field_names = bundle.field_names();
        let aad = associated_data(connection_id, &bundle.kind, &field_names, FORMAT_VERSION);
        let cipher = Aes256Gcm::new_from_slice(self.seal_key().as_ref()).expect("32-byte key");
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("system randomness");
        let plaintext = bundle.plaintext();
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption does not fail for in-memory buffers");
        Ok(Sealed {
            kind: bundle.kind.clone(),
            field_names,
            format_version: FORMAT_VERSION,
            key_id: self.id(),
            nonce: nonce.to_vec(),
            ciphertext,
            fingerprint: self.fingerprint(&bundle.kind, &plaintext),
        })
    }

    fn fingerprint(&self, kind: &str, plaintext: &[u8]) -> String {
        hex(&hmac(self.fingerprint_key().as_ref(), &[kind.as_bytes(), plaintext]))
    }

    /// Open a sealed bundle of `connection_id`.
    pub fn open(&self, connection_id: &str, sealed: &Sealed) -> Result<Bundle, VaultError> {
        if sealed.key_id != self.id() {
            return Err(VaultError::WrongKey {
                connection_id: connection_id.to_owned(),
                sealed_with: sealed.key_id.clone(),
                loaded: self.id(),
            });
        }
        let fail = || VaultError::OpenFailed(connection_id.to_owned());
        if sealed.nonce.len() != 12 {
            return Err(fail());
        }
        let aad = associated_data(connection_id, &sealed.kind, &sealed.field_names, sealed.format_version);
        let cipher = Aes256Gcm::new_from_slice(self.seal_key().as_ref()).expect("32-byte key");
        let plaintext = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(&sealed.nonce),
                    Payload {
                        msg: &sealed.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| fail())?,
        );
        let mut map: BTreeMap<String, String> = serde_json::from_slice(&plaintext).map_err(|_| fail())?;
        let names: Vec<String> = map.keys().cloned().collect();
        if names != sealed.field_names {
            map.values_mut().for_each(|v| v.zeroize());
            return Err(fail());
        }
        Ok(Bundle {
            kind: sealed.kind.clone(),
            fields: map.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect(),
        })
    }

    /// Whether `bundle` is the credential a seal holds, without opening it.
    pub fn same_credential(&self, bundle: &Bundle, sealed: &Sealed) -> bool {
        sealed.key_id == self.id() && self.fingerprint(&bundle.kind, &bundle.plaintext()) == sealed.fingerprint
    }
}

/// An opaque blob sealed for one connection and one purpose (e.g. a browser
/// profile): like a credential bundle, it opens only for the connection id
/// and purpose it was sealed for, under the key that sealed it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBlob {
    pub purpose: String,
    pub format_version: i64,
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedBlob")
            .field("purpose", &self.purpose)
            .field("key_id", &self.key_id)
            .field("bytes", &self.ciphertext.len())
            .finish()
    }
}

/// The first bytes of [`SealedBlob::to_bytes`].
const BLOB_MAGIC: &[u8; 8] = b"pdppblob";

impl SealedBlob {
    /// One self-describing byte string, for storing the blob in one column or file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.ciphertext.len());
        out.extend_from_slice(BLOB_MAGIC);
        out.extend_from_slice(&self.format_version.to_be_bytes());
        for part in [self.purpose.as_bytes(), self.key_id.as_bytes(), &self.nonce] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parse [`SealedBlob::to_bytes`]; `None` when the bytes are not a sealed blob.
    pub fn from_bytes(bytes: &[u8]) -> Option<SealedBlob> {
        let rest = bytes.strip_prefix(BLOB_MAGIC.as_slice())?;
        let (version, mut rest) = rest.split_at_checked(8)?;
        let format_version = i64::from_be_bytes(version.try_into().ok()?);
        let mut parts = Vec::with_capacity(3);
        for _ in 0..3 {
            let (len, tail) = rest.split_at_checked(4)?;
            let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
            let (part, tail) = tail.split_at_checked(len)?;
            parts.push(part.to_vec());
            rest = tail;
        }
        let nonce = parts.pop()?;
        let key_id = String::from_utf8(parts.pop()?).ok()?;
        let purpose = String::from_utf8(parts.pop()?).ok()?;
        Some(SealedBlob {
            purpose,
            format_version,
            key_id,
            nonce,
            ciphertext: rest.to_vec(),
        })
    }
}

fn blob_associated_data(connection_id: &str, purpose: &str, version: i64) -> Vec<u8> {
    let mut aad = Vec::new();
    for part in [
        b"pdpp-vault-blob".as_slice(),
        &version.to_be_bytes(),
        connection_id.as_bytes(),
        purpose.as_bytes(),
    ] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

impl VaultKey {
    /// Seal an opaque blob for one connection and purpose. The associated data
    /// binds connection id, purpose and format version, so the blob does not
    /// open for another connection or as another kind of material.
    pub fn seal_blob(&self, connection_id: &str, purpose: &str, plaintext: &[u8]) -> SealedBlob {
        let aad = blob_associated_data(connection_id, purpose, FORMAT_VERSION);
        let cipher = Aes256Gcm::new_from_slice(self.seal_key().as_ref()).expect("32-byte key");
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("system randomness");
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption does not fail for in-memory buffers");
        SealedBlob {
            purpose: purpose.to_owned(),
            format_version: FORMAT_VERSION,
            key_id: self.id(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Open a blob sealed for `connection_id` and `purpose`.
    pub fn open_blob(
        &self,
        connection_id: &str,
        purpose: &str,
        sealed: &SealedBlob,
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        if sealed.key_id != self.id() {
            return Err(VaultError::WrongKey {
                connection_id: connection_id.to_owned(),
                sealed_with: sealed.key_id.clone(),
                loaded: self.id(),
            });
        }
        let fail = || VaultError::OpenFailed(connection_id.to_owned());
        if sealed.nonce.len() != 12 || sealed.purpose != purpose {
            return Err(fail());
        }
        let aad = blob_associated_data(connection_id, purpose, sealed.format_version);
        let cipher = Aes256Gcm::new_from_slice(self.seal_key().as_ref()).expect("32-byte key");
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| fail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(v: &str) -> Bundle {
        Bundle::new("personal_access_token", [("token", v)])
    }

    #[test]
    fn sealed_bundle_opens_only_for_its_connection() {
        let key = VaultKey::generate();
        let sealed = key.seal("conn_a", &pat("ghp_secret_value")).unwrap();
        assert!(!sealed.ciphertext.windows(16).any(|w| w == b"ghp_secret_value"));
        let opened = key.open("conn_a", &sealed).unwrap();
        assert_eq!(opened.fields["token"].as_str(), "ghp_secret_value");
        assert!(matches!(key.open("conn_b", &sealed), Err(VaultError::OpenFailed(_))));
    }

    #[test]
    fn relabelled_kind_or_fields_do_not_open() {
        let key = VaultKey::generate();
        let sealed = key
            .seal("c", &Bundle::new("secret_bundle", [("a", "1"), ("b", "2")]))
            .unwrap();
        let mut kind = sealed.clone();
        kind.kind = "api_key".into();
        assert!(key.open("c", &kind).is_err());
        let mut fields = sealed.clone();
        fields.field_names = vec!["a".into(), "c".into()];
        assert!(key.open("c", &fields).is_err());
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(key.open("c", &flipped).is_err());
    }

    #[test]
    fn wrong_key_is_named() {
        let sealed = VaultKey::generate().seal("c", &pat("x1")).unwrap();
        assert!(matches!(
            VaultKey::generate().open("c", &sealed),
            Err(VaultError::WrongKey { .. })
        ));
    }

    #[test]
    fn fingerprint_identifies_the_same_credential_without_the_plaintext() {
        let key = VaultKey::generate();
        let a = key.seal("c", &pat("same")).unwrap();
        let b = key.seal("d", &pat("same")).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.nonce, b.nonce, "a fresh nonce per seal");
        assert!(key.same_credential(&pat("same"), &a));
        assert!(!key.same_credential(&pat("other"), &a));
    }

    #[test]
    fn kinds_constrain_fields() {
        let key = VaultKey::generate();
        assert!(matches!(
            key.seal("c", &Bundle::new("api_key", [("a", "1"), ("b", "2")])),
            Err(VaultError::FieldsForKind { .. })
        ));
        assert!(matches!(
            key.seal("c", &Bundle::new("password_manager", [("a", "1")])),
            Err(VaultError::UnknownKind(_))
        ));
        assert!(
            key.seal(
                "c",
                &Bundle::new("username_password", [("username", "u"), ("password", "p")])
            )
            .is_ok()
        );
        assert!(matches!(key.seal("c", &pat("")), Err(VaultError::EmptyField(_))));
    }

    #[test]
    fn key_file_is_created_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let key = VaultKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(VaultKey::load_or_create(&path).unwrap().id(), key.id());
        assert!(VaultKey::generate().write_new(&path).is_err());
        std::fs::write(dir.path().join("bad"), "not a key").unwrap();
        assert!(matches!(
            VaultKey::read(&dir.path().join("bad")),
            Err(VaultError::KeyInvalid(_))
        ));
        assert!(matches!(
            VaultKey::read(&dir.path().join("none")),
            Err(VaultError::KeyMissing(_))
        ));
    }
    #[test]
    fn sealed_blob_opens_only_for_its_connection_and_purpose() {
        let key = VaultKey::generate();
        let sealed = key.seal_blob("conn_a", "browser-profile", b"cookie=session-value");
        let stored = SealedBlob::from_bytes(&sealed.to_bytes()).unwrap();
        assert_eq!(stored, sealed);
        assert!(!stored.ciphertext.windows(13).any(|w| w == b"session-value"));
        assert_eq!(
            key.open_blob("conn_a", "browser-profile", &stored).unwrap().as_slice(),
            b"cookie=session-value"
        );
        assert!(matches!(
            key.open_blob("conn_b", "browser-profile", &stored),
            Err(VaultError::OpenFailed(_))
        ));
        let mut relabelled = stored.clone();
        relabelled.purpose = "other".into();
        assert!(key.open_blob("conn_a", "other", &relabelled).is_err());
        assert!(matches!(
            VaultKey::generate().open_blob("conn_a", "browser-profile", &stored),
            Err(VaultError::WrongKey { .. })
        ));
        assert!(SealedBlob::from_bytes(b"pdppblob").is_none());
    }
}
