//! System tables under the `tessera` schema, kept up to date by the engine.
//!
//! A [`SnapshotTable`] serves whatever batch it was last given; the engine replaces it
//! after every catalog change. `tessera.view_dependencies` (view, depends_on) lists which
//! relations each view reads; `pg_catalog.pg_depend` and `pg_rewrite` are derived from it
//! (see `pg/mod.rs`) so clients such as dbt see the same dependencies PostgreSQL reports.
//! `tessera.view_definitions` fills `pg_views.definition` and `tessera.primary_keys` the
//! primary key rows of `pg_constraint`, `pg_index` and `pg_class`; `tessera.column_types`
//! gives `pg_attribute` the declared types its Arrow types lose (`varchar(20)`,
//! `numeric(10,2)`).

pub mod delta;
pub mod file;

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Int32Array, ListBuilder, RecordBatch, StringArray, StringBuilder};
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
    /// (view, definition): the query of each view, for `pg_views` and `pg_get_viewdef`.
    pub view_definitions: Arc<SnapshotTable>,
    /// (table_name, column_names, attnums): each declared primary key, its columns in key
    /// order and their column numbers as `int2vector` text (`2 1`), for `pg_constraint`
    /// and `pg_index`.
    pub primary_keys: Arc<SnapshotTable>,
    /// (table_name, column_name, atttypid, atttypmod): the PostgreSQL type of each column
    /// whose Arrow type does not tell it (`varchar(20)`, `numeric(10,2)`), for
    /// `pg_attribute`.
    pub column_types: Arc<SnapshotTable>,
}

impl SystemTables {
    pub fn register(ctx: &SessionContext) -> Result<Self> {
        let text = |name: &str| Field::new(name, DataType::Utf8, false);
        let table =
            |fields: Vec<Field>| Arc::new(SnapshotTable::new(Arc::new(Schema::new(fields))));
        let tables = SystemTables {
            view_dependencies: table(vec![text("view"), text("depends_on")]),
            view_definitions: table(vec![text("view"), text("definition")]),
            primary_keys: table(vec![
                text("table_name"),
                Field::new(
                    "column_names",
                    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, false))),
                    false,
                ),
                text("attnums"),
            ]),
            column_types: table(vec![
                text("table_name"),
                text("column_name"),
                Field::new("atttypid", DataType::Int32, false),
                Field::new("atttypmod", DataType::Int32, false),
            ]),
        };
        let schema = Arc::new(MemorySchemaProvider::new());
        schema.register_table("view_dependencies".into(), tables.view_dependencies.clone())?;
        schema.register_table("view_definitions".into(), tables.view_definitions.clone())?;
        schema.register_table("primary_keys".into(), tables.primary_keys.clone())?;
        schema.register_table("column_types".into(), tables.column_types.clone())?;
        if let Some(catalog) = ctx.catalog(crate::engine::DATABASE) {
            catalog.register_schema(SYSTEM_SCHEMA, schema)?;
        }
        Ok(tables)
    }

    pub fn set_view_dependencies(&self, pairs: &[(String, String)]) -> Result<()> {
        set_pairs(&self.view_dependencies, pairs)
    }

    pub fn set_view_definitions(&self, pairs: &[(String, String)]) -> Result<()> {
        set_pairs(&self.view_definitions, pairs)
    }

    /// `keys`: each table with its primary key columns, in key order, and their column
    /// numbers (1-based).
    pub fn set_primary_keys(&self, keys: &[(String, Vec<(String, usize)>)]) -> Result<()> {
        let tables: StringArray = keys.iter().map(|(t, _)| Some(t.as_str())).collect();
        let mut names = ListBuilder::new(StringBuilder::new())
            .with_field(Arc::new(Field::new_list_field(DataType::Utf8, false)));
        for (_, cols) in keys {
            for (c, _) in cols {
                names.values().append_value(c);
            }
            names.append(true);
        }
        let attnums: StringArray = keys
            .iter()
            .map(|(_, cols)| {
                let nums: Vec<String> = cols.iter().map(|(_, n)| n.to_string()).collect();
                Some(nums.join(" "))
            })
            .collect();
        let batch = RecordBatch::try_new(
            self.primary_keys.schema(),
            vec![
                Arc::new(tables),
                Arc::new(names.finish()),
                Arc::new(attnums),
            ],
        )?;
        self.primary_keys.set(batch);
        Ok(())
    }

    /// `types`: (table, column, type oid, type modifier) of each column whose PostgreSQL
    /// type its Arrow type does not tell.
    pub fn set_column_types(&self, types: &[(String, String, i32, i32)]) -> Result<()> {
        let tables: StringArray = types.iter().map(|t| Some(t.0.as_str())).collect();
        let columns: StringArray = types.iter().map(|t| Some(t.1.as_str())).collect();
        let oids: Int32Array = types.iter().map(|t| Some(t.2)).collect();
        let mods: Int32Array = types.iter().map(|t| Some(t.3)).collect();
        let batch = RecordBatch::try_new(
            self.column_types.schema(),
            vec![
                Arc::new(tables),
                Arc::new(columns),
                Arc::new(oids),
                Arc::new(mods),
            ],
        )?;
        self.column_types.set(batch);
        Ok(())
    }
}

fn set_pairs(table: &SnapshotTable, pairs: &[(String, String)]) -> Result<()> {
    let first: StringArray = pairs.iter().map(|(v, _)| Some(v.as_str())).collect();
    let second: StringArray = pairs.iter().map(|(_, r)| Some(r.as_str())).collect();
    let batch = RecordBatch::try_new(table.schema(), vec![Arc::new(first), Arc::new(second)])?;
    table.set(batch);
    Ok(())
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
