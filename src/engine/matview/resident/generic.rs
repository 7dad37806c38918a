//! Parameters of a generic plan: a prepared statement's `$n` left unbound in a physical
//! plan whose scans are all resident, so the plan can serve every execution.
//!
//! A placeholder becomes `$param(n)`, a function that carries the value it was first
//! bound to (its hint) and is never evaluated. Resident scans plan with the hints (the
//! estimates that pick a join's build side come from them) and keep the filters that hold
//! parameters; [`super::ResidentExec::bind`] puts the values of one execution in their
//! place, as literals, before the scan runs.

use std::sync::{Arc, Mutex, Weak};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::ExecutionPlan;

use super::ResidentExec;
use crate::engine::compact_views::CompactViewsExec;

/// A callback of what keeps generic plans, which hold resident rows.
pub type Holder = Arc<dyn Fn() + Send + Sync>;

static HOLDERS: Mutex<Vec<Weak<dyn Fn() + Send + Sync>>> = Mutex::new(Vec::new());

/// Have `holder` called whenever resident rows are let go (a refresh, a drop, a newer
/// snapshot loading), so it drops its generic plans and the rows go with them at once
/// (an erased person's included). Held weakly: dropping `holder` unregisters it.
pub fn on_release(holder: &Holder) {
    let mut holders = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
    holders.retain(|h| h.strong_count() > 0);
    holders.push(Arc::downgrade(holder));
}

/// Tell the holders of generic plans that resident rows were let go.
pub(super) fn released() {
    let holders: Vec<Holder> = HOLDERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for holder in holders {
        holder();
    }
}

/// `$n` (`index` n - 1), first bound to `hint`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Param {
    index: usize,
    hint: ScalarValue,
    signature: Signature,
}

impl ScalarUDFImpl for Param {
    fn name(&self) -> &str {
        "$param"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.hint.data_type())
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(DataFusionError::Internal(format!(
            "parameter ${} was not bound",
            self.index + 1
        )))
    }
}

/// The expression standing for parameter `index` (from 0), first bound to `hint`.
pub fn param(index: usize, hint: ScalarValue) -> Expr {
    let udf = ScalarUDF::new_from_impl(Param {
        index,
        hint,
        // Stable: evaluated once per statement, never folded into the plan.
        signature: Signature::nullary(Volatility::Stable),
    });
    Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(udf), vec![]))
}

fn as_param(expr: &Arc<dyn PhysicalExpr>) -> Option<&Param> {
    expr.downcast_ref::<ScalarFunctionExpr>()?
        .fun()
        .inner()
        .downcast_ref::<Param>()
}

/// Whether `expr` holds a parameter.
pub fn has_params(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.exists(|e| Ok(as_param(e).is_some())).unwrap_or(true)
}

/// `expr` with each parameter replaced by its value in `values`, or by its hint.
pub fn bound(
    expr: &Arc<dyn PhysicalExpr>,
    values: Option<&[ScalarValue]>,
) -> Result<Arc<dyn PhysicalExpr>> {
    expr.clone()
        .transform(|e| {
            let Some(p) = as_param(&e) else {
                return Ok(Transformed::no(e));
            };
            let value = match values {
                None => p.hint.clone(),
                Some(values) => values.get(p.index).cloned().ok_or_else(|| {
                    DataFusionError::Internal(format!("no value for ${}", p.index + 1))
                })?,
            };
            let value = if value.data_type() == p.hint.data_type() {
                value
            } else {
                value.cast_to(&p.hint.data_type())?
            };
            Ok(Transformed::yes(Arc::new(Literal::new(value)) as _))
        })
        .map(|t| t.data)
}

/// Whether `plan` (planned with parameters) can serve every execution: each of its
/// leaves is a resident scan, parameters appear only in those scans' filters, where
/// [`bind_plan`] replaces them, and every other node is one whose state a reset renews
/// ([`renewable`]). Any other scan prunes with the values at planning time.
pub fn is_generic(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let unbound = |node: &Arc<dyn ExecutionPlan>| {
        if node.downcast_ref::<ResidentExec>().is_some() {
            return false;
        }
        if !renewable(node) {
            return true;
        }
        let found = node.apply_expressions(&mut |e| {
            Ok(if has_params(e) {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        });
        !matches!(found, Ok(TreeNodeRecursion::Continue))
    };
    !plan.exists(|node| Ok(unbound(node))).unwrap_or(true)
}

/// Whether `node` keeps nothing from one execution to the next once reset: the nodes of
/// lookups, joins, sorts and limits. Not so an aggregate (its `min`/`max` dynamic filter
/// survives a reset) or a scalar subquery (its result slot is shared by every copy).
fn renewable(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.is::<HashJoinExec>()
        || node.is::<ProjectionExec>()
        || node.is::<FilterExec>()
        || node.is::<CooperativeExec>()
        || node.is::<CompactViewsExec>()
        || node.is::<CoalescePartitionsExec>()
        || node.is::<RepartitionExec>()
        || node.is::<SortExec>()
        || node.is::<SortPreservingMergeExec>()
        || node.is::<GlobalLimitExec>()
        || node.is::<LocalLimitExec>()
}

/// Whether every resident scan of `plan` still reads its view's current rows.
pub fn is_current(plan: &Arc<dyn ExecutionPlan>) -> bool {
    !plan
        .exists(|node| {
            Ok(node
                .downcast_ref::<ResidentExec>()
                .is_some_and(|scan| !scan.is_current()))
        })
        .unwrap_or(true)
}

/// The generic `plan` made ready for one execution with `values`: its resident scans
/// bound (see [`ResidentExec::bind`]), every node's state fresh, and the dynamic filters
/// of its joins and TopKs pushed again. `None` when a scan's rows are no longer the
/// view's current ones (the plan is stale).
pub fn bind_plan(
    plan: &Arc<dyn ExecutionPlan>,
    values: &[ScalarValue],
    config: &ConfigOptions,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if !is_current(plan) {
        return Ok(None);
    }
    let bound = plan
        .clone()
        .transform_up(|node| match node.downcast_ref::<ResidentExec>() {
            Some(scan) => Ok(Transformed::yes(Arc::new(scan.bind(values)?) as _)),
            None => Ok(Transformed::no(node)),
        })?
        .data;
    let fresh = reset_plan_states(bound)?;
    FilterPushdown::new_post_optimization()
        .optimize(fresh, config)
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::common::{DFSchema, JoinType, NullEquality};
    use datafusion::execution::TaskContext;
    use datafusion::logical_expr::col;
    use datafusion::physical_plan::filter::FilterExec;
    use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::SessionContext;

    fn text(s: &str) -> ScalarValue {
        ScalarValue::Utf8View(Some(s.into()))
    }

    /// `k1 = $1` over a resident scan, as the planner leaves it: the filter pushed into
    /// the scan, which also narrowed its rows with the hint.
    fn lookup(hint: &str) -> Arc<dyn ExecutionPlan> {
        let data = Arc::new(super::super::tests::resident());
        let schema = data.batch.schema();
        let df = DFSchema::try_from(schema.as_ref().clone()).expect("schema");
        let state = SessionContext::new().state();
        let predicate = state
            .create_physical_expr(col("k1").eq(param(0, text(hint))), &df)
            .expect("predicate");
        assert!(has_params(&predicate));
        let hinted = bound(&predicate, None).expect("hinted");
        assert!(!has_params(&hinted));
        let range = data.narrow(&[hinted], 0..7);
        let scan = ResidentExec::new(data, None, range, true, 1, None)
            .expect("scan")
            .of(None, Some(vec![predicate.clone()]));
        let filter = FilterExec::try_new(predicate, Arc::new(scan)).expect("filter");
        FilterPushdown::new()
            .optimize(Arc::new(filter), &ConfigOptions::default())
            .expect("pushdown")
    }

    /// Rows of the join on k2 of `lookup` (build) and all rows (probe), bound to `k1`.
    async fn run(generic: &Arc<dyn ExecutionPlan>, k1: &str) -> Vec<i64> {
        let plan = bind_plan(generic, &[text(k1)], &ConfigOptions::default())
            .expect("bind")
            .expect("current");
        let text = displayable(plan.as_ref()).indent(true).to_string();
        assert!(!text.contains("$param"), "{text}");
        let batches = collect(plan, Arc::new(TaskContext::default()))
            .await
            .expect("run");
        let mut k2: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(3).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        k2.sort();
        k2
    }

    #[tokio::test]
    async fn a_generic_plan_serves_each_execution_with_its_own_values() {
        let build = lookup("b");
        assert!(
            displayable(build.as_ref())
                .indent(true)
                .to_string()
                .starts_with("ResidentExec"),
            "the filter went into the scan"
        );
        let probe: Arc<dyn ExecutionPlan> = Arc::new(
            ResidentExec::new(
                Arc::new(super::super::tests::resident()),
                None,
                0..7,
                false,
                1,
                None,
            )
            .expect("probe"),
        );
        let schema = build.schema();
        let on = vec![(
            datafusion::physical_expr::expressions::col("k2", &schema).expect("k2") as _,
            datafusion::physical_expr::expressions::col("k2", &probe.schema()).expect("k2") as _,
        )];
        let join = HashJoinExec::try_new(
            build,
            probe,
            on,
            None,
            &JoinType::Inner,
            None,
            PartitionMode::CollectLeft,
            NullEquality::NullEqualsNothing,
            false,
        )
        .expect("join");
        // As planned: the join's dynamic filter pushed into the probe scan.
        let generic = FilterPushdown::new_post_optimization()
            .optimize(Arc::new(join), &ConfigOptions::default())
            .expect("post");
        assert!(
            displayable(generic.as_ref())
                .indent(true)
                .to_string()
                .contains("DynamicFilter"),
            "{}",
            displayable(generic.as_ref()).indent(true)
        );
        assert!(is_generic(&generic));
        // k1 = 'c' holds k2 1, k1 = 'a' holds 1 and 2: each execution gets its own
        // rows, with the dynamic filter of its own build side (a stale one from 'c'
        // would keep only k2 = 1 for 'a').
        assert_eq!(run(&generic, "c").await, [1, 1, 1, 1]);
        assert_eq!(run(&generic, "a").await, [1, 1, 1, 1, 2, 2]);
        assert_eq!(run(&generic, "b").await, [1, 1, 1, 1, 2, 2, 3]);
        assert!(run(&generic, "zz").await.is_empty());
        assert_eq!(run(&generic, "c").await, [1, 1, 1, 1]);
    }

    #[test]
    fn only_plans_whose_parameters_all_sit_in_resident_scans_are_generic() {
        let scan = lookup("a");
        assert!(is_generic(&scan));
        // A parameter left in a filter above the scan (a masked column's) is not bound.
        let schema = scan.schema();
        let df = DFSchema::try_from(schema.as_ref().clone()).expect("schema");
        let state = SessionContext::new().state();
        let above = state
            .create_physical_expr(col("k2").gt(param(1, ScalarValue::Int64(Some(1)))), &df)
            .expect("predicate");
        let filter: Arc<dyn ExecutionPlan> =
            Arc::new(FilterExec::try_new(above, scan).expect("filter"));
        assert!(!is_generic(&filter));
        // A leaf other than a resident scan (a Parquet file, pruned with the values).
        let empty: Arc<dyn ExecutionPlan> =
            Arc::new(datafusion::physical_plan::empty::EmptyExec::new(schema));
        assert!(!is_generic(&empty));
        // A node whose state a reset may not renew (here a union: only known ones pass).
        let union =
            datafusion::physical_plan::union::UnionExec::try_new(vec![lookup("a"), lookup("b")])
                .expect("union");
        assert!(!is_generic(&union));
    }
}
