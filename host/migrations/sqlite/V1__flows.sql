-- The flow store (schema 3 of the hand-rolled versions before refinery; IF NOT EXISTS lets a
-- file written by those versions adopt this history).
CREATE TABLE IF NOT EXISTS flows (
  id TEXT PRIMARY KEY, spec TEXT NOT NULL, recipient TEXT NOT NULL, state TEXT NOT NULL,
  step INTEGER NOT NULL, attempt INTEGER NOT NULL, wake_at INTEGER, created_ms INTEGER NOT NULL,
  expires_ms INTEGER, current_attempt INTEGER, callback_url TEXT, lane TEXT);
CREATE INDEX IF NOT EXISTS flows_due ON flows(lane, wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS flows_by_recipient ON flows(recipient);
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, flow_id TEXT NOT NULL, step INTEGER NOT NULL,
  channel TEXT NOT NULL, attempt INTEGER NOT NULL, correlation_id TEXT NOT NULL UNIQUE,
  phase TEXT NOT NULL, slot_ms INTEGER NOT NULL, provider_message_id TEXT, sent_ms INTEGER NOT NULL,
  recorded_ms INTEGER,
  disposition TEXT, reason TEXT, provider_code TEXT, precedence INTEGER NOT NULL DEFAULT 0,
  status TEXT, status_disposition TEXT, closed INTEGER NOT NULL DEFAULT 0,
  possible_duplicate INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS attempts_by_message ON attempts(channel, provider_message_id);
CREATE INDEX IF NOT EXISTS attempts_by_flow ON attempts(flow_id);
CREATE INDEX IF NOT EXISTS attempts_open ON attempts(phase) WHERE phase <> 'recorded';
CREATE TABLE IF NOT EXISTS timeline (
  id INTEGER PRIMARY KEY AUTOINCREMENT, flow_id TEXT NOT NULL, at_ms INTEGER NOT NULL,
  attempt_id INTEGER, entry TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS timeline_by_flow ON timeline(flow_id);
CREATE TABLE IF NOT EXISTS seen_events (dedupe_key TEXT PRIMARY KEY, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS inbound (
  channel TEXT NOT NULL, customer TEXT NOT NULL, last_ms INTEGER NOT NULL,
  PRIMARY KEY (channel, customer));
CREATE TABLE IF NOT EXISTS opt_outs (
  channel TEXT NOT NULL, customer TEXT NOT NULL, category TEXT NOT NULL, since_ms INTEGER NOT NULL,
  PRIMARY KEY (channel, customer, category));
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, flow_id TEXT NOT NULL,
  url TEXT NOT NULL, body TEXT NOT NULL, tries INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER, delivered_ms INTEGER, last_error TEXT);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_at) WHERE next_at IS NOT NULL;
