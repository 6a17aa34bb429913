//! What the channel needs from its host, as a trait, so the domain can be tested natively with
//! a real in-process implementation and run in wasm against the host's imports.

use crate::{HttpRequest, HttpResponse, LogLevel, SecretError, TransportError};

/// The host's side effects, as seen by the channel.
pub trait Host {
    /// Sends an HTTP request (the host applies its allowlist, timeouts and secrets).
    fn http_send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError>;
    /// Constant-time check that `mac` = HMAC-SHA256(secret, data).
    fn hmac_sha256_verify(
        &self,
        secret: &str,
        data: &[u8],
        mac: &[u8],
    ) -> Result<bool, SecretError>;
    /// Constant-time comparison of `candidate` with a secret.
    fn secret_equals(&self, secret: &str, candidate: &str) -> Result<bool, SecretError>;
    /// Writes to the host's log.
    fn log(&self, level: LogLevel, message: &str);
}
