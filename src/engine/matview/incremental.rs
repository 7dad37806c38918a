//! Incremental refresh: a view whose result is partitioned by a key, refreshed after rows
//! were only appended to its inputs, recomputes only the keys those rows reach.
//!
//! The view's optimised plan must be [`Keyed`]: an aggregate (`GROUP BY`, `DISTINCT`)
//! grouped by a plain column, the *key*, or window functions that all partition by a
//! plain column, the key (`row_number() OVER (PARTITION BY customer ...)`, sessions of a
//! visitor); under projections, filters (`HAVING`, `WHERE rn = 1`) and aliases that
//! return the key unchanged, and an `ORDER BY` (see [`keyed`]); or an inner, left or
//! right join of two such plans on their keys (the first column that fits is taken).
//! Each result row then depends only on the input rows with its key, taken at the
//! lowest of these *groups* (an aggregate over windows partitioned by its key, or over
//! an aggregate grouped by it, takes them below those), so:
//! 1. every input that changed since the versions recorded at the last refresh must be a
//!    Delta table (a managed table, another engine's table, a materialised view) to
//!    which files were only added (`INSERT`, `COPY`, appends), or a local file source
//!    to whose files others were only added (a new day's file in its directory); or a
//!    Delta table whose rows were deleted or updated in files holding at most
//!    1/`FOLD_FRACTION` of its rows (its removed files' rows and its added files' rows
//!    are then its changed rows, and nothing merges), or a materialised view refreshed
//!    through its overlay (its change files say which rows went and came); no join
//!    below a group may read such inputs (with rows removed) on both sides, since a
//!    removed row's removed partners would not be found;
//! 2. the keys reached are the keys of the groups' inputs computed with one changed
//!    scan at a time reading only the changed rows, the other scans reading everything.
//!    Between a group and a changed scan there may be only projections, filters,
//!    aliases, unions and joins where the scan is on a side whose new rows can only add
//!    rows to the join (either side of an inner join, the preserved side of an outer,
//!    semi or anti join), so every row the append added to a group's input is
//!    found (and some that were there before, which costs only time);
//! 3. the view's query runs again with each group's input semi-joined to those keys
//!    (NULL matching NULL), and its rows replace those of the same keys (see
//!    [`super::overlay`]).
//!
//! A view with no key whose rows each come from one row of each input gains instead the
//! rows the appended ones give (see [`super::append`]).
//!
//! Anything else (another shape, more deletes or updates, a source file changed or
//! removed, a segment, an erasure) recomputes the whole view, as does a failure here.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, JoinType, NullEquality};
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{EmptyRelation, Expr, LogicalPlan, LogicalPlanBuilder};
use tracing::debug;

use super::append::joins_appended;
use super::inputs::{self, Inputs, Pinned};
use super::merge::Mergeable;
use super::overlay;
use super::refresh::Refreshed;
use super::{RefreshState, Runtime};
use crate::engine::error::Result;
use crate::engine::Engine;
use crate::storage::{cast_batch, TableChange};

/// The name of the changed keys' relation in the recomputing plan, and of its column.
const KEYS: &str = "__changed_keys";
const KEY: &str = "__key";
/// The name of the view's stored result in the plan of the rows it keeps.
const STORED: &str = "__stored";
/// The overlay is folded into the stored result once it holds more keys than this
/// fraction of the stored rows (1/8).
pub(super) const FOLD_FRACTION: u64 = 8;

/// A plan whose result is partitioned by a key: each result row comes from input rows
/// with its key alone. Such a plan is an aggregate grouped by the key (a plain column;
/// the first that works) or windows partitioned by it, or projections, filters and
/// aliases over one, or an inner, left or right join of two such plans on their keys,
/// where a relation read as it is (a scan: each of its rows has its own key) can be one
/// of the two.
#[derive(Debug)]
pub struct Keyed {
    /// The key's column in the result.
    pub output: usize,
    /// The aggregates, windows and scans whose input rows are taken by key (the groups):
    /// each one's path from the top of the plan (the input taken at each node) and its
    /// key, a column of its input (of a scan: of the scan).
    groups: Vec<(Vec<usize>, Column)>,
    /// How many of the groups are scans.
    scans: usize,
}

/// How the changed keys are found: by merging the aggregate of the appended rows (its
/// input reading them), or by the plan that computes them.
pub enum Change {
    Merge(Mergeable, LogicalPlan),
    Keys(LogicalPlan),
}

impl Keyed {
    /// The first key of an optimised plan by which the rows `deltas` appended (or
    /// removed and added) can be followed (a plan can be keyed by several columns, not
    /// all of them usable), and how; merging, when `merge` allows it (only appends), is
    /// preferred.
    pub fn choose(
        plan: &LogicalPlan,
        deltas: &HashMap<String, Arc<dyn TableProvider>>,
        merge: bool,
    ) -> DfResult<Option<(Keyed, Change)>> {
        let mut mergeable = Mergeable::of(plan).filter(|_| merge);
        let aggregate = mergeable.as_ref().map(|m| m.path().to_vec());
        // Scans alone are not worth keying: a view of rows one by one gains rows by
        // appending (see `super::append`).
        let keyeds = keyed(plan, &mut Vec::new()).into_iter();
        for keyed in keyeds.filter(|k| k.scans < k.groups.len()) {
            if let Some(path) = &aggregate {
                if let Some(input) = keyed.delta_input(plan, path, deltas)? {
                    if let Some(m) = mergeable.take() {
                        return Ok(Some((keyed, Change::Merge(m, input))));
                    }
                }
            }
            if let Some(keys) = keyed.keys_plan(plan, deltas)? {
                return Ok(Some((keyed, Change::Keys(keys))));
            }
        }
        Ok(None)
    }

    /// The distinct keys of the rows `deltas` (appended rows by relation name) add to
    /// the inputs of the grouping aggregates, as a plan with one column; `None` if an
    /// appended relation is read where its new rows could also remove or change rows
    /// above it, or outside those inputs.
    pub fn keys_plan(
        &self,
        plan: &LogicalPlan,
        deltas: &HashMap<String, Arc<dyn TableProvider>>,
    ) -> DfResult<Option<LogicalPlan>> {
        let mut keys: Option<LogicalPlanBuilder> = None;
        let mut found = 0;
        for (path, key) in &self.groups {
            let input = group_input(at(plan, path));
            let Some(variants) = swapped(input, deltas)? else {
                return Ok(None);
            };
            found += variants.len();
            for variant in variants {
                let distinct = LogicalPlanBuilder::from(variant)
                    .aggregate(vec![Expr::Column(key.clone())], Vec::<Expr>::new())?
                    .project(vec![Expr::Column(key.clone()).alias(KEY)])?
                    .build()?;
                keys = Some(match keys {
                    None => LogicalPlanBuilder::from(distinct),
                    Some(k) => k.union(distinct)?,
                });
            }
        }
        // A changed relation read anywhere else (a subquery in an expression, above an
        // aggregate) would escape the variants.
        if found == 0 || found != scans_of(plan, deltas)? {
            return Ok(None);
        }
        keys.map(|k| k.distinct()?.build()).transpose()
    }

    /// The input of the aggregate at `aggregate` (a path from the top of `plan`) with
    /// the scan of the appended relation reading only the appended rows: the rows the
    /// append added to that input. `None` unless that aggregate is the one group, and
    /// one appended relation is read once, below it, where its new rows can only add
    /// rows.
    pub fn delta_input(
        &self,
        plan: &LogicalPlan,
        aggregate: &[usize],
        deltas: &HashMap<String, Arc<dyn TableProvider>>,
    ) -> DfResult<Option<LogicalPlan>> {
        let [(path, _)] = self.groups.as_slice() else {
            return Ok(None);
        };
        if path != aggregate || !matches!(at(plan, path), LogicalPlan::Aggregate(_)) {
            return Ok(None);
        }
        if deltas.len() != 1 || scans_of(plan, deltas)? != 1 {
            return Ok(None);
        }
        let input = at(plan, path).inputs()[0];
        Ok(swapped(input, deltas)?
            .filter(|v| v.len() == 1)
            .and_then(|mut v| v.pop()))
    }

    /// Whether a node below a group (other than a union) reads relations of `changed`
    /// through more than one of its inputs.
    pub fn joins_changed(
        &self,
        plan: &LogicalPlan,
        changed: &HashMap<String, Arc<dyn TableProvider>>,
    ) -> DfResult<bool> {
        if changed.is_empty() {
            return Ok(false);
        }
        for (path, _) in &self.groups {
            if joins_appended(group_input(at(plan, path)), changed)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `plan` with each group reading only the rows whose key is among `keys`.
    pub fn restricted(
        &self,
        plan: &LogicalPlan,
        keys: &Arc<dyn TableProvider>,
    ) -> DfResult<LogicalPlan> {
        let mut plan = plan.clone();
        for (path, key) in &self.groups {
            plan = replaced_at(&plan, path, &mut |group| {
                let input = with_keys(
                    group_input(group).clone(),
                    key.clone(),
                    keys,
                    JoinType::LeftSemi,
                )?;
                match group {
                    LogicalPlan::TableScan(_) => Ok(input),
                    aggregate => with_input(aggregate, 0, input, false),
                }
            })?;
        }
        Ok(plan)
    }
}

/// A materialised view's version (`v12+3`): its Delta version and overlay number.
fn overlaid(version: &str) -> Option<(u64, Option<u64>)> {
    let version = version.strip_prefix('v')?;
    Some(match version.split_once('+') {
        Some((delta, overlay)) => (delta.parse().ok()?, Some(overlay.parse().ok()?)),
        None => (version.parse().ok()?, None),
    })
}

/// The rows an input lost and those it gained, read as one relation: which keys they
/// reach is all the keys plan asks of them.
#[derive(Debug)]
struct Changes {
    removed: Arc<dyn TableProvider>,
    added: Arc<dyn TableProvider>,
}

#[async_trait::async_trait]
impl TableProvider for Changes {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.added.schema()
    }

    fn table_type(&self) -> datafusion::logical_expr::TableType {
        datafusion::logical_expr::TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let removed = self.removed.scan(state, projection, filters, limit).await?;
        let added = self.added.scan(state, projection, filters, limit).await?;
        datafusion::physical_plan::union::UnionExec::try_new(vec![removed, added])
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<datafusion::logical_expr::TableProviderFilterPushDown>> {
        Ok(vec![
            datafusion::logical_expr::TableProviderFilterPushDown::Inexact;
            filters.len()
        ])
    }
}

/// The rows of `plan` whose `key` is (`LeftSemi`) or is not (`LeftAnti`) among `keys`,
/// NULL matching NULL.
pub fn with_keys(
    plan: LogicalPlan,
    key: Column,
    keys: &Arc<dyn TableProvider>,
    join: JoinType,
) -> DfResult<LogicalPlan> {
    let keys = LogicalPlanBuilder::scan(KEYS, provider_as_source(keys.clone()), None)?.build()?;
    LogicalPlanBuilder::from(plan)
        .join_detailed(
            keys,
            join,
            (vec![key], vec![Column::new(Some(KEYS), KEY)]),
            None,
            NullEquality::NullEqualsNull,
        )?
        .build()
}

/// Every way `plan` is keyed: one per grouping column that can serve as the key (the
/// first is preferred).
fn keyed(plan: &LogicalPlan, path: &mut Vec<usize>) -> Vec<Keyed> {
    let under = |child: usize, path: &mut Vec<usize>| {
        path.push(child);
        let k = keyed(plan.inputs()[child], path);
        path.pop();
        k
    };
    match plan {
        LogicalPlan::Aggregate(a) => {
            if a.group_expr
                .iter()
                .any(|e| matches!(e, Expr::GroupingSet(_)))
            {
                return vec![];
            }
            // The aggregate's result starts with its group expressions, in order.
            let inner = under(0, path);
            let groups = a.group_expr.iter().enumerate();
            groups
                .filter_map(|(output, e)| match e {
                    Expr::Column(key) => Some(Keyed {
                        output,
                        groups: deeper(&inner, a.input.schema(), key)
                            .unwrap_or_else(|| vec![(path.clone(), key.clone())]),
                        scans: 0,
                    }),
                    _ => None,
                })
                .collect()
        }
        // Window functions that all partition by a column (and maybe others): each row's
        // values come from the rows of its partition, which share its value of the column.
        LogicalPlan::Window(w) => {
            let input = w.input.schema();
            let inner = under(0, path);
            let partitions: Option<Vec<&Vec<Expr>>> =
                w.window_expr.iter().map(partition_by).collect();
            let Some(partitions) = partitions else {
                return vec![];
            };
            input
                .columns()
                .into_iter()
                .enumerate()
                .filter(|(_, key)| {
                    partitions
                        .iter()
                        .all(|p| p.iter().any(|e| matches!(e, Expr::Column(c) if c == key)))
                })
                .map(|(output, key)| Keyed {
                    output,
                    groups: deeper(&inner, input, &key)
                        .unwrap_or_else(|| vec![(path.clone(), key.clone())]),
                    scans: 0,
                })
                .collect()
        }
        LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => under(0, path),
        // A view's ORDER BY (its lookup keys) lays its stored rows out in key order, which
        // lookups rely on: the recomputed rows go to the overlay, which scans read beside
        // them, and a refresh that would write the whole result recomputes it, sorted.
        LogicalPlan::Sort(s) if s.fetch.is_none() => under(0, path),
        LogicalPlan::Projection(p) => {
            let input = p.input.schema();
            let passes = |e: &Expr, index: usize| {
                let e = match e {
                    Expr::Alias(a) => a.expr.as_ref(),
                    e => e,
                };
                matches!(e, Expr::Column(c) if input.index_of_column(c).ok() == Some(index))
            };
            under(0, path)
                .into_iter()
                .filter_map(|inner| {
                    let output = p.expr.iter().position(|e| passes(e, inner.output))?;
                    Some(Keyed { output, ..inner })
                })
                .collect()
        }
        LogicalPlan::Join(j) => {
            let (lefts, rights) = (under(0, path), under(1, path));
            let column = |p: &LogicalPlan, i: usize| Column::from(p.schema().qualified_field(i));
            let mut out = Vec::new();
            for left in &lefts {
                for right in &rights {
                    let (l, r) = (column(&j.left, left.output), column(&j.right, right.output));
                    let on_keys = j.on.iter().any(|pair| match pair {
                        (Expr::Column(a), Expr::Column(b)) => {
                            (*a == l && *b == r) || (*a == r && *b == l)
                        }
                        _ => false,
                    });
                    let output = match j.join_type {
                        JoinType::Inner | JoinType::Left => left.output,
                        JoinType::Right => j.left.schema().fields().len() + right.output,
                        _ => return vec![],
                    };
                    if on_keys {
                        let groups = left.groups.iter().chain(&right.groups).cloned().collect();
                        let scans = left.scans + right.scans;
                        out.push(Keyed {
                            output,
                            groups,
                            scans,
                        });
                    }
                }
            }
            out
        }
        // Each row of a relation read as it is comes from itself.
        LogicalPlan::TableScan(scan) if scan.fetch.is_none() => {
            (0..scan.projected_schema.fields().len())
                .map(|output| Keyed {
                    output,
                    groups: vec![(
                        path.clone(),
                        Column::from(scan.projected_schema.qualified_field(output)),
                    )],
                    scans: 1,
                })
                .collect()
        }
        _ => vec![],
    }
}

/// The rows a group takes by key: an aggregate's or a window's input, or a scan itself.
fn group_input(group: &LogicalPlan) -> &LogicalPlan {
    match group {
        LogicalPlan::TableScan(_) => group,
        other => other.inputs()[0],
    }
}

/// The `PARTITION BY` of a window function (aliased or not).
fn partition_by(e: &Expr) -> Option<&Vec<Expr>> {
    match e {
        Expr::Alias(a) => partition_by(&a.expr),
        Expr::WindowFunction(f) => Some(&f.params.partition_by),
        _ => None,
    }
}

/// The groups of `inner` (the ways the input of an aggregate or a window is keyed) by
/// `key`, a column of that input: the rows of a key then come from the rows with that
/// key further down, where they are better restricted (before a window sorts them).
fn deeper(inner: &[Keyed], input: &DFSchema, key: &Column) -> Option<Vec<(Vec<usize>, Column)>> {
    let index = input.index_of_column(key).ok()?;
    inner
        .iter()
        .find(|k| k.output == index && k.scans == 0)
        .map(|k| k.groups.clone())
}

/// The key column of `rows` (at `key`) as the changed keys: one column named [`KEY`].
fn key_column(rows: &[RecordBatch], key: usize) -> DfResult<Vec<RecordBatch>> {
    rows.iter()
        .map(|b| {
            let column = b.column(key).clone();
            let schema = Schema::new(vec![Field::new(KEY, column.data_type().clone(), true)]);
            Ok(RecordBatch::try_new(Arc::new(schema), vec![column])?)
        })
        .collect()
}

/// Whether the view's result is sorted (`ORDER BY`) above its key's aggregates.
pub(super) fn ordered(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Sort(_) => true,
        LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) | LogicalPlan::Filter(_) => {
            ordered(plan.inputs()[0])
        }
        _ => false,
    }
}

/// The node of `plan` at `path` (the input taken at each node).
pub(super) fn at<'a>(plan: &'a LogicalPlan, path: &[usize]) -> &'a LogicalPlan {
    path.iter().fold(plan, |node, i| node.inputs()[*i])
}

/// `plan` with the node at `path` replaced by what `replace` makes of it.
pub(super) fn replaced_at(
    plan: &LogicalPlan,
    path: &[usize],
    replace: &mut dyn FnMut(&LogicalPlan) -> DfResult<LogicalPlan>,
) -> DfResult<LogicalPlan> {
    let Some((first, rest)) = path.split_first() else {
        return replace(plan);
    };
    let child = replaced_at(plan.inputs()[*first], rest, replace)?;
    with_input(plan, *first, child, false)
}

/// `plan` with input `index` replaced by `new`; with `others_empty`, its other inputs
/// by relations of no rows.
pub(super) fn with_input(
    plan: &LogicalPlan,
    index: usize,
    new: LogicalPlan,
    others_empty: bool,
) -> DfResult<LogicalPlan> {
    let (mut at, mut new) = (0, Some(new));
    Ok(plan
        .clone()
        .map_children(|c| {
            at += 1;
            Ok(match new.take() {
                Some(n) if at - 1 == index => Transformed::yes(n),
                taken => {
                    new = taken;
                    if others_empty {
                        Transformed::yes(LogicalPlan::EmptyRelation(EmptyRelation {
                            produce_one_row: false,
                            schema: c.schema().clone(),
                        }))
                    } else {
                        Transformed::no(c)
                    }
                }
            })
        })?
        .data)
}

/// Whether rows added to input `child` of `node` can only add rows to its output.
fn grows_with(node: &LogicalPlan, child: usize) -> bool {
    match node {
        LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Union(_)
        | LogicalPlan::Unnest(_)
        | LogicalPlan::Repartition(_) => true,
        LogicalPlan::Sort(s) => s.fetch.is_none(),
        LogicalPlan::Join(j) => match j.join_type {
            JoinType::Inner => true,
            JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                child == 0
            }
            JoinType::Right | JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                child == 1
            }
            JoinType::Full => false,
        },
        _ => false,
    }
}

/// `plan` once per scan of a relation in `deltas`, with that scan reading the appended
/// rows only; `None` if such a scan sits under a node its new rows could shrink or
/// change.
pub(super) fn swapped(
    plan: &LogicalPlan,
    deltas: &HashMap<String, Arc<dyn TableProvider>>,
) -> DfResult<Option<Vec<LogicalPlan>>> {
    if let LogicalPlan::TableScan(scan) = plan {
        return Ok(match deltas.get(&scan.table_name.to_string()) {
            None => Some(vec![]),
            Some(_) if scan.fetch.is_some() => None,
            Some(delta) => {
                let mut scan = scan.clone();
                scan.source = provider_as_source(delta.clone());
                Some(vec![LogicalPlan::TableScan(scan)])
            }
        });
    }
    let mut out = Vec::new();
    for (i, child) in plan.inputs().into_iter().enumerate() {
        let Some(variants) = swapped(child, deltas)? else {
            return Ok(None);
        };
        if variants.is_empty() {
            continue;
        }
        if !grows_with(plan, i) {
            return Ok(None);
        }
        // The other inputs of a union add nothing new: they read nothing.
        let union = matches!(plan, LogicalPlan::Union(_));
        for variant in variants {
            out.push(with_input(plan, i, variant, union)?);
        }
    }
    Ok(Some(out))
}

/// How many scans of relations in `deltas` the plan holds, subqueries included.
pub(super) fn scans_of(
    plan: &LogicalPlan,
    deltas: &HashMap<String, Arc<dyn TableProvider>>,
) -> DfResult<usize> {
    let mut n = 0;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if deltas.contains_key(&scan.table_name.to_string()) {
                n += 1;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(n)
}

/// Why a view cannot be refreshed incrementally, for the debug log; `Ok(None)`.
fn whole(view: &str, why: &str) -> Result<Option<Refreshed>> {
    debug!(view, "materialized view: recomputed whole: {why}");
    Ok(None)
}

impl Engine {
    /// Refresh the view by recomputing only the keys the appended rows reach, if the view
    /// and the change allow it (see the module's documentation); `None` otherwise.
    /// `optimized`: the view's optimised plan, `fingerprint` its fingerprint. Not for
    /// segments: their change log compares the whole membership.
    pub(super) async fn refresh_incrementally(
        &self,
        runtime: &Runtime,
        optimized: &LogicalPlan,
        fingerprint: &str,
        inputs: &Inputs,
        previous: &RefreshState,
        pinned: &Pinned,
    ) -> Result<Option<Refreshed>> {
        let versions = &pinned.versions;
        let data = runtime.table.data();
        let view = runtime.table.name();
        if previous.plan.as_deref() != Some(fingerprint)
            || !previous.populated
            || !runtime.table.is_populated()
            || previous.version != data.version().await
            || !previous.inputs.keys().eq(versions.keys())
            || !inputs::all_versioned(versions)
            || previous.overlay != runtime.table.overlay_seq()
        {
            return whole(
                view,
                "its definition, state or inputs are not those recorded",
            );
        }
        let mut deltas = HashMap::new();
        // The inputs whose rows were deleted or updated; whether the appended rows may be
        // merged (not when rows went, nor when an input this refresh does not pin was
        // appended to: an append it read already would be merged again).
        let mut removed: HashMap<String, Arc<dyn TableProvider>> = HashMap::new();
        let mut merge = true;
        for (name, version) in versions {
            let before = &previous.inputs[name];
            if before == version {
                continue;
            }
            if inputs.is_hidden(name) {
                return whole(view, &format!("{name} changed, read by a table function"));
            }
            // A file source to which files were only added.
            if let Some(files) = pinned.files.get(name) {
                let added = previous
                    .files
                    .get(name)
                    .and_then(|before| inputs::added_files(before, files));
                let reading = match (added, inputs.source(name)) {
                    (Some(added), Some(source)) => source.reading(&added)?,
                    _ => None,
                };
                let Some(reading) = reading else {
                    return whole(view, &format!("a file of {name} changed or went"));
                };
                deltas.insert(name.clone(), Arc::new(reading) as Arc<dyn TableProvider>);
                continue;
            }
            // A materialised view refreshed through its overlay since (`v12` or `v12+2`
            // to `v12+3`): its changed rows are the rows its keys had before, kept in the
            // overlay's change files, and the rows they have now (nothing merges).
            if let (Some(input), Some((a, after)), Some((b, Some(upto)))) = (
                inputs.materialized_view(name),
                overlaid(before),
                overlaid(version),
            ) {
                if a != b || after.is_some_and(|s| s >= upto) {
                    return whole(view, &format!("{name} was written whole"));
                }
                let Some((schema, before, now)) = input.changes(after, upto)? else {
                    return whole(view, &format!("the changes of {name} are gone"));
                };
                merge = false;
                let gone = Arc::new(MemTable::try_new(schema.clone(), vec![before])?);
                let added = Arc::new(MemTable::try_new(schema, vec![now])?);
                let changes: Arc<dyn TableProvider> = Arc::new(Changes {
                    removed: gone,
                    added,
                });
                removed.insert(name.clone(), changes.clone());
                deltas.insert(name.clone(), changes);
                continue;
            }
            let plain = |v: &str| v.strip_prefix('v').and_then(|v| v.parse::<u64>().ok());
            let (Some(since), Some(_), Some(table)) =
                (plain(before), plain(version), inputs.delta_table(name))
            else {
                return whole(view, &format!("{name} has no version to follow"));
            };
            let until = pinned.snapshot(name);
            let change = table
                .changed_since(since, until, FOLD_FRACTION as usize)
                .await?;
            let delta: Arc<dyn TableProvider> = match change {
                Some(TableChange::Appended(appended)) => {
                    merge &= until.is_some();
                    appended
                }
                // Rows deleted or updated (in a few of its files): the keys of the rows
                // removed and of those added are reached; nothing merges.
                Some(TableChange::Rewritten {
                    removed: gone,
                    added,
                }) => {
                    merge = false;
                    let changes: Arc<dyn TableProvider> = Arc::new(Changes {
                        removed: gone,
                        added,
                    });
                    removed.insert(name.clone(), changes.clone());
                    changes
                }
                _ => return whole(view, &format!("{name} was rewritten in too many files")),
            };
            deltas.insert(name.clone(), delta);
        }
        let Some((keyed, change)) = Keyed::choose(optimized, &deltas, merge)? else {
            // A view of its inputs' rows one by one (no key) gains the rows of theirs.
            if removed.is_empty() {
                let run = (optimized, fingerprint, previous, pinned);
                return self.append_to_view(runtime, run, &deltas).await;
            }
            let ways = keyed(optimized, &mut Vec::new()).len();
            let why = format!("no key by which its inputs' changes can be followed ({ways} keys)");
            return whole(view, &why);
        };
        // The rows removed from an input are found through each of its scans with the
        // other inputs read as they are now: a join below a group reading such inputs on
        // both sides (a relation joined with itself, two changed relations joined) would
        // miss a removed row's removed partners. Appended inputs hold every row a
        // removed one joined with.
        if keyed.joins_changed(optimized, &removed)? {
            return whole(view, "a join reads changed inputs on both sides");
        }
        // The key's stored values must be its computed ones: a type stored coarser
        // (nanoseconds as microseconds) would keep a changed key's old rows.
        let stored = data.schema();
        let (stored_type, computed_type) = (
            stored.field(keyed.output).data_type(),
            optimized.schema().field(keyed.output).data_type(),
        );
        let text =
            |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
        if stored_type != computed_type && !(text(stored_type) && text(computed_type)) {
            return whole(view, "its key is stored in another type");
        }
        let name = runtime.table.name();
        let started = std::time::Instant::now();
        // What the view holds now (the stored result and the overlay), read without
        // loading it into memory.
        let state = runtime.table.current();
        let view: Arc<dyn TableProvider> = Arc::new(state.clone());
        // The changed keys; with merging aggregates also their new rows and how many
        // rows they had, otherwise those come below.
        let (keys, mut merged_rows) = match change {
            Change::Merge(mergeable, input) => {
                let delta = mergeable.delta_plan(optimized, input)?;
                let delta = self
                    .ctx
                    .execute_logical_plan(delta)
                    .await?
                    .collect()
                    .await?;
                let keys = key_column(&delta, keyed.output)?;
                let merged = mergeable
                    .merged(&self.ctx, view.clone(), &stored, delta)
                    .await?;
                (keys, Some(merged))
            }
            Change::Keys(keys_plan) => {
                let keys = self
                    .ctx
                    .execute_logical_plan(keys_plan)
                    .await?
                    .collect()
                    .await?;
                (keys, None)
            }
        };
        let changed: usize = keys.iter().map(|b| b.num_rows()).sum();
        debug!(view = %name, keys = changed, merged = merged_rows.is_some(), "materialized view: incremental refresh");
        let mut rows = previous.rows;
        if let Some(schema) = keys.first().filter(|_| changed > 0).map(|b| b.schema()) {
            let changed_keys: Arc<dyn TableProvider> =
                Arc::new(MemTable::try_new(schema, vec![keys.clone()])?);
            let (recomputed, replaced) = match merged_rows.take() {
                Some((rows, before)) => (rows, Some(before)),
                None => {
                    let recompute = keyed.restricted(optimized, &changed_keys)?;
                    let rows = self
                        .ctx
                        .execute_logical_plan(recompute)
                        .await?
                        .collect()
                        .await?;
                    (rows, None)
                }
            };
            debug!(view = %name, elapsed = ?started.elapsed(), "materialized view: rows computed");
            let key = Column::new(Some(STORED), stored.field(keyed.output).name());
            let current =
                LogicalPlanBuilder::scan(STORED, provider_as_source(view), None)?.build()?;
            let fits = state.layer.as_ref().is_none_or(|l| l.key() == keyed.output);
            let merged = overlay::merged(
                state.layer.as_deref().filter(|_| fits),
                state.tag,
                keyed.output,
                &stored,
                &keys,
                &recomputed,
            )?;
            let new_rows: usize = recomputed.iter().map(|b| b.num_rows()).sum();
            if fits && merged.key_count() as u64 <= previous.rows / FOLD_FRACTION {
                // The rows the changed keys had, which the overlay now replaces: kept for
                // the views reading this one.
                let before = match replaced {
                    Some(before) => before,
                    None => {
                        let plan = with_keys(current, key, &changed_keys, JoinType::LeftSemi)?;
                        let before = self.ctx.execute_logical_plan(plan).await?.collect().await?;
                        before
                            .iter()
                            .map(|b| cast_batch(b, &stored))
                            .collect::<DfResult<_>>()?
                    }
                };
                let replaced: usize = before.iter().map(|b| b.num_rows()).sum();
                runtime.table.overlay().replace(merged, before).await?;
                rows = (rows + new_rows as u64).saturating_sub(replaced as u64);
                debug!(view = %name, elapsed = ?started.elapsed(), "materialized view: overlay written");
            } else if ordered(optimized) {
                // Its rows are stored in its ORDER BY's order (lookups rely on it when
                // those are its keys): recomputed whole, sorted.
                return Ok(None);
            } else {
                // The overlay has grown (or cannot hold these rows): write the whole
                // result, the rows of the other keys as they are and the changed keys'
                // rows computed again, and let the overlay go.
                // (A Delta replace-where with a predicate listing the keys overflowed the
                // stack at 20,000 keys; and the keys are spread over every file anyway.)
                let kept = with_keys(current, key, &changed_keys, JoinType::LeftAnti)?;
                let mut batches = self.ctx.execute_logical_plan(kept).await?.collect().await?;
                batches.extend(recomputed);
                self.vacuum_old_results(runtime).await;
                rows = data.overwrite(batches).await?;
                runtime.table.overlay().clear()?;
                debug!(view = %name, elapsed = ?started.elapsed(), "materialized view: rows written");
            }
        }
        Ok(Some(Refreshed::Written {
            rows,
            version: data.version().await,
            inputs: versions.clone(),
            files: pinned.files.clone(),
            keys: Some(changed as u64),
            overlay: runtime.table.overlay_seq(),
            plan: fingerprint.to_string(),
        }))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::prelude::SessionContext;

    /// A table of (k text, v bigint) rows.
    pub(in crate::engine::matview) fn table(rows: &[(&str, i64)]) -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .expect("batch");
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("table"))
    }

    /// A context with tables `t` (changed: `t` gains ("b", 5), ("c", 1)) and `u`.
    fn context() -> (SessionContext, HashMap<String, Arc<dyn TableProvider>>) {
        let ctx = SessionContext::new();
        ctx.register_table("t", table(&[("a", 1), ("b", 2), ("b", 5), ("c", 1)]))
            .expect("t");
        ctx.register_table("u", table(&[("a", 10), ("b", 20), ("c", 30)]))
            .expect("u");
        let delta: Arc<dyn TableProvider> = table(&[("b", 5), ("c", 1)]);
        (ctx, HashMap::from([("t".to_string(), delta)]))
    }

    async fn optimized(ctx: &SessionContext, sql: &str) -> LogicalPlan {
        let plan = ctx.state().create_logical_plan(sql).await.expect(sql);
        ctx.state().optimize(&plan).expect(sql)
    }

    /// The key's column in the result, if the query can be refreshed incrementally
    /// after an append to `t`.
    async fn key_of(sql: &str) -> Option<usize> {
        let (ctx, deltas) = context();
        let plan = optimized(&ctx, sql).await;
        let chosen = Keyed::choose(&plan, &deltas, true).expect("choose");
        chosen.map(|(keyed, _)| keyed.output)
    }

    /// The keys the appended rows of `t` reach, sorted; `None` if not found that way.
    async fn keys_reached(sql: &str) -> Option<Vec<String>> {
        let (ctx, deltas) = context();
        let plan = optimized(&ctx, sql).await;
        let keys = match Keyed::choose(&plan, &deltas, true).expect("choose")? {
            (_, Change::Keys(keys)) => keys,
            (keyed, Change::Merge(..)) => keyed.keys_plan(&plan, &deltas).expect("keys")?,
        };
        let batches = ctx
            .execute_logical_plan(keys)
            .await
            .expect("run")
            .collect()
            .await
            .expect("collect");
        let mut out: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let a =
                    datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
                (0..a.len())
                    .map(|i| {
                        ScalarValue::try_from_array(&a, i)
                            .expect("value")
                            .to_string()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort();
        Some(out)
    }

    #[tokio::test]
    async fn the_key_is_a_grouping_column_the_view_returns() {
        assert_eq!(key_of("SELECT k, sum(v) FROM t GROUP BY k").await, Some(0));
        assert_eq!(
            key_of("SELECT sum(v) AS s, k AS key FROM t GROUP BY k HAVING sum(v) > 1").await,
            Some(1)
        );
        assert_eq!(key_of("SELECT DISTINCT v, k FROM t").await, Some(0));
        assert_eq!(
            key_of("SELECT k, sum(v) FROM t GROUP BY k ORDER BY k").await,
            Some(0)
        );
        // Aggregates joined on their keys.
        const SIDES: &str = "(SELECT k, count(*) AS n FROM t GROUP BY k) a \
                             {JOIN} (SELECT k, sum(v) AS s FROM u GROUP BY k) b";
        let joined = |select: &str, join: &str, on: &str| {
            format!(
                "SELECT {select} FROM {} ON {on}",
                SIDES.replace("{JOIN}", join)
            )
        };
        assert_eq!(
            key_of(&joined("a.n, a.k, b.s", "LEFT JOIN", "a.k = b.k")).await,
            Some(1)
        );
        assert_eq!(
            key_of(&joined("b.s, b.k, a.n", "RIGHT JOIN", "b.k = a.k")).await,
            Some(1)
        );
        assert_eq!(
            key_of(&joined("a.k, b.s", "JOIN", "a.k = b.k AND a.n < b.s")).await,
            Some(0)
        );
        // Not the first grouping column: the one the join is on.
        assert_eq!(
            key_of(
                "SELECT a.k, a.v, b.s FROM (SELECT v, k, count(*) AS n FROM t GROUP BY v, k) a \
                 JOIN (SELECT k, sum(v) AS s FROM u GROUP BY k) b ON a.k = b.k"
            )
            .await,
            Some(0)
        );
        for (select, join, on) in [
            ("a.k, b.s", "FULL JOIN", "a.k = b.k"),
            ("a.k, b.s", "JOIN", "a.n = b.s"),
            ("a.n, b.s", "JOIN", "a.k = b.k"),
        ] {
            let sql = joined(select, join, on);
            assert_eq!(key_of(&sql).await, None, "{sql}");
        }
        for sql in [
            "SELECT sum(v) FROM t GROUP BY k",
            "SELECT upper(k), sum(v) FROM t GROUP BY upper(k)",
            "SELECT k, sum(v) FROM t GROUP BY k ORDER BY k LIMIT 2",
            "SELECT k, v, rank() OVER (ORDER BY v) AS r FROM t",
            "SELECT k, v, rank() OVER (PARTITION BY upper(k) ORDER BY v) AS r FROM t",
            "SELECT k, v, count(*) OVER (PARTITION BY k) AS a, count(*) OVER () AS b FROM t",
            "SELECT k, sum(v) FROM t GROUP BY ROLLUP (k)",
            "SELECT k, v FROM t",
        ] {
            assert_eq!(key_of(sql).await, None, "{sql}");
        }
    }

    #[tokio::test]
    async fn a_relation_read_as_it_is_is_keyed_beside_an_aggregate() {
        // A relation's rows, each its own, joined with an aggregate on its key.
        let beside = [
            "SELECT a.k, a.n, u.v FROM (SELECT k, count(*) AS n FROM t GROUP BY k) a JOIN u ON u.k = a.k",
            "SELECT t.k, t.v, b.s FROM t JOIN (SELECT k, sum(v) AS s FROM u GROUP BY k) b ON t.k = b.k",
            "SELECT b.k, b.s, t.v FROM t RIGHT JOIN (SELECT k, sum(v) AS s FROM u GROUP BY k) b ON t.k = b.k",
        ];
        for sql in beside {
            assert_eq!(key_of(sql).await, Some(0), "{sql}");
            assert_eq!(
                keys_reached(sql).await,
                Some(vec!["b".to_string(), "c".to_string()]),
                "{sql}"
            );
        }
        // Relations alone are not keyed (a view of rows one by one appends instead).
        for sql in [
            "SELECT k, v FROM t WHERE v > 1",
            "SELECT t.k, u.v FROM t JOIN u ON t.k = u.k",
        ] {
            assert_eq!(key_of(sql).await, None, "{sql}");
        }
    }

    #[tokio::test]
    async fn windows_partitioned_by_a_column_are_keyed_by_it() {
        assert_eq!(
            key_of("SELECT v, k, rank() OVER (PARTITION BY k ORDER BY v) AS r FROM t").await,
            Some(1)
        );
        // The latest row of each key.
        const LATEST: &str = "SELECT k, v FROM (SELECT k, v, row_number() OVER \
                              (PARTITION BY k ORDER BY v DESC) AS rn FROM t) l WHERE rn = 1";
        assert_eq!(key_of(LATEST).await, Some(0));
        // Every window partitions by k (one by more).
        assert_eq!(
            key_of(
                "SELECT k, v, count(*) OVER (PARTITION BY k, v) AS a, \
                 lag(v) OVER (PARTITION BY k ORDER BY v) AS b FROM t"
            )
            .await,
            Some(0)
        );
        // Sessions: an aggregate grouped by the windows' partition column (and by what
        // they computed, which cannot be the key).
        const SESSIONS: &str = "SELECT s, k, count(*) AS n FROM (SELECT k, v, sum(v) OVER \
                                (PARTITION BY k ORDER BY v) AS s FROM t) w GROUP BY s, k";
        assert_eq!(key_of(SESSIONS).await, Some(1));
        let reached = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        for sql in [LATEST, SESSIONS] {
            assert_eq!(keys_reached(sql).await, reached(&["b", "c"]), "{sql}");
        }
        // Grouped by another column than the windows': a new row changes the window
        // values of others rows, in other groups.
        assert_eq!(
            keys_reached(
                "SELECT v, max(r) FROM (SELECT k, v, rank() OVER (PARTITION BY k ORDER BY v) \
                 AS r FROM t) w GROUP BY v"
            )
            .await,
            None
        );
    }

    #[tokio::test]
    async fn appended_rows_reach_keys_through_joins_on_the_growing_side_only() {
        let reached = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            keys_reached("SELECT k, sum(v) FROM t GROUP BY k").await,
            reached(&["b", "c"])
        );
        // Through an inner join the key may come from the other side.
        assert_eq!(
            keys_reached("SELECT u.v AS uv, count(*) FROM t JOIN u ON t.k = u.k GROUP BY u.v")
                .await,
            reached(&["20", "30"])
        );
        // Filters apply to the appended rows too.
        assert_eq!(
            keys_reached("SELECT k, sum(v) FROM t WHERE v > 1 GROUP BY k").await,
            reached(&["b"])
        );
        // A table read twice: each reading in turn.
        assert_eq!(
            keys_reached(
                "SELECT k, count(*) FROM (SELECT k FROM t UNION ALL SELECT k FROM t WHERE v = 1) s GROUP BY k"
            )
            .await,
            reached(&["b", "c"])
        );
        // Aggregates joined on their keys: those of the aggregate reading `t`.
        assert_eq!(
            keys_reached(
                "SELECT b.k, a.n FROM (SELECT k, count(*) AS n FROM t GROUP BY k) a \
                 RIGHT JOIN (SELECT k FROM u GROUP BY k) b ON a.k = b.k"
            )
            .await,
            reached(&["b", "c"])
        );
        assert_eq!(
            keys_reached("SELECT u.k, count(t.v) FROM u LEFT JOIN t ON t.k = u.k GROUP BY u.k")
                .await,
            None,
            "new rows on the nullable side replace rows"
        );
        assert_eq!(
            keys_reached("SELECT k, count(*) FROM u WHERE k NOT IN (SELECT k FROM t) GROUP BY k")
                .await,
            None,
            "new rows in an anti join's subquery remove rows"
        );
        assert_eq!(
            keys_reached(
                "SELECT k, count(*) FROM (SELECT k, count(*) AS n FROM t GROUP BY k) s GROUP BY k"
            )
            .await,
            reached(&["b", "c"]),
            "an aggregate below the key's, grouped by it too"
        );
        assert_eq!(
            keys_reached(
                "SELECT n, count(*) FROM (SELECT k, count(*) AS n FROM t GROUP BY k) s GROUP BY n"
            )
            .await,
            None,
            "an aggregate below the key's, grouped otherwise"
        );
    }
}
