//! The component from outside: the built `.wasm` in wasmtime through the harness, real HTTP
//! over loopback, real signatures. One test binary (each file a module): every test binary
//! links wasmtime, and two dozen of them cost minutes of linking and gigabytes of disk.

mod allocator;
mod classify_codes;
mod common;
mod exports;
mod fuzz_wasm;
mod isolation;
mod loading;
mod marketing_templates;
mod send;
mod sendgrid_email;
mod sms;
mod twilio_sms;
mod webhook_events;
