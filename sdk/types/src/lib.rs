//! The vocabulary both sides of the wasm boundary share.
//!
//! `pdpp-host` validates what a connector emits; `pdpp-sdk` helps a
//! connector emit only what the host will accept. Wherever the two must
//! reach the same verdict on the same input, the rule lives here, once, so
//! they cannot drift apart:
//!
//! - [`time`]: RFC 3339 instants as milliseconds ([`parse_instant`]) and the
//!   profile's half-open time window `since <= t < until` ([`TimeRange`]),
//!   which the host's `record_time_in_range` rule and the SDK's
//!   `StreamScope::allows_time` both use;
//! - [`origin`]: network origins and `*.` wildcard patterns ([`Origin`]), as
//!   manifests declare them and the egress policy admits them;
//! - [`vocabulary`]: the closed sets of names host and SDK both spell
//!   ([`RecoveryAction`], [`DoneStatus`], [`CollectionMode`],
//!   [`InteractionKind`], [`InteractionStatus`], [`RecordOp`]), with the exact
//!   JSON spellings of the Collection Profile, and the one diagnostics key
//!   both read ([`RETRY_AFTER_SECONDS`]);
//! - [`conformance`]: the boundary cases both sides are tested against.
//!
//! What is *not* here: anything that needs wasm, wasmtime or wit-bindgen,
//! any message envelope (the host's `protocol` module and the WIT types own
//! those), and any policy one side applies alone (egress address checks,
//! retries).
//!
//! ```
//! use pdpp_types::{parse_instant, TimeRange};
//!
//! let window = TimeRange {
//!     since: Some("2026-01-01T00:30:00Z".into()),
//!     until: None,
//! };
//! // 01:00 at UTC+1 is midnight UTC: before the window, whatever the text says.
//! assert!(!window.contains("2026-01-01T01:00:00+01:00"));
//! assert_eq!(parse_instant("2026-01-01T00:00:00.5Z"), Some(1_767_225_600_500));
//! ```

#![deny(missing_docs)]

pub mod conformance;
pub mod origin;
pub mod time;
pub mod vocabulary;

pub use origin::{InvalidOrigin, Origin};
pub use time::{InvalidTimeRange, TimeRange, format_date, format_instant, parse_instant};
pub use vocabulary::{
    CollectionMode, DoneStatus, InteractionKind, InteractionStatus, RETRY_AFTER_SECONDS, RecordOp, RecoveryAction,
    RecoveryHint, UnknownName,
};
