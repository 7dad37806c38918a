//! Result column names as PostgreSQL gives them.
//!
//! DataFusion names an unaliased select item after its whole expression
//! (`count(*)`, `max(t.id)`, `Int64(1)`); PostgreSQL uses the function's name (`count`,
//! `max`), the column's name, or `?column?`. Clients show these names and some look
//! columns up by them, so the names in RowDescription are replaced; aliased items keep
//! their alias.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{Expr, Ident, SelectItem, SetExpr, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use pgwire::api::results::{FieldInfo, Response};

/// For each output column of a plain `SELECT` (no `*`), the name PostgreSQL would give
/// it, or `None` where the current name is already right.
pub fn postgres_names(sql: &str) -> Option<Vec<Option<String>>> {
    let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [Statement::Query(q)] = stmts.as_slice() else {
        return None;
    };
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Some(colname(e)),
            SelectItem::ExprWithAlias { .. } => Some(None),
            _ => None, // a wildcard: the column count is not known here
        })
        .collect()
}

/// DataFusion refuses two output columns with the same generated name (`SELECT 1, 1`),
/// which PostgreSQL allows. This gives every unnamed item of a plain SELECT a unique
/// alias; [`rename_response`] with the original SQL then restores PostgreSQL's names.
pub fn alias_unnamed(sql: &str) -> Option<String> {
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [Statement::Query(q)] = stmts.as_mut_slice() else {
        return None;
    };
    let SetExpr::Select(select) = q.body.as_mut() else {
        return None;
    };
    let mut changed = false;
    for (i, item) in select.projection.iter_mut().enumerate() {
        if let SelectItem::UnnamedExpr(e) = item {
            *item = SelectItem::ExprWithAlias {
                expr: e.clone(),
                alias: Ident::with_quote('"', format!("?column?{}", i + 1)),
            };
            changed = true;
        }
    }
    changed.then(|| stmts[0].to_string())
}

/// Whether an error is DataFusion's refusal of duplicate output names.
pub fn is_duplicate_name_error(e: &pgwire::error::PgWireError) -> bool {
    e.to_string()
        .contains("Projections require unique expression names")
}

/// PostgreSQL's FigureColname, for the expressions it names.
fn colname(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(_) => None,
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_lowercase()),
        // A cast keeps its operand's name; an unnamed operand takes the type's name.
        Expr::Cast {
            expr, data_type, ..
        } => match (expr.as_ref(), colname(expr)) {
            (Expr::Identifier(_), _) => None,
            (_, Some(n)) if n != "?column?" => Some(n),
            _ => Some(pg_type_name(&data_type.to_string())),
        },
        Expr::Nested(inner) => colname(inner),
        Expr::Case { .. } => Some("case".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        _ => Some("?column?".into()),
    }
}

/// The name PostgreSQL gives a cast's column: the type's internal name, without its
/// modifiers or array brackets (`'{1}'::bigint[]` is `int8`, `x::varchar(10)` `varchar`).
fn pg_type_name(t: &str) -> String {
    let t = t.to_ascii_lowercase();
    let t = t.trim_end_matches("[]").trim();
    let base = match t.find('(') {
        // `timestamp(3) with time zone`: the modifier sits inside the name.
        Some(i) => {
            let close = t[i..].find(')').map_or(t.len(), |j| i + j + 1);
            format!("{}{}", &t[..i], &t[close..])
        }
        None => t.to_string(),
    };
    let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
    match base.as_str() {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "boolean" | "bool" => "bool",
        "double precision" | "float8" | "float" => "float8",
        "real" | "float4" => "float4",
        "character varying" | "varchar" => "varchar",
        "character" | "char" | "bpchar" => "bpchar",
        "decimal" | "numeric" => "numeric",
        "timestamp with time zone" | "timestamptz" => "timestamptz",
        "timestamp without time zone" | "timestamp" => "timestamp",
        "time without time zone" | "time" => "time",
        other => other,
    }
    .to_string()
}

/// Apply `names` to result fields (only when the counts agree).
pub fn rename_fields(fields: &[FieldInfo], names: &[Option<String>]) -> Option<Vec<FieldInfo>> {
    if fields.len() != names.len() || names.iter().all(Option::is_none) {
        return None;
    }
    Some(
        fields
            .iter()
            .zip(names)
            .map(|(f, n)| match n {
                None => f.clone(),
                Some(n) => FieldInfo::new(
                    n.clone(),
                    f.table_id(),
                    f.column_id(),
                    f.datatype().clone(),
                    f.format(),
                )
                .with_format_options(f.format_options().clone())
                .with_type_size(f.type_size())
                .with_type_modifier(f.type_modifier()),
            })
            .collect(),
    )
}

/// Rename the columns of a query response of `sql`.
pub fn rename_response(sql: &str, response: Response) -> Response {
    match response {
        Response::Query(mut q) => {
            if let Some(names) = postgres_names(sql) {
                if let Some(fields) = rename_fields(&q.row_schema, &names) {
                    q.row_schema = Arc::new(fields);
                }
            }
            Response::Query(q)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_like_postgres() {
        let n = postgres_names("SELECT count(*), max(t.id), 1, t.id + 1, lower(name), id, t.x, a AS b, CAST(x AS int), '1'::int FROM t")
            .expect("names");
        let n: Vec<Option<&str>> = n.iter().map(|x| x.as_deref()).collect();
        assert_eq!(
            n,
            vec![
                Some("count"),
                Some("max"),
                Some("?column?"),
                Some("?column?"),
                Some("lower"),
                None,
                Some("x"),
                None,
                None,
                Some("int4")
            ]
        );
        assert!(postgres_names("SELECT * FROM t").is_none());
        let n = postgres_names(
            "SELECT $1::int8[], '{}'::integer[], 'a'::varchar(10), '2024-01-01'::timestamp(3) with time zone, 1::double precision, 'x'::character(2)",
        )
        .expect("cast names");
        let n: Vec<&str> = n.iter().map(|x| x.as_deref().unwrap_or("-")).collect();
        assert_eq!(
            n,
            ["int8", "int4", "varchar", "timestamptz", "float8", "bpchar"]
        );
        let aliased = alias_unnamed("SELECT 1, 1, x AS y").expect("aliased");
        assert_eq!(
            aliased,
            "SELECT 1 AS \"?column?1\", 1 AS \"?column?2\", x AS y"
        );
        assert!(postgres_names("INSERT INTO t VALUES (1)").is_none());
    }
}
