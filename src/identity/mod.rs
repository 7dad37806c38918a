//! Identity resolution: one persistent id per person across every source.
//!
//! - [`ingest`] builds the graph from the edges: rows hashed per input partition, records
//!   and identifiers deduplicated per radix partition, on all cores;
//! - [`graph`] links records that share identifiers with merge protection from
//!   [`rules`] (blocked values, per-type priorities and limits), after [`components`]
//!   found the connected components on every core;
//! - [`resolve`] turns a linked graph into output rows, keeping each person's previous
//!   id (the oldest one when profiles merge) and minting ids for new people;
//! - [`state`] persists the ids, merges and refusals per identity space (one space per
//!   edges relation) under `<data dir>/identity/`;
//! - [`function`] exposes it as the table functions `resolve_identities` and
//!   `explain_identity`; [`explain`] computes the latter;
//! - [`training`] and [`fellegi_sunter`] are probabilistic matching (`train_match_model`,
//!   `score_matches`) whose confident pairs become extra edges.
//!
//! The system tables `tessera.identity_merges`, `tessera.identity_refusals` and
//! `tessera.identity_spaces` show what the last runs did.

/// The identity table functions, in registration order: they read and write identity
/// state, so only superusers call them (see `crate::access::mask`).
pub const TABLE_FUNCTIONS: [&str; 4] = [
    "resolve_identities",
    "explain_identity",
    "train_match_model",
    "score_matches",
];

pub mod components;
pub mod explain;
pub mod fellegi_sunter;
pub mod function;
pub mod graph;
pub mod ingest;
pub mod resolve;
pub mod rules;
pub mod state;
pub mod training;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use datafusion::arrow::array::{
    Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{exec_datafusion_err, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::{collect, ExecutionPlan, ExecutionPlanProperties, Partitioning};
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tracing::{debug, info, warn};

use crate::engine::EngineError;
use crate::system::{register_system_table, SnapshotTable};
use rules::Rules;
use state::{space_dir, Meta, Records, SpaceState};

/// Identity spaces on disk and in the system tables.
#[derive(Debug)]
pub struct IdentityStore {
    root: PathBuf,
    /// One run at a time per space.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Every space's last state, without its record map.
    spaces: RwLock<BTreeMap<String, SpaceState>>,
    merges: Arc<SnapshotTable>,
    refusals: Arc<SnapshotTable>,
    summary: Arc<SnapshotTable>,
}

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn with_space(schema: &Schema) -> SchemaRef {
    let mut fields = vec![Field::new("identity_space", DataType::Utf8, false)];
    fields.extend(schema.fields().iter().map(|f| f.as_ref().clone()));
    Arc::new(Schema::new(fields))
}

fn refusals_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("identity_space", DataType::Utf8, false),
        Field::new("id_type", DataType::Utf8, false),
        Field::new("id_value", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("records", DataType::Int64, false),
        Field::new("refused_at", ts(), false),
    ]))
}

fn summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("identity_space", DataType::Utf8, false),
        Field::new("edges", DataType::Utf8, false),
        Field::new("rules", DataType::Utf8, true),
        Field::new("last_run", ts(), false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("records", DataType::Int64, false),
        Field::new("identifiers", DataType::Int64, false),
        Field::new("profiles", DataType::Int64, false),
    ]))
}

impl IdentityStore {
    /// Load the identity spaces under `<data_dir>/identity`, register the table
    /// functions and system tables on `ctx`.
    pub fn open(
        ctx: &SessionContext,
        data_dir: &Path,
    ) -> std::result::Result<Arc<Self>, EngineError> {
        let root = data_dir.join("identity");
        std::fs::create_dir_all(&root).map_err(|e| EngineError::io(&root, e))?;
        let mut spaces = BTreeMap::new();
        for entry in std::fs::read_dir(&root)
            .map_err(|e| EngineError::io(&root, e))?
            .flatten()
        {
            match SpaceState::load(&entry.path(), false) {
                Ok(Some(s)) => {
                    spaces.insert(s.meta.space.clone(), s);
                }
                Ok(None) => {}
                Err(e) => warn!("cannot load identity space {}: {e}", entry.path().display()),
            }
        }
        let merges_schema = with_space(&state::merges_schema());
        let store = Arc::new(IdentityStore {
            root,
            locks: Mutex::default(),
            spaces: RwLock::new(spaces),
            merges: Arc::new(SnapshotTable::new(merges_schema)),
            refusals: Arc::new(SnapshotTable::new(refusals_schema())),
            summary: Arc::new(SnapshotTable::new(summary_schema())),
        });
        register_system_table(ctx, "identity_merges", store.merges.clone())?;
        register_system_table(ctx, "identity_refusals", store.refusals.clone())?;
        register_system_table(ctx, "identity_spaces", store.summary.clone())?;
        ctx.register_udtf(
            TABLE_FUNCTIONS[0],
            Arc::new(function::ResolveIdentities {
                store: store.clone(),
            }),
        );
        ctx.register_udtf(
            TABLE_FUNCTIONS[1],
            Arc::new(function::ExplainIdentity {
                store: store.clone(),
            }),
        );
        ctx.register_udtf(TABLE_FUNCTIONS[2], Arc::new(function::TrainMatchModel));
        ctx.register_udtf(TABLE_FUNCTIONS[3], Arc::new(function::ScoreMatches));
        store.publish().map_err(EngineError::from)?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn meta(&self, space: &str) -> Option<Meta> {
        self.read_spaces().get(space).map(|s| s.meta.clone())
    }

    /// The space that issued `unified_id`, if any.
    pub fn space_of(&self, unified_id: &str) -> Option<String> {
        self.read_spaces()
            .values()
            .find(|s| {
                state::decode_id(unified_id, s.meta.salt).is_some_and(|seq| seq < s.meta.next_seq)
            })
            .map(|s| s.meta.space.clone())
    }

    fn refused_hashes(&self, space: &str) -> HashSet<u128> {
        self.read_spaces()
            .get(space)
            .map(|s| s.refusals.iter().map(|r| r.hash).collect())
            .unwrap_or_default()
    }

    fn read_spaces(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, SpaceState>> {
        self.spaces.read().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self, space: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(space.to_string()).or_default().clone()
    }

    /// One run of `resolve_identities` over the edges plan (`inputs[0]`) and the rules
    /// plan (`inputs[1]`, if any), returning `columns` of its result (indexes into
    /// [`resolve::output_schema`]) in the partitions of `layout`. The new state is
    /// durable before rows are returned.
    pub async fn run(
        self: &Arc<Self>,
        edges: &str,
        rules_name: Option<String>,
        inputs: Vec<Arc<dyn ExecutionPlan>>,
        context: Arc<TaskContext>,
        columns: &[usize],
        layout: resolve::Layout,
    ) -> Result<Vec<Vec<RecordBatch>>> {
        let columns = columns.to_vec();
        let started = Instant::now();
        let space = edges.to_string();
        let lock = self.lock(&space);
        let _guard = lock.lock().await;
        let dir = space_dir(&self.root, &space);
        let load_dir = dir.clone();
        // The previous state loads while the rules and edges are read.
        let loading = tokio::task::spawn_blocking(move || SpaceState::load(&load_dir, true));
        let rules = match (inputs.get(1), &rules_name) {
            (Some(plan), Some(name)) => {
                Rules::from_batches(name, &collect(plan.clone(), context.clone()).await?)?
            }
            _ => Rules::default(),
        };
        let chunks = read_chunks(inputs[0].clone(), context.clone()).await?;
        debug!(total = ?started.elapsed(), "resolve_identities: edges read");
        let previous = loading
            .await
            .map_err(|e| exec_datafusion_err!("resolve_identities: {e}"))??;
        let (mut meta, records, merges) = match previous {
            Some(p) => (p.meta, p.records, p.merges),
            None => (
                Meta {
                    salt: rand::random(),
                    ..Default::default()
                },
                Records::default(),
                Vec::new(),
            ),
        };
        meta.space = space.clone();
        meta.edges = edges.to_string();
        meta.rules = rules_name;
        let threads = context.session_config().target_partitions();
        let now = chrono::Utc::now().timestamp_micros();
        let (batches, mut state) = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            let graph = ingest::build(rules, chunks, &records, threads)?;
            drop(records);
            debug!(elapsed = ?t.elapsed(), "resolve_identities: built");
            let (output, mut state) = resolve::finish(graph, meta, merges, now)?;
            debug!(elapsed = ?t.elapsed(), "resolve_identities: linked");
            state.meta.duration_ms = started.elapsed().as_millis() as u64;
            // The state is saved while the rows are built; both must succeed.
            let (saved, batches) = std::thread::scope(|scope| {
                let saving = scope.spawn(|| {
                    let saved = state.save_deleting_later(&dir);
                    debug!(elapsed = ?t.elapsed(), "resolve_identities: saved");
                    saved
                });
                let batches = output.partitions(threads, &columns, layout);
                debug!(elapsed = ?t.elapsed(), "resolve_identities: rows built");
                (
                    saving
                        .join()
                        .unwrap_or_else(|e| std::panic::resume_unwind(e)),
                    batches,
                )
            });
            saved?;
            Ok::<_, datafusion::error::DataFusionError>((batches?, state))
        })
        .await
        .map_err(|e| exec_datafusion_err!("resolve_identities: {e}"))??;
        info!(
            space,
            records = state.meta.records,
            profiles = state.meta.profiles,
            ms = started.elapsed().as_millis() as u64,
            "resolve_identities"
        );
        state.records = Records::default();
        self.spaces
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(space, state);
        self.publish()?;
        Ok(batches)
    }

    /// Remove what the spaces keep about an erased person: the merges and refusals that
    /// name one of `values` (identifiers in normal form) or involve `unified_id`. Each
    /// changed space is saved as a new generation (the old one is deleted); returns how
    /// many rows went.
    pub async fn forget(&self, values: &HashSet<String>, unified_id: Option<&str>) -> Result<u64> {
        let names: Vec<String> = self.read_spaces().keys().cloned().collect();
        let mut removed = 0;
        for space in names {
            let lock = self.lock(&space);
            let _guard = lock.lock().await;
            let dir = space_dir(&self.root, &space);
            let values = values.clone();
            let unified_id = unified_id.map(str::to_string);
            let outcome = tokio::task::spawn_blocking(move || {
                let Some(mut state) = SpaceState::load(&dir, true)? else {
                    return Ok::<_, EngineError>(None);
                };
                let before = state.merges.len() + state.refusals.len();
                let theirs = |id: &str| unified_id.as_deref() == Some(id);
                state.merges.retain(|m| {
                    !(values.contains(&m.id_value)
                        || theirs(&m.merged_id)
                        || theirs(&m.surviving_id))
                });
                state.refusals.retain(|r| !values.contains(&r.id_value));
                let gone = before - state.merges.len() - state.refusals.len();
                if gone > 0 {
                    state.save(&dir)?;
                }
                state.records = Records::default();
                Ok(Some((state, gone as u64)))
            })
            .await
            .map_err(|e| exec_datafusion_err!("forget: {e}"))??;
            if let Some((state, gone)) = outcome {
                removed += gone;
                self.spaces
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(space, state);
            }
        }
        self.publish()?;
        Ok(removed)
    }

    /// Refresh the system tables from the spaces' states.
    fn publish(&self) -> Result<()> {
        let spaces = self.read_spaces();
        let mut merges = Vec::new();
        let mut refusals = Vec::new();
        let mut summary = Vec::new();
        for (name, s) in spaces.iter() {
            let label =
                |n: usize| Arc::new(StringArray::from(vec![name.as_str(); n])) as Arc<dyn Array>;
            let m = s.merges_batch()?;
            let mut cols = vec![label(m.num_rows())];
            cols.extend(m.columns().iter().cloned());
            merges.push(RecordBatch::try_new(self.merges.schema_ref(), cols)?);
            let r = &s.refusals;
            let text = |f: fn(&state::RefusalRow) -> &str| {
                Arc::new(r.iter().map(|x| Some(f(x))).collect::<StringArray>()) as Arc<dyn Array>
            };
            refusals.push(RecordBatch::try_new(
                refusals_schema(),
                vec![
                    label(r.len()),
                    text(|x| &x.id_type),
                    text(|x| &x.id_value),
                    text(|x| &x.reason),
                    Arc::new(r.iter().map(|x| x.records as i64).collect::<Int64Array>()),
                    Arc::new(
                        TimestampMicrosecondArray::from(
                            r.iter().map(|x| x.refused_at_micros).collect::<Vec<_>>(),
                        )
                        .with_timezone("UTC"),
                    ),
                ],
            )?);
            let m = &s.meta;
            summary.push(RecordBatch::try_new(
                summary_schema(),
                vec![
                    label(1),
                    Arc::new(StringArray::from(vec![m.edges.as_str()])),
                    Arc::new(StringArray::from(vec![m.rules.as_deref()])),
                    Arc::new(
                        TimestampMicrosecondArray::from(vec![m.run_at_micros]).with_timezone("UTC"),
                    ),
                    Arc::new(Int64Array::from(vec![m.duration_ms as i64])),
                    Arc::new(Int64Array::from(vec![m.records as i64])),
                    Arc::new(Int64Array::from(vec![m.identifiers as i64])),
                    Arc::new(Int64Array::from(vec![m.profiles as i64])),
                ],
            )?);
        }
        use datafusion::arrow::compute::concat_batches;
        self.merges
            .set(concat_batches(&self.merges.schema_ref(), &merges)?);
        self.refusals
            .set(concat_batches(&refusals_schema(), &refusals)?);
        self.summary
            .set(concat_batches(&summary_schema(), &summary)?);
        Ok(())
    }
}

/// Read the edges plan into one [`ingest::Chunk`] per partition, the partitions in
/// parallel (a plan with fewer partitions than the session's target is spread round
/// robin first).
async fn read_chunks(
    plan: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
) -> Result<Vec<ingest::Chunk>> {
    let threads = context.session_config().target_partitions().max(1);
    let plan: Arc<dyn ExecutionPlan> = if plan.output_partitioning().partition_count() < threads {
        Arc::new(RepartitionExec::try_new(
            plan,
            Partitioning::RoundRobinBatch(threads),
        )?)
    } else {
        plan
    };
    // Rows per partition, if the input knows its size (Parquet does).
    let partitions = plan.output_partitioning().partition_count();
    let expected = StatisticsContext::new()
        .compute(plan.as_ref(), &StatisticsArgs::new())
        .ok()
        .and_then(|s| s.num_rows.get_value().copied())
        .map_or(0, |rows| rows.div_ceil(partitions));
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..partitions {
        let mut stream = plan.execute(p, context.clone())?;
        tasks.spawn(async move {
            let mut chunk = ingest::Chunk::with_expected_rows(expected);
            while let Some(batch) = stream.next().await {
                chunk.ingest(&batch?)?;
            }
            Ok::<_, datafusion::error::DataFusionError>((p, chunk))
        });
    }
    let mut chunks = Vec::new();
    while let Some(done) = tasks.join_next().await {
        chunks.push(done.map_err(|e| exec_datafusion_err!("resolve_identities: {e}"))??);
    }
    chunks.sort_by_key(|(p, _)| *p);
    Ok(chunks.into_iter().map(|(_, c)| c).collect())
}
