//! `tessera.deliveries`: one row per attempt to deliver a batch of segment changes to a
//! destination (a Delta table under `<data dir>/system/deliveries`, read-only to SQL).
//!
//! It is also where a destination's position is kept: the last change of its last
//! batch that was delivered (or had nobody to send, for want of consent), as the
//! segment version and change key the next batch starts after. The row of a delivery is
//! committed after the receiver's 2xx, so a crash in between sends the batch again
//! (at-least-once; receivers drop repeats by their keys).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::cast::{as_int64_array, as_string_array};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::SessionContext;

use crate::engine::error::Result;
use crate::storage::ManagedTable;

const TABLE: &str = "deliveries";

fn timestamp(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        nullable,
    )
}

fn schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let int = |name: &str, nullable| Field::new(name, DataType::Int64, nullable);
    Arc::new(Schema::new(vec![
        text("destination", false),
        text("destination_id", false),
        text("segment", false),
        text("batch_key", false),
        int("attempt", false),
        text("status", false),
        int("http_status", true),
        text("error", true),
        int("changes", false),
        int("withheld", false),
        int("first_version", false),
        int("last_version", false),
        text("last_key", false),
        timestamp("attempted_at", false),
        int("duration_ms", false),
        timestamp("next_attempt_at", true),
    ]))
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The receiver answered 2xx.
    Delivered,
    /// No answer, or not a 2xx: the batch is tried again later.
    Failed,
    /// Nobody in the batch consented to the destination's purpose: nothing was sent.
    Withheld,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Withheld => "withheld",
        }
    }
}

/// Where a destination is in its segment's changes: after the change of segment
/// version `version` whose key is `key` (changes are sent in (version, key) order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub version: i64,
    pub key: String,
}

impl Cursor {
    /// Before every change.
    pub fn start() -> Self {
        Cursor {
            version: -1,
            key: String::new(),
        }
    }
}

/// One attempt, as recorded.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub destination: &'a super::Destination,
    pub batch_key: String,
    pub attempt: i64,
    pub status: Status,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    pub changes: i64,
    pub withheld: i64,
    pub first_version: i64,
    /// Where the destination is once the batch is delivered.
    pub last: &'a Cursor,
    pub attempted_at: i64,
    pub duration_ms: i64,
    pub next_attempt_at: Option<i64>,
}

/// `tessera.deliveries`.
#[derive(Debug, Clone)]
pub struct Deliveries {
    table: ManagedTable,
}

impl Deliveries {
    /// Open the table in the data directory (creating it on first start) and register it.
    pub async fn open(ctx: &SessionContext, data_dir: &std::path::Path) -> Result<Self> {
        let table = crate::system::delta::open(ctx, data_dir, TABLE, schema()).await?;
        Ok(Deliveries { table })
    }

    /// Append the row of `a`.
    pub async fn record(&self, a: &Attempt<'_>) -> Result<()> {
        let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
        let int = |v: Option<i64>| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
        let at = |v: Option<i64>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(vec![v]).with_timezone("UTC"))
        };
        let d = a.destination;
        let columns = vec![
            text(&d.name),
            text(&d.id),
            text(&d.segment),
            text(&a.batch_key),
            int(Some(a.attempt)),
            text(a.status.as_str()),
            int(a.http_status),
            Arc::new(StringArray::from(vec![a.error.as_deref()])) as ArrayRef,
            int(Some(a.changes)),
            int(Some(a.withheld)),
            int(Some(a.first_version)),
            int(Some(a.last.version)),
            text(&a.last.key),
            at(Some(a.attempted_at)),
            int(Some(a.duration_ms)),
            at(a.next_attempt_at),
        ];
        let batch = RecordBatch::try_new(schema(), columns).map_err(DataFusionError::from)?;
        self.table.append(vec![batch]).await?;
        Ok(())
    }

    /// Where destination `id` is: after the last change of its last batch delivered or
    /// withheld ([`Cursor::start`] when there is none).
    pub async fn cursor(&self, ctx: &SessionContext, id: &str) -> Result<Cursor> {
        let done = col("destination_id").eq(lit(id)).and(
            col("status")
                .eq(lit(Status::Delivered.as_str()))
                .or(col("status").eq(lit(Status::Withheld.as_str()))),
        );
        let batches = ctx
            .read_table(Arc::new(self.table.clone()))?
            .filter(done)?
            .select_columns(&["last_version", "last_key"])?
            .collect()
            .await?;
        let mut cursor = Cursor::start();
        for b in &batches {
            let versions = as_int64_array(b.column(0))?;
            let keys = cast(b.column(1), &DataType::Utf8).map_err(DataFusionError::from)?;
            let keys = as_string_array(&keys)?;
            for i in 0..b.num_rows() {
                if versions.is_null(i) || keys.is_null(i) {
                    continue;
                }
                let at = Cursor {
                    version: versions.value(i),
                    key: keys.value(i).to_string(),
                };
                cursor = cursor.max(at);
            }
        }
        Ok(cursor)
    }
}
