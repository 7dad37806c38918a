//! The table functions `resolve_identities(edges [, rules])`,
//! `explain_identity(unified_id [, edges])`,
//! `train_match_model(pairs, random [, fixed [, all pairs]])`
//! and `score_matches(pairs, model)`.
//!
//! All take relation names as string literals, resolved when the query is planned so
//! a missing relation or column is a plan error naming it. The work happens when the
//! plan runs: [`IdentityExec`] reads its input plans to the end, then computes.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::TableReference;
use datafusion::common::{plan_datafusion_err, DataFusionError, Result, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, PhysicalExpr, PhysicalSortExpr,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    collect, execute_stream, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties,
};
use futures::{FutureExt, StreamExt};

use super::graph::EDGE_COLUMNS;
use super::rules::Rules;
use super::{explain, fellegi_sunter, resolve, training, IdentityStore};
use crate::engine::EngineError;

fn engine_err(e: EngineError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A relation named in a table function's arguments, resolved at planning time.
#[derive(Debug, Clone)]
pub struct NamedRelation {
    /// The name as the identity space knows it (`identity_edges`, `crm.edges`).
    pub name: String,
    pub provider: Arc<dyn TableProvider>,
}

/// The string literal argument `i` of `function`.
pub(crate) fn literal_arg(
    function: &str,
    args: &[Expr],
    i: usize,
    what: &str,
) -> Result<Option<String>> {
    match args.get(i) {
        None => Ok(None),
        Some(Expr::Literal(ScalarValue::Utf8(Some(s)), _))
        | Some(Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _))
        | Some(Expr::Literal(ScalarValue::Utf8View(Some(s)), _)) => Ok(Some(s.clone())),
        Some(other) => Err(engine_err(EngineError::BadArgument(format!(
            "{function}: argument {} must be {what} as a string literal, got {other}",
            i + 1
        )))),
    }
}

/// Find relation `name` in the session's catalog.
pub fn resolve_relation(
    session: &dyn Session,
    function: &str,
    name: &str,
) -> Result<NamedRelation> {
    let state = session
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| plan_datafusion_err!("{function} needs a DataFusion session"))?;
    let reference = TableReference::parse_str(name);
    let options = state.config_options();
    let resolved = reference.clone().resolve(
        &options.catalog.default_catalog,
        &options.catalog.default_schema,
    );
    let missing = || engine_err(EngineError::UndefinedRelation(name.to_string()));
    let schema = state
        .schema_for_ref(reference.clone())
        .map_err(|_| missing())?;
    // Catalog lookups of tessera's schemas complete at once; anything else is refused
    // rather than blocking the planner.
    let provider = schema
        .table(&resolved.table)
        .now_or_never()
        .ok_or_else(|| {
            plan_datafusion_err!(
                "{function}: relation \"{name}\" cannot be looked up while planning"
            )
        })??
        .ok_or_else(missing)?;
    let is_default = *resolved.catalog == *options.catalog.default_catalog
        && *resolved.schema == *options.catalog.default_schema;
    let name = if is_default {
        resolved.table.to_string()
    } else {
        format!("{}.{}", resolved.schema, resolved.table)
    };
    Ok(NamedRelation { name, provider })
}

/// Check that `relation` has the edge columns, naming the first one missing.
pub fn check_edges(function: &str, relation: &NamedRelation) -> Result<Vec<usize>> {
    let schema = relation.provider.schema();
    EDGE_COLUMNS
        .iter()
        .map(|c| {
            schema.index_of(c).map_err(|_| {
                engine_err(EngineError::UndefinedColumn {
                    relation: relation.name.clone(),
                    column: c.to_string(),
                    detail: format!(
                        " ({function} needs an edges relation with columns {})",
                        EDGE_COLUMNS.join(", ")
                    ),
                })
            })
        })
        .collect()
}

/// `resolve_identities('<edges>' [, '<rules>'])`.
#[derive(Debug)]
pub struct ResolveIdentities {
    pub store: Arc<IdentityStore>,
}

impl TableFunctionImpl for ResolveIdentities {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = "resolve_identities";
        let exprs = args.exprs();
        if exprs.is_empty() || exprs.len() > 2 {
            return Err(engine_err(EngineError::BadCall(format!(
                "{F} takes one or two arguments: resolve_identities('<edges relation>' [, '<rules relation>'])"
            ))));
        }
        let edges_name =
            literal_arg(F, exprs, 0, "the name of the edges relation")?.unwrap_or_default();
        let edges = resolve_relation(args.session(), F, &edges_name)?;
        check_edges(F, &edges)?;
        let rules = match literal_arg(F, exprs, 1, "the name of the rules relation")? {
            None => None,
            Some(name) => {
                let rules = resolve_relation(args.session(), F, &name)?;
                Rules::check_schema(&rules.name, &rules.provider.schema())?;
                Some(rules)
            }
        };
        Ok(Arc::new(IdentityTable {
            job: Job::Resolve {
                store: self.store.clone(),
                edges,
                rules,
            },
        }))
    }
}

/// `explain_identity('<unified_id>' [, '<edges>'])`.
#[derive(Debug)]
pub struct ExplainIdentity {
    pub store: Arc<IdentityStore>,
}

impl TableFunctionImpl for ExplainIdentity {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = "explain_identity";
        let exprs = args.exprs();
        if exprs.is_empty() || exprs.len() > 2 {
            return Err(engine_err(EngineError::BadCall(format!(
                "{F} takes one or two arguments: explain_identity('<unified_id>' [, '<edges relation>'])"
            ))));
        }
        let unified_id = literal_arg(F, exprs, 0, "a unified_id")?.unwrap_or_default();
        let space = match literal_arg(F, exprs, 1, "the name of the edges relation")? {
            Some(name) => resolve_relation(args.session(), F, &name)?.name,
            None => self.store.space_of(&unified_id).ok_or_else(|| {
                plan_datafusion_err!(
                    "{F}: no identity space has issued unified_id '{unified_id}' (run resolve_identities first, or name the edges relation)"
                )
            })?,
        };
        let meta = self.store.meta(&space).ok_or_else(|| {
            plan_datafusion_err!("{F}: resolve_identities has not run on \"{space}\" yet")
        })?;
        let edges = resolve_relation(args.session(), F, &meta.edges)?;
        check_edges(F, &edges)?;
        let rules = match &meta.rules {
            Some(name) => Some(resolve_relation(args.session(), F, name)?),
            None => None,
        };
        Ok(Arc::new(IdentityTable {
            job: Job::Explain {
                store: self.store.clone(),
                space,
                unified_id,
                edges,
                rules,
            },
        }))
    }
}

/// How many pairs blocking chose from (`train_match_model`'s fourth argument).
#[derive(Debug, Clone)]
pub enum AllPairs {
    Count(f64),
    /// The records deduplicated: n(n-1)/2 pairs for n rows.
    Records(NamedRelation),
}

/// A relation a job reads, with the columns it needs (None: all).
type Input<'a> = (&'a NamedRelation, Option<Vec<usize>>);

/// What an [`IdentityTable`] computes.
#[derive(Debug, Clone)]
pub enum Job {
    Resolve {
        store: Arc<IdentityStore>,
        edges: NamedRelation,
        rules: Option<NamedRelation>,
    },
    Explain {
        store: Arc<IdentityStore>,
        space: String,
        unified_id: String,
        edges: NamedRelation,
        rules: Option<NamedRelation>,
    },
    Train {
        pairs: NamedRelation,
        random: NamedRelation,
        fixed: training::Fixed,
        all_pairs: Option<AllPairs>,
    },
    Score {
        pairs: NamedRelation,
        model: NamedRelation,
    },
}

impl Job {
    fn schema(&self) -> SchemaRef {
        match self {
            Job::Resolve { .. } => resolve::output_schema(),
            Job::Explain { .. } => explain::output_schema(),
            Job::Train { .. } => fellegi_sunter::model_schema(),
            Job::Score { .. } => fellegi_sunter::scores_schema(),
        }
    }

    /// The relations to read, each with the columns needed (None: all).
    fn inputs(&self) -> Result<Vec<Input<'_>>> {
        Ok(match self {
            Job::Resolve { edges, rules, .. } | Job::Explain { edges, rules, .. } => {
                let mut v = vec![(edges, Some(check_edges("resolve_identities", edges)?))];
                v.extend(rules.iter().map(|r| (r, None)));
                v
            }
            Job::Train {
                pairs,
                random,
                all_pairs,
                ..
            } => {
                // Only the comparisons (and the rule) are read.
                let wanted = |r: &NamedRelation| -> Vec<usize> {
                    let schema = r.provider.schema();
                    (0..schema.fields().len())
                        .filter(|i| {
                            let n = schema.field(*i).name();
                            n.starts_with("cmp_") || n == training::RULE
                        })
                        .collect()
                };
                let mut v = vec![(pairs, Some(wanted(pairs))), (random, Some(wanted(random)))];
                if let Some(AllPairs::Records(r)) = all_pairs {
                    v.push((r, Some(vec![])));
                }
                v
            }
            Job::Score { pairs, model } => vec![(pairs, None), (model, None)],
        })
    }
}

/// The relation a table function call stands for.
#[derive(Debug)]
struct IdentityTable {
    job: Job,
}

/// The relations (name, provider) a `resolve_identities` call reads, its edges and rules;
/// `None` for any other relation. Given the same rows, a run gives every record the id
/// the last run gave it, so a materialised view over the call is out of date only when
/// they change (or after an erasure, which a refresh checks apart).
pub fn relations_read(
    provider: &dyn TableProvider,
) -> Option<Vec<(String, Arc<dyn TableProvider>)>> {
    match &provider.downcast_ref::<IdentityTable>()?.job {
        Job::Resolve { edges, rules, .. } => Some(
            std::iter::once(edges)
                .chain(rules)
                .map(|r| (r.name.clone(), r.provider.clone()))
                .collect(),
        ),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for IdentityTable {
    fn schema(&self) -> SchemaRef {
        self.job.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut inputs = Vec::new();
        for (relation, columns) in self.job.inputs()? {
            inputs.push(
                relation
                    .provider
                    .scan(state, columns.as_ref(), &[], None)
                    .await?,
            );
        }
        Ok(Arc::new(IdentityExec::new(
            self.job.clone(),
            inputs,
            projection.cloned(),
            state.config().target_partitions(),
        )?))
    }
}

/// Runs a [`Job`] over its input plans (edges, then rules if any), returning the
/// columns of its result the query reads (`projection`; `None`: all).
///
/// A query reading only `unified_id` from `resolve_identities` gets it clustered
/// ([`resolve::Layout::Clustered`]): one partition per target partition, hash
/// partitioned and ordered by `unified_id`, and the planner is told so. Other queries
/// and jobs get one partition, in input order.
#[derive(Debug)]
pub struct IdentityExec {
    job: Job,
    inputs: Vec<Arc<dyn ExecutionPlan>>,
    projection: Option<Vec<usize>>,
    target_partitions: usize,
    layout: resolve::Layout,
    properties: Arc<PlanProperties>,
    runs: Arc<std::sync::Mutex<Runs>>,
}

/// A job's result: its batches per partition.
type Partitions = Arc<Vec<Vec<RecordBatch>>>;
type SharedRun = futures::future::Shared<
    futures::future::BoxFuture<'static, std::result::Result<Partitions, Arc<DataFusionError>>>,
>;

/// The run the partitions of one execution share. A partition asked for a second time,
/// or asked for in another task context, belongs to a new execution, which runs the job
/// again.
#[derive(Debug, Default)]
struct Runs {
    current: Option<SharedRunDebug>,
    /// The task context of the current run (weak: an identity, not an owner).
    context: std::sync::Weak<TaskContext>,
    taken: Vec<bool>,
}

/// [`SharedRun`], shown as a name in plan debugging output.
struct SharedRunDebug(SharedRun);

impl fmt::Debug for SharedRunDebug {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("SharedRun")
    }
}

impl IdentityExec {
    fn new(
        job: Job,
        inputs: Vec<Arc<dyn ExecutionPlan>>,
        projection: Option<Vec<usize>>,
        target_partitions: usize,
    ) -> Result<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(job.schema().project(p)?),
            None => job.schema(),
        };
        // resolve_identities read for `unified_id` alone.
        let ids_only = matches!(job, Job::Resolve { .. })
            && projection.as_deref() == Some(&[resolve::UNIFIED_ID]);
        let (layout, properties) = if ids_only {
            let parts = target_partitions.max(1);
            let id: Arc<dyn PhysicalExpr> = Arc::new(Column::new("unified_id", 0));
            let ordering = LexOrdering::new([PhysicalSortExpr::new(
                id.clone(),
                SortOptions {
                    descending: false,
                    nulls_first: false,
                },
            )]);
            (
                resolve::Layout::Clustered(parts),
                PlanProperties::new(
                    EquivalenceProperties::new_with_orderings(schema, ordering),
                    Partitioning::Hash(vec![id], parts),
                    EmissionType::Final,
                    Boundedness::Bounded,
                ),
            )
        } else {
            (
                resolve::Layout::Input,
                PlanProperties::new(
                    EquivalenceProperties::new(schema),
                    Partitioning::UnknownPartitioning(1),
                    EmissionType::Final,
                    Boundedness::Bounded,
                ),
            )
        };
        Ok(IdentityExec {
            job,
            inputs,
            projection,
            target_partitions,
            layout,
            properties: Arc::new(properties),
            runs: Arc::default(),
        })
    }

    /// The job's whole result, per partition.
    async fn run(
        job: Job,
        inputs: Vec<Arc<dyn ExecutionPlan>>,
        projection: Option<Vec<usize>>,
        layout: resolve::Layout,
        context: Arc<TaskContext>,
    ) -> Result<Vec<Vec<RecordBatch>>> {
        let batches = match job {
            Job::Resolve {
                store,
                edges,
                rules,
            } => {
                // Only the columns read are built (a count reads none).
                let columns = projection.clone().unwrap_or_else(|| vec![0, 1, 2]);
                return store
                    .run(
                        &edges.name,
                        rules.map(|r| r.name),
                        inputs,
                        context,
                        &columns,
                        layout,
                    )
                    .await;
            }
            Job::Explain {
                store,
                space,
                unified_id,
                ..
            } => explain::run(&store, &space, &unified_id, inputs, context).await,
            Job::Train {
                pairs,
                fixed,
                all_pairs,
                ..
            } => {
                let p = collect(inputs[0].clone(), context.clone()).await?;
                let r = collect(inputs[1].clone(), context.clone()).await?;
                let all_pairs = match all_pairs {
                    None => None,
                    Some(AllPairs::Count(n)) => Some(n),
                    Some(AllPairs::Records(_)) => {
                        let mut rows = 0f64;
                        let mut stream = execute_stream(inputs[2].clone(), context)?;
                        while let Some(b) = stream.next().await {
                            rows += b?.num_rows() as f64;
                        }
                        Some(rows * (rows - 1.0) / 2.0)
                    }
                };
                let model = tokio::task::spawn_blocking(move || {
                    training::train(&pairs.name, &p, &r, &fixed, all_pairs)
                })
                .await
                .map_err(|e| DataFusionError::Execution(format!("train_match_model: {e}")))??;
                Ok(vec![model])
            }
            Job::Score { model, .. } => {
                let m = collect(inputs[1].clone(), context.clone()).await?;
                let model = fellegi_sunter::Model::from_batches(&model.name, &m)?;
                let mut out = Vec::new();
                let mut stream = execute_stream(inputs[0].clone(), context)?;
                while let Some(batch) = stream.next().await {
                    out.push(fellegi_sunter::score(&model, &batch?)?);
                }
                Ok(out)
            }
        }?;
        Ok(vec![match &projection {
            Some(p) => batches
                .iter()
                .map(|b| Ok(b.project(p)?))
                .collect::<Result<Vec<_>>>()?,
            None => batches,
        }])
    }
}

impl DisplayAs for IdentityExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.job {
            Job::Resolve { edges, .. } => write!(f, "ResolveIdentitiesExec: edges={}", edges.name),
            Job::Explain {
                unified_id, space, ..
            } => write!(
                f,
                "ExplainIdentityExec: unified_id={unified_id} space={space}"
            ),
            Job::Train { pairs, random, .. } => {
                write!(
                    f,
                    "TrainMatchModelExec: pairs={} random={}",
                    pairs.name, random.name
                )
            }
            Job::Score { pairs, model } => {
                write!(
                    f,
                    "ScoreMatchesExec: pairs={} model={}",
                    pairs.name, model.name
                )
            }
        }
    }
}

impl ExecutionPlan for IdentityExec {
    fn name(&self) -> &str {
        "IdentityExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.inputs.iter().collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != self.inputs.len() {
            return Err(DataFusionError::Internal(
                "IdentityExec: wrong number of children".into(),
            ));
        }
        Ok(Arc::new(IdentityExec::new(
            self.job.clone(),
            children,
            self.projection.clone(),
            self.target_partitions,
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let parts = self.properties.partitioning.partition_count();
        if partition >= parts {
            return Err(DataFusionError::Internal(format!(
                "IdentityExec has {parts} partition(s), asked for {partition}"
            )));
        }
        let run = {
            let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            let same = std::sync::Weak::ptr_eq(&runs.context, &Arc::downgrade(&context));
            if runs.current.is_none() || runs.taken[partition] || !same {
                runs.context = Arc::downgrade(&context);
                let run = IdentityExec::run(
                    self.job.clone(),
                    self.inputs.clone(),
                    self.projection.clone(),
                    self.layout,
                    context,
                )
                .map(|r| r.map(Arc::new).map_err(Arc::new));
                runs.current = Some(SharedRunDebug(run.boxed().shared()));
                runs.taken = vec![false; parts];
            }
            runs.taken[partition] = true;
            let run = runs.current.as_ref().map(|r| r.0.clone());
            if runs.taken.iter().all(|t| *t) {
                // Every partition has its share: the streams hold the run from here.
                runs.current = None;
            }
            run.ok_or_else(|| DataFusionError::Internal("IdentityExec: no run".into()))?
        };
        let stream = futures::stream::once(run)
            .map(move |r| match r {
                Ok(parts) => futures::stream::iter(parts[partition].clone().into_iter().map(Ok))
                    .left_stream(),
                // The error itself if no other partition holds it; else shared.
                Err(e) => futures::stream::iter(vec![Err(
                    Arc::try_unwrap(e).unwrap_or_else(DataFusionError::Shared)
                )])
                .right_stream(),
            })
            .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

/// `train_match_model('<pairs>', '<random pairs>' [, '<fixed comparisons>' [, <all pairs>]])`.
#[derive(Debug)]
pub struct TrainMatchModel;

impl TableFunctionImpl for TrainMatchModel {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = "train_match_model";
        let exprs = args.exprs();
        if !(2..=4).contains(&exprs.len()) {
            return Err(engine_err(EngineError::BadCall(format!(
                "{F} takes two to four arguments: {F}('<pairs relation>', '<random pairs relation>' [, '<comparisons fixed by blocking: a, b or rule: a; rule: b>' [, <number of pairs blocking chose from, or '<records relation>'>]])"
            ))));
        }
        let name = |i: usize, what: &str| -> Result<NamedRelation> {
            let n = literal_arg(F, exprs, i, what)?.unwrap_or_default();
            resolve_relation(args.session(), F, &n)
        };
        let pairs = name(0, "the name of the pairs relation")?;
        let random = name(1, "the name of the random pairs relation")?;
        let names = fellegi_sunter::comparisons(&pairs.name, &pairs.provider.schema())?;
        let random_names = fellegi_sunter::comparisons(&random.name, &random.provider.schema())?;
        if let Some(missing) = names.iter().find(|n| !random_names.contains(n)) {
            return Err(engine_err(EngineError::UndefinedColumn {
                relation: random.name.clone(),
                column: format!("cmp_{missing}"),
                detail: " (random pairs need the same comparison columns as the pairs)".into(),
            }));
        }
        let fixed = literal_arg(F, exprs, 2, "a list of comparisons")?.unwrap_or_default();
        let fixed = training::Fixed::parse(&fixed)
            .map_err(|e| engine_err(EngineError::BadArgument(format!("{F}: argument 3: {e}"))))?;
        if fixed.per_rule() && pairs.provider.schema().index_of(training::RULE).is_err() {
            return Err(engine_err(EngineError::UndefinedColumn {
                relation: pairs.name.clone(),
                column: training::RULE.into(),
                detail: " (fixed comparisons given per rule need the rule of each pair)".into(),
            }));
        }
        if let Some(f) = fixed.names().into_iter().find(|f| !names.contains(f)) {
            return Err(engine_err(EngineError::UndefinedColumn {
                relation: pairs.name.clone(),
                column: format!("cmp_{f}"),
                detail: " (named as fixed by blocking)".into(),
            }));
        }
        let all_pairs = match exprs.get(3) {
            None => None,
            Some(Expr::Literal(v, _)) if v.data_type().is_numeric() && !v.is_null() => {
                let ScalarValue::Float64(Some(n)) = v.cast_to(&DataType::Float64)? else {
                    return Err(engine_err(EngineError::BadArgument(format!(
                        "{F}: argument 4 ({v}) is not a number of pairs"
                    ))));
                };
                Some(AllPairs::Count(n))
            }
            Some(_) => {
                let n = literal_arg(
                    F,
                    exprs,
                    3,
                    "the number of pairs blocking chose from, or the name of the records relation,",
                )?
                .unwrap_or_default();
                Some(match n.trim().parse::<f64>() {
                    Ok(n) => AllPairs::Count(n),
                    Err(_) => AllPairs::Records(resolve_relation(args.session(), F, &n)?),
                })
            }
        };
        Ok(Arc::new(IdentityTable {
            job: Job::Train {
                pairs,
                random,
                fixed,
                all_pairs,
            },
        }))
    }
}

/// `score_matches('<pairs>', '<model>')`.
#[derive(Debug)]
pub struct ScoreMatches;

impl TableFunctionImpl for ScoreMatches {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        const F: &str = "score_matches";
        let exprs = args.exprs();
        if exprs.len() != 2 {
            return Err(engine_err(EngineError::BadCall(format!(
                "{F} takes two arguments: {F}('<pairs relation>', '<model relation>')"
            ))));
        }
        let n0 = literal_arg(F, exprs, 0, "the name of the pairs relation")?.unwrap_or_default();
        let n1 = literal_arg(F, exprs, 1, "the name of the model relation")?.unwrap_or_default();
        let pairs = resolve_relation(args.session(), F, &n0)?;
        let model = resolve_relation(args.session(), F, &n1)?;
        fellegi_sunter::comparisons(&pairs.name, &pairs.provider.schema())?;
        let schema = pairs.provider.schema();
        for k in fellegi_sunter::PAIR_KEYS {
            if schema.index_of(k).is_err() {
                return Err(engine_err(EngineError::UndefinedColumn {
                    relation: pairs.name.clone(),
                    column: k.to_string(),
                    detail: format!(
                        " (pairs need {} and cmp_<attribute> columns)",
                        fellegi_sunter::PAIR_KEYS.join(", ")
                    ),
                }));
            }
        }
        Ok(Arc::new(IdentityTable {
            job: Job::Score { pairs, model },
        }))
    }
}
