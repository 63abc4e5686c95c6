//! The ahead-of-time compilation cache.
//!
//! One file per plugin version and engine: `<sha256 of the .wasm>-<engine
//! hash>.cwasm`, where the engine hash digests wasmtime's
//! `precompile_compatibility_hash` (target, compiler flags, tunables,
//! features, wasmtime version). A changed plugin has another sha256 and a
//! changed engine another engine hash, so neither ever meets a stale entry.
//!
//! Deserializing compiled code is `unsafe` in wasmtime: the bytes are trusted
//! to be machine code wasmtime produced. This cache only reads files it wrote
//! itself: the host compiles the `.wasm` (never deserializes anything found in
//! the plugin directory), writes the result here with a trailer of its own
//! (`pdpp-aot` + the sha256 of the compiled bytes), and on reading checks the
//! trailer before handing the bytes to wasmtime. A truncated, corrupted or
//! foreign file fails that check and is deleted and recompiled.

use super::signature::hex;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

const TRAILER_TAG: &[u8; 8] = b"pdpp-aot";
const TRAILER_LEN: usize = TRAILER_TAG.len() + 32;

/// A hex digest of the engine's compatibility hash (first 16 bytes of a sha256).
pub fn engine_hash(engine: &Engine) -> String {
    use std::hash::Hash;
    struct ShaHasher(Sha256);
    impl std::hash::Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            0 // unused: the digest is read with `finalize`
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex(&h.0.finalize()[..16])
}

/// The cache directory, bound to one engine.
#[derive(Clone, Debug)]
pub struct AotCache {
    dir: PathBuf,
    engine_hash: String,
}

impl AotCache {
    pub fn new(dir: &Path, engine: &Engine) -> Self {
        AotCache {
            dir: dir.to_path_buf(),
            engine_hash: engine_hash(engine),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the compiled form of the `.wasm` with this sha256 lives.
    pub fn entry(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_hash))
    }

    /// The cached component, if there is an intact entry. A damaged entry is
    /// removed (and logged) so the caller recompiles and rewrites it.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.entry(sha256);
        let file = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cannot read cache entry {}: {e}", path.display());
                return None;
            }
        };
        let Some(code) = verified(&file) else {
            tracing::warn!("cache entry {} is damaged; recompiling", path.display());
            let _ = std::fs::remove_file(&path);
            return None;
        };
        // SAFETY: `code` is exactly what `store` wrote into the host's own cache
        // directory after `Engine::precompile_component` produced it (the
        // trailer's digest matches), and the file name carries this engine's
        // compatibility hash. wasmtime additionally checks the header and the
        // engine configuration recorded in the artifact.
        match unsafe { Component::deserialize(engine, code) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(
                    "cache entry {} does not load ({}); recompiling",
                    path.display(),
                    e.root_cause()
                );
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Write a compiled component: to a temporary file, then renamed into place.
    pub fn store(&self, sha256: &str, code: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut file = Vec::with_capacity(code.len() + TRAILER_LEN);
        file.extend_from_slice(code);
        file.extend_from_slice(TRAILER_TAG);
        file.extend_from_slice(&Sha256::digest(code));
        crate::fsutil::write_atomically(&self.entry(sha256), &file, None)
    }
}

/// The compiled bytes, if the trailer is there and its digest matches.
fn verified(file: &[u8]) -> Option<&[u8]> {
    let split = file.len().checked_sub(TRAILER_LEN)?;
    let (code, trailer) = file.split_at(split);
    let (tag, digest) = trailer.split_at(TRAILER_TAG.len());
    (tag == TRAILER_TAG && Sha256::digest(code).as_slice() == digest).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_intact_trailer_verifies() {
        let mut file = b"code".to_vec();
        file.extend_from_slice(TRAILER_TAG);
        file.extend_from_slice(&Sha256::digest(b"code"));
        assert_eq!(verified(&file), Some(&b"code"[..]));
        let mut flipped = file.clone();
        flipped[1] ^= 1;
        assert_eq!(verified(&flipped), None);
        assert_eq!(verified(&file[..file.len() - 1]), None);
        assert_eq!(verified(b"short"), None);
    }
}
