//! The two databases behind the flow store, behind one small interface: SQLite (embedded, one
//! node) and PostgreSQL (several nodes). The store's SQL is written once, with `?N`
//! placeholders, `INSERT OR IGNORE` and `RETURNING`; for PostgreSQL the placeholders become
//! `$N` and `INSERT OR IGNORE` becomes `ON CONFLICT DO NOTHING`. Rows are read into plain
//! values, so store code never sees a driver type. Schemas are versioned migrations
//! (`host/migrations/{sqlite,postgres}`) applied at open by refinery.

use anyhow::{Context, Result, anyhow, bail};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Statements and transactions this process ran against its store (each statement is one
/// round trip to PostgreSQL; a transaction adds two, BEGIN and COMMIT). `GET /health`
/// reports them, so a bench can divide by the flows it ran.
pub static STATEMENTS: AtomicU64 = AtomicU64::new(0);
pub static TRANSACTIONS: AtomicU64 = AtomicU64::new(0);

mod sqlite_migrations {
    refinery::embed_migrations!("migrations/sqlite");
}
mod postgres_migrations {
    refinery::embed_migrations!("migrations/postgres");
}

/// Which database a store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
}

/// What may be bound to a placeholder (taken by reference, so values stay usable).
pub trait ToArg {
    fn to_arg(&self) -> Arg;
}

impl ToArg for i64 {
    fn to_arg(&self) -> Arg {
        Arg::Int(Some(*self))
    }
}
impl ToArg for u32 {
    fn to_arg(&self) -> Arg {
        Arg::Int(Some(i64::from(*self)))
    }
}
impl ToArg for u8 {
    fn to_arg(&self) -> Arg {
        Arg::Int(Some(i64::from(*self)))
    }
}
impl ToArg for Option<i64> {
    fn to_arg(&self) -> Arg {
        Arg::Int(*self)
    }
}
impl ToArg for str {
    fn to_arg(&self) -> Arg {
        Arg::Text(Some(self.to_string()))
    }
}
impl ToArg for String {
    fn to_arg(&self) -> Arg {
        Arg::Text(Some(self.clone()))
    }
}
impl ToArg for Option<String> {
    fn to_arg(&self) -> Arg {
        Arg::Text(self.clone())
    }
}
impl ToArg for Option<&str> {
    fn to_arg(&self) -> Arg {
        Arg::Text(self.map(str::to_string))
    }
}
impl<T: ToArg + ?Sized> ToArg for &T {
    fn to_arg(&self) -> Arg {
        (**self).to_arg()
    }
}

/// Placeholder values: `args![a, b, c]` (each taken by reference).
#[macro_export]
macro_rules! args {
    ($($e:expr),* $(,)?) => { &[$($crate::flow::store::db::ToArg::to_arg(&$e)),*][..] };
}

/// One column value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// One result row, read out of the driver.
#[derive(Debug, Clone)]
pub struct Row(Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> Result<&Cell> {
        self.0
            .get(i)
            .ok_or_else(|| anyhow!("the query has no column {i}"))
    }

    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| anyhow!("column {i} is NULL, an integer was expected"))
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(*v)),
            Cell::Text(t) => bail!("column {i} is text {t:?}, an integer was expected"),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| anyhow!("column {i} is NULL, text was expected"))
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.cell(i)? {
            Cell::Null => Ok(None),
            Cell::Text(t) => Ok(Some(t.clone())),
            Cell::Int(v) => bail!("column {i} is the integer {v}, text was expected"),
        }
    }
}

/// The store's SQL in PostgreSQL's dialect.
fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 24);
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    if let Some(rest) = out.strip_prefix("INSERT OR IGNORE INTO") {
        return format!("INSERT INTO{rest} ON CONFLICT DO NOTHING");
    }
    out
}

/// A PostgreSQL connection with its prepared statements; reconnects when the server went away.
pub struct PgConn {
    url: String,
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // Closing blocks on the driver's runtime: never on a thread that drives tasks.
        if let Some(client) = self.client.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            std::thread::spawn(move || drop(client));
        }
    }
}

impl PgConn {
    fn ensure_connected(&mut self) -> Result<()> {
        if self.client.as_ref().is_none_or(postgres::Client::is_closed) {
            // Statements belong to the connection that prepared them.
            self.statements.clear();
            self.client = None;
            self.client = Some(connect(&self.url)?);
        }
        Ok(())
    }
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

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// One database connection.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgConn>),
}

impl Conn {
    /// Opens (creating if needed) and migrates: `postgres://…` or `postgresql://…` is
    /// PostgreSQL, anything else a SQLite file (`:memory:` in memory).
    pub fn open(location: &str) -> Result<Conn> {
        if is_postgres_url(location) {
            let mut client = connect(location)?;
            postgres_migrations::migrations::runner()
                .run(&mut client)
                .context("applying the PostgreSQL migrations")?;
            return Ok(Conn::Postgres(Box::new(PgConn {
                url: location.to_string(),
                client: Some(client),
                statements: HashMap::new(),
            })));
        }
        let mut conn = rusqlite::Connection::open(location)
            .with_context(|| format!("opening the flow database {location}"))?;
        // `flow status` reads the file while `serve` writes it: wait for locks, don't fail.
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL").ok();
        // WAL + NORMAL: a committed transaction survives the process being killed.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        sqlite_migrations::migrations::runner()
            .run(&mut conn)
            .with_context(|| format!("applying the SQLite migrations to {location}"))?;
        Ok(Conn::Sqlite(conn))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Conn::Sqlite(_) => Backend::Sqlite,
            Conn::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs `f` in one transaction, committed when `f` succeeds. A write transaction is
    /// `BEGIN IMMEDIATE` on SQLite (writers queue instead of failing) and read committed on
    /// PostgreSQL, with row locks where the SQL takes them; a read takes no write lock (SQLite:
    /// a deferred transaction, which in WAL mode runs beside the writer; PostgreSQL: read only).
    pub fn transaction<R>(&mut self, kind: TxKind, f: impl FnOnce(&Tx) -> Result<R>) -> Result<R> {
        TRANSACTIONS.fetch_add(1, Ordering::Relaxed);
        match self {
            Conn::Sqlite(conn) => {
                let behavior = match kind {
                    TxKind::Write => rusqlite::TransactionBehavior::Immediate,
                    TxKind::Read => rusqlite::TransactionBehavior::Deferred,
                };
                let tx = conn.transaction_with_behavior(behavior)?;
                let t = Tx {
                    inner: RefCell::new(TxInner::Sqlite(tx)),
                };
                let r = f(&t)?;
                match t.inner.into_inner() {
                    TxInner::Sqlite(tx) => tx.commit()?,
                    TxInner::Postgres { .. } => unreachable!(),
                }
                Ok(r)
            }
            Conn::Postgres(pg) => {
                pg.ensure_connected()?;
                let PgConn {
                    client, statements, ..
                } = &mut **pg;
                let client = client.as_mut().expect("connected above");
                let tx = client
                    .build_transaction()
                    .read_only(kind == TxKind::Read)
                    .start()?;
                let t = Tx {
                    inner: RefCell::new(TxInner::Postgres { tx, statements }),
                };
                let r = f(&t)?;
                match t.inner.into_inner() {
                    TxInner::Postgres { tx, .. } => tx.commit()?,
                    TxInner::Sqlite(_) => unreachable!(),
                }
                Ok(r)
            }
        }
    }
}

/// Whether a transaction writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    Write,
    Read,
}

pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

enum TxInner<'a> {
    Sqlite(rusqlite::Transaction<'a>),
    Postgres {
        tx: postgres::Transaction<'a>,
        statements: &'a mut HashMap<String, postgres::Statement>,
    },
}

/// One open transaction.
pub struct Tx<'a> {
    inner: RefCell<TxInner<'a>>,
}

fn sqlite_value(a: &Arg) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match a {
        Arg::Int(Some(v)) => Value::Integer(*v),
        Arg::Text(Some(t)) => Value::Text(t.clone()),
        Arg::Int(None) | Arg::Text(None) => Value::Null,
    }
}

fn sqlite_row(row: &rusqlite::Row, columns: usize) -> Result<Row> {
    use rusqlite::types::ValueRef;
    let mut cells = Vec::with_capacity(columns);
    for i in 0..columns {
        cells.push(match row.get_ref(i)? {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(v) => Cell::Int(v),
            ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Real(v) => Cell::Int(v as i64),
            ValueRef::Blob(_) => bail!("column {i} is a blob"),
        });
    }
    Ok(Row(cells))
}

fn postgres_row(row: &postgres::Row) -> Result<Row> {
    use postgres::types::Type;
    let mut cells = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let cell = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?
                .map_or(Cell::Null, Cell::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map_or(Cell::Null, |v| Cell::Int(i64::from(v)))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?
                .map_or(Cell::Null, |v| Cell::Int(i64::from(v)))
        } else {
            row.try_get::<_, Option<String>>(i)?
                .map_or(Cell::Null, Cell::Text)
        };
        cells.push(cell);
    }
    Ok(Row(cells))
}

impl Tx<'_> {
    /// Runs a statement; the number of rows it changed.
    pub fn exec(&self, sql: &str, args: &[Arg]) -> Result<u64> {
        STATEMENTS.fetch_add(1, Ordering::Relaxed);
        match &mut *self.inner.borrow_mut() {
            TxInner::Sqlite(tx) => {
                let mut stmt = tx.prepare_cached(sql)?;
                let n = stmt.execute(rusqlite::params_from_iter(args.iter().map(sqlite_value)))?;
                Ok(n as u64)
            }
            TxInner::Postgres { tx, statements } => {
                let stmt = pg_statement(tx, statements, sql)?;
                Ok(tx.execute(&stmt, &pg_params(args).refs())?)
            }
        }
    }

    /// Runs a query; every row.
    pub fn query(&self, sql: &str, args: &[Arg]) -> Result<Vec<Row>> {
        STATEMENTS.fetch_add(1, Ordering::Relaxed);
        match &mut *self.inner.borrow_mut() {
            TxInner::Sqlite(tx) => {
                let mut stmt = tx.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows =
                    stmt.query(rusqlite::params_from_iter(args.iter().map(sqlite_value)))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(sqlite_row(row, columns)?);
                }
                Ok(out)
            }
            TxInner::Postgres { tx, statements } => {
                let stmt = pg_statement(tx, statements, sql)?;
                tx.query(&stmt, &pg_params(args).refs())?
                    .iter()
                    .map(postgres_row)
                    .collect()
            }
        }
    }

    /// The first row, if any.
    pub fn query_opt(&self, sql: &str, args: &[Arg]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row; an error without one.
    pub fn query_one(&self, sql: &str, args: &[Arg]) -> Result<Row> {
        self.query_opt(sql, args)?
            .ok_or_else(|| anyhow!("the query returned no row: {sql}"))
    }
}

fn pg_statement(
    tx: &mut postgres::Transaction,
    statements: &mut HashMap<String, postgres::Statement>,
    sql: &str,
) -> Result<postgres::Statement> {
    if let Some(s) = statements.get(sql) {
        return Ok(s.clone());
    }
    let prepared = tx
        .prepare(&to_postgres(sql))
        .with_context(|| format!("preparing {sql}"))?;
    statements.insert(sql.to_string(), prepared.clone());
    Ok(prepared)
}

/// Owned PostgreSQL parameters.
struct PgParams(Vec<Box<dyn postgres::types::ToSql + Sync>>);

impl PgParams {
    fn refs(&self) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
        self.0.iter().map(|b| b.as_ref()).collect()
    }
}

fn pg_params(args: &[Arg]) -> PgParams {
    PgParams(
        args.iter()
            .map(|a| -> Box<dyn postgres::types::ToSql + Sync> {
                match a {
                    Arg::Int(v) => Box::new(*v),
                    Arg::Text(v) => Box::new(v.clone()),
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_is_translated_for_postgres() {
        assert_eq!(
            to_postgres("INSERT OR IGNORE INTO seen_events (k, at) VALUES (?1, ?2)"),
            "INSERT INTO seen_events (k, at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE b = ?12 AND c = '?'"),
            "SELECT a FROM t WHERE b = $12 AND c = '?'"
        );
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://flow:s3cret@db:5432/flows"),
            "postgres://flow@db:5432/flows"
        );
        assert_eq!(redact("postgres://db/flows"), "postgres://db/flows");
    }
}
