//! Merging aggregates: a view that is one aggregate grouped by its key, whose columns
//! are the key and `count`, `sum`, `min`, `max`, `bool_or`, `bool_and` or
//! `collect_distinct` aggregates, is refreshed after an append to one of its inputs
//! without reading that input again. The aggregate runs over the appended rows only
//! (the *delta*: one row per key they reach), and each of those keys' new row is its
//! stored row merged with its delta row: counts and sums added, the smaller minimum and
//! the larger maximum kept, the booleans or-ed and and-ed, the lists united (sorted,
//! without duplicates, as `collect_distinct` gives them); NULL, an aggregate over no
//! value, gives way to the other side.
//!
//! This holds when the appended rows are exactly the rows the append added to the
//! aggregate's input: one appended relation, read once, below the aggregate through
//! nodes whose new input rows only add rows (see [`super::incremental`]), with every
//! other relation unchanged. A `HAVING`, an expression over an aggregate (`sum(x) /
//! count(*)`), `DISTINCT` or another function (`avg`, `latest`, whose stored result
//! alone cannot be merged with the delta's) recomputes the keys from all their input
//! rows instead.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::plan_err;
use datafusion::common::{Column, JoinType, NullEquality};
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::error::Result as DfResult;
use datafusion::execution::SessionStateBuilder;
use datafusion::functions_nested::expr_fn::array_union;
use datafusion::functions_nested::sort::array_sort_udf;
use datafusion::logical_expr::{
    binary_expr, when, Expr, LogicalPlan, LogicalPlanBuilder, Operator,
};
use datafusion::prelude::{DataFrame, SessionContext};

use crate::storage::cast_batch;

/// The delta's rows and the stored rows in the merging plan.
const DELTA: &str = "__delta";
const OLD: &str = "__old";

/// How a view column merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// The key: the same on both sides.
    Key,
    /// `count` and `sum`: added.
    Add,
    Min,
    Max,
    /// `collect_distinct`: the sorted union of both lists.
    Union,
    /// `bool_or`, `bool_and`.
    Or,
    And,
    /// `latest`, `earliest`, `first_by_priority`: the better ranked of the two rows wins.
    Pick(Pick),
    /// The ranking key of a [`Merge::Pick`] column's value (its state): goes with it.
    State,
}

/// How a picking aggregate ranks its rows (see `udfs::survivorship`): by a key, if it
/// has one that varies, then by the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// The ranking key's preference; NULL keys rank last (or never count, which for the
    /// state comes to the same: see [`pick_of`]).
    key: Option<Prefer>,
    value: Prefer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefer {
    Greatest,
    Least,
}

/// The name of the stored column holding the state of view column `column`: the
/// ranking key of its value, which the merge compares. A view stores these after its
/// own columns; reads of the view leave them out.
pub fn state_column(column: &str) -> String {
    format!("{STATE_PREFIX}{column}")
}

/// The prefix of state columns (see [`state_column`]).
pub const STATE_PREFIX: &str = "__tessera_state_";

/// A view whose rows merge with the aggregate of appended rows.
#[derive(Debug)]
pub struct Mergeable {
    /// Per view column.
    columns: Vec<Merge>,
    /// The aggregate's path from the top of the plan (the input taken at each node).
    path: Vec<usize>,
    /// Per view column, its index in the aggregate's output.
    at: Vec<usize>,
}

impl Mergeable {
    /// The merge of each column of `plan` (an optimised view plan), if its columns are
    /// the key and aggregates that merge. What lies below the aggregate (the appended
    /// rows must be all it adds to its input) is for [`Keyed::delta_input`] to check.
    ///
    /// [`Keyed::delta_input`]: super::incremental::Keyed::delta_input
    pub fn of(plan: &LogicalPlan) -> Option<Mergeable> {
        let m = Self::shape(plan)?;
        let fields = plan.schema().fields();
        let stated = |name: &str| fields.iter().any(|f| *f.name() == state_column(name));
        m.columns
            .iter()
            .zip(fields.iter())
            .all(|(merge, f)| match merge {
                Merge::Pick(p) => p.key.is_none() || stated(f.name()),
                _ => true,
            })
            .then_some(m)
    }

    /// `plan` (an optimised view plan) computing after its columns the state its
    /// picking aggregates need to merge (see [`state_column`]); `None` when it needs
    /// none or is not a merging aggregate.
    pub fn stateful(plan: &LogicalPlan) -> DfResult<Option<LogicalPlan>> {
        let Some(m) = Self::shape(plan) else {
            return Ok(None);
        };
        if m.columns.contains(&Merge::State) {
            return Ok(None);
        }
        // The view columns whose aggregate needs a state, and the aggregate computing it.
        let LogicalPlan::Aggregate(aggregate) = super::incremental::at(plan, &m.path) else {
            return Ok(None);
        };
        let mut states = Vec::new();
        for (i, (merge, field)) in m.columns.iter().zip(plan.schema().fields()).enumerate() {
            let Merge::Pick(Pick { key: Some(_), .. }) = merge else {
                continue;
            };
            let Some(state) = m.at[i]
                .checked_sub(aggregate.group_expr.len())
                .and_then(|j| aggregate.aggr_expr.get(j))
                .and_then(pick_of)
                .and_then(|(_, state)| state)
            else {
                return Ok(None);
            };
            states.push((state_column(field.name()), state));
        }
        if states.is_empty() {
            return Ok(None);
        }
        let mut aggr_expr = aggregate.aggr_expr.clone();
        aggr_expr.extend(states.iter().map(|(_, e)| e.clone()));
        let mut node = LogicalPlan::Aggregate(datafusion::logical_expr::Aggregate::try_new(
            aggregate.input.clone(),
            aggregate.group_expr.clone(),
            aggr_expr,
        )?);
        // Back up to the top, each node passing the state columns on after its own.
        for depth in (0..m.path.len()).rev() {
            let parent = super::incremental::at(plan, &m.path[..depth]);
            let child_schema = node.schema().clone();
            let last = child_schema.fields().len() - states.len();
            let carried: Vec<Expr> = (0..states.len())
                .map(|k| Expr::Column(Column::from(child_schema.qualified_field(last + k))))
                .collect();
            node = match parent {
                LogicalPlan::Projection(p) => {
                    let mut exprs = p.expr.clone();
                    exprs.extend(
                        carried
                            .into_iter()
                            .zip(&states)
                            .map(|(c, (name, _))| c.alias(name)),
                    );
                    LogicalPlan::Projection(datafusion::logical_expr::Projection::try_new(
                        exprs,
                        Arc::new(node),
                    )?)
                }
                other => other.with_new_exprs(other.expressions(), vec![node])?,
            };
        }
        // No projection above the aggregate (it is the top, or only an alias or a sort
        // is): its state columns named at the top.
        let fields = node.schema().clone();
        let width = fields.fields().len() - states.len();
        let named = (0..states.len()).all(|k| *fields.field(width + k).name() == states[k].0);
        if !named {
            let exprs: Vec<Expr> = (0..fields.fields().len())
                .map(|i| {
                    let c = Expr::Column(Column::from(fields.qualified_field(i)));
                    match i.checked_sub(width) {
                        Some(k) => c.alias(&states[k].0),
                        None => c,
                    }
                })
                .collect();
            node = LogicalPlanBuilder::from(node).project(exprs)?.build()?;
        }
        Ok(Some(node))
    }

    /// [`Self::of`] without the check that picking columns have their state.
    fn shape(plan: &LogicalPlan) -> Option<Mergeable> {
        let width = plan.schema().fields().len();
        let mut at: Vec<usize> = (0..width).collect();
        let mut node = plan;
        let mut path = Vec::new();
        loop {
            match node {
                LogicalPlan::Projection(p) => {
                    let input = p.input.schema();
                    for index in at.iter_mut() {
                        let Expr::Column(c) = unaliased(&p.expr[*index]) else {
                            return None;
                        };
                        *index = input.index_of_column(c).ok()?;
                    }
                }
                LogicalPlan::SubqueryAlias(_) => {}
                // An ORDER BY (the view's lookup keys) orders the merged rows too.
                LogicalPlan::Sort(s) if s.fetch.is_none() => {}
                LogicalPlan::Aggregate(a) => {
                    if a.group_expr.len() != 1 || !matches!(a.group_expr[0], Expr::Column(_)) {
                        return None;
                    }
                    let names = plan.schema().fields();
                    let columns = at
                        .iter()
                        .zip(names.iter())
                        .map(|(i, f)| match i.checked_sub(1) {
                            None => Some(Merge::Key),
                            Some(_) if f.name().starts_with(STATE_PREFIX) => Some(Merge::State),
                            Some(j) => merge_of(a.aggr_expr.get(j)?),
                        })
                        .collect::<Option<Vec<_>>>()?;
                    return Some(Mergeable { columns, path, at });
                }
                _ => return None,
            }
            path.push(0);
            node = node.inputs()[0];
        }
    }

    /// The aggregate's path from the top of the plan.
    pub fn path(&self) -> &[usize] {
        &self.path
    }

    /// The view's plan with the aggregate reading `input` (its input with the appended
    /// relation's scan reading the appended rows only): the delta.
    pub fn delta_plan(&self, plan: &LogicalPlan, input: LogicalPlan) -> DfResult<LogicalPlan> {
        super::incremental::replaced_at(plan, &self.path, &mut |aggregate| {
            super::incremental::with_input(aggregate, 0, input.clone(), false)
        })
    }

    /// The new rows of the keys in `delta` (the delta plan's rows): each merged with the
    /// stored row of its key, read from `view`; and the stored rows those keys had.
    /// `stored`: the view's stored columns, to which both sides are cast.
    pub async fn merged(
        &self,
        ctx: &SessionContext,
        view: Arc<dyn TableProvider>,
        stored: &SchemaRef,
        delta: Vec<RecordBatch>,
    ) -> DfResult<(Vec<RecordBatch>, Vec<RecordBatch>)> {
        let key = self
            .columns
            .iter()
            .position(|m| *m == Merge::Key)
            .unwrap_or_default();
        let key_name = stored.field(key).name().clone();
        let delta: Vec<RecordBatch> = delta
            .iter()
            .map(|b| cast_batch(b, stored))
            .collect::<DfResult<_>>()?;
        let delta: Arc<dyn TableProvider> =
            Arc::new(MemTable::try_new(stored.clone(), vec![delta])?);
        let delta_scan =
            || LogicalPlanBuilder::scan(DELTA, provider_as_source(delta.clone()), None);
        let old = LogicalPlanBuilder::scan(OLD, provider_as_source(view), None)?
            .join_detailed(
                delta_scan()?.build()?,
                JoinType::LeftSemi,
                (
                    vec![Column::new(Some(OLD), &key_name)],
                    vec![Column::new(Some(DELTA), &key_name)],
                ),
                None,
                NullEquality::NullEqualsNull,
            )?
            .build()?;
        // The join's keys filter the stored rows in the Parquet reader, so that only
        // the rows of those keys have their other columns decoded.
        let mut config = ctx.state().config().clone();
        config.options_mut().execution.parquet.pushdown_filters = true;
        let state = SessionStateBuilder::new_from_existing(ctx.state())
            .with_config(config)
            .build();
        let old = DataFrame::new(state, old).collect().await?;
        let before: Vec<RecordBatch> = old
            .iter()
            .map(|b| cast_batch(b, stored))
            .collect::<DfResult<_>>()?;
        let old: Arc<dyn TableProvider> =
            Arc::new(MemTable::try_new(stored.clone(), vec![before.clone()])?);
        let side = |table: &str, name: &str| Expr::Column(Column::new(Some(table), name));
        let merged: Vec<Expr> =
            self.columns
                .iter()
                .zip(stored.fields())
                .map(|(merge, field)| {
                    let (d, o) = (side(DELTA, field.name()), side(OLD, field.name()));
                    let either = |both: Expr| {
                        when(o.clone().is_null(), d.clone())
                            .when(d.clone().is_null(), o.clone())
                            .otherwise(both)
                    };
                    let e = match merge {
                        Merge::Key => Ok(d.clone()),
                        Merge::Add => either(o.clone() + d.clone()),
                        Merge::Min => {
                            either(when(o.clone().lt(d.clone()), o.clone()).otherwise(d.clone())?)
                        }
                        Merge::Max => {
                            either(when(o.clone().gt(d.clone()), o.clone()).otherwise(d.clone())?)
                        }
                        Merge::Union => {
                            either(array_sort_udf().call(vec![array_union(o.clone(), d.clone())]))
                        }
                        Merge::Or => either(o.clone().or(d.clone())),
                        Merge::And => either(o.clone().and(d.clone())),
                        Merge::Pick(pick) => {
                            let wins = delta_wins(pick, field.name(), &side);
                            when(wins, d.clone()).otherwise(o.clone())
                        }
                        Merge::State => {
                            let value = &field.name()[STATE_PREFIX.len()..];
                            let pick = self.columns.iter().zip(stored.fields()).find_map(
                                |(m, f)| match m {
                                    Merge::Pick(p) if f.name() == value => Some(*p),
                                    _ => None,
                                },
                            );
                            match pick {
                                Some(pick) => {
                                    let wins = delta_wins(&pick, value, &side);
                                    when(wins, d.clone()).otherwise(o.clone())
                                }
                                None => plan_err!("no column for state {}", field.name()),
                            }
                        }
                    }?;
                    Ok(e.alias(field.name()))
                })
                .collect::<DfResult<_>>()?;
        let plan = delta_scan()?
            .join_detailed(
                LogicalPlanBuilder::scan(OLD, provider_as_source(old), None)?.build()?,
                JoinType::Left,
                (
                    vec![Column::new(Some(DELTA), &key_name)],
                    vec![Column::new(Some(OLD), &key_name)],
                ),
                None,
                NullEquality::NullEqualsNull,
            )?
            .project(merged)?
            .build()?;
        let rows = ctx.execute_logical_plan(plan).await?.collect().await?;
        let rows = rows
            .iter()
            .map(|b| cast_batch(b, stored))
            .collect::<DfResult<_>>()?;
        Ok((rows, before))
    }
}

/// `e` without its aliases (`count(Int64(1)) AS count(*) AS n`).
fn unaliased(mut e: &Expr) -> &Expr {
    while let Expr::Alias(a) = e {
        e = a.expr.as_ref();
    }
    e
}

/// How an aggregate's column merges, if it does.
fn merge_of(e: &Expr) -> Option<Merge> {
    let Expr::AggregateFunction(f) = unaliased(e) else {
        return None;
    };
    let p = &f.params;
    if p.distinct || !p.order_by.is_empty() || p.null_treatment.is_some() {
        return None;
    }
    match f.func.name() {
        "count" | "sum" => Some(Merge::Add),
        "min" => Some(Merge::Min),
        "max" => Some(Merge::Max),
        "collect_distinct" => Some(Merge::Union),
        "bool_or" => Some(Merge::Or),
        "bool_and" => Some(Merge::And),
        _ => pick_of(e).map(|(pick, _)| Merge::Pick(pick)),
    }
}

/// How a picking aggregate (`latest(v, ts)`, `earliest(v, ts)`, `first_by_priority(v,
/// priority[, ts])` with a constant priority) ranks, and the aggregate computing the
/// ranking key of the row it picks (its state), if it has a key. Rows whose value is
/// NULL never count; those whose `latest`/`earliest` time is NULL neither, and a NULL
/// `first_by_priority` time ranks last: either way the best key is the greatest (or
/// least) non-NULL one among the rows whose value counts.
fn pick_of(e: &Expr) -> Option<(Pick, Option<Expr>)> {
    use datafusion::functions_aggregate::expr_fn::{max, min};
    use datafusion::logical_expr::ExprFunctionExt;
    let Expr::AggregateFunction(f) = unaliased(e) else {
        return None;
    };
    let p = &f.params;
    if p.distinct || !p.order_by.is_empty() || p.null_treatment.is_some() {
        return None;
    }
    let (value, key, pick) = match (f.func.name(), p.args.as_slice()) {
        ("latest", [v, ts]) => (v, Some((ts, true)), Prefer::Greatest),
        ("earliest", [v, ts]) => (v, Some((ts, false)), Prefer::Least),
        ("first_by_priority", [v, Expr::Literal(..)]) => (v, None, Prefer::Least),
        ("first_by_priority", [v, Expr::Literal(..), ts]) => {
            (v, Some((ts, true)), Prefer::Greatest)
        }
        _ => return None,
    };
    let Some((ts, greatest)) = key else {
        return Some((
            Pick {
                key: None,
                value: pick,
            },
            None,
        ));
    };
    let mut counts = value.clone().is_not_null().and(ts.clone().is_not_null());
    if let Some(filter) = &p.filter {
        counts = counts.and(filter.as_ref().clone());
    }
    let state = if greatest {
        max(ts.clone())
    } else {
        min(ts.clone())
    };
    let state = state.filter(counts).build().ok()?;
    let value = if f.func.name() == "first_by_priority" {
        Prefer::Least
    } else {
        pick
    };
    let key = Some(if greatest {
        Prefer::Greatest
    } else {
        Prefer::Least
    });
    Some((Pick { key, value }, Some(state)))
}

/// Whether the delta's row of a picking column (`column`) ranks better than the stored
/// one: the stored has no value, or the delta has one with a better key (a key beats
/// none), or an equal key (or none on both) and a better value.
fn delta_wins(pick: &Pick, column: &str, side: &dyn Fn(&str, &str) -> Expr) -> Expr {
    let (d, o) = (side(DELTA, column), side(OLD, column));
    let better = |prefer: Prefer, a: Expr, b: Expr| match prefer {
        Prefer::Greatest => a.gt(b).is_true(),
        Prefer::Least => a.lt(b).is_true(),
    };
    let by_value = better(pick.value, d.clone(), o.clone());
    let ranks = match pick.key {
        None => by_value,
        Some(prefer) => {
            let name = state_column(column);
            let (dk, ok) = (side(DELTA, &name), side(OLD, &name));
            better(prefer, dk.clone(), ok.clone())
                .or(dk.clone().is_not_null().and(ok.clone().is_null()))
                .or(binary_expr(dk, Operator::IsNotDistinctFrom, ok).and(by_value))
        }
    };
    o.is_null().or(d.is_not_null().and(ranks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    /// How the columns of `sql` merge after an append to `t`, if they do: the view's
    /// shape ([`Mergeable::of`]) and what lies between the aggregate and `t`
    /// ([`Keyed::delta_input`]).
    async fn merges(sql: &str) -> Option<Vec<Merge>> {
        let ctx = SessionContext::new();
        udfs::register_all(&ctx);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let t: Arc<dyn TableProvider> =
            Arc::new(MemTable::try_new(schema.clone(), vec![vec![]]).expect("t"));
        ctx.register_table("t", t.clone()).expect("register");
        let plan = ctx.state().create_logical_plan(sql).await.expect(sql);
        let plan = ctx.state().optimize(&plan).expect(sql);
        let plan = Mergeable::stateful(&plan).expect("state").unwrap_or(plan);
        let deltas = std::collections::HashMap::from([("t".to_string(), t)]);
        use super::super::incremental::{Change, Keyed};
        match Keyed::choose(&plan, &deltas, true).expect("choose")? {
            (_, Change::Merge(m, _)) => Some(m.columns),
            (_, Change::Keys(_)) => None,
        }
    }

    #[tokio::test]
    async fn counts_sums_extrema_booleans_and_value_lists_of_one_key_merge() {
        use Merge::*;
        assert_eq!(
            merges("SELECT k, count(*) AS n, sum(v) AS s, min(v), max(v) FROM t GROUP BY k").await,
            Some(vec![Key, Add, Add, Min, Max])
        );
        assert_eq!(
            merges(
                "SELECT max(v) AS m, k AS key, count(v) FILTER (WHERE v > 1) AS big \
                 FROM t GROUP BY k"
            )
            .await,
            Some(vec![Max, Key, Add])
        );
        assert_eq!(
            merges(
                "SELECT k, bool_or(v > 1), bool_and(v > 1), collect_distinct(v) FROM t GROUP BY k"
            )
            .await,
            Some(vec![Key, Or, And, Union])
        );
        // Picking aggregates merge with the ranking key of their value, stored after the
        // view's columns.
        let latest = super::Pick {
            key: Some(Prefer::Greatest),
            value: Prefer::Greatest,
        };
        let earliest = super::Pick {
            key: Some(Prefer::Least),
            value: Prefer::Least,
        };
        let by_priority = super::Pick {
            key: Some(Prefer::Greatest),
            value: Prefer::Least,
        };
        let least = super::Pick {
            key: None,
            value: Prefer::Least,
        };
        assert_eq!(
            merges(
                "SELECT k, latest(v, v * 2) AS l, earliest(v, v) FILTER (WHERE v > 1) AS e, \
                 first_by_priority(v, 2, v) AS p, first_by_priority(v, 1) AS q FROM t GROUP BY k"
            )
            .await,
            Some(vec![
                Key,
                Pick(latest),
                Pick(earliest),
                Pick(by_priority),
                Pick(least),
                State,
                State,
                State
            ])
        );
        // Under an ORDER BY with no projection between (the optimizer drops one that
        // only passes columns through), and under an alias.
        assert_eq!(
            merges("SELECT k, latest(v, v) FROM t GROUP BY k ORDER BY k").await,
            Some(vec![Key, Pick(latest), State])
        );
        assert_eq!(
            merges("SELECT * FROM (SELECT k, earliest(v, v) FROM t GROUP BY k) s").await,
            Some(vec![Key, Pick(earliest), State])
        );
        // Through an alias, a projection and an ORDER BY.
        assert_eq!(
            merges(
                "SELECT l, key FROM (SELECT k AS key, count(*) AS n, latest(v, v) AS l \
                 FROM t GROUP BY k) s ORDER BY key"
            )
            .await,
            Some(vec![Pick(latest), Key, State])
        );
        for sql in [
            "SELECT k, avg(v) FROM t GROUP BY k",
            // Planned as a count over a distinct aggregate.
            "SELECT k, count(DISTINCT v) FROM t GROUP BY k",
            "SELECT k, count(*) FROM (SELECT DISTINCT k, v FROM t) d GROUP BY k",
            "SELECT k, sum(v) / count(*) FROM t GROUP BY k",
            "SELECT k, sum(v) FROM t GROUP BY k HAVING sum(v) > 1",
            "SELECT k, v, count(*) FROM t GROUP BY k, v",
            "SELECT k, first_value(v ORDER BY v) FROM t GROUP BY k",
            "SELECT k, first_by_priority(v, v) FROM t GROUP BY k",
            "SELECT k, most_frequent(v) FROM t GROUP BY k",
            "SELECT k, NOT latest(v > 1, v) FROM t GROUP BY k",
            "SELECT k, v FROM t",
        ] {
            assert_eq!(merges(sql).await, None, "{sql}");
        }
    }
}
