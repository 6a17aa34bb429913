//! An SMS channel implementing `flow:channel@1.0.0`, against the small SMS API that
//! `host-harness`'s mock serves (documented in `docs/mock.md`, "SMS API"):
//!
//! - `POST {api-base}/sms/v1/messages`, `Authorization: Bearer <key>`,
//!   `{"to": "+E164", "text": "…", "reference": "<correlation id>"}` →
//!   `202 {"id": "sms-…", "status": "queued"}`; errors `{"error": {"code", "message"}}` with
//!   codes `invalid_number` (400), `unauthorized` (401), `rate_limited` (429, `Retry-After`),
//!   `unavailable` (5xx).
//! - Status callbacks: `POST` with `X-Signature: sha256=<HMAC-SHA256 of the raw body>`,
//!   `{"id", "status": "sent"|"delivered"|"failed", "reference", "to", "error_code"?, "timestamp"}`.
//!
//! It exists to prove the contract carries another channel unchanged; it is deliberately small.

mod glue;
pub mod sms;

/// Every call runs in a fresh instance: nothing needs freeing (see `bump_alloc`).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: bump_alloc::Bump = bump_alloc::Bump::new();
