//! External sources: a read-only wrapper around the file-backed table DataFusion builds
//! for `CREATE EXTERNAL TABLE`.
//!
//! It adds what a CDP needs around a source: errors raised while reading (a malformed
//! row in a CSV, a truncated Parquet file) name the source and its location, and writes
//! are refused (sources are owned by the system that exports them).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::TryStreamExt;

/// A read-only external source.
#[derive(Debug)]
pub struct SourceTable {
    inner: Arc<dyn TableProvider>,
    /// "source \"crm\" (/data/crm.csv)", prefixed to read errors.
    label: Arc<str>,
}

impl SourceTable {
    pub fn new(inner: Arc<dyn TableProvider>, name: &str, location: &str) -> Self {
        SourceTable {
            inner,
            label: format!("source \"{name}\" ({location})").into(),
        }
    }

    /// The URLs of the files or directories the source lists (`file:///data/crm.csv`),
    /// or `None` when it is not a listing of files.
    pub fn listing_urls(&self) -> Option<Vec<String>> {
        self.inner.downcast_ref::<ListingTable>().map(|t| {
            t.table_paths()
                .iter()
                .map(|u| u.as_str().to_string())
                .collect()
        })
    }
}

#[async_trait]
impl TableProvider for SourceTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
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
        let plan = self.inner.scan(state, projection, filters, limit).await?;
        Ok(Arc::new(SourceExec {
            input: plan,
            label: self.label.clone(),
        }))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }
}

/// Passes its input through, naming the source in any error it raises.
#[derive(Debug)]
struct SourceExec {
    input: Arc<dyn ExecutionPlan>,
    label: Arc<str>,
}

impl DisplayAs for SourceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SourceExec: {}", self.label)
    }
}

impl ExecutionPlan for SourceExec {
    fn name(&self) -> &str {
        "SourceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(SourceExec {
                input,
                label: self.label.clone(),
            })),
            Err(_) => Err(DataFusionError::Internal(
                "SourceExec takes one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let label = self.label.clone();
        let stream = self
            .input
            .execute(partition, context)
            .map_err(|e| e.context(label.to_string()))?;
        let schema = stream.schema();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.map_err(move |e| e.context(label.to_string())),
        )))
    }
}
