//! Tenants: the businesses one runtime serves. A tenant has an id, flow API tokens (random,
//! shown once, stored as their SHA-256; several live at once for rotation; revocable) and, in
//! time, its channel accounts. Everything a tenant owns in the flow store is keyed under it:
//! [`scoped`] prefixes a key with `{tenant}/` — flow ids, customer keys — except for the
//! [`DEFAULT_TENANT`], whose keys stay bare, so a database from before tenants is the default
//! tenant's as it stands (no row rewritten) and two tenants' keys can never meet (`/` is in
//! no flow id, no tenant id, no customer key of the default tenant). See
//! `docs/decisions/0007-tenant-scoped-keys.md`.

use sha2::{Digest, Sha256};

/// The tenant of every flow from before tenants, and of requests made with the host secret
/// `flow/api-token`.
pub const DEFAULT_TENANT: &str = "default";

/// The longest tenant id.
pub const MAX_TENANT_ID_LEN: usize = 63;

/// Lower-case letters, digits, `-` and `_`, starting with a letter or a digit, ≤ 63 characters.
pub fn valid_tenant_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TENANT_ID_LEN
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'))
}

/// Why a tenant id is refused, with the rule and the value.
pub fn tenant_id_error(id: &str) -> Option<String> {
    (!valid_tenant_id(id)).then(|| {
        format!(
            "a tenant id is 1 to {MAX_TENANT_ID_LEN} lower-case letters, digits, '-' or '_', starting with a letter or digit; got {id:?}"
        )
    })
}

/// `key` as the store keeps it for `tenant`.
pub fn scoped(tenant: &str, key: &str) -> String {
    if tenant == DEFAULT_TENANT {
        key.to_string()
    } else {
        format!("{tenant}/{key}")
    }
}

/// The tenant and the tenant's own key of a stored key (the inverse of [`scoped`]).
pub fn unscoped(stored: &str) -> (&str, &str) {
    match stored.split_once('/') {
        Some((tenant, key)) if valid_tenant_id(tenant) => (tenant, key),
        _ => (DEFAULT_TENANT, stored),
    }
}

/// The prefix of every flow API token: it says what the string is wherever it leaks to
/// (secret scanners match on it).
pub const TOKEN_PREFIX: &str = "flw_";

/// A new flow API token: the prefix and 256 random bits from the OS's generator (hex), and
/// the id it is listed and revoked by.
pub fn new_token() -> IssuedToken {
    let random = crate::services::vault::random_secret();
    IssuedToken {
        id: format!("tok_{}", uuid::Uuid::now_v7().simple()),
        token: format!("{TOKEN_PREFIX}{random}"),
    }
}

/// A token as issued: `token` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: String,
    pub token: String,
}

/// What the store keeps of a token: its SHA-256, hex. (A fast hash is right here: the token
/// has 256 random bits, so there is nothing to guess; lookups by hash leak nothing of it.)
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_default_tenants_keys_stay_as_they_were() {
        assert_eq!(scoped(DEFAULT_TENANT, "order-1"), "order-1");
        assert_eq!(unscoped("order-1"), (DEFAULT_TENANT, "order-1"));
        assert_eq!(unscoped("+16505551234"), (DEFAULT_TENANT, "+16505551234"));
    }

    #[test]
    fn tenant_ids_refuse_what_could_break_a_key() {
        let (too_long, longest) = ("a".repeat(64), "a".repeat(63));
        for bad in ["", "Acme", "a/b", "-a", "a b", &too_long] {
            assert!(!valid_tenant_id(bad), "{bad:?}");
            assert!(tenant_id_error(bad).unwrap().contains(&format!("{bad:?}")));
        }
        for good in ["acme", "acme-eu_2", "7eleven", &longest] {
            assert!(valid_tenant_id(good), "{good:?}");
        }
    }

    #[test]
    fn tokens_are_random_prefixed_and_stored_only_as_hashes() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a.token, b.token);
        assert!(a.token.starts_with(TOKEN_PREFIX) && a.token.len() == 4 + 64);
        assert_eq!(token_hash(&a.token).len(), 64);
        assert_ne!(token_hash(&a.token), token_hash(&b.token));
        assert!(!token_hash(&a.token).contains(&a.token[4..]));
    }

    proptest! {
        /// Two tenants' keys never meet, and every key comes back to its tenant and key.
        #[test]
        fn scoped_keys_round_trip_and_never_collide(
            t1 in "[a-z0-9][a-z0-9_-]{0,10}",
            t2 in "[a-z0-9][a-z0-9_-]{0,10}",
            k1 in "[A-Za-z0-9._:+-]{1,20}",
            k2 in "[A-Za-z0-9._:+-]{1,20}",
        ) {
            let stored = scoped(&t1, &k1);
            prop_assert_eq!(unscoped(&stored), (t1.as_str(), k1.as_str()));
            if (t1.as_str(), k1.as_str()) != (t2.as_str(), k2.as_str()) {
                prop_assert_ne!(scoped(&t1, &k1), scoped(&t2, &k2));
            }
        }
    }
}
