//! The host from outside: CLI processes, `serve` killed mid-send, flows end to end, the
//! registry backends, hostile guests. One test binary (each file a module): every test binary
//! links wasmtime, and a dozen of them cost minutes of linking and gigabytes of disk.

mod cli;
mod customers;
mod docs;
mod email;
mod faults;
mod flows;
mod grants;
mod hostile;
mod nodes;
mod onboarding;
mod pacing;
mod registry;
mod reproducible;
mod server_limits;
mod sms;
mod targets;
mod tenants;
