//! Write PDPP connectors that run as WebAssembly components inside `pdpp-host`.
//!
//! A connector is a type that implements [`Connector`] and is exported with
//! [`export_connector!`]. The host calls [`Connector::run`] once per run with a
//! [`Run`] handle: read the scope and the prior cursors from it, emit records,
//! checkpoints and progress through it, ask the owner a question with
//! [`Run::interact`], and reach the connection's credential fields through
//! [`Run::secret`]. Returning `Ok(())` reports DONE `succeeded`; returning a
//! [`Failure`] reports DONE `failed` (or `cancelled`). The SDK counts the
//! records you emitted and fills in `records_emitted` itself.
//!
//! Build with the plain toolchain, no extra cargo subcommand:
//!
//! ```text
//! cargo build --target wasm32-wasip2 --release
//! ```
//!
//! The `.wasm` in `target/wasm32-wasip2/release/` is the plugin.
//!
//! # A complete connector
//!
//! ```no_run
//! use pdpp_sdk::types::parse_instant;
//! use pdpp_sdk::{export_connector, Connector, Failure, Run};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize)]
//! struct Note { id: String, body: String, updated_at: String }
//!
//! #[derive(Serialize, Deserialize, Default)]
//! struct Cursor { updated_after: Option<String> }
//!
//! struct Notes;
//!
//! impl Connector for Notes {
//!     fn run(run: &mut Run) -> Result<(), Failure> {
//!         let Some(scope) = run.stream_scope("notes").cloned() else {
//!             return Ok(());
//!         };
//!         let cursor: Cursor = run.cursor("notes")?.unwrap_or_default();
//!         let after = cursor.updated_after.as_deref().and_then(parse_instant);
//!         let notes = vec![Note {
//!             id: "n1".into(),
//!             body: "hello".into(),
//!             updated_at: "2026-01-02T01:00:00+01:00".into(),
//!         }];
//!         let mut newest = cursor.updated_after.clone();
//!         for note in &notes {
//!             // Compare instants, not text: the timestamp above is midnight UTC.
//!             let Some(t) = parse_instant(&note.updated_at) else { continue };
//!             if after.is_some_and(|after| t <= after) {
//!                 continue;
//!             }
//!             // The same rule the host applies to the consent time (`record_time_in_range`).
//!             if !scope.allows_time(&note.updated_at) {
//!                 continue;
//!             }
//!             run.record("notes", note.id.as_str(), note)?;
//!             if newest.as_deref().and_then(parse_instant).is_none_or(|n| n < t) {
//!                 newest = Some(note.updated_at.clone());
//!             }
//!         }
//!         run.progress(Some("notes"), "notes collected", Some(notes.len() as u64), None);
//!         run.checkpoint("notes", &Cursor { updated_after: newest })?;
//!         Ok(())
//!     }
//! }
//!
//! export_connector!(Notes);
//! ```
//!
//! # Where things are
//!
//! | module | what |
//! |---|---|
//! | [`run`] | [`Run`], the connector's handle on its run: scope, cursors, emitting |
//! | [`scope`] | [`StreamScope`], [`TimeRange`], [`Key`], [`Mode`] |
//! | [`messages`] | [`Skip`], [`DetailCoverage`], [`DetailGap`] |
//! | [`errors`] | [`Failure`] (DONE `failed`/`cancelled`) and [`Recovery`] |
//! | [`interaction`] | [`Interaction`], [`Answer`]: asking the owner |
//! | [`secrets`] | [`Secret`]: handles to credential fields |
//! | [`probe`] | [`Probe`], [`Account`], [`ProbeError`]: the credential probe |
//! | [`bootstrap`] | the typed failures of a credential bootstrap |
//! | [`log`] | [`Level`] |
//! | [`http`] | a blocking HTTP client over `wasi:http` |
//! | [`time`] | the current time and RFC 3339 formatting |
//! | [`types`] | `pdpp-types`, the vocabulary shared with the host (instants, origins, statuses) |
//! | `testing` | (native builds only) an in-memory host for unit tests of a connector |
//!
//! Provider connectors that page through a REST API will want the provider
//! kit, `pdpp-provider`, built on this crate.

#![deny(missing_docs)]

#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated: one argument per WIT parameter
pub mod __bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "pdpp:connector/connector",
        pub_export_macro: true,
        export_macro_name: "__export_connector_world",
        default_bindings_module: "pdpp_sdk::__bindings",
    });
}

use __bindings::pdpp::connector as wit;

pub mod bootstrap;
pub mod browser;
mod connector;
pub mod errors;
mod host;
pub mod http;
pub mod interaction;
pub mod log;
pub mod messages;
pub mod probe;
pub mod run;
pub mod scope;
pub mod secrets;
#[cfg(not(target_family = "wasm"))]
pub mod testing;
pub mod time;

pub use browser::{Browser, BrowserError, Page};
pub use connector::Connector;
pub use errors::{Failure, Recovery};
pub use interaction::{Answer, InteractError, Interaction, InteractionKind};
pub use log::Level;
pub use messages::{DetailCoverage, DetailGap, Skip};
pub use probe::{Account, Probe, ProbeError};
pub use run::Run;
pub use scope::{Key, Mode, StreamScope, TimeRange};
pub use secrets::{Secret, SecretError};
pub use time::now_rfc3339;

/// The vocabulary shared with the host (`pdpp-types`): [`types::parse_instant`],
/// [`types::TimeRange`], [`types::Origin`], the status and recovery enums.
pub use pdpp_types as types;

/// Re-exported so connectors need no direct dependency to build JSON values.
pub use serde_json::{self, Value, json};

/// Export a [`Connector`] as the component's `run`, `bootstrap` and
/// `validate-credential` functions. Use it once, at the crate's top level.
#[macro_export]
macro_rules! export_connector {
    ($connector:ty) => {
        const _: () = {
            struct __PdppExport;
            impl $crate::__bindings::Guest for __PdppExport {
                fn run(
                    start: $crate::__bindings::pdpp::connector::types::Start,
                ) -> $crate::__bindings::pdpp::connector::types::Done {
                    $crate::__private::run::<$connector>(start)
                }
                fn bootstrap(
                    start: $crate::__bindings::pdpp::connector::types::Start,
                    field: ::std::string::String,
                ) -> $crate::__bindings::pdpp::connector::types::Done {
                    $crate::__private::bootstrap::<$connector>(start, field)
                }
                fn validate_credential(
                    settings: ::std::string::String,
                ) -> ::std::result::Result<
                    $crate::__bindings::pdpp::connector::probe::Account,
                    $crate::__bindings::pdpp::connector::probe::ProbeError,
                > {
                    $crate::__private::probe::<$connector>(settings)
                }
            }
            $crate::__bindings::__export_connector_world!(
                __PdppExport with_types_in $crate::__bindings
            );
        };
    };
}

/// What [`export_connector!`] expands to call; not for connectors.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use crate::host::Host;

    /// The `validate-credential` export.
    pub fn probe<C: Connector>(settings: String) -> Result<wit::probe::Account, wit::probe::ProbeError> {
        let probe = Probe::new(&settings, Host::Wit);
        match C::validate_credential(&probe) {
            Ok(a) => Ok(wit::probe::Account {
                identity: a.identity,
                detail: a.detail,
            }),
            Err(ProbeError::Rejected(m)) => Err(wit::probe::ProbeError::Rejected(m)),
            Err(ProbeError::InsufficientScope(m)) => Err(wit::probe::ProbeError::InsufficientScope(m)),
            Err(ProbeError::Unavailable(m)) => Err(wit::probe::ProbeError::Unavailable(m)),
            Err(ProbeError::Unsupported) => Err(wit::probe::ProbeError::Unsupported),
        }
    }

    /// The `run` export: START in, DONE out.
    pub fn run<C: Connector>(start: wit::types::Start) -> wit::types::Done {
        let mut run = Run::from_wit(start, Host::Wit);
        let result = C::run(&mut run);
        done(run, result)
    }

    /// The `bootstrap` export: START and the field in, DONE out.
    pub fn bootstrap<C: Connector>(start: wit::types::Start, field: String) -> wit::types::Done {
        let mut run = Run::from_wit(start, Host::Wit);
        let result = C::bootstrap(&mut run, &field);
        done(run, result)
    }

    fn done(run: Run, result: Result<(), Failure>) -> wit::types::Done {
        let ending = run.end(result);
        wit::types::Done {
            status: match ending.status {
                types::DoneStatus::Succeeded => wit::types::DoneStatus::Succeeded,
                types::DoneStatus::Failed => wit::types::DoneStatus::Failed,
                types::DoneStatus::Cancelled => wit::types::DoneStatus::Cancelled,
            },
            records_emitted: ending.records_emitted,
            error: ending.error.map(Failure::into_wit),
        }
    }
}
