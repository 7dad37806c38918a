//! Which columns hold personal data, and how each is masked.
//!
//! A column is classified by its comment: `COMMENT ON COLUMN crm_contacts.email IS
//! 'pii:email'`. The class picks the mask a role without the PII privilege sees:
//! `pii:email` → `mask_email`, `pii:phone` → `mask_phone`, `pii:id` → `pseudonymize`,
//! `pii` or any other `pii:<label>` (`pii:name`, `pii:address`) → `redact`. Non-text
//! columns are always redacted.
//!
//! Materialised views store computed values, so their columns are classified by lineage
//! ([`derive`]): a column computed from classified columns takes their class (several
//! different classes make it `pii:derived`, redacted), except counts and booleans, which
//! reveal no value. Tables the engine owns (`tessera.events`) classify their own columns.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, TableReference};
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan};

use crate::system::SYSTEM_SCHEMA;

/// The class of one personal-data column.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiClass {
    Email,
    Phone,
    /// An identifier: pseudonymised, so it still joins and counts.
    Id,
    /// Anything else (`pii`, `pii:name`, ...): redacted. Holds the label after `pii:`.
    Other(String),
}

impl PiiClass {
    /// The class a column comment declares, if it declares one (`pii`, `pii:email`).
    pub fn from_comment(comment: &str) -> Option<PiiClass> {
        let c = comment.trim();
        let lower = c.to_ascii_lowercase();
        if lower == "pii" {
            return Some(PiiClass::Other(String::new()));
        }
        let label = lower.strip_prefix("pii:")?.trim();
        Some(match label {
            "email" => PiiClass::Email,
            "phone" => PiiClass::Phone,
            "id" => PiiClass::Id,
            other => PiiClass::Other(other.to_string()),
        })
    }

    /// The function that masks a text value of this class.
    pub fn mask_function(&self) -> &'static str {
        match self {
            PiiClass::Email => "mask_email",
            PiiClass::Phone => "mask_phone",
            PiiClass::Id => "pseudonymize",
            PiiClass::Other(_) => "redact",
        }
    }
}

impl std::fmt::Display for PiiClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PiiClass::Email => write!(f, "pii:email"),
            PiiClass::Phone => write!(f, "pii:phone"),
            PiiClass::Id => write!(f, "pii:id"),
            PiiClass::Other(l) if l.is_empty() => write!(f, "pii"),
            PiiClass::Other(l) => write!(f, "pii:{l}"),
        }
    }
}

/// Column name → class, for one relation.
pub type ColumnClasses = BTreeMap<String, PiiClass>;

/// The classes of every relation's columns, shared by the engine (which keeps it up to
/// date as relations and comments change) and the masking rule (which reads it).
#[derive(Debug, Default)]
pub struct Classification {
    relations: RwLock<HashMap<String, Arc<ColumnClasses>>>,
}

impl Classification {
    /// The key of a relation reference: its name, `tessera.<name>` in the system schema.
    pub fn key(reference: &TableReference) -> String {
        match reference.schema() {
            Some(SYSTEM_SCHEMA) => format!("{SYSTEM_SCHEMA}.{}", reference.table()),
            _ => reference.table().to_string(),
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<ColumnClasses>> {
        self.relations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Replace every relation's classes at once.
    pub fn replace(&self, relations: HashMap<String, Arc<ColumnClasses>>) {
        *self.relations.write().unwrap_or_else(|e| e.into_inner()) = relations;
    }
}

/// The classes of `plan`'s output columns, in schema order, given the classes of the
/// relations it scans (`scanned`).
pub fn derive(
    plan: &LogicalPlan,
    scanned: &dyn Fn(&TableReference) -> Option<Arc<ColumnClasses>>,
) -> Vec<Option<PiiClass>> {
    let fields = plan.schema().fields();
    let classes = derive_inner(plan, scanned);
    // Booleans reveal whether a condition held, never a value.
    classes
        .into_iter()
        .zip(fields.iter())
        .map(|(c, f)| {
            c.filter(|_| *f.data_type() != datafusion::arrow::datatypes::DataType::Boolean)
        })
        .collect()
}

fn derive_inner(
    plan: &LogicalPlan,
    scanned: &dyn Fn(&TableReference) -> Option<Arc<ColumnClasses>>,
) -> Vec<Option<PiiClass>> {
    let width = plan.schema().fields().len();
    let inputs: Vec<Vec<Option<PiiClass>>> =
        plan.inputs().iter().map(|i| derive(i, scanned)).collect();
    match plan {
        LogicalPlan::TableScan(scan) => {
            let classes = scanned(&scan.table_name);
            scan.projected_schema
                .fields()
                .iter()
                .map(|f| classes.as_ref().and_then(|c| c.get(f.name()).cloned()))
                .collect()
        }
        LogicalPlan::Projection(p) => exprs(&p.expr, &p.input, &inputs[0], scanned),
        LogicalPlan::Aggregate(a) => {
            let mut out = exprs(&a.group_expr, &a.input, &inputs[0], scanned);
            out.extend(exprs(&a.aggr_expr, &a.input, &inputs[0], scanned));
            out
        }
        LogicalPlan::Window(w) => {
            let mut out = inputs[0].clone();
            out.extend(exprs(&w.window_expr, &w.input, &inputs[0], scanned));
            out
        }
        LogicalPlan::Join(j) => match j.join_type {
            JoinType::LeftSemi | JoinType::LeftAnti => inputs[0].clone(),
            JoinType::RightSemi | JoinType::RightAnti => inputs[1].clone(),
            JoinType::LeftMark => {
                let mut out = inputs[0].clone();
                out.push(None);
                out
            }
            JoinType::RightMark => {
                let mut out = inputs[1].clone();
                out.push(None);
                out
            }
            _ => inputs.concat(),
        },
        LogicalPlan::Union(_) => (0..width)
            .map(|i| merge(inputs.iter().map(|cols| cols.get(i).cloned().flatten())))
            .collect(),
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Distinct(datafusion::logical_expr::Distinct::All(_))
        | LogicalPlan::Extension(_)
            if inputs.len() == 1 && inputs[0].len() == width =>
        {
            inputs[0].clone()
        }
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => vec![None; width],
        // Anything else: every output is as personal as everything that went in.
        _ => {
            let all = merge(inputs.iter().flatten().cloned());
            vec![all; width]
        }
    }
}

/// The classes of expressions over `input` whose own columns have `classes`.
fn exprs(
    list: &[Expr],
    input: &LogicalPlan,
    classes: &[Option<PiiClass>],
    scanned: &dyn Fn(&TableReference) -> Option<Arc<ColumnClasses>>,
) -> Vec<Option<PiiClass>> {
    list.iter()
        .map(|e| expr(e, input, classes, scanned))
        .collect()
}

fn expr(
    e: &Expr,
    input: &LogicalPlan,
    classes: &[Option<PiiClass>],
    scanned: &dyn Fn(&TableReference) -> Option<Arc<ColumnClasses>>,
) -> Option<PiiClass> {
    let mut found = Vec::new();
    let _ = e.apply(|node| {
        match node {
            // A count reveals how many, not what.
            Expr::AggregateFunction(f) if matches!(f.func.name(), "count" | "approx_distinct") => {
                return Ok(TreeNodeRecursion::Jump);
            }
            Expr::WindowFunction(w)
                if matches!(w.fun.name(), "count" | "row_number" | "rank" | "dense_rank") =>
            {
                return Ok(TreeNodeRecursion::Jump);
            }
            Expr::Column(c) => found.push(column(c, input, classes)),
            Expr::ScalarSubquery(s) => {
                found.push(derive(&s.subquery, scanned).into_iter().next().flatten())
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    merge(found.into_iter())
}

fn column(c: &Column, input: &LogicalPlan, classes: &[Option<PiiClass>]) -> Option<PiiClass> {
    input
        .schema()
        .index_of_column(c)
        .ok()
        .and_then(|i| classes.get(i).cloned().flatten())
}

/// One class for a value computed from values of `classes`.
fn merge(classes: impl Iterator<Item = Option<PiiClass>>) -> Option<PiiClass> {
    let mut found: Option<PiiClass> = None;
    for c in classes.flatten() {
        found = match found {
            None => Some(c),
            Some(f) if f == c => Some(f),
            Some(_) => return Some(PiiClass::Other("derived".into())),
        };
    }
    found
}
