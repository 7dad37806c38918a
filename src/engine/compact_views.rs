//! Compacting text that joins, sorts and window aggregates would drag along.
//!
//! DataFusion reads text as `Utf8View`: each value is a view into shared data buffers.
//! A hash join concatenates its build side (one entry per data buffer of every input
//! batch) and makes each output batch by `take`, which keeps *all* of the build side's
//! buffers (apache/datafusion#16206). Three things follow:
//! - when that output is the build side of the next join, as in the chain of `LEFT
//!   JOIN`s that adds one aggregate after another to each person in `profiles`, the
//!   buffer lists multiply from join to join. At 100k demo customers they grew to over
//!   20 GB, none of it counted by the memory pool, and the kernel killed the server;
//! - a sort above a join counts every output batch as holding the whole build side,
//!   and asked the pool for gigabytes to sort 250k rows;
//! - window aggregates and sorts do the same with what they concatenate and take, so a
//!   chain of them (the RFM scores' three `ntile`s) multiplies buffers too.
//!
//! [`CompactViews`] puts a [`CompactViewsExec`] on the build (left) input of every hash,
//! nested-loop and cross join and on the input of every window aggregate, and on the
//! output of those and of sorts. It copies the values of a view column (also one inside
//! a list or a struct) into fresh buffers when the column holds more buffers than
//! [`MAX_BUFFERS`] or buffers more than twice the size of the values it uses. Any other
//! column that is a small slice of much larger buffers is copied too: a window aggregate
//! hands out its concatenated partition in slices, each counted as holding all of it.
//! Other batches pass through untouched.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    make_array, Array, ArrayRef, AsArray, GenericByteViewArray, GenericListArray, MutableArrayData,
    OffsetSizeTrait, RecordBatch, StructArray,
};
use datafusion::arrow::datatypes::{
    BinaryViewType, ByteViewType, DataType, FieldRef, StringViewType,
};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::Statistics;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::joins::{CrossJoinExec, HashJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
    ReplaceChildrenOptions,
};
use futures::StreamExt;

/// More data buffers than this in one column of one batch are compacted.
pub const MAX_BUFFERS: usize = 32;

/// The physical optimizer rule: a [`CompactViewsExec`] on the input of each operator
/// that keeps its whole input ([`keeps_input`]) and on the output of each that takes its
/// rows from what it kept ([`takes_rows`]), where they have view columns.
#[derive(Debug, Default)]
pub struct CompactViews;

/// Joins keep their build (left) side; window aggregates keep a partition.
fn keeps_input(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.is::<HashJoinExec>()
        || node.is::<NestedLoopJoinExec>()
        || node.is::<CrossJoinExec>()
        || node.is::<WindowAggExec>()
}

/// Operators whose output rows are `take`n from their kept or sorted input.
fn takes_rows(node: &Arc<dyn ExecutionPlan>) -> bool {
    keeps_input(node) || node.is::<SortExec>() || node.is::<BoundedWindowAggExec>()
}

impl PhysicalOptimizerRule for CompactViews {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if !takes_rows(&node) {
                return Ok(Transformed::no(node));
            }
            let mut inputs: Vec<Arc<dyn ExecutionPlan>> =
                node.children().into_iter().cloned().collect();
            let node = match inputs.first() {
                Some(kept)
                    if keeps_input(&node) && !kept.is::<CompactViewsExec>() && has_views(kept) =>
                {
                    inputs[0] = Arc::new(CompactViewsExec::new(inputs[0].clone()));
                    node.replace_children(
                        inputs,
                        ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep),
                    )?
                }
                _ => node,
            };
            // A window aggregate's output is sliced from its concatenated partition
            // (see `compact_slice`), views or not.
            Ok(Transformed::yes(
                if has_views(&node) || node.is::<WindowAggExec>() {
                    Arc::new(CompactViewsExec::new(node))
                } else {
                    node
                },
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "compact_views"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn has_views(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.schema()
        .fields()
        .iter()
        .any(|f| holds_views(f.data_type()))
}

fn holds_views(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8View | DataType::BinaryView => true,
        DataType::List(field) | DataType::LargeList(field) => holds_views(field.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| holds_views(f.data_type())),
        _ => false,
    }
}

/// Passes its input through with each sprawling view column compacted (see the module).
#[derive(Debug)]
pub struct CompactViewsExec {
    input: Arc<dyn ExecutionPlan>,
}

impl CompactViewsExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> Self {
        Self { input }
    }
}

impl DisplayAs for CompactViewsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CompactViewsExec")
    }
}

impl ExecutionPlan for CompactViewsExec {
    fn name(&self) -> &str {
        "CompactViewsExec"
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

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
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
            Ok([input]) => Ok(Arc::new(CompactViewsExec::new(input))),
            Err(_) => Err(DataFusionError::Internal(
                "CompactViewsExec takes one child".into(),
            )),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let rows = context.session_config().batch_size();
        let stream = self.input.execute(partition, context)?;
        let schema = stream.schema();
        let batches = stream.flat_map(move |batch| {
            futures::stream::iter(match batch {
                Ok(batch) => pieces(batch, rows).into_iter().map(compact).collect(),
                Err(e) => vec![Err(e)],
            })
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }
}

/// A batch far larger than `rows` (a window aggregate's whole partition) in slices of
/// `rows`, which [`compact`] then copies out: a sort given one batch of 2.5M rows sliced
/// its sorted result the same way and counted every slice as holding all of it (11 GB
/// asked of the pool for 133 MB of rows).
fn pieces(batch: RecordBatch, rows: usize) -> Vec<RecordBatch> {
    let rows = rows.max(1);
    if batch.num_rows() <= 4 * rows {
        return vec![batch];
    }
    (0..batch.num_rows())
        .step_by(rows)
        .map(|start| batch.slice(start, rows.min(batch.num_rows() - start)))
        .collect()
}

/// `batch` with its sprawling view columns compacted; the batch itself when none is.
pub fn compact(batch: RecordBatch) -> Result<RecordBatch> {
    let mut columns: Option<Vec<ArrayRef>> = None;
    for (i, column) in batch.columns().iter().enumerate() {
        if let Some(compacted) = compact_array(column)? {
            columns.get_or_insert_with(|| batch.columns().to_vec())[i] = compacted;
        }
    }
    match columns {
        None => Ok(batch),
        Some(columns) => Ok(RecordBatch::try_new(batch.schema(), columns)?),
    }
}

/// `array` compacted, `None` when it needs no compaction. Lists and structs are
/// compacted through their children: a list of text (`collect_distinct`) is taken
/// like any other column.
fn compact_array(array: &ArrayRef) -> Result<Option<ArrayRef>> {
    Ok(match array.data_type() {
        DataType::Utf8View => compact_views::<StringViewType>(array.as_string_view()),
        DataType::BinaryView => compact_views::<BinaryViewType>(array.as_binary_view()),
        DataType::List(field) => compact_list::<i32>(array, field)?,
        DataType::LargeList(field) => compact_list::<i64>(array, field)?,
        DataType::Struct(fields) => {
            let parts = array.as_struct();
            let mut columns: Option<Vec<ArrayRef>> = None;
            for (i, column) in parts.columns().iter().enumerate() {
                if let Some(compacted) = compact_array(column)? {
                    columns.get_or_insert_with(|| parts.columns().to_vec())[i] = compacted;
                }
            }
            match columns {
                None => None,
                Some(columns) => Some(Arc::new(StructArray::try_new(
                    fields.clone(),
                    columns,
                    parts.nulls().cloned(),
                )?) as ArrayRef),
            }
        }
        _ => compact_slice(array)?,
    })
}

/// A column that is a small slice of large buffers (a window aggregate hands out its
/// partition, concatenated once, in slices of a batch each), copied into buffers of its
/// own. Every slice counts the whole buffers: a sort above three `ntile`s over 2.5M rows
/// asked the pool for 11 GB for one batch.
fn compact_slice(array: &ArrayRef) -> Result<Option<ArrayRef>> {
    let data = array.to_data();
    let Ok(used) = data.get_slice_memory_size() else {
        return Ok(None);
    };
    if array.get_buffer_memory_size() <= 2 * used + SLICE_SLACK {
        return Ok(None);
    }
    let mut copy = MutableArrayData::new(vec![&data], false, array.len());
    copy.try_extend(0, 0, array.len())?;
    Ok(Some(make_array(copy.freeze())))
}

/// Buffers up to this much larger than the slice using them are left shared.
const SLICE_SLACK: usize = 64 * 1024;

fn compact_list<O: OffsetSizeTrait>(
    array: &ArrayRef,
    field: &FieldRef,
) -> Result<Option<ArrayRef>> {
    let list = array.as_list::<O>();
    Ok(compact_array(list.values())?.map(|values| {
        let offsets = list.offsets().clone();
        let nulls = list.nulls().cloned();
        Arc::new(GenericListArray::<O>::new(
            field.clone(),
            offsets,
            values,
            nulls,
        )) as ArrayRef
    }))
}

fn compact_views<T: ByteViewType + ?Sized>(array: &GenericByteViewArray<T>) -> Option<ArrayRef> {
    let buffers = array.data_buffers();
    if buffers.is_empty() {
        return None;
    }
    // A buffer listed twice is counted twice: that is the waste being measured.
    // The bytes used take a pass over the views: only counted when the buffers are few.
    let held: usize = buffers.iter().map(|b| b.capacity()).sum();
    let sprawling = buffers.len() > MAX_BUFFERS || held > 2 * array.total_buffer_bytes_used();
    sprawling.then(|| Arc::new(array.gc()) as ArrayRef)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ListArray, StringViewArray, UInt32Array};
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::compute::{concat, take};
    use datafusion::arrow::datatypes::{Field, Schema};

    fn long_values(n: usize, tag: &str) -> StringViewArray {
        StringViewArray::from_iter_values(
            (0..n).map(|i| format!("{tag}-a-value-longer-than-twelve-{i}")),
        )
    }

    fn batch(array: ArrayRef) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "v",
            array.data_type().clone(),
            true,
        )]));
        RecordBatch::try_new(schema, vec![array]).expect("batch")
    }

    /// What a chain of joins does: concatenate, take, concatenate the takes, ...
    #[test]
    fn the_buffers_of_a_join_chain_stay_few() {
        let parts: Vec<ArrayRef> = (0..8)
            .map(|p| Arc::new(long_values(100, &p.to_string())) as ArrayRef)
            .collect();
        let mut build =
            concat(&parts.iter().map(|a| a.as_ref()).collect::<Vec<_>>()).expect("concat");
        for _ in 0..3 {
            let indices = UInt32Array::from_iter_values(0..100);
            let outputs: Vec<ArrayRef> = (0..8)
                .map(|_| take(&build, &indices, None).expect("take"))
                .collect();
            let raw =
                concat(&outputs.iter().map(|a| a.as_ref()).collect::<Vec<_>>()).expect("concat");
            let compacted: Vec<ArrayRef> = outputs
                .iter()
                .map(|a| {
                    compact(batch(a.clone()))
                        .expect("compact")
                        .column(0)
                        .clone()
                })
                .collect();
            build =
                concat(&compacted.iter().map(|a| a.as_ref()).collect::<Vec<_>>()).expect("concat");
            // Without compaction the buffer list grows eightfold per step.
            assert!(raw.as_string_view().data_buffers().len() >= 64);
            assert!(build.as_string_view().data_buffers().len() <= 8);
            assert_eq!(
                build.as_string_view().value(799),
                "0-a-value-longer-than-twelve-99"
            );
        }
    }

    #[test]
    fn text_inside_lists_is_compacted() {
        let parts: Vec<ArrayRef> = (0..40)
            .map(|p| Arc::new(long_values(3, &p.to_string())) as ArrayRef)
            .collect();
        let values = concat(&parts.iter().map(|a| a.as_ref()).collect::<Vec<_>>()).expect("concat");
        let field = Arc::new(Field::new("item", DataType::Utf8View, true));
        let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(3, 40));
        let list: ArrayRef = Arc::new(ListArray::new(field, offsets, values, None));
        let out = compact(batch(list.clone())).expect("test");
        let compacted = out.column(0).as_list::<i32>();
        assert!(compacted.values().as_string_view().data_buffers().len() <= 1);
        assert_eq!(compacted, list.as_list::<i32>());
    }

    #[test]
    fn dense_batches_pass_untouched() {
        // gc() leaves one buffer of exactly the values' size.
        let array: ArrayRef = Arc::new(long_values(50, "x").gc());
        let before = array.as_string_view().data_buffers()[0].as_ptr();
        let out = compact(batch(array)).expect("test");
        let after = out.column(0).as_string_view().data_buffers()[0].as_ptr();
        assert_eq!(before, after);
    }

    #[test]
    fn a_small_slice_of_a_large_buffer_is_copied_out() {
        let array = long_values(10_000, "y");
        let slice: ArrayRef = Arc::new(array.slice(10, 5));
        let out = compact(batch(slice)).expect("test");
        let column = out.column(0).as_string_view();
        let held: usize = column.data_buffers().iter().map(|b| b.capacity()).sum();
        assert!(held <= 2 * column.total_buffer_bytes_used(), "{held}");
        assert_eq!(column.value(0), "y-a-value-longer-than-twelve-10");
        assert_eq!(column.len(), 5);
    }

    #[test]
    fn slices_of_other_columns_are_copied_out_when_small() {
        use datafusion::arrow::array::{Int64Array, ListArray};
        use datafusion::arrow::datatypes::Int64Type;
        // A window aggregate's output: a batch-sized slice of the whole partition.
        let whole = Int64Array::from_iter_values(0..1_000_000);
        let slice: ArrayRef = Arc::new(whole.slice(8192, 8192));
        assert!(slice.get_buffer_memory_size() >= 8_000_000);
        let out = compact(batch(slice)).expect("test");
        let column = out.column(0);
        assert!(column.get_buffer_memory_size() < 100_000);
        let values = column.as_primitive::<Int64Type>();
        assert_eq!(values.len(), 8192);
        assert_eq!((values.value(0), values.value(8191)), (8192, 16_383));
        // Most of the buffer used: left shared.
        let most: ArrayRef = Arc::new(whole.slice(0, 900_000));
        let ptr = most.to_data().buffers()[0].as_ptr();
        let out = compact(batch(most)).expect("test");
        assert_eq!(out.column(0).to_data().buffers()[0].as_ptr(), ptr);
        // A sliced list comes out equal (its values are not a slice).
        let lists = ListArray::from_iter_primitive::<Int64Type, _, _>(
            (0..100_000).map(|i| Some(vec![Some(i), None])),
        );
        let slice: ArrayRef = Arc::new(lists.slice(5, 3));
        let out = compact(batch(slice.clone())).expect("test");
        assert_eq!(out.column(0).as_ref(), slice.as_ref());
    }

    #[test]
    fn a_huge_batch_leaves_in_compact_pieces() {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::Int64Type;
        let whole = batch(Arc::new(Int64Array::from_iter_values(0..100_000)));
        let out: Vec<RecordBatch> = pieces(whole.clone(), 8192)
            .into_iter()
            .map(|b| compact(b).expect("compact"))
            .collect();
        assert_eq!(out.len(), 13);
        assert!(out.iter().all(|b| b.get_array_memory_size() < 100_000));
        let values: Vec<i64> = out
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(values, (0..100_000).collect::<Vec<_>>());
        // Batches up to four times the size pass whole.
        assert_eq!(pieces(whole, 25_000).len(), 1);
    }

    /// A chain of joins over text keys, run with and without the rule: the buffers of
    /// every result batch, most first.
    async fn join_chain_buffers(with_rule: bool) -> (usize, usize) {
        use datafusion::datasource::MemTable;
        use datafusion::execution::session_state::SessionStateBuilder;
        use datafusion::prelude::{SessionConfig, SessionContext};

        let config = SessionConfig::new()
            .with_batch_size(64)
            .with_target_partitions(2);
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if with_rule {
            state = state.with_physical_optimizer_rule(Arc::new(CompactViews));
        }
        let ctx = SessionContext::new_with_state(state.build());
        for t in ["a", "b", "c", "d"] {
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Utf8View, false),
                Field::new(t, DataType::Utf8View, false),
            ]));
            let batches = (0..40)
                .map(|b| {
                    let ids = (0..50).map(|i| format!("person-number-{:06}", b * 50 + i));
                    let values = (0..50).map(|i| format!("{t}-value-of-person-{:06}", b * 50 + i));
                    RecordBatch::try_new(
                        schema.clone(),
                        vec![
                            Arc::new(StringViewArray::from_iter_values(ids)),
                            Arc::new(StringViewArray::from_iter_values(values)),
                        ],
                    )
                    .expect("test")
                })
                .collect();
            let table = MemTable::try_new(schema, vec![batches]).expect("test");
            ctx.register_table(t, Arc::new(table)).expect("test");
        }
        let sql = "SELECT a.id, a.a, b.b, c.c, d.d FROM a LEFT JOIN b ON b.id = a.id \
                   LEFT JOIN c ON c.id = a.id LEFT JOIN d ON d.id = a.id";
        let df = ctx.sql(sql).await.expect("test");
        let plan = df.clone().create_physical_plan().await.expect("test");
        let shown = datafusion::physical_plan::displayable(plan.as_ref()).indent(true);
        assert_eq!(
            shown.to_string().contains("CompactViewsExec"),
            with_rule,
            "{shown}"
        );
        let batches = df.collect().await.expect("test");
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let most = batches
            .iter()
            .flat_map(|b| {
                b.columns()
                    .iter()
                    .map(|c| c.as_string_view().data_buffers().len())
            })
            .max()
            .expect("test");
        (most, rows)
    }

    #[tokio::test]
    async fn a_chain_of_joins_keeps_few_buffers() {
        let (without, rows) = join_chain_buffers(false).await;
        assert_eq!(rows, 2000);
        assert!(
            without > 4 * MAX_BUFFERS,
            "the test shows no growth: {without}"
        );
        let (with, rows) = join_chain_buffers(true).await;
        assert_eq!(rows, 2000);
        assert!(with <= MAX_BUFFERS, "{with} buffers");
    }
}
