//! SQL type names of PostgreSQL that DataFusion does not plan itself.
//!
//! `json` and `jsonb` are text: values are stored and returned as they were written
//! (PostgreSQL's `jsonb` would normalise `{"a":1}` to `{"a": 1}`), and the `->`, `->>`
//! operators and `json_*` functions read them (see the README's SQL reference).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::datatype::DataTypeExt;
use datafusion::common::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast;

/// Plans `json` and `jsonb`; any other type goes to the planner installed before
/// (datafusion-pg-catalog's, for `regclass`, `oid`, `pg_catalog.int4`...).
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
            _ => match &self.inner {
                Some(inner) => inner.plan_type_field(sql_type),
                None => Ok(None),
            },
        }
    }
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
        let alone = PgTypes { inner: None };
        assert!(alone
            .plan_type_field(&ast::DataType::Int(None))
            .expect("int")
            .is_none());
    }
}
