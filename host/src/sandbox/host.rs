//! The host side of every WIT import, and the store state of one run.

use super::capture::Capture;
use super::limits::{Breach, Limiter};
use super::{LogLevel, RunHooks, SecretSet, Violation};
use crate::protocol as p;
use serde_json::Value;
use std::time::{Duration, Instant};
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "pdpp:connector/connector",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "pdpp:connector/secrets.secret": SecretHandle,
    },
});

pub use pdpp::connector::types as wit;
use pdpp::connector::{emit, interaction, log, probe, secrets};

/// The probe interface has only types; nothing to implement.
impl probe::Host for RunState {}

/// A secret handle held by the guest: the field name only.
pub struct SecretHandle {
    field: String,
}

/// Run-time accounting the epoch callback reads.
pub struct RunClock {
    pub started: Instant,
    pub wall_deadline: Instant,
    pub cpu_budget: Duration,
    /// Time the guest spent parked in host calls that wait (interactions).
    pub blocked: Duration,
}

impl RunClock {
    pub fn guest_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.blocked)
    }

    /// The breach, if a limit has been passed now.
    pub fn check(&self) -> Option<Breach> {
        if Instant::now() >= self.wall_deadline {
            Some(Breach::WallClock)
        } else if self.guest_time() > self.cpu_budget {
            Some(Breach::Cpu)
        } else {
            None
        }
    }
}

/// Everything a store holds for one run.
pub struct RunState {
    pub(super) http: wasmtime_wasi_http::WasiHttpCtx,
    pub(super) egress: super::egress::EgressHooks,
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: Limiter,
    pub(super) hooks: Box<dyn RunHooks>,
    pub(super) secrets: SecretSet,
    pub(super) clock: RunClock,
    pub(super) message_bytes: usize,
    pub(super) stdout: Capture,
    pub(super) stderr: Capture,
    /// The first violation; once set, the guest is being stopped.
    pub(super) violation: Option<Violation>,
    pub(super) control: super::RunControl,
    pub(super) max_records: u64,
    pub(super) records: u64,
    pub(super) log_budget: u64,
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for RunState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

pub(super) struct Marker;
impl HasData for Marker {
    type Data<'a> = &'a mut RunState;
}

impl RunState {
    /// A cancelled run stops at its next host call.
    fn check_cancelled(&self) -> wasmtime::Result<()> {
        if self.control.is_cancelled() {
            return Err(wasmtime::Error::new(super::Cancelled { forced: false }));
        }
        Ok(())
    }

    fn violate(&mut self, v: Violation) -> wasmtime::Error {
        self.violation.get_or_insert(v.clone());
        wasmtime::Error::new(v)
    }

    fn json(&mut self, rule: &'static str, what: &str, text: String) -> Result<Value, wasmtime::Error> {
        if text.len() > self.message_bytes {
            return Err(self.violate(Violation::new(
                "message_size",
                format!(
                    "{what} is {} bytes, over the {} byte limit",
                    text.len(),
                    self.message_bytes
                ),
            )));
        }
        serde_json::from_str(&text)
            .map_err(|e| self.violate(Violation::new(rule, format!("{what} is not valid JSON: {e}"))))
    }

    fn opt_json(
        &mut self,
        rule: &'static str,
        what: &str,
        text: Option<String>,
    ) -> Result<Option<Value>, wasmtime::Error> {
        text.map(|t| self.json(rule, what, t)).transpose()
    }

    fn convert(&mut self, msg: emit::Message) -> Result<p::Message, wasmtime::Error> {
        Ok(match msg {
            emit::Message::Record(r) => {
                let key = match r.key {
                    wit::RecordKey::Single(k) => Value::String(k),
                    wit::RecordKey::Composite(parts) => Value::Array(parts.into_iter().map(Value::String).collect()),
                };
                let data = self.opt_json("record_data_json", "RECORD data", r.data)?;
                p::Message::Record(p::Record {
                    stream: r.stream,
                    key,
                    data,
                    op: matches!(r.op, wit::RecordOp::Delete).then(|| "delete".to_owned()),
                    emitted_at: r.emitted_at,
                })
            }
            emit::Message::State(s) => {
                let cursor = self
                    .opt_json("state_cursor_json", "STATE cursor", s.cursor)?
                    .unwrap_or(Value::Null);
                p::Message::State(p::State {
                    stream: s.stream,
                    cursor,
                })
            }
            emit::Message::Progress(g) => p::Message::Progress(p::Progress {
                stream: g.stream,
                message: g.message,
                count: g.count,
                total: g.total,
            }),
            emit::Message::SkipResult(s) => {
                let diagnostics = self.opt_json("skip_diagnostics_json", "SKIP_RESULT diagnostics", s.diagnostics)?;
                p::Message::SkipResult(p::SkipResult {
                    stream: s.stream,
                    reason: s.reason,
                    message: s.message,
                    recovery_hint: s.recovery_hint.map(hint),
                    resources: s.resources,
                    time_range: s.time_range.map(range),
                    continuation: s.continuation.map(|c| p::Continuation {
                        boundary: c.boundary,
                        considered: c.considered,
                        covered: c.covered,
                        slice_start: c.slice_start,
                        slice_end: c.slice_end,
                        remaining: true,
                        owner: "runtime".to_owned(),
                    }),
                    diagnostics,
                })
            }
            emit::Message::DetailCoverage(c) => p::Message::DetailCoverage(p::DetailCoverage {
                reference_only: true,
                state_stream: c.state_stream,
                stream: c.stream,
                required_keys: c.required_keys,
                hydrated_keys: c.hydrated_keys,
                gap_keys: c.gap_keys,
                optional_skip_keys: c.optional_skip_keys,
                considered: c.considered,
                covered: c.covered,
            }),
            emit::Message::DetailGap(g) => p::Message::DetailGap(p::DetailGap {
                detail_locator: self.opt_json("detail_gap_json", "DETAIL_GAP detail_locator", g.detail_locator)?,
                list_cursor: self.opt_json("detail_gap_json", "DETAIL_GAP list_cursor", g.list_cursor)?,
                last_error: self.opt_json("detail_gap_json", "DETAIL_GAP last_error", g.last_error)?,
                stream: g.stream,
                parent_stream: g.parent_stream,
                record_key: g.record_key,
                reason: g.reason,
                retryable: g.retryable,
            }),
        })
    }
}

pub(super) fn hint(h: wit::RecoveryHint) -> p::RecoveryHint {
    use wit::RecoveryAction as A;
    let action = match h.action {
        A::RetryByRuntime => p::RecoveryAction::RetryByRuntime,
        A::RetryOnConnectorUpgrade => p::RecoveryAction::RetryOnConnectorUpgrade,
        A::RefreshCredentials => p::RecoveryAction::RefreshCredentials,
        A::ManualActionRequired => p::RecoveryAction::ManualActionRequired,
        A::UpdateSelector => p::RecoveryAction::UpdateSelector,
        A::UpstreamUnblock => p::RecoveryAction::UpstreamUnblock,
        A::NotRetriable => p::RecoveryAction::NotRetriable,
        A::Unknown => p::RecoveryAction::Unknown,
    };
    p::RecoveryHint {
        action,
        retryable: h.retryable,
    }
}

fn range(t: wit::TimeRange) -> p::TimeRange {
    p::TimeRange {
        since: t.since,
        until: t.until,
    }
}

/// DONE as the guest returned it, in protocol form.
pub(super) fn done(d: wit::Done) -> p::Done {
    p::Done {
        status: match d.status {
            wit::DoneStatus::Succeeded => p::DoneStatus::Succeeded,
            wit::DoneStatus::Failed => p::DoneStatus::Failed,
            wit::DoneStatus::Cancelled => p::DoneStatus::Cancelled,
        },
        records_emitted: d.records_emitted,
        error: d.error.map(|e| p::DoneError {
            message: e.message,
            code: e.code,
            retryable: e.retryable,
            recovery_hint: e.recovery_hint.map(hint),
        }),
    }
}

/// START in WIT form.
pub(super) fn start(s: &p::Start, settings: &Value) -> wit::Start {
    wit::Start {
        run_id: s.run_id.clone(),
        collection_mode: match s.collection_mode {
            p::CollectionMode::FullRefresh => wit::CollectionMode::FullRefresh,
            p::CollectionMode::Incremental => wit::CollectionMode::Incremental,
        },
        scope: s
            .scope
            .streams
            .iter()
            .map(|st| wit::StreamScope {
                name: st.name.clone(),
                resources: st.resources.clone(),
                time_range: st.time_range.as_ref().map(|t| wit::TimeRange {
                    since: t.since.clone(),
                    until: t.until.clone(),
                }),
                fields: st.fields.clone(),
            })
            .collect(),
        state: s.state.as_ref().map(|m| {
            m.iter()
                .map(|(stream, cursor)| wit::StreamCursor {
                    stream: stream.clone(),
                    cursor: (!cursor.is_null()).then(|| cursor.to_string()),
                })
                .collect()
        }),
        bindings: s
            .bindings
            .iter()
            .map(|(name, d)| wit::Binding {
                name: name.clone(),
                descriptor: d.to_string(),
            })
            .collect(),
        settings: settings.to_string(),
    }
}

impl pdpp::connector::types::Host for RunState {}

impl emit::Host for RunState {
    async fn send(&mut self, batch: Vec<emit::Message>) -> wasmtime::Result<()> {
        self.check_cancelled()?;
        if let Some(v) = &self.violation {
            return Err(wasmtime::Error::new(v.clone()));
        }
        let records = batch.iter().filter(|m| matches!(m, emit::Message::Record(_))).count() as u64;
        self.records += records;
        if self.records > self.max_records {
            return Err(wasmtime::Error::new(Breach::Records));
        }
        for msg in batch {
            let msg = self.convert(msg)?;
            if let Err(v) = self.hooks.message(msg) {
                return Err(self.violate(v));
            }
        }
        self.hooks.end_batch().await.map_err(wasmtime::Error::new)
    }
}

impl interaction::Host for RunState {
    async fn ask(
        &mut self,
        req: interaction::Request,
    ) -> wasmtime::Result<Result<interaction::Response, interaction::InteractionError>> {
        let schema = self.opt_json("interaction_schema_json", "INTERACTION schema", req.schema)?;
        let request = p::Interaction {
            request_id: req.request_id,
            kind: match req.kind {
                interaction::InteractionKind::Credentials => p::InteractionKind::Credentials,
                interaction::InteractionKind::Otp => p::InteractionKind::Otp,
                interaction::InteractionKind::ManualAction => p::InteractionKind::ManualAction,
            },
            stream: req.stream,
            message: req.message,
            schema,
            timeout_seconds: req.timeout_seconds,
        };
        self.check_cancelled()?;
        let remaining = self.clock.wall_deadline.saturating_duration_since(Instant::now());
        let parked = Instant::now();
        let control = self.control.clone();
        let answer = tokio::select! {
            a = tokio::time::timeout(remaining, self.hooks.interact(request)) => a,
            () = control.cancelled() => {
                self.clock.blocked += parked.elapsed();
                return Err(wasmtime::Error::new(super::Cancelled { forced: false }));
            }
        };
        self.clock.blocked += parked.elapsed();
        let answer = match answer {
            Err(_) => return Err(wasmtime::Error::new(Breach::WallClock)),
            Ok(Err(v)) => return Err(self.violate(v)),
            Ok(Ok(a)) => a,
        };
        Ok(match answer {
            super::Asked::NotInteractive(what) => Err(interaction::InteractionError::NotInteractive(what)),
            super::Asked::Answer(a) => Ok(match a.status {
                p::InteractionStatus::Success => {
                    interaction::Response::Success(a.data.unwrap_or(Value::Null).to_string())
                }
                p::InteractionStatus::Cancelled => interaction::Response::Cancelled,
                p::InteractionStatus::Timeout => interaction::Response::Timeout,
            }),
        })
    }
}

impl secrets::Host for RunState {
    async fn available(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.secrets.available())
    }

    async fn get(&mut self, field: String) -> wasmtime::Result<Result<Resource<SecretHandle>, secrets::SecretError>> {
        if let Err(e) = self.secrets.check(&field) {
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(SecretHandle { field })?))
    }
}

impl secrets::HostSecret for RunState {
    async fn field(&mut self, handle: Resource<SecretHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&handle)?.field.clone())
    }

    async fn placeholder(&mut self, handle: Resource<SecretHandle>) -> wasmtime::Result<String> {
        let field = &self.table.get(&handle)?.field;
        Ok(self.secrets.placeholder(field))
    }

    async fn reveal(
        &mut self,
        handle: Resource<SecretHandle>,
    ) -> wasmtime::Result<Result<String, secrets::SecretError>> {
        let field = self.table.get(&handle)?.field.clone();
        match self.secrets.reveal(&field) {
            Ok(value) => {
                self.hooks.secret_revealed(&field);
                Ok(Ok(value))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    async fn drop(&mut self, handle: Resource<SecretHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        Ok(())
    }
}

impl log::Host for RunState {
    async fn write(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let size = (message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()) as u64;
        if size > self.log_budget {
            return Err(wasmtime::Error::new(Breach::Logs));
        }
        self.log_budget -= size;
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.hooks.log(level, message, fields);
        Ok(())
    }
}
