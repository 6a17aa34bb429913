//! The driver on SQLite: the embedded store of one node. Its writers exclude each other whole
//! (`BEGIN IMMEDIATE`), so no statement here locks a row, and pacing is kept in the node's
//! memory. Migrations in `host/migrations/sqlite`, applied at open by refinery.

use super::driver::{
    AccountRecord, Answer, AttemptRecord, AttemptView, Columns, FlowRecord, FlowView, NewAttempt,
    NewCallback, NewFlow, NewNote, Ops, OutboxItem, RouteRow, SenderRecord, StatusRaise,
    TemplateChange, TemplateRecord, TenantRecord, TimelineEntry, TokenRecord, TxKind,
    count_statement, count_transaction, flow_state,
};
use crate::flow::policy::FlowState;
use anyhow::{Context, Result, bail};
use rusqlite::types::Value;
use rusqlite::{Params, Row, params};
use std::time::Duration;

/// Rows per multi-row INSERT: far below SQLite's limit of 32,766 bound values per statement.
const ROWS_PER_INSERT: usize = 500;

/// `head (?1, ?2, …), (…), …`: `rows` rows of `columns` placeholders each.
fn multi_row_insert(head: &str, columns: usize, rows: usize) -> String {
    let mut sql = String::from(head);
    for r in 0..rows {
        sql.push_str(if r == 0 { " (" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", r * columns + c + 1));
        }
        sql.push(')');
    }
    sql
}

mod migrations {
    refinery::embed_migrations!("migrations/sqlite");
}

/// Opens (creating if needed) and migrates the file (`:memory:` in memory).
pub(super) fn open(location: &str) -> Result<rusqlite::Connection> {
    let mut conn = rusqlite::Connection::open(location)
        .with_context(|| format!("opening the flow database {location}"))?;
    // `flow status` reads the file while `serve` writes it: wait for locks, don't fail.
    conn.busy_timeout(Duration::from_secs(5))?;
    // Every statement the driver runs stays prepared (the default keeps 16: fewer than the
    // store has, so they were parsed again and again).
    conn.set_prepared_statement_cache_capacity(256);
    conn.pragma_update(None, "journal_mode", "WAL").ok();
    // WAL + NORMAL: a committed transaction survives the process being killed.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    migrations::migrations::runner()
        .run(&mut conn)
        .with_context(|| format!("applying the SQLite migrations to {location}"))?;
    Ok(conn)
}

/// Runs `f` in one transaction, committed when it succeeds: `BEGIN IMMEDIATE` for a write
/// (writers queue instead of failing), a deferred one for a read (in WAL mode it runs beside
/// the writer).
pub(super) fn transaction<R>(
    conn: &mut rusqlite::Connection,
    kind: TxKind,
    f: impl FnOnce(&dyn Ops) -> Result<R>,
) -> Result<R> {
    count_transaction();
    let behavior = match kind {
        TxKind::Write => rusqlite::TransactionBehavior::Immediate,
        TxKind::Read => rusqlite::TransactionBehavior::Deferred,
    };
    let tx = conn.transaction_with_behavior(behavior)?;
    let r = f(&Sqlite { tx: &tx })?;
    tx.commit()?;
    Ok(r)
}

struct Sqlite<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl Sqlite<'_> {
    fn exec(&self, sql: &str, params: impl Params) -> Result<usize> {
        count_statement();
        Ok(self.tx.prepare_cached(sql)?.execute(params)?)
    }

    fn rows<T>(
        &self,
        sql: &str,
        params: impl Params,
        mut read: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        count_statement();
        let mut stmt = self.tx.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push(read(r)?);
        }
        Ok(out)
    }

    fn row<T>(
        &self,
        sql: &str,
        params: impl Params,
        read: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        count_statement();
        let mut stmt = self.tx.prepare_cached(sql)?;
        let mut rows = stmt.query(params)?;
        rows.next()?.map(read).transpose()
    }
}

impl Columns for Row<'_> {
    fn int(&self, name: &str) -> Result<i64> {
        Ok(self.get(name)?)
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.get(name)?)
    }
    fn text(&self, name: &str) -> Result<String> {
        Ok(self.get(name)?)
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>> {
        Ok(self.get(name)?)
    }
}

impl Ops for Sqlite<'_> {
    fn insert_flow(&self, f: &NewFlow) -> Result<bool> {
        let n = self.exec(
            "INSERT OR IGNORE INTO flows (id, spec, recipient, state, step, attempt, wake_at, created_ms, expires_ms, callback_url, lane) VALUES (?1, ?2, ?3, 'ready', 0, 1, ?4, ?4, ?5, ?6, ?7)",
            params![f.id, f.spec, f.customer, f.now_ms, f.expires_ms, f.callback_url, f.lane],
        )?;
        Ok(n == 1)
    }

    fn flow_spec(&self, id: &str) -> Result<Option<String>> {
        self.row("SELECT spec FROM flows WHERE id = ?1", [id], |r| {
            r.text("spec")
        })
    }

    fn lock_flow(&self, id: &str) -> Result<Option<FlowRecord>> {
        let row = self.row(
            "SELECT id, spec, state, step, attempt, expires_ms, current_attempt, callback_url, recipient FROM flows WHERE id = ?1",
            [id],
            |r| FlowRecord::read(r, "id", "attempt"),
        )?;
        Ok(row)
    }

    fn flow_state(&self, id: &str) -> Result<Option<FlowState>> {
        self.row("SELECT state FROM flows WHERE id = ?1", [id], |r| {
            flow_state(&r.text("state")?)
        })
    }

    fn set_flow_state(
        &self,
        id: &str,
        state: FlowState,
        wake_at: Option<i64>,
        lane: Option<&str>,
    ) -> Result<()> {
        self.exec(
            "UPDATE flows SET state = ?2, wake_at = ?3, lane = ?4 WHERE id = ?1",
            params![id, state.as_str(), wake_at, lane],
        )?;
        Ok(())
    }

    fn clear_wake(&self, id: &str) -> Result<()> {
        self.exec(
            "UPDATE flows SET wake_at = NULL, lane = NULL WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    fn schedule_retry(
        &self,
        id: &str,
        attempt: i64,
        wake_at: i64,
        lane: Option<&str>,
    ) -> Result<()> {
        self.exec(
            "UPDATE flows SET state = 'waiting_retry', attempt = ?2, wake_at = ?3, lane = ?4 WHERE id = ?1",
            params![id, attempt, wake_at, lane],
        )?;
        Ok(())
    }

    fn advance_step(&self, id: &str, step: i64, wake_at: i64, lane: &str) -> Result<()> {
        self.exec(
            "UPDATE flows SET step = ?2, attempt = 1, state = 'ready', wake_at = ?3, lane = ?4, current_attempt = NULL WHERE id = ?1",
            params![id, step, wake_at, lane],
        )?;
        Ok(())
    }

    fn exhaust(&self, id: &str, step: i64) -> Result<()> {
        self.exec(
            "UPDATE flows SET step = ?2, state = 'exhausted', wake_at = NULL, lane = NULL, current_attempt = NULL WHERE id = ?1",
            params![id, step],
        )?;
        Ok(())
    }

    fn due_flows(&self, lane: &str, now: i64, limit: i64) -> Result<Vec<String>> {
        self.rows(
            "SELECT id FROM flows WHERE lane = ?1 AND wake_at IS NOT NULL AND wake_at <= ?2 ORDER BY wake_at LIMIT ?3",
            params![lane, now, limit],
            |r| r.text("id"),
        )
    }

    fn lease_flow(&self, id: &str, attempt_id: i64, owner: &str, until: i64) -> Result<()> {
        self.exec(
            "UPDATE flows SET state = 'sending', wake_at = NULL, lane = NULL, current_attempt = ?2, lease_owner = ?3, lease_until = ?4 WHERE id = ?1",
            params![id, attempt_id, owner, until],
        )?;
        Ok(())
    }

    fn flows_of_customer(&self, customer: &str) -> Result<Vec<(String, FlowState)>> {
        self.rows(
            "SELECT id, state FROM flows WHERE recipient = ?1",
            [customer],
            |r| Ok((r.text("id")?, flow_state(&r.text("state")?)?)),
        )
    }

    fn state_counts(&self) -> Result<Vec<(FlowState, u64)>> {
        self.rows(
            "SELECT state, count(*) AS n FROM flows GROUP BY state",
            [],
            |r| Ok((flow_state(&r.text("state")?)?, r.int("n")?.max(0) as u64)),
        )
    }

    fn accepted_sends(&self) -> Result<Vec<(i64, i64)>> {
        self.rows(
            "SELECT f.created_ms, a.recorded_ms FROM flows f JOIN attempts a ON a.flow_id = f.id WHERE a.disposition = 'accepted' AND a.recorded_ms IS NOT NULL",
            [],
            |r| Ok((r.int("created_ms")?, r.int("recorded_ms")?)),
        )
    }

    fn flow_view(&self, id: &str) -> Result<Option<FlowView>> {
        let Some((spec, state, step)) = self.row(
            "SELECT spec, state, step FROM flows WHERE id = ?1",
            [id],
            |r| Ok((r.text("spec")?, r.text("state")?, r.int("step")?)),
        )?
        else {
            return Ok(None);
        };
        let attempts = self.rows(
            "SELECT id, channel, attempt, provider_message_id, sent_ms, disposition, reason, provider_code, status, closed, possible_duplicate, correlation_id, phase FROM attempts WHERE flow_id = ?1 ORDER BY id",
            [id],
            |r| AttemptView::read(r),
        )?;
        let timeline = self.rows(
            "SELECT at_ms, attempt_id, entry FROM timeline WHERE flow_id = ?1 ORDER BY id",
            [id],
            |r| TimelineEntry::read(r),
        )?;
        Ok(Some(FlowView {
            id: id.to_string(),
            spec,
            state,
            step,
            attempts,
            timeline,
        }))
    }

    fn insert_attempt(&self, a: &NewAttempt) -> Result<i64> {
        let id = self.row(
            "INSERT INTO attempts (flow_id, step, channel, attempt, correlation_id, phase, slot_ms, sent_ms) VALUES (?1, ?2, ?3, ?4, ?5, 'claimed', ?6, ?6) RETURNING id",
            params![a.flow_id, a.step, a.channel, a.attempt, a.correlation_id, a.slot_ms],
            |r| r.int("id"),
        )?;
        match id {
            Some(id) => Ok(id),
            None => bail!("inserting an attempt returned no id"),
        }
    }

    fn lock_attempt_and_flow(
        &self,
        id: i64,
        _flow_id: Option<&str>,
    ) -> Result<Option<(Option<FlowRecord>, AttemptRecord)>> {
        // No row locks on SQLite: the two rows in one statement (the flow's id and attempt
        // renamed, beside the attempt's).
        self.row(
            "SELECT a.id, a.flow_id, a.channel, a.attempt, a.phase, a.closed, a.status_disposition, a.provider_message_id, f.id AS f_id, f.spec, f.state, f.step, f.attempt AS f_attempt, f.expires_ms, f.current_attempt, f.callback_url, f.recipient FROM attempts a LEFT JOIN flows f ON f.id = a.flow_id WHERE a.id = ?1",
            [id],
            |r| {
                let flow = match r.opt_text("f_id")? {
                    Some(_) => Some(FlowRecord::read(r, "f_id", "f_attempt")?),
                    None => None,
                };
                Ok((flow, AttemptRecord::read(r, "id", "attempt")?))
            },
        )
    }

    fn stranded_attempts(&self, _now: i64) -> Result<Vec<i64>> {
        self.rows(
            "SELECT id FROM attempts WHERE phase <> 'recorded' ORDER BY id",
            [],
            |r| r.int("id"),
        )
    }

    fn mark_sending(&self, id: i64, _lease_needed_until: i64) -> Result<bool> {
        // One node: nobody else can take its claims over.
        let n = self.exec(
            "UPDATE attempts SET phase = 'sending' WHERE id = ?1 AND phase = 'claimed'",
            [id],
        )?;
        Ok(n == 1)
    }

    fn record_answer(&self, id: i64, a: &Answer) -> Result<()> {
        self.exec(
            "UPDATE attempts SET phase = 'recorded', disposition = ?2, reason = ?3, provider_code = ?4, provider_message_id = coalesce(provider_message_id, ?5), recorded_ms = ?6 WHERE id = ?1",
            params![id, a.disposition, a.reason, a.provider_code, a.message_id, a.at_ms],
        )?;
        Ok(())
    }

    fn close_step_attempts(&self, flow_id: &str, step: i64) -> Result<()> {
        self.exec(
            "UPDATE attempts SET closed = 1 WHERE flow_id = ?1 AND step = ?2",
            params![flow_id, step],
        )?;
        Ok(())
    }

    fn attempt_for_status(
        &self,
        channel: &str,
        message_id: &str,
        correlation_id: Option<&str>,
    ) -> Result<Option<(i64, String)>> {
        self.row(
            // Two index lookups in one statement (an OR across the two columns would scan the
            // channel's every attempt).
            "SELECT id, flow_id FROM attempts WHERE channel = ?1 AND provider_message_id = ?2 UNION ALL SELECT id, flow_id FROM attempts WHERE channel = ?1 AND correlation_id = ?3 AND provider_message_id IS NULL ORDER BY id LIMIT 1",
            params![channel, message_id, correlation_id],
            |r| Ok((r.int("id")?, r.text("flow_id")?)),
        )
    }

    fn adopt_message_id(&self, id: i64, message_id: &str) -> Result<bool> {
        let n = self.exec(
            "UPDATE attempts SET provider_message_id = ?2 WHERE id = ?1 AND provider_message_id IS NULL",
            params![id, message_id],
        )?;
        Ok(n == 1)
    }

    fn raise_status(&self, id: i64, s: &StatusRaise) -> Result<bool> {
        let n = self.exec(
            "UPDATE attempts SET precedence = ?2, status = ?3, status_disposition = ?4 WHERE id = ?1 AND precedence < ?2",
            params![id, s.precedence, s.status, s.disposition],
        )?;
        Ok(n == 1)
    }

    fn mark_possible_duplicate(&self, id: i64) -> Result<()> {
        self.exec(
            "UPDATE attempts SET possible_duplicate = 1 WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    fn add_notes(&self, notes: &[NewNote]) -> Result<()> {
        for chunk in notes.chunks(ROWS_PER_INSERT) {
            let values = rusqlite::params_from_iter(chunk.iter().flat_map(|n| {
                [
                    Value::from(n.flow_id.clone()),
                    Value::from(n.at_ms),
                    Value::from(n.attempt_id),
                    Value::from(n.entry.clone()),
                ]
            }));
            self.exec(
                &multi_row_insert(
                    "INSERT INTO timeline (flow_id, at_ms, attempt_id, entry) VALUES",
                    4,
                    chunk.len(),
                ),
                values,
            )?;
        }
        Ok(())
    }

    fn enqueue_callbacks(&self, callbacks: &[NewCallback]) -> Result<()> {
        for chunk in callbacks.chunks(ROWS_PER_INSERT) {
            let values = rusqlite::params_from_iter(chunk.iter().flat_map(|c| {
                [
                    Value::from(c.event_id.clone()),
                    Value::from(c.flow_id.clone()),
                    Value::from(c.url.clone()),
                    Value::from(c.body.clone()),
                    Value::from(c.next_at),
                ]
            }));
            self.exec(
                &multi_row_insert(
                    "INSERT INTO outbox (event_id, flow_id, url, body, next_at) VALUES",
                    5,
                    chunk.len(),
                ),
                values,
            )?;
        }
        Ok(())
    }

    fn lease_due_callbacks(
        &self,
        now: i64,
        limit: i64,
        lease_until: i64,
    ) -> Result<Vec<OutboxItem>> {
        self.rows(
            "UPDATE outbox SET next_at = ?3 WHERE id IN (SELECT id FROM outbox WHERE next_at IS NOT NULL AND next_at <= ?1 ORDER BY next_at LIMIT ?2) RETURNING id, event_id, flow_id, url, body, tries",
            params![now, limit, lease_until],
            |r| OutboxItem::read(r),
        )
    }

    fn callbacks_delivered(&self, ids: &[i64], at: i64) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        // One statement for the round: `id IN (?2, ?3, …)`.
        let list = (0..ids.len())
            .map(|i| format!("?{}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let bound = std::iter::once(at).chain(ids.iter().copied());
        self.exec(
            &format!("UPDATE outbox SET delivered_ms = ?1, next_at = NULL, tries = tries + 1 WHERE id IN ({list})"),
            rusqlite::params_from_iter(bound),
        )?;
        Ok(())
    }

    fn callback_failed(&self, id: i64, next_at: Option<i64>, error: &str) -> Result<()> {
        self.exec(
            "UPDATE outbox SET next_at = ?2, tries = tries + 1, last_error = ?3 WHERE id = ?1",
            params![id, next_at, error],
        )?;
        Ok(())
    }

    fn insert_tenant(&self, t: &TenantRecord) -> Result<bool> {
        let n = self.exec(
            "INSERT OR IGNORE INTO tenants (id, name, created_ms) VALUES (?1, ?2, ?3)",
            params![t.id, t.name, t.created_ms],
        )?;
        Ok(n == 1)
    }

    fn rename_tenant(&self, id: &str, name: &str) -> Result<bool> {
        let n = self.exec(
            "UPDATE tenants SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
        Ok(n == 1)
    }

    fn tenant(&self, id: &str) -> Result<Option<TenantRecord>> {
        self.row(
            "SELECT id, name, created_ms FROM tenants WHERE id = ?1",
            [id],
            |r| TenantRecord::read(r),
        )
    }

    fn tenants(&self) -> Result<Vec<TenantRecord>> {
        self.rows(
            "SELECT id, name, created_ms FROM tenants ORDER BY id",
            [],
            |r| TenantRecord::read(r),
        )
    }

    fn insert_token(&self, t: &TokenRecord, hash: &str) -> Result<()> {
        self.exec(
            "INSERT INTO api_tokens (id, tenant_id, hash, label, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![t.id, t.tenant_id, hash, t.label, t.created_ms],
        )?;
        Ok(())
    }

    fn revoke_token(&self, tenant: &str, id: &str, at: i64) -> Result<bool> {
        let n = self.exec(
            "UPDATE api_tokens SET revoked_ms = ?3 WHERE tenant_id = ?1 AND id = ?2 AND revoked_ms IS NULL",
            params![tenant, id, at],
        )?;
        Ok(n == 1)
    }

    fn token_tenant(&self, hash: &str) -> Result<Option<String>> {
        self.row(
            "SELECT tenant_id FROM api_tokens WHERE hash = ?1 AND revoked_ms IS NULL",
            [hash],
            |r| r.text("tenant_id"),
        )
    }

    fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>> {
        self.rows(
            "SELECT id, tenant_id, label, created_ms, revoked_ms FROM api_tokens WHERE tenant_id = ?1 ORDER BY created_ms, id",
            [tenant],
            |r| TokenRecord::read(r),
        )
    }

    fn vault_check(&self) -> Result<Option<String>> {
        self.row(
            "SELECT check_value FROM vault_check WHERE id = 1",
            [],
            |r| r.text("check_value"),
        )
    }

    fn set_vault_check(&self, check: &str) -> Result<bool> {
        let n = self.exec(
            "INSERT OR IGNORE INTO vault_check (id, check_value) VALUES (1, ?1)",
            [check],
        )?;
        Ok(n == 1)
    }

    fn any_sealed_secret(&self) -> Result<bool> {
        let found = self.row("SELECT 1 AS one FROM tenant_secrets LIMIT 1", [], |r| {
            r.int("one")
        })?;
        Ok(found.is_some())
    }

    fn put_tenant_secret(&self, tenant: &str, name: &str, sealed: &str, at: i64) -> Result<()> {
        self.exec(
            "INSERT INTO tenant_secrets (tenant_id, name, sealed, updated_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant_id, name) DO UPDATE SET sealed = excluded.sealed, updated_ms = excluded.updated_ms",
            params![tenant, name, sealed, at],
        )?;
        Ok(())
    }

    fn tenant_secret(&self, tenant: &str, name: &str) -> Result<Option<String>> {
        self.row(
            "SELECT sealed FROM tenant_secrets WHERE tenant_id = ?1 AND name = ?2",
            params![tenant, name],
            |r| r.text("sealed"),
        )
    }

    fn tenant_secrets_under(&self, tenant: &str, prefix: &str) -> Result<Vec<(String, String)>> {
        self.rows(
            "SELECT name, sealed FROM tenant_secrets WHERE tenant_id = ?1 AND substr(name, 1, length(?2)) = ?2 ORDER BY name",
            params![tenant, prefix],
            |r| Ok((r.text("name")?, r.text("sealed")?)),
        )
    }

    fn add_catalog_document(
        &self,
        tenant: &str,
        channel: &str,
        document: &str,
        at: i64,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO catalog_documents (tenant_id, channel, document, at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![tenant, channel, document, at],
        )?;
        Ok(())
    }

    fn catalog_documents(
        &self,
        tenant: &str,
        channel: &str,
        after: i64,
    ) -> Result<Vec<(i64, String)>> {
        self.rows(
            "SELECT id, document FROM catalog_documents WHERE tenant_id = ?1 AND channel = ?2 AND id > ?3 ORDER BY id",
            params![tenant, channel, after],
            |r| Ok((r.int("id")?, r.text("document")?)),
        )
    }

    fn account_owner(&self, channel: &str, account_id: &str) -> Result<Option<String>> {
        self.row(
            "SELECT tenant_id FROM channel_accounts WHERE channel = ?1 AND account_id = ?2",
            params![channel, account_id],
            |r| r.text("tenant_id"),
        )
    }

    fn put_account(&self, a: &AccountRecord) -> Result<()> {
        self.exec(
            "INSERT INTO channel_accounts (tenant_id, channel, account_id, settings, state, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant_id, channel) DO UPDATE SET account_id = excluded.account_id, settings = excluded.settings, state = excluded.state, updated_ms = excluded.updated_ms",
            params![a.tenant_id, a.channel, a.account_id, a.settings, a.state, a.updated_ms],
        )?;
        Ok(())
    }

    fn account(&self, tenant: &str, channel: &str) -> Result<Option<AccountRecord>> {
        self.row(
            "SELECT tenant_id, channel, account_id, settings, state, updated_ms, facts, recipient_limit, checked_ms FROM channel_accounts WHERE tenant_id = ?1 AND channel = ?2",
            params![tenant, channel],
            |r| AccountRecord::read(r),
        )
    }

    fn lock_account_limit(&self, tenant: &str, channel: &str) -> Result<Option<Option<i64>>> {
        self.row(
            "SELECT recipient_limit, checked_ms FROM channel_accounts WHERE tenant_id = ?1 AND channel = ?2",
            params![tenant, channel],
            |r| {
                let checked = r.opt_int("checked_ms")?;
                Ok(checked.and(r.opt_int("recipient_limit")?))
            },
        )
    }

    fn set_account_limit(
        &self,
        channel: &str,
        account_id: &str,
        limit: Option<i64>,
        at: i64,
    ) -> Result<()> {
        self.exec(
            "UPDATE channel_accounts SET recipient_limit = ?3, checked_ms = COALESCE(checked_ms, ?4) WHERE channel = ?1 AND account_id = ?2",
            params![channel, account_id, limit, at],
        )?;
        Ok(())
    }

    fn prune_initiated(&self, tenant: &str, channel: &str, before: i64) -> Result<()> {
        self.exec(
            "DELETE FROM initiated_customers WHERE tenant_id = ?1 AND channel = ?2 AND last_ms < ?3",
            params![tenant, channel, before],
        )?;
        Ok(())
    }

    fn initiated_since(
        &self,
        tenant: &str,
        channel: &str,
        customer: &str,
        since: i64,
    ) -> Result<bool> {
        Ok(self
            .row(
                "SELECT 1 AS hit FROM initiated_customers WHERE tenant_id = ?1 AND channel = ?2 AND customer = ?3 AND last_ms >= ?4",
                params![tenant, channel, customer, since],
                |r| r.int("hit"),
            )?
            .is_some())
    }

    fn count_initiated(&self, tenant: &str, channel: &str, since: i64) -> Result<i64> {
        Ok(self
            .row(
                "SELECT COUNT(*) AS n FROM initiated_customers WHERE tenant_id = ?1 AND channel = ?2 AND last_ms >= ?3",
                params![tenant, channel, since],
                |r| r.int("n"),
            )?
            .unwrap_or(0))
    }

    fn note_initiated(&self, tenant: &str, channel: &str, customer: &str, at: i64) -> Result<()> {
        self.exec(
            "INSERT INTO initiated_customers (tenant_id, channel, customer, last_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant_id, channel, customer) DO UPDATE SET last_ms = MAX(initiated_customers.last_ms, excluded.last_ms)",
            params![tenant, channel, customer, at],
        )?;
        Ok(())
    }

    fn accounts_on(&self, channel: &str) -> Result<Vec<AccountRecord>> {
        self.rows(
            "SELECT tenant_id, channel, account_id, settings, state, updated_ms, facts, recipient_limit, checked_ms FROM channel_accounts WHERE channel = ?1 ORDER BY tenant_id",
            params![channel],
            |r| AccountRecord::read(r),
        )
    }

    fn set_account_facts(
        &self,
        tenant: &str,
        channel: &str,
        facts: &str,
        recipient_limit: Option<i64>,
        at: i64,
    ) -> Result<()> {
        self.exec(
            "UPDATE channel_accounts SET facts = ?3, recipient_limit = ?4, checked_ms = ?5 WHERE tenant_id = ?1 AND channel = ?2",
            params![tenant, channel, facts, recipient_limit, at],
        )?;
        Ok(())
    }

    fn sender_owner(&self, channel: &str, sender_id: &str) -> Result<Option<String>> {
        self.row(
            "SELECT tenant_id FROM channel_senders WHERE channel = ?1 AND sender_id = ?2",
            params![channel, sender_id],
            |r| r.text("tenant_id"),
        )
    }

    fn put_sender(&self, s: &SenderRecord) -> Result<()> {
        self.exec(
            "INSERT INTO channel_senders (channel, sender_id, tenant_id, account_id, display_address, messages_per_second, facts, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (channel, sender_id) DO UPDATE SET tenant_id = excluded.tenant_id, account_id = excluded.account_id, display_address = excluded.display_address, messages_per_second = excluded.messages_per_second, facts = excluded.facts, updated_ms = excluded.updated_ms",
            params![s.channel, s.sender_id, s.tenant_id, s.account_id, s.display_address, s.messages_per_second, s.facts, s.updated_ms],
        )?;
        Ok(())
    }

    fn all_senders(&self) -> Result<Vec<SenderRecord>> {
        self.rows(
            "SELECT channel, sender_id, tenant_id, account_id, display_address, messages_per_second, facts, updated_ms FROM channel_senders ORDER BY channel, sender_id",
            [],
            |r| SenderRecord::read(r),
        )
    }

    fn senders(&self, tenant: &str, channel: &str) -> Result<Vec<SenderRecord>> {
        self.rows(
            "SELECT channel, sender_id, tenant_id, account_id, display_address, messages_per_second, facts, updated_ms FROM channel_senders WHERE tenant_id = ?1 AND channel = ?2 ORDER BY sender_id",
            params![tenant, channel],
            |r| SenderRecord::read(r),
        )
    }

    fn put_template(
        &self,
        channel: &str,
        account_id: &str,
        tenant: &str,
        t: &TemplateRecord,
        at: i64,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO channel_templates (channel, account_id, tenant_id, name, language, status, category, template_id, definition, synced_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (channel, account_id, name, language) DO UPDATE SET tenant_id = excluded.tenant_id, status = excluded.status, category = excluded.category, template_id = excluded.template_id, definition = excluded.definition, synced_ms = excluded.synced_ms",
            params![channel, account_id, tenant, t.name, t.language, t.status, t.category, t.template_id, t.definition, at],
        )?;
        Ok(())
    }

    fn delete_templates_before(&self, channel: &str, account_id: &str, before: i64) -> Result<u64> {
        let n = self.exec(
            "DELETE FROM channel_templates WHERE channel = ?1 AND account_id = ?2 AND synced_ms < ?3",
            params![channel, account_id, before],
        )?;
        Ok(n as u64)
    }

    fn change_template(&self, channel: &str, account_id: &str, c: &TemplateChange) -> Result<bool> {
        // By the provider's id when the change names one that is known, else by name and
        // language (Meta's status webhooks carry both; a template created elsewhere and not
        // yet synced matches neither, and the sync that follows brings it).
        let n = self.exec(
            "UPDATE channel_templates SET status = COALESCE(?6, status), category = COALESCE(?7, category) WHERE channel = ?1 AND account_id = ?2 AND ((?3 IS NOT NULL AND template_id = ?3) OR (name = ?4 AND (?5 IS NULL OR language = ?5) AND NOT (?3 IS NOT NULL AND EXISTS (SELECT 1 FROM channel_templates t WHERE t.channel = ?1 AND t.account_id = ?2 AND t.template_id = ?3))))",
            params![channel, account_id, c.template_id, c.name, c.language, c.status, c.category],
        )?;
        Ok(n > 0)
    }

    fn templates(&self, channel: &str, account_id: &str) -> Result<Vec<TemplateRecord>> {
        self.rows(
            "SELECT name, language, status, category, template_id, definition FROM channel_templates WHERE channel = ?1 AND account_id = ?2 ORDER BY name, language",
            params![channel, account_id],
            |r| TemplateRecord::read(r),
        )
    }

    fn route(
        &self,
        channel: &str,
        account_id: Option<&str>,
        sender_id: Option<&str>,
    ) -> Result<RouteRow> {
        let row = self.row(
            "SELECT (SELECT tenant_id FROM channel_senders WHERE channel = ?1 AND sender_id = ?2) AS by_sender, (SELECT tenant_id FROM channel_accounts WHERE channel = ?1 AND account_id = ?3) AS by_account, EXISTS (SELECT 1 FROM channel_accounts WHERE channel = ?1 AND tenant_id = 'default') AS default_named",
            params![channel, sender_id, account_id],
            |r| {
                Ok(RouteRow {
                    by_sender: r.opt_text("by_sender")?,
                    by_account: r.opt_text("by_account")?,
                    default_named: r.flag("default_named")?,
                })
            },
        )?;
        Ok(row.unwrap_or_default())
    }

    fn count_unrouted(&self, channel: &str, account_id: &str, at: i64) -> Result<()> {
        self.exec(
            "INSERT INTO unrouted_events (channel, account_id, events, last_ms) VALUES (?1, ?2, 1, ?3) ON CONFLICT (channel, account_id) DO UPDATE SET events = unrouted_events.events + 1, last_ms = excluded.last_ms",
            params![channel, account_id, at],
        )?;
        Ok(())
    }

    fn unrouted(&self, channel: &str) -> Result<Vec<(String, i64)>> {
        self.rows(
            "SELECT account_id, events FROM unrouted_events WHERE channel = ?1 ORDER BY account_id",
            params![channel],
            |r| Ok((r.text("account_id")?, r.int("events")?)),
        )
    }

    fn set_account_state(
        &self,
        tenant: &str,
        channel: &str,
        from: &str,
        to: &str,
        at: i64,
    ) -> Result<bool> {
        let n = self.exec(
            "UPDATE channel_accounts SET state = ?4, updated_ms = ?5 WHERE tenant_id = ?1 AND channel = ?2 AND state = ?3",
            params![tenant, channel, from, to, at],
        )?;
        Ok(n == 1)
    }

    fn first_sight(&self, key: &str, at: i64) -> Result<bool> {
        let n = self.exec(
            "INSERT OR IGNORE INTO seen_events (dedupe_key, at_ms) VALUES (?1, ?2)",
            params![key, at],
        )?;
        Ok(n == 1)
    }

    fn note_inbound(&self, channel: &str, customer: &str, at: i64) -> Result<()> {
        self.exec(
            "INSERT INTO inbound (channel, customer, last_ms) VALUES (?1, ?2, ?3) ON CONFLICT (channel, customer) DO UPDATE SET last_ms = max(excluded.last_ms, inbound.last_ms)",
            params![channel, customer, at],
        )?;
        Ok(())
    }

    fn last_inbound(&self, channel: &str, customer: &str) -> Result<Option<i64>> {
        self.row(
            "SELECT last_ms FROM inbound WHERE channel = ?1 AND customer = ?2",
            params![channel, customer],
            |r| r.int("last_ms"),
        )
    }

    fn opted_out(&self, channel: &str, customer: &str) -> Result<Vec<String>> {
        self.rows(
            "SELECT category FROM opt_outs WHERE channel = ?1 AND customer = ?2 ORDER BY category",
            params![channel, customer],
            |r| r.text("category"),
        )
    }

    fn add_opt_out(&self, channel: &str, customer: &str, category: &str, since: i64) -> Result<()> {
        self.exec(
            "INSERT OR IGNORE INTO opt_outs (channel, customer, category, since_ms) VALUES (?1, ?2, ?3, ?4)",
            params![channel, customer, category, since],
        )?;
        Ok(())
    }

    fn remove_opt_out(&self, channel: &str, customer: &str, category: &str) -> Result<()> {
        self.exec(
            "DELETE FROM opt_outs WHERE channel = ?1 AND customer = ?2 AND category = ?3",
            params![channel, customer, category],
        )?;
        Ok(())
    }

    fn rekey_customer(&self, channel: &str, old: &str, new: &str) -> Result<()> {
        // Where the new id already has a row, it wins (it is the newer news).
        self.exec(
            "UPDATE inbound SET customer = ?3 WHERE channel = ?1 AND customer = ?2 AND NOT EXISTS (SELECT 1 FROM inbound n WHERE n.channel = ?1 AND n.customer = ?3)",
            params![channel, old, new],
        )?;
        self.exec(
            "UPDATE opt_outs SET customer = ?3 WHERE channel = ?1 AND customer = ?2 AND NOT EXISTS (SELECT 1 FROM opt_outs n WHERE n.channel = ?1 AND n.customer = ?3 AND n.category = opt_outs.category)",
            params![channel, old, new],
        )?;
        Ok(())
    }

    fn lock_pacing(&self, key: &str) -> Result<i64> {
        self.exec(
            "INSERT OR IGNORE INTO pacing (key, next_us) VALUES (?1, 0)",
            [key],
        )?;
        let next = self.row("SELECT next_us FROM pacing WHERE key = ?1", [key], |r| {
            r.int("next_us")
        })?;
        Ok(next.unwrap_or(0))
    }

    fn set_pacing(&self, key: &str, next_us: i64) -> Result<()> {
        self.exec(
            "UPDATE pacing SET next_us = ?2 WHERE key = ?1",
            params![key, next_us],
        )?;
        Ok(())
    }

    fn raise_pacing(&self, key: &str, next_us: i64) -> Result<()> {
        self.exec(
            "UPDATE pacing SET next_us = max(next_us, ?2) WHERE key = ?1",
            params![key, next_us],
        )?;
        Ok(())
    }
}
