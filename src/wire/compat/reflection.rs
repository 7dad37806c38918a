//! Rewrites for the catalog queries of reflecting clients (SQLAlchemy's inspector, pandas'
//! `to_sql`), applied when such a query failed to plan as it was:
//!
//! - Scalar subqueries inside `CASE`, which DataFusion cannot decorrelate there
//!   ([`case_subqueries`]): SQLAlchemy's column reflection reads defaults, identity
//!   options and collations with `CASE WHEN <guard> THEN (SELECT ... WHERE <guard> AND
//!   <correlation>) END`.
//! - `pg_get_viewdef(oid)`: the view's query, from `pg_views` and `pg_matviews`.
//! - `unnest(indkey)` and `generate_subscripts(indkey, 1)` over the vector columns of
//!   the catalog (`int2vector`, `oidvector`), which datafusion-pg-catalog holds as their
//!   text (`1 2`) ([`vector_subscripts`]; SQLAlchemy's primary key reflection).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, BinaryOperator, Expr, Query, SelectItem, SetExpr};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Aggregate functions: a subquery projecting one of these already returns one row.
const AGGREGATES: [&str; 16] = [
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "first_value",
    "last_value",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "any_value",
];

/// In each branch of a `CASE` holding scalar subqueries over catalog (`pg_*`) tables
/// (DataFusion decorrelates only aggregated ones there, filtered by equalities with outer
/// columns):
/// - a conjunct of a `THEN (SELECT ...)`'s WHERE that repeats the branch's condition,
///   which reads outer columns only, is dropped (it holds wherever the branch is taken);
/// - a subquery of one non-aggregated column `x` becomes `(SELECT first_value(x) ...)`.
///   PostgreSQL raises an error when such a subquery returns more than one row; this
///   picks one (catalog lookups by key return at most one);
/// - a subquery whose column reads outer columns, which
///   DataFusion cannot plan at all, is NULL, as datafusion-postgres answers such
///   subqueries in a select list (SQLAlchemy's identity options: tessera has no
///   sequences, so NULL is their value).
pub fn case_subqueries(e: &mut Expr) -> bool {
    let Expr::Case {
        conditions,
        else_result,
        ..
    } = e
    else {
        return false;
    };
    let mut changed = false;
    for when in conditions.iter_mut() {
        if let Expr::Subquery(q) = &mut when.result {
            if catalog_relations(q).is_some_and(|names| only_outer_columns(&when.condition, &names))
            {
                changed |= drop_conjunct(q, &when.condition);
            }
        }
        changed |= settle_subqueries(&mut when.condition);
        changed |= settle_subqueries(&mut when.result);
    }
    if let Some(x) = else_result {
        changed |= settle_subqueries(x);
    }
    changed
}

/// Each scalar subquery in `e` aggregated, or NULL (see [`case_subqueries`]).
fn settle_subqueries(e: &mut Expr) -> bool {
    let mut changed = false;
    let _ = ast::visit_expressions_mut(e, |x| {
        if let Expr::Subquery(q) = x {
            if let Some(names) = catalog_relations(q) {
                if select_list_reads_outer_columns(q, &names) {
                    *x = Expr::value(ast::Value::Null);
                    changed = true;
                } else {
                    changed |= aggregate_column(q);
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    changed
}

/// The names (or aliases) of the relations `q` reads, if it reads `pg_*` tables only:
/// the rewrites of [`case_subqueries`] apply to catalog subqueries alone, so a user's
/// query keeps PostgreSQL's semantics (or DataFusion's error).
fn catalog_relations(q: &Query) -> Option<Vec<String>> {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    let mut names = Vec::new();
    for from in &select.from {
        for factor in std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation))
        {
            let ast::TableFactor::Table { name, alias, .. } = factor else {
                return None;
            };
            let table = name.0.last().map(|p| p.to_string()).unwrap_or_default();
            if !table.starts_with("pg_") {
                return None;
            }
            names.push(alias.as_ref().map_or(table, |a| a.name.value.clone()));
        }
    }
    (!names.is_empty()).then_some(names)
}

/// Whether every column `e` reads is qualified by a relation not in `names` (an outer
/// one); false if it reads none or an unqualified one.
fn only_outer_columns(e: &Expr, names: &[String]) -> bool {
    let mut outer = 0;
    let mut other = 0;
    let _ = ast::visit_expressions(e, |y| {
        match y {
            Expr::CompoundIdentifier(parts) => match parts.len().checked_sub(2) {
                Some(i) if !names.contains(&parts[i].value) => outer += 1,
                _ => other += 1,
            },
            Expr::Identifier(_) => other += 1,
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    outer > 0 && other == 0
}

/// Whether the select list of `q` (reading `names`) reads an outer column.
fn select_list_reads_outer_columns(q: &Query, names: &[String]) -> bool {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return false;
    };
    let mut outer = false;
    for item in &select.projection {
        let (SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. }) = item else {
            continue;
        };
        let _ = ast::visit_expressions(x, |y| {
            if let Expr::CompoundIdentifier(parts) = y {
                if let Some(i) = parts.len().checked_sub(2) {
                    outer |= !names.contains(&parts[i].value);
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
    outer
}

/// Remove the conjuncts of `q`'s WHERE that are `condition`.
fn drop_conjunct(q: &mut Query, condition: &Expr) -> bool {
    let SetExpr::Select(select) = q.body.as_mut() else {
        return false;
    };
    let Some(selection) = select.selection.take() else {
        return false;
    };
    let wanted = unnested(condition).to_string();
    let mut conjuncts = Vec::new();
    split_and(selection, &mut conjuncts);
    let before = conjuncts.len();
    conjuncts.retain(|c| unnested(c).to_string() != wanted);
    let changed = conjuncts.len() != before;
    select.selection = conjuncts.into_iter().reduce(|a, b| Expr::BinaryOp {
        left: Box::new(a),
        op: BinaryOperator::And,
        right: Box::new(b),
    });
    changed
}

fn split_and(e: Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(*left, out);
            split_and(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_and(*inner, out)
        }
        other => out.push(other),
    }
}

fn unnested(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}

fn aggregate_column(q: &mut Query) -> bool {
    let Some(SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. }) =
        super::single_item(q)
    else {
        return false;
    };
    if calls_aggregate(x) {
        return false;
    }
    let inner = std::mem::replace(x, Expr::value(ast::Value::Null));
    *x = super::call("first_value", vec![inner]);
    true
}

fn calls_aggregate(e: &Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        if let Expr::Function(f) = x {
            let name = f
                .name
                .0
                .last()
                .map(|p| p.to_string().to_ascii_lowercase())
                .unwrap_or_default();
            found |= AGGREGATES.contains(&name.as_str());
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Catalog columns of PostgreSQL's vector types, held as space-separated text.
const VECTOR_COLUMNS: [&str; 6] = [
    "indkey",
    "indcollation",
    "indclass",
    "indoption",
    "proargtypes",
    "tgattr",
];

/// The element type of the vector column `column` (by name), if it is one.
fn vector_element(column: &str) -> Option<&'static str> {
    let vector = VECTOR_COLUMNS
        .iter()
        .find(|c| c.eq_ignore_ascii_case(column))?;
    Some(match *vector {
        "indkey" | "indoption" | "tgattr" => "SMALLINT",
        _ => "INT",
    })
}

/// `unnest(v)` as `unnest(CAST(string_to_array(v, ' ') AS SMALLINT[]))` (or `INT[]` for
/// oid vectors) and `generate_subscripts(v, 1)` as the positions 1..n of the same
/// array (none for another dimension), for a vector column `v`.
pub fn vector_subscripts(e: &mut Expr) -> bool {
    let Expr::Function(f) = e else {
        return false;
    };
    let name = f.name.to_string().to_ascii_lowercase();
    let ast::FunctionArguments::List(list) = &f.args else {
        return false;
    };
    let Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(column))) = list.args.first()
    else {
        return false;
    };
    let column_name = match column {
        Expr::Identifier(id) => &id.value,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(id) => &id.value,
            None => return false,
        },
        _ => return false,
    };
    let Some(element) = vector_element(column_name) else {
        return false;
    };
    let sql = match (name.as_str(), list.args.len()) {
        ("unnest", 1) => format!("unnest(CAST(string_to_array({column}, ' ') AS {element}[]))"),
        // The dimension stays in the query: it may be a parameter to bind.
        ("generate_subscripts", 2) => format!(
            "unnest(CASE WHEN {} = 1 THEN \
             range(1, CAST(cardinality(string_to_array({column}, ' ')) AS BIGINT) + 1) END)",
            list.args[1]
        ),
        _ => return false,
    };
    replace_with(e, &sql)
}

/// asyncpg's type introspection finds a domain's base type with a recursive CTE over
/// `pg_type` inside a scalar subquery (`WITH RECURSIVE typebases(oid, depth) AS (SELECT
/// t2.typbasetype ... WHERE t2.oid = t.oid UNION ALL ...) SELECT oid FROM typebases
/// ORDER BY depth DESC LIMIT 1`), which DataFusion cannot plan there. tessera's domains
/// (those of `information_schema`) are all over base types, so that is the outer type's
/// `typbasetype`.
pub fn domain_base_type(e: &mut Expr) -> bool {
    let Expr::Subquery(q) = e else {
        return false;
    };
    let Some(with) = &q.with else {
        return false;
    };
    let [cte] = with.cte_tables.as_slice() else {
        return false;
    };
    if !with.recursive || !cte.alias.name.value.eq_ignore_ascii_case("typebases") {
        return false;
    }
    // The anchor's `t2.oid = t.oid`: `t` is the outer type.
    let SetExpr::SetOperation { left, .. } = cte.query.body.as_ref() else {
        return false;
    };
    let SetExpr::Select(anchor) = left.as_ref() else {
        return false;
    };
    let Some(Expr::BinaryOp {
        right,
        op: BinaryOperator::Eq,
        ..
    }) = &anchor.selection
    else {
        return false;
    };
    let Expr::CompoundIdentifier(outer) = right.as_ref() else {
        return false;
    };
    let [alias, oid] = outer.as_slice() else {
        return false;
    };
    if !oid.value.eq_ignore_ascii_case("oid") {
        return false;
    }
    let sql = format!("{alias}.typbasetype");
    replace_with(e, &sql)
}

/// `array_agg(a.atttypid ...)` (asyncpg's type introspection, for a composite type's
/// attribute types) is `oid[]` in PostgreSQL. DataFusion's `array_agg` drops the oid tag
/// of its argument's field, so the list would be described as `int4[]`, a type asyncpg
/// must look up with that same query; cast to `oid[]` it keeps the tag.
pub fn oid_array_agg(e: &mut Expr) -> bool {
    let Expr::Function(f) = e else {
        return false;
    };
    if !f.name.to_string().eq_ignore_ascii_case("array_agg") {
        return false;
    }
    let ast::FunctionArguments::List(list) = &f.args else {
        return false;
    };
    let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))] = list.args.as_slice() else {
        return false;
    };
    let column = match arg {
        Expr::Identifier(name) => name,
        Expr::CompoundIdentifier(parts) => match parts.last() {
            Some(name) => name,
            None => return false,
        },
        _ => return false,
    };
    if !column.value.eq_ignore_ascii_case("atttypid") {
        return false;
    }
    let sql = format!("CAST({e} AS oid[])");
    replace_with(e, &sql)
}

/// pgjdbc's `getPrimaryKeys` reads `information_schema._pg_expandarray(v)`, a
/// set-returning function of `(x, n)` rows (each element and its position), in a select
/// list, and a field of it: `(_pg_expandarray(v)).n`, or `(keys).x` from an outer query.
/// - `_pg_expandarray(v)` becomes `unnest(_pg_expandarray(v))`, tessera's function
///   answering the rows as a list of structs;
/// - `(_pg_expandarray(v)).x` and `.n` become `unnest` of the elements and of the
///   positions 1..n, which DataFusion unnests in step with the other;
/// - any other `(composite).field` becomes `composite['field']` (DataFusion reads struct
///   fields by subscript only).
pub fn expand_array(e: &mut Expr) -> bool {
    match e {
        Expr::CompoundFieldAccess { root, access_chain } if access_chain.len() == 1 => {
            let ast::AccessExpr::Dot(Expr::Identifier(field)) = &access_chain[0] else {
                return false;
            };
            // An unquoted name is folded to lower case, a quoted one kept.
            let field = match field.quote_style {
                Some(_) => field.value.clone(),
                None => field.value.to_ascii_lowercase(),
            };
            let inner = match root.as_ref() {
                Expr::Nested(x) => x.as_ref(),
                x => x,
            };
            let sql = match (expanded(inner), field.as_str()) {
                (Some(v), "x") => format!("unnest({})", as_array(&v)),
                (Some(v), "n") => format!(
                    "unnest(range(1, CAST(cardinality({}) AS BIGINT) + 1))",
                    as_array(&v)
                ),
                (Some(_), _) => return false,
                (None, field) => format!("{inner}['{field}']"),
            };
            replace_with(e, &sql)
        }
        // tessera's `_pg_expandarray` reads vectors (their text) only.
        Expr::Function(f) if is_expandarray(&f.name) => match only_argument(f) {
            Some(v) if vector_of(&v).is_some() => {
                let sql = format!("unnest(_pg_expandarray({v}))");
                replace_with(e, &sql)
            }
            _ => false,
        },
        _ => false,
    }
}

/// The element type of `v` (SQL text), if it names a vector column (`i.indkey`).
fn vector_of(v: &str) -> Option<&'static str> {
    vector_element(v.rsplit('.').next().unwrap_or(v))
}

fn is_expandarray(name: &ast::ObjectName) -> bool {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|i| i.value.eq_ignore_ascii_case("_pg_expandarray"))
}

/// The SQL text of a function's one argument.
fn only_argument(f: &ast::Function) -> Option<String> {
    let ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(v))] => Some(v.to_string()),
        _ => None,
    }
}

/// `v` of `_pg_expandarray(v)` or (already rewritten) `unnest(_pg_expandarray(v))`.
fn expanded(e: &Expr) -> Option<String> {
    let Expr::Function(f) = e else {
        return None;
    };
    if is_expandarray(&f.name) {
        return only_argument(f);
    }
    let ast::FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.as_slice() {
        [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(inner))]
            if f.name.to_string().eq_ignore_ascii_case("unnest") =>
        {
            expanded(inner)
        }
        _ => None,
    }
}

/// `v` as an array: a vector column (`indkey`, held as its text `1 2`) is split, as
/// [`vector_subscripts`] splits it.
fn as_array(v: &str) -> String {
    match vector_of(v) {
        Some(element) => format!("CAST(string_to_array({v}, ' ') AS {element}[])"),
        None => v.to_string(),
    }
}

/// Replace `e` by the expression `sql` (false, and `e` unchanged, if it does not parse).
pub(super) fn replace_with(e: &mut Expr, sql: &str) -> bool {
    match Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
    {
        Ok(x) => {
            *e = x;
            true
        }
        Err(_) => false,
    }
}

/// `pg_get_viewdef(oid [, pretty])`: the query of the view or materialised view with
/// that oid (NULL for another relation).
pub fn pg_get_viewdef(e: &mut Expr) -> bool {
    let Expr::Function(f) = e else {
        return false;
    };
    let name = f.name.to_string().to_ascii_lowercase();
    if name != "pg_get_viewdef" && name != "pg_catalog.pg_get_viewdef" {
        return false;
    }
    let ast::FunctionArguments::List(list) = &f.args else {
        return false;
    };
    let Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(oid))) = list.args.first() else {
        return false;
    };
    if list.args.len() > 2 {
        return false;
    }
    // Parenthesised twice, so datafusion-postgres does not take it for a correlated
    // select list item to replace by NULL (see `protect_projection_subqueries`).
    let sql = format!(
        "((SELECT max(tessera_vd.definition) FROM \
         (SELECT schemaname, viewname AS relname, definition FROM pg_catalog.pg_views \
          UNION ALL SELECT schemaname, matviewname, definition FROM pg_catalog.pg_matviews) \
         tessera_vd \
         JOIN pg_catalog.pg_namespace tessera_vn ON tessera_vn.nspname = tessera_vd.schemaname \
         JOIN pg_catalog.pg_class tessera_vc \
           ON tessera_vc.relnamespace = tessera_vn.oid AND tessera_vc.relname = tessera_vd.relname \
         WHERE tessera_vc.oid = ({oid})))"
    );
    replace_with(e, &sql)
}

#[cfg(test)]
mod tests {
    use super::super::fallback;

    /// asyncpg's type introspection, shortened.
    #[test]
    fn a_domains_recursive_base_type_is_its_typbasetype() {
        let q = super::super::rewrite(
            "SELECT t.oid, (CASE WHEN t.typtype = 'd' THEN (WITH RECURSIVE typebases(oid, depth) AS (\
             SELECT t2.typbasetype AS oid, 0 AS depth FROM pg_type t2 WHERE t2.oid = t.oid \
             UNION ALL SELECT t2.typbasetype AS oid, tb.depth + 1 AS depth FROM pg_type t2, typebases tb \
             WHERE tb.oid = t2.oid AND t2.typbasetype != 0) \
             SELECT oid FROM typebases ORDER BY depth DESC LIMIT 1) ELSE NULL END) AS basetype \
             FROM pg_catalog.pg_type AS t",
        )
        .expect("rewritten");
        assert_eq!(
            q,
            "SELECT t.oid, (CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE NULL END) AS basetype \
             FROM pg_catalog.pg_type AS t"
        );
    }

    /// asyncpg's attribute types of a composite type: an `oid[]` as in PostgreSQL.
    #[test]
    fn array_agg_of_attribute_types_is_an_oid_array() {
        let q = super::super::rewrite(
            "SELECT (SELECT array_agg(ia.atttypid ORDER BY ia.attnum) FROM pg_attribute ia) AS a, \
             (SELECT array_agg(ia.attname ORDER BY ia.attnum) FROM pg_attribute ia) AS n",
        )
        .expect("rewritten");
        assert_eq!(
            q,
            "SELECT (SELECT CAST(array_agg(ia.atttypid ORDER BY ia.attnum) AS oid[]) FROM pg_attribute ia) AS a, \
             (SELECT array_agg(ia.attname ORDER BY ia.attnum) FROM pg_attribute ia) AS n"
        );
    }

    /// pgjdbc's getPrimaryKeys, shortened.
    #[test]
    fn expandarray_becomes_unnests_in_step() {
        let q = fallback(
            "SELECT result.KEY_SEQ FROM (SELECT a.attname, \
             (information_schema._pg_expandarray(i.indkey)).n AS KEY_SEQ, \
             information_schema._pg_expandarray(i.indkey) AS KEYS, a.attnum AS A_ATTNUM \
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_index i ON a.attrelid = i.indrelid) result \
             WHERE result.A_ATTNUM = (result.KEYS).x",
        )
        .expect("rewritten");
        assert_eq!(
            q,
            "SELECT result.KEY_SEQ FROM (SELECT a.attname, \
             unnest(range(1, CAST(cardinality(CAST(string_to_array(i.indkey, ' ') AS SMALLINT[])) AS BIGINT) + 1)) AS KEY_SEQ, \
             unnest(_pg_expandarray(i.indkey)) AS KEYS, a.attnum AS A_ATTNUM \
             FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_index i ON a.attrelid = i.indrelid) result \
             WHERE result.A_ATTNUM = result.KEYS['x']"
        );
        // An element of an array that is not a vector column is unnested as it is.
        let q = fallback("SELECT (_pg_expandarray(t.arr)).x FROM t").expect("rewritten");
        assert_eq!(q, "SELECT unnest(t.arr) FROM t");
        // A quoted field keeps its case.
        let q = fallback("SELECT (t.s).\"A\", (t.s).b, (_pg_expandarray(t.arr)).n FROM t")
            .expect("rewritten");
        assert_eq!(
            q,
            "SELECT t.s['A'], t.s['b'], unnest(range(1, CAST(cardinality(t.arr) AS BIGINT) + 1)) FROM t"
        );
    }

    #[test]
    fn subqueries_in_case_are_aggregated_and_lose_the_repeated_guard() {
        let q = fallback(
            "SELECT a.name, CASE WHEN a.hasdef THEN (SELECT d.expr FROM pg_attrdef d \
             WHERE a.hasdef AND d.rel = a.rel AND d.num = a.num) ELSE NULL END AS dflt, \
             CASE WHEN a.coll <> 0 AND (SELECT t.coll FROM pg_type t WHERE t.oid = a.typ) <> a.coll \
             THEN (SELECT count(*) FROM pg_collation c WHERE c.oid = a.coll) END AS n, \
             CASE WHEN a.ident <> '' THEN (SELECT json_build_object('always', a.ident = 'a', \
             'start', s.start) FROM pg_catalog.pg_sequence s WHERE s.rel = a.rel) END AS ident \
             FROM pg_attribute a",
        )
        .expect("rewritten");
        assert_eq!(
            q,
            "SELECT a.name, CASE WHEN a.hasdef THEN (SELECT first_value(d.expr) FROM pg_attrdef d \
             WHERE d.rel = a.rel AND d.num = a.num) ELSE NULL END AS dflt, \
             CASE WHEN a.coll <> 0 AND (SELECT first_value(t.coll) FROM pg_type t WHERE t.oid = a.typ) <> a.coll \
             THEN (SELECT count(*) FROM pg_collation c WHERE c.oid = a.coll) END AS n, \
             CASE WHEN a.ident <> '' THEN NULL END AS ident FROM pg_attribute a"
        );
        // Subqueries over user tables keep PostgreSQL's semantics (or DataFusion's error):
        // no row is picked and no guard dropped, even one that reads the subquery's own
        // column; so do grouped or multi-column subqueries.
        for kept in [
            "SELECT (SELECT d.x FROM pg_d d WHERE d.k = a.k) FROM a",
            "SELECT CASE WHEN a.f THEN (SELECT d.x FROM d WHERE d.k = a.k) END FROM a",
            "SELECT CASE WHEN active THEN (SELECT count(*) FROM o WHERE active AND o.cid = c.id) END FROM c",
            "SELECT CASE WHEN a.f THEN (SELECT d.x FROM pg_d d GROUP BY d.x) END FROM a",
            "SELECT CASE WHEN a.f THEN (SELECT d.x, d.y FROM pg_d d) END FROM a",
            "SELECT CASE WHEN active THEN (SELECT max(x) FROM pg_o WHERE active) END FROM c",
        ] {
            assert!(fallback(kept).is_none(), "{kept}");
        }
    }

    #[test]
    fn vector_columns_unnest_as_arrays() {
        assert_eq!(
            fallback(
                "SELECT unnest(pg_catalog.pg_index.indkey) AS attnum, \
                 generate_subscripts(pg_catalog.pg_index.indkey, $1) AS ord FROM pg_catalog.pg_index"
            )
            .as_deref(),
            Some(
                "SELECT unnest(CAST(string_to_array(pg_catalog.pg_index.indkey, ' ') AS SMALLINT[])) AS attnum, \
                 unnest(CASE WHEN $1 = 1 THEN range(1, CAST(cardinality(string_to_array(pg_catalog.pg_index.indkey, ' ')) AS BIGINT) + 1) END) AS ord \
                 FROM pg_catalog.pg_index"
            )
        );
        assert!(fallback("SELECT unnest(t.tags) FROM t").is_none());
    }

    #[test]
    fn pg_get_viewdef_reads_the_catalog_views() {
        let q = fallback("SELECT pg_catalog.pg_get_viewdef(c.oid) AS d FROM pg_catalog.pg_class c")
            .expect("rewritten");
        assert!(
            q.starts_with("SELECT ((SELECT max(tessera_vd.definition) FROM")
                && q.contains("pg_catalog.pg_views")
                && q.contains("pg_catalog.pg_matviews")
                && q.ends_with("WHERE tessera_vc.oid = (c.oid))) AS d FROM pg_catalog.pg_class c"),
            "{q}"
        );
    }
}
