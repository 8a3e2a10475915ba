//! Statements sent to SQLite together, as one query.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every query is a round trip
//! to it: the writer task hands the query over, the thread runs it and hands the result back,
//! two wake-ups. On a quiet box that costs microseconds; while a fan-out keeps the cores busy,
//! each wake-up waits for a core, and a group commit of one statement per query crossed over
//! a dozen times. A [`Batch`] gathers statements whose results nobody waits for (the opening
//! `BEGIN`, a run's writes) and sends them with the next query that must return rows, or with
//! the group's `COMMIT`.

use sqlx::query::Query;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection, SqliteRow};
use sqlx::Executor;

/// Statements to send as one query. Each statement's `?`s take its own values, in order:
/// sqlx binds a query's values to its statements' `?`s in turn. Numbered parameters (`?3`)
/// must not be used in a batch: sqlx reads them as positions in the whole query's values, and
/// binds a statement that skips lower numbers wrongly.
#[derive(Default)]
pub struct Batch {
    sql: String,
    params: Vec<Param>,
}

/// The value of one `?` of a [`Batch`].
pub enum Param {
    Int(i64),
    Text(String),
}

impl Batch {
    /// Adds `sql` with the values of its `?`s.
    pub fn add(&mut self, sql: &str, params: impl IntoIterator<Item = Param>) {
        if !self.sql.is_empty() {
            self.sql.push_str(";\n");
        }
        self.sql.push_str(sql);
        self.params.extend(params);
    }

    /// Runs the batch and returns every row its statements returned, in order; the batch is
    /// empty afterwards.
    pub async fn fetch_all(
        &mut self,
        conn: &mut SqliteConnection,
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        let batch = std::mem::take(self);
        if batch.sql.is_empty() {
            return Ok(Vec::new());
        }
        conn.fetch_all(batch.bound()).await
    }

    /// Runs whatever the batch holds; the batch is empty afterwards.
    pub async fn flush(&mut self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        let batch = std::mem::take(self);
        if !batch.sql.is_empty() {
            conn.execute(batch.bound()).await?;
        }
        Ok(())
    }

    fn bound(&self) -> Query<'_, Sqlite, SqliteArguments<'_>> {
        let mut query = sqlx::query(&self.sql);
        for param in &self.params {
            query = match param {
                Param::Int(value) => query.bind(*value),
                Param::Text(value) => query.bind(value.as_str()),
            };
        }
        query
    }
}
