//! End-to-end tests of the host, through the library and the real binary.
//! One test binary; each guest is built and compiled once per process.

mod server;
mod support;

mod api;
mod architecture;
mod bootstrap;
mod browser;
mod conformance;
mod credentials;
mod demo;
mod docs;
mod egress;
mod hostile;
mod interaction;
mod isolation;
mod limits;
mod operations;
mod parked;
mod plugins;
mod providers;
mod quickstart;
mod reddit;
mod secrets;
mod setup;
mod store;
mod summaries;
