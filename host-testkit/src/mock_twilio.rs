//! Twilio's Programmable Messaging API as the mock serves it: `POST
//! /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP Basic over the account
//! SID and auth token; `201` with the message resource, errors `{code, message, more_info,
//! status}`; then the status callbacks Twilio posts to the message's `StatusCallback`,
//! form-encoded and signed in `X-Twilio-Signature` as Twilio signs (HMAC-SHA1 with the auth
//! token over the URL it calls and the parameters sorted by name).
//!
//! Scenario recipients ([`SMS_SCENARIOS`]) produce the common answers; any other valid number
//! is queued, sent and delivered.

use crate::mock::{FollowUp, Recorded, Reply, header, reply};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

/// The mock's Twilio account.
pub const DEMO_ACCOUNT_SID: &str = "AC0a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// Its auth token (the Basic password and the callbacks' signing key).
pub const DEMO_AUTH_TOKEN: &str = "mock-twilio-auth-token";
/// A second account, for a tenant that brings its own Twilio account.
pub const TENANT_ACCOUNT_SID: &str = "AC1b2c3d4e5f60718293a4b5c6d7e8f90a";
/// Its auth token.
pub const TENANT_AUTH_TOKEN: &str = "mock-twilio-tenant-auth-token";
/// Every account the mock serves: (SID, auth token).
const ACCOUNTS: [(&str, &str); 2] = [
    (DEMO_ACCOUNT_SID, DEMO_AUTH_TOKEN),
    (TENANT_ACCOUNT_SID, TENANT_AUTH_TOKEN),
];

/// The auth token of one of the mock's accounts.
pub fn auth_token_of(account_sid: &str) -> Option<&'static str> {
    ACCOUNTS
        .iter()
        .find(|(sid, _)| *sid == account_sid)
        .map(|(_, token)| *token)
}

/// The number the demo sends from (Twilio's magic test number that always sends).
pub const DEMO_FROM: &str = "+15005550006";

/// What the mock does for a recipient on SMS.
#[derive(Debug, Clone, Copy)]
pub enum SmsBehaviour {
    /// An error answer: HTTP status and Twilio code.
    Error(u16, u32, &'static str),
    /// 201, then these statuses by callback (`MessageStatus`, `ErrorCode`).
    AcceptThen(&'static [(&'static str, Option<u32>)]),
}

/// A recipient with a scripted SMS answer.
#[derive(Debug, Clone, Copy)]
pub struct SmsScenario {
    pub recipient: &'static str,
    pub description: &'static str,
    pub behaviour: SmsBehaviour,
}

/// What an accepted message to an unscripted number goes through.
pub const DEFAULT_SMS_STATUSES: &[(&str, Option<u32>)] =
    &[("queued", None), ("sent", None), ("delivered", None)];

/// The scripted SMS recipients.
pub const SMS_SCENARIOS: &[SmsScenario] = &[
    SmsScenario {
        recipient: "+15550600003",
        description: "SMS undelivered: unreachable handset (30003)",
        behaviour: SmsBehaviour::AcceptThen(&[
            ("queued", None),
            ("sent", None),
            ("undelivered", Some(30003)),
        ]),
    },
    SmsScenario {
        recipient: "+15550600010",
        description: "SMS refused: the recipient replied STOP (21610)",
        behaviour: SmsBehaviour::Error(400, 21610, "Attempt to send to unsubscribed recipient"),
    },
    SmsScenario {
        recipient: "+15550600014",
        description: "SMS refused: not a mobile number (21614)",
        behaviour: SmsBehaviour::Error(400, 21614, "'To' number is not a valid mobile number"),
    },
    SmsScenario {
        recipient: "+15550600005",
        description: "SMS undelivered: unknown destination handset (30005)",
        behaviour: SmsBehaviour::AcceptThen(&[("sent", None), ("undelivered", Some(30005))]),
    },
    SmsScenario {
        recipient: "+15550600036",
        description: "SMS dropped unsent: queued past its ValidityPeriod (30036)",
        behaviour: SmsBehaviour::AcceptThen(&[("queued", None), ("failed", Some(30036))]),
    },
    SmsScenario {
        recipient: "+15550600029",
        description: "SMS: too many requests (20429)",
        behaviour: SmsBehaviour::Error(429, 20429, "Too Many Requests"),
    },
];

/// Twilio's error answer.
fn error(status: u16, code: u32, message: &str) -> Reply {
    reply(
        status,
        json!({"code": code, "message": message,
               "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
               "status": status}),
    )
}

/// The account SID a Messages path names, if the path is Twilio's.
fn messages_path(path: &str) -> Option<&str> {
    path.strip_prefix("/2010-04-01/Accounts/")?
        .strip_suffix("/Messages.json")
        .filter(|sid| !sid.contains('/'))
}

/// The account whose SID and auth token `Authorization` carries as HTTP Basic.
fn authenticated(req: &Recorded) -> Option<&'static str> {
    let encoded = header(req, "authorization")?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    ACCOUNTS
        .iter()
        .find(|(sid, token)| decoded == format!("{sid}:{token}").as_bytes())
        .map(|(sid, _)| *sid)
}

/// The form parameters of a request body.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The answer to a Twilio request, or `None` when the path is not Twilio's.
pub(crate) fn answer(req: &Recorded, trace: u64) -> Option<Reply> {
    let path = req.path.split('?').next().unwrap_or("");
    let sid = messages_path(path)?;
    if req.method != "POST" {
        return Some(error(405, 20004, "Method not allowed"));
    }
    let Some(account) = authenticated(req) else {
        return Some(error(401, 20003, "Authenticate"));
    };
    if sid != account {
        return Some(error(404, 20404, "The requested resource was not found"));
    }
    let params = form(&req.body);
    let accepted = |statuses| accepted(account, &params, trace, statuses);
    Some(match checked(&params) {
        Err(refusal) => *refusal,
        Ok(to) => match SMS_SCENARIOS.iter().find(|s| s.recipient == to) {
            Some(SmsScenario {
                behaviour: SmsBehaviour::Error(status, code, message),
                ..
            }) => error(*status, *code, message),
            Some(SmsScenario {
                behaviour: SmsBehaviour::AcceptThen(statuses),
                ..
            }) => accepted(statuses),
            None => accepted(DEFAULT_SMS_STATUSES),
        },
    })
}

/// Twilio's checks of a message's parameters; the recipient when they pass.
fn checked(params: &[(String, String)]) -> Result<String, Box<Reply>> {
    let Some(to) = param(params, "To") else {
        return Err(Box::new(error(
            400,
            21604,
            "A 'To' phone number is required.",
        )));
    };
    let digits = to.strip_prefix('+').unwrap_or("");
    if !(8..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(Box::new(error(
            400,
            21211,
            &format!("Invalid 'To' Phone Number: {to}"),
        )));
    }
    if param(params, "From").is_none() && param(params, "MessagingServiceSid").is_none() {
        return Err(Box::new(error(
            400,
            21603,
            "A 'From' phone number is required.",
        )));
    }
    let body = param(params, "Body").unwrap_or("");
    if body.is_empty() {
        return Err(Box::new(error(400, 21602, "Message body is required.")));
    }
    if body.chars().count() > 1_600 {
        return Err(Box::new(error(
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        )));
    }
    if let Some(v) = param(params, "ValidityPeriod")
        && !v.parse::<u32>().is_ok_and(|s| (1..=36_000).contains(&s))
    {
        return Err(Box::new(error(
            400,
            90007,
            "Invalid validity period value: it must be between 1 and 36000 seconds",
        )));
    }
    Ok(to.to_string())
}

/// `201` with the message resource, and its callbacks to follow.
fn accepted(
    account: &'static str,
    params: &[(String, String)],
    trace: u64,
    statuses: &'static [(&'static str, Option<u32>)],
) -> Reply {
    let sid = format!("SM{trace:032x}");
    let to = param(params, "To").unwrap_or_default().to_string();
    let from = param(params, "From").unwrap_or(DEMO_FROM).to_string();
    let body = param(params, "Body").unwrap_or_default();
    let resource = json!({
        "account_sid": account,
        "api_version": "2010-04-01",
        "body": body,
        "direction": "outbound-api",
        "error_code": Value::Null,
        "error_message": Value::Null,
        "from": from,
        "messaging_service_sid": param(params, "MessagingServiceSid"),
        "num_media": "0",
        "num_segments": "1",
        "price": Value::Null,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "to": to,
        "uri": format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json"),
    });
    Reply {
        then: param(params, "StatusCallback").map(|callback| FollowUp::Twilio {
            account,
            sid: sid.clone(),
            to,
            from,
            callback: callback.to_string(),
            statuses,
        }),
        ..reply(201, resource)
    }
}

/// The parameters of one status callback, as Twilio posts them.
pub fn status_params(
    sid: &str,
    to: &str,
    from: &str,
    status: &str,
    error_code: Option<u32>,
) -> Vec<(String, String)> {
    account_status_params(DEMO_ACCOUNT_SID, sid, to, from, status, error_code)
}

/// [`status_params`] of a message `account` sent.
pub fn account_status_params(
    account: &str,
    sid: &str,
    to: &str,
    from: &str,
    status: &str,
    error_code: Option<u32>,
) -> Vec<(String, String)> {
    let mut params = vec![
        ("SmsSid", sid.to_string()),
        ("SmsStatus", status.to_string()),
        ("MessageStatus", status.to_string()),
        ("To", to.to_string()),
        ("MessageSid", sid.to_string()),
        ("AccountSid", account.to_string()),
        ("From", from.to_string()),
        ("ApiVersion", "2010-04-01".to_string()),
    ];
    if let Some(code) = error_code {
        params.push(("ErrorCode", code.to_string()));
    }
    params
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The parameters of an inbound message from `from` to the demo number.
pub fn inbound_params(sid: &str, from: &str, body: &str) -> Vec<(String, String)> {
    [
        ("ToCountry", "US"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", DEMO_FROM),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", DEMO_ACCOUNT_SID),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `X-Twilio-Signature` for a form post to `url`: base64 of HMAC-SHA1 with the auth token over
/// the URL, then each parameter's name and value, sorted by name.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut text = url.to_string();
    for (k, v) in sorted {
        text.push_str(k);
        text.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("any key");
    mac.update(text.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The form body of `params`.
pub fn form_body(params: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

/// Posts a form to `post_to` signed with `auth_token` over `signed_url` (the URL Twilio was
/// given: behind a load balancer it is not the node's own); the HTTP status, 0 for none.
pub async fn post_form(
    http: &reqwest::Client,
    post_to: &str,
    signed_url: &str,
    params: &[(String, String)],
    auth_token: &str,
) -> u16 {
    http.post(post_to)
        .header(
            "X-Twilio-Signature",
            signature(auth_token, signed_url, params),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(params))
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// The correlation id in a Messages request's `StatusCallback` query.
pub(crate) fn correlation_of(body: &[u8]) -> Option<String> {
    let params = form(body);
    let callback = param(&params, "StatusCallback")?;
    let url = url::Url::parse(callback).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "correlation_id")
        .map(|(_, v)| v.into_owned())
}
