-- Tenants and their flow API tokens (host/src/tenants.rs). Flows and customers stay keyed as
-- before: a tenant's keys are `{tenant}/{key}`, the default tenant's bare, so every row from
-- before tenants is the default tenant's as it stands.
CREATE TABLE IF NOT EXISTS tenants (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, created_ms BIGINT NOT NULL);
INSERT OR IGNORE INTO tenants (id, name, created_ms) VALUES ('default', 'default', 0);
CREATE TABLE IF NOT EXISTS api_tokens (
  id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
  hash TEXT NOT NULL UNIQUE, label TEXT NOT NULL, created_ms BIGINT NOT NULL,
  revoked_ms BIGINT);
CREATE INDEX IF NOT EXISTS api_tokens_by_tenant ON api_tokens(tenant_id);
-- Secrets that arrive at run time, sealed under the operator's master key (ChaCha20-Poly1305,
-- host/src/services/vault.rs), and one sealed check value that tells a wrong key at start-up.
CREATE TABLE IF NOT EXISTS vault_check (
  id BIGINT PRIMARY KEY CHECK (id = 1), check_value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenant_secrets (
  tenant_id TEXT NOT NULL REFERENCES tenants(id), name TEXT NOT NULL, sealed TEXT NOT NULL,
  updated_ms BIGINT NOT NULL, PRIMARY KEY (tenant_id, name));
-- A tenant's account on a channel (its WABA on WhatsApp): the settings laid over serve's for
-- that channel, its state (a revoked token or a ban stops its sends at once). An account
-- belongs to one tenant. Its secrets are tenant_secrets named `{channel}/{name}`.
CREATE TABLE IF NOT EXISTS channel_accounts (
  tenant_id TEXT NOT NULL REFERENCES tenants(id), channel TEXT NOT NULL,
  account_id TEXT NOT NULL, settings TEXT NOT NULL, state TEXT NOT NULL
    CHECK (state IN ('active', 'needs_reauth', 'disabled')),
  updated_ms BIGINT NOT NULL, PRIMARY KEY (tenant_id, channel), UNIQUE (channel, account_id));
-- Template catalog documents from the channel's webhooks (status and category changes), in
-- the order they arrived, per tenant and channel: a restart, and every node, sees them.
CREATE TABLE IF NOT EXISTS catalog_documents (
  id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT NOT NULL, channel TEXT NOT NULL,
  document TEXT NOT NULL, at_ms BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS catalog_documents_by_channel ON catalog_documents(tenant_id, channel, id);
