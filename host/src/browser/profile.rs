//! Source-scoped browser profiles: the login material of one connection's
//! browser, packed into one archive, sealed with the vault between runs.
//!
//! Only what keeps a login is packed — cookies, local and session storage,
//! IndexedDB and storage buckets, and `Local State` — never caches, history
//! or saved passwords. The archive is a tar of regular files and directories,
//! capped in size, held in zeroizing memory. It is sealed with the vault key
//! bound to the connection id and the purpose [`PROFILE_PURPOSE`], so a
//! profile sealed for one connection does not open for another. Unpacking
//! accepts only relative paths inside the packed set, into a fresh private
//! directory. [`wipe`] overwrites the login files before removing a directory.
//!
//! Cookies are portable between sessions because Chromium runs with
//! `--password-store=basic` (no desktop keyring holds their key).

use super::error::ProfileError;
use crate::vault::{SealedBlob, VaultKey};
use std::fmt;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use zeroize::Zeroizing;

/// The vault purpose every sealed profile is bound to.
pub const PROFILE_PURPOSE: &str = "browser-profile";

/// Paths (relative to the user-data-dir) that hold login material. A
/// directory entry covers everything below it.
const LOGIN_MATERIAL: &[&str] = &[
    "Local State",
    "Default/Cookies",
    "Default/Cookies-journal",
    "Default/Network/Cookies",
    "Default/Network/Cookies-journal",
    "Default/Local Storage",
    "Default/Session Storage",
    "Default/IndexedDB",
    "Default/WebStorage",
];

/// Files inside the material that are only locks or debug logs.
fn skipped(name: &str) -> bool {
    matches!(name, "LOCK" | "LOG" | "LOG.old") || name.starts_with("Singleton")
}

/// The plaintext login material of one profile. Zeroed when dropped.
pub struct ProfileArchive {
    bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for ProfileArchive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProfileArchive({} bytes)", self.bytes.len())
    }
}

impl ProfileArchive {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Seal for one connection.
    pub fn seal(&self, key: &VaultKey, connection_id: &str) -> SealedProfile {
        SealedProfile(key.seal_blob(connection_id, PROFILE_PURPOSE, &self.bytes))
    }
}

/// A profile sealed for one connection: what the host stores between runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedProfile(pub SealedBlob);

impl SealedProfile {
    /// Open the profile of `connection_id`. Fails for any other connection,
    /// another key, or altered bytes.
    pub fn open(&self, key: &VaultKey, connection_id: &str) -> Result<ProfileArchive, ProfileError> {
        key.open_blob(connection_id, PROFILE_PURPOSE, &self.0)
            .map(|bytes| ProfileArchive { bytes })
            .map_err(|e| ProfileError::DoesNotOpen {
                connection_id: connection_id.to_owned(),
                reason: e.to_string(),
            })
    }

    /// One byte string to store.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// Parse [`SealedProfile::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Option<SealedProfile> {
        SealedBlob::from_bytes(bytes).map(SealedProfile)
    }
}

fn io(action: &'static str) -> impl Fn(std::io::Error) -> ProfileError {
    move |source| ProfileError::Io { action, source }
}

/// The regular files of the login material under `root`, relative paths.
fn material_files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, rel: PathBuf, out: &mut Vec<PathBuf>) {
        let Ok(meta) = std::fs::symlink_metadata(root.join(&rel)) else {
            return;
        };
        if meta.is_file() {
            if !rel.file_name().and_then(|n| n.to_str()).is_some_and(skipped) {
                out.push(rel);
            }
        } else if meta.is_dir()
            && let Ok(dir) = std::fs::read_dir(root.join(&rel))
        {
            let mut names: Vec<_> = dir.flatten().map(|e| e.file_name()).collect();
            names.sort();
            for name in names {
                walk(root, rel.join(name), out);
            }
        }
    }
    let mut out = Vec::new();
    for item in LOGIN_MATERIAL {
        walk(root, PathBuf::from(item), &mut out);
    }
    out
}

/// Pack the login material of a user-data-dir. Fails when the archive would
/// exceed `max_bytes`.
pub(crate) fn pack(user_data_dir: &Path, max_bytes: u64) -> Result<ProfileArchive, ProfileError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut total: u64 = 0;
    for rel in material_files(user_data_dir) {
        let data = Zeroizing::new(std::fs::read(user_data_dir.join(&rel)).map_err(io("read"))?);
        total += 512 + data.len().div_ceil(512) as u64 * 512;
        if total > max_bytes {
            return Err(ProfileError::TooLarge { limit: max_bytes });
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, &rel, data.as_slice())
            .map_err(io("packed"))?;
    }
    let bytes = builder.into_inner().map_err(io("packed"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(ProfileError::TooLarge { limit: max_bytes });
    }
    Ok(ProfileArchive {
        bytes: Zeroizing::new(bytes),
    })
}

/// Whether a path from an archive is relative, plain, and inside the login
/// material.
fn admissible(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::Normal(_))) && LOGIN_MATERIAL.iter().any(|m| path.starts_with(m))
}

/// Unpack an archive into a user-data-dir (created by the caller, 0700).
pub(crate) fn unpack(archive: &ProfileArchive, user_data_dir: &Path) -> Result<(), ProfileError> {
    let malformed = |what: &str| ProfileError::Malformed(what.to_owned());
    let mut tar = tar::Archive::new(archive.bytes.as_slice());
    for entry in tar.entries().map_err(|_| malformed("not an archive"))? {
        let mut entry = entry.map_err(|_| malformed("unreadable entry"))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(malformed("an entry is not a regular file"));
        }
        let rel = entry.path().map_err(|_| malformed("unreadable path"))?.into_owned();
        if !admissible(&rel) {
            return Err(malformed("a path is outside the login material"));
        }
        let target = user_data_dir.join(&rel);
        if let Some(parent) = target.parent() {
            create_private_dir_all(parent).map_err(io("created"))?;
        }
        let mut data = Zeroizing::new(Vec::new());
        std::io::Read::read_to_end(&mut entry, &mut data).map_err(|_| malformed("truncated entry"))?;
        let mut file = private_file(&target).map_err(io("written"))?;
        file.write_all(&data).map_err(io("written"))?;
    }
    Ok(())
}

/// Create a directory (and parents) readable by the owner only.
pub(crate) fn create_private_dir_all(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Destroy a session directory: overwrite the login material of its profile
/// with zeros (so it is not left in freed blocks of a plain filesystem), then
/// remove everything. Returns whether the directory is gone.
pub(crate) fn wipe(session_dir: &Path, user_data_dir: &Path) -> bool {
    for rel in material_files(user_data_dir) {
        let path = user_data_dir.join(rel);
        if let Ok(meta) = std::fs::metadata(&path)
            && let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(&path)
        {
            let zeros = vec![0u8; meta.len().min(64 << 20) as usize];
            let _ = file.write_all(&zeros).and_then(|()| file.sync_data());
        }
    }
    match std::fs::remove_dir_all(session_dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(_) => {
            // A process that was still writing may have added a file; once more.
            std::fs::remove_dir_all(session_dir).is_ok() || !session_dir.exists()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_login_material_is_packed_and_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let udd = dir.path().join("profile");
        for (rel, body) in [
            ("Local State", "{}"),
            ("Default/Network/Cookies", "cookie-db"),
            ("Default/Local Storage/leveldb/000003.log", "ls"),
            ("Default/Local Storage/leveldb/LOCK", ""),
            ("Default/Cache/Cache_Data/data_0", "cache"),
            ("Default/History", "history"),
            ("Default/Login Data", "passwords"),
        ] {
            let p = udd.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let archive = pack(&udd, 1 << 20).unwrap();
        let key = VaultKey::generate();
        let sealed = archive.seal(&key, "con_a");
        let stored = SealedProfile::from_bytes(&sealed.to_bytes()).unwrap();
        assert!(matches!(
            stored.open(&key, "con_b"),
            Err(ProfileError::DoesNotOpen { .. })
        ));
        let opened = stored.open(&key, "con_a").unwrap();
        let fresh = dir.path().join("fresh");
        create_private_dir_all(&fresh).unwrap();
        unpack(&opened, &fresh).unwrap();
        let mut files: Vec<String> = material_files(&fresh)
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "Default/Local Storage/leveldb/000003.log",
                "Default/Network/Cookies",
                "Local State"
            ]
        );
        assert!(!fresh.join("Default/Cache").exists());
        assert!(!fresh.join("Default/History").exists());
        assert!(!fresh.join("Default/Login Data").exists());
        assert_eq!(
            std::fs::read(fresh.join("Default/Network/Cookies")).unwrap(),
            b"cookie-db"
        );
    }

    #[test]
    fn a_profile_over_the_cap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("Default/Network")).unwrap();
        std::fs::write(dir.path().join("Default/Network/Cookies"), vec![1u8; 8192]).unwrap();
        assert!(matches!(
            pack(dir.path(), 4096),
            Err(ProfileError::TooLarge { limit: 4096 })
        ));
    }

    #[test]
    fn an_archive_path_outside_the_login_material_is_refused() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, "Default/Preferences", &b"x"[..])
            .unwrap();
        let archive = ProfileArchive {
            bytes: Zeroizing::new(builder.into_inner().unwrap()),
        };
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(unpack(&archive, dir.path()), Err(ProfileError::Malformed(_))));
    }
}
