//! Creating, refreshing and forgetting materialised views (the engine's side).
//!
//! CREATE defines the view under the catalog lock (planning its query checks that what
//! it reads exists, 42P01 otherwise), creates its empty Delta table and registers it
//! unpopulated; unless `WITH NO DATA`, it is then filled by an ordinary refresh, and
//! dropped again if that refresh fails, so a failed CREATE leaves nothing.
//!
//! A refresh holds the view's own lock, not the catalog's, while its query runs: other
//! statements go on, and readers see the previous result until the overwrite commits.
//! Locks are taken from a view down to its inputs, which cannot form a cycle (a view can
//! only read what existed before it), so two refreshes never wait on each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{ObjectType, Statement};
use futures::future::BoxFuture;
use tracing::{debug, info, warn};

use super::inputs::{self, Inputs};
use super::merge::{Mergeable, STATE_PREFIX};
use super::overlay::Overlay;
use super::segments;
use super::table::MaterializedViewTable;
use super::{now_micros, CreateMaterializedView, Definition, RefreshState, Runtime, Status};
use crate::engine::catalog::{Catalog, Entry, RelationKind};
use crate::engine::error::{EngineError, Result};
use crate::engine::source::SourceFile;
use crate::engine::{bare, unique_suffix, upsert, Engine, Outcome};
use crate::storage::ManagedTable;

/// How long the files of a replaced result are kept for queries still reading it.
const RETAIN_OLD_RESULTS: Duration = Duration::from_secs(10 * 60);

/// The pseudo-input recording the size of the suppression list (see `forget_subject`).
const ERASURES: &str = "(erasures)";

/// Views read through views read through views...: deeper than this is a cycle.
const MAX_DEPTH: usize = 64;

/// What a refresh did.
pub(super) enum Refreshed {
    /// The query ran and its rows replaced the stored result (or, with `keys`, those of
    /// that many keys: see [`super::incremental`]; or were that many rows appended to
    /// it: see [`super::append`]).
    Written {
        rows: u64,
        version: Option<u64>,
        inputs: std::collections::BTreeMap<String, String>,
        /// The files of the local file sources read.
        files: std::collections::BTreeMap<String, Vec<SourceFile>>,
        keys: Option<u64>,
        /// The overlay's number after the refresh.
        overlay: Option<u64>,
        plan: String,
    },
    /// Every input had the version recorded last time: nothing ran.
    Unchanged { rows: u64 },
}

impl Engine {
    pub(in crate::engine) async fn create_materialized_view(
        &self,
        create: CreateMaterializedView,
    ) -> Result<Outcome> {
        let def = create.definition;
        let name = def.name.clone();
        {
            let mut catalog = self.catalog.lock().await;
            if self.exists_or_replace(
                &catalog,
                &name,
                create.if_not_exists,
                false,
                RelationKind::MaterializedView,
            )? {
                return Ok(Outcome::tag("CREATE MATERIALIZED VIEW"));
            }
            let plan = self.plan_definition(&def).await?;
            if def.segment
                && plan
                    .schema()
                    .field_with_unqualified_name(segments::MEMBER_COLUMN)
                    .is_err()
            {
                return Err(segments::missing_member_column(&name));
            }
            if let Some(key) = def
                .key
                .as_ref()
                .filter(|k| plan.schema().field_with_unqualified_name(k).is_err())
            {
                return Err(EngineError::UndefinedColumn {
                    relation: name.clone(),
                    column: key.clone(),
                    detail: " (the key of a materialized view is one of its columns)".into(),
                });
            }
            if let Some(f) = plan
                .schema()
                .fields()
                .iter()
                .find(|f| f.name().starts_with(STATE_PREFIX))
            {
                return Err(EngineError::NotSupported(format!(
                    "a materialized view column named \"{}\" (tessera keeps names starting with {STATE_PREFIX} for its own)",
                    f.name()
                )));
            }
            // A view whose aggregates merge stores their state after its columns.
            let plan = match (def.segment, self.ctx.state().optimize(&plan)) {
                (false, Ok(optimized)) => match Mergeable::stateful(&optimized) {
                    Ok(Some(stateful)) => stateful,
                    Ok(None) => plan,
                    Err(e) => {
                        warn!("materialized view \"{name}\" stores no merging state: {e}");
                        plan
                    }
                },
                _ => plan,
            };
            let fields: Vec<_> = plan
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect();
            let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
            let location = format!("matviews/{name}-{}", unique_suffix());
            let dir = self.data_dir.join(&location);
            let data = match ManagedTable::create(&name, &dir, schema).await {
                Ok(t) => t,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            };
            let state = RefreshState {
                version: data.version().await,
                ..RefreshState::default()
            };
            let entry = Entry {
                name: name.clone(),
                kind: RelationKind::MaterializedView,
                sql: def.sql.clone(),
                location: Some(location.clone()),
                primary_key: vec![],
                refresh: Some(state),
                comments: Default::default(),
                text_limits: Default::default(),
            };
            if let Err(e) = catalog.update(|entries| upsert(entries, entry)) {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
            self.serve_materialized_view(&def, data, location, false, None)?;
            self.publish_materialized_views(&catalog);
        }
        if !create.with_data {
            return Ok(Outcome::tag("CREATE MATERIALIZED VIEW"));
        }
        match self.refresh_materialized_view(&name, true).await {
            Ok(rows) => Ok(Outcome::rows("SELECT", rows)),
            Err(e) => {
                if let Err(undo) = self
                    .drop_relations(
                        ObjectType::MaterializedView,
                        vec![name.clone()],
                        true,
                        false,
                    )
                    .await
                {
                    warn!("materialized view \"{name}\" could not be filled and stays unpopulated: {undo}");
                }
                Err(e)
            }
        }
    }

    /// Register a view's provider and start tracking it (at CREATE and at start-up).
    fn serve_materialized_view(
        &self,
        def: &Definition,
        data: ManagedTable,
        location: String,
        populated: bool,
        last_attempt: Option<i64>,
    ) -> Result<()> {
        let (_, tag) = data.tagged_snapshot();
        let overlay = Overlay::open(&self.data_dir.join(&location), tag, &data.schema())?;
        let table = Arc::new(MaterializedViewTable::new(
            &def.name,
            &def.query.to_string(),
            data,
            overlay,
            populated,
            super::resident::lookup_keys(&def.query),
        ));
        self.ctx.register_table(bare(&def.name), table.clone())?;
        let interval = def.refresh_interval.as_ref().map(|(d, _)| *d);
        // A schedule carries on from the last refresh before a restart.
        let since_last = last_attempt
            .map(|t| Duration::from_micros(now_micros().saturating_sub(t).max(0) as u64))
            .unwrap_or_default();
        let next_due = Instant::now() + interval.unwrap_or_default().saturating_sub(since_last);
        self.matviews.insert(Runtime {
            table,
            location,
            lock: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
            interval,
            next_due: std::sync::Mutex::new(next_due),
            scheduled: AtomicBool::new(false),
        });
        Ok(())
    }

    /// Serve a materialised view of the catalog (at start-up).
    pub(in crate::engine) async fn restore_materialized_view(&self, entry: &Entry) -> Result<()> {
        let def = Definition::parse(&entry.sql)?;
        let location = entry.location.clone().unwrap_or_default();
        let data = ManagedTable::open(&entry.name, &self.data_dir.join(&location)).await?;
        let state = entry.refresh.clone().unwrap_or_default();
        self.serve_materialized_view(&def, data, location, state.populated, state.last_attempt)
    }

    /// Stop serving dropped views: wait for a refresh in progress, then remove the
    /// stored result, and a segment's history in `tessera.segment_changes` (a segment
    /// created again under that name starts a new history, everyone entering at its
    /// version 1). Called without the catalog lock (a refresh takes it to record its
    /// outcome).
    pub(in crate::engine) async fn forget_materialized_view(&self, name: &str) {
        if let Some(runtime) = self.matviews.remove(name) {
            let _running = runtime.lock.lock().await;
            runtime.table.release_memory();
        }
        if let Err(e) = self.matviews.segments.forget(&self.ctx, name).await {
            warn!("dropped materialized view \"{name}\" but could not delete its segment changes: {e}");
        }
    }

    /// `REFRESH MATERIALIZED VIEW name [WITH [NO] DATA]`; returns the rows it holds.
    ///
    /// The query runs on the engine's own account, whoever asked: the stored result is
    /// the same for every reader, and masked on the way out for those who may not see
    /// personal data (see `crate::access`).
    pub async fn refresh_materialized_view(&self, name: &str, with_data: bool) -> Result<u64> {
        crate::access::as_system(async {
            if with_data {
                self.refresh(name, 0).await
            } else {
                self.unpopulate(name).await.map(|()| 0)
            }
        })
        .await
    }

    /// The view of that name being served, or the error PostgreSQL gives.
    async fn runtime(&self, name: &str) -> Result<Arc<Runtime>> {
        if let Some(r) = self.matviews.get(name) {
            return Ok(r);
        }
        Err(match self.catalog.lock().await.get(name) {
            Some(e) if e.kind != RelationKind::MaterializedView => EngineError::WrongObjectType {
                name: name.to_string(),
                expected: "materialized view",
                actual: None,
            },
            _ => EngineError::UndefinedRelation(name.to_string()),
        })
    }

    fn refresh<'a>(&'a self, name: &'a str, depth: usize) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let runtime = self.runtime(name).await?;
            let _serialised = runtime.lock.lock().await;
            runtime.refreshing.store(true, Ordering::Release);
            self.publish_materialized_views(&*self.catalog.lock().await);
            let started = Instant::now();
            let attempt = now_micros();
            let outcome = self.compute(&runtime, depth).await;
            let duration_ms = started.elapsed().as_millis() as u64;
            let rows = match &outcome {
                Ok(Refreshed::Written { rows, .. }) => {
                    info!(view = %name, duration_ms, rows, "materialized view refreshed");
                    *rows
                }
                Ok(Refreshed::Unchanged { rows }) => {
                    debug!(view = %name, "materialized view up to date");
                    *rows
                }
                Err(_) => 0,
            };
            self.record(&runtime, |s| {
                s.last_attempt = Some(attempt);
                // A refresh that found nothing changed ran no query: the duration shown
                // stays that of the last one that did.
                if !matches!(outcome, Ok(Refreshed::Unchanged { .. })) {
                    s.duration_ms = Some(duration_ms);
                }
                match &outcome {
                    Ok(Refreshed::Written {
                        rows,
                        version,
                        inputs,
                        files,
                        keys,
                        overlay,
                        plan,
                    }) => {
                        s.files = files.clone();
                        s.incremental_keys = *keys;
                        s.overlay = *overlay;
                        s.plan = Some(plan.clone());
                        s.populated = true;
                        s.rows = *rows;
                        s.version = *version;
                        s.inputs = inputs.clone();
                        s.last_refresh = Some(attempt);
                        s.status = Status::Refreshed;
                        s.last_error = None;
                    }
                    Ok(Refreshed::Unchanged { .. }) => {
                        s.status = Status::UpToDate;
                        s.last_error = None;
                    }
                    Err(e) => {
                        s.status = Status::Failed;
                        s.last_error = Some(e.to_string());
                    }
                }
            })
            .await;
            runtime.refreshing.store(false, Ordering::Release);
            runtime.reschedule();
            if matches!(outcome, Ok(Refreshed::Written { .. })) {
                // The rows held in memory are of the replaced result (an erased person's
                // too): let them go now rather than at the view's next scan.
                runtime.table.release_memory();
                // A segment's new changes are final: its destinations deliver them.
                self.activation.changed();
            }
            if name == crate::access::consent::CONSENT_RELATION
                && matches!(outcome, Ok(Refreshed::Written { .. }))
            {
                self.reload_consent().await;
            }
            self.publish_materialized_views(&*self.catalog.lock().await);
            outcome.map(|_| rows).map_err(|e| EngineError::Refresh {
                name: name.to_string(),
                source: Box::new(e),
            })
        })
    }

    /// Bring the inputs up to date, then run the query and store its result (or find
    /// that nothing changed).
    async fn compute(&self, runtime: &Runtime, depth: usize) -> Result<Refreshed> {
        let name = runtime.table.name();
        if depth > MAX_DEPTH {
            return Err(EngineError::NotSupported(format!(
                "materialized views read through more than {MAX_DEPTH} others (\"{name}\")"
            )));
        }
        let entry = self
            .catalog
            .lock()
            .await
            .get(name)
            .filter(|e| e.location.as_deref() == Some(runtime.location.as_str()))
            .cloned()
            .ok_or_else(|| EngineError::UndefinedRelation(name.to_string()))?;
        let previous = entry.refresh.unwrap_or_default();
        let def = Definition::parse(&entry.sql)?;
        let plan = self.plan_definition(&def).await?;
        let inputs = Inputs::of(&plan)?;
        for input in inputs.materialized_views() {
            if input != name {
                self.refresh(&input, depth + 1).await?;
            }
        }
        let mut pinned = inputs.pin(&self.ctx.state()).await?;
        // The suppression list filters every scan: a view computed before an erasure is
        // out of date after it, whatever its inputs' versions.
        if !self.suppression.is_empty() {
            pinned
                .versions
                .insert(ERASURES.to_string(), self.suppression.len().to_string());
        }
        let versions = &pinned.versions;
        let optimized = self.ctx.state().optimize(&plan)?;
        let fingerprint = inputs::plan_fingerprint(&optimized);
        if previous.populated
            && runtime.table.is_populated()
            && previous.inputs == *versions
            && inputs::all_versioned(versions)
            && previous.plan.as_ref() == Some(&fingerprint)
            && previous.overlay == runtime.table.overlay_seq()
        {
            return Ok(Refreshed::Unchanged {
                rows: previous.rows,
            });
        }
        let stored: Vec<String> = runtime
            .table
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let computed: Vec<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        // A view that stores the state of its merging aggregates computes it too.
        let data_schema = runtime.table.data().schema();
        let stateful = data_schema.fields().len() > stored.len();
        let optimized = match stateful {
            false => Some(optimized),
            true => Mergeable::stateful(&optimized)?.filter(|p| {
                p.schema().fields().len() == data_schema.fields().len()
                    && p.schema()
                        .fields()
                        .iter()
                        .zip(data_schema.fields())
                        .all(|(a, b)| a.name() == b.name())
            }),
        };
        let Some(optimized) = optimized.filter(|_| stored == computed) else {
            return Err(EngineError::NotSupported(format!(
                "a result with other columns than those stored: the query of \"{name}\" now returns ({}), the view has ({}); drop it and create it again",
                computed.join(", "),
                stored.join(", ")
            )));
        };
        let optimized = pinned.apply(optimized)?;
        let incremental = if def.segment {
            Ok(None)
        } else {
            self.refresh_incrementally(
                runtime,
                &optimized,
                &fingerprint,
                &inputs,
                &previous,
                &pinned,
            )
            .await
        };
        match incremental {
            Ok(Some(done)) => return Ok(done),
            Ok(None) => {}
            Err(e) => {
                warn!("incremental refresh of materialized view \"{name}\" failed, recomputing it whole: {e}")
            }
        }
        // A view with a declared key: recomputed whole, but only the keys whose rows
        // changed are written. Not after an erasure: the erased person's rows must leave
        // the stored files, not only be hidden by the overlay.
        let erased = previous.inputs.get(ERASURES) != pinned.versions.get(ERASURES);
        if let Some(key) = def.key.as_ref().filter(|_| !erased) {
            let run = (&optimized, fingerprint.as_str(), &previous, &pinned);
            if let Some(done) = self.refresh_by_difference(runtime, run, key).await? {
                return Ok(done);
            }
        }
        let result = self.ctx.execute_logical_plan(optimized).await?;
        self.vacuum_old_results(runtime).await;
        let rows = if def.segment {
            // A segment's members are compared with the stored ones before the commit.
            let batches = result.collect().await?;
            self.record_segment_changes(runtime, &batches).await?;
            runtime.table.data().overwrite(batches).await?
        } else {
            // Written as computed: a view's result can be far larger than memory.
            let stream = result.execute_stream().await?;
            runtime.table.data().overwrite_stream(stream).await?
        };
        runtime.table.overlay().clear()?;
        runtime.table.set_populated(true);
        Ok(Refreshed::Written {
            rows,
            version: runtime.table.data().version().await,
            inputs: pinned.versions.clone(),
            files: pinned.files.clone(),
            keys: None,
            overlay: None,
            plan: fingerprint,
        })
    }

    /// Delete the results replaced more than RETAIN_OLD_RESULTS ago. Called before a
    /// commit, so that the version the new result gets is the one recorded with it.
    pub(super) async fn vacuum_old_results(&self, runtime: &Runtime) {
        let name = runtime.table.name();
        match runtime.table.data().vacuum(RETAIN_OLD_RESULTS).await {
            Ok(0) => {}
            Ok(files) => debug!(view = %name, files, "old results deleted"),
            Err(e) => warn!("cannot delete the old results of materialized view \"{name}\": {e}"),
        }
    }

    /// Record who entered and who left a segment: the members in `batches` against
    /// those stored, before the new result is committed (see [`segments`]).
    async fn record_segment_changes(
        &self,
        runtime: &Runtime,
        batches: &[RecordBatch],
    ) -> Result<()> {
        let name = runtime.table.name();
        let new = segments::members(batches, name)?;
        let data = runtime.table.data();
        let stored = self
            .ctx
            .read_table(Arc::new(data.clone()))?
            .select_columns(&[segments::MEMBER_COLUMN])?
            .collect()
            .await?;
        let old = segments::members(&stored, name)?;
        let next_version = data.version().await.map_or(0, |v| v + 1);
        let reached = self.last_result_version(name).await;
        let (entered, exited) = self
            .matviews
            .segments
            .record(
                &self.ctx,
                name,
                &old,
                &new,
                reached,
                next_version,
                now_micros(),
            )
            .await?;
        info!(segment = %name, entered, exited, "segment changes recorded");
        Ok(())
    }

    /// `REFRESH ... WITH NO DATA`: the view keeps its files but answers 55000 until the
    /// next refresh.
    async fn unpopulate(&self, name: &str) -> Result<()> {
        let runtime = self.runtime(name).await?;
        let _serialised = runtime.lock.lock().await;
        runtime.table.set_populated(false);
        self.record(&runtime, |s| {
            s.populated = false;
            s.rows = 0;
            s.inputs.clear();
            s.status = Status::Unpopulated;
            s.last_error = None;
        })
        .await;
        // The next refresh recomputes the whole view (recorded first: a view recorded
        // populated must keep its overlay).
        runtime.table.overlay().clear()?;
        self.publish_materialized_views(&*self.catalog.lock().await);
        Ok(())
    }

    /// Change the refresh state of the view in the catalog, unless it has been dropped
    /// meanwhile (or replaced by a new view of the same name).
    async fn record(&self, runtime: &Runtime, change: impl FnOnce(&mut RefreshState)) {
        let name = runtime.table.name();
        let mut catalog = self.catalog.lock().await;
        let current = catalog
            .get(name)
            .is_some_and(|e| e.location.as_deref() == Some(runtime.location.as_str()));
        if !current {
            return;
        }
        let saved = catalog.update(|entries| {
            if let Some(e) = entries.iter_mut().find(|e| e.name == name) {
                change(e.refresh.get_or_insert_with(RefreshState::default));
            }
            Ok(())
        });
        if let Err(e) = saved {
            warn!("cannot record the refresh of materialized view \"{name}\": {e}");
        }
    }

    /// The logical plan of a view's query, with the view's column names.
    pub(in crate::engine) async fn plan_definition(&self, def: &Definition) -> Result<LogicalPlan> {
        let query = Statement::Query(def.query.clone());
        let plan = self
            .ctx
            .state()
            .statement_to_plan(DFStatement::Statement(Box::new(query)))
            .await?;
        if def.columns.is_empty() {
            return Ok(plan);
        }
        let columns = plan.schema().columns();
        if def.columns.len() > columns.len() {
            return Err(EngineError::Syntax(format!(
                "too many column names were specified for materialized view \"{}\"",
                def.name
            )));
        }
        let exprs: Vec<Expr> = columns
            .into_iter()
            .enumerate()
            .map(|(i, c)| match def.columns.get(i) {
                Some(n) => Expr::Column(c).alias(n),
                None => Expr::Column(c),
            })
            .collect();
        Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
    }

    /// Refresh `tessera.materialized_views` from the catalog.
    pub(in crate::engine) fn publish_materialized_views(&self, catalog: &Catalog) {
        if let Err(e) = self.matviews.publish(catalog) {
            warn!("cannot publish materialized views: {e}");
        }
    }
}
