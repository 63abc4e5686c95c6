//! One module per guest capability: the host side of one WIT interface.
//!
//! Each module owns its per-run state struct, a view that borrows that state
//! and the core pieces of the store it needs, the `Host` implementation of
//! its interface on that view, and an `add_to_linker` that links the
//! interface through the per-interface `add_to_linker` bindgen generates.
//! Each is tested by calling its host implementation directly, without a
//! guest.
//!
//! - [`emit`]: RECORD, STATE and the other messages, in batches.
//! - [`interaction`]: the blocking INTERACTION.
//! - [`secrets`]: handles to the connection's declared credential fields.
//! - [`log`]: structured guest logging under a budget.
//! - [`http`]: `wasi:http` transport under the run's egress policy
//!   (granted by the `network` binding).
//! - [`browser`]: the host-held browser (granted by the `browser` binding).

pub mod browser;
pub mod emit;
pub mod http;
pub mod interaction;
pub mod log;
pub mod secrets;
