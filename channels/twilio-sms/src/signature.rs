//! What Twilio signs in `X-Twilio-Signature`: the text the host's HMAC-SHA1 (keyed with the
//! account's auth token, which the plugin never holds) must match.
//!
//! As Twilio computes it (its security guide, and `getExpectedTwilioSignature` /
//! `validateRequest` of twilio-node): the full URL Twilio called, query string included, then
//! every POST parameter sorted by name, each as name and value with nothing between. A name
//! given several values contributes each distinct value, sorted, with its name repeated.
//! Twilio may have signed the URL with or without the default port (`:443`, `:80`), so both
//! are candidates. A JSON body is signed through the URL alone (no parameters), which carries
//! `bodySHA256`, the hex SHA-256 of the raw body. Every parameter received is signed: a
//! parameter Twilio adds without notice changes nothing here.

/// The texts whose HMAC-SHA1 may be the signature: the URL as called, then the same URL with
/// its default port added or removed.
pub fn candidates(url: &str, params: &[(String, String)]) -> Vec<String> {
    let suffix = sorted_params(params);
    let mut texts = vec![format!("{url}{suffix}")];
    if let Some(other) = with_other_port_form(url) {
        texts.push(format!("{other}{suffix}"));
    }
    texts
}

/// Parameters sorted by name (UTF-16 code units, as JavaScript's sort), each distinct value of
/// a name sorted, concatenated as `name` + `value`.
fn sorted_params(params: &[(String, String)]) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.sort_by(|a, b| {
        a.0.encode_utf16()
            .cmp(b.0.encode_utf16())
            .then_with(|| a.1.encode_utf16().cmp(b.1.encode_utf16()))
    });
    pairs.dedup();
    pairs.iter().map(|(k, v)| format!("{k}{v}")).collect()
}

/// `url` with its scheme's default port written out if it had none, or removed if it had it;
/// `None` for a URL with another port or that does not parse.
fn with_other_port_form(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    // An IPv6 literal keeps its colons inside brackets.
    let port_at = match hostport.rfind(']') {
        Some(close) => hostport[close..].find(':').map(|i| close + i),
        None => hostport.rfind(':'),
    };
    let other = match port_at {
        Some(i) if &hostport[i + 1..] == default => hostport[..i].to_string(),
        Some(_) => return None,
        None => format!("{hostport}:{default}"),
    };
    Some(format!("{scheme}://{userinfo}{other}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use hmac::{Hmac, Mac};

    fn sign(key: &str, text: &str) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(text.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Twilio's own published example (its security guide and api-snippets
    /// `security/signature_validation/signature_validation.3.x.js`): auth token `12345`.
    #[test]
    fn twilios_published_example_matches() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let form = params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        let texts = candidates(url, &form);
        assert_eq!(
            texts[0],
            "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675310Digits1234From+14158675310To+18005551212"
        );
        assert_eq!(sign("12345", &texts[0]), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
    }

    #[test]
    fn parameters_are_sorted_by_name_whatever_order_they_came_in() {
        let a = candidates(
            "https://h/x",
            &params(&[("b", "2"), ("a", "1"), ("B", "3")]),
        );
        assert_eq!(a[0], "https://h/xB3a1b2");
    }

    #[test]
    fn a_repeated_name_contributes_each_distinct_value_sorted() {
        let a = candidates(
            "https://h/x",
            &params(&[("k", "b"), ("k", "a"), ("k", "b"), ("j", "z")]),
        );
        assert_eq!(a[0], "https://h/xjzkakb");
    }

    #[test]
    fn the_url_is_tried_with_and_without_its_default_port() {
        assert_eq!(
            candidates("https://example.com/sms?c=1", &[])[1],
            "https://example.com:443/sms?c=1"
        );
        assert_eq!(
            candidates("https://example.com:443/sms", &[])[1],
            "https://example.com/sms"
        );
        assert_eq!(
            candidates("http://u:p@example.com/sms", &[])[1],
            "http://u:p@example.com:80/sms"
        );
        assert_eq!(
            candidates("https://[::1]/sms", &[])[1],
            "https://[::1]:443/sms"
        );
        assert_eq!(candidates("https://example.com:8443/sms", &[]).len(), 1);
    }
}
