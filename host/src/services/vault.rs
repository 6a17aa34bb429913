//! Secrets that arrive at run time (a tenant's callback key, a customer's access token),
//! sealed at rest with ChaCha20-Poly1305 under the operator's master key.
//!
//! The key is 32 bytes, from `FLOW_MASTER_KEY` (base64 or hex) or a key file (the same text,
//! or the 32 raw bytes). Each value is sealed with a fresh random 96-bit nonce and its
//! purpose as associated data (`tenant/acme/callback-secret`), so a sealed value copied to
//! another row does not open there. The store keeps one sealed check value: a wrong key is
//! refused when `serve` starts, not at the first send.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use zeroize::Zeroizing;

/// The environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "FLOW_MASTER_KEY";
/// What the store's check value opens to under the right key.
const CHECK_PURPOSE: &str = "vault/check";
const CHECK_TEXT: &[u8] = b"flow vault v1";
const NONCE_LEN: usize = 12;

/// The master key's cipher.
#[derive(Clone)]
pub struct Vault {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

/// The key's 32 bytes from its text form (base64 or hex, surrounding white space ignored) or
/// from 32 raw bytes; anything else is an error that says what was found (never the key).
fn key_bytes(raw: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if raw.len() == 32 {
        return Ok(Zeroizing::new(raw.to_vec()));
    }
    let text = std::str::from_utf8(raw)
        .map(str::trim)
        .map_err(|_| anyhow::anyhow!("the master key is neither 32 raw bytes nor text"))?;
    let decoded = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        hex::decode(text).ok()
    } else {
        BASE64.decode(text).ok()
    };
    match decoded {
        Some(bytes) if bytes.len() == 32 => Ok(Zeroizing::new(bytes)),
        Some(bytes) => bail!(
            "the master key must be 32 bytes, got {} (make one with `openssl rand -base64 32`)",
            bytes.len()
        ),
        None => bail!(
            "the master key is not base64 or 64 hex digits (make one with `openssl rand -base64 32`)"
        ),
    }
}

impl Vault {
    pub fn from_key(raw: &[u8]) -> Result<Vault> {
        let key = key_bytes(raw)?;
        Ok(Vault {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        })
    }

    /// The key from `file` if given, else from `FLOW_MASTER_KEY`; `None` if neither is set.
    pub fn from_env_or_file(file: Option<&std::path::Path>) -> Result<Option<Vault>> {
        if let Some(path) = file {
            let raw = Zeroizing::new(
                std::fs::read(path)
                    .with_context(|| format!("reading the master key file {}", path.display()))?,
            );
            return Vault::from_key(&raw)
                .with_context(|| format!("the master key file {}", path.display()))
                .map(Some);
        }
        match std::env::var(MASTER_KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => {
                let text = Zeroizing::new(text);
                Vault::from_key(text.as_bytes())
                    .with_context(|| format!("the environment variable {MASTER_KEY_ENV}"))
                    .map(Some)
            }
            _ => Ok(None),
        }
    }

    /// `plaintext` sealed for `purpose`: base64 of the nonce and the ciphertext with its tag.
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> String {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: purpose.as_bytes(),
                },
            )
            .expect("ChaCha20-Poly1305 encrypts any message under 256 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        BASE64.encode(out)
    }

    /// Opens what [`Vault::seal`] sealed for the same `purpose`; an error for another key,
    /// another purpose, or altered bytes (never a guess).
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>> {
        let bytes = BASE64
            .decode(sealed)
            .context("a sealed secret is not base64")?;
        if bytes.len() < NONCE_LEN + 16 {
            bail!("a sealed secret is too short ({} bytes)", bytes.len());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: purpose.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                anyhow::anyhow!(
                    "the secret sealed for {purpose} does not open under this master key"
                )
            })
    }

    /// A new check value for the store.
    pub fn check_value(&self) -> String {
        self.seal(CHECK_PURPOSE, CHECK_TEXT)
    }

    /// Whether the store's check value was sealed under this key.
    pub fn opens_check(&self, check: &str) -> bool {
        self.open(CHECK_PURPOSE, check)
            .is_ok_and(|text| text.as_slice() == CHECK_TEXT)
    }
}

/// A new random secret (a tenant's callback key): 256 bits from the OS's generator, hex.
pub fn random_secret() -> String {
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    hex::encode(bytes.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes, base64

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_purpose() {
        let vault = Vault::from_key(KEY.as_bytes()).unwrap();
        let sealed = vault.seal("tenant/acme/callback-secret", b"s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_ne!(sealed, vault.seal("tenant/acme/callback-secret", b"s3cret"));
        let opened = vault.open("tenant/acme/callback-secret", &sealed).unwrap();
        assert_eq!(opened.as_slice(), b"s3cret");
        let err = vault
            .open("tenant/globex/callback-secret", &sealed)
            .unwrap_err();
        assert!(err.to_string().contains("does not open"), "{err}");
        let other = Vault::from_key(&[7u8; 32]).unwrap();
        assert!(other.open("tenant/acme/callback-secret", &sealed).is_err());
        let mut altered = BASE64.decode(&sealed).unwrap();
        *altered.last_mut().unwrap() ^= 1;
        assert!(
            vault
                .open("tenant/acme/callback-secret", &BASE64.encode(altered))
                .is_err()
        );
    }

    #[test]
    fn the_check_value_tells_the_right_key_from_a_wrong_one() {
        let vault = Vault::from_key(KEY.as_bytes()).unwrap();
        let check = vault.check_value();
        assert!(vault.opens_check(&check));
        assert!(!Vault::from_key(&[1u8; 32]).unwrap().opens_check(&check));
    }

    #[test]
    fn a_key_of_the_wrong_shape_is_refused_saying_what_it_was() {
        let hex_key = "00".repeat(32);
        assert!(Vault::from_key(hex_key.as_bytes()).is_ok());
        let err = Vault::from_key(b"c2hvcnQ=").unwrap_err().to_string();
        assert!(err.contains("must be 32 bytes, got 5"), "{err}");
        let err = Vault::from_key(b"not a key!").unwrap_err().to_string();
        assert!(err.contains("not base64"), "{err}");
    }
}
