-- Leases: which node holds an in-flight send and until when (several nodes share PostgreSQL;
-- SQLite has one node, but the columns keep one code path).
ALTER TABLE flows ADD COLUMN lease_owner TEXT;
ALTER TABLE flows ADD COLUMN lease_until INTEGER;
CREATE INDEX IF NOT EXISTS flows_leased ON flows(lease_until) WHERE lease_until IS NOT NULL;
-- Pacing watermarks shared by every node: the next free slot per sending number, the earliest
-- next message per customer.
CREATE TABLE IF NOT EXISTS pacing (key TEXT PRIMARY KEY, next_us INTEGER NOT NULL);
