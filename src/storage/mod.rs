//! Managed tables: durable tables stored as plain Delta Lake tables in the data directory.
//!
//! A [`ManagedTable`] is the DataFusion `TableProvider` of one Delta table. Reads go to a
//! provider pinned to the latest committed snapshot; every write (`INSERT`, `COPY`,
//! `DELETE`, `UPDATE`, `TRUNCATE`) runs as one Delta commit under the table's write lock
//! and swaps in a provider over the new snapshot before it reports its row count, so a
//! write is acknowledged only once committed, and a read after it sees it. A statement
//! that fails never commits, so it leaves nothing behind.
//!
//! DataFusion plans the DML statements and calls `insert_into`, `delete_from`, `update`
//! and `truncate`; each returns a [`DataSinkExec`] whose sink performs the commit when
//! the plan is executed (never at planning time, so `EXPLAIN DELETE ...` deletes nothing).
//!
//! Inside a transaction block those writes, and the reads of a table the block wrote, go
//! to the block's private fork of the table instead, which `COMMIT` lands ([`txn`]).

mod compact;
pub mod direct;
mod files;
mod input;
mod limits;
mod synced;
pub mod txn;
mod types;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Column;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use deltalake::delta_datafusion::DeltaSessionContext;
use deltalake::protocol::SaveMode;
use deltalake::DeltaTable;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::engine::error::{EngineError, Result};

use input::{Fitted, Rows};
pub use limits::TextLimit;
pub use types::cast_batch;
use types::delta_compatible_schema;

/// Commits between two checkpoints of a table's log (Delta's default is 100).
const CHECKPOINT_INTERVAL: &str = "10";

/// State shared by a managed table's provider and the sinks of its pending writes.
struct TableState {
    name: String,
    /// The table's directory.
    dir: PathBuf,
    schema: SchemaRef,
    /// The table at its latest commit; also the write lock, so commits are serialised.
    table: tokio::sync::Mutex<DeltaTable>,
    /// Held (before `table`) by everything that removes data files: deletes, updates,
    /// overwrites, vacuums and compactions. A compaction runs beside appends, outside the
    /// write lock, but never beside these (a vacuum would delete the files it is writing;
    /// a delete and a compaction of the same files would make one of them fail).
    rewrite: tokio::sync::Mutex<()>,
    /// A scan provider pinned to the latest committed snapshot.
    reader: RwLock<Arc<dyn TableProvider>>,
    /// The declared lengths of text columns (by column index), checked on every write.
    limits: Vec<(usize, TextLimit)>,
}

/// The `TableProvider` of a managed (Delta) table.
#[derive(Clone)]
pub struct ManagedTable {
    state: Arc<TableState>,
}

impl fmt::Debug for ManagedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedTable")
            .field("name", &self.state.name)
            .finish()
    }
}

fn table_url(dir: &Path) -> Result<url::Url> {
    url::Url::from_directory_path(dir)
        .map_err(|_| EngineError::storage(&dir.display().to_string(), "not an absolute path"))
}

/// The table in `dir`, on the local file system through [`synced::SyncedStore`] (every
/// file written is fsynced before the write returns).
fn builder(dir: &Path) -> Result<deltalake::DeltaTableBuilder> {
    let url = table_url(dir)?;
    let storage =
        |e: deltalake::DeltaTableError| EngineError::storage(&dir.display().to_string(), e);
    Ok(deltalake::DeltaTableBuilder::from_url(url.clone())
        .map_err(storage)?
        .with_storage_backend(Arc::new(synced::SyncedStore::new()), url))
}

impl ManagedTable {
    /// Create a new, empty Delta table with `schema` in `dir` (which must not hold one).
    pub async fn create(name: &str, dir: &Path, schema: SchemaRef) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let schema = delta_compatible_schema(&schema).map_err(|e| EngineError::storage(name, e))?;
        let table = builder(dir)?
            .build()
            .map_err(|e| EngineError::storage(name, e))?;
        let table = table
            .write(vec![RecordBatch::new_empty(schema)])
            .with_save_mode(SaveMode::ErrorIfExists)
            .with_table_name(name)
            // Loading the table (at start-up, and for each transaction block that writes
            // it: see `txn`) replays the log since its last checkpoint: keep that short.
            .with_configuration([("delta.checkpointInterval", Some(CHECKPOINT_INTERVAL))])
            .await
            .map_err(|e| EngineError::storage(name, e))?;
        Self::from_table(name, dir, table).await
    }

    /// Open the Delta table in `dir`.
    pub async fn open(name: &str, dir: &Path) -> Result<Self> {
        let table = builder(dir)?
            .load()
            .await
            .map_err(|e| EngineError::storage(name, e))?;
        Self::from_table(name, dir, table).await
    }

    async fn from_table(name: &str, dir: &Path, table: DeltaTable) -> Result<Self> {
        let reader = reader_for(name, &table).await?;
        let schema = reader.schema();
        Ok(ManagedTable {
            state: Arc::new(TableState {
                name: name.to_string(),
                dir: dir.to_path_buf(),
                schema,
                table: tokio::sync::Mutex::new(table),
                rewrite: tokio::sync::Mutex::new(()),
                reader: RwLock::new(reader),
                limits: vec![],
            }),
        })
    }

    /// The table with the declared lengths of its text columns (`varchar(n)`,
    /// `char(n)`, by column name), which every later write checks. Called on a table just
    /// created or opened.
    pub fn with_limits(
        self,
        limits: &std::collections::BTreeMap<String, TextLimit>,
    ) -> Result<Self> {
        let by_index = limits
            .iter()
            .filter_map(|(c, l)| self.state.schema.index_of(c).ok().map(|i| (i, *l)))
            .collect();
        self.with_limit_indexes(by_index)
    }

    /// The table with the declared lengths of its text columns, by column index.
    fn with_limit_indexes(self, by_index: Vec<(usize, TextLimit)>) -> Result<Self> {
        match Arc::try_unwrap(self.state) {
            Ok(mut state) => {
                state.limits = by_index;
                Ok(ManagedTable {
                    state: Arc::new(state),
                })
            }
            Err(state) => Err(EngineError::storage(
                &state.name,
                "declared lengths set on a table in use",
            )),
        }
    }

    /// Append `batches` as one commit; returns the number of rows written.
    pub async fn append(&self, batches: Vec<RecordBatch>) -> Result<u64> {
        self.state
            .commit(WriteOp::Append, Rows::Batches(batches))
            .await
    }

    /// Replace the whole contents by `batches` in one commit (readers see the old rows
    /// until it lands); returns the number of rows written.
    pub async fn overwrite(&self, batches: Vec<RecordBatch>) -> Result<u64> {
        self.state
            .commit(WriteOp::Overwrite, Rows::Batches(batches))
            .await
    }

    /// Replace the whole contents by the rows of `stream` in one commit, writing them as
    /// they come rather than holding them all; returns the number of rows written. If the
    /// caller is dropped before every row is read, nothing is committed.
    pub async fn overwrite_stream(&self, stream: SendableRecordBatchStream) -> Result<u64> {
        let (rows, _abandon) = Rows::query(stream);
        self.state.commit(WriteOp::Overwrite, rows).await
    }

    /// Append the rows of `stream` as one commit, writing them as they come; returns the
    /// number of rows written. Nothing is committed if the stream fails or the caller is
    /// dropped first.
    pub async fn append_stream(&self, stream: SendableRecordBatchStream) -> Result<u64> {
        let (rows, _abandon) = Rows::query(stream);
        self.state.commit(WriteOp::Append, rows).await
    }

    /// Delete the data files that older versions still reference once they have been
    /// out of the latest version for `retention` (a query still reading such a version
    /// would fail, so keep it longer than queries run); returns how many went. Commits
    /// only when it deletes something.
    pub async fn vacuum(&self, retention: std::time::Duration) -> Result<usize> {
        let state = self.state.clone();
        tokio::spawn(async move { state.vacuum_now(retention).await })
            .await
            .map_err(|e| {
                EngineError::storage(&self.state.name, format!("vacuum task failed: {e}"))
            })?
    }

    /// Replace the whole contents by the rows `compute` gives, in one commit, holding the
    /// write lock from before `compute` runs until the commit lands, so no other write
    /// comes between what it read and what replaces it; returns the number of rows
    /// written. (`compute` may read this table: reads never take the lock.)
    pub async fn replace_with<F>(&self, compute: F) -> Result<u64>
    where
        F: std::future::Future<Output = Result<Vec<RecordBatch>>>,
    {
        // On the heap: a query's future is large, and debug builds keep it on the stack
        // of every poll (tests overflowed their 2 MB stack).
        let compute = Box::pin(compute);
        let _rewrite = self.state.rewrite.lock().await;
        let mut guard = self.state.table.lock().await;
        let batches = compute.await?;
        self.state
            .commit_locked(&mut guard, WriteOp::Overwrite, Rows::Batches(batches))
            .await
    }

    /// Forget the table's past: delete every data file the latest version does not read
    /// (the rows of earlier versions, deleted or replaced), write a checkpoint of the
    /// latest version and delete the log before it (the add actions, statistics and
    /// predicates of earlier commits). What stays describes the current rows only; the
    /// table can no longer be read as of an earlier version, and a query still reading
    /// one fails.
    pub async fn forget_history(&self) -> Result<()> {
        let state = self.state.clone();
        tokio::spawn(async move { state.forget_history_now().await })
            .await
            .map_err(|e| {
                EngineError::storage(&self.state.name, format!("history task failed: {e}"))
            })?
    }

    /// How the table changed after `version` up to the snapshot `until` (one of this
    /// table's [`Self::pinned_snapshot`]s; `None`: the latest version), as scans of the
    /// data files: only rows appended, or rows removed (the files removed, read from the
    /// earlier version; a file rewritten by `UPDATE` or `DELETE` is removed whole, its
    /// other rows added again) and rows added. `None` when `version` is no longer in the
    /// log or the table cannot be read file by file, or, when files were removed, when
    /// they hold more than `1/most` of the table's rows (or do not say how many).
    pub async fn changed_since(
        &self,
        version: u64,
        until: Option<&dyn TableProvider>,
        most: usize,
    ) -> Result<Option<TableChange>> {
        let storage = |e| EngineError::storage(&self.state.name, e);
        let (current, delta) = match until.and_then(|u| u.downcast_ref::<files::FileScan>()) {
            Some(scan) => scan.parts(),
            None => {
                let current = self.state.table.lock().await.clone();
                let delta = current.table_provider().await.map_err(storage)?;
                (current, delta)
            }
        };
        let mut old = current.clone();
        if old.load_version(version).await.is_err() {
            return Ok(None);
        }
        let Some(difference) = files::difference(&old, &current) else {
            return Ok(None);
        };
        if difference.appended() {
            let (_, added) = difference.scans((&old, delta.clone()), (&current, delta));
            return Ok(Some(TableChange::Appended(Arc::new(added))));
        }
        let few = match difference.removed_rows() {
            (Some(removed), Some(rows)) => removed.saturating_mul(most) <= rows,
            _ => false,
        };
        if !few {
            return Ok(None);
        }
        let old_delta = old.table_provider().await.map_err(storage)?;
        let (removed, added) = difference.scans((&old, old_delta), (&current, delta));
        Ok(Some(TableChange::Rewritten {
            removed: Arc::new(removed),
            added: Arc::new(added),
        }))
    }

    /// Delete the rows matching `predicate` in one commit; returns how many went.
    pub async fn delete_where(&self, predicate: Expr) -> Result<u64> {
        self.state
            .commit(WriteOp::Delete(Some(predicate)), Rows::Batches(Vec::new()))
            .await
    }

    /// The declared lengths of its text columns, by column index.
    pub fn text_limits(&self) -> &[(usize, TextLimit)] {
        &self.state.limits
    }

    /// The provider of the snapshot reads see now: a new one after every commit.
    pub fn snapshot(&self) -> Arc<dyn TableProvider> {
        self.for_read().state.reader()
    }

    /// [`Self::snapshot`] and its Delta version: reads of the provider see that version,
    /// whatever is committed after.
    pub fn pinned_snapshot(&self) -> (Arc<dyn TableProvider>, Option<u64>) {
        let snapshot = self.snapshot();
        let version = Self::version_of(snapshot.as_ref());
        (snapshot, version)
    }

    /// The Delta version a snapshot of this table (from [`Self::snapshot`]) reads.
    pub fn version_of(snapshot: &dyn TableProvider) -> Option<u64> {
        snapshot
            .downcast_ref::<files::FileScan>()
            .and_then(|f| f.version())
    }

    /// [`Self::snapshot`] with a tag of the rows it reads: equal for two snapshots that
    /// read the same data files, different once a write added or removed one.
    pub fn tagged_snapshot(&self) -> (Arc<dyn TableProvider>, u64) {
        let snapshot = self.snapshot();
        let tag = snapshot
            .downcast_ref::<files::FileScan>()
            .map_or(0, |f| f.content_tag());
        (snapshot, tag)
    }

    /// The Delta version of the latest commit (waits for a commit in progress).
    pub async fn version(&self) -> Option<u64> {
        self.state.table.lock().await.version()
    }

    /// [`Self::version`] of a table that has one (every table tessera made).
    async fn committed_version(&self) -> u64 {
        self.version().await.unwrap_or_default()
    }

    /// The table the current statement writes: inside a transaction block, the block's
    /// fork of it (see [`txn`]); otherwise the table itself.
    pub async fn for_write(&self) -> Result<ManagedTable> {
        txn::write_target(self).await
    }

    /// The table the current statement reads: the block's fork, if the block wrote it.
    fn for_read(&self) -> ManagedTable {
        txn::fork_of(self).unwrap_or_else(|| self.clone())
    }

    fn sink_exec(
        &self,
        op: WriteOp,
        input: Option<Arc<dyn ExecutionPlan>>,
    ) -> Arc<dyn ExecutionPlan> {
        let input = input.unwrap_or_else(|| Arc::new(EmptyExec::new(self.state.schema.clone())));
        Arc::new(DataSinkExec::new(
            input,
            Arc::new(TableSink {
                state: self.state.clone(),
                op,
            }),
            None,
        ))
    }
}

/// How data files are laid out: row groups of 64Ki rows with data pages of at most
/// 1Ki rows, each with min/max statistics. In a table sorted by a key (a materialised
/// view with `ORDER BY`), a lookup of one key is pruned down to one page per column by
/// those statistics (and, in a join, by the dynamic filter of the other side) instead of
/// reading the whole file. A page is decompressed whole, and a dictionary-encoded column
/// chunk's dictionary page is read before any of its pages, so small data pages and
/// dictionaries of at most 16 KiB (a column with more distinct values falls back to
/// plain encoding) keep a lookup cheap: with 8Ki-row pages and 1 MiB dictionaries a
/// lookup over 1M rows read 3 MB or more.
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(64 * 1024))
        .set_data_page_row_count_limit(1024)
        .set_dictionary_page_size_limit(16 * 1024)
        .build()
}

/// The session writes run in: one partition, so rows are written in the order they come
/// (a materialised view's `ORDER BY` survives into its files, which is what makes the
/// statistics above prune; with several partitions the writer interleaves them).
fn write_session() -> Result<Arc<dyn Session>> {
    static SESSION: std::sync::OnceLock<Arc<dyn Session>> = std::sync::OnceLock::new();
    if let Some(s) = SESSION.get() {
        return Ok(s.clone());
    }
    let overrides = std::collections::HashMap::from([(
        "datafusion.execution.target_partitions".to_string(),
        "1".to_string(),
    )]);
    let ctx = DeltaSessionContext::new_with_session_overrides(&overrides)
        .map_err(|e| EngineError::storage("(write session)", e))?;
    let session: Arc<dyn Session> = Arc::new(ctx.state());
    Ok(SESSION.get_or_init(|| session).clone())
}

/// The scan provider of `table`'s snapshot (see [`files`]).
async fn reader_for(name: &str, table: &DeltaTable) -> Result<Arc<dyn TableProvider>> {
    let delta = table
        .table_provider()
        .await
        .map_err(|e| EngineError::storage(name, e))?;
    Ok(Arc::new(files::FileScan::new(table.clone(), delta)))
}

impl TableState {
    /// Commit `op` on a task of its own: if the statement is cancelled or its client goes
    /// away while the commit runs, the commit still finishes and the table's state still
    /// follows it (a half-observed commit would leave reads on the old version). Rows
    /// still coming from a query are abandoned instead, committing nothing, if the
    /// statement goes before the last of them is read ([`Rows::query`]).
    async fn commit(self: &Arc<Self>, op: WriteOp, rows: Rows) -> Result<u64> {
        let state = self.clone();
        tokio::spawn(async move { state.commit_now(op, rows).await })
            .await
            .map_err(|e| EngineError::storage(&self.name, format!("commit task failed: {e}")))?
    }

    async fn commit_now(&self, op: WriteOp, rows: Rows) -> Result<u64> {
        let _rewrite = match op {
            WriteOp::Append => None,
            _ => Some(self.rewrite.lock().await),
        };
        let mut guard = self.table.lock().await;
        self.commit_locked(&mut guard, op, rows).await
    }

    /// Commit `op` on the table `guard` holds (the latest version).
    async fn commit_locked(&self, guard: &mut DeltaTable, op: WriteOp, rows: Rows) -> Result<u64> {
        let outcome = match self.apply(guard.clone(), op, rows).await {
            Ok(Some((table, rows))) => self.install(guard, table).await.map(|()| rows),
            Ok(None) => Ok(0),
            Err(e) => Err(e),
        };
        if outcome.is_err() {
            self.reload(guard).await;
        }
        outcome
    }

    /// After a write failed: it may have committed even so (a step after the commit
    /// failed), so read the latest version from the log. A write that removes files, built
    /// on a version older than the log's, could pass Delta's conflict check against a
    /// compaction and bring back the rows the compaction merged.
    async fn reload(&self, guard: &mut DeltaTable) {
        let mut latest = guard.clone();
        let reloaded = match latest.update_state().await {
            Ok(()) => self.install(guard, latest).await,
            Err(e) => Err(EngineError::storage(&self.name, e)),
        };
        if let Err(e) = reloaded {
            tracing::error!("cannot re-read the log of {}: {e}", self.name);
        }
    }

    /// Run `op` on `current`: the committed table and the rows written, or `None` when
    /// there is nothing to commit.
    async fn apply(
        &self,
        current: DeltaTable,
        op: WriteOp,
        rows: Rows,
    ) -> Result<Option<(DeltaTable, u64)>> {
        let storage = |e: deltalake::DeltaTableError| EngineError::storage(&self.name, e);
        let (table, rows) = match op {
            WriteOp::Append | WriteOp::Overwrite => {
                let append = matches!(op, WriteOp::Append);
                let Some(fitted) = Fitted::new(rows, &self.schema, &self.limits, append).await?
                else {
                    return Ok(None);
                };
                let mode = if append {
                    SaveMode::Append
                } else {
                    SaveMode::Overwrite
                };
                let write = current
                    .write(Vec::new())
                    .with_input_plan(fitted.plan.clone())
                    .with_save_mode(mode)
                    .with_session_state(write_session()?)
                    .with_writer_properties(writer_properties());
                // On the heap: planning and running the input make a large future, and
                // debug builds keep it on the stack of every poll (a rewrite inside
                // `forget_subject` overflowed a worker's stack).
                let table = Box::pin(std::future::IntoFuture::into_future(write))
                    .await
                    .map_err(|e| fitted.error_or(storage(e)))?;
                (table, fitted.rows.load(Ordering::Relaxed))
            }
            WriteOp::Delete(predicate) => {
                let mut builder = current
                    .delete()
                    .with_session_state(write_session()?)
                    .with_writer_properties(writer_properties());
                if let Some(p) = predicate {
                    builder = builder.with_predicate(p);
                }
                let (table, metrics) = builder.await.map_err(storage)?;
                (table, metrics.num_deleted_rows.unwrap_or(0) as u64)
            }
            WriteOp::Update {
                assignments,
                predicate,
            } => {
                let mut builder = current
                    .update()
                    .with_session_state(write_session()?)
                    .with_writer_properties(writer_properties());
                if let Some(p) = predicate {
                    builder = builder.with_predicate(p);
                }
                for (column, value) in assignments {
                    let limit =
                        self.schema.index_of(&column).ok().and_then(|i| {
                            self.limits.iter().find(|(j, _)| *j == i).map(|(_, l)| *l)
                        });
                    let value = match limit {
                        Some(limit) => limits::fit_expr(value, limit),
                        None => value,
                    };
                    builder = builder.with_update(column, value);
                }
                let (table, metrics) = builder
                    .await
                    .map_err(|e| limits::too_long(&e).unwrap_or_else(|| storage(e)))?;
                (table, metrics.num_updated_rows as u64)
            }
        };
        Ok(Some((table, rows)))
    }

    /// Make `table` (just committed) the latest version, for writers and readers.
    async fn install(&self, latest: &mut DeltaTable, table: DeltaTable) -> Result<()> {
        let reader = reader_for(&self.name, &table).await?;
        *latest = table;
        *self
            .reader
            .write()
            .map_err(|_| EngineError::storage(&self.name, "lock poisoned"))? = reader;
        Ok(())
    }

    async fn forget_history_now(&self) -> Result<()> {
        let _rewrite = self.rewrite.lock().await;
        let mut guard = self.table.lock().await;
        let storage = |e: deltalake::DeltaTableError| EngineError::storage(&self.name, e);
        let (table, _) = guard
            .clone()
            .vacuum()
            .with_mode(deltalake::operations::vacuum::VacuumMode::Full)
            .with_retention_period(chrono::Duration::zero())
            .with_enforce_retention_duration(false)
            .await
            .map_err(storage)?;
        self.install(&mut guard, table).await?;
        let version = guard
            .version()
            .ok_or_else(|| EngineError::storage(&self.name, "the table has no version"))?;
        deltalake::checkpoints::create_checkpoint(&guard, None)
            .await
            .map_err(storage)?;
        // Every log file before the checkpoint goes, whatever its age.
        let cutoff = chrono::Utc::now().timestamp_millis() + 60_000;
        deltalake::checkpoints::cleanup_expired_logs_for(
            version,
            guard.log_store().as_ref(),
            cutoff,
            None,
        )
        .await
        .map_err(storage)?;
        Ok(())
    }

    async fn vacuum_now(&self, retention: std::time::Duration) -> Result<usize> {
        let _rewrite = self.rewrite.lock().await;
        let mut guard = self.table.lock().await;
        let retention = chrono::Duration::from_std(retention)
            .map_err(|e| EngineError::storage(&self.name, e))?;
        let (table, metrics) = guard
            .clone()
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .await
            .map_err(|e| EngineError::storage(&self.name, e))?;
        let deleted = metrics.files_deleted.len();
        if deleted > 0 {
            self.install(&mut guard, table).await?;
        }
        Ok(deleted)
    }

    fn reader(&self) -> Arc<dyn TableProvider> {
        match self.reader.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// How a table changed between two versions (see [`ManagedTable::changed_since`]).
pub enum TableChange {
    /// Only rows appended: a scan of them.
    Appended(Arc<dyn TableProvider>),
    /// Rows removed and rows added, in a few files.
    Rewritten {
        removed: Arc<dyn TableProvider>,
        added: Arc<dyn TableProvider>,
    },
}

/// What a sink does with the table when its plan runs.
#[derive(Debug, Clone)]
enum WriteOp {
    Append,
    Overwrite,
    Delete(Option<Expr>),
    Update {
        assignments: Vec<(String, Expr)>,
        predicate: Option<Expr>,
    },
}

struct TableSink {
    state: Arc<TableState>,
    op: WriteOp,
}

impl fmt::Debug for TableSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TableSink({}, {:?})", self.state.name, self.op)
    }
}

impl DisplayAs for TableSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let op = match &self.op {
            WriteOp::Append => "append",
            WriteOp::Overwrite => "overwrite",
            WriteOp::Delete(_) => "delete",
            WriteOp::Update { .. } => "update",
        };
        write!(f, "DeltaCommit: table={} op={op}", self.state.name)
    }
}

#[async_trait]
impl DataSink for TableSink {
    fn schema(&self) -> &SchemaRef {
        &self.state.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let (rows, _abandon) = Rows::query(data);
        Ok(self.state.commit(self.op.clone(), rows).await?)
    }
}

/// Delta evaluates predicates against its own schema, where columns are unqualified.
fn unqualified(expr: Expr) -> DfResult<Expr> {
    expr.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
            Column::new_unqualified(c.name),
        ))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

fn conjunction(filters: Vec<Expr>) -> DfResult<Option<Expr>> {
    let filters = filters
        .into_iter()
        .map(unqualified)
        .collect::<DfResult<Vec<_>>>()?;
    Ok(datafusion::logical_expr::utils::conjunction(filters))
}

#[async_trait]
impl TableProvider for ManagedTable {
    fn schema(&self) -> SchemaRef {
        self.state.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.for_read()
            .state
            .reader()
            .scan(state, projection, filters, limit)
            .await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.state.reader().supports_filters_pushdown(filters)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let op = match insert_op {
            InsertOp::Append => WriteOp::Append,
            InsertOp::Overwrite => WriteOp::Overwrite,
            InsertOp::Replace => {
                return Err(DataFusionError::NotImplemented(
                    "REPLACE INTO is not supported; use DELETE then INSERT".into(),
                ))
            }
        };
        Ok(self.for_write().await?.sink_exec(op, Some(input)))
    }

    async fn delete_from(
        &self,
        _state: &dyn Session,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let op = WriteOp::Delete(conjunction(filters)?);
        Ok(self.for_write().await?.sink_exec(op, None))
    }

    async fn update(
        &self,
        _state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let assignments = assignments
            .into_iter()
            .map(|(c, e)| Ok((c, unqualified(e)?)))
            .collect::<DfResult<Vec<_>>>()?;
        let op = WriteOp::Update {
            assignments,
            predicate: conjunction(filters)?,
        };
        Ok(self.for_write().await?.sink_exec(op, None))
    }

    async fn truncate(&self, _state: &dyn Session) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self
            .for_write()
            .await?
            .sink_exec(WriteOp::Delete(None), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;

    /// How many data files `dir` holds.
    pub(super) fn data_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("table dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
            })
            .count()
    }

    /// (min, max) of column 0 in each row group of every data file of `dir`.
    fn row_group_ranges(dir: &Path) -> Vec<(i64, i64)> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::file::statistics::Statistics;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).expect("table dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|x| x != "parquet") {
                continue;
            }
            let reader = SerializedFileReader::new(std::fs::File::open(&path).expect("open"))
                .expect("footer");
            for rg in reader.metadata().row_groups() {
                match rg.column(0).statistics() {
                    Some(Statistics::Int64(s)) => {
                        out.push((*s.min_opt().expect("min"), *s.max_opt().expect("max")))
                    }
                    other => panic!("no int64 statistics: {other:?}"),
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn rows_are_written_in_order_in_small_row_groups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let table = ManagedTable::create("t", dir.path(), schema.clone())
            .await
            .expect("create");
        let batches: Vec<RecordBatch> = (0..25)
            .map(|b| {
                let values: Vec<i64> = (b * 8192..(b + 1) * 8192).collect();
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
                    .expect("batch")
            })
            .collect();
        table.overwrite(batches).await.expect("overwrite");
        let ranges = row_group_ranges(dir.path());
        // 204,800 rows in row groups of 64Ki rows, each holding the next run of values.
        assert_eq!(ranges.len(), 4, "{ranges:?}");
        assert_eq!(ranges[0], (0, 65_535));
        for w in ranges.windows(2) {
            assert_eq!(w[1].0, w[0].1 + 1, "{ranges:?}");
        }
        assert_eq!(ranges[3].1, 204_799);
    }

    #[tokio::test]
    async fn vacuum_deletes_the_files_of_replaced_versions_only_after_the_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let table = ManagedTable::create("t", dir.path(), schema.clone())
            .await
            .expect("create");
        for n in 0..3 {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(vec![n, n + 10]))],
            )
            .expect("batch");
            table.overwrite(vec![batch]).await.expect("overwrite");
        }
        let before = data_files(dir.path());
        assert!(before >= 3, "{before} files");
        let long = std::time::Duration::from_secs(3600);
        assert_eq!(table.vacuum(long).await.expect("vacuum"), 0);
        assert_eq!(data_files(dir.path()), before);

        let deleted = table
            .vacuum(std::time::Duration::ZERO)
            .await
            .expect("vacuum");
        assert_eq!(deleted, before - 1);
        assert_eq!(data_files(dir.path()), 1);
        assert_eq!(i64_values(&table).await, [2, 12]);
    }

    /// The values of a table's first column (an Int64), sorted.
    pub(super) async fn i64_values(table: &ManagedTable) -> Vec<i64> {
        let batches = SessionContext::new()
            .read_table(Arc::new(table.clone()))
            .expect("read")
            .collect()
            .await
            .expect("scan");
        let mut out: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                let col = b
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("i64");
                col.values().to_vec()
            })
            .collect();
        out.sort_unstable();
        out
    }
}
