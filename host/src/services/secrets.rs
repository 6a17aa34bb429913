//! Named secrets, resolved by the host only, and the grants that bind each one to a plugin.
//!
//! A plugin names a secret, never holds it. A [`Secrets`] value is one plugin's view:
//!
//! | use | needs |
//! |---|---|
//! | `hmac-sha256-verify`, `secret-equals` | the name is granted to the plugin |
//! | `signature-verify` | the same (the HMAC key, or an ECDSA public key) |
//! | `${secret:NAME}` in a request header | the name is granted **for that destination** (scheme, host, port), and the reference is the whole header value, optionally after one auth scheme word (`Bearer ${secret:NAME}`) |
//! | `${basic:USER:PASSWORD}` in a request header | both names as above; the host sends `base64(user ":" password)` (`Basic ${basic:…}`) |
//! | `${secret:NAME}` as a whole query value of a request URL | as for a header; the value is percent-encoded, and the substituted URL is never logged nor echoed in an error |
//!
//! Anything else is `secret-error::denied`: a name outside the grant, a second reference in
//! one header, a reference inside other text, a destination the secret is not bound to.
//! Values come from code ([`Secrets::insert`]), a JSON file of `{"name": "value"}`, or
//! environment variables `FLOW_SECRET_<NAME>` (upper-case, every character other than a letter
//! or digit turned into `_`: `whatsapp/access-token` → `FLOW_SECRET_WHATSAPP_ACCESS_TOKEN`);
//! only granted names are ever looked up, so an unrelated variable cannot leak.

use super::http::AllowRule;
use crate::contract::types::{SecretError, SignatureAlgorithm};
use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use std::collections::HashMap;
use subtle::ConstantTimeEq;

/// The host's own secrets (its API token, the callback key, …): no grant ever covers them.
pub const HOST_ONLY_PREFIX: &str = "flow/";

/// Whether a name is the host's own.
pub fn is_host_only(name: &str) -> bool {
    name.starts_with(HOST_ONLY_PREFIX)
}

/// What a secret is for, by the last segment of its name (the host cannot ask a plugin):
/// `app-secret`, `webhook-secret`, `verify-token`, or one ending `-webhook-key` or
/// `public-key` verify what providers send (checked inside the host only); `auth-token` is
/// both (a provider such as Twilio signs its callbacks with the token that authenticates the
/// API calls: it travels to the grant's hosts and keys HMAC checks, and nothing else); every
/// other name is an outbound credential (sent in a header to the grant's hosts only). A
/// verification secret never leaves the host, and no credential is ever compared
/// (`secret-equals`) for a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Credential,
    Verification,
    CredentialAndSigningKey,
}

pub fn purpose_of(name: &str) -> Purpose {
    let last = name.rsplit('/').next().unwrap_or(name);
    let verification = matches!(last, "app-secret" | "webhook-secret" | "verify-token")
        || last.ends_with("-webhook-key")
        || last.ends_with("public-key");
    if verification {
        Purpose::Verification
    } else if last == "auth-token" {
        Purpose::CredentialAndSigningKey
    } else {
        Purpose::Credential
    }
}

impl Purpose {
    /// Whether the secret may key this check for a plugin.
    fn verifies_with(self, algorithm: Option<SignatureAlgorithm>) -> bool {
        match self {
            Purpose::Verification => true,
            Purpose::CredentialAndSigningKey => matches!(
                algorithm,
                Some(SignatureAlgorithm::HmacSha1 | SignatureAlgorithm::HmacSha256)
            ),
            Purpose::Credential => false,
        }
    }

    /// Whether the secret may travel in a request.
    fn is_sent(self) -> bool {
        matches!(self, Purpose::Credential | Purpose::CredentialAndSigningKey)
    }
}

/// One grant: a secret name (or every name under a prefix, `sms/*`) and where it may be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretGrant {
    /// An exact name, or `prefix/*`.
    pub name: String,
    /// Destinations a header may carry it to; empty: usable inside the host only.
    pub to_hosts: Vec<AllowRule>,
}

impl SecretGrant {
    fn covers(&self, name: &str) -> bool {
        match self.name.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix) && name.len() > prefix.len(),
            None => self.name == name,
        }
    }
}

/// A plugin's view of the host's secrets.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    values: HashMap<String, String>,
    from_env: bool,
    grants: Vec<SecretGrant>,
}

/// Where a header is going: scheme, host (lower-case) and port.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub scheme: &'a str,
    pub host: &'a str,
    pub port: u16,
}

impl std::fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl Secrets {
    /// Also look granted names up in `FLOW_SECRET_*` environment variables.
    pub fn with_env(mut self) -> Self {
        self.from_env = true;
        self
    }

    /// Sets a value and grants its use inside the host (HMAC checks, comparisons).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.grant_name(&name, &[]);
        self.values.insert(name, value.into());
    }

    /// Sets a value that may also travel in a request header to these destinations
    /// (allowlist syntax: `graph.facebook.com`, `http://127.0.0.1:8787`).
    pub fn insert_for_hosts<'a>(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
        hosts: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let name = name.into();
        self.grant(&name, hosts)?;
        self.values.insert(name, value.into());
        Ok(())
    }

    /// Grants a name (or `prefix/*`), with the destinations it may be sent to.
    pub fn grant<'a>(
        &mut self,
        name: &str,
        hosts: impl IntoIterator<Item = &'a str>,
    ) -> Result<()> {
        let rules = hosts
            .into_iter()
            .map(AllowRule::parse)
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("the grant for the secret {name:?}"))?;
        self.grant_name(name, &rules);
        Ok(())
    }

    fn grant_name(&mut self, name: &str, rules: &[AllowRule]) {
        match self.grants.iter_mut().find(|g| g.name == name) {
            Some(g) => g.to_hosts.extend(rules.iter().cloned()),
            None => self.grants.push(SecretGrant {
                name: name.to_string(),
                to_hosts: rules.to_vec(),
            }),
        }
    }

    /// The grants, for display.
    pub fn grants(&self) -> &[SecretGrant] {
        &self.grants
    }

    /// The same values with other grants: one plugin's view of a host-wide store.
    pub fn scoped(&self, grants: Vec<SecretGrant>) -> Secrets {
        Secrets {
            values: self.values.clone(),
            from_env: self.from_env,
            grants,
        }
    }

    /// The same grants with some values replaced: a tenant's own values for names this view
    /// already grants (a name it does not grant, or a host-only one, is left out: a tenant
    /// never widens a plugin's grants). The names left out are returned.
    pub fn with_values(
        &self,
        values: impl IntoIterator<Item = (String, String)>,
    ) -> (Secrets, Vec<String>) {
        let mut view = self.clone();
        let mut refused = Vec::new();
        for (name, value) in values {
            if self.grant_for(&name).is_some() {
                view.values.insert(name, value);
            } else {
                refused.push(name);
            }
        }
        (view, refused)
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

    /// The grant covering `name`; never one for a host-only name, whatever a lock file or a
    /// manifest asks (`flow/*`, `*`).
    fn grant_for(&self, name: &str) -> Option<&SecretGrant> {
        if is_host_only(name) {
            return None;
        }
        self.grants.iter().find(|g| g.covers(name))
    }

    /// The value of a secret, whatever the grants (the host's own use: API tokens).
    pub fn value(&self, name: &str) -> Option<String> {
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

    /// A granted secret for a check inside the host: a verification secret for every check
    /// (`algorithm` none: `secret-equals`), a credential that is also a signing key for an
    /// HMAC check only. A plain outbound credential is never compared or hashed for a plugin,
    /// which would make the host an oracle for it.
    fn granted_value(
        &self,
        name: &str,
        algorithm: Option<SignatureAlgorithm>,
    ) -> Result<String, SecretError> {
        self.grant_for(name).ok_or(SecretError::Denied)?;
        if !purpose_of(name).verifies_with(algorithm) {
            return Err(SecretError::Denied);
        }
        self.value(name).ok_or(SecretError::NotFound)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.value(name).is_some()
    }

    /// Constant-time HMAC-SHA256 check (the import of contracts before 1.2.0).
    pub fn hmac_sha256_verify(
        &self,
        name: &str,
        data: &[u8],
        mac: &[u8],
    ) -> Result<bool, SecretError> {
        self.signature_verify(SignatureAlgorithm::HmacSha256, name, data, mac)
    }

    /// Constant-time comparison.
    pub fn equals(&self, name: &str, candidate: &str) -> Result<bool, SecretError> {
        let secret = self.granted_value(name, None)?;
        Ok(secret.as_bytes().ct_eq(candidate.as_bytes()).into())
    }

    /// A header value with its secret reference resolved, if it has one. Refuses (with the
    /// reason) a reference that is not the whole value after an optional scheme word, a name
    /// outside the grant, and a destination the secret is not bound to. `${basic:USER:PASSWORD}`
    /// stands for HTTP Basic credentials composed of two secrets (`base64(user ":" password)`).
    pub fn header_value(&self, value: &str, to: Destination<'_>) -> Result<String, String> {
        let Some(start) = value.find("${") else {
            return Ok(value.to_string());
        };
        let (prefix, reference) = value.split_at(start);
        let whole = "a secret reference must be the whole header value, optionally after a scheme (`Bearer ${secret:NAME}`, `Basic ${basic:USER:PASSWORD}`), one per header";
        let inner = reference
            .strip_prefix("${")
            .and_then(|r| r.strip_suffix('}'))
            .filter(|n| !n.contains('}') && !n.contains("${"))
            .ok_or_else(|| whole.to_string())?;
        let scheme_ok = prefix.is_empty()
            || prefix.strip_suffix(' ').is_some_and(|word| {
                !word.is_empty()
                    && word.len() <= 32
                    && word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !scheme_ok {
            return Err(format!(
                "a secret reference may follow only an auth scheme word, not {prefix:?}"
            ));
        }
        let resolved = if let Some(name) = inner.strip_prefix("secret:") {
            self.credential(name, to)?
        } else if let Some(pair) = inner.strip_prefix("basic:") {
            let (user, password) = pair
                .split_once(':')
                .filter(|(u, p)| !u.is_empty() && !p.is_empty() && !p.contains(':'))
                .ok_or_else(|| "`${basic:USER:PASSWORD}` names two secrets".to_string())?;
            let joined = format!(
                "{}:{}",
                self.credential(user, to)?,
                self.credential(password, to)?
            );
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, joined)
        } else {
            return Err(whole.to_string());
        };
        Ok(format!("{prefix}{resolved}"))
    }

    /// A URL with each `${secret:NAME}` that is a whole query value replaced by the secret,
    /// percent-encoded (a reference anywhere else is refused). The result must never be
    /// logged: callers keep the URL as the plugin wrote it for every message.
    pub fn url_value(&self, url: &str, to: Destination<'_>) -> Result<String, String> {
        const OPEN: &str = "${secret:";
        if !url.contains("${") {
            return Ok(url.to_string());
        }
        let (before_query, query) = url
            .split_once('?')
            .ok_or("a secret reference in a URL must be a whole query value")?;
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        if before_query.contains("${") || fragment.is_some_and(|f| f.contains("${")) {
            return Err("a secret reference in a URL must be a whole query value".into());
        }
        let mut pairs = Vec::new();
        for pair in query.split('&') {
            let resolved = match pair.split_once('=') {
                Some((key, value)) if !key.contains("${") && value.contains("${") => {
                    let name = value
                        .strip_prefix(OPEN)
                        .and_then(|v| v.strip_suffix('}'))
                        .filter(|n| !n.is_empty() && !n.contains('}') && !n.contains("${"))
                        .ok_or("a secret reference in a URL must be a whole query value")?;
                    let secret = self.credential(name, to)?;
                    let encoded: String =
                        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
                    format!("{key}={encoded}")
                }
                _ if pair.contains("${") => {
                    return Err("a secret reference in a URL must be a whole query value".into());
                }
                _ => pair.to_string(),
            };
            pairs.push(resolved);
        }
        let mut out = format!("{before_query}?{}", pairs.join("&"));
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
        Ok(out)
    }

    /// A granted outbound credential for one destination: the name is granted, is not a
    /// verification secret, and is bound to `to`.
    fn credential(&self, name: &str, to: Destination<'_>) -> Result<String, String> {
        let grant = self
            .grant_for(name)
            .ok_or_else(|| format!("the secret {name:?} is not granted to this plugin"))?;
        if !purpose_of(name).is_sent() {
            return Err(format!(
                "the secret {name:?} verifies webhooks: it never leaves the host in a request"
            ));
        }
        if !grant
            .to_hosts
            .iter()
            .any(|r| r.allows(to.scheme, to.host, to.port))
        {
            return Err(format!("the secret {name:?} may not be sent to {to}"));
        }
        self.value(name).ok_or_else(|| {
            format!(
                "the secret {name:?} is not configured (set {} or add it to the secrets file)",
                Self::env_var_name(name)
            )
        })
    }

    /// Checks `signature` over `data` with a granted verification secret: the HMAC key, or
    /// for ECDSA the public key (PEM, or base64 of the DER SubjectPublicKeyInfo).
    pub fn signature_verify(
        &self,
        algorithm: SignatureAlgorithm,
        name: &str,
        data: &[u8],
        signature: &[u8],
    ) -> Result<bool, SecretError> {
        let secret = self.granted_value(name, Some(algorithm))?;
        Ok(match algorithm {
            SignatureAlgorithm::HmacSha256 => {
                let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
                    .map_err(|_| SecretError::Denied)?;
                m.update(data);
                m.verify_slice(signature).is_ok()
            }
            SignatureAlgorithm::HmacSha1 => {
                let mut m = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
                    .map_err(|_| SecretError::Denied)?;
                m.update(data);
                m.verify_slice(signature).is_ok()
            }
            SignatureAlgorithm::EcdsaP256Sha256 => ecdsa_p256_verify(&secret, data, signature),
        })
    }
}

/// ECDSA P-256 / SHA-256 over `data`, the key as PEM or base64 DER SPKI, the signature DER or
/// raw `r || s`. A key that does not parse verifies nothing (the operator sees the failed
/// checks; the plugin learns only "no").
fn ecdsa_p256_verify(public_key: &str, data: &[u8], signature: &[u8]) -> bool {
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    use p256::pkcs8::DecodePublicKey;
    let key = public_key.trim();
    let key = if key.starts_with("-----BEGIN") {
        VerifyingKey::from_public_key_pem(key).ok()
    } else {
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key)
            .ok()
            .and_then(|der| VerifyingKey::from_public_key_der(&der).ok())
    };
    let Some(key) = key else {
        return false;
    };
    let signature = match signature.len() {
        64 => Signature::from_slice(signature).ok(),
        _ => Signature::from_der(signature).ok(),
    };
    signature.is_some_and(|s| key.verify(data, &s).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOCK: Destination = Destination {
        scheme: "http",
        host: "127.0.0.1",
        port: 8787,
    };

    #[test]
    fn a_granted_secret_is_substituted_for_its_destination_only() {
        let mut s = Secrets::default();
        s.insert_for_hosts("whatsapp/access-token", "EAAG", ["http://127.0.0.1:8787"])
            .unwrap();
        assert_eq!(
            s.header_value("Bearer ${secret:whatsapp/access-token}", MOCK)
                .unwrap(),
            "Bearer EAAG"
        );
        let elsewhere = Destination { port: 9999, ..MOCK };
        assert!(
            s.header_value("Bearer ${secret:whatsapp/access-token}", elsewhere)
                .unwrap_err()
                .contains("may not be sent to http://127.0.0.1:9999")
        );
        assert_eq!(s.header_value("plain", elsewhere).unwrap(), "plain");
    }

    #[test]
    fn only_one_whole_reference_per_header_is_accepted() {
        let mut s = Secrets::default();
        s.insert_for_hosts("a", "1", ["http://127.0.0.1"]).unwrap();
        s.insert_for_hosts("b", "2", ["http://127.0.0.1"]).unwrap();
        for bad in [
            "Bearer ${secret:a} ${secret:b}",
            "${secret:a}${secret:b}",
            "x=${secret:a}; y",
            "Bearer  ${secret:a}",
            "${secret:a",
            "${secret:}",
        ] {
            assert!(s.header_value(bad, MOCK).is_err(), "{bad}");
        }
        assert_eq!(s.header_value("${secret:a}", MOCK).unwrap(), "1");
        assert_eq!(
            s.header_value("Token ${secret:b}", MOCK).unwrap(),
            "Token 2"
        );
    }

    #[test]
    fn basic_credentials_are_composed_from_two_granted_secrets_for_their_destination() {
        let mut s = Secrets::default();
        s.insert_for_hosts("sms/account-sid", "AC123", ["http://127.0.0.1:8787"])
            .unwrap();
        s.insert_for_hosts("sms/auth-token", "tok:en", ["http://127.0.0.1:8787"])
            .unwrap();
        // base64("AC123:tok:en"): the password may hold a ':' (only the user may not).
        assert_eq!(
            s.header_value("Basic ${basic:sms/account-sid:sms/auth-token}", MOCK)
                .unwrap(),
            "Basic QUMxMjM6dG9rOmVu"
        );
        let elsewhere = Destination { port: 9, ..MOCK };
        assert!(
            s.header_value("Basic ${basic:sms/account-sid:sms/auth-token}", elsewhere)
                .is_err()
        );
        for bad in [
            "Basic ${basic:sms/account-sid}",
            "Basic ${basic::x}",
            "${other:x}",
        ] {
            assert!(s.header_value(bad, MOCK).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_secret_is_substituted_as_a_whole_query_value_only_and_percent_encoded() {
        let mut s = Secrets::default();
        s.insert_for_hosts(
            "app/oauth-client-secret",
            "a b&c",
            ["http://127.0.0.1:8787"],
        )
        .unwrap();
        assert_eq!(
            s.url_value(
                "http://127.0.0.1:8787/oauth?client_id=1&client_secret=${secret:app/oauth-client-secret}&code=x",
                MOCK
            )
            .unwrap(),
            "http://127.0.0.1:8787/oauth?client_id=1&client_secret=a+b%26c&code=x"
        );
        for bad in [
            "http://127.0.0.1:8787/${secret:app/oauth-client-secret}",
            "http://127.0.0.1:8787/x?s=pre${secret:app/oauth-client-secret}",
            "http://127.0.0.1:8787/x?${secret:app/oauth-client-secret}=1",
            "http://127.0.0.1:8787/x?s=1#${secret:app/oauth-client-secret}",
        ] {
            assert!(s.url_value(bad, MOCK).is_err(), "{bad}");
        }
        let elsewhere = Destination { port: 9, ..MOCK };
        assert!(
            s.url_value(
                "http://127.0.0.1:9/x?s=${secret:app/oauth-client-secret}",
                elsewhere
            )
            .unwrap_err()
            .contains("may not be sent")
        );
    }

    /// HMAC-SHA1 against RFC 2202's test case 2, HMAC-SHA256 against RFC 4231's, ECDSA P-256
    /// with a key whose public half is given as PEM and as base64 DER, signatures as DER and
    /// as raw `r || s`.
    #[test]
    fn signatures_are_verified_with_each_algorithm_and_the_key_never_leaves() {
        use p256::ecdsa::{Signature, SigningKey, signature::Signer};
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let mut s = Secrets::default();
        s.insert("t/app-secret", "Jefe");
        let data = b"what do ya want for nothing?";
        let sha1 = hex::decode("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79").unwrap();
        let sha256 =
            hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
                .unwrap();
        assert_eq!(
            s.signature_verify(SignatureAlgorithm::HmacSha1, "t/app-secret", data, &sha1),
            Ok(true)
        );
        assert_eq!(
            s.signature_verify(
                SignatureAlgorithm::HmacSha256,
                "t/app-secret",
                data,
                &sha256
            ),
            Ok(true)
        );
        assert_eq!(
            s.signature_verify(
                SignatureAlgorithm::HmacSha1,
                "t/app-secret",
                b"other",
                &sha1
            ),
            Ok(false)
        );
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let public = key.verifying_key();
        let pem = public.to_public_key_pem(LineEnding::LF).unwrap();
        let der = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            public.to_public_key_der().unwrap().as_bytes(),
        );
        let signature: Signature = key.sign(b"1700000000{\"event\":\"open\"}");
        for (name, value) in [("t/pem-webhook-key", pem), ("t/der-webhook-key", der)] {
            s.insert(name, value);
            for encoded in [signature.to_der().as_bytes().to_vec(), signature.to_vec()] {
                let check = |data: &[u8]| {
                    s.signature_verify(SignatureAlgorithm::EcdsaP256Sha256, name, data, &encoded)
                };
                assert_eq!(check(b"1700000000{\"event\":\"open\"}"), Ok(true), "{name}");
                assert_eq!(
                    check(b"1700000001{\"event\":\"open\"}"),
                    Ok(false),
                    "{name}"
                );
            }
        }
        // Not granted, or an outbound credential: denied, never an oracle.
        let mut other = Secrets::default();
        other
            .insert_for_hosts("t/access-token", "Jefe", ["http://127.0.0.1"])
            .unwrap();
        assert_eq!(
            other.signature_verify(SignatureAlgorithm::HmacSha1, "t/access-token", data, &sha1),
            Err(SecretError::Denied)
        );
    }

    #[test]
    fn names_outside_the_grant_are_denied_even_when_the_environment_has_them() {
        // SAFETY: single-threaded test; the name is unique to it.
        unsafe { std::env::set_var("FLOW_SECRET_UNRELATED_GRANT_TEST", "leak") };
        let mut s = Secrets::default().with_env();
        s.grant("sms/*", ["http://127.0.0.1"]).unwrap();
        assert_eq!(
            s.equals("unrelated/grant-test", "leak"),
            Err(SecretError::Denied)
        );
        assert!(
            s.header_value("${secret:unrelated/grant-test}", MOCK)
                .unwrap_err()
                .contains("not granted")
        );
        assert!(
            s.header_value("Bearer ${secret:sms/api-key}", MOCK)
                .unwrap_err()
                .contains("FLOW_SECRET_SMS_API_KEY")
        );
    }

    /// A lock file or manifest asking for `flow/*` (or `*`) gets none of the host's own
    /// secrets; a verification secret never travels as a credential, nor a credential into
    /// a check (issue 20: the API token reached a provider as a bearer token).
    #[test]
    fn host_secrets_are_never_granted_and_each_secret_serves_its_purpose_only() {
        let mut host = Secrets::default();
        for (k, v) in [
            ("flow/api-token", "api"),
            ("flow/callback-secret", "cb"),
            ("whatsapp/app-secret", "app"),
            ("whatsapp/access-token", "tok"),
        ] {
            host.insert(k, v);
        }
        let to_mock = || vec![AllowRule::parse("http://127.0.0.1:8787").unwrap()];
        for asked in ["flow/*", "*", "flow/api-token", "f*"] {
            let plugin = host.scoped(vec![SecretGrant {
                name: asked.into(),
                to_hosts: to_mock(),
            }]);
            for name in ["flow/api-token", "flow/callback-secret"] {
                let header = format!("Bearer ${{secret:{name}}}");
                assert!(
                    plugin.header_value(&header, MOCK).is_err(),
                    "{asked}: {name}"
                );
                assert_eq!(plugin.equals(name, "api"), Err(SecretError::Denied));
                assert_eq!(
                    plugin.hmac_sha256_verify(name, b"x", b"y"),
                    Err(SecretError::Denied)
                );
            }
        }
        let plugin = host.scoped(vec![SecretGrant {
            name: "whatsapp/*".into(),
            to_hosts: to_mock(),
        }]);
        let err = plugin
            .header_value("Bearer ${secret:whatsapp/app-secret}", MOCK)
            .unwrap_err();
        assert!(err.contains("verifies webhooks"), "{err}");
        assert_eq!(
            plugin.header_value("Bearer ${secret:whatsapp/access-token}", MOCK),
            Ok("Bearer tok".into())
        );
        assert_eq!(
            plugin.equals("whatsapp/access-token", "tok"),
            Err(SecretError::Denied)
        );
        assert_eq!(plugin.equals("whatsapp/app-secret", "app"), Ok(true));
    }

    /// Twilio authenticates API calls and signs its callbacks with the same auth token: it
    /// travels to its grant's hosts and keys HMAC checks, is never compared for a plugin and
    /// never keys an ECDSA check; a public key verifies and never travels.
    #[test]
    fn an_auth_token_is_a_credential_and_an_hmac_key_and_nothing_else() {
        let mut s = Secrets::default();
        s.insert_for_hosts("sms/account-sid", "AC1", ["http://127.0.0.1:8787"])
            .unwrap();
        s.insert_for_hosts("sms/auth-token", "12345", ["http://127.0.0.1:8787"])
            .unwrap();
        s.insert_for_hosts(
            "email/webhook-public-key",
            "MFkw",
            ["http://127.0.0.1:8787"],
        )
        .unwrap();
        assert_eq!(
            s.header_value("Basic ${basic:sms/account-sid:sms/auth-token}", MOCK),
            Ok("Basic QUMxOjEyMzQ1".into())
        );
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"12345").unwrap();
        mac.update(b"text");
        let mac = mac.finalize().into_bytes();
        let verify = |algorithm, name| s.signature_verify(algorithm, name, b"text", &mac);
        assert_eq!(
            verify(SignatureAlgorithm::HmacSha1, "sms/auth-token"),
            Ok(true)
        );
        assert_eq!(
            verify(SignatureAlgorithm::EcdsaP256Sha256, "sms/auth-token"),
            Err(SecretError::Denied)
        );
        assert_eq!(
            verify(SignatureAlgorithm::HmacSha1, "sms/account-sid"),
            Err(SecretError::Denied)
        );
        assert_eq!(
            s.equals("sms/auth-token", "12345"),
            Err(SecretError::Denied)
        );
        let err = s
            .header_value("Bearer ${secret:email/webhook-public-key}", MOCK)
            .unwrap_err();
        assert!(err.contains("verifies webhooks"), "{err}");
    }

    #[test]
    fn in_host_secrets_are_compared_not_sent() {
        let mut s = Secrets::default();
        s.insert("whatsapp/app-secret", "s3cret");
        assert_eq!(s.equals("whatsapp/app-secret", "s3cret"), Ok(true));
        assert_eq!(s.equals("whatsapp/app-secret", "guess"), Ok(false));
        assert!(
            s.header_value("${secret:whatsapp/app-secret}", MOCK)
                .is_err()
        );
        assert_eq!(
            s.equals("missing/verify-token", "x"),
            Err(SecretError::Denied)
        );
        s.grant("missing/verify-token", []).unwrap();
        assert_eq!(
            s.equals("missing/verify-token", "x"),
            Err(SecretError::NotFound)
        );
        assert_eq!(
            Secrets::env_var_name("whatsapp/app-secret"),
            "FLOW_SECRET_WHATSAPP_APP_SECRET"
        );
    }
}
