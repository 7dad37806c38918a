//! What a materialised view's query reads, and a version of each input, so that a
//! refresh whose inputs have not changed can skip the work.
//!
//! The inputs are found in the query's logical plan, through plain views (a view's plan
//! is walked in place of its scan) and subqueries:
//! - a managed table is versioned by its Delta version, a materialised view by that of
//!   its stored result and the number of its overlay (`v12+3`, see `super::overlay`);
//! - a local file source (CSV, JSON, Parquet) by the names, sizes and modification times
//!   of its files;
//! - anything else (object-store sources, system tables, table functions such as
//!   `resolve_identities`) has no version, nor has a query calling a function that is not
//!   immutable (`now()`, `random()`): such a view is recomputed on every refresh.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use twox_hash::XxHash3_128;

use super::table::MaterializedViewTable;
use crate::engine::source::SourceTable;
use crate::storage::ManagedTable;
use crate::system::delta::ReadOnlyTable;

/// The version recorded for an input that has none: never equal to a later one.
pub const UNVERSIONED: &str = "unversioned";

/// The relations a plan reads.
#[derive(Debug, Default)]
pub struct Inputs {
    /// (relation name, provider) for every base relation scanned.
    scans: Vec<(String, Arc<dyn TableProvider>)>,
    /// Functions the plan calls that may answer differently from one run to the next.
    unstable_functions: Vec<String>,
}

impl Inputs {
    pub fn of(plan: &LogicalPlan) -> Result<Self> {
        let mut inputs = Inputs::default();
        inputs.walk(plan)?;
        Ok(inputs)
    }

    fn walk(&mut self, plan: &LogicalPlan) -> Result<()> {
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                match scan.source.get_logical_plan() {
                    // A plain view: what matters is what it reads.
                    Some(view) => self.walk(&view)?,
                    None => {
                        if let Ok(provider) = source_as_provider(&scan.source) {
                            self.scans.push((scan.table_name.to_string(), provider));
                        } else {
                            self.unstable_functions
                                .push(format!("{} (not a table)", scan.table_name));
                        }
                    }
                }
            }
            node.apply_expressions(|e| {
                e.apply(|e| {
                    if let Expr::ScalarFunction(f) = e {
                        if f.func.signature().volatility != Volatility::Immutable {
                            self.unstable_functions.push(format!("{}()", f.name()));
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })?;
        Ok(())
    }

    /// The materialised views read, by name, each once.
    pub fn materialized_views(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .scans
            .iter()
            .filter_map(|(_, p)| p.downcast_ref::<MaterializedViewTable>())
            .map(|m| m.name().to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The Delta table behind input `name`, if it is one (see [`delta_table_of`]).
    pub fn delta_table(&self, name: &str) -> Option<&ManagedTable> {
        let (_, provider) = self.scans.iter().find(|(n, _)| n == name)?;
        delta_table_of(provider.as_ref())
    }

    /// The current version of every input, by relation (and unstable function).
    pub async fn versions(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, provider) in &self.scans {
            let version = if let Some(m) = provider.downcast_ref::<MaterializedViewTable>() {
                m.version_text()
                    .await
                    .unwrap_or_else(|| UNVERSIONED.to_string())
            } else if let Some(t) = delta_table_of(provider.as_ref()) {
                delta_version(t).await
            } else if let Some(s) = provider.downcast_ref::<SourceTable>() {
                files_version(s.listing_urls()).await
            } else {
                UNVERSIONED.to_string()
            };
            out.insert(name.clone(), version);
        }
        for f in &self.unstable_functions {
            out.insert(f.clone(), UNVERSIONED.to_string());
        }
        out
    }
}

/// The Delta table behind a provider: a managed table, a materialised view's result, or
/// one of the engine's own tables (`tessera.events`, ...).
fn delta_table_of(provider: &dyn TableProvider) -> Option<&ManagedTable> {
    if let Some(m) = provider.downcast_ref::<MaterializedViewTable>() {
        Some(m.data())
    } else if let Some(t) = provider.downcast_ref::<ManagedTable>() {
        Some(t)
    } else {
        provider.downcast_ref::<ReadOnlyTable>().map(|t| t.table())
    }
}

/// A fingerprint of an optimised plan (its text: relations, columns, expressions).
pub fn plan_fingerprint(plan: &LogicalPlan) -> String {
    let text = plan.display_indent().to_string();
    format!("{:032x}", XxHash3_128::oneshot(text.as_bytes()))
}

/// Whether every input has a version (so equal versions mean equal inputs).
pub fn all_versioned(versions: &BTreeMap<String, String>) -> bool {
    versions.values().all(|v| v != UNVERSIONED)
}

/// `orders v3, crm files:1f2e…`, for the system table.
pub fn describe(versions: &BTreeMap<String, String>) -> String {
    versions
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn delta_version(t: &ManagedTable) -> String {
    t.version()
        .await
        .map_or_else(|| UNVERSIONED.to_string(), |v| format!("v{v}"))
}

/// A hash of the names, sizes and modification times of a local source's files; a
/// source on an object store has no version.
async fn files_version(urls: Option<Vec<String>>) -> String {
    let Some(urls) = urls else {
        return UNVERSIONED.to_string();
    };
    let listing = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for u in &urls {
            let path = url::Url::parse(u)
                .ok()
                .filter(|u| u.scheme() == "file")
                .and_then(|u| u.to_file_path().ok())?;
            list_files(&path, &mut lines).ok()?;
        }
        lines.sort();
        Some(lines.join("\n"))
    })
    .await
    .ok()
    .flatten();
    match listing {
        Some(text) => format!("files:{:032x}", XxHash3_128::oneshot(text.as_bytes())),
        None => UNVERSIONED.to_string(),
    }
}

fn list_files(path: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            list_files(&entry?.path(), out)?;
        }
    } else {
        let modified = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        out.push(format!("{}\t{}\t{modified}", path.display(), meta.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_versions_follow_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.csv");
        std::fs::write(&file, "x\n1\n").expect("write");
        let url = url::Url::from_directory_path(dir.path())
            .expect("url")
            .to_string();
        let first = files_version(Some(vec![url.clone()])).await;
        assert!(first.starts_with("files:"), "{first}");
        assert_eq!(first, files_version(Some(vec![url.clone()])).await);
        std::fs::write(&file, "x\n1\n2\n").expect("rewrite");
        assert_ne!(first, files_version(Some(vec![url.clone()])).await);
        assert_eq!(files_version(None).await, UNVERSIONED);
        let remote = files_version(Some(vec!["s3://bucket/x.csv".into()])).await;
        assert_eq!(remote, UNVERSIONED);
    }

    #[tokio::test]
    async fn unstable_functions_make_a_plan_unversioned() {
        let ctx = datafusion::prelude::SessionContext::new();
        let plan = ctx
            .state()
            .create_logical_plan("SELECT now() AS t")
            .await
            .expect("plan");
        let versions = Inputs::of(&plan).expect("inputs").versions().await;
        assert!(!all_versioned(&versions), "{versions:?}");
        let plan = ctx
            .state()
            .create_logical_plan("SELECT abs(-1) AS t")
            .await
            .expect("plan");
        let versions = Inputs::of(&plan).expect("inputs").versions().await;
        assert!(
            all_versioned(&versions) && versions.is_empty(),
            "{versions:?}"
        );
    }
}
