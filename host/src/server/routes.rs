//! One small handler per route; every error goes through [`ApiError`].

use super::ServerOptions;
use super::auth::{TokenCache, tenant_of};
use crate::contract::WebhookErrorAnswer;
use crate::contract::types::{Header, WebhookOutcome, WebhookRequest};
use crate::flow::spec::{FlowSpec, SpecError, errors_json, valid_id};
use crate::flow::{Runner, SubmitError};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Clone)]
pub(super) struct App {
    pub(super) runner: Arc<Runner>,
    pub(super) options: Arc<ServerOptions>,
    /// Tenants' tokens found recently.
    pub(super) tokens: Arc<TokenCache>,
    /// Webhook requests in flight.
    webhook_slots: Arc<Semaphore>,
    /// Bytes of webhook bodies in flight.
    webhook_bytes: Arc<Semaphore>,
}

pub(super) fn router(runner: Arc<Runner>, options: ServerOptions) -> Router {
    let app = App {
        runner,
        tokens: Arc::new(TokenCache::default()),
        webhook_slots: Arc::new(Semaphore::new(options.max_webhooks_in_flight.max(1))),
        webhook_bytes: Arc::new(Semaphore::new(
            options
                .webhook_body_budget_bytes
                .max(options.max_webhook_body_bytes),
        )),
        options: Arc::new(options),
    };
    Router::new()
        .route("/flows", post(start_flows))
        .route("/flows/{id}", get(flow_status))
        .route("/webhooks/{channel}", get(webhook).post(webhook))
        .route(
            "/webhooks/{channel}/{tenant}",
            get(tenant_webhook).post(tenant_webhook),
        )
        .route("/health", get(health))
        .merge(super::admin::routes())
        .merge(super::accounts::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

/// An error answer: a status, a stable code, a message and optional details.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    body: Value,
    retry_after_s: Option<u64>,
    /// Close the connection after this answer.
    close: bool,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({"error": code, "message": message.into()}),
            retry_after_s: None,
            close: false,
        }
    }

    /// Adds a field to the answer's body (a JSON Pointer `path`, say).
    pub(super) fn set(&mut self, key: &str, value: Value) {
        self.body[key] = value;
    }

    /// A failure of ours: logged in full under an id, answered without internals.
    pub(super) fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        let id = uuid::Uuid::now_v7();
        tracing::error!(error_id = %id, error = %e, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            format!("the server failed to handle this request (error id {id})"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        if let Some(s) = self.retry_after_s {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.close {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// The tenant whose token the request carries.
async fn tenant(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    tenant_of(
        headers,
        &app.options.api_token,
        &app.tokens,
        app.runner.store(),
    )
    .await
}

/// The body length a request declares, if it does.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Reads a body within the size and time limits: 413 past the size, 408 past the time.
pub(super) async fn read_body(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, ApiError> {
    read_body_within(app, headers, body, app.options.max_body_bytes).await
}

async fn read_body_within(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = declared_length(headers);
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        // Refused before reading a byte of it.
        return Err(too_large(limit, Some(n)));
    }
    let read = axum::body::to_bytes(body, limit);
    match tokio::time::timeout(app.options.body_read_timeout, read).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive within {} s",
                app.options.body_read_timeout.as_secs()
            ),
        )),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_large(limit, None)),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            format!("the body could not be read: {e}"),
        )),
    }
}

fn too_large(limit: usize, declared: Option<u64>) -> ApiError {
    let actual = declared.map_or_else(String::new, |n| format!(" ({n} bytes)"));
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the body{actual} is larger than the limit of {limit} bytes"),
    )
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A flow document: one object, a JSON array, or NDJSON (one object per line).
fn parse_flows(body: &[u8], max: usize) -> Result<(Vec<FlowSpec>, bool), ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not UTF-8",
        )
    })?;
    let trimmed = text.trim_start();
    let (docs, batch): (Vec<Value>, bool) = if trimmed.starts_with('[') {
        let docs = serde_json::from_str(text).map_err(|e| invalid_json(text, None, &e))?;
        (docs, true)
    } else {
        // A stream of JSON values: NDJSON (one per line), and as well one object spread over
        // many lines (`curl -d @flow.json` of a pretty-printed file) or several in a row.
        // serde_json's errors give the line and column within the whole body.
        let mut docs = Vec::new();
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        loop {
            let start = stream.byte_offset();
            match stream.next() {
                None => break,
                Some(Ok(doc)) => docs.push(doc),
                Some(Err(e)) => return Err(invalid_json(&text[start..], Some(docs.len()), &e)),
            }
        }
        let batch = docs.len() != 1;
        (docs, batch)
    };
    if docs.is_empty() || docs.len() > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_batch",
            format!("a request carries 1 to {max} flows, got {}", docs.len()),
        ));
    }
    let mut specs = Vec::with_capacity(docs.len());
    let mut invalid = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        match FlowSpec::from_value(doc) {
            Ok(s) => specs.push(s),
            Err(e) => invalid.push((i, e)),
        }
    }
    if !invalid.is_empty() {
        return Err(invalid_flows(invalid, batch));
    }
    Ok((specs, batch))
}

/// A body that is not JSON: serde_json's message (line and column of the whole body) and,
/// where the parse stopped inside a document, its JSON Pointer (for an array body, from the
/// array; in a stream, within the document at `index`).
fn invalid_json(doc: &str, index: Option<usize>, e: &serde_json::Error) -> ApiError {
    let mut error = ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string());
    if let Some((path, _)) = crate::flow::spec::locate_json_error(doc)
        && !path.is_empty()
    {
        error.body["path"] = json!(path);
        if let Some(i) = index {
            error.body["index"] = json!(i);
        }
    }
    error
}

fn invalid_flows(invalid: Vec<(usize, Vec<SpecError>)>, batch: bool) -> ApiError {
    let body = if batch {
        let errors: Vec<Value> = invalid
            .iter()
            .flat_map(|(i, errs)| {
                errs.iter().map(move |e| {
                    json!({"index": i, "path": format!("/{i}{}", e.path), "code": e.code, "message": e.message})
                })
            })
            .collect();
        json!({"error": "invalid_flows", "message": format!("{} flow(s) in the batch are invalid; none was started", invalid.len()), "errors": errors})
    } else {
        let mut v = errors_json(&invalid[0].1);
        v["message"] = v["error"].clone();
        v["error"] = json!("invalid_flow");
        v
    };
    ApiError {
        status: StatusCode::BAD_REQUEST,
        body,
        retry_after_s: None,
        close: false,
    }
}

async fn start_flows(State(app): State<App>, request: Request) -> Result<Response, ApiError> {
    let tenant = tenant(&app, request.headers()).await?;
    let (parts, body) = request.into_parts();
    let body = read_body(&app, &parts.headers, body).await?;
    let (specs, batch) = parse_flows(&body, app.options.max_batch)?;
    let invalid = app.runner.check_contents(&specs).await;
    if !invalid.is_empty() {
        return Err(invalid_flows(invalid, batch));
    }
    let runner = app.runner.clone();
    let now = crate::services::now_ms();
    let accepted =
        match tokio::task::spawn_blocking(move || runner.submit(&tenant, specs, now)).await {
            Err(e) => return Err(ApiError::internal("submitting flows", e)),
            Ok(Err(SubmitError::Invalid(invalid))) => return Err(invalid_flows(invalid, batch)),
            Ok(Err(SubmitError::Busy {
                retry_after_s,
                open,
            })) => {
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "queue_full",
                    format!("{open} flows are still open; try again later"),
                );
                e.retry_after_s = Some(retry_after_s);
                return Err(e);
            }
            Ok(Err(SubmitError::Store(e))) => return Err(ApiError::internal("storing flows", e)),
            Ok(Ok(a)) => a,
        };
    let created = accepted.iter().filter(|a| a.created).count();
    let status = if created == 0 {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = if batch {
        json!({"ids": accepted.iter().map(|a| &a.id).collect::<Vec<_>>(), "created": created})
    } else {
        json!({"id": accepted[0].id, "created": accepted[0].created})
    };
    Ok((status, axum::Json(body)).into_response())
}

async fn flow_status(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = tenant(&app, &headers).await?;
    if !valid_id(&id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_flow",
            "no such flow",
        ));
    }
    let runner = app.runner.clone();
    match tokio::task::spawn_blocking(move || runner.flow_view(&tenant, &id)).await {
        Ok(Ok(Some(view))) => match super::flow_json(&view) {
            Ok(body) => Ok(axum::Json(body).into_response()),
            Err(e) => Err(ApiError::internal("reading a flow", e)),
        },
        Ok(Ok(None)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_flow",
            "no such flow",
        )),
        Ok(Err(e)) => Err(ApiError::internal("reading a flow", e)),
        Err(e) => Err(ApiError::internal("reading a flow", e)),
    }
}

fn webhook_request(
    parts: &axum::http::request::Parts,
    public_url: Option<&str>,
    query: Option<String>,
    body: Bytes,
) -> WebhookRequest {
    let (method, headers) = (&parts.method, &parts.headers);
    // The path and query exactly as the provider sent them (a signature over the URL is over
    // its raw form), after the configured base.
    let url = public_url.map(|base| {
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |pq| pq.as_str());
        format!("{}{path_and_query}", base.trim_end_matches('/'))
    });
    let headers = headers
        .iter()
        .map(|(n, v)| Header {
            name: n.as_str().to_string(),
            value: String::from_utf8_lossy(v.as_bytes()).into_owned(),
        })
        .collect();
    let query = query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    WebhookRequest {
        method: method.as_str().to_string(),
        url,
        headers,
        query,
        // The signature covers these exact bytes: they are passed on untouched.
        body: body.to_vec(),
    }
}

async fn webhook(
    State(app): State<App>,
    Path(channel): Path<String>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let Some(ch) = app.runner.channel(&channel) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_channel",
            format!("no channel {channel:?}"),
        ));
    };
    receive_webhook(&app, &channel, ch, None, query, request).await
}

/// A tenant's own account's webhook (`/webhooks/{channel}/{tenant}`): checked with that
/// tenant's secrets (a tenant with its own Twilio or SendGrid account points it here), its
/// events applied to that tenant's flows and customers only. A tenant without an account on
/// the channel, or no such tenant, is one and the same 404.
async fn tenant_webhook(
    State(app): State<App>,
    Path((channel, tenant)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let found = if crate::tenants::valid_tenant_id(&tenant) {
        app.runner
            .tenant_webhook_channel(&tenant, &channel)
            .await
            .map_err(|e| ApiError::internal("reading a tenant's channel account", e))?
    } else {
        None
    };
    let Some(ch) = found else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_webhook",
            "no account receives webhooks here".to_string(),
        ));
    };
    receive_webhook(&app, &channel, &ch, Some(&tenant), query, request).await
}

/// Reads a webhook within the limits, has the channel check and parse it, and applies its
/// events (for `tenant` when it came in on that tenant's own route).
async fn receive_webhook(
    app: &App,
    channel: &str,
    ch: &crate::flow::Channel,
    tenant: Option<&str>,
    query: Option<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let limit = app.options.max_webhook_body_bytes;
    let _admitted = admit_webhook(app, &parts.headers)?;
    let body = read_body_within(app, &parts.headers, body, limit).await?;
    let hook = webhook_request(&parts, app.options.public_url.as_deref(), query, body);
    let outcome = ch
        .plugin
        .parse_webhook(&hook, &ch.config())
        .await
        .map_err(|e| ApiError::internal("parsing a webhook", e))?;
    match outcome {
        Ok(WebhookOutcome::Verification(challenge)) => {
            Ok(([(header::CONTENT_TYPE, "text/plain")], challenge).into_response())
        }
        Ok(WebhookOutcome::Events(events)) => {
            // A 500 makes the provider redeliver later; dedupe keys make that safe.
            app.runner
                .on_events_of(channel, tenant, events)
                .await
                .map_err(|e| ApiError::internal("applying webhook events", e))?;
            Ok(([(header::CONTENT_TYPE, "text/plain")], "ok").into_response())
        }
        Err(e) => {
            let answer = WebhookErrorAnswer::of(&e);
            let status = StatusCode::from_u16(answer.http_status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Ok((status, axum::Json(answer.body)).into_response())
        }
    }
}

/// A webhook's admission: a slot among the webhooks in flight and its body's bytes in the
/// budget (its declared length, else the largest allowed), both taken at once or not at all.
/// A body declared larger than allowed is 413 before anything is read.
fn admit_webhook(
    app: &App,
    headers: &HeaderMap,
) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), ApiError> {
    let limit = app.options.max_webhook_body_bytes;
    let declared = declared_length(headers);
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        return Err(too_large(limit, Some(n)));
    }
    let bytes = declared.map_or(limit, |n| n as usize).max(1);
    let slot = app.webhook_slots.clone().try_acquire_owned();
    let budget = u32::try_from(bytes)
        .ok()
        .and_then(|n| app.webhook_bytes.clone().try_acquire_many_owned(n).ok());
    match (slot, budget) {
        (Ok(slot), Some(budget)) => Ok((slot, budget)),
        _ => Err(webhooks_busy()),
    }
}

/// 503, try again in a second, and the connection closed (a provider retries; a flood costs
/// us no connection).
fn webhooks_busy() -> ApiError {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "webhooks_busy",
        "too many webhook requests are being read; try again shortly",
    );
    e.retry_after_s = Some(1);
    e.close = true;
    e
}

async fn health() -> Response {
    use crate::flow::store::{STATEMENTS, TRANSACTIONS};
    use std::sync::atomic::Ordering::Relaxed;
    axum::Json(json!({"ok": true, "store": {
        "transactions": TRANSACTIONS.load(Relaxed), "statements": STATEMENTS.load(Relaxed)}}))
    .into_response()
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route does not take {method}"),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
