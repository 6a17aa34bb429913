-- Leases: which node holds an in-flight send and until when; another node takes the flow over
-- (crash rule: `sending` → unknown, never a blind resend) once the lease has passed.
ALTER TABLE flows ADD COLUMN lease_owner TEXT;
ALTER TABLE flows ADD COLUMN lease_until BIGINT;
CREATE INDEX flows_leased ON flows(lease_until) WHERE lease_until IS NOT NULL;
-- Pacing watermarks shared by every node: the next free slot per sending number, the earliest
-- next message per customer, in microseconds. Rows are locked in the claim transaction.
CREATE TABLE pacing (key TEXT PRIMARY KEY, next_us BIGINT NOT NULL);
