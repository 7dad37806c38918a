//! System tables under the `tessera` schema, kept up to date by the engine.
//!
//! A [`SnapshotTable`] serves whatever batch it was last given; the engine replaces it
//! after every catalog change. `tessera.view_dependencies` (view, depends_on) lists which
//! relations each view reads; `pg_catalog.pg_depend` and `pg_rewrite` are derived from it
//! (see `pg.rs`) so clients such as dbt see the same dependencies PostgreSQL reports.

pub mod delta;
pub mod file;

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

/// The name of the schema holding tessera's system tables.
pub const SYSTEM_SCHEMA: &str = "tessera";

/// A read-only table whose contents are replaced whole.
#[derive(Debug)]
pub struct SnapshotTable {
    schema: SchemaRef,
    batch: RwLock<RecordBatch>,
}

impl SnapshotTable {
    pub fn new(schema: SchemaRef) -> Self {
        SnapshotTable {
            batch: RwLock::new(RecordBatch::new_empty(schema.clone())),
            schema,
        }
    }

    pub fn set(&self, batch: RecordBatch) {
        match self.batch.write() {
            Ok(mut b) => *b = batch,
            Err(poisoned) => *poisoned.into_inner() = batch,
        }
    }

    pub fn schema_ref(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn current(&self) -> RecordBatch {
        match self.batch.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let exec = MemorySourceConfig::try_new_exec(
            &[vec![self.current()]],
            self.schema.clone(),
            projection.cloned(),
        )?;
        Ok(exec)
    }
}

/// The system tables, registered once per session context.
pub struct SystemTables {
    pub view_dependencies: Arc<SnapshotTable>,
}

impl SystemTables {
    pub fn register(ctx: &SessionContext) -> Result<Self> {
        let view_dependencies = Arc::new(SnapshotTable::new(Arc::new(Schema::new(vec![
            Field::new("view", DataType::Utf8, false),
            Field::new("depends_on", DataType::Utf8, false),
        ]))));
        let schema = Arc::new(MemorySchemaProvider::new());
        schema.register_table("view_dependencies".into(), view_dependencies.clone())?;
        if let Some(catalog) = ctx.catalog(crate::engine::DATABASE) {
            catalog.register_schema(SYSTEM_SCHEMA, schema)?;
        }
        Ok(SystemTables { view_dependencies })
    }

    pub fn set_view_dependencies(&self, pairs: &[(String, String)]) -> Result<()> {
        let views: StringArray = pairs.iter().map(|(v, _)| Some(v.as_str())).collect();
        let refs: StringArray = pairs.iter().map(|(_, r)| Some(r.as_str())).collect();
        let batch = RecordBatch::try_new(
            self.view_dependencies.schema(),
            vec![Arc::new(views), Arc::new(refs)],
        )?;
        self.view_dependencies.set(batch);
        Ok(())
    }
}

/// Register `table` as `tessera.<name>`.
pub fn register_system_table(
    ctx: &SessionContext,
    name: &str,
    table: Arc<dyn TableProvider>,
) -> Result<()> {
    let schema = ctx
        .catalog(crate::engine::DATABASE)
        .and_then(|c| c.schema(SYSTEM_SCHEMA))
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!(
                "schema {SYSTEM_SCHEMA} is not registered"
            ))
        })?;
    schema.register_table(name.to_string(), table)?;
    Ok(())
}
