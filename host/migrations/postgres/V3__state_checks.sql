-- State columns hold only the values the host knows (host/src/flow/store/driver.rs reads them
-- and refuses anything else; a test holds these lists to the Rust enums).
ALTER TABLE flows ADD CONSTRAINT flows_state_known CHECK (state IN ('ready', 'sending',
  'waiting_status', 'waiting_retry', 'waiting_unknown', 'done', 'exhausted', 'expired',
  'handed_over'));
ALTER TABLE attempts ADD CONSTRAINT attempts_phase_known CHECK (phase IN ('claimed', 'sending',
  'recorded'));
ALTER TABLE attempts ADD CONSTRAINT attempts_disposition_known CHECK (disposition IS NULL OR
  disposition IN ('accepted', 'sent', 'delivered', 'read', 'retry', 'fallback', 'failed',
  'unknown'));
ALTER TABLE attempts ADD CONSTRAINT attempts_status_disposition_known CHECK (
  status_disposition IS NULL OR status_disposition IN ('accepted', 'sent', 'delivered', 'read',
  'retry', 'fallback', 'failed', 'unknown'));
ALTER TABLE attempts ADD CONSTRAINT attempts_flags CHECK (closed IN (0, 1)
  AND possible_duplicate IN (0, 1));
