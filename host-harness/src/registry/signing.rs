//! Ed25519 signatures over an artifact's manifest digest.
//!
//! The signed message binds the plugin's name to the manifest digest (which covers the
//! version, the grants it asks for and the component's sha256), so a signed artifact can be
//! neither altered nor republished under another name. Verification uses only the keys the
//! operator trusts; the public key a signature carries is never trusted by itself.
//!
//! Key files: `ed25519:<hex>` (public) and `ed25519-secret:<hex>` (secret, mode 0600).

use anyhow::{Context, Result, bail};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::Path;

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";

/// What is signed: a domain tag, the plugin's name and its manifest digest.
fn message(name: &str, manifest_digest: &str) -> Vec<u8> {
    format!("flow:channel plugin signature v1\n{name}\n{manifest_digest}\n").into_bytes()
}

/// A key's short id: the first 16 hex digits of the sha256 of its public bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))[..16].to_string()
}

/// A signature as stored beside the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactSignature {
    pub algorithm: String,
    pub key_id: String,
    pub name: String,
    pub manifest_digest: String,
    /// Hex, 64 bytes.
    pub signature: String,
}

/// Signs `name`'s manifest digest.
pub fn sign(key: &SigningKey, name: &str, manifest_digest: &str) -> ArtifactSignature {
    ArtifactSignature {
        algorithm: "ed25519".into(),
        key_id: key_id(&key.verifying_key()),
        name: name.into(),
        manifest_digest: manifest_digest.into(),
        signature: hex::encode(key.sign(&message(name, manifest_digest)).to_bytes()),
    }
}

/// Checks a signature for `name` at `manifest_digest` against the trusted keys; returns the
/// id of the key that signed.
pub fn verify(
    signature: &ArtifactSignature,
    name: &str,
    manifest_digest: &str,
    trusted: &[VerifyingKey],
) -> Result<String> {
    if signature.algorithm != "ed25519" {
        bail!(
            "signature algorithm {:?} is not ed25519",
            signature.algorithm
        );
    }
    if signature.name != name || signature.manifest_digest != manifest_digest {
        bail!(
            "the signature is for {}@{}, not {name}@{manifest_digest}",
            signature.name,
            signature.manifest_digest
        );
    }
    let Some(key) = trusted.iter().find(|k| key_id(k) == signature.key_id) else {
        let ids: Vec<String> = trusted.iter().map(key_id).collect();
        bail!(
            "signed by key {}, which is not trusted (trusted: {})",
            signature.key_id,
            ids.join(", ")
        );
    };
    let bytes: [u8; 64] = hex::decode(&signature.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("the signature is not 64 bytes of hex")?;
    key.verify(
        &message(name, manifest_digest),
        &Signature::from_bytes(&bytes),
    )
    .map_err(|_| {
        anyhow::anyhow!(
            "the signature by key {} does not match {name}@{manifest_digest}",
            signature.key_id
        )
    })?;
    Ok(signature.key_id.clone())
}

/// A new key pair from the operating system's randomness.
pub fn generate() -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes `path` (secret, 0600) and `path.pub`.
pub fn write_key_pair(key: &SigningKey, path: &Path) -> Result<std::path::PathBuf> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    writeln!(file, "{SECRET_PREFIX}{}", hex::encode(key.to_bytes()))?;
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    let public = std::path::PathBuf::from(public);
    std::fs::write(
        &public,
        format!("{}\n", public_key_text(&key.verifying_key())),
    )
    .with_context(|| format!("writing {}", public.display()))?;
    Ok(public)
}

/// `ed25519:<hex>`.
pub fn public_key_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_PREFIX}{}", hex::encode(key.as_bytes()))
}

fn key_bytes(path: &Path, prefix: &str) -> Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key {}", path.display()))?;
    text.trim()
        .strip_prefix(prefix)
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{} is not {prefix}<64 hex digits>", path.display()))
}

/// A secret key file.
pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    Ok(SigningKey::from_bytes(&key_bytes(path, SECRET_PREFIX)?))
}

/// A public key file.
pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey> {
    VerifyingKey::from_bytes(&key_bytes(path, PUBLIC_PREFIX)?)
        .with_context(|| format!("{} is not a valid ed25519 public key", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_only_for_its_name_digest_and_a_trusted_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let trusted = [key.verifying_key()];
        let digest = format!("sha256:{}", "ab".repeat(32));
        let sig = sign(&key, "sms", &digest);
        assert_eq!(verify(&sig, "sms", &digest, &trusted).unwrap(), sig.key_id);
        let err = verify(&sig, "whatsapp", &digest, &trusted).unwrap_err();
        assert!(err.to_string().contains("not whatsapp@"), "{err}");
        let other_digest = format!("sha256:{}", "cd".repeat(32));
        assert!(verify(&sig, "sms", &other_digest, &trusted).is_err());
        let err = verify(&sign(&other, "sms", &digest), "sms", &digest, &trusted).unwrap_err();
        assert!(err.to_string().contains("not trusted"), "{err}");
        // A forged signature under the trusted key's id.
        let mut forged = sign(&other, "sms", &digest);
        forged.key_id = sig.key_id.clone();
        let err = verify(&forged, "sms", &digest, &trusted).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn key_files_round_trip() {
        let dir = std::env::temp_dir().join(format!("keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("publisher.key");
        let _ = std::fs::remove_file(&path);
        let key = generate().unwrap();
        let public = write_key_pair(&key, &path).unwrap();
        assert_eq!(read_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
        assert_eq!(read_verifying_key(&public).unwrap(), key.verifying_key());
        assert!(
            write_key_pair(&key, &path).is_err(),
            "never overwrites a key"
        );
        assert!(
            read_verifying_key(&path).is_err(),
            "a secret key is not a public key"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
