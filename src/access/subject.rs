//! `subject_access(id_type, id_value)`: every row held about one person, as
//! `(relation, row_json)`, for a data subject's right of access.
//!
//! The person is found through `identity_lookup` (id_type, id_value, unified_id), the
//! value normalised as the model normalises it (`normalize_email`, `normalize_phone`).
//! Then every table, source and materialised view (views are computed from those, so they
//! would only repeat rows) and the engine's own tables are searched: relations with a
//! `unified_id` column for the person's unified_id, the others for any of the person's
//! identifiers in a column classified as personal data (emails in `pii:email` columns
//! and phones in `pii:phone` ones, normalised; any identifier in `pii:id` ones).
//!
//! The searches run as the caller, so masking and purposes apply to them as to any
//! query; only superusers and members of `tessera_pii` may call the function at all.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{plan_err, DataFusionError, Result};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use super::classes::{Classification, PiiClass};
use super::mask::PERSON_KEY;
use crate::system::SYSTEM_SCHEMA;

/// The function's name.
pub const FUNCTION: &str = "subject_access";
/// The relation people are looked up in.
pub const LOOKUP: &str = "identity_lookup";

/// The table function; holds the session (weakly: the session holds the function).
#[derive(Debug)]
pub struct SubjectAccess {
    pub ctx: Weak<SessionContext>,
    pub classes: Arc<Classification>,
}

impl TableFunctionImpl for SubjectAccess {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let usage = "subject_access('<id_type>', '<id_value>'), e.g. subject_access('email', 'anna@example.com')";
        if exprs.len() != 2 {
            return plan_err!("{FUNCTION} takes two arguments: {usage}");
        }
        let id_type = crate::identity::function::literal_arg(FUNCTION, exprs, 0, "an id_type")?;
        let id_value = crate::identity::function::literal_arg(FUNCTION, exprs, 1, "an id_value")?;
        let (Some(id_type), Some(id_value)) = (id_type, id_value) else {
            return plan_err!("{FUNCTION}: neither argument may be NULL: {usage}");
        };
        Ok(Arc::new(SubjectRows {
            ctx: self.ctx.clone(),
            classes: self.classes.clone(),
            id_type,
            id_value,
        }))
    }
}

#[derive(Debug)]
struct SubjectRows {
    ctx: Weak<SessionContext>,
    classes: Arc<Classification>,
    id_type: String,
    id_value: String,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("relation", DataType::Utf8, false),
        Field::new("row_json", DataType::Utf8, false),
    ]))
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>> {
    ctx.sql(sql).await?.collect().await
}

fn text_column(batches: &[RecordBatch], i: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        let c = datafusion::arrow::compute::cast(b.column(i), &DataType::Utf8)?;
        let c = datafusion::common::cast::as_string_array(&c)?;
        out.extend(c.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

/// A person as the identity map knows them.
#[derive(Debug, Clone)]
pub struct Person {
    pub unified_id: String,
    /// Their identifiers: (id_type, id_value), values in normal form.
    pub ids: Vec<(String, String)>,
}

/// The person identifier `id_value` of type `id_type` belongs to, if the identity map
/// knows it.
pub async fn find(ctx: &SessionContext, id_type: &str, id_value: &str) -> Result<Option<Person>> {
    if !ctx.table_exist(LOOKUP)? {
        return plan_err!(
            "people are found through {LOOKUP} (id_type, id_value, unified_id), which does not exist (see sql/60_profiles.sql)"
        );
    }
    let t = quote(id_type);
    let v = quote(id_value);
    let found = query(
        ctx,
        &format!(
            "SELECT DISTINCT unified_id FROM {LOOKUP} WHERE id_type = {t} AND id_value = \
             CASE {t} WHEN 'email' THEN normalize_email({v}) WHEN 'phone' THEN normalize_phone({v}) ELSE {v} END"
        ),
    )
    .await?;
    let Some(unified_id) = text_column(&found, 0)?.into_iter().next() else {
        return Ok(None);
    };
    let ids = query(
        ctx,
        &format!(
            "SELECT id_type, id_value FROM {LOOKUP} WHERE unified_id = {}",
            quote(&unified_id)
        ),
    )
    .await?;
    let types = text_column(&ids, 0)?;
    let values = text_column(&ids, 1)?;
    Ok(Some(Person {
        unified_id,
        ids: types.into_iter().zip(values).collect(),
    }))
}

/// How SQL names `relation` (`name` or `tessera.name`): quoted, so any spelling reads.
pub fn sql_reference(relation: &str) -> String {
    let ident = |n: &str| format!("\"{}\"", n.replace('"', "\"\""));
    match relation.strip_prefix(&format!("{SYSTEM_SCHEMA}.")) {
        Some(name) => format!("{SYSTEM_SCHEMA}.{}", ident(name)),
        None => ident(relation),
    }
}

/// The relations searched, by their names (`name`, `tessera.name`): every table, source and
/// materialised view, and the engine's tables but the audit log.
async fn relations(ctx: &SessionContext) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (schema_name, prefix) in [("public", ""), (SYSTEM_SCHEMA, "tessera.")] {
        let Some(schema) = ctx
            .catalog(crate::engine::DATABASE)
            .and_then(|c| c.schema(schema_name))
        else {
            continue;
        };
        let mut names = schema.table_names();
        names.sort();
        for name in names {
            if let Some(t) = schema.table(&name).await? {
                if t.table_type() != TableType::View && name != super::audit::TABLE {
                    out.push(format!("{prefix}{name}"));
                }
            }
        }
    }
    Ok(out)
}

/// The condition picking `person`'s rows of `relation`, if it can hold any.
fn condition(
    classes: &Classification,
    relation: &str,
    schema: &SchemaRef,
    person: &Person,
) -> Option<String> {
    if schema.index_of(PERSON_KEY).is_ok() {
        return Some(format!("{PERSON_KEY} = {}", quote(&person.unified_id)));
    }
    let classes = classes.get(relation)?;
    let ids = &person.ids;
    let of = |t: &str| -> Vec<String> {
        ids.iter()
            .filter(|(k, _)| k == t)
            .map(|(_, v)| quote(v))
            .collect()
    };
    let all: Vec<String> = ids.iter().map(|(_, v)| quote(v)).collect();
    let mut terms = Vec::new();
    for (column, class) in classes.iter() {
        if schema.index_of(column).is_err() {
            continue;
        }
        let c = format!("\"{}\"", column.replace('"', "\"\""));
        let (expr, values) = match class {
            PiiClass::Email => (format!("normalize_email(CAST({c} AS TEXT))"), of("email")),
            PiiClass::Phone => (format!("normalize_phone(CAST({c} AS TEXT))"), of("phone")),
            PiiClass::Id => (format!("CAST({c} AS TEXT)"), all.clone()),
            PiiClass::Other(_) => continue,
        };
        if !values.is_empty() {
            terms.push(format!("{expr} IN ({})", values.join(", ")));
        }
    }
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

/// Every row held about `person`: (relation, the rows as JSON objects). Runs as the
/// caller: what they may not read is left out.
pub async fn rows_about(
    ctx: &SessionContext,
    classes: &Classification,
    person: &Person,
) -> Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for relation in relations(ctx).await? {
        let reference = sql_reference(&relation);
        let provider = ctx.table_provider(reference.as_str()).await?;
        let Some(condition) = condition(classes, &relation, &provider.schema(), person) else {
            continue;
        };
        let batches =
            match query(ctx, &format!("SELECT * FROM {reference} WHERE {condition}")).await {
                Ok(b) => b,
                // What the caller may not read (not granted, or refused in a purpose-bound
                // session) is left out.
                Err(e) if is_denied(&e) => continue,
                Err(e) => return Err(e),
            };
        let lines = json_lines(&batches)?;
        if !lines.is_empty() {
            out.push((relation, lines));
        }
    }
    Ok(out)
}

impl SubjectRows {
    async fn rows(&self, ctx: &SessionContext) -> Result<RecordBatch> {
        let (mut relations_out, mut rows_out) = (Vec::new(), Vec::new());
        if let Some(person) = find(ctx, &self.id_type, &self.id_value).await? {
            for (relation, lines) in rows_about(ctx, &self.classes, &person).await? {
                for line in lines {
                    relations_out.push(relation.clone());
                    rows_out.push(line);
                }
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(relations_out)),
            Arc::new(StringArray::from(rows_out)),
        ];
        Ok(RecordBatch::try_new(schema(), columns)?)
    }
}

fn is_denied(e: &DataFusionError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(crate::engine::EngineError::Auth(crate::auth::AuthError::Denied(_))) =
            err.downcast_ref::<crate::engine::EngineError>()
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Each row of `batches` as a JSON object.
fn json_lines(batches: &[RecordBatch]) -> Result<Vec<String>> {
    let mut buf = Vec::new();
    {
        let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut buf);
        for b in batches {
            writer.write(b)?;
        }
        writer.finish()?;
    }
    let text = String::from_utf8(buf).map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(text.lines().map(str::to_string).collect())
}

#[async_trait]
impl TableProvider for SubjectRows {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ctx = self
            .ctx
            .upgrade()
            .ok_or_else(|| DataFusionError::Internal("the session is gone".into()))?;
        let batch = self.rows(&ctx).await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            schema(),
            projection.cloned(),
        )?)
    }
}
