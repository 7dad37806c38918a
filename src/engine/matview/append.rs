//! Incremental refresh of a view with no key: one whose every row comes from one row of
//! each relation it reads (projections, filters, `unnest`, `UNION ALL`, joins), such as
//! a staging view that cleans a source's rows. After rows were only appended to its
//! inputs, its query runs with each appended scan reading only the new rows, and what it
//! returns is appended to the stored result in one commit: the view's Delta table only
//! gains files, so the views reading this one see an append too (see
//! [`super::incremental`]).
//!
//! The rows added are exact only when every appended scan sits where its new rows can
//! only add rows (see [`swapped`]), when no node but a union reads appended rows through
//! more than one of its inputs (a join of two appended relations would find the pairs of
//! their new rows twice), and when none is read elsewhere (a subquery, an aggregate, a
//! window, a `LIMIT`). A view stored in an `ORDER BY`'s order, or with an overlay, is
//! recomputed whole instead.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use tracing::debug;

use super::incremental::{ordered, scans_of, swapped};
use super::inputs::Pinned;
use super::refresh::Refreshed;
use super::{RefreshState, Runtime};
use crate::engine::error::Result;
use crate::engine::Engine;

/// The rows that the rows appended to the relations in `deltas` (by name) add to the
/// result of `plan`: `plan` with each appended scan reading only the new rows, the scans
/// of one relation in turn under a union of them. `None` unless they are exactly the
/// rows added (see the module's documentation).
pub fn appended_rows(
    plan: &LogicalPlan,
    deltas: &HashMap<String, Arc<dyn TableProvider>>,
) -> DfResult<Option<LogicalPlan>> {
    let scans = scans_of(plan, deltas)?;
    if scans == 0 || ordered(plan) || joins_appended(plan, deltas)? {
        return Ok(None);
    }
    let Some(variants) = swapped(plan, deltas)?.filter(|v| v.len() == scans) else {
        return Ok(None);
    };
    let mut variants = variants.into_iter();
    let Some(first) = variants.next() else {
        return Ok(None);
    };
    let mut rows = LogicalPlanBuilder::from(first);
    for variant in variants {
        rows = rows.union(variant)?;
    }
    Ok(Some(rows.build()?))
}

/// Whether a node other than a union reads relations of `deltas` through more than one
/// of its inputs.
pub(super) fn joins_appended(
    plan: &LogicalPlan,
    deltas: &HashMap<String, Arc<dyn TableProvider>>,
) -> DfResult<bool> {
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        if !matches!(node, LogicalPlan::Union(_)) {
            let mut reading = 0;
            for input in node.inputs() {
                if scans_of(input, deltas)? > 0 {
                    reading += 1;
                }
            }
            if reading > 1 {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(found)
}

impl Engine {
    /// Refresh a view with no key by appending the rows its inputs' appended rows add
    /// (`deltas`: each appended input's new rows, as pinned), if it allows it; `None`
    /// otherwise. `run`: the view's optimised plan (pinned), its fingerprint, the state
    /// of its last refresh and its pinned inputs.
    pub(super) async fn append_to_view(
        &self,
        runtime: &Runtime,
        run: (&LogicalPlan, &str, &RefreshState, &Pinned),
        deltas: &HashMap<String, Arc<dyn TableProvider>>,
    ) -> Result<Option<Refreshed>> {
        let (optimized, fingerprint, previous, pinned) = run;
        // Every appended input read as of its version (so that the next refresh does not
        // take rows read now for new), and no overlay hiding stored rows by key.
        if runtime.table.overlay_seq().is_some()
            || deltas.keys().any(|name| pinned.provider(name).is_none())
        {
            return Ok(None);
        }
        let Some(plan) = appended_rows(optimized, deltas)? else {
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let stream = self
            .ctx
            .execute_logical_plan(plan)
            .await?
            .execute_stream()
            .await?;
        let data = runtime.table.data();
        let added = data.append_stream(stream).await?;
        debug!(view = %runtime.table.name(), rows = added, elapsed = ?started.elapsed(), "materialized view: rows appended");
        Ok(Some(Refreshed::Written {
            rows: previous.rows + added,
            version: data.version().await,
            inputs: pinned.versions.clone(),
            files: pinned.files.clone(),
            keys: Some(added),
            overlay: None,
            plan: fingerprint.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::matview::incremental::tests::table;
    use datafusion::prelude::SessionContext;

    /// The rows `sql` gains when `a` (and `b`, with `both`) gain rows, sorted; `None` when
    /// they cannot be told apart from the query.
    async fn gained(sql: &str, both: bool) -> Option<Vec<String>> {
        let ctx = SessionContext::new();
        ctx.register_table("a", table(&[("x", 1), ("y", 2)]))
            .expect("a");
        ctx.register_table("b", table(&[("x", 10), ("z", 30)]))
            .expect("b");
        let mut deltas: HashMap<String, Arc<dyn TableProvider>> = HashMap::new();
        deltas.insert("a".into(), table(&[("z", 3), ("x", 4)]));
        if both {
            deltas.insert("b".into(), table(&[("y", 20)]));
        }
        let plan = ctx.sql(sql).await.expect("plan");
        let plan = plan.into_optimized_plan().expect("optimised");
        let rows = appended_rows(&plan, &deltas).expect("appended rows")?;
        let rows = ctx.execute_logical_plan(rows).await.expect("run");
        let batches = rows.collect().await.expect("rows");
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .expect("text")
            .to_string();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("| ") && !l.contains(" k "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        lines.sort();
        Some(lines)
    }

    #[tokio::test]
    async fn rows_of_appended_rows_are_found_through_row_by_row_plans() {
        // A filter and a projection: the new rows that pass.
        assert_eq!(
            gained("SELECT k, v * 2 AS w FROM a WHERE v > 3", false).await,
            Some(vec!["| x | 8 |".into()])
        );
        // A union: each side's new rows, once.
        assert_eq!(
            gained("SELECT k, v FROM a UNION ALL SELECT k, v FROM b", true).await,
            Some(vec![
                "| x | 4 |".into(),
                "| y | 20 |".into(),
                "| z | 3 |".into()
            ])
        );
        // A join with an unchanged relation: the new rows joined with all of it.
        assert_eq!(
            gained(
                "SELECT a.k, a.v, b.v AS bv FROM a JOIN b ON a.k = b.k",
                false
            )
            .await,
            Some(vec!["| x | 4 | 10 |".into(), "| z | 3 | 30 |".into()])
        );
        // The preserved side of a left join.
        assert_eq!(
            gained(
                "SELECT a.k, b.v FROM a LEFT JOIN b ON a.k = b.k AND b.v > 10",
                false
            )
            .await,
            Some(vec!["| x | |".into(), "| z | 30 |".into()])
        );
        // unnest: each new row's elements.
        assert_eq!(
            gained("SELECT k, unnest([v, v + 1]) AS u FROM a", false).await,
            Some(vec![
                "| x | 4 |".into(),
                "| x | 5 |".into(),
                "| z | 3 |".into(),
                "| z | 4 |".into()
            ])
        );
    }

    #[tokio::test]
    async fn plans_whose_rows_could_change_or_double_are_refused() {
        for (sql, both) in [
            // Two appended relations joined: their new rows' pairs would come twice.
            ("SELECT a.k, b.v FROM a JOIN b ON a.k = b.k", true),
            // A relation joined with itself.
            ("SELECT a.k, a2.v FROM a JOIN a a2 ON a.k = a2.k", false),
            // The side of a left join that only adds matches.
            ("SELECT b.k, a.v FROM b LEFT JOIN a ON a.k = b.k", false),
            // An anti join's appended side removes rows.
            ("SELECT k FROM b WHERE k NOT IN (SELECT k FROM a)", false),
            // Aggregates, DISTINCT, windows, LIMIT, ORDER BY.
            ("SELECT k, count(*) AS n FROM a GROUP BY k", false),
            ("SELECT DISTINCT k FROM a", false),
            (
                "SELECT k, row_number() OVER (PARTITION BY k ORDER BY v) AS r FROM a",
                false,
            ),
            ("SELECT k, v FROM a LIMIT 5", false),
            ("SELECT k, v FROM a ORDER BY v", false),
            // Nothing appended is read.
            ("SELECT k, v FROM b", false),
        ] {
            assert_eq!(gained(sql, both).await, None, "{sql}");
        }
    }
}
