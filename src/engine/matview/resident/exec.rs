//! [`ResidentExec`]: a scan of a resident view's rows.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::{and, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::Statistics;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;

use super::Resident;
use crate::engine::compact_views::compact;

/// Reads the rows `range` of a resident view (narrowed further, when it runs, by the
/// filters pushed into it), split among `partitions`, applying those filters exactly.
#[derive(Debug, Clone)]
pub struct ResidentExec {
    data: Arc<Resident>,
    projection: Option<Vec<usize>>,
    range: Range<usize>,
    /// Filters over the output columns, static or dynamic (a join's), applied exactly.
    filters: Vec<Arc<dyn PhysicalExpr>>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl ResidentExec {
    pub(super) fn new(
        data: Arc<Resident>,
        projection: Option<&Vec<usize>>,
        range: Range<usize>,
        partitions: usize,
        limit: Option<usize>,
    ) -> Result<Self> {
        let schema: SchemaRef = match projection {
            Some(p) => Arc::new(data.batch.schema().project(p)?),
            None => data.batch.schema(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions.max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(ResidentExec {
            data,
            projection: projection.cloned(),
            range,
            filters: vec![],
            limit,
            properties: Arc::new(properties),
        })
    }

    /// The rows of one partition's share of `range`.
    fn share(&self, range: &Range<usize>, partition: usize) -> Range<usize> {
        let n = self.properties.partitioning.partition_count();
        let per = range.len().div_ceil(n);
        let start = (range.start + per * partition).min(range.end);
        start..(start + per).min(range.end)
    }

    /// The rows of `rows`, projected and filtered, in batches of at most `batch_size`.
    fn batches(&self, rows: Range<usize>, batch_size: usize) -> Result<Vec<RecordBatch>> {
        let mut out = vec![];
        let mut left = self.limit.unwrap_or(usize::MAX);
        let mut start = rows.start;
        while start < rows.end && left > 0 {
            let len = batch_size.min(rows.end - start);
            let slice = self.data.batch.slice(start, len);
            start += len;
            let mut batch = match &self.projection {
                Some(p) => slice.project(p)?,
                None => slice,
            };
            if !self.filters.is_empty() {
                let mut keep: Option<BooleanArray> = None;
                for f in &self.filters {
                    let mask = f.evaluate(&batch)?.into_array(batch.num_rows())?;
                    let mask = mask
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .ok_or_else(|| {
                            DataFusionError::Internal("a filter that is not boolean".into())
                        })?
                        .clone();
                    keep = Some(match keep {
                        Some(k) => and(&k, &mask)?,
                        None => mask,
                    });
                }
                if let Some(keep) = keep {
                    batch = filter_record_batch(&batch, &keep)?;
                }
            }
            if batch.num_rows() > left {
                batch = batch.slice(0, left);
            }
            left -= batch.num_rows();
            // A slice keeps every buffer of the resident column: copy what it uses (a
            // lookup's row), or each consumer counts and holds them all.
            if batch.num_rows() > 0 {
                out.push(compact(batch)?);
            }
        }
        Ok(out)
    }
}

impl DisplayAs for ResidentExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ResidentExec: rows {}..{} of {}",
            self.range.start,
            self.range.end,
            self.data.rows()
        )?;
        if !self.filters.is_empty() {
            let filters: Vec<String> = self.filters.iter().map(|e| e.to_string()).collect();
            write!(f, ", filters [{}]", filters.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ResidentExec {
    fn name(&self) -> &str {
        "ResidentExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for filter in &self.filters {
            if f(filter)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "ResidentExec has no children".into(),
            ))
        }
    }

    /// Every filter pushed here is applied here, exactly: those of a `FilterExec` above
    /// (which then goes), and a join's dynamic filter (which also narrows the rows).
    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let filters: Vec<Arc<dyn PhysicalExpr>> = child_pushdown_result
            .parent_filters
            .into_iter()
            .map(|f| f.filter)
            .collect();
        if filters.is_empty() {
            return Ok(FilterPushdownPropagation::with_parent_pushdown_result(
                vec![],
            ));
        }
        let mut node = self.clone();
        node.filters.extend(filters.iter().cloned());
        Ok(FilterPushdownPropagation::with_parent_pushdown_result(vec![
            PushedDown::Yes;
            filters.len()
        ])
        .with_updated_node(Arc::new(node) as Arc<dyn ExecutionPlan>))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let this = self.clone();
        let batch_size = context.session_config().batch_size();
        // Narrowed when first polled: a join's dynamic filter is complete by then.
        let batches = futures::stream::once(async move {
            let range = this.data.narrow(&this.filters, this.range.clone());
            let rows = this.share(&range, partition);
            let batches: Vec<Result<RecordBatch>> = match this.batches(rows, batch_size) {
                Ok(b) => b.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(batches)
        })
        .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches,
        )))
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        let rows = match partition {
            Some(p) => self.share(&self.range, p).len(),
            None => self.range.len(),
        };
        let mut statistics = Statistics::new_unknown(&self.schema());
        statistics.num_rows = if self.filters.is_empty() && self.limit.is_none() {
            Precision::Exact(rows)
        } else {
            Precision::Inexact(rows)
        };
        Ok(Arc::new(statistics))
    }
}
