//! `location` messages and location objects (template LOCATION headers).

use crate::field_errors::{Errors, Fields};
use serde_json::Value;

/// Latitude and longitude as numbers or numeric strings (Meta's examples use both), in range.
pub fn check_location(v: &Value, path: &str, errors: &mut Errors) -> bool {
    let before = errors.len();
    let Some(f) = Fields::of(v, path, "`location`", errors) else {
        return false;
    };
    f.reject_unknown(&["latitude", "longitude", "name", "address"], errors);
    for (key, max) in [("latitude", 90), ("longitude", 180)] {
        // Numeric strings go through serde_json's number parser and errors quote the input
        // as given: no float parsing or printing of core's own (≈ 20 KB of component).
        let n = match f.get(key) {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => {
                let text = s.trim();
                serde_json::from_slice::<Value>(text.strip_prefix('+').unwrap_or(text).as_bytes())
                    .ok()
                    .and_then(|v| v.as_f64())
            }
            _ => None,
        };
        match (n.filter(|x| x.is_finite()), f.get(key)) {
            (Some(x), _) if x.abs() <= f64::from(max) => {}
            (Some(_), Some(given)) => errors.add(
                f.path_of(key),
                "out_of_range",
                format!("`{key}` must be between -{max} and {max}, got {given}"),
            ),
            (_, None) => errors.add(
                f.path_of(key),
                "missing",
                format!("`{key}` is required, in decimal degrees"),
            ),
            (None, Some(other)) => errors.add(
                f.path_of(key),
                "expected_number",
                format!("`{key}` must be a number of decimal degrees, got {other}"),
            ),
        }
    }
    f.str("name", false, errors);
    f.str("address", false, errors);
    errors.len() == before
}

pub fn build(content: &Fields, errors: &mut Errors) -> Option<Value> {
    let Some(v) = content.get("location") else {
        errors.add(
            content.path_of("location"),
            "missing",
            "a location message needs a `location` object",
        );
        return None;
    };
    check_location(v, &content.path_of("location"), errors).then(|| v.clone())
}

#[cfg(test)]
mod tests {
    use crate::payloads::build_body;
    use crate::payloads::tests::{content_of, request};
    use serde_json::json;

    #[test]
    fn meta_sample_with_string_coordinates() {
        let (full, content) = content_of(include_str!(
            "../../tests/fixtures/send-request-location.json"
        ));
        assert_eq!(build_body(&request(content)).unwrap(), full);
    }

    #[test]
    fn coordinates_in_range() {
        let loc = |lat: serde_json::Value| json!({"type":"location","location":{"latitude":lat,"longitude":-122.1}});
        assert!(build_body(&request(loc(json!(90)))).is_ok());
        let e = build_body(&request(loc(json!(90.0001)))).unwrap_err();
        assert_eq!(
            (e[0].path.as_str(), e[0].code.as_str()),
            ("/content/location/latitude", "out_of_range")
        );
        assert_eq!(
            build_body(&request(loc(json!("north")))).unwrap_err()[0].code,
            "expected_number"
        );
    }
}
