//! `tessera.events`: the events received over HTTP, a Delta table under
//! `<data dir>/system/events`, one row per event, read-only to SQL.
//!
//! **Group commit.** Requests hand their events to one writer task through a queue and
//! wait. The writer takes everything queued (up to [`MAX_GROUP_EVENTS`]), drops the
//! duplicates, appends the rest as one Delta commit, then answers every request of the
//! group; while it commits, the next group gathers in the queue. A request is answered
//! only once its events are committed (or were already), so a `200` means stored.
//!
//! **Idempotency.** An event whose `(source, message_id)` is already stored is dropped,
//! so a retried event is stored once. The writer keeps a 128-bit hash of every stored
//! pair in memory (about 40 bytes per event), loaded from the table when it starts (a
//! scan of two columns) before it answers any request; hash collisions are negligible
//! (about 2^-64 at four billion events). Duplicates are detected across all time, with
//! no window, which costs that memory and start-up scan.
//!
//! **Compaction.** Each commit adds a data file, and every commit and scan pays for
//! every file (the Delta log replay). Every [`COMPACT_EVERY`] commits the writer starts a
//! compaction beside it (see `crate::storage::ManagedTable::compact`) that merges the
//! small files into files of up to [`COMPACT_TARGET_BYTES`]; at most once per
//! [`MERGED_FILES_KEPT`] it then deletes the files merged more than that long ago
//! (queries reading an older version may still need them).
//!
//! **Erasure.** Events about a person erased by `forget_subject` (an identifier of the
//! suppression list in `user_id`, `anonymous_id`, `previous_id` or the `email`/`phone`
//! of `traits`, `properties` or `context`) are dropped before the commit, and the request
//! is answered as if they were stored.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info};
use twox_hash::XxHash3_128;

use super::event::Event;
use crate::access::classes::{ColumnClasses, PiiClass};
use crate::access::erasure::Suppression;
use crate::engine::error::{EngineError, Result};
use crate::storage::ManagedTable;

const TABLE: &str = "events";
/// How many events one commit gathers at most (a single batch may go past it).
pub const MAX_GROUP_EVENTS: usize = 50_000;
/// Commits between two compactions.
pub const COMPACT_EVERY: u64 = 100;
/// The size up to which compaction merges data files.
pub const COMPACT_TARGET_BYTES: u64 = 32 << 20;
/// How long the files a compaction merged stay on disk.
pub const MERGED_FILES_KEPT: std::time::Duration = std::time::Duration::from_secs(3600);
/// Requests waiting for the writer before new ones wait to be queued.
const QUEUE: usize = 4096;

/// The columns of `tessera.events`.
pub fn schema() -> SchemaRef {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let time = |name: &str, nullable| {
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            nullable,
        )
    };
    Arc::new(Schema::new(vec![
        text("message_id", false),
        text("type", false),
        text("source", false),
        text("user_id", true),
        text("anonymous_id", true),
        text("event", true),
        text("name", true),
        text("group_id", true),
        text("previous_id", true),
        time("timestamp", false),
        time("sent_at", true),
        time("received_at", false),
        text("properties", true),
        text("traits", true),
        text("context", true),
    ]))
}

/// The personal-data classes of the columns (see `crate::access::classes`).
pub fn classes() -> ColumnClasses {
    [
        ("user_id", PiiClass::Id),
        ("anonymous_id", PiiClass::Id),
        ("previous_id", PiiClass::Id),
        ("traits", PiiClass::Other("json".into())),
        ("properties", PiiClass::Other("json".into())),
        ("context", PiiClass::Other("json".into())),
    ]
    .into_iter()
    .map(|(c, class)| (c.to_string(), class))
    .collect()
}

/// Why events were not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The writer is not running (the server is stopping, or the table could not be read).
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    /// The commit failed; nothing of the request was stored.
    #[error("could not store the events: {0}")]
    Failed(String),
}

struct Submission {
    source: Arc<str>,
    events: Vec<Event>,
    reply: oneshot::Sender<std::result::Result<(), StoreError>>,
}

/// The events table and the queue to its writer.
#[derive(Debug)]
pub struct EventLog {
    queue: mpsc::Sender<Submission>,
}

impl EventLog {
    /// Open the table in the data directory (creating it on first start), register it as
    /// `tessera.events` and start its writer.
    pub async fn open(
        ctx: &SessionContext,
        data_dir: &Path,
        suppression: Arc<Suppression>,
    ) -> Result<Self> {
        let table = crate::system::delta::open(ctx, data_dir, TABLE, schema()).await?;
        let (queue, requests) = mpsc::channel(QUEUE);
        tokio::spawn(write_events(table, requests, suppression));
        Ok(EventLog { queue })
    }

    /// Store `events` from `source`, all or none; returns once they are committed.
    /// Events already stored (same source and message id) are skipped.
    pub async fn store(
        &self,
        source: Arc<str>,
        events: Vec<Event>,
    ) -> std::result::Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the writer has stopped".into());
        self.queue
            .send(Submission {
                source,
                events,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The writer task: load the stored message ids, then commit the queue group by group.
async fn write_events(
    table: ManagedTable,
    mut requests: mpsc::Receiver<Submission>,
    suppression: Arc<Suppression>,
) {
    let classes = classes();
    let mut stored = match load_ids(&table).await {
        Ok(ids) => {
            info!(events = ids.len(), "event store ready");
            ids
        }
        Err(e) => {
            error!("cannot read tessera.events, refusing events: {e}");
            let reason = StoreError::Unavailable(format!("cannot read tessera.events: {e}"));
            while let Some(s) = requests.recv().await {
                let _ = s.reply.send(Err(reason.clone()));
            }
            return;
        }
    };
    let mut commits = 0u64;
    let mut compaction: Option<tokio::task::JoinHandle<()>> = None;
    let mut vacuumed = std::time::Instant::now();
    while let Some(first) = requests.recv().await {
        let mut count = first.events.len();
        let mut group = vec![first];
        while count < MAX_GROUP_EVENTS {
            match requests.try_recv() {
                Ok(s) => {
                    count += s.events.len();
                    group.push(s);
                }
                Err(_) => break,
            }
        }
        let mut fresh_ids = IdSet::default();
        let fresh: Vec<(&str, &Event)> = group
            .iter()
            .flat_map(|s| s.events.iter().map(|e| (&*s.source, e)))
            .filter(|(source, e)| {
                let id = message_key(source, &e.message_id);
                !stored.contains(&id) && fresh_ids.insert(id)
            })
            .collect();
        let started = std::time::Instant::now();
        let batch = to_batch(&fresh).and_then(|b| Ok(suppression.retain(b, &classes)?));
        let outcome = match batch {
            Ok(batch) if batch.num_rows() == 0 => Ok(()),
            Ok(batch) => table
                .append(vec![batch])
                .await
                .map(|_| ())
                .map_err(|e| StoreError::Failed(e.to_string())),
            Err(e) => Err(StoreError::Failed(e.to_string())),
        };
        match &outcome {
            Ok(()) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                debug!(
                    events = fresh.len(),
                    requests = group.len(),
                    ms,
                    "events committed"
                );
                stored.extend(fresh_ids);
                commits += 1;
                if commits.is_multiple_of(COMPACT_EVERY)
                    && compaction.as_ref().is_none_or(|c| c.is_finished())
                {
                    // A vacuum holds the write lock while it lists and deletes: at
                    // most one per MERGED_FILES_KEPT.
                    let vacuum = vacuumed.elapsed() >= MERGED_FILES_KEPT;
                    if vacuum {
                        vacuumed = std::time::Instant::now();
                    }
                    compaction = Some(tokio::spawn(compact(table.clone(), vacuum)));
                }
            }
            Err(e) => error!(events = fresh.len(), "{e}"),
        }
        for s in group {
            let _ = s.reply.send(outcome.clone());
        }
    }
}

/// Merge the table's small files, then (if `vacuum`) delete those merged long enough ago.
async fn compact(table: ManagedTable, vacuum: bool) {
    let started = std::time::Instant::now();
    match table.compact(COMPACT_TARGET_BYTES).await {
        Ok(c) => debug!(
            files_removed = c.files_removed,
            files_added = c.files_added,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "events compacted"
        ),
        Err(e) => error!("compacting tessera.events: {e}"),
    }
    if !vacuum {
        return;
    }
    if let Err(e) = table.vacuum(MERGED_FILES_KEPT).await {
        error!("deleting merged files of tessera.events: {e}");
    }
}

/// The key deduplication uses: a hash of the source and the message id.
fn message_key(source: &str, message_id: &str) -> u128 {
    let mut buf = Vec::with_capacity(source.len() + message_id.len() + 1);
    buf.extend_from_slice(source.as_bytes());
    buf.push(0);
    buf.extend_from_slice(message_id.as_bytes());
    XxHash3_128::oneshot(&buf)
}

/// The keys are hashes already: use their low bits as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
}

type IdSet = HashSet<u128, BuildHasherDefault<KeyHasher>>;

/// The keys of every stored event.
async fn load_ids(table: &ManagedTable) -> Result<IdSet> {
    let ctx = SessionContext::new();
    let mut stream = ctx
        .read_table(Arc::new(table.clone()))?
        .select_columns(&["source", "message_id"])?
        .execute_stream()
        .await?;
    let mut ids = IdSet::default();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        // Delta scans give string views: read them as plain strings.
        let text = |i: usize| -> Result<StringArray> {
            let column = cast(batch.column(i), &DataType::Utf8)
                .map_err(|e| EngineError::storage(TABLE, e))?;
            column
                .as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| EngineError::storage(TABLE, "source and message_id must be text"))
        };
        let (sources, message_ids) = (text(0)?, text(1)?);
        for (s, m) in sources.iter().zip(message_ids.iter()) {
            if let (Some(s), Some(m)) = (s, m) {
                ids.insert(message_key(s, m));
            }
        }
    }
    Ok(ids)
}

/// One record batch of `events` (with their sources), in the table's columns.
fn to_batch(events: &[(&str, &Event)]) -> Result<RecordBatch> {
    let text = |f: &dyn Fn(&str, &Event) -> Option<String>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(events.len(), events.len() * 16);
        for (source, e) in events {
            b.append_option(f(source, e));
        }
        Arc::new(b.finish())
    };
    let time = |f: &dyn Fn(&Event) -> Option<i64>| -> ArrayRef {
        let values: TimestampMicrosecondArray = events.iter().map(|(_, e)| f(e)).collect();
        Arc::new(values.with_timezone("UTC"))
    };
    let columns = vec![
        text(&|_, e| Some(e.message_id.clone())),
        text(&|_, e| Some(e.call.as_str().to_string())),
        text(&|s, _| Some(s.to_string())),
        text(&|_, e| e.user_id.clone()),
        text(&|_, e| e.anonymous_id.clone()),
        text(&|_, e| e.event.clone()),
        text(&|_, e| e.name.clone()),
        text(&|_, e| e.group_id.clone()),
        text(&|_, e| e.previous_id.clone()),
        time(&|e| Some(e.timestamp)),
        time(&|e| e.sent_at),
        time(&|e| Some(e.received_at)),
        text(&|_, e| e.properties.clone()),
        text(&|_, e| e.traits.clone()),
        text(&|_, e| e.context.clone()),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| EngineError::storage(TABLE, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::event::parse_batch;
    use crate::engine::Engine;
    use datafusion::arrow::util::display::array_value_to_string;

    fn events(ids: &[&str]) -> Vec<Event> {
        let items: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"type":"track","userId":"u","event":"e","messageId":"{id}"}}"#))
            .collect();
        let body = format!(r#"{{"batch":[{}]}}"#, items.join(","));
        parse_batch(body.as_bytes(), 1).expect("valid").events
    }

    async fn stored(ctx: &SessionContext) -> Vec<String> {
        let batches = crate::access::as_system(async {
            ctx.sql("SELECT source || ':' || message_id FROM tessera.events ORDER BY 1")
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run")
        })
        .await;
        batches
            .iter()
            .flat_map(|b| {
                (0..b.num_rows()).map(|i| array_value_to_string(b.column(0), i).expect("text"))
            })
            .collect()
    }

    #[tokio::test]
    async fn duplicates_are_stored_once_per_source_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path()).await.expect("open");
        let log = engine.collector().events();
        let (web, app): (Arc<str>, Arc<str>) = ("web".into(), "app".into());
        log.store(web.clone(), events(&["a", "b", "a"]))
            .await
            .expect("store");
        log.store(app.clone(), events(&["a"])).await.expect("store");
        let ctx = engine.session_context();
        assert_eq!(stored(&ctx).await, ["app:a", "web:a", "web:b"]);
        drop(engine);
        let engine = Engine::open(dir.path()).await.expect("reopen");
        let log = engine.collector().events();
        log.store(web, events(&["b", "c"])).await.expect("store");
        let ctx = engine.session_context();
        assert_eq!(stored(&ctx).await, ["app:a", "web:a", "web:b", "web:c"]);
    }
}
