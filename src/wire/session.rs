//! `SHOW`: a session's settings, as `SET` left them or as the server defaults say.
//! Also transaction blocks: the state a statement may run in, `BEGIN`, `COMMIT`,
//! `ROLLBACK` and savepoints ([`transaction`], on `storage::txn`), and the catalog changes
//! of a block that `ROLLBACK` cannot undo ([`count_write`]).

use std::sync::Arc;

use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;

use crate::engine::sql::TransactionStatement;
use crate::engine::{Command, EngineError};
use crate::storage::txn;

/// The value `SHOW name` reports, or `None` for a setting tessera does not know.
pub fn show_value<C: ClientInfo + ?Sized>(client: &C, name: &str) -> Option<String> {
    let meta = client.metadata();
    // datafusion-postgres' SET hook keeps these two under its own keys.
    if name == "statement_timeout" {
        return Some(
            meta.get("statement_timeout_ms")
                .map_or("0".into(), |ms| format!("{ms}ms")),
        );
    }
    meta.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .or_else(|| crate::pg::setting(name).map(str::to_string))
}

pub fn show_fields(name: &str) -> Vec<FieldInfo> {
    vec![FieldInfo::new(
        name.to_string(),
        None,
        None,
        Type::TEXT,
        FieldFormat::Text,
    )]
}

pub fn show_response(name: &str, value: &str) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(show_fields(name));
    let mut encoder = DataRowEncoder::new(fields.clone());
    encoder.encode_field(&Some(value))?;
    let row = encoder.take_row();
    Ok(QueryResponse::new(
        fields,
        futures::stream::once(async move { Ok(row) }),
    ))
}

/// PostgreSQL's answer to anything but ROLLBACK in a failed transaction.
pub fn aborted_transaction() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "25P02".into(),
        "current transaction is aborted, commands ignored until end of transaction block".into(),
    )))
}

/// Refuse a statement the engine runs itself when the transaction state forbids it: any
/// statement but COMMIT, ROLLBACK and ROLLBACK TO after an error (25P02), savepoint
/// statements outside a transaction block (25P01).
pub fn check_transaction_state(status: TransactionStatus, command: &Command) -> PgWireResult<()> {
    use TransactionStatement as T;
    let (savepoint, ends_error) = match command {
        Command::Transaction(T::RollbackTo(_)) => (Some("ROLLBACK TO SAVEPOINT"), true),
        Command::Transaction(T::Savepoint(_)) => (Some("SAVEPOINT"), false),
        Command::Transaction(T::Release(_)) => (Some("RELEASE SAVEPOINT"), false),
        Command::Transaction(T::Commit | T::Rollback) => (None, true),
        _ => (None, false),
    };
    match (status, savepoint) {
        (TransactionStatus::Idle, Some(stmt)) => Err(user_error(
            "25P01",
            format!("{stmt} can only be used in transaction blocks"),
        )),
        (TransactionStatus::Error, _) if !ends_error => Err(aborted_transaction()),
        _ => Ok(()),
    }
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message,
    )))
}

/// Run a transaction statement in `status` (already checked by
/// [`check_transaction_state`]): its answer, and the warning PostgreSQL sends with it.
pub async fn transaction(
    status: TransactionStatus,
    statement: &TransactionStatement,
) -> Result<(Response, Option<(&'static str, String)>), EngineError> {
    use TransactionStatement as T;
    let idle = status == TransactionStatus::Idle;
    let no_block = || Some(("25P01", "there is no transaction in progress".to_string()));
    Ok(match statement {
        T::Begin if idle => {
            txn::begin();
            (Response::TransactionStart(Tag::new("BEGIN")), None)
        }
        T::Begin => (
            Response::Execution(Tag::new("BEGIN")),
            Some(("25001", "there is already a transaction in progress".into())),
        ),
        T::Commit if status == TransactionStatus::Transaction => {
            txn::commit().await?;
            (Response::TransactionEnd(Tag::new("COMMIT")), None)
        }
        T::Commit if idle => (Response::TransactionEnd(Tag::new("COMMIT")), no_block()),
        // COMMIT of a failed block rolls it back.
        T::Commit | T::Rollback => {
            txn::rollback();
            let warning = if idle { no_block() } else { None };
            (Response::TransactionEnd(Tag::new("ROLLBACK")), warning)
        }
        T::Savepoint(name) => {
            txn::savepoint(name).await;
            (Response::Execution(Tag::new("SAVEPOINT")), None)
        }
        T::Release(name) => {
            txn::release(name)?;
            (Response::Execution(Tag::new("RELEASE")), None)
        }
        T::RollbackTo(name) => {
            txn::rollback_to(name).await?;
            (Response::TransactionStart(Tag::new("ROLLBACK")), None)
        }
    })
}

/// The answers that take pgwire's transaction state to "in a block": after an error,
/// pgwire only leaves the failed state through the idle one, so a `ROLLBACK TO` that
/// ends a failure answers twice (the extended protocol sends only the last, and
/// [`RECOVERED`] tells `on_execute` to set the state).
pub fn recovering(status: TransactionStatus, response: Response) -> Vec<Response> {
    match response {
        Response::TransactionStart(tag) if status == TransactionStatus::Error => {
            vec![
                Response::TransactionEnd(tag.clone()),
                Response::TransactionStart(tag),
            ]
        }
        other => vec![other],
    }
}

/// Client metadata key: an Execute ended the failed state of its block.
pub const RECOVERED: &str = "tessera.recovered";

/// The transaction status after a statement answered with `response`, as pgwire will
/// compute it once the whole query string is done (statements of one simple query see
/// the status their predecessors left).
pub fn status_after(status: TransactionStatus, response: &Response) -> TransactionStatus {
    match response {
        Response::TransactionStart(_) => status.to_in_transaction_state(),
        Response::TransactionEnd(_) => status.to_idle_state(),
        Response::Error(_) => status.to_error_state(),
        _ => status,
    }
}

/// Client metadata key: how many statements wrote inside the current transaction block.
const BLOCK_WRITES: &str = "tessera.block_writes";

/// Commands whose tag says they changed the catalog or a materialised view, which commit
/// on their own even in a transaction block.
const COMMITTING_COMMANDS: [&str; 6] = ["CREATE", "DROP", "ALTER", "REFRESH", "COMMENT", "SELECT"];

/// Catalog changes commit on their own, so `ROLLBACK` cannot undo those of its block.
/// Count them (`status`: the transaction state the statement ran in, `response`: its
/// answer) and answer, for a `ROLLBACK` that ends a block which made some, the warning
/// to send with it. `SELECT n` is counted only as an execution tag (`CREATE TABLE AS`).
pub fn count_write<C: ClientInfo + ?Sized>(
    client: &mut C,
    status: TransactionStatus,
    response: &Response,
) -> Option<String> {
    let command = |tag: &Tag| pgwire::messages::response::CommandComplete::from(tag.clone()).tag;
    match response {
        Response::TransactionStart(_) if status == TransactionStatus::Idle => {
            client.metadata_mut().remove(BLOCK_WRITES);
            None
        }
        Response::TransactionEnd(tag) => {
            let writes = client.metadata_mut().remove(BLOCK_WRITES)?;
            command(tag).starts_with("ROLLBACK").then(|| {
                format!(
                    "ROLLBACK did not undo {writes} statement(s) of this transaction that \
                     changed the catalog or refreshed a materialized view: tessera commits \
                     those on their own"
                )
            })
        }
        Response::Execution(tag) if status == TransactionStatus::Transaction => {
            let command = command(tag);
            let word = command.split_whitespace().next().unwrap_or_default();
            if COMMITTING_COMMANDS.contains(&word) {
                let meta = client.metadata_mut();
                let n = meta.get(BLOCK_WRITES).and_then(|n| n.parse::<u64>().ok());
                meta.insert(BLOCK_WRITES.into(), (n.unwrap_or(0) + 1).to_string());
            }
            None
        }
        _ => None,
    }
}

/// A `WARNING` notice (SQLSTATE 01000) with `message`.
pub fn warning(message: String) -> pgwire::messages::PgWireBackendMessage {
    coded_warning("01000", message)
}

/// A `WARNING` notice with SQLSTATE `code`.
pub fn coded_warning(code: &str, message: String) -> pgwire::messages::PgWireBackendMessage {
    pgwire::messages::PgWireBackendMessage::NoticeResponse(
        ErrorInfo::new("WARNING".into(), code.into(), message).into(),
    )
}
