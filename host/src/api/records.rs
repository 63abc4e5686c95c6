//! Reading collected records (cursor pagination, time filter) and the audit trail.

use super::{ApiError, AppState, ErrorBody, Owner, load_connection};
use crate::store::{AuditEvent, RecordQuery, StoredRecord};
use axum::Json;
use axum::extract::{Query, State};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

type St = State<Arc<AppState>>;

pub const DEFAULT_PAGE: i64 = 100;

/// The cursor's encoding: unpadded URL-safe base64, read leniently (unused
/// trailing bits allowed), so every string of the documented pattern is a
/// cursor.
const CURSOR: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
);
pub const MAX_PAGE: i64 = 1000;

/// The schema of a page size: 1..=[`MAX_PAGE`], default [`DEFAULT_PAGE`].
fn page_limit() -> utoipa::openapi::schema::Object {
    super::openapi::int_range(1, MAX_PAGE, Some(DEFAULT_PAGE))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// The connection whose records to read.
    pub connection_id: String,
    /// One of the connector's streams.
    #[param(example = "contacts")]
    pub stream: String,
    /// Page size.
    #[param(schema_with = page_limit)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
    /// Only records whose time is at or after this RFC 3339 instant. A
    /// record's time is its stream's `consent_time_field`, else `emitted_at`.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Only records whose time is before this RFC 3339 instant.
    #[param(format = DateTime)]
    pub until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RecordPage {
    pub records: Vec<StoredRecord>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/records", tag = "records", operation_id = "listRecords",
    params(RecordsQuery),
    responses((status = 200, description = "A page of records in key order", body = RecordPage,
            example = json!({"records": [{"stream": "contacts", "key": "c-0001",
                "data": {"id": "c-0001", "name": "Ada Lovelace", "updated_at": "2026-01-01T00:00:00Z"},
                "emitted_at": "2026-12-07T20:00:00.000Z", "run_id": "run_0123", "record_time": "2026-01-01T00:00:00Z"}],
                "next_cursor": "Yy0wMDAx"})),
        (status = 400, description = "`invalid_query`, `invalid_limit`, `invalid_cursor` (not a `next_cursor` this API returned), `invalid_time` (not RFC 3339)", body = ErrorBody),
        (status = 404, description = "`not_found`: no such connection, or a stream its connector does not declare", body = ErrorBody)),
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
            // Any string of the declared pattern reads as a position in key
            // order; one this API returned is exactly the last key of a page.
            CURSOR
                .decode(c)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|_| ApiError::bad_request("invalid_cursor", "the cursor is not one this API returned"))?,
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
        records.last().map(|r| CURSOR.encode(r.key.as_bytes()))
    } else {
        None
    };
    Ok(Json(RecordPage { records, next_cursor }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only the entries of this connection.
    pub connection_id: Option<String>,
    /// Entries after this sequence number.
    #[param(schema_with = super::openapi::int64)]
    pub after: Option<i64>,
    /// Page size.
    #[param(schema_with = page_limit)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", operation_id = "listAuditEvents",
    params(AuditQuery),
    responses((status = 200, body = AuditPage),
        (status = 400, description = "`invalid_query`, `invalid_limit`", body = ErrorBody)),
    security(("owner" = [])))]
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
