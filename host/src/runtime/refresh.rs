//! When a connection's next run should be a full refresh: the periodic
//! full-refresh policy.
//!
//! Incremental runs read what changed since their cursors and never see a
//! deletion upstream; a full-refresh run reads everything and lets the host
//! reconcile (see `reconcile.rs`). How often to pay for one is a policy:
//!
//! - the connector recommends it in its manifest,
//!   `capabilities.refresh_policy.full_refresh_interval_seconds`;
//! - the deployment may override it for every connector with
//!   `[collection] full_refresh_interval_seconds` in the serve configuration
//!   (`0`: never by policy).
//!
//! The interval counts from the connection's last succeeded full refresh,
//! or, before it has had one, from its activation (its first sync read
//! everything there was). The owner can start a full refresh at any time
//! (`POST /v1/connections/{id}/runs` with `{"mode": "full_refresh"}`); a
//! scheduler asks [`FullRefreshPolicy::mode_at`] which mode its next run of
//! a connection takes. Pure: the caller reads the times from the store
//! (`Store::last_full_refresh_at`, the connection's `activated_at`).

use crate::manifest::Manifest;
use crate::protocol::CollectionMode;

/// How often a connection's runs should be full refreshes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FullRefreshPolicy {
    /// Seconds between full refreshes; `None`: never by policy.
    pub every_seconds: Option<u64>,
}

impl FullRefreshPolicy {
    /// The policy for a connector: the deployment's setting when it has one
    /// (`Some(0)` turns periodic full refreshes off), else the manifest's
    /// recommendation.
    pub fn of(manifest: &Manifest, deployment: Option<u64>) -> Self {
        let every = deployment.or_else(|| manifest.full_refresh_interval_seconds());
        FullRefreshPolicy {
            every_seconds: every.filter(|s| *s > 0),
        }
    }

    /// When the next full refresh is due (Unix ms): the interval after the
    /// last succeeded full refresh, else after activation. `None` when the
    /// policy has no interval or the connection was never activated.
    pub fn due_at(&self, last_full_refresh_at: Option<i64>, activated_at: Option<i64>) -> Option<i64> {
        let every_ms = i64::try_from(self.every_seconds?).ok()?.saturating_mul(1_000);
        Some(last_full_refresh_at.or(activated_at)?.saturating_add(every_ms))
    }

    /// The mode a run started at `now` (Unix ms) should take.
    pub fn mode_at(&self, last_full_refresh_at: Option<i64>, activated_at: Option<i64>, now: i64) -> CollectionMode {
        match self.due_at(last_full_refresh_at, activated_at) {
            Some(due) if now >= due => CollectionMode::FullRefresh,
            _ => CollectionMode::Incremental,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(policy: serde_json::Value) -> Manifest {
        let m = json!({
            "connector_id": "x", "version": "1",
            "capabilities": { "refresh_policy": policy },
            "streams": [{ "name": "s", "primary_key": ["id"], "schema": { "type": "object", "properties": { "id": {} } } }],
        });
        Manifest::from_json(&m.to_string()).unwrap()
    }

    const DAY: i64 = 86_400_000;

    #[test]
    fn a_full_refresh_is_due_one_interval_after_the_last_one_or_after_activation() {
        let weekly = FullRefreshPolicy::of(&manifest(json!({ "full_refresh_interval_seconds": 604_800 })), None);
        assert_eq!(weekly.every_seconds, Some(604_800));
        assert_eq!(weekly.due_at(None, Some(0)), Some(7 * DAY), "counted from activation");
        assert_eq!(weekly.due_at(Some(10 * DAY), Some(0)), Some(17 * DAY));
        assert_eq!(
            weekly.mode_at(Some(10 * DAY), Some(0), 16 * DAY),
            CollectionMode::Incremental
        );
        assert_eq!(
            weekly.mode_at(Some(10 * DAY), Some(0), 17 * DAY),
            CollectionMode::FullRefresh
        );
        assert_eq!(weekly.due_at(None, None), None, "a draft never activated is not due");
        assert_eq!(weekly.mode_at(None, None, 100 * DAY), CollectionMode::Incremental);
    }

    #[test]
    fn the_deployment_setting_overrides_the_manifest_and_zero_turns_it_off() {
        let m = manifest(json!({ "full_refresh_interval_seconds": 604_800, "recommended_mode": "automatic" }));
        assert_eq!(FullRefreshPolicy::of(&m, Some(86_400)).every_seconds, Some(86_400));
        let off = FullRefreshPolicy::of(&m, Some(0));
        assert_eq!(off.every_seconds, None);
        assert_eq!(off.mode_at(None, Some(0), 1_000 * DAY), CollectionMode::Incremental);
        let none = manifest(json!({ "recommended_mode": "automatic" }));
        assert_eq!(FullRefreshPolicy::of(&none, None).every_seconds, None);
        assert_eq!(FullRefreshPolicy::of(&none, Some(3_600)).every_seconds, Some(3_600));
    }
}
