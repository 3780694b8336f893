//! One face for the two SQL databases the engine runs on, shaped like rusqlite's (which the
//! engine was first written against): `execute`, `query_row`, `prepare_cached(..).query_map`,
//! `.optional()`. Statements are written once, in the dialect both accept — `?N` parameters
//! (PostgreSQL gets `$N`), `ON CONFLICT` upserts, `CAST(.. AS BIGINT)`, no `MAX(a, b)` — so
//! the engine's logic is the same code whichever database holds the metadata.
//!
//! Values cross as four kinds (integer, text, bytes, NULL): every column of the schema is one
//! of them on both databases (PostgreSQL's are BIGINT, TEXT, BYTEA).

use super::postgres::PgConn;
use crate::store::{Result, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

pub trait ToValue {
    fn to_value(&self) -> Value;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Int(*self as i64)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl<const N: usize> ToValue for [u8; N] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, |v| v.to_value())
    }
}

/// What a statement's parameters can be given as: `params![a, b]`, `[x]`, `()`.
pub trait Params {
    fn values(&self) -> Vec<Value>;
}
impl Params for () {
    fn values(&self) -> Vec<Value> {
        vec![]
    }
}
impl Params for &[&dyn ToValue] {
    fn values(&self) -> Vec<Value> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl<T: ToValue, const N: usize> Params for [T; N] {
    fn values(&self) -> Vec<Value> {
        self.iter().map(|v| v.to_value()).collect()
    }
}

macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$(&$p as &dyn $crate::store::sql::db::ToValue),*] as &[&dyn $crate::store::sql::db::ToValue]
    };
}
pub(crate) use params;

pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self>;
}

fn wrong(v: &Value, want: &str) -> StoreError {
    StoreError::Db(format!("a column holds {v:?} where {want} was expected"))
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self> {
        match v {
            Value::Int(i) => Ok(*i),
            _ => Err(wrong(v, "an integer")),
        }
    }
}
impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
}
impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            _ => Err(wrong(v, "text")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: &Value) -> Result<Self> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            _ => Err(wrong(v, "bytes")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

pub trait RowIndex {
    fn index(self) -> usize;
}
impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One result row.
pub struct SqlRow(pub(super) Vec<Value>);

impl SqlRow {
    pub fn get<I: RowIndex, T: FromValue>(&self, i: I) -> Result<T> {
        let i = i.index();
        let v = self
            .0
            .get(i)
            .ok_or_else(|| StoreError::Db(format!("no column {i} in a row of {}", self.0.len())))?;
        T::from_value(v)
    }
}

/// A connection inside one transaction (the engine never runs a statement outside one).
pub enum Db<'a> {
    Sqlite(&'a rusqlite::Connection),
    Pg(&'a PgConn),
}

impl Db<'_> {
    /// The transaction's clock (µs since the epoch): on PostgreSQL the database's, read as a
    /// write's locks were had, so every server's writes agree on time; on SQLite (one machine)
    /// and in a read, this machine's.
    pub fn now(&self) -> i64 {
        match self {
            Db::Pg(c) => c.now(),
            Db::Sqlite(_) => None,
        }
        .unwrap_or_else(crate::api::timefmt::now_micros)
    }

    /// `FOR UPDATE` on PostgreSQL, where writers of different accounts run at once and a row
    /// they share is locked as it is read; nothing on SQLite (one writer).
    pub fn for_update(&self) -> &'static str {
        match self {
            Db::Pg(_) => " FOR UPDATE",
            Db::Sqlite(_) => "",
        }
    }

    fn rows(&self, sql: &str, p: Vec<Value>) -> Result<Vec<SqlRow>> {
        match self {
            Db::Sqlite(c) => super::sqlite::rows(c, sql, p),
            Db::Pg(c) => c.rows(sql, p),
        }
    }

    pub fn execute<P: Params>(&self, sql: &str, p: P) -> Result<usize> {
        match self {
            Db::Sqlite(c) => super::sqlite::execute(c, sql, p.values()),
            Db::Pg(c) => c.execute(sql, p.values()),
        }
    }

    /// Runs an `INSERT` into a table whose key is `id`, giving the new row's id.
    pub fn insert<P: Params>(&self, sql: &str, p: P) -> Result<i64> {
        match self {
            Db::Sqlite(c) => {
                super::sqlite::execute(c, sql, p.values())?;
                Ok(c.last_insert_rowid())
            }
            Db::Pg(c) => c
                .rows(&format!("{sql} RETURNING id"), p.values())?
                .first()
                .ok_or(StoreError::NoRow)?
                .get(0),
        }
    }

    /// Statements without parameters, `;`-separated.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Db::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Db::Pg(c) => c.batch(sql),
        }
    }

    /// The first row; [`StoreError::NoRow`] if there is none (`.optional()` makes it `None`).
    pub fn query_row<T, P: Params>(&self, sql: &str, p: P, f: impl FnOnce(&SqlRow) -> Result<T>) -> Result<T> {
        let rows = self.rows(sql, p.values())?;
        f(rows.first().ok_or(StoreError::NoRow)?)
    }

    pub fn prepare(&self, sql: &str) -> Result<Stmt<'_>> {
        Ok(Stmt {
            db: self,
            sql: sql.to_string(),
        })
    }

    /// (Both databases cache prepared statements by their text anyway.)
    pub fn prepare_cached(&self, sql: &str) -> Result<Stmt<'_>> {
        self.prepare(sql)
    }
}

pub struct Stmt<'a> {
    db: &'a Db<'a>,
    sql: String,
}

impl Stmt<'_> {
    pub fn execute<P: Params>(&mut self, p: P) -> Result<usize> {
        self.db.execute(&self.sql, p)
    }

    pub fn query_row<T, P: Params>(&mut self, p: P, f: impl FnOnce(&SqlRow) -> Result<T>) -> Result<T> {
        self.db.query_row(&self.sql, p, f)
    }

    pub fn query_map<T, P: Params>(
        &mut self,
        p: P,
        mut f: impl FnMut(&SqlRow) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let rows = self.db.rows(&self.sql, p.values())?;
        Ok(rows.iter().map(&mut f).collect::<Vec<_>>().into_iter())
    }

    pub fn exists<P: Params>(&mut self, p: P) -> Result<bool> {
        Ok(!self.db.rows(&self.sql, p.values())?.is_empty())
    }
}

/// `.optional()` on a single-row query: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::NoRow) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
