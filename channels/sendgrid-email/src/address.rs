//! An email address as SendGrid accepts it, checked before anything is sent: at most 254
//! characters (RFC 5321's path limit less the brackets), a local part of at most 64, one `@`,
//! and a domain of dot-separated labels (letters, digits, hyphens, 1 to 63 each, not starting
//! or ending with a hyphen) with at least two labels. The local part takes the dot-atom
//! characters of RFC 5322 (no quoted strings: providers refuse them in practice), no leading,
//! trailing or doubled dot. Internationalised domains come as their ASCII (`xn--`) form.

/// Longest address.
pub const MAX_LEN: usize = 254;
/// Longest local part.
pub const MAX_LOCAL_LEN: usize = 64;

/// Why an address is refused (a field error's message), or `Ok`.
pub fn check(address: &str) -> Result<(), String> {
    let n = address.chars().count();
    if n == 0 || n > MAX_LEN {
        return Err(format!(
            "an email address has 1 to {MAX_LEN} characters, got {n}"
        ));
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(format!("{address:?} has no '@'"));
    };
    if local.is_empty() || local.len() > MAX_LOCAL_LEN {
        return Err(format!(
            "the part before '@' has 1 to {MAX_LOCAL_LEN} characters, got {}",
            local.len()
        ));
    }
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    if local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local.chars().all(|c| atext(c) || c == '.')
    {
        return Err(format!(
            "{local:?} is not a valid local part (letters, digits, !#$%&'*+-/=?^_`{{|}}~ and single dots)"
        ));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(format!(
            "{domain:?} is not a domain name (dot-separated labels of letters, digits and hyphens)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_pass() {
        for ok in [
            "pablo@example.com",
            "first.last+tag@mail.example.co.uk",
            "o'neil@xn--bcher-kva.example",
            "a@b.io",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_reason() {
        for bad in [
            "",
            "pablo",
            "pablo@",
            "@example.com",
            "pablo@localhost",
            ".pablo@example.com",
            "pa..blo@example.com",
            "pa blo@example.com",
            "pablo@-example.com",
            "pablo@exa_mple.com",
            "\"quoted\"@example.com",
            "+15550100001",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(check(&long_local).unwrap_err().contains("64"));
        let long = format!(
            "{}@{}.com",
            "a".repeat(64),
            "b".repeat(63) + "." + &"c".repeat(63) + "." + &"d".repeat(63)
        );
        assert!(check(&long).unwrap_err().contains("254"));
    }
}
