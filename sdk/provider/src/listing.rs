//! The incremental-listing loop: cursor → first page → walk pages → scope
//! filter → record → progress → checkpoint.
//!
//! A stream's cursor is one *watermark*: the newest value, among the items
//! collected, of the field the listing is ordered or filtered by
//! (`updated_at`, `last_edited_time`, `day`). A run starts from the previous
//! run's watermark ([`Listing::since`]: the connector passes it to the
//! provider, or the listing stops when it reaches it), walks every page, and
//! checkpoints the newest watermark it emitted. Items the scope excludes do
//! not move the watermark, so a later run with a wider scope still sees them.
//!
//! Where a provider's order or index is not strict, a [`Spec::lookback`]
//! makes each run start that far *below* the previous watermark: an item
//! that became visible late with an older time (a search index that lags, a
//! day whose summary is revised, a `start_date` a provider treats as
//! exclusive) is still inside the next run's window. Items in the window are
//! read again and emitted again (upserts of the same record, harmless); the
//! checkpoint never moves back. A full-refresh run has no cursor and reads
//! everything.
//!
//! ```no_run
//! use pdpp_provider::{Api, Entry, Listing, Order, Page, Spec, Stop, encode};
//! use pdpp_sdk::{Run, StreamScope, Value};
//!
//! const ISSUES: Spec = Spec {
//!     cursor_field: "last",
//!     key: "/id",
//!     watermark: "/updated_at",
//!     consent_time_field: Some("created_at"),
//!     order: Order::Filtered,
//!     lookback: 0,
//!     max_pages: 2_000,
//! };
//!
//! fn issues(run: &mut Run, api: &Api, scope: &StreamScope) -> Result<(), Stop> {
//!     let mut listing = Listing::start(run, scope, ISSUES)?;
//!     let mut first = "https://api.example.com/issues?per_page=100".to_owned();
//!     if let Some(since) = listing.since() {
//!         first.push_str(&format!("&since={}", encode(since)));
//!     }
//!     listing.walk(
//!         "GET /issues",
//!         |next| {
//!             let (_, body) = api.get_json(next.unwrap_or(&first))?;
//!             let items = body["items"].as_array().cloned().unwrap_or_default();
//!             Ok(Page { items, next: body["next"].as_str().map(str::to_owned) })
//!         },
//!         |issue| Entry::Upsert(issue.clone()),
//!     )?;
//!     listing.finish()
//! }
//! ```

use crate::stop::Stop;
use crate::text::key_of;
use pdpp_sdk::serde_json::Map;
use pdpp_sdk::{Run, StreamScope, Value};
use pdpp_types::{format_date, format_instant, parse_instant};
use std::collections::HashSet;

/// How a listing's order relates to the stream's cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// The provider filters by the cursor itself (a `since` parameter), in
    /// any order: every page is read.
    Filtered,
    /// Newest first by the watermark: the listing ends at the first item at
    /// or before the cursor.
    NewestFirst,
    /// Newest first, but the provider rounds the watermark (Notion: to the
    /// minute): the listing ends at the first item strictly before the
    /// cursor, so items sharing the cursor's value are read again (upserts,
    /// harmless) and none edited within that minute is missed.
    NewestFirstRounded,
}

/// Where a stream's listing finds what it needs in each item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The field of the cursor object holding the watermark
    /// (`{"last": "2026-01-01T00:00:00Z"}`). The checkpoint is that object,
    /// or `{}` while nothing has been collected.
    pub cursor_field: &'static str,
    /// JSON pointer to an item's record key (`/id`): a non-empty string or a
    /// number. An item without one is passed over.
    pub key: &'static str,
    /// JSON pointer to an item's watermark (`/updated_at`), compared as an
    /// instant ([`later`]).
    pub watermark: &'static str,
    /// The record's consent-time field (the manifest's
    /// `consent_time_field`), checked in the *record* against the scope's
    /// time window exactly as the host checks it; `None` when the stream
    /// has none.
    pub consent_time_field: Option<&'static str>,
    /// How the listing's order relates to the cursor.
    pub order: Order,
    /// Seconds below the previous watermark each run starts reading from
    /// (0: from the watermark itself), for providers whose ordering or
    /// indexing is not strict. A date watermark (`YYYY-MM-DD`) moves back in
    /// whole days.
    pub lookback: u64,
    /// More pages than any real account has: a listing that goes on is
    /// broken, and fails the stream instead of looping.
    pub max_pages: usize,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// The items, in the listing's order.
    pub items: Vec<Value>,
    /// The token of the next page (a URL, a cursor), `None` (or empty) on the
    /// last page.
    pub next: Option<String>,
}

/// What to do with one item of a listing.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// Upsert this record (a JSON object), if the scope allows its key and
    /// consent time.
    Upsert(Value),
    /// Delete the item's record (archived, trashed), if the scope allows its
    /// key. A deletion carries no consent time to check.
    Delete,
    /// Not an item of this stream (another object type, a duplicate): not
    /// emitted, and the watermark does not move.
    Ignore,
}

/// Guards a paginated listing: a page token seen before, or more pages than
/// any real account has, fails the stream instead of looping.
#[derive(Debug)]
pub struct PageGuard {
    what: String,
    seen: HashSet<String>,
    max: usize,
}

impl PageGuard {
    /// A guard for the listing `what` (named in messages), allowing `max` pages.
    pub fn new(what: impl Into<String>, max: usize) -> Self {
        PageGuard {
            what: what.into(),
            seen: HashSet::new(),
            max,
        }
    }

    /// Note the token of the page about to be read.
    pub fn visit(&mut self, token: &str) -> Result<(), Stop> {
        if !self.seen.insert(token.to_owned()) {
            return Err(Stop::Stream(format!(
                "{}: pagination loops (page {token} was already read)",
                self.what
            )));
        }
        if self.seen.len() > self.max {
            return Err(Stop::Stream(format!("{}: more than {} pages", self.what, self.max)));
        }
        Ok(())
    }

    /// Pages read so far.
    pub fn count(&self) -> usize {
        self.seen.len()
    }
}

/// Whether timestamp `a` is strictly later than `b`, compared as instants
/// (RFC 3339 with offsets and fractions, or a date). Values that do not
/// parse compare as text, so an odd provider format still orders itself.
pub fn later(a: &str, b: &str) -> bool {
    match (parse_instant(a), parse_instant(b)) {
        (Some(x), Some(y)) => x > y,
        _ => a > b,
    }
}

/// The later of two optional timestamps (see [`later`]); ties keep `a`.
pub fn latest(a: Option<String>, b: Option<&str>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) if later(b, &a) => Some(b.to_owned()),
        (Some(a), _) => Some(a),
        (None, b) => b.map(str::to_owned),
    }
}

/// `watermark` moved `seconds` earlier, in the watermark's own form: a date
/// stays a date (`YYYY-MM-DD`), an instant becomes RFC 3339 UTC. A value
/// that does not parse, or no lookback, is returned as it is.
fn looked_back(watermark: &str, seconds: u64) -> String {
    let Some(at) = parse_instant(watermark).filter(|_| seconds > 0) else {
        return watermark.to_owned();
    };
    let from = at.saturating_sub((seconds as i64).saturating_mul(1_000));
    if is_date(watermark) {
        format_date(from)
    } else {
        format_instant(from)
    }
}

/// `YYYY-MM-DD` alone, without a time of day.
fn is_date(text: &str) -> bool {
    text.len() == 10 && !text.contains('T')
}

/// One stream's incremental listing in progress. Start it, walk one or
/// more listings, finish it.
pub struct Listing<'r> {
    run: &'r mut Run,
    scope: StreamScope,
    spec: Spec,
    /// Where this run reads from: the previous watermark less the lookback.
    since: Option<String>,
    newest: Option<String>,
    upserts: u64,
    deletes: u64,
}

impl<'r> Listing<'r> {
    /// Read the stream's cursor (none in full-refresh mode; a cursor without
    /// a text `cursor_field` counts as none, so the stream is read again from
    /// the start rather than failing every run).
    pub fn start(run: &'r mut Run, scope: &StreamScope, spec: Spec) -> Result<Self, Stop> {
        let cursor: Option<Value> = run.cursor(&scope.name)?;
        let watermark = cursor
            .as_ref()
            .and_then(|c| c.get(spec.cursor_field))
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Listing {
            run,
            scope: scope.clone(),
            since: watermark.as_deref().map(|w| looked_back(w, spec.lookback)),
            newest: watermark,
            spec,
            upserts: 0,
            deletes: 0,
        })
    }

    /// Where this run reads from, to pass to the provider as `since`: the
    /// previous run's watermark, less the spec's [`lookback`](Spec::lookback).
    pub fn since(&self) -> Option<&str> {
        self.since.as_deref()
    }

    /// The newest watermark so far: the next checkpoint.
    pub fn newest(&self) -> Option<&str> {
        self.newest.as_deref()
    }

    /// Records emitted so far (upserts and deletions).
    pub fn count(&self) -> u64 {
        self.upserts + self.deletes
    }

    /// Whether the listing has reached what the previous run collected.
    fn reached_cursor(&self, watermark: Option<&str>) -> bool {
        let (Some(since), Some(w)) = (self.since.as_deref(), watermark) else {
            return false;
        };
        match self.spec.order {
            Order::Filtered => false,
            Order::NewestFirst => !later(w, since),
            Order::NewestFirstRounded => later(since, w),
        }
    }

    /// Walk one listing from its first page: `fetch(None)` reads the first
    /// page, `fetch(Some(token))` the page a previous one named. Each item
    /// goes through `entry` and, if the scope allows it, out as a record;
    /// progress is reported after every page. `what` names the listing in
    /// messages (`GET /user/repos`).
    ///
    /// Call it more than once to continue one stream across listings (a
    /// search capped at 1000 hits, re-queried below the oldest hit).
    pub fn walk(
        &mut self,
        what: &str,
        mut fetch: impl FnMut(Option<&str>) -> Result<Page, Stop>,
        mut entry: impl FnMut(&Value) -> Entry,
    ) -> Result<(), Stop> {
        let mut guard = PageGuard::new(what, self.spec.max_pages);
        let mut token: Option<String> = None;
        loop {
            guard.visit(token.as_deref().unwrap_or(""))?;
            let page = fetch(token.as_deref())?;
            let mut reached = false;
            for item in &page.items {
                let watermark = item.pointer(self.spec.watermark).and_then(Value::as_str);
                if self.reached_cursor(watermark) {
                    reached = true;
                    break;
                }
                if self.emit(item, &mut entry)? {
                    self.newest = latest(self.newest.take(), watermark);
                }
            }
            let stream = self.scope.name.as_str();
            let count = self.upserts + self.deletes;
            self.run
                .progress(Some(stream), &format!("collecting {stream}"), Some(count), None);
            match page.next {
                Some(next) if !reached && !next.is_empty() => token = Some(next),
                _ => return Ok(()),
            }
        }
    }

    /// Emit one item if it is one and the scope allows it; whether it was.
    fn emit(&mut self, item: &Value, entry: &mut impl FnMut(&Value) -> Entry) -> Result<bool, Stop> {
        let Some(key) = item.pointer(self.spec.key).and_then(key_of) else {
            return Ok(false);
        };
        let stream = self.scope.name.as_str();
        match entry(item) {
            Entry::Ignore => Ok(false),
            Entry::Delete => {
                if !self.scope.allows_resource(&key) {
                    return Ok(false);
                }
                self.run.delete(stream, key)?;
                self.deletes += 1;
                Ok(true)
            }
            Entry::Upsert(data) => {
                let allowed = match self.spec.consent_time_field {
                    Some(field) => self.scope.allows_record(&key, data.get(field).and_then(Value::as_str)),
                    None => self.scope.allows_resource(&key),
                };
                if !allowed {
                    return Ok(false);
                }
                self.run.record(stream, key, &data)?;
                self.upserts += 1;
                Ok(true)
            }
        }
    }

    /// Checkpoint the newest watermark (`{cursor_field: newest}`, or `{}`)
    /// and report the stream collected.
    pub fn finish(self) -> Result<(), Stop> {
        let stream = self.scope.name.as_str();
        let mut cursor = Map::new();
        if let Some(newest) = self.newest {
            cursor.insert(self.spec.cursor_field.to_owned(), Value::String(newest));
        }
        self.run.checkpoint(stream, &Value::Object(cursor))?;
        let count = self.upserts + self.deletes;
        let message = match self.deletes {
            0 => format!("{stream} collected"),
            d => format!("{stream} collected: {} current, {d} deleted", self.upserts),
        };
        self.run.progress(Some(stream), &message, Some(count), Some(count));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdpp_sdk::testing::{EmittedRecord, TestHost};
    use pdpp_sdk::types::RecordOp;
    use pdpp_sdk::{Key, Mode, TimeRange, json};

    const NEWEST_FIRST: Spec = Spec {
        cursor_field: "last",
        key: "/id",
        watermark: "/at",
        consent_time_field: Some("created"),
        order: Order::NewestFirst,
        lookback: 0,
        max_pages: 10,
    };

    fn item(id: u64, at: &str) -> Value {
        json!({ "id": id, "at": at, "created": at })
    }

    /// Serve `pages` in order; page `i`'s next token is `"p{i+1}"`.
    fn pages(pages: Vec<Vec<Value>>) -> impl FnMut(Option<&str>) -> Result<Page, Stop> {
        move |token| {
            let i: usize = token.map_or(0, |t| t[1..].parse().unwrap());
            Ok(Page {
                items: pages[i].clone(),
                next: (i + 1 < pages.len()).then(|| format!("p{}", i + 1)),
            })
        }
    }

    fn keys(records: &[EmittedRecord]) -> Vec<Key> {
        records.iter().map(|r| r.key.clone()).collect()
    }

    fn collect(host: &TestHost, spec: Spec, listing: Vec<Vec<Value>>) -> Result<(), Stop> {
        let mut run = host.run();
        let scope = run.stream_scope("s").cloned().unwrap();
        let result = (|| {
            let mut l = Listing::start(&mut run, &scope, spec)?;
            l.walk("GET /s", pages(listing), |i| Entry::Upsert(i.clone()))?;
            l.finish()
        })();
        host.finish(run, Ok(()));
        result
    }

    #[test]
    fn a_newest_first_listing_stops_at_the_cursor_and_checkpoints_the_newest() {
        let host = TestHost::new()
            .stream("s")
            .cursor("s", json!({ "last": "2026-01-02T00:00:00Z" }));
        let listing = vec![
            vec![item(4, "2026-01-04T00:00:00Z"), item(3, "2026-01-03T01:00:00+01:00")],
            vec![item(2, "2026-01-02T00:00:00.000Z"), item(1, "2026-01-01T00:00:00Z")],
            vec![item(0, "2025-12-31T00:00:00Z")],
        ];
        let pages_read = std::cell::Cell::new(0);
        let mut run = host.run();
        let scope = run.stream_scope("s").cloned().unwrap();
        let mut l = Listing::start(&mut run, &scope, NEWEST_FIRST).unwrap();
        assert_eq!(l.since(), Some("2026-01-02T00:00:00Z"));
        let mut serve = pages(listing);
        l.walk(
            "GET /s",
            |t| {
                pages_read.set(pages_read.get() + 1);
                serve(t)
            },
            |i| Entry::Upsert(i.clone()),
        )
        .unwrap();
        l.finish().unwrap();
        host.finish(run, Ok(()));
        assert_eq!(keys(&host.records("s")), ["4".into(), "3".into()]);
        assert_eq!(pages_read.get(), 2, "the page after the cursor is never read");
        assert_eq!(
            host.checkpoint("s"),
            Some(Some(json!({ "last": "2026-01-04T00:00:00Z" })))
        );
    }

    #[test]
    fn a_rounded_listing_reads_the_cursors_own_instant_again() {
        let spec = Spec {
            order: Order::NewestFirstRounded,
            ..NEWEST_FIRST
        };
        let host = TestHost::new()
            .stream("s")
            .cursor("s", json!({ "last": "2026-01-02T00:00:00.000Z" }));
        let listing = vec![vec![
            item(3, "2026-01-03T00:00:00Z"),
            item(2, "2026-01-02T00:00:00Z"),
            item(1, "2026-01-01T23:59:00Z"),
            item(0, "2026-01-03T00:00:00Z"),
        ]];
        collect(&host, spec, listing).unwrap();
        assert_eq!(keys(&host.records("s")), ["3".into(), "2".into()]);
    }

    #[test]
    fn a_lookback_reads_below_the_cursor_and_never_moves_the_checkpoint_back() {
        // A search index that lags: item 1 became visible after the previous
        // run, with an edit time 20 minutes older than that run's watermark.
        let spec = Spec {
            order: Order::NewestFirstRounded,
            lookback: 3_600,
            ..NEWEST_FIRST
        };
        let host = TestHost::new()
            .stream("s")
            .cursor("s", json!({ "last": "2026-01-02T12:00:00.000Z" }));
        let listing = vec![
            vec![item(3, "2026-01-02T12:30:00.000Z"), item(1, "2026-01-02T11:40:00.000Z")],
            vec![item(2, "2026-01-02T11:00:00.000Z"), item(0, "2026-01-02T10:59:00.000Z")],
            vec![item(9, "2026-01-01T00:00:00.000Z")],
        ];
        let mut run = host.run();
        let scope = run.stream_scope("s").cloned().unwrap();
        let l = Listing::start(&mut run, &scope, spec).unwrap();
        assert_eq!(l.since(), Some("2026-01-02T11:00:00Z"), "an hour below the watermark");
        drop(l);
        host.finish(run, Ok(()));
        collect(&host, spec, listing).unwrap();
        assert_eq!(
            keys(&host.records("s")),
            ["3".into(), "1".into(), "2".into()],
            "the late item and the window's own bound are read; the page past it is not"
        );
        assert_eq!(
            host.checkpoint("s"),
            Some(Some(json!({ "last": "2026-01-02T12:30:00.000Z" })))
        );

        let quiet = TestHost::new()
            .stream("s")
            .cursor("s", json!({ "last": "2026-01-02T12:00:00.000Z" }));
        collect(&quiet, spec, vec![vec![item(1, "2026-01-02T11:40:00.000Z")]]).unwrap();
        assert_eq!(
            quiet.checkpoint("s"),
            Some(Some(json!({ "last": "2026-01-02T12:00:00.000Z" }))),
            "an item re-read in the window does not pull the watermark back"
        );
    }

    #[test]
    fn a_date_watermark_looks_back_in_whole_days_in_its_own_form() {
        assert_eq!(looked_back("2026-01-13", 86_400), "2026-01-12");
        assert_eq!(looked_back("2026-03-01", 86_400), "2026-02-28");
        assert_eq!(looked_back("2026-01-13T00:00:00.000Z", 90), "2026-01-12T23:58:30Z");
        assert_eq!(
            looked_back("2026-01-13", 0),
            "2026-01-13",
            "no lookback: the text as it was"
        );
        assert_eq!(looked_back("not a time", 60), "not a time");
    }

    #[test]
    fn the_time_window_filters_on_the_records_consent_time_as_the_host_does() {
        let host = TestHost::new().scope(StreamScope {
            time_range: Some(TimeRange {
                since: Some("2026-01-01T00:30:00Z".into()),
                until: Some("2026-02-01T00:00:00Z".into()),
            }),
            ..StreamScope::named("s")
        });
        let listing = vec![vec![
            // Midnight UTC, written at UTC+1: before the window (text says inside).
            item(1, "2026-01-01T01:00:00+01:00"),
            // Half a second into the window (whole seconds said on the bound).
            item(2, "2026-01-01T00:30:00.5Z"),
            item(3, "2026-02-01T00:00:00Z"),
            json!({ "id": 4, "at": "2026-01-10T00:00:00Z" }),
        ]];
        collect(&host, NEWEST_FIRST, listing).unwrap();
        assert_eq!(
            keys(&host.records("s")),
            ["2".into()],
            "no consent time fails a window too"
        );
        assert_eq!(
            host.checkpoint("s"),
            Some(Some(json!({ "last": "2026-01-01T00:30:00.5Z" }))),
            "excluded items do not move the watermark"
        );
    }

    #[test]
    fn resources_limit_upserts_and_deletions_and_ignored_items_do_not_count() {
        let host = TestHost::new().scope(StreamScope {
            resources: Some(vec!["1".into(), "2".into(), "3".into()]),
            ..StreamScope::named("s")
        });
        let mut run = host.run();
        let scope = run.stream_scope("s").cloned().unwrap();
        let mut l = Listing::start(&mut run, &scope, NEWEST_FIRST).unwrap();
        let listing = vec![vec![
            item(1, "2026-01-05T00:00:00Z"),
            json!({ "id": 2, "at": "2026-01-04T00:00:00Z", "gone": true }),
            json!({ "id": 3, "at": "2026-01-09T00:00:00Z", "other": true }),
            item(9, "2026-01-08T00:00:00Z"),
            json!({ "at": "2026-01-07T00:00:00Z" }),
        ]];
        l.walk("GET /s", pages(listing), |i| {
            if i["other"] == true {
                Entry::Ignore
            } else if i["gone"] == true {
                Entry::Delete
            } else {
                Entry::Upsert(i.clone())
            }
        })
        .unwrap();
        assert_eq!(l.count(), 2);
        l.finish().unwrap();
        host.finish(run, Ok(()));
        let records = host.records("s");
        assert_eq!(keys(&records), ["1".into(), "2".into()]);
        assert_eq!(records[1].op, RecordOp::Delete);
        assert_eq!(
            host.checkpoint("s"),
            Some(Some(json!({ "last": "2026-01-05T00:00:00Z" })))
        );
    }

    #[test]
    fn a_looping_or_endless_listing_fails_the_stream() {
        let host = TestHost::new().stream("s");
        let mut run = host.run();
        let scope = run.stream_scope("s").cloned().unwrap();
        let mut l = Listing::start(&mut run, &scope, NEWEST_FIRST).unwrap();
        let looping = l.walk(
            "GET /s",
            |t| {
                Ok(Page {
                    items: vec![],
                    next: Some(if t == Some("b") { "a" } else { "b" }.into()),
                })
            },
            |i| Entry::Upsert(i.clone()),
        );
        assert!(
            matches!(&looping, Err(Stop::Stream(m)) if m.contains("pagination loops")),
            "{looping:?}"
        );
        let mut n = 0;
        let endless = l.walk(
            "GET /s",
            |_| {
                n += 1;
                Ok(Page {
                    items: vec![],
                    next: Some(format!("t{n}")),
                })
            },
            |i| Entry::Upsert(i.clone()),
        );
        assert!(
            matches!(&endless, Err(Stop::Stream(m)) if m.contains("more than 10 pages")),
            "{endless:?}"
        );
    }

    #[test]
    fn a_first_run_checkpoints_an_empty_cursor_and_full_refresh_ignores_the_old_one() {
        let host = TestHost::new().stream("s");
        collect(&host, NEWEST_FIRST, vec![vec![]]).unwrap();
        assert_eq!(host.checkpoint("s"), Some(Some(json!({}))));

        let full = TestHost::new()
            .stream("s")
            .mode(Mode::FullRefresh)
            .cursor("s", json!({ "last": "2026-01-02T00:00:00Z" }));
        collect(&full, NEWEST_FIRST, vec![vec![item(1, "2026-01-01T00:00:00Z")]]).unwrap();
        assert_eq!(full.records("s").len(), 1, "full refresh reads past the old cursor");
    }

    #[test]
    fn a_filtered_listing_reads_every_page_and_keeps_the_newest_across_walks() {
        let spec = Spec {
            order: Order::Filtered,
            ..NEWEST_FIRST
        };
        let host = TestHost::new()
            .stream("s")
            .cursor("s", json!({ "last": "2026-01-05T00:00:00Z" }));
        let mut run = host.run();
        let scope = run.stream_scope("s").cloned().unwrap();
        let mut l = Listing::start(&mut run, &scope, spec).unwrap();
        l.walk(
            "GET /s?q=1",
            pages(vec![
                vec![item(1, "2026-01-06T00:00:00Z")],
                vec![item(2, "2026-01-01T00:00:00Z")],
            ]),
            |i| Entry::Upsert(i.clone()),
        )
        .unwrap();
        l.walk("GET /s?q=2", pages(vec![vec![item(3, "2026-01-07T00:00:00Z")]]), |i| {
            Entry::Upsert(i.clone())
        })
        .unwrap();
        assert_eq!(l.newest(), Some("2026-01-07T00:00:00Z"));
        l.finish().unwrap();
        host.finish(run, Ok(()));
        assert_eq!(host.records("s").len(), 3, "the provider filtered; the kit does not");
    }

    #[test]
    fn later_compares_instants_not_text() {
        assert!(later("2026-01-01T00:00:01Z", "2026-01-01T00:00:00.000Z"));
        assert!(later("2026-01-01T00:00:00.5Z", "2026-01-01T00:00:00Z"));
        assert!(!later("2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00Z"));
        assert!(!later("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z"));
        assert!(later("2025-12-31T23:30:00-01:00", "2026-01-01T00:00:00Z"));
        assert!(later("b", "a"), "unparseable values compare as text");
        assert_eq!(
            latest(Some("2026-01-02".into()), Some("2026-01-01")),
            Some("2026-01-02".into())
        );
        assert_eq!(latest(None, Some("2026-01-01")), Some("2026-01-01".into()));
        assert_eq!(latest(Some("2026-01-01".into()), None), Some("2026-01-01".into()));
    }
}
