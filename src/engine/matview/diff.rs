//! Refresh by difference: a view declared with a key (`WITH (key = 'record_key')`) that
//! must be recomputed whole (its input has no version, such as `resolve_identities(...)`,
//! or changed in a way [`super::incremental`] cannot follow) writes only the keys whose
//! rows changed, through its overlay, so that the views reading it recompute only the
//! keys those rows reach (they read the overlay's change file, see [`super::overlay`]).
//!
//! The new result is written to a file in the view's directory as it is computed, and
//! each key's rows are summed up as a fingerprint (their number and the sum of a 64-bit
//! hash of each row); the stored rows are fingerprinted the same way. The keys whose
//! fingerprints differ are the changed keys: their new rows (read back from the file)
//! and the rows they had (read again from the stored result) go to the overlay. When the
//! overlay would grow past its bound, the file is written to the Delta table whole.
//! Holding the fingerprints costs about 40 bytes per key (up to twice that while the
//! table grows).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::options::ArrowReadOptions;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use futures::StreamExt;
use tracing::debug;
use twox_hash::XxHash3_128;

use super::incremental::{ordered, FOLD_FRACTION};
use super::inputs::Pinned;
use super::overlay::{self, RECOMPUTED_FILE};
use super::refresh::Refreshed;
use super::{RefreshState, Runtime};
use crate::engine::error::{EngineError, Result};
use crate::engine::Engine;
use crate::identity::graph::PrehashedHasher;
use crate::storage::cast_batch;

/// Per key (its hash): the wrapping sum of its rows' hashes and how many rows it has,
/// those stored subtracted from those computed.
type Fingerprints = HashMap<u128, (u64, i64), BuildHasherDefault<PrehashedHasher>>;

/// Hashes of a row's key and of the whole row, of batches with the view's columns.
struct RowHashes {
    key: usize,
    keys: RowConverter,
    rows: RowConverter,
}

impl RowHashes {
    /// `None` when a column's type cannot be compared as bytes.
    fn new(schema: &SchemaRef, key: usize) -> DfResult<Option<Self>> {
        let fields: Vec<SortField> = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        if !RowConverter::supports_fields(&fields) {
            return Ok(None);
        }
        Ok(Some(RowHashes {
            key,
            keys: RowConverter::new(vec![fields[key].clone()])?,
            rows: RowConverter::new(fields)?,
        }))
    }

    /// The hash of each row's key.
    fn keys(&self, batch: &RecordBatch) -> DfResult<Vec<u128>> {
        let keys = self
            .keys
            .convert_columns(std::slice::from_ref(batch.column(self.key)))?;
        Ok(keys
            .iter()
            .map(|k| XxHash3_128::oneshot(k.data()))
            .collect())
    }

    /// Add (`sign` 1) or subtract (-1) the rows of `batch` to `prints`.
    fn count(&self, batch: &RecordBatch, prints: &mut Fingerprints, sign: i64) -> DfResult<()> {
        let rows = self.rows.convert_columns(batch.columns())?;
        for (key, row) in self.keys(batch)?.into_iter().zip(rows.iter()) {
            let hash = XxHash3_128::oneshot(row.data()) as u64;
            let print = prints.entry(key).or_default();
            print.0 = match sign {
                1 => print.0.wrapping_add(hash),
                _ => print.0.wrapping_sub(hash),
            };
            print.1 += sign;
        }
        Ok(())
    }

    /// The rows of `batch` whose key is in `changed`.
    fn changed(&self, batch: &RecordBatch, changed: &HashSet<u128>) -> DfResult<RecordBatch> {
        let keep: BooleanArray = self
            .keys(batch)?
            .iter()
            .map(|k| Some(changed.contains(k)))
            .collect();
        Ok(filter_record_batch(batch, &keep)?)
    }
}

/// The result file, removed when the refresh is done with it, however it ends.
struct ResultFile(PathBuf);

impl Drop for ResultFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Engine {
    /// Refresh a view declared with `key` by recomputing it whole and writing only the
    /// keys whose rows changed (see the module's documentation); `None` when it cannot
    /// (not yet filled, an overlay not recorded, stored in an `ORDER BY`'s order, a key
    /// stored in another type). `run`: the view's optimised plan (pinned), its
    /// fingerprint, the state of its last refresh and its pinned inputs.
    pub(super) async fn refresh_by_difference(
        &self,
        runtime: &Runtime,
        run: (&LogicalPlan, &str, &RefreshState, &Pinned),
        key: &str,
    ) -> Result<Option<Refreshed>> {
        let (optimized, fingerprint, previous, pinned) = run;
        let data = runtime.table.data();
        let stored = data.schema();
        let Ok(key) = stored.index_of(key) else {
            return Ok(None);
        };
        if !previous.populated
            || !runtime.table.is_populated()
            || previous.version != data.version().await
            || previous.overlay != runtime.table.overlay_seq()
            || ordered(optimized)
        {
            return Ok(None);
        }
        let Some(hashes) = RowHashes::new(&stored, key)? else {
            return Ok(None);
        };
        let name = runtime.table.name();
        let started = std::time::Instant::now();
        let state = runtime.table.current();
        let view: Arc<dyn TableProvider> = Arc::new(state.clone());

        // The new result, to its file, and the fingerprints of its keys.
        let file = ResultFile(self.data_dir.join(&runtime.location).join(RECOMPUTED_FILE));
        let mut prints = Fingerprints::default();
        let result = self.ctx.execute_logical_plan(optimized.clone()).await?;
        let rows = write_result(result.execute_stream().await?, &file.0, &stored, |b| {
            hashes.count(b, &mut prints, 1)
        })
        .await?;
        // Less those of the stored rows.
        let mut current = self.ctx.read_table(view.clone())?.execute_stream().await?;
        while let Some(batch) = current.next().await {
            hashes.count(&cast_batch(&batch?, &stored)?, &mut prints, -1)?;
        }
        prints.retain(|_, print| *print != (0, 0));
        let changed: HashSet<u128> = prints.into_keys().collect();
        debug!(view = %name, keys = changed.len(), elapsed = ?started.elapsed(), "materialized view: difference found");

        let fits = state.layer.as_ref().is_none_or(|l| l.key() == key);
        let mut keys = changed.len();
        if changed.is_empty() {
        } else if !fits || changed.len() as u64 > rows / FOLD_FRACTION {
            // Too many changes for the overlay (or one keyed by another column): the new
            // result replaces the stored one.
            self.write_recomputed(runtime, &file.0).await?;
        } else {
            // The changed keys' rows now, and before.
            let mut recomputed = Vec::new();
            let path = file.0.clone();
            let reader = tokio::task::spawn_blocking(move || {
                let reader = std::fs::File::open(&path).map_err(|e| EngineError::io(&path, e))?;
                FileReader::try_new(std::io::BufReader::new(reader), None)
                    .map_err(|e| EngineError::io(&path, std::io::Error::other(e)))
            })
            .await
            .map_err(|e| {
                EngineError::storage(name, format!("reading the recomputed result: {e}"))
            })??;
            for batch in reader {
                let batch = batch.map_err(DataFusionError::from)?;
                recomputed.push(hashes.changed(&batch, &changed)?);
            }
            let mut before = Vec::new();
            let mut current = self.ctx.read_table(view)?.execute_stream().await?;
            while let Some(batch) = current.next().await {
                before.push(hashes.changed(&cast_batch(&batch?, &stored)?, &changed)?);
            }
            let key_columns: Vec<RecordBatch> = recomputed
                .iter()
                .chain(&before)
                .map(|b| b.project(&[key]))
                .collect::<std::result::Result<_, _>>()
                .map_err(DataFusionError::from)?;
            let merged = overlay::merged(
                state.layer.as_deref(),
                state.tag,
                key,
                &stored,
                &key_columns,
                &recomputed,
            )?;
            keys = merged.changed_count();
            if merged.key_count() as u64 <= rows / FOLD_FRACTION {
                runtime.table.overlay().replace(merged, before).await?;
            } else {
                // With the keys it held already, the overlay would grow too large.
                self.write_recomputed(runtime, &file.0).await?;
            }
        }
        debug!(view = %name, keys, elapsed = ?started.elapsed(), "materialized view: changed keys written");
        Ok(Some(Refreshed::Written {
            rows,
            version: data.version().await,
            inputs: pinned.versions.clone(),
            files: pinned.files.clone(),
            keys: Some(keys as u64),
            overlay: runtime.table.overlay_seq(),
            plan: fingerprint.to_string(),
        }))
    }
}

impl Engine {
    /// Replace the view's stored result by the recomputed one in its file at `path`, and
    /// let the overlay go.
    async fn write_recomputed(&self, runtime: &Runtime, path: &Path) -> Result<()> {
        let path = path.display().to_string();
        let whole = self
            .ctx
            .read_arrow(&path, ArrowReadOptions::default())
            .await?;
        self.vacuum_old_results(runtime).await;
        runtime
            .table
            .data()
            .overwrite_stream(whole.execute_stream().await?)
            .await?;
        runtime.table.overlay().clear()
    }
}

/// Write the rows of `stream` (cast to `schema`) to an Arrow IPC file at `path`, passing
/// each batch to `each` on the way; returns how many rows were written.
async fn write_result(
    mut stream: SendableRecordBatchStream,
    path: &Path,
    schema: &SchemaRef,
    mut each: impl FnMut(&RecordBatch) -> DfResult<()>,
) -> Result<u64> {
    let io = |e: std::io::Error| EngineError::io(path, e);
    let file = std::fs::File::create(path).map_err(io)?;
    let arrow = |e| EngineError::from(DataFusionError::from(e));
    let mut writer = FileWriter::try_new(std::io::BufWriter::new(file), schema).map_err(arrow)?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = cast_batch(&batch?, schema)?;
        each(&batch)?;
        writer.write(&batch).map_err(arrow)?;
        rows += batch.num_rows() as u64;
    }
    writer.finish().map_err(arrow)?;
    Ok(rows)
}
