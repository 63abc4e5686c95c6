//! `GET /v1/connectors`: the plugin directory's connectors with their setup plans.

use super::{ApiError, AppState, Owner};
use crate::manifest::{Lifecycle, LifecycleStatus, Manifest};
use crate::setup::{SetupPlan, env_present, plan};
use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// One connector of the catalog.
#[derive(Serialize, ToSchema)]
pub struct ConnectorView {
    pub connector_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub version: String,
    /// `available`: a plugin is loaded; `removed` / `blocked_upstream`:
    /// listed from a manifest only, no new connections.
    pub availability: LifecycleStatus,
    /// The plugin file's SHA-256 (none for a manifest-only listing).
    pub sha256: Option<String>,
    pub streams: Vec<String>,
    /// For a manifest-only listing: why it takes no new connections.
    pub lifecycle: Option<Lifecycle>,
    pub setup: SetupPlan,
}

#[derive(Serialize, ToSchema)]
pub struct BrokenPlugin {
    pub path: String,
    pub error: String,
}

#[derive(Serialize, ToSchema)]
pub struct Catalog {
    pub connectors: Vec<ConnectorView>,
    /// Connector ids whose plugin disappeared (their connections and records stay).
    pub unavailable: Vec<String>,
    /// Files in the plugin directory that are not usable, and why.
    pub broken: Vec<BrokenPlugin>,
    /// Plugin files still loading (compiling): their connectors appear
    /// as each one is ready.
    pub loading: Vec<String>,
}

fn view(m: &Manifest, sha256: Option<&str>) -> ConnectorView {
    let availability = m
        .closed_for_setup()
        .map_or(LifecycleStatus::Available, |(status, _)| status);
    ConnectorView {
        connector_id: m.connector_id.clone(),
        name: m.name.clone(),
        description: m.description.clone(),
        version: m.version.clone(),
        availability,
        sha256: sha256.map(str::to_owned),
        streams: m.streams.iter().map(|s| s.name.clone()).collect(),
        lifecycle: m.lifecycle.clone(),
        setup: plan(m, &env_present),
    }
}

#[utoipa::path(get, path = "/v1/connectors", tag = "catalog", operation_id = "listConnectors",
    responses((status = 200, body = Catalog)), security(("owner" = [])))]
pub async fn list(_: Owner, State(s): State<Arc<AppState>>) -> Json<Catalog> {
    let snap = s.catalog.snapshot();
    let mut connectors: Vec<ConnectorView> = snap
        .plugins
        .values()
        .map(|p| view(&p.manifest, Some(&p.sha256)))
        .collect();
    connectors.extend(snap.listings.values().map(|m| view(m, None)));
    connectors.sort_by(|a, b| a.connector_id.cmp(&b.connector_id));
    let broken = snap
        .errors
        .iter()
        .map(|(path, e)| BrokenPlugin {
            path: path.display().to_string(),
            error: e.to_string(),
        })
        .collect();
    Json(Catalog {
        connectors,
        unavailable: snap
            .removed
            .iter()
            .filter(|id| !snap.listings.contains_key(*id))
            .cloned()
            .collect(),
        broken,
        loading: snap.pending.iter().map(|p| p.display().to_string()).collect(),
    })
}

#[utoipa::path(get, path = "/v1/connectors/{id}", tag = "catalog", operation_id = "getConnector",
    params(("id" = String, Path, description = "The connector id", example = "demo")),
    responses((status = 200, body = ConnectorView),
        (status = 404, description = "`not_found`: no such connector", body = super::ErrorBody),
        (status = 503, description = "`plugins_loading`: plugins are still compiling; retry (`Retry-After`)", body = super::ErrorBody)),
    security(("owner" = [])))]
pub async fn one(
    _: Owner,
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ConnectorView>, ApiError> {
    let snap = s.catalog.snapshot();
    if let Some(p) = snap.plugins.get(&id) {
        return Ok(Json(view(&p.manifest, Some(&p.sha256))));
    }
    if let Some(m) = snap.listings.get(&id) {
        return Ok(Json(view(m, None)));
    }
    if !snap.pending.is_empty() {
        return Err(ApiError::plugins_loading());
    }
    Err(ApiError::not_found("connector", &id))
}
