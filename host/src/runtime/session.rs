//! The runtime's view of one run while the guest executes: the session
//! state and its [`RunHooks`] implementation.
//!
//! Each message the sandbox hands over is scrubbed of the run's secrets,
//! checked against the profile's rules ([`super::rules`]), applied (counted,
//! staged, kept for coverage), shown to the observer and queued for the
//! timeline; the end of a batch makes the queued records and events durable
//! through the run's sink. When the guest has stopped, [`Session::finish`]
//! hands what it saw to the verdict ([`super::outcome`]).

use super::checkpoint::KnownGap;
use super::outcome::{self, InteractionSummary, RunOutcome, Seen};
use super::redact::{redact_message, redact_value, scrub};
use super::rules::{self, Rules, Scope};
use super::{InteractionHandler, Observer, RunSink, StateInput};
use crate::manifest::Manifest;
use crate::protocol as p;
use crate::sandbox::{
    Asked, Breach, GuestExit, Held, HookError, HostFault, LogLevel, RunControl, RunHooks, SecretSet, Usage, Violation,
};
use crate::store::RunEvent;
use serde_json::{Value, json};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Validates and records what one guest emits.
pub struct Session {
    manifest: Arc<Manifest>,
    scope: Scope,
    interaction: Option<Arc<dyn InteractionHandler>>,
    observer: Box<dyn Observer>,
    secrets: SecretSet,
    staged: Vec<(String, Value)>,
    records: u64,
    interactions: Vec<InteractionSummary>,
    reveals: Vec<String>,
    /// Credential fields the host typed into the run's browser.
    typed: Vec<String>,
    sink: Option<Arc<dyn RunSink>>,
    /// Batches handed to the sink and not yet known to be written, oldest
    /// first: the one being written while the guest produces the next, and
    /// at most one more, being prepared behind it. Each waits for the one
    /// ahead ([`super::Turn`]), so batches commit in order; the run waits
    /// for all of them before it asks the owner anything and before it ends.
    in_flight: VecDeque<InFlight>,
    pending_records: Vec<p::Record>,
    pending_events: Vec<RunEvent>,
    written: u64,
    coverage: Vec<p::DetailCoverage>,
    gaps: Vec<p::DetailGap>,
    /// Streams named by SKIP_RESULT `stream_collection_failed`.
    failed_streams: BTreeSet<String>,
    /// Every SKIP_RESULT, scrubbed, in order.
    skips: Vec<p::SkipResult>,
    known_gaps: Vec<KnownGap>,
    control: RunControl,
    /// The run drives a browser: records wait for its account.
    browser_bound: bool,
    /// The account the browser must be logged into, when known.
    expected_account: Option<String>,
    /// The account the connector reported (and the host accepted).
    account: Option<String>,
    /// A credential bootstrap: it emits progress only.
    bootstrap: bool,
}

/// The timeline entry for a message, if it gets one. Records are counted per
/// batch instead; cursors are not copied into the timeline.
fn event_for(msg: &p::Message) -> Option<RunEvent> {
    Some(match msg {
        p::Message::State(s) => RunEvent::new("run.state_staged", json!({ "stream": s.stream })),
        p::Message::Progress(g) => RunEvent::new("run.progress_reported", serde_json::to_value(g).ok()?),
        p::Message::SkipResult(s) => RunEvent::new("run.stream_skipped", serde_json::to_value(s).ok()?),
        p::Message::DetailCoverage(c) => RunEvent::new(
            "run.detail_coverage_declared",
            json!({ "state_stream": c.state_stream, "stream": c.stream, "required": c.required_keys.len(),
                    "hydrated": c.hydrated_keys.len(), "gaps": c.gap_keys.len() }),
        ),
        p::Message::DetailGap(g) => RunEvent::new("run.detail_gap_recorded", serde_json::to_value(g).ok()?),
        _ => return None,
    })
}

impl Session {
    pub fn new(
        manifest: Arc<Manifest>,
        start: &p::Start,
        interaction: Option<Arc<dyn InteractionHandler>>,
        observer: Box<dyn Observer>,
        secrets: SecretSet,
        sink: Option<Arc<dyn RunSink>>,
        control: RunControl,
    ) -> Self {
        let scope = Scope::new(&start.scope.streams);
        Session {
            scope,
            interaction,
            observer,
            secrets,
            staged: Vec::new(),
            records: 0,
            interactions: Vec::new(),
            reveals: Vec::new(),
            typed: Vec::new(),
            sink,
            in_flight: VecDeque::new(),
            pending_records: Vec::new(),
            pending_events: Vec::new(),
            written: 0,
            coverage: Vec::new(),
            gaps: Vec::new(),
            failed_streams: BTreeSet::new(),
            skips: Vec::new(),
            known_gaps: Vec::new(),
            control,
            browser_bound: manifest_requires_browser(&manifest),
            expected_account: None,
            account: None,
            bootstrap: false,
            manifest,
        }
    }

    /// A credential bootstrap: any message but PROGRESS breaks the rule
    /// `bootstrap_emits_progress_only`.
    pub fn bootstrapping(mut self, bootstrap: bool) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    /// The account the run's browser session must belong to (the
    /// connection's recorded identity).
    pub fn expecting_account(mut self, account: Option<String>) -> Self {
        self.expected_account = account;
        self
    }

    fn rules(&self) -> Rules<'_> {
        Rules {
            manifest: &self.manifest,
            scope: &self.scope,
        }
    }

    /// Queue a timeline event: the one way an event is recorded, so every
    /// string of it is scrubbed here.
    fn event(&mut self, kind: &str, mut data: Value) {
        redact_value(&self.secrets.redactor(), &mut data);
        self.pending_events.push(RunEvent::new(kind, data));
    }

    /// After the guest stopped: drop records of a batch that broke a rule or
    /// never ended, and write the timeline entries not written yet.
    pub(super) async fn settle(&mut self, exit: &GuestExit) -> Result<(), HostFault> {
        if !matches!(exit, GuestExit::Done(_)) {
            self.pending_records.clear();
        }
        let flushed = self.hand_over(None).await;
        // The batch in flight is waited for even when the hand-over failed.
        let written = self.written().await;
        flushed.and(written)
    }

    /// Queue what is pending as one batch, written in the background after
    /// the batches ahead of it. With two batches in flight already, wait
    /// for the oldest first. `charge` is the run budget's hold on the
    /// batch, released once it is written.
    async fn hand_over(&mut self, charge: Option<Held>) -> Result<(), HostFault> {
        let records = std::mem::take(&mut self.pending_records);
        if !records.is_empty() {
            self.event("run.batch_written", json!({ "records": records.len() }));
        }
        let events = std::mem::take(&mut self.pending_events);
        // Batches whose outcome is in are settled now: a refused one stops
        // the run at this `send`, a written one is freed. With two still in
        // flight, wait for the oldest.
        while self
            .in_flight
            .front()
            .is_some_and(|b| b.outcome.borrow().is_some() || self.in_flight.len() >= 2)
        {
            self.written_oldest().await?;
        }
        if let Some(sink) = &self.sink
            && !(records.is_empty() && events.is_empty())
        {
            let sink = sink.clone();
            let turn = match self.in_flight.back() {
                Some(ahead) => super::Turn::after(ahead.outcome.clone()),
                None => super::Turn::now(),
            };
            let (outcome, outcome_rx) = tokio::sync::watch::channel(None);
            let task = tokio::spawn(async move {
                let written = sink.batch_in_turn(&records, &events, turn).await;
                let _ = outcome.send(Some(written.is_ok()));
                Written {
                    written,
                    batch: (records, events),
                    charge,
                }
            });
            self.in_flight.push_back(InFlight {
                task,
                outcome: outcome_rx,
            });
        }
        Ok(())
    }

    /// Wait for every batch in flight to be durable.
    async fn written(&mut self) -> Result<(), HostFault> {
        while !self.in_flight.is_empty() {
            self.written_oldest().await?;
        }
        Ok(())
    }

    /// Wait for the oldest batch in flight to be durable.
    async fn written_oldest(&mut self) -> Result<(), HostFault> {
        let Some(mut batch) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let done = (&mut batch.task)
            .await
            .map_err(|e| HostFault(format!("the batch writer stopped: {e}")))?;
        // The batch is freed here, on the thread that parsed it: freeing a
        // few thousand records on the writer's thread made it wait on the
        // allocator's lock while this thread allocated the next batch, and
        // the writer is the slower of the two. Its budget hold goes after it.
        let Written { written, batch, charge } = done;
        drop(batch);
        drop(charge);
        self.written += written.map_err(|e| {
            // The store refused the batch because the connection was
            // revoked (on this host or another): the run stops for that
            // reason, not as a fault of the host.
            if matches!(
                e,
                super::SinkError::Store(crate::store::StoreError::ConnectionClosed(_))
            ) {
                self.control.stop(crate::sandbox::StopCause::ConnectionRevoked);
            }
            HostFault(e.to_string())
        })?;
        Ok(())
    }

    pub(super) fn observe(&mut self, msg: &p::Message) {
        self.observer.message(msg);
    }

    /// Check a message against the rules, then apply what it means.
    fn accept(&mut self, msg: &p::Message) -> Result<(), Violation> {
        if self.bootstrap && !matches!(msg, p::Message::Progress(_)) {
            return Err(Violation::new(
                "bootstrap_emits_progress_only",
                "a credential bootstrap creates a credential; it emits no record, state or other message",
            ));
        }
        self.rules().message(msg, &self.coverage)?;
        rules::browser_session_verified(self.browser_bound, self.account.as_deref(), msg)?;
        match msg {
            p::Message::Record(_) => self.records += 1,
            p::Message::State(s) => match self.staged.iter_mut().find(|(stream, _)| *stream == s.stream) {
                Some(slot) => slot.1 = s.cursor.clone(),
                None => self.staged.push((s.stream.clone(), s.cursor.clone())),
            },
            p::Message::SkipResult(s) => {
                if let (Some("stream_collection_failed"), Some(stream)) = (s.reason.as_deref(), &s.stream) {
                    self.failed_streams.insert(stream.clone());
                }
                // Every skip is a known gap of the run (the profile's
                // `run.stream_skipped` carries one).
                let reason = s.reason.as_deref().unwrap_or("skipped");
                self.known_gaps.push(KnownGap {
                    kind: "stream_skipped",
                    stream: s.stream.clone(),
                    message: match &s.message {
                        Some(m) => format!("{reason}: {m}"),
                        None => reason.to_owned(),
                    },
                });
                self.skips.push(s.clone());
            }
            p::Message::DetailCoverage(c) => self.coverage.push(c.clone()),
            p::Message::DetailGap(g) => self.gaps.push(g.clone()),
            _ => {}
        }
        Ok(())
    }

    /// The run's outcome, given how the guest exited; the observer sees the
    /// DONE reported for it.
    pub(super) fn finish(self, run_id: String, exit: GuestExit, usage: Usage, state: &StateInput) -> RunOutcome {
        let redactor = self.secrets.redactor();
        let seen = Seen {
            manifest: &self.manifest,
            in_scope: self.scope.names().cloned().collect(),
            staged: self.staged,
            records: self.records,
            written: self.written,
            coverage: &self.coverage,
            gaps: &self.gaps,
            failed_streams: &self.failed_streams,
            skips: self.skips,
            known_gaps: self.known_gaps,
            interactions: self.interactions,
            reveals: self.reveals,
            typed: self.typed,
            redactor: &redactor,
            cancelled: self.control.cause(),
        };
        let outcome = outcome::conclude(seen, run_id, exit, usage, state);
        let mut observer = self.observer;
        observer.message(&p::Message::Done(outcome.reported_done()));
        outcome
    }
}

#[async_trait::async_trait]
impl RunHooks for Session {
    fn message(&mut self, msg: p::Message) -> Result<(), Violation> {
        // Scrub first, every string of it: what is staged, shown or kept
        // never holds a secret.
        let mut msg = redact_message(&self.secrets.redactor(), msg)?;
        if let p::Message::SkipResult(sk) = &mut msg {
            sk.diagnostics = rules::bound_diagnostics(sk.diagnostics.take());
        }
        self.accept(&msg)?;
        if let Some(e) = event_for(&msg) {
            self.event(&e.kind, e.data);
        }
        self.observer.message(&msg);
        if let p::Message::Record(r) = msg {
            self.pending_records.push(r);
        }
        Ok(())
    }

    async fn end_batch(&mut self, charge: Held) -> Result<(), HostFault> {
        self.hand_over(Some(charge)).await
    }

    async fn interact(&mut self, req: p::Interaction, screenshot: Option<Vec<u8>>) -> Result<Asked, HookError> {
        // Every string of the question, its id included, is scrubbed before
        // it is checked, kept or shown.
        let req = match redact_message(&self.secrets.redactor(), p::Message::Interaction(req))? {
            p::Message::Interaction(r) => r,
            _ => unreachable!("an INTERACTION stays an INTERACTION"),
        };
        self.rules().interaction(&req)?;
        let Some(handler) = self.interaction.clone() else {
            self.interactions.push(InteractionSummary {
                request_id: req.request_id,
                kind: req.kind,
                status: None,
            });
            return Ok(Asked::NotInteractive(format!(
                "the run has no interactive binding, so nobody can answer the {} request",
                req.kind.as_str()
            )));
        };
        let shown = p::Message::Interaction(req.clone());
        self.observer.message(&shown);
        self.event(
            "run.interaction_required",
            json!({ "request_id": req.request_id, "kind": req.kind, "stream": req.stream, "message": req.message }),
        );
        // The question is on the timeline before the run parks, so whoever
        // follows the run (the owner's event stream) sees what is asked.
        self.hand_over(None).await?;
        self.written().await?;
        let unrecorded = |e: super::SinkError| HostFault(format!("cannot record the interaction: {e}"));
        let stored = match &self.sink {
            Some(sink) => Some(sink.interaction_opened(&req, screenshot).await.map_err(unrecorded)?),
            None => None,
        };
        let answer = match req.timeout_seconds {
            Some(secs) => tokio::time::timeout(Duration::from_secs(secs.into()), handler.answer(&req))
                .await
                .unwrap_or_else(|_| p::InteractionAnswer::timeout()),
            None => handler.answer(&req).await,
        };
        self.observer
            .message(&p::Message::InteractionResponse(p::InteractionResponse {
                request_id: req.request_id.clone(),
                status: answer.status,
            }));
        if let (Some(sink), Some(id)) = (&self.sink, &stored) {
            sink.interaction_resolved(id, answer.status).await.map_err(unrecorded)?;
        }
        self.event(
            "run.interaction_completed",
            json!({ "request_id": req.request_id, "kind": req.kind, "status": answer.status }),
        );
        if answer.status != p::InteractionStatus::Success {
            let hint = if req.kind == p::InteractionKind::Credentials {
                "refresh_credentials"
            } else {
                "manual_action_required"
            };
            self.known_gaps.push(KnownGap {
                kind: "interaction_required",
                stream: req.stream.clone(),
                message: format!(
                    "{} interaction ended {:?}; recovery: {hint}",
                    req.kind.as_str(),
                    answer.status
                )
                .to_lowercase(),
            });
        }
        self.interactions.push(InteractionSummary {
            request_id: req.request_id,
            kind: req.kind,
            status: Some(answer.status),
        });
        Ok(Asked::Answer(answer))
    }

    fn log(&mut self, level: LogLevel, message: String, fields: Vec<(String, String)>) {
        // Message, field names and values: every string of the line.
        let (message, fields) =
            scrub(&self.secrets.redactor(), (message, fields)).unwrap_or_else(|_| (String::new(), Vec::new()));
        self.observer.log(level, &message, &fields);
        let data: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.event(
            "run.log",
            json!({ "level": level.as_str(), "message": message, "fields": data }),
        );
    }

    fn secret_revealed(&mut self, field: &str) {
        self.reveals.push(field.to_owned());
        self.event("run.secret_revealed", json!({ "field": field }));
    }

    fn secret_typed(&mut self, field: &str) {
        if !self.typed.iter().any(|f| f == field) {
            self.typed.push(field.to_owned());
        }
    }

    fn credential_captured(&mut self, field: &str) {
        self.event("bootstrap.credential_captured", json!({ "field": field }));
    }

    fn session_account(&mut self, identity: &str) -> Result<(), Breach> {
        if let Some(expected) = &self.expected_account
            && expected != identity
        {
            // Both are account names the owner sees on the connection; no
            // secret (the sandbox redacted the reported one).
            self.event(
                "run.browser_session_mismatch",
                json!({ "expected": expected, "reported": identity }),
            );
            return Err(Breach::SessionAccountMismatch);
        }
        if self.account.as_deref() != Some(identity) {
            self.event("run.browser_session_verified", json!({ "account": identity }));
        }
        self.account = Some(identity.to_owned());
        Ok(())
    }
}

/// A batch being written. A run dropped before it settled (its task was
/// cancelled) writes nothing more: the write is aborted and rolls back.
struct InFlight {
    task: tokio::task::JoinHandle<Written>,
    /// `Some(true)` once the batch is durable, `Some(false)` if it failed:
    /// the batch behind it waits for this.
    outcome: tokio::sync::watch::Receiver<Option<bool>>,
}

/// What a batch writer hands back: the outcome, the batch itself and the
/// budget's hold on it (see [`Session::written_oldest`]).
struct Written {
    written: Result<u64, super::SinkError>,
    batch: (Vec<p::Record>, Vec<RunEvent>),
    charge: Option<Held>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether the manifest requires the host's browser.
fn manifest_requires_browser(manifest: &Manifest) -> bool {
    manifest.requires_binding(crate::manifest::bindings::BROWSER_AUTOMATION)
}
