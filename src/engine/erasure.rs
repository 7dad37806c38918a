//! `CALL forget_subject(id_type, id_value)`: the right to be forgotten.
//!
//! The person is found through `identity_lookup` (as `subject_access` finds them), and
//! then, on the engine's own account and one erasure at a time:
//! 1. their identifiers (every one the identity map links to them, and the one given)
//!    go, pseudonymised, onto the suppression list (`crate::access::erasure`): from
//!    then on every scan leaves their rows out, external sources included, and the
//!    event collector drops events about them;
//! 2. their rows are deleted from the managed tables (`CREATE TABLE` tables and the
//!    engine's `tessera.*` tables): rows with a listed identifier, or with their
//!    `unified_id`; each changed table is rewritten in one commit;
//! 3. every populated materialised view is refreshed (the list is one of their inputs,
//!    so none is skipped as unchanged), which recomputes them, identity resolution
//!    included, without the person; step 2 runs again for what the refresh recorded
//!    (`tessera.segment_changes`);
//! 4. the identity spaces drop the merges and refusals that name them;
//! 5. every managed table and materialised view forgets its history (old data files,
//!    log entries and checkpoints: `ManagedTable::forget_history`), so no deleted row,
//!    min/max statistic or predicate of theirs stays on disk; the deletes above never
//!    wrote a predicate with an identifier in the first place (tables are rewritten);
//! 6. the audit log's statements have their identifiers and personal values replaced
//!    by `[erased]` (and the log forgets its history too); the `CALL` itself is logged
//!    without its arguments;
//! 7. a receipt without personal data goes into `tessera.erasure_receipts`, and is the
//!    statement's one row.
//!
//! External sources are files the engine reads but does not own: they are not changed
//! (the receipt names those that hold rows about the person, for their owners to erase
//! there) and read without the person from then on. A failure stops the procedure with
//! an error and no receipt; everything done until then stays done (the person is on the
//! list from step 1), and calling it again finishes the work.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use tracing::info;

use super::error::{EngineError, Result};
use super::matview::table::MaterializedViewTable;
use super::source::SourceTable;
use super::Engine;
use crate::access::erasure::{normal_form, RECEIPTS};
use crate::access::mask::PERSON_KEY;
use crate::access::subject;
use crate::storage::ManagedTable;
use crate::system::delta::ReadOnlyTable;
use crate::system::SYSTEM_SCHEMA;

/// The columns `CALL forget_subject` answers with (one row).
pub const RESULT_COLUMNS: [&str; 5] = [
    "receipt_id",
    "identifiers",
    "rows_erased",
    "relations",
    "sources_suppressed",
];

/// Personal values shorter than this are not scrubbed from the audit log (they would
/// erase parts of every statement).
const MIN_TERM: usize = 3;

/// What an erasure did; also a row of `tessera.erasure_receipts`.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub receipt_id: String,
    pub erased_at_micros: i64,
    pub requested_by: String,
    pub id_type: String,
    /// The pseudonym of the identifier given (`pseudonymize` of its normal form).
    pub subject: String,
    /// Whether the identity map knew the person.
    pub found: bool,
    /// How many identifiers went onto the suppression list.
    pub identifiers: u64,
    pub rows_erased: u64,
    /// `relation rows, ...`: what was deleted where.
    pub relations: String,
    /// `source rows, ...`: the external sources holding rows about the person.
    pub sources_suppressed: String,
}

impl Receipt {
    /// The statement's row, in [`RESULT_COLUMNS`] order.
    pub fn row(&self) -> [String; 5] {
        [
            self.receipt_id.clone(),
            self.identifiers.to_string(),
            self.rows_erased.to_string(),
            self.relations.clone(),
            self.sources_suppressed.clone(),
        ]
    }

    fn batch(&self) -> datafusion::error::Result<RecordBatch> {
        let text = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        Ok(RecordBatch::try_new(
            receipts_schema(),
            vec![
                text(&self.receipt_id),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![self.erased_at_micros])
                        .with_timezone("UTC"),
                ),
                text(&self.requested_by),
                text(&self.id_type),
                text(&self.subject),
                Arc::new(BooleanArray::from(vec![self.found])),
                Arc::new(Int64Array::from(vec![self.identifiers as i64])),
                Arc::new(Int64Array::from(vec![self.rows_erased as i64])),
                text(&self.relations),
                text(&self.sources_suppressed),
            ],
        )?)
    }
}

/// The columns of `tessera.erasure_receipts`.
pub fn receipts_schema() -> SchemaRef {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let text = |n: &str| Field::new(n, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text("receipt_id"),
        Field::new("erased_at", utc, false),
        text("requested_by"),
        text("id_type"),
        text("subject"),
        Field::new("found", DataType::Boolean, false),
        Field::new("identifiers", DataType::Int64, false),
        Field::new("rows_erased", DataType::Int64, false),
        text("relations"),
        text("sources_suppressed"),
    ]))
}

/// Open (or create) `tessera.erasure_receipts`.
pub(super) async fn open_receipts(
    ctx: &SessionContext,
    data_dir: &std::path::Path,
) -> Result<ManagedTable> {
    crate::system::delta::open(ctx, data_dir, RECEIPTS, receipts_schema()).await
}

/// The relations an erasure works on, by the name SQL reads them by.
#[derive(Default)]
struct Inventory {
    /// Managed tables and the engine's tables that may hold personal data.
    tables: Vec<(String, ManagedTable)>,
    /// Materialised views: name, populated, stored result.
    views: Vec<(String, bool, ManagedTable)>,
    sources: BTreeSet<String>,
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

fn describe(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn receipt_id() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl Engine {
    /// `CALL forget_subject(id_type, id_value)` on behalf of `requested_by` (see the
    /// module's documentation).
    pub async fn forget_subject(
        &self,
        id_type: &str,
        id_value: &str,
        requested_by: &str,
    ) -> Result<Receipt> {
        let receipt = crate::access::as_system(self.forget(id_type, id_value, requested_by)).await;
        // Kept plans of relations the list had nothing to check in lack its filter.
        self.invalidate_plans();
        receipt
    }

    async fn forget(&self, id_type: &str, id_value: &str, requested_by: &str) -> Result<Receipt> {
        let _one_at_a_time = self.erasing.lock().await;
        let given = normal_form(id_type, id_value).ok_or_else(|| {
            EngineError::InvalidParameter(format!(
                "forget_subject: '{}' is not a valid {id_type}",
                id_value.replace('\'', "''")
            ))
        })?;
        // Without an identity model, only the identifier given can be suppressed.
        let person = if self.ctx.table_exist(subject::LOOKUP)? {
            subject::find(&self.ctx, id_type, id_value).await?
        } else {
            None
        };
        let mut ids: Vec<(String, String)> =
            person.as_ref().map(|p| p.ids.clone()).unwrap_or_default();
        ids.push((id_type.to_string(), given.clone()));
        ids.sort();
        ids.dedup();
        let unified_id = person.as_ref().map(|p| p.unified_id.clone());

        // What the audit log must lose: their identifiers, their unified id and the
        // personal values of their rows (read before the rows go).
        let mut terms: BTreeSet<String> = ids.iter().map(|(_, v)| v.clone()).collect();
        terms.insert(id_value.trim().to_string());
        terms.extend(unified_id.clone());
        let found = match &person {
            Some(p) => subject::rows_about(&self.ctx, &self.classes, p).await?,
            None => Vec::new(),
        };
        for (relation, lines) in &found {
            terms.extend(self.personal_values(relation, lines));
        }
        let inventory = self.inventory().await?;
        let mut erased: BTreeMap<String, u64> = BTreeMap::new();
        let mut sources: BTreeMap<String, u64> = BTreeMap::new();
        for (relation, lines) in &found {
            if inventory.sources.contains(relation) {
                sources.insert(relation.clone(), lines.len() as u64);
            } else if inventory.views.iter().any(|(v, _, _)| v == relation) {
                erased.insert(relation.clone(), lines.len() as u64);
            }
        }

        let receipt_id = receipt_id();
        // Their unified id is listed too (it never comes back: ids are not reused), so
        // that statements naming it are logged without it.
        let mut listed = ids.clone();
        listed.extend(unified_id.clone().map(|id| ("unified_id".to_string(), id)));
        self.suppression.add(&listed, &receipt_id).await?;
        self.erase_rows(&inventory, unified_id.as_deref(), &mut erased)
            .await?;
        for (view, populated, _) in &inventory.views {
            if *populated {
                self.refresh_materialized_view(view, true).await?;
            }
        }
        self.erase_rows(&inventory, unified_id.as_deref(), &mut erased)
            .await?;
        let values: HashSet<String> = ids.iter().map(|(_, v)| v.clone()).collect();
        let merges = self.identity.forget(&values, unified_id.as_deref()).await?;
        if merges > 0 {
            erased.insert("tessera.identity_merges/refusals".into(), merges);
        }
        for (_, table) in &inventory.tables {
            table.forget_history().await?;
        }
        for (_, _, table) in &inventory.views {
            table.forget_history().await?;
        }
        let terms: Vec<String> = terms
            .into_iter()
            .filter(|t| t.chars().count() >= MIN_TERM)
            .collect();
        let scrubbed = self.audit.scrub(&terms).await?;

        let receipt = Receipt {
            receipt_id,
            erased_at_micros: chrono::Utc::now().timestamp_micros(),
            requested_by: requested_by.to_string(),
            id_type: id_type.to_string(),
            subject: self.suppression.pseudonym(&given),
            found: person.is_some(),
            identifiers: ids.len() as u64,
            rows_erased: erased.values().sum(),
            relations: describe(&erased),
            sources_suppressed: describe(&sources),
        };
        self.receipts.append(vec![receipt.batch()?]).await?;
        info!(
            receipt = %receipt.receipt_id,
            rows = receipt.rows_erased,
            audit_entries_scrubbed = scrubbed,
            "subject erased"
        );
        Ok(receipt)
    }

    /// The string values of the personal-data columns of `relation` in `lines` (rows
    /// as JSON objects).
    fn personal_values(&self, relation: &str, lines: &[String]) -> Vec<String> {
        let Some(classes) = self.classes.get(relation) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for line in lines {
            if let Ok(serde_json::Value::Object(row)) = serde_json::from_str(line) {
                for column in classes.keys() {
                    if let Some(serde_json::Value::String(v)) = row.get(column) {
                        out.push(v.trim().to_string());
                    }
                }
            }
        }
        out
    }

    /// The managed tables, materialised views and external sources of the database.
    async fn inventory(&self) -> Result<Inventory> {
        let mut out = Inventory::default();
        // Tables holding no personal data that the erasure itself writes.
        let own = [
            crate::access::audit::TABLE,
            crate::access::erasure::TABLE,
            RECEIPTS,
        ];
        for (schema_name, prefix) in [(super::SCHEMA, ""), (SYSTEM_SCHEMA, "tessera.")] {
            let Some(schema) = self
                .ctx
                .catalog(super::DATABASE)
                .and_then(|c| c.schema(schema_name))
            else {
                continue;
            };
            for name in schema.table_names() {
                let Some(provider) = schema.table(&name).await? else {
                    continue;
                };
                let qualified = format!("{prefix}{name}");
                if let Some(t) = provider.downcast_ref::<ManagedTable>() {
                    out.tables.push((qualified, t.clone()));
                } else if let Some(t) = provider.downcast_ref::<ReadOnlyTable>() {
                    if !own.contains(&name.as_str()) {
                        out.tables.push((qualified, t.table().clone()));
                    }
                } else if let Some(v) = provider.downcast_ref::<MaterializedViewTable>() {
                    out.views
                        .push((qualified, v.is_populated(), v.data().clone()));
                } else if provider.is::<SourceTable>() {
                    out.sources.insert(qualified);
                }
            }
        }
        out.tables.sort_by(|a, b| a.0.cmp(&b.0));
        out.views.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Delete the erased person's rows from the managed tables: those the suppression
    /// list now leaves out of a scan, and those with their `unified_id`. A table with
    /// such rows is rewritten in one commit; the counts go into `erased`.
    async fn erase_rows(
        &self,
        inventory: &Inventory,
        unified_id: Option<&str>,
        erased: &mut BTreeMap<String, u64>,
    ) -> Result<()> {
        for (name, table) in &inventory.tables {
            let reference = subject::sql_reference(name);
            let keyed = table.schema().index_of(PERSON_KEY).is_ok();
            let kept = match unified_id {
                Some(id) if keyed => {
                    format!(
                        "SELECT * FROM {reference} WHERE {PERSON_KEY} IS DISTINCT FROM {}",
                        quote(id)
                    )
                }
                _ => format!("SELECT * FROM {reference}"),
            };
            let all = self
                .ctx
                .read_table(Arc::new(table.clone()))?
                .count()
                .await?;
            let keeping = self.ctx.sql(&kept).await?.count().await?;
            if keeping == all {
                continue;
            }
            let before = AtomicU64::new(0);
            let written = table
                .replace_with(async {
                    let rows = self
                        .ctx
                        .read_table(Arc::new(table.clone()))?
                        .count()
                        .await?;
                    before.store(rows as u64, Ordering::Relaxed);
                    Ok(self.ctx.sql(&kept).await?.collect().await?)
                })
                .await?;
            let gone = before.into_inner().saturating_sub(written);
            *erased.entry(name.clone()).or_default() += gone;
        }
        Ok(())
    }
}
