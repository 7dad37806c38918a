//! The rows a write commits, as a stream Delta consumes while it writes data files.
//!
//! An `INSERT ... SELECT` or the refresh of a materialised view can yield more rows than
//! fit in memory (52.8M identity map rows at 1M demo customers); collected before the
//! write, they were held whole, outside the memory pool. Here the rows reach Delta's
//! writer as a one-partition logical plan over the stream, each batch fitted to the table
//! on the way (types, declared text lengths), so at most a few row groups are held.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::{Stream, StreamExt};
use tokio::sync::oneshot;

use super::{limits, types, TextLimit};
use crate::engine::error::{EngineError, Result};

/// The rows of one write.
pub(super) enum Rows {
    /// Rows already in memory (a `COPY` chunk, a system table's record).
    Batches(Vec<RecordBatch>),
    /// Rows still being computed by a query, abandoned if the statement is (see
    /// [`Rows::query`]).
    Query(Abandonable),
}

impl Rows {
    /// The rows of a query, written by a task of their own, and the guard the statement
    /// holds meanwhile. If the statement is dropped (cancelled, its client gone) before
    /// the last row is read, the rows end in an error at once and nothing is committed;
    /// once every row is read, the commit finishes even so.
    pub fn query(stream: SendableRecordBatchStream) -> (Rows, oneshot::Sender<()>) {
        let (guard, abandoned) = oneshot::channel();
        let rows = Rows::Query(Abandonable {
            inner: stream,
            abandoned,
            done: false,
        });
        (rows, guard)
    }

    /// The rows as a stream.
    fn into_stream(self, schema: &SchemaRef) -> SendableRecordBatchStream {
        match self {
            Rows::Batches(batches) => Box::pin(RecordBatchStreamAdapter::new(
                schema.clone(),
                futures::stream::iter(batches.into_iter().map(Ok)),
            )),
            Rows::Query(rows) => Box::pin(RecordBatchStreamAdapter::new(rows.inner.schema(), rows)),
        }
    }
}

/// A query's rows that fail as soon as the statement's guard (the sender) is dropped.
pub(super) struct Abandonable {
    inner: SendableRecordBatchStream,
    abandoned: oneshot::Receiver<()>,
    done: bool,
}

impl Stream for Abandonable {
    type Item = DfResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if !this.done && Pin::new(&mut this.abandoned).poll(cx).is_ready() {
            this.done = true;
            return Poll::Ready(Some(Err(DataFusionError::Execution(
                "the statement was cancelled before its rows were written".into(),
            ))));
        }
        this.inner.as_mut().poll_next(cx)
    }
}

/// The rows fitted to a table, ready for Delta: the plan to write, the count of rows it
/// yielded and the first fitting error (a value too long for `varchar(n)`), kept whole so
/// that its SQLSTATE survives Delta's error wrapping.
pub(super) struct Fitted {
    pub plan: LogicalPlan,
    pub rows: Arc<AtomicU64>,
    error: Arc<Mutex<Option<EngineError>>>,
}

impl Fitted {
    /// `rows` cast to `schema` and checked against `limits`. `None` when there are no
    /// rows and `skip_empty` is set (an append of nothing commits nothing).
    pub async fn new(
        rows: Rows,
        schema: &SchemaRef,
        limits: &[(usize, TextLimit)],
        skip_empty: bool,
    ) -> Result<Option<Fitted>> {
        let mut stream = rows.into_stream(schema);
        // The first batch with rows, read ahead to tell an empty write.
        let mut first = None;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            if batch.num_rows() > 0 {
                first = Some(batch);
                break;
            }
        }
        if first.is_none() && skip_empty {
            return Ok(None);
        }
        let count = Arc::new(AtomicU64::new(0));
        let error = Arc::new(Mutex::new(None));
        let (table, limits) = (schema.clone(), limits.to_vec());
        let (counted, failed) = (count.clone(), error.clone());
        let fitted = futures::stream::iter(first.map(Ok))
            .chain(stream)
            .map(move |batch| {
                let fit = batch.map_err(EngineError::from).and_then(|b| {
                    let b = types::cast_batch(&b, &table)?;
                    limits::fit_batch(b, &limits)
                });
                match fit {
                    Ok(b) => {
                        counted.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                        Ok(b)
                    }
                    Err(e) => {
                        let message = e.to_string();
                        if let Ok(mut slot) = failed.lock() {
                            slot.get_or_insert(e);
                        }
                        Err(DataFusionError::Execution(message))
                    }
                }
            });
        let stream: SendableRecordBatchStream =
            Box::pin(RecordBatchStreamAdapter::new(schema.clone(), fitted));
        let source = StreamingTable::try_new(schema.clone(), vec![Arc::new(Once::new(stream))])?;
        let plan = LogicalPlanBuilder::scan("rows", provider_as_source(Arc::new(source)), None)?
            .build()?;
        Ok(Some(Fitted {
            plan,
            rows: count,
            error,
        }))
    }

    /// The error to report for a failed write: the fitting error if there was one.
    pub fn error_or(&self, other: EngineError) -> EngineError {
        match self.error.lock().ok().and_then(|mut e| e.take()) {
            Some(e) => e,
            None => other,
        }
    }
}

/// A partition that yields its stream once (Delta plans and executes the write once).
struct Once {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl Once {
    fn new(stream: SendableRecordBatchStream) -> Self {
        Once {
            schema: stream.schema(),
            stream: Mutex::new(Some(stream)),
        }
    }
}

impl fmt::Debug for Once {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Once")
    }
}

impl PartitionStream for Once {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        match self.stream.lock().ok().and_then(|mut s| s.take()) {
            Some(stream) => stream,
            None => {
                let error: DfResult<RecordBatch> = Err(DataFusionError::Internal(
                    "the rows of a write were read twice".into(),
                ));
                Box::pin(RecordBatchStreamAdapter::new(
                    self.schema.clone(),
                    futures::stream::iter([error]),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::storage::tests::i64_values;
    use crate::storage::ManagedTable;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]))
    }

    fn batch(values: std::ops::Range<i64>) -> RecordBatch {
        let values: Vec<i64> = values.collect();
        RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values))]).expect("batch")
    }

    fn stream(
        items: impl futures::Stream<Item = DfResult<RecordBatch>> + Send + 'static,
    ) -> SendableRecordBatchStream {
        Box::pin(RecordBatchStreamAdapter::new(schema(), items))
    }

    async fn table_with(dir: &std::path::Path, rows: std::ops::Range<i64>) -> ManagedTable {
        let table = ManagedTable::create("t", dir, schema())
            .await
            .expect("create");
        table.overwrite(vec![batch(rows)]).await.expect("overwrite");
        table
    }

    #[tokio::test]
    async fn a_stream_is_written_whole_in_order_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = table_with(dir.path(), 0..3).await;
        let parts = (0..10).map(|i| Ok(batch(i * 1000..(i + 1) * 1000)));
        let written = table
            .overwrite_stream(stream(futures::stream::iter(parts)))
            .await
            .expect("overwrite");
        assert_eq!(written, 10_000);
        assert_eq!(i64_values(&table).await, (0..10_000).collect::<Vec<_>>());
        // No rows: the table is emptied.
        let written = table
            .overwrite_stream(stream(futures::stream::empty()))
            .await
            .expect("overwrite with nothing");
        assert_eq!(written, 0);
        assert!(i64_values(&table).await.is_empty());
    }

    #[tokio::test]
    async fn a_query_failing_midway_commits_nothing_and_keeps_its_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = table_with(dir.path(), 0..3).await;
        let version = table.version().await;
        let items = vec![
            Ok(batch(10..20)),
            Err(DataFusionError::ArrowError(
                Box::new(datafusion::arrow::error::ArrowError::DivideByZero),
                None,
            )),
        ];
        let err = table
            .overwrite_stream(stream(futures::stream::iter(items)))
            .await
            .expect_err("the query failed");
        // The query's own error, not Delta's wrapping of it.
        match &err {
            EngineError::DataFusion(DataFusionError::ArrowError(e, _)) => {
                assert!(matches!(
                    **e,
                    datafusion::arrow::error::ArrowError::DivideByZero
                ))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(table.version().await, version);
        assert_eq!(i64_values(&table).await, vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn an_abandoned_statement_commits_nothing_and_frees_the_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let table = table_with(dir.path(), 0..3).await;
        let version = table.version().await;
        // One batch, then a query that never yields again.
        let items = futures::stream::iter([Ok(batch(10..20))]).chain(futures::stream::pending());
        let write = table.overwrite_stream(stream(items));
        assert!(
            tokio::time::timeout(Duration::from_millis(300), write)
                .await
                .is_err(),
            "the write waits for the rest of the rows"
        );
        // Dropped by the timeout: the write ends without committing, and releases the
        // table for the next writer.
        let next = tokio::time::timeout(Duration::from_secs(30), table.append(vec![batch(5..6)]))
            .await
            .expect("the table was released")
            .expect("append");
        assert_eq!(next, 1);
        assert_eq!(table.version().await, version.map(|v| v + 1));
        assert_eq!(i64_values(&table).await, vec![0, 1, 2, 5]);
    }
}
