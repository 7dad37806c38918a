//! Incremental refresh: a view whose result is grouped by a key, refreshed after rows were
//! only appended to its inputs, recomputes only the groups those rows reach.
//!
//! The view's optimised plan must be, from the top, projections, filters (`HAVING`),
//! sorts and aliases over one aggregate (`GROUP BY`, `DISTINCT`) grouped by at least one
//! plain column that the view returns unchanged: the *key*. A group's result depends only
//! on the aggregate's input rows with its key, so:
//! 1. every input that changed since the versions recorded at the last refresh must be a
//!    Delta table (a managed table, another engine's table, a materialised view) to
//!    which files were only added (`INSERT`, `COPY`, appends);
//! 2. the keys reached are the keys of the aggregate's input computed with one changed
//!    scan at a time reading only the added files, the other scans reading everything.
//!    Between the aggregate and a changed scan there may be only projections, filters,
//!    aliases, unions and joins where the scan is on a side whose new rows can only add
//!    rows to the join (either side of an inner join, the preserved side of an outer,
//!    semi or anti join), so every row the append added to the aggregate's input is
//!    found (and some that were there before, which costs only time);
//! 3. the view's query runs again with its aggregate's input semi-joined to those keys
//!    (NULL matching NULL), and the stored rows with those keys are replaced by its rows
//!    in one Delta commit.
//!
//! Anything else (another shape, an input with deleted or updated rows, a changed file
//! source, a segment, an erasure) recomputes the whole view, as does a failure here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, JoinType, NullEquality, ScalarValue};
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{EmptyRelation, Expr, LogicalPlan, LogicalPlanBuilder};
use tracing::debug;

use super::inputs::{self, Inputs};
use super::refresh::Refreshed;
use super::{Definition, RefreshState, Runtime};
use crate::engine::error::Result;
use crate::engine::Engine;

/// The name of the changed keys' relation in the recomputing plan, and of its column.
const KEYS: &str = "__changed_keys";
const KEY: &str = "__key";

/// A view's plan seen as one aggregate under a chain of single-input nodes.
#[derive(Debug, PartialEq)]
pub struct Grouped {
    /// How many nodes lie above the aggregate.
    depth: usize,
    /// The key, a column of the aggregate's input.
    key: Column,
    /// The key's column in the view's result.
    pub output: usize,
}

impl Grouped {
    /// The grouping of an optimised plan, if it has the shape incremental refresh needs.
    pub fn of(plan: &LogicalPlan) -> Option<Grouped> {
        let mut chain = Vec::new();
        let mut node = plan;
        let aggregate = loop {
            match node {
                LogicalPlan::Aggregate(a) => break a,
                LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::SubqueryAlias(_) => {}
                LogicalPlan::Sort(s) if s.fetch.is_none() => {}
                _ => return None,
            }
            chain.push(node);
            node = node.inputs()[0];
        };
        if aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return None;
        }
        // The aggregate's output starts with its group expressions, in order.
        aggregate
            .group_expr
            .iter()
            .enumerate()
            .find_map(|(i, e)| match e {
                Expr::Column(key) => surfaces(&chain, i).map(|output| Grouped {
                    depth: chain.len(),
                    key: key.clone(),
                    output,
                }),
                _ => None,
            })
    }

    /// The aggregate (`depth` nodes below the top of `plan`).
    fn aggregate<'a>(&self, plan: &'a LogicalPlan) -> &'a LogicalPlan {
        (0..self.depth).fold(plan, |node, _| node.inputs()[0])
    }

    /// The distinct keys of the rows `deltas` (appended rows by relation name) add to
    /// the aggregate's input, as a plan with one column; `None` if an appended relation
    /// is read where its new rows could also remove or change rows above it.
    pub fn keys_plan(
        &self,
        plan: &LogicalPlan,
        deltas: &HashMap<String, Arc<dyn TableProvider>>,
    ) -> DfResult<Option<LogicalPlan>> {
        let input = self.aggregate(plan).inputs()[0];
        let Some(variants) = swapped(input, deltas)? else {
            return Ok(None);
        };
        // A changed relation read anywhere else (a subquery in an expression, above
        // the aggregate) would escape the variants.
        if variants.is_empty() || variants.len() != scans_of(plan, deltas)? {
            return Ok(None);
        }
        let mut keys: Option<LogicalPlanBuilder> = None;
        for variant in variants {
            let distinct = LogicalPlanBuilder::from(variant)
                .aggregate(vec![Expr::Column(self.key.clone())], Vec::<Expr>::new())?
                .project(vec![Expr::Column(self.key.clone()).alias(KEY)])?
                .build()?;
            keys = Some(match keys {
                None => LogicalPlanBuilder::from(distinct),
                Some(k) => k.union(distinct)?,
            });
        }
        keys.map(|k| k.distinct()?.build()).transpose()
    }

    /// `plan` with its aggregate reading only the rows whose key is among `keys`.
    pub fn restricted(&self, plan: &LogicalPlan, keys: Vec<RecordBatch>) -> DfResult<LogicalPlan> {
        let schema = keys
            .first()
            .map(|b| b.schema())
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("no keys".into()))?;
        let table = MemTable::try_new(schema, vec![keys])?;
        let keys =
            LogicalPlanBuilder::scan(KEYS, provider_as_source(Arc::new(table)), None)?.build()?;
        let aggregate = self.aggregate(plan);
        let input = LogicalPlanBuilder::from(aggregate.inputs()[0].clone())
            .join_detailed(
                keys,
                JoinType::LeftSemi,
                (vec![self.key.clone()], vec![Column::new(Some(KEYS), KEY)]),
                None,
                NullEquality::NullEqualsNull,
            )?
            .build()?;
        let mut replacement = Some(input);
        let aggregate = aggregate
            .clone()
            .map_children(|child| Ok(Transformed::yes(replacement.take().unwrap_or(child))))?
            .data;
        rebuilt(plan, self.depth, aggregate)
    }
}

/// `plan` with the node `depth` levels down its chain of single inputs replaced.
fn rebuilt(plan: &LogicalPlan, depth: usize, replacement: LogicalPlan) -> DfResult<LogicalPlan> {
    if depth == 0 {
        return Ok(replacement);
    }
    let child = rebuilt(plan.inputs()[0], depth - 1, replacement)?;
    let mut child = Some(child);
    Ok(plan
        .clone()
        .map_children(|c| Ok(Transformed::yes(child.take().unwrap_or(c))))?
        .data)
}

/// Where column `index` of the input of the chain's lowest node comes out of its top, if
/// every node passes it on unchanged (a projection may rename it).
fn surfaces(chain: &[&LogicalPlan], mut index: usize) -> Option<usize> {
    for node in chain.iter().rev() {
        if let LogicalPlan::Projection(p) = node {
            let input = p.input.schema();
            index = p.expr.iter().position(|e| {
                let e = match e {
                    Expr::Alias(a) => a.expr.as_ref(),
                    e => e,
                };
                matches!(e, Expr::Column(c) if input.index_of_column(c).ok() == Some(index))
            })?;
        }
    }
    Some(index)
}

/// Whether rows added to input `child` of `node` can only add rows to its output.
fn grows_with(node: &LogicalPlan, child: usize) -> bool {
    match node {
        LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Union(_)
        | LogicalPlan::Repartition(_) => true,
        LogicalPlan::Sort(s) => s.fetch.is_none(),
        LogicalPlan::Join(j) => match j.join_type {
            JoinType::Inner => true,
            JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                child == 0
            }
            JoinType::Right | JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                child == 1
            }
            JoinType::Full => false,
        },
        _ => false,
    }
}

/// `plan` once per scan of a relation in `deltas`, with that scan reading the appended
/// rows only; `None` if such a scan sits under a node its new rows could shrink or
/// change.
fn swapped(
    plan: &LogicalPlan,
    deltas: &HashMap<String, Arc<dyn TableProvider>>,
) -> DfResult<Option<Vec<LogicalPlan>>> {
    if let LogicalPlan::TableScan(scan) = plan {
        return Ok(match deltas.get(&scan.table_name.to_string()) {
            None => Some(vec![]),
            Some(_) if scan.fetch.is_some() => None,
            Some(delta) => {
                let mut scan = scan.clone();
                scan.source = provider_as_source(delta.clone());
                Some(vec![LogicalPlan::TableScan(scan)])
            }
        });
    }
    let mut out = Vec::new();
    for (i, child) in plan.inputs().into_iter().enumerate() {
        let Some(variants) = swapped(child, deltas)? else {
            return Ok(None);
        };
        if variants.is_empty() {
            continue;
        }
        if !grows_with(plan, i) {
            return Ok(None);
        }
        // The other inputs of a union add nothing new: they read nothing.
        let union = matches!(plan, LogicalPlan::Union(_));
        for variant in variants {
            let (mut at, mut variant) = (0, Some(variant));
            let replaced = plan.clone().map_children(|c| {
                at += 1;
                if at - 1 == i {
                    if let Some(v) = variant.take() {
                        return Ok(Transformed::yes(v));
                    }
                }
                Ok(if union {
                    Transformed::yes(LogicalPlan::EmptyRelation(EmptyRelation {
                        produce_one_row: false,
                        schema: c.schema().clone(),
                    }))
                } else {
                    Transformed::no(c)
                })
            })?;
            out.push(replaced.data);
        }
    }
    Ok(Some(out))
}

/// How many scans of relations in `deltas` the plan holds, subqueries included.
fn scans_of(
    plan: &LogicalPlan,
    deltas: &HashMap<String, Arc<dyn TableProvider>>,
) -> DfResult<usize> {
    let mut n = 0;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if deltas.contains_key(&scan.table_name.to_string()) {
                n += 1;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(n)
}

/// `column IN (keys)`, or `column IS NULL` for a NULL key; keys cast to `data_type`.
fn key_predicate(
    column: &str,
    keys: &[RecordBatch],
    data_type: &datafusion::arrow::datatypes::DataType,
) -> DfResult<Expr> {
    let column = Expr::Column(Column::new_unqualified(column));
    let (mut values, mut null) = (Vec::new(), false);
    for batch in keys {
        let array = datafusion::arrow::compute::cast(batch.column(0), data_type)?;
        for row in 0..array.len() {
            let value = ScalarValue::try_from_array(&array, row)?;
            if value.is_null() {
                null = true;
            } else {
                values.push(Expr::Literal(value, None));
            }
        }
    }
    let listed = column.clone().in_list(values, false);
    Ok(if null {
        listed.or(column.is_null())
    } else {
        listed
    })
}

impl Engine {
    /// Refresh the view by recomputing only the keys the appended rows reach, if the view
    /// and the change allow it (see the module's documentation); `None` otherwise.
    pub(super) async fn refresh_incrementally(
        &self,
        runtime: &Runtime,
        def: &Definition,
        plan: &LogicalPlan,
        inputs: &Inputs,
        previous: &RefreshState,
        versions: &BTreeMap<String, String>,
    ) -> Result<Option<Refreshed>> {
        let data = runtime.table.data();
        if def.segment
            || !previous.populated
            || !runtime.table.is_populated()
            || previous.version != data.version().await
            || !previous.inputs.keys().eq(versions.keys())
            || !inputs::all_versioned(versions)
        {
            return Ok(None);
        }
        let mut deltas = HashMap::new();
        for (name, version) in versions {
            let before = &previous.inputs[name];
            if before == version {
                continue;
            }
            let since = before.strip_prefix('v').and_then(|v| v.parse::<u64>().ok());
            let (Some(since), Some(table)) = (since, inputs.delta_table(name)) else {
                return Ok(None);
            };
            let Some(appended) = table.appended_since(since).await? else {
                return Ok(None);
            };
            deltas.insert(name.clone(), appended);
        }
        let optimized = self.ctx.state().optimize(plan)?;
        let Some(grouped) = Grouped::of(&optimized) else {
            return Ok(None);
        };
        let Some(keys_plan) = grouped.keys_plan(&optimized, &deltas)? else {
            return Ok(None);
        };
        let keys = self
            .ctx
            .execute_logical_plan(keys_plan)
            .await?
            .collect()
            .await?;
        let changed: usize = keys.iter().map(|b| b.num_rows()).sum();
        let name = runtime.table.name();
        debug!(view = %name, keys = changed, "materialized view: incremental refresh");
        if changed > 0 {
            let stored = data.schema();
            let field = stored.field(grouped.output);
            let predicate = key_predicate(field.name(), &keys, field.data_type())?;
            let recompute = grouped.restricted(&optimized, keys)?;
            let batches = self
                .ctx
                .execute_logical_plan(recompute)
                .await?
                .collect()
                .await?;
            self.vacuum_old_results(runtime).await;
            data.replace_where(predicate, batches).await?;
        }
        let rows = self.ctx.read_table(Arc::new(data.clone()))?.count().await? as u64;
        Ok(Some(Refreshed::Written {
            rows,
            version: data.version().await,
            inputs: versions.clone(),
            keys: Some(changed as u64),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::prelude::SessionContext;

    fn table(rows: &[(&str, i64)]) -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch");
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("table"))
    }

    /// A context with tables `t` (changed: `t` gains ("b", 5), ("c", 1)) and `u`.
    fn context() -> (SessionContext, HashMap<String, Arc<dyn TableProvider>>) {
        let ctx = SessionContext::new();
        ctx.register_table("t", table(&[("a", 1), ("b", 2), ("b", 5), ("c", 1)]))
            .expect("t");
        ctx.register_table("u", table(&[("a", 10), ("b", 20), ("c", 30)]))
            .expect("u");
        let delta: Arc<dyn TableProvider> = table(&[("b", 5), ("c", 1)]);
        (ctx, HashMap::from([("t".to_string(), delta)]))
    }

    async fn optimized(ctx: &SessionContext, sql: &str) -> LogicalPlan {
        let plan = ctx.state().create_logical_plan(sql).await.expect(sql);
        ctx.state().optimize(&plan).expect(sql)
    }

    /// The key's column in the result, if the query can be refreshed incrementally.
    async fn key_of(sql: &str) -> Option<usize> {
        let (ctx, _) = context();
        Grouped::of(&optimized(&ctx, sql).await).map(|g| g.output)
    }

    /// The keys the appended rows of `t` reach, sorted; `None` if not found that way.
    async fn keys_reached(sql: &str) -> Option<Vec<String>> {
        let (ctx, deltas) = context();
        let plan = optimized(&ctx, sql).await;
        let grouped = Grouped::of(&plan)?;
        let keys = grouped.keys_plan(&plan, &deltas).expect("keys plan")?;
        let batches = ctx
            .execute_logical_plan(keys)
            .await
            .expect("run")
            .collect()
            .await
            .expect("collect");
        let mut out: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let a =
                    datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
                (0..a.len())
                    .map(|i| {
                        ScalarValue::try_from_array(&a, i)
                            .expect("value")
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        Some(out)
    }

    #[tokio::test]
    async fn the_key_is_a_grouping_column_the_view_returns() {
        assert_eq!(key_of("SELECT k, sum(v) FROM t GROUP BY k").await, Some(0));
        assert_eq!(
            key_of("SELECT sum(v) AS s, k AS key FROM t GROUP BY k HAVING sum(v) > 1 ORDER BY s")
                .await,
            Some(1)
        );
        assert_eq!(key_of("SELECT DISTINCT v, k FROM t").await, Some(0));
        for sql in [
            "SELECT sum(v) FROM t GROUP BY k",
            "SELECT upper(k), sum(v) FROM t GROUP BY upper(k)",
            "SELECT k, sum(v) FROM t GROUP BY k ORDER BY k LIMIT 2",
            "SELECT k, v, rank() OVER (PARTITION BY k ORDER BY v) FROM t",
            "SELECT k, sum(v) FROM t GROUP BY ROLLUP (k)",
            "SELECT k, v FROM t",
        ] {
            assert_eq!(key_of(sql).await, None, "{sql}");
        }
    }

    #[tokio::test]
    async fn appended_rows_reach_keys_through_joins_on_the_growing_side_only() {
        let reached = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            keys_reached("SELECT k, sum(v) FROM t GROUP BY k").await,
            reached(&["b", "c"])
        );
        // Through an inner join the key may come from the other side.
        assert_eq!(
            keys_reached("SELECT u.v AS uv, count(*) FROM t JOIN u ON t.k = u.k GROUP BY u.v")
                .await,
            reached(&["20", "30"])
        );
        // Filters apply to the appended rows too.
        assert_eq!(
            keys_reached("SELECT k, sum(v) FROM t WHERE v > 1 GROUP BY k").await,
            reached(&["b"])
        );
        // A table read twice: each reading in turn.
        assert_eq!(
            keys_reached(
                "SELECT k, count(*) FROM (SELECT k FROM t UNION ALL SELECT k FROM t WHERE v = 1) s GROUP BY k"
            )
            .await,
            reached(&["b", "c"])
        );
        assert_eq!(
            keys_reached("SELECT u.k, count(t.v) FROM u LEFT JOIN t ON t.k = u.k GROUP BY u.k")
                .await,
            None,
            "new rows on the nullable side replace rows"
        );
        assert_eq!(
            keys_reached("SELECT k, count(*) FROM u WHERE k NOT IN (SELECT k FROM t) GROUP BY k")
                .await,
            None,
            "new rows in an anti join's subquery remove rows"
        );
        assert_eq!(
            keys_reached(
                "SELECT k, count(*) FROM (SELECT k, count(*) AS n FROM t GROUP BY k) s GROUP BY k"
            )
            .await,
            None,
            "an aggregate below the key's"
        );
    }
}
