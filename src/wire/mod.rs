//! The PostgreSQL wire endpoint.
//!
//! [`Handlers`] plugs tessera into pgwire. Its query service wraps datafusion-postgres'
//! `DfSessionService` (which brings `pg_catalog`, `SET`/`SHOW`, transactions, cursors and
//! result encoding) and takes over what that service cannot do:
//! - statements the [`Engine`] runs itself (persistent DDL, Delta DML, `COPY`), answered
//!   with proper command tags in both the simple and the extended protocol;
//! - the `COPY` sub-protocol, in both directions ([`copy`]);
//! - SQLSTATE codes and error positions ([`errors`]), for every error either path raises.
//!
//! [`startup`] authenticates each connection (SCRAM-SHA-256 against the role store) and
//! [`tls`] loads the certificate for TLS connections.

mod access;
mod audit;
mod cancel;
mod compat;
mod copy;
pub mod errors;
mod fields;
mod names;
mod prepared;
#[cfg(test)]
mod robustness;
mod rows;
mod session;
pub mod startup;
pub mod tls;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::sql::sqlparser;
use datafusion_postgres::arrow_pg::datatypes::df;
use datafusion_postgres::{DfSessionService, Parser as DfParser};
use futures::{Sink, SinkExt};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::portal::Portal;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::Entry;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, ErrorHandler, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type, METADATA_USER,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{Describe, Execute, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::PgWireBackendMessage;
use tracing::debug;

use crate::activate::CREATED_COLUMNS as DESTINATION_COLUMNS;
use crate::collect::statements::CREATED_COLUMNS;
use crate::engine::erasure::RESULT_COLUMNS;
use crate::engine::sql::{
    classify, classify_alter_view, split_statements, Command, TransactionStatement,
};
use crate::engine::{Engine, EngineError, Outcome};
use crate::storage::txn;
use errors::{engine_error, to_pg};
pub use startup::Authentication;
use startup::Startup;

/// The statement type datafusion-postgres uses; kept so its cursor hook finds its portals.
/// `(sql, None)` marks a statement the engine runs itself.
type Statement = (String, Option<(sqlparser::ast::Statement, LogicalPlan)>);

/// All pgwire handlers of one server.
pub struct Handlers {
    service: Arc<QueryService>,
    authentication: Authentication,
    connections: Arc<ConnectionManager>,
    pids: Arc<dyn PidSecretKeyGenerator>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    pub fn new(engine: Arc<Engine>, authentication: Authentication) -> Self {
        let connections = Arc::new(ConnectionManager::new());
        use datafusion_postgres::hooks::{cursor, set_show, transactions};
        let hooks: Vec<Arc<dyn datafusion_postgres::QueryHook>> = vec![
            Arc::new(set_show::SetShowHook),
            Arc::new(transactions::TransactionStatementHook),
            Arc::new(rows::QueryResults),
            Arc::new(cursor::CursorStatementHook),
        ];
        let inner = Arc::new(DfSessionService::new_with_hooks(
            engine.session_context(),
            hooks,
        ));
        Handlers {
            service: Arc::new(QueryService {
                parser: Arc::new(TesseraParser {
                    inner: inner.query_parser(),
                    engine: engine.clone(),
                }),
                engine,
                inner,
                plans: Default::default(),
            }),
            authentication,
            connections: connections.clone(),
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
            cancel: Arc::new(DefaultCancelHandler::new(connections)),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.service.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.service.clone()
    }
    /// Called once per connection: each gets its own [`Startup`] (its SCRAM exchange).
    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::new(Startup {
            roles: self.service.engine.roles().clone(),
            mode: self.authentication,
            connections: self.connections.clone(),
            pids: self.pids.clone(),
            exchange: std::sync::Mutex::new(None),
        })
    }
    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.service.clone()
    }
    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(LogErrors)
    }
    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
    }
}

struct LogErrors;

impl ErrorHandler for LogErrors {
    fn on_error<C: ClientInfo>(&self, client: &C, error: &mut PgWireError) {
        debug!(peer = %client.socket_addr(), "error sent to client: {error}");
    }
}

pub struct QueryService {
    engine: Arc<Engine>,
    inner: Arc<DfSessionService>,
    parser: Arc<TesseraParser>,
    /// Optimised plans of prepared queries.
    plans: prepared::Plans,
}

fn tag(o: Outcome) -> Response {
    let mut t = Tag::new(o.tag);
    if o.tag == "INSERT" {
        t = t.with_oid(0);
    }
    if let Some(n) = o.rows {
        t = t.with_rows(n as usize);
    }
    Response::Execution(t)
}

/// Text columns named `names`.
fn text_fields(names: &[&str]) -> Vec<FieldInfo> {
    names
        .iter()
        .map(|n| FieldInfo::new(n.to_string(), None, None, Type::TEXT, FieldFormat::Text))
        .collect()
}

/// A result of one row of text (`CREATE WRITE KEY` answers its key this way).
fn text_row(names: &[&str], values: &[&str]) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(text_fields(names));
    let mut encoder = DataRowEncoder::new(fields.clone());
    for v in values {
        encoder.encode_field(&Some(*v))?;
    }
    let row = encoder.take_row();
    Ok(QueryResponse::new(
        fields,
        futures::stream::once(async move { Ok(row) }),
    ))
}

/// Where `part` (a slice of `whole`) starts in `whole`.
fn offset_in(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize)
        .saturating_sub(whole.as_ptr() as usize)
        .min(whole.len())
}

impl QueryService {
    /// Run one statement of a simple query and record it in the audit log.
    async fn run_audited<C>(
        &self,
        client: &mut C,
        sql: &str,
        status: TransactionStatus,
    ) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let entry = audit::entry(&crate::access::current(), sql);
        let reads = crate::access::audit::Reads::default();
        let result =
            crate::access::audit::collecting(reads.clone(), self.run_one(client, sql, status))
                .await;
        let log = self.engine.audit();
        match result {
            Ok(responses) => responses
                .into_iter()
                .map(|r| audit::audited(log, entry.clone(), &reads, Ok(r)))
                .collect(),
            Err(e) => audit::audited(log, entry, &reads, Err(e)).map(|r| vec![r]),
        }
    }

    /// Run one statement of a simple query.
    async fn run_one<C>(
        &self,
        client: &mut C,
        sql: &str,
        status: TransactionStatus,
    ) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (command, syntax_error) = match classify(sql) {
            Ok(c) => (c, None),
            // What our parser rejects may still be PostgreSQL that datafusion-postgres'
            // compatibility parser rewrites; let it try.
            Err(EngineError::Syntax(msg)) => (classify_alter_view(sql), Some(msg)),
            Err(e) => return Err(engine_error(e)),
        };
        access::check_statement(&crate::access::current(), sql, command.as_ref())
            .map_err(engine_error)?;
        if let Some(c) = &command {
            session::check_transaction_state(status, c)?;
        }
        if let Some(Command::Transaction(t)) = &command {
            let (response, warning) = match session::transaction(status, t).await {
                Ok(answer) => answer,
                Err(e) => {
                    // A failed COMMIT has ended the block: PostgreSQL answers the error
                    // and is idle (pgwire keeps an idle state idle on errors).
                    if *t == TransactionStatement::Commit {
                        client.set_transaction_status(TransactionStatus::Idle);
                    }
                    return Err(engine_error(e));
                }
            };
            if let Some((code, message)) = warning {
                client.send(session::coded_warning(code, message)).await?;
            }
            return Ok(session::recovering(status, response));
        }
        let responses = self.run_command(client, sql, command, syntax_error).await?;
        let mut out = Vec::with_capacity(responses.len());
        for r in responses {
            out.push(cancel::cancellable(client, r).await);
        }
        Ok(out)
    }

    /// Run a query through datafusion-postgres; when DataFusion refuses duplicate output
    /// names, run it again with unique aliases (the caller renames the columns back).
    async fn delegate_query<C>(&self, client: &mut C, sql: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let rewritten = compat::rewrite(sql);
        let sql = rewritten.as_deref().unwrap_or(sql);
        match SimpleQueryHandler::do_query(self.inner.as_ref(), client, sql).await {
            Err(e) if names::is_duplicate_name_error(&e) => match names::alias_unnamed(sql) {
                Some(aliased) => {
                    SimpleQueryHandler::do_query(self.inner.as_ref(), client, &aliased).await
                }
                None => Err(e),
            },
            // Planned again with the expressions DataFusion lacks rewritten; if that
            // fails too, the first error is the one to report.
            Err(e) => match compat::fallback(sql) {
                Some(alt) => SimpleQueryHandler::do_query(self.inner.as_ref(), client, &alt)
                    .await
                    .map_err(|_| e),
                None => Err(e),
            },
            other => other,
        }
    }

    async fn run_command<C>(
        &self,
        client: &mut C,
        sql: &str,
        command: Option<Command>,
        syntax_error: Option<String>,
    ) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match command {
            Some(Command::Copy(c)) => Ok(vec![copy::start(&self.engine, client, c).await?]),
            Some(Command::SetPurpose(purpose)) => {
                let tag = if purpose.is_some() { "SET" } else { "RESET" };
                access::set_purpose(&self.engine, client, purpose).map_err(engine_error)?;
                Ok(vec![Response::Execution(Tag::new(tag))])
            }
            Some(Command::Show(name)) if name == crate::auth::PURPOSE_SETTING => {
                let purpose = crate::access::current().purpose.unwrap_or_default();
                Ok(vec![Response::Query(session::show_response(
                    &name, &purpose,
                )?)])
            }
            Some(Command::Show(name)) => match session::show_value(client, &name) {
                Some(value) => Ok(vec![Response::Query(session::show_response(
                    &name, &value,
                )?)]),
                None => SimpleQueryHandler::do_query(self.inner.as_ref(), client, sql).await,
            },
            Some(Command::CreateWriteKey { name, source }) => {
                let keys = self.engine.collector().keys();
                let key = keys.create(&name, &source).map_err(engine_error)?;
                Ok(vec![Response::Query(text_row(
                    &CREATED_COLUMNS,
                    &[&name, &source, &key],
                )?)])
            }
            Some(Command::CreateDestination(new)) => {
                let (d, secret) = self
                    .engine
                    .create_destination(new)
                    .await
                    .map_err(engine_error)?;
                let url = crate::activate::redacted_url(&d.url);
                Ok(vec![Response::Query(text_row(
                    &DESTINATION_COLUMNS,
                    &[&d.name, &d.segment, &url, &d.purpose, &secret],
                )?)])
            }
            Some(Command::ForgetSubject { id_type, id_value }) => {
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let receipt = txn::outside(self.engine.forget_subject(&id_type, &id_value, &user))
                    .await
                    .map_err(engine_error)?;
                let row = receipt.row();
                let row: Vec<&str> = row.iter().map(String::as_str).collect();
                Ok(vec![Response::Query(text_row(&RESULT_COLUMNS, &row)?)])
            }
            Some(command) => {
                // Every session has its role (start-up refuses a connection without one);
                // an empty name would be refused, never trusted like the server's `None`.
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let dml = matches!(command, Command::Dml(_));
                let run = self.engine.execute_as(command, Some(&user));
                // Catalog statements and refreshes commit at once, so they read committed
                // data, not the block's writes; DML is part of the block.
                let outcome = if dml {
                    run.await
                } else {
                    txn::outside(run).await
                };
                Ok(vec![tag(outcome.map_err(engine_error)?)])
            }
            None if is_setting(sql) => {
                let r = self.delegate_query(client, sql).await;
                // A setting may change how queries are optimised.
                self.engine.invalidate_plans();
                r
            }
            None => match self.delegate_query(client, sql).await.map(|r| {
                r.into_iter()
                    .map(|r| names::rename_response(sql, r))
                    .collect()
            }) {
                // Both parsers refuse it: ours reports where.
                Err(e) if syntax_error.is_some() && errors::is_syntax_error(&e) => Err(
                    engine_error(EngineError::Syntax(syntax_error.unwrap_or_default())),
                ),
                other => other,
            },
        }
    }
}

#[async_trait]
impl SimpleQueryHandler for QueryService {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        txn::new_query(client.transaction_status() == TransactionStatus::Idle);
        let principal = access::principal(&self.engine, client);
        crate::access::run_as(principal, self.run_simple(client, query)).await
    }
}

impl QueryService {
    /// A simple query: each statement in turn, stopping at the first error.
    async fn run_simple<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = split_statements(query);
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::new();
        let mut status = client.transaction_status();
        for sql in statements {
            match self.run_audited(client, sql, status).await {
                Ok(r) => {
                    // A statement's last answer says what it did (a `ROLLBACK TO` that
                    // ends a failure answers ROLLBACK, then the block's start again).
                    let warning = r
                        .last()
                        .and_then(|response| session::count_write(client, status, response));
                    if let Some(warning) = warning {
                        client.send(session::warning(warning)).await?;
                    }
                    status = r.iter().fold(status, session::status_after);
                    out.extend(r)
                }
                Err(e) => {
                    // Earlier statements' results still go out, then the error, as in
                    // PostgreSQL; the rest of the query string is not run.
                    match to_pg(e, query, offset_in(query, sql)) {
                        PgWireError::UserError(info) if !out.is_empty() => {
                            out.push(Response::Error(info))
                        }
                        other => return Err(other),
                    }
                    break;
                }
            }
        }
        Ok(out)
    }
}

pub struct TesseraParser {
    inner: Arc<DfParser>,
    engine: Arc<Engine>,
}

#[async_trait]
impl QueryParser for TesseraParser {
    type Statement = Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let classified = classify(sql);
        if let Ok(command) = &classified {
            let principal = access::principal(&self.engine, client);
            access::check_statement(&principal, sql, command.as_ref())
                .map_err(|e| to_pg(engine_error(e), sql, 0))?;
        }
        let own = match classified {
            Ok(Some(Command::Dml(_))) | Ok(None) => false,
            // PostgreSQL checks a COPY's relation when it is parsed; clients such as
            // tokio-postgres rely on that (an error after Bind leaves them out of step).
            Ok(Some(Command::Copy(c))) => {
                copy::check(&self.engine, &c)
                    .await
                    .map_err(|e| to_pg(e, sql, 0))?;
                true
            }
            Ok(Some(_)) => true,
            Err(EngineError::Syntax(_)) => classify_alter_view(sql).is_some(),
            Err(e) => return Err(to_pg(engine_error(e), sql, 0)),
        };
        if own {
            return Ok(Some((sql.to_string(), None)));
        }
        // DML is planned here too, so its parameters get types; it is executed below.
        let rewritten = compat::rewrite(sql).unwrap_or_else(|| sql.to_string());
        match self.inner.parse_sql(client, &rewritten, types).await {
            // Plan with unique aliases but keep the original text, from which the result
            // columns get PostgreSQL's names.
            Err(e) if names::is_duplicate_name_error(&e) => {
                match names::alias_unnamed(&rewritten) {
                    Some(aliased) => self
                        .inner
                        .parse_sql(client, &aliased, types)
                        .await
                        .map(|stmt| stmt.map(|(_, planned)| (sql.to_string(), planned)))
                        .map_err(|e| to_pg(e, sql, 0)),
                    None => Err(to_pg(e, sql, 0)),
                }
            }
            Err(e) => match compat::fallback(&rewritten) {
                Some(alt) => self
                    .inner
                    .parse_sql(client, &alt, types)
                    .await
                    .map_err(|_| to_pg(e, &rewritten, 0)),
                None => Err(to_pg(e, &rewritten, 0)),
            },
            // Some plans fail only when analysed (a subquery DataFusion cannot
            // decorrelate), which the simple protocol's retry sees but Parse does not:
            // check those the fallback would change, and take the fallback if it passes.
            Ok(Some((text, Some((stmt, plan))))) => {
                let Some(alt) = compat::fallback(&rewritten) else {
                    return Ok(Some((text, Some((stmt, plan)))));
                };
                // Judged as the session's role: the optimiser checks its grants.
                let principal = access::principal(&self.engine, client);
                let runs = |p: LogicalPlan| {
                    crate::access::run_as(principal.clone(), async move { self.executable(&p) })
                };
                if runs(plan.clone()).await {
                    return Ok(Some((text, Some((stmt, plan)))));
                }
                debug!(%alt, "planned again with the compatibility rewrites");
                match self.inner.parse_sql(client, &alt, types).await {
                    Ok(Some((_, Some(planned)))) if runs(planned.1.clone()).await => {
                        Ok(Some((text, Some(planned))))
                    }
                    _ => Ok(Some((text, Some((stmt, plan))))),
                }
            }
            other => other,
        }
    }

    fn get_parameter_types(&self, stmt: &Statement) -> PgWireResult<Vec<Type>> {
        let Some((_, plan)) = &stmt.1 else {
            return self.inner.get_parameter_types(stmt);
        };
        // datafusion-postgres lists a plan's parameter types without its gaps.
        let mut types = match parameter_types(plan, 0) {
            Ok((types, true)) => types
                .iter()
                .map(|t| t.as_ref().map_or(Ok(Type::UNKNOWN), fields::parameter_type))
                .collect::<PgWireResult<Vec<_>>>()?,
            _ => self.inner.get_parameter_types(stmt)?,
        };
        for (i, ty) in fields::cast_parameters(plan) {
            if let Some(slot) = types.get_mut(i) {
                *slot = ty;
            }
        }
        Ok(types)
    }

    fn get_result_schema(
        &self,
        stmt: &Statement,
        column_format: Option<&pgwire::api::portal::Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match stmt {
            (sql, None) => match classify(sql) {
                Ok(Some(Command::Show(name))) => Ok(session::show_fields(&name)),
                Ok(Some(Command::CreateWriteKey { .. })) => Ok(text_fields(&CREATED_COLUMNS)),
                Ok(Some(Command::ForgetSubject { .. })) => Ok(text_fields(&RESULT_COLUMNS)),
                Ok(Some(Command::CreateDestination(_))) => Ok(text_fields(&DESTINATION_COLUMNS)),
                // A cursor's query (DECLARE stores it unplanned): describe its rows.
                Ok(None) if !sql.trim().is_empty() => self.describe_query(sql, column_format),
                _ => Ok(vec![]),
            },
            (_, Some((_, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_)))) => Ok(vec![]),
            (sql, Some((_, plan))) => {
                let fields = fields::pg_fields(
                    plan.schema().as_arrow(),
                    column_format.unwrap_or(&pgwire::api::portal::Format::UnifiedText),
                    None,
                )?;
                Ok(names::postgres_names(sql)
                    .and_then(|n| names::rename_fields(&fields, &n))
                    .unwrap_or(fields))
            }
        }
    }
}

impl TesseraParser {
    /// Whether `plan` (its parameters as NULLs of their types) passes DataFusion's
    /// analyzer and optimiser: a subquery it cannot decorrelate does not.
    fn executable(&self, plan: &LogicalPlan) -> bool {
        let state = self.engine.session_context().state();
        let Ok((types, _)) = parameter_types(plan, 0) else {
            return false;
        };
        let nulls: Vec<datafusion::scalar::ScalarValue> = types
            .iter()
            .map(|t| {
                t.as_ref()
                    .and_then(|t| datafusion::scalar::ScalarValue::try_from(t).ok())
                    .unwrap_or(datafusion::scalar::ScalarValue::Null)
            })
            .collect();
        plan.clone()
            .replace_params_with_values(&ParamValues::from(nulls))
            .and_then(|p| state.optimize(&p))
            .is_ok()
    }

    /// Result fields of a query that has no plan yet. Describe is synchronous in pgwire,
    /// so planning (which touches no I/O for registered tables) runs in place.
    fn describe_query(
        &self,
        sql: &str,
        format: Option<&pgwire::api::portal::Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let state = self.engine.session_context().state();
        let plan = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(state.create_logical_plan(sql))
        })
        .map_err(|e| to_pg(PgWireError::ApiError(Box::new(e)), sql, 0))?;
        let fields = fields::pg_fields(
            plan.schema().as_arrow(),
            format.unwrap_or(&pgwire::api::portal::Format::UnifiedText),
            None,
        )?;
        Ok(names::postgres_names(sql)
            .and_then(|n| names::rename_fields(&fields, &n))
            .unwrap_or(fields))
    }
}

/// Whether `sql` is a `SET` or `RESET` of a setting datafusion-postgres handles.
fn is_setting(sql: &str) -> bool {
    let word = sql.split_whitespace().next().unwrap_or("");
    word.eq_ignore_ascii_case("set") || word.eq_ignore_ascii_case("reset")
}

fn is_write(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Dml(DmlStatement {
            op: WriteOp::Insert(_) | WriteOp::Update | WriteOp::Delete | WriteOp::Truncate,
            ..
        })
    )
}

fn write_tag(plan: &LogicalPlan) -> &'static str {
    match plan {
        LogicalPlan::Dml(d) => match d.op {
            WriteOp::Insert(_) => "INSERT",
            WriteOp::Update => "UPDATE",
            WriteOp::Delete => "DELETE",
            _ => "TRUNCATE TABLE",
        },
        _ => "SELECT",
    }
}

impl QueryService {
    /// Bind a portal's parameters into its plan.
    fn bind(&self, portal: &Portal<Statement>, plan: &LogicalPlan) -> PgWireResult<LogicalPlan> {
        let wire_types = self
            .parser
            .get_parameter_types(&portal.statement.statement)?;
        bind_params(portal, plan, wire_types)
    }

    /// `DECLARE c CURSOR FOR <query with $n>` in the extended protocol: hooks plan the
    /// query without its parameters, so bind them here and open the cursor's portal.
    async fn declare_with_params<C>(
        &self,
        client: &mut C,
        portal: &Portal<Statement>,
        declare: &sqlparser::ast::Declare,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
    {
        let api = |e: datafusion::error::DataFusionError| PgWireError::ApiError(Box::new(e));
        let (Some(name), Some(query)) = (declare.names.first(), declare.for_query.as_ref()) else {
            return Err(engine_error(EngineError::Syntax(
                "DECLARE needs a name and a FOR query".into(),
            )));
        };
        let query = query.to_string();
        let ctx = self.engine.session_context();
        let plan = ctx.state().create_logical_plan(&query).await.map_err(api)?;
        // The client's declared types where it sent them, else what the plan infers.
        let client_types: Vec<Type> = portal
            .statement
            .parameter_types
            .iter()
            .map(|t| t.clone().unwrap_or(Type::UNKNOWN))
            .collect();
        let bound = bind_params(portal, &plan, client_types)?;
        let df = ctx.execute_logical_plan(bound).await.map_err(api)?;
        let options = pgwire::types::format::FormatOptions::from_client_metadata(client.metadata());
        let rows = rows::dataframe(df, Arc::new(options)).await?;
        rows::open_cursor(client.portal_store(), &name.value, query, rows).await;
        Ok(Response::Execution(Tag::new("DECLARE CURSOR")))
    }
}

/// Bind a portal's parameter values into `plan`, decoding them with `wire_types` (the
/// types described to the client) and the types the plan infers.
fn bind_params(
    portal: &Portal<Statement>,
    plan: &LogicalPlan,
    wire_types: Vec<Type>,
) -> PgWireResult<LogicalPlan> {
    plan.clone()
        .replace_params_with_values(&param_values(portal, plan, wire_types)?)
        .map_err(|e| PgWireError::ApiError(Box::new(e)))
}

/// A portal's parameter values, each decoded by its own number (see [`parameter_types`]).
fn param_values(
    portal: &Portal<Statement>,
    plan: &LogicalPlan,
    wire_types: Vec<Type>,
) -> PgWireResult<ParamValues> {
    let (types, gaps) = parameter_types(plan, portal.parameter_len())?;
    let inferred: Vec<Option<&datafusion::arrow::datatypes::DataType>> =
        types.iter().map(Option::as_ref).collect();
    // The server's wire types are listed without the gaps, so they are out of place then.
    let wire: Vec<Option<&Type>> = if gaps {
        vec![]
    } else {
        wire_types
            .iter()
            .map(|t| Some(fields::decoded_as(t)))
            .collect()
    };
    df::deserialize_parameters_with_server_types(portal, &inferred, &wire)
}

/// The inferred type of each parameter `$1..$n` of `plan` (`n`: `count` or the highest
/// placeholder), `None` for one the plan does not mention, and whether there is such a
/// gap. datafusion-postgres lists the types without gaps, which shifts every later
/// parameter onto the previous one's type; a gap appears when it planned a catalog
/// query's correlated subquery as NULL.
fn parameter_types(
    plan: &LogicalPlan,
    count: usize,
) -> PgWireResult<(Vec<Option<datafusion::arrow::datatypes::DataType>>, bool)> {
    let by_name = plan
        .get_parameter_types()
        .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
    let highest = by_name
        .keys()
        .filter_map(|k| k.trim_start_matches('$').parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    let n = count.max(highest);
    let gaps = by_name.len() < n;
    let types = (1..=n)
        .map(|i| by_name.get(&format!("${i}")).cloned().flatten())
        .collect();
    Ok((types, gaps))
}

#[async_trait]
impl ExtendedQueryHandler for QueryService {
    type Statement = Statement;
    type QueryParser = TesseraParser;

    fn query_parser(&self) -> Arc<TesseraParser> {
        self.parser.clone()
    }

    /// pgwire's Execute, then the state a `ROLLBACK TO` that ended a failure leaves (see
    /// [`session::recovering`]; ReadyForQuery, sent at Sync, reports it).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let result = self._on_execute(client, message).await;
        if client.metadata_mut().remove(session::RECOVERED).is_some() {
            client.set_transaction_status(TransactionStatus::Transaction);
        }
        result
    }

    /// A statement that returns no rows is described with NoData (pgjdbc checks), where
    /// pgwire would send an empty RowDescription.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
            if let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name) {
                let described = self.do_describe_statement(client, &stmt).await?;
                if described.fields.is_empty() {
                    let oids = described.parameters.iter().map(|t| t.oid()).collect();
                    client
                        .send(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(oids),
                        ))
                        .await?;
                    client
                        .send(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                    return Ok(());
                }
            }
        }
        self._on_describe(client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let status = client.transaction_status();
        txn::new_query(status == TransactionStatus::Idle);
        let principal = access::principal(&self.engine, client);
        let entry = audit::entry(&principal, &portal.statement.statement.0);
        let reads = crate::access::audit::Reads::default();
        let result = crate::access::run_as(
            principal,
            crate::access::audit::collecting(
                reads.clone(),
                self.run_portal(client, portal, max_rows),
            ),
        )
        .await;
        let response = audit::audited(self.engine.audit(), entry, &reads, result)?;
        let warning = session::count_write(client, status, &response);
        if let Some(warning) = warning {
            client.send(session::warning(warning)).await?;
        }
        Ok(response)
    }
}

impl QueryService {
    /// Execute a bound portal.
    async fn run_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (sql, planned) = &portal.statement.statement;
        let result = match planned {
            None if !sql.trim().is_empty() => self
                .run_one(client, sql, client.transaction_status())
                .await
                .map(|mut r| {
                    if r.len() > 1 && matches!(r[0], Response::TransactionEnd(_)) {
                        client
                            .metadata_mut()
                            .insert(session::RECOVERED.into(), "1".into());
                    }
                    r.pop().unwrap_or(Response::EmptyQuery)
                }),
            Some((statement, plan))
                if (is_write(plan) || matches!(statement, sqlparser::ast::Statement::Query(_)))
                    && client.transaction_status() == TransactionStatus::Error =>
            {
                Err(session::aborted_transaction())
            }
            Some((sqlparser::ast::Statement::Declare { stmts }, _))
                if !portal.parameters.is_empty() && stmts.len() == 1 =>
            {
                self.declare_with_params(client, portal, &stmts[0]).await
            }
            Some((_, plan)) if is_write(plan) => match self.bind(portal, plan) {
                Ok(bound) => self
                    .engine
                    .execute_dml(bound, write_tag(plan))
                    .await
                    .map(tag)
                    .map_err(engine_error),
                Err(e) => Err(e),
            },
            // Queries run on plans kept across executions (see [`prepared`]).
            Some((sqlparser::ast::Statement::Query(_), plan)) => {
                let run = async {
                    let wire_types = self
                        .parser
                        .get_parameter_types(&portal.statement.statement)?;
                    let params = param_values(portal, plan, wire_types)?;
                    self.plans
                        .run(&self.engine, client, portal, sql, plan, params)
                        .await
                };
                match run.await {
                    Ok(r) => Ok(cancel::cancellable(client, names::rename_response(sql, r)).await),
                    Err(e) => Err(e),
                }
            }
            _ => {
                let r =
                    ExtendedQueryHandler::do_query(self.inner.as_ref(), client, portal, max_rows)
                        .await;
                if let Some((sqlparser::ast::Statement::Set(_), _)) = planned {
                    // A setting may change how queries are optimised.
                    self.engine.invalidate_plans();
                }
                match r {
                    Ok(r) => Ok(cancel::cancellable(client, names::rename_response(sql, r)).await),
                    Err(e) => Err(e),
                }
            }
        };
        result.map_err(|e| to_pg(e, sql, 0))
    }
}
