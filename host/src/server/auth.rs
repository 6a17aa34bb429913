//! Who a request is: the tenant a flow API token names, or the operator.
//!
//! A tenant's token is looked up by its SHA-256 in the store, and a token found is remembered
//! for [`TOKEN_CACHE_TTL`] so that a client polling its flows costs no store read per request.
//! A revocation through this node's operator API forgets the token at once; another node
//! stops honouring it within the TTL. The host secret `flow/api-token` is the default tenant's
//! (compared in constant time over its bytes).

use super::routes::ApiError;
use crate::flow::store::Store;
use crate::services::ttl::TtlCache;
use crate::tenants::{DEFAULT_TENANT, token_hash};
use axum::http::{HeaderMap, StatusCode, header};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How long a token found in the store is honoured without looking again.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
/// Tokens remembered at most (the cache starts over past it).
const TOKEN_CACHE_MAX: usize = 10_000;

/// Tokens found recently: hash → tenant.
pub(super) struct TokenCache(TtlCache<String, String>);

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache(TtlCache::new(TOKEN_CACHE_TTL, TOKEN_CACHE_MAX))
    }
}

impl TokenCache {
    /// Forgets every token of the tenant (one was revoked).
    pub(super) fn forget_tenant(&self, tenant: &str) {
        self.0.retain(|_, t| t != tenant);
    }
}

fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

fn unauthorized(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!("this API needs `Authorization: Bearer <token>` ({what})"),
    )
}

/// The tenant whose token the request carries.
pub(super) async fn tenant_of(
    headers: &HeaderMap,
    default_token: &str,
    cache: &TokenCache,
    store: &Arc<Store>,
) -> Result<String, ApiError> {
    let given = bearer(headers);
    let what = "a tenant's flow API token, or the host secret flow/api-token";
    if given.is_empty() {
        return Err(unauthorized(what));
    }
    if bool::from(given.as_bytes().ct_eq(default_token.as_bytes())) {
        return Ok(DEFAULT_TENANT.to_string());
    }
    let hash = token_hash(given);
    if let Some(tenant) = cache.0.get(&hash) {
        return Ok(tenant);
    }
    let store = store.clone();
    let lookup = hash.clone();
    let found = tokio::task::spawn_blocking(move || store.tenant_of_token_hash(&lookup))
        .await
        .map_err(|e| ApiError::internal("checking a token", e))?
        .map_err(|e| ApiError::internal("checking a token", e))?;
    match found {
        Some(tenant) => {
            cache.0.put(hash, tenant.clone());
            Ok(tenant)
        }
        None => Err(unauthorized(what)),
    }
}

/// The request carries the operator's token.
pub(super) fn operator(headers: &HeaderMap, admin_token: Option<&str>) -> Result<(), ApiError> {
    let given = bearer(headers);
    match admin_token {
        Some(expected)
            if !given.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes())) =>
        {
            Ok(())
        }
        Some(_) => Err(unauthorized("the host secret flow/admin-token")),
        None => Err(unauthorized(
            "the host secret flow/admin-token, which this server was started without",
        )),
    }
}
