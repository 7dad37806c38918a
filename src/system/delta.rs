//! System tables kept in Delta (`tessera.segment_changes`, `tessera.events`): a managed
//! table under `<data dir>/system/<name>`, which SQL reads through [`ReadOnlyTable`]
//! (every write is refused: its writes belong to the engine).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;

use std::path::Path;

use datafusion::prelude::SessionContext;

use crate::engine::EngineError;
use crate::storage::ManagedTable;

/// Open `tessera.<name>` in the data directory (creating it with `schema` on first start)
/// and register it, read-only; returns the table for the engine to write.
pub async fn open(
    ctx: &SessionContext,
    data_dir: &Path,
    name: &'static str,
    schema: SchemaRef,
) -> crate::engine::Result<ManagedTable> {
    let dir = data_dir.join("system").join(name);
    let table = if dir.join("_delta_log").is_dir() {
        ManagedTable::open(name, &dir).await?
    } else {
        ManagedTable::create(name, &dir, schema).await?
    };
    super::register_system_table(ctx, name, Arc::new(ReadOnlyTable::new(name, table.clone())))?;
    Ok(table)
}

/// `tessera.<name>`, read-only.
#[derive(Debug)]
pub struct ReadOnlyTable {
    name: &'static str,
    table: ManagedTable,
}

impl ReadOnlyTable {
    pub fn new(name: &'static str, table: ManagedTable) -> Self {
        ReadOnlyTable { name, table }
    }

    /// The table, for the engine to write.
    pub fn table(&self) -> &ManagedTable {
        &self.table
    }

    fn refuse<T>(&self) -> Result<T> {
        Err(EngineError::ReadOnlySystemTable(self.name.to_string()).into())
    }
}

#[async_trait]
impl TableProvider for ReadOnlyTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
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
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.table.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.table.supports_filters_pushdown(filters)
    }

    async fn insert_into(
        &self,
        _: &dyn Session,
        _: Arc<dyn ExecutionPlan>,
        _: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.refuse()
    }

    async fn delete_from(&self, _: &dyn Session, _: Vec<Expr>) -> Result<Arc<dyn ExecutionPlan>> {
        self.refuse()
    }

    async fn update(
        &self,
        _: &dyn Session,
        _: Vec<(String, Expr)>,
        _: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.refuse()
    }

    async fn truncate(&self, _: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        self.refuse()
    }
}
