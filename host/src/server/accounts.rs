//! The operator API's account operations (under `flow/admin-token`, beside `admin.rs`):
//! connect a tenant's account that was put with its token, onboard one through the
//! provider's signup, sync its templates on demand, and list them.
//!
//! | route | what |
//! |---|---|
//! | `POST /admin/tenants/{id}/channels/{channel}/connect` `{sender_ids}` | the provider checks the token against the account and each sender; the facts are kept; templates synced |
//! | `POST /admin/tenants/{id}/channels/{channel}/signup` `{code, account_id, sender_id}` | code exchanged, account stored, webhooks subscribed, sender registered, then as connect |
//! | `POST /admin/tenants/{id}/channels/{channel}/sync` | every page of the account's templates into the store |
//! | `GET /admin/tenants/{id}/channels/{channel}/templates` | the account's catalog as the store holds it |

use super::admin::{json_body, no_such_tenant};
use super::auth::operator;
use super::routes::{ApiError, App};
use crate::contract::types::Classification;
use crate::flow::accounts::{AccountError, Signup, SyncReport, facts_json};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

/// Senders named in one connect at most.
const MAX_SENDERS: usize = 100;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route(
            "/admin/tenants/{id}/channels/{channel}/connect",
            post(connect),
        )
        .route(
            "/admin/tenants/{id}/channels/{channel}/signup",
            post(sign_up),
        )
        .route("/admin/tenants/{id}/channels/{channel}/sync", post(sync))
        .route(
            "/admin/tenants/{id}/channels/{channel}/templates",
            get(templates),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Connect {
    /// The senders (phone number ids) to check and route by.
    sender_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    code: String,
    account_id: String,
    sender_id: String,
}

/// An id the provider gave (an account, a sender): 1 to 64 letters, digits, `-_.`.
fn check_id(path: &str, id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        return Ok(());
    }
    let mut e = ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_body",
        format!("an id is 1 to 64 letters, digits or '-_.'; got {id:?}"),
    );
    e.set("path", json!(path));
    Err(e)
}

fn classification_json(c: &Classification) -> Value {
    json!({
        "disposition": crate::contract::json::disposition_name(c.disposition),
        "reason": c.reason,
        "provider_code": c.provider_code,
        "provider_title": c.provider_title,
        "provider_details": c.provider_details,
        "provider_trace_id": c.provider_trace_id,
        "operator_action": c.operator_action,
    })
}

/// The answer for an operation that did not complete.
fn account_error(e: AccountError) -> ApiError {
    match e {
        AccountError::NoAccount(message) => {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_account", message)
        }
        AccountError::Unsupported => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "operation_unsupported",
            "this channel's plugin has no account operations (it implements a contract before 1.2.0, or the channel has no accounts)",
        ),
        AccountError::Invalid(errors) => {
            let mut e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                errors
                    .first()
                    .map(|f| f.message.clone())
                    .unwrap_or_else(|| "refused by the channel".into()),
            );
            e.set("path", json!(errors.first().map(|f| f.path.clone())));
            e.set(
                "errors",
                json!(
                    errors
                        .iter()
                        .map(|f| json!({"path": f.path, "code": f.code, "message": f.message}))
                        .collect::<Vec<_>>()
                ),
            );
            e
        }
        AccountError::Refused(c) => {
            let mut e = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "provider_refused",
                format!("the provider refused: {}", crate::flow::store::describe(&c)),
            );
            e.set("classification", classification_json(&c));
            e
        }
        AccountError::OwnedByAnother(_) => ApiError::new(
            StatusCode::CONFLICT,
            "account_taken",
            "that account or sender belongs to another tenant",
        ),
        AccountError::Host(e) => ApiError::internal("an account operation", format!("{e:#}")),
    }
}

fn sync_json(r: &SyncReport) -> Value {
    json!({"pages": r.pages, "templates": r.templates, "removed": r.removed})
}

/// 404 unless the tenant exists.
async fn existing_tenant(app: &App, id: &str) -> Result<(), ApiError> {
    let (store, tenant) = (app.runner.store().clone(), id.to_string());
    let found = tokio::task::spawn_blocking(move || store.tenant(&tenant))
        .await
        .map_err(|e| ApiError::internal("reading a tenant", e))?
        .map_err(|e| ApiError::internal("reading a tenant", e))?;
    found.map(|_| ()).ok_or_else(|| no_such_tenant(id))
}

async fn connect(
    State(app): State<App>,
    Path((id, channel)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    let body: Connect = json_body(&app, &headers, body).await?;
    if body.sender_ids.is_empty() || body.sender_ids.len() > MAX_SENDERS {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!(
                "name 1 to {MAX_SENDERS} senders to check, got {}",
                body.sender_ids.len()
            ),
        );
        e.set("path", json!("/sender_ids"));
        return Err(e);
    }
    for (i, s) in body.sender_ids.iter().enumerate() {
        check_id(&format!("/sender_ids/{i}"), s)?;
    }
    existing_tenant(&app, &id).await?;
    let facts = app
        .runner
        .check_account(&id, &channel, &body.sender_ids)
        .await
        .map_err(account_error)?;
    let synced = app
        .runner
        .sync_templates(&id, &channel)
        .await
        .map_err(account_error)?;
    Ok(axum::Json(json!({"tenant": id, "channel": channel,
        "facts": facts_json(&facts), "sync": sync_json(&synced)}))
    .into_response())
}

async fn sign_up(
    State(app): State<App>,
    Path((id, channel)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    let body: SignupBody = json_body(&app, &headers, body).await?;
    check_id("/account_id", &body.account_id)?;
    check_id("/sender_id", &body.sender_id)?;
    if body.code.is_empty() || body.code.len() > 4096 {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("a signup code is 1 to 4096 bytes, got {}", body.code.len()),
        );
        e.set("path", json!("/code"));
        return Err(e);
    }
    existing_tenant(&app, &id).await?;
    let signup = Signup {
        code: body.code,
        account_id: body.account_id,
        sender_id: body.sender_id,
    };
    let (facts, synced) = app
        .runner
        .sign_up(&id, &channel, &signup)
        .await
        .map_err(account_error)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"tenant": id, "channel": channel,
            "facts": facts_json(&facts), "sync": sync_json(&synced)})),
    )
        .into_response())
}

async fn sync(
    State(app): State<App>,
    Path((id, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    existing_tenant(&app, &id).await?;
    let synced = app
        .runner
        .sync_templates(&id, &channel)
        .await
        .map_err(account_error)?;
    Ok(axum::Json(sync_json(&synced)).into_response())
}

async fn templates(
    State(app): State<App>,
    Path((id, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    let (store, tenant, ch) = (app.runner.store().clone(), id.clone(), channel.clone());
    let found = tokio::task::spawn_blocking(move || {
        let Some(account) = store.channel_account(&tenant, &ch)? else {
            return anyhow::Ok(None);
        };
        Ok(Some(store.templates(&ch, &account.account_id)?))
    })
    .await
    .map_err(|e| ApiError::internal("reading templates", e))?
    .map_err(|e| ApiError::internal("reading templates", e))?;
    let Some(list) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_account",
            format!("tenant {id:?} has no account on {channel:?}"),
        ));
    };
    let items: Vec<Value> = list
        .iter()
        .map(|t| {
            json!({"name": t.name, "language": t.language, "status": t.status,
            "category": t.category, "template_id": t.template_id})
        })
        .collect();
    Ok(axum::Json(json!({"templates": items})).into_response())
}
