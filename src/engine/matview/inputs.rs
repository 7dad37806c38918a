//! What a materialised view's query reads, and a version of each input, so that a
//! refresh whose inputs have not changed can skip the work.
//!
//! The inputs are found in the query's logical plan, through plain views (a view's plan
//! is walked in place of its scan) and subqueries:
//! - a managed table is versioned by its Delta version, a materialised view by that of
//!   its stored result and the number of its overlay (`v12+3`, see `super::overlay`);
//! - a local file source (CSV, JSON, Parquet) by the names, sizes and modification times
//!   of its files;
//! - `resolve_identities(...)` by the versions of the relations it reads (its edges and
//!   rules): a run over the same rows gives every record the same id;
//! - anything else (object-store sources, system tables, other table functions) has no
//!   version, nor has a query calling a function that is not immutable (`now()`,
//!   `random()`): such a view is recomputed on every refresh.
//!
//! A refresh reads managed tables, local file sources and materialised views without an
//! overlay as of the versions it records ([`Pinned`]): a commit or a file landing while
//! it runs is for the next refresh, which can then take the rows added since the
//! recorded version for the appended ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use twox_hash::XxHash3_128;

use super::overlay::Current;
use super::table::MaterializedViewTable;
use crate::engine::source::{SourceFile, SourceTable};
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
    /// Relations read inside a table function (`resolve_identities`' edges): the plan
    /// does not scan them itself, so their changes cannot be followed through it.
    hidden: Vec<String>,
    /// Whether the walk is inside such a function's relations.
    in_function: bool,
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
                            match crate::identity::function::relations_read(provider.as_ref()) {
                                // resolve_identities: what matters is what it reads.
                                Some(relations) => {
                                    let outer = std::mem::replace(&mut self.in_function, true);
                                    for (name, provider) in relations {
                                        match provider.get_logical_plan() {
                                            Some(view) => self.walk(&view)?,
                                            None => self.scan(name, provider),
                                        }
                                    }
                                    self.in_function = outer;
                                }
                                None => self.scan(scan.table_name.to_string(), provider),
                            }
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

    fn scan(&mut self, name: String, provider: Arc<dyn TableProvider>) {
        if self.in_function {
            self.hidden.push(name.clone());
        }
        self.scans.push((name, provider));
    }

    /// Whether relation `name` is read inside a table function (whose result the
    /// incremental paths cannot follow from its changed rows).
    pub fn is_hidden(&self, name: &str) -> bool {
        self.hidden.iter().any(|h| h == name)
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

    /// The materialised view read as input `name`, if it is one.
    pub fn materialized_view(&self, name: &str) -> Option<&MaterializedViewTable> {
        let (_, provider) = self.scans.iter().find(|(n, _)| n == name)?;
        provider.downcast_ref::<MaterializedViewTable>()
    }

    /// The file source read as input `name`, if it is one.
    pub fn source(&self, name: &str) -> Option<&SourceTable> {
        let (_, provider) = self.scans.iter().find(|(n, _)| n == name)?;
        provider.downcast_ref::<SourceTable>()
    }

    /// The current version of every input, by relation (and unstable function), with
    /// providers that read the managed tables and local file sources as of that version.
    pub async fn pin(&self, state: &dyn Session) -> Result<Pinned> {
        let mut pinned = Pinned::default();
        for (name, provider) in &self.scans {
            let version = if let Some(m) = provider.downcast_ref::<MaterializedViewTable>() {
                // Refreshed before this one (a later refresh may write it again while
                // this one runs: it is read as of now, when it has no overlay).
                match m.pinned() {
                    Some((current, version)) => {
                        pinned.providers.insert(name.clone(), Arc::new(current));
                        Some(format!("v{version}"))
                    }
                    None => m.version_text().await,
                }
            } else if let Some(t) = delta_table_of(provider.as_ref()) {
                let (snapshot, version) = t.pinned_snapshot();
                version.map(|v| {
                    pinned.providers.insert(name.clone(), snapshot);
                    format!("v{v}")
                })
            } else if let Some(s) = provider.downcast_ref::<SourceTable>() {
                match s.files(state).await? {
                    Some(files) => {
                        // No file yet: no row, rather than a file landing before the scan.
                        let reading: Arc<dyn TableProvider> = match s.reading(&files)? {
                            Some(reading) => Arc::new(reading),
                            None => Arc::new(EmptyTable::new(s.schema())),
                        };
                        pinned.providers.insert(name.clone(), reading);
                        let version = files_version(&files);
                        pinned.files.insert(name.clone(), files);
                        Some(version)
                    }
                    None => None,
                }
            } else {
                None
            };
            let version = version.unwrap_or_else(|| UNVERSIONED.to_string());
            pinned.versions.insert(name.clone(), version);
        }
        for f in &self.unstable_functions {
            pinned.versions.insert(f.clone(), UNVERSIONED.to_string());
        }
        Ok(pinned)
    }
}

/// The inputs of a refresh as it reads them (see [`Inputs::pin`]).
#[derive(Debug, Default)]
pub struct Pinned {
    /// The version of every input, by relation (and unstable function).
    pub versions: BTreeMap<String, String>,
    /// Providers reading managed tables, local file sources and materialised views (those
    /// without an overlay) as of their version:
    /// rows committed and files added after are left to the next refresh (which would
    /// otherwise take them for new and merge them a second time).
    providers: HashMap<String, Arc<dyn TableProvider>>,
    /// The files of each local file source.
    pub files: BTreeMap<String, Vec<SourceFile>>,
}

impl Pinned {
    /// `plan` (an optimised plan) with its scans of pinned inputs reading the pinned
    /// providers. (The relations' guards are put back when the plan is run: they go by
    /// the relation's name, see `crate::access::mask`.)
    pub fn apply(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        if self.providers.is_empty() {
            return Ok(plan);
        }
        plan.transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(mut scan) => {
                match self.providers.get(&scan.table_name.to_string()) {
                    Some(p) => {
                        scan.source = provider_as_source(p.clone());
                        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                    }
                    None => Ok(Transformed::no(LogicalPlan::TableScan(scan))),
                }
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    }

    /// The pinned provider of input `name`, if it has one.
    pub fn provider(&self, name: &str) -> Option<&Arc<dyn TableProvider>> {
        self.providers.get(name)
    }

    /// The snapshot of the Delta table behind input `name` as pinned (a managed table's,
    /// or a materialised view's stored result), for finding the rows it gained.
    pub fn snapshot(&self, name: &str) -> Option<&dyn TableProvider> {
        let provider = self.providers.get(name)?;
        Some(match provider.downcast_ref::<Current>() {
            Some(view) => view.snapshot.as_ref(),
            None => provider.as_ref(),
        })
    }
}

/// The files added to a source since an earlier listing (`before`) when the change
/// from `before` to `after` only added files; `None` if any file went or changed.
pub fn added_files(before: &[SourceFile], after: &[SourceFile]) -> Option<Vec<SourceFile>> {
    let now: HashMap<&str, &SourceFile> = after.iter().map(|f| (f.url.as_str(), f)).collect();
    if before.iter().any(|f| now.get(f.url.as_str()) != Some(&f)) {
        return None;
    }
    let known: std::collections::HashSet<&str> = before.iter().map(|f| f.url.as_str()).collect();
    Some(
        after
            .iter()
            .filter(|f| !known.contains(f.url.as_str()))
            .cloned()
            .collect(),
    )
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

/// A hash of the names, sizes and modification times of a local source's files.
fn files_version(files: &[SourceFile]) -> String {
    let text: String = files
        .iter()
        .map(|f| format!("{}\t{}\t{}\n", f.url, f.size, f.modified))
        .collect();
    format!("files:{:032x}", XxHash3_128::oneshot(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{CsvReadOptions, SessionContext};

    /// A source over directory `dir`, as `CREATE EXTERNAL TABLE` makes it.
    async fn source(ctx: &SessionContext, dir: &std::path::Path) -> SourceTable {
        let location = format!("{}/", dir.display());
        ctx.register_csv("s", &location, CsvReadOptions::new())
            .await
            .expect("register");
        let table = ctx
            .deregister_table("s")
            .expect("deregister")
            .expect("table");
        SourceTable::new(table, "s", &location)
    }

    #[tokio::test]
    async fn a_file_source_is_versioned_by_its_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.csv"), "x\n1\n").expect("write");
        // Without a cache of listings, as the engine (see `Engine::open_with`).
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_object_list_cache_limit(0)
            .build_arc()
            .expect("runtime");
        let ctx = SessionContext::new_with_config_rt(Default::default(), runtime);
        let source = source(&ctx, dir.path()).await;
        let state = ctx.state();
        let first = source.files(&state).await.expect("list").expect("local");
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(files_version(&first).starts_with("files:"));
        // Another kind of file, or one in a subdirectory, is not read, so not listed.
        std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
        std::fs::create_dir(dir.path().join("old")).expect("mkdir");
        std::fs::write(dir.path().join("old/z.csv"), "x\n9\n").expect("write");
        let same = source.files(&state).await.expect("list").expect("local");
        assert_eq!(files_version(&same), files_version(&first));
        // A new file is an addition; a changed or removed one is not.
        std::fs::write(dir.path().join("b.csv"), "x\n2\n3\n").expect("write");
        let second = source.files(&state).await.expect("list").expect("local");
        let added = added_files(&first, &second).expect("only added");
        assert_eq!(added.len(), 1);
        assert!(added[0].url.ends_with("/b.csv"), "{added:?}");
        let rows = ctx
            .read_table(Arc::new(
                source.reading(&added).expect("provider").expect("files"),
            ))
            .expect("read")
            .count()
            .await
            .expect("count");
        assert_eq!(rows, 2, "the added file's rows alone");
        std::fs::write(dir.path().join("a.csv"), "x\n1\n4\n").expect("rewrite");
        let third = source.files(&state).await.expect("list").expect("local");
        assert_ne!(files_version(&third), files_version(&second));
        assert_eq!(added_files(&second, &third), None);
        std::fs::remove_file(dir.path().join("b.csv")).expect("remove");
        let fourth = source.files(&state).await.expect("list").expect("local");
        assert_eq!(added_files(&third, &fourth), None);
        assert_eq!(added_files(&fourth, &fourth), Some(Vec::new()));
    }

    #[tokio::test]
    async fn a_pinned_plan_reads_its_inputs_as_of_their_version() {
        use datafusion::arrow::array::{Int64Array, RecordBatch};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch = |r: std::ops::Range<i64>| {
            let values = Int64Array::from(r.collect::<Vec<_>>());
            RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).expect("batch")
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let table = ManagedTable::create("t", dir.path(), schema.clone())
            .await
            .expect("create");
        table.append(vec![batch(0..3)]).await.expect("append");
        let ctx = SessionContext::new();
        ctx.register_table("t", Arc::new(table.clone()))
            .expect("register");
        let plan = ctx
            .state()
            .create_logical_plan("SELECT sum(n) AS s FROM t")
            .await
            .expect("plan");
        let optimized = ctx.state().optimize(&plan).expect("optimize");
        let inputs = Inputs::of(&plan).expect("inputs");
        let pinned = inputs.pin(&ctx.state()).await.expect("pin");
        let version = pinned.versions["t"].clone();
        // Rows committed while the refresh runs are not read by it...
        table.append(vec![batch(3..5)]).await.expect("append");
        let sum = |plan: LogicalPlan| {
            let ctx = ctx.clone();
            async move {
                let rows = ctx
                    .execute_logical_plan(plan)
                    .await
                    .expect("run")
                    .collect()
                    .await
                    .expect("collect");
                datafusion::arrow::util::pretty::pretty_format_batches(&rows)
                    .expect("format")
                    .to_string()
            }
        };
        let pinned_sum = sum(pinned.apply(optimized.clone()).expect("apply")).await;
        assert!(pinned_sum.contains("| 3 |"), "{pinned_sum}");
        assert!(sum(optimized).await.contains("| 10 |"));
        // ...but by the next one, as appended since the version recorded.
        let since = version.trim_start_matches('v').parse().expect("version");
        let later = inputs.pin(&ctx.state()).await.expect("pin");
        let until = later.provider("t").map(|p| p.as_ref());
        let Some(crate::storage::TableChange::Appended(appended)) =
            table.changed_since(since, until, 8).await.expect("changed")
        else {
            panic!("only appends");
        };
        let rows = ctx
            .read_table(appended)
            .expect("read")
            .count()
            .await
            .expect("count");
        assert_eq!(rows, 2);
    }

    #[tokio::test]
    async fn unstable_functions_make_a_plan_unversioned() {
        let ctx = SessionContext::new();
        let versions_of = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let plan = ctx.state().create_logical_plan(sql).await.expect("plan");
                let inputs = Inputs::of(&plan).expect("inputs");
                inputs.pin(&ctx.state()).await.expect("pin").versions
            }
        };
        let versions = versions_of("SELECT now() AS t").await;
        assert!(!all_versioned(&versions), "{versions:?}");
        let versions = versions_of("SELECT abs(-1) AS t").await;
        assert!(
            all_versioned(&versions) && versions.is_empty(),
            "{versions:?}"
        );
    }
}
