//! `tessera.audit_log`: who ran which statement, for what purpose, how many rows it
//! returned and which personal-data columns it read.
//!
//! The wire layer hands one [`Entry`] per executed statement to [`AuditLog::record`]
//! (for a query, once its rows have been sent, with their count). A writer task commits
//! the queue to a Delta system table under `<data dir>/system/audit_log` in groups, at
//! most [`FLUSH`] apart, so a statement costs no commit of its own; entries of the last
//! moment before a crash can be lost. Only superusers may read the table (see
//! `mask::check_select`), and it is read-only to SQL.
//!
//! The personal-data columns read are collected while the statement is planned: every
//! scan of a classified relation reads through `mask::GuardedTable`, which notes the
//! classified columns it returns ([`note_read`]) in the statement's [`Reads`].

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::erasure::Suppression;
use crate::engine::EngineError;
use crate::storage::ManagedTable;

/// The system table's name (in the `tessera` schema).
pub const TABLE: &str = "audit_log";
/// How long an entry waits for others before it is committed.
const FLUSH: Duration = Duration::from_millis(500);
/// Statements longer than this are cut (with a note of their full length).
const MAX_STATEMENT: usize = 16 * 1024;

/// One executed statement.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at_micros: i64,
    pub role: String,
    pub purpose: Option<String>,
    pub statement: String,
    /// Rows returned (a query) or affected (a write); `None` when there is no count.
    pub rows: Option<i64>,
    /// `relation.column` of the personal-data columns read.
    pub pii_columns: Vec<String>,
    /// The SQLSTATE of a statement that failed.
    pub error: Option<String>,
}

fn schema() -> SchemaRef {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("at", utc, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("purpose", DataType::Utf8, true),
        Field::new("statement", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, true),
        Field::new("pii_columns", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// What the writer is sent.
enum Message {
    Entry(Entry),
    /// Commit what is queued now, then answer.
    Flush(oneshot::Sender<()>),
}

/// The queue to the audit writer.
#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::UnboundedSender<Message>,
    table: ManagedTable,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Open (or create) `tessera.audit_log` and start its writer.
    /// Identifiers of people on the `suppression` list are never written: literals
    /// holding one are logged as `'[erased]'`.
    pub async fn open(
        ctx: &SessionContext,
        data_dir: &Path,
        suppression: Arc<Suppression>,
    ) -> Result<Self, EngineError> {
        let table = crate::system::delta::open(ctx, data_dir, TABLE, schema()).await?;
        let (queue, entries) = mpsc::unbounded_channel();
        tokio::spawn(write(table.clone(), entries, suppression));
        Ok(AuditLog { queue, table })
    }

    /// Wait until every entry recorded so far is committed.
    pub async fn flush(&self) {
        let (done, committed) = oneshot::channel();
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = committed.await;
        }
    }

    /// Replace every occurrence of `terms` (any case) in the statements logged with
    /// `[erased]`, and forget the table's history (see `forget_subject`); returns how
    /// many entries changed.
    pub async fn scrub(&self, terms: &[String]) -> Result<u64, EngineError> {
        let terms: Vec<&String> = terms.iter().filter(|t| !t.trim().is_empty()).collect();
        if terms.is_empty() {
            self.table.forget_history().await?;
            return Ok(0);
        }
        let pattern = terms
            .iter()
            .map(|t| regex::escape(t))
            .collect::<Vec<_>>()
            .join("|");
        let pattern = regex::RegexBuilder::new(&pattern)
            .case_insensitive(true)
            .build()
            .map_err(|e| EngineError::storage(TABLE, e))?;
        self.flush().await;
        let changed = std::sync::atomic::AtomicU64::new(0);
        let table = self.table.clone();
        self.table
            .replace_with(async {
                let ctx = SessionContext::new();
                let batches = ctx.read_table(Arc::new(table))?.collect().await?;
                let mut out = Vec::with_capacity(batches.len());
                for b in batches {
                    let b = crate::storage::cast_batch(&b, &schema())?;
                    let i = schema()
                        .index_of("statement")
                        .map_err(DataFusionError::from)?;
                    let statements = datafusion::common::cast::as_string_array(b.column(i))?;
                    let scrubbed: StringArray = statements
                        .iter()
                        .map(|s| {
                            s.map(|s| match pattern.replace_all(s, "[erased]") {
                                std::borrow::Cow::Borrowed(s) => s.to_string(),
                                std::borrow::Cow::Owned(s) => {
                                    changed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    s
                                }
                            })
                        })
                        .collect();
                    let mut columns = b.columns().to_vec();
                    columns[i] = Arc::new(scrubbed);
                    out.push(
                        RecordBatch::try_new(schema(), columns).map_err(DataFusionError::from)?,
                    );
                }
                Ok(out)
            })
            .await?;
        self.table.forget_history().await?;
        Ok(changed.into_inner())
    }

    pub fn record(&self, mut entry: Entry) {
        if entry.statement.len() > MAX_STATEMENT {
            let mut cut = MAX_STATEMENT;
            while !entry.statement.is_char_boundary(cut) {
                cut -= 1;
            }
            let full = entry.statement.len();
            entry.statement.truncate(cut);
            entry.statement.push_str(&format!(" ... ({full} bytes)"));
        }
        // The writer only stops with the runtime.
        let _ = self.queue.send(Message::Entry(entry));
    }
}

async fn write(
    table: ManagedTable,
    mut messages: mpsc::UnboundedReceiver<Message>,
    suppression: Arc<Suppression>,
) {
    while let Some(first) = messages.recv().await {
        let mut group = Vec::new();
        let mut waiting = Vec::new();
        match first {
            Message::Entry(e) => {
                group.push(e);
                tokio::time::sleep(FLUSH).await;
            }
            Message::Flush(done) => waiting.push(done),
        }
        while let Ok(m) = messages.try_recv() {
            match m {
                Message::Entry(e) => group.push(e),
                Message::Flush(done) => waiting.push(done),
            }
        }
        for e in &mut group {
            e.statement = suppression.redact_literals(&e.statement);
        }
        if !group.is_empty() {
            match batch(&group) {
                Ok(b) => {
                    if let Err(e) = table.append(vec![b]).await {
                        error!(entries = group.len(), "cannot write the audit log: {e}");
                    }
                }
                Err(e) => error!("cannot build audit entries: {e}"),
            }
        }
        for done in waiting {
            let _ = done.send(());
        }
    }
}

fn batch(group: &[Entry]) -> datafusion::error::Result<RecordBatch> {
    let text = |f: &dyn Fn(&Entry) -> Option<String>| -> ArrayRef {
        Arc::new(group.iter().map(f).collect::<StringArray>())
    };
    let at: TimestampMicrosecondArray = group.iter().map(|e| Some(e.at_micros)).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(at.with_timezone("UTC")),
        text(&|e| Some(e.role.clone())),
        text(&|e| e.purpose.clone()),
        text(&|e| Some(e.statement.clone())),
        Arc::new(group.iter().map(|e| e.rows).collect::<Int64Array>()),
        text(&|e| (!e.pii_columns.is_empty()).then(|| e.pii_columns.join(", "))),
        text(&|e| e.error.clone()),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

/// The personal-data columns one statement read.
pub type Reads = Arc<Mutex<BTreeSet<String>>>;

tokio::task_local! {
    static READS: Reads;
}

/// Run `work` collecting the personal-data columns it reads into `reads`.
pub async fn collecting<F: std::future::Future>(reads: Reads, work: F) -> F::Output {
    READS.scope(reads, work).await
}

/// Note that the running statement reads `reads` (each `relation.column`).
pub fn note_reads(reads: &BTreeSet<String>) {
    let _ = READS.try_with(|r| {
        r.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(reads.iter().cloned());
    });
}

/// Note that the running statement reads `relation.column`.
pub fn note_read(relation: &str, column: &str) {
    let _ = READS.try_with(|r| {
        r.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("{relation}.{column}"));
    });
}
