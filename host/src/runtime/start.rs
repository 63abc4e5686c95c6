//! START: built once per run from a request, or the run is refused before
//! anything is instantiated.
//!
//! The scope must be non-empty and wildcard-free and name only declared
//! streams, once each; requested `fields` are augmented with what the host
//! needs to check each record; the state namespace decides START.state; and
//! every binding the manifest requires must be offered (by the deployment,
//! by an interaction handler, or by the plugin's grants).

use super::{RunRequest, StateInput};
use crate::manifest::bindings;
use crate::protocol::{self as p, StreamScope};
use crate::sandbox::Grants;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Why a run could not start. Nothing was instantiated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("START.scope must include a non-empty streams array")]
    EmptyScope,
    #[error("scope stream {0:?} is not allowed: wildcards are never valid")]
    Wildcard(String),
    #[error("scope stream {0:?} is not declared by the manifest")]
    UnknownStream(String),
    #[error("scope stream {0:?} is listed twice")]
    DuplicateStream(String),
    #[error("Runtime cannot satisfy required binding: {0}")]
    UnsatisfiedBinding(String),
    #[error("state for stream {0:?} must be a JSON object or null")]
    InvalidState(String),
}

/// START for a request to run a plugin with these grants, or the refusal.
/// The grants satisfy their bindings (`network`, with its allowed origins as
/// the descriptor); `interactive` says an interaction handler will answer.
pub fn build_start_for(
    req: &RunRequest,
    run_id: &str,
    interactive: bool,
    grants: &Grants,
) -> Result<p::Start, StartError> {
    let mut offered = req.capabilities.clone();
    offered.extend(grants.descriptors());
    build_start_with(req, run_id, interactive, offered)
}

/// START for a request, offering only the request's own capabilities.
pub fn build_start(req: &RunRequest, run_id: &str, interactive: bool) -> Result<p::Start, StartError> {
    build_start_with(req, run_id, interactive, req.capabilities.clone())
}

fn build_start_with(
    req: &RunRequest,
    run_id: &str,
    interactive: bool,
    capabilities: BTreeMap<String, Value>,
) -> Result<p::Start, StartError> {
    let manifest = &req.manifest;
    let requested = match &req.streams {
        Some(list) => list.clone(),
        None => manifest.streams.iter().map(|s| StreamScope::named(&s.name)).collect(),
    };
    if requested.is_empty() {
        return Err(StartError::EmptyScope);
    }
    let mut streams = Vec::with_capacity(requested.len());
    for mut entry in requested {
        if entry.name.trim().is_empty() || entry.name.contains('*') {
            return Err(StartError::Wildcard(entry.name));
        }
        let spec = manifest
            .stream(&entry.name)
            .ok_or_else(|| StartError::UnknownStream(entry.name.clone()))?;
        if streams.iter().any(|s: &StreamScope| s.name == entry.name) {
            return Err(StartError::DuplicateStream(entry.name));
        }
        if let Some(fields) = &mut entry.fields {
            let required = spec
                .schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            let mut extra: Vec<String> = required.filter_map(|v| v.as_str().map(str::to_owned)).collect();
            extra.extend(spec.primary_key.iter().cloned());
            extra.extend(spec.cursor_field.iter().cloned());
            if entry.time_range.is_some() {
                extra.extend(spec.consent_time_field.iter().cloned());
            }
            // A resource-limited scope must be able to see each record's resource.
            if entry.resources.as_ref().is_some_and(|r| !r.is_empty()) {
                extra.extend(spec.selection.as_ref().and_then(|s| s.resource_field.clone()));
            }
            for f in extra {
                if !fields.contains(&f) {
                    fields.push(f);
                }
            }
        }
        streams.push(entry);
    }

    let mut descriptors = capabilities;
    if interactive {
        descriptors.insert(bindings::INTERACTIVE.to_owned(), json!({}));
    }
    let offered: Vec<&str> = descriptors.keys().map(|k| bindings::canonical(k)).collect();
    for name in manifest.required_bindings() {
        if !offered.contains(&bindings::canonical(name)) {
            return Err(StartError::UnsatisfiedBinding(name.to_owned()));
        }
    }

    let state = match &req.state {
        StateInput::SingleUse => None,
        StateInput::Persisted(map) => {
            for (stream, cursor) in map {
                if !(cursor.is_object() || cursor.is_null()) {
                    return Err(StartError::InvalidState(stream.clone()));
                }
            }
            Some(map.clone())
        }
    };
    Ok(p::Start {
        run_id: run_id.to_owned(),
        collection_mode: req.mode,
        scope: p::Scope { streams },
        state,
        bindings: descriptors,
    })
}
