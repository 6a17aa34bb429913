//! Plugin HTTP: a pooled keep-alive client (reqwest, rustls) behind a deny-by-default allowlist.
//!
//! | entry | allows |
//! |---|---|
//! | `graph.facebook.com` | `https://graph.facebook.com` on any port |
//! | `graph.facebook.com:443` | that host on that port only, https |
//! | `*.example.com` | any subdomain of example.com (not example.com itself), https |
//! | `http://127.0.0.1` | plain http to that host (any port); tests and the mock use this |
//!
//! Entries with a path are refused when the policy is built, so a typo cannot widen access.
//! An empty list allows nothing. The client follows no redirects, refuses transport headers
//! (`host`, `content-length`, …), caps the response body, and reports whether a failed
//! request may have left ([`TransportError::request_sent`]), which decides between a safe
//! retry and an `unknown` outcome.

use super::secrets::{Destination, Secrets};
use crate::contract::types::{
    Header, HttpRequest, HttpResponse, TransportError, TransportErrorKind,
};
use anyhow::{Context, Result, bail};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

    /// Whether the rule names the machine itself or a private network: `localhost`, a
    /// loopback, private, link-local or unspecified IP address (what a plugin from a registry
    /// may not be granted unasked: the host's own API lives there).
    pub fn is_internal(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        match host.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(ip)) => {
                ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
            }
            Ok(std::net::IpAddr::V6(ip)) => {
                ip.is_loopback()
                    || ip.is_unspecified()
                    || (ip.segments()[0] & 0xfe00) == 0xfc00
                    || (ip.segments()[0] & 0xffc0) == 0xfe80
                    || ip
                        .to_ipv4_mapped()
                        .is_some_and(|v4| v4.is_loopback() || v4.is_private() || v4.is_link_local())
            }
            Err(_) => false,
        }
    }

    pub(crate) fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
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

impl std::fmt::Display for AllowRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Whether an allowlist lets a URL's destination (scheme, host, port) through.
pub fn url_allowed(rules: &[AllowRule], url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let port = url.port_or_known_default().unwrap_or(0);
    rules.iter().any(|r| r.allows(url.scheme(), &host, port))
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

/// A real HTTP client enforcing an [`HttpPolicy`]; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct HttpClient {
    policy: HttpPolicy,
    client: reqwest::Client,
}

fn denied(message: String) -> TransportError {
    TransportError {
        kind: TransportErrorKind::Denied,
        request_sent: false,
        message,
    }
}

/// A checked destination.
struct Target {
    url: reqwest::Url,
    scheme: String,
    host: String,
    port: u16,
}

impl HttpClient {
    pub fn new(policy: HttpPolicy) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.response_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .expect("a client with these settings always builds");
        HttpClient { policy, client }
    }

    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Checks a URL against the allowlist.
    fn target(&self, url: &str) -> Result<Target, TransportError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| denied(format!("{url:?} is not a valid URL: {e}")))?;
        let scheme = parsed.scheme().to_string();
        if scheme != "https" && scheme != "http" {
            return Err(denied(format!("{url:?}: only http and https are allowed")));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(denied(format!(
                "{url:?}: credentials in the URL are refused"
            )));
        }
        let host = parsed.host_str().unwrap_or("").to_ascii_lowercase();
        let port = parsed.port_or_known_default().unwrap_or(0);
        if !url_allowed(&self.policy.allow, &parsed) {
            return Err(denied(format!(
                "{scheme}://{host}:{port} is not on the host's allowlist"
            )));
        }
        Ok(Target {
            url: parsed,
            scheme,
            host,
            port,
        })
    }

    /// Checks a URL against the allowlist (for tests and the CLI).
    pub fn check_url(&self, url: &str) -> Result<(), TransportError> {
        self.target(url).map(|_| ())
    }

    /// Performs a plugin's request. `dispatched` becomes true the moment the request is
    /// handed to the network, so a caller whose call fails later knows it may have left.
    pub async fn send(
        &self,
        request: &HttpRequest,
        secrets: &Secrets,
        dispatched: &AtomicBool,
    ) -> Result<HttpResponse, TransportError> {
        let target = self.target(&request.url)?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| denied(format!("{:?} is not an HTTP method", request.method)))?;
        let to = Destination {
            scheme: &target.scheme,
            host: &target.host,
            port: target.port,
        };
        let mut headers = reqwest::header::HeaderMap::new();
        for h in &request.headers {
            if FORBIDDEN_HEADERS.contains(&h.name.to_ascii_lowercase().as_str()) {
                return Err(denied(format!(
                    "a plugin may not set the {:?} header",
                    h.name
                )));
            }
            let value = secrets.header_value(&h.value, to).map_err(denied)?;
            let name = reqwest::header::HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| denied(format!("{:?} is not a header name", h.name)))?;
            let value = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| denied(format!("the {:?} header value is not valid", h.name)))?;
            headers.append(name, value);
        }
        // The URL with its secrets is used once, here, and never shown: errors name the URL
        // as the plugin wrote it, and the client's own errors are stripped of theirs.
        let url = match secrets.url_value(&request.url, to).map_err(denied)? {
            substituted if substituted == request.url => target.url,
            substituted => reqwest::Url::parse(&substituted).map_err(|_| {
                denied(format!(
                    "{:?} is not a valid URL once its secrets are in place",
                    request.url
                ))
            })?,
        };
        let built = self
            .client
            .request(method, url)
            .headers(headers)
            .body(request.body.clone())
            .build()
            .map_err(|e| denied(format!("invalid request: {e}")))?;
        dispatched.store(true, Ordering::SeqCst);
        let response = self
            .client
            .execute(built)
            .await
            .map_err(|e| transport_error(e.without_url()))?;
        self.read_response(response).await
    }

    async fn read_response(
        &self,
        mut response: reqwest::Response,
    ) -> Result<HttpResponse, TransportError> {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| Header {
                name: n.as_str().to_string(),
                value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
            })
            .collect();
        let cap = self.policy.max_response_bytes;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(e.without_url()))?
        {
            if body.len() as u64 + chunk.len() as u64 > cap {
                return Err(TransportError {
                    kind: TransportErrorKind::TooLarge,
                    request_sent: true,
                    message: format!(
                        "the response body is larger than the host's cap of {cap} bytes"
                    ),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// Maps a client error to the contract's taxonomy, deciding whether the request may have
/// left: only a failure to connect proves it did not.
fn transport_error(e: reqwest::Error) -> TransportError {
    let chain = error_chain(&e);
    let (kind, request_sent) = if e.is_connect() {
        let kind = if chain.contains("dns error") || chain.contains("failed to lookup") {
            TransportErrorKind::Dns
        } else if chain.contains("certificate") || chain.contains("tls") {
            TransportErrorKind::Tls
        } else {
            TransportErrorKind::Connect
        };
        (kind, false)
    } else if e.is_timeout() {
        (TransportErrorKind::Timeout, true)
    } else if connection_dropped(&e)
        || chain.contains("reset")
        || chain.contains("closed")
        || chain.contains("broken pipe")
    {
        (TransportErrorKind::Reset, true)
    } else {
        (TransportErrorKind::Other, true)
    };
    TransportError {
        kind,
        request_sent,
        message: chain,
    }
}

/// Whether an I/O error in the chain says the peer dropped the connection. (hyper reports some
/// of these only in its message, hence the text checks beside this.)
fn connection_dropped(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            )
        {
            return true;
        }
        source = s.source();
    }
    false
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

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
        assert!(client.check_url("http://user:pw@127.0.0.1:8080/x").is_err());
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
        let sent = AtomicBool::new(false);
        let err = block_on(HttpClient::new(policy).send(&request, &Secrets::default(), &sent))
            .unwrap_err();
        assert_eq!(
            (err.kind, err.request_sent),
            (TransportErrorKind::TooLarge, true)
        );
        assert!(err.message.contains("1024"));
        assert!(sent.load(Ordering::SeqCst));
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
        let sent = AtomicBool::new(false);
        let err = block_on(client.send(&request, &Secrets::default(), &sent)).unwrap_err();
        assert_eq!(
            (err.kind, err.request_sent),
            (TransportErrorKind::Denied, false)
        );
        assert!(
            !sent.load(Ordering::SeqCst),
            "nothing was handed to the network"
        );
    }

    #[test]
    fn a_refused_connection_did_not_send() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = HttpClient::new(
            HttpPolicy::default()
                .allowing(["http://127.0.0.1"])
                .unwrap(),
        );
        let request = HttpRequest {
            method: "POST".into(),
            url: format!("http://127.0.0.1:{port}/x"),
            headers: vec![],
            body: vec![],
        };
        let err = block_on(client.send(&request, &Secrets::default(), &AtomicBool::new(false)))
            .unwrap_err();
        assert_eq!(
            (err.kind, err.request_sent),
            (TransportErrorKind::Connect, false),
            "{}",
            err.message
        );
    }
}
