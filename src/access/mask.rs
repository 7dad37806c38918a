//! What a principal reads of a relation, enforced where it is read: [`GuardRelations`]
//! rewrites every table scan that needs it to read through [`GuardedTable`], which
//! - masks the columns classified as personal data when the principal lacks the PII
//!   privilege, and
//! - in a purpose-bound session (`SET tessera.purpose`), keeps only the rows of people
//!   whose consent allows the purpose (relations with a `unified_id` column), and
//!   refuses relations holding personal data that are not keyed by person;
//! - leaves out, for everyone, the rows of people erased by `forget_subject` (rows whose
//!   identifiers are on the suppression list, see [`super::erasure`]).
//!
//! The guard sits inside the scan, so every filter, join, aggregate and expression above
//! it (from the query itself, from inlined views, from subqueries) only ever sees masked
//! values of consenting people: `WHERE email = 'x'` compares the masked email. Filters on
//! masked columns are not pushed into the underlying table either, so file statistics
//! cannot answer them on raw values. The rewrite is idempotent (a scan already reading
//! through [`GuardedTable`] is left alone), as DataFusion may analyse a plan twice.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    col, lit, Expr, LogicalPlan, ScalarUDF, TableProviderFilterPushDown, TableScan, TableType,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::ExecutionPlan;

use super::classes::{Classification, ColumnClasses, PiiClass};
use super::erasure::{self, Check, ErasedFunc, Suppression};

/// The column that keys a relation by person.
pub const PERSON_KEY: &str = "unified_id";

/// The analyzer rule; register it once on the session state.
#[derive(Debug)]
pub struct GuardRelations {
    classes: Arc<Classification>,
    suppression: Arc<Suppression>,
}

impl GuardRelations {
    pub fn new(classes: Arc<Classification>, suppression: Arc<Suppression>) -> Self {
        GuardRelations {
            classes,
            suppression,
        }
    }

    fn guard_scan(
        &self,
        scan: TableScan,
        principal: &super::Principal,
    ) -> Result<Transformed<LogicalPlan>> {
        // Every relation tessera serves is a provider; a source of another kind (none
        // today) holds nothing classified, so it is only checked, not guarded.
        let Ok(provider) = source_as_provider(&scan.source) else {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        };
        if provider.is::<GuardedTable>() {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        }
        let schema = provider.schema();
        let classes = self
            .classes
            .get(&Classification::key(&scan.table_name))
            .filter(|c| c.keys().any(|k| schema.index_of(k).is_ok()));
        let keyed = schema.index_of(PERSON_KEY).is_ok();
        let purpose = match &principal.purpose {
            Some(p) if keyed => Some(p.clone()),
            Some(p) if classes.is_some() => {
                return Err(super::denied(format!(
                    "relation \"{}\" holds personal data but no {PERSON_KEY} column, so a \
                     session bound to purpose \"{p}\" cannot read it (read the profiles and \
                     segments, or RESET tessera.purpose)",
                    scan.table_name
                )))
            }
            _ => None,
        };
        // Scans of personal data are wrapped for everyone (the audit log notes what they
        // read); a non-superuser's scans all are, so that a second analysis of the plan
        // (after the view boundaries are gone) knows they were checked.
        if classes.is_none() && purpose.is_none() && principal.superuser {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        }
        let classes = classes.unwrap_or_default();
        // Rows of erased people are left out for everyone, the engine included.
        let erased = erasure::checks(&classes, &schema);
        let erased = (!erased.is_empty() && !self.suppression.is_empty())
            .then(|| (self.suppression.clone(), erased));
        let guarded = Arc::new(GuardedTable {
            inner: provider,
            relation: Classification::key(&scan.table_name),
            classes,
            masked: !principal.pii,
            purpose,
            erased,
        });
        Ok(Transformed::yes(LogicalPlan::TableScan(TableScan {
            source: provider_as_source(guarded),
            ..scan
        })))
    }
}

impl GuardRelations {
    /// Check, guard and strip view boundaries in `plan`; `in_view` when inside a view
    /// (whose relations are the definer's choice, so not checked against the principal).
    fn guard(
        &self,
        plan: LogicalPlan,
        principal: &super::Principal,
        in_view: bool,
    ) -> Result<Transformed<LogicalPlan>> {
        if let Some(b) = super::view::boundary(&plan) {
            if !in_view {
                check_select(principal, &b.view)?;
            }
            let input = b.input.clone();
            return Ok(Transformed::yes(self.guard(input, principal, true)?.data));
        }
        match plan {
            LogicalPlan::TableScan(scan) => {
                if !in_view && !is_catalog(&scan.table_name) {
                    check_select(principal, &Classification::key(&scan.table_name))?;
                }
                self.guard_scan(scan, principal)
            }
            other => other
                .map_children(|c| self.guard(c, principal, in_view))?
                .transform_data(|n| n.map_subqueries(|s| self.guard(s, principal, in_view))),
        }
    }
}

/// `pg_catalog` and `information_schema` describe the database; anyone may read them.
fn is_catalog(reference: &datafusion::common::TableReference) -> bool {
    matches!(
        reference.schema(),
        Some("pg_catalog" | "information_schema")
    )
}

/// SELECT on `relation`, or a 42501 error.
fn check_select(principal: &super::Principal, relation: &str) -> Result<()> {
    let catalog = ["pg_catalog.", "information_schema."]
        .iter()
        .any(|s| relation.starts_with(s));
    // The audit log and the erasure records are for superusers only, whatever was
    // granted.
    let audit = [
        super::audit::TABLE,
        super::erasure::TABLE,
        super::erasure::RECEIPTS,
    ]
    .iter()
    .any(|t| relation == format!("{}.{t}", crate::system::SYSTEM_SCHEMA));
    let allowed = match relation.strip_suffix("()") {
        // A table function (`FROM f(...)`): the right of access is exercised by whoever
        // may see personal data; tessera's identity functions (which read and write
        // identity state) are for superusers; DataFusion's own (generate_series) for all.
        Some(super::subject::FUNCTION) => principal.pii,
        Some(f) => !crate::identity::TABLE_FUNCTIONS.contains(&f),
        None => !audit && (catalog || principal.grants.covers(relation)),
    };
    if principal.superuser || allowed {
        return Ok(());
    }
    Err(super::denied(format!(
        "permission denied for table {relation} (role \"{}\" has no SELECT on it)",
        principal.name
    )))
}

impl AnalyzerRule for GuardRelations {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let principal = super::current();
        self.guard(plan, &principal, false).map(|t| t.data)
    }

    fn name(&self) -> &str {
        "guard_relations"
    }
}

/// The suppression list and the columns of a scan checked against it (index, check).
type ErasedColumns = (Arc<Suppression>, Vec<(usize, Check)>);

/// A table read with its classified columns masked and, in a purpose-bound session,
/// only the rows of people who consented to the purpose.
#[derive(Debug)]
pub struct GuardedTable {
    inner: Arc<dyn TableProvider>,
    /// The relation's name, for the audit log.
    relation: String,
    /// Its personal-data columns.
    classes: Arc<ColumnClasses>,
    /// Whether they are masked (the principal lacks the PII privilege).
    masked: bool,
    purpose: Option<String>,
    /// The suppression list and the columns checked against it (index, check), when
    /// the list has entries and the relation columns it can check.
    erased: Option<ErasedColumns>,
}

impl GuardedTable {
    /// Whether `filter` reads a masked column (and so must run above the mask).
    fn reads_masked(&self, filter: &Expr) -> bool {
        self.masked
            && filter
                .column_refs()
                .iter()
                .any(|c| self.classes.contains_key(&c.name))
    }
}

/// The expression a role without the PII privilege reads `name` (of type `t`, nullable
/// or not) through.
pub fn mask_expr(
    state: &dyn Session,
    name: &str,
    t: &DataType,
    nullable: bool,
    class: &PiiClass,
) -> Result<Expr> {
    let text = matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let function = if text {
        class.mask_function()
    } else {
        "redact"
    };
    if !text && !nullable {
        // A column that cannot be NULL reads as its type's zero value (0, 1970-01-01).
        return Ok(lit(ScalarValue::new_default(t)?));
    }
    let udf = state
        .scalar_functions()
        .get(function)
        .cloned()
        .ok_or_else(|| {
            datafusion::error::DataFusionError::Internal(format!(
                "masking function {function} is not registered"
            ))
        })?;
    Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
        udf,
        vec![col(Column::new_unqualified(name))],
    )))
}

/// A function registered on the session (the engine registers the ones used here).
fn function(state: &dyn Session, name: &str) -> Result<Arc<datafusion::logical_expr::ScalarUDF>> {
    state
        .scalar_functions()
        .get(name)
        .cloned()
        .ok_or_else(|| DataFusionError::Internal(format!("function {name} is not registered")))
}

#[async_trait]
impl TableProvider for GuardedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn get_logical_plan(&'_ self) -> Option<Cow<'_, LogicalPlan>> {
        None
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let passed: Vec<Expr> = filters
            .iter()
            .filter(|f| !self.reads_masked(f))
            .cloned()
            .collect();
        let all: Vec<usize> = (0..self.inner.schema().fields().len()).collect();
        let wanted = projection.unwrap_or(&all).clone();
        // The filters below need columns the query may not want (read after the wanted
        // ones, and dropped by the projection at the end), and run before any limit.
        let mut read = wanted.clone();
        let need = |i: usize, read: &mut Vec<usize>| {
            read.iter().position(|r| *r == i).unwrap_or_else(|| {
                read.push(i);
                read.len() - 1
            })
        };
        let key = match &self.purpose {
            Some(_) => Some(need(self.inner.schema().index_of(PERSON_KEY)?, &mut read)),
            None => None,
        };
        let erased: Option<ErasedColumns> = self.erased.as_ref().map(|(list, checks)| {
            let at = checks
                .iter()
                .map(|(i, c)| (need(*i, &mut read), *c))
                .collect();
            (list.clone(), at)
        });
        let filtered = key.is_some() || erased.is_some();
        let read_limit = if filtered { None } else { limit };
        let mut input = self
            .inner
            .scan(state, Some(&read), &passed, read_limit)
            .await?;
        let column = |i: usize, input: &Arc<dyn ExecutionPlan>| {
            col(Column::new_unqualified(input.schema().field(i).name()))
        };
        if let Some((list, at)) = erased {
            let udf = ScalarUDF::from(ErasedFunc::new(list, at.iter().map(|(_, c)| *c).collect()));
            let args = at.iter().map(|(i, _)| column(*i, &input)).collect();
            let erased = Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(udf), args));
            let keep = Expr::Not(Box::new(erased));
            let schema = DFSchema::try_from(input.schema().as_ref().clone())?;
            let predicate = state.create_physical_expr(keep, &schema)?;
            input = Arc::new(FilterExec::try_new(predicate, input)?);
        }
        if let (Some(key), Some(purpose)) = (key, &self.purpose) {
            let schema = DFSchema::try_from(input.schema().as_ref().clone())?;
            let udf = function(state, "consent_allows")?;
            let allows = Expr::ScalarFunction(ScalarFunction::new_udf(
                udf,
                vec![column(key, &input), lit(purpose.as_str())],
            ));
            let predicate = state.create_physical_expr(allows, &schema)?;
            input = Arc::new(FilterExec::try_new(predicate, input)?);
        }
        let schema = input.schema();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let exprs = schema
            .fields()
            .iter()
            .take(wanted.len())
            .map(|f| {
                let class = self.classes.get(f.name());
                if class.is_some() {
                    super::audit::note_read(&self.relation, f.name());
                }
                let logical = match class.filter(|_| self.masked) {
                    Some(class) => {
                        mask_expr(state, f.name(), f.data_type(), f.is_nullable(), class)?
                    }
                    None => col(Column::new_unqualified(f.name())),
                };
                let physical = state.create_physical_expr(logical, &df_schema)?;
                Ok((physical, f.name().clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        // A limit given to a scan is a hint the plan still applies above it, so the
        // filters may simply read on past it.
        input = Arc::new(ProjectionExec::try_new(exprs, input)?);
        Ok(input)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let inner = self.inner.supports_filters_pushdown(filters)?;
        Ok(filters
            .iter()
            .zip(inner)
            .map(|(f, p)| {
                if self.reads_masked(f) {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    p
                }
            })
            .collect())
    }
}
