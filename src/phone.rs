//! Recipient phone numbers in E.164.
//!
//! Meta accepts numbers without `+` and then prepends the *business* number's country code,
//! which can reach the wrong person; so a number must carry its country code explicitly
//! (`+` or the international `00` prefix).

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
                    "{input:?} contains {c:?}; a phone number has digits, spaces, '-', '(', ')' and a leading '+'"
                ));
            }
        }
    }
    if !international {
        return Err(format!(
            "{input:?} has no country code; write it in E.164 with a leading '+' (e.g. \"+16505551234\"), otherwise Meta prepends the business number's country code and may reach the wrong person"
        ));
    }
    if digits.starts_with('0') {
        return Err(format!("{input:?}: a country code never starts with 0"));
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(format!(
            "{input:?} has {} digits after the '+'; E.164 numbers have 8 to 15",
            digits.len()
        ));
    }
    Ok(format!("+{digits}"))
}

/// A WhatsApp id (`wa_id`, `recipient_id`, `from`: digits without `+`) in E.164 form.
pub fn from_wa_id(wa_id: &str) -> String {
    if wa_id.starts_with('+') || !wa_id.chars().all(|c| c.is_ascii_digit()) || wa_id.is_empty() {
        wa_id.to_string()
    } else {
        format!("+{wa_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
