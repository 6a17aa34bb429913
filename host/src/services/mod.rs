//! What the host does on a plugin's behalf: HTTP behind an allowlist ([`http`]), secrets bound
//! to plugins and destinations ([`secrets`]), logs with a per-call budget ([`log`]), time; and
//! the one HMAC signing helper the host signs with ([`signing`]).

pub mod http;
pub mod log;
pub mod secrets;
pub mod signing;
pub mod ttl;
pub mod vault;

pub use self::http::{AllowRule, HttpClient, HttpPolicy};
pub use self::log::{Log, parse_level};
pub use self::secrets::{SecretGrant, Secrets, is_host_only};

use crate::contract::types::LogLevel;
use std::time::{SystemTime, UNIX_EPOCH};

/// The secret names the WhatsApp channel uses by default (its settings can name others).
pub const ACCESS_TOKEN_NAME: &str = "whatsapp/access-token";
pub const APP_SECRET_NAME: &str = "whatsapp/app-secret";
pub const VERIFY_TOKEN_NAME: &str = "whatsapp/verify-token";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Everything one plugin can reach through the host.
pub struct HostServices {
    pub http: HttpClient,
    pub secrets: Secrets,
    pub log: Log,
}

impl HostServices {
    pub fn new(http: HttpClient, secrets: Secrets, log: Log) -> Self {
        HostServices { http, secrets, log }
    }

    /// No network, no secrets, logs to stderr at `warn`: what a host starts from.
    pub fn locked_down() -> Self {
        HostServices::new(
            HttpClient::new(HttpPolicy::default()),
            Secrets::default(),
            Log::stderr(LogLevel::Warn),
        )
    }
}
