//! The host's side effects as a channel sees them.

use crate::bindings::flow::channel::host as imports;
use crate::{HttpRequest, HttpResponse, LogLevel, SecretError, SignatureAlgorithm, TransportError};

/// The host's side effects, as seen by a channel: what its domain takes, so that tests give it
/// a real in-process host and the component gives it [`ImportedHost`].
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
    /// Checks `signature` over `data` with the secret `secret` (an HMAC key, or an ECDSA
    /// public key) under `algorithm`; the key never leaves the host.
    fn signature_verify(
        &self,
        algorithm: SignatureAlgorithm,
        secret: &str,
        data: &[u8],
        signature: &[u8],
    ) -> Result<bool, SecretError>;
    /// Constant-time comparison of `candidate` with a secret.
    fn secret_equals(&self, secret: &str, candidate: &str) -> Result<bool, SecretError>;
    /// Writes to the host's log.
    fn log(&self, level: LogLevel, message: &str);
}

/// The host, reached through the component's imports. (Natively the imports do not exist:
/// calling them panics; native tests use a host of their own.)
pub struct ImportedHost;

impl Host for ImportedHost {
    fn http_send(&self, request: &HttpRequest) -> Result<HttpResponse, TransportError> {
        imports::http_send(request)
    }
    fn hmac_sha256_verify(
        &self,
        secret: &str,
        data: &[u8],
        mac: &[u8],
    ) -> Result<bool, SecretError> {
        imports::hmac_sha256_verify(secret, data, mac)
    }
    fn signature_verify(
        &self,
        algorithm: SignatureAlgorithm,
        secret: &str,
        data: &[u8],
        signature: &[u8],
    ) -> Result<bool, SecretError> {
        imports::signature_verify(algorithm, secret, data, signature)
    }
    fn secret_equals(&self, secret: &str, candidate: &str) -> Result<bool, SecretError> {
        imports::secret_equals(secret, candidate)
    }
    fn log(&self, level: LogLevel, message: &str) {
        imports::log(level, message)
    }
}

/// The host's clock, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    imports::now_ms()
}
