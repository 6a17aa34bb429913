//! The operator API: tenants and their flow API tokens, under the host secret
//! `flow/admin-token`. Every answer is JSON; a token's secret half is in the answer that
//! issues it and nowhere else, ever.

use super::auth::operator;
use super::routes::{ApiError, App, read_body};
use crate::flow::store::driver::{TenantRecord, TokenRecord};
use crate::flow::store::{AccountPut, NewAccount, Store};
use crate::tenants::tenant_id_error;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The longest tenant name and token label.
const MAX_NAME_LEN: usize = 200;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/admin/tenants", post(create_tenant).get(list_tenants))
        .route("/admin/tenants/{id}", get(show_tenant).patch(rename_tenant))
        .route("/admin/tenants/{id}/tokens", post(issue_token))
        .route(
            "/admin/tenants/{id}/callback-secret",
            post(rotate_callback_key),
        )
        .route("/admin/tenants/{id}/tokens/{token}", delete(revoke_token))
        .route(
            "/admin/tenants/{id}/channels/{channel}",
            axum::routing::put(put_account).get(show_account),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    id: String,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantChange {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NewToken {
    #[serde(default)]
    label: String,
}

fn tenant_json(t: &TenantRecord) -> Value {
    json!({"id": t.id, "name": t.name, "created_ms": t.created_ms})
}

fn token_json(t: &TokenRecord) -> Value {
    json!({"id": t.id, "label": t.label, "created_ms": t.created_ms, "revoked_ms": t.revoked_ms})
}

pub(super) fn no_such_tenant(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_tenant",
        format!("no tenant {id:?}"),
    )
}

/// A JSON body of type `T`, or 400 naming the JSON Pointer of what is wrong. An empty body
/// is `{}`.
pub(super) async fn json_body<T: serde::de::DeserializeOwned>(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(app, headers, body).await?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = crate::flow::spec::pointer(e.path());
        let mut error = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            e.into_inner().to_string(),
        );
        error.set("path", json!(path));
        error
    })
}

fn check_name(path: &str, name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    if chars > MAX_NAME_LEN {
        return Err(field_error(
            path,
            format!("at most {MAX_NAME_LEN} characters, got {chars}"),
        ));
    }
    Ok(())
}

/// Runs a store call off the async workers.
async fn blocking<R: Send + 'static>(
    app: &App,
    what: &'static str,
    f: impl FnOnce(&Store) -> anyhow::Result<R> + Send + 'static,
) -> Result<R, ApiError> {
    let store: Arc<Store> = app.runner.store().clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::internal(what, e))?
        .map_err(|e| ApiError::internal(what, e))
}

async fn create_tenant(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    let new: NewTenant = json_body(&app, &headers, body).await?;
    if let Some(message) = tenant_id_error(&new.id) {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid_tenant_id", message);
        e.set("path", json!("/id"));
        return Err(e);
    }
    let name = new.name.unwrap_or_else(|| new.id.clone());
    check_name("/name", &name)?;
    let now = crate::services::now_ms();
    let id = new.id.clone();
    let created = blocking(&app, "creating a tenant", move |s| {
        if !s.create_tenant(&id, &name, now)? {
            return Ok(None);
        }
        s.tenant(&id)
    })
    .await?;
    match created {
        Some(t) => {
            let mut body = tenant_json(&t);
            // With a master key, the tenant gets its callback key at once (shown this once).
            if app.runner.vault().is_some() {
                let key = new_callback_key(&app, &t.id).await?;
                body["callback_secret"] = json!(key.as_str());
            }
            Ok((StatusCode::CREATED, axum::Json(body)).into_response())
        }
        None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "tenant_exists",
            format!("a tenant {:?} exists already", new.id),
        )),
    }
}

async fn list_tenants(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    let tenants = blocking(&app, "listing tenants", |s| s.tenants()).await?;
    let list: Vec<Value> = tenants.iter().map(tenant_json).collect();
    Ok(axum::Json(json!({"tenants": list})).into_response())
}

async fn show_tenant(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    let key = id.clone();
    let found = blocking(&app, "reading a tenant", move |s| {
        let Some(t) = s.tenant(&key)? else {
            return Ok(None);
        };
        Ok(Some((t, s.tokens(&key)?)))
    })
    .await?;
    let (tenant, tokens) = found.ok_or_else(|| no_such_tenant(&id))?;
    let mut body = tenant_json(&tenant);
    body["tokens"] = tokens.iter().map(token_json).collect();
    Ok(axum::Json(body).into_response())
}

async fn rename_tenant(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    let change: TenantChange = json_body(&app, &headers, body).await?;
    check_name("/name", &change.name)?;
    let now = crate::services::now_ms();
    let key = id.clone();
    let renamed = blocking(&app, "renaming a tenant", move |s| {
        if !s.rename_tenant(&key, &change.name, now)? {
            return Ok(None);
        }
        s.tenant(&key)
    })
    .await?;
    let tenant = renamed.ok_or_else(|| no_such_tenant(&id))?;
    Ok(axum::Json(tenant_json(&tenant)).into_response())
}

async fn issue_token(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    let new: NewToken = json_body(&app, &headers, body).await?;
    check_name("/label", &new.label)?;
    let now = crate::services::now_ms();
    let key = id.clone();
    let issued = blocking(&app, "issuing a token", move |s| {
        s.issue_token(&key, &new.label, now)
    })
    .await?;
    let (issued, record) = issued.ok_or_else(|| no_such_tenant(&id))?;
    let mut body = token_json(&record);
    body["tenant"] = json!(record.tenant_id);
    // Shown this once: the store keeps only its hash.
    body["token"] = json!(issued.token);
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

async fn revoke_token(
    State(app): State<App>,
    Path((id, token)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    let now = crate::services::now_ms();
    let (tenant, token_id) = (id.clone(), token.clone());
    let revoked = blocking(&app, "revoking a token", move |s| {
        s.revoke_token(&tenant, &token_id, now)
    })
    .await?;
    // This node forgets the tenant's tokens at once; the others within the cache's TTL.
    app.tokens.forget_tenant(&id);
    if revoked {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_token",
            format!("tenant {id:?} has no live token {token:?}"),
        ))
    }
}

/// Seals a new callback key for the tenant, off the async workers; the key, to show once.
async fn new_callback_key(app: &App, tenant: &str) -> Result<Zeroizing<String>, ApiError> {
    let (runner, tenant) = (app.runner.clone(), tenant.to_string());
    tokio::task::spawn_blocking(move || runner.rotate_callback_key(&tenant))
        .await
        .map_err(|e| ApiError::internal("sealing a callback key", e))?
        .map_err(|e| ApiError::internal("sealing a callback key", e))
}

/// A new callback key for the tenant (its callbacks are signed with it from now on), shown
/// this once; 409 when `serve` has no master key to seal it with.
async fn rotate_callback_key(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    if app.runner.vault().is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_master_key",
            "serve was started without a master key (FLOW_MASTER_KEY or --master-key-file): a tenant's callback key cannot be sealed",
        ));
    }
    if id == crate::tenants::DEFAULT_TENANT {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "host_secret",
            "the default tenant signs with the host secret flow/callback-secret",
        ));
    }
    let key = id.clone();
    let exists = blocking(&app, "reading a tenant", move |s| s.tenant(&key)).await?;
    if exists.is_none() {
        return Err(no_such_tenant(&id));
    }
    let key = new_callback_key(&app, &id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"tenant": id, "callback_secret": key.as_str()})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    /// The provider's id of the account (a WABA id).
    account_id: String,
    /// Laid over serve's settings for the channel (`phone_number_id`, say).
    #[serde(default)]
    settings: serde_json::Map<String, Value>,
    /// Secret names under the channel (`access-token`) → values; sealed, never shown again.
    #[serde(default)]
    secrets: std::collections::BTreeMap<String, String>,
}

/// The longest account id, secret name and secret value.
const MAX_ACCOUNT_ID_LEN: usize = 128;
const MAX_SECRET_NAME_LEN: usize = 64;
const MAX_SECRET_LEN: usize = 8 << 10;

fn field_error(path: &str, message: String) -> ApiError {
    let mut e = ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message);
    e.set("path", json!(path));
    e
}

fn check_account(body: &AccountBody) -> Result<(), ApiError> {
    let id = &body.account_id;
    let id_ok = !id.is_empty()
        && id.len() <= MAX_ACCOUNT_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if !id_ok {
        return Err(field_error(
            "/account_id",
            format!(
                "an account id is 1 to {MAX_ACCOUNT_ID_LEN} letters, digits or '-_.:'; got {id:?}"
            ),
        ));
    }
    for (name, value) in &body.secrets {
        let path = format!("/secrets/{}", name.replace('~', "~0").replace('/', "~1"));
        let name_ok = !name.is_empty()
            && name.len() <= MAX_SECRET_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !name_ok {
            return Err(field_error(
                &path,
                format!(
                    "a secret name is 1 to {MAX_SECRET_NAME_LEN} letters, digits, '-' or '_' (the channel's own prefix is added); got {name:?}"
                ),
            ));
        }
        if value.is_empty() || value.len() > MAX_SECRET_LEN {
            return Err(field_error(
                &path,
                format!(
                    "a secret is 1 to {MAX_SECRET_LEN} bytes, got {}",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Puts the tenant's account on a channel: its settings, its secrets (sealed), `active`.
async fn put_account(
    State(app): State<App>,
    Path((id, channel)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    if app.runner.channel(&channel).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_channel",
            format!("serve runs no channel {channel:?}"),
        ));
    }
    let account: AccountBody = json_body(&app, &headers, body).await?;
    check_account(&account)?;
    if !account.secrets.is_empty() && app.runner.vault().is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_master_key",
            "serve was started without a master key (FLOW_MASTER_KEY or --master-key-file): an account's secrets cannot be sealed",
        ));
    }
    let runner = app.runner.clone();
    let (tenant, ch) = (id.clone(), channel.clone());
    let put = tokio::task::spawn_blocking(move || {
        if runner.store().tenant(&tenant)?.is_none() {
            return Ok(None);
        }
        let secrets: Vec<(String, String)> = account.secrets.into_iter().collect();
        let settings = Value::Object(account.settings).to_string();
        let put = runner.store().put_channel_account(
            runner.vault(),
            &NewAccount {
                tenant: &tenant,
                channel: &ch,
                account_id: &account.account_id,
                settings: &settings,
                secrets: &secrets,
            },
            crate::services::now_ms(),
        )?;
        runner.forget_tenant_channels(&tenant);
        anyhow::Ok(Some(put))
    })
    .await
    .map_err(|e| ApiError::internal("putting an account", e))?
    .map_err(|e| ApiError::internal("putting an account", e))?;
    match put {
        None => Err(no_such_tenant(&id)),
        Some(AccountPut::OwnedByAnother(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "account_taken",
            "that account belongs to another tenant",
        )),
        Some(AccountPut::Stored) => account_answer(&app, &id, &channel).await,
    }
}

async fn show_account(
    State(app): State<App>,
    Path((id, channel)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    operator(&headers, app.options.admin_token.as_deref())?;
    account_answer(&app, &id, &channel).await
}

/// The account as the operator sees it: its settings, state and the names of its secrets.
async fn account_answer(app: &App, id: &str, channel: &str) -> Result<Response, ApiError> {
    let (tenant, ch) = (id.to_string(), channel.to_string());
    let found = blocking(app, "reading an account", move |s| {
        let Some(a) = s.channel_account(&tenant, &ch)? else {
            return Ok(None);
        };
        let names = s.channel_secret_names(&tenant, &ch)?;
        let senders = s.senders(&tenant, &ch)?;
        let templates = s.templates(&ch, &a.account_id)?.len();
        Ok(Some((a, names, senders, templates)))
    })
    .await?;
    let Some((a, names, senders, templates)) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_account",
            format!("tenant {id:?} has no account on {channel:?}"),
        ));
    };
    let settings: Value = serde_json::from_str(&a.settings).unwrap_or(Value::Null);
    let facts: Value = a
        .facts
        .as_deref()
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or(Value::Null);
    let senders: Vec<Value> = senders
        .iter()
        .map(|s| {
            json!({"sender_id": s.sender_id, "display_address": s.display_address,
            "messages_per_second": s.messages_per_second})
        })
        .collect();
    // A secret's name says what it is; a name that is a sender's registration PIN is shown
    // like any other name (the PIN itself, like every value, never).
    let body = json!({"tenant": a.tenant_id, "channel": a.channel, "account_id": a.account_id,
        "settings": settings, "state": a.state, "updated_ms": a.updated_ms, "secrets": names,
        "checked_ms": a.checked_ms, "recipient_limit": a.recipient_limit, "facts": facts,
        "senders": senders, "templates": templates});
    Ok(axum::Json(body).into_response())
}
