//! What the host does on a plugin's behalf: HTTP behind an allowlist, secrets, logs, time.
//!
//! ## HTTP allowlist
//! Deny by default: an empty list allows nothing. Entries:
//!
//! | entry | allows |
//! |---|---|
//! | `graph.facebook.com` | `https://graph.facebook.com` on any port |
//! | `graph.facebook.com:443` | that host on that port only, https |
//! | `*.example.com` | any subdomain of example.com (not example.com itself), https |
//! | `http://127.0.0.1` | plain http to that host (any port); tests and the mock use this |
//!
//! Entries with a path are refused when the policy is built, so a typo cannot widen access.
//!
//! ## Secrets
//! A plugin names a secret, never holds it: `${secret:NAME}` in a request header value is
//! replaced when the host sends; `hmac-sha256-verify` and `secret-equals` use secrets without
//! returning them. Secrets come from code ([`Secrets::insert`]), a JSON file of
//! `{"name": "value"}`, or environment variables `FLOW_SECRET_<NAME>` (upper-case, every
//! character other than a letter or digit turned into `_`: `whatsapp/access-token` →
//! `FLOW_SECRET_WHATSAPP_ACCESS_TOKEN`).

use crate::bindings::flow::channel::types::{
    Header, HttpRequest, HttpResponse, LogLevel, SecretError, TransportError, TransportErrorKind,
};
use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// The secret names the WhatsApp channel uses by default (its settings can name others).
pub const ACCESS_TOKEN_NAME: &str = "whatsapp/access-token";
pub const APP_SECRET_NAME: &str = "whatsapp/app-secret";
pub const VERIFY_TOKEN_NAME: &str = "whatsapp/verify-token";

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Everything a plugin can reach through the host.
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

// ---------------------------------------------------------------------------------------------
// Secrets

/// Named secrets, resolved by the host only.
#[derive(Default)]
pub struct Secrets {
    values: HashMap<String, String>,
    from_env: bool,
}

impl Secrets {
    /// Also look secrets up in `FLOW_SECRET_*` environment variables.
    pub fn with_env(mut self) -> Self {
        self.from_env = true;
        self
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    /// Reads `{"name": "value", …}` from a file.
    pub fn load_file(&mut self, path: &std::path::Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading secrets from {}", path.display()))?;
        let map: HashMap<String, String> = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} must be a JSON object of secret name → string value",
                path.display()
            )
        })?;
        self.values.extend(map);
        Ok(())
    }

    /// The environment variable a secret name maps to.
    pub fn env_var_name(name: &str) -> String {
        let mut var = String::from("FLOW_SECRET_");
        var.extend(name.chars().map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        }));
        var
    }

    fn get(&self, name: &str) -> Option<String> {
        if let Some(v) = self.values.get(name) {
            return Some(v.clone());
        }
        if self.from_env {
            return std::env::var(Self::env_var_name(name))
                .ok()
                .filter(|v| !v.is_empty());
        }
        None
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Constant-time HMAC-SHA256 check.
    pub fn hmac_sha256_verify(
        &self,
        name: &str,
        data: &[u8],
        mac: &[u8],
    ) -> Result<bool, SecretError> {
        let secret = self.get(name).ok_or(SecretError::NotFound)?;
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
            .map_err(|_| SecretError::Denied)?;
        m.update(data);
        Ok(m.verify_slice(mac).is_ok())
    }

    /// Constant-time comparison.
    pub fn equals(&self, name: &str, candidate: &str) -> Result<bool, SecretError> {
        let secret = self.get(name).ok_or(SecretError::NotFound)?;
        Ok(secret.as_bytes().ct_eq(candidate.as_bytes()).into())
    }

    /// Replaces every `${secret:NAME}` in `value`.
    pub fn substitute(&self, value: &str) -> Result<String, String> {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(start) = rest.find("${secret:") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 9..];
            let end = after
                .find('}')
                .ok_or_else(|| "an unterminated ${secret:…} reference".to_string())?;
            let name = &after[..end];
            let secret = self.get(name).ok_or_else(|| {
                format!(
                    "the secret {name:?} is not configured (set {} or add it to the secrets file)",
                    Self::env_var_name(name)
                )
            })?;
            out.push_str(&secret);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    /// `http` or `https`.
    pub scheme: String,
    /// A host name, or `*.suffix`.
    pub host: String,
    pub port: Option<u16>,
}

impl AllowRule {
    pub fn parse(entry: &str) -> Result<AllowRule> {
        let entry = entry.trim();
        let (scheme, rest) = match entry.split_once("://") {
            Some((s @ ("http" | "https"), rest)) => (s.to_string(), rest),
            Some((s, _)) => bail!("allowlist entry {entry:?}: scheme {s:?} is not http or https"),
            None => ("https".to_string(), entry),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            bail!("allowlist entry {entry:?} must be a host with an optional port, without a path");
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(']') || h.ends_with(']') => {
                let port = p
                    .parse::<u16>()
                    .with_context(|| format!("allowlist entry {entry:?}: bad port {p:?}"))?;
                (h.to_string(), Some(port))
            }
            _ => (rest.to_string(), None),
        };
        let valid_host = match host.strip_prefix("*.") {
            Some(domain) => !domain.is_empty() && !domain.contains('*'),
            None => !host.is_empty() && !host.contains('*'),
        };
        if !valid_host {
            bail!("allowlist entry {entry:?}: the host must be a name, or *.domain");
        }
        Ok(AllowRule {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host_ok = match self.host.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host[..host.len() - suffix.len()].ends_with('.')
            }
            None => self.host == host,
        };
        self.scheme == scheme && host_ok && self.port.is_none_or(|p| p == port)
    }
}

/// The host's rules for plugin HTTP.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Allowed destinations; empty denies everything.
    pub allow: Vec<AllowRule>,
    pub connect_timeout: Duration,
    /// Time for the whole exchange, response body included.
    pub response_timeout: Duration,
    pub max_response_bytes: u64,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            allow: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(20),
            max_response_bytes: 1 << 20,
        }
    }
}

impl HttpPolicy {
    /// Adds allowlist entries.
    pub fn allowing<'a>(mut self, entries: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        for e in entries {
            self.allow.push(AllowRule::parse(e)?);
        }
        Ok(self)
    }
}

/// Headers a plugin may not set: they belong to the transport (and `host` could redirect).
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "te",
    "trailer",
];

/// A real HTTP client (rustls) enforcing an [`HttpPolicy`].
pub struct HttpClient {
    policy: HttpPolicy,
    agent: ureq::Agent,
}

fn denied(message: String) -> TransportError {
    TransportError {
        kind: TransportErrorKind::Denied,
        request_sent: false,
        message,
    }
}

impl HttpClient {
    pub fn new(policy: HttpPolicy) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(policy.connect_timeout))
            .timeout_global(Some(policy.response_timeout))
            .build()
            .into();
        HttpClient { policy, agent }
    }

    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Checks a URL against the allowlist.
    pub fn check_url(&self, url: &str) -> Result<ureq::http::Uri, TransportError> {
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|e| denied(format!("{url:?} is not a valid URL: {e}")))?;
        let scheme = uri.scheme_str().unwrap_or("");
        if scheme != "https" && scheme != "http" {
            return Err(denied(format!("{url:?}: only http and https are allowed")));
        }
        let host = uri.host().unwrap_or("").to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        if !self
            .policy
            .allow
            .iter()
            .any(|r| r.allows(scheme, &host, port))
        {
            return Err(denied(format!(
                "{scheme}://{host}:{port} is not on the host's allowlist"
            )));
        }
        Ok(uri)
    }

    /// Performs a plugin's request.
    pub fn send(
        &self,
        request: &HttpRequest,
        secrets: &Secrets,
    ) -> Result<HttpResponse, TransportError> {
        let uri = self.check_url(&request.url)?;
        let method: ureq::http::Method = request
            .method
            .parse()
            .map_err(|_| denied(format!("{:?} is not an HTTP method", request.method)))?;
        let mut builder = ureq::http::Request::builder().method(method).uri(uri);
        for h in &request.headers {
            if FORBIDDEN_HEADERS.contains(&h.name.to_ascii_lowercase().as_str()) {
                return Err(denied(format!(
                    "a plugin may not set the {:?} header",
                    h.name
                )));
            }
            let value = secrets.substitute(&h.value).map_err(denied)?;
            builder = builder.header(h.name.as_str(), value);
        }
        let http_request = builder
            .body(request.body.clone())
            .map_err(|e| denied(format!("invalid request: {e}")))?;
        let mut response = self.agent.run(http_request).map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| Header {
                name: n.as_str().to_string(),
                value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(self.policy.max_response_bytes)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => TransportError {
                    kind: TransportErrorKind::TooLarge,
                    request_sent: true,
                    message: format!(
                        "the response body is larger than the host's cap of {} bytes",
                        self.policy.max_response_bytes
                    ),
                },
                other => transport_error(other),
            })?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// Maps a client error to the contract's taxonomy, deciding whether the request may have left.
fn transport_error(e: ureq::Error) -> TransportError {
    use ureq::Timeout as T;
    let message = e.to_string();
    let (kind, request_sent) = match &e {
        ureq::Error::HostNotFound => (TransportErrorKind::Dns, false),
        ureq::Error::ConnectionFailed => (TransportErrorKind::Connect, false),
        ureq::Error::Timeout(T::Resolve) => (TransportErrorKind::Dns, false),
        ureq::Error::Timeout(T::Connect) => (TransportErrorKind::Connect, false),
        ureq::Error::Timeout(_) => (TransportErrorKind::Timeout, true),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => (TransportErrorKind::Tls, false),
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::AddrNotAvailable
            | std::io::ErrorKind::HostUnreachable
            | std::io::ErrorKind::NetworkUnreachable => (TransportErrorKind::Connect, false),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                (TransportErrorKind::Timeout, true)
            }
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof => (TransportErrorKind::Reset, true),
            _ => (TransportErrorKind::Other, true),
        },
        _ => (TransportErrorKind::Other, true),
    };
    TransportError {
        kind,
        request_sent,
        message,
    }
}

// ---------------------------------------------------------------------------------------------
// Logs

fn rank(level: LogLevel) -> u8 {
    match level {
        LogLevel::Trace => 0,
        LogLevel::Debug => 1,
        LogLevel::Info => 2,
        LogLevel::Warn => 3,
        LogLevel::Error => 4,
    }
}

/// Parses `trace|debug|info|warn|error`.
pub fn parse_level(s: &str) -> Option<LogLevel> {
    Some(match s.to_ascii_lowercase().as_str() {
        "trace" => LogLevel::Trace,
        "debug" => LogLevel::Debug,
        "info" => LogLevel::Info,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        _ => return None,
    })
}

/// Where plugin logs go.
pub struct Log {
    min: LogLevel,
    memory: Option<Mutex<Vec<(LogLevel, String)>>>,
}

impl Log {
    /// Lines at `min` or above to stderr.
    pub fn stderr(min: LogLevel) -> Self {
        Log { min, memory: None }
    }

    /// Every line kept in memory (tests read them back).
    pub fn memory() -> Self {
        Log {
            min: LogLevel::Trace,
            memory: Some(Mutex::new(Vec::new())),
        }
    }

    pub fn write(&self, level: LogLevel, message: &str) {
        if rank(level) < rank(self.min) {
            return;
        }
        match &self.memory {
            Some(m) => m
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((level, message.to_string())),
            None => {
                let _ = writeln!(std::io::stderr(), "[plugin {level:?}] {message}");
            }
        }
    }

    /// The lines kept so far (empty for stderr logs).
    pub fn lines(&self) -> Vec<(LogLevel, String)> {
        self.memory
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_is_deny_by_default_and_exact() {
        let none = HttpClient::new(HttpPolicy::default());
        assert!(
            none.check_url("https://graph.facebook.com/v23.0/1/messages")
                .is_err()
        );
        let client = HttpClient::new(
            HttpPolicy::default()
                .allowing(["graph.facebook.com", "*.example.com", "http://127.0.0.1"])
                .unwrap(),
        );
        assert!(
            client
                .check_url("https://graph.facebook.com/v23.0/1/messages")
                .is_ok()
        );
        assert!(
            client.check_url("http://graph.facebook.com/x").is_err(),
            "http needs an explicit entry"
        );
        assert!(
            client
                .check_url("https://graph.facebook.com.evil.io/x")
                .is_err()
        );
        assert!(client.check_url("https://api.example.com/x").is_ok());
        assert!(client.check_url("https://example.com/x").is_err());
        assert!(client.check_url("https://evilexample.com/x").is_err());
        assert!(client.check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(client.check_url("ftp://127.0.0.1/x").is_err());
        assert!(AllowRule::parse("https://x.com/path").is_err());
        assert!(AllowRule::parse("x.com:99999").is_err());
    }

    #[test]
    fn oversized_responses_are_refused_not_truncated() {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let t = std::thread::spawn(move || {
            let req = server.recv().unwrap();
            let _ = req.respond(tiny_http::Response::from_data(vec![b'x'; 64 * 1024]));
        });
        let base = format!("http://127.0.0.1:{port}");
        let policy = HttpPolicy {
            max_response_bytes: 1024,
            ..HttpPolicy::default()
        }
        .allowing([base.as_str()])
        .unwrap();
        let request = HttpRequest {
            method: "GET".into(),
            url: format!("{base}/big"),
            headers: vec![],
            body: vec![],
        };
        let err = HttpClient::new(policy)
            .send(&request, &Secrets::default())
            .unwrap_err();
        assert_eq!(
            (err.kind, err.request_sent),
            (TransportErrorKind::TooLarge, true)
        );
        assert!(err.message.contains("1024"));
        t.join().unwrap();
    }

    #[test]
    fn plugins_cannot_set_transport_headers() {
        let client = HttpClient::new(
            HttpPolicy::default()
                .allowing(["http://127.0.0.1"])
                .unwrap(),
        );
        let request = HttpRequest {
            method: "POST".into(),
            url: "http://127.0.0.1:9/x".into(),
            headers: vec![Header {
                name: "Host".into(),
                value: "evil.example".into(),
            }],
            body: vec![],
        };
        let err = client.send(&request, &Secrets::default()).unwrap_err();
        assert_eq!(
            (err.kind, err.request_sent),
            (TransportErrorKind::Denied, false)
        );
    }

    #[test]
    fn secrets_are_substituted_and_compared() {
        let mut s = Secrets::default();
        s.insert("whatsapp/access-token", "EAAG");
        assert_eq!(
            s.substitute("Bearer ${secret:whatsapp/access-token}")
                .unwrap(),
            "Bearer EAAG"
        );
        assert!(
            s.substitute("Bearer ${secret:other}")
                .unwrap_err()
                .contains("FLOW_SECRET_OTHER")
        );
        assert_eq!(s.equals("whatsapp/access-token", "EAAG"), Ok(true));
        assert_eq!(s.equals("whatsapp/access-token", "EAAH"), Ok(false));
        assert_eq!(s.equals("missing", "x"), Err(SecretError::NotFound));
        assert_eq!(
            Secrets::env_var_name("whatsapp/app-secret"),
            "FLOW_SECRET_WHATSAPP_APP_SECRET"
        );
    }
}
