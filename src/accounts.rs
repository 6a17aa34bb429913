//! The account operations of contract 1.2.0 over Meta's Graph API: what a host serving many
//! businesses (a Tech Provider) needs to onboard a WhatsApp Business Account and keep its
//! catalog:
//!
//! | operation | Graph API |
//! |---|---|
//! | `exchange-code` | `GET /oauth/access_token?client_id&client_secret&code` (Embedded Signup) |
//! | `check-account` | `GET /{waba-id}?fields=id,name` and `GET /{phone-number-id}?fields=…` per number |
//! | `list-templates` | `GET /{waba-id}/message_templates?limit&after` (one page; `paging.next` says whether more follow) |
//! | `subscribe-webhooks` | `POST /{waba-id}/subscribed_apps` |
//! | `register-sender` | `POST /{phone-number-id}/register {messaging_product, pin}` |
//!
//! Every request carries the access token as a host secret reference (the code exchange the
//! app secret, as the query's `client_secret`); a refusal is classified as a send result is
//! (`190` → `failed`/`auth_error` with operator action, `4`/`80007` → `retry`…).

// The contract's `operation-error` carries a classification: as large as the contract makes it.
#![allow(clippy::result_large_err)]

use crate::config::Settings;
use crate::field_errors::{Errors, quoted};
use crate::host::Host;
use crate::{Header, HttpRequest, HttpResponse, SendOutcome};
use channel_sdk::{
    AccountFacts, ChannelConfig, GrantedCredential, OperationError, SenderFacts, TemplatePage,
    TemplateState,
};
use serde_json::{Value, json};

/// Templates asked for per page (Meta's default is 25; larger pages mean fewer calls against
/// the per-WABA rate limit of the management endpoints).
pub const TEMPLATES_PER_PAGE: u32 = 100;

/// The phone number fields `check-account` reads.
const SENDER_FIELDS: &str = "id,display_phone_number,verified_name,quality_rating,status,throughput,whatsapp_business_manager_messaging_limit";

/// `exchange-code`: an Embedded Signup code for the business's token.
pub fn exchange_code(
    code: &str,
    config: &ChannelConfig,
    now_ms: u64,
    host: &dyn Host,
) -> Result<GrantedCredential, OperationError> {
    let settings = Settings::parse(config).map_err(OperationError::Invalid)?;
    let mut errors = Errors::new();
    if code.is_empty() || code.len() > 4096 || !code.chars().all(|c| c.is_ascii_graphic()) {
        errors.add(
            "/code",
            "invalid_format",
            format!(
                "the signup code must be 1 to 4096 printable ASCII characters, got {} characters",
                code.chars().count()
            ),
        );
    }
    let Some(app_id) = settings.app_id.as_deref() else {
        errors.add(
            "/settings/app_id",
            "missing",
            "exchanging a signup code needs the Meta app's id in the settings (`app_id`)",
        );
        return Err(OperationError::Invalid(errors.into_vec()));
    };
    if !errors.is_empty() {
        return Err(OperationError::Invalid(errors.into_vec()));
    }
    let code: String = url_encode(code);
    let url = settings.graph_url(&format!(
        "oauth/access_token?client_id={app_id}&client_secret=${{secret:{}}}&code={code}",
        settings.oauth_client_secret
    ));
    let body = call(host, request("GET", url, &settings, None, false))?;
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unexpected("the code exchange answered without an access_token"))?;
    let expires_at_ms = body
        .get("expires_in")
        .and_then(Value::as_u64)
        .filter(|s| *s > 0)
        .map(|s| now_ms.saturating_add(s.saturating_mul(1000)));
    Ok(GrantedCredential {
        token: token.to_string(),
        expires_at_ms,
    })
}

/// `check-account`: the WABA and each number as Meta reports them with the configured token.
pub fn check_account(
    account_id: &str,
    sender_ids: &[String],
    config: &ChannelConfig,
    host: &dyn Host,
) -> Result<AccountFacts, OperationError> {
    let settings = Settings::parse(config).map_err(OperationError::Invalid)?;
    let mut errors = Errors::new();
    check_id(
        account_id,
        "/account_id",
        "WhatsApp Business Account",
        &mut errors,
    );
    for (i, id) in sender_ids.iter().enumerate() {
        check_id(id, &format!("/sender_ids/{i}"), "phone number", &mut errors);
    }
    if !errors.is_empty() {
        return Err(OperationError::Invalid(errors.into_vec()));
    }
    let account = call(
        host,
        request(
            "GET",
            settings.graph_url(&format!("{account_id}?fields=id,name")),
            &settings,
            None,
            true,
        ),
    )?;
    let mut senders = Vec::new();
    let mut limits = Vec::new();
    for id in sender_ids {
        let number = call(
            host,
            request(
                "GET",
                settings.graph_url(&format!("{id}?fields={SENDER_FIELDS}")),
                &settings,
                None,
                true,
            ),
        )?;
        limits.push(
            number
                .get("whatsapp_business_manager_messaging_limit")
                .cloned(),
        );
        senders.push(sender_facts(id, &number));
    }
    // The limit is the portfolio's, so every number reports the same one; the smallest wins
    // if they ever disagree (a number not yet updated).
    let recipient_limit = limits
        .iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(tier_limit)
        .min_by_key(|limit| limit.unwrap_or(u64::MAX))
        .flatten();
    Ok(AccountFacts {
        account_id: account_id.to_string(),
        name: account
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string),
        senders,
        recipient_limit,
        details: json!({"account": account, "messaging_limits": limits}).to_string(),
    })
}

/// Unique customers per rolling 24 h for one of Meta's tiers; `Some(None)` for unlimited,
/// `None` for a value this channel does not know (it then sets no limit of its own).
pub fn tier_limit(tier: &str) -> Option<Option<u64>> {
    Some(match tier {
        "TIER_50" => Some(50),
        "TIER_250" => Some(250),
        "TIER_1K" => Some(1_000),
        "TIER_2K" => Some(2_000),
        "TIER_10K" => Some(10_000),
        "TIER_100K" => Some(100_000),
        "TIER_UNLIMITED" | "UNLIMITED" => None,
        _ => return None,
    })
}

fn sender_facts(id: &str, number: &Value) -> SenderFacts {
    let text = |key: &str| number.get(key).and_then(Value::as_str).map(str::to_string);
    // Meta reports a level, not a number: STANDARD is 80 mps, HIGH 1,000 (the automatic
    // upgrade), and coexistence numbers 20.
    let messages_per_second = number
        .pointer("/throughput/level")
        .and_then(Value::as_str)
        .and_then(|level| match level {
            "STANDARD" => Some(80),
            "HIGH" => Some(1_000),
            "COEXISTENCE" => Some(20),
            _ => None,
        });
    SenderFacts {
        sender_id: id.to_string(),
        display_address: text("display_phone_number"),
        verified_name: text("verified_name"),
        quality: text("quality_rating"),
        status: text("status"),
        messages_per_second,
        details: number.to_string(),
    }
}

/// `list-templates`: one page of the WABA's templates, each as a catalog definition.
pub fn list_templates(
    account_id: &str,
    cursor: Option<&str>,
    config: &ChannelConfig,
    host: &dyn Host,
) -> Result<TemplatePage, OperationError> {
    let settings = Settings::parse(config).map_err(OperationError::Invalid)?;
    let mut errors = Errors::new();
    check_id(
        account_id,
        "/account_id",
        "WhatsApp Business Account",
        &mut errors,
    );
    if let Some(c) = cursor
        && (c.is_empty() || c.len() > 2048 || !c.chars().all(|c| c.is_ascii_graphic()))
    {
        errors.add(
            "/cursor",
            "invalid_format",
            "a page cursor is 1 to 2048 printable ASCII characters (a `next` of the previous page)",
        );
    }
    if !errors.is_empty() {
        return Err(OperationError::Invalid(errors.into_vec()));
    }
    let after = cursor
        .map(|c| format!("&after={}", url_encode(c)))
        .unwrap_or_default();
    let url = settings.graph_url(&format!(
        "{account_id}/message_templates?fields=id,name,language,status,category,components,parameter_format&limit={TEMPLATES_PER_PAGE}{after}"
    ));
    let page = call(host, request("GET", url, &settings, None, true))?;
    let Some(data) = page.get("data").and_then(Value::as_array) else {
        return Err(unexpected(
            "the template list answered without a `data` array",
        ));
    };
    let templates = data.iter().filter_map(template_state).collect();
    // Meta's last page has no `next` (its `cursors.after` may still be set): only `next`
    // says more follow.
    let next = page
        .pointer("/paging/next")
        .and_then(Value::as_str)
        .and_then(|_| page.pointer("/paging/cursors/after"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(TemplatePage { templates, next })
}

fn template_state(t: &Value) -> Option<TemplateState> {
    let text = |key: &str| t.get(key).and_then(Value::as_str).map(str::to_string);
    Some(TemplateState {
        name: text("name")?,
        language: crate::catalog::normalize_language(&text("language")?),
        status: text("status")?.to_ascii_uppercase(),
        category: text("category").map(|c| c.to_ascii_uppercase()),
        template_id: text("id"),
        definition: t.to_string(),
    })
}

/// `subscribe-webhooks`: the app subscribed to the WABA's webhooks.
pub fn subscribe_webhooks(
    account_id: &str,
    config: &ChannelConfig,
    host: &dyn Host,
) -> Result<(), OperationError> {
    let settings = Settings::parse(config).map_err(OperationError::Invalid)?;
    let mut errors = Errors::new();
    check_id(
        account_id,
        "/account_id",
        "WhatsApp Business Account",
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(OperationError::Invalid(errors.into_vec()));
    }
    let url = settings.graph_url(&format!("{account_id}/subscribed_apps"));
    let answer = call(host, request("POST", url, &settings, Some(json!({})), true))?;
    success_or_unexpected(&answer, "subscribing the app")
}

/// `register-sender`: the number registered for the Cloud API with its two-step PIN.
pub fn register_sender(
    sender_id: &str,
    pin: &str,
    config: &ChannelConfig,
    host: &dyn Host,
) -> Result<(), OperationError> {
    let settings = Settings::parse(config).map_err(OperationError::Invalid)?;
    let mut errors = Errors::new();
    check_id(sender_id, "/sender_id", "phone number", &mut errors);
    if pin.len() != 6 || !pin.chars().all(|c| c.is_ascii_digit()) {
        errors.add(
            "/pin",
            "invalid_format",
            format!(
                "the two-step verification PIN is 6 digits, got {} characters",
                pin.chars().count()
            ),
        );
    }
    if !errors.is_empty() {
        return Err(OperationError::Invalid(errors.into_vec()));
    }
    let url = settings.graph_url(&format!("{sender_id}/register"));
    let body = json!({"messaging_product": "whatsapp", "pin": pin});
    let answer = call(host, request("POST", url, &settings, Some(body), true))?;
    success_or_unexpected(&answer, "registering the number")
}

fn check_id(id: &str, path: &str, what: &str, errors: &mut Errors) {
    if id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_digit()) {
        errors.add(
            path,
            "invalid_format",
            format!("a {what} id is up to 32 digits, got {}", quoted(id)),
        );
    }
}

fn request(
    method: &str,
    url: String,
    settings: &Settings,
    body: Option<Value>,
    with_token: bool,
) -> HttpRequest {
    let mut headers = Vec::new();
    if with_token {
        headers.push(Header {
            name: "authorization".into(),
            value: format!("Bearer ${{secret:{}}}", settings.access_token_secret),
        });
    }
    if body.is_some() {
        headers.push(Header {
            name: "content-type".into(),
            value: "application/json".into(),
        });
    }
    HttpRequest {
        method: method.into(),
        url,
        headers,
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    }
}

/// Sends a request; a 2xx JSON object is the answer, anything else is classified as Meta's
/// answers to a send are.
fn call(host: &dyn Host, request: HttpRequest) -> Result<Value, OperationError> {
    let refused = |outcome: SendOutcome| {
        OperationError::Refused(crate::classify::classify_outcome(&outcome, 1))
    };
    let response: HttpResponse = match host.http_send(&request) {
        Ok(r) => r,
        Err(e) => return Err(refused(SendOutcome::TransportError(e))),
    };
    if !(200..300).contains(&response.status) {
        return Err(refused(SendOutcome::Response(response)));
    }
    match serde_json::from_slice::<Value>(&response.body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(unexpected(&format!(
            "Meta answered {} with a body that is not a JSON object",
            response.status
        ))),
    }
}

fn success_or_unexpected(answer: &Value, what: &str) -> Result<(), OperationError> {
    match answer.get("success") {
        Some(Value::Bool(true)) => Ok(()),
        _ => Err(unexpected(&format!(
            "{what}: Meta answered without `success: true`"
        ))),
    }
}

/// A 2xx answer this channel cannot read: an operator must look (the API may have changed).
fn unexpected(message: &str) -> OperationError {
    OperationError::Refused(
        channel_sdk::Classification::needs_operator(
            crate::Disposition::Failed,
            "unexpected_response",
        )
        .with_details(message),
    )
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
