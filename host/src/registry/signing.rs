//! Signatures in cosign's format, with cosign's keys (through the `sigstore` crate).
//!
//! What is signed is cosign's "simple signing" payload: the artifact's reference (registry
//! and repository, ending in the plugin's name) and its manifest digest (which covers the
//! version, the grants it asks for and the component's sha256). The signature is ECDSA P-256
//! over SHA-256, ASN.1 DER, base64 in the layer annotation `dev.cosignproject.cosign/signature`;
//! the signature manifest sits at cosign's tag `sha256-<hex>.sig`. So `cosign verify --key`
//! (and sigstore's verifiers) check what `registry publish --sign-key` signed, and a signed
//! artifact can be neither altered nor republished under another name. Verification uses only
//! the keys the operator trusts; nothing a signature carries is trusted by itself.
//!
//! Key files are what `cosign generate-key-pair` writes: the secret key PEM `ENCRYPTED
//! SIGSTORE PRIVATE KEY` (scrypt and nacl/secretbox under the password in `COSIGN_PASSWORD`,
//! empty when unset), the public key PEM `PUBLIC KEY` (PKIX).

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::signing_key::ecdsa::{ECDSAKeys, EllipticCurve};
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};
use std::path::{Path, PathBuf};

/// The media type of a signature layer (its payload is the simple-signing document).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The variable cosign reads a secret key's password from.
pub const PASSWORD_VARIABLE: &str = "COSIGN_PASSWORD";
const PAYLOAD_TYPE: &str = "cosign container image signature";
const SCHEME: SigningScheme = SigningScheme::ECDSA_P256_SHA256_ASN1;

/// A key that signs (the secret half).
pub struct SigningKey {
    pair: SigStoreKeyPair,
}

/// A key the operator trusts, with its short id.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: CosignVerificationKey,
    pub id: String,
}

/// A key's short id: the first 16 hex digits of the sha256 of its PKIX (DER) bytes.
fn key_id(public_der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(public_der))[..16].to_string()
}

/// cosign's simple-signing payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleSigning {
    pub critical: Critical,
    pub optional: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Identity {
    pub docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Image {
    pub docker_manifest_digest: String,
}

/// The payload that signs `reference` (`registry/name`) at `manifest_digest`.
pub fn payload(reference: &str, manifest_digest: &str) -> Vec<u8> {
    let doc = SimpleSigning {
        critical: Critical {
            identity: Identity {
                docker_reference: reference.into(),
            },
            image: Image {
                docker_manifest_digest: manifest_digest.into(),
            },
            kind: PAYLOAD_TYPE.into(),
        },
        optional: None,
    };
    serde_json::to_vec(&doc).expect("JSON")
}

impl SigningKey {
    /// The id of its public half.
    pub fn id(&self) -> Result<String> {
        Ok(key_id(&self.pair.public_key_to_der()?))
    }

    /// The base64 signature of `payload`.
    pub fn sign(&self, payload: &[u8]) -> Result<String> {
        let signer = self.pair.to_sigstore_signer(&SCHEME)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(signer.sign(payload)?))
    }
}

/// One signature found beside an artifact: its payload and its base64 signature.
pub struct Found<'a> {
    pub payload: &'a [u8],
    pub signature: &'a str,
}

/// Checks the signatures found for `name` at `manifest_digest` against the trusted keys;
/// the id of the first trusted key whose signature holds. A payload for another digest or
/// another name never counts, whoever signed it.
pub fn verify(
    found: &[Found<'_>],
    name: &str,
    manifest_digest: &str,
    trusted: &[TrustedKey],
) -> Result<String> {
    let mut problems = Vec::new();
    for f in found {
        let doc: SimpleSigning = match serde_json::from_slice(f.payload) {
            Ok(doc) => doc,
            Err(e) => {
                problems.push(format!("a payload is not cosign's simple signing: {e}"));
                continue;
            }
        };
        let reference = &doc.critical.identity.docker_reference;
        let signed_name = reference.rsplit('/').next().unwrap_or(reference);
        let digest = &doc.critical.image.docker_manifest_digest;
        if signed_name != name || digest != manifest_digest || doc.critical.kind != PAYLOAD_TYPE {
            problems.push(format!(
                "a signature is for {reference}@{digest}, not {name}@{manifest_digest}"
            ));
            continue;
        }
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(f.signature) else {
            problems.push("a signature is not base64".into());
            continue;
        };
        let holds = trusted.iter().find(|k| {
            k.key
                .verify_signature(Signature::Raw(&signature), f.payload)
                .is_ok()
        });
        match holds {
            Some(key) => return Ok(key.id.clone()),
            None => problems.push(
                "a signature matches no trusted key: signed by a key which is not trusted, or it does not match"
                    .into(),
            ),
        }
    }
    let ids: Vec<&str> = trusted.iter().map(|k| k.id.as_str()).collect();
    bail!(
        "no signature of {name}@{manifest_digest} holds for the trusted keys ({}): {}",
        ids.join(", "),
        problems.join("; ")
    )
}

/// A new ECDSA P-256 key pair, as `cosign generate-key-pair` makes.
pub fn generate() -> Result<SigningKey> {
    Ok(SigningKey {
        pair: SigStoreKeyPair::ECDSA(ECDSAKeys::new(EllipticCurve::P256)?),
    })
}

/// The password of secret keys: `COSIGN_PASSWORD`, empty when unset (as cosign reads it).
fn password() -> Vec<u8> {
    std::env::var(PASSWORD_VARIABLE)
        .unwrap_or_default()
        .into_bytes()
}

/// Writes `path` (the encrypted secret key, mode 0600, never over an existing file) and
/// `path.pub`, as cosign names them; the public key's path.
pub fn write_key_pair(key: &SigningKey, path: &Path) -> Result<PathBuf> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
    let secret = key.pair.private_key_to_encrypted_pem(&password())?;
    file.write_all(secret.as_bytes())?;
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    let public = PathBuf::from(public);
    std::fs::write(&public, key.pair.public_key_to_pem()?)
        .with_context(|| format!("writing {}", public.display()))?;
    Ok(public)
}

/// A secret key file (cosign's encrypted PEM, its password in `COSIGN_PASSWORD`).
pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let pem = std::fs::read(path).with_context(|| format!("reading the key {}", path.display()))?;
    let pair = SigStoreKeyPair::from_encrypted_pem(&pem, &password()).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a cosign secret key this password opens ({PASSWORD_VARIABLE}): {e}",
            path.display()
        )
    })?;
    Ok(SigningKey { pair })
}

/// A public key file (PEM `PUBLIC KEY`, ECDSA P-256).
pub fn read_verifying_key(path: &Path) -> Result<TrustedKey> {
    let text =
        std::fs::read(path).with_context(|| format!("reading the key {}", path.display()))?;
    let parsed = pem::parse(&text).with_context(|| format!("{} is not PEM", path.display()))?;
    if parsed.tag() != "PUBLIC KEY" {
        bail!(
            "{} is a PEM {:?}, not a PUBLIC KEY",
            path.display(),
            parsed.tag()
        );
    }
    let key = CosignVerificationKey::from_der(parsed.contents(), &SCHEME)
        .map_err(|e| anyhow::anyhow!("{} is not an ECDSA P-256 public key: {e}", path.display()))?;
    Ok(TrustedKey {
        key,
        id: key_id(parsed.contents()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(key: &SigningKey) -> TrustedKey {
        let pem = key.pair.public_key_to_pem().unwrap();
        TrustedKey {
            key: CosignVerificationKey::from_pem(pem.as_bytes(), &SCHEME).unwrap(),
            id: key.id().unwrap(),
        }
    }

    #[test]
    fn a_signature_holds_only_for_its_name_digest_and_a_trusted_key() {
        let (key, other) = (generate().unwrap(), generate().unwrap());
        let digest = format!("sha256:{}", "ab".repeat(32));
        let signed = payload("127.0.0.1:5000/sms", &digest);
        let sig = key.sign(&signed).unwrap();
        let found = [Found {
            payload: &signed,
            signature: &sig,
        }];
        let id = verify(&found, "sms", &digest, &[trusted(&key)]).unwrap();
        assert_eq!(id, key.id().unwrap());
        let err = verify(&found, "whatsapp", &digest, &[trusted(&key)]).unwrap_err();
        assert!(err.to_string().contains("not whatsapp@"), "{err}");
        let other_digest = format!("sha256:{}", "cd".repeat(32));
        assert!(verify(&found, "sms", &other_digest, &[trusted(&key)]).is_err());
        let err = verify(&found, "sms", &digest, &[trusted(&other)]).unwrap_err();
        assert!(err.to_string().contains("not trusted"), "{err}");
        // Another key's signature over the same payload does not hold for this key.
        let forged = other.sign(&signed).unwrap();
        let found = [Found {
            payload: &signed,
            signature: &forged,
        }];
        assert!(verify(&found, "sms", &digest, &[trusted(&key)]).is_err());
    }

    #[test]
    fn key_files_round_trip_in_cosigns_format() {
        let dir = std::env::temp_dir().join(format!("keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cosign.key");
        let _ = std::fs::remove_file(&path);
        let key = generate().unwrap();
        let public = write_key_pair(&key, &path).unwrap();
        let secret = std::fs::read_to_string(&path).unwrap();
        assert!(secret.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
        assert!(
            std::fs::read_to_string(&public)
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert_eq!(
            read_signing_key(&path).unwrap().id().unwrap(),
            key.id().unwrap()
        );
        assert_eq!(read_verifying_key(&public).unwrap().id, key.id().unwrap());
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
