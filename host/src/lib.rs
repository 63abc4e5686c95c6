//! pdpp-host: runs PDPP Collection Profile connectors as sandboxed
//! WebAssembly components.
//!
//! Data flows one way: [`runtime`] builds START and owns a run, [`sandbox`]
//! executes the guest and converts what it emits into [`protocol`] messages,
//! and the runtime validates them and decides what may be committed. Where
//! a run may send requests is [`egress`] policy, which the sandbox's HTTP
//! transport (and any later transport) asks. Owner surfaces ([`api`], and
//! the command line, which lives in the binary and which nothing here
//! imports) go through the domain modules: [`setup`] (the typed setup
//! lifecycle), [`credentials`] (the one credential write path) and
//! [`runtime`]. See docs/architecture.md.

pub mod api;
pub mod browser;
pub mod config;
pub mod credentials;
pub mod deploy;
pub mod egress;
pub mod fsutil;
pub mod limits;
pub mod manifest;
pub mod plugins;
pub mod protocol;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod setup;
pub mod store;
pub mod vault;
