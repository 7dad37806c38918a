//! The PostgreSQL type each result column and parameter is described as.
//!
//! arrow-pg maps a field by its Arrow type, and by its metadata for catalog oids
//! (`pg.oid_alias`: `oid`, `regtype`, ...) and `"char"`s. A list of oids it describes by
//! the physical element type, `int4[]`, where PostgreSQL says `oid[]`: `x::oid[]`,
//! `array_agg` of an oid column cast so. Clients that only know a few array types without
//! asking the server (asyncpg knows `oid[]` and `text[]`, and its type-introspection
//! query takes and returns `oid[]`) then look the `int4[]` up with the same query, and
//! again, without end. Here a list whose elements carry an oid alias is described as that
//! alias' array type; its values are the same 4-byte integers.

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion_postgres::arrow_pg::datatypes::{
    field_into_pg_type, into_pg_type, pg_type_for_alias_kind, PG_OID_ALIAS_KEY,
};
use pgwire::api::portal::Format;
use pgwire::api::results::FieldInfo;
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use pgwire::types::format::FormatOptions;
use std::sync::Arc;

/// The row description of `schema`: arrow-pg's, with lists of oids as oid arrays.
pub fn pg_fields(
    schema: &Schema,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let ty = match oid_array(field.data_type()) {
                Some(ty) => ty,
                // A cast of an oid to text keeps the oid tag (DataFusion carries a
                // field's metadata through a cast to a plain type).
                None if field.metadata().contains_key(PG_OID_ALIAS_KEY)
                    && field.data_type() != &DataType::Int32 =>
                {
                    into_pg_type(field.data_type())?
                }
                None => field_into_pg_type(field)?,
            };
            let info = FieldInfo::new(field.name().into(), None, None, ty, format.format_for(i));
            Ok(match &options {
                Some(options) => info.with_format_options(options.clone()),
                None => info,
            })
        })
        .collect()
}

/// The type a parameter of Arrow type `data_type` is described as.
pub fn parameter_type(data_type: &DataType) -> PgWireResult<Type> {
    match oid_array(data_type) {
        Some(ty) => Ok(ty),
        None => into_pg_type(data_type),
    }
}

/// The parameters (by position from 0) that `plan` casts straight to an oid array
/// (`$1::oid[]`), with that array type: datafusion-postgres describes them by the
/// list's physical type, `int4[]`.
pub fn cast_parameters(plan: &LogicalPlan) -> Vec<(usize, Type)> {
    let mut found = Vec::new();
    let _ = plan.apply(|node| {
        for expr in node.expressions() {
            let _ = expr.apply(|e| {
                if let Expr::Cast(cast) = e {
                    if let (Expr::Placeholder(p), Some(ty)) =
                        (cast.expr.as_ref(), oid_array(cast.field.data_type()))
                    {
                        if let Some(n) =
                            p.id.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
                        {
                            found.extend(n.checked_sub(1).map(|i| (i, ty)));
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            });
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The type a parameter described as `ty` is decoded as: an oid array's elements are
/// 4-byte integers on the wire, as `int4[]`'s are (arrow-pg decodes no oid arrays).
pub fn decoded_as(ty: &Type) -> &Type {
    match ALIAS_ARRAYS.iter().any(|(_, array)| array == ty) {
        true => &Type::INT4_ARRAY,
        false => ty,
    }
}

/// Each oid alias type and its array type.
const ALIAS_ARRAYS: [(Type, Type); 12] = [
    (Type::OID, Type::OID_ARRAY),
    (Type::REGPROC, Type::REGPROC_ARRAY),
    (Type::REGPROCEDURE, Type::REGPROCEDURE_ARRAY),
    (Type::REGOPER, Type::REGOPER_ARRAY),
    (Type::REGOPERATOR, Type::REGOPERATOR_ARRAY),
    (Type::REGCLASS, Type::REGCLASS_ARRAY),
    (Type::REGTYPE, Type::REGTYPE_ARRAY),
    (Type::REGNAMESPACE, Type::REGNAMESPACE_ARRAY),
    (Type::REGROLE, Type::REGROLE_ARRAY),
    (Type::REGCONFIG, Type::REGCONFIG_ARRAY),
    (Type::REGDICTIONARY, Type::REGDICTIONARY_ARRAY),
    (Type::REGCOLLATION, Type::REGCOLLATION_ARRAY),
];

/// The array type of a list whose elements are tagged as an oid alias.
fn oid_array(data_type: &DataType) -> Option<Type> {
    let element: &Field = match data_type {
        DataType::List(f) | DataType::LargeList(f) => f,
        _ => return None,
    };
    let alias = pg_type_for_alias_kind(element.metadata().get(PG_OID_ALIAS_KEY)?)?;
    ALIAS_ARRAYS
        .iter()
        .find(|(element, _)| *element == alias)
        .map(|(_, array)| array.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn tagged(kind: &str) -> Field {
        Field::new_list_field(DataType::Int32, true).with_metadata(HashMap::from([(
            PG_OID_ALIAS_KEY.to_string(),
            kind.to_string(),
        )]))
    }

    #[test]
    fn lists_of_oids_are_oid_arrays() {
        let schema = Schema::new(vec![
            Field::new("o", DataType::List(Arc::new(tagged("oid"))), true),
            Field::new("t", DataType::List(Arc::new(tagged("regtype"))), true),
            Field::new(
                "i",
                DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
                true,
            ),
            Field::new("oid", DataType::Int32, true).with_metadata(HashMap::from([(
                PG_OID_ALIAS_KEY.to_string(),
                "oid".to_string(),
            )])),
            // An oid cast to text keeps the tag; it is text all the same.
            Field::new("name", DataType::Utf8, true).with_metadata(HashMap::from([(
                PG_OID_ALIAS_KEY.to_string(),
                "oid".to_string(),
            )])),
        ]);
        let types: Vec<Type> = pg_fields(&schema, &Format::UnifiedBinary, None)
            .expect("fields")
            .iter()
            .map(|f| f.datatype().clone())
            .collect();
        assert_eq!(
            types,
            [
                Type::OID_ARRAY,
                Type::REGTYPE_ARRAY,
                Type::INT4_ARRAY,
                Type::OID,
                Type::TEXT
            ]
        );
        assert_eq!(
            parameter_type(&DataType::List(Arc::new(tagged("oid")))).expect("param"),
            Type::OID_ARRAY
        );
        assert_eq!(decoded_as(&Type::OID_ARRAY), &Type::INT4_ARRAY);
        assert_eq!(decoded_as(&Type::TEXT_ARRAY), &Type::TEXT_ARRAY);
    }
}
