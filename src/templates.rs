//! Meta's template creation rules (`POST /{waba-id}/message_templates`), checked before a
//! template goes to a review that can take 24 h. Every problem is reported, not the first.
//!
//! The rule table with codes and examples is in `docs/templates.md`. The rules of
//! marketing-only template kinds (carousels, limited-time offers, product cards) are in
//! [`marketing`]; the check of a send against its approved template is [`send_check`].

pub mod marketing;
pub mod send_check;

use crate::FieldError;
use crate::field_errors::{Errors, Fields, excerpt, index, parse_json, pointer, quoted, type_name};
use serde_json::Value;

/// The 111 language codes Meta supports for templates (supported-languages page, 2025-11-04).
pub const LANGUAGES: &[&str] = &[
    "af", "sq", "ar", "ar_EG", "ar_AE", "ar_LB", "ar_MA", "ar_QA", "az", "be_BY", "bn", "bn_IN",
    "bg", "ca", "zh_CN", "zh_HK", "zh_TW", "hr", "cs", "da", "prs_AF", "nl", "nl_BE", "en",
    "en_GB", "en_US", "en_AE", "en_AU", "en_CA", "en_GH", "en_IE", "en_IN", "en_JM", "en_MY",
    "en_NZ", "en_QA", "en_SG", "en_UG", "en_ZA", "et", "fil", "fi", "fr", "fr_BE", "fr_CA",
    "fr_CH", "fr_CI", "fr_MA", "ka", "de", "de_AT", "de_CH", "el", "gu", "ha", "he", "hi", "hu",
    "id", "ga", "it", "ja", "kn", "kk", "rw_RW", "ko", "ky_KG", "lo", "lv", "lt", "mk", "ms", "ml",
    "mr", "nb", "ps_AF", "fa", "pl", "pt_BR", "pt_PT", "pa", "ro", "ru", "sr", "si_LK", "sk", "sl",
    "es", "es_AR", "es_CL", "es_CO", "es_CR", "es_DO", "es_EC", "es_HN", "es_MX", "es_PA", "es_PE",
    "es_ES", "es_UY", "sw", "sv", "ta", "te", "th", "tr", "uk", "ur", "uz", "vi", "zu",
];

/// Template limits (Meta's components page).
pub use crate::meta_limits::templates as limits;

/// Template category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Authentication,
    Marketing,
    Utility,
}

/// How a template's variables are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterFormat {
    /// `{{1}}`, `{{2}}`…
    Positional,
    /// `{{first_name}}`…
    Named,
}

/// Whether `name` is a valid template name (lowercase letters, digits and `_`, 1–512).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= limits::NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A variable found in template text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variable {
    Positional(u32),
    Named(String),
}

/// The variables of a text, in order of appearance, or the problems in writing them.
#[derive(Debug, Default)]
pub struct ScannedText {
    pub variables: Vec<Variable>,
    /// Whether two variables stand next to each other with only spaces between them.
    pub adjacent: bool,
    /// (code, message) for each malformed placeholder.
    pub problems: Vec<(&'static str, String)>,
}

/// Finds `{{…}}` placeholders in `text`.
pub fn scan_variables(text: &str) -> ScannedText {
    let mut out = ScannedText::default();
    let mut rest = text;
    let mut last_end_was_var = false;
    loop {
        let open = rest.find("{{");
        let close = rest.find("}}");
        match (open, close) {
            (None, None) => break,
            (None, Some(_)) => {
                out.problems
                    .push(("mismatched_braces", "`}}` without a matching `{{`".into()));
                break;
            }
            (Some(o), close) => {
                if close.is_some_and(|c| c < o) {
                    out.problems
                        .push(("mismatched_braces", "`}}` without a matching `{{`".into()));
                }
                let between = &rest[..o];
                if last_end_was_var && between.trim().is_empty() {
                    out.adjacent = true;
                }
                let after = &rest[o + 2..];
                let Some(end) = after.find("}}") else {
                    out.problems
                        .push(("mismatched_braces", "`{{` without a matching `}}`".into()));
                    break;
                };
                let inner = &after[..end];
                if inner.contains("{{") || inner.contains('{') || inner.contains('}') {
                    out.problems.push((
                        "mismatched_braces",
                        format!(
                            "unbalanced braces in {}",
                            excerpt(&format!("{{{{{inner}}}}}"))
                        ),
                    ));
                } else if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit()) {
                    match inner.parse::<u32>() {
                        Ok(n) if n >= 1 => out.variables.push(Variable::Positional(n)),
                        _ => out.problems.push(("invalid_variable", format!("{{{{{inner}}}}} is not a valid variable: positional variables start at {{{{1}}}}"))),
                    }
                } else if is_named_variable(inner) {
                    out.variables.push(Variable::Named(inner.to_string()));
                } else {
                    out.problems.push((
                        "invalid_variable",
                        format!("{} is not a valid variable: use {{{{1}}}}, {{{{2}}}}… or lowercase {{{{snake_case}}}} names, without spaces or special characters such as #, $, %", excerpt(&format!("{{{{{inner}}}}}"))),
                    ));
                }
                last_end_was_var = true;
                rest = &after[end + 2..];
            }
        }
    }
    out
}

fn is_named_variable(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Distinct variable keys in order of first appearance.
fn distinct(vars: &[Variable]) -> Vec<&Variable> {
    let mut seen: Vec<&Variable> = Vec::new();
    for v in vars {
        if !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen
}

/// Checks the variables of one text field against the template's parameter format and
/// returns the distinct variables (what the examples must cover).
fn check_variables<'a>(
    scanned: &'a ScannedText,
    format: ParameterFormat,
    path: &str,
    what: &str,
    errors: &mut Errors,
) -> Vec<&'a Variable> {
    for (code, msg) in &scanned.problems {
        errors.add(path, code, format!("{what}: {msg}"));
    }
    if scanned.adjacent {
        errors.add(path, "adjacent_variables", format!("{what} has two variables next to each other (like {{{{1}}}}{{{{2}}}}); put text or punctuation between them"));
    }
    let vars = distinct(&scanned.variables);
    for v in &vars {
        match (format, v) {
            (ParameterFormat::Positional, Variable::Named(n)) => errors.add(path, "parameter_format_mismatch", format!("{what} uses the named variable {{{{{n}}}}} but parameter_format is positional; set \"parameter_format\": \"named\" or use {{{{1}}}}")),
            (ParameterFormat::Named, Variable::Positional(n)) => errors.add(path, "parameter_format_mismatch", format!("{what} uses the positional variable {{{{{n}}}}} but parameter_format is named; use {{{{snake_case}}}} names")),
            _ => {}
        }
    }
    let positions: Vec<u32> = vars
        .iter()
        .filter_map(|v| match v {
            Variable::Positional(n) => Some(*n),
            _ => None,
        })
        .collect();
    if !positions.is_empty()
        && positions
            .iter()
            .enumerate()
            .any(|(i, n)| *n != i as u32 + 1)
    {
        let seen: Vec<String> = positions.iter().map(|n| format!("{{{{{n}}}}}")).collect();
        errors.add(path, "variables_not_sequential", format!("{what} variables must be numbered {{{{1}}}} to {{{{{}}}}} in order of appearance, got {}", positions.len(), seen.join(", ")));
    }
    vars
}

/// Checks a template definition given as JSON text.
pub fn validate_json(text: &str) -> Result<(), Vec<FieldError>> {
    let doc = parse_json(text, "the template")?;
    validate(&doc)
}

/// Checks a template definition against every creation rule.
pub fn validate(doc: &Value) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::new();
    let Some(t) = Fields::of(doc, "", "the template", &mut errors) else {
        return Err(errors.into_vec());
    };
    t.reject_unknown(
        &[
            "name",
            "category",
            "language",
            "parameter_format",
            "components",
            "allow_category_change",
            "message_send_ttl_seconds",
            "sub_category",
            "cta_url_link_tracking_opted_out",
            "library_template_name",
            "id",
            "status",
        ],
        &mut errors,
    );

    check_name(&t, &mut errors);

    let category = category_of(&t, &mut errors);

    check_language(&t, &mut errors);

    let format = match t.str("parameter_format", false, &mut errors) {
        None => ParameterFormat::Positional,
        Some(f) => match f.to_ascii_lowercase().as_str() {
            "positional" => ParameterFormat::Positional,
            "named" => ParameterFormat::Named,
            _ => {
                errors.add(
                    "/parameter_format",
                    "invalid_parameter_format",
                    format!(
                        "`parameter_format` must be \"positional\" or \"named\", got {}",
                        excerpt(f)
                    ),
                );
                ParameterFormat::Positional
            }
        },
    };

    if let Some(ttl) = t.get("message_send_ttl_seconds") {
        check_ttl(ttl, category, &mut errors);
    }

    if let Some(components) = t.array("components", true, &mut errors) {
        let ctx = Ctx { category, format };
        check_components(components, &ctx, &mut errors);
    }
    errors.finish(())
}

fn check_name(t: &Fields, errors: &mut Errors) {
    if let Some(name) = t.str("name", true, errors) {
        if name.is_empty() {
            errors.add("/name", "empty", "`name` must not be empty");
        } else if name.chars().count() > limits::NAME {
            errors.add(
                "/name",
                "too_long",
                format!(
                    "`name` is {} characters long; the limit is {}",
                    name.chars().count(),
                    limits::NAME
                ),
            );
        } else if !is_valid_name(name) {
            errors.add(
                "/name",
                "invalid_name",
                format!(
                    "`name` may contain only lowercase letters, digits and underscores, got {}",
                    excerpt(name)
                ),
            );
        }
    }
}

fn category_of(t: &Fields, errors: &mut Errors) -> Option<Category> {
    t.str("category", true, errors)
        .and_then(|c| match c.to_ascii_uppercase().as_str() {
            "AUTHENTICATION" => Some(Category::Authentication),
            "MARKETING" => Some(Category::Marketing),
            "UTILITY" => Some(Category::Utility),
            _ => {
                errors.add(
                    "/category",
                    "invalid_category",
                    format!(
                        "`category` must be AUTHENTICATION, MARKETING or UTILITY, got {}",
                        excerpt(c)
                    ),
                );
                None
            }
        })
}

fn check_language(t: &Fields, errors: &mut Errors) {
    if let Some(lang) = t.str("language", true, errors)
        && !LANGUAGES.contains(&lang)
    {
        let hint = LANGUAGES
            .iter()
            .find(|l| l.eq_ignore_ascii_case(&lang.replace('-', "_")));
        let msg = match hint {
            Some(h) => format!(
                "`language` {} is not a supported code; did you mean {}?",
                excerpt(lang),
                quoted(h)
            ),
            None => format!(
                "`language` {} is not one of the {} supported codes (e.g. en_US, pt_BR)",
                excerpt(lang),
                LANGUAGES.len()
            ),
        };
        errors.add("/language", "unsupported_language", msg);
    }
}

fn check_ttl(ttl: &Value, category: Option<Category>, errors: &mut Errors) {
    let Some(n) = ttl.as_i64() else {
        errors.add(
            "/message_send_ttl_seconds",
            "expected_integer",
            format!(
                "`message_send_ttl_seconds` must be an integer, got {}",
                type_name(ttl)
            ),
        );
        return;
    };
    let range = match category {
        Some(Category::Authentication) => Some((30, 900)),
        Some(Category::Utility) => Some((30, 43_200)),
        Some(Category::Marketing) => Some((43_200, 2_592_000)),
        None => None,
    };
    if let Some((lo, hi)) = range {
        let minus_one_ok = n == -1 && category != Some(Category::Marketing);
        if !minus_one_ok && !(lo..=hi).contains(&n) {
            errors.add(
                "/message_send_ttl_seconds",
                "out_of_range",
                format!(
                    "`message_send_ttl_seconds` for this category must be {lo}–{hi}{}, got {n}",
                    if category == Some(Category::Marketing) {
                        ""
                    } else {
                        " or -1"
                    }
                ),
            );
        }
    }
}

struct Ctx {
    category: Option<Category>,
    format: ParameterFormat,
}

fn check_components(components: &[Value], ctx: &Ctx, errors: &mut Errors) {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for (i, comp) in components.iter().enumerate() {
        let path = index("/components", i);
        let Some(c) = Fields::of(comp, &path, "a component", errors) else {
            continue;
        };
        let Some(kind) = c.str("type", true, errors) else {
            continue;
        };
        let kind_up = kind.to_ascii_uppercase();
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == kind_up) {
            errors.add(pointer(&path, "type"), "duplicate_component", format!("a template has at most one {kind_up} component; another is at /components/{first}"));
        } else {
            seen.push((kind_up.clone(), i));
        }
        let auth = ctx.category == Some(Category::Authentication);
        match kind_up.as_str() {
            "HEADER" if auth => errors.add(
                pointer(&path, "type"),
                "not_allowed_in_authentication",
                "authentication templates have no header (no media, URLs or emojis)",
            ),
            "HEADER" => check_header(&c, ctx, errors),
            "BODY" if auth => check_auth_body(&c, errors),
            "BODY" => check_body(&c, ctx, errors),
            "FOOTER" if auth => check_auth_footer(&c, errors),
            "FOOTER" => check_footer(&c, errors),
            "BUTTONS" => check_buttons(&c, ctx, errors),
            "CAROUSEL" => marketing::check_carousel(&c, ctx, errors),
            "LIMITED_TIME_OFFER" => marketing::check_offer_component(&c, ctx, errors),
            _ => errors.add(
                pointer(&path, "type"),
                "unknown_component",
                format!(
                    "component type {} is not one of HEADER, BODY, FOOTER, BUTTONS, CAROUSEL, LIMITED_TIME_OFFER",
                    excerpt(kind)
                ),
            ),
        }
    }
    if seen.iter().any(|(k, _)| k == "LIMITED_TIME_OFFER") {
        marketing::check_offer_template(components, errors);
    }
    if !seen.iter().any(|(k, _)| k == "BODY") {
        errors.add(
            "/components",
            "missing_body",
            "a template needs exactly one BODY component",
        );
    }
    if ctx.category == Some(Category::Authentication) && !seen.iter().any(|(k, _)| k == "BUTTONS") {
        errors.add(
            "/components",
            "missing_otp_button",
            "an authentication template needs a BUTTONS component with one OTP button",
        );
    }
}

/// The `example` object of a component, if present and an object.
fn example<'a>(c: &Fields<'a>, errors: &mut Errors) -> Option<Fields<'a>> {
    let ex = c.get("example")?;
    match ex.as_object() {
        Some(obj) => Some(Fields {
            obj,
            path: c.path.clone(),
        }),
        None => {
            errors.add(
                c.path_of("example"),
                "expected_object",
                format!("`example` must be an object, got {}", type_name(ex)),
            );
            None
        }
    }
}

/// Where a component keeps the examples of its variables.
#[derive(Clone, Copy)]
struct ExampleKeys {
    positional: &'static str,
    named: &'static str,
    /// Body examples are an array holding one array of values; header examples are flat.
    nested: bool,
    what: &'static str,
}

const HEADER_EXAMPLES: ExampleKeys = ExampleKeys {
    positional: "header_text",
    named: "header_text_named_params",
    nested: false,
    what: "header text",
};
const BODY_EXAMPLES: ExampleKeys = ExampleKeys {
    positional: "body_text",
    named: "body_text_named_params",
    nested: true,
    what: "body text",
};

/// Checks that the examples cover exactly the variables of a text.
fn check_examples(
    c: &Fields,
    vars: &[&Variable],
    format: ParameterFormat,
    keys: ExampleKeys,
    errors: &mut Errors,
) {
    let ExampleKeys {
        positional: positional_key,
        named: named_key,
        what,
        ..
    } = keys;
    let ex = example(c, errors);
    let ex_path = c.path_of("example");
    if vars.is_empty() {
        return;
    }
    let Some(ex) = ex else {
        let key = if format == ParameterFormat::Named {
            named_key
        } else {
            positional_key
        };
        errors.add(
            ex_path,
            "missing_example",
            format!(
                "{what} has {} variable(s); give an example value for each in `example.{key}`",
                vars.len()
            ),
        );
        return;
    };
    match format {
        ParameterFormat::Positional => check_positional_examples(&ex, &ex_path, vars, keys, errors),
        ParameterFormat::Named => check_named_examples(&ex, &ex_path, vars, keys, errors),
    }
}

/// `example.body_text` (nested: one array of strings) or `header_text`: one value per variable.
fn check_positional_examples(
    ex: &Fields,
    ex_path: &str,
    vars: &[&Variable],
    keys: ExampleKeys,
    errors: &mut Errors,
) {
    let ExampleKeys {
        positional: positional_key,
        nested,
        what,
        ..
    } = keys;
    let path = pointer(ex_path, positional_key);
    let Some(values) = ex.obj.get(positional_key) else {
        errors.add(
            path,
            "missing_example",
            format!(
                "{what} has {} variable(s); give their examples in `example.{positional_key}`",
                vars.len()
            ),
        );
        return;
    };
    let (list, list_path) = if nested {
        match values.as_array().and_then(|a| a.first()) {
            Some(inner) => (inner, index(&path, 0)),
            None => {
                errors.add(path, "invalid_example", format!("`example.{positional_key}` must be an array holding one array of {} strings", vars.len()));
                return;
            }
        }
    } else {
        (values, path.clone())
    };
    match list.as_array() {
        None => errors.add(
            list_path,
            "invalid_example",
            format!(
                "examples must be an array of {} strings, got {}",
                vars.len(),
                type_name(list)
            ),
        ),
        Some(items) => {
            if items.len() != vars.len() {
                errors.add(
                    list_path.clone(),
                    "example_count_mismatch",
                    format!(
                        "{what} has {} variable(s) but {} example value(s)",
                        vars.len(),
                        items.len()
                    ),
                );
            }
            for (j, item) in items.iter().enumerate() {
                if item.as_str().is_none_or(|s| s.trim().is_empty()) {
                    errors.add(
                        index(&list_path, j),
                        "invalid_example",
                        format!(
                            "example values must be non-empty strings, got {}",
                            type_name(item)
                        ),
                    );
                }
            }
        }
    }
}

/// `example.*_named_params`: `[{"param_name", "example"}]`, one per variable, none unknown.
fn check_named_examples(
    ex: &Fields,
    ex_path: &str,
    vars: &[&Variable],
    keys: ExampleKeys,
    errors: &mut Errors,
) {
    let ExampleKeys {
        named: named_key,
        what,
        ..
    } = keys;
    let path = pointer(ex_path, named_key);
    let Some(values) = ex.obj.get(named_key).and_then(Value::as_array) else {
        errors.add(path, "missing_example", format!("{what} has named variables; give `example.{named_key}` as [{{\"param_name\": …, \"example\": …}}]"));
        return;
    };
    let mut named: Vec<&str> = Vec::new();
    for (j, item) in values.iter().enumerate() {
        let p = index(&path, j);
        let name = item.get("param_name").and_then(Value::as_str);
        let value = item.get("example").and_then(Value::as_str);
        match (name, value) {
            (Some(n), Some(v)) if !v.trim().is_empty() => {
                if named.contains(&n) {
                    errors.add(
                        p,
                        "duplicate_example",
                        format!("the example for {{{{{n}}}}} is given twice"),
                    );
                } else if !vars
                    .iter()
                    .any(|v| matches!(v, Variable::Named(x) if x == n))
                {
                    errors.add(
                        p,
                        "unknown_example",
                        format!("example for {{{{{n}}}}}, which {what} does not use"),
                    );
                }
                named.push(n);
            }
            _ => errors.add(
                p,
                "invalid_example",
                "each named example needs a `param_name` and a non-empty `example` string",
            ),
        }
    }
    for v in vars {
        if let Variable::Named(n) = v
            && !named.contains(&n.as_str())
        {
            errors.add(
                path.clone(),
                "missing_example",
                format!("{what} uses {{{{{n}}}}} but has no example for it"),
            );
        }
    }
}

fn check_header(c: &Fields, ctx: &Ctx, errors: &mut Errors) {
    let Some(format) = c.str("format", true, errors) else {
        return;
    };
    match format.to_ascii_uppercase().as_str() {
        "TEXT" => {
            let Some(text) = c.text("text", true, errors) else {
                return;
            };
            let path = c.path_of("text");
            errors.check_len(&path, "header text", text, limits::HEADER_TEXT);
            let scanned = scan_variables(text);
            let vars = check_variables(&scanned, ctx.format, &path, "header text", errors);
            if vars.len() > 1 {
                errors.add(
                    &path,
                    "too_many_variables",
                    format!(
                        "header text may have at most 1 variable, got {}",
                        vars.len()
                    ),
                );
            }
            check_examples(c, &vars, ctx.format, HEADER_EXAMPLES, errors);
        }
        f @ ("IMAGE" | "VIDEO" | "DOCUMENT" | "GIF") => {
            if f == "GIF" && ctx.category != Some(Category::Marketing) {
                errors.add(
                    c.path_of("format"),
                    "invalid_header_format",
                    "GIF headers are only for MARKETING templates",
                );
            }
            let handle = c.get("example").and_then(|e| e.get("header_handle"));
            let ok = handle.and_then(Value::as_array).is_some_and(|a| {
                a.first()
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            });
            if !ok {
                errors.add(c.path_of("example"), "missing_example", format!("a {f} header needs a sample in `example.header_handle` (a handle from the Resumable Upload API)"));
            }
            if c.get("text").is_some() {
                errors.add(
                    c.path_of("text"),
                    "not_allowed",
                    format!("a {f} header has no text"),
                );
            }
        }
        // Single-product templates show a catalog product (with an SPM button).
        "PRODUCT" => {
            if matches!(
                ctx.category,
                Some(Category::Authentication | Category::Utility)
            ) {
                errors.add(
                    c.path_of("format"),
                    "invalid_header_format",
                    "PRODUCT headers are only for MARKETING templates",
                );
            }
        }
        "LOCATION" => {
            if !matches!(
                ctx.category,
                Some(Category::Utility | Category::Marketing) | None
            ) {
                errors.add(
                    c.path_of("format"),
                    "invalid_header_format",
                    "LOCATION headers are only for UTILITY and MARKETING templates",
                );
            }
        }
        _ => errors.add(
            c.path_of("format"),
            "invalid_header_format",
            format!(
                "header format {} is not one of TEXT, IMAGE, VIDEO, DOCUMENT, GIF, LOCATION, PRODUCT",
                excerpt(format)
            ),
        ),
    }
}

fn check_body(c: &Fields, ctx: &Ctx, errors: &mut Errors) {
    let Some(text) = c.text("text", true, errors) else {
        return;
    };
    let path = c.path_of("text");
    errors.check_len(&path, "body text", text, limits::BODY_TEXT);
    let scanned = scan_variables(text);
    let trimmed = text.trim();
    if trimmed.starts_with("{{") {
        errors.add(
            &path,
            "dangling_variable",
            "body text must not start with a variable; put words before it",
        );
    }
    if trimmed.ends_with("}}") {
        errors.add(
            &path,
            "dangling_variable",
            "body text must not end with a variable; put words or punctuation after it",
        );
    }
    let vars = check_variables(&scanned, ctx.format, &path, "body text", errors);
    check_examples(c, &vars, ctx.format, BODY_EXAMPLES, errors);
}

fn check_footer(c: &Fields, errors: &mut Errors) {
    let Some(text) = c.text("text", true, errors) else {
        return;
    };
    let path = c.path_of("text");
    errors.check_len(&path, "footer text", text, limits::FOOTER_TEXT);
    if !scan_variables(text).variables.is_empty() || text.contains("{{") {
        errors.add(
            &path,
            "variables_not_allowed",
            "footer text cannot contain variables",
        );
    }
}

fn check_auth_body(c: &Fields, errors: &mut Errors) {
    if c.get("text").is_some() {
        errors.add(c.path_of("text"), "not_allowed_in_authentication", "authentication templates have a fixed body (\"<code> is your verification code.\"); leave out `text`");
    }
    c.bool("add_security_recommendation", errors);
}

fn check_auth_footer(c: &Fields, errors: &mut Errors) {
    if c.get("text").is_some() {
        errors.add(
            c.path_of("text"),
            "not_allowed_in_authentication",
            "authentication footers are fixed; set `code_expiration_minutes` instead of `text`",
        );
    }
    if let Some(v) = c.get("code_expiration_minutes") {
        let (lo, hi) = limits::CODE_EXPIRATION_MINUTES;
        match v.as_i64() {
            Some(n) if (lo..=hi).contains(&n) => {}
            Some(n) => errors.add(
                c.path_of("code_expiration_minutes"),
                "out_of_range",
                format!("`code_expiration_minutes` must be {lo}–{hi}, got {n}"),
            ),
            None => errors.add(
                c.path_of("code_expiration_minutes"),
                "expected_integer",
                format!(
                    "`code_expiration_minutes` must be an integer, got {}",
                    type_name(v)
                ),
            ),
        }
    }
}

fn has_emoji(s: &str) -> bool {
    s.chars()
        .any(|c| matches!(c as u32, 0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0xFE0F))
}

fn check_buttons(c: &Fields, ctx: &Ctx, errors: &mut Errors) {
    let Some(buttons) = c.array("buttons", true, errors) else {
        return;
    };
    let list_path = c.path_of("buttons");
    let auth = ctx.category == Some(Category::Authentication);
    if buttons.is_empty() {
        errors.add(&list_path, "empty", "`buttons` needs at least one button");
    }
    if buttons.len() > limits::BUTTONS {
        errors.add(
            &list_path,
            "too_many_buttons",
            format!(
                "a template has at most {} buttons, got {}",
                limits::BUTTONS,
                buttons.len()
            ),
        );
    }
    let kinds: Vec<String> = buttons
        .iter()
        .enumerate()
        .filter_map(|(i, b)| check_button(b, &index(&list_path, i), auth, errors))
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    for (k, max) in [
        ("QUICK_REPLY", limits::QUICK_REPLY_BUTTONS),
        ("URL", limits::URL_BUTTONS),
        ("PHONE_NUMBER", limits::PHONE_BUTTONS),
        ("COPY_CODE", limits::COPY_CODE_BUTTONS),
    ] {
        if count(k) > max {
            errors.add(
                &list_path,
                "too_many_buttons",
                format!(
                    "a template has at most {max} {k} button(s), got {}",
                    count(k)
                ),
            );
        }
    }
    if auth && count("OTP") != 1 {
        errors.add(
            &list_path,
            "missing_otp_button",
            format!(
                "an authentication template needs exactly one OTP button, got {}",
                count("OTP")
            ),
        );
    }
    // Quick replies must form one group: QR,QR,URL or URL,QR,QR, never QR,URL,QR.
    let qr_positions: Vec<usize> = kinds
        .iter()
        .enumerate()
        .filter(|(_, k)| *k == "QUICK_REPLY")
        .map(|(i, _)| i)
        .collect();
    if let (Some(first), Some(last)) = (qr_positions.first(), qr_positions.last())
        && last - first + 1 != qr_positions.len()
    {
        errors.add(&list_path, "quick_replies_not_grouped", format!("quick reply buttons must be grouped together (all before or all after the others), got {}", kinds.join(", ")));
    }
}

/// One button of a BUTTONS component; returns its upper-case type.
fn check_button(b: &Value, path: &str, auth: bool, errors: &mut Errors) -> Option<String> {
    let f = Fields::of(b, path, "a button", errors)?;
    let kind = f.str("type", true, errors)?;
    let kind = kind.to_ascii_uppercase();
    let label = f.str(
        "text",
        !matches!(
            kind.as_str(),
            "OTP" | "COPY_CODE" | "MPM" | "CATALOG" | "SPM"
        ),
        errors,
    );
    if let Some(label) = label {
        errors.check_len(
            &f.path_of("text"),
            "button label",
            label,
            limits::BUTTON_LABEL,
        );
        if auth && has_emoji(label) {
            errors.add(
                f.path_of("text"),
                "not_allowed_in_authentication",
                "authentication templates cannot contain emojis",
            );
        }
    }
    if auth && kind != "OTP" {
        errors.add(
            f.path_of("type"),
            "not_allowed_in_authentication",
            format!("authentication templates take OTP buttons only, got {kind}"),
        );
        return Some(kind);
    }
    match kind.as_str() {
        "QUICK_REPLY" => {}
        "URL" => check_url_button(&f, errors),
        "PHONE_NUMBER" => {
            if let Some(p) = f.text("phone_number", true, errors) {
                errors.check_len(&f.path_of("phone_number"), "phone_number", p, limits::BUTTON_PHONE);
            }
        }
        "COPY_CODE" => match f.get("example") {
            Some(Value::String(s)) if !s.is_empty() => {
                errors.check_len(&f.path_of("example"), "copy code example", s, limits::COPY_CODE_EXAMPLE);
            }
            _ => errors.add(f.path_of("example"), "missing_example", format!("a COPY_CODE button needs an `example` code of at most {} characters", limits::COPY_CODE_EXAMPLE)),
        },
        "OTP" => check_otp_button(&f, auth, errors),
        "FLOW" => {
            let ids = ["flow_id", "flow_name", "flow_json"].iter().filter(|k| f.get(k).is_some()).count();
            if ids != 1 {
                errors.add(path, "invalid_flow_button", format!("a FLOW button needs exactly one of flow_id, flow_name, flow_json, got {ids}"));
            }
            if let Some(a) = f.str("flow_action", false, errors)
                && !matches!(a.to_ascii_lowercase().as_str(), "navigate" | "data_exchange")
            {
                errors.add(f.path_of("flow_action"), "invalid_flow_action", format!("`flow_action` must be navigate or data_exchange, got {}", excerpt(a)));
            }
        }
        "MPM" | "CATALOG" | "SPM" | "VOICE_CALL" => {}
        other => errors.add(f.path_of("type"), "unknown_button_type", format!("button type {} is not one of QUICK_REPLY, URL, PHONE_NUMBER, COPY_CODE, OTP, FLOW, MPM, CATALOG, VOICE_CALL", excerpt(other))),
    }
    Some(kind)
}

fn check_url_button(f: &Fields, errors: &mut Errors) {
    let Some(url) = f.text("url", true, errors) else {
        return;
    };
    let path = f.path_of("url");
    errors.check_len(&path, "button URL", url, limits::BUTTON_URL);
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        errors.add(
            &path,
            "invalid_url",
            format!(
                "button URL must start with https:// or http://, got {}",
                excerpt(url)
            ),
        );
    }
    let scanned = scan_variables(url);
    let vars = check_variables(
        &scanned,
        ParameterFormat::Positional,
        &path,
        "button URL",
        errors,
    );
    if vars.len() > 1 {
        errors.add(
            &path,
            "too_many_variables",
            format!(
                "a URL button may have at most 1 variable, got {}",
                vars.len()
            ),
        );
    }
    if !vars.is_empty() {
        if !url.trim_end().ends_with("}}") {
            errors.add(
                &path,
                "variable_not_at_end",
                "the URL variable must be at the end of the URL",
            );
        }
        let ok = match f.get("example") {
            Some(Value::Array(a)) => a
                .first()
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()),
            Some(Value::String(s)) => !s.is_empty(),
            _ => false,
        };
        if !ok {
            errors.add(
                f.path_of("example"),
                "missing_example",
                "a URL with a variable needs an `example` (the full URL with a sample value)",
            );
        }
    }
}

fn check_otp_button(f: &Fields, auth: bool, errors: &mut Errors) {
    if !auth {
        errors.add(
            f.path_of("type"),
            "otp_outside_authentication",
            "OTP buttons are only for AUTHENTICATION templates",
        );
    }
    let Some(otp) = f.str("otp_type", true, errors) else {
        return;
    };
    match otp.to_ascii_uppercase().as_str() {
        "COPY_CODE" => {}
        t @ ("ONE_TAP" | "ZERO_TAP") => {
            let app_ok = |app: &Value| {
                ["package_name", "signature_hash"].iter().all(|k| {
                    app.get(k)
                        .and_then(Value::as_str)
                        .is_some_and(|s| !s.is_empty())
                })
            };
            match f.get("supported_apps") {
                Some(Value::Array(list)) if !list.is_empty() => {
                    for (i, app) in list.iter().enumerate() {
                        if !app_ok(app) {
                            errors.add(index(&f.path_of("supported_apps"), i), "invalid_supported_app", "each supported app needs `package_name` and `signature_hash`");
                        }
                    }
                }
                // Before v21.0 the one app was given on the button itself; Meta still accepts it.
                None if app_ok(&Value::Object(f.obj.clone())) => {}
                _ => errors.add(
                    f.path_of("supported_apps"),
                    "missing",
                    format!("{t} OTP buttons need `supported_apps` [{{package_name, signature_hash}}] (or, before v21.0, `package_name` and `signature_hash` on the button)"),
                ),
            }
        }
        _ => errors.add(
            f.path_of("otp_type"),
            "invalid_otp_type",
            format!(
                "`otp_type` must be COPY_CODE, ONE_TAP or ZERO_TAP, got {}",
                excerpt(otp)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes(doc: &Value) -> Vec<(String, String)> {
        match validate(doc) {
            Ok(()) => vec![],
            Err(errs) => errs.into_iter().map(|e| (e.path, e.code)).collect(),
        }
    }

    fn has(doc: &Value, path: &str, code: &str) -> bool {
        codes(doc).iter().any(|(p, c)| p == path && c == code)
    }

    #[test]
    fn meta_samples_validate() {
        for text in [
            include_str!("../tests/fixtures/template-create-authentication-copy-code.json"),
            include_str!(
                "../tests/fixtures/template-create-marketing-positional-seasonal-promotion.json"
            ),
            include_str!("../tests/fixtures/template-create-utility-location-header.json"),
            include_str!("../tests/fixtures/template-create-utility-named-params.json"),
            include_str!(
                "../tests/fixtures/template-create-utility-positional-document-header.json"
            ),
        ] {
            assert_eq!(validate_json(text), Ok(()), "{text}");
        }
    }

    fn body(text: &str, examples: Value) -> Value {
        json!({"name":"t","category":"UTILITY","language":"en_US","components":[{"type":"BODY","text":text,"example":{"body_text":[examples]}}]})
    }

    #[test]
    fn name_category_language() {
        let doc = json!({"name":"Bad Name","category":"promo","language":"en-US","components":[{"type":"BODY","text":"hi"}]});
        assert!(has(&doc, "/name", "invalid_name"));
        assert!(has(&doc, "/category", "invalid_category"));
        assert!(has(&doc, "/language", "unsupported_language"));
        let long = json!({"name":"a".repeat(513),"category":"utility","language":"en","components":[{"type":"BODY","text":"hi"}]});
        assert!(has(&long, "/name", "too_long"));
    }

    #[test]
    fn variables_must_be_sequential_and_well_formed() {
        assert!(has(
            &body("Hi {{1}}, {{3}} ok", json!(["a", "b"])),
            "/components/0/text",
            "variables_not_sequential"
        ));
        assert!(has(
            &body("Hi {{1}, ok", json!([])),
            "/components/0/text",
            "mismatched_braces"
        ));
        assert!(has(
            &body("Hi {{#}} ok", json!([])),
            "/components/0/text",
            "invalid_variable"
        ));
        assert!(has(
            &body("{{1}} ok", json!(["a"])),
            "/components/0/text",
            "dangling_variable"
        ));
        assert!(has(
            &body("Hi {{1}}", json!(["a"])),
            "/components/0/text",
            "dangling_variable"
        ));
        assert!(has(
            &body("Hi {{1}} {{2}} ok", json!(["a", "b"])),
            "/components/0/text",
            "adjacent_variables"
        ));
        assert!(has(
            &body("Hi {{1}} and {{2}} ok", json!(["a"])),
            "/components/0/example/body_text/0",
            "example_count_mismatch"
        ));
        assert!(has(
            &body("Hi {{name}} ok", json!(["a"])),
            "/components/0/text",
            "parameter_format_mismatch"
        ));
        assert_eq!(
            codes(&body("Hi {{1}} and {{2}} ok", json!(["a", "b"]))),
            vec![]
        );
    }

    #[test]
    fn reports_every_error_at_once() {
        let doc = json!({"name":"X","category":"x","language":"xx","components":[{"type":"FOOTER","text":"{{1}}"}]});
        assert!(codes(&doc).len() >= 5, "{:?}", codes(&doc));
    }
}

#[cfg(test)]
mod proptests;
