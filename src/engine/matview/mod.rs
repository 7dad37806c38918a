//! Materialised views: `CREATE MATERIALIZED VIEW`, `REFRESH MATERIALIZED VIEW`, `DROP
//! MATERIALIZED VIEW`, in PostgreSQL's syntax.
//!
//! A materialised view is a catalog entry (kind `materialized_view`) holding its
//! `CREATE MATERIALIZED VIEW` statement, the directory of its stored result and its
//! [`RefreshState`]; the result is a Delta table under `<data dir>/matviews/`, written
//! with the same storage code as managed tables.
//!
//! - [`parse`] reads the statements DataFusion does not run;
//! - [`table`] is the view's `TableProvider`: its Delta table, read-only, refusing reads
//!   while unpopulated;
//! - [`inputs`] finds what a view's query reads and a version of each input;
//! - [`refresh`] creates and refreshes views: a refresh runs the query and replaces the
//!   whole result in one Delta commit, so readers see the old rows until it lands and a
//!   failed refresh leaves them in place. Refreshes of one view are serialised by a lock
//!   of that view; input materialised views are refreshed first; a refresh whose inputs
//!   all have the versions recorded by the last one does nothing;
//! - [`incremental`] refreshes a view grouped by a key after appends to its inputs by
//!   recomputing only the keys the new rows reach ([`merge`]: or merging the aggregate
//!   of the new rows into their stored rows), and [`overlay`] keeps their rows beside
//!   the stored result until the next full write;
//! - [`schedule`] runs the refreshes of views created `WITH (refresh_interval = ...)`;
//! - [`resident`] keeps views with lookup keys (`ORDER BY` columns) in memory, sorted,
//!   and answers their key lookups by binary search;
//! - [`segments`] records who entered and left a segment (a view created
//!   `WITH (segment = true)`) at each refresh, in `tessera.segment_changes`.
//!
//! `tessera.materialized_views` shows every view's definition and refresh state;
//! `pg_matviews` and `pg_class` (relkind `m`, for psql's `\dm`) are derived from it.

mod append;
mod diff;
mod incremental;
pub mod inputs;
mod merge;
pub mod overlay;
pub mod parse;
mod refresh;
pub mod resident;
pub mod schedule;
pub mod segments;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use super::catalog::{Catalog, RelationKind};
use crate::system::{register_system_table, SnapshotTable};
pub use parse::{CreateMaterializedView, Definition};
pub use schedule::spawn_scheduler;
use table::MaterializedViewTable;

/// What the last refresh of a view did, kept in its catalog entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshState {
    /// Whether the view holds a result (false after `WITH NO DATA`).
    pub populated: bool,
    /// Rows in the stored result.
    pub rows: u64,
    /// Delta version of the stored result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The version of every input when the stored result was computed (see [`inputs`]).
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// The files of each local file source among the inputs, as read then: files added
    /// since are the rows appended to it (see [`incremental`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, Vec<crate::engine::source::SourceFile>>,
    /// When the stored result was computed (microseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh: Option<i64>,
    /// When a refresh last ran, whatever its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<i64>,
    /// How long the last refresh that ran the query took (one that found the inputs
    /// unchanged leaves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub status: Status,
    /// The error of the last refresh, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// How many keys the last refresh that ran recomputed, when it recomputed only the
    /// groups appended rows reached ([`incremental`]), or how many rows it appended to
    /// a view with no key ([`append`]); `None` when it recomputed all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental_keys: Option<u64>,
    /// The number of the view's overlay when the stored result was computed (`None`:
    /// none applied). An overlay that is not this one (written by a refresh whose
    /// outcome was never recorded) makes the next refresh recompute the whole view:
    /// merging the same appended rows again would count them twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<u64>,
    /// A fingerprint of the view's optimised plan (the plain views it reads expanded)
    /// when the stored result was computed: a plain view redefined since makes the
    /// next refresh recompute everything, whatever the inputs' versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// The outcome of a view's last refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created `WITH NO DATA` or refreshed `WITH NO DATA`.
    #[default]
    Unpopulated,
    /// The query ran and its result was stored.
    Refreshed,
    /// No input had changed since the stored result was computed: nothing ran.
    UpToDate,
    /// The query or the commit failed; the previous result is kept.
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Unpopulated => "unpopulated",
            Status::Refreshed => "refreshed",
            Status::UpToDate => "up to date",
            Status::Failed => "failed",
        }
    }
}

/// Microseconds since the Unix epoch.
fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

/// A view being served: its provider, where its result lives, and what its refreshes
/// share.
#[derive(Debug)]
struct Runtime {
    table: Arc<MaterializedViewTable>,
    /// The result's directory, relative to the data directory; tells this view from a
    /// later one of the same name.
    location: String,
    /// Held for the whole of a refresh (and by DROP before it removes the directory).
    lock: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
    interval: Option<Duration>,
    /// When the scheduler next refreshes the view; every refresh pushes it back.
    next_due: Mutex<Instant>,
    /// A scheduled refresh is queued or running.
    scheduled: AtomicBool,
}

impl Runtime {
    fn reschedule(&self) {
        if let Some(i) = self.interval {
            let mut due = self.next_due.lock().unwrap_or_else(|p| p.into_inner());
            *due = Instant::now() + i;
        }
    }
}

/// The materialised views being served, by name, and their system table.
#[derive(Debug)]
pub struct Registry {
    views: Mutex<HashMap<String, Arc<Runtime>>>,
    system: Arc<SnapshotTable>,
    segments: segments::SegmentChanges,
}

impl Registry {
    /// Register `tessera.materialized_views` (before `pg_catalog`, whose `pg_matviews`
    /// and `pg_class` read it) and `tessera.segment_changes`.
    pub async fn new(ctx: &SessionContext, data_dir: &Path) -> crate::engine::Result<Self> {
        let system = Arc::new(SnapshotTable::new(system_schema()));
        register_system_table(ctx, "materialized_views", system.clone())?;
        let segments = segments::SegmentChanges::open(ctx, data_dir).await?;
        Ok(Registry {
            views: Mutex::new(HashMap::new()),
            system,
            segments,
        })
    }

    fn views(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Runtime>>> {
        self.views.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, name: &str) -> Option<Arc<Runtime>> {
        self.views().get(name).cloned()
    }

    fn insert(&self, runtime: Runtime) {
        let name = runtime.table.name().to_string();
        self.views().insert(name, Arc::new(runtime));
    }

    fn remove(&self, name: &str) -> Option<Arc<Runtime>> {
        self.views().remove(name)
    }

    /// Views whose scheduled refresh is due, marked as scheduled.
    fn due(&self, now: Instant) -> Vec<Arc<Runtime>> {
        self.views()
            .values()
            .filter(|r| r.interval.is_some())
            .filter(|r| *r.next_due.lock().unwrap_or_else(|p| p.into_inner()) <= now)
            .filter(|r| !r.scheduled.swap(true, Ordering::AcqRel))
            .cloned()
            .collect()
    }

    /// Rebuild `tessera.materialized_views` from the catalog.
    fn publish(&self, catalog: &Catalog) -> datafusion::error::Result<()> {
        let views = self.views();
        let mut rows = Rows::default();
        for e in catalog
            .entries()
            .iter()
            .filter(|e| e.kind == RelationKind::MaterializedView)
        {
            let state = e.refresh.clone().unwrap_or_default();
            let definition = Definition::parse(&e.sql).ok();
            let refreshing = views
                .get(&e.name)
                .is_some_and(|r| r.refreshing.load(Ordering::Acquire));
            rows.name.push(Some(e.name.clone()));
            rows.definition.push(Some(
                definition
                    .as_ref()
                    .map_or_else(|| e.sql.clone(), |d| d.query.to_string()),
            ));
            rows.populated.push(Some(state.populated));
            rows.rows.push(Some(state.rows as i64));
            rows.status.push(Some(
                if refreshing {
                    "refreshing"
                } else {
                    state.status.as_str()
                }
                .to_string(),
            ));
            rows.last_refresh.push(state.last_refresh);
            rows.last_attempt.push(state.last_attempt);
            rows.duration_ms.push(state.duration_ms.map(|d| d as i64));
            rows.last_error.push(state.last_error.clone());
            rows.segment
                .push(Some(definition.as_ref().is_some_and(|d| d.segment)));
            rows.refresh_interval.push(
                definition
                    .and_then(|d| d.refresh_interval)
                    .map(|(_, text)| text),
            );
            rows.version.push(state.version.map(|v| v as i64));
            rows.inputs.push(Some(inputs::describe(&state.inputs)));
            rows.incremental_keys
                .push(state.incremental_keys.map(|k| k as i64));
        }
        self.system.set(rows.batch(self.system.schema_ref())?);
        Ok(())
    }
}

fn system_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("definition", DataType::Utf8, false),
        Field::new("populated", DataType::Boolean, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("last_refresh", ts(), true),
        Field::new("last_attempt", ts(), true),
        Field::new("duration_ms", DataType::Int64, true),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("refresh_interval", DataType::Utf8, true),
        Field::new("segment", DataType::Boolean, false),
        Field::new("version", DataType::Int64, true),
        Field::new("inputs", DataType::Utf8, false),
        Field::new("incremental_keys", DataType::Int64, true),
    ]))
}

/// The columns of `tessera.materialized_views`, filled row by row.
#[derive(Default)]
struct Rows {
    name: Vec<Option<String>>,
    definition: Vec<Option<String>>,
    populated: Vec<Option<bool>>,
    rows: Vec<Option<i64>>,
    status: Vec<Option<String>>,
    last_refresh: Vec<Option<i64>>,
    last_attempt: Vec<Option<i64>>,
    duration_ms: Vec<Option<i64>>,
    last_error: Vec<Option<String>>,
    refresh_interval: Vec<Option<String>>,
    segment: Vec<Option<bool>>,
    version: Vec<Option<i64>>,
    inputs: Vec<Option<String>>,
    incremental_keys: Vec<Option<i64>>,
}

impl Rows {
    fn batch(self, schema: SchemaRef) -> datafusion::error::Result<RecordBatch> {
        let ts = |v: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC"))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(self.name)),
            Arc::new(StringArray::from(self.definition)),
            Arc::new(BooleanArray::from(self.populated)),
            Arc::new(Int64Array::from(self.rows)),
            Arc::new(StringArray::from(self.status)),
            ts(self.last_refresh),
            ts(self.last_attempt),
            Arc::new(Int64Array::from(self.duration_ms)),
            Arc::new(StringArray::from(self.last_error)),
            Arc::new(StringArray::from(self.refresh_interval)),
            Arc::new(BooleanArray::from(self.segment)),
            Arc::new(Int64Array::from(self.version)),
            Arc::new(StringArray::from(self.inputs)),
            Arc::new(Int64Array::from(self.incremental_keys)),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}
