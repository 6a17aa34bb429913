-- State columns hold only the values the host knows (host/src/flow/store/driver.rs reads them
-- and refuses anything else; a test holds these lists to the Rust enums). SQLite adds a CHECK
-- only by rebuilding the table: same columns, same order, same indexes, rows copied.
CREATE TABLE flows_checked (
  id TEXT PRIMARY KEY, spec TEXT NOT NULL, recipient TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('ready', 'sending', 'waiting_status', 'waiting_retry',
    'waiting_unknown', 'done', 'exhausted', 'expired', 'handed_over')),
  step INTEGER NOT NULL, attempt INTEGER NOT NULL, wake_at INTEGER, created_ms INTEGER NOT NULL,
  expires_ms INTEGER, current_attempt INTEGER, callback_url TEXT, lane TEXT,
  lease_owner TEXT, lease_until INTEGER);
INSERT INTO flows_checked (id, spec, recipient, state, step, attempt, wake_at, created_ms,
  expires_ms, current_attempt, callback_url, lane, lease_owner, lease_until)
  SELECT id, spec, recipient, state, step, attempt, wake_at, created_ms, expires_ms,
    current_attempt, callback_url, lane, lease_owner, lease_until FROM flows;
DROP TABLE flows;
ALTER TABLE flows_checked RENAME TO flows;
CREATE INDEX flows_due ON flows(lane, wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX flows_by_recipient ON flows(recipient);
CREATE INDEX flows_leased ON flows(lease_until) WHERE lease_until IS NOT NULL;
CREATE TABLE attempts_checked (
  id INTEGER PRIMARY KEY AUTOINCREMENT, flow_id TEXT NOT NULL, step INTEGER NOT NULL,
  channel TEXT NOT NULL, attempt INTEGER NOT NULL, correlation_id TEXT NOT NULL UNIQUE,
  phase TEXT NOT NULL CHECK (phase IN ('claimed', 'sending', 'recorded')),
  slot_ms INTEGER NOT NULL, provider_message_id TEXT, sent_ms INTEGER NOT NULL,
  recorded_ms INTEGER,
  disposition TEXT CHECK (disposition IS NULL OR disposition IN ('accepted', 'sent',
    'delivered', 'read', 'retry', 'fallback', 'failed', 'unknown')),
  reason TEXT, provider_code TEXT, precedence INTEGER NOT NULL DEFAULT 0,
  status TEXT,
  status_disposition TEXT CHECK (status_disposition IS NULL OR status_disposition IN
    ('accepted', 'sent', 'delivered', 'read', 'retry', 'fallback', 'failed', 'unknown')),
  closed INTEGER NOT NULL DEFAULT 0 CHECK (closed IN (0, 1)),
  possible_duplicate INTEGER NOT NULL DEFAULT 0 CHECK (possible_duplicate IN (0, 1)));
INSERT INTO attempts_checked (id, flow_id, step, channel, attempt, correlation_id, phase,
  slot_ms, provider_message_id, sent_ms, recorded_ms, disposition, reason, provider_code,
  precedence, status, status_disposition, closed, possible_duplicate)
  SELECT id, flow_id, step, channel, attempt, correlation_id, phase, slot_ms,
    provider_message_id, sent_ms, recorded_ms, disposition, reason, provider_code, precedence,
    status, status_disposition, closed, possible_duplicate FROM attempts;
DROP TABLE attempts;
ALTER TABLE attempts_checked RENAME TO attempts;
CREATE INDEX attempts_by_message ON attempts(channel, provider_message_id);
CREATE INDEX attempts_by_flow ON attempts(flow_id);
CREATE INDEX attempts_open ON attempts(phase) WHERE phase <> 'recorded';
