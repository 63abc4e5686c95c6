//! Egress policy: which origins a run may reach, where a request for one
//! really goes, and which addresses it may connect to.
//!
//! This module is policy only; it moves no bytes. A transport asks
//! [`EgressPolicy`] and applies the answer: the guest's `wasi:http` requests
//! (`sandbox::caps::http`) and, later, browser navigations and the requests a
//! page makes. Keeping the rules here, apart from both transports, is what
//! makes them the same rules for both.
//!
//! - [`Origin`]: scheme, host, port; the unit every rule is written in.
//! - [`Allowlist`]: the connector's declared origins (exact and `*.`).
//! - [`Rewrites`]: the deployment's `declared → target` rules, and back.
//! - [`AddressPolicy`]: the IP ranges no request reaches unless allowed.
//! - [`EgressConfig`]: the deployment's settings (rewrites, address rules).
//! - [`EgressPolicy`]: one run's policy, answering with a [`Route`] or a
//!   typed [`Refusal`], and resolving a route to checked addresses.

mod address;
mod allowlist;
mod origin;
mod policy;
mod rewrites;

pub use address::{AddressPolicy, is_blocked_range};
pub use allowlist::Allowlist;
pub use origin::{Origin, origin_of_uri};
pub use policy::{EgressConfig, EgressPolicy, Refusal, Route};
pub use rewrites::Rewrites;
