//! The driver on PostgreSQL: the store several nodes share. Every operation that decides on a
//! row locks it (`FOR UPDATE`), claims skip rows another node holds (`SKIP LOCKED`), and the
//! pacing watermarks are shared rows. Migrations in `host/migrations/postgres`, applied at open
//! by refinery. Each connection's session bounds what a stalled peer may cost the others.

use super::driver::{
    AccountRecord, Answer, AttemptRecord, AttemptView, Columns, FlowRecord, FlowView, NewAttempt,
    NewCallback, NewFlow, NewNote, Ops, OutboxItem, RouteRow, SenderRecord, StatusRaise,
    TemplateChange, TemplateRecord, TenantRecord, TimelineEntry, TokenRecord, TxKind,
    count_statement, count_transaction, flow_state, redact,
};
use crate::flow::policy::FlowState;
use anyhow::{Context, Result, bail};
use postgres::types::ToSql;
use postgres::{Row, Statement};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

mod migrations {
    refinery::embed_migrations!("migrations/postgres");
}

/// What one stalled node may cost the others, in PostgreSQL's own session settings (ms).
///
/// A node frozen (SIGSTOP, a long GC-like pause, a partition without a TCP reset) inside a
/// transaction keeps its row locks until the server ends its session: the server ends it once
/// it has sat idle in that transaction this long. A statement waiting for a lock gives up
/// after `LOCK_TIMEOUT_MS` (the caller retries later), and no statement runs unbounded. Every
/// transaction of the store is a few statements with no I/O in between, so a healthy node is
/// never near these.
pub const IDLE_IN_TRANSACTION_TIMEOUT_MS: u64 = 5_000;
pub const LOCK_TIMEOUT_MS: u64 = 2_000;
pub const STATEMENT_TIMEOUT_MS: u64 = 10_000;

/// The session settings and socket options of every connection: a stalled peer costs at
/// most seconds (above); a server that vanished without a reset is noticed by TCP keepalives
/// and the user timeout instead of after the kernel's two hours.
fn session_config(config: &mut postgres::Config) {
    config.connect_timeout(Duration::from_secs(5));
    // The URL's own `options` come last, so an operator may still set these differently.
    let given = config.get_options().unwrap_or_default().to_string();
    config.options(&format!(
        "-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS} -c statement_timeout={STATEMENT_TIMEOUT_MS} {given}"
    ));
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(15));
}

fn connect(url: &str) -> Result<postgres::Client> {
    let mut config: postgres::Config = url
        .parse()
        .with_context(|| format!("{} is not a PostgreSQL URL", redact(url)))?;
    session_config(&mut config);
    config
        .connect(postgres::NoTls)
        .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))
}

/// A connection with its prepared statements; reconnects when the server went away.
pub(super) struct PgConn {
    url: String,
    client: Option<postgres::Client>,
    statements: HashMap<&'static str, Statement>,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // Closing blocks on the driver's own runtime, which may not happen on a thread that
        // drives tasks: there it goes to the runtime's blocking pool.
        if let Some(client) = self.client.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn_blocking(move || drop(client));
        }
    }
}

impl PgConn {
    /// Connects and applies the migrations.
    pub(super) fn open(url: &str) -> Result<PgConn> {
        let mut client = connect(url)?;
        migrations::migrations::runner()
            .run(&mut client)
            .context("applying the PostgreSQL migrations")?;
        Ok(PgConn {
            url: url.to_string(),
            client: Some(client),
            statements: HashMap::new(),
        })
    }

    fn ensure_connected(&mut self) -> Result<()> {
        if self.client.as_ref().is_none_or(postgres::Client::is_closed) {
            // Statements belong to the connection that prepared them.
            self.statements.clear();
            self.client = None;
            self.client = Some(connect(&self.url)?);
        }
        Ok(())
    }

    /// Runs `f` in one transaction (read committed, read only for a read), committed when it
    /// succeeds; row locks where the operations take them.
    pub(super) fn transaction<R>(
        &mut self,
        kind: TxKind,
        f: impl FnOnce(&dyn Ops) -> Result<R>,
    ) -> Result<R> {
        count_transaction();
        self.ensure_connected()?;
        let PgConn {
            client, statements, ..
        } = self;
        let client = client.as_mut().expect("connected above");
        let tx = client
            .build_transaction()
            .read_only(kind == TxKind::Read)
            .start()?;
        let ops = Postgres {
            tx: RefCell::new(tx),
            statements: RefCell::new(statements),
        };
        let r = f(&ops)?;
        ops.tx.into_inner().commit()?;
        Ok(r)
    }
}

struct Postgres<'a> {
    tx: RefCell<postgres::Transaction<'a>>,
    statements: RefCell<&'a mut HashMap<&'static str, Statement>>,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl Postgres<'_> {
    /// The attempt, its row locked until commit.
    fn lock_attempt(&self, id: i64) -> Result<Option<AttemptRecord>> {
        self.row(
            "SELECT id, flow_id, channel, attempt, phase, closed, status_disposition, provider_message_id FROM attempts WHERE id = $1 FOR UPDATE",
            &[&id],
        )?
        .map(|r| AttemptRecord::read(&r, "id", "attempt"))
        .transpose()
    }

    /// The flow an attempt belongs to (it never changes: no lock).
    fn attempt_flow(&self, id: i64) -> Result<Option<String>> {
        self.row("SELECT flow_id FROM attempts WHERE id = $1", &[&id])?
            .map(|r| Ok(r.try_get("flow_id")?))
            .transpose()
    }

    fn statement(&self, sql: &'static str) -> Result<Statement> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let prepared = self
            .tx
            .borrow_mut()
            .prepare(sql)
            .with_context(|| format!("preparing {sql}"))?;
        self.statements.borrow_mut().insert(sql, prepared.clone());
        Ok(prepared)
    }

    fn exec(&self, sql: &'static str, params: Params) -> Result<u64> {
        count_statement();
        let stmt = self.statement(sql)?;
        Ok(self.tx.borrow_mut().execute(&stmt, params)?)
    }

    fn rows(&self, sql: &'static str, params: Params) -> Result<Vec<Row>> {
        count_statement();
        let stmt = self.statement(sql)?;
        Ok(self.tx.borrow_mut().query(&stmt, params)?)
    }

    fn row(&self, sql: &'static str, params: Params) -> Result<Option<Row>> {
        count_statement();
        let stmt = self.statement(sql)?;
        Ok(self.tx.borrow_mut().query_opt(&stmt, params)?)
    }
}

impl Columns for Row {
    fn int(&self, name: &str) -> Result<i64> {
        Ok(self.try_get(name)?)
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>> {
        Ok(self.try_get(name)?)
    }
    fn text(&self, name: &str) -> Result<String> {
        Ok(self.try_get(name)?)
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>> {
        Ok(self.try_get(name)?)
    }
}

fn ids(rows: Vec<Row>) -> Result<Vec<i64>> {
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

impl Ops for Postgres<'_> {
    fn insert_flow(&self, f: &NewFlow) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO flows (id, spec, recipient, state, step, attempt, wake_at, created_ms, expires_ms, callback_url, lane) VALUES ($1, $2, $3, 'ready', 0, 1, $4, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[&f.id, &f.spec, &f.customer, &f.now_ms, &f.expires_ms, &f.callback_url, &f.lane],
        )?;
        Ok(n == 1)
    }

    fn flow_spec(&self, id: &str) -> Result<Option<String>> {
        self.row("SELECT spec FROM flows WHERE id = $1", &[&id])?
            .map(|r| Ok(r.try_get("spec")?))
            .transpose()
    }

    fn lock_flow(&self, id: &str) -> Result<Option<FlowRecord>> {
        self.row(
            "SELECT id, spec, state, step, attempt, expires_ms, current_attempt, callback_url, recipient FROM flows WHERE id = $1 FOR UPDATE",
            &[&id],
        )?
        .map(|r| FlowRecord::read(&r, "id", "attempt"))
        .transpose()
    }

    fn flow_state(&self, id: &str) -> Result<Option<FlowState>> {
        self.row("SELECT state FROM flows WHERE id = $1", &[&id])?
            .map(|r| flow_state(r.try_get("state")?))
            .transpose()
    }

    fn set_flow_state(
        &self,
        id: &str,
        state: FlowState,
        wake_at: Option<i64>,
        lane: Option<&str>,
    ) -> Result<()> {
        self.exec(
            "UPDATE flows SET state = $2, wake_at = $3, lane = $4 WHERE id = $1",
            &[&id, &state.as_str(), &wake_at, &lane],
        )?;
        Ok(())
    }

    fn clear_wake(&self, id: &str) -> Result<()> {
        self.exec(
            "UPDATE flows SET wake_at = NULL, lane = NULL WHERE id = $1",
            &[&id],
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
            "UPDATE flows SET state = 'waiting_retry', attempt = $2, wake_at = $3, lane = $4 WHERE id = $1",
            &[&id, &attempt, &wake_at, &lane],
        )?;
        Ok(())
    }

    fn advance_step(&self, id: &str, step: i64, wake_at: i64, lane: &str) -> Result<()> {
        self.exec(
            "UPDATE flows SET step = $2, attempt = 1, state = 'ready', wake_at = $3, lane = $4, current_attempt = NULL WHERE id = $1",
            &[&id, &step, &wake_at, &lane],
        )?;
        Ok(())
    }

    fn exhaust(&self, id: &str, step: i64) -> Result<()> {
        self.exec(
            "UPDATE flows SET step = $2, state = 'exhausted', wake_at = NULL, lane = NULL, current_attempt = NULL WHERE id = $1",
            &[&id, &step],
        )?;
        Ok(())
    }

    fn due_flows(&self, lane: &str, now: i64, limit: i64) -> Result<Vec<String>> {
        // Other nodes skip the rows this transaction holds.
        self.rows(
            "SELECT id FROM flows WHERE lane = $1 AND wake_at IS NOT NULL AND wake_at <= $2 ORDER BY wake_at LIMIT $3 FOR UPDATE SKIP LOCKED",
            &[&lane, &now, &limit],
        )?
        .iter()
        .map(|r| Ok(r.try_get("id")?))
        .collect()
    }

    fn lease_flow(&self, id: &str, attempt_id: i64, owner: &str, until: i64) -> Result<()> {
        self.exec(
            "UPDATE flows SET state = 'sending', wake_at = NULL, lane = NULL, current_attempt = $2, lease_owner = $3, lease_until = $4 WHERE id = $1",
            &[&id, &attempt_id, &owner, &until],
        )?;
        Ok(())
    }

    fn flows_of_customer(&self, customer: &str) -> Result<Vec<(String, FlowState)>> {
        self.rows(
            "SELECT id, state FROM flows WHERE recipient = $1",
            &[&customer],
        )?
        .iter()
        .map(|r| Ok((r.try_get("id")?, flow_state(r.try_get("state")?)?)))
        .collect()
    }

    fn state_counts(&self) -> Result<Vec<(FlowState, u64)>> {
        self.rows("SELECT state, count(*) AS n FROM flows GROUP BY state", &[])?
            .iter()
            .map(|r| {
                let n: i64 = r.try_get("n")?;
                Ok((flow_state(r.try_get("state")?)?, n.max(0) as u64))
            })
            .collect()
    }

    fn accepted_sends(&self) -> Result<Vec<(i64, i64)>> {
        self.rows(
            "SELECT f.created_ms, a.recorded_ms FROM flows f JOIN attempts a ON a.flow_id = f.id WHERE a.disposition = 'accepted' AND a.recorded_ms IS NOT NULL",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.try_get("created_ms")?, r.try_get("recorded_ms")?)))
        .collect()
    }

    fn flow_view(&self, id: &str) -> Result<Option<FlowView>> {
        let Some(flow) = self.row("SELECT spec, state, step FROM flows WHERE id = $1", &[&id])?
        else {
            return Ok(None);
        };
        let attempts = self
            .rows(
                "SELECT id, channel, attempt, provider_message_id, sent_ms, disposition, reason, provider_code, status, closed, possible_duplicate, correlation_id, phase FROM attempts WHERE flow_id = $1 ORDER BY id",
                &[&id],
            )?
            .iter()
            .map(|r| AttemptView::read(r))
            .collect::<Result<_>>()?;
        let timeline = self
            .rows(
                "SELECT at_ms, attempt_id, entry FROM timeline WHERE flow_id = $1 ORDER BY id",
                &[&id],
            )?
            .iter()
            .map(|r| TimelineEntry::read(r))
            .collect::<Result<_>>()?;
        Ok(Some(FlowView {
            id: id.to_string(),
            spec: flow.try_get("spec")?,
            state: flow.try_get("state")?,
            step: flow.try_get("step")?,
            attempts,
            timeline,
        }))
    }

    fn insert_attempt(&self, a: &NewAttempt) -> Result<i64> {
        let row = self.row(
            "INSERT INTO attempts (flow_id, step, channel, attempt, correlation_id, phase, slot_ms, sent_ms) VALUES ($1, $2, $3, $4, $5, 'claimed', $6, $6) RETURNING id",
            &[&a.flow_id, &a.step, &a.channel, &a.attempt, &a.correlation_id, &a.slot_ms],
        )?;
        match row {
            Some(r) => Ok(r.try_get("id")?),
            None => bail!("inserting an attempt returned no id"),
        }
    }

    fn lock_attempt_and_flow(
        &self,
        id: i64,
        flow_id: Option<&str>,
    ) -> Result<Option<(Option<FlowRecord>, AttemptRecord)>> {
        // An attempt's flow never changes: finding it needs no lock. Then the flow's row,
        // then the attempt's: the one order every transition takes.
        let flow_id = match flow_id {
            Some(f) => f.to_string(),
            None => match self.attempt_flow(id)? {
                Some(f) => f,
                None => return Ok(None),
            },
        };
        let flow = self.lock_flow(&flow_id)?;
        Ok(self.lock_attempt(id)?.map(|a| (flow, a)))
    }

    fn stranded_attempts(&self, now: i64) -> Result<Vec<i64>> {
        ids(self.rows(
            "SELECT a.id FROM attempts a JOIN flows f ON f.current_attempt = a.id WHERE a.phase <> 'recorded' AND f.lease_until < $1 ORDER BY f.id FOR UPDATE OF f SKIP LOCKED",
            &[&now],
        )?)
    }

    fn mark_sending(&self, id: i64, lease_needed_until: i64) -> Result<bool> {
        let n = self.exec(
            "UPDATE attempts SET phase = 'sending' WHERE id = $1 AND phase = 'claimed' AND EXISTS (SELECT 1 FROM flows f WHERE f.id = attempts.flow_id AND f.current_attempt = attempts.id AND f.lease_until > $2)",
            &[&id, &lease_needed_until],
        )?;
        Ok(n == 1)
    }

    fn record_answer(&self, id: i64, a: &Answer) -> Result<()> {
        self.exec(
            "UPDATE attempts SET phase = 'recorded', disposition = $2, reason = $3, provider_code = $4, provider_message_id = coalesce(provider_message_id, $5), recorded_ms = $6 WHERE id = $1",
            &[&id, &a.disposition, &a.reason, &a.provider_code, &a.message_id, &a.at_ms],
        )?;
        Ok(())
    }

    fn close_step_attempts(&self, flow_id: &str, step: i64) -> Result<()> {
        self.exec(
            "UPDATE attempts SET closed = 1 WHERE flow_id = $1 AND step = $2",
            &[&flow_id, &step],
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
            "SELECT id, flow_id FROM attempts WHERE channel = $1 AND provider_message_id = $2 UNION ALL SELECT id, flow_id FROM attempts WHERE channel = $1 AND correlation_id = $3 AND provider_message_id IS NULL ORDER BY id LIMIT 1",
            &[&channel, &message_id, &correlation_id],
        )?
        .map(|r| Ok((r.try_get("id")?, r.try_get("flow_id")?)))
        .transpose()
    }

    fn adopt_message_id(&self, id: i64, message_id: &str) -> Result<bool> {
        let n = self.exec(
            "UPDATE attempts SET provider_message_id = $2 WHERE id = $1 AND provider_message_id IS NULL",
            &[&id, &message_id],
        )?;
        Ok(n == 1)
    }

    fn raise_status(&self, id: i64, s: &StatusRaise) -> Result<bool> {
        let n = self.exec(
            "UPDATE attempts SET precedence = $2, status = $3, status_disposition = $4 WHERE id = $1 AND precedence < $2",
            &[&id, &s.precedence, &s.status, &s.disposition],
        )?;
        Ok(n == 1)
    }

    fn mark_possible_duplicate(&self, id: i64) -> Result<()> {
        self.exec(
            "UPDATE attempts SET possible_duplicate = 1 WHERE id = $1",
            &[&id],
        )?;
        Ok(())
    }

    fn add_notes(&self, notes: &[NewNote]) -> Result<()> {
        if notes.is_empty() {
            return Ok(());
        }
        let flows: Vec<&str> = notes.iter().map(|n| n.flow_id.as_str()).collect();
        let at: Vec<i64> = notes.iter().map(|n| n.at_ms).collect();
        let attempts: Vec<Option<i64>> = notes.iter().map(|n| n.attempt_id).collect();
        let entries: Vec<&str> = notes.iter().map(|n| n.entry.as_str()).collect();
        // One statement whatever the count; rows keep their order (and so their ids).
        self.exec(
            "INSERT INTO timeline (flow_id, at_ms, attempt_id, entry) SELECT f, a, t, e FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[]) WITH ORDINALITY AS n(f, a, t, e, i) ORDER BY i",
            &[&flows, &at, &attempts, &entries],
        )?;
        Ok(())
    }

    fn enqueue_callbacks(&self, callbacks: &[NewCallback]) -> Result<()> {
        if callbacks.is_empty() {
            return Ok(());
        }
        let column =
            |f: fn(&NewCallback) -> &str| -> Vec<&str> { callbacks.iter().map(f).collect() };
        let (events, flows) = (column(|c| &c.event_id), column(|c| &c.flow_id));
        let (urls, bodies) = (column(|c| &c.url), column(|c| &c.body));
        let next: Vec<i64> = callbacks.iter().map(|c| c.next_at).collect();
        self.exec(
            "INSERT INTO outbox (event_id, flow_id, url, body, next_at) SELECT e, f, u, b, n FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) WITH ORDINALITY AS c(e, f, u, b, n, i) ORDER BY i",
            &[&events, &flows, &urls, &bodies, &next],
        )?;
        Ok(())
    }

    fn lease_due_callbacks(
        &self,
        now: i64,
        limit: i64,
        lease_until: i64,
    ) -> Result<Vec<OutboxItem>> {
        self.rows(
            "UPDATE outbox SET next_at = $3 WHERE id IN (SELECT id FROM outbox WHERE next_at IS NOT NULL AND next_at <= $1 ORDER BY next_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, event_id, flow_id, url, body, tries",
            &[&now, &limit, &lease_until],
        )?
        .iter()
        .map(|r| OutboxItem::read(r))
        .collect()
    }

    fn callbacks_delivered(&self, ids: &[i64], at: i64) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.exec(
            "UPDATE outbox SET delivered_ms = $1, next_at = NULL, tries = tries + 1 WHERE id = ANY($2)",
            &[&at, &ids],
        )?;
        Ok(())
    }

    fn callback_failed(&self, id: i64, next_at: Option<i64>, error: &str) -> Result<()> {
        self.exec(
            "UPDATE outbox SET next_at = $2, tries = tries + 1, last_error = $3 WHERE id = $1",
            &[&id, &next_at, &error],
        )?;
        Ok(())
    }

    fn insert_tenant(&self, t: &TenantRecord) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO tenants (id, name, created_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&t.id, &t.name, &t.created_ms],
        )?;
        Ok(n == 1)
    }

    fn rename_tenant(&self, id: &str, name: &str) -> Result<bool> {
        let n = self.exec("UPDATE tenants SET name = $2 WHERE id = $1", &[&id, &name])?;
        Ok(n == 1)
    }

    fn tenant(&self, id: &str) -> Result<Option<TenantRecord>> {
        self.row(
            "SELECT id, name, created_ms FROM tenants WHERE id = $1",
            &[&id],
        )?
        .map(|r| TenantRecord::read(&r))
        .transpose()
    }

    fn tenants(&self) -> Result<Vec<TenantRecord>> {
        self.rows("SELECT id, name, created_ms FROM tenants ORDER BY id", &[])?
            .iter()
            .map(|r| TenantRecord::read(r))
            .collect()
    }

    fn insert_token(&self, t: &TokenRecord, hash: &str) -> Result<()> {
        self.exec(
            "INSERT INTO api_tokens (id, tenant_id, hash, label, created_ms) VALUES ($1, $2, $3, $4, $5)",
            &[&t.id, &t.tenant_id, &hash, &t.label, &t.created_ms],
        )?;
        Ok(())
    }

    fn revoke_token(&self, tenant: &str, id: &str, at: i64) -> Result<bool> {
        let n = self.exec(
            "UPDATE api_tokens SET revoked_ms = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_ms IS NULL",
            &[&tenant, &id, &at],
        )?;
        Ok(n == 1)
    }

    fn token_tenant(&self, hash: &str) -> Result<Option<String>> {
        self.row(
            "SELECT tenant_id FROM api_tokens WHERE hash = $1 AND revoked_ms IS NULL",
            &[&hash],
        )?
        .map(|r| Ok(r.try_get("tenant_id")?))
        .transpose()
    }

    fn tokens(&self, tenant: &str) -> Result<Vec<TokenRecord>> {
        self.rows(
            "SELECT id, tenant_id, label, created_ms, revoked_ms FROM api_tokens WHERE tenant_id = $1 ORDER BY created_ms, id",
            &[&tenant],
        )?
        .iter()
        .map(|r| TokenRecord::read(r))
        .collect()
    }

    fn vault_check(&self) -> Result<Option<String>> {
        self.row("SELECT check_value FROM vault_check WHERE id = 1", &[])?
            .map(|r| Ok(r.try_get("check_value")?))
            .transpose()
    }

    fn set_vault_check(&self, check: &str) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO vault_check (id, check_value) VALUES (1, $1) ON CONFLICT DO NOTHING",
            &[&check],
        )?;
        Ok(n == 1)
    }

    fn any_sealed_secret(&self) -> Result<bool> {
        Ok(self
            .row("SELECT 1 AS one FROM tenant_secrets LIMIT 1", &[])?
            .is_some())
    }

    fn put_tenant_secret(&self, tenant: &str, name: &str, sealed: &str, at: i64) -> Result<()> {
        self.exec(
            "INSERT INTO tenant_secrets (tenant_id, name, sealed, updated_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, name) DO UPDATE SET sealed = excluded.sealed, updated_ms = excluded.updated_ms",
            &[&tenant, &name, &sealed, &at],
        )?;
        Ok(())
    }

    fn tenant_secret(&self, tenant: &str, name: &str) -> Result<Option<String>> {
        self.row(
            "SELECT sealed FROM tenant_secrets WHERE tenant_id = $1 AND name = $2",
            &[&tenant, &name],
        )?
        .map(|r| Ok(r.try_get("sealed")?))
        .transpose()
    }

    fn tenant_secrets_under(&self, tenant: &str, prefix: &str) -> Result<Vec<(String, String)>> {
        self.rows(
            "SELECT name, sealed FROM tenant_secrets WHERE tenant_id = $1 AND left(name, length($2)) = $2 ORDER BY name",
            &[&tenant, &prefix],
        )?
        .iter()
        .map(|r| Ok((r.try_get("name")?, r.try_get("sealed")?)))
        .collect()
    }

    fn add_catalog_document(
        &self,
        tenant: &str,
        channel: &str,
        document: &str,
        at: i64,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO catalog_documents (tenant_id, channel, document, at_ms) VALUES ($1, $2, $3, $4)",
            &[&tenant, &channel, &document, &at],
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
            "SELECT id, document FROM catalog_documents WHERE tenant_id = $1 AND channel = $2 AND id > $3 ORDER BY id",
            &[&tenant, &channel, &after],
        )?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("document")?)))
        .collect()
    }

    fn account_owner(&self, channel: &str, account_id: &str) -> Result<Option<String>> {
        self.row(
            "SELECT tenant_id FROM channel_accounts WHERE channel = $1 AND account_id = $2",
            &[&channel, &account_id],
        )?
        .map(|r| Ok(r.try_get("tenant_id")?))
        .transpose()
    }

    fn put_account(&self, a: &AccountRecord) -> Result<()> {
        self.exec(
            "INSERT INTO channel_accounts (tenant_id, channel, account_id, settings, state, updated_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, channel) DO UPDATE SET account_id = excluded.account_id, settings = excluded.settings, state = excluded.state, updated_ms = excluded.updated_ms",
            &[&a.tenant_id, &a.channel, &a.account_id, &a.settings, &a.state, &a.updated_ms],
        )?;
        Ok(())
    }

    fn account(&self, tenant: &str, channel: &str) -> Result<Option<AccountRecord>> {
        self.row(
            "SELECT tenant_id, channel, account_id, settings, state, updated_ms, facts, recipient_limit, checked_ms FROM channel_accounts WHERE tenant_id = $1 AND channel = $2",
            &[&tenant, &channel],
        )?
        .map(|r| AccountRecord::read(&r))
        .transpose()
    }

    fn lock_account_limit(&self, tenant: &str, channel: &str) -> Result<Option<Option<i64>>> {
        // Locked: two nodes booking the last customer of the budget take turns.
        self.row(
            "SELECT recipient_limit, checked_ms FROM channel_accounts WHERE tenant_id = $1 AND channel = $2 FOR UPDATE",
            &[&tenant, &channel],
        )?
        .map(|r| {
            let checked: Option<i64> = r.try_get("checked_ms")?;
            let limit: Option<i64> = r.try_get("recipient_limit")?;
            Ok(checked.and(limit))
        })
        .transpose()
    }

    fn set_account_limit(
        &self,
        channel: &str,
        account_id: &str,
        limit: Option<i64>,
        at: i64,
    ) -> Result<()> {
        self.exec(
            "UPDATE channel_accounts SET recipient_limit = $3, checked_ms = COALESCE(checked_ms, $4) WHERE channel = $1 AND account_id = $2",
            &[&channel, &account_id, &limit, &at],
        )?;
        Ok(())
    }

    fn prune_initiated(&self, tenant: &str, channel: &str, before: i64) -> Result<()> {
        self.exec(
            "DELETE FROM initiated_customers WHERE tenant_id = $1 AND channel = $2 AND last_ms < $3",
            &[&tenant, &channel, &before],
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
                "SELECT 1 FROM initiated_customers WHERE tenant_id = $1 AND channel = $2 AND customer = $3 AND last_ms >= $4",
                &[&tenant, &channel, &customer, &since],
            )?
            .is_some())
    }

    fn count_initiated(&self, tenant: &str, channel: &str, since: i64) -> Result<i64> {
        let row = self.row(
            "SELECT COUNT(*) AS n FROM initiated_customers WHERE tenant_id = $1 AND channel = $2 AND last_ms >= $3",
            &[&tenant, &channel, &since],
        )?;
        Ok(match row {
            Some(r) => r.try_get("n")?,
            None => 0,
        })
    }

    fn note_initiated(&self, tenant: &str, channel: &str, customer: &str, at: i64) -> Result<()> {
        self.exec(
            "INSERT INTO initiated_customers (tenant_id, channel, customer, last_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, channel, customer) DO UPDATE SET last_ms = GREATEST(initiated_customers.last_ms, excluded.last_ms)",
            &[&tenant, &channel, &customer, &at],
        )?;
        Ok(())
    }

    fn accounts_on(&self, channel: &str) -> Result<Vec<AccountRecord>> {
        self.rows(
            "SELECT tenant_id, channel, account_id, settings, state, updated_ms, facts, recipient_limit, checked_ms FROM channel_accounts WHERE channel = $1 ORDER BY tenant_id",
            &[&channel],
        )?
        .iter()
        .map(|r| AccountRecord::read(r))
        .collect()
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
            "UPDATE channel_accounts SET facts = $3, recipient_limit = $4, checked_ms = $5 WHERE tenant_id = $1 AND channel = $2",
            &[&tenant, &channel, &facts, &recipient_limit, &at],
        )?;
        Ok(())
    }

    fn sender_owner(&self, channel: &str, sender_id: &str) -> Result<Option<String>> {
        self.row(
            "SELECT tenant_id FROM channel_senders WHERE channel = $1 AND sender_id = $2",
            &[&channel, &sender_id],
        )?
        .map(|r| Ok(r.try_get("tenant_id")?))
        .transpose()
    }

    fn put_sender(&self, s: &SenderRecord) -> Result<()> {
        self.exec(
            "INSERT INTO channel_senders (channel, sender_id, tenant_id, account_id, display_address, messages_per_second, facts, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (channel, sender_id) DO UPDATE SET tenant_id = excluded.tenant_id, account_id = excluded.account_id, display_address = excluded.display_address, messages_per_second = excluded.messages_per_second, facts = excluded.facts, updated_ms = excluded.updated_ms",
            &[&s.channel, &s.sender_id, &s.tenant_id, &s.account_id, &s.display_address, &s.messages_per_second, &s.facts, &s.updated_ms],
        )?;
        Ok(())
    }

    fn all_senders(&self) -> Result<Vec<SenderRecord>> {
        self.rows(
            "SELECT channel, sender_id, tenant_id, account_id, display_address, messages_per_second, facts, updated_ms FROM channel_senders ORDER BY channel, sender_id",
            &[],
        )?
        .iter()
        .map(|r| SenderRecord::read(r))
        .collect()
    }

    fn senders(&self, tenant: &str, channel: &str) -> Result<Vec<SenderRecord>> {
        self.rows(
            "SELECT channel, sender_id, tenant_id, account_id, display_address, messages_per_second, facts, updated_ms FROM channel_senders WHERE tenant_id = $1 AND channel = $2 ORDER BY sender_id",
            &[&tenant, &channel],
        )?
        .iter()
        .map(|r| SenderRecord::read(r))
        .collect()
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
            "INSERT INTO channel_templates (channel, account_id, tenant_id, name, language, status, category, template_id, definition, synced_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (channel, account_id, name, language) DO UPDATE SET tenant_id = excluded.tenant_id, status = excluded.status, category = excluded.category, template_id = excluded.template_id, definition = excluded.definition, synced_ms = excluded.synced_ms",
            &[&channel, &account_id, &tenant, &t.name, &t.language, &t.status, &t.category, &t.template_id, &t.definition, &at],
        )?;
        Ok(())
    }

    fn delete_templates_before(&self, channel: &str, account_id: &str, before: i64) -> Result<u64> {
        let n = self.exec(
            "DELETE FROM channel_templates WHERE channel = $1 AND account_id = $2 AND synced_ms < $3",
            &[&channel, &account_id, &before],
        )?;
        Ok(n)
    }

    fn change_template(&self, channel: &str, account_id: &str, c: &TemplateChange) -> Result<bool> {
        // As on SQLite: by id when a known one is named, else by name and language.
        let n = self.exec(
            "UPDATE channel_templates SET status = COALESCE($6::text, status), category = COALESCE($7::text, category) WHERE channel = $1 AND account_id = $2 AND (($3::text IS NOT NULL AND template_id = $3::text) OR (name = $4::text AND ($5::text IS NULL OR language = $5::text) AND NOT ($3::text IS NOT NULL AND EXISTS (SELECT 1 FROM channel_templates t WHERE t.channel = $1 AND t.account_id = $2 AND t.template_id = $3::text))))",
            &[&channel, &account_id, &c.template_id, &c.name, &c.language, &c.status, &c.category],
        )?;
        Ok(n > 0)
    }

    fn templates(&self, channel: &str, account_id: &str) -> Result<Vec<TemplateRecord>> {
        self.rows(
            "SELECT name, language, status, category, template_id, definition FROM channel_templates WHERE channel = $1 AND account_id = $2 ORDER BY name, language",
            &[&channel, &account_id],
        )?
        .iter()
        .map(|r| TemplateRecord::read(r))
        .collect()
    }

    fn route(
        &self,
        channel: &str,
        account_id: Option<&str>,
        sender_id: Option<&str>,
    ) -> Result<RouteRow> {
        let row = self.row(
            "SELECT (SELECT tenant_id FROM channel_senders WHERE channel = $1 AND sender_id = $2::text) AS by_sender, (SELECT tenant_id FROM channel_accounts WHERE channel = $1 AND account_id = $3::text) AS by_account, EXISTS (SELECT 1 FROM channel_accounts WHERE channel = $1 AND tenant_id = 'default') AS default_named",
            &[&channel, &sender_id, &account_id],
        )?;
        Ok(match row {
            Some(r) => RouteRow {
                by_sender: r.try_get("by_sender")?,
                by_account: r.try_get("by_account")?,
                default_named: r.try_get("default_named")?,
            },
            None => RouteRow::default(),
        })
    }

    fn count_unrouted(&self, channel: &str, account_id: &str, at: i64) -> Result<()> {
        self.exec(
            "INSERT INTO unrouted_events (channel, account_id, events, last_ms) VALUES ($1, $2, 1, $3) ON CONFLICT (channel, account_id) DO UPDATE SET events = unrouted_events.events + 1, last_ms = excluded.last_ms",
            &[&channel, &account_id, &at],
        )?;
        Ok(())
    }

    fn unrouted(&self, channel: &str) -> Result<Vec<(String, i64)>> {
        self.rows(
            "SELECT account_id, events FROM unrouted_events WHERE channel = $1 ORDER BY account_id",
            &[&channel],
        )?
        .iter()
        .map(|r| Ok((r.try_get("account_id")?, r.try_get("events")?)))
        .collect()
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
            "UPDATE channel_accounts SET state = $4, updated_ms = $5 WHERE tenant_id = $1 AND channel = $2 AND state = $3",
            &[&tenant, &channel, &from, &to, &at],
        )?;
        Ok(n == 1)
    }

    fn first_sight(&self, key: &str, at: i64) -> Result<bool> {
        // Two nodes seeing one key at once: the second waits for the first's commit on it.
        let n = self.exec(
            "INSERT INTO seen_events (dedupe_key, at_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&key, &at],
        )?;
        Ok(n == 1)
    }

    fn note_inbound(&self, channel: &str, customer: &str, at: i64) -> Result<()> {
        self.exec(
            "INSERT INTO inbound (channel, customer, last_ms) VALUES ($1, $2, $3) ON CONFLICT (channel, customer) DO UPDATE SET last_ms = GREATEST(excluded.last_ms, inbound.last_ms)",
            &[&channel, &customer, &at],
        )?;
        Ok(())
    }

    fn last_inbound(&self, channel: &str, customer: &str) -> Result<Option<i64>> {
        self.row(
            "SELECT last_ms FROM inbound WHERE channel = $1 AND customer = $2",
            &[&channel, &customer],
        )?
        .map(|r| Ok(r.try_get("last_ms")?))
        .transpose()
    }

    fn opted_out(&self, channel: &str, customer: &str) -> Result<Vec<String>> {
        self.rows(
            "SELECT category FROM opt_outs WHERE channel = $1 AND customer = $2 ORDER BY category",
            &[&channel, &customer],
        )?
        .iter()
        .map(|r| Ok(r.try_get("category")?))
        .collect()
    }

    fn add_opt_out(&self, channel: &str, customer: &str, category: &str, since: i64) -> Result<()> {
        self.exec(
            "INSERT INTO opt_outs (channel, customer, category, since_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&channel, &customer, &category, &since],
        )?;
        Ok(())
    }

    fn remove_opt_out(&self, channel: &str, customer: &str, category: &str) -> Result<()> {
        self.exec(
            "DELETE FROM opt_outs WHERE channel = $1 AND customer = $2 AND category = $3",
            &[&channel, &customer, &category],
        )?;
        Ok(())
    }

    fn rekey_customer(&self, channel: &str, old: &str, new: &str) -> Result<()> {
        // Where the new id already has a row, it wins (it is the newer news).
        self.exec(
            "UPDATE inbound SET customer = $3 WHERE channel = $1 AND customer = $2 AND NOT EXISTS (SELECT 1 FROM inbound n WHERE n.channel = $1 AND n.customer = $3)",
            &[&channel, &old, &new],
        )?;
        self.exec(
            "UPDATE opt_outs SET customer = $3 WHERE channel = $1 AND customer = $2 AND NOT EXISTS (SELECT 1 FROM opt_outs n WHERE n.channel = $1 AND n.customer = $3 AND n.category = opt_outs.category)",
            &[&channel, &old, &new],
        )?;
        Ok(())
    }

    fn lock_pacing(&self, key: &str) -> Result<i64> {
        self.exec(
            "INSERT INTO pacing (key, next_us) VALUES ($1, 0) ON CONFLICT DO NOTHING",
            &[&key],
        )?;
        match self.row(
            "SELECT next_us FROM pacing WHERE key = $1 FOR UPDATE",
            &[&key],
        )? {
            Some(r) => Ok(r.try_get("next_us")?),
            None => bail!("the pacing row {key:?} vanished"),
        }
    }

    fn set_pacing(&self, key: &str, next_us: i64) -> Result<()> {
        self.exec(
            "UPDATE pacing SET next_us = $2 WHERE key = $1",
            &[&key, &next_us],
        )?;
        Ok(())
    }

    fn raise_pacing(&self, key: &str, next_us: i64) -> Result<()> {
        self.exec(
            "UPDATE pacing SET next_us = GREATEST(next_us, $2) WHERE key = $1",
            &[&key, &next_us],
        )?;
        Ok(())
    }
}
