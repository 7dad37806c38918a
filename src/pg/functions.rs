//! Catalog functions that client libraries call while reflecting a database, answered
//! from what tessera has:
//!
//! - `to_regtype(name)`: the oid of a type named as SQL writes it (`integer`,
//!   `character varying(20)`, `pg_catalog.int4`, `text[]`), or NULL when there is none
//!   (psycopg's `TypeInfo.fetch`, SQLAlchemy's psycopg dialect at connect time).
//! - `pg_get_serial_sequence(table, column)`: always NULL, as PostgreSQL answers for a
//!   column that owns no sequence: tessera has no sequences (SQLAlchemy's column
//!   reflection).
//! - `pg_get_indexdef(index, column, pretty)`: always NULL: tessera's only indexes are
//!   the primary keys' (see `pg_index`), which have no definition to show.
//! - `pg_collation_is_visible(oid)`: true; every collation is in `pg_catalog`, which is
//!   always on the search path.
//! - `like_escape(pattern, escape)`: `pattern` rewritten from escape character `escape`
//!   to the backslash, which is the only one DataFusion's LIKE takes; `LIKE p ESCAPE 'c'`
//!   is planned as `LIKE like_escape(p, 'c')` (see `wire::compat`).
//! - `_pg_expandarray(vector)`: the elements of an `int2vector` (`pg_index.indkey`) with
//!   their positions, as a list of `(x, n)` structs; `information_schema._pg_expandarray`
//!   in a select list is planned as its `unnest` (pgjdbc's `getPrimaryKeys`, see
//!   `wire::compat`).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayBuilder, ArrayRef, BooleanArray, Int32Array, Int32Builder, ListArray, StringArray,
    StructArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::cast::as_string_array;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::engine::EngineError;

/// Register the functions of this module; the type names come from `pg_catalog.pg_type`.
pub async fn register(ctx: &SessionContext) -> Result<(), EngineError> {
    let types = type_oids(ctx).await?;
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| to_regtype(&types, &args[0])),
    ));
    ctx.register_udf(create_udf(
        "pg_get_serial_sequence",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    ));
    ctx.register_udf(create_udf(
        "pg_get_indexdef",
        vec![DataType::Int64, DataType::Int64, DataType::Boolean],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|_args: &[ColumnarValue]| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)))),
    ));
    ctx.register_udf(create_udf(
        "pg_collation_is_visible",
        vec![DataType::Int32],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            Ok(match &args[0] {
                ColumnarValue::Scalar(s) => {
                    ColumnarValue::Scalar(ScalarValue::Boolean((!s.is_null()).then_some(true)))
                }
                ColumnarValue::Array(a) => ColumnarValue::Array(Arc::new(
                    (0..a.len())
                        .map(|i| a.is_valid(i).then_some(true))
                        .collect::<BooleanArray>(),
                ) as ArrayRef),
            })
        }),
    ));
    ctx.register_udf(create_udf(
        "like_escape",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(like_escape),
    ));
    ctx.register_udf(expandarray_udf());
    Ok(())
}

fn expandarray_udf() -> ScalarUDF {
    create_udf(
        "_pg_expandarray",
        vec![DataType::Utf8],
        expanded_type(),
        Volatility::Immutable,
        Arc::new(expand_array),
    )
}

/// `List<Struct<x: Int32, n: Int32>>`: what `_pg_expandarray` answers per vector.
fn expanded_type() -> DataType {
    DataType::new_list(DataType::Struct(expanded_fields()), true)
}

fn expanded_fields() -> Fields {
    Fields::from(vec![
        Field::new("x", DataType::Int32, true),
        Field::new("n", DataType::Int32, true),
    ])
}

/// Each element of a vector (an `int2vector` such as `pg_index.indkey`, held as its text
/// `1 2`) with its position from 1: `[{x: 1, n: 1}, {x: 2, n: 2}]`; NULL for NULL.
fn expand_array(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let text = as_string_array(&arrays[0])?;
    let mut x = Int32Builder::new();
    let mut n = Int32Builder::new();
    let mut offsets = vec![0i32];
    let mut valid = Vec::with_capacity(text.len());
    for v in text.iter() {
        if let Some(v) = v {
            for (i, item) in v.split_whitespace().enumerate() {
                let element = item.parse::<i32>().map_err(|_| {
                    DataFusionError::Execution(format!(
                        "_pg_expandarray: \"{v}\" is not a vector of integers"
                    ))
                })?;
                x.append_value(element);
                n.append_value(i as i32 + 1);
            }
        }
        valid.push(v.is_some());
        offsets.push(x.len() as i32);
    }
    let items = StructArray::try_new(
        expanded_fields(),
        vec![Arc::new(x.finish()) as ArrayRef, Arc::new(n.finish())],
        None,
    )?;
    let list = ListArray::try_new(
        Arc::new(Field::new_list_field(
            DataType::Struct(expanded_fields()),
            true,
        )),
        OffsetBuffer::new(offsets.into()),
        Arc::new(items),
        Some(NullBuffer::from(valid)),
    )?;
    let list: ArrayRef = Arc::new(list);
    Ok(match &args[0] {
        ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&list, 0)?),
        ColumnarValue::Array(_) => ColumnarValue::Array(list),
    })
}

fn like_escape(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let rows = args.iter().find_map(|a| match a {
        ColumnarValue::Array(a) => Some(a.len()),
        ColumnarValue::Scalar(_) => None,
    });
    let scalar = rows.is_none();
    let rows = rows.unwrap_or(1);
    let (patterns, escapes) = (args[0].to_array(rows)?, args[1].to_array(rows)?);
    let (patterns, escapes) = (as_string_array(&patterns)?, as_string_array(&escapes)?);
    let out = patterns
        .iter()
        .zip(escapes.iter())
        .map(|(p, e)| match (p, e) {
            (Some(p), Some(e)) => to_backslash_escape(p, e).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<StringArray>>()?;
    Ok(if scalar {
        ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
    } else {
        ColumnarValue::Array(Arc::new(out) as ArrayRef)
    })
}

/// A LIKE pattern that uses `escape` (one character, or none when empty) as one that uses
/// the backslash.
fn to_backslash_escape(pattern: &str, escape: &str) -> Result<String> {
    let mut chars = escape.chars();
    let esc = match (chars.next(), chars.next()) {
        (None, _) => None,
        (Some(c), None) => Some(c),
        _ => return datafusion::common::exec_err!("invalid escape string: {escape:?}"),
    };
    if esc == Some('\\') {
        return Ok(pattern.to_string());
    }
    let mut out = String::with_capacity(pattern.len() + 2);
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        if Some(c) == esc {
            match it.next() {
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => {
                    return datafusion::common::exec_err!(
                        "LIKE pattern must not end with escape character"
                    )
                }
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Every type of `pg_catalog.pg_type` by name.
async fn type_oids(ctx: &SessionContext) -> Result<Arc<HashMap<String, i32>>, EngineError> {
    let batches = ctx
        .sql("SELECT typname, CAST(oid AS INT) FROM pg_catalog.pg_type")
        .await?
        .collect()
        .await?;
    let mut map = HashMap::new();
    for b in &batches {
        let names = as_string_array(b.column(0))?;
        let oids = b
            .column(1)
            .as_any()
            .downcast_ref::<Int32Array>()
            .ok_or_else(|| EngineError::NotSupported("pg_type.oid is not an integer".into()))?;
        for (name, oid) in names.iter().zip(oids.iter()) {
            if let (Some(name), Some(oid)) = (name, oid) {
                map.insert(name.to_string(), oid);
            }
        }
    }
    Ok(Arc::new(map))
}

fn to_regtype(types: &HashMap<String, i32>, arg: &ColumnarValue) -> Result<ColumnarValue> {
    let lookup = |name: &str| typname(name).and_then(|n| types.get(&n).copied());
    Ok(match arg {
        ColumnarValue::Scalar(s) => {
            let oid = match s {
                ScalarValue::Utf8(v) | ScalarValue::Utf8View(v) | ScalarValue::LargeUtf8(v) => {
                    v.as_deref().and_then(lookup)
                }
                _ => None,
            };
            ColumnarValue::Scalar(ScalarValue::Int32(oid))
        }
        ColumnarValue::Array(a) => {
            let names: &StringArray = as_string_array(a)?;
            let oids: Int32Array = names.iter().map(|n| n.and_then(lookup)).collect();
            ColumnarValue::Array(Arc::new(oids) as ArrayRef)
        }
    })
}

/// The `pg_type.typname` of a type name as SQL writes it: unquoted words fold to lower
/// case, a `pg_catalog.` or `public.` schema and a type modifier are dropped, SQL's
/// spellings map to PostgreSQL's internal names and `x[]` is the array type `_x`.
/// `None` for another schema.
fn typname(name: &str) -> Option<String> {
    let mut name = name.trim().to_string();
    let mut array = false;
    while let Some(base) = name.strip_suffix("[]") {
        array = true;
        name = base.trim_end().to_string();
    }
    if let Some(open) = name.find('(') {
        let close = name.rfind(')')?;
        name = format!("{}{}", &name[..open], &name[close + 1..]);
    }
    let name = if let Some(quoted) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        quoted.replace("\"\"", "\"")
    } else {
        let lower = name.to_lowercase();
        let words: Vec<&str> = lower.split_whitespace().collect();
        let (schema, rest) = match words.first().and_then(|w| w.split_once('.')) {
            Some((schema, first)) => (Some(schema.to_string()), {
                let mut w = vec![first];
                w.extend(&words[1..]);
                w.join(" ")
            }),
            None => (None, words.join(" ")),
        };
        if schema.is_some_and(|s| s != "pg_catalog" && s != "public") {
            return None;
        }
        sql_alias(&rest).map_or(rest.clone(), str::to_string)
    };
    Some(if array { format!("_{name}") } else { name })
}

/// PostgreSQL's internal name of a type SQL spells differently.
fn sql_alias(name: &str) -> Option<&'static str> {
    Some(match name {
        "integer" | "int" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "boolean" => "bool",
        "decimal" => "numeric",
        "character varying" | "char varying" => "varchar",
        "character" | "char" => "bpchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "time with time zone" => "timetz",
        "bit varying" => "varbit",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_as_sql_writes_them() {
        for (written, internal) in [
            ("integer", "int4"),
            ("INT4", "int4"),
            ("pg_catalog.int8", "int8"),
            ("character varying(20)", "varchar"),
            ("numeric(10, 2)", "numeric"),
            ("timestamp with time zone", "timestamptz"),
            ("Double  Precision", "float8"),
            ("text[]", "_text"),
            ("integer[][]", "_int4"),
            ("\"MyType\"", "MyType"),
            ("public.hstore", "hstore"),
        ] {
            assert_eq!(typname(written).as_deref(), Some(internal), "{written}");
        }
        assert_eq!(typname("other.int4"), None);
    }

    #[tokio::test]
    async fn expandarray_lists_elements_with_their_positions() {
        let ctx = SessionContext::new();
        ctx.register_udf(expandarray_udf());
        let batches = ctx
            .sql(
                "SELECT k, unnest(_pg_expandarray(k)) AS e FROM (VALUES ('3 1'), (NULL), ('')) t(k)",
            )
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string();
        assert!(text.contains("| 3 1 | {x: 3, n: 1} |"), "{text}");
        assert!(text.contains("| 3 1 | {x: 1, n: 2} |"), "{text}");
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).sum::<usize>(),
            2,
            "{text}"
        );
        let bad = ctx
            .sql("SELECT _pg_expandarray('1 x')")
            .await
            .expect("plan")
            .collect()
            .await;
        assert!(bad.is_err());
    }

    #[test]
    fn like_patterns_move_to_the_backslash() {
        for (pattern, escape, want) in [
            ("pg/_%", "/", r"pg\_%"),
            (r"a\b//c", "/", r"a\\b\/c"),
            (r"a\_", "", r"a\\_"),
            (r"a\_", r"\", r"a\_"),
        ] {
            assert_eq!(
                to_backslash_escape(pattern, escape).ok().as_deref(),
                Some(want),
                "{pattern} ESCAPE {escape}"
            );
        }
        assert!(to_backslash_escape("ab/", "/").is_err());
        assert!(to_backslash_escape("ab", "//").is_err());
    }
}
