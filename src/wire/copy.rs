//! The COPY sub-protocol.
//!
//! `COPY t FROM STDIN` answers with CopyInResponse and keeps a [`CopyIn`] parser in the
//! connection's session extensions; CopyData chunks feed it, and CopyDone commits every
//! row in one Delta commit (or reports the first bad line, committing nothing). CopyFail
//! from the client discards it. `COPY ... TO STDOUT` streams one CopyData per row.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{stream, Sink, SinkExt, StreamExt};
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;

use super::errors::{engine_error, to_pg};
use super::QueryService;
use crate::engine::copy::{encode_rows, header_row, CopyIn};
use crate::engine::sql::{CopyCommand, CopyDirection};
use crate::engine::{Engine, EngineError};
use crate::storage::ManagedTable;

/// The COPY FROM STDIN in progress on a connection, if any.
#[derive(Default)]
struct PendingCopy(Mutex<Option<(CopyIn, ManagedTable)>>);

fn pending<C: ClientInfo>(client: &C) -> Arc<PendingCopy> {
    client
        .session_extensions()
        .get_or_insert_with(PendingCopy::default)
}

fn take_pending<C: ClientInfo>(client: &C) -> Option<(CopyIn, ManagedTable)> {
    pending(client).0.lock().ok().and_then(|mut p| p.take())
}

/// Check that a COPY can run (its table exists and takes rows, its query plans) without
/// starting it.
pub async fn check(engine: &Engine, command: &CopyCommand) -> PgWireResult<()> {
    match &command.direction {
        CopyDirection::FromStdin { table, columns } => {
            target(engine, table, columns, &command.format)
                .await
                .map(|_| ())
        }
        CopyDirection::ToStdout { query } => engine
            .session_context()
            .state()
            .create_logical_plan(query)
            .await
            .map(|_| ())
            .map_err(|e| engine_error(e.into())),
    }
}

/// The managed table a COPY FROM writes to, and a parser for its data.
async fn target(
    engine: &Engine,
    table: &str,
    columns: &[String],
    format: &crate::engine::sql::CopyFormat,
) -> PgWireResult<(CopyIn, ManagedTable)> {
    let provider = engine.table(table).await.map_err(engine_error)?;
    let Some(managed) = provider.downcast_ref::<ManagedTable>() else {
        return Err(engine_error(EngineError::WrongObjectType {
            name: table.to_string(),
            expected: "managed table (COPY FROM writes only to tables created with CREATE TABLE)",
            actual: None,
        }));
    };
    let parser = CopyIn::new(table, provider.schema(), columns, format.clone())
        .map_err(engine_error)?
        .with_limits(managed.text_limits());
    Ok((parser, managed.clone()))
}

/// Begin a COPY: returns the CopyIn or CopyOut response.
pub async fn start<C: ClientInfo>(
    engine: &Engine,
    client: &C,
    command: CopyCommand,
) -> PgWireResult<Response> {
    match command.direction {
        CopyDirection::FromStdin { table, columns } => {
            let (parser, managed) = target(engine, &table, &columns, &command.format).await?;
            let columns = parser.column_count();
            let wire_format = parser.wire_format();
            *pending(client)
                .0
                .lock()
                .map_err(|_| PgWireError::ApiError("copy state poisoned".into()))? =
                Some((parser, managed));
            Ok(Response::CopyIn(CopyResponse::new(
                wire_format,
                columns,
                stream::empty(),
            )))
        }
        CopyDirection::ToStdout { query } => {
            let df = engine
                .session_context()
                .sql(&query)
                .await
                .map_err(|e| engine_error(e.into()))?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let columns = schema.fields().len();
            let batches = df
                .execute_stream()
                .await
                .map_err(|e| engine_error(e.into()))?;
            let format = command.format;
            // The header goes in front of the first row (PostgreSQL's row count excludes
            // it), or alone when there are no rows.
            let header = Arc::new(Mutex::new(
                format.header.then(|| header_row(&schema, &format)),
            ));
            let first = header.clone();
            let rows = batches.flat_map(move |batch| {
                let rows: Vec<PgWireResult<CopyData>> = match batch
                    .map_err(EngineError::from)
                    .and_then(|b| encode_rows(&b, &format))
                {
                    Ok(rows) => rows
                        .into_iter()
                        .map(|mut r| {
                            if let Some(mut h) = first.lock().ok().and_then(|mut h| h.take()) {
                                h.append(&mut r);
                                r = h;
                            }
                            Ok(CopyData::new(Bytes::from(r)))
                        })
                        .collect(),
                    Err(e) => vec![Err(to_pg(engine_error(e), "", 0))],
                };
                stream::iter(rows)
            });
            let header_only =
                stream::once(async move { header.lock().ok().and_then(|mut h| h.take()) })
                    .filter_map(|h| async move { h.map(|h| Ok(CopyData::new(Bytes::from(h)))) });
            let rows = rows.chain(header_only);
            Ok(Response::CopyOut(CopyResponse::new(0, columns, rows)))
        }
    }
}

#[async_trait]
impl CopyHandler for QueryService {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let state = pending(client);
        let mut guard = state
            .0
            .lock()
            .map_err(|_| PgWireError::ApiError("copy state poisoned".into()))?;
        match guard.as_mut() {
            Some((parser, _)) => {
                parser.feed(&copy_data.data);
                Ok(())
            }
            None => Err(protocol_error("CopyData without a COPY in progress")),
        }
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let Some((parser, table)) = take_pending(client) else {
            return Err(protocol_error("CopyDone without a COPY in progress"));
        };
        let rows = async {
            let batches = parser.finish()?;
            // In a transaction block, into the block's fork of the table.
            table.for_write().await?.append(batches).await
        }
        .await
        .map_err(|e| to_pg(engine_error(e), "", 0))?;
        let tag = Tag::new("COPY").with_rows(rows as usize);
        let status = client.transaction_status();
        super::session::count_write(client, status, &Response::Execution(tag.clone()));
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _ = take_pending(client);
        PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "57014".into(),
            format!("COPY from stdin failed: {}", fail.message),
        )))
    }
}

fn protocol_error(msg: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        "08P01".into(),
        msg.into(),
    )))
}
