//! The one signing helper: `sha256=<hex HMAC-SHA256>` of a body, as the runner signs flow
//! callbacks, as Meta signs webhooks (`X-Hub-Signature-256`) and as the mock SMS API signs its
//! callbacks.

use hmac::{Hmac, Mac};

/// `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
