//! Masking personal data where it is read: [`MaskPersonalData`] rewrites every table
//! scan of a classified relation to read through [`MaskedTable`] when the running
//! principal lacks the PII privilege.
//!
//! The mask sits inside the scan, so every filter, join, aggregate and expression above
//! it (from the query itself, from inlined views, from subqueries) only ever sees masked
//! values: `WHERE email = 'x'` compares the masked email. Filters on masked columns are
//! not pushed into the underlying table either, so file statistics cannot answer them
//! on raw values. The rewrite is idempotent (a scan already reading through
//! [`MaskedTable`] is left alone), as DataFusion may analyse a plan twice.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchema, Result, ScalarValue};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    col, lit, Expr, LogicalPlan, TableProviderFilterPushDown, TableScan, TableType,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

use super::classes::{Classification, ColumnClasses, PiiClass};

/// The analyzer rule; register it once on the session state.
#[derive(Debug)]
pub struct MaskPersonalData {
    classes: Arc<Classification>,
}

impl MaskPersonalData {
    pub fn new(classes: Arc<Classification>) -> Self {
        MaskPersonalData { classes }
    }

    fn mask_scan(&self, scan: TableScan) -> Result<Transformed<LogicalPlan>> {
        let Some(classes) = self.classes.get(&Classification::key(&scan.table_name)) else {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        };
        let provider = source_as_provider(&scan.source)?;
        if provider.is::<MaskedTable>()
            || !classes
                .keys()
                .any(|c| provider.schema().index_of(c).is_ok())
        {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        }
        let masked = Arc::new(MaskedTable {
            inner: provider,
            classes,
        });
        Ok(Transformed::yes(LogicalPlan::TableScan(TableScan {
            source: provider_as_source(masked),
            ..scan
        })))
    }
}

impl AnalyzerRule for MaskPersonalData {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if super::current().pii {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan) => self.mask_scan(scan),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "mask_personal_data"
    }
}

/// A table read with its classified columns masked.
#[derive(Debug)]
pub struct MaskedTable {
    inner: Arc<dyn TableProvider>,
    classes: Arc<ColumnClasses>,
}

impl MaskedTable {
    /// Whether `filter` reads a masked column (and so must run above the mask).
    fn reads_masked(&self, filter: &Expr) -> bool {
        filter
            .column_refs()
            .iter()
            .any(|c| self.classes.contains_key(&c.name))
    }
}

/// The expression a role without the PII privilege reads `name` (of type `t`, nullable
/// or not) through.
pub fn mask_expr(
    state: &dyn Session,
    name: &str,
    t: &DataType,
    nullable: bool,
    class: &PiiClass,
) -> Result<Expr> {
    let text = matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let function = if text {
        class.mask_function()
    } else {
        "redact"
    };
    if !text && !nullable {
        // A column that cannot be NULL reads as its type's zero value (0, 1970-01-01).
        return Ok(lit(ScalarValue::new_default(t)?));
    }
    let udf = state
        .scalar_functions()
        .get(function)
        .cloned()
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!(
                "masking function {function} is not registered"
            ))
        })?;
    Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
        udf,
        vec![col(Column::new_unqualified(name))],
    )))
}

#[async_trait]
impl TableProvider for MaskedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        None
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let passed: Vec<Expr> = filters
            .iter()
            .filter(|f| !self.reads_masked(f))
            .cloned()
            .collect();
        let input = self.inner.scan(state, projection, &passed, limit).await?;
        let schema = input.schema();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let exprs = schema
            .fields()
            .iter()
            .map(|f| {
                let logical = match self.classes.get(f.name()) {
                    Some(class) => {
                        mask_expr(state, f.name(), f.data_type(), f.is_nullable(), class)?
                    }
                    None => col(Column::new_unqualified(f.name())),
                };
                let physical = state.create_physical_expr(logical, &df_schema)?;
                Ok((physical, f.name().clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let inner = self.inner.supports_filters_pushdown(filters)?;
        Ok(filters
            .iter()
            .zip(inner)
            .map(|(f, p)| {
                if self.reads_masked(f) {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    p
                }
            })
            .collect())
    }
}
