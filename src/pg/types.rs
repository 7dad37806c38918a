//! SQL type names of PostgreSQL that DataFusion does not plan itself.
//!
//! `json` and `jsonb` are text: values are stored and returned as they were written
//! (PostgreSQL's `jsonb` would normalise `{"a":1}` to `{"a": 1}`), and the `->`, `->>`
//! operators and `json_*` functions read them (see the README's SQL reference).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::datatype::DataTypeExt;
use datafusion::common::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast;
use datafusion_postgres::arrow_pg::datatypes::{pg_type_for_alias_kind, PG_OID_ALIAS_KEY};

/// Plans `json` and `jsonb`, and arrays of oids (`oid[]`, `regtype[]`, ...) as lists of
/// `int4` whose element field names the oid type (`pg.oid_alias` metadata), so that the
/// endpoint describes them as PostgreSQL does (`oid[]`, not `int4[]`: asyncpg
/// introspects types with an `oid[]` parameter). Any other type goes to the planner
/// installed before (datafusion-pg-catalog's, for `regclass`, `oid`,
/// `pg_catalog.int4`...), which plans a single oid as an untagged `int4`: a tag on a
/// cast's own field would differ between DataFusion's logical and physical plans, while
/// a list element's is part of the list's type.
#[derive(Debug)]
pub struct PgTypes {
    pub inner: Option<Arc<dyn TypePlanner>>,
}

impl TypePlanner for PgTypes {
    fn plan_type_field(&self, sql_type: &ast::DataType) -> Result<Option<FieldRef>> {
        match sql_type {
            ast::DataType::JSON | ast::DataType::JSONB => {
                Ok(Some(DataType::Utf8.into_nullable_field_ref()))
            }
            ast::DataType::Array(
                ast::ArrayElemTypeDef::SquareBracket(element, None)
                | ast::ArrayElemTypeDef::AngleBracket(element),
            ) if oid_alias(element).is_some() => {
                let kind = oid_alias(element).unwrap_or_default();
                let item = Field::new_list_field(DataType::Int32, true)
                    .with_metadata(HashMap::from([(PG_OID_ALIAS_KEY.to_string(), kind)]));
                Ok(Some(
                    DataType::List(Arc::new(item)).into_nullable_field_ref(),
                ))
            }
            _ => match &self.inner {
                Some(inner) => inner.plan_type_field(sql_type),
                None => Ok(None),
            },
        }
    }
}

/// The oid type `sql_type` names (`oid`, `regclass`, `pg_catalog.regtype`...), lower case.
fn oid_alias(sql_type: &ast::DataType) -> Option<String> {
    let name = match sql_type {
        ast::DataType::Regclass => "regclass".to_string(),
        ast::DataType::Custom(name, args) if args.is_empty() => match name.0.last()? {
            ast::ObjectNamePart::Identifier(ident) => ident.value.to_ascii_lowercase(),
            _ => return None,
        },
        _ => return None,
    };
    pg_type_for_alias_kind(&name).map(|_| name)
}

/// Put [`PgTypes`] in front of the session's type planner.
pub fn install(ctx: &SessionContext) {
    let state = ctx.state_ref();
    let mut builder = SessionStateBuilder::new_from_existing(state.read().clone());
    let inner = builder.type_planner().take();
    *state.write() = builder
        .with_type_planner(Arc::new(PgTypes { inner }))
        .build();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn json_types_are_text() {
        let ctx = SessionContext::new();
        datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
            &ctx,
            "datafusion",
            datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
        )
        .expect("pg_catalog");
        install(&ctx);
        let df = ctx
            .sql(r#"SELECT CAST('{"a": 1}' AS jsonb) AS b, CAST('[1]' AS json) AS j, CAST(1 AS regclass) AS r"#)
            .await
            .expect("plan");
        let schema = df.schema().clone();
        assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        let rows = df.collect().await.expect("run");
        let b = rows[0]
            .column(0)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>();
        assert_eq!(b.map(|a| a.value(0)), Some(r#"{"a": 1}"#));
        // Others go to the planner before it (regclass is datafusion-pg-catalog's).
        assert_eq!(schema.field(2).data_type(), &DataType::Int32);
        // Arrays of oids keep the oid type on their elements (described as oid[]).
        let df = ctx
            .sql("SELECT CAST(ARRAY[1, 2] AS oid[]) AS o, CAST(ARRAY[3] AS pg_catalog.regtype[]) AS t, CAST(ARRAY[4] AS int4[]) AS i")
            .await
            .expect("plan arrays");
        let element = |i: usize| match df.schema().field(i).data_type() {
            DataType::List(item) => item.metadata().get(PG_OID_ALIAS_KEY).cloned(),
            other => panic!("not a list: {other}"),
        };
        assert_eq!(element(0).as_deref(), Some("oid"));
        assert_eq!(element(1).as_deref(), Some("regtype"));
        assert_eq!(element(2), None);
        let rows = df.collect().await.expect("run arrays");
        assert_eq!(rows[0].num_rows(), 1);
        let alone = PgTypes { inner: None };
        assert!(alone
            .plan_type_field(&ast::DataType::Int(None))
            .expect("int")
            .is_none());
    }
}
