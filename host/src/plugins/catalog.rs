//! The catalog: every plugin of a directory, as one atomically swapped
//! snapshot, and a watcher that rescans the directory when it changes.

use super::{AotCache, Inputs, LoadOptions, LoadedPlugin, PluginError, load_inputs};
use crate::sandbox::Sandbox;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

/// Where the plugins are and how to load them.
#[derive(Clone, Debug)]
pub struct CatalogOptions {
    pub dir: PathBuf,
    pub load: LoadOptions,
    /// Quiet time after the last change before the directory is rescanned.
    pub debounce: Duration,
}

impl CatalogOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CatalogOptions {
            dir: dir.into(),
            load: LoadOptions::default(),
            debounce: Duration::from_millis(300),
        }
    }
}

/// The catalog at one moment. Never changes; a rescan makes a new one.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Counts scans; 0 before the first.
    pub generation: u64,
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    /// Files that are not usable plugins, and why.
    pub errors: BTreeMap<PathBuf, PluginError>,
    /// Connector ids that were in the catalog since it opened and are not now
    /// (their connections should show "plugin unavailable").
    pub removed: BTreeSet<String>,
    /// Manifest-only entries (`<name>.json` with no `.wasm`): connectors the
    /// catalog lists but that take no new connections (a tombstone, or
    /// blocked upstream). Their manifest must say so in `lifecycle`.
    pub listings: BTreeMap<String, Arc<crate::manifest::Manifest>>,
    /// `.wasm` files this scan has not finished loading yet (compiling): their
    /// connectors become available one by one as each one is ready.
    pub pending: Vec<PathBuf>,
}

impl Snapshot {
    pub fn get(&self, connector_id: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.get(connector_id).cloned()
    }

    /// Record this snapshot in the store: every loaded plugin's connector is
    /// `available` (with its manifest and hash), every removed one
    /// `unavailable` — its connections, credentials and records stay.
    pub async fn sync_to(&self, store: &crate::store::Store) -> Result<(), crate::store::StoreError> {
        for p in self.plugins.values() {
            store.upsert_connector(&p.manifest, Some(&p.sha256)).await?;
        }
        for id in &self.removed {
            if !self.listings.contains_key(id) {
                store.set_connector_availability(id, "unavailable").await?;
            }
        }
        for m in self.listings.values() {
            store.upsert_connector(m, None).await?;
            if let Some((crate::manifest::LifecycleStatus::Removed, _)) = m.closed_for_setup() {
                store.set_connector_availability(&m.connector_id, "removed").await?;
            }
        }
        Ok(())
    }
}

/// How compiled code was obtained, since the catalog opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Compiled by cranelift.
    pub compiled: u64,
    /// Read from the AOT cache.
    pub from_cache: u64,
}

/// What the previous scans learned, kept between scans.
#[derive(Default)]
struct ScanState {
    /// Path → (inputs fingerprint, plugin) for every file that loaded, so an
    /// unchanged file is reused as is.
    loaded: BTreeMap<PathBuf, (String, Arc<LoadedPlugin>)>,
    /// Every connector id seen since the catalog opened.
    known: BTreeSet<String>,
}

pub struct Catalog {
    sandbox: Arc<Sandbox>,
    options: CatalogOptions,
    cache: Option<AotCache>,
    current: RwLock<Arc<Snapshot>>,
    scan: Mutex<ScanState>,
    compiled: AtomicU64,
    from_cache: AtomicU64,
    /// The generation of the current snapshot, for those who follow changes.
    changes: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("dir", &self.options.dir).finish()
    }
}

impl Catalog {
    /// Open a catalog and scan its directory once.
    pub fn open(sandbox: Arc<Sandbox>, options: CatalogOptions) -> Arc<Catalog> {
        let catalog = Catalog::empty(sandbox, options);
        catalog.rescan();
        catalog
    }

    /// Open a catalog whose first scan runs in the background (a serving
    /// host listens at once; each plugin is offered as soon as it is
    /// compiled), then watch the directory. The task ends with the watch
    /// handle (keep it: dropping it stops watching).
    pub fn open_in_background(
        sandbox: Arc<Sandbox>,
        options: CatalogOptions,
    ) -> (Arc<Catalog>, tokio::task::JoinHandle<Result<WatchHandle, PluginError>>) {
        let catalog = Catalog::empty(sandbox, options);
        // What is there to load, before anything compiles.
        let files = catalog.list_files();
        if !files.is_empty() {
            let first = Snapshot {
                pending: files,
                ..Default::default()
            };
            *catalog.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(first);
        }
        let scanning = catalog.clone();
        let task = tokio::task::spawn_blocking(move || {
            scanning.rescan();
            scanning.watch()
        });
        (catalog, task)
    }

    fn empty(sandbox: Arc<Sandbox>, options: CatalogOptions) -> Arc<Catalog> {
        let cache = options
            .load
            .cache_dir
            .as_deref()
            .map(|d| AotCache::new(d, sandbox.engine()));
        Arc::new(Catalog {
            sandbox,
            options,
            cache,
            current: RwLock::new(Arc::default()),
            scan: Mutex::default(),
            compiled: AtomicU64::new(0),
            from_cache: AtomicU64::new(0),
            changes: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The sandbox the plugins were compiled for: runs must use it.
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    /// The current snapshot. Holding it (or an `Arc<LoadedPlugin>` from it)
    /// keeps that version alive whatever happens to the directory.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current version of a connector.
    pub fn get(&self, connector_id: &str) -> Option<Arc<LoadedPlugin>> {
        self.snapshot().get(connector_id)
    }

    /// Follow the catalog: the receiver sees the generation of each new
    /// snapshot (after every rescan, including hot reloads).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            from_cache: self.from_cache.load(Ordering::Relaxed),
        }
    }

    /// Scan the directory and swap in the new snapshot. Files whose bytes,
    /// sidecar and signature are unchanged keep their loaded plugin; the
    /// others are loaded one by one, and each is offered (a new snapshot) as
    /// soon as it is ready, the files still loading listed as `pending`.
    pub fn rescan(&self) -> Arc<Snapshot> {
        let mut state = self.scan.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.snapshot();
        let mut errors = BTreeMap::new();
        let mut loaded: BTreeMap<PathBuf, (String, Arc<LoadedPlugin>)> = BTreeMap::new();
        let mut todo = Vec::new();
        for path in self.list_files() {
            let inputs = match Inputs::read(&path) {
                Ok(i) => i,
                Err(e) => {
                    errors.insert(path, e);
                    continue;
                }
            };
            let fingerprint = inputs.fingerprint();
            match state.loaded.get(&path) {
                Some((fp, plugin)) if *fp == fingerprint => {
                    loaded.insert(path, (fingerprint, plugin.clone()));
                }
                _ => todo.push((path, inputs, fingerprint)),
            }
        }
        // While a file loads, the plugin it had (if any) stays offered.
        let meanwhile = |loaded: &BTreeMap<PathBuf, (String, Arc<LoadedPlugin>)>, pending: &[PathBuf]| {
            let mut plugins: Vec<Arc<LoadedPlugin>> = loaded.values().map(|(_, p)| p.clone()).collect();
            plugins.extend(previous.plugins.values().filter(|p| pending.contains(&p.path)).cloned());
            plugins
        };
        let mut pending: Vec<PathBuf> = todo.iter().map(|(p, _, _)| p.clone()).collect();
        let mut last = previous.clone();
        if !pending.is_empty() {
            last = self.publish(
                &mut state,
                &last,
                meanwhile(&loaded, &pending),
                errors.clone(),
                pending.clone(),
            );
        }
        for (path, inputs, fingerprint) in todo {
            match load_inputs(&self.sandbox, inputs, &self.options.load, self.cache.as_ref()) {
                Ok(p) => {
                    let counter = if p.from_cache { &self.from_cache } else { &self.compiled };
                    counter.fetch_add(1, Ordering::Relaxed);
                    loaded.insert(path.clone(), (fingerprint, Arc::new(p)));
                }
                Err(e) => {
                    errors.insert(path.clone(), e);
                }
            }
            pending.retain(|p| *p != path);
            if !pending.is_empty() {
                last = self.publish(
                    &mut state,
                    &last,
                    meanwhile(&loaded, &pending),
                    errors.clone(),
                    pending.clone(),
                );
            }
        }
        let plugins = loaded.values().map(|(_, p)| p.clone()).collect();
        state.loaded = loaded;
        self.publish(&mut state, &last, plugins, errors, Vec::new())
    }

    /// Make a snapshot of these plugins (one file per connector id: the file
    /// that already provided it keeps it, otherwise the first by path; the
    /// others are errors), log what changed since `before`, and swap it in.
    fn publish(
        &self,
        state: &mut ScanState,
        before: &Arc<Snapshot>,
        candidates: Vec<Arc<LoadedPlugin>>,
        mut errors: BTreeMap<PathBuf, PluginError>,
        pending: Vec<PathBuf>,
    ) -> Arc<Snapshot> {
        let mut claims: BTreeMap<String, Vec<&Arc<LoadedPlugin>>> = BTreeMap::new();
        for p in &candidates {
            claims.entry(p.manifest.connector_id.clone()).or_default().push(p);
        }
        let mut plugins = BTreeMap::new();
        for (id, candidates) in claims {
            let incumbent = before.plugins.get(&id).map(|p| &p.path);
            let winner = candidates
                .iter()
                .find(|p| Some(&p.path) == incumbent)
                .unwrap_or(&candidates[0]);
            for other in candidates.iter().filter(|p| p.path != winner.path) {
                errors.insert(
                    other.path.clone(),
                    PluginError::Duplicate {
                        connector_id: id.clone(),
                        loaded_from: winner.path.clone(),
                    },
                );
            }
            plugins.insert(id, Arc::clone(winner));
        }
        let listings = self.listings(&plugins, &mut errors);
        state.known.extend(plugins.keys().cloned());
        let removed: BTreeSet<String> = state
            .known
            .iter()
            .filter(|id| !plugins.contains_key(*id))
            .cloned()
            .collect();
        let snapshot = Arc::new(Snapshot {
            generation: before.generation + 1,
            plugins,
            errors,
            removed,
            listings,
            pending,
        });
        log_changes(before, &snapshot);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = snapshot.clone();
        self.changes.send_replace(snapshot.generation);
        snapshot
    }

    /// Manifest-only files: `*.json` that are nobody's sidecar. Each must be
    /// a valid manifest whose `lifecycle` closes it for setup.
    fn listings(
        &self,
        plugins: &BTreeMap<String, Arc<LoadedPlugin>>,
        errors: &mut BTreeMap<PathBuf, PluginError>,
    ) -> BTreeMap<String, Arc<crate::manifest::Manifest>> {
        let mut out = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(&self.options.dir) else {
            return out;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    && !p.with_extension("wasm").exists()
            })
            .collect();
        files.sort();
        for path in files {
            match crate::manifest::Manifest::from_file(&path) {
                Err(e) => {
                    errors.insert(
                        path,
                        PluginError::BadManifest {
                            rule: e.rule,
                            message: e.to_string(),
                        },
                    );
                }
                Ok(m) if m.closed_for_setup().is_none() => {
                    errors.insert(
                        path,
                        PluginError::BadManifest {
                            rule: "listing_needs_lifecycle",
                            message: "a manifest without a .wasm is only listed when its lifecycle is removed or \
                                      blocked_upstream"
                                .into(),
                        },
                    );
                }
                Ok(m) if plugins.contains_key(&m.connector_id) => {}
                Ok(m) => {
                    out.insert(m.connector_id.clone(), Arc::new(m));
                }
            }
        }
        out
    }

    /// The `.wasm` files of the directory, sorted. Hidden files (temporary
    /// files of an atomic write) are skipped.
    fn list_files(&self) -> Vec<PathBuf> {
        let entries = match std::fs::read_dir(&self.options.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("cannot read the plugin directory {}: {e}", self.options.dir.display());
                return Vec::new();
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".wasm") && !name.starts_with('.') && e.file_type().is_ok_and(|t| !t.is_dir())
            })
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    }

    /// Watch the directory: after changes settle for the debounce time, it is
    /// rescanned on a background thread. Dropping the handle stops watching.
    pub fn watch(self: &Arc<Self>) -> Result<WatchHandle, PluginError> {
        use notify::Watcher;
        let dir = self.options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| PluginError::io(&dir, &e))?;
        let (tx, rx) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
        let mut watcher = notify::recommended_watcher(tx).map_err(|e| PluginError::Io {
            path: dir.clone(),
            message: format!("cannot watch: {e}"),
        })?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| PluginError::Io {
                path: dir.clone(),
                message: format!("cannot watch: {e}"),
            })?;
        let weak: Weak<Catalog> = Arc::downgrade(self);
        let debounce = self.options.debounce;
        let thread = std::thread::Builder::new()
            .name("pdpp-plugins".into())
            .spawn(move || watch_loop(rx, weak, debounce))
            .map_err(|e| PluginError::io(&dir, &e))?;
        // Catch whatever landed between the first scan and the watch.
        self.rescan();
        Ok(WatchHandle {
            watcher: Some(watcher),
            thread: Some(thread),
        })
    }
}

/// Stops watching when dropped.
pub struct WatchHandle {
    watcher: Option<notify::RecommendedWatcher>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        // Dropping the watcher drops the channel's sender: the thread wakes
        // up, sees the channel closed and ends.
        drop(self.watcher.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Does this event say something about the directory's plugins? Reads (the
/// catalog's own scans open the files) do not.
fn relevant(event: &notify::Result<notify::Event>) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode};
    let Ok(event) = event else {
        return true; // a watcher error: rescan to be safe
    };
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    event.paths.is_empty()
        || event.paths.iter().any(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            !name.starts_with('.') && (name.ends_with(".wasm") || name.ends_with(".json") || name.ends_with(".sig"))
        })
}

fn watch_loop(
    rx: std::sync::mpsc::Receiver<notify::Result<notify::Event>>,
    catalog: Weak<Catalog>,
    debounce: Duration,
) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        // Wait for a change.
        loop {
            match rx.recv() {
                Ok(e) if relevant(&e) => break,
                Ok(_) => {}
                Err(_) => return,
            }
        }
        // Coalesce: wait until nothing relevant happened for `debounce`.
        let mut quiet_since = std::time::Instant::now();
        loop {
            let left = debounce.saturating_sub(quiet_since.elapsed());
            match rx.recv_timeout(left) {
                Ok(e) if relevant(&e) => quiet_since = std::time::Instant::now(),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let Some(catalog) = catalog.upgrade() else {
            return;
        };
        catalog.rescan();
    }
}

/// Log what changed between two snapshots: new and replaced plugins, removed
/// connectors, and files that newly fail or fail differently.
fn log_changes(before: &Snapshot, after: &Snapshot) {
    for (id, p) in &after.plugins {
        match before.plugins.get(id) {
            Some(old) if Arc::ptr_eq(old, p) => {}
            Some(old) => tracing::info!(
                "{id} replaced: {} ({}) → {} ({}) from {}",
                old.manifest.version,
                &old.sha256[..12],
                p.manifest.version,
                &p.sha256[..12],
                p.path.display()
            ),
            None => tracing::info!(
                "{id} {} loaded from {} ({})",
                p.manifest.version,
                p.path.display(),
                &p.sha256[..12]
            ),
        }
        if before.plugins.get(id).is_none_or(|old| !Arc::ptr_eq(old, p)) {
            for w in &p.warnings {
                tracing::warn!("{}: {w}", p.path.display());
            }
        }
    }
    for id in before.plugins.keys().filter(|id| !after.plugins.contains_key(*id)) {
        tracing::warn!("{id} is no longer available");
    }
    for (path, e) in &after.errors {
        if before.errors.get(path) != Some(e) {
            tracing::warn!("{}: {e}", path.display());
        }
    }
}
