//! `pdpp:connector/log`: structured guest logging, attributed to the run.
//!
//! Every line is charged to the run's log budget (message plus field names
//! and values, and never less than [`LOG_LINE_MIN_BYTES`], because each line
//! costs a timeline event and a database row however short it is); the line
//! that would pass it stops the guest with [`Breach::Logs`]. Each line is
//! also one of the run's timeline events ([`Breach::Events`]). What is kept
//! of a line is bounded: the message at [`LOG_MESSAGE_BYTES`], at most
//! [`LOG_FIELDS`] fields, names at [`NAME_BYTES`] and values at
//! [`LOG_VALUE_BYTES`] (longer text is cut, marked with `…`). Lines within
//! budget go to the runtime's hooks, which redact and record them.

use super::super::bindings::pdpp::connector::log;
use super::super::budget::RunBudget;
use super::super::convert;
use super::super::convert::{NAME_BYTES, truncate};
use super::super::hooks::SharedHooks;
use super::super::limits::{Breach, LOG_LINE_MIN_BYTES};
use wasmtime::component::{HasData, Linker};

/// The WIT interface this capability links (package/interface, no version).
pub(crate) const INTERFACES: &[&str] = &["pdpp:connector/log"];

/// The longest log message kept, in bytes.
pub const LOG_MESSAGE_BYTES: usize = 8 << 10;
/// The longest log field value kept, in bytes.
pub const LOG_VALUE_BYTES: usize = 2 << 10;
/// The most fields of one log line kept.
pub const LOG_FIELDS: usize = 32;

/// The capability's per-run state: what is left of the log budget.
pub struct LogState {
    budget: u64,
    run: RunBudget,
}

impl LogState {
    /// A run that may write `budget` bytes of structured log; each line is
    /// also an event of the run's budget.
    pub(crate) fn new(budget: u64, run: RunBudget) -> Self {
        LogState { budget, run }
    }
}

/// What the log host implementation works on.
pub struct LogView<'a> {
    pub(crate) state: &'a mut LogState,
    pub(crate) hooks: &'a SharedHooks,
}

struct Log;
impl HasData for Log {
    type Data<'a> = LogView<'a>;
}

/// Link `pdpp:connector/log`.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> LogView<'_>,
) -> wasmtime::Result<()> {
    log::add_to_linker::<T, Log>(linker, get)
}

impl log::Host for LogView<'_> {
    async fn write(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let size = (message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()) as u64;
        let charge = size.max(LOG_LINE_MIN_BYTES);
        if charge > self.state.budget {
            return Err(wasmtime::Error::new(Breach::Logs));
        }
        self.state.budget -= charge;
        self.state.run.event().map_err(wasmtime::Error::new)?;
        let message = truncate(message, LOG_MESSAGE_BYTES);
        let fields = fields
            .into_iter()
            .take(LOG_FIELDS)
            .map(|(k, v)| (truncate(k, NAME_BYTES), truncate(v, LOG_VALUE_BYTES)))
            .collect();
        self.hooks.lock().await.log(convert::log_level(level), message, fields);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::LogLevel;
    use super::super::super::hooks::{lend, recording::Recorder};
    use super::log::Host;
    use super::*;

    #[tokio::test]
    async fn lines_within_the_budget_reach_the_hooks_and_the_line_past_it_is_a_log_limit_breach() {
        let (lent, hooks) = lend(Recorder::default());
        let mut state = LogState::new(1000 + 2 * LOG_LINE_MIN_BYTES, RunBudget::new(1 << 20, 100));
        let mut view = LogView {
            state: &mut state,
            hooks: &hooks,
        };
        view.write(log::Level::Warn, "hello".into(), vec![("k".into(), "vv".into())])
            .await
            .unwrap();
        assert_eq!(
            view.state.budget,
            1000 + LOG_LINE_MIN_BYTES,
            "a short line is charged the minimum"
        );
        let err = view
            .write(log::Level::Info, "x".repeat(1001 + LOG_LINE_MIN_BYTES as usize), vec![])
            .await
            .unwrap_err();
        assert_eq!(err.downcast_ref::<Breach>(), Some(&Breach::Logs));
        view.write(log::Level::Info, "x".repeat(1000), vec![]).await.unwrap();
        drop(hooks);
        let seen = lent.take_back().logs;
        assert_eq!(seen.len(), 2, "the refused line is not logged");
        assert_eq!(
            seen[0],
            (LogLevel::Warn, "hello".into(), vec![("k".into(), "vv".into())])
        );
    }

    #[tokio::test]
    async fn log_call_minimum_charge_bounds_empty_lines() {
        let (_lent, hooks) = lend(Recorder::default());
        let mut state = LogState::new(10 * LOG_LINE_MIN_BYTES, RunBudget::new(1 << 20, 1000));
        let mut view = LogView {
            state: &mut state,
            hooks: &hooks,
        };
        for _ in 0..10 {
            view.write(log::Level::Info, String::new(), vec![]).await.unwrap();
        }
        let err = view.write(log::Level::Info, String::new(), vec![]).await.unwrap_err();
        assert_eq!(
            err.downcast_ref::<Breach>(),
            Some(&Breach::Logs),
            "empty lines are not free"
        );
    }

    #[tokio::test]
    async fn log_line_fields_are_bounded() {
        let (lent, hooks) = lend(Recorder::default());
        let mut state = LogState::new(1 << 20, RunBudget::new(1 << 20, 1000));
        let mut view = LogView {
            state: &mut state,
            hooks: &hooks,
        };
        let fields = (0..100)
            .map(|i| (format!("{i}{}", "n".repeat(1000)), "v".repeat(5000)))
            .collect();
        view.write(log::Level::Info, "m".repeat(20_000), fields).await.unwrap();
        drop(hooks);
        let (_, message, fields) = lent.take_back().logs.remove(0);
        assert!(message.len() <= LOG_MESSAGE_BYTES + 3);
        assert_eq!(fields.len(), LOG_FIELDS);
        assert!(
            fields
                .iter()
                .all(|(k, v)| k.len() <= NAME_BYTES + 3 && v.len() <= LOG_VALUE_BYTES + 3)
        );
    }
}
