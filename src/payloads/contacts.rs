//! `contacts` messages: 1 to 257 contact cards, each with `name.formatted_name`.

use crate::field_errors::{Errors, Fields, index, quoted, type_name};
use serde_json::Value;

/// Meta's limit on contacts per message.
pub use crate::meta_limits::messages::CONTACTS as CONTACTS_MAX;

const CONTACT_FIELDS: &[&str] = &[
    "addresses",
    "birthday",
    "emails",
    "name",
    "org",
    "phones",
    "urls",
];
const NAME_FIELDS: &[&str] = &[
    "formatted_name",
    "first_name",
    "last_name",
    "middle_name",
    "suffix",
    "prefix",
];

pub fn build(content: &Fields, errors: &mut Errors) -> Option<Value> {
    let path = content.path_of("contacts");
    let list = match content.get("contacts") {
        Some(Value::Array(a)) => a,
        Some(other) => {
            errors.add(
                &path,
                "expected_array",
                format!(
                    "`contacts` must be an array of contact cards, got {}",
                    type_name(other)
                ),
            );
            return None;
        }
        None => {
            errors.add(
                &path,
                "missing",
                "a contacts message needs a `contacts` array",
            );
            return None;
        }
    };
    if list.is_empty() || list.len() > CONTACTS_MAX {
        errors.add(
            &path,
            "invalid_count",
            format!(
                "a contacts message carries 1 to {CONTACTS_MAX} contacts, got {}",
                list.len()
            ),
        );
    }
    for (i, contact) in list.iter().enumerate() {
        let p = index(&path, i);
        let Some(c) = Fields::of(contact, &p, "a contact", errors) else {
            continue;
        };
        c.reject_unknown(CONTACT_FIELDS, errors);
        match c.get("name") {
            Some(name) => {
                if let Some(n) = Fields::of(name, c.path_of("name"), "`name`", errors) {
                    n.reject_unknown(NAME_FIELDS, errors);
                    n.text("formatted_name", true, errors);
                }
            }
            None => errors.add(
                c.path_of("name"),
                "missing",
                "each contact needs `name.formatted_name`",
            ),
        }
        if let Some(b) = c.str("birthday", false, errors)
            && !is_date(b)
        {
            errors.add(
                c.path_of("birthday"),
                "invalid_date",
                format!("`birthday` is YYYY-MM-DD, got {}", quoted(b)),
            );
        }
        for key in ["addresses", "emails", "phones", "urls"] {
            if let Some(items) = c.array(key, false, errors) {
                for (j, item) in items.iter().enumerate() {
                    Fields::of(item, index(&c.path_of(key), j), "an entry", errors);
                }
            }
        }
        if let Some(org) = c.get("org") {
            Fields::of(org, c.path_of("org"), "`org`", errors);
        }
    }
    Some(Value::Array(list.clone()))
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && (1..=12).contains(&s[5..7].parse::<u8>().unwrap_or(0))
        && (1..=31).contains(&s[8..10].parse::<u8>().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use crate::payloads::build_body;
    use crate::payloads::tests::{content_of, request};
    use serde_json::json;

    #[test]
    fn meta_sample() {
        let (mut full, content) = content_of(include_str!(
            "../../tests/fixtures/send-request-contacts.json"
        ));
        // Meta's contacts example omits recipient_type; the channel always sends it.
        full["recipient_type"] = json!("individual");
        assert_eq!(build_body(&request(content)).unwrap(), full);
    }

    #[test]
    fn limits() {
        let card = json!({"name":{"formatted_name":"A"}});
        let many = |n: usize| json!({"type":"contacts","contacts": vec![card.clone(); n]});
        assert!(build_body(&request(many(257))).is_ok());
        assert_eq!(
            build_body(&request(many(258))).unwrap_err()[0].code,
            "invalid_count"
        );
        assert_eq!(
            build_body(&request(many(0))).unwrap_err()[0].code,
            "invalid_count"
        );
        let e = build_body(&request(json!({"type":"contacts","contacts":[{"name":{"first_name":"A"},"birthday":"1999-13-01"}]}))).unwrap_err();
        let codes: Vec<_> = e
            .iter()
            .map(|e| (e.path.as_str(), e.code.as_str()))
            .collect();
        assert!(codes.contains(&("/content/contacts/0/name/formatted_name", "missing")));
        assert!(codes.contains(&("/content/contacts/0/birthday", "invalid_date")));
    }
}
