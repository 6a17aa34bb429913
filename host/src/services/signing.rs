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

/// Whether `header` is `sha256=<hex>` of `body` under `secret`, compared in constant time over
/// the MAC's bytes (what a callback receiver checks).
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(mac_bytes) = header
        .strip_prefix("sha256=")
        .and_then(|hex_mac| hex::decode(hex_mac).ok())
    else {
        return false;
    };
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    mac.verify_slice(&mac_bytes).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_does_not() {
        let header = signature("s3cret", b"{\"a\":1}");
        assert!(verify("s3cret", b"{\"a\":1}", &header));
        assert!(!verify("s3cret", b"{\"a\":2}", &header));
        assert!(!verify("other", b"{\"a\":1}", &header));
        assert!(!verify(
            "s3cret",
            b"{\"a\":1}",
            &header.replace("sha256=", "sha1=")
        ));
        assert!(!verify("s3cret", b"{\"a\":1}", "sha256=zz"));
        assert!(!verify("s3cret", b"{\"a\":1}", &header[..header.len() - 2]));
    }
}
