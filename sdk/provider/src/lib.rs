//! The provider kit: what every connector that reads a provider's REST API
//! with a token repeats, written once on top of `pdpp-sdk`.
//!
//! - [`Api`]: an authenticated client that sends the credential as a secret
//!   placeholder, adds the provider's common headers, and applies the retry
//!   policy below; [`Api::probe_json`] is the credential probe's one call.
//! - [`Listing`]: the incremental-listing loop (cursor → first page → walk
//!   pages → scope filter → record → progress → checkpoint), configured by a
//!   [`Spec`] and two closures: how to fetch a page and how an item becomes
//!   a record.
//! - [`Streams`]: how each stream ended ([`Stop`]) and the DONE that follows.
//!
//! The error policy is the same for every provider:
//!
//! | what happened | what the run reports |
//! |---|---|
//! | 401 | DONE `failed`, code `credential_rejected`, recovery `refresh_credentials`, not retryable; the whole run stops |
//! | 429; 403 with `Retry-After`, or with `x-ratelimit-remaining: 0`, or whose body says "rate limit" / "abuse detection" (GitHub's secondary limit) | waited out (`Retry-After`, `x-ratelimit-reset`, a minute for a limit that names no time, or backoff) while each wait is at most `Api::max_wait` (30 s) and all fit the request's budget (90 s); past that SKIP_RESULT `rate_limited` (`retry_by_runtime`, with `retry_after_seconds` in its diagnostics) for the stream, which keeps its previous cursor |
//! | any other 403 | never a refused credential: SKIP_RESULT `forbidden` (`manual_action_required`) with the provider's message for that stream, which keeps its previous cursor; the other streams go on |
//! | 408, 5xx, a transport failure | retried with backoff within the same budget, then a stream failure |
//! | a page seen before, too many pages, malformed JSON, any other status | the certified stream-scoped failure: SKIP_RESULT `stream_collection_failed` (`retry_by_runtime`), the other streams carry on, DONE `failed` with code `stream_collection_failed`, retryable, and the streams that finished commit their checkpoints |
//!
//! The credential probe ([`Api::probe_json`]) reads answers the same way: 401
//! rejects the candidate, any other 403 finds a permission missing, and a
//! rate limit (403 or 429) that outlasts the probe's retries means the
//! provider could not be asked, never that the token is bad.
//!
//! Time is compared as instants through `pdpp-types`, the code the host's
//! `record_time_in_range` rule runs, so a record the kit emits is never
//! refused for its consent time.
//!
//! Why a crate and not an SDK feature: the kit is policy (which statuses
//! mean what, how long to wait, when a stream fails on its own), not part of
//! the contract with the host; a connector that reads files or drives a
//! browser never needs it, and keeping it out of `pdpp-sdk` keeps the SDK's
//! surface the WIT's. Being a crate, it is compiled once per build instead of
//! once per connector, and it has its own tests, which run natively against
//! `pdpp_sdk::testing`.

#![deny(missing_docs)]

mod client;
mod listing;
mod stop;
mod text;

pub use client::{Api, PROBE_RETRY, UNTIMED_RATE_LIMIT_WAIT, parse_json, path_of};
pub use listing::{Entry, Listing, Order, Page, PageGuard, Spec, later, latest};
pub use stop::{Stop, Streams};
pub use text::{encode, key_of};
