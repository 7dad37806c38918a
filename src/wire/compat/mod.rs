//! PostgreSQL expressions that clients send and DataFusion does not plan, rewritten into
//! equivalents it does:
//!
//! - `'pg_class'::regclass` ([`rewrite`], before every query is planned): PostgreSQL
//!   resolves the name through a search path that always holds `pg_catalog`;
//!   datafusion-pg-catalog's rewrite only looks in `public`, so such literals (names
//!   starting with `pg_`) are qualified (dbt's catalog queries).
//! - `x [NOT] [I]LIKE p ESCAPE 'c'` (also [`rewrite`]): DataFusion takes only the
//!   backslash as escape character, so it becomes `x LIKE like_escape(p, 'c')`
//!   (SQLAlchemy's schema listing uses `ESCAPE '/'`).
//!
//! - `x::regtype::text` (also [`rewrite`]): the type's name, as `format_type(x, NULL)`
//!   ([`regtype_text`]; asyncpg's type introspection).
//! - asyncpg's recursive search for a domain's base type (also [`rewrite`]): see
//!   [`reflection::domain_base_type`]; `array_agg` of attribute types is `oid[]`
//!   ([`reflection::oid_array_agg`]).
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
//! - the catalog queries of reflecting clients ([`reflection`]): scalar subqueries inside
//!   `CASE`, `pg_get_viewdef`, `unnest` of vector columns, `_pg_expandarray`.

mod reflection;

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, OrderByKind, Query, SelectItem,
    SetExpr, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `sql` with catalog `regclass` literals qualified, or `None` when there is nothing to
/// change (or it does not parse: the planner reports that).
pub fn rewrite(sql: &str) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    let protect = lower.matches("select").nth(1).is_some() && !reads_catalog(&lower);
    let words: &[&str] = if protect {
        &["select"]
    } else {
        &["regclass", "regtype", "escape", "typebases", "atttypid"]
    };
    apply(
        sql,
        &lower,
        words,
        &|e| {
            qualify_regclass(e)
                | regtype_text(e)
                | like_escape(e)
                | reflection::domain_base_type(e)
                | reflection::oid_array_agg(e)
        },
        &|q| protect && protect_projection_subqueries(q),
    )
}

/// Whether a query (lower case) reads PostgreSQL's catalogs, whose client queries
/// datafusion-postgres plans with a correlated subquery in the select list as NULL.
pub(super) fn reads_catalog(lower: &str) -> bool {
    lower.contains("pg_") || lower.contains("information_schema")
}

/// datafusion-postgres replaces a correlated scalar subquery that is a whole select
/// list item by NULL (so that psql's catalog queries plan), which would silently
/// answer NULL for a user's `SELECT c.id, (SELECT count(*) FROM orders o WHERE
/// o.customer = c.id) FROM customers c`. Parenthesised once more, the subquery is
/// planned by DataFusion: it is decorrelated, or the query fails with the reason.
fn protect_projection_subqueries(q: &mut Query) -> bool {
    let SetExpr::Select(select) = q.body.as_mut() else {
        return false;
    };
    let mut changed = false;
    for item in &mut select.projection {
        if let SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } = item {
            if matches!(x, Expr::Subquery(_)) {
                let inner = std::mem::replace(x, Expr::value(ast::Value::Null));
                *x = Expr::Nested(Box::new(inner));
                changed = true;
            }
        }
    }
    changed
}

/// `sql` with every rewrite of this module applied, or `None` when none applies: what to
/// plan when `sql` failed to.
pub fn fallback(sql: &str) -> Option<String> {
    apply(
        sql,
        &sql.to_ascii_lowercase(),
        &[
            "regclass",
            "escape",
            "array",
            "current_role",
            "case",
            "pg_get_viewdef",
            "unnest",
            "generate_subscripts",
            "_pg_expandarray",
        ],
        &|e| {
            qualify_regclass(e)
                | regtype_text(e)
                | like_escape(e)
                | array_of_subquery(e)
                | current_role(e)
                | reflection::case_subqueries(e)
                | reflection::pg_get_viewdef(e)
                | reflection::vector_subscripts(e)
                | reflection::expand_array(e)
        },
        &|_| false,
    )
}

/// Parse `sql` (only if its lower-case text `lower` mentions one of `words`), run
/// `queries` on every query and `change` on every expression, and print it again if
/// anything changed.
fn apply(
    sql: &str,
    lower: &str,
    words: &[&str],
    change: &dyn Fn(&mut Expr) -> bool,
    queries: &dyn Fn(&mut Query) -> bool,
) -> Option<String> {
    if !words.iter().any(|w| lower.contains(w)) {
        return None;
    }
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let mut visitor = Rewriter {
        change,
        queries,
        changed: false,
    };
    for stmt in &mut stmts {
        let _ = stmt.visit(&mut visitor);
    }
    visitor.changed.then(|| {
        stmts
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Runs the rewrites on every query (before its parts) and every expression (after its
/// parts).
struct Rewriter<'a> {
    change: &'a dyn Fn(&mut Expr) -> bool,
    queries: &'a dyn Fn(&mut Query) -> bool,
    changed: bool,
}

impl VisitorMut for Rewriter<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        self.changed |= (self.queries)(q);
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        self.changed |= (self.change)(e);
        ControlFlow::Continue(())
    }
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

/// `x::regtype::text`: the name of the type whose oid `x` is (`integer`, `text[]`; `-`
/// for 0), as PostgreSQL prints a `regtype`. datafusion-pg-catalog plans `regtype` as a
/// plain `int4`, so the text would be the number; it becomes `format_type(x, NULL)`.
/// A literal name (`'int4'::regtype`) is left to datafusion-pg-catalog's lookup.
fn regtype_text(e: &mut Expr) -> bool {
    let Expr::Cast {
        expr: outer,
        data_type: text,
        ..
    } = e
    else {
        return false;
    };
    let Expr::Cast {
        expr: inner,
        data_type: regtype,
        ..
    } = outer.as_ref()
    else {
        return false;
    };
    let is_text = matches!(
        text,
        ast::DataType::Text | ast::DataType::Varchar(_) | ast::DataType::String(_)
    );
    let is_regtype = regtype
        .to_string()
        .to_ascii_lowercase()
        .trim_start_matches("pg_catalog.")
        == "regtype";
    if !is_text || !is_regtype || matches!(inner.as_ref(), Expr::Value(_)) {
        return false;
    }
    let sql = format!("CASE WHEN {inner} = 0 THEN '-' ELSE format_type({inner}, NULL) END");
    reflection::replace_with(e, &sql)
}

fn like_escape(e: &mut Expr) -> bool {
    let (Expr::Like {
        pattern,
        escape_char,
        ..
    }
    | Expr::ILike {
        pattern,
        escape_char,
        ..
    }) = e
    else {
        return false;
    };
    let Some(escape) = escape_char.take() else {
        return false;
    };
    if matches!(&escape.value, ast::Value::SingleQuotedString(c) if c == "\\") {
        *escape_char = Some(escape);
        return false;
    }
    let p = std::mem::replace(pattern.as_mut(), Expr::value(ast::Value::Null));
    **pattern = call("like_escape", vec![p, Expr::value(escape.value)]);
    true
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
    *e = call("coalesce", vec![Expr::Subquery(Box::new(q)), empty]);
    true
}

/// The one select list item of a query without WITH, LIMIT, grouping, DISTINCT, HAVING
/// or set operations.
fn single_item(q: &mut Query) -> Option<&mut SelectItem> {
    if q.with.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(select) = q.body.as_mut() else {
        return None;
    };
    let grouped = match &select.group_by {
        ast::GroupByExpr::All(_) => true,
        ast::GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
    };
    if grouped || select.distinct.is_some() || select.having.is_some() {
        return None;
    }
    match select.projection.as_mut_slice() {
        [item] => Some(item),
        _ => None,
    }
}

/// `query` (one column `x`) as `SELECT array_agg(x ORDER BY ...) FROM ...`.
fn aggregated(query: &Query) -> Option<Query> {
    let mut q = query.clone();
    let (item, alias) = match single_item(&mut q)? {
        SelectItem::UnnamedExpr(x) => (x.clone(), None),
        SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
        _ => return None,
    };
    let alias = alias.as_ref();
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
    *single_item(&mut q)? = SelectItem::UnnamedExpr(Expr::Function(agg));
    q.order_by = None;
    Some(q)
}

/// `name(args...)`.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(function(
        name,
        FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|x| FunctionArg::Unnamed(FunctionArgExpr::Expr(x)))
                .collect(),
            clauses: vec![],
        }),
    ))
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
    fn select_list_subqueries_of_user_queries_are_kept() {
        assert_eq!(
            rewrite("SELECT c.id, (SELECT count(*) FROM o WHERE o.c = c.id) AS n, (SELECT 1) FROM c")
                .as_deref(),
            Some("SELECT c.id, ((SELECT count(*) FROM o WHERE o.c = c.id)) AS n, ((SELECT 1)) FROM c")
        );
        // Nested select lists too; catalog queries are left to datafusion-postgres.
        assert_eq!(
            rewrite("SELECT * FROM (SELECT (SELECT max(x) FROM b WHERE b.k = a.k) FROM a) t")
                .as_deref(),
            Some("SELECT * FROM (SELECT ((SELECT max(x) FROM b WHERE b.k = a.k)) FROM a) t")
        );
        assert!(rewrite("SELECT (SELECT n.nspname FROM pg_namespace n WHERE n.oid = c.relnamespace) FROM pg_class c").is_none());
        assert!(rewrite("SELECT a FROM t WHERE b IN (SELECT b FROM u)").is_none());
    }

    #[test]
    fn regtype_text_is_the_type_name() {
        assert_eq!(
            rewrite("SELECT elemtype::regtype::text AS n, CAST(CAST(t.oid AS pg_catalog.regtype) AS VARCHAR) FROM t")
                .as_deref(),
            Some("SELECT CASE WHEN elemtype = 0 THEN '-' ELSE format_type(elemtype, NULL) END AS n, \
                  CASE WHEN t.oid = 0 THEN '-' ELSE format_type(t.oid, NULL) END FROM t")
        );
        // A name to look up, and a regtype kept as such, are datafusion-pg-catalog's.
        assert!(rewrite("SELECT 'int4'::regtype::text, x::regtype FROM t").is_none());
    }

    #[test]
    fn like_escape_moves_to_the_backslash() {
        assert_eq!(
            rewrite("SELECT n FROM t WHERE n NOT LIKE $1 || '%' ESCAPE '/' AND m ILIKE 'a#_' ESCAPE '#'")
                .as_deref(),
            Some("SELECT n FROM t WHERE n NOT LIKE like_escape($1 || '%', '/') AND m ILIKE like_escape('a#_', '#')")
        );
        assert!(rewrite(r"SELECT 1 WHERE 'a' LIKE 'a\_' ESCAPE '\'").is_none());
    }

    #[test]
    fn current_role_is_current_user() {
        assert_eq!(
            fallback("SELECT current_role, \"current_role\" FROM t").as_deref(),
            Some("SELECT current_user, \"current_role\" FROM t")
        );
    }
}
