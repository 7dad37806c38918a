//! The engine's side of privacy: column comments (`COMMENT ON COLUMN`), the personal-data
//! classes they give, kept in the [`Classification`] the masking rule reads, the classes
//! materialised views inherit from what they are computed from, and the installation's
//! pseudonymisation key.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::AsArray;
use datafusion::logical_expr::ScalarUDF;
use tracing::warn;

use super::catalog::RelationKind;
use super::error::{EngineError, Result};
use super::matview::Definition;
use super::{Engine, Outcome};
use crate::access::classes::{derive, ColumnClasses};
use crate::access::consent::CONSENT_RELATION;
use crate::access::{self, Classification, PiiClass};
use crate::system::SYSTEM_SCHEMA;

/// The key file of `pseudonymize`, in the data directory.
const KEY_FILE: &str = "pseudonym.key";

/// The installation's pseudonymisation key: 32 random bytes created at first start
/// (mode 0600), read back afterwards.
pub(super) fn pseudonym_key(data_dir: &Path) -> Result<[u8; 32]> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|b: Vec<u8>| EngineError::CorruptCatalog {
                path: path.clone(),
                reason: format!("a pseudonymisation key has 32 bytes, this file {}", b.len()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let tmp = path.with_extension("tmp");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
            f.write_all(&key).map_err(|e| EngineError::io(&tmp, e))?;
            f.sync_all().map_err(|e| EngineError::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| EngineError::io(&path, e))?;
            Ok(key)
        }
        Err(e) => Err(EngineError::io(&path, e)),
    }
}

/// `pseudonymize` under the installation's key.
pub(super) fn pseudonymize_udf(key: [u8; 32]) -> ScalarUDF {
    ScalarUDF::from(udfs::privacy::PseudonymizeFunc::new(key))
}

/// The classes of the tables the engine owns.
fn system_classes() -> HashMap<String, Arc<ColumnClasses>> {
    HashMap::from([(
        format!("{SYSTEM_SCHEMA}.events"),
        Arc::new(crate::collect::log::classes()),
    )])
}

impl Engine {
    /// `COMMENT ON COLUMN relation.column IS 'text' | NULL`.
    pub(super) async fn comment_on_column(
        &self,
        relation: &str,
        column: &str,
        comment: Option<String>,
    ) -> Result<Outcome> {
        let provider = self.table(relation).await?;
        if provider.schema().index_of(column).is_err() {
            return Err(EngineError::UndefinedColumn {
                relation: relation.to_string(),
                column: column.to_string(),
                detail: String::new(),
            });
        }
        let mut catalog = self.catalog.lock().await;
        let Some(entry) = catalog.get(relation) else {
            return Err(EngineError::ReadOnlySystemTable(relation.to_string()));
        };
        if entry.kind == RelationKind::View
            && comment
                .as_deref()
                .and_then(PiiClass::from_comment)
                .is_some()
        {
            return Err(EngineError::NotSupported(format!(
                "classifying a column of view \"{relation}\" (a view is masked through the \
                 relations it reads: classify their columns)"
            )));
        }
        catalog.update(|entries| {
            if let Some(e) = entries.iter_mut().find(|e| e.name == relation) {
                match comment {
                    Some(c) => e.comments.insert(column.to_string(), c),
                    None => e.comments.remove(column),
                };
            }
            Ok(())
        })?;
        drop(catalog);
        self.reclassify().await;
        Ok(Outcome::tag("COMMENT"))
    }

    /// Rebuild the classes of every relation: from column comments, and for materialised
    /// views also from the relations their definitions read (in catalog order, so a view
    /// over another view finds its classes). A definition that no longer plans keeps only
    /// its comments; the failure is logged.
    pub(super) async fn reclassify(&self) {
        let entries = self.catalog.lock().await.entries().to_vec();
        let mut classes = system_classes();
        for entry in &entries {
            let mut columns: ColumnClasses = entry
                .comments
                .iter()
                .filter_map(|(c, text)| PiiClass::from_comment(text).map(|k| (c.clone(), k)))
                .collect();
            if entry.kind == RelationKind::MaterializedView {
                match self.lineage(&entry.sql, &classes).await {
                    Ok(derived) => {
                        for (column, class) in derived {
                            columns.entry(column).or_insert(class);
                        }
                    }
                    Err(e) => warn!(relation = %entry.name, "cannot derive column classes: {e}"),
                }
            }
            if !columns.is_empty() {
                classes.insert(entry.name.clone(), Arc::new(columns));
            }
        }
        self.classes.replace(classes);
        self.invalidate_plans();
    }

    /// The classes a materialised view's columns inherit from its definition.
    async fn lineage(
        &self,
        sql: &str,
        known: &HashMap<String, Arc<ColumnClasses>>,
    ) -> Result<Vec<(String, PiiClass)>> {
        let def = Definition::parse(sql)?;
        let plan = access::as_system(self.plan_definition(&def)).await?;
        let scanned =
            |r: &datafusion::common::TableReference| known.get(&Classification::key(r)).cloned();
        Ok(plan
            .schema()
            .fields()
            .iter()
            .zip(derive(&plan, &scanned))
            .filter_map(|(f, c)| c.map(|c| (f.name().clone(), c)))
            .collect())
    }
}

impl Engine {
    /// Reload the consent index from `consent_state` (empty when there is none, or it
    /// has not been populated).
    pub(super) async fn reload_consent(&self) {
        let query = format!(
            "SELECT unified_id, purpose FROM {CONSENT_RELATION} \
             WHERE granted AND unified_id IS NOT NULL AND purpose IS NOT NULL"
        );
        let exists = self.ctx.table_exist(CONSENT_RELATION).unwrap_or(false);
        let batches = match exists {
            false => Ok(vec![]),
            true => {
                access::as_system(async {
                    match self.ctx.sql(&query).await {
                        Ok(df) => df.collect().await,
                        Err(e) => Err(e),
                    }
                })
                .await
            }
        };
        match batches {
            Ok(batches) => {
                let text = |c: &datafusion::arrow::array::ArrayRef| {
                    datafusion::arrow::compute::cast(
                        c,
                        &datafusion::arrow::datatypes::DataType::Utf8,
                    )
                };
                let mut columns = Vec::new();
                for b in &batches {
                    match (text(b.column(0)), text(b.column(1))) {
                        (Ok(ids), Ok(purposes)) => columns.push((ids, purposes)),
                        (Err(e), _) | (_, Err(e)) => {
                            warn!("cannot read {CONSENT_RELATION}, so no consent is recorded: {e}");
                            self.consent.replace(std::iter::empty());
                            return;
                        }
                    }
                }
                let mut pairs = Vec::new();
                for (ids, purposes) in &columns {
                    let ids = ids.as_string::<i32>();
                    let purposes = purposes.as_string::<i32>();
                    pairs.extend(ids.iter().zip(purposes.iter()).filter_map(|p| match p {
                        (Some(i), Some(p)) => Some((i, p)),
                        _ => None,
                    }));
                }
                self.consent.replace(pairs.into_iter());
            }
            // Not populated yet, or redefined without the columns: nobody consents.
            Err(e) => {
                warn!("cannot read {CONSENT_RELATION}, so no consent is recorded: {e}");
                self.consent.replace(std::iter::empty());
            }
        }
    }
}
