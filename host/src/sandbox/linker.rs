//! Linking: one linker per set of granted capabilities, built once and
//! cached, and the check of a component's imports against its grants.
//!
//! The core (WASI p2 without anything ambient, the shared WIT types, emit,
//! interaction, secrets, log) is in every linker; each granted capability
//! adds its interfaces. A component is refused at load, with an error naming
//! the import, when it imports an interface its manifest does not grant or
//! one the host does not provide at all, so nothing is discovered at run time.

use super::LoadError;
use super::caps;
use super::grants::{Capability, CapabilitySet};
use super::state::RunState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime::Engine;
use wasmtime::component::{Component, HasData, Linker};

/// WASI p2 packages every connector is linked with (their contexts are built
/// with nothing ambient: see [`RunState::new`]).
const CORE_WASI_PACKAGES: &[&str] = &[
    "wasi:cli",
    "wasi:clocks",
    "wasi:filesystem",
    "wasi:io",
    "wasi:random",
    "wasi:sockets",
];

/// `pdpp:connector` interfaces that only carry types.
const VOCABULARY: &[&str] = &["pdpp:connector/types", "pdpp:connector/probe"];

/// Who provides an imported interface.
#[derive(Debug, PartialEq, Eq)]
enum Provider {
    /// Every connector gets it.
    Core,
    /// Only a plugin granted this capability.
    Granted(Capability),
}

/// The provider of `import` (`package/interface@version`), `None` when the host has none.
fn provider(import: &str) -> Option<Provider> {
    let name = import.split('@').next().unwrap_or(import);
    let package = name.split('/').next().unwrap_or(name);
    let core = [
        VOCABULARY,
        caps::emit::INTERFACES,
        caps::interaction::INTERFACES,
        caps::secrets::INTERFACES,
        caps::log::INTERFACES,
    ];
    if CORE_WASI_PACKAGES.contains(&package) || core.iter().any(|i| i.contains(&name)) {
        return Some(Provider::Core);
    }
    Capability::ALL
        .into_iter()
        .find(|c| c.interfaces().contains(&name))
        .map(Provider::Granted)
}

/// Refuse a component that imports what `granted` does not cover, naming the import.
pub(crate) fn check_imports(engine: &Engine, component: &Component, granted: CapabilitySet) -> Result<(), LoadError> {
    for (import, _) in component.component_type().imports(engine) {
        match provider(import) {
            Some(Provider::Core) => {}
            Some(Provider::Granted(c)) if granted.contains(c) => {}
            Some(Provider::Granted(c)) => {
                return Err(LoadError::ImportNotGranted {
                    import: import.to_owned(),
                    binding: c.binding(),
                });
            }
            None => {
                return Err(LoadError::ImportNotProvided {
                    import: import.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// The linkers of one engine, by capability set. A linker is built the first
/// time a plugin with that set loads; runs never build one.
pub(crate) struct Linkers {
    engine: Engine,
    built: Mutex<HashMap<CapabilitySet, Arc<Linker<RunState>>>>,
}

impl Linkers {
    pub(crate) fn new(engine: &Engine) -> Self {
        Linkers {
            engine: engine.clone(),
            built: Mutex::default(),
        }
    }

    /// The linker for `set`, built now if this is the first plugin with it.
    pub(crate) fn get(&self, set: CapabilitySet) -> wasmtime::Result<Arc<Linker<RunState>>> {
        let mut built = self.built.lock().expect("linker cache");
        if let Some(l) = built.get(&set) {
            return Ok(l.clone());
        }
        let linker = Arc::new(build(&self.engine, set)?);
        built.insert(set, linker.clone());
        Ok(linker)
    }
}

/// Interfaces that carry only types have nothing to implement.
struct Vocabulary;
impl HasData for Vocabulary {
    type Data<'a> = Vocabulary;
}
impl super::bindings::pdpp::connector::types::Host for Vocabulary {}
impl super::bindings::pdpp::connector::probe::Host for Vocabulary {}

fn build(engine: &Engine, set: CapabilitySet) -> wasmtime::Result<Linker<RunState>> {
    use super::bindings::pdpp::connector::{probe, types};
    let mut l = Linker::<RunState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut l)?;
    types::add_to_linker::<RunState, Vocabulary>(&mut l, |_| Vocabulary)?;
    probe::add_to_linker::<RunState, Vocabulary>(&mut l, |_| Vocabulary)?;
    caps::emit::add_to_linker(&mut l, RunState::emit_view)?;
    caps::interaction::add_to_linker(&mut l, RunState::interaction_view)?;
    caps::secrets::add_to_linker(&mut l, RunState::secrets_view)?;
    caps::log::add_to_linker(&mut l, RunState::log_view)?;
    // The granted capabilities: one line each.
    for c in set.iter() {
        match c {
            Capability::Network => caps::http::add_to_linker(&mut l, RunState::http_view)?,
            Capability::Browser => caps::browser::add_to_linker(&mut l, RunState::browser_view)?,
        }
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_import_has_a_provider_or_is_refused() {
        assert_eq!(provider("wasi:cli/environment@0.2.6"), Some(Provider::Core));
        assert_eq!(provider("wasi:io/streams@0.2.0"), Some(Provider::Core));
        assert_eq!(provider("pdpp:connector/emit@0.1.0"), Some(Provider::Core));
        assert_eq!(provider("pdpp:connector/types@0.1.0"), Some(Provider::Core));
        assert_eq!(
            provider("wasi:http/outgoing-handler@0.2.6"),
            Some(Provider::Granted(Capability::Network))
        );
        assert_eq!(
            provider("wasi:http/types@0.2.6"),
            Some(Provider::Granted(Capability::Network))
        );
        assert_eq!(
            provider("pdpp:connector/browser@0.1.0"),
            Some(Provider::Granted(Capability::Browser))
        );
        assert_eq!(provider("pdpp:connector/camera@0.1.0"), None);
        assert_eq!(provider("acme:gpu/compute"), None);
    }
}
