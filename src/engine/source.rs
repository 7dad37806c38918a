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
use datafusion::common::Statistics;
use datafusion::datasource::listing::{ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
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

    /// The files the source reads now, listed as its scans list them (by extension,
    /// subdirectories left out); `None` unless it is a listing of local files without
    /// partition columns.
    pub async fn files(&self, state: &dyn Session) -> Result<Option<Vec<SourceFile>>> {
        let Some(table) = self.listing() else {
            return Ok(None);
        };
        let mut files = Vec::new();
        for url in table.table_paths() {
            if url.scheme() != "file" {
                return Ok(None);
            }
            let store = state.runtime_env().object_store(url)?;
            let extension = &table.options().file_extension;
            let mut listed = url.list_all_files(state, store.as_ref(), extension).await?;
            while let Some(meta) = listed.try_next().await? {
                files.push(SourceFile {
                    url: format!("{}{}", url.object_store().as_str(), meta.location),
                    size: meta.size,
                    modified: meta.last_modified.timestamp_nanos_opt().unwrap_or_default(),
                });
            }
        }
        files.sort_by(|a, b| a.url.cmp(&b.url));
        files.dedup_by(|a, b| a.url == b.url);
        Ok(Some(files))
    }

    /// The source reading `files` alone (some of [`Self::files`]): as of a listing, or
    /// the files added since one. `None` when it is not a listing or `files` is empty.
    pub fn reading(&self, files: &[SourceFile]) -> Result<Option<SourceTable>> {
        let Some(table) = self.listing().filter(|_| !files.is_empty()) else {
            return Ok(None);
        };
        let paths = files
            .iter()
            .map(|f| ListingTableUrl::parse(&f.url))
            .collect::<Result<Vec<_>>>()?;
        let config = ListingTableConfig::new_with_multi_paths(paths)
            .with_listing_options(table.options().clone())
            .with_schema(table.schema());
        Ok(Some(SourceTable {
            inner: Arc::new(ListingTable::try_new(config)?),
            label: self.label.clone(),
        }))
    }

    fn listing(&self) -> Option<&ListingTable> {
        self.inner
            .downcast_ref::<ListingTable>()
            .filter(|t| t.options().table_partition_cols.is_empty())
    }
}

/// A file a source reads, as listed: a local file source's version is its files (see
/// `crate::engine::matview::inputs`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceFile {
    /// `file:///data/orders/2026-12-01.csv`
    pub url: String,
    pub size: u64,
    /// Its modification time, in nanoseconds since the Unix epoch.
    pub modified: i64,
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

    /// The input's rows are passed through unchanged: so are its statistics (the
    /// planner's join order and `resolve_identities`' buffers are sized by them).
    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(input_stats[0].clone())
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
