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
//! Either way the store's code is the same: `prepare_cached`, then
//! `query`, `query_one`, `query_opt` or `execute` on a `Conn` or a `Tx`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, Row, Statement};

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

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

/// The statements of the store, on a connection (`Conn`) or in a
/// transaction (`Tx`).
pub(super) trait Db: Sync {
    fn prepare_cached(&self, sql: &str) -> impl Future<Output = Result<Stmt, Error>> + Send;

    fn query<Q: Query + ?Sized>(
        &self,
        query: &Q,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send;

    /// Exactly one row, or an error.
    fn query_one<Q: Query + ?Sized>(
        &self,
        query: &Q,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Row, Error>> + Send;

    /// At most one row.
    fn query_opt<Q: Query + ?Sized>(
        &self,
        query: &Q,
        params: Params<'_>,
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send;

    /// The number of rows changed.
    fn execute<Q: Query + ?Sized>(
        &self,
        query: &Q,
        params: Params<'_>,
    ) -> impl Future<Output = Result<u64, Error>> + Send;
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
    pub(super) async fn transaction(&mut self) -> Result<Tx<'_>, Error> {
        Ok(Tx {
            inner: self.inner.transaction().await?,
            types: self.types.clone(),
        })
    }

    pub(super) async fn simple_query(
        &self,
        sql: &str,
    ) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, Error> {
        self.inner.simple_query(sql).await
    }
}

impl Tx<'_> {
    pub(super) async fn commit(self) -> Result<(), Error> {
        self.inner.commit().await
    }
}

macro_rules! statements {
    ($type:ty) => {
        impl Db for $type {
            async fn prepare_cached(&self, sql: &str) -> Result<Stmt, Error> {
                match &self.types {
                    None => Ok(Stmt::Cached(self.inner.prepare_cached(sql).await?)),
                    Some(types) => Ok(Stmt::Unnamed(types.unnamed(sql).await?)),
                }
            }

            async fn query<Q: Query + ?Sized>(
                &self,
                query: &Q,
                params: Params<'_>,
            ) -> Result<Vec<Row>, Error> {
                match self.resolve(query).await? {
                    Stmt::Cached(statement) => self.inner.query(&statement, params).await,
                    Stmt::Unnamed(unnamed) => {
                        self.inner
                            .query_typed(&unnamed.sql, &unnamed.params(params))
                            .await
                    }
                }
            }

            async fn query_one<Q: Query + ?Sized>(
                &self,
                query: &Q,
                params: Params<'_>,
            ) -> Result<Row, Error> {
                match self.resolve(query).await? {
                    Stmt::Cached(statement) => self.inner.query_one(&statement, params).await,
                    Stmt::Unnamed(unnamed) => {
                        self.inner
                            .query_typed_one(&unnamed.sql, &unnamed.params(params))
                            .await
                    }
                }
            }

            async fn query_opt<Q: Query + ?Sized>(
                &self,
                query: &Q,
                params: Params<'_>,
            ) -> Result<Option<Row>, Error> {
                match self.resolve(query).await? {
                    Stmt::Cached(statement) => self.inner.query_opt(&statement, params).await,
                    Stmt::Unnamed(unnamed) => {
                        self.inner
                            .query_typed_opt(&unnamed.sql, &unnamed.params(params))
                            .await
                    }
                }
            }

            async fn execute<Q: Query + ?Sized>(
                &self,
                query: &Q,
                params: Params<'_>,
            ) -> Result<u64, Error> {
                match self.resolve(query).await? {
                    Stmt::Cached(statement) => self.inner.execute(&statement, params).await,
                    Stmt::Unnamed(unnamed) => {
                        self.inner
                            .execute_typed(&unnamed.sql, &unnamed.params(params))
                            .await
                    }
                }
            }
        }

        impl $type {
            async fn resolve<Q: Query + ?Sized>(&self, query: &Q) -> Result<Stmt, Error> {
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
