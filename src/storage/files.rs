//! Reads of a managed table straight from the data files of its latest snapshot.
//!
//! delta-rs' `DeltaScan` replays the table's log through the Delta kernel on every scan
//! (parsing each file's statistics from JSON on a blocking thread) and wraps the Parquet
//! scan in a transform for column mapping, deletion vectors and partition values. Tables
//! tessera writes use none of these (reader protocol 1, or 3 with only `timestampNtz`;
//! no partition columns), so a scan
//! of them is a plain Parquet scan of a file list that only changes with a commit:
//! [`FileScan`] keeps that list (built on the first scan after a commit) and plans
//! DataFusion's Parquet scan over it, with the query's filters pushed into the reader
//! (row-group and page pruning by the files' own statistics, late materialisation of the
//! other columns) and footers served from the runtime's metadata cache. A point lookup
//! on a materialised view sorted by its key thus costs one small page per column.
//!
//! A table written by another engine with any of those features is read through
//! `DeltaScan`, which handles them.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, FieldRef, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, Statistics};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetAccessPlan, ParquetFileMetrics, RowGroupAccessPlanFilter,
};
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::pruning::{PruningPredicate, PruningPredicateBuilder};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::ExecutionPlan;
use deltalake::DeltaTable;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::ObjectMeta;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::Result as ParquetResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};

/// Reader features that do not change how a data file is read (delta-rs marks every
/// table with a `TIMESTAMP` column `timestampNtz`).
const PLAIN_READER_FEATURES: &[&str] = &["timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"];

/// The data files of one snapshot, as DataFusion reads them.
#[derive(Debug)]
struct Listing {
    files: Vec<PartitionedFile>,
    /// Rows in all files, when every file's log entry counts them.
    rows: Option<usize>,
    /// Rows in each file, when its log entry counts them (for [`difference`]).
    counts: Vec<Option<usize>>,
}

/// A scan provider over one committed snapshot of a managed table.
#[derive(Debug)]
pub(super) struct FileScan {
    table: DeltaTable,
    /// delta-rs' provider over the same snapshot: the schema, and every scan of a table
    /// this one cannot read itself.
    delta: Arc<dyn TableProvider>,
    listing: OnceLock<Option<Arc<Listing>>>,
    /// [`Self::content_tag`], once computed.
    tag: OnceLock<u64>,
}

impl FileScan {
    pub(super) fn new(table: DeltaTable, delta: Arc<dyn TableProvider>) -> Self {
        FileScan {
            table,
            delta,
            listing: OnceLock::new(),
            tag: OnceLock::new(),
        }
    }

    /// The snapshot's Delta version.
    pub(super) fn version(&self) -> Option<u64> {
        self.table.version()
    }

    /// The snapshot's table and delta-rs' provider of it.
    pub(super) fn parts(&self) -> (DeltaTable, Arc<dyn TableProvider>) {
        (self.table.clone(), self.delta.clone())
    }

    /// A tag of the rows the snapshot holds: equal for two versions that read the same
    /// data files (a vacuum or a checkpoint between them), different after any write
    /// that adds or removes one. An empty table is tagged by its version.
    pub(super) fn content_tag(&self) -> u64 {
        *self.tag.get_or_init(|| self.compute_tag())
    }

    fn compute_tag(&self) -> u64 {
        let mut paths: Vec<String> = self
            .table
            .snapshot()
            .map(|s| s.log_data().iter().map(|f| f.path().to_string()).collect())
            .unwrap_or_default();
        if paths.is_empty() {
            paths.push(format!("(empty) v{:?}", self.table.version()));
        }
        paths.sort_unstable();
        twox_hash::XxHash3_128::oneshot(paths.join("\n").as_bytes()) as u64
    }

    /// The snapshot's files, or `None` when the table needs `DeltaScan`.
    fn listing(&self) -> Option<Arc<Listing>> {
        self.listing
            .get_or_init(|| list(&self.table).map(Arc::new))
            .clone()
    }
}

/// The files of `table`'s snapshot, if all of them can be read as plain Parquet files
/// with the table's schema.
fn list(table: &DeltaTable) -> Option<Listing> {
    // An empty list may also mean a snapshot loaded without its files: `DeltaScan`
    // reads the log in that case (and an empty table costs it nothing).
    list_all(table).filter(|l| !l.files.is_empty())
}

/// How `new` (a later version of the same table) differs from `old`, file by file: the
/// files it no longer holds (a file rewritten by `UPDATE` or `DELETE` is removed whole,
/// its other rows added again) and those it holds anew, with the rows in each set and
/// in all of `new`, when the log counts them. `None` when a version cannot be read file
/// by file.
pub(super) fn difference(old: &DeltaTable, new: &DeltaTable) -> Option<Difference> {
    let before = list_all(old)?;
    let after = list_all(new)?;
    let paths = |l: &Listing| -> std::collections::HashSet<StorePath> {
        l.files
            .iter()
            .map(|f| f.object_meta.location.clone())
            .collect()
    };
    let (was, is) = (paths(&before), paths(&after));
    let only = |l: &Listing, other: &std::collections::HashSet<StorePath>| {
        let (mut files, mut rows) = (Vec::new(), Some(0usize));
        for (file, count) in l.files.iter().zip(&l.counts) {
            if !other.contains(&file.object_meta.location) {
                files.push(file.clone());
                rows = rows.zip(*count).map(|(a, b)| a + b);
            }
        }
        Listing {
            files,
            rows,
            counts: Vec::new(),
        }
    };
    Some(Difference {
        removed: only(&before, &is),
        added: only(&after, &was),
        rows: after.rows,
    })
}

/// What [`difference`] finds.
pub(super) struct Difference {
    removed: Listing,
    added: Listing,
    rows: Option<usize>,
}

impl Difference {
    /// Whether files were only added (rows appended).
    pub fn appended(&self) -> bool {
        self.removed.files.is_empty()
    }

    /// The rows in the removed files and in all of the later version, when counted.
    pub fn removed_rows(&self) -> (Option<usize>, Option<usize>) {
        (self.removed.rows, self.rows)
    }

    /// A scan of the removed files (of `old`, with delta-rs' provider `delta`) and one of
    /// the added files (of `new`, with `new_delta`).
    pub fn scans(
        self,
        (old, delta): (&DeltaTable, Arc<dyn TableProvider>),
        (new, new_delta): (&DeltaTable, Arc<dyn TableProvider>),
    ) -> (FileScan, FileScan) {
        let scan = |table: &DeltaTable, delta, listing| FileScan {
            table: table.clone(),
            delta,
            listing: OnceLock::from(Some(Arc::new(listing))),
            tag: OnceLock::new(),
        };
        (
            scan(old, delta, self.removed),
            scan(new, new_delta, self.added),
        )
    }
}

/// [`list`], empty tables included.
fn list_all(table: &DeltaTable) -> Option<Listing> {
    let state = table.snapshot().ok()?;
    // Reader protocol 2 brings column mapping; 3 names its reader features, of which
    // only those below leave the files plain (deletion vectors, column mapping and type
    // widening do not). Partition values live in the log, not in the files.
    let protocol = state.protocol();
    let plain = match protocol.min_reader_version() {
        1 => true,
        3 => protocol
            .reader_features()
            .unwrap_or_default()
            .iter()
            .all(|f| PLAIN_READER_FEATURES.contains(&f.to_string().as_str())),
        _ => false,
    };
    if !plain || !state.metadata().partition_columns().is_empty() {
        return None;
    }
    // Other engines write nested fields as optional even where the Delta schema says
    // NOT NULL; `DeltaScan` relaxes them before reading, DataFusion's cast refuses them.
    let schema = state.snapshot().arrow_schema();
    if schema
        .fields()
        .iter()
        .any(|f| has_required_child(f.data_type()))
    {
        return None;
    }
    let root = table.table_url().to_file_path().ok()?;
    let (mut files, mut counts) = (Vec::new(), Vec::new());
    let mut rows = Some(0usize);
    for file in state.log_data().iter() {
        let relative = file.path();
        if relative.contains("://") || file.deletion_vector_descriptor().is_some() {
            return None;
        }
        let location = StorePath::from_absolute_path(root.join(relative.as_ref())).ok()?;
        let size = u64::try_from(file.size()).ok()?;
        rows = rows.zip(file.num_records()).map(|(a, b)| a + b);
        counts.push(file.num_records());
        // From the store path itself: `PartitionedFile::new` would parse its text again
        // and encode the escapes of a directory name with spaces a second time.
        files.push(PartitionedFile::from(ObjectMeta {
            location,
            size,
            last_modified: chrono::DateTime::UNIX_EPOCH,
            e_tag: None,
            version: None,
        }));
    }
    Some(Listing {
        files,
        rows,
        counts,
    })
}

/// Whether `data_type` holds a non-nullable field at any depth.
fn has_required_child(data_type: &DataType) -> bool {
    let required = |f: &FieldRef| !f.is_nullable() || has_required_child(f.data_type());
    match data_type {
        DataType::Struct(fields) => fields.iter().any(required),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => required(f),
        // A map's entries and keys are never null by definition; its values may be.
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) => kv.get(1).is_some_and(required),
            _ => false,
        },
        _ => false,
    }
}

/// The metadata cache's reader factory, asking for the page index with every footer.
///
/// DataFusion's Parquet opener reads the footer without the page index (so the cache
/// keeps it without), then loads the page index itself whenever a predicate could use
/// it, bypassing the cache: every lookup decoded the whole page index again, which cost
/// more than the lookup. Asked for up front, it is cached with the footer.
#[derive(Debug)]
struct PageIndexed(CachedParquetFileReaderFactory);

impl ParquetFileReaderFactory for PageIndexed {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn AsyncFileReader + Send>> {
        let inner = self
            .0
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(WithPageIndex(inner)))
    }
}

struct WithPageIndex(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for WithPageIndex {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, ParquetResult<Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, ParquetResult<Vec<Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        Box::pin(async move { self.0.get_metadata(Some(&options)).await })
    }
}

/// The files of `files` that may hold rows for which `predicate` holds, each narrowed
/// to the byte range of the row groups whose statistics (in its cached footer) do not
/// rule that out.
///
/// The Parquet opener prunes row groups the same way, but only once it has opened a
/// file, and DataFusion splits a large file into byte ranges before that (one per
/// partition): a key lookup opened every file, some several times, to read one row
/// group. Narrowed here, the files that cannot match are never opened and the range
/// left is small enough not to be split. The opener still prunes within the range.
async fn pruned(
    files: &[PartitionedFile],
    predicate: &Arc<dyn PhysicalExpr>,
    schema: &SchemaRef,
    state: &dyn Session,
) -> DfResult<Option<(Vec<PartitionedFile>, usize)>> {
    let pruning = PruningPredicateBuilder::new()
        .with_file_schema(schema.clone())
        .try_build(predicate.clone());
    let pruning = match pruning {
        Ok(pruning) if !pruning.always_true() => pruning,
        _ => return Ok(None),
    };
    let store = state
        .runtime_env()
        .object_store(ObjectStoreUrl::local_filesystem())?;
    let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
    // Footers not cached yet (the first scan after a restart) are read 16 at a time.
    let metas: Vec<ObjectMeta> = files.iter().map(|f| f.object_meta.clone()).collect();
    let footers: Vec<Arc<ParquetMetaData>> = futures::stream::iter(metas)
        .map(|meta| {
            let (store, cache) = (store.clone(), cache.clone());
            async move {
                DFParquetMetadata::new(store.as_ref(), &meta)
                    .with_file_metadata_cache(Some(cache))
                    .with_page_index_policy(Some(PageIndexPolicy::Optional))
                    .fetch_metadata()
                    .await
            }
        })
        .buffered(16)
        .try_collect()
        .await?;
    let metrics = ExecutionPlanMetricsSet::new();
    let mut rows = 0;
    let mut kept = Vec::with_capacity(files.len());
    for (file, footer) in files.iter().zip(&footers) {
        if let Some((file, n)) = narrowed(file, footer, schema, &pruning, &metrics) {
            kept.push(file);
            rows += n;
        }
    }
    Ok(Some((kept, rows)))
}

/// `file` narrowed to its row groups that `pruning` does not rule out by the
/// statistics in `footer`, with their rows, or `None` if it rules out all of them.
fn narrowed(
    file: &PartitionedFile,
    footer: &ParquetMetaData,
    schema: &SchemaRef,
    pruning: &PruningPredicate,
    metrics: &ExecutionPlanMetricsSet,
) -> Option<(PartitionedFile, usize)> {
    let groups = footer.row_groups();
    let mut filter = RowGroupAccessPlanFilter::new(ParquetAccessPlan::new_all(groups.len()));
    let file_metrics = ParquetFileMetrics::new(0, file.object_meta.location.as_ref(), metrics);
    let parquet_schema = footer.file_metadata().schema_descr();
    filter.prune_by_statistics(schema, parquet_schema, groups, pruning, &file_metrics);
    let selected = filter.build().row_group_indexes();
    let (&first, &last) = (selected.first()?, selected.last()?);
    let rows = selected
        .iter()
        .map(|&i| usize::try_from(groups[i].num_rows()).unwrap_or(0))
        .sum();
    if selected.len() == groups.len() {
        return Some((file.clone(), rows));
    }
    // The opener reads a row group when its first page starts in the range.
    let start = |i: usize| {
        let column = groups[i].column(0);
        column
            .dictionary_page_offset()
            .unwrap_or_else(|| column.data_page_offset())
    };
    Some((file.clone().with_range(start(first), start(last) + 1), rows))
}

/// `files` in at most `n` groups of neighbouring files (one per partition).
fn groups(files: &[PartitionedFile], n: usize) -> Vec<FileGroup> {
    let per_group = files.len().div_ceil(n.max(1)).max(1);
    files
        .chunks(per_group)
        .map(|chunk| FileGroup::new(chunk.to_vec()))
        .collect()
}

#[async_trait]
impl TableProvider for FileScan {
    fn schema(&self) -> SchemaRef {
        self.delta.schema()
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
        let Some(listing) = self.listing() else {
            return self.delta.scan(state, projection, filters, limit).await;
        };
        let schema = self.schema();
        let store_url = ObjectStoreUrl::local_filesystem();
        let store = state.runtime_env().object_store(&store_url)?;
        let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        let options = TableParquetOptions {
            global: state.config().options().execution.parquet.clone(),
            ..Default::default()
        };
        let mut source = ParquetSource::new(TableSchema::from(schema.clone()))
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(PageIndexed(
                CachedParquetFileReaderFactory::new(store, cache),
            )));
        // The filters are evaluated in the reader (pruning row groups and pages, then
        // rows). One that cannot be compiled against the table's columns is left out
        // here, and DataFusion keeps it in a filter above the scan.
        let predicate = super::conjunction(filters.to_vec())?.and_then(|expr| {
            let df_schema = DFSchema::try_from(schema.as_ref().clone()).ok()?;
            state.create_physical_expr(expr, &df_schema).ok()
        });
        let files = match &predicate {
            Some(predicate) => pruned(&listing.files, predicate, &schema, state).await?,
            None => None,
        };
        // With filters, the rows of the row groups left are an upper bound of what the
        // scan returns: a lookup is estimated at a row group, not the whole table (so a
        // join through it builds its hash table from it, with no repartitioning).
        let (files, rows) = match (files, listing.rows) {
            (Some((files, rows)), _) => (files, Precision::Inexact(rows)),
            (None, Some(rows)) if predicate.is_some() => {
                (listing.files.clone(), Precision::Inexact(rows))
            }
            (None, Some(rows)) => (listing.files.clone(), Precision::Exact(rows)),
            (None, None) => (listing.files.clone(), Precision::Absent),
        };
        if files.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        if let Some(predicate) = predicate {
            source = source.with_predicate(predicate).with_pushdown_filters(true);
        }
        let mut statistics = Statistics::new_unknown(&schema);
        statistics.num_rows = rows;
        let partitions = state.config().target_partitions();
        // Every column in table order is no projection: projecting the scan's
        // equivalence properties onto all of a wide table's columns took about 7% of a
        // point lookup's CPU.
        let projection = projection
            .filter(|p| !p.iter().copied().eq(0..schema.fields().len()))
            .cloned();
        let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
            .with_file_groups(groups(&files, partitions))
            .with_statistics(statistics)
            .with_projection_indices(projection)?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Inexact (pruning only, the filter stays) wherever delta-rs would push it too.
        self.delta.supports_filters_pushdown(filters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::ManagedTable;
    use datafusion::arrow::array::{
        Array, ArrayRef, Int64Array, RecordBatch, StringArray, StructArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Fields, Schema, TimeUnit};
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::SessionContext;

    fn batch(schema: &SchemaRef, from: i64, to: i64) -> RecordBatch {
        let keys: Vec<String> = (from..to).map(|i| format!("key-{i:08}")).collect();
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(keys)),
                Arc::new(Int64Array::from((from..to).collect::<Vec<_>>())),
                Arc::new(TimestampMicrosecondArray::from(
                    (from..to).map(|i| i * 1_000_000).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch")
    }

    /// A Delta table in `dir` written by delta-rs itself (as another engine would),
    /// partitioned by `partitions`.
    async fn written_by_delta(
        dir: &std::path::Path,
        rows: RecordBatch,
        partitions: &[&str],
    ) -> DeltaTable {
        let url = url::Url::from_directory_path(dir).expect("url");
        let write = deltalake::DeltaTableBuilder::from_url(url)
            .expect("builder")
            .build()
            .expect("table")
            .write(vec![rows]);
        let write = match partitions {
            [] => write,
            cols => write.with_partition_columns(cols.iter().copied()),
        };
        write.await.expect("write")
    }

    /// The bytes the plan's Parquet scan read, and its text.
    fn scanned(plan: &Arc<dyn ExecutionPlan>) -> (usize, String) {
        fn walk(plan: &Arc<dyn ExecutionPlan>) -> usize {
            let own = match plan.name() {
                "DataSourceExec" => plan
                    .metrics()
                    .and_then(|m| m.sum_by_name("bytes_scanned"))
                    .map_or(0, |v| v.as_usize()),
                _ => 0,
            };
            own + plan.children().into_iter().map(walk).sum::<usize>()
        }
        (
            walk(plan),
            displayable(plan.as_ref()).indent(true).to_string(),
        )
    }

    #[tokio::test]
    async fn a_lookup_in_a_sorted_table_reads_its_files_directly_and_little_of_them() {
        let root = tempfile::tempdir().expect("tempdir");
        // A directory name that object-store paths escape.
        let dir = root.path().join("data dir %1");
        // A TIMESTAMP column makes delta-rs mark the table with the `timestampNtz`
        // reader feature (reader protocol 3), as most tessera tables are.
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        let table = ManagedTable::create("t", &dir, schema.clone())
            .await
            .expect("create");
        let batches: Vec<_> = (0..25)
            .map(|b| batch(&schema, b * 8192, (b + 1) * 8192))
            .collect();
        table.overwrite(batches).await.expect("overwrite");
        table
            .append(vec![batch(&schema, 300_000, 300_010)])
            .await
            .expect("append");
        let file_bytes: u64 = std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
            .map(|e| e.metadata().expect("metadata").len())
            .sum();

        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(table.clone()))
            .expect("register");
        for (key, n) in [("key-00123456", 123_456), ("key-00300004", 300_004)] {
            let df = ctx
                .sql(&format!("SELECT n, at FROM t WHERE k = '{key}'"))
                .await
                .expect("plan");
            let plan = df.create_physical_plan().await.expect("physical plan");
            let rows = collect(plan.clone(), ctx.task_ctx()).await.expect("run");
            let values: Vec<(i64, i64)> = rows
                .iter()
                .flat_map(|b| {
                    let n = b
                        .column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .expect("n");
                    let at = b
                        .column(1)
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>();
                    let at = at.expect("at");
                    (0..b.num_rows()).map(move |i| (n.value(i), at.value(i)))
                })
                .collect();
            assert_eq!(values, [(n, n * 1_000_000)]);
            let (bytes, text) = scanned(&plan);
            assert!(!text.contains("DeltaScan"), "{text}");
            assert!(
                bytes > 0 && (bytes as u64) * 20 < file_bytes,
                "read {bytes} of {file_bytes} bytes for one row:\n{text}"
            );
            // Only the file that can hold the key is scanned, in one piece (the range
            // of its matching row groups is not split across partitions).
            assert_eq!(text.matches(".parquet").count(), 1, "{text}");
        }
        // The scan's row estimate is the rows of the row groups left (an upper bound),
        // exact only without filters.
        let state = ctx.state();
        let key = datafusion::prelude::col("k").eq(datafusion::prelude::lit("key-00123456"));
        for (filters, rows) in [
            (vec![key], Precision::Inexact(64 * 1024)),
            (vec![], Precision::Exact(204_810)),
        ] {
            let scan = table
                .scan(&state, None, &filters, None)
                .await
                .expect("scan");
            let statistics = StatisticsContext::new()
                .compute(scan.as_ref(), &StatisticsArgs::new())
                .expect("statistics");
            assert_eq!(statistics.num_rows, rows, "{filters:?}");
        }
        // A key no file's statistics allow (between the two files' ranges) reads
        // nothing at all.
        let df = ctx
            .sql("SELECT n FROM t WHERE k = 'key-00250000'")
            .await
            .expect("plan");
        let plan = df.create_physical_plan().await.expect("physical plan");
        let text = displayable(plan.as_ref()).indent(true).to_string();
        assert!(
            text.contains("EmptyExec") && !text.contains(".parquet"),
            "{text}"
        );
        let rows = collect(plan, ctx.task_ctx()).await.expect("run");
        assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
        // The footers were cached with their page index (else every lookup decodes it).
        let cached = ctx
            .runtime_env()
            .cache_manager
            .get_file_metadata_cache()
            .list_entries();
        assert!(!cached.is_empty());
        for entry in cached.values() {
            let info = entry.value.file_metadata.extra_info();
            assert_eq!(info.get("page_index").map(String::as_str), Some("true"));
        }
        let all = ctx
            .sql("SELECT count(*), sum(n) FROM t")
            .await
            .expect("plan");
        let total = all.collect().await.expect("count");
        let count = total[0].column(0).as_any().downcast_ref::<Int64Array>();
        assert_eq!(count.expect("count").value(0), 204_810);
        let sum = total[0].column(1).as_any().downcast_ref::<Int64Array>();
        // 0..204,800 and 300,000..300,010.
        assert_eq!(sum.expect("sum").value(0), 20_971_417_600 + 3_000_045);
    }

    #[tokio::test]
    async fn tables_other_engines_may_write_differently_are_read_through_delta() {
        // A NOT NULL field inside a struct: other engines write it as optional.
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = Fields::from(vec![Field::new("city", DataType::Utf8, false)]);
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "address",
            DataType::Struct(inner.clone()),
            true,
        )]));
        let city: ArrayRef = Arc::new(StringArray::from(vec!["Berlin"]));
        let rows = RecordBatch::try_new(
            schema,
            vec![Arc::new(StructArray::new(inner, vec![city], None))],
        )
        .expect("batch");
        let table = written_by_delta(dir.path(), rows, &[]).await;
        assert!(list(&table).is_none(), "nested NOT NULL");
        assert!(!has_required_child(&DataType::Map(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", DataType::Utf8, false),
                    Field::new("value", DataType::Utf8, true),
                ])),
                false,
            )),
            false,
        )));

        // An empty table (no files listed) is left to Delta as well.
        let empty = tempfile::tempdir().expect("tempdir");
        let plain: SchemaRef = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let table = ManagedTable::create("e", empty.path(), plain)
            .await
            .expect("create");
        let ctx = SessionContext::new();
        let out = ctx
            .read_table(Arc::new(table))
            .expect("read")
            .collect()
            .await
            .expect("scan");
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    }

    /// Rows of a text column `name` and an integer column `n`.
    fn text_and_number(name: &str, texts: Vec<&str>, numbers: Vec<i64>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new(name, DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(texts)),
            Arc::new(Int64Array::from(numbers)),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).expect("batch")
    }

    #[tokio::test]
    async fn files_written_before_a_column_was_added_are_not_pruned_by_it() {
        // Another engine added column `n` after writing the first file: that file has
        // no `n` (all of its rows read as NULL) and no statistics for it.
        let dir = tempfile::tempdir().expect("tempdir");
        let old: SchemaRef = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)]));
        let first = RecordBatch::try_new(old, vec![Arc::new(StringArray::from(vec!["a", "b"]))])
            .expect("batch");
        let table = written_by_delta(dir.path(), first, &[]).await;
        let second = text_and_number("k", vec!["c"], vec![7]);
        let table = table
            .write(vec![second])
            .with_schema_mode(deltalake::operations::write::SchemaMode::Merge)
            .await
            .expect("evolve");
        assert!(list(&table).is_some(), "read as plain files");
        let delta = table.table_provider().await.expect("provider");
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(FileScan::new(table, delta)))
            .expect("register");
        for (query, expected) in [
            ("SELECT count(*) FROM t WHERE n IS NULL", 2),
            ("SELECT count(*) FROM t WHERE n = 7", 1),
            ("SELECT count(*) FROM t WHERE n IS NULL OR n = 7", 3),
        ] {
            let out = ctx
                .sql(query)
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run");
            let count = out[0].column(0).as_any().downcast_ref::<Int64Array>();
            assert_eq!(count.expect("count").value(0), expected, "{query}");
        }
    }

    #[tokio::test]
    async fn a_partitioned_table_is_read_through_delta() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows = text_and_number("p", vec!["a", "b"], vec![1, 2]);
        let table = written_by_delta(dir.path(), rows, &["p"]).await;
        assert!(
            list(&table).is_none(),
            "partition values are not in the files"
        );
        let delta = table.table_provider().await.expect("provider");
        let scan = FileScan::new(table, delta);
        let ctx = SessionContext::new();
        let out = ctx
            .read_table(Arc::new(scan))
            .expect("read")
            .sort(vec![datafusion::prelude::col("n").sort(true, false)])
            .expect("sort")
            .collect()
            .await
            .expect("scan");
        let p = out[0].column_by_name("p").expect("p");
        let p = datafusion::arrow::compute::cast(p, &DataType::Utf8).expect("cast");
        let p = p.as_any().downcast_ref::<StringArray>().expect("utf8");
        assert_eq!((p.value(0), p.value(1)), ("a", "b"));
    }
}
