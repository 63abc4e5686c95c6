//! Owner authentication: a bearer token whose SHA-256 is all the host keeps.

use super::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use zeroize::Zeroizing;

/// The file in the data directory holding the token's hash (hex).
pub const TOKEN_HASH_FILE: &str = "owner-token.sha256";

/// The owner token, as the host knows it: the SHA-256 in the data
/// directory's token file. The file is re-read when it changes, so
/// `pdpp-host owner-token reset` takes effect on a running server at once
/// (and the old token stops working).
pub struct OwnerToken {
    path: PathBuf,
    /// The file's modification time and the hash read from it.
    known: Mutex<(Option<SystemTime>, Option<[u8; 32]>)>,
}

/// A new random owner token.
fn new_token() -> std::io::Result<Zeroizing<String>> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Zeroizing::new(format!(
        "pdpp_owner_{}",
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )))
}

fn hash_of(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn read_hash(path: &Path) -> std::io::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)?;
    let t = text.trim();
    let invalid = || std::io::Error::other(format!("{} is not a SHA-256 hash", path.display()));
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let mut hash = [0u8; 32];
    for (i, c) in t.as_bytes().chunks(2).enumerate() {
        hash[i] = u8::from_str_radix(std::str::from_utf8(c).map_err(|_| invalid())?, 16).map_err(|_| invalid())?;
    }
    Ok(hash)
}

fn write_hash(path: &Path, token: &str) -> std::io::Result<()> {
    let hex: String = hash_of(token).iter().map(|b| format!("{b:02x}")).collect();
    crate::fsutil::write_atomically(path, format!("{hex}\n").as_bytes(), Some(0o600))
}

impl OwnerToken {
    /// The token whose hash is stored in `dir`, or a new one: its hash is
    /// written (0600) and the token itself returned once, to be shown to the
    /// owner.
    pub fn load_or_create(dir: &Path) -> std::io::Result<(OwnerToken, Option<Zeroizing<String>>)> {
        let path = dir.join(TOKEN_HASH_FILE);
        let fresh = match read_hash(&path) {
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = new_token()?;
                write_hash(&path, &token)?;
                Some(token)
            }
            Err(e) => return Err(e),
        };
        Ok((
            OwnerToken {
                path,
                known: Mutex::new((None, None)),
            },
            fresh,
        ))
    }

    /// Replace the owner token of the deployment in `dir`: the old one stops
    /// working (also on a running server) and the new one is returned, to be
    /// shown once.
    pub fn reset(dir: &Path) -> std::io::Result<Zeroizing<String>> {
        let token = new_token()?;
        write_hash(&dir.join(TOKEN_HASH_FILE), &token)?;
        Ok(token)
    }

    /// The current hash: re-read when the file changed; none when it is
    /// missing or unreadable (then no token is accepted).
    fn current(&self) -> Option<[u8; 32]> {
        let modified = Some(std::fs::metadata(&self.path).and_then(|m| m.modified()).ok()?);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.0 != modified {
            *known = (modified, read_hash(&self.path).ok());
        }
        known.1
    }

    /// Constant-time comparison of a presented token with the stored hash.
    pub fn verify(&self, presented: &str) -> bool {
        let Some(stored) = self.current() else {
            return false;
        };
        let h = hash_of(presented);
        h.iter().zip(stored.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Proof that the request carries the owner's token. Every owner route takes
/// it as an argument, so no handler can forget authentication.
pub struct Owner;

impl FromRequestParts<Arc<AppState>> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                // The scheme is case-insensitive (RFC 9110 §11.1).
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "an owner bearer token is required",
                )
            })?;
        if state.token.verify(presented.trim()) {
            Ok(Owner)
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the owner token is not valid",
            ))
        }
    }
}
