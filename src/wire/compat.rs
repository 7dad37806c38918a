//! PostgreSQL expressions that clients send and DataFusion does not plan, rewritten into
//! equivalents it does:
//!
//! - `'pg_class'::regclass` ([`rewrite`], before every query is planned): PostgreSQL
//!   resolves the name through a search path that always holds `pg_catalog`;
//!   datafusion-pg-catalog's rewrite only looks in `public`, so such literals (names
//!   starting with `pg_`) are qualified (dbt's catalog queries).
//!
//! [`fallback`] applies these when a query failed to plan as it was (datafusion-pg-catalog
//! recognises some psql queries by their exact tokens, which a rewrite would hide):
//!
//! - `ARRAY(SELECT x FROM ... [ORDER BY ...])`: an array of a subquery's rows (psql's
//!   `\du`). sqlparser reads it as a function named `array`; it becomes the correlated
//!   scalar subquery `coalesce((SELECT array_agg(x [ORDER BY ...]) FROM ...), ARRAY[])`.
//!   Only subqueries of one output column without `GROUP BY`, `DISTINCT`, `LIMIT` or set
//!   operations are rewritten.
//! - `current_role`: a keyword of PostgreSQL that sqlparser reads as a column name; it
//!   becomes `current_user`, which it equals.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, OrderByKind, Query, SelectItem,
    SetExpr,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `sql` with catalog `regclass` literals qualified, or `None` when there is nothing to
/// change (or it does not parse: the planner reports that).
pub fn rewrite(sql: &str) -> Option<String> {
    apply(sql, &["regclass"], &|e| qualify_regclass(e))
}

/// `sql` with every rewrite of this module applied, or `None` when none applies: what to
/// plan when `sql` failed to.
pub fn fallback(sql: &str) -> Option<String> {
    apply(sql, &["regclass", "array", "current_role"], &|e| {
        qualify_regclass(e) | array_of_subquery(e) | current_role(e)
    })
}

/// Parse `sql` (only if it mentions one of `words`), run `change` on every expression,
/// and print it again if anything changed.
fn apply(sql: &str, words: &[&str], change: &dyn Fn(&mut Expr) -> bool) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    if !words.iter().any(|w| lower.contains(w)) {
        return None;
    }
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut changed = false;
    for stmt in &mut stmts {
        let _ = ast::visit_expressions_mut(stmt, |e| {
            changed |= change(e);
            ControlFlow::<()>::Continue(())
        });
    }
    changed.then(|| {
        stmts
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn qualify_regclass(e: &mut Expr) -> bool {
    let Expr::Cast {
        expr, data_type, ..
    } = e
    else {
        return false;
    };
    let is_regclass = data_type
        .to_string()
        .to_ascii_lowercase()
        .ends_with("regclass");
    if let Expr::Value(v) = expr.as_mut() {
        if let ast::Value::SingleQuotedString(name) = &mut v.value {
            if is_regclass && name.starts_with("pg_") && !name.contains('.') {
                *name = format!("pg_catalog.{name}");
                return true;
            }
        }
    }
    false
}

fn current_role(e: &mut Expr) -> bool {
    match e {
        Expr::Identifier(id)
            if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("current_role") =>
        {
            *e = Expr::Function(function("current_user", FunctionArguments::None));
            true
        }
        _ => false,
    }
}

fn array_of_subquery(e: &mut Expr) -> bool {
    let Expr::Function(f) = e else {
        return false;
    };
    let FunctionArguments::Subquery(query) = &f.args else {
        return false;
    };
    if !f.name.to_string().eq_ignore_ascii_case("array") {
        return false;
    }
    let Some(q) = aggregated(query) else {
        return false;
    };
    // No rows give an empty array, as in PostgreSQL (array_agg gives NULL). The coalesce
    // is outside: a decorrelated subquery gives NULL for outer rows without a match.
    let empty = Expr::Array(ast::Array {
        elem: vec![],
        named: true,
    });
    *e = Expr::Function(function(
        "coalesce",
        FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: [Expr::Subquery(Box::new(q)), empty]
                .into_iter()
                .map(|x| FunctionArg::Unnamed(FunctionArgExpr::Expr(x)))
                .collect(),
            clauses: vec![],
        }),
    ));
    true
}

/// `query` (one column `x`) as `SELECT array_agg(x ORDER BY ...) FROM ...`.
fn aggregated(query: &Query) -> Option<Query> {
    if query.with.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let grouped = match &select.group_by {
        ast::GroupByExpr::All(_) => true,
        ast::GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    if grouped
        || select.distinct.is_some()
        || select.having.is_some()
        || select.projection.len() != 1
    {
        return None;
    }
    let (item, alias) = match &select.projection[0] {
        SelectItem::UnnamedExpr(x) => (x.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias)),
        _ => return None,
    };
    let mut clauses = Vec::new();
    if let Some(order) = &query.order_by {
        match &order.kind {
            OrderByKind::Expressions(exprs) if !exprs.is_empty() => {
                // `ORDER BY 1` or the column's alias name the column; in the aggregate
                // they would be a constant or unknown, so they become its expression.
                let mut exprs = exprs.clone();
                for o in &mut exprs {
                    let names_column = match &o.expr {
                        Expr::Value(v) => matches!(&v.value, ast::Value::Number(n, _) if n == "1"),
                        Expr::Identifier(id) => alias.is_some_and(|a| {
                            // Unquoted names are case-insensitive.
                            match (a.quote_style, id.quote_style) {
                                (None, None) => a.value.eq_ignore_ascii_case(&id.value),
                                _ => a.value == id.value,
                            }
                        }),
                        _ => false,
                    };
                    if names_column {
                        o.expr = item.clone();
                    }
                }
                clauses.push(FunctionArgumentClause::OrderBy(exprs))
            }
            OrderByKind::Expressions(_) => {}
            OrderByKind::All(_) => return None,
        }
    }
    let agg = function(
        "array_agg",
        FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(item))],
            clauses,
        }),
    );
    let mut select = select.clone();
    select.projection = vec![SelectItem::UnnamedExpr(Expr::Function(agg))];
    let mut q = query.clone();
    q.body = Box::new(SetExpr::Select(select));
    q.order_by = None;
    Some(q)
}

fn function(name: &str, args: FunctionArguments) -> Function {
    Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args,
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifies_catalog_regclass_literals() {
        let q = rewrite("SELECT 1 WHERE x = 'pg_rewrite'::regclass AND y = 'mine'::regclass")
            .expect("rewritten");
        assert!(
            q.contains("'pg_catalog.pg_rewrite'") && q.contains("'mine'"),
            "{q}"
        );
        assert!(rewrite("SELECT 'pg_catalog.pg_class'::regclass").is_none());
        assert!(rewrite("SELECT 1").is_none());
    }

    #[test]
    fn array_of_a_subquery_becomes_an_aggregate() {
        assert!(rewrite("SELECT ARRAY(SELECT 1)").is_none());
        let q = fallback(
            "SELECT r.rolname, ARRAY(SELECT b.rolname FROM m JOIN b ON m.roleid = b.oid \
             WHERE m.member = r.oid ORDER BY 1 DESC) AS memberof FROM r",
        )
        .expect("rewritten");
        assert_eq!(
            q,
            "SELECT r.rolname, coalesce((SELECT array_agg(b.rolname ORDER BY b.rolname DESC) \
             FROM m JOIN b ON m.roleid = b.oid WHERE m.member = r.oid), ARRAY[]) AS memberof FROM r"
        );
        // Forms it cannot express are left alone.
        for kept in [
            "SELECT ARRAY(SELECT a, b FROM t)",
            "SELECT ARRAY(SELECT a FROM t LIMIT 2)",
            "SELECT ARRAY(SELECT a FROM t GROUP BY a)",
            "SELECT ARRAY(SELECT a FROM t UNION SELECT b FROM u)",
            "SELECT ARRAY[1, 2]",
        ] {
            assert!(fallback(kept).is_none(), "{kept}");
        }
    }

    #[test]
    fn current_role_is_current_user() {
        assert_eq!(
            fallback("SELECT current_role, \"current_role\" FROM t").as_deref(),
            Some("SELECT current_user, \"current_role\" FROM t")
        );
    }
}
