//! [`ResidentExec`]: a scan of a resident view's rows.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{ScalarValue, Statistics};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::{conjunction_opt, EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::batch_filter;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation, PushedDown,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    apply_expression_roots, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties,
};
use futures::StreamExt;

use super::{generic, Residency, Resident};
use crate::engine::compact_views::compact;
use crate::engine::matview::overlay::Stored;

/// Reads the rows `range` of a resident view (narrowed further, when it runs, by the
/// filters pushed into it), split among `partitions`, applying those filters exactly.
#[derive(Debug, Clone)]
pub struct ResidentExec {
    data: Arc<Resident>,
    projection: Option<Vec<usize>>,
    range: Range<usize>,
    /// Whether filters on the keys narrowed `range` at planning time.
    keyed: bool,
    /// Filters over the output columns, static or dynamic (a join's), applied exactly.
    filters: Vec<Arc<dyn PhysicalExpr>>,
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
    /// The view's stored rows and resident rows, to tell whether `data` is still their
    /// current state and in memory (`None`: always is, for rows that belong to no table).
    source: Option<(Stored, Arc<Residency>)>,
    /// In a generic plan, the scan's filters that hold parameters: `range` was narrowed
    /// with their hints, and [`ResidentExec::bind`] narrows it again with the values.
    unbound: Option<Vec<Arc<dyn PhysicalExpr>>>,
}

impl ResidentExec {
    pub(super) fn new(
        data: Arc<Resident>,
        projection: Option<&Vec<usize>>,
        range: Range<usize>,
        keyed: bool,
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
            keyed,
            filters: vec![],
            limit,
            properties: Arc::new(properties),
            source: None,
            unbound: None,
        })
    }

    /// The scan of `source`'s rows, with the scan filters that hold parameters.
    pub(super) fn of(
        mut self,
        source: Option<(Stored, Arc<Residency>)>,
        unbound: Option<Vec<Arc<dyn PhysicalExpr>>>,
    ) -> Self {
        self.source = source;
        self.unbound = unbound;
        self
    }

    /// Whether its rows are still those of the view's current state, in memory.
    pub fn is_current(&self) -> bool {
        self.source.as_ref().is_none_or(|(table, residency)| {
            table.current().same(&self.data.source) && residency.holds(&self.data)
        })
    }

    /// This scan of a generic plan for one execution: its parameters replaced by
    /// `values`, its rows narrowed with them, and without the dynamic filters pushed
    /// into it when the plan was made (its join or TopK pushes a fresh one). Its
    /// properties are the same, so the nodes above it are not planned again.
    pub fn bind(&self, values: &[ScalarValue]) -> Result<ResidentExec> {
        let mut node = self.clone();
        node.filters = self
            .filters
            .iter()
            .filter(|f| f.downcast_ref::<DynamicFilterPhysicalExpr>().is_none())
            .map(|f| generic::bound(f, Some(values)))
            .collect::<Result<_>>()?;
        if let Some(unbound) = &self.unbound {
            let scan = unbound
                .iter()
                .map(|f| generic::bound(f, Some(values)))
                .collect::<Result<Vec<_>>>()?;
            node.range = self.data.narrow(&scan, 0..self.data.rows());
            node.unbound = None;
        }
        Ok(node)
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
        let filter = conjunction_opt(self.filters.iter().cloned());
        while start < rows.end && left > 0 {
            let len = batch_size.min(rows.end - start);
            let slice = self.data.batch.slice(start, len);
            start += len;
            let mut batch = match &self.projection {
                Some(p) => slice.project(p)?,
                None => slice,
            };
            if let Some(filter) = &filter {
                batch = batch_filter(&batch, filter)?;
            }
            if batch.num_rows() > left {
                batch = batch.slice(0, left);
            }
            left -= batch.num_rows();
            // A slice keeps every buffer of the resident columns: copy what it uses (a
            // lookup's row), or each consumer counts and holds them all.
            if batch.num_rows() > 0 {
                let rows = UInt32Array::from_iter_values(0..batch.num_rows() as u32);
                out.push(compact(take_record_batch(&batch, &rows)?)?);
            }
        }
        Ok(out)
    }
}

impl DisplayAs for ResidentExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        // No row counts: they would tell whether a key is stored, before the consent
        // and erasure filters above the scan.
        let how = if self.keyed {
            "narrowed by keys"
        } else {
            "all rows"
        };
        write!(f, "ResidentExec: {how}")?;
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
        apply_expression_roots(&self.filters, f)
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
            // Each partition narrows its own fixed share: a filter that changes while
            // the query runs (a TopK's threshold) cannot make two shares overlap.
            let rows = this
                .data
                .narrow(&this.filters, this.share(&this.range, partition));
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{col, lit, BinaryExpr, DynamicFilterPhysicalExpr};
    use datafusion::physical_plan::collect_partitioned;
    use futures::TryStreamExt;

    async fn k2_of(exec: &ResidentExec, partition: usize) -> Vec<i64> {
        let stream = exec
            .execute(partition, Arc::new(TaskContext::default()))
            .expect("execute");
        let batches: Vec<RecordBatch> = stream.try_collect().await.expect("batches");
        batches
            .iter()
            .flat_map(|b| {
                b.column(1)
                    .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[tokio::test]
    async fn partitions_narrow_disjoint_shares_while_a_dynamic_filter_changes() {
        let data = Arc::new(super::super::tests::resident());
        let schema = data.batch.schema();
        let k1 = col("k1", &schema).expect("k1");
        let dynamic = Arc::new(DynamicFilterPhysicalExpr::new(vec![k1.clone()], lit(true)));
        let mut exec = ResidentExec::new(data, None, 0..7, false, 2, None).expect("exec");
        exec.filters.push(dynamic.clone());
        // Partition 0 runs before the filter tightens (as a TopK's threshold does),
        // partition 1 after: no row may come out twice.
        let first = k2_of(&exec, 0).await;
        dynamic
            .update(Arc::new(BinaryExpr::new(
                k1,
                Operator::Lt,
                lit(ScalarValue::Utf8View(Some("b".into()))),
            )))
            .expect("update");
        let second = k2_of(&exec, 1).await;
        assert_eq!(first, [1, 2, 1, 2], "rows 0..4, read before the update");
        assert!(second.is_empty(), "rows 4..7 hold no k1 < 'b': {second:?}");
        // With a fixed filter, all partitions together give exactly the matching rows.
        let all = collect_partitioned(Arc::new(exec), Arc::new(TaskContext::default()))
            .await
            .expect("collect");
        let rows: usize = all.iter().flatten().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2);
    }
}
