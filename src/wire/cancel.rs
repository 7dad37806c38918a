//! The row stream of a query response: SQLSTATEs for errors raised while streaming, and
//! stopping a running query: CancelRequest and `statement_timeout`.
//!
//! pgwire races the handler's `do_query` against a CancelRequest, but a query's rows are
//! computed while they stream out, after `do_query` has returned. [`cancellable`] wraps
//! that stream so a CancelRequest or the session's `statement_timeout` ends it with
//! SQLSTATE 57014, dropping (and so stopping) the DataFusion execution behind it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pgwire::api::results::Response;
use pgwire::api::{ClientInfo, ConnectionHandle};
use pgwire::error::{ErrorInfo, PgWireError};

/// The session's `statement_timeout`, as datafusion-postgres' SET hook stores it.
fn statement_timeout<C: ClientInfo + ?Sized>(client: &C) -> Option<Duration> {
    client
        .metadata()
        .get("statement_timeout_ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
}

fn canceled(reason: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "57014".into(),
        format!("canceling statement due to {reason}"),
    )))
}

/// Make a query response's row stream stop on CancelRequest or statement timeout.
pub async fn cancellable<C: ClientInfo + ?Sized>(client: &C, response: Response) -> Response {
    let Response::Query(mut query) = response else {
        return response;
    };
    // Errors raised while rows stream out get their SQLSTATE like any other error
    // (pgwire would send XX000 for all of them).
    let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
    query.data_rows = Box::pin(rows.map(|r| r.map_err(|e| super::errors::to_pg(e, "", 0))));
    // The deadline runs from now; the cancel receiver is taken when the rows are first
    // polled. Taking it here would drop the sender pgwire races `do_query` against, and
    // pgwire takes that for a cancel if `do_query` has more statements of the query
    // string still to run.
    let timeout = statement_timeout(client).map(tokio::time::sleep);
    let handle = client.session_extensions().get::<Arc<ConnectionHandle>>();
    if timeout.is_none() && handle.is_none() {
        return Response::Query(query);
    }
    let stop: Pin<Box<dyn Future<Output = &'static str> + Send>> = Box::pin(async move {
        let timed_out = async {
            match timeout {
                Some(sleep) => sleep.await,
                None => std::future::pending().await,
            }
        };
        let cancelled = async {
            // A dropped sender (the next query started) is not a cancel.
            let fired = match handle {
                Some(handle) => handle.start_query().await.await.is_ok(),
                None => false,
            };
            if !fired {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = timed_out => "statement timeout",
            _ = cancelled => "user request",
        }
    });
    let rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
    query.data_rows = Box::pin(futures::stream::unfold(
        Some((rows, stop)),
        |state| async move {
            let (mut rows, mut stop) = state?;
            tokio::select! {
                row = rows.next() => row.map(|r| (r, Some((rows, stop)))),
                reason = &mut stop => Some((Err(canceled(reason)), None)),
            }
        },
    ));
    Response::Query(query)
}
