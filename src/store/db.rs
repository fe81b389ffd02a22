//! The SQL seam: the append path and the read models are written once, against `Db`, in the SQL that SQLite and
//! PostgreSQL both accept. Placeholders are `?N`; the PostgreSQL side rewrites them to `$N`.
//!
//! Values cross the seam as four plain types (null, integer, real, text): every column keel stores is one of them,
//! enums as their wire names and JSON as text.

use super::{Error, Result};

/// A bound parameter.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
}

/// A column value as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Value {
    #[default]
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// One result row; `get` moves a column out, so each is read once.
#[derive(Debug)]
pub struct Row(pub(super) Vec<Value>);

impl Row {
    pub fn get<T: FromValue>(&mut self, idx: usize) -> Result<T> {
        let value = self.0.get_mut(idx).map(std::mem::take).ok_or(Error::Column { idx, expected: T::NAME })?;
        T::from_value(value).ok_or(Error::Column { idx, expected: T::NAME })
    }

    /// Reads a column holding a unit enum's wire name; a name this engine does not know is an error, not a default.
    pub fn parse<T: serde::de::DeserializeOwned>(&mut self, idx: usize) -> Result<T> {
        let name: String = self.get(idx)?;
        Ok(serde_json::from_value(serde_json::Value::String(name))?)
    }

    pub fn parse_opt<T: serde::de::DeserializeOwned>(&mut self, idx: usize) -> Result<Option<T>> {
        let name: Option<String> = self.get(idx)?;
        name.map(|name| Ok(serde_json::from_value(serde_json::Value::String(name))?)).transpose()
    }
}

/// A database the store's SQL runs on: a SQLite connection or transaction, or a PostgreSQL one.
pub trait Db {
    /// Runs a statement; the number of rows it changed.
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64>;
    /// Runs a query, handing each row to `each` until it returns false.
    fn query(&self, sql: &str, params: &[Param<'_>], each: &mut dyn FnMut(Row) -> Result<bool>) -> Result<()>;
    /// Called in the appending transaction once a session's head moved: PostgreSQL tells the other engines at
    /// commit; SQLite's are told by the file itself.
    fn appended(&self, _session_id: &str, _head: u64) -> Result<()> {
        Ok(())
    }
}

impl dyn Db + '_ {
    pub fn rows<T>(&self, sql: &str, params: &[Param<'_>], mut f: impl FnMut(&mut Row) -> Result<T>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.query(sql, params, &mut |mut row| {
            out.push(f(&mut row)?);
            Ok(true)
        })?;
        Ok(out)
    }

    pub fn row<T>(&self, sql: &str, params: &[Param<'_>], f: impl FnOnce(&mut Row) -> Result<T>) -> Result<Option<T>> {
        let mut f = Some(f);
        let mut out = None;
        self.query(sql, params, &mut |mut row| {
            if let Some(f) = f.take() {
                out = Some(f(&mut row)?);
            }
            Ok(false)
        })?;
        Ok(out)
    }

    /// The first column of the first row.
    pub fn value<T: FromValue>(&self, sql: &str, params: &[Param<'_>]) -> Result<Option<T>> {
        self.row(sql, params, |r| r.get(0))
    }
}

/// `params![a, b]`: the parameters `?1`, `?2` of a statement.
macro_rules! params {
    ($($x:expr),* $(,)?) => {
        &[$($crate::store::db::ToParam::to_param(&$x)),*][..]
    };
}
pub(crate) use params;

pub trait ToParam {
    fn to_param(&self) -> Param<'_>;
}

impl ToParam for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for std::sync::Arc<str> {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for bool {
    fn to_param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}

impl ToParam for f64 {
    fn to_param(&self) -> Param<'_> {
        Param::Real(*self)
    }
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn to_param(&self) -> Param<'_> {
                // Counts and seqs never come near i64::MAX; a limit of "all" (usize::MAX) saturates.
                Param::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_param!(i64, i32, u32, u64, usize);

impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Param<'_> {
        self.as_ref().map_or(Param::Null, ToParam::to_param)
    }
}

pub trait FromValue: Sized {
    const NAME: &'static str;
    fn from_value(value: Value) -> Option<Self>;
}

impl FromValue for String {
    const NAME: &'static str = "text";
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl FromValue for f64 {
    const NAME: &'static str = "real";
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Real(f) => Some(f),
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => Some(i as f64),
            _ => None,
        }
    }
}

impl FromValue for bool {
    const NAME: &'static str = "boolean";
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Int(i) => Some(i != 0),
            _ => None,
        }
    }
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            const NAME: &'static str = stringify!($t);
            fn from_value(value: Value) -> Option<Self> {
                match value {
                    Value::Int(i) => <$t>::try_from(i).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
int_value!(i64, i32, u32, u64, usize);

impl<T: FromValue> FromValue for Option<T> {
    const NAME: &'static str = T::NAME;
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            value => T::from_value(value).map(Some),
        }
    }
}
