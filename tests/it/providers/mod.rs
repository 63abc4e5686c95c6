//! Provider test doubles (loopback HTTP) and end-to-end tests of the real
//! connectors through `pdpp-host serve`.
