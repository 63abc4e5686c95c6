//! pdpp-host: runs PDPP Collection Profile connectors as sandboxed
//! WebAssembly components.
//!
//! Data flows one way: [`runtime`] builds START and owns a run, [`sandbox`]
//! executes the guest and converts what it emits into [`protocol`] messages,
//! and the runtime validates them and decides what may be committed.

pub mod api;
pub mod bench;
pub mod browser;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod manifest;
pub mod plugins;
pub mod protocol;
pub mod runtime;
pub mod sandbox;
pub mod store;
pub mod vault;
