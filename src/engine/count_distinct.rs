//! `count(DISTINCT x)` next to plain counts, without `GROUP BY`, as two aggregates.
//!
//! DataFusion computes `SELECT count(*), count(DISTINCT x) FROM t` with one set of
//! distinct values per input partition, merged into one set by one thread at the end:
//! at 10M rows with 3.5M distinct values the merge alone takes about a second.
//! DataFusion's own rule `single_distinct_aggregation_to_group_by` groups by `x` first
//! (in parallel, hash-partitioned by `x`) and then counts the groups, but only when the
//! other aggregates are `sum`, `min` or `max`, not `count`. This rule covers that case:
//!
//! ```text
//! SELECT count(*) AS n, count(DISTINCT x) AS d, min(y) AS lo FROM t
//! -- becomes
//! SELECT coalesce(sum(c), 0) AS n, count(x) AS d, min(lo) AS lo
//!   FROM (SELECT x, count(*) AS c, min(y) AS lo FROM t GROUP BY x)
//! ```
//!
//! A NULL `x` is one group, which `count(x)` skips as `count(DISTINCT x)` does, while its
//! rows still count in `sum(c)`; `coalesce` gives 0 rather than NULL on empty input.
//! Only aggregates without `GROUP BY` are rewritten: with one, the view's result stays a
//! single aggregate by its key, which incremental refresh relies on.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::Result;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::{col, lit, AggregateUDF, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The name of the distinct argument in the inner aggregate.
const DISTINCT: &str = "__distinct_value";

/// The rule (see the module documentation).
#[derive(Debug, Default)]
pub struct CountDistinctWithCounts;

/// What one aggregate becomes.
#[derive(Clone, Copy)]
enum Part {
    /// `count(DISTINCT x)`: `count(x)` over the groups.
    Distinct,
    /// `count(..)`: counted per group, summed.
    Count,
    /// `min(..)` or `max(..)`: taken per group, then over the groups.
    MinMax,
}

/// One aggregate of the list: what it becomes, its function and its parameters.
type Piece<'a> = (Part, &'a Arc<AggregateUDF>, &'a AggregateFunctionParams);

/// The parts of an aggregate list this rule rewrites, or `None`: only `count(DISTINCT x)`
/// of one `x` (at least once), with at least one plain `count`, and plain `min`/`max`;
/// no `FILTER` or `ORDER BY` anywhere.
fn parts(aggr_expr: &[Expr]) -> Option<(Expr, Vec<Piece<'_>>)> {
    let mut distinct: Option<&Expr> = None;
    let mut counts = 0;
    let mut out = Vec::with_capacity(aggr_expr.len());
    for expr in aggr_expr {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = expr else {
            return None;
        };
        if params.filter.is_some() || !params.order_by.is_empty() {
            return None;
        }
        let name = func.name().to_ascii_lowercase();
        if params.distinct {
            let [arg] = params.args.as_slice() else {
                return None;
            };
            if name != "count" || distinct.is_some_and(|d| d != arg) {
                return None;
            }
            distinct = Some(arg);
            out.push((Part::Distinct, func, params));
        } else if name == "count" {
            counts += 1;
            out.push((Part::Count, func, params));
        } else if name == "min" || name == "max" {
            out.push((Part::MinMax, func, params));
        } else {
            return None;
        }
    }
    Some((distinct?.clone(), out)).filter(|_| counts > 0)
}

impl OptimizerRule for CountDistinctWithCounts {
    fn name(&self) -> &str {
        "count_distinct_with_counts_to_group_by"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let agg = match plan {
            LogicalPlan::Aggregate(agg) if agg.group_expr.is_empty() => agg,
            other => return Ok(Transformed::no(other)),
        };
        let Some((arg, parts)) = parts(&agg.aggr_expr) else {
            return Ok(Transformed::no(LogicalPlan::Aggregate(agg)));
        };
        let mut inner_aggr = Vec::new();
        let mut outer_aggr = Vec::new();
        // Per original aggregate: the outer expression that replaces it.
        let mut results = Vec::new();
        for (i, (part, func, params)) in parts.into_iter().enumerate() {
            let outer_name = format!("__outer_{i}");
            let outer = match part {
                Part::Distinct => Expr::AggregateFunction(AggregateFunction::new_udf(
                    Arc::clone(func),
                    vec![col(DISTINCT)],
                    false,
                    None,
                    vec![],
                    params.null_treatment,
                )),
                Part::Count | Part::MinMax => {
                    let inner_name = format!("__inner_{i}");
                    inner_aggr.push(
                        Expr::AggregateFunction(AggregateFunction {
                            func: Arc::clone(func),
                            params: AggregateFunctionParams {
                                distinct: false,
                                ..params.clone()
                            },
                        })
                        .alias(&inner_name),
                    );
                    let over = if matches!(part, Part::Count) {
                        sum_udaf()
                    } else {
                        Arc::clone(func)
                    };
                    Expr::AggregateFunction(AggregateFunction::new_udf(
                        over,
                        vec![col(inner_name)],
                        false,
                        None,
                        vec![],
                        None,
                    ))
                }
            };
            outer_aggr.push(outer.alias(&outer_name));
            let result = match part {
                Part::Count => coalesce(vec![col(&outer_name), lit(0i64)]),
                _ => col(&outer_name),
            };
            let (qualifier, field) = agg.schema.qualified_field(i);
            results.push(result.alias_qualified(qualifier.cloned(), field.name()));
        }
        let rewritten = LogicalPlanBuilder::from(Arc::unwrap_or_clone(agg.input))
            .aggregate(vec![arg.alias(DISTINCT)], inner_aggr)?
            .aggregate(Vec::<Expr>::new(), outer_aggr)?
            .project(results)?
            .build()?;
        Ok(Transformed::yes(rewritten))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    fn context(rule: bool) -> SessionContext {
        let mut state = SessionStateBuilder::new().with_default_features();
        if rule {
            state = state.with_optimizer_rule(Arc::new(CountDistinctWithCounts));
        }
        SessionContext::new_with_state(state.build())
    }

    async fn run(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        pretty_format_batches(&batches).expect("format").to_string()
    }

    async fn plan(ctx: &SessionContext, sql: &str) -> String {
        let df = ctx.sql(sql).await.expect("plan");
        df.into_optimized_plan()
            .expect("optimise")
            .display_indent()
            .to_string()
    }

    const DATA: &str = "(VALUES (1, 'a', 5), (2, 'b', NULL), (3, 'a', 7), (4, NULL, 1), \
                        (5, NULL, 9), (6, 'c', 2)) AS t(id, x, y)";

    #[tokio::test]
    async fn same_results_as_without_the_rule() {
        let queries = [
            format!("SELECT count(*), count(DISTINCT x) FROM {DATA}"),
            format!("SELECT count(DISTINCT x) AS d, count(y), count(*) AS n FROM {DATA}"),
            format!(
                "SELECT count(*), count(DISTINCT x), min(y), max(y), count(DISTINCT x) AS again FROM {DATA}"
            ),
            format!("SELECT count(*), count(DISTINCT x) FROM {DATA} WHERE id > 100"),
            format!("SELECT count(*), count(DISTINCT upper(x)) FROM {DATA} WHERE y > 1"),
        ];
        for sql in &queries {
            let (with, without) = (
                run(&context(true), sql).await,
                run(&context(false), sql).await,
            );
            assert_eq!(with, without, "{sql}");
            assert!(
                plan(&context(true), sql).await.contains(DISTINCT),
                "not rewritten: {sql}"
            );
        }
        assert!(
            run(&context(true), &queries[0])
                .await
                .contains("| 6        | 3                   |"),
            "{}",
            run(&context(true), &queries[0]).await
        );
        // On no rows: 0 and 0, not NULL.
        let empty = run(&context(true), &queries[3]).await;
        assert!(empty.contains("| 0        | 0 "), "{empty}");
    }

    #[tokio::test]
    async fn other_shapes_are_left_alone() {
        for sql in [
            // GROUP BY (incremental refresh needs one aggregate by the key).
            format!("SELECT id, count(*), count(DISTINCT x) FROM {DATA} GROUP BY id ORDER BY id"),
            // Two different distinct arguments; a sum; a filter.
            format!("SELECT count(*), count(DISTINCT x), count(DISTINCT y) FROM {DATA}"),
            format!("SELECT count(*), count(DISTINCT x), sum(y) FROM {DATA}"),
            format!("SELECT count(*) FILTER (WHERE y > 1), count(DISTINCT x) FROM {DATA}"),
        ] {
            assert!(
                !plan(&context(true), &sql).await.contains(DISTINCT),
                "{sql}"
            );
            assert_eq!(
                run(&context(true), &sql).await,
                run(&context(false), &sql).await
            );
        }
    }
}
