//! Owner authentication: a bearer token whose SHA-256 is all the host keeps.

use super::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The file in the data directory holding the token's hash (hex).
pub const TOKEN_HASH_FILE: &str = "owner-token.sha256";

/// The owner token's hash.
#[derive(Clone)]
pub struct OwnerToken {
    hash: [u8; 32],
}

impl OwnerToken {
    pub fn from_token(token: &str) -> Self {
        OwnerToken {
            hash: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// The hash stored in `dir`, or a new token: its hash is written (0600)
    /// and the token itself returned once, to be shown to the owner.
    pub fn load_or_create(dir: &Path) -> std::io::Result<(OwnerToken, Option<Zeroizing<String>>)> {
        let path = dir.join(TOKEN_HASH_FILE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let t = text.trim();
            let mut hash = [0u8; 32];
            if t.len() == 64 {
                for (i, c) in t.as_bytes().chunks(2).enumerate() {
                    hash[i] = u8::from_str_radix(std::str::from_utf8(c).unwrap_or("zz"), 16)
                        .map_err(|_| std::io::Error::other(format!("{} is not a SHA-256 hash", path.display())))?;
                }
                return Ok((OwnerToken { hash }, None));
            }
            return Err(std::io::Error::other(format!(
                "{} is not a SHA-256 hash",
                path.display()
            )));
        }
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
        let token = Zeroizing::new(format!(
            "pdpp_owner_{}",
            raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        let owner = OwnerToken::from_token(&token);
        let hex: String = owner.hash.iter().map(|b| format!("{b:02x}")).collect();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        use std::io::Write;
        opts.open(&path)?.write_all(format!("{hex}\n").as_bytes())?;
        Ok((owner, Some(token)))
    }

    /// Constant-time comparison of a presented token with the stored hash.
    pub fn verify(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        h.iter().zip(self.hash.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
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
            .and_then(|v| v.strip_prefix("Bearer "))
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
