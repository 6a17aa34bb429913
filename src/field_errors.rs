//! Field errors: a JSON Pointer, a stable code and a message with the limit and the actual value.

use crate::FieldError;

/// Appends `key` to a JSON Pointer, escaping `~` and `/` as RFC 6901 requires.
pub fn pointer(base: &str, key: &str) -> String {
    let mut out = String::with_capacity(base.len() + key.len() + 1);
    out.push_str(base);
    out.push('/');
    for c in key.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            _ => out.push(c),
        }
    }
    out
}

/// Appends an array index to a JSON Pointer.
pub fn index(base: &str, i: usize) -> String {
    format!("{base}/{i}")
}

/// Field errors listed in one answer; past it they are counted, and the answer ends with one
/// `too_many_errors` naming how many more there were. A document can hold any number of
/// problems (100,000 unknown keys in 1 MB): listing each grew the guest's memory past its
/// limit and trapped the call.
pub const MAX_LISTED: usize = 100;

/// Collects the problems found in a document, so callers see them at once: the first
/// [`MAX_LISTED`] of them, and how many more.
#[derive(Debug, Default)]
pub struct Errors {
    listed: Vec<FieldError>,
    unlisted: usize,
}

impl Errors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, path: impl Into<String>, code: &str, message: impl Into<String>) {
        if self.listed.len() >= MAX_LISTED {
            self.unlisted += 1;
            return;
        }
        self.listed.push(FieldError {
            path: path.into(),
            code: code.to_string(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// Every error found, listed or not.
    pub fn len(&self) -> usize {
        self.listed.len() + self.unlisted
    }

    pub fn extend(&mut self, other: Errors) {
        let room = MAX_LISTED.saturating_sub(self.listed.len());
        let overflow = other.listed.len().saturating_sub(room);
        self.listed.extend(other.listed.into_iter().take(room));
        self.unlisted += overflow + other.unlisted;
    }

    /// The listed errors, and a last one saying how many more there were.
    pub fn into_vec(mut self) -> Vec<FieldError> {
        if self.unlisted > 0 {
            self.listed.push(FieldError {
                path: String::new(),
                code: "too_many_errors".to_string(),
                message: format!(
                    "{} more errors are not listed: at most {MAX_LISTED} are",
                    self.unlisted
                ),
            });
        }
        self.listed
    }

    /// `Ok(value)` when nothing was collected, else the errors ([`Errors::into_vec`]).
    pub fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self.into_vec())
        }
    }

    /// Reports a string longer than `max` characters (Meta counts characters, not bytes).
    /// Returns whether the value was within the limit.
    pub fn check_len(&mut self, path: &str, what: &str, value: &str, max: usize) -> bool {
        let n = value.chars().count();
        if n > max {
            self.add(
                path,
                "too_long",
                format!("{what} is {n} characters long; the limit is {max}"),
            );
            false
        } else {
            true
        }
    }
}

/// The JSON type name of a value, for messages such as "expected a string, got a number".
pub fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `s` as a JSON string literal, for quoting a value in a message. (JSON's escapes rather than
/// Rust's `{:?}`: the values come from JSON documents, and `Debug` for `str` would bring its
/// Unicode tables into the component for nothing else.)
pub fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Shortens a value for quoting in a message.
pub fn excerpt(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        quoted(s)
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{}…", quoted(&head))
    }
}

/// Parses a JSON document, turning a syntax error into a field error at the root.
pub fn parse_json(text: &str, what: &str) -> Result<serde_json::Value, Vec<FieldError>> {
    serde_json::from_slice(text.as_bytes()).map_err(|e| {
        vec![FieldError {
            path: String::new(),
            code: "invalid_json".into(),
            message: format!("{what} is not valid JSON: {e}"),
        }]
    })
}

/// Typed access to the members of a JSON object, recording an error for each member that is
/// missing or of the wrong type.
pub struct Fields<'a> {
    pub obj: &'a serde_json::Map<String, serde_json::Value>,
    pub path: String,
}

impl<'a> Fields<'a> {
    /// Views `value` as an object, or records `expected_object` at `path`.
    pub fn of(
        value: &'a serde_json::Value,
        path: impl Into<String>,
        what: &str,
        errors: &mut Errors,
    ) -> Option<Self> {
        let path = path.into();
        match value.as_object() {
            Some(obj) => Some(Self { obj, path }),
            None => {
                errors.add(
                    path,
                    "expected_object",
                    format!("{what} must be a JSON object, got {}", type_name(value)),
                );
                None
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a serde_json::Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub fn path_of(&self, key: &str) -> String {
        pointer(&self.path, key)
    }

    /// A string member; `required` records `missing` when it is absent.
    pub fn str(&self, key: &str, required: bool, errors: &mut Errors) -> Option<&'a str> {
        match self.get(key) {
            None => {
                if required {
                    errors.add(self.path_of(key), "missing", format!("`{key}` is required"));
                }
                None
            }
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                errors.add(
                    self.path_of(key),
                    "expected_string",
                    format!("`{key}` must be a string, got {}", type_name(other)),
                );
                None
            }
        }
    }

    /// A non-empty string member (empty counts as missing when `required`).
    pub fn text(&self, key: &str, required: bool, errors: &mut Errors) -> Option<&'a str> {
        let s = self.str(key, required, errors)?;
        if s.trim().is_empty() {
            if required {
                errors.add(
                    self.path_of(key),
                    "empty",
                    format!("`{key}` must not be empty"),
                );
            }
            return None;
        }
        Some(s)
    }

    pub fn bool(&self, key: &str, errors: &mut Errors) -> Option<bool> {
        match self.get(key) {
            None => None,
            Some(serde_json::Value::Bool(b)) => Some(*b),
            Some(other) => {
                errors.add(
                    self.path_of(key),
                    "expected_boolean",
                    format!("`{key}` must be true or false, got {}", type_name(other)),
                );
                None
            }
        }
    }

    pub fn array(
        &self,
        key: &str,
        required: bool,
        errors: &mut Errors,
    ) -> Option<&'a Vec<serde_json::Value>> {
        match self.get(key) {
            None => {
                if required {
                    errors.add(self.path_of(key), "missing", format!("`{key}` is required"));
                }
                None
            }
            Some(serde_json::Value::Array(a)) => Some(a),
            Some(other) => {
                errors.add(
                    self.path_of(key),
                    "expected_array",
                    format!("`{key}` must be an array, got {}", type_name(other)),
                );
                None
            }
        }
    }

    /// Records `unknown_field` for every member not in `known`, so typos are not silently lost.
    pub fn reject_unknown(&self, known: &[&str], errors: &mut Errors) {
        for key in self.obj.keys() {
            if !known.contains(&key.as_str()) {
                errors.add(
                    self.path_of(key),
                    "unknown_field",
                    format!(
                        "`{key}` is not a known field here; expected one of: {}",
                        known.join(", ")
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_escapes_tilde_and_slash() {
        assert_eq!(pointer("/a", "b/c~d"), "/a/b~1c~0d");
        assert_eq!(index("", 3), "/3");
    }

    #[test]
    fn past_the_listed_limit_errors_are_counted_and_named_once() {
        let mut e = Errors::new();
        for i in 0..MAX_LISTED + 5 {
            e.add(format!("/k{i}"), "unknown_field", "x");
        }
        let mut other = Errors::new();
        other.add("/o", "too_long", "y");
        e.extend(other);
        assert_eq!(e.len(), MAX_LISTED + 6);
        let v = e.into_vec();
        assert_eq!(v.len(), MAX_LISTED + 1);
        let last = v.last().unwrap();
        assert_eq!(last.code, "too_many_errors");
        assert!(
            last.message.starts_with("6 more errors"),
            "{}",
            last.message
        );
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let mut e = Errors::new();
        assert!(e.check_len("/x", "x", "ééé", 3));
        assert!(!e.check_len("/x", "x", "éééé", 3));
        let v = e.into_vec();
        assert_eq!(v[0].code, "too_long");
        assert!(v[0].message.contains("4 characters") && v[0].message.contains("limit is 3"));
    }
}
