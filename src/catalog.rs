//! The catalog of approved templates the send-time check uses.
//!
//! It is built from documents as Meta produces them, applied in order:
//! - pages of `GET /{waba-id}/message_templates` (`{"data": [definitions…], "paging": …}`),
//! - single template definitions (`{"name", "language", "status", "components", …}`),
//! - `message_template_status_update` and `template_category_update` webhook bodies, which
//!   change a known template's status or category (matched by id, else by name and language),
//! - the `details` of this channel's `template-status` and `template-category-change` events
//!   (the same change, as the host keeps it: a host appends them to its cached catalog).
//!
//! The host fetches and caches these; the channel only reads them.

use crate::field_errors::{Errors, index, quoted, type_name};
use serde_json::Value;

/// One template as Meta describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub id: Option<String>,
    pub name: String,
    /// Normalised to Meta's send form (`en_US`, not `en-US`).
    pub language: String,
    /// Upper-case: APPROVED, PAUSED, DISABLED, PENDING, REJECTED…
    pub status: String,
    /// Upper-case: AUTHENTICATION, MARKETING, UTILITY.
    pub category: String,
    /// Whether variables are named (`{{first_name}}`) rather than positional.
    pub named: bool,
    pub components: Vec<Value>,
}

/// Templates by name and language.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub templates: Vec<Definition>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        // Through serde_json's writer: `Number`'s `Display` would link core's float printing.
        number @ Value::Number(_) => Some(number.to_string()),
        _ => None,
    }
}

/// Template language codes in their send form.
pub fn normalize_language(code: &str) -> String {
    code.replace('-', "_")
}

impl Catalog {
    /// Applies one document (see the module docs); `path` locates it for errors.
    pub fn apply(&mut self, doc: &Value, path: &str, errors: &mut Errors) {
        if let Some(data) = doc.get("data") {
            match data.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        self.add_definition(item, &index(&format!("{path}/data"), i), errors);
                    }
                }
                None => errors.add(
                    format!("{path}/data"),
                    "expected_array",
                    format!(
                        "`data` must be an array of templates, got {}",
                        type_name(data)
                    ),
                ),
            }
        } else if let Some(entries) = doc.get("entry").and_then(Value::as_array) {
            for entry in entries {
                for change in entry
                    .get("changes")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                {
                    let field = change.get("field").and_then(Value::as_str);
                    if matches!(
                        field,
                        Some("message_template_status_update" | "template_category_update")
                    ) && let Some(value) = change.get("value")
                    {
                        self.apply_update(value);
                    }
                }
            }
        } else if doc.get("message_template_id").is_some()
            || doc.get("message_template_name").is_some()
        {
            self.apply_update(doc);
        } else if let Some(list) = doc.as_array() {
            for (i, item) in list.iter().enumerate() {
                self.apply(item, &index(path, i), errors);
            }
        } else {
            self.add_definition(doc, path, errors);
        }
    }

    fn add_definition(&mut self, d: &Value, path: &str, errors: &mut Errors) {
        let (Some(name), Some(language)) = (text(d, "name"), text(d, "language")) else {
            errors.add(path, "invalid_template_definition", "a template definition needs `name` and `language` (as GET /{waba-id}/message_templates returns them)");
            return;
        };
        let components = match d.get("components") {
            Some(Value::Array(c)) => c.clone(),
            _ => {
                errors.add(
                    format!("{path}/components"),
                    "missing",
                    format!("template {} has no `components` array", quoted(&name)),
                );
                return;
            }
        };
        let def = Definition {
            id: text(d, "id"),
            name,
            language: normalize_language(&language),
            // A definition without a status is taken as the caller's approved copy.
            status: text(d, "status")
                .unwrap_or_else(|| "APPROVED".into())
                .to_ascii_uppercase(),
            category: text(d, "category").unwrap_or_default().to_ascii_uppercase(),
            named: text(d, "parameter_format").is_some_and(|f| f.eq_ignore_ascii_case("named")),
            components,
        };
        // A later page or copy of the same template replaces the earlier one.
        self.templates
            .retain(|t| !(t.name == def.name && t.language == def.language));
        self.templates.push(def);
    }

    /// A status (`event`) or category (`new_category`) change of a known template.
    fn apply_update(&mut self, value: &Value) {
        let status = text(value, "event").map(|s| s.to_ascii_uppercase());
        let category = text(value, "new_category").map(|c| c.to_ascii_uppercase());
        if status.is_none() && category.is_none() {
            return;
        }
        let id = text(value, "message_template_id");
        let name = text(value, "message_template_name");
        let language = text(value, "message_template_language").map(|l| normalize_language(&l));
        for t in &mut self.templates {
            let same = match (&id, &t.id) {
                (Some(a), Some(b)) => a == b,
                _ => Some(&t.name) == name.as_ref() && Some(&t.language) == language.as_ref(),
            };
            if same {
                if let Some(s) = &status {
                    t.status = s.clone();
                }
                if let Some(c) = &category {
                    t.category = c.clone();
                }
            }
        }
    }

    pub fn find(&self, name: &str, language: &str) -> Option<&Definition> {
        let language = normalize_language(language);
        self.templates
            .iter()
            .find(|t| t.name == name && t.language == language)
    }

    /// Languages in which a template name exists, for "did you mean".
    pub fn languages_of(&self, name: &str) -> Vec<&str> {
        self.templates
            .iter()
            .filter(|t| t.name == name)
            .map(|t| t.language.as_str())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page(templates: Value) -> Value {
        json!({"data": templates, "paging": {"cursors": {"before": "a", "after": "b"}}})
    }

    #[test]
    fn pages_and_status_updates() {
        let mut c = Catalog::default();
        let mut e = Errors::new();
        c.apply(&json!([
            page(json!([{"name": "order_confirmation", "language": "en_US", "status": "APPROVED", "category": "UTILITY", "id": "1689556908129832", "components": []}])),
            page(json!([{"name": "abandoned_cart", "language": "en", "status": "APPROVED", "category": "MARKETING", "id": "9", "components": []}])),
        ]), "/templates", &mut e);
        assert!(e.is_empty());
        assert_eq!(c.templates.len(), 2);
        let update: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/webhook-template-status-update-rejected-invalid-format.json"
        ))
        .unwrap();
        c.apply(&update, "/templates/2", &mut e);
        assert_eq!(
            c.find("abandoned_cart", "en").unwrap().status,
            "APPROVED",
            "different id: untouched"
        );
        let approved: Value = serde_json::from_str(include_str!(
            "../tests/fixtures/webhook-template-status-update-approved.json"
        ))
        .unwrap();
        let mut paused = approved.clone();
        paused["entry"][0]["changes"][0]["value"]["event"] = json!("PAUSED");
        c.apply(&paused, "/templates/3", &mut e);
        assert_eq!(
            c.find("order_confirmation", "en-US").unwrap().status,
            "PAUSED"
        );
    }

    #[test]
    fn bad_definitions_are_reported() {
        let mut c = Catalog::default();
        let mut e = Errors::new();
        c.apply(
            &json!({"data": [{"name": "x"}, {"name": "y", "language": "en"}]}),
            "/templates",
            &mut e,
        );
        let v = e.into_vec();
        assert_eq!(v[0].path, "/templates/data/0");
        assert_eq!(v[1].path, "/templates/data/1/components");
    }
}
