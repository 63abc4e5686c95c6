//! `pdpp:connector/log`: structured guest logging, attributed to the run.
//!
//! Every line is charged to the run's log budget (message plus field names
//! and values); the line that would pass it stops the guest with
//! [`Breach::Logs`]. Lines within budget go to the runtime's hooks, which
//! redact and record them.

use super::super::bindings::pdpp::connector::log;
use super::super::convert;
use super::super::hooks::SharedHooks;
use super::super::limits::Breach;
use wasmtime::component::{HasData, Linker};

/// The WIT interface this capability links (package/interface, no version).
pub(crate) const INTERFACES: &[&str] = &["pdpp:connector/log"];

/// The capability's per-run state: what is left of the log budget.
pub struct LogState {
    budget: u64,
}

impl LogState {
    /// A run that may write `budget` bytes of structured log.
    pub(crate) fn new(budget: u64) -> Self {
        LogState { budget }
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
        if size > self.state.budget {
            return Err(wasmtime::Error::new(Breach::Logs));
        }
        self.state.budget -= size;
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
        let mut state = LogState::new(20);
        let mut view = LogView {
            state: &mut state,
            hooks: &hooks,
        };
        view.write(log::Level::Warn, "hello".into(), vec![("k".into(), "vv".into())])
            .await
            .unwrap();
        assert_eq!(view.state.budget, 12, "message, field name and value are charged");
        let err = view.write(log::Level::Info, "x".repeat(13), vec![]).await.unwrap_err();
        assert_eq!(err.downcast_ref::<Breach>(), Some(&Breach::Logs));
        view.write(log::Level::Info, "x".repeat(12), vec![]).await.unwrap();
        drop(hooks);
        let seen = lent.take_back().logs;
        assert_eq!(seen.len(), 2, "the refused line is not logged");
        assert_eq!(
            seen[0],
            (LogLevel::Warn, "hello".into(), vec![("k".into(), "vv".into())])
        );
    }
}
