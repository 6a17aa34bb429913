//! Recipient phone numbers in E.164.
//!
//! Meta accepts numbers without `+` and then prepends the *business* number's country code,
//! which can reach the wrong person; so a number must carry its country code explicitly
//! (`+` or the international `00` prefix).

use crate::field_errors::quoted;

/// Normalises a phone number to `+<digits>`, or explains why it cannot.
pub fn normalize_e164(input: &str) -> Result<String, String> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err("the recipient phone number is empty".into());
    }
    let (international, rest) = if let Some(r) = trimmed.strip_prefix('+') {
        (true, r)
    } else if let Some(r) = trimmed.strip_prefix("00") {
        (true, r)
    } else {
        (false, trimmed)
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => {
                return Err(format!(
                    "{} contains {}; a phone number has digits, spaces, '-', '(', ')' and a leading '+'",
                    quoted(input),
                    quoted_char(c)
                ));
            }
        }
    }
    if !international {
        return Err(format!(
            "{} has no country code; write it in E.164 with a leading '+' (e.g. \"+16505551234\"), otherwise Meta prepends the business number's country code and may reach the wrong person",
            quoted(input)
        ));
    }
    if digits.starts_with('0') {
        return Err(format!(
            "{}: a country code never starts with 0",
            quoted(input)
        ));
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(format!(
            "{} has {} digits after the '+'; E.164 numbers have 8 to 15",
            quoted(input),
            digits.len()
        ));
    }
    Ok(format!("+{digits}"))
}

/// Who a message goes to: a phone number, or a business-scoped user id (BSUID) for a customer
/// known only by their WhatsApp username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// E.164, `+<digits>`.
    Phone(String),
    /// `CC.` + up to 128 alphanumerics, or a parent BSUID `CC.ENT.` + …
    Bsuid(String),
}

pub use crate::meta_limits::BSUID_MAX_ID;

/// Whether `s` is a BSUID or a parent BSUID (`US.13491208655302741918`,
/// `US.ENT.11815799212886844830`): an ISO 3166 alpha-2 code, a dot, then alphanumerics.
pub fn is_bsuid(s: &str) -> bool {
    let Some((country, rest)) = s.split_once('.') else {
        return false;
    };
    let id = rest.strip_prefix("ENT.").unwrap_or(rest);
    country.len() == 2
        && country.chars().all(|c| c.is_ascii_uppercase())
        && !id.is_empty()
        && id.len() <= BSUID_MAX_ID
        && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Reads a recipient: a BSUID as it is (never rewritten like a phone number), else an E.164
/// phone number.
pub fn parse_recipient(input: &str) -> Result<Recipient, String> {
    let trimmed = input.trim();
    if is_bsuid(trimmed) {
        return Ok(Recipient::Bsuid(trimmed.to_string()));
    }
    normalize_e164(input).map(Recipient::Phone).map_err(|e| {
        if trimmed.contains('.') && trimmed.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            format!("{e}; nor is it a business-scoped user id (CC. + 1 to {BSUID_MAX_ID} letters or digits, e.g. \"US.13491208655302741918\")")
        } else {
            e
        }
    })
}

/// A WhatsApp id (`wa_id`, `recipient_id`, `from`: digits without `+`) in E.164 form.
pub fn from_wa_id(wa_id: &str) -> String {
    if wa_id.starts_with('+') || !wa_id.chars().all(|c| c.is_ascii_digit()) || wa_id.is_empty() {
        wa_id.to_string()
    } else {
        format!("+{wa_id}")
    }
}

/// A character for a message: `'a'`, or `U+000A` for one that does not print.
fn quoted_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("'{c}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_scoped_user_ids_are_recipients_as_they_are() {
        for ok in [
            "US.13491208655302741918",
            "US.ENT.11815799212886844830",
            "BR.abcDEF123",
        ] {
            assert_eq!(parse_recipient(ok), Ok(Recipient::Bsuid(ok.into())), "{ok}");
        }
        assert_eq!(
            parse_recipient("+1 650 555 1234"),
            Ok(Recipient::Phone("+16505551234".into()))
        );
        for bad in [
            "us.123",
            "USA.123",
            "US.",
            "US.12-3",
            &format!("US.{}", "1".repeat(129)),
        ] {
            let e = parse_recipient(bad).unwrap_err();
            assert!(e.contains("business-scoped"), "{bad}: {e}");
        }
    }

    #[test]
    fn accepts_formatted_international_numbers() {
        assert_eq!(normalize_e164("+1 (650) 555-1234").unwrap(), "+16505551234");
        assert_eq!(
            normalize_e164("0044 20 7946 0958").unwrap(),
            "+442079460958"
        );
    }

    #[test]
    fn rejects_numbers_without_country_code() {
        let e = normalize_e164("(631) 555-1234").unwrap_err();
        assert!(e.contains("no country code"), "{e}");
        assert!(normalize_e164("16505551234").is_err());
    }

    #[test]
    fn rejects_bad_lengths_and_characters() {
        assert!(normalize_e164("+1234").unwrap_err().contains("8 to 15"));
        assert!(normalize_e164("+1234567890123456").is_err());
        assert!(normalize_e164("+1650555abcd").unwrap_err().contains("'a'"));
        assert!(normalize_e164("+0123456789").is_err());
        assert!(normalize_e164("  ").is_err());
    }

    #[test]
    fn wa_ids_gain_a_plus() {
        assert_eq!(from_wa_id("16505551234"), "+16505551234");
        assert_eq!(from_wa_id("group.123"), "group.123");
    }
}
