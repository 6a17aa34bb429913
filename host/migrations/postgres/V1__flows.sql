-- The flow store. Every integer is BIGINT (milliseconds, ids, counters), so one code path
-- binds i64 for SQLite and PostgreSQL alike.
CREATE TABLE flows (
  id TEXT PRIMARY KEY, spec TEXT NOT NULL, recipient TEXT NOT NULL, state TEXT NOT NULL,
  step BIGINT NOT NULL, attempt BIGINT NOT NULL, wake_at BIGINT, created_ms BIGINT NOT NULL,
  expires_ms BIGINT, current_attempt BIGINT, callback_url TEXT, lane TEXT);
CREATE INDEX flows_due ON flows(lane, wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX flows_by_recipient ON flows(recipient);
CREATE TABLE attempts (
  id BIGSERIAL PRIMARY KEY, flow_id TEXT NOT NULL, step BIGINT NOT NULL,
  channel TEXT NOT NULL, attempt BIGINT NOT NULL, correlation_id TEXT NOT NULL UNIQUE,
  phase TEXT NOT NULL, slot_ms BIGINT NOT NULL, provider_message_id TEXT, sent_ms BIGINT NOT NULL,
  recorded_ms BIGINT,
  disposition TEXT, reason TEXT, provider_code TEXT, precedence BIGINT NOT NULL DEFAULT 0,
  status TEXT, status_disposition TEXT, closed BIGINT NOT NULL DEFAULT 0,
  possible_duplicate BIGINT NOT NULL DEFAULT 0);
CREATE INDEX attempts_by_message ON attempts(channel, provider_message_id);
CREATE INDEX attempts_by_flow ON attempts(flow_id);
CREATE INDEX attempts_open ON attempts(phase) WHERE phase <> 'recorded';
CREATE TABLE timeline (
  id BIGSERIAL PRIMARY KEY, flow_id TEXT NOT NULL, at_ms BIGINT NOT NULL,
  attempt_id BIGINT, entry TEXT NOT NULL);
CREATE INDEX timeline_by_flow ON timeline(flow_id);
CREATE TABLE seen_events (dedupe_key TEXT PRIMARY KEY, at_ms BIGINT NOT NULL);
CREATE TABLE inbound (
  channel TEXT NOT NULL, customer TEXT NOT NULL, last_ms BIGINT NOT NULL,
  PRIMARY KEY (channel, customer));
CREATE TABLE opt_outs (
  channel TEXT NOT NULL, customer TEXT NOT NULL, category TEXT NOT NULL, since_ms BIGINT NOT NULL,
  PRIMARY KEY (channel, customer, category));
CREATE TABLE outbox (
  id BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, flow_id TEXT NOT NULL,
  url TEXT NOT NULL, body TEXT NOT NULL, tries BIGINT NOT NULL DEFAULT 0,
  next_at BIGINT, delivered_ms BIGINT, last_error TEXT);
CREATE INDEX outbox_due ON outbox(next_at) WHERE next_at IS NOT NULL;
