//! One audit entry per executed statement (see `crate::access::audit`): built when the
//! statement's response is ready, and for a query sent once its rows have streamed out
//! (or the stream was dropped), with their count.

use futures::StreamExt;
use pgwire::api::results::Response;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::response::CommandComplete;

use crate::access::audit::{AuditLog, Entry, Reads};
use crate::access::Principal;

/// The entry of a statement, before its outcome is known.
pub fn entry(principal: &Principal, statement: &str) -> Entry {
    Entry {
        at_micros: chrono::Utc::now().timestamp_micros(),
        role: principal.name.clone(),
        purpose: principal.purpose.clone(),
        statement: crate::access::erasure::audit_text(statement.trim()),
        rows: None,
        pii_columns: vec![],
        error: None,
    }
}

/// Record `entry` for the outcome of a statement, passing the outcome on (a query's row
/// stream wrapped to count its rows).
pub fn audited(
    log: &AuditLog,
    mut entry: Entry,
    reads: &Reads,
    result: PgWireResult<Response>,
) -> PgWireResult<Response> {
    entry.pii_columns = reads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    match result {
        Ok(Response::Query(mut query)) => {
            let mut pending = Pending {
                log: log.clone(),
                entry: Some(entry),
                rows: 0,
            };
            let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
            query.data_rows = Box::pin(rows.inspect(move |r| match r {
                Ok(_) => pending.rows += 1,
                Err(e) => pending.failed(e),
            }));
            Ok(Response::Query(query))
        }
        Ok(Response::Execution(tag)) => {
            let complete = CommandComplete::from(tag.clone());
            entry.rows = complete
                .tag
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|_| complete.tag.contains(' '));
            log.record(entry);
            Ok(Response::Execution(tag))
        }
        Ok(Response::Error(info)) => {
            entry.error = Some(info.code.clone());
            log.record(entry);
            Ok(Response::Error(info))
        }
        Ok(other) => {
            log.record(entry);
            Ok(other)
        }
        Err(e) => {
            entry.error = Some(code_of(&e));
            log.record(entry);
            Err(e)
        }
    }
}

fn code_of(e: &PgWireError) -> String {
    super::errors::sqlstate(e)
}

/// A query's entry, sent when its row stream ends or is dropped.
struct Pending {
    log: AuditLog,
    entry: Option<Entry>,
    rows: i64,
}

impl Pending {
    fn failed(&mut self, e: &PgWireError) {
        if let Some(mut entry) = self.entry.take() {
            entry.error = Some(code_of(e));
            entry.rows = Some(self.rows);
            self.log.record(entry);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.rows = Some(self.rows);
            self.log.record(entry);
        }
    }
}
