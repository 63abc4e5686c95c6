//! A deployment's durable parts: the data directory, the vault key and the
//! database, opened together and checked against each other at start.

use crate::store::{Store, StoreError};
use crate::vault::{KEY_FILE, VaultError, VaultKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Environment variable naming the vault key file (a path, never the key).
pub const KEY_FILE_ENV: &str = "PDPP_VAULT_KEY_FILE";
/// Environment variable with the database URL (`sqlite://…` or `postgres://…`).
pub const DATABASE_URL_ENV: &str = "PDPP_DATABASE_URL";
/// The SQLite file in the data directory.
pub const DATABASE_FILE: &str = "pdpp.db";

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the vault key {loaded} does not open the stored credentials (sealed under {stored}); \
         start with the key file they were sealed with"
    )]
    KeyMismatch { loaded: String, stored: String },
    #[error(
        "the vault key file {path} is missing, but {sealed} credential(s) in the database are sealed under key \
         {key_id}: restore that file from your backup (docs/backup.md) and start again. A new key would not open \
         them, so none was created"
    )]
    KeyLost {
        path: PathBuf,
        sealed: usize,
        key_id: String,
    },
    #[error(
        "a server is using this deployment ({}): it holds the current vault key in memory, so the key cannot be \
         rotated under it. Stop it (Ctrl-C or SIGTERM), run `pdpp-host vault rotate-key`, then start it again",
        .0.join(", ")
    )]
    ServersRunning(Vec<String>),
}

#[derive(Clone, Debug, Default)]
pub struct DeployOptions {
    pub data_dir: PathBuf,
    /// Overrides `PDPP_DATABASE_URL` and the SQLite default.
    pub database_url: Option<String>,
    /// Overrides `PDPP_VAULT_KEY_FILE` and `<data dir>/vault.key`.
    pub key_file: Option<PathBuf>,
}

/// The durable parts of a deployment, opened and checked together. Cloning
/// shares the database pool and the key.
#[derive(Clone)]
pub struct Deployment {
    pub data_dir: PathBuf,
    pub key_file: PathBuf,
    pub store: Store,
    pub key: Arc<VaultKey>,
}

/// What a key rotation did (ids only, never keys).
#[derive(Debug, PartialEq, Eq)]
pub struct Rotation {
    pub old_key_id: String,
    pub new_key_id: String,
    pub resealed: usize,
}

fn next_key_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    key_file.with_file_name(name)
}

impl Deployment {
    /// Open (creating on first start) the data directory, key and database.
    pub async fn open(opts: DeployOptions) -> Result<Deployment, DeployError> {
        let dir = opts.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| DeployError::DataDir {
            path: dir.clone(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        let named = opts
            .key_file
            .clone()
            .or_else(|| std::env::var_os(KEY_FILE_ENV).map(PathBuf::from));
        let url = opts
            .database_url
            .clone()
            .or_else(|| std::env::var(DATABASE_URL_ENV).ok())
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", dir.join(DATABASE_FILE).display()));
        let store = Store::open(&url).await?;

        let key_file = named.clone().unwrap_or_else(|| dir.join(KEY_FILE));
        finish_interrupted_rotation(&store, &key_file).await?;
        let sealed = store.all_credentials().await?;
        // A lost default key is never silently replaced while credentials
        // need it (a key the operator names is never created at all).
        if named.is_none()
            && !key_file.exists()
            && let Some(c) = sealed.first()
        {
            return Err(DeployError::KeyLost {
                path: key_file,
                sealed: sealed.len(),
                key_id: c.sealed.key_id.clone(),
            });
        }
        // A key the operator names must exist; the default one is created on first start.
        let key = match named {
            Some(path) => VaultKey::read(&path)?,
            None => VaultKey::load_or_create(&key_file)?,
        };
        if let Some(stored) = sealed.into_iter().find(|c| c.sealed.key_id != key.id()) {
            return Err(DeployError::KeyMismatch {
                loaded: key.id(),
                stored: stored.sealed.key_id,
            });
        }
        store.fail_interrupted_runs().await?;
        Ok(Deployment {
            data_dir: dir,
            key_file,
            store,
            key: Arc::new(key),
        })
    }

    /// Write `new` as the staged key `<key file>.next` (0600), replacing a
    /// stale staged key; the key file itself is untouched. The first step
    /// of a key rotation (see the credentials service).
    pub fn stage_key(&self, new: &VaultKey) -> Result<(), DeployError> {
        let next = next_key_path(&self.key_file);
        if next.exists() {
            std::fs::remove_file(&next).map_err(|source| VaultError::KeyIo {
                path: next.clone(),
                source,
            })?;
        }
        new.write_new(&next)?;
        Ok(())
    }

    /// Drop a staged key (the rotation failed before the store changed).
    pub fn discard_staged_key(&self) {
        let _ = std::fs::remove_file(next_key_path(&self.key_file));
    }

    /// Make the staged key the key file, and use it from now on. Called once
    /// every credential is sealed under it.
    pub fn commit_staged_key(&mut self, new: VaultKey) -> Result<(), DeployError> {
        std::fs::rename(next_key_path(&self.key_file), &self.key_file).map_err(|source| VaultError::KeyIo {
            path: self.key_file.clone(),
            source,
        })?;
        self.key = Arc::new(new);
        Ok(())
    }
}

/// A rotation that stopped between committing the new seals and replacing
/// the key file leaves `<key>.next` behind: keep whichever key the stored
/// seals were made with.
async fn finish_interrupted_rotation(store: &Store, key_file: &Path) -> Result<(), DeployError> {
    let next = next_key_path(key_file);
    if !next.exists() {
        return Ok(());
    }
    let next_key = VaultKey::read(&next)?;
    let creds = store.all_credentials().await?;
    if !creds.is_empty() && creds.iter().all(|c| c.sealed.key_id == next_key.id()) {
        std::fs::rename(&next, key_file).map_err(|source| VaultError::KeyIo {
            path: key_file.into(),
            source,
        })?;
    } else {
        std::fs::remove_file(&next).map_err(|source| VaultError::KeyIo {
            path: next.clone(),
            source,
        })?;
    }
    Ok(())
}
