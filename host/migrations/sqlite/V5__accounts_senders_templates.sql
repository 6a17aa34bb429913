-- What the provider reported of a tenant's account (checked at connect and every sync): its
-- facts as JSON, and the messaging limit its portfolio shares (unique customers per rolling
-- 24 h; NULL with checked_ms set: no limit; checked_ms NULL: never checked, none enforced).
ALTER TABLE channel_accounts ADD COLUMN facts TEXT;
ALTER TABLE channel_accounts ADD COLUMN recipient_limit BIGINT;
ALTER TABLE channel_accounts ADD COLUMN checked_ms BIGINT;
-- The senders of an account (WhatsApp phone numbers): webhooks are routed to their tenant by
-- them, flows name them in `from`, and each is paced at the rate the provider reports.
CREATE TABLE IF NOT EXISTS channel_senders (
  channel TEXT NOT NULL, sender_id TEXT NOT NULL,
  tenant_id TEXT NOT NULL REFERENCES tenants(id), account_id TEXT NOT NULL,
  display_address TEXT, messages_per_second BIGINT, facts TEXT NOT NULL,
  updated_ms BIGINT NOT NULL, PRIMARY KEY (channel, sender_id));
CREATE INDEX IF NOT EXISTS channel_senders_by_tenant ON channel_senders(tenant_id, channel);
-- An account's templates as the provider holds them (synced from its API, and their status
-- and category changed by its webhooks), keyed (account, name, language) as the provider
-- keys them: every node and every restart sends against the same catalog.
CREATE TABLE IF NOT EXISTS channel_templates (
  channel TEXT NOT NULL, account_id TEXT NOT NULL, name TEXT NOT NULL, language TEXT NOT NULL,
  tenant_id TEXT NOT NULL REFERENCES tenants(id), status TEXT NOT NULL, category TEXT,
  template_id TEXT, definition TEXT NOT NULL, synced_ms BIGINT NOT NULL,
  PRIMARY KEY (channel, account_id, name, language));
-- Webhook events dropped because no tenant owns the account they name, per channel and
-- account: counted, never applied elsewhere.
CREATE TABLE IF NOT EXISTS unrouted_events (
  channel TEXT NOT NULL, account_id TEXT NOT NULL, events BIGINT NOT NULL,
  last_ms BIGINT NOT NULL, PRIMARY KEY (channel, account_id));
-- The customers each tenant's account started a conversation with (a business-initiated
-- send), with the last time: the portfolio's messaging limit counts those within 24 h.
CREATE TABLE IF NOT EXISTS initiated_customers (
  tenant_id TEXT NOT NULL, channel TEXT NOT NULL, customer TEXT NOT NULL,
  last_ms BIGINT NOT NULL, PRIMARY KEY (tenant_id, channel, customer));
CREATE INDEX IF NOT EXISTS initiated_customers_by_time ON initiated_customers(tenant_id, channel, last_ms);
