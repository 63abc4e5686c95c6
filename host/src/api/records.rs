//! Reading collected records (cursor pagination, time filter) and the audit trail.

use super::{ApiError, AppState, ErrorBody, Owner, load_connection};
use crate::store::{AuditEvent, RecordQuery, StoredRecord};
use axum::Json;
use axum::extract::{Query, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

type St = State<Arc<AppState>>;

pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

#[derive(Deserialize, ToSchema)]
pub struct RecordsQuery {
    pub connection_id: String,
    pub stream: String,
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only records whose time is at or after this RFC 3339 instant. A
    /// record's time is its stream's `consent_time_field`, else `emitted_at`.
    pub since: Option<String>,
    /// Only records whose time is before this instant.
    pub until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RecordPage {
    #[schema(value_type = Vec<Object>)]
    pub records: Vec<StoredRecord>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/records", tag = "records",
    params(("connection_id" = String, Query), ("stream" = String, Query), ("limit" = Option<i64>, Query),
        ("cursor" = Option<String>, Query), ("since" = Option<String>, Query), ("until" = Option<String>, Query)),
    responses((status = 200, body = RecordPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("owner" = [])))]
pub async fn list(
    _: Owner,
    State(s): St,
    q: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RecordPage>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let conn = load_connection(&s, &q.connection_id).await?;
    // A stream the connector does not declare is a 404, not an empty page.
    let manifest = match s.catalog.get(&conn.connector_id) {
        Some(p) => Some(p.manifest.clone()),
        None => s.dep.store.connector_manifest(&conn.connector_id).await?.map(Arc::new),
    };
    if manifest.is_some_and(|m| m.stream(&q.stream).is_none()) {
        return Err(ApiError::not_found(
            &format!("stream of connector {}", conn.connector_id),
            &q.stream,
        ));
    }
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit is between 1 and {MAX_PAGE}"),
        ));
    }
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(
            URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "the cursor is not one this API returned"))?,
        ),
    };
    for t in [&q.since, &q.until].into_iter().flatten() {
        if crate::runtime::parse_instant(t).is_none() {
            return Err(ApiError::bad_request(
                "invalid_time",
                format!("{t:?} is not an RFC 3339 timestamp"),
            ));
        }
    }
    // One more than asked says whether another page exists.
    let mut records = s
        .dep
        .store
        .records_page(&RecordQuery {
            connection_id: &q.connection_id,
            stream: &q.stream,
            after_key: after.as_deref(),
            since: q.since.as_deref(),
            until: q.until.as_deref(),
            limit: limit + 1,
        })
        .await?;
    let next_cursor = if records.len() as i64 > limit {
        records.truncate(limit as usize);
        records.last().map(|r| URL_SAFE_NO_PAD.encode(r.key.as_bytes()))
    } else {
        None
    };
    Ok(Json(RecordPage { records, next_cursor }))
}

#[derive(Deserialize, ToSchema)]
pub struct AuditQuery {
    pub connection_id: Option<String>,
    /// Entries after this sequence number.
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<AuditEvent>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(("connection_id" = Option<String>, Query), ("after" = Option<i64>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = AuditPage)), security(("owner" = [])))]
pub async fn audit(
    _: Owner,
    State(s): St,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit is between 1 and {MAX_PAGE}"),
        ));
    }
    let events = s
        .dep
        .store
        .audit_events(q.connection_id.as_deref(), q.after.unwrap_or(0), limit)
        .await?;
    Ok(Json(AuditPage { events }))
}
