//! Guarding DELETE and UPDATE before they reach a managed table.
//!
//! DataFusion hands `TableProvider::delete_from`/`update` only the filters it finds on a
//! straight Filter/TableScan chain. Anything the optimizer turns into something else
//! (`WHERE x IN (SELECT ...)` becomes a semi join, `UPDATE ... FROM` a join, `WHERE
//! false` an empty relation) would arrive as *no filter*, which means every row. So the
//! optimized plan is checked first: an empty input changes nothing, and shapes the
//! provider cannot see are refused.

use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, WriteOp};

use super::error::{EngineError, Result};

/// What to do with a DML plan after optimization.
#[derive(Debug, PartialEq, Eq)]
pub enum DmlCheck {
    /// Run it: the provider sees all of its filters.
    Run,
    /// It affects no rows (its input is provably empty).
    NoRows,
}

pub fn check(plan: &LogicalPlan) -> Result<DmlCheck> {
    let LogicalPlan::Dml(DmlStatement { op, input, .. }) = plan else {
        return Ok(DmlCheck::Run);
    };
    if !matches!(op, WriteOp::Delete | WriteOp::Update) {
        return Ok(DmlCheck::Run);
    }
    let mut node = input.as_ref();
    loop {
        match node {
            LogicalPlan::EmptyRelation(e) if !e.produce_one_row => return Ok(DmlCheck::NoRows),
            LogicalPlan::TableScan(scan) => {
                return if scan.filters.iter().any(has_subquery) {
                    Err(unsupported())
                } else {
                    Ok(DmlCheck::Run)
                };
            }
            LogicalPlan::Filter(f) if !has_subquery(&f.predicate) => node = f.input.as_ref(),
            LogicalPlan::Projection(p) if !p.expr.iter().any(has_subquery) => {
                node = p.input.as_ref()
            }
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            _ => return Err(unsupported()),
        }
    }
}

fn has_subquery(e: &Expr) -> bool {
    e.exists(|e| {
        Ok(matches!(
            e,
            Expr::InSubquery(_)
                | Expr::Exists(_)
                | Expr::ScalarSubquery(_)
                | Expr::OuterReferenceColumn(..)
        ))
    })
    .unwrap_or(true)
}

fn unsupported() -> EngineError {
    EngineError::NotSupported(
        "DELETE or UPDATE with a subquery, a join or UPDATE ... FROM (use a WHERE on the table's own columns)"
            .into(),
    )
}
