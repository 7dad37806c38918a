//! `SHOW`: a session's settings, as `SET` left them or as the server defaults say.
//! Also the transaction state a statement may run in, and the writes of a transaction
//! block that `ROLLBACK` cannot undo ([`count_write`]).

use std::sync::Arc;

use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse};
use pgwire::api::{ClientInfo, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::response::TransactionStatus;

use crate::engine::Command;

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
/// statement but ROLLBACK TO after an error (25P02), savepoint statements outside a
/// transaction block (25P01).
pub fn check_transaction_state(status: TransactionStatus, command: &Command) -> PgWireResult<()> {
    let savepoint = match command {
        Command::RollbackToSavepoint => Some("ROLLBACK TO SAVEPOINT"),
        Command::Accept("SAVEPOINT") => Some("SAVEPOINT"),
        Command::Accept("RELEASE") => Some("RELEASE SAVEPOINT"),
        _ => None,
    };
    match (status, savepoint) {
        (TransactionStatus::Idle, Some(stmt)) => {
            Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "25P01".into(),
                format!("{stmt} can only be used in transaction blocks"),
            ))))
        }
        (TransactionStatus::Error, Some("ROLLBACK TO SAVEPOINT")) => Ok(()),
        (TransactionStatus::Error, _) => Err(aborted_transaction()),
        _ => Ok(()),
    }
}

/// The transaction status after a statement answered with `response`, as pgwire will
/// compute it once the whole query string is done (statements of one simple query see
/// the status their predecessors left).
pub fn status_after(
    status: TransactionStatus,
    response: &pgwire::api::results::Response,
) -> TransactionStatus {
    use pgwire::api::results::Response;
    match response {
        Response::TransactionStart(_) => status.to_in_transaction_state(),
        Response::TransactionEnd(_) => status.to_idle_state(),
        Response::Error(_) => status.to_error_state(),
        _ => status,
    }
}

/// Client metadata key: how many statements wrote inside the current transaction block.
const BLOCK_WRITES: &str = "tessera.block_writes";

/// Commands whose tag says they changed data or the catalog.
const WRITING_COMMANDS: [&str; 12] = [
    "INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "COPY", "CREATE", "DROP", "ALTER",
    "REFRESH", "COMMENT", "SELECT",
];

/// Each statement commits on its own, so `ROLLBACK` cannot undo the writes of its block.
/// Count them (`status`: the transaction state the statement ran in, `response`: its
/// answer) and answer, for a `ROLLBACK` that ends a block which wrote, the warning to
/// send with it. `SELECT n` is counted only as an execution tag (`CREATE TABLE AS`).
pub fn count_write<C: ClientInfo + ?Sized>(
    client: &mut C,
    status: TransactionStatus,
    response: &pgwire::api::results::Response,
) -> Option<String> {
    use pgwire::api::results::Response;
    let command = |tag: &pgwire::api::results::Tag| {
        pgwire::messages::response::CommandComplete::from(tag.clone()).tag
    };
    match response {
        Response::TransactionStart(_) if status == TransactionStatus::Idle => {
            client.metadata_mut().remove(BLOCK_WRITES);
            None
        }
        Response::TransactionEnd(tag) => {
            let writes = client.metadata_mut().remove(BLOCK_WRITES)?;
            command(tag).starts_with("ROLLBACK").then(|| {
                format!(
                    "ROLLBACK did not undo {writes} statement(s) that changed data in this \
                     transaction: tessera commits each statement on its own"
                )
            })
        }
        Response::Execution(tag) if status == TransactionStatus::Transaction => {
            let command = command(tag);
            let word = command.split_whitespace().next().unwrap_or_default();
            if WRITING_COMMANDS.contains(&word) {
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
    pgwire::messages::PgWireBackendMessage::NoticeResponse(
        ErrorInfo::new("WARNING".into(), "01000".into(), message).into(),
    )
}
