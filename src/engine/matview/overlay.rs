//! The overlay of a materialised view: the rows an incremental refresh recomputed, kept
//! beside the stored result instead of rewriting it.
//!
//! Delta Lake as delta-rs 1.1 writes it has no deletion vectors, so replacing the rows of
//! 1% of a view's keys in its Delta table rewrites every file holding one of them, which
//! is nearly all. An incremental refresh ([`super::incremental`]) therefore writes the
//! recomputed keys here instead: their rows, and a *tombstone* for each key that has none
//! now. A scan of the view reads the stored rows whose key the overlay does not hold,
//! and the overlay's live rows (see [`Layer::scan`]).
//!
//! The overlay is one Arrow IPC file, `_tessera_overlay.arrow` in the view's directory
//! (Delta's vacuum leaves names starting with `_` alone), written to a temporary name
//! and renamed, so it is replaced whole or not at all; its rows are also held in
//! memory, where scans read them. Its metadata records the *content tag* of the stored
//! result it applies to (see [`crate::storage::ManagedTable::tagged_snapshot`]): once the
//! stored result is rewritten (a full refresh, or an incremental one that folds the
//! overlay in when it has grown past an eighth of the stored rows), the overlay no longer
//! applies, and it is deleted. A reader takes the overlay before the stored result's
//! snapshot, so it never sees an overlay without the result it was made for, nor a new
//! result with an overlay older than it; after a crash between the two writes, the tag
//! tells them apart again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions,
};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{JoinType, NullEquality};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;

use crate::engine::error::{EngineError, Result};
use crate::storage::{cast_batch, ManagedTable};

/// The overlay's file, in the view's directory.
const FILE: &str = "_tessera_overlay.arrow";
/// The prefix of the change files: `_tessera_changes_3.arrow` holds the rows the keys
/// of overlay 3 had before it.
const CHANGES: &str = "_tessera_changes_";
/// The column of a change file marking a row its key had before (the other rows only
/// name a key recomputed).
const BEFORE: &str = "__tessera_before";
/// The column marking a tombstone (appended to the view's columns in the file).
const DELETED: &str = "__tessera_deleted";
/// The name of the key column in the plan hiding the stored rows.
const KEY: &str = "__tessera_key";
/// Schema metadata in the file: the content tag of the stored result, the key column's
/// index, and the overlay's sequence number.
const META_BASE: &str = "tessera.overlay.base";
const META_KEY: &str = "tessera.overlay.key";
const META_SEQ: &str = "tessera.overlay.seq";

/// The rows of an overlay.
#[derive(Debug)]
pub struct Layer {
    /// The content tag of the stored result it applies to.
    base: u64,
    /// The key column (index among the view's columns).
    key: usize,
    /// Numbered from 1 for each overlay written over one stored result: part of the
    /// view's version as an input of other views.
    seq: u64,
    /// Every key it holds, live or deleted: one column named [`KEY`].
    keys: RecordBatch,
    /// The live rows, with the view's columns.
    live: RecordBatch,
    /// The keys the refresh that wrote it recomputed (empty when read back).
    changed: ArrayRef,
}

impl Layer {
    /// How many keys it holds.
    pub fn key_count(&self) -> usize {
        self.keys.num_rows()
    }

    /// How many keys the refresh that wrote it recomputed.
    pub fn changed_count(&self) -> usize {
        self.changed.len()
    }

    /// The content tag of the stored result it applies to.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The key column (index among the view's columns).
    pub fn key(&self) -> usize {
        self.key
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its rows of the keys `keys` (in the view's stored columns).
    pub fn live_of(&self, keys: &[ArrayRef]) -> DfResult<RecordBatch> {
        let key_type = self.live.schema().field(self.key).data_type().clone();
        let converter = RowConverter::new(vec![SortField::new(key_type.clone())])?;
        let keys = converter.convert_columns(&[concat_arrays(keys, &key_type)?])?;
        let wanted: HashSet<&[u8]> = keys.iter().map(|r| r.data()).collect();
        let live = converter.convert_columns(std::slice::from_ref(self.live.column(self.key)))?;
        let keep: BooleanArray = live
            .iter()
            .map(|r| Some(wanted.contains(&r.data())))
            .collect();
        Ok(filter_record_batch(&self.live, &keep)?)
    }

    /// The view's rows: the stored result (`stored`, a snapshot of it) without the rows
    /// of the keys held here, then the live rows held here; `projection` as for
    /// [`TableProvider::scan`]. `filters` only prune the stored result: a filter pushed
    /// to a view is never exact (see [`inexact`]), so it applies again above.
    pub async fn scan(
        &self,
        state: &dyn Session,
        stored: &dyn TableProvider,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.live.schema();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        let mut read = wanted.clone();
        let key_at = match wanted.iter().position(|c| *c == self.key) {
            Some(at) => at,
            None => {
                read.push(self.key);
                read.len() - 1
            }
        };
        let base = stored.scan(state, Some(&read), filters, None).await?;
        let keys =
            MemorySourceConfig::try_new_exec(&[vec![self.keys.clone()]], self.keys.schema(), None)?;
        let key_name = schema.field(self.key).name();
        let on: Vec<(Arc<dyn PhysicalExpr>, Arc<dyn PhysicalExpr>)> = vec![(
            Arc::new(Column::new(KEY, 0)),
            Arc::new(Column::new(key_name, key_at)),
        )];
        let mut kept: Arc<dyn ExecutionPlan> = Arc::new(HashJoinExec::try_new(
            keys,
            base,
            on,
            None,
            &JoinType::RightAnti,
            None,
            PartitionMode::CollectLeft,
            NullEquality::NullEqualsNull,
            false,
        )?);
        if read.len() > wanted.len() {
            let kept_schema = kept.schema();
            let columns: Vec<(Arc<dyn PhysicalExpr>, String)> = (0..wanted.len())
                .map(|i| {
                    let name = kept_schema.field(i).name().clone();
                    (
                        Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                        name,
                    )
                })
                .collect();
            kept = Arc::new(ProjectionExec::try_new(columns, kept)?);
        }
        let live =
            MemorySourceConfig::try_new_exec(&[vec![self.live.clone()]], schema, Some(wanted))?;
        UnionExec::try_new(vec![kept, live])
    }
}

/// A view's stored rows: its Delta table and its overlay.
#[derive(Debug, Clone)]
pub struct Stored {
    pub data: ManagedTable,
    pub overlay: Arc<Overlay>,
}

impl Stored {
    /// What a scan of the view reads now. The overlay is taken before the snapshot: an
    /// overlay taken before the stored result was rewritten does not apply to the new
    /// one (its content tag differs), so it is left out.
    pub fn current(&self) -> Current {
        let layer = self.overlay.current();
        let (snapshot, tag) = self.data.tagged_snapshot();
        Current {
            snapshot,
            tag,
            layer: layer.filter(|l| l.base == tag),
        }
    }
}

/// One state of a view's stored rows: a snapshot of its Delta table and the overlay
/// that applies to it, if any.
#[derive(Debug, Clone)]
pub struct Current {
    pub snapshot: Arc<dyn TableProvider>,
    /// The snapshot's content tag.
    pub tag: u64,
    pub layer: Option<Arc<Layer>>,
}

impl Current {
    /// Whether both are the same state (the same snapshot and overlay).
    pub fn same(&self, other: &Current) -> bool {
        Arc::ptr_eq(&self.snapshot, &other.snapshot)
            && match (&self.layer, &other.layer) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// The view's rows in one state, as a table (see [`Layer::scan`]); also what a refresh
/// reads of the view it refreshes (pinned to the state it started from, and never
/// loaded into memory).
#[async_trait::async_trait]
impl TableProvider for Current {
    fn schema(&self) -> SchemaRef {
        self.snapshot.schema()
    }

    fn table_type(&self) -> datafusion::logical_expr::TableType {
        datafusion::logical_expr::TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match &self.layer {
            Some(layer) => {
                layer
                    .scan(state, self.snapshot.as_ref(), projection, filters)
                    .await
            }
            None => self.snapshot.scan(state, projection, filters, limit).await,
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        self.snapshot
            .supports_filters_pushdown(filters)
            .map(inexact)
    }
}

/// A filter pushed to a view's scan is applied again above it: the overlay's rows are
/// not filtered by the scan.
fn inexact(
    pushdown: Vec<datafusion::logical_expr::TableProviderFilterPushDown>,
) -> Vec<datafusion::logical_expr::TableProviderFilterPushDown> {
    use datafusion::logical_expr::TableProviderFilterPushDown as P;
    pushdown
        .into_iter()
        .map(|p| if p == P::Exact { P::Inexact } else { p })
        .collect()
}

/// A view's overlay: its file and the rows held in memory.
#[derive(Debug)]
pub struct Overlay {
    path: PathBuf,
    layer: RwLock<Option<Arc<Layer>>>,
}

impl Overlay {
    /// The overlay of the view stored in `dir`, whose stored result has content tag
    /// `base` and columns `schema`: the one in its file if that applies to this result,
    /// none otherwise (an overlay left by a crash after the result was rewritten is
    /// deleted).
    pub fn open(dir: &Path, base: u64, schema: &SchemaRef) -> Result<Self> {
        let path = dir.join(FILE);
        let layer = if path.exists() {
            let layer = read(&path, schema)?;
            if layer.base == base {
                Some(Arc::new(layer))
            } else {
                remove_files(&path)?;
                None
            }
        } else {
            None
        };
        Ok(Overlay {
            path,
            layer: RwLock::new(layer),
        })
    }

    /// The overlay held, whatever it applies to.
    pub fn current(&self) -> Option<Arc<Layer>> {
        match self.layer.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replace the overlay by `layer` (its file first, then the rows in memory).
    /// `before`: the rows its keys had before it (the view's stored columns), kept as
    /// its change file for the views that read this one (see [`Self::changes`]).
    pub async fn replace(&self, layer: Layer, before: Vec<RecordBatch>) -> Result<()> {
        let path = self.path.clone();
        let changes = self.changes_file(layer.seq);
        let layer = Arc::new(layer);
        let written = layer.clone();
        tokio::task::spawn_blocking(move || {
            write_changes(&changes, &written, &before)?;
            write(&path, &written)
        })
        .await
        .map_err(|e| EngineError::storage(&path_text(&self.path), e))??;
        self.set(Some(layer));
        Ok(())
    }

    /// The keys recomputed by the overlays after number `after` (none: from the first)
    /// up to `upto` (key column `key`), and the rows they had before each of them (a key
    /// recomputed twice has both its earlier rows), cut to the first `width` columns;
    /// `None` when a change file is missing (written by a version without them, or
    /// cleared).
    pub fn changes(
        &self,
        after: Option<u64>,
        upto: u64,
        key: usize,
        width: usize,
    ) -> Result<Option<(Vec<ArrayRef>, Vec<RecordBatch>)>> {
        let (mut keys, mut out) = (Vec::new(), Vec::new());
        for seq in after.map_or(1, |a| a + 1)..=upto {
            let path = self.changes_file(seq);
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(EngineError::io(&path, e)),
            };
            let storage = |e: &dyn std::fmt::Display| EngineError::storage(&path_text(&path), e);
            let reader = FileReader::try_new(std::io::BufReader::new(file), None)
                .map_err(|e| storage(&e))?;
            for batch in reader {
                let batch = batch.map_err(|e| storage(&e))?;
                let Some(before) = batch
                    .column_by_name(BEFORE)
                    .and_then(|c| datafusion::arrow::array::AsArray::as_boolean_opt(c.as_ref()))
                    .cloned()
                else {
                    return Ok(None);
                };
                let recomputed =
                    datafusion::arrow::compute::not(&before).map_err(|e| storage(&e))?;
                let columns: Vec<usize> = (0..width.min(batch.num_columns() - 1)).collect();
                let rows = batch.project(&columns).map_err(|e| storage(&e))?;
                let rows = filter_record_batch(&rows, &before).map_err(|e| storage(&e))?;
                if rows.num_rows() > 0 {
                    out.push(rows);
                }
                let k = filter_record_batch(&batch, &recomputed).map_err(|e| storage(&e))?;
                if k.num_rows() > 0 {
                    keys.push(k.column(key).clone());
                }
            }
        }
        Ok(Some((keys, out)))
    }

    fn changes_file(&self, seq: u64) -> PathBuf {
        self.path.with_file_name(format!("{CHANGES}{seq}.arrow"))
    }

    /// Delete the overlay (the stored result was rewritten), and its change files.
    pub fn clear(&self) -> Result<()> {
        self.set(None);
        remove_files(&self.path)
    }

    fn set(&self, layer: Option<Arc<Layer>>) {
        match self.layer.write() {
            Ok(mut l) => *l = layer,
            Err(poisoned) => *poisoned.into_inner() = layer,
        }
    }
}

/// A refresh's copy of a recomputed result, beside the overlay while it runs (see
/// `super::diff`); one a crash left behind goes with the overlay's files.
pub(super) const RECOMPUTED_FILE: &str = "_tessera_recomputed.arrow";

/// Delete the overlay file `path`, the change files beside it and a recomputed result
/// left there.
fn remove_files(path: &Path) -> Result<()> {
    let mut paths = vec![path.to_path_buf(), temporary(path)];
    if let Some(dir) = path.parent() {
        paths.push(dir.join(RECOMPUTED_FILE));
        match std::fs::read_dir(dir) {
            Ok(entries) => paths.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(CHANGES))
                    .map(|e| e.path()),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io(dir, e)),
        }
    }
    for path in paths {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io(&path, e)),
        }
    }
    Ok(())
}

/// The overlay after a refresh recomputed `changed` keys (one column, any type castable
/// to the key's) of a view with columns `schema` keyed by column `key`: the rows of
/// `previous` (if it applied to the stored result `base`) whose key was not recomputed,
/// the `recomputed` rows (cast to `schema`), and a tombstone for each changed key with
/// no row now.
pub fn merged(
    previous: Option<&Layer>,
    base: u64,
    key: usize,
    schema: &SchemaRef,
    changed: &[RecordBatch],
    recomputed: &[RecordBatch],
) -> DfResult<Layer> {
    let key_type = schema.field(key).data_type().clone();
    let converter = RowConverter::new(vec![SortField::new(key_type.clone())])?;
    let changed: Vec<ArrayRef> = changed
        .iter()
        .map(|b| cast(b.column(0), &key_type))
        .collect::<Result<_, _>>()?;
    let changed_rows: Vec<_> = changed
        .iter()
        .map(|a| converter.convert_columns(std::slice::from_ref(a)))
        .collect::<Result<_, _>>()?;
    let changed_set: HashSet<&[u8]> = changed_rows
        .iter()
        .flat_map(|rows| rows.iter().map(|r| r.data()))
        .collect();
    let recomputed: Vec<RecordBatch> = recomputed
        .iter()
        .map(|b| cast_batch(b, schema))
        .collect::<DfResult<_>>()?;

    let mut live: Vec<RecordBatch> = Vec::new();
    let mut keys: Vec<ArrayRef> = Vec::new();
    if let Some(p) = previous.filter(|p| p.base == base && p.key == key) {
        let old_keys = converter.convert_columns(std::slice::from_ref(p.keys.column(0)))?;
        let keep: BooleanArray = old_keys
            .iter()
            .map(|r| Some(!changed_set.contains(&r.data())))
            .collect();
        keys.push(filter_record_batch(&p.keys, &keep)?.column(0).clone());
        let live_keys = converter.convert_columns(std::slice::from_ref(p.live.column(key)))?;
        let keep: BooleanArray = live_keys
            .iter()
            .map(|r| Some(!changed_set.contains(&r.data())))
            .collect();
        live.push(filter_record_batch(&p.live, &keep)?);
    }
    live.extend(recomputed);
    // Every changed key hides the stored rows of its key, live or not.
    let changed = distinct(&concat_arrays(&changed, &key_type)?)?;
    keys.push(changed.clone());
    let keys_schema = keys_schema(&key_type);
    let keys = concat_arrays(&keys, &key_type)?;
    let live = concat_batches(schema, &live)?;
    Ok(Layer {
        base,
        key,
        seq: previous.filter(|p| p.base == base).map_or(1, |p| p.seq + 1),
        keys: RecordBatch::try_new(keys_schema, vec![keys])?,
        live,
        changed,
    })
}

/// The values of `keys`, each once (NULL matching NULL), in first-seen order.
fn distinct(keys: &ArrayRef) -> DfResult<ArrayRef> {
    let converter = RowConverter::new(vec![SortField::new(keys.data_type().clone())])?;
    let rows = converter.convert_columns(std::slice::from_ref(keys))?;
    let mut seen: HashSet<&[u8]> = HashSet::new();
    let first: BooleanArray = rows.iter().map(|r| Some(seen.insert(r.data()))).collect();
    Ok(datafusion::arrow::compute::filter(keys, &first)?)
}

fn keys_schema(key_type: &DataType) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(KEY, key_type.clone(), true)]))
}

fn concat_arrays(arrays: &[ArrayRef], t: &DataType) -> DfResult<ArrayRef> {
    if arrays.is_empty() {
        return Ok(new_null_array(t, 0));
    }
    let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
    Ok(datafusion::arrow::compute::concat(&refs)?)
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

fn temporary(path: &Path) -> PathBuf {
    path.with_extension("arrow.tmp")
}

/// The file's rows: the live ones, then one per key without a row (all columns NULL
/// but the key, [`DELETED`] true).
fn write(path: &Path, layer: &Layer) -> Result<()> {
    let storage = |e: &dyn std::fmt::Display| EngineError::storage(&path_text(path), e);
    let schema = layer.live.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(DELETED, DataType::Boolean, false));
    let metadata = [
        (META_BASE, layer.base),
        (META_KEY, layer.key as u64),
        (META_SEQ, layer.seq),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let file_schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    let live_keys = RowConverter::new(vec![SortField::new(
        schema.field(layer.key).data_type().clone(),
    )])
    .and_then(|c| {
        let live = c.convert_columns(std::slice::from_ref(layer.live.column(layer.key)))?;
        let all = c.convert_columns(std::slice::from_ref(layer.keys.column(0)))?;
        let live: HashSet<&[u8]> = live.iter().map(|r| r.data()).collect();
        Ok(all
            .iter()
            .map(|r| Some(!live.contains(&r.data())))
            .collect::<BooleanArray>())
    })
    .map_err(|e| storage(&e))?;
    let deleted_keys = datafusion::arrow::compute::filter(layer.keys.column(0), &live_keys)
        .map_err(|e| storage(&e))?;
    let mut live_columns: Vec<ArrayRef> = layer.live.columns().to_vec();
    live_columns.push(Arc::new(BooleanArray::from(vec![
        false;
        layer.live.num_rows()
    ])));
    let n = deleted_keys.len();
    let mut tombstones: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == layer.key {
                deleted_keys.clone()
            } else {
                new_null_array(f.data_type(), n)
            }
        })
        .collect();
    tombstones.push(Arc::new(BooleanArray::from(vec![true; n])));
    let options = RecordBatchOptions::new().with_row_count(Some(n));
    let batches = [
        RecordBatch::try_new(file_schema.clone(), live_columns),
        RecordBatch::try_new_with_options(file_schema.clone(), tombstones, &options),
    ]
    .into_iter()
    .collect::<std::result::Result<Vec<_>, _>>()
    .map_err(|e| storage(&e))?;
    write_batches(path, &file_schema, &batches)
}

/// The change file `path` of `layer`: the rows its keys had before (`before`, marked
/// [`BEFORE`]), then one row per key it recomputed (all columns NULL but the key).
fn write_changes(path: &Path, layer: &Layer, before: &[RecordBatch]) -> Result<()> {
    let storage = |e: &dyn std::fmt::Display| EngineError::storage(&path_text(path), e);
    let schema = layer.live.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(BEFORE, DataType::Boolean, false));
    let file_schema = Arc::new(Schema::new(fields));
    let mut batches = Vec::new();
    for rows in before {
        let rows = cast_batch(rows, &schema).map_err(|e| storage(&e))?;
        let mut columns = rows.columns().to_vec();
        columns.push(Arc::new(BooleanArray::from(vec![true; rows.num_rows()])));
        batches.push(RecordBatch::try_new(file_schema.clone(), columns).map_err(|e| storage(&e))?);
    }
    let n = layer.changed.len();
    let mut columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match i == layer.key {
            true => layer.changed.clone(),
            false => new_null_array(f.data_type(), n),
        })
        .collect();
    columns.push(Arc::new(BooleanArray::from(vec![false; n])));
    let options = RecordBatchOptions::new().with_row_count(Some(n));
    batches.push(
        RecordBatch::try_new_with_options(file_schema.clone(), columns, &options)
            .map_err(|e| storage(&e))?,
    );
    write_batches(path, &file_schema, &batches)
}

/// `batches` as the Arrow IPC file `path`: written to a temporary file, fsynced, and
/// renamed into place (with its directory fsynced).
fn write_batches(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<()> {
    let storage = |e: &dyn std::fmt::Display| EngineError::storage(&path_text(path), e);
    let tmp = temporary(path);
    let file = std::fs::File::create(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
    let mut writer =
        FileWriter::try_new(std::io::BufWriter::new(file), schema).map_err(|e| storage(&e))?;
    for batch in batches {
        writer.write(batch).map_err(|e| storage(&e))?;
    }
    writer.finish().map_err(|e| storage(&e))?;
    let file = writer
        .into_inner()
        .map_err(|e| storage(&e))?
        .into_inner()
        .map_err(|e| storage(&e.into_error()))?;
    file.sync_all().map_err(|e| EngineError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| EngineError::io(path, e))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| EngineError::io(dir, e))?;
    }
    Ok(())
}

/// The overlay in `path`, its columns cast to the view's `schema`.
fn read(path: &Path, schema: &SchemaRef) -> Result<Layer> {
    let storage = |e: &dyn std::fmt::Display| EngineError::storage(&path_text(path), e);
    let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let reader =
        FileReader::try_new(std::io::BufReader::new(file), None).map_err(|e| storage(&e))?;
    let file_schema = reader.schema();
    let meta = |name: &str| -> Result<u64> {
        file_schema
            .metadata()
            .get(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| storage(&format!("no {name} in the overlay's metadata")))
    };
    let (base, key, seq) = (meta(META_BASE)?, meta(META_KEY)? as usize, meta(META_SEQ)?);
    if key >= schema.fields().len() {
        return Err(storage(&"the overlay's key is not a column of the view"));
    }
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().map_err(|e| storage(&e))?;
    let width = schema.fields().len();
    let mut live = Vec::new();
    let mut keys = Vec::new();
    for batch in &batches {
        if batch.num_columns() != width + 1 {
            return Err(storage(&"the overlay's columns are not the view's"));
        }
        let deleted = batch
            .column(width)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| storage(&"the overlay's last column is not a boolean"))?;
        let rows = batch
            .project(&(0..width).collect::<Vec<_>>())
            .map_err(|e| storage(&e))?;
        let rows = cast_batch(&rows, schema).map_err(|e| storage(&e))?;
        keys.push(rows.column(key).clone());
        let not_deleted = datafusion::arrow::compute::not(deleted).map_err(|e| storage(&e))?;
        live.push(filter_record_batch(&rows, &not_deleted).map_err(|e| storage(&e))?);
    }
    let key_type = schema.field(key).data_type().clone();
    // A key with several live rows is one key.
    let keys = concat_arrays(&keys, &key_type)
        .and_then(|keys| distinct(&keys))
        .map_err(|e| storage(&e))?;
    Ok(Layer {
        base,
        key,
        seq,
        keys: RecordBatch::try_new(keys_schema(&key_type), vec![keys]).map_err(|e| storage(&e))?,
        live: concat_batches(schema, &live).map_err(|e| storage(&e))?,
        changed: new_null_array(&key_type, 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::prelude::SessionContext;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("k", DataType::Utf8, true),
        ]))
    }

    fn batch(rows: &[(i64, Option<&str>)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch")
    }

    /// Changed keys as the keys plan gives them: one column, here of Utf8View.
    fn keys(keys: &[Option<&str>]) -> RecordBatch {
        let array: ArrayRef = Arc::new(StringArray::from(keys.to_vec()));
        let array = cast(&array, &DataType::Utf8View).expect("view");
        let schema = Arc::new(Schema::new(vec![Field::new(
            "__key",
            DataType::Utf8View,
            true,
        )]));
        RecordBatch::try_new(schema, vec![array]).expect("keys")
    }

    async fn rows(ctx: &SessionContext, plan: Arc<dyn ExecutionPlan>) -> Vec<String> {
        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
            .await
            .expect("run");
        let mut out: Vec<String> = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string()
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains(" k ") && !l.contains(" n "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn the_overlay_hides_the_stored_rows_of_its_keys() {
        let ctx = SessionContext::new();
        let stored = datafusion::datasource::MemTable::try_new(
            schema(),
            vec![vec![batch(&[
                (1, Some("a")),
                (2, Some("b")),
                (3, None),
                (4, Some("d")),
            ])]],
        )
        .expect("stored");
        // b changes, NULL changes, d has no row any more, e is new.
        let first = merged(
            None,
            7,
            1,
            &schema(),
            &[keys(&[Some("b"), None, Some("d"), Some("e")])],
            &[batch(&[(20, Some("b")), (30, None), (50, Some("e"))])],
        )
        .expect("merge");
        assert_eq!(
            (first.key_count(), first.seq(), first.live.num_rows()),
            (4, 1, 3)
        );
        let state = ctx.state();
        let all = first.scan(&state, &stored, None, &[]).await.expect("scan");
        assert_eq!(
            rows(&ctx, all).await,
            ["| 1 | a |", "| 20 | b |", "| 30 | |", "| 50 | e |"]
        );
        // A projection without the key.
        let n = first
            .scan(&state, &stored, Some(&vec![0]), &[])
            .await
            .expect("scan");
        assert_eq!(rows(&ctx, n).await, ["| 1 |", "| 20 |", "| 30 |", "| 50 |"]);

        // A second merge keeps the other keys and replaces b's row.
        let second = merged(
            Some(&first),
            7,
            1,
            &schema(),
            &[keys(&[Some("b"), Some("a")])],
            &[batch(&[(200, Some("b")), (100, Some("a"))])],
        )
        .expect("merge");
        assert_eq!((second.key_count(), second.seq()), (5, 2));
        let all = second.scan(&state, &stored, None, &[]).await.expect("scan");
        assert_eq!(
            rows(&ctx, all).await,
            ["| 100 | a |", "| 200 | b |", "| 30 | |", "| 50 | e |"]
        );
        // Over another stored result the old overlay is not carried over.
        let other =
            merged(Some(&second), 8, 1, &schema(), &[keys(&[Some("a")])], &[]).expect("merge");
        assert_eq!(
            (other.key_count(), other.seq(), other.live.num_rows()),
            (1, 1, 0)
        );
    }

    #[tokio::test]
    async fn the_file_holds_the_overlay_for_its_stored_result_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let overlay = Overlay::open(dir.path(), 7, &schema()).expect("open");
        assert!(overlay.current().is_none());
        let layer = merged(
            None,
            7,
            1,
            &schema(),
            &[keys(&[Some("b"), None, Some("d")])],
            &[batch(&[(20, Some("b")), (30, None)])],
        )
        .expect("merge");
        // What b had before; d had no row.
        let before = vec![batch(&[(2, Some("b"))])];
        overlay
            .replace(layer, before.clone())
            .await
            .expect("replace");
        assert_eq!(overlay.current().map(|l| l.base()), Some(7));
        let (keys, rows) = overlay.changes(None, 1, 1, 2).expect("read").expect("kept");
        assert_eq!(rows, before);
        let keys: Vec<Option<&str>> = keys
            .iter()
            .flat_map(|k| {
                datafusion::arrow::array::AsArray::as_string::<i32>(k.as_ref())
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(keys, [Some("b"), None, Some("d")], "the keys recomputed");
        let later = overlay
            .changes(Some(1), 1, 1, 2)
            .expect("read")
            .expect("none after 1");
        assert!(later.0.is_empty() && later.1.is_empty());
        assert_eq!(
            overlay.changes(None, 2, 1, 2).expect("read"),
            None,
            "not kept"
        );

        let again = Overlay::open(dir.path(), 7, &schema()).expect("reopen");
        let layer = again.current().expect("read back");
        assert_eq!(
            (layer.base(), layer.key(), layer.seq(), layer.key_count()),
            (7, 1, 1, 3)
        );
        assert_eq!(layer.live, batch(&[(20, Some("b")), (30, None)]));

        // Against a rewritten stored result it no longer applies, and goes.
        let stale = Overlay::open(dir.path(), 9, &schema()).expect("reopen");
        assert!(stale.current().is_none());
        assert!(!dir.path().join(FILE).exists());
        assert_eq!(
            stale.changes(None, 1, 1, 2).expect("read"),
            None,
            "its changes go too"
        );

        overlay.clear().expect("clear");
        assert!(overlay.current().is_none());
    }
}
