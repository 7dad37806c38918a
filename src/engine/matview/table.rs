//! The `TableProvider` of a materialised view: its stored result (a [`ManagedTable`]),
//! read-only, and refusing reads while the view is unpopulated (SQLSTATE 55000, as in
//! PostgreSQL).
//!
//! One instance serves a view for its whole life: plain views planned over it keep a
//! reference to it, so a refresh changes what it reads (the Delta table's latest
//! snapshot, and the [`Overlay`] of rows an incremental refresh recomputed) rather than
//! replacing it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use super::merge::STATE_PREFIX;
use super::overlay::{Current, Overlay, Stored};
use super::resident::Residency;
use crate::engine::EngineError;
use crate::storage::ManagedTable;

/// The rows a view's overlay changed (see [`MaterializedViewTable::changes`]): their
/// columns, the rows before and the rows now.
pub type ViewChanges = (SchemaRef, Vec<RecordBatch>, Vec<RecordBatch>);

#[derive(Debug)]
pub struct MaterializedViewTable {
    name: String,
    definition: String,
    /// Its Delta table, and the rows the last incremental refreshes recomputed over it.
    stored: Stored,
    populated: AtomicBool,
    /// Its rows in memory, for a view with lookup keys (see [`super::resident`]).
    residency: Option<Arc<Residency>>,
    /// Its columns: the stored ones but the state kept for merging (see
    /// [`super::merge::state_column`]), which come last.
    schema: SchemaRef,
}

impl MaterializedViewTable {
    /// `keys`: the view's lookup keys (see [`super::resident::lookup_keys`]).
    pub fn new(
        name: &str,
        definition: &str,
        data: ManagedTable,
        overlay: Overlay,
        populated: bool,
        keys: Vec<String>,
    ) -> Self {
        let stored = data.schema();
        let own: Vec<_> = stored
            .fields()
            .iter()
            .filter(|f| !f.name().starts_with(STATE_PREFIX))
            .cloned()
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(own, stored.metadata().clone()));
        MaterializedViewTable {
            schema,
            name: name.to_string(),
            definition: definition.to_string(),
            stored: Stored {
                data,
                overlay: Arc::new(overlay),
            },
            populated: AtomicBool::new(populated),
            residency: Residency::new(name, keys),
        }
    }

    /// Let go of the rows held in memory (the view is dropped).
    pub fn release_memory(&self) {
        if let Some(r) = &self.residency {
            r.release();
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The stored result.
    pub fn data(&self) -> &ManagedTable {
        &self.stored.data
    }

    /// The rows incremental refreshes recomputed since the stored result was written.
    pub fn overlay(&self) -> &Overlay {
        &self.stored.overlay
    }

    /// The current state of its stored rows (Delta snapshot and overlay).
    pub fn current(&self) -> Current {
        self.stored.current()
    }

    /// The view as it is now, as a table that keeps reading these rows whatever later
    /// refreshes write, with its Delta version; `None` when it has an overlay or stores
    /// columns it does not show (then only the view itself reads it right).
    pub fn pinned(&self) -> Option<(Current, u64)> {
        if self.schema.fields().len() != self.stored.data.schema().fields().len() {
            return None;
        }
        let current = self.current();
        if current.layer.is_some() {
            return None;
        }
        let version = ManagedTable::version_of(current.snapshot.as_ref())?;
        Some((current, version))
    }

    /// The number of the overlay that applies to its stored result, if one does.
    pub fn overlay_seq(&self) -> Option<u64> {
        self.stored.current().layer.map(|l| l.seq())
    }

    /// Its version as an input of other views: the stored result's Delta version, and
    /// the overlay's number when one applies (`v12+3`).
    pub async fn version_text(&self) -> Option<String> {
        let version = self.stored.data.version().await?;
        Some(match self.overlay_seq() {
            Some(seq) => format!("v{version}+{seq}"),
            None => format!("v{version}"),
        })
    }

    /// The rows its overlay changed after overlay number `after` (none: since its
    /// stored result was written) up to `upto`, as (the rows those keys had before,
    /// the rows the keys changed since the stored result have now); `None` when that
    /// history is not kept (the overlay went or was replaced since, a change file is
    /// missing). Both cut to the view's columns.
    pub fn changes(
        &self,
        after: Option<u64>,
        upto: u64,
    ) -> crate::engine::error::Result<Option<ViewChanges>> {
        let Some(layer) = self.current().layer.filter(|l| l.seq() >= upto) else {
            return Ok(None);
        };
        let width = self.schema.fields().len();
        let Some((keys, before)) = self.overlay().changes(after, upto, layer.key(), width)? else {
            return Ok(None);
        };
        let columns: Vec<usize> = (0..width).collect();
        let now = layer
            .live_of(&keys)
            .and_then(|rows| Ok(rows.project(&columns)?))
            .map_err(|e| EngineError::storage(&self.name, e))?;
        Ok(Some((now.schema(), before, vec![now])))
    }

    pub fn is_populated(&self) -> bool {
        self.populated.load(Ordering::Acquire)
    }

    /// Mark the view populated (after its first result has committed) or not
    /// (`REFRESH ... WITH NO DATA`).
    pub fn set_populated(&self, populated: bool) {
        self.populated.store(populated, Ordering::Release);
    }

    fn read_only(&self) -> DataFusionError {
        EngineError::ReadOnlyMaterializedView(self.name.clone()).into()
    }
}

#[async_trait]
impl TableProvider for MaterializedViewTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.definition)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !self.is_populated() {
            return Err(EngineError::NotPopulated(self.name.clone()).into());
        }
        // The state columns stored after the view's own are not read.
        let own: Vec<usize>;
        let projection = match projection {
            None if self.schema.fields().len() < self.stored.data.schema().fields().len() => {
                own = (0..self.schema.fields().len()).collect();
                Some(&own)
            }
            p => p,
        };
        if let Some(residency) = &self.residency {
            let resident = residency
                .scan(&self.stored, state, projection, filters, limit)
                .await?;
            if let Some(plan) = resident {
                return Ok(plan);
            }
        }
        self.current().scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.current().supports_filters_pushdown(filters)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(self.read_only())
    }

    async fn delete_from(
        &self,
        _state: &dyn Session,
        _filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(self.read_only())
    }

    async fn update(
        &self,
        _state: &dyn Session,
        _assignments: Vec<(String, Expr)>,
        _filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(self.read_only())
    }

    async fn truncate(&self, _state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        Err(self.read_only())
    }
}
