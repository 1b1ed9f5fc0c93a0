//! The store's connections and how statements run on them, in one of two
//! ways:
//!
//! - straight to PostgreSQL (or through session pooling): prepared once
//!   per connection and cached (`prepare_cached`), as tokio-postgres and
//!   deadpool do;
//! - through a transaction-pooling proxy (PgBouncer's `pool_mode =
//!   transaction`, `--transaction-pooling`): each transaction may run on
//!   another server connection, so nothing may outlive one. A statement is
//!   sent unnamed with its parameter types (Parse, Bind, Execute in one
//!   message train); the types are learned once per process and statement,
//!   on a connection of their own, by preparing it inside a transaction and
//!   closing it before the transaction ends, on the server session that
//!   transaction holds. (Only built-in types are used: a column of another
//!   type would make tokio-postgres cache a named type lookup.)
//!
//! Either way the store's code is the same: `query`, `query_one`,
//! `query_opt` or `execute` on a `Conn` or a `Tx`, given the SQL or a
//! statement `prepare_cached` made (to prepare several before running them
//! together). Errors come back as store errors (`error::translate`).

use super::error::translate;
use crate::store::StoreError;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, Row, Statement};

pub(super) type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// One array of a statement over `unnest($1::text[], ...)`, the rows'
/// values of one column: element i is `value(&rows[i])`.
pub(super) fn column<'a, R, T>(rows: &'a [R], value: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(value).collect()
}

/// Statements' parameter types, learned once per process, for unnamed
/// statements. Present only under transaction pooling.
#[derive(Clone)]
pub(super) struct ParamTypes {
    known: Arc<Mutex<HashMap<String, Arc<Unnamed>>>>,
    /// A connection of its own for learning, made when first needed: the
    /// pooled connections never carry a learning transaction, so a call
    /// cancelled mid-way (a deadline, a failed `try_join!` sibling) cannot
    /// leave one open behind it, nor a statement on a server session.
    learner: Arc<tokio::sync::Mutex<Option<tokio_postgres::Client>>>,
    config: tokio_postgres::Config,
}

impl ParamTypes {
    pub(super) fn new(config: tokio_postgres::Config) -> Self {
        Self {
            known: Arc::default(),
            learner: Arc::default(),
            config,
        }
    }

    /// The statement `sql`, unnamed, with its parameter types.
    async fn unnamed(&self, sql: &str) -> Result<Arc<Unnamed>, Error> {
        if let Some(unnamed) = self.known.lock().unwrap().get(sql) {
            return Ok(Arc::clone(unnamed));
        }
        // In a task of its own, so that it runs to its end (COMMIT or
        // ROLLBACK, the statement closed) whatever becomes of the caller.
        let learning = tokio::spawn(Self::learn(
            Arc::clone(&self.learner),
            self.config.clone(),
            sql.to_owned(),
        ));
        let types = match learning.await {
            Ok(types) => types?,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        };
        let unnamed = Arc::new(Unnamed {
            sql: sql.to_owned(),
            types,
        });
        self.known
            .lock()
            .unwrap()
            .insert(sql.to_owned(), Arc::clone(&unnamed));
        Ok(unnamed)
    }

    /// Prepares `sql` inside a transaction and closes it before the
    /// transaction ends, so on the server session the transaction holds,
    /// which keeps nothing afterwards.
    async fn learn(
        learner: Arc<tokio::sync::Mutex<Option<tokio_postgres::Client>>>,
        config: tokio_postgres::Config,
        sql: String,
    ) -> Result<Vec<Type>, Error> {
        let mut learner = learner.lock().await;
        if learner.as_ref().is_none_or(|client| client.is_closed()) {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            *learner = Some(client);
        }
        let client = learner.as_mut().expect("connected above");
        let transaction = client.transaction().await?;
        // On error the transaction rolls back as it is dropped.
        let types = transaction.prepare(&sql).await?.params().to_vec();
        transaction.commit().await?;
        Ok(types)
    }
}

pub(super) struct Unnamed {
    sql: String,
    types: Vec<Type>,
}

impl Unnamed {
    fn params<'p>(&self, params: Params<'p>) -> Vec<(&'p (dyn ToSql + Sync), Type)> {
        params
            .iter()
            .copied()
            .zip(self.types.iter().cloned())
            .collect()
    }
}

/// A statement ready to run: prepared on this connection, or unnamed.
#[derive(Clone)]
pub(super) enum Stmt {
    Cached(Statement),
    Unnamed(Arc<Unnamed>),
}

/// What a statement can be given as: prepared, or its SQL.
pub(super) trait Query: Sync {
    fn as_query(&self) -> QueryRef<'_>;
}

pub(super) enum QueryRef<'a> {
    Sql(&'a str),
    Stmt(&'a Stmt),
}

impl Query for Stmt {
    fn as_query(&self) -> QueryRef<'_> {
        QueryRef::Stmt(self)
    }
}

impl Query for str {
    fn as_query(&self) -> QueryRef<'_> {
        QueryRef::Sql(self)
    }
}

impl Query for String {
    fn as_query(&self) -> QueryRef<'_> {
        QueryRef::Sql(self)
    }
}

/// The statements of the store, on a connection (`Conn`) or in a
/// transaction (`Tx`).
pub(super) trait Db: Sync {
    fn prepare_cached(&self, sql: &str) -> impl Future<Output = Result<Stmt, StoreError>> + Send;

    fn query<Q: Query + ?Sized>(
        &self,
        query: &Q,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;

    /// Exactly one row, or an error.
    fn query_one<Q: Query + ?Sized>(
        &self,
        query: &Q,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Row, StoreError>> + Send;

    /// At most one row.
    fn query_opt<Q: Query + ?Sized>(
        &self,
        query: &Q,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Option<Row>, StoreError>> + Send;

    /// The number of rows changed.
    fn execute<Q: Query + ?Sized>(
        &self,
        query: &Q,
        params: Params<'_>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// A pooled connection.
pub(super) struct Conn {
    pub(super) inner: deadpool_postgres::Object,
    pub(super) types: Option<ParamTypes>,
}

/// A transaction on a pooled connection; rolled back unless committed.
pub(super) struct Tx<'a> {
    inner: deadpool_postgres::Transaction<'a>,
    types: Option<ParamTypes>,
}

impl Conn {
    pub(super) async fn transaction(&mut self) -> Result<Tx<'_>, StoreError> {
        Ok(Tx {
            inner: self.inner.transaction().await.map_err(translate)?,
            types: self.types.clone(),
        })
    }

    pub(super) async fn simple_query(
        &self,
        sql: &str,
    ) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, StoreError> {
        self.inner.simple_query(sql).await.map_err(translate)
    }
}

impl Tx<'_> {
    pub(super) async fn commit(self) -> Result<(), StoreError> {
        self.inner.commit().await.map_err(translate)
    }
}

/// A `Db` method: the driver's method of the same name for a prepared
/// statement, its `$typed` twin (with the parameter types) for an unnamed
/// one.
macro_rules! run {
    ($method:ident, $typed:ident, $output:ty) => {
        async fn $method<Q: Query + ?Sized>(
            &self,
            query: &Q,
            params: Params<'_>,
        ) -> Result<$output, StoreError> {
            match self.resolve(query).await? {
                Stmt::Cached(statement) => self.inner.$method(&statement, params).await,
                Stmt::Unnamed(unnamed) => {
                    self.inner
                        .$typed(&unnamed.sql, &unnamed.params(params))
                        .await
                }
            }
            .map_err(translate)
        }
    };
}

macro_rules! statements {
    ($type:ty) => {
        impl Db for $type {
            async fn prepare_cached(&self, sql: &str) -> Result<Stmt, StoreError> {
                match &self.types {
                    None => Ok(Stmt::Cached(
                        self.inner.prepare_cached(sql).await.map_err(translate)?,
                    )),
                    Some(types) => Ok(Stmt::Unnamed(types.unnamed(sql).await.map_err(translate)?)),
                }
            }

            run!(query, query_typed, Vec<Row>);
            run!(query_one, query_typed_one, Row);
            run!(query_opt, query_typed_opt, Option<Row>);
            run!(execute, execute_typed, u64);
        }

        impl $type {
            async fn resolve<Q: Query + ?Sized>(&self, query: &Q) -> Result<Stmt, StoreError> {
                match query.as_query() {
                    QueryRef::Stmt(stmt) => Ok(stmt.clone()),
                    QueryRef::Sql(sql) => self.prepare_cached(sql).await,
                }
            }
        }
    };
}

statements!(Conn);
statements!(Tx<'_>);
