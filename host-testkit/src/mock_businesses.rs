//! The mock as several businesses on one Meta app: each WhatsApp Business Account with its
//! own token, numbers, templates (served in pages), messaging limit tier and webhooks; the
//! app's Embedded Signup code exchange, webhook subscription and number registration; tokens
//! revocable and template statuses changeable at run time (by the test, through [`MockApi`]).
//!
//! | request | answer |
//! |---|---|
//! | `GET /{v}/oauth/access_token?client_id&client_secret&code` | `{access_token, token_type}` for a business's signup code and the app's id and secret, else Meta's OAuthException 100 |
//! | `GET /{v}/{waba-id}?fields=…` | `{id, name}` with that business's token |
//! | `GET /{v}/{phone-number-id}?fields=…` | the number's facts (display number, name, quality, status, throughput, messaging limit) |
//! | `GET /{v}/{waba-id}/message_templates?limit&after` | a page of templates with Meta's `paging` (`next` only while more follow) |
//! | `POST /{v}/{waba-id}/subscribed_apps` | `{success: true}` |
//! | `POST /{v}/{phone-number-id}/register` `{messaging_product, pin}` | `{success: true}` (a 6-digit PIN) |
//!
//! A revoked token is answered 190 (subcode 460, "The session has been invalidated") from
//! then on, on every endpoint, as Meta does.

use super::mock::{MockApi, Recorded, Reply, graph_error, header, reply, signature};
use serde_json::{Value, json};
use std::collections::HashMap;

/// One number of a mock business.
#[derive(Debug, Clone)]
pub struct MockNumber {
    pub id: String,
    /// As Meta shows it, e.g. `+1 555-010-0001`.
    pub display: String,
}

/// One business (WABA) on the mock's app.
#[derive(Debug, Clone)]
pub struct MockBusiness {
    pub waba_id: String,
    pub name: String,
    pub access_token: String,
    pub numbers: Vec<MockNumber>,
    /// `TIER_250`, `TIER_2K`, …, `TIER_UNLIMITED`.
    pub tier: String,
    /// Meta's template objects (`name`, `language`, `status`, `category`, `components`…).
    pub templates: Vec<Value>,
    /// The code its Embedded Signup returns (exchanged once for `access_token`).
    pub signup_code: Option<String>,
}

impl MockBusiness {
    /// A business with `numbers` numbers (ids `{waba}1`, `{waba}2`…), the token
    /// `token-{waba}`, `templates` APPROVED utility templates (`t1`… in `en_US`) and tier 250.
    pub fn new(waba_id: &str, numbers: usize, templates: usize) -> MockBusiness {
        MockBusiness {
            waba_id: waba_id.into(),
            name: format!("Business {waba_id}"),
            access_token: format!("token-{waba_id}"),
            numbers: (1..=numbers)
                .map(|i| MockNumber {
                    id: format!("{waba_id}{i}"),
                    display: format!("+1 555-01{:02}-{i:04}", waba_id.len() % 100),
                })
                .collect(),
            tier: "TIER_250".into(),
            templates: (1..=templates)
                .map(|i| {
                    template_json(
                        &format!("t{i}"),
                        "en_US",
                        "APPROVED",
                        &format!("{waba_id}{i:03}"),
                    )
                })
                .collect(),
            signup_code: None,
        }
    }
}

/// A template as `GET /{waba}/message_templates` lists it: a utility body with one variable.
pub fn template_json(name: &str, language: &str, status: &str, id: &str) -> Value {
    json!({"name": name, "language": language, "status": status, "category": "UTILITY",
        "id": id, "parameter_format": "POSITIONAL",
        "components": [{"type": "BODY", "text": "Your order {{1}} has shipped.",
            "example": {"body_text": [["A-1"]]}}]})
}

/// The app the businesses are on: its id and secret (the secret signs webhooks and is the
/// code exchange's `client_secret`).
#[derive(Debug, Clone)]
pub struct MockApp {
    pub app_id: String,
    pub app_secret: String,
}

impl Default for MockApp {
    fn default() -> Self {
        MockApp {
            app_id: "900000000000001".into(),
            app_secret: crate::stack::DEMO_APP_SECRET.into(),
        }
    }
}

/// What the mock keeps of each business while it runs.
#[derive(Debug, Clone)]
pub struct BusinessState {
    pub business: MockBusiness,
    pub revoked: bool,
    /// Whether the app subscribed to its webhooks.
    pub subscribed: bool,
    /// Registered numbers and their PINs.
    pub registered: HashMap<String, String>,
}

impl BusinessState {
    pub fn new(business: MockBusiness) -> BusinessState {
        BusinessState {
            business,
            revoked: false,
            subscribed: false,
            registered: HashMap::new(),
        }
    }
}

/// The business owning a WABA id or a number id.
fn owner_index(businesses: &[BusinessState], id: &str) -> Option<usize> {
    businesses
        .iter()
        .position(|b| b.business.waba_id == id || b.business.numbers.iter().any(|n| n.id == id))
}

/// The WABA a number belongs to, for the status webhooks of its messages.
pub(crate) fn waba_of_number(businesses: &[BusinessState], number_id: &str) -> Option<String> {
    businesses
        .iter()
        .find(|b| b.business.numbers.iter().any(|n| n.id == number_id))
        .map(|b| b.business.waba_id.clone())
}

/// Whether the request carries the token of business `i`, and it is live; Meta's 190 if not.
pub(crate) fn check_token(
    businesses: &[BusinessState],
    i: usize,
    req: &Recorded,
    trace: u64,
) -> Result<(), Box<Reply>> {
    let b = &businesses[i];
    let bearer = header(req, "authorization").and_then(|h| h.strip_prefix("Bearer "));
    if bearer != Some(b.business.access_token.as_str()) {
        return Err(Box::new(graph_error(
            401,
            190,
            "Invalid OAuth access token - Cannot parse access token",
            "the bearer token is missing or is not this business's",
            trace,
        )));
    }
    if b.revoked {
        let mut r = graph_error(
            401,
            190,
            "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
            "the token was revoked",
            trace,
        );
        if let super::mock::Answer::Json(v) = &mut r.answer {
            v["error"]["error_subcode"] = json!(460);
        }
        return Err(Box::new(r));
    }
    Ok(())
}

/// Answers the account endpoints; `None` for a request that is not one (a message send).
pub(crate) fn answer(
    businesses: &mut [BusinessState],
    app: &MockApp,
    page_size: usize,
    req: &Recorded,
    trace: u64,
) -> Option<Reply> {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let query: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", [_, "oauth", "access_token"]) => Some(exchange(businesses, app, &query, trace)),
        ("GET", [_, id]) => {
            let i = owner_index(businesses, id)?;
            Some(
                check_token(businesses, i, req, trace)
                    .map_or_else(|r| *r, |()| facts(&businesses[i], id)),
            )
        }
        ("GET", [_, waba, "message_templates"]) => {
            let i = owner_index(businesses, waba)?;
            if let Err(r) = check_token(businesses, i, req, trace) {
                return Some(*r);
            }
            Some(template_page(&businesses[i], req, &query, page_size))
        }
        ("POST", [_, waba, "subscribed_apps"]) => {
            let i = owner_index(businesses, waba)?;
            if let Err(r) = check_token(businesses, i, req, trace) {
                return Some(*r);
            }
            businesses[i].subscribed = true;
            Some(reply(200, json!({"success": true})))
        }
        ("POST", [_, number, "register"]) => {
            let i = owner_index(businesses, number)?;
            if let Err(r) = check_token(businesses, i, req, trace) {
                return Some(*r);
            }
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let pin = body["pin"].as_str().unwrap_or_default();
            if body["messaging_product"] != "whatsapp"
                || pin.len() != 6
                || !pin.chars().all(|c| c.is_ascii_digit())
            {
                return Some(graph_error(
                    400,
                    100,
                    "Invalid parameter",
                    "register takes messaging_product \"whatsapp\" and a 6-digit pin",
                    trace,
                ));
            }
            businesses[i]
                .registered
                .insert(number.to_string(), pin.to_string());
            Some(reply(200, json!({"success": true})))
        }
        _ => None,
    }
}

fn exchange(
    businesses: &[BusinessState],
    app: &MockApp,
    query: &HashMap<String, String>,
    trace: u64,
) -> Reply {
    let code = query.get("code").map(String::as_str).unwrap_or_default();
    let app_ok = query.get("client_id") == Some(&app.app_id)
        && query.get("client_secret") == Some(&app.app_secret);
    if !app_ok {
        return graph_error(
            400,
            101,
            "Error validating client secret.",
            "client_id or client_secret is wrong",
            trace,
        );
    }
    match businesses
        .iter()
        .find(|b| b.business.signup_code.as_deref() == Some(code) && !code.is_empty())
    {
        Some(b) => reply(
            200,
            json!({"access_token": b.business.access_token, "token_type": "bearer"}),
        ),
        None => graph_error(
            400,
            100,
            "Invalid verification code format.",
            "no such code",
            trace,
        ),
    }
}

fn facts(b: &BusinessState, id: &str) -> Reply {
    if id == b.business.waba_id {
        return reply(200, json!({"id": id, "name": b.business.name}));
    }
    let number = b.business.numbers.iter().find(|n| n.id == id);
    let display = number.map(|n| n.display.clone()).unwrap_or_default();
    reply(
        200,
        json!({"id": id, "display_phone_number": display, "verified_name": b.business.name,
            "quality_rating": "GREEN", "status": "CONNECTED",
            "throughput": {"level": "STANDARD"},
            "whatsapp_business_manager_messaging_limit": b.business.tier}),
    )
}

/// One page, Meta's way: `paging.cursors.{before,after}` always, `paging.next` only while
/// more follow. The cursor is opaque (the index, disguised).
fn template_page(
    b: &BusinessState,
    req: &Recorded,
    query: &HashMap<String, String>,
    page_size: usize,
) -> Reply {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, page_size.max(1));
    let start = query
        .get("after")
        .and_then(|c| c.strip_prefix("QVFIU"))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    let all = &b.business.templates;
    let end = (start + limit).min(all.len());
    let data: Vec<Value> = all.get(start..end).unwrap_or(&[]).to_vec();
    let mut paging =
        json!({"cursors": {"before": format!("QVFIU{start}"), "after": format!("QVFIU{end}")}});
    if end < all.len() {
        let (path, _) = req.path.split_once('?').unwrap_or((&req.path, ""));
        paging["next"] = json!(format!(
            "https://graph.facebook.com{path}?limit={limit}&after=QVFIU{end}"
        ));
    }
    reply(200, json!({"data": data, "paging": paging}))
}

/// A template status webhook as Meta posts it to the app's URL (`entry[].id` the WABA).
pub fn template_status_body(waba: &str, template: &Value, event: &str, reason: &str) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": waba, "time": 1_700_000_000,
        "changes": [{"field": "message_template_status_update", "value": {
            "event": event, "message_template_id": template["id"].as_str().map(|s| s.parse::<u64>().unwrap_or(0)),
            "message_template_name": template["name"], "message_template_language": template["language"],
            "reason": reason}}]}]})
    .to_string()
}

impl MockApi {
    /// Revokes the business's token: every request with it is answered 190 from now on.
    pub fn revoke_token(&self, waba: &str) {
        self.with_businesses(|bs| {
            if let Some(b) = bs.iter_mut().find(|b| b.business.waba_id == waba) {
                b.revoked = true;
            }
        });
    }

    /// What the mock holds of a business now.
    pub fn business(&self, waba: &str) -> Option<BusinessState> {
        self.with_businesses(|bs| bs.iter().find(|b| b.business.waba_id == waba).cloned())
    }

    /// Changes a template's status at Meta and posts the webhook Meta would, signed with the
    /// app secret, to `url`; the HTTP status it was answered (0: none).
    pub fn set_template_status(
        &self,
        waba: &str,
        name: &str,
        language: &str,
        status: &str,
        url: &str,
    ) -> u16 {
        let template = self.with_businesses(|bs| {
            let b = bs.iter_mut().find(|b| b.business.waba_id == waba)?;
            let t = b
                .business
                .templates
                .iter_mut()
                .find(|t| t["name"] == name && t["language"] == language)?;
            t["status"] = json!(status);
            Some(t.clone())
        });
        let Some(template) = template else {
            return 0;
        };
        let body = template_status_body(waba, &template, status, "NONE");
        let secret = self.app().app_secret;
        let client = reqwest::blocking::Client::new();
        client
            .post(url)
            .header("X-Hub-Signature-256", signature(&secret, body.as_bytes()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .map_or(0, |r| r.status().as_u16())
    }
}
